//! The dataplane's drop reasons beyond the ESP engine's, and every reason's
//! metric label by counter index.

use esp::DropReason;

use crate::policy::SpdDrop;

/// Drop reasons of the dataplane beyond the ESP engine's (which come first,
/// at their own indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DpDrop {
    /// No inbound SA for the SPI (RFC 4303 §3.4.2: discard, auditable).
    NoInboundSa = 0,
    /// The SPD says PROTECT, but no outbound SA's selectors contain the packet.
    NoOutboundSa = 1,
    /// The next hop's MAC is not known yet (a request went out).
    NoNeighbour = 2,
    /// An IP packet neither for the gateway nor ESP.
    NotForUs = 3,
    /// Not IPv4, IPv6 or ARP.
    NotIp = 4,
    /// A malformed ARP or neighbour-discovery message.
    BadL2 = 5,
    /// The inner packet is outside the SA's traffic selectors (RFC 4301 §5.2).
    SelectorMismatch = 6,
    /// The owner worker's handoff queue was full.
    HandoffFull = 7,
    /// The TX queue did not take the packet.
    TxFull = 8,
    /// For the gateway, but there is no punt port.
    NoPunt = 9,
    /// The SA's slot could not be read or its parameters are unusable.
    SaUnusable = 10,
    /// A multi-segment mbuf (esprit handles one segment per packet).
    Segmented = 11,
    /// A DISCARD entry of the SPD matched (RFC 4301 §4.4.1).
    SpdDiscard = 12,
    /// No entry of the configured SPD matched (RFC 4301 §4.4.1: discard).
    NoSpdMatch = 13,
    /// An SA's selectors contain the packet, but it serves another label's
    /// segment (RFC 9478): the packet would have crossed.
    LabelMismatch = 14,
    /// An inside frame tagged with a VLAN that carries no label's segment.
    UnknownVlan = 15,
    /// Cleartext from the outside that the SPD says must arrive as ESP
    /// (RFC 4301 §5.2).
    CleartextProtected = 16,
    /// Decrypted on an SA whose label has no inside VLAN: no segment to
    /// deliver it into.
    LabelUnmapped = 17,
}

impl DpDrop {
    pub const COUNT: usize = 18;
    pub const NAMES: [&'static str; Self::COUNT] = [
        "no_inbound_sa",
        "no_outbound_sa",
        "no_neighbour",
        "not_for_us",
        "not_ip",
        "bad_l2",
        "selector_mismatch",
        "handoff_full",
        "tx_full",
        "no_punt",
        "sa_unusable",
        "segmented",
        "spd_discard",
        "no_spd_match",
        "label_mismatch",
        "unknown_vlan",
        "cleartext_protected",
        "label_unmapped",
    ];

    /// Index in the worker's drop counters (after the ESP reasons).
    pub const fn index(self) -> usize {
        DropReason::COUNT + self as usize
    }
}

impl From<SpdDrop> for DpDrop {
    fn from(r: SpdDrop) -> DpDrop {
        match r {
            SpdDrop::Discard => DpDrop::SpdDiscard,
            SpdDrop::NoMatch => DpDrop::NoSpdMatch,
            SpdDrop::NoSa => DpDrop::NoOutboundSa,
            SpdDrop::LabelMismatch => DpDrop::LabelMismatch,
            SpdDrop::SelectorMismatch => DpDrop::SelectorMismatch,
            SpdDrop::CleartextProtected => DpDrop::CleartextProtected,
        }
    }
}

/// Counters of one run, by drop reason index (ESP reasons, then [`DpDrop`]).
pub(super) type RunDrops = [u64; DropReason::COUNT + DpDrop::COUNT];

const fn all_drop_names() -> [&'static str; DropReason::COUNT + DpDrop::COUNT] {
    let mut out = [""; DropReason::COUNT + DpDrop::COUNT];
    let mut i = 0;
    while i < DropReason::COUNT {
        out[i] = DropReason::ALL[i].name();
        i += 1;
    }
    let mut j = 0;
    while j < DpDrop::COUNT {
        out[DropReason::COUNT + j] = DpDrop::NAMES[j];
        j += 1;
    }
    out
}

/// Every drop reason's metric label, by index.
pub static DROP_NAMES: [&str; DropReason::COUNT + DpDrop::COUNT] = all_drop_names();
