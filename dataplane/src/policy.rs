//! The dataplane's security policy: the configured SPD compiled once, the
//! SA search it falls back to, and the RFC 9478 label ↔ VLAN segments.
//!
//! Guarantees:
//! * Outbound (RFC 4301 §5.1): a packet takes the action of the first
//!   `dataplane.spd` entry that contains it; without an `spd:` section the
//!   SPD is one entry, PROTECT any. Traffic no entry matches is discarded
//!   (RFC 4301 §4.4.1) as [`SpdDrop::NoMatch`].
//! * PROTECT picks an SA whose negotiated or configured selectors contain
//!   the packet's addresses, protocol and ports (RFC 4301 §4.4.2, the SPD-S
//!   cache: the SA's selectors, not only a destination prefix), and whose
//!   label is the packet's segment's: cleartext from one label's segment is
//!   never sealed with another label's SA (RFC 9478 §3: the label is one
//!   more selector).
//! * Segments: an inside frame tagged with VLAN `v` belongs to the label
//!   mapped to `v` (`dataplane.labels`), an untagged one to the unlabeled
//!   segment ([`spd::UNTAGGED`]), or to the label mapped to VLAN 0 where
//!   one is (then no unlabeled SA serves the inside); a labeled SA whose
//!   label has no VLAN serves no segment ([`NO_SEGMENT`]).
//! * Everything here is built from the configuration and an SA's slot when
//!   they change; a packet only reads it.

use std::net::IpAddr;

use esp_wire::{Ipv4Packet, Ipv6Packet};
use sa_table::{SaId, SaParams, TrafficSelector};
use spd::{Classifier, FlowKey};

use crate::config::{label_bytes, Dataplane, SpdAction};

/// The segment of an SA whose label maps to no VLAN: no packet has it.
pub const NO_SEGMENT: u16 = u16::MAX;

/// What an SPD entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Bypass,
    Discard,
    /// With the static SA of this SPI, or (None) any SA whose selectors fit.
    Protect { spi: Option<u32> },
}

/// Why the policy drops a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpdDrop {
    /// A DISCARD entry matched.
    Discard,
    /// No SPD entry matched (RFC 4301 §4.4.1: discard).
    NoMatch,
    /// PROTECT, but no SA has selectors containing the packet.
    NoSa,
    /// PROTECT, and an SA's selectors contain the packet, but its label is
    /// another segment's.
    LabelMismatch,
    /// The entry's named SA does not contain the packet.
    SelectorMismatch,
    /// Inbound cleartext that the SPD says must arrive protected (RFC 4301 §5.2).
    CleartextProtected,
}

/// The outcome for one flow, cached per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Protect(SaId),
    Bypass,
    Drop(SpdDrop),
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict::Drop(SpdDrop::NoMatch)
    }
}

/// The configured policy, compiled.
pub struct Policy {
    /// `None`: no `spd:` section (PROTECT any).
    spd: Option<(Classifier, Vec<Rule>)>,
    /// Label (without NUL) → VLAN.
    labels: Vec<(Vec<u8>, u16)>,
}

impl Policy {
    pub fn new(d: &Dataplane) -> Policy {
        let spd = d.spd.as_ref().map(|entries| {
            let sels: Vec<_> = entries.iter().map(|e| e.selector(d)).collect();
            let rules = entries
                .iter()
                .map(|e| match e.action {
                    SpdAction::Bypass => Rule::Bypass,
                    SpdAction::Discard => Rule::Discard,
                    SpdAction::Protect => Rule::Protect { spi: e.spi },
                })
                .collect();
            (Classifier::new(&sels), rules)
        });
        let labels = d.labels.iter().map(|l| (label_bytes(l.label.as_bytes()).to_vec(), l.vlan)).collect();
        Policy { spd, labels }
    }

    /// Is there an `spd:` section?
    pub fn configured(&self) -> bool {
        self.spd.is_some()
    }

    /// The rule for a flow; `None` when no entry matches.
    #[inline]
    pub fn rule(&self, k: &FlowKey) -> Option<Rule> {
        match &self.spd {
            None => Some(Rule::Protect { spi: None }),
            Some((c, rules)) => c.first_match(k).map(|i| rules[i]),
        }
    }

    /// The segment of SA label `label` (as stored: maybe NUL-terminated).
    pub fn segment_of_label(&self, label: &[u8]) -> u16 {
        let l = label_bytes(label);
        if l.is_empty() {
            // Untagged traffic is unlabeled unless a label owns it (vlan 0).
            return if self.knows_vlan(spd::UNTAGGED) { NO_SEGMENT } else { spd::UNTAGGED };
        }
        self.labels.iter().find(|(b, _)| b.as_slice() == l).map_or(NO_SEGMENT, |&(_, v)| v)
    }

