//! Encapsulate then decapsulate through the burst API: every suite, ESN on
//! and off, tunnel (IPv4/IPv6 outer x IPv4/IPv6 inner) and transport mode
//! (IPv4, IPv6 with extension headers), with and without UDP encapsulation;
//! plus the ways a packet must be dropped and the counter each one hits.

mod common;

use common::*;
use esp::{
    classify, open_burst, seal_burst, AeadJob, Backend, BatchAead, DropCounters, DropReason,
    InboundSa, OutboundSa, PktBuf, SaEvent, SaParams, Suite, TfcPadding,
};
use esp_wire::{IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket};

fn seal_one(p: &Pair, inner: &[u8]) -> Vec<u8> {
    let mut pkts = [PktBuf::from_data(inner, 128, 1024)];
    let mut v = [Err(DropReason::NotEsp)];
    seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
    v[0].unwrap();
    pkts[0].data().to_vec()
}

fn open_one(p: &mut Pair, wire: &[u8]) -> Result<(Vec<u8>, esp::Decapsulated), DropReason> {
    let mut pkts = [PktBuf::from_data(wire, 0, 0)];
    let mut v = [Err(DropReason::NotEsp)];
    open_burst(&mut p.inb, &p.open, &mut pkts, &mut v);
    v[0].map(|d| (pkts[0].data().to_vec(), d))
}

