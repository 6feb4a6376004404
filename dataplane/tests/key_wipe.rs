//! Keys are wiped when they die, in the worker: static SAs reach a worker
//! through the table's journal (a batch that overflows the 16 changes it
//! copies at once, so the rebuild path runs too), it keys its contexts,
//! they are deleted, and the worker goes. Meanwhile every block handed
//! back to the heap is searched for the key, on each software backend
//! (ipsec-mb's keys live in C allocations, wiped by imb.c and DPDK). As
//! root (DPDK).
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;
use dpdk::{Eal, Mempool, Port, PortConfig};
use esprit_dataplane::config::Config;
use esprit_dataplane::crypto::BackendChoice;
use esprit_dataplane::l2::NeighbourTable;
use esprit_dataplane::metrics::DataplaneMetrics;
use esprit_dataplane::pipeline::{Env, Queues, Side, Worker, DROP_NAMES};
use esprit_dataplane::statics;

/// The raw key of every SA here (hex in the YAML below, then its salt).
const KEY: [u8; 16] = [0x3c, 0x91, 0x5e, 0x07, 0xd2, 0x6a, 0xb8, 0x14, 0xe9, 0x40, 0x7f, 0x2d, 0xc6, 0x83, 0x1b, 0xa5];
const SALT: &str = "5a17f00d";

static SEARCHING: AtomicBool = AtomicBool::new(false);
static FREED: AtomicU64 = AtomicU64::new(0);
static FOUND: AtomicU64 = AtomicU64::new(0);

struct Searching;

// SAFETY: `alloc` and `dealloc` forward to `System` unchanged; `dealloc`
// first reads the block it is given, which the caller still owns. The
// default `realloc` goes through both, so a moved block's old copy is
// searched too.
unsafe impl GlobalAlloc for Searching {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if SEARCHING.load(Ordering::Relaxed) {
            // SAFETY: `p` is a live block of `l.size()` octets.
            let block = unsafe { std::slice::from_raw_parts(p, l.size()) };
            FREED.fetch_add(1, Ordering::Relaxed);
            if block.windows(KEY.len()).any(|w| w == KEY) {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Searching = Searching;

fn searched(f: impl FnOnce()) {
    SEARCHING.store(true, Ordering::SeqCst);
    f();
    SEARCHING.store(false, Ordering::SeqCst);
}

/// `n` pairs of static SAs (out and in), all with [`KEY`]; `suite` by name.
fn config(n: usize, suite: &str, key_hex: &str) -> Config {
    let mut sas = String::new();
    for i in 0..n {
        sas += &format!(
            "    - {{ spi: {}, direction: out, suite: {suite}, key: \"{key_hex}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"10.{i}.0.0/16\"] }}\n",
            0x1000 + i
        );
        sas += &format!(
            "    - {{ spi: {}, direction: in, suite: {suite}, key: \"{key_hex}\", src: 172.16.2.5, dst: 172.16.1.5, selectors: [\"10.{i}.0.0/16\"] }}\n",
            0x2000 + i
        );
    }
    let yaml = format!(
        "dataplane:\n  ports: {{ outside: {{ device: x }}, inside: {{ device: y }} }}\n  addresses: {{ outside: [172.16.1.5] }}\n  static_sas:\n{sas}"
    );
    Config::from_yaml(&yaml).unwrap()
}

#[test]
fn worker_contexts_and_journal_copies_leave_no_key_in_freed_memory() {
    let uid = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(uid.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")), "needs root (DPDK)");
    let (eal, _) = Eal::init(["t", "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-keywipe", "--log-level", "lib.eal:error"])
        .expect("EAL (root, DPDK installed)");
    let pool = Mempool::pktmbuf(&eal, "keywipe", 1023, 0, 2304, 0).unwrap();
    let (out_dp, out_peer) = Port::ring_pair(&eal, "kw_out", 256).unwrap();
    let (in_dp, in_peer) = Port::ring_pair(&eal, "kw_in", 256).unwrap();
    for p in [&out_dp, &out_peer, &in_dp, &in_peer] {
        p.configure(&PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 256, tx_desc: 256, mempool: pool, promiscuous: false }).unwrap();
        p.start().unwrap();
    }
    let neigh = NeighbourTable::new(16);
    let inboxes = vec![ArrayQueue::new(32)];
    let stop = AtomicBool::new(false);
    // No SPD section: every packet goes to an SA whose selectors contain it.
    let policy = esprit_dataplane::policy::Policy::new(&config(0, "aes-128-gcm", "").dataplane);
    // The key must be findable: this copy is freed during a search.
    let key_hex = hex::encode(KEY) + SALT;
    searched(|| drop(std::hint::black_box(KEY.to_vec())));
    assert_eq!(FOUND.swap(0, Ordering::SeqCst), 1, "the search finds a key left in freed memory");

    let mut runs = 0;
    for (backend, suite) in [(esp::Backend::Ring, "aes-128-gcm"), (esp::Backend::RustCrypto, "aes-128-gcm")] {
        let table = std::path::PathBuf::from(format!("/dev/shm/esprit-keywipe-{}-{}", std::process::id(), backend.name()));
        let _ = std::fs::remove_file(&table);
        statics::sync(&table, 64, &[]).unwrap();
        let env = Env {
            workers: 1,
            inboxes: &inboxes,
            neigh: &neigh,
            sides: [
                Side { mac: [2, 0, 0, 0, 1, 1], addrs: vec!["172.16.1.5".parse().unwrap()], gateway: None },
                Side { mac: [2, 0, 0, 0, 1, 2], addrs: vec!["10.0.0.254".parse().unwrap()], gateway: None },
            ],
            has_punt: false,
            backend: BackendChoice::Soft(backend),
            mb: None,
            pool,
            stop: &stop,
            policy: &policy,
        };
        let q = Queues {
            rx: [Some(out_dp.rx_queue(0).unwrap()), Some(in_dp.rx_queue(0).unwrap()), None],
            tx: [Some(out_dp.tx_queue(0).unwrap()), Some(in_dp.tx_queue(0).unwrap()), None],
        };
        let reader = sa_table::Reader::attach(&table).unwrap();
        let metrics = DataplaneMetrics::new(false);
        let mut w = Worker::new(0, &env, q, reader, metrics.worker(0, &DROP_NAMES));
        // A few changes (copied out of the journal in one batch), then 20
        // pairs at once (more than the batch: the rebuild path), then none.
        for pairs in [3usize, 20, 0] {
            statics::sync(&table, 64, &config(pairs, suite, &key_hex).dataplane.static_sas).unwrap();
            let before = FREED.load(Ordering::SeqCst);
            searched(|| w.follow_table());
            // The rebuild and the deletion drop contexts.
            if pairs != 3 {
                assert!(FREED.load(Ordering::SeqCst) > before + 6, "{}: contexts dropped under the search", backend.name());
            }
        }
        searched(|| drop(w));
        drop(out_peer.rx_queue(0));
        drop(in_peer.rx_queue(0));
        std::fs::remove_file(&table).ok();
        runs += 1;
        assert_eq!(FOUND.load(Ordering::SeqCst), 0, "{}: a block freed by the worker still held the key", backend.name());
    }
    assert_eq!(runs, 2);
    assert!(FREED.load(Ordering::SeqCst) > 40, "contexts were freed under the search");
}