    /// Does an SPD entry name the static outbound SA `spi`?
    pub fn names_spi(&self, spi: u32) -> bool {
        self.spd.as_ref().is_some_and(|(_, rules)| rules.contains(&Rule::Protect { spi: Some(spi) }))
    }

    /// Does VLAN `vid` carry a label's segment?
    pub fn knows_vlan(&self, vid: u16) -> bool {
        self.labels.iter().any(|&(_, v)| v == vid)
    }

    /// The outbound verdict for flow `k` to `dst`: the SPD's rule, then the
    /// SA it allows. `sel(id)` gives an outbound SA's selectors (None: not
    /// a usable outbound SA); `by_spi` finds a static outbound SA.
    pub fn decide<'s>(
        &self,
        k: &FlowKey,
        dst: IpAddr,
        reader: &sa_table::Reader,
        sel: impl Fn(SaId) -> Option<&'s SaSelectors>,
        by_spi: impl Fn(u32) -> Option<SaId>,
    ) -> Verdict {
        match self.rule(k) {
            None => Verdict::Drop(SpdDrop::NoMatch),
            Some(Rule::Bypass) => Verdict::Bypass,
            Some(Rule::Discard) => Verdict::Drop(SpdDrop::Discard),
            Some(Rule::Protect { spi: Some(spi) }) => match by_spi(spi).and_then(|id| sel(id).map(|s| (id, s))) {
                None => Verdict::Drop(SpdDrop::NoSa),
                Some((id, s)) if s.contains(k) => {
                    if s.segment == k.segment() {
                        Verdict::Protect(id)
                    } else {
                        Verdict::Drop(SpdDrop::LabelMismatch)
                    }
                }
                Some(_) => Verdict::Drop(SpdDrop::SelectorMismatch),
            },
            Some(Rule::Protect { spi: None }) => {
                let mut label_miss = false;
                let mut found = None;
                reader.outbound_candidates(dst, |id| match sel(id) {
                    Some(s) if s.contains(k) => {
                        if s.segment == k.segment() {
                            found = Some(id);
                            return true;
                        }
                        label_miss = true;
                        false
                    }
                    _ => false,
                });
                match found {
                    Some(id) => Verdict::Protect(id),
                    None if label_miss => Verdict::Drop(SpdDrop::LabelMismatch),
                    None => Verdict::Drop(SpdDrop::NoSa),
                }
            }
        }
    }

    /// RFC 4301 §5.2 for cleartext that arrived on the outside and is not
    /// for the gateway: BYPASS passes it in clear (into the unlabeled
    /// segment only: cleartext from outside never enters a label's
    /// segment), PROTECT means it should have come as ESP. `k` is from the
    /// gateway's side (local = the inner destination).
    pub fn inbound_clear(&self, k: &FlowKey) -> Verdict {
        match self.rule(k) {
            Some(Rule::Bypass) => Verdict::Bypass,
            Some(Rule::Discard) => Verdict::Drop(SpdDrop::Discard),
            Some(Rule::Protect { .. }) => Verdict::Drop(SpdDrop::CleartextProtected),
            None => Verdict::Drop(SpdDrop::NoMatch),
        }
    }
}

/// One side's traffic selector as ranges (RFC 7296 §3.13.1).
#[derive(Debug, Clone, Copy, Default)]
struct TsRange {
    v6: bool,
    lo: u128,
    hi: u128,
    proto: u8,
    port_lo: u16,
    port_hi: u16,
}

impl TsRange {
    fn of(t: &TrafficSelector) -> Option<TsRange> {
        let v6 = match t.ts_type {
            TrafficSelector::TS_IPV4_ADDR_RANGE => false,
            TrafficSelector::TS_IPV6_ADDR_RANGE => true,
            _ => return None,
        };
        let a = |b: &[u8; 16]| {
            if v6 {
                u128::from_be_bytes(*b)
            } else {
                u128::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
        };
        Some(TsRange { v6, lo: a(&t.start_addr), hi: a(&t.end_addr), proto: t.ip_proto, port_lo: t.start_port, port_hi: t.end_port })
    }

    #[inline]
    fn contains(&self, v6: bool, a: u128, proto: u8, port: u16) -> bool {
        self.v6 == v6
            && self.lo <= a
            && a <= self.hi
            && (self.proto == 0 || self.proto == proto)
            && self.port_lo <= port
            && port <= self.port_hi
    }
}

/// An outbound SA's selectors and segment, kept by the worker beside its
/// crypto context (no key material: only what classification reads).
#[derive(Debug, Clone, Default)]
pub struct SaSelectors {
    local: [TsRange; sa_table::MAX_TS_PER_SIDE],
    remote: [TsRange; sa_table::MAX_TS_PER_SIDE],
    n_local: usize,
    n_remote: usize,
    pub segment: u16,
}

impl SaSelectors {
    pub fn of(p: &SaParams, policy: &Policy) -> SaSelectors {
        let mut s = SaSelectors { segment: policy.segment_of_label(p.sec_label()), ..SaSelectors::default() };
        for t in p.ts_local().iter().filter_map(TsRange::of) {
            s.local[s.n_local] = t;
            s.n_local += 1;
        }
        for t in p.ts_remote().iter().filter_map(TsRange::of) {
            s.remote[s.n_remote] = t;
            s.n_remote += 1;
        }
        s
    }

