//! Every wire view: `new_checked` never panics, and whatever parses
//! re-emits to the same header octets and parses to the same Repr.
#![no_main]

use esp_wire::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|b: &[u8]| {
    if let Ok(f) = EthernetFrame::new_checked(b) {
        let r = EthernetRepr::parse(&f).unwrap();
        let mut out = [0u8; 14];
        r.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &b[..14]);
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        if let Ok(r) = Ipv4Repr::parse(&p) {
            let mut out = vec![0u8; 20 + r.payload_len];
            r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
            assert_eq!(
                Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).unwrap()),
                Ok(r)
            );
        }
        let _ = (p.options(), p.payload());
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let r = Ipv6Repr::parse(&p).unwrap();
        let mut out = b[..p.total_len()].to_vec();
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &b[..p.total_len()]);
        if let Ok(u) = p.upper_layer() {
            assert!(u.offset <= p.total_len() && u.nh_offset < u.offset);
        }
        if let Ok(u) = p.esp_insertion_point() {
            assert!(u.offset <= p.total_len());
        }
    }
    if let Ok(p) = UdpPacket::new_checked(b) {
        let r = UdpRepr::parse(&p).unwrap();
        let mut out = b[..p.len()].to_vec();
        r.emit(&mut UdpPacket::new_unchecked(&mut out[..]));
        assert_eq!(&out[..6], &b[..6]);
    }
    if let Ok(p) = EspPacket::new_checked(b) {
        let r = EspRepr::parse(&p).unwrap();
        let mut out = [0u8; 8];
        r.emit(&mut EspPacket::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &b[..8]);
    }
    if let Ok(t) = EspTrailer::new_checked(b) {
        if let Ok(r) = TrailerRepr::parse(&t) {
            let mut out = b.to_vec();
            r.emit(&mut out);
            assert_eq!(&out[..], b);
        }
    }
    let _ = classify_udp_encap(b);
});
