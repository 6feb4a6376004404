//! Selectors (RFC 4301 §4.4.1.1) and the packet's side of a match.

use std::net::IpAddr;

/// The segment of untagged inside traffic (no VLAN, or priority-tagged VID 0).
pub const UNTAGGED: u16 = 0;

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrRange {
    pub v6: bool,
    pub lo: u128,
    pub hi: u128,
}

fn bits(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

impl AddrRange {
    /// `lo..=hi`; `None` when the families differ or `lo > hi`.
    pub fn new(lo: IpAddr, hi: IpAddr) -> Option<Self> {
        let (f1, l) = bits(lo);
        let (f2, h) = bits(hi);
        (f1 == f2 && l <= h).then_some(AddrRange { v6: f1, lo: l, hi: h })
    }

    /// The addresses under `addr/len` (`len` clamped to the family's width).
    pub fn prefix(addr: IpAddr, len: u8) -> Self {
        let (v6, a) = bits(addr);
        let width = if v6 { 128 } else { 32 };
        let host = width - u32::from(len).min(width);
        let span = if host == 128 { u128::MAX } else { (1u128 << host) - 1 };
        AddrRange { v6, lo: a & !span, hi: a | span }
    }

    /// Every address of one family.
    pub fn any(v6: bool) -> Self {
        AddrRange { v6, lo: 0, hi: if v6 { u128::MAX } else { u128::from(u32::MAX) } }
    }

    pub fn contains(&self, v6: bool, a: u128) -> bool {
        self.v6 == v6 && self.lo <= a && a <= self.hi
    }
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: u16::MAX };

    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

/// One SPD entry's selectors. A packet matches when every field does.
///
/// Packets that carry no ports (ICMP, other protocols, non-initial
/// fragments: RFC 4301 §7) are matched with port 0: [`PortRange::ANY`]
/// takes them, a specific range (say 80..=80) does not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Our side's addresses (outbound: the inner source); empty = any
    /// address of either family.
    pub local: Vec<AddrRange>,
    /// The far side's addresses (outbound: the inner destination); empty =
    /// any address of either family.
    pub remote: Vec<AddrRange>,
    /// IP protocol (next header); `None` = any.
    pub proto: Option<u8>,
    pub local_ports: PortRange,
    pub remote_ports: PortRange,
    /// The inside segment (VLAN ID, [`UNTAGGED`]) the packet belongs to:
    /// the RFC 9478 security label as the dataplane sees it; `None` = any.
    pub segment: Option<u16>,
}

impl Selector {
    /// Matches every packet.
    pub fn any() -> Self {
        Selector {
            local: Vec::new(),
            remote: Vec::new(),
            proto: None,
            local_ports: PortRange::ANY,
            remote_ports: PortRange::ANY,
            segment: None,
        }
    }

    /// The reference definition of a match (the classifier must agree).
    pub fn matches(&self, k: &FlowKey) -> bool {
        let v6 = k.is_v6();
        (self.local.is_empty() || self.local.iter().any(|r| r.contains(v6, k.local())))
            && (self.remote.is_empty() || self.remote.iter().any(|r| r.contains(v6, k.remote())))
            && self.proto.is_none_or(|p| p == k.proto())
            && self.local_ports.contains(k.local_port())
            && self.remote_ports.contains(k.remote_port())
            && self.segment.is_none_or(|s| s == k.segment())
    }
}

/// What a packet is classified by, packed into five words so that hashing
/// and comparing it (the flow cache) is a handful of instructions.
///
/// Word 4: bit 63 = IPv6, bits 56..63 zero (the flow cache keeps its
/// generation there), 40..56 = segment, 32..40 = protocol, 16..32 = local
/// port, 0..16 = remote port. "Local" and "remote" are from the
/// gateway's point of view: outbound, local is the inner source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey(pub(crate) [u64; 5]);

impl FlowKey {
    /// An IPv4 flow.
    #[inline]
    pub fn v4(local: u32, remote: u32, proto: u8, local_port: u16, remote_port: u16, segment: u16) -> Self {
        FlowKey([
            u64::from(local),
            0,
            u64::from(remote),
            0,
            Self::meta(false, proto, local_port, remote_port, segment),
        ])
    }