    /// RFC 4301 §5.1 / RFC 7296 §2.9: a local selector contains the source
    /// (address, protocol, port) and a remote one the destination. The
    /// segment is compared by the caller.
    #[inline]
    pub fn contains(&self, k: &FlowKey) -> bool {
        let v6 = k.is_v6();
        self.local[..self.n_local].iter().any(|t| t.contains(v6, k.local(), k.proto(), k.local_port()))
            && self.remote[..self.n_remote].iter().any(|t| t.contains(v6, k.remote(), k.proto(), k.remote_port()))
    }
}

/// The flow of an inner IP packet from the inside (local = source), and its
/// destination; `None` when the header does not parse. Ports are 0 for
/// packets that carry none we read (RFC 4301 §7: non-initial fragments).
#[inline]
pub fn outbound_flow(ip: &[u8], segment: u16) -> Option<(FlowKey, IpAddr)> {
    match ip.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            let proto = p.protocol().0;
            let (sp, dp) = if p.is_fragment() && p.frag_offset() != 0 { (0, 0) } else { ports(ip, proto, p.header_len()) };
            let (s, d) = (p.src_addr(), p.dst_addr());
            Some((FlowKey::v4(u32::from(s), u32::from(d), proto, sp, dp, segment), IpAddr::V4(d)))
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip).ok()?;
            let (proto, (sp, dp)) = match p.upper_layer() {
                Ok(u) => (u.protocol.0, ports(ip, u.protocol.0, u.offset)),
                Err(_) => (0, (0, 0)),
            };
            let d = IpAddr::V6(p.dst_addr());
            Some((FlowKey::new(IpAddr::V6(p.src_addr()), d, proto, sp, dp, segment)?, d))
        }
        _ => None,
    }
}

/// The flow of cleartext from the outside, from the gateway's side (local =
/// the destination), for the inbound SPD check.
pub fn inbound_flow(ip: &[u8]) -> Option<FlowKey> {
    let (k, _) = outbound_flow(ip, spd::UNTAGGED)?;
    let (l, r) = if k.is_v6() {
        (IpAddr::V6(k.remote().into()), IpAddr::V6(k.local().into()))
    } else {
        (IpAddr::V4((k.remote() as u32).into()), IpAddr::V4((k.local() as u32).into()))
    };
    FlowKey::new(l, r, k.proto(), k.remote_port(), k.local_port(), spd::UNTAGGED)
}

#[inline]
fn ports(ip: &[u8], proto: u8, off: usize) -> (u16, u16) {
    match (proto, ip.get(off..off + 4)) {
        // TCP, UDP, SCTP: the two ports lead the header.
        (6 | 17 | 132, Some(p)) => (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])),
        _ => (0, 0),
    }
}

