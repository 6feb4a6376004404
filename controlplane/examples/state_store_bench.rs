//! State store throughput (src/store.rs), release builds only:
//!
//!   cargo run --release -p esprit-controlplane --example state_store_bench -- N [BATCH] [DIR]
//!
//! Writes N IKE SA snapshots (one Child SA each, realistic sizes) sealed
//! into a fresh redb file in batches of BATCH (one batch per event-loop
//! turn in esprit-ike; default 256, the loop's burst), then rewrites all
//! of them (an exchange completed on every SA), then loads them back.
//! Prints records/s by wall clock and the process CPU time per record
//! (/proc/self/stat; robust to other load), and the file's size.
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use esprit_controlplane::store::{NodeKey, Persister, RedbStore};
use ike_proto::snapshot::{Changes, ChildSnapshot, IkeSaSnapshot};
use ike_proto::{EspSuite, Identity, IkeSuite, Mode, TrafficSelector};
use ike_wire::{EncrId, IntegId, KeId, PrfId};

fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // utime and stime are fields 14 and 15 (1-based), in clock ticks
    // (100/s); after the ')' the state letter (field 3) is skipped by the
    // parse, so field n is at index n - 4.
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn snapshot(i: u64, gen: u32) -> IkeSaSnapshot {
    let k = |t: u8| ike_crypto::Secret::new((0..32).map(|j| t ^ (j as u8) ^ (i as u8)).collect());
    let ts = TrafficSelector::prefix("192.168.0.0".parse().unwrap(), 16).unwrap();
    let vip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | (i as u32 & 0xffffff)));
    IkeSaSnapshot {
        handle: i,
        connection: "rw".into(),
        initiator: false,
        spi_i: 0x1000_0000_0000_0000 | i,
        spi_r: 0x2000_0000_0000_0000 | i,
        local: "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
        remote: SocketAddr::new(std::net::Ipv4Addr::from(0xc633_0000 | (i as u32 & 0xffff)).into(), 4500),
        nat_local: false,
        nat_remote: true,
        suite: IkeSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), prf: PrfId::PRF_HMAC_SHA2_256, integ: IntegId::NONE, ke: KeId::CURVE25519, additional_ke: vec![], kwa: None },
        sk_d: k(1),
        sk_ei: k(2),
        sk_ai: ike_crypto::Secret::new(Vec::new()),
        sk_er: k(3),
        sk_ar: ike_crypto::Secret::new(Vec::new()),
        sk_pi: k(4),
        sk_pr: k(5),
        next_request_id: gen,
        next_expected_id: gen,
        pending_request: None,
        mid_sync: true,
        remote_id: Some(Identity::Email(format!("user{i}@clients.example.net"))),
        peer_hashes: vec![2, 3, 4, 5],
        leases: vec![vip],
        ppk_used: false,
        fragment_len: Some(1280),
        rekey_in: Some(Duration::from_secs(14_000)),
        children: vec![ChildSnapshot {
            handle: i,
            spi_in: 0xc000_0000 | i as u32,
            spi_out: 0xd000_0000 | i as u32,
            suite: EspSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: false, ke: None, additional_ke: [KeId::NONE; 7] },
            mode: Mode::Tunnel,
            ts_local: vec![ts],
            ts_remote: vec![TrafficSelector::host(vip)],
            sec_label: None,
            compression: None,
            age: Duration::from_secs(100),
            rekey_in: Some(Duration::from_secs(3000)),
        }],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let batch: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(256);
    let dir = std::path::PathBuf::from(args.get(3).cloned().unwrap_or_else(|| std::env::temp_dir().display().to_string()));
    let path = dir.join(format!("esprit-store-bench-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut p = Persister::new(Box::new(RedbStore::open(&path).expect("open")), &NodeKey::from_bytes([7; 32]));
    for (phase, gen) in [("setup (insert)", 1u32), ("one exchange each (update)", 2)] {
        let (w0, c0) = (Instant::now(), cpu());
        let mut batches = 0;
        let mut start = 0;
        while start < n {
            let end = (start + batch as u64).min(n);
            let put: Vec<IkeSaSnapshot> = (start..end).map(|i| snapshot(i, gen)).collect();
            p.write(&Changes { put, delete: vec![] }, SystemTime::now()).expect("write");
            batches += 1;
            start = end;
        }
        let (wall, cpu_t) = (w0.elapsed(), cpu() - c0);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{phase}: {n} records in {batches} batches of {batch}: {:.0} records/s ({:.0} batches/s) wall {:.2} s, CPU {:.1} us/record; file {:.1} MB ({:.0} B/record)",
            n as f64 / wall.as_secs_f64(),
            batches as f64 / wall.as_secs_f64(),
            wall.as_secs_f64(),
            cpu_t.as_secs_f64() * 1e6 / n as f64,
            size as f64 / 1e6,
            size as f64 / n as f64
        );
    }
    drop(p);
    let mut p = Persister::new(Box::new(RedbStore::open(&path).expect("open")), &NodeKey::from_bytes([7; 32]));
    let (w0, c0) = (Instant::now(), cpu());
    let (loaded, bad) = p.load(SystemTime::now()).expect("load");
    println!("load at start: {} records ({bad} bad) in {:.2} s wall, CPU {:.1} us/record", loaded.len(), w0.elapsed().as_secs_f64(), (cpu() - c0).as_secs_f64() * 1e6 / n as f64);
    assert_eq!(loaded.len() as u64, n);
    let _ = std::fs::remove_file(&path);
}
