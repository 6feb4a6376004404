//! Property tests for every wire type: emit then parse gives the same Repr,
//! every truncated prefix of an emitted header is rejected, and
//! `new_checked` plus every accessor never panics on arbitrary bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use esp_wire::*;
use proptest::prelude::*;

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        0usize..2000,
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(s, d, p, len, ttl, tos, id, df)| Ipv4Repr {
            src_addr: Ipv4Addr::from(s),
            dst_addr: Ipv4Addr::from(d),
            protocol: IpProtocol(p),
            payload_len: len,
            ttl,
            dscp_ecn: tos,
            ident: id,
            dont_frag: df,
        })
}

fn ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
    (
        any::<u128>(),
        any::<u128>(),
        any::<u8>(),
        0usize..2000,
        any::<u8>(),
        any::<u8>(),
        0u32..1 << 20,
    )
        .prop_map(|(s, d, nh, len, hl, tc, fl)| Ipv6Repr {
            src_addr: Ipv6Addr::from(s),
            dst_addr: Ipv6Addr::from(d),
            next_header: IpProtocol(nh),
            payload_len: len,
            hop_limit: hl,
            traffic_class: tc,
            flow_label: fl,
        })
}

/// Touch every accessor; they must not panic once `new_checked` passed.
fn touch_all(b: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(b) {
        let _ = (f.src_addr(), f.dst_addr(), f.ethertype(), f.payload().len());
        let _ = EthernetRepr::parse(&f);
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = (
            p.header_len(),
            p.total_len(),
            p.src_addr(),
            p.dst_addr(),
            p.protocol(),
            p.ttl(),
            p.ident(),
        );
        let _ = (
            p.is_fragment(),
            p.frag_offset(),
            p.verify_checksum(),
            p.options().len(),
            p.payload().len(),
        );
        let _ = Ipv4Repr::parse(&p);
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
            p.next_header(),
            p.hop_limit(),
        );
        let _ = (
            p.src_addr(),
            p.dst_addr(),
            p.payload().len(),
            p.upper_layer(),
            p.esp_insertion_point(),
        );
        let _ = Ipv6Repr::parse(&p);
    }
    if let Ok(p) = UdpPacket::new_checked(b) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload().len(),
        );
        let _ = p.verify_checksum(Ipv4Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into());
        let _ = UdpRepr::parse(&p);
    }
    if let Ok(p) = EspPacket::new_checked(b) {
        let _ = (p.spi(), p.seq(), p.payload().len(), EspRepr::parse(&p));
    }
    if let Ok(t) = EspTrailer::new_checked(b) {
        let _ = (
            t.next_header(),
            t.pad_len(),
            t.padding().len(),
            t.payload().len(),
            t.check_padding(),
        );
        let _ = TrailerRepr::parse(&t);
    }
    let _ = classify_udp_encap(b);
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn no_view_panics_on_arbitrary_bytes(mut b in proptest::collection::vec(any::<u8>(), 0..300), v in 0u8..3) {
        // Bias the first octet towards versions 4 and 6 so IP paths are taken.
        if let Some(x) = b.first_mut() {
            *x = match v { 0 => 0x45 | (*x & 0x0f), 1 => 0x60 | (*x & 0x0f), _ => *x };
        }
        touch_all(&b);
    }

    #[test]
    fn ipv4_round_trips_and_rejects_every_truncated_prefix(r in ipv4_repr()) {
        let mut b = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut b[..]));
        prop_assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()), Ok(r));
        for n in 0..b.len() {
            prop_assert_eq!(Ipv4Packet::new_checked(&b[..n]).err(), Some(Error::Truncated));
        }
    }

    #[test]
    fn ipv6_round_trips_and_rejects_every_truncated_prefix(r in ipv6_repr()) {
        let mut b = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
        prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap()), Ok(r));
        for n in 0..b.len() {
            prop_assert_eq!(Ipv6Packet::new_checked(&b[..n]).err(), Some(Error::Truncated));
        }
    }

    #[test]
    fn udp_round_trips_and_rejects_every_truncated_prefix(s in any::<u16>(), d in any::<u16>(), len in 0usize..600) {
        let r = UdpRepr { src_port: s, dst_port: d, payload_len: len };
        let mut b = vec![0u8; r.buffer_len() + len];
        r.emit(&mut UdpPacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(UdpRepr::parse(&UdpPacket::new_checked(&b[..]).unwrap()), Ok(r));
        for n in 0..b.len() {
            prop_assert_eq!(UdpPacket::new_checked(&b[..n]).err(), Some(Error::Truncated));
        }
    }

    #[test]
    fn ethernet_and_esp_headers_round_trip(src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), t in any::<u16>(),
                                           spi in any::<u32>(), seq in any::<u32>()) {
        let e = EthernetRepr { src_addr: src, dst_addr: dst, ethertype: EtherType(t) };
        let mut b = [0u8; 14];
        e.emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
        prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&b[..]).unwrap()), Ok(e));
        for n in 0..b.len() {
            prop_assert_eq!(EthernetFrame::new_checked(&b[..n]).err(), Some(Error::Truncated));
        }
        let r = EspRepr { spi, seq };
        let mut b = [0u8; 8];
        r.emit(&mut EspPacket::new_unchecked(&mut b[..]));
        prop_assert_eq!(EspRepr::parse(&EspPacket::new_checked(&b[..]).unwrap()), Ok(r));
        for n in 0..b.len() {
            prop_assert_eq!(EspPacket::new_checked(&b[..n]).err(), Some(Error::Truncated));
        }
    }

    #[test]
    fn trailer_round_trips_and_rejects_every_truncation(payload_len in 0usize..100, align in prop_oneof![Just(1usize), Just(4), Just(8), Just(16)], nh in any::<u8>()) {
        let r = TrailerRepr::for_payload(payload_len, 0, align, IpProtocol(nh));
        prop_assert_eq!((payload_len + r.buffer_len()) % align, 0);
        let mut b = vec![0xeeu8; payload_len + r.buffer_len()];
        r.emit(&mut b);
        let t = EspTrailer::new_checked(&b[..]).unwrap();
        prop_assert_eq!(TrailerRepr::parse(&t), Ok(r));
        prop_assert_eq!(t.payload_len(), payload_len);
        // Losing leading octets of padding+trailer leaves Pad Length pointing
        // before the start.
        for n in 0..r.buffer_len() {
            prop_assert_eq!(EspTrailer::new_checked(&b[b.len() - n..]).err(), Some(Error::Truncated));
        }
    }
}
