//! Why a packet was dropped. Every failure on the ESP path maps to one
//! `DropReason`: a small `Copy` enum with a stable index, so the dataplane
//! can count drops per worker in a plain `[u64; DropReason::COUNT]` and name
//! them in metrics. Nothing on the packet path panics or allocates to report
//! an error.

/// A reason for dropping a packet. The discriminant is the stable index;
/// new reasons are appended, never renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// The buffer is shorter than the headers it claims (any layer).
    Truncated = 0,
    /// The outer IP header is malformed (version, lengths, checksum).
    BadOuterHeader = 1,
    /// Not ESP (or UDP-encapsulated ESP) at all.
    NotEsp = 2,
    /// An outer IP fragment (RFC 4303 §3.4.1: MUST drop, auditable).
    Fragment = 3,
    /// The SPI does not belong to this SA.
    BadSpi = 4,
    /// Sequence number already seen (RFC 4303 §3.4.3).
    Replayed = 5,
    /// Sequence number left of the replay window, or 0.
    OutsideWindow = 6,
    /// The AEAD tag did not verify (RFC 4303 §3.4.4).
    IcvMismatch = 7,
    /// Pad Length points before the start of the payload.
    BadTrailer = 8,
    /// Padding is not 1, 2, 3, ... (RFC 4303 §2.4).
    BadPadding = 9,
    /// Next Header / inner IP header inconsistent or malformed.
    BadInnerHeader = 10,
    /// A dummy packet, Next Header 59 (RFC 4303 §2.6): discarded silently.
    Dummy = 11,
    /// The SA's sequence space is used up; it needs a rekey (RFC 4303 §3.3.3).
    SeqExhausted = 12,
    /// Not enough headroom in the buffer for the outer headers.
    NoHeadroom = 13,
    /// Not enough tailroom for padding, trailer and ICV.
    NoTailroom = 14,
    /// The result would exceed the IP length limit.
    TooBig = 15,
    /// The crypto backend failed the operation (not an ICV mismatch).
    CryptoFailed = 16,
    /// A NAT keepalive (RFC 3948 §2.3): ignored, counted.
    NatKeepalive = 17,
    /// IKE on UDP 4500 (Non-ESP Marker): not for the ESP path; punt it.
    NonEspMarker = 18,
    /// A packet the SA's Diet-ESP rule cannot express (draft-ietf-ipsecme-
    /// diet-esp-07: the Rule ID is elided, so there is no fallback): an
    /// inner IPv4 fragment or header with options, a DSCP outside the SA's
    /// list, a non-zero Flow Label with the `zero` CDA, a transport header
    /// whose length field disagrees with the IP length.
    DietUnfit = 19,
    /// RFC 5374 §3.1 tunnel mode with address preservation: the decrypted
    /// inner source (or destination) differs from the outer one the SA
    /// preserves, so the packet was re-addressed on the way.
    AddressMismatch = 20,
}

impl DropReason {
    /// Number of reasons; size of a per-reason counter array.
    pub const COUNT: usize = 21;

    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::Truncated,
        Self::BadOuterHeader,
        Self::NotEsp,
        Self::Fragment,
        Self::BadSpi,
        Self::Replayed,
        Self::OutsideWindow,
        Self::IcvMismatch,
        Self::BadTrailer,
        Self::BadPadding,
        Self::BadInnerHeader,
        Self::Dummy,
        Self::SeqExhausted,
        Self::NoHeadroom,
        Self::NoTailroom,
        Self::TooBig,
        Self::CryptoFailed,
        Self::NatKeepalive,
        Self::NonEspMarker,
        Self::DietUnfit,
        Self::AddressMismatch,
    ];

    /// The stable index, `0..COUNT`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name for metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::BadOuterHeader => "bad_outer_header",
            Self::NotEsp => "not_esp",
            Self::Fragment => "fragment",
            Self::BadSpi => "bad_spi",
            Self::Replayed => "replayed",
            Self::OutsideWindow => "outside_window",
            Self::IcvMismatch => "icv_mismatch",
            Self::BadTrailer => "bad_trailer",
            Self::BadPadding => "bad_padding",
            Self::BadInnerHeader => "bad_inner_header",
            Self::Dummy => "dummy",
            Self::SeqExhausted => "seq_exhausted",
            Self::NoHeadroom => "no_headroom",
            Self::NoTailroom => "no_tailroom",
            Self::TooBig => "too_big",
            Self::CryptoFailed => "crypto_failed",
            Self::NatKeepalive => "nat_keepalive",
            Self::NonEspMarker => "non_esp_marker",
            Self::DietUnfit => "diet_unfit",
            Self::AddressMismatch => "address_mismatch",
        }
    }

    /// True for drops that are expected traffic, not errors (dummy packets,
    /// keepalives): count them, do not audit them.
    pub const fn is_silent(self) -> bool {
        matches!(self, Self::Dummy | Self::NatKeepalive | Self::NonEspMarker)
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-reason drop counters, as a worker keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounters(pub [u64; DropReason::COUNT]);

impl DropCounters {
    pub fn count(&mut self, r: DropReason) {
        self.0[r.index()] += 1;
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_stable_and_dense() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(DropReason::IcvMismatch.index(), 7);
        assert_eq!(DropReason::SeqExhausted.index(), 12);
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
