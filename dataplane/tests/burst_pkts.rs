//! `dataplane.workers.burst_pkts` limits every receive of a worker's queues:
//! the ports are opened from the configuration as the binary opens them, a
//! `net_ring` vdev (which loops what it sends back to its receive side) is
//! filled with more than a burst, and the worker's RX queue hands it out
//! no more than `burst_pkts` at a time. As root (DPDK).
use dpdk::{Burst, Eal, Mempool};
use esprit_dataplane::config::Config;
use esprit_dataplane::ports::{self, OUTSIDE};

#[test]
fn a_worker_receives_at_most_burst_pkts_per_call() {
    let uid = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(uid.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")), "needs root (DPDK)");
    let cfg = Config::from_yaml(
        r#"
dataplane:
  ports: { outside: { device: "net_ring_burst0", rx_desc: 256, tx_desc: 256 }, inside: { device: "net_null_burst0,no-rx=1" } }
  addresses: { outside: [172.16.1.5] }
  workers: { count: 1, burst_pkts: 8 }
"#,
    )
    .unwrap();
    let d = &cfg.dataplane;
    let prefix = format!("esprit-burst-{}", std::process::id());
    let (eal, _) = Eal::init(["esprit-test", "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", &prefix, "--log-level", "lib.eal:error"]).unwrap();
    let pool = Mempool::pktmbuf(&eal, "burst_pool", ports::pool_size(d), 0, 2176, 0).unwrap();
    let opened = ports::open_ports(&eal, d, pool).unwrap();
    let mut q = ports::worker_queues(&opened, 0, d.workers.burst_pkts).unwrap();
    let mut b = Burst::new();
    for i in 0..40u8 {
        b.push(pool.alloc_from(&[i; 64]).unwrap()).unwrap();
    }
    assert_eq!(q.tx[OUTSIDE].as_mut().unwrap().tx_burst(&mut b), 40);
    let rx = q.rx[OUTSIDE].as_mut().unwrap();
    let mut sizes = Vec::new();
    loop {
        let mut got = Burst::new();
        match rx.rx_burst(&mut got) {
            0 => break,
            n => sizes.push(n),
        }
    }
    assert_eq!(sizes, vec![8; 5], "40 packets at most 8 per receive");
}
