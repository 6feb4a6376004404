//! Static (manually keyed) SAs from the YAML file, installed into the same
//! SA table the control plane programs.
//!
//! Each static SA carries a cookie `STAT << 32 | index`. At start the
//! dataplane writes the table in one transaction (the table's lock for the
//! length of the batch, shared with esprit-ike, which may be running: see
//! `sa_table::Writer`): a live static SA whose parameters are unchanged is
//! kept as it is (so its outbound sequence number goes on from where it
//! was: with a static key, starting again from 1 would repeat nonces), a
//! changed or removed one is deleted, and missing ones are installed. The
//! writer only touches slots tagged `STAT`: esprit-ike's SAs (`IK`) are
//! never its business, and they stay as they are through a dataplane restart.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use sa_table::{
    Direction as TDir, IpPrefix, Mode as TMode, SaFlags, SaParams, TableConfig, TrafficSelector, TransformId, Writer,
};

use crate::config::{Direction, Mode, Prefix, StaticSa, SuiteName};

/// High half of a static SA's cookie: "STAT".
pub const STATIC_COOKIE: u64 = 0x5354_4154 << 32;
/// The bits of a cookie that carry the `STAT` tag.
pub const STATIC_COOKIE_MASK: u64 = 0xffff_ffff << 32;

/// How long the start waits for esprit-ike's transaction in progress (a
/// batch takes microseconds; this only matters if esprit-ike is stopped
/// halfway through one).
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn prefix_range(p: &Prefix) -> (IpAddr, IpAddr) {
    match p.addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if p.len == 0 { 0 } else { u32::MAX << (32 - p.len) };
            (IpAddr::V4(Ipv4Addr::from(bits & mask)), IpAddr::V4(Ipv4Addr::from(bits | !mask)))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if p.len == 0 { 0 } else { u128::MAX << (128 - p.len) };
            (IpAddr::V6(Ipv6Addr::from(bits & mask)), IpAddr::V6(Ipv6Addr::from(bits | !mask)))
        }
    }
}

fn selectors(prefixes: &[Prefix]) -> Vec<TrafficSelector> {
    if prefixes.is_empty() {
        // Any address of either family.
        return vec![
            TrafficSelector::range(IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::BROADCAST)),
            TrafficSelector::range(IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::from(u128::MAX))),
        ];
    }
    prefixes.iter().map(|p| {
        let (s, e) = prefix_range(p);
        TrafficSelector::range(s, e)
    }).collect()
}

/// The slot record for static SA number `index`.
pub fn slot_params(index: usize, sa: &StaticSa) -> SaParams {
    let mut p = SaParams::zeroed();
    p.cookie = STATIC_COOKIE | index as u64;
    p.spi = sa.spi;
    p.direction = match sa.direction {
        Direction::In => TDir::INBOUND,
        Direction::Out => TDir::OUTBOUND,
    };
    p.transform = match (sa.suite, sa.iiv) {
        (SuiteName::Chacha20Poly1305, false) => TransformId::CHACHA20_POLY1305,
        (SuiteName::Chacha20Poly1305, true) => TransformId::CHACHA20_POLY1305_IIV,
        (_, false) => TransformId::AES_GCM_16,
        (_, true) => TransformId::AES_GCM_16_IIV,
    };
    let km = sa.key_and_salt();
    let (key, salt) = km.split_at(km.len().saturating_sub(4));
    p.set_key(key, salt.try_into().unwrap_or([0; 4]));
    let mut flags = 0u8;
    if sa.esn {
        flags |= SaFlags::ESN.0;
    }
    if let Some(u) = &sa.udp_encap {
        flags |= SaFlags::UDP_ENCAP.0;
        p.udp_src_port = u.sport;
        p.udp_dst_port = u.dport;
    }
    p.flags = SaFlags(flags);
    p.mode = match sa.mode {
        Mode::Tunnel => TMode::TUNNEL,
        Mode::Transport => TMode::TRANSPORT,
    };
    if let (Some(src), Some(dst)) = (sa.src, sa.dst) {
        p.set_outer(src, dst);
    }
    p.replay_window_pkts = sa.replay_window;
    p.initial_seq = sa.initial_seq.max(1);
    let remote = selectors(&sa.prefixes());
    let local = selectors(&sa.local_prefixes());
    for (i, t) in local.iter().take(p.ts_local.len()).enumerate() {
        p.ts_local[i] = *t;
    }
    p.ts_local_count = local.len().min(p.ts_local.len()) as u8;
    for (i, t) in remote.iter().take(p.ts_remote.len()).enumerate() {
        p.ts_remote[i] = *t;
    }
    p.ts_remote_count = remote.len().min(p.ts_remote.len()) as u8;
    if let Some(l) = &sa.sec_label {
        // NUL-terminated, as RFC 9478 labels arrive from IKE peers (the
        // dataplane compares labels without the terminator).
        let b = crate::config::label_bytes(l.as_bytes());
        let n = b.len().min(p.sec_label.len() - 1);
        p.sec_label[..n].copy_from_slice(&b[..n]);
        p.sec_label_len = n as u8 + 1;
    }
    if sa.direction == Direction::Out {
        let served = sa.prefixes();
        for (i, pre) in served.iter().take(p.served.len()).enumerate() {
            p.served[i] = IpPrefix::new(pre.addr, pre.len);
        }
        p.served_count = served.len().min(p.served.len()) as u8;
    }
    p
}

