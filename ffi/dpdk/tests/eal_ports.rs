//! EAL, mempools, mbufs and ethdev ports on virtual devices (no NIC, no
//! hugepages; as root).
mod common;

use dpdk::{register_thread, Burst, Eal, Mempool, Port, PortConfig, MAX_BURST};

fn eal() -> Eal {
    common::eal("esprit-t-ports")
}

fn cfg(pool: Mempool) -> PortConfig {
    PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 256, tx_desc: 256, mempool: pool, promiscuous: false }
}

#[test]
fn eal_starts_without_hugepages_or_pci() {
    let eal = eal();
    assert!(eal.lcore_count() >= 1);
}

#[test]
fn eal_refuses_a_second_start() {
    let _ = eal();
    let err = Eal::init(["again", "--no-huge"]).expect_err("second EAL start must fail");
    assert_eq!(err.op, "rte_eal_init");
    assert!(err.to_string().contains("already started"), "{err}");
}

#[test]
fn ring_pair_delivers_a_burst_byte_identical() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_ring_pool", 1023, 0, 2176, 0).unwrap();
    let (a, b) = Port::ring_pair(&eal, "t_pair", 1024).unwrap();
    assert_eq!(a.driver_name().unwrap(), "net_ring");
    for p in [&a, &b] {
        p.configure(&cfg(pool)).unwrap();
        p.start().unwrap();
    }
    let sent: Vec<Vec<u8>> = (0..32).map(|i| common::packet(7, i, 60 + i * 37)).collect();
    let mut burst = Burst::new();
    for p in &sent {
        burst.push(pool.alloc_from(p).unwrap()).unwrap();
    }
    let mut txq = a.tx_queue(0).unwrap();
    assert_eq!(txq.tx_burst(&mut burst), 32);
    assert!(burst.is_empty());

    let mut rxq = b.rx_queue(0).unwrap();
    let mut got = Burst::new();
    for _ in 0..100 {
        rxq.rx_burst(&mut got);
        if got.len() == 32 {
            break;
        }
    }
    assert_eq!(got.len(), 32, "all 32 packets arrive on the peer");
    for (m, want) in got.as_slice().iter().zip(&sent) {
        assert_eq!(m.data(), &want[..]);
    }
    // Nothing loops back to the sender.
    let mut none = Burst::new();
    assert_eq!(a.rx_queue(0).unwrap().rx_burst(&mut none), 0);
    let st = a.stats().unwrap();
    assert_eq!(st.opackets, 32);
    // (net_ring counts packets, not bytes.)
    drop(got);
    assert_eq!(pool.available(), 1023, "every mbuf went back to its pool");
}

#[test]
fn an_rx_queue_limited_to_8_packets_never_returns_more() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_burst_pool", 1023, 0, 2176, 0).unwrap();
    let (a, b) = Port::ring_pair(&eal, "t_burst", 1024).unwrap();
    for p in [&a, &b] {
        p.configure(&cfg(pool)).unwrap();
        p.start().unwrap();
    }
    let mut txq = a.tx_queue(0).unwrap();
    for round in 0..2 {
        let mut burst = Burst::new();
        for i in 0..MAX_BURST {
            burst.push(pool.alloc_from(&common::packet(round, i, 64)).unwrap()).unwrap();
        }
        assert_eq!(txq.tx_burst(&mut burst), MAX_BURST);
    }
    let mut rxq = b.rx_queue(0).unwrap();
    assert_eq!(rxq.burst_pkts(), MAX_BURST as u16, "the driver's whole burst by default");
    rxq.set_burst_pkts(8);
    let mut sizes = Vec::new();
    for _ in 0..100 {
        let mut got = Burst::new();
        match rxq.rx_burst(&mut got) {
            0 => break,
            n => sizes.push(n),
        }
    }
    assert_eq!(sizes, vec![8; 2 * MAX_BURST / 8], "{} packets waiting, asked 8 at a time", 2 * MAX_BURST);
    // Out-of-range limits are clamped, never zero (a receive that asks for
    // nothing would look like an idle port).
    rxq.set_burst_pkts(0);
    assert_eq!(rxq.burst_pkts(), 1);
    rxq.set_burst_pkts(1000);
    assert_eq!(rxq.burst_pkts(), MAX_BURST as u16);
}

#[test]
fn net_null_vdev_probes_and_counts() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_null_pool", 511, 0, 2176, 0).unwrap();
    let port = Port::probe(&eal, "net_null0,size=128").unwrap();
    assert_eq!(port.driver_name().unwrap(), "net_null");
    port.configure(&cfg(pool)).unwrap();
    port.start().unwrap();
    assert!(port.link().unwrap().up);
    let mut rx = port.rx_queue(0).unwrap();
    let mut b = Burst::new();
    assert_eq!(rx.rx_burst(&mut b), MAX_BURST, "net_null fills every receive");
    assert!(b.as_slice().iter().all(|m| m.len() == 128));
    let mut tx = port.tx_queue(0).unwrap();
    assert_eq!(tx.tx_burst(&mut b), MAX_BURST);
    let st = port.stats().unwrap();
    assert_eq!((st.ipackets, st.opackets), (MAX_BURST as u64, MAX_BURST as u64));
}

#[test]
fn probing_an_unknown_driver_names_the_device() {
    let eal = eal();
    let err = Port::probe(&eal, "net_nosuchdriver0").expect_err("unknown driver");
    let s = err.to_string();
    assert!(s.contains("rte_dev_probe") && s.contains("net_nosuchdriver0"), "{s}");
}

