//! `net_pcap`: a capture replayed through a port comes out identical.
mod common;

use dpdk::{Burst, Mempool, Port, PortConfig};

#[test]
fn net_pcap_round_trips_a_capture() {
    let eal = common::eal("esprit-t-pcap");
    let dir = std::env::temp_dir().join(format!("esprit-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rx_path, tx_path) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let sent: Vec<Vec<u8>> = (0..200).map(|i| common::packet(3, i, 60 + (i * 7) % 1400)).collect();
    common::write_pcap(&rx_path, &sent);

    let pool = Mempool::pktmbuf(&eal, "t_pcap_pool", 1023, 0, 2176, 0).unwrap();
    let port = Port::probe(&eal, &format!("net_pcap0,rx_pcap={},tx_pcap={}", rx_path.display(), tx_path.display())).unwrap();
    assert_eq!(port.driver_name().unwrap(), "net_pcap");
    port.configure(&PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 256, tx_desc: 256, mempool: pool, promiscuous: false })
        .unwrap();
    port.start().unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let mut tx = port.tx_queue(0).unwrap();
    let mut forwarded = 0;
    let mut idle = 0;
    while forwarded < sent.len() && idle < 1000 {
        let mut b = Burst::new();
        if rx.rx_burst(&mut b) == 0 {
            idle += 1;
            continue;
        }
        let n = b.len();
        assert_eq!(tx.tx_burst(&mut b), n, "net_pcap writes every packet");
        forwarded += n;
    }
    assert_eq!(forwarded, sent.len());
    drop((rx, tx));
    port.close().unwrap(); // flushes and closes the tx pcap
    let got = common::read_pcap(&tx_path);
    assert_eq!(got.len(), sent.len());
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "packet {i} differs");
    }
    std::fs::remove_dir_all(&dir).ok();
}
