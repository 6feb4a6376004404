//! Helpers shared by the integration tests: inner packets, SA pairs.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use esp::{soft_aead, Backend, InboundSa, Mode, OutboundSa, SaParams, SoftAead, Suite, UdpEncap};
use esp_wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr};

pub const V4_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const V4_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const V6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const V6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2);

/// An IPv4/UDP packet with `len` octets of UDP payload.
pub fn udp_v4(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 28 + len];
    Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 1, 0, 1),
        dst_addr: Ipv4Addr::new(10, 2, 0, 1),
        protocol: IpProtocol::UDP,
        payload_len: 8 + len,
        ttl: 63,
        dscp_ecn: 0xb8,
        ident: 7,
        dont_frag: true,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut b[..]));
    UdpRepr {
        src_port: 1234,
        dst_port: 53,
        payload_len: len,
    }
    .emit(&mut UdpPacket::new_unchecked(&mut b[20..]));
    for (i, x) in b[28..].iter_mut().enumerate() {
        *x = i as u8;
    }
    b
}

/// An IPv6/UDP packet with `len` octets of UDP payload, optionally behind
/// a Hop-by-Hop and a Destination Options header.
pub fn udp_v6(len: usize, ext: bool) -> Vec<u8> {
    let ext_len = if ext { 16 } else { 0 };
    let mut b = vec![0u8; 40 + ext_len + 8 + len];
    Ipv6Repr {
        src_addr: "fd00:1::1".parse().unwrap(),
        dst_addr: "fd00:2::1".parse().unwrap(),
        next_header: if ext {
            IpProtocol::HOP_BY_HOP
        } else {
            IpProtocol::UDP
        },
        payload_len: ext_len + 8 + len,
        hop_limit: 63,
        traffic_class: 0x28,
        flow_label: 0xabcde,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
    if ext {
        b[40..48].copy_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        b[48..56].copy_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    }
    UdpRepr {
        src_port: 1234,
        dst_port: 53,
        payload_len: len,
    }
    .emit(&mut UdpPacket::new_unchecked(&mut b[40 + ext_len..]));
    for (i, x) in b[48 + ext_len..].iter_mut().enumerate() {
        *x = i as u8;
    }
    b
}

pub fn keymat(suite: Suite, seed: u8) -> Vec<u8> {
    (0..suite.keymat_len())
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

/// Outer endpoints of one family.
pub fn endpoints(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        (V6_A.into(), V6_B.into())
    } else {
        (V4_A.into(), V4_B.into())
    }
}

pub struct Pair {
    pub out: OutboundSa,
    pub inb: InboundSa,
    pub seal: SoftAead,
    pub open: SoftAead,
    pub params: SaParams,
}

pub fn params(suite: Suite, esn: bool, tunnel: Option<bool>, udp: bool) -> SaParams {
    let mut p = SaParams::new(0x1000_0001, suite, &keymat(suite, 1)).unwrap();
    p.esn = esn;
    if let Some(v6) = tunnel {
        let (src, dst) = endpoints(v6);
        p.mode = Mode::Tunnel { src, dst };
    }
    if udp {
        p.udp_encap = Some(UdpEncap::default());
    }
    p
}

pub fn pair(p: &SaParams, backend: Backend) -> Pair {
    Pair {
        out: OutboundSa::new(p).unwrap(),
        inb: InboundSa::new(p).unwrap(),
        seal: soft_aead(backend, p).unwrap(),
        open: soft_aead(backend, p).unwrap(),
        params: p.clone(),
    }
}