#[test]
fn mempool_exhaustion_is_an_error_not_a_crash() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_small_pool", 63, 0, 2176, 0).unwrap();
    let mut held = Vec::new();
    let err = loop {
        match pool.alloc() {
            Ok(m) => held.push(m),
            Err(e) => break e,
        }
        assert!(held.len() <= 63, "pool hands out more than it has");
    };
    assert_eq!(held.len(), 63);
    assert_eq!(err.op, "rte_pktmbuf_alloc");
    let mut b = Burst::new();
    let bulk = b.alloc_bulk(&pool, 8).expect_err("bulk alloc from an empty pool");
    assert_eq!(bulk.op, "rte_pktmbuf_alloc_bulk");
    assert!(b.is_empty(), "a failed bulk alloc leaves the burst empty");
    drop(held);
    assert_eq!(pool.available(), 63);
    b.alloc_bulk(&pool, 8).unwrap();
    assert_eq!(b.len(), 8);
}

#[test]
fn duplicate_mempool_name_is_refused() {
    let eal = eal();
    Mempool::pktmbuf(&eal, "t_dup_pool", 63, 0, 2176, 0).unwrap();
    let err = Mempool::pktmbuf(&eal, "t_dup_pool", 63, 0, 2176, 0).expect_err("same name twice");
    assert!(err.to_string().contains("t_dup_pool"), "{err}");
}

#[test]
fn mbuf_grows_and_shrinks_within_its_room() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_mbuf_pool", 63, 0, 2176, 0).unwrap();
    let mut m = pool.alloc_from(b"payload").unwrap();
    let head = m.headroom();
    assert_eq!(head, 128, "RTE_PKTMBUF_HEADROOM");
    m.prepend(4).unwrap().copy_from_slice(b"HDR:");
    m.append(3).unwrap().copy_from_slice(b"!!!");
    assert_eq!(m.data(), b"HDR:payload!!!");
    assert_eq!(m.pkt_len(), 14);
    assert!(m.adj(4));
    assert!(m.trim(3));
    assert_eq!(m.data(), b"payload");
    assert!(m.prepend(head + 4 + 1).is_none(), "prepend past the headroom fails");
    assert!(m.append(m.tailroom() + 1).is_none(), "append past the tailroom fails");
    assert!(!m.adj(100) && !m.trim(100));
    m.data_mut()[0] = b'P';
    assert_eq!(m.data(), b"Payload");
    assert!(pool.alloc_from(&vec![0u8; 5000]).is_err(), "too large for one mbuf");
}

#[test]
fn burst_retain_frees_what_it_drops() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_retain_pool", 63, 0, 2176, 0).unwrap();
    let mut b = Burst::new();
    for i in 0..10u8 {
        b.push(pool.alloc_from(&[i]).unwrap()).unwrap();
    }
    b.retain(|m| m.data()[0] % 2 == 0);
    assert_eq!(b.as_slice().iter().map(|m| m.data()[0]).collect::<Vec<_>>(), vec![0, 2, 4, 6, 8]);
    assert_eq!(pool.available(), 63 - 5);
    drop(b);
    assert_eq!(pool.available(), 63);
}

#[test]
fn a_queue_is_taken_once() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_q_pool", 255, 0, 2176, 0).unwrap();
    let port = Port::probe(&eal, "net_null1").unwrap();
    port.configure(&cfg(pool)).unwrap();
    let q = port.rx_queue(0).unwrap();
    let err = port.rx_queue(0).expect_err("queue 0 is taken");
    assert!(err.to_string().contains("already taken"), "{err}");
    drop(q);
    port.rx_queue(0).expect("free again after drop");
}

#[test]
fn a_registered_thread_gets_an_lcore_id() {
    let eal = eal();
    std::thread::spawn(move || {
        assert_eq!(dpdk::lcore_id(), None, "a fresh thread is unknown to DPDK");
        let reg = register_thread(&eal).unwrap();
        assert_eq!(dpdk::lcore_id(), Some(reg.lcore()));
        drop(reg);
        assert_eq!(dpdk::lcore_id(), None);
    })
    .join()
    .unwrap();
}

#[test]
fn mbuf_buffer_view_and_set_data_move_the_packet() {
    let eal = eal();
    let pool = Mempool::pktmbuf(&eal, "t_setdata_pool", 63, 0, 2176, 0).unwrap();
    let mut m = pool.alloc_from(b"inner").unwrap();
    let (buf, off, len) = m.buffer_mut();
    assert_eq!((off, len), (128, 5));
    assert_eq!(&buf[off..off + len], b"inner");
    buf[off - 2..off].copy_from_slice(b"<<");
    buf[off + len..off + len + 2].copy_from_slice(b">>");
    let total = buf.len();
    assert!(m.set_data(off - 2, len + 4));
    assert_eq!(m.data(), b"<<inner>>");
    assert_eq!(m.pkt_len(), 9);
    assert!(!m.set_data(total - 1, 2), "past the end of the buffer");
    assert_eq!(m.data(), b"<<inner>>", "a refused set_data changes nothing");
    let mut b = Burst::new();
    b.push(m).unwrap();
    b.push(pool.alloc_from(b"two").unwrap()).unwrap();
    let mut out: [Option<dpdk::Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
    assert_eq!(b.drain_into(&mut out), 2);
    assert!(b.is_empty());
    assert_eq!(out[1].as_ref().unwrap().data(), b"two");
}
