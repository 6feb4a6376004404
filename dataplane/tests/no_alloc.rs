//! The worker's steady state allocates nothing (DESIGN §4): a real EAL, two
//! `net_ring` port pairs, static SAs both ways; after a warm-up, thousands of
//! packets go through the outbound and inbound pipelines while a counting
//! global allocator watches. As root (DPDK).
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;
use dpdk::{Burst, Eal, Mempool, Port, PortConfig};
use esprit_bench::pcapgen::Traffic;
use esprit_dataplane::config::Config;
use esprit_dataplane::l2::NeighbourTable;
use esprit_dataplane::metrics::DataplaneMetrics;
use esprit_dataplane::pipeline::{Env, Queues, Side, Worker, DROP_NAMES};
use esprit_dataplane::statics;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const KEY: &str = "2b7e151628aed2a6abf7158809cf4f3cdeadbeef";

#[test]
fn worker_steady_state_allocates_nothing() {
    let uid = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(uid.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")), "needs root (DPDK)");
    let table = format!("/dev/shm/esprit-noalloc-{}", std::process::id());
    // Outbound SA 0x1005 and the matching inbound SA 0x1005 (looped back).
    let cfg = Config::from_yaml(&format!(
        r#"
dataplane:
  ports: {{ outside: {{ device: x }}, inside: {{ device: y }} }}
  addresses: {{ outside: [172.16.1.5] }}
  static_sas:
    - {{ spi: 0x1005, direction: out, suite: aes-128-gcm, key: "{KEY}", src: 172.16.1.5, dst: 172.16.2.5, selectors: ["192.168.105.0/24"] }}
    - {{ spi: 0x1005, direction: in, suite: aes-128-gcm, key: "{KEY}", src: 172.16.1.5, dst: 172.16.2.5, selectors: ["192.168.5.0/24"] }}
"#
    ))
    .unwrap();
    statics::sync(std::path::Path::new(&table), 64, &cfg.dataplane.static_sas).unwrap();

    let (eal, _) = Eal::init(["t", "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-noalloc", "--log-level", "lib.eal:error"])
        .expect("EAL (root, DPDK installed)");
    let pool = Mempool::pktmbuf(&eal, "noalloc", 4095, 0, 2304, 0).unwrap();
    let (out_dp, out_peer) = Port::ring_pair(&eal, "na_out", 1024).unwrap();
    let (in_dp, in_peer) = Port::ring_pair(&eal, "na_in", 1024).unwrap();
    for p in [&out_dp, &out_peer, &in_dp, &in_peer] {
        p.configure(&PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 512, tx_desc: 512, mempool: pool, promiscuous: false }).unwrap();
        p.start().unwrap();
    }
    let neigh = NeighbourTable::new(64);
    neigh.learn("172.16.2.5".parse().unwrap(), [2, 0, 0, 0, 0, 2]);
    neigh.learn("192.168.105.1".parse().unwrap(), [2, 0, 0, 0, 0, 3]);
    let inboxes = vec![ArrayQueue::new(32)];
    let stop = AtomicBool::new(false);
    let policy = esprit_dataplane::policy::Policy::new(&cfg.dataplane);
    let env = Env {
        workers: 1,
        inboxes: &inboxes,
        neigh: &neigh,
        sides: [
            Side { mac: [2, 0, 0, 0, 1, 1], addrs: vec!["172.16.1.5".parse().unwrap()], gateway: None },
            Side { mac: [2, 0, 0, 0, 1, 2], addrs: vec!["192.168.5.254".parse().unwrap()], gateway: Some("192.168.105.1".parse().unwrap()) },
        ],
        has_punt: false,
        backend: esprit_dataplane::crypto::BackendChoice::Soft(esp::Backend::FASTEST),
        mb: None,
        pool,
        stop: &stop,
        policy: &policy,
    };
    let q = Queues {
        rx: [Some(out_dp.rx_queue(0).unwrap()), Some(in_dp.rx_queue(0).unwrap()), None],
        tx: [Some(out_dp.tx_queue(0).unwrap()), Some(in_dp.tx_queue(0).unwrap()), None],
    };
    let reader = sa_table::Reader::attach(std::path::Path::new(&table)).unwrap();
    let metrics = DataplaneMetrics::new(false);
    let mut w = Worker::new(0, &env, q, reader, metrics.worker(0, &DROP_NAMES));

    let mut t = Traffic::anchor(200);
    t.src = "192.168.5.2".parse().unwrap();
    let frames: Vec<Vec<u8>> = (0..32).map(|i| t.frame(i)).collect();
    let (mut in_tx, mut out_rx) = (in_peer.tx_queue(0).unwrap(), out_peer.rx_queue(0).unwrap());
    let (mut out_tx, mut in_rx) = (out_peer.tx_queue(0).unwrap(), in_peer.rx_queue(0).unwrap());
    let mut round = |count: bool| -> (usize, usize) {
        // Plaintext in, through the outbound pipeline, ESP out...
        let mut b = Burst::new();
        for f in &frames {
            b.push(pool.alloc_from(f).unwrap()).unwrap();
        }
        COUNTING.store(count, Ordering::SeqCst);
        assert_eq!(in_tx.tx_burst(&mut b), 32);
        w.poll_once();
        w.follow_table();
        let mut esp = Burst::new();
        let n_esp = out_rx.rx_burst(&mut esp);
        // ...and that ESP back in, through the inbound pipeline.
        assert_eq!(out_tx.tx_burst(&mut esp), n_esp);
        w.poll_once();
        w.metrics.flush();
        let mut plain = Burst::new();
        let n_plain = in_rx.rx_burst(&mut plain);
        COUNTING.store(false, Ordering::SeqCst);
        (n_esp, n_plain)
    };
    for _ in 0..10 {
        round(false);
    }
    for i in 0..200 {
        let (e, p) = round(true);
        assert_eq!((e, p), (32, 32), "round {i}: every packet through both pipelines");
    }
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "allocations in the worker's steady state");
    drop(w);
    std::fs::remove_file(&table).ok();
}