/// The 802.1Q VLAN ID of an Ethernet frame, `None` when it is untagged.
#[inline]
pub fn vlan_of(frame: &[u8]) -> Option<u16> {
    match frame.get(12..16) {
        Some(t) if t[0] == 0x81 && t[1] == 0x00 => Some(u16::from_be_bytes([t[2], t[3]]) & 0x0fff),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const YAML: &str = r#"
dataplane:
  ports: { outside: { device: net_null0 }, inside: { device: net_null1 } }
  addresses: { outside: [172.16.1.5] }
  labels:
    - { label: "red", vlan: 100 }
    - { label: "blue", vlan: 200 }
  spd:
    - { action: bypass, remote: ["10.9.0.0/16"], proto: udp, remote_ports: 53 }
    - { action: discard, remote: ["192.168.105.5-192.168.105.9"] }
    - { action: protect, remote: ["192.168.105.0/24"] }
"#;

    fn v4(src: &str, dst: &str, proto: u8, sp: u16, dp: u16, seg: u16) -> FlowKey {
        FlowKey::new(src.parse().unwrap(), dst.parse().unwrap(), proto, sp, dp, seg).unwrap()
    }

    #[test]
    fn rules_follow_the_configured_order_and_unmatched_traffic_has_none() {
        let c = Config::from_yaml(YAML).unwrap();
        let p = Policy::new(&c.dataplane);
        assert_eq!(p.rule(&v4("192.168.5.1", "10.9.1.1", 17, 999, 53, 0)), Some(Rule::Bypass));
        assert_eq!(p.rule(&v4("192.168.5.1", "10.9.1.1", 6, 999, 53, 0)), None);
        assert_eq!(p.rule(&v4("192.168.5.1", "192.168.105.7", 6, 1, 2, 0)), Some(Rule::Discard));
        assert_eq!(p.rule(&v4("192.168.5.1", "192.168.105.10", 6, 1, 2, 0)), Some(Rule::Protect { spi: None }));
        // Inbound cleartext: a PROTECT entry means it should have been ESP.
        assert_eq!(p.inbound_clear(&v4("192.168.5.1", "192.168.105.10", 6, 1, 2, 0)), Verdict::Drop(SpdDrop::CleartextProtected));
        let none = Config::from_yaml(&YAML[..YAML.find("  spd:").unwrap()]).unwrap();
        let p = Policy::new(&none.dataplane);
        assert!(!p.configured());
        assert_eq!(p.rule(&v4("1.1.1.1", "2.2.2.2", 6, 1, 2, 0)), Some(Rule::Protect { spi: None }), "no spd: PROTECT any");
    }

    #[test]
    fn labels_map_to_segments_and_unknown_labels_to_none() {
        let c = Config::from_yaml(YAML).unwrap();
        let p = Policy::new(&c.dataplane);
        assert_eq!(p.segment_of_label(b"red\0"), 100);
        assert_eq!(p.segment_of_label(b"blue"), 200);
        assert_eq!(p.segment_of_label(b""), spd::UNTAGGED);
        assert_eq!(p.segment_of_label(b"green\0"), NO_SEGMENT);
        assert!(p.knows_vlan(200) && !p.knows_vlan(300));
        // A label that owns the untagged network takes it from unlabeled SAs.
        let c = Config::from_yaml(&YAML.replace("vlan: 200", "vlan: 0")).unwrap();
        let p = Policy::new(&c.dataplane);
        assert_eq!(p.segment_of_label(b"blue\0"), spd::UNTAGGED);
        assert_eq!(p.segment_of_label(b""), NO_SEGMENT);
    }

    #[test]
    fn sa_selectors_check_ports_and_local_addresses_too() {
        let c = Config::from_yaml(YAML).unwrap();
        let p = Policy::new(&c.dataplane);
        let mut sa = SaParams::zeroed();
        let mut r = TrafficSelector::range("192.168.105.0".parse().unwrap(), "192.168.105.255".parse().unwrap());
        r.ip_proto = 6;
        r.start_port = 1000;
        r.end_port = 1999;
        sa.ts_remote[0] = r;
        sa.ts_remote_count = 1;
        sa.ts_local[0] = TrafficSelector::range("192.168.5.0".parse().unwrap(), "192.168.5.255".parse().unwrap());
        sa.ts_local_count = 1;
        sa.sec_label[..4].copy_from_slice(b"red\0");
        sa.sec_label_len = 4;
        let s = SaSelectors::of(&sa, &p);
        assert_eq!(s.segment, 100);
        assert!(s.contains(&v4("192.168.5.1", "192.168.105.10", 6, 40000, 1500, 100)));
        assert!(!s.contains(&v4("192.168.5.1", "192.168.105.10", 17, 40000, 1500, 100)), "protocol");
        assert!(!s.contains(&v4("192.168.5.1", "192.168.105.10", 6, 40000, 2000, 100)), "port");
        assert!(!s.contains(&v4("192.168.6.1", "192.168.105.10", 6, 40000, 1500, 100)), "source");
    }

    #[test]
    fn flows_are_read_from_ipv4_and_vlan_tags_from_frames() {
        // IPv4/UDP 10.0.0.1:1234 -> 10.0.0.2:53.
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        ip.extend_from_slice(&[0x04, 0xd2, 0, 53, 0, 8, 0, 0]);
        let (k, dst) = outbound_flow(&ip, 7).unwrap();
        assert_eq!(k, v4("10.0.0.1", "10.0.0.2", 17, 1234, 53, 7));
        assert_eq!(dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(inbound_flow(&ip).unwrap(), v4("10.0.0.2", "10.0.0.1", 17, 53, 1234, 0));
        // A non-initial fragment carries no ports.
        ip[6] = 0x00;
        ip[7] = 0x10;
        assert_eq!(outbound_flow(&ip, 0).unwrap().0, v4("10.0.0.1", "10.0.0.2", 17, 0, 0, 0));
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x64, 0x08, 0x00]);
        assert_eq!(vlan_of(&f), Some(100), "priority bits are not the VID");
        assert_eq!(vlan_of(&[0u8; 14]), None);
    }
}
