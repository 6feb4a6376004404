//! Zero-copy views of the headers an ESP dataplane touches: Ethernet, IPv4,
//! IPv6 (with extension-header walking), UDP, the ESP header (RFC 4303 §2) and
//! the ESP trailer (RFC 4303 §2.4-§2.6), plus the RFC 3948 §2 demux of UDP 4500.
//!
//! Every view follows the smoltcp pattern: `Packet<T: AsRef<[u8]>>` wraps a
//! buffer, `new_checked` validates lengths once, and after that **no accessor
//! panics**. Each header also has a `Repr` with `parse` and `emit`.
//! `new_checked` never panics on any input (the fuzz target and the truncation
//! tests exercise this). Nothing here allocates or does I/O.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod esp;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod trailer;
pub mod udp;

pub use esp::{classify_udp_encap, EspPacket, EspRepr, UdpEncapKind};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr, UpperLayer};
pub use trailer::{EspTrailer, TrailerRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why a buffer is not a valid header. Small and `Copy` so callers can map
/// it to their own drop reasons without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field says).
    Truncated,
    /// A field holds a value the format forbids (version, length, ...).
    Malformed,
    /// The header checksum does not verify.
    Checksum,
    /// The ESP padding is not 1, 2, 3, ... (RFC 4303 §2.4).
    Padding,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Checksum => "bad checksum",
            Error::Padding => "bad padding",
        })
    }
}

impl std::error::Error for Error {}

/// Result of parsing.
pub type Result<T> = core::result::Result<T, Error>;

/// An IP protocol number / IPv6 Next Header value (IANA "Assigned Internet
/// Protocol Numbers"). A newtype, not a closed enum: unknown values round-trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const HOP_BY_HOP: Self = Self(0);
    pub const ICMP: Self = Self(1);
    /// IPv4 encapsulated (tunnel-mode Next Header, RFC 4303 §2.6).
    pub const IPV4: Self = Self(4);
    pub const TCP: Self = Self(6);
    pub const UDP: Self = Self(17);
    /// IPv6 encapsulated (tunnel-mode Next Header, RFC 4303 §2.6).
    pub const IPV6: Self = Self(41);
    pub const IPV6_ROUTING: Self = Self(43);
    pub const IPV6_FRAGMENT: Self = Self(44);
    pub const ESP: Self = Self(50);
    pub const AH: Self = Self(51);
    pub const ICMPV6: Self = Self(58);
    /// "No Next Header": an ESP dummy packet (RFC 4303 §2.6).
    pub const NO_NEXT_HEADER: Self = Self(59);
    pub const IPV6_DEST_OPTS: Self = Self(60);
    pub const MOBILITY: Self = Self(135);
    pub const HIP: Self = Self(139);
    pub const SHIM6: Self = Self(140);
}

/// UDP port for IKE and UDP-encapsulated ESP (RFC 3948 §2, RFC 7296 §2.23).
pub const NAT_T_PORT: u16 = 4500;

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
