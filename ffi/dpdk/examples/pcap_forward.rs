//! The minimal DPDK demo: forwards a capture through a `net_pcap` port
//! (rx_pcap → tx_pcap) on one core, testpmd-style, and prints the port
//! counters. `scripts/demo` runs it until the IKE demo replaces it.
//!
//! usage: pcap_forward IN.pcap OUT.pcap
use std::time::Instant;

use dpdk::{Burst, Eal, Mempool, Port, PortConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} IN.pcap OUT.pcap", args[0]);
        std::process::exit(2);
    }
    let vdev = format!("net_pcap0,rx_pcap={},tx_pcap={}", args[1], args[2]);
    let (eal, _) = Eal::init([
        "pcap_forward", "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-demo",
        "--log-level", "lib.eal:error", "--vdev", &vdev,
    ])?;
    let pool = Mempool::pktmbuf(&eal, "demo_pool", 4095, 256, 2176, 0)?;
    let port = Port::by_name(&eal, "net_pcap0")?;
    port.configure(&PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 512, tx_desc: 512, mempool: pool, promiscuous: false })?;
    port.start()?;
    let (mut rx, mut tx) = (port.rx_queue(0)?, port.tx_queue(0)?);
    let t0 = Instant::now();
    let (mut fwd, mut idle) = (0usize, 0u32);
    let mut b = Burst::new();
    while idle < 10_000 {
        if rx.rx_burst(&mut b) == 0 {
            idle += 1;
            continue;
        }
        idle = 0;
        fwd += tx.tx_burst(&mut b);
        b.clear(); // whatever the driver refused is dropped
    }
    let st = port.stats()?;
    println!(
        "port 0 ({}): rx {} pkts / {} bytes, tx {} pkts / {} bytes, forwarded {fwd} in {:?}",
        port.driver_name()?, st.ipackets, st.ibytes, st.opackets, st.obytes, t0.elapsed()
    );
    drop((rx, tx));
    port.close()?;
    Ok(())
}
