//! Traffic selectors as the endpoint reasons about them, and narrowing
//! (RFC 7296 §2.9, §3.13.1).
//!
//! Guarantees: [`narrow`] returns only selectors that lie inside both the
//! proposed and the allowed sets (the intersection of every pair), so a
//! responder never grants more than its policy or more than was asked;
//! [`is_narrowing_of`] lets the initiator check that the responder did the
//! same (§2.9: the responder may narrow, never widen). Selectors of types
//! this crate does not narrow (TS_SECLABEL, unknown) are skipped by
//! [`narrow`]; RFC 9478 labels are matched exactly by [`choose_label`] and
//! [`check_label`].
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ike_wire::TrafficSelector as WireTs;

/// An address-range traffic selector (TS_IPV4_ADDR_RANGE or
/// TS_IPV6_ADDR_RANGE); `ip_protocol` 0 means any protocol, ports 0-65535
/// any port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrafficSelector {
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

impl TrafficSelector {
    /// Every IPv4 address, protocol and port.
    pub const fn any_v4() -> Self {
        Self::range(IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::BROADCAST))
    }

    /// Every IPv6 address, protocol and port.
    pub const fn any_v6() -> Self {
        Self::range(IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff)))
    }

    /// All protocols and ports between two addresses (inclusive).
    pub const fn range(start_addr: IpAddr, end_addr: IpAddr) -> Self {
        Self { ip_protocol: 0, start_port: 0, end_port: u16::MAX, start_addr, end_addr }
    }

    /// One address.
    pub const fn host(addr: IpAddr) -> Self {
        Self::range(addr, addr)
    }

    /// One UDP port of one address (RFC 9838 §4.4.2: a Rekey SA's
    /// selectors).
    pub fn udp_host(addr: std::net::SocketAddr) -> Self {
        Self { ip_protocol: 17, start_port: addr.port(), end_port: addr.port(), start_addr: addr.ip(), end_addr: addr.ip() }
    }

    /// A prefix such as 10.1.0.0/16; `None` if the length exceeds the family.
    pub fn prefix(addr: IpAddr, len: u8) -> Option<Self> {
        match addr {
            IpAddr::V4(a) => {
                if len > 32 {
                    return None;
                }
                let bits = u32::from(a);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Some(Self::range(IpAddr::V4((bits & mask).into()), IpAddr::V4((bits | !mask).into())))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                if len > 128 {
                    return None;
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Some(Self::range(IpAddr::V6((bits & mask).into()), IpAddr::V6((bits | !mask).into())))
            }
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.start_addr.is_ipv4()
    }

    /// The wire form.
    pub fn to_wire(&self) -> WireTs<'static> {
        match (self.start_addr, self.end_addr) {
            (IpAddr::V4(start_addr), IpAddr::V4(end_addr)) => WireTs::Ipv4 {
                ip_protocol: self.ip_protocol,
                start_port: self.start_port,
                end_port: self.end_port,
                start_addr,
                end_addr,
            },
            (start, end) => WireTs::Ipv6 {
                ip_protocol: self.ip_protocol,
                start_port: self.start_port,
                end_port: self.end_port,
                start_addr: to_v6(start),
                end_addr: to_v6(end),
            },
        }
    }

    /// From the wire form; `None` for selector types not negotiated here and
    /// for empty ranges (start above end).
    pub fn from_wire(ts: &WireTs<'_>) -> Option<Self> {
        let s = match *ts {
            WireTs::Ipv4 { ip_protocol, start_port, end_port, start_addr, end_addr } => {
                Self { ip_protocol, start_port, end_port, start_addr: start_addr.into(), end_addr: end_addr.into() }
            }
            WireTs::Ipv6 { ip_protocol, start_port, end_port, start_addr, end_addr } => {
                Self { ip_protocol, start_port, end_port, start_addr: start_addr.into(), end_addr: end_addr.into() }
            }
            _ => return None,
        };
        (s.start_addr <= s.end_addr && s.start_port <= s.end_port).then_some(s)
    }

    /// The selector both `self` and `other` cover, if any.
    pub fn intersect(&self, other: &Self) -> Option<Self> {
        if self.start_addr.is_ipv4() != other.start_addr.is_ipv4() {
            return None;
        }
        let ip_protocol = match (self.ip_protocol, other.ip_protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let start_port = self.start_port.max(other.start_port);
        let end_port = self.end_port.min(other.end_port);
        let start_addr = self.start_addr.max(other.start_addr);
        let end_addr = self.end_addr.min(other.end_addr);
        (start_port <= end_port && start_addr <= end_addr).then_some(Self { ip_protocol, start_port, end_port, start_addr, end_addr })
    }

    /// Whether `self` lies entirely inside `outer`.
    pub fn is_within(&self, outer: &Self) -> bool {
        self.intersect(outer).as_ref() == Some(self)
    }
}

fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// RFC 7296 §2.9: the responder's narrowed selectors: every non-empty
/// intersection of a proposed selector with an allowed one, in the order
/// proposed, without duplicates. Empty means TS_UNACCEPTABLE.
pub fn narrow(proposed: &[TrafficSelector], allowed: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for p in proposed {
        for a in allowed {
            if let Some(i) = p.intersect(a) {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// Whether every selector of `narrowed` lies inside some selector of
/// `proposed` (what the initiator checks of a response, §2.9), and there is
/// at least one.
pub fn is_narrowing_of(narrowed: &[TrafficSelector], proposed: &[TrafficSelector]) -> bool {
    !narrowed.is_empty() && narrowed.iter().all(|n| proposed.iter().any(|p| n.is_within(p)))
}

/// Selectors of a TS payload that this crate negotiates.
pub fn from_wire_list(selectors: &[WireTs<'_>]) -> Vec<TrafficSelector> {
    selectors.iter().filter_map(TrafficSelector::from_wire).collect()
}

/// A TS payload body.
pub fn to_wire_list(selectors: &[TrafficSelector]) -> ike_wire::Ts<'static> {
    ike_wire::Ts { selectors: selectors.iter().map(TrafficSelector::to_wire).collect() }
}

/// RFC 9478 security labels as compared and sent: with the terminating
/// NUL that SELinux contexts carry (strongSwan's `sec_label_from_encoding`
/// and libreswan both send it and add it when missing), so "ctx" and
/// "ctx\0" are the same label.
pub fn normalize_label(label: &[u8]) -> Vec<u8> {
    let mut v = label.to_vec();
    if v.last() != Some(&0) {
        v.push(0);
    }
    v
}

/// The TS_SECLABEL selectors of a TS payload, normalized, without
/// duplicates; empty labels are ignored (RFC 9478 forbids them).
pub fn labels_of(selectors: &[WireTs<'_>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for s in selectors {
        if let WireTs::SecLabel { label } = s {
            if !label.is_empty() {
                let l = normalize_label(label);
                if !out.contains(&l) {
                    out.push(l);
                }
            }
        }
    }
    out
}

/// A TS payload body with an optional TS_SECLABEL after the address
/// selectors (RFC 9478: one more substructure in TSi and TSr).
pub fn to_wire_list_labeled(selectors: &[TrafficSelector], label: Option<&[u8]>) -> ike_wire::Ts<'static> {
    let mut ts = to_wire_list(selectors);
    if let Some(l) = label {
        ts.selectors.push(WireTs::SecLabel { label: normalize_label(l).into() });
    }
    ts
}

/// RFC 9478 negotiation as responder: with a configured label the
/// initiator must offer exactly it in both TSi and TSr; without one, a
/// labeled request is refused rather than answered with an unlabeled SA
/// the initiator would not match. `Ok(label)` is what to answer with.
pub fn choose_label(ours: Option<&[u8]>, tsi: &[WireTs<'_>], tsr: &[WireTs<'_>]) -> Result<Option<Vec<u8>>, crate::ProtoError> {
    let (li, lr) = (labels_of(tsi), labels_of(tsr));
    match ours.map(normalize_label) {
        None if li.is_empty() && lr.is_empty() => Ok(None),
        None => Err(crate::ProtoError::TsUnacceptable),
        Some(l) if li.contains(&l) && lr.contains(&l) => Ok(Some(l)),
        Some(_) => Err(crate::ProtoError::TsUnacceptable),
    }
}

/// RFC 9478 as initiator: the responder must return our label (and only
/// it) in both TSi and TSr, and no label if we sent none.
pub fn check_label(ours: Option<&[u8]>, tsi: &[WireTs<'_>], tsr: &[WireTs<'_>]) -> Result<Option<Vec<u8>>, crate::ProtoError> {
    let (li, lr) = (labels_of(tsi), labels_of(tsr));
    match ours.map(normalize_label) {
        None if li.is_empty() && lr.is_empty() => Ok(None),
        Some(l) if li == [l.clone()] && lr == [l.clone()] => Ok(Some(l)),
        _ => Err(crate::ProtoError::TsUnacceptable),
    }
}
