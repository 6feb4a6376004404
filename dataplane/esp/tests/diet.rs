//! Diet-ESP (draft-ietf-ipsecme-diet-esp-07): the draft's examples with
//! field values as known answers, round trips through seal and open of every
//! packet shape the rules cover (property tests, exact bytes back), the
//! packets a rule cannot express, and every truncation rejected.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use esp::diet::{
    Alignment, DietAttrs, DscpCda, EcnCda, EspTrailer, FlowLabelCda, Lower, Profile, Selectors,
};
use esp::{open_burst, seal_burst, Backend, DropReason, PktBuf, SaParams, Suite};
use proptest::prelude::*;

// ------------------------------------------------------------ packets

/// RFC 1071 the slow way, independent of the crate's checksum code.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut acc: u32 = 0;
    for p in parts {
        for c in p.chunks(2) {
            let w = if c.len() == 2 { u32::from(c[0]) << 8 | u32::from(c[1]) } else { u32::from(c[0]) << 8 };
            acc += w;
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    acc as u16
}

fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
        }
    }
    !c
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Udp,
    UdpLite { coverage: u16 },
    Tcp,
    Sctp,
    Icmp,
}

impl Shape {
    fn proto(self, v6: bool) -> u8 {
        match self {
            Shape::Udp => 17,
            Shape::UdpLite { .. } => 136,
            Shape::Tcp => 6,
            Shape::Sctp => 132,
            Shape::Icmp if v6 => 58,
            Shape::Icmp => 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Inner {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    tos: u8,
    ttl: u8,
    flow: u32,
    shape: Shape,
    payload: Vec<u8>,
}

/// The transport segment with its checksum, computed independently.
fn segment(i: &Inner) -> Vec<u8> {
    let v6 = i.src.is_ipv6();
    let proto = i.shape.proto(v6);
    let mut s = match i.shape {
        Shape::Udp | Shape::UdpLite { .. } => vec![0u8; 8],
        Shape::Tcp => {
            let mut t = vec![0u8; 20];
            t[4..8].copy_from_slice(&0x1122_3344u32.to_be_bytes());
            t[8..12].copy_from_slice(&0x5566_7788u32.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = 0x18;
            t[14..16].copy_from_slice(&512u16.to_be_bytes());
            t[18..20].copy_from_slice(&7u16.to_be_bytes());
            t
        }
        Shape::Sctp => {
            let mut t = vec![0u8; 12];
            t[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
            t
        }
        Shape::Icmp => vec![8, 0, 0, 0, 0x12, 0x34, 0, 1],
    };
    if i.shape != Shape::Icmp {
        s[0..2].copy_from_slice(&i.sport.to_be_bytes());
        s[2..4].copy_from_slice(&i.dport.to_be_bytes());
    }
    s.extend_from_slice(&i.payload);
    let len = s.len();
    match i.shape {
        Shape::Udp => s[4..6].copy_from_slice(&(len as u16).to_be_bytes()),
        Shape::UdpLite { coverage } => s[4..6].copy_from_slice(&coverage.min(len as u16).to_be_bytes()),
        _ => {}
    }
    let pseudo: Vec<u8> = match (i.src, i.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mut p = a.octets().to_vec();
            p.extend_from_slice(&b.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
            p
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mut p = a.octets().to_vec();
            p.extend_from_slice(&b.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
            p
        }
        _ => unreachable!(),
    };
    match i.shape {
        Shape::Udp | Shape::Tcp => {
            let at = if i.shape == Shape::Tcp { 16 } else { 6 };
            let mut c = !ones_sum(&[&pseudo, &s]);
            if c == 0 && i.shape == Shape::Udp {
                c = 0xffff;
            }
            s[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        Shape::UdpLite { .. } => {
            let cov = match u16::from_be_bytes([s[4], s[5]]) {
                0 => len,
                c => usize::from(c),
            };
            let mut c = !ones_sum(&[&pseudo, &s[..cov]]);
            if c == 0 {
                c = 0xffff;
            }
            s[6..8].copy_from_slice(&c.to_be_bytes());
        }
        Shape::Sctp => {
            let c = crc32c_bitwise(&s);
            s[8..12].copy_from_slice(&c.to_le_bytes());
        }
        Shape::Icmp => {
            let c = !ones_sum(&[&s]);
            s[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }
    s
}

fn packet(i: &Inner) -> Vec<u8> {
    let seg = segment(i);
    let proto = i.shape.proto(i.src.is_ipv6());
    let mut p = match (i.src, i.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[1] = i.tos;
            h[2..4].copy_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&(i.flow as u16).to_be_bytes());
            h[6] = 0x40;
            h[8] = i.ttl;
            h[9] = proto;
            h[12..16].copy_from_slice(&a.octets());
            h[16..20].copy_from_slice(&b.octets());
            let c = !ones_sum(&[&h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mut h = vec![0u8; 40];
            let w = 6u32 << 28 | u32::from(i.tos) << 20 | (i.flow & 0xfffff);
            h[0..4].copy_from_slice(&w.to_be_bytes());
            h[4..6].copy_from_slice(&(seg.len() as u16).to_be_bytes());
            h[6] = proto;
            h[7] = i.ttl;
            h[8..24].copy_from_slice(&a.octets());
            h[24..40].copy_from_slice(&b.octets());
            h
        }
        _ => unreachable!(),
    };
    p.extend_from_slice(&seg);
    p
}

fn sel(src: (&str, &str), dst: (&str, &str), proto: u8, sp: (u16, u16), dp: (u16, u16)) -> Selectors {
    Selectors {
        src: (src.0.parse().unwrap(), src.1.parse().unwrap()),
        dst: (dst.0.parse().unwrap(), dst.1.parse().unwrap()),
        proto,
        src_ports: sp,
        dst_ports: dp,
    }
}

fn attrs(s: Option<Selectors>) -> DietAttrs {
    let mut a = DietAttrs::defaults();
    a.selectors = s;
    a
}

/// A sealing/opening pair for `a`, IIV AES-GCM, tunnel or transport.
fn diet_pair(a: DietAttrs, tunnel: Option<bool>, suite: Suite) -> Pair {
    let mut p: SaParams = params(suite, false, tunnel, false);
    p.diet = Some(a);
    pair(&p, Backend::Ring)
}

fn seal(p: &Pair, inner: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut pkts = [PktBuf::from_data(inner, 128, 256)];
    let mut v = [Err(DropReason::NotEsp)];
    seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
    v[0]?;
    Ok(pkts[0].data().to_vec())
}

fn open(p: &mut Pair, wire: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut pkts = [PktBuf::from_data(wire, 128, 0)];
    let mut v = [Err(DropReason::NotEsp)];
    open_burst(&mut p.inb, &p.open, &mut pkts, &mut v);
    v[0]?;
    Ok(pkts[0].data().to_vec())
}

fn outer_len(tunnel_v6: bool) -> usize {
    if tunnel_v6 {
        40
    } else {
        20
    }
}

// ------------------------------------------------- the draft's examples

/// diet-esp-07 Appendix A.1 ("Illustrative Examples of Diet-ESP in Tunnel
/// Mode"): IPv6 2001:db8::1234 -> 2001:db8::5678, UDP 5001 -> 4500 with 8
/// octets of data (UDP Length 16), DSCP and ECN `lower`, Next Header,
/// addresses, ports, UDP Length and Checksum elided; the ESP trailer
/// compressed (Pad Length, Padding and Next Header omitted). The draft
/// leaves the Flow Label CDA at its default (not_compressed: 20 bits) and
/// the LSB counts open; we take 8 + 8.
#[test]
fn draft_appendix_tunnel_example() {
    let s = sel(("2001:db8::1234", "2001:db8::1234"), ("2001:db8::5678", "2001:db8::5678"), 17, (5001, 5001), (4500, 4500));
    let mut a = attrs(Some(s));
    a.dscp_cda = DscpCda::Lower;
    a.ecn_cda = EcnCda::Lower;
    // "Pad Length and Padding are omitted": that is the 8-bit alignment
    // (the example's JSON says "64 bit", which would keep them; §5.2).
    a.alignment = Alignment::Bits8;
    a.esp_spi_lsb = 8;
    a.esp_sn_lsb = 8;
    let inner = Inner {
        src: "2001:db8::1234".parse().unwrap(),
        dst: "2001:db8::5678".parse().unwrap(),
        sport: 5001,
        dport: 4500,
        tos: 0,
        ttl: 64,
        flow: 0x12345,
        shape: Shape::Udp,
        payload: b"diet-esp".to_vec(),
    };
    let ip = packet(&inner);
    assert_eq!(u16::from_be_bytes([ip[44], ip[45]]), 16, "UDP Length 16 as in the draft");
    let prof = Profile::new(&a, true, false, 1, 0x1000_0001).unwrap();
    let c = prof.compress_tunnel(&ip).unwrap();
    // Only the 20-bit Flow Label is sent: 3 octets for 48.
    assert_eq!(c.header_len, 48);
    assert_eq!(c.residue(), &[0x12, 0x34, 0x50]);
    assert_eq!(prof.esp_header_len(), 2);
    assert_eq!(prof.trailer_len(11), 0, "no Padding, Pad Length or Next Header");
    let mut p = diet_pair(a, Some(false), Suite::AES128_GCM_16_IIV);
    let wire = seal(&p, &ip).unwrap();
    // Outer IPv4 20 + ESP header 2 + residue 3 + data 8 + ICV 16.
    assert_eq!(wire.len(), 20 + 2 + 3 + 8 + 16);
    assert_eq!(&wire[20..22], &[0x01, 0x01], "SPI and SN low octets");
    assert_eq!(open(&mut p, &wire).unwrap(), ip);
}

/// diet-esp-07 Appendix A.2 (Transport Mode): IPv6 2001:db8::1001 ->
/// 2001:db8::2002 kept, UDP 1234 -> 5678 (Length 18: 10 octets of data)
/// compressed away entirely, ESP Next Header 17 and padding omitted.
#[test]
fn draft_appendix_transport_example() {
    let s = sel(("2001:db8::1001", "2001:db8::1001"), ("2001:db8::2002", "2001:db8::2002"), 17, (1234, 1234), (5678, 5678));
    let mut a = attrs(Some(s));
    a.alignment = Alignment::Bits8;
    a.esp_spi_lsb = 8;
    a.esp_sn_lsb = 8;
    let inner = Inner {
        src: "2001:db8::1001".parse().unwrap(),
        dst: "2001:db8::2002".parse().unwrap(),
        sport: 1234,
        dport: 5678,
        tos: 0,
        ttl: 64,
        flow: 0,
        shape: Shape::Udp,
        payload: b"0123456789".to_vec(),
    };
    let ip = packet(&inner);
    assert_eq!(u16::from_be_bytes([ip[44], ip[45]]), 18);
    let prof = Profile::new(&a, false, false, 1, 0x1000_0001).unwrap();
    let c = prof.compress_transport(&ip[40..], 17).unwrap();
    assert_eq!((c.header_len, c.residue_len), (8, 0), "the whole UDP header elided");
    assert_eq!(prof.implied_next_header(), Some(17));
    let mut p = diet_pair(a, None, Suite::AES128_GCM_16_IIV);
    let wire = seal(&p, &ip).unwrap();
    assert_eq!(wire.len(), 40 + 2 + 10 + 16);
    assert_eq!(wire[6], 50, "IPv6 Next Header says ESP");
    assert_eq!(open(&mut p, &wire).unwrap(), ip);
}

/// diet-esp-07 §4.3 Table 1 (`flow_label_cda` lower, DSCP and ECN
/// not_compressed): "Sent [bits]" DSCP 6, ECN 2, addresses MSB(64) 64 each,
/// ports MSB(8) 8 each, everything else 0; SPI and SN MSB(24) 8 each.
#[test]
fn draft_rule_table_1_sent_bits() {
    let s = sel(("2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff"), ("2001:db8:2::", "2001:db8:2::ffff:ffff:ffff:ffff"), 17, (0x1300, 0x13ff), (0x2400, 0x24ff));
    let mut a = attrs(Some(s));
    a.flow_label_cda = FlowLabelCda::Lower;
    a.esp_spi_lsb = 8;
    a.esp_sn_lsb = 8;
    let prof = Profile::new(&a, true, false, 1, 7).unwrap();
    let inner = Inner {
        src: "2001:db8:1::aaaa:bbbb:cccc:dddd".parse().unwrap(),
        dst: "2001:db8:2::1111:2222:3333:4444".parse().unwrap(),
        sport: 0x13ab,
        dport: 0x24cd,
        tos: 0b1011_1001,
        ttl: 9,
        flow: 0xfedcb,
        shape: Shape::Udp,
        payload: vec![1, 2, 3],
    };
    let c = prof.compress_tunnel(&packet(&inner)).unwrap();
    // 6 + 2 + 64 + 64 + 8 + 8 = 152 bits.
    assert_eq!(c.residue_len, 19);
    let want: Vec<u8> = [0b1011_1001u8]
        .iter()
        .chain(&[0xaa, 0xaa, 0xbb, 0xbb, 0xcc, 0xcc, 0xdd, 0xdd])
        .chain(&[0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44])
        .chain(&[0xab, 0xcd])
        .copied()
        .collect();
    assert_eq!(c.residue(), &want[..]);
    assert_eq!(c.lower, Lower { tos: 0b1011_1001, ttl: 9, flow: 0xfedcb });
    assert_eq!(prof.esp_header_len(), 2);
}

/// diet-esp-07 §4.3 Table 2: DSCP by match-mapping (index, 3 bits), ECN
/// lower, Flow Label zero (not sent), SPI and SN 8 bits each.
#[test]
fn draft_rule_table_2_mapping_index() {
    let s = sel(("fd00::1", "fd00::1"), ("fd00::2", "fd00::2"), 17, (1, 1), (2, 2));
    let mut a = attrs(Some(s));
    a.dscp_cda = DscpCda::Sa;
    a.dscp_list[..5].copy_from_slice(&[0, 10, 18, 34, 46]);
    a.dscp_list_len = 5;
    a.ecn_cda = EcnCda::Lower;
    a.flow_label_cda = FlowLabelCda::Zero;
    a.esp_spi_lsb = 8;
    a.esp_sn_lsb = 8;
    let prof = Profile::new(&a, true, false, 1, 7).unwrap();
    let mut inner = Inner {
        src: "fd00::1".parse().unwrap(),
        dst: "fd00::2".parse().unwrap(),
        sport: 1,
        dport: 2,
        tos: 34 << 2 | 1,
        ttl: 64,
        flow: 0,
        shape: Shape::Udp,
        payload: vec![],
    };
    let c = prof.compress_tunnel(&packet(&inner)).unwrap();
    assert_eq!(c.residue(), &[0b0110_0000], "index 3 in 3 bits, then padding");
    // A DSCP outside the list, or a Flow Label with the `zero` CDA: unfit.
    inner.tos = 12 << 2;
    assert_eq!(prof.compress_tunnel(&packet(&inner)).unwrap_err(), DropReason::DietUnfit);
    inner.tos = 0;
    inner.flow = 1;
    assert_eq!(prof.compress_tunnel(&packet(&inner)).unwrap_err(), DropReason::DietUnfit);
}

/// diet-esp-07 §4.3 Table 3 (every CDA not_compressed): DSCP 6, ECN 2,
/// Flow Label 20 sent, SPI and SN 32 each. The table also lists Payload
/// Length and Hop Limit as value-sent; §5.1.2 makes both `lower` with no
/// attribute to change that, and we follow §5.1.2 (docs/diet-esp.md).
#[test]
fn draft_rule_table_3_nothing_compressed() {
    let s = sel(("fd00::1", "fd00::1"), ("fd00::2", "fd00::2"), 17, (1, 1), (2, 2));
    let prof = Profile::new(&attrs(Some(s)), true, false, 1, 7).unwrap();
    let inner = Inner {
        src: "fd00::1".parse().unwrap(),
        dst: "fd00::2".parse().unwrap(),
        sport: 1,
        dport: 2,
        tos: 0xff,
        ttl: 1,
        flow: 0xfffff,
        shape: Shape::Udp,
        payload: vec![],
    };
    let c = prof.compress_tunnel(&packet(&inner)).unwrap();
    assert_eq!(c.residue(), &[0xff, 0xff, 0xff, 0xf0]);
    assert_eq!(prof.esp_header_len(), 8);
    // The defaults keep Next Header elision but not padding (64-bit alignment).
    assert_eq!(prof.trailer_len(4), 4);
}

/// diet-esp-07 §4.3 Table 4: DSCP sent (6), ECN lower, Flow Label
/// generated, SPI MSB(28) and SN MSB(28): a one-octet ESP header.
#[test]
fn draft_rule_table_4_mixed() {
    let s = sel(("10.0.0.1", "10.0.0.1"), ("10.0.0.2", "10.0.0.2"), 17, (1, 1), (2, 2));
    let mut a = attrs(Some(s));
    a.ecn_cda = EcnCda::Lower;
    a.flow_label_cda = FlowLabelCda::Generated;
    a.esp_spi_lsb = 4;
    a.esp_sn_lsb = 4;
    let prof = Profile::new(&a, true, false, 1, 0xabcd_ef05).unwrap();
    assert_eq!(prof.esp_header_len(), 1);
    let mut h = [0u8; 1];
    prof.write_esp_header(&mut h, 0xabcd_ef05, 0x1234_567a);
    assert_eq!(h, [0x5a]);
    assert_eq!(prof.read_esp_header(&h), Ok((5, 0xa)));
    let inner = Inner {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        sport: 1,
        dport: 2,
        tos: 46 << 2 | 2,
        ttl: 64,
        flow: 0x4242,
        shape: Shape::Udp,
        payload: vec![9; 5],
    };
    let c = prof.compress_tunnel(&packet(&inner)).unwrap();
    // IHL (4 bits, value-sent), DSCP (6), Flags (3): 13 bits.
    assert_eq!(c.residue(), &[0x5b, 0x90]);
}

/// §5.3: "the sum of esp_spi_lsb and esp_sn_lsb MUST be a multiple of 8".
#[test]
fn refuses_lsb_sums_that_are_not_octets() {
    let mut a = attrs(None);
    a.esp_spi_lsb = 4;
    a.esp_sn_lsb = 8;
    assert_eq!(Profile::new(&a, true, false, 1, 7), Err(esp::DietError::LsbSum));
    a.esp_spi_lsb = 33;
    a.esp_sn_lsb = 7;
    assert_eq!(Profile::new(&a, true, false, 1, 7), Err(esp::DietError::LsbRange));
    // RFC 3948: a zero first octet could look like the Non-ESP Marker.
    a.esp_spi_lsb = 8;
    a.esp_sn_lsb = 8;
    assert_eq!(Profile::new(&a, true, true, 1, 0x1234_5600), Err(esp::DietError::UdpEncapMarker));
    assert!(Profile::new(&a, true, true, 1, 0x1234_5601).is_ok());
}

/// An IPv4 fragment or a header with options does not fit the rule (the
/// Rule ID is elided, there is no uncompressed fallback): counted as
/// DietUnfit, the packet not touched.
#[test]
fn unfit_packets_are_refused_and_left_intact() {
    let s = sel(("10.0.0.0", "10.0.0.255"), ("10.1.0.0", "10.1.0.255"), 0, (0, 65535), (0, 65535));
    let p = diet_pair(attrs(Some(s)), Some(false), Suite::AES128_GCM_16_IIV);
    let base = Inner {
        src: "10.0.0.7".parse().unwrap(),
        dst: "10.1.0.9".parse().unwrap(),
        sport: 1,
        dport: 2,
        tos: 0,
        ttl: 64,
        flow: 1,
        shape: Shape::Udp,
        payload: vec![7; 30],
    };
    let mut frag = packet(&base);
    frag[6] = 0x20; // MF
    assert_eq!(seal(&p, &frag), Err(DropReason::DietUnfit));
    let mut off = packet(&base);
    off[7] = 0x10;
    assert_eq!(seal(&p, &off), Err(DropReason::DietUnfit));
    let mut buf = PktBuf::from_data(&frag, 128, 256);
    assert_eq!(p.out.prepare(&mut buf, 1), Err(DropReason::DietUnfit));
    assert_eq!(buf.data(), &frag[..]);
    // Outside the selectors.
    let mut out = base.clone();
    out.src = "10.0.1.7".parse().unwrap();
    assert_eq!(seal(&p, &packet(&out)), Err(DropReason::DietUnfit));
    // A UDP Length that disagrees with the IP length.
    let mut bad = packet(&base);
    bad[25] ^= 1;
    assert_eq!(seal(&p, &bad), Err(DropReason::DietUnfit));
}

// -------------------------------------------------------- round trips

fn addr_in(v6: bool, base: u128, lsb: u32, pick: u128) -> IpAddr {
    let mask = if lsb >= 128 { u128::MAX } else { (1u128 << lsb) - 1 };
    let v = (base & !mask) | (pick & mask);
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

fn range_of(v6: bool, base: u128, lsb: u32) -> (IpAddr, IpAddr) {
    (addr_in(v6, base, lsb, 0), addr_in(v6, base, lsb, u128::MAX))
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Udp),
        (0u16..40).prop_map(|c| Shape::UdpLite { coverage: if c < 8 { 0 } else { c } }),
        Just(Shape::Tcp),
        Just(Shape::Sctp),
        Just(Shape::Icmp),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    tunnel: Option<bool>,
    attrs: DietAttrs,
    inner: Inner,
    suite: Suite,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (any::<bool>(), prop::option::of(any::<bool>()), 0u32..=128, 0u32..=128, any::<u128>(), any::<u128>()),
        (0u32..=16, 0u32..=16, any::<u16>(), any::<u16>(), any::<bool>(), shape()),
        (0usize..3, 0usize..2, 0usize..4, 0usize..4, any::<bool>(), 0u8..4, 0u8..=32),
        (any::<u8>(), any::<u8>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..200), any::<u128>(), any::<u128>(), 0usize..6),
    )
        .prop_map(|((v6, tunnel, sl, dl, sb, db), (spl, dpl, spb, dpb, any_proto, shape), (dscp, ecn, flow, align, mandatory, sn_octets, spi_lsb), (tos, ttl, fl, payload, sp, dp, suite))| {
            let width = if v6 { 128 } else { 32 };
            let (sl, dl) = (sl.min(width), dl.min(width));
            let src = range_of(v6, sb, sl);
            let dst = range_of(v6, db, dl);
            let port = |b: u16, l: u32, pick: u128| -> u16 {
                let mask = if l >= 16 { 0xffff } else { (1u16 << l) - 1 };
                (b & !mask) | (pick as u16 & mask)
            };
            let proto = if any_proto { 0 } else { shape.proto(v6) };
            let (spl, dpl) = if any_proto { (16, 16) } else { (spl, dpl) };
            let mut a = DietAttrs::defaults();
            a.selectors = Some(Selectors {
                src,
                dst,
                proto,
                src_ports: (port(spb, spl, 0), port(spb, spl, u128::MAX)),
                dst_ports: (port(dpb, dpl, 0), port(dpb, dpl, u128::MAX)),
            });
            a.dscp_cda = DscpCda::ALL[dscp];
            a.ecn_cda = EcnCda::ALL[ecn];
            a.flow_label_cda = FlowLabelCda::ALL[flow];
            a.alignment = Alignment::ALL[align];
            a.esp_trailer = if mandatory { EspTrailer::Mandatory } else { EspTrailer::Optional };
            // Any SPI width, and an SN width that makes the sum whole octets.
            a.esp_spi_lsb = spi_lsb;
            a.esp_sn_lsb = (8 - spi_lsb % 8) % 8 + 8 * sn_octets;
            a.dscp_list[..3].copy_from_slice(&[0, (tos >> 2) & 0x3f, 46]);
            a.dscp_list_len = 3;
            let flow_v = match a.flow_label_cda {
                FlowLabelCda::Zero => 0,
                // `lower` into an IPv4 Identification keeps 16 bits only.
                FlowLabelCda::Lower if !matches!(tunnel, Some(true)) => fl & 0xffff,
                _ => fl & if v6 { 0xfffff } else { 0xffff },
            };
            let inner = Inner {
                src: addr_in(v6, sb, sl, sp),
                dst: addr_in(v6, db, dl, dp),
                sport: port(spb, spl, sp),
                dport: port(dpb, dpl, dp),
                tos,
                ttl,
                flow: flow_v,
                shape,
                payload,
            };
            let suite = Suite::ALL[suite];
            Case { tunnel, attrs: a, inner, suite }
        })
}

/// What the receiver is expected to restore: the original packet, except
/// where the rule's CDA is lossy by design (generated Flow Label / IPv4
/// Identification). ECN, DSCP and TTL with `lower` come back exactly
/// because nothing on this path changes the outer header.
fn expected(c: &Case, got: &[u8]) -> Vec<u8> {
    let mut want = packet(&c.inner);
    if c.tunnel.is_some() && c.attrs.flow_label_cda == FlowLabelCda::Generated {
        if c.inner.src.is_ipv6() {
            want[1] = (want[1] & 0xf0) | (got[1] & 0x0f);
            want[2..4].copy_from_slice(&got[2..4]);
        } else {
            want[4..6].copy_from_slice(&got[4..6]);
            want[10..12].copy_from_slice(&got[10..12]);
        }
    }
    want
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, .. ProptestConfig::default() })]

    /// Seal with compression, open, get the same bytes back: every shape
    /// (UDP, UDP-Lite, TCP, SCTP, and ICMP passing through), IPv4 and IPv6
    /// inner, IPv4 and IPv6 outer, tunnel and transport, every CDA, every
    /// alignment and trailer mode, every LSB split, every suite.
    #[test]
    fn round_trips_every_shape(c in case()) {
        let v6 = c.inner.src.is_ipv6();
        // Some(outer family is IPv6) in tunnel mode; None in transport mode,
        // where the outer header is the packet's own.
        let tunnel = c.tunnel;
        let mut a = c.attrs;
        if tunnel.is_none() && a.flow_label_cda == FlowLabelCda::Generated {
            a.flow_label_cda = FlowLabelCda::NotCompressed;
        }
        let ip = packet(&c.inner);
        let mut p = diet_pair(a, tunnel, c.suite);
        let wire = seal(&p, &ip).map_err(|e| TestCaseError::fail(format!("seal: {e}")))?;
        let got = open(&mut p, &wire).map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
        prop_assert_eq!(&got, &expected(&Case { attrs: a, ..c.clone() }, &got), "v6 {}", v6);
        // Never longer than plain ESP would make it.
        let plain = {
            let mut pp = params(c.suite, false, tunnel, false);
            pp.diet = None;
            let q = pair(&pp, Backend::Ring);
            seal(&q, &ip).unwrap().len()
        };
        prop_assert!(wire.len() <= plain + 8, "{} > {}", wire.len(), plain);
    }

    /// Every truncation of a compressed packet is refused (never a panic,
    /// never a packet delivered), and so is every flipped octet.
    #[test]
    fn rejects_every_truncation(c in case()) {
        let ip = packet(&c.inner);
        let p0 = diet_pair(c.attrs, c.tunnel, c.suite);
        let Ok(wire) = seal(&p0, &ip) else { return Ok(()) };
        let hdr = match c.tunnel { Some(v6) => outer_len(v6), None => if c.inner.src.is_ipv6() { 40 } else { 20 } };
        let mut p = diet_pair(c.attrs, c.tunnel, c.suite);
        for n in hdr..wire.len() {
            let mut w = wire[..n].to_vec();
            // Keep the outer lengths consistent so the ESP layer sees the cut.
            if w[0] >> 4 == 4 {
                w[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                w[10..12].fill(0);
                let s = !ones_sum(&[&w[..20]]);
                w[10..12].copy_from_slice(&s.to_be_bytes());
            } else {
                w[4..6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
            }
            prop_assert!(open(&mut p, &w).is_err(), "prefix of {} octets accepted", n);
        }
    }
}

/// The decompressor alone, fed every truncated residue: an error, never a
/// panic, never a Header claiming more residue than there was.
#[test]
fn decompression_rejects_truncated_residues() {
    let s = sel(("2001:db8::", "2001:db8::ffff"), ("2001:db8:1::", "2001:db8:1::ffff"), 6, (1000, 1999), (80, 80));
    let mut a = attrs(Some(s));
    a.flow_label_cda = FlowLabelCda::NotCompressed;
    let prof = Profile::new(&a, true, false, 1, 7).unwrap();
    let inner = Inner {
        src: "2001:db8::12".parse().unwrap(),
        dst: "2001:db8:1::34".parse().unwrap(),
        sport: 1500,
        dport: 80,
        tos: 3,
        ttl: 3,
        flow: 3,
        shape: Shape::Tcp,
        payload: vec![],
    };
    let c = prof.compress_tunnel(&packet(&inner)).unwrap();
    for n in 0..c.residue_len {
        assert_eq!(
            prof.decompress_tunnel(&c.residue()[..n], Lower::default(), 1).map(|r| r.header_len),
            Err(DropReason::Truncated),
            "{n}"
        );
    }
    assert!(prof.decompress_tunnel(c.residue(), Lower::default(), 1).is_ok());
}

/// With ESN the receiver rebuilds the full 64-bit SN from 8 bits across the
/// 2^32 boundary, and an SN far outside what 8 bits can say fails the ICV
/// (the AAD holds the full SN): draft §8, "an invalid signature verification".
#[test]
fn sequence_numbers_come_back_from_their_low_bits() {
    let s = sel(("10.0.0.0", "10.0.0.255"), ("10.1.0.0", "10.1.0.255"), 17, (0, 65535), (0, 65535));
    let mut a = attrs(Some(s));
    a.esp_spi_lsb = 8;
    a.esp_sn_lsb = 8;
    let mut p = params(Suite::AES256_GCM_16_IIV, true, Some(false), false);
    p.diet = Some(a);
    p.initial_seq = 0xffff_fff0;
    let mut pr = pair(&p, Backend::Ring);
    pr.inb.replay_mut().set_top(0xffff_fff0);
    let inner = Inner {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.1.0.1".parse().unwrap(),
        sport: 5,
        dport: 6,
        tos: 0,
        ttl: 5,
        flow: 0,
        shape: Shape::Udp,
        payload: vec![1; 20],
    };
    let ip = packet(&inner);
    for _ in 0..40 {
        let w = seal(&pr, &ip).unwrap();
        assert_eq!(open(&mut pr, &w).unwrap(), ip);
    }
    assert_eq!(pr.inb.replay().top(), 0x1_0000_0018);
    // Jump 300 packets ahead: 8 bits cannot say that; the ICV refuses it.
    pr.out.reserve(300);
    let w = seal(&pr, &ip).unwrap();
    assert_eq!(open(&mut pr, &w), Err(DropReason::IcvMismatch));
}

/// A packet for another SA (other SPI low bits) is refused before the AEAD.
#[test]
fn another_sas_spi_bits_are_refused() {
    let mut a = attrs(None);
    a.esp_spi_lsb = 8;
    a.esp_sn_lsb = 8;
    let mut p = params(Suite::AES128_GCM_16_IIV, false, Some(false), false);
    p.diet = Some(a);
    let pr = pair(&p, Backend::Ring);
    let ip = udp_v4(10);
    let w = seal(&pr, &ip).unwrap();
    let mut q = p.clone();
    q.spi = 0x1000_0002;
    let mut other = pair(&q, Backend::Ring);
    assert_eq!(open(&mut other, &w), Err(DropReason::BadSpi));
    // Without an IIPC rule the inner packet travels whole.
    let mut pr = pr;
    assert_eq!(open(&mut pr, &w).unwrap(), ip);
    // No selectors: no Next Header to imply, so Pad Length and Next Header
    // stay; 38 + 2 is already 64-bit aligned.
    assert_eq!(w.len(), 20 + 2 + ip.len() + 2 + 16);
}