#[test]
fn round_trips_every_suite_mode_family_and_encapsulation() {
    let inners: [(&str, Vec<u8>); 3] = [
        ("v4", udp_v4(100)),
        ("v6", udp_v6(100, false)),
        ("v6ext", udp_v6(37, true)),
    ];
    for suite in Suite::ALL {
        for esn in [false, true] {
            for udp in [false, true] {
                for mode in [None, Some(false), Some(true)] {
                    let mut p = pair(&params(suite, esn, mode, udp), Backend::FASTEST);
                    for (name, inner) in &inners {
                        let wire = seal_one(&p, inner);
                        let loc = classify(&wire).unwrap();
                        assert_eq!(loc.udp, udp);
                        assert_eq!(loc.spi, 0x1000_0001);
                        let (out, d) = open_one(&mut p, &wire).unwrap_or_else(|r| {
                            panic!("{} esn={esn} udp={udp} {mode:?} {name}: {r}", suite.name())
                        });
                        assert_eq!(
                            &out,
                            inner,
                            "{} esn={esn} udp={udp} {mode:?} {name}",
                            suite.name()
                        );
                        if mode.is_some() {
                            let nh = if *name == "v4" {
                                IpProtocol::IPV4
                            } else {
                                IpProtocol::IPV6
                            };
                            assert_eq!(d.next_header, nh);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn tunnel_header_carries_lengths_checksums_and_inner_dscp() {
    for udp in [false, true] {
        let p = pair(
            &params(Suite::AES128_GCM_16, false, Some(false), udp),
            Backend::FASTEST,
        );
        let wire = seal_one(&p, &udp_v4(50));
        let ip = Ipv4Packet::new_checked(&wire[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len(), wire.len());
        assert_eq!(ip.dscp_ecn(), 0xb8);
        assert_eq!(ip.src_addr(), V4_A);
        // 20 outer + (8 UDP) + 8 ESP + 8 IV + 78 inner + 0 pad + 2 + 16 ICV.
        assert_eq!(
            wire.len(),
            20 + if udp { 8 } else { 0 } + 8 + 8 + 78 + 2 + 16
        );
        if udp {
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((u.src_port(), u.dst_port(), u.checksum()), (4500, 4500, 0));
        }
        let p6 = pair(
            &params(Suite::AES128_GCM_16, false, Some(true), udp),
            Backend::FASTEST,
        );
        let wire = seal_one(&p6, &udp_v4(50));
        let ip = Ipv6Packet::new_checked(&wire[..]).unwrap();
        assert_eq!(ip.total_len(), wire.len());
        if udp {
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(u.checksum() != 0 && u.verify_checksum(V6_A.into(), V6_B.into()));
        }
    }
}

#[test]
fn implicit_iv_saves_eight_octets() {
    let a = seal_one(
        &pair(
            &params(Suite::AES256_GCM_16, false, Some(false), false),
            Backend::FASTEST,
        ),
        &udp_v4(10),
    );
    let b = seal_one(
        &pair(
            &params(Suite::AES256_GCM_16_IIV, false, Some(false), false),
            Backend::FASTEST,
        ),
        &udp_v4(10),
    );
    assert_eq!(a.len(), b.len() + 8);
}

#[test]
fn pads_to_four_octets_with_one_two_three() {
    for len in 0..8 {
        let p = pair(
            &params(Suite::CHACHA20_POLY1305, false, Some(false), false),
            Backend::RustCrypto,
        );
        let mut pkt = PktBuf::from_data(&udp_v4(len), 64, 64);
        let op = p.out.prepare(&mut pkt, 1).unwrap();
        let text = &pkt.data()[op.op.text_range()];
        assert_eq!(text.len() % 4, 0);
        let pad = usize::from(text[text.len() - 2]);
        assert!(pad < 4);
        assert_eq!(
            &text[text.len() - 2 - pad..text.len() - 2],
            &[1, 2, 3][..pad]
        );
    }
}

#[test]
fn tfc_padding_is_added_and_stripped() {
    let mut prm = params(Suite::AES128_GCM_16, false, Some(false), false);
    prm.tfc = TfcPadding::PadTo(600);
    let mut p = pair(&prm, Backend::FASTEST);
    let inner = udp_v4(10);
    let wire = seal_one(&p, &inner);
    assert!(wire.len() >= 20 + 16 + 600 + 2 + 16);
    assert_eq!(open_one(&mut p, &wire).unwrap().0, inner);
    let mut transport = params(Suite::AES128_GCM_16, false, None, false);
    transport.tfc = TfcPadding::PadTo(600);
    assert_eq!(
        OutboundSa::new(&transport).err(),
        Some(esp::SaError::TfcInTransportMode)
    );
}

#[test]
fn drops_dummy_packets_silently_and_counts_them() {
    let mut p = pair(
        &params(Suite::CHACHA20_POLY1305_IIV, true, Some(true), true),
        Backend::FASTEST,
    );
    let mut pkt = PktBuf::from_data(&[], 128, 256);
    let op = p.out.prepare_dummy(&mut pkt, 40, 1).unwrap();
    let mut jobs = [AeadJob {
        op: op.op,
        buf: pkt.data_mut(),
        ok: false,
    }];
    p.seal.seal(&mut jobs);
    p.out.finish(&mut pkt, &op);
    let mut counters = DropCounters::default();
    let r = open_one(&mut p, pkt.data()).unwrap_err();
    counters.count(r);
    assert_eq!(r, DropReason::Dummy);
    assert!(r.is_silent());
    assert_eq!(counters.get(DropReason::Dummy), 1);
    // The dummy's SN was authenticated, so the window moved.
    assert_eq!(p.inb.replay().top(), 1);
}

#[test]
fn rejects_bad_padding_after_a_valid_icv() {
    let mut p = pair(
        &params(Suite::AES128_GCM_16, false, Some(false), false),
        Backend::FASTEST,
    );
    let mut pkt = PktBuf::from_data(&udp_v4(1), 64, 64);
    let op = p.out.prepare(&mut pkt, 1).unwrap();
    let end = op.op.text_range().end;
    assert_eq!(pkt.data()[end - 2], 1, "one pad octet expected");
    pkt.data_mut()[end - 3] = 9;
    let mut jobs = [AeadJob {
        op: op.op,
        buf: pkt.data_mut(),
        ok: false,
    }];
    p.seal.seal(&mut jobs);
    assert_eq!(
        open_one(&mut p, pkt.data()).unwrap_err(),
        DropReason::BadPadding
    );
    let mut pkt = PktBuf::from_data(&udp_v4(1), 64, 64);
    let op = p.out.prepare(&mut pkt, 2).unwrap();
    pkt.data_mut()[end - 2] = 200; // Pad Length beyond the payload.
    let mut jobs = [AeadJob {
        op: op.op,
        buf: pkt.data_mut(),
        ok: false,
    }];
    p.seal.seal(&mut jobs);
    assert_eq!(
        open_one(&mut p, pkt.data()).unwrap_err(),
        DropReason::BadTrailer
    );
}

#[test]
fn rejects_bad_spi_truncation_replay_and_tampering() {
    let mut p = pair(
        &params(Suite::AES128_GCM_16, true, Some(false), true),
        Backend::FASTEST,
    );
    let wire = seal_one(&p, &udp_v4(64));
    let mut other = p.params.clone();
    other.spi = 0x2000_0002;
    let mut wrong = pair(&other, Backend::FASTEST);
    assert_eq!(open_one(&mut wrong, &wire).unwrap_err(), DropReason::BadSpi);
    for n in 0..wire.len() {
        let r = open_one(&mut p, &wire[..n]).unwrap_err();
        assert!(
            matches!(r, DropReason::Truncated | DropReason::BadOuterHeader),
            "{n}: {r}"
        );
    }
    let mut bad = wire.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(open_one(&mut p, &bad).unwrap_err(), DropReason::IcvMismatch);
    assert!(open_one(&mut p, &wire).is_ok());
    assert_eq!(open_one(&mut p, &wire).unwrap_err(), DropReason::Replayed);
}

#[test]
fn classifies_keepalives_ike_and_fragments_on_the_outer_packet() {
    let mut ka = udp_v4(1);
    let n = ka.len();
    ka[20..24].copy_from_slice(&[0x11, 0x94, 0x11, 0x94]);
    ka[n - 1] = 0xff;
    assert_eq!(classify(&ka).unwrap_err(), DropReason::NatKeepalive);
    let mut ike = udp_v4(32);
    ike[20..24].copy_from_slice(&[0x11, 0x94, 0x11, 0x94]);
    ike[28..32].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(classify(&ike).unwrap_err(), DropReason::NonEspMarker);
    assert_eq!(classify(&udp_v4(32)).unwrap_err(), DropReason::NotEsp);
    let p = pair(
        &params(Suite::AES128_GCM_16, false, Some(false), false),
        Backend::FASTEST,
    );
    let mut frag = seal_one(&p, &udp_v4(10));
    frag[6] = 0x20;
    Ipv4Packet::new_unchecked(&mut frag[..]).fill_checksum();
    assert_eq!(classify(&frag).unwrap_err(), DropReason::Fragment);
}

#[test]
fn burst_stops_at_sequence_exhaustion_and_raises_one_event() {
    let mut prm = params(Suite::AES128_GCM_16, false, Some(false), false);
    prm.initial_seq = u64::from(u32::MAX) - 3;
    let mut p = pair(&prm, Backend::FASTEST);
    let mut pkts: Vec<_> = (0..8)
        .map(|_| PktBuf::from_data(&udp_v4(20), 64, 64))
        .collect();
    let mut v = vec![Err(DropReason::NotEsp); 8];
    assert_eq!(
        seal_burst(&p.out, &p.seal, &mut pkts, &mut v),
        Some(SaEvent::SeqExhausted)
    );
    assert_eq!(v.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(v[3..].iter().all(|r| *r == Err(DropReason::SeqExhausted)));
    let mut more = [PktBuf::from_data(&udp_v4(20), 64, 64)];
    let mut v2 = [Ok(())];
    assert_eq!(seal_burst(&p.out, &p.seal, &mut more, &mut v2), None);
    assert_eq!(v2[0], Err(DropReason::SeqExhausted));
    // The last packet carries SN 2^32-1 and opens.
    p.inb.replay_mut().set_top(u64::from(u32::MAX) - 5);
    let (_, d) = open_one(&mut p, pkts[2].data()).unwrap();
    assert_eq!(d.seq, u64::from(u32::MAX));
}

#[test]
fn reports_missing_headroom_and_tailroom() {
    let p = pair(
        &params(Suite::AES128_GCM_16, false, Some(false), false),
        Backend::FASTEST,
    );
    let mut pkts = [
        PktBuf::from_data(&udp_v4(20), 10, 64),
        PktBuf::from_data(&udp_v4(20), 64, 4),
    ];
    let mut v = [Ok(()), Ok(())];
    seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
    assert_eq!(
        v,
        [Err(DropReason::NoHeadroom), Err(DropReason::NoTailroom)]
    );
    assert!(p.out.headroom() == 20 + 16 && p.out.tailroom() == 3 + 2 + 16);
}

#[test]
fn rejects_inner_packets_that_are_not_ip() {
    let p = pair(
        &params(Suite::AES128_GCM_16, false, Some(false), false),
        Backend::FASTEST,
    );
    let mut pkts = [
        PktBuf::from_data(&[0x15; 40], 64, 64),
        PktBuf::from_data(&[], 64, 64),
    ];
    let mut v = [Ok(()), Ok(())];
    seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
    assert_eq!(
        v,
        [
            Err(DropReason::BadInnerHeader),
            Err(DropReason::BadInnerHeader)
        ]
    );
}

#[test]
fn udp_encapsulated_sa_also_accepts_plain_esp() {
    let raw = pair(
        &params(Suite::AES128_GCM_16, false, Some(false), false),
        Backend::FASTEST,
    );
    let wire = seal_one(&raw, &udp_v4(30));
    let mut udp = pair(
        &params(Suite::AES128_GCM_16, false, Some(false), true),
        Backend::FASTEST,
    );
    assert_eq!(open_one(&mut udp, &wire).unwrap().0, udp_v4(30));
}

#[test]
fn large_bursts_are_processed_in_chunks_in_order() {
    let mut p = pair(
        &params(Suite::AES128_GCM_16_IIV, true, Some(false), false),
        Backend::FASTEST,
    );
    let mut pkts: Vec<_> = (0..150)
        .map(|i| PktBuf::from_data(&udp_v4(i), 64, 64))
        .collect();
    let mut v = vec![Err(DropReason::NotEsp); 150];
    seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
    assert!(v.iter().all(Result::is_ok));
    let mut dv = vec![Err(DropReason::NotEsp); 150];
    open_burst(&mut p.inb, &p.open, &mut pkts, &mut dv);
    for (i, (r, pkt)) in dv.iter().zip(&pkts).enumerate() {
        assert_eq!(r.unwrap().seq, i as u64 + 1);
        assert_eq!(pkt.data(), &udp_v4(i)[..]);
    }
    let _: &InboundSa = &p.inb;
    let _: &SaParams = &p.params;
}

#[test]
fn transport_mode_refuses_a_payload_that_would_read_as_a_dummy() {
    let p = pair(
        &params(Suite::AES128_GCM_16, false, None, false),
        Backend::FASTEST,
    );
    let mut inner = udp_v4(8);
    inner[9] = IpProtocol::NO_NEXT_HEADER.0;
    Ipv4Packet::new_unchecked(&mut inner[..]).fill_checksum();
    let mut pkts = [PktBuf::from_data(&inner, 64, 64)];
    let mut v = [Ok(())];
    seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
    assert_eq!(v[0], Err(DropReason::BadInnerHeader));
}

#[test]
fn sender_id_ivs_follow_rfc6054_and_open_unchanged() {
    let mut prm = params(Suite::AES128_GCM_16, true, Some(false), false);
    prm.iv = esp::IvPolicy::SenderId { bits: 8, sid: 1 };
    let mut p = pair(&prm, Backend::FASTEST);
    let wire = seal_one(&p, &udp_v4(20));
    // RFC 6054 §3 example: sender-ID 1 in the leftmost 8 bits, counter 1.
    assert_eq!(&wire[20 + 8..20 + 16], &[1, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(open_one(&mut p, &wire).unwrap().0, udp_v4(20));
    // The sender's counter space ends at 2^56 - 1.
    assert_eq!(p.out.seq().limit(), (1 << 56) - 1);
    let bad = |iv, suite| {
        let mut q = params(suite, false, Some(false), false);
        q.iv = iv;
        OutboundSa::new(&q).err()
    };
    use esp::{IvPolicy, SaError};
    assert_eq!(
        bad(
            IvPolicy::SenderId { bits: 8, sid: 1 },
            Suite::AES128_GCM_16_IIV
        ),
        Some(SaError::IivWithSenderId)
    );
    assert_eq!(
        bad(
            IvPolicy::SenderId { bits: 10, sid: 1 },
            Suite::AES128_GCM_16
        ),
        Some(SaError::BadSenderId)
    );
    assert_eq!(
        bad(
            IvPolicy::SenderId { bits: 8, sid: 256 },
            Suite::AES128_GCM_16
        ),
        Some(SaError::BadSenderId)
    );
}

/// A lookaside engine (DPDK cryptodev style) does not go through
/// `BatchAead`: it takes the prepared `CryptoOp`s, completes them later and
/// in any order, and the framing is finished per packet afterwards.
#[test]
fn prepare_and_finish_work_with_deferred_out_of_order_crypto() {
    let mut p = pair(
        &params(Suite::CHACHA20_POLY1305, true, Some(true), true),
        Backend::RustCrypto,
    );
    let inners: Vec<Vec<u8>> = (0..5).map(|i| udp_v6(10 * i, i % 2 == 0)).collect();
    let mut pkts: Vec<_> = inners
        .iter()
        .map(|i| PktBuf::from_data(i, 128, 64))
        .collect();
    let grant = p.out.reserve(5);
    let ops: Vec<_> = pkts
        .iter_mut()
        .enumerate()
        .map(|(i, pkt)| p.out.prepare(pkt, grant.first + i as u64).unwrap())
        .collect();
    // The "engine" completes the ops in reverse order, one by one.
    for i in (0..5).rev() {
        let mut job = [AeadJob {
            op: ops[i].op,
            buf: pkts[i].data_mut(),
            ok: false,
        }];
        p.seal.seal(&mut job);
        assert!(job[0].ok);
        p.out.finish(&mut pkts[i], &ops[i]);
    }
    let iops: Vec<_> = pkts
        .iter()
        .map(|pkt| {
            p.inb
                .prepare(pkt.data(), &classify(pkt.data()).unwrap())
                .unwrap()
        })
        .collect();
    for i in [3, 0, 4, 1, 2] {
        let mut job = [AeadJob {
            op: iops[i].op,
            buf: pkts[i].data_mut(),
            ok: false,
        }];
        p.open.open(&mut job);
        let ok = job[0].ok;
        assert_eq!(
            p.inb.finish(&mut pkts[i], &iops[i], ok).unwrap().seq,
            i as u64 + 1
        );
        assert_eq!(pkts[i].data(), &inners[i][..]);
    }
}

#[test]
fn refuses_replay_windows_beyond_the_maximum() {
    let mut prm = params(Suite::AES128_GCM_16, true, None, false);
    prm.replay_window = esp::MAX_REPLAY_WINDOW;
    assert!(InboundSa::new(&prm).is_ok());
    prm.replay_window = esp::MAX_REPLAY_WINDOW + 1;
    assert_eq!(
        InboundSa::new(&prm).err(),
        Some(esp::SaError::ReplayWindowTooLarge)
    );
}

/// RFC 5374 §3.1 tunnel mode with address preservation (RFC 9838 group
/// SAs): the outer header carries the inner addresses, with a valid IPv4
/// header checksum, and the packet opens; an outer address rewritten on the
/// way (it is not covered by the ICV) is dropped as `AddressMismatch`.
#[test]
fn address_preservation_copies_inner_addresses_and_checks_them_inbound() {
    for v6 in [false, true] {
        let mut prm = params(Suite::AES256_GCM_16, false, Some(v6), false);
        prm.preserve_src = true;
        prm.preserve_dst = true;
        prm.iv = esp::IvPolicy::SenderId { bits: 16, sid: 0x2a };
        let mut p = pair(&prm, Backend::FASTEST);
        let inner = if v6 { udp_v6(30, false) } else { udp_v4(30) };
        let wire = seal_one(&p, &inner);
        let (s, d) = if v6 { (8..24, 24..40) } else { (12..16, 16..20) };
        assert_eq!(&wire[s.clone()], &inner[s.clone()], "v6={v6}: outer source");
        assert_eq!(&wire[d.clone()], &inner[d.clone()], "v6={v6}: outer destination");
        if !v6 {
            assert_eq!(esp_wire::checksum::sum(&wire[..20]), 0xffff, "outer IPv4 checksum");
        }
        assert_eq!(open_one(&mut p, &wire).unwrap().0, inner);
        let mut moved = seal_one(&p, &inner);
        moved[d.end - 1] ^= 1;
        if !v6 {
            moved[10..12].copy_from_slice(&[0, 0]);
            let sum = !esp_wire::checksum::sum(&moved[..20]);
            moved[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        assert_eq!(open_one(&mut p, &moved).err(), Some(DropReason::AddressMismatch), "v6={v6}");
    }
    let mut t = params(Suite::AES256_GCM_16, false, None, false);
    t.preserve_dst = true;
    assert_eq!(OutboundSa::new(&t).err(), Some(esp::SaError::PreserveNeedsTunnel));
}
