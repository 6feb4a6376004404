//! Helpers shared by the integration tests: unique table paths that clean up after
//! themselves, and SA builders whose contents can be verified from their SPI alone.
#![allow(dead_code)]

pub mod roles;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sa_table::{Direction, IpPrefix, Mode, SaParams, TrafficSelector, TransformId};

/// A table path under /dev/shm unique to this process and test, removed on drop.
pub struct TablePath(pub PathBuf);

impl TablePath {
    pub fn new(test: &str) -> Self {
        Self::for_pid(test, std::process::id())
    }

    /// The path a parent process created (children of a two-process test).
    pub fn for_pid(test: &str, pid: u32) -> Self {
        // A directory per test: tests run in parallel, and one test removing a
        // shared directory would race another one creating its table in it.
        let p = PathBuf::from(format!("/dev/shm/esprit-test-{pid}-{test}/table"));
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TablePath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Key bytes derived from (spi, cookie): a reader can check any copy it takes.
pub fn derived_key(spi: u32, cookie: u64) -> [u8; 32] {
    let mut x = (u64::from(spi) << 32) ^ cookie ^ 0x5851_f42d_4c95_7f2d;
    let mut k = [0u8; 32];
    for chunk in k.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    k
}

fn base(spi: u32, cookie: u64, dir: Direction) -> SaParams {
    let mut p = SaParams::zeroed();
    p.spi = spi;
    p.cookie = cookie;
    p.direction = dir;
    p.mode = Mode::TUNNEL;
    p.transform = TransformId::AES_GCM_16_IIV;
    p.set_key(&derived_key(spi, cookie), (spi ^ 0xa5a5_a5a5).to_be_bytes());
    p.set_outer(
        "192.0.2.1".parse().unwrap(),
        "198.51.100.7".parse().unwrap(),
    );
    p.initial_seq = 1;
    p.replay_window_pkts = 1024;
    p.lifetime.hard_secs = 3600;
    p.lifetime.soft_secs = 3000;
    // Fill the tail of the record too, so a torn copy would show anywhere.
    p.sec_label_len = 32;
    p.sec_label[..32].copy_from_slice(&derived_key(cookie as u32, u64::from(spi)));
    p
}

pub fn inbound(spi: u32, cookie: u64) -> SaParams {
    base(spi, cookie, Direction::INBOUND)
}

pub fn outbound(spi: u32, cookie: u64, prefix: &str) -> SaParams {
    let mut p = base(spi, cookie, Direction::OUTBOUND);
    let (a, l) = prefix.split_once('/').unwrap();
    p.served[0] = IpPrefix::new(a.parse::<IpAddr>().unwrap(), l.parse().unwrap());
    p.served_count = 1;
    p
}

pub fn outbound_ts(spi: u32, cookie: u64, start: &str, end: &str) -> SaParams {
    let mut p = base(spi, cookie, Direction::OUTBOUND);
    p.ts_remote[0] = TrafficSelector::range(start.parse().unwrap(), end.parse().unwrap());
    p.ts_remote_count = 1;
    p
}

/// Is this copy exactly what the writer installed for its (spi, cookie)?
pub fn consistent(p: &SaParams) -> bool {
    p.checksum_ok()
        && p.key() == derived_key(p.spi, p.cookie)
        && p.sec_label() == derived_key(p.cookie as u32, u64::from(p.spi))
        && p.salt == (p.spi ^ 0xa5a5_a5a5).to_be_bytes()
}
