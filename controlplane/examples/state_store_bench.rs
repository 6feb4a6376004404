//! State store throughput (src/store.rs), release builds only:
//!
//!   cargo run --release -p esprit-controlplane --example state_store_bench -- N [BATCH] [DIR]
//!   cargo run --release -p esprit-controlplane --example state_store_bench -- N [BATCH] etcd:http://127.0.0.1:2379
//!
//! With `etcd:ENDPOINTS` the records go to etcd as a cluster node writes
//! them (src/cluster.rs: an owner key under the node's lease created with
//! each new record, fenced updates, packed into transactions within
//! etcd's limits); bytes per record are then etcd's database growth.
//!
//! Writes N IKE SA snapshots (one Child SA each, realistic sizes) sealed
//! into a fresh redb file in batches of BATCH (one batch per event-loop
//! turn in esprit-ike; default 256, the loop's burst), then rewrites all
//! of them (an exchange completed on every SA), then loads them back.
//! Prints records/s by wall clock and the process CPU time per record
//! (/proc/self/stat; robust to other load), and the file's size.
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use esprit_controlplane::cluster::ClusterNode;
use esprit_controlplane::etcd::EtcdKv;
use esprit_controlplane::store::{NodeKey, Persister, RedbStore, StateStore};
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
    let target = args.get(3).cloned().unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let etcd = target.strip_prefix("etcd:").map(|e| e.split(',').map(String::from).collect::<Vec<_>>());
    let path = std::path::PathBuf::from(&target).join(format!("esprit-store-bench-{}.redb", std::process::id()));
    let mut etcd_kv = None;
    let size = |kv: &mut Option<EtcdKv>| match kv {
        Some(kv) => kv.db_size().expect("etcd status"),
        None => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
    };
    let store: Box<dyn StateStore> = match &etcd {
        Some(endpoints) => {
            let kv = EtcdKv::connect(endpoints, Duration::from_secs(5)).expect("etcd");
            etcd_kv = Some(kv.clone());
            let node = ClusterNode::join(kv, &format!("/esprit-bench-{}", std::process::id()), "bench", 60).expect("join");
            Box::new(node)
        }
        None => {
            let _ = std::fs::remove_file(&path);
            Box::new(RedbStore::open(&path).expect("open"))
        }
    };
    let size0 = size(&mut etcd_kv);
    let mut p = Persister::new(store, &NodeKey::from_bytes([7; 32]));
    for (phase, gen) in [("setup (insert)", 1u32), ("one exchange each (update)", 2)] {
        let (w0, c0) = (Instant::now(), cpu());
        let mut batches = 0;
        let mut start = 0;
        let mut lat = Vec::new();
        let mut bytes = 0;
        while start < n {
            let end = (start + batch as u64).min(n);
            let put: Vec<IkeSaSnapshot> = (start..end).map(|i| snapshot(i, gen)).collect();
            let st = p.write(&Changes { put, delete: vec![] }, SystemTime::now()).expect("write");
            lat.push(st.took);
            bytes += st.bytes;
            batches += 1;
            start = end;
        }
        let (wall, cpu_t) = (w0.elapsed(), cpu() - c0);
        lat.sort();
        let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
        let sz = size(&mut etcd_kv);
        println!(
            "{} {phase}: {n} records in {batches} batches of {batch}: {:.0} records/s ({:.0} batches/s) wall {:.2} s, CPU {:.1} us/record, batch latency p50 {:.2} ms p99 {:.2} ms; sealed record {:.0} B; {} {:.1} MB ({:.0} B/record)",
            p.backend(),
            n as f64 / wall.as_secs_f64(),
            batches as f64 / wall.as_secs_f64(),
            wall.as_secs_f64(),
            cpu_t.as_secs_f64() * 1e6 / n as f64,
            pct(0.5),
            pct(0.99),
            bytes as f64 / n as f64,
            if etcd.is_some() { "etcd db grew" } else { "file" },
            (sz - size0.min(sz)) as f64 / 1e6,
            (sz - size0.min(sz)) as f64 / n as f64
        );
    }
    if etcd.is_none() {
        drop(p);
        p = Persister::new(Box::new(RedbStore::open(&path).expect("open")), &NodeKey::from_bytes([7; 32]));
    }
    let (w0, c0) = (Instant::now(), cpu());
    let (loaded, bad) = p.load(SystemTime::now()).expect("load");
    println!("load at start: {} records ({bad} bad) in {:.2} s wall, CPU {:.1} us/record", loaded.len(), w0.elapsed().as_secs_f64(), (cpu() - c0).as_secs_f64() * 1e6 / n as f64);
    assert_eq!(loaded.len() as u64, n);
    match etcd_kv {
        // The bench's keys go again (the etcd database keeps its size
        // until compacted and defragmented).
        Some(mut kv) => {
            if let Err(e) = kv.delete_prefix(format!("/esprit-bench-{}/", std::process::id()).as_bytes()) {
                eprintln!("clean-up of the bench's keys in etcd failed ({e}): delete /esprit-bench-{}/ by hand", std::process::id());
            }
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}