fn same(a: &SaParams, b: &SaParams) -> bool {
    let (mut a, mut b) = (*a, *b);
    for p in [&mut a, &mut b] {
        p.gen = 0;
        p.install_gen = 0;
        p.checksum = 0;
        p.slot_state = 0;
    }
    a == b
}

/// What [`sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub kept: usize,
    pub installed: usize,
    pub deleted: usize,
}

/// Creates the table if it is missing and brings its static SAs in line
/// with `sas`. Errors say what failed (the caller adds the config path).
pub fn sync(path: &Path, capacity: u32, sas: &[StaticSa]) -> Result<SyncReport, String> {
    let cfg = TableConfig { capacity, lock_wait: LOCK_WAIT, ..TableConfig::default() };
    let (mut w, _) = Writer::open(path, &cfg).map_err(|e| format!("SA table {}: {e}", path.display()))?;
    w.restrict_to_cookies(STATIC_COOKIE_MASK, STATIC_COOKIE);
    let want: Vec<SaParams> = sas.iter().enumerate().map(|(i, s)| slot_params(i, s)).collect();
    let mut report = SyncReport::default();
    let mut have = vec![false; want.len()];
    // One transaction: what it reads of the table (the live static SAs) is
    // what it changes, whatever esprit-ike does before or after.
    let mut w = w.lock().map_err(|e| format!("SA table {}: {e}", path.display()))?;
    let live: Vec<_> = w.live().filter(|(_, p)| p.cookie & STATIC_COOKIE_MASK == STATIC_COOKIE).collect();
    for (id, p) in live {
        let idx = (p.cookie & 0xffff_ffff) as usize;
        if idx < want.len() && !have[idx] && same(&p, &want[idx]) {
            have[idx] = true;
            report.kept += 1;
        } else {
            w.delete(id).map_err(|e| format!("deleting stale static SA {:#x}: {e}", p.spi))?;
            report.deleted += 1;
        }
    }
    for (i, p) in want.iter().enumerate() {
        if !have[i] {
            w.install(p).map_err(|e| format!("dataplane.static_sas[{i}]: {e}"))?;
            report.installed += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const YAML: &str = r#"
dataplane:
  ports: { outside: { device: net_null0 }, inside: { device: net_null1 } }
  addresses: { outside: [172.16.1.5] }
  static_sas:
    - { spi: 0x1005, direction: out, suite: aes-128-gcm, key: "000102030405060708090a0b0c0d0e0f10111213",
        src: 172.16.1.5, dst: 172.16.2.5, selectors: ["192.168.105.0/24"] }
    - { spi: 0x2005, direction: in, suite: aes-256-gcm, esn: true,
        key: "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f10111213",
        src: 172.16.2.5, dst: 172.16.1.5, selectors: ["192.168.5.0/24"] }
"#;

    fn path(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/dev/shm/esprit-test-statics-{}-{name}", std::process::id()))
    }

    #[test]
    fn static_sas_map_to_slots_and_back_to_engine_params() {
        let c = Config::from_yaml(YAML).unwrap();
        let out = slot_params(0, &c.dataplane.static_sas[0]);
        assert_eq!(out.transform, TransformId::AES_GCM_16);
        assert_eq!(out.key(), &(0u8..16).collect::<Vec<_>>()[..]);
        assert_eq!(out.salt, [0x10, 0x11, 0x12, 0x13]);
        assert_eq!(out.served_count, 1);
        let e = crate::pipeline::esp_params(&out).unwrap();
        assert!(matches!(e.mode, esp::Mode::Tunnel { .. }));
        let inb = slot_params(1, &c.dataplane.static_sas[1]);
        assert!(inb.flags.contains(SaFlags::ESN));
        assert!(inb.selectors_match("10.0.0.1".parse().unwrap(), "192.168.5.9".parse().unwrap(), 17, 1, 2));
        assert!(!inb.selectors_match("10.0.0.1".parse().unwrap(), "192.168.6.9".parse().unwrap(), 17, 1, 2));
        assert_eq!(crate::pipeline::esp_params(&inb).unwrap().suite, esp::Suite::AES256_GCM_16);
    }

    #[test]
    fn sync_keeps_unchanged_sas_and_replaces_changed_ones() {
        let c = Config::from_yaml(YAML).unwrap();
        let p = path("sync");
        let _ = std::fs::remove_file(&p);
        let r = sync(&p, 64, &c.dataplane.static_sas).unwrap();
        assert_eq!(r, SyncReport { kept: 0, installed: 2, deleted: 0 });
        let r = sync(&p, 64, &c.dataplane.static_sas).unwrap();
        assert_eq!(r, SyncReport { kept: 2, installed: 0, deleted: 0 }, "a restart keeps what did not change");
        let c2 = Config::from_yaml(&YAML.replace("0x2005", "0x2006")).unwrap();
        let r = sync(&p, 64, &c2.dataplane.static_sas).unwrap();
        assert_eq!(r, SyncReport { kept: 1, installed: 1, deleted: 1 });
        let r = sync(&p, 64, &c2.dataplane.static_sas[..1]).unwrap();
        assert_eq!(r, SyncReport { kept: 1, installed: 0, deleted: 1 });
        std::fs::remove_file(&p).unwrap();
    }

    /// An SA as esprit-ike installs them (cookie tag "IK").
    fn ike_sa(spi: u32) -> SaParams {
        let mut p = SaParams::zeroed();
        p.cookie = (0x494b << 48) | u64::from(spi);
        p.spi = spi;
        p.direction = TDir::INBOUND;
        p.mode = TMode::TUNNEL;
        p.transform = TransformId::AES_GCM_16;
        p.set_key(&[9; 16], [1, 2, 3, 4]);
        p.set_outer("172.16.2.5".parse().unwrap(), "172.16.1.5".parse().unwrap());
        p.initial_seq = 1;
        p
    }

    #[test]
    fn sync_runs_while_esprit_ike_holds_the_table_and_leaves_its_sas_alone() {
        let c = Config::from_yaml(YAML).unwrap();
        let p = path("beside-ike");
        let _ = std::fs::remove_file(&p);
        // esprit-ike is up first and keeps its writer for its whole life.
        let (mut ike, _) = Writer::open(&p, &TableConfig { capacity: 64, ..TableConfig::default() }).unwrap();
        let a = ike.install(&ike_sa(0x4000)).unwrap();
        let r = sync(&p, 64, &c.dataplane.static_sas).unwrap();
        assert_eq!(r, SyncReport { kept: 0, installed: 2, deleted: 0 }, "the dataplane starts beside esprit-ike");
        // esprit-ike goes on writing, and the dataplane restarts meanwhile.
        let b = ike.install(&ike_sa(0x4001)).unwrap();
        let r = sync(&p, 64, &c.dataplane.static_sas).unwrap();
        assert_eq!(r, SyncReport { kept: 2, installed: 0, deleted: 0 });
        // A config without static SAs removes the static ones only.
        let r = sync(&p, 64, &[]).unwrap();
        assert_eq!(r, SyncReport { kept: 0, installed: 0, deleted: 2 });
        ike.refresh().unwrap();
        assert_eq!(ike.live().map(|(id, _)| id).collect::<Vec<_>>(), vec![a, b]);
        // esprit-ike restarting beside the dataplane finds its SAs.
        drop(ike);
        sync(&p, 64, &c.dataplane.static_sas).unwrap();
        let (ike, _) = Writer::open(&p, &TableConfig { capacity: 64, ..TableConfig::default() }).unwrap();
        let ike_slots = ike.live().filter(|(_, s)| s.cookie >> 48 == 0x494b).count();
        let static_slots = ike.live().filter(|(_, s)| s.cookie & STATIC_COOKIE_MASK == STATIC_COOKIE).count();
        assert_eq!((ike_slots, static_slots), (2, 2));
        drop(ike);
        std::fs::remove_file(&p).unwrap();
    }
}