    /// A flow of either family; `None` when `local` and `remote` differ in family.
    pub fn new(local: IpAddr, remote: IpAddr, proto: u8, local_port: u16, remote_port: u16, segment: u16) -> Option<Self> {
        let (f1, l) = bits(local);
        let (f2, r) = bits(remote);
        if f1 != f2 {
            return None;
        }
        if !f1 {
            return Some(Self::v4(l as u32, r as u32, proto, local_port, remote_port, segment));
        }
        Some(FlowKey([
            (l >> 64) as u64,
            l as u64,
            (r >> 64) as u64,
            r as u64,
            Self::meta(true, proto, local_port, remote_port, segment),
        ]))
    }

    #[inline]
    fn meta(v6: bool, proto: u8, lp: u16, rp: u16, seg: u16) -> u64 {
        (u64::from(v6) << 63) | (u64::from(seg) << 40) | (u64::from(proto) << 32) | (u64::from(lp) << 16) | u64::from(rp)
    }

    #[inline]
    fn addr(&self, i: usize) -> u128 {
        if self.is_v6() {
            (u128::from(self.0[i]) << 64) | u128::from(self.0[i + 1])
        } else {
            u128::from(self.0[i])
        }
    }

    /// The remote address (outbound: the inner destination).
    #[inline]
    pub fn remote_ip(&self) -> IpAddr {
        if self.is_v6() {
            IpAddr::V6(self.remote().into())
        } else {
            IpAddr::V4((self.0[2] as u32).into())
        }
    }

    #[inline]
    pub fn is_v6(&self) -> bool {
        self.0[4] >> 63 != 0
    }
    #[inline]
    pub fn local(&self) -> u128 {
        self.addr(0)
    }
    #[inline]
    pub fn remote(&self) -> u128 {
        self.addr(2)
    }
    #[inline]
    pub fn proto(&self) -> u8 {
        (self.0[4] >> 32) as u8
    }
    #[inline]
    pub fn local_port(&self) -> u16 {
        (self.0[4] >> 16) as u16
    }
    #[inline]
    pub fn remote_port(&self) -> u16 {
        self.0[4] as u16
    }
    #[inline]
    pub fn segment(&self) -> u16 {
        (self.0[4] >> 40) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flow_key_round_trips_its_fields() {
        let k = FlowKey::new(ip("2001:db8::1"), ip("2001:db8:ffff::2"), 6, 1234, 443, 100).unwrap();
        assert!(k.is_v6());
        assert_eq!(k.local(), u128::from("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap()));
        assert_eq!((k.proto(), k.local_port(), k.remote_port(), k.segment()), (6, 1234, 443, 100));
        let k4 = FlowKey::new(ip("10.0.0.1"), ip("10.0.0.2"), 17, 1, 2, 0).unwrap();
        assert_eq!(k4, FlowKey::v4(0x0a00_0001, 0x0a00_0002, 17, 1, 2, 0));
        assert!(!k4.is_v6());
        assert_eq!(k4.remote(), 0x0a00_0002);
        assert!(FlowKey::new(ip("10.0.0.1"), ip("::1"), 0, 0, 0, 0).is_none());
    }

    #[test]
    fn prefix_ranges_cover_exactly_the_prefix() {
        let r = AddrRange::prefix(ip("192.168.105.77"), 24);
        assert_eq!((r.lo, r.hi), (0xc0a8_6900, 0xc0a8_69ff));
        assert_eq!(AddrRange::prefix(ip("1.2.3.4"), 0), AddrRange::any(false));
        assert_eq!(AddrRange::prefix(ip("::"), 0), AddrRange::any(true));
        assert!(AddrRange::new(ip("10.0.0.9"), ip("10.0.0.1")).is_none());
    }

    #[test]
    fn a_port_specific_selector_refuses_portless_packets() {
        let mut s = Selector::any();
        s.remote_ports = PortRange { lo: 80, hi: 80 };
        assert!(s.matches(&FlowKey::v4(1, 2, 6, 999, 80, 0)));
        assert!(!s.matches(&FlowKey::v4(1, 2, 1, 0, 0, 0)), "ICMP carries no port");
        s.remote_ports = PortRange::ANY;
        assert!(s.matches(&FlowKey::v4(1, 2, 1, 0, 0, 0)));
    }
}
