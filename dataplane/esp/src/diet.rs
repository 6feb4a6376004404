//! Diet-ESP: ESP header compression (draft-ietf-ipsecme-diet-esp-07, with
//! the attribute values of draft-ietf-ipsecme-ikev2-diet-esp-extension-04
//! §8.5), done natively per SA, without a generic SCHC engine on the packet
//! path (diet-esp-07 §1.2: SCHC is the notation, "it is not anticipated
//! that the general SCHC framework will be integrated into the ESP
//! implementation").
//!
//! One [`Profile`] per SA holds the three rules the draft derives from the
//! SA's Attributes for Rule Generation (§4.2), compiled once at SA creation:
//!
//! * **IIPC** (§5.1): the inner IP packet is split into a fixed-size Header
//!   and a Payload; the Header is compressed into a bit-packed SCHC
//!   Compression Residue (fields in header order, most significant bit
//!   first, RFC 8724 §7.2), padded with zero bits to an octet boundary and
//!   followed by the unchanged Payload. Tunnel mode compresses the inner
//!   IPv4/IPv6 header and the UDP, UDP-Lite, TCP or SCTP header after it;
//!   transport mode only the transport header. Addresses and ports keep
//!   the bits their traffic-selector range fixes (MO `MSB`, CDA `LSB`);
//!   lengths and checksums are recomputed; DSCP, ECN, Flow Label (IPv4:
//!   Identification) and Hop Limit (TTL) follow their CDAs.
//! * **CTEC** (§5.2): the ESP trailer. `Mandatory` keeps Pad Length and
//!   Next Header; `Optional` elides a Next Header the SA already implies and
//!   elides Pad Length and Padding when the alignment is 8 bits (every
//!   cipher here is a stream AEAD with block size 1).
//! * **EEC** (§5.3): SPI and Sequence Number reduced to their `esp_spi_lsb`
//!   and `esp_sn_lsb` least significant bits (the sum a multiple of 8). The
//!   ICV still covers the full SPI and SN (§4: EEC runs after the ICV is
//!   computed), so the receiver authenticates what it reconstructed.
//!
//! Guarantees: no allocation, no panic on any input (the `diet_decompress`
//! fuzz target); decompression of what [`Profile::compress_tunnel`] or
//! [`Profile::compress_transport`] produced restores the exact packet
//! (property tests), except where the draft itself defines a lossy action,
//! listed in `docs/diet-esp.md`: `generated` Flow Labels, the 4 high bits
//! of a Flow Label carried in an IPv4 Identification, a Hop Limit / TTL or
//! ECN changed on the path, and a UDP checksum of zero that comes back
//! computed (§5.1.1). A packet the rule cannot express is refused with
//! [`DropReason::DietUnfit`]: the Rule ID is elided (§4.1) so there is no
//! uncompressed fallback on the SA (RFC 8724 §7.2's no-compression rule
//! needs a Rule ID).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use esp_wire::checksum;

use crate::DropReason;

/// The revision this module implements (named in `list-sas` and the docs).
pub const REVISION: &str = "draft-ietf-ipsecme-diet-esp-07";

/// DSCP values a `sa` DSCP CDA can map (the SA table stores as many).
pub const MAX_DSCP_LIST: usize = 7;
/// Largest Compression Residue: IPv6 with nothing compressed and a TCP
/// header (436 bits).
pub const MAX_RESIDUE: usize = 64;
/// Largest Header restored: IPv6 + TCP.
pub const MAX_HEADER: usize = 60;

/// IANA protocol numbers IIPC compresses (§5.1.1).
pub mod proto {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const SCTP: u8 = 132;
    pub const UDP_LITE: u8 = 136;
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 41;
}

macro_rules! registry {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr => $s:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $v = $n),+ }
        impl $name {
            /// From the registry value; `None` for an unassigned one.
            pub const fn from_u8(v: u8) -> Option<Self> {
                match v { $($n => Some(Self::$v),)+ _ => None }
            }
            /// The draft's designation ("not_compressed", "64 bit", ...).
            pub const fn name(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            /// Parse a designation as written in the draft or in our YAML.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)+ _ => None }
            }
            pub const ALL: &'static [Self] = &[$(Self::$v),+];
        }
    };
}

registry! {
    /// DSCP CDA (ikev2-diet-esp-extension-04 §8.5.1).
    DscpCda { NotCompressed = 0 => "not_compressed", Lower = 1 => "lower", Sa = 2 => "sa" }
}
registry! {
    /// ECN CDA (ikev2-diet-esp-extension-04 §8.5.2).
    EcnCda { NotCompressed = 0 => "not_compressed", Lower = 1 => "lower" }
}
registry! {
    /// Flow Label CDA (ikev2-diet-esp-extension-04 §8.5.3).
    FlowLabelCda {
        NotCompressed = 0 => "not_compressed",
        Lower = 1 => "lower",
        Generated = 2 => "generated",
        Zero = 3 => "zero",
    }
}
registry! {
    /// ESP alignment (ikev2-diet-esp-extension-04 §8.5.4).
    Alignment { Bits8 = 0 => "8bit", Bits16 = 1 => "16bit", Bits32 = 2 => "32bit", Bits64 = 3 => "64bit" }
}
registry! {
    /// ESP trailer (ikev2-diet-esp-extension-04 §8.6).
    EspTrailer { Mandatory = 0 => "mandatory", Optional = 1 => "optional" }
}

impl Alignment {
    pub const fn octets(self) -> usize {
        match self {
            Self::Bits8 => 1,
            Self::Bits16 => 2,
            Self::Bits32 => 4,
            Self::Bits64 => 8,
        }
    }
}

/// The traffic selectors of the SA seen from the compressor of this
/// direction (§4.2: "ts_ip_src" is the local TS of the sender): one address
/// range per side of one family, one protocol (0 = any) and one port range
/// per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selectors {
    pub src: (IpAddr, IpAddr),
    pub dst: (IpAddr, IpAddr),
    pub proto: u8,
    pub src_ports: (u16, u16),
    pub dst_ports: (u16, u16),
}

/// The Attributes for Rule Generation of one SA (§4.2) that are not already
/// SA parameters (mode, cipher, SPI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DietAttrs {
    pub dscp_cda: DscpCda,
    pub ecn_cda: EcnCda,
    pub flow_label_cda: FlowLabelCda,
    pub alignment: Alignment,
    pub esp_trailer: EspTrailer,
    pub esp_spi_lsb: u8,
    pub esp_sn_lsb: u8,
    /// `dscp_list` (§4.2) for the `sa` DSCP CDA.
    pub dscp_list: [u8; MAX_DSCP_LIST],
    pub dscp_list_len: u8,
    /// `iipc_profile` (§4.2): `Some` = "iipc_diet-esp" with the selectors
    /// the rules derive from; `None` = "iipc_not_compressed" (the
    /// selectors are not a single range of one family).
    pub selectors: Option<Selectors>,
}

impl DietAttrs {
    /// The defaults of ikev2-diet-esp-extension-04 §7: nothing compressed
    /// in the inner header, 64-bit alignment, an optional trailer, the full
    /// SPI and SN.
    pub const fn defaults() -> Self {
        Self {
            dscp_cda: DscpCda::NotCompressed,
            ecn_cda: EcnCda::NotCompressed,
            flow_label_cda: FlowLabelCda::NotCompressed,
            alignment: Alignment::Bits64,
            esp_trailer: EspTrailer::Optional,
            esp_spi_lsb: 32,
            esp_sn_lsb: 32,
            dscp_list: [0; MAX_DSCP_LIST],
            dscp_list_len: 0,
            selectors: None,
        }
    }

    pub fn dscp_list(&self) -> &[u8] {
        &self.dscp_list[..usize::from(self.dscp_list_len).min(MAX_DSCP_LIST)]
    }
}

/// Why a set of attributes cannot make a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DietError {
    /// `esp_spi_lsb` or `esp_sn_lsb` above 32.
    LsbRange,
    /// §5.3: "the sum of esp_spi_lsb and esp_sn_lsb MUST be a multiple of 8".
    LsbSum,
    /// `sa` DSCP CDA without a DSCP list, a list too long, or a value above 63.
    DscpList,
    /// Selector ranges of mixed families or reversed.
    Selectors,
    /// RFC 3948 §2.2: over UDP encapsulation the first octet of the
    /// compressed header must be a nonzero SPI octet, or a packet could
    /// start with the four zero octets of the Non-ESP Marker.
    UdpEncapMarker,
    /// TFC padding needs an inner header that carries its own length.
    Tfc,
}

impl core::fmt::Display for DietError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::LsbRange => "esp_spi_lsb and esp_sn_lsb must be at most 32",
            Self::LsbSum => "esp_spi_lsb + esp_sn_lsb must be a multiple of 8 (diet-esp-07 §5.3)",
            Self::DscpList => "the sa DSCP CDA needs a list of 1 to 7 DSCP values",
            Self::Selectors => "traffic selectors must be ranges of one address family",
            Self::UdpEncapMarker => {
                "over UDP encapsulation Diet-ESP needs esp_spi_lsb >= 8 and a nonzero first SPI octet"
            }
            Self::Tfc => "TFC padding cannot be used with Diet-ESP",
        })
    }
}

impl std::error::Error for DietError {}

/// A field whose most significant bits are fixed by a range (MO `MSB`,
/// CDA `LSB`): `lsb` bits are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Msb {
    value: u128,
    lsb: u32,
}

impl Msb {
    /// The bits `start` and `end` share (diet-esp-07 §4.2 `msb(start, end)`):
    /// every value of the range has them.
    fn range(start: u128, end: u128, width: u32) -> Self {
        let diff = start ^ end;
        let lsb = if diff == 0 { 0 } else { 128 - diff.leading_zeros() };
        Self { value: start, lsb: lsb.min(width) }
    }

    fn matches(&self, v: u128) -> bool {
        (v ^ self.value).checked_shr(self.lsb).unwrap_or(0) == 0
    }

    fn restore(&self, low: u128) -> u128 {
        let high = self.value.checked_shr(self.lsb).unwrap_or(0).checked_shl(self.lsb).unwrap_or(0);
        high | low
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DscpRule {
    Sent,
    Lower,
    /// `sa` with one value: MO equal, CDA not-sent.
    Equal(u8),
    /// `sa` with several: MO match-mapping, CDA mapping-sent.
    Mapping { list: [u8; MAX_DSCP_LIST], len: u8, bits: u32 },
}

/// The compiled IIPC rule (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IipcRule {
    v6: bool,
    dscp: DscpRule,
    ecn: EcnCda,
    flow: FlowLabelCda,
    /// Some: Next Header / Protocol equal to this, not sent.
    proto: Option<u8>,
    src: Msb,
    dst: Msb,
    sport: Msb,
    dport: Msb,
}

/// Per-SA Diet-ESP rules for the three compressors, compiled once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    attrs: DietAttrs,
    tunnel: bool,
    iipc: Option<IipcRule>,
    /// Padding alignment in octets: the negotiated alignment, or the
    /// cipher's block if larger (1 for every suite here).
    align: usize,
    spi_lsb: u32,
    sn_lsb: u32,
    pad_len_field: bool,
    next_header_field: bool,
    /// The Next Header the SA implies when it is elided.
    implied_nh: u8,
}

/// The outer-header values the `lower` CDAs read and write (§5.1.2): the
/// Traffic Class / TOS octet, Hop Limit / TTL, and the Flow Label (outer
/// IPv6) or Identification (outer IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lower {
    pub tos: u8,
    pub ttl: u8,
    pub flow: u32,
}

/// What IIPC made of an outbound packet.
#[derive(Debug, Clone, Copy)]
pub struct Compressed {
    residue: [u8; MAX_RESIDUE],
    /// Octets of residue (padding bits included).
    pub residue_len: usize,
    /// Octets of the original packet the residue replaces.
    pub header_len: usize,
    /// The inner packet's length (its IP length; link padding excluded).
    pub inner_len: usize,
    /// Values for the outer header (§5.1.2 `lower`).
    pub lower: Lower,
    /// The ESP Next Header of the packet (4, 41, or the transport protocol).
    pub next_header: u8,
}

impl Compressed {
    pub fn residue(&self) -> &[u8] {
        &self.residue[..self.residue_len]
    }
}

/// The transport header kinds whose ports and checksum IIPC compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Udp,
    UdpLite,
    Tcp,
    Sctp,
}

impl L4 {
    fn of(p: u8) -> Option<Self> {
        match p {
            proto::UDP => Some(Self::Udp),
            proto::UDP_LITE => Some(Self::UdpLite),
            proto::TCP => Some(Self::Tcp),
            proto::SCTP => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The fixed header IIPC treats as Header (§5.1: "the division between
    /// Header and Payload can only occur because all the Header fields are
    /// of a fixed size"; TCP options travel in the Payload).
    const fn header_len(self) -> usize {
        match self {
            Self::Udp | Self::UdpLite => 8,
            Self::Tcp => 20,
            Self::Sctp => 12,
        }
    }

    const fn number(self) -> u8 {
        match self {
            Self::Udp => proto::UDP,
            Self::UdpLite => proto::UDP_LITE,
            Self::Tcp => proto::TCP,
            Self::Sctp => proto::SCTP,
        }
    }
}

/// A Header restored by decompression; lengths filled in, checksums not yet
/// (they cover the payload: see [`Restored::finish_tunnel`] and
/// [`fill_l4_checksum`]).
#[derive(Debug, Clone, Copy)]
pub struct Restored {
    header: [u8; MAX_HEADER],
    pub header_len: usize,
    /// Octets of the ESP payload the residue took.
    pub residue_len: usize,
    /// The transport header (offset into the Header) whose checksum is owed.
    pub l4: Option<(usize, L4)>,
    /// The protocol after the transport-mode IP header (= ESP Next Header).
    pub next_header: u8,
}

impl Restored {
    pub fn header(&self) -> &[u8] {
        &self.header[..self.header_len]
    }

    /// Tunnel mode: `packet` is the whole restored inner packet (this
    /// Header and the payload after it). Fills the transport checksum.
    pub fn finish_tunnel(&self, packet: &mut [u8]) {
        let Some((off, kind)) = self.l4 else { return };
        let Some(ip) = packet.first().map(|b| b >> 4) else { return };
        let (src, dst) = if ip == 6 && packet.len() >= 40 {
            (IpAddr::V6(Ipv6Addr::from(to16(&packet[8..24]))), IpAddr::V6(Ipv6Addr::from(to16(&packet[24..40]))))
        } else if packet.len() >= 20 {
            (IpAddr::V4(Ipv4Addr::from(to4(&packet[12..16]))), IpAddr::V4(Ipv4Addr::from(to4(&packet[16..20]))))
        } else {
            return;
        };
        if let Some(l4) = packet.get_mut(off..) {
            fill_l4_checksum(kind, src, dst, l4);
        }
    }
}

fn to16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

fn to4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Most-significant-bit-first bit packer over a fixed buffer.
struct BitWriter<'a> {
    buf: &'a mut [u8],
    bit: usize,
}

impl BitWriter<'_> {
    /// Append the `n` low bits of `v` (n <= 128). Callers size the buffer
    /// for the worst case, so this cannot run out of room.
    fn put(&mut self, v: u128, mut n: u32) {
        while n > 0 {
            let byte = self.bit / 8;
            let free = 8 - (self.bit % 8) as u32;
            let take = free.min(n);
            let chunk = ((v >> (n - take)) & ((1u128 << take) - 1)) as u8;
            if let Some(b) = self.buf.get_mut(byte) {
                *b |= chunk << (free - take);
            }
            self.bit += take as usize;
            n -= take;
        }
    }

    fn octets(&self) -> usize {
        self.bit.div_ceil(8)
    }
}

/// The reading side; every read is bounds-checked.
struct BitReader<'a> {
    buf: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn get(&mut self, mut n: u32) -> Result<u128, DropReason> {
        if self.bit + n as usize > self.buf.len() * 8 {
            return Err(DropReason::Truncated);
        }
        let mut v: u128 = 0;
        while n > 0 {
            let byte = self.buf[self.bit / 8];
            let avail = 8 - (self.bit % 8) as u32;
            let take = avail.min(n);
            let chunk = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            v = (v << take) | u128::from(chunk);
            self.bit += take as usize;
            n -= take;
        }
        Ok(v)
    }

    fn octets(&self) -> usize {
        self.bit.div_ceil(8)
    }
}

fn mapping_bits(len: usize) -> u32 {
    // ceil(log2(len)) for len >= 2.
    usize::BITS - (len - 1).leading_zeros()
}

impl Profile {
    /// Compile the rules of an SA. `tunnel` is the IPsec mode, `udp_encap`
    /// whether ESP travels in UDP (RFC 3948), `block` the cipher's block
    /// size (1 for the AEADs here), `spi` the SA's SPI.
    pub fn new(attrs: &DietAttrs, tunnel: bool, udp_encap: bool, block: usize, spi: u32) -> Result<Self, DietError> {
        let (spi_lsb, sn_lsb) = (u32::from(attrs.esp_spi_lsb), u32::from(attrs.esp_sn_lsb));
        if spi_lsb > 32 || sn_lsb > 32 {
            return Err(DietError::LsbRange);
        }
        if (spi_lsb + sn_lsb) % 8 != 0 {
            return Err(DietError::LsbSum);
        }
        if udp_encap && (spi_lsb < 8 || (spi >> (spi_lsb - 8)) & 0xff == 0) {
            return Err(DietError::UdpEncapMarker);
        }
        let list = attrs.dscp_list();
        if attrs.dscp_list_len as usize > MAX_DSCP_LIST || list.iter().any(|&d| d > 63) {
            return Err(DietError::DscpList);
        }
        let iipc = match attrs.selectors {
            None => None,
            Some(s) => {
                let v6 = s.src.0.is_ipv6();
                if [s.src.1, s.dst.0, s.dst.1].iter().any(|a| a.is_ipv6() != v6)
                    || s.src.0 > s.src.1
                    || s.dst.0 > s.dst.1
                    || s.src_ports.0 > s.src_ports.1
                    || s.dst_ports.0 > s.dst_ports.1
                {
                    return Err(DietError::Selectors);
                }
                let width = if v6 { 128 } else { 32 };
                let dscp = match attrs.dscp_cda {
                    DscpCda::NotCompressed => DscpRule::Sent,
                    DscpCda::Lower => DscpRule::Lower,
                    DscpCda::Sa => match list.len() {
                        0 => return Err(DietError::DscpList),
                        1 => DscpRule::Equal(list[0]),
                        n => DscpRule::Mapping { list: attrs.dscp_list, len: n as u8, bits: mapping_bits(n) },
                    },
                };
                Some(IipcRule {
                    v6,
                    dscp,
                    ecn: attrs.ecn_cda,
                    flow: attrs.flow_label_cda,
                    proto: (s.proto != 0).then_some(s.proto),
                    src: Msb::range(addr_bits(s.src.0), addr_bits(s.src.1), width),
                    dst: Msb::range(addr_bits(s.dst.0), addr_bits(s.dst.1), width),
                    sport: Msb::range(s.src_ports.0.into(), s.src_ports.1.into(), 16),
                    dport: Msb::range(s.dst_ports.0.into(), s.dst_ports.1.into(), 16),
                })
            }
        };
        // §5.2: in tunnel mode the Next Header follows from ts_ip_version,
        // in transport mode from a single non-zero ts_proto.
        let implied_nh = match (tunnel, attrs.selectors) {
            (true, Some(s)) => Some(if s.src.0.is_ipv6() { proto::IPV6 } else { proto::IPV4 }),
            (false, Some(s)) if s.proto != 0 => Some(s.proto),
            _ => None,
        };
        let align = attrs.alignment.octets().max(block);
        let optional = attrs.esp_trailer == EspTrailer::Optional;
        Ok(Self {
            attrs: *attrs,
            tunnel,
            iipc,
            align,
            spi_lsb,
            sn_lsb,
            // §5.2: Pad Length and Padding are elided only with 8-bit
            // alignment and a cipher that needs no block alignment.
            pad_len_field: !(optional && align == 1),
            next_header_field: !(optional && implied_nh.is_some()),
            implied_nh: implied_nh.unwrap_or(0),
        })
    }

    pub fn attrs(&self) -> &DietAttrs {
        &self.attrs
    }

    /// Whether IIPC compresses the inner packet ("iipc_diet-esp").
    pub fn compresses_inner(&self) -> bool {
        self.iipc.is_some()
    }

    // ---------------------------------------------------------------- EEC

    /// Octets of the compressed ESP header (§5.3).
    pub fn esp_header_len(&self) -> usize {
        ((self.spi_lsb + self.sn_lsb) / 8) as usize
    }

    /// The `esp_spi_lsb` low bits of an SPI: what the receiver looks up.
    pub fn spi_bits(&self, spi: u32) -> u32 {
        low32(spi, self.spi_lsb)
    }

    pub fn spi_lsb(&self) -> u32 {
        self.spi_lsb
    }

    pub fn sn_lsb(&self) -> u32 {
        self.sn_lsb
    }

    /// Write the compressed ESP header: the SPI's then the SN's low bits.
    pub fn write_esp_header(&self, out: &mut [u8], spi: u32, seq: u64) {
        let n = self.esp_header_len();
        let Some(out) = out.get_mut(..n) else { return };
        out.fill(0);
        let mut w = BitWriter { buf: out, bit: 0 };
        w.put(u128::from(low32(spi, self.spi_lsb)), self.spi_lsb);
        w.put(u128::from(low32(seq as u32, self.sn_lsb)), self.sn_lsb);
    }

    /// Read a compressed ESP header: (SPI low bits, SN low bits).
    pub fn read_esp_header(&self, h: &[u8]) -> Result<(u32, u32), DropReason> {
        let h = h.get(..self.esp_header_len()).ok_or(DropReason::Truncated)?;
        let mut r = BitReader { buf: h, bit: 0 };
        let spi = r.get(self.spi_lsb)? as u32;
        let sn = r.get(self.sn_lsb)? as u32;
        Ok((spi, sn))
    }

    // --------------------------------------------------------------- CTEC

    /// Octets of padding, Pad Length and Next Header after a payload of
    /// `payload_len` octets (§5.2).
    pub fn trailer_len(&self, payload_len: usize) -> usize {
        let fixed = usize::from(self.pad_len_field) + usize::from(self.next_header_field);
        fixed + self.pad_len(payload_len)
    }

    fn pad_len(&self, payload_len: usize) -> usize {
        if !self.pad_len_field {
            return 0;
        }
        let fixed = 1 + usize::from(self.next_header_field);
        (self.align - (payload_len + fixed) % self.align) % self.align
    }

    /// Worst-case trailer octets (for tailroom checks).
    pub fn max_trailer_len(&self) -> usize {
        usize::from(self.pad_len_field) + usize::from(self.next_header_field) + self.align - 1
    }

    /// Write the trailer of a payload of `payload_len` octets into `out`
    /// (exactly `trailer_len(payload_len)` octets): padding 1, 2, 3, ...
    /// (RFC 4303 §2.4), Pad Length, Next Header, each only if present.
    pub fn write_trailer(&self, out: &mut [u8], payload_len: usize, next_header: u8) {
        let pad = self.pad_len(payload_len);
        let mut i = 0;
        for (k, b) in out.iter_mut().take(pad).enumerate() {
            *b = (k + 1) as u8;
            i += 1;
        }
        if self.pad_len_field {
            if let Some(b) = out.get_mut(i) {
                *b = pad as u8;
            }
            i += 1;
        }
        if self.next_header_field {
            if let Some(b) = out.get_mut(i) {
                *b = next_header;
            }
        }
    }

    /// Split a decrypted text into its payload length and Next Header,
    /// checking the padding (§5.2, RFC 4303 §2.4).
    pub fn read_trailer(&self, text: &[u8]) -> Result<(usize, u8), DropReason> {
        let mut end = text.len();
        let nh = if self.next_header_field {
            end = end.checked_sub(1).ok_or(DropReason::BadTrailer)?;
            text[end]
        } else {
            self.implied_nh
        };
        if self.pad_len_field {
            end = end.checked_sub(1).ok_or(DropReason::BadTrailer)?;
            let pad = usize::from(text[end]);
            end = end.checked_sub(pad).ok_or(DropReason::BadTrailer)?;
            if !text[end..end + pad].iter().zip(1u8..).all(|(&p, i)| p == i) {
                return Err(DropReason::BadPadding);
            }
        }
        Ok((end, nh))
    }

    /// Next Header the SA implies when the trailer elides it.
    pub fn implied_next_header(&self) -> Option<u8> {
        (!self.next_header_field).then_some(self.implied_nh)
    }

    // --------------------------------------------------------------- IIPC

    /// Tunnel mode: compress the inner packet at the front of `inner`.
    /// Without an IIPC rule ("iipc_not_compressed") nothing is compressed
    /// but the inner length, Next Header and outer values are still found.
    pub fn compress_tunnel(&self, inner: &[u8]) -> Result<Compressed, DropReason> {
        let version = inner.first().map(|b| b >> 4).ok_or(DropReason::BadInnerHeader)?;
        let (v6, hl, total, tos, ttl, flow, nh) = match version {
            4 => {
                let p = esp_wire::Ipv4Packet::new_checked(inner).map_err(|_| DropReason::BadInnerHeader)?;
                (false, p.header_len(), p.total_len(), p.dscp_ecn(), p.ttl(), u32::from(p.ident()), p.protocol().0)
            }
            6 => {
                let p = esp_wire::Ipv6Packet::new_checked(inner).map_err(|_| DropReason::BadInnerHeader)?;
                (true, 40, p.total_len(), p.traffic_class(), p.hop_limit(), p.flow_label(), p.next_header().0)
            }
            _ => return Err(DropReason::BadInnerHeader),
        };
        let mut out = Compressed {
            residue: [0; MAX_RESIDUE],
            residue_len: 0,
            header_len: 0,
            inner_len: total,
            lower: Lower { tos, ttl, flow },
            next_header: if v6 { proto::IPV6 } else { proto::IPV4 },
        };
        let Some(rule) = &self.iipc else { return Ok(out) };
        if rule.v6 != v6 {
            return Err(DropReason::DietUnfit);
        }
        let p = &inner[..total];
        let mut w = BitWriter { buf: &mut out.residue, bit: 0 };
        if v6 {
            rule.put_tos(&mut w, tos)?;
            rule.put_flow(&mut w, flow, 20)?;
        } else {
            // §5.1.3: IHL value-sent. Options would make the Header variable:
            // such packets do not fit (see the module doc).
            if hl != 20 {
                return Err(DropReason::DietUnfit);
            }
            w.put(5, 4);
            rule.put_tos(&mut w, tos)?;
            rule.put_flow(&mut w, flow, 16)?;
            // Flags value-sent (3 bits); Fragment Offset MO equal 0: a
            // fragment has no transport header to compress.
            let flags_off = u16::from_be_bytes([p[6], p[7]]);
            if flags_off & 0x3fff != 0 {
                return Err(DropReason::DietUnfit);
            }
            w.put(u128::from(flags_off >> 13), 3);
        }
        match rule.proto {
            Some(want) if want != nh => return Err(DropReason::DietUnfit),
            Some(_) => {}
            None => w.put(u128::from(nh), 8),
        }
        let (src, dst) = if v6 {
            (u128::from_be_bytes(to16(&p[8..24])), u128::from_be_bytes(to16(&p[24..40])))
        } else {
            (u128::from(u32::from_be_bytes(to4(&p[12..16]))), u128::from(u32::from_be_bytes(to4(&p[16..20]))))
        };
        if !rule.src.matches(src) || !rule.dst.matches(dst) {
            return Err(DropReason::DietUnfit);
        }
        w.put(src, rule.src.lsb);
        w.put(dst, rule.dst.lsb);
        let l4_len = rule.put_l4(&mut w, nh, &p[hl..])?;
        out.residue_len = w.octets();
        out.header_len = hl + l4_len;
        Ok(out)
    }

    /// Transport mode: compress the transport header `l4` (the IP payload)
    /// of protocol `protocol`; the IP header stays as it is (§6).
    pub fn compress_transport(&self, l4: &[u8], protocol: u8) -> Result<Compressed, DropReason> {
        let mut out = Compressed {
            residue: [0; MAX_RESIDUE],
            residue_len: 0,
            header_len: 0,
            inner_len: l4.len(),
            lower: Lower::default(),
            next_header: protocol,
        };
        let Some(rule) = &self.iipc else { return Ok(out) };
        if matches!(rule.proto, Some(p) if p != protocol) {
            return Err(DropReason::DietUnfit);
        }
        let mut w = BitWriter { buf: &mut out.residue, bit: 0 };
        let n = rule.put_l4(&mut w, protocol, l4)?;
        out.residue_len = w.octets();
        out.header_len = n;
        Ok(out)
    }

    /// Tunnel mode: restore the inner Header from the ESP payload
    /// `payload` (residue, padding bits, Payload), the outer header's
    /// `lower` values and the packet's sequence number (for a `generated`
    /// IPv4 Identification). With no IIPC rule the payload is the packet.
    pub fn decompress_tunnel(&self, payload: &[u8], lower: Lower, seq: u64) -> Result<Restored, DropReason> {
        let mut out = Restored {
            header: [0; MAX_HEADER],
            header_len: 0,
            residue_len: 0,
            l4: None,
            next_header: 0,
        };
        let Some(rule) = &self.iipc else { return Ok(out) };
        let mut r = BitReader { buf: payload, bit: 0 };
        let h = &mut out.header;
        let (tos, flow);
        let nh;
        let hl = if rule.v6 { 40 } else { 20 };
        if rule.v6 {
            tos = rule.get_tos(&mut r, lower.tos)?;
            let f = rule.get_flow(&mut r, 20)?;
            nh = rule.get_proto(&mut r)?;
            let src = rule.src.restore(r.get(rule.src.lsb)?);
            let dst = rule.dst.restore(r.get(rule.dst.lsb)?);
            flow = match rule.flow {
                FlowLabelCda::Lower => lower.flow & 0xfffff,
                FlowLabelCda::Generated => generated_flow(src, dst, nh),
                _ => f,
            };
            h[0] = 0x60 | (tos >> 4);
            h[1] = (tos << 4) | ((flow >> 16) as u8 & 0x0f);
            h[2..4].copy_from_slice(&(flow as u16).to_be_bytes());
            h[6] = nh;
            h[7] = lower.ttl;
            h[8..24].copy_from_slice(&src.to_be_bytes());
            h[24..40].copy_from_slice(&dst.to_be_bytes());
        } else {
            if r.get(4)? != 5 {
                return Err(DropReason::BadInnerHeader);
            }
            tos = rule.get_tos(&mut r, lower.tos)?;
            let f = rule.get_flow(&mut r, 16)?;
            let flags = r.get(3)? as u8;
            nh = rule.get_proto(&mut r)?;
            let src = rule.src.restore(r.get(rule.src.lsb)?) as u32;
            let dst = rule.dst.restore(r.get(rule.dst.lsb)?) as u32;
            flow = match rule.flow {
                FlowLabelCda::Lower => lower.flow & 0xffff,
                FlowLabelCda::Generated => (generated_flow(src.into(), dst.into(), nh) as u16 ^ seq as u16).into(),
                _ => f,
            };
            h[0] = 0x45;
            h[1] = tos;
            h[4..6].copy_from_slice(&(flow as u16).to_be_bytes());
            h[6] = flags << 5;
            h[8] = lower.ttl;
            h[9] = nh;
            h[12..16].copy_from_slice(&src.to_be_bytes());
            h[16..20].copy_from_slice(&dst.to_be_bytes());
        }
        let l4 = rule.get_l4(&mut r, nh, &mut h[hl..])?;
        out.residue_len = r.octets();
        let l4_hdr = l4.map_or(0, L4::header_len);
        out.header_len = hl + l4_hdr;
        out.next_header = nh;
        let rest = payload.len() - out.residue_len;
        let total = out.header_len + rest;
        if rule.v6 {
            let plen = u16::try_from(total - 40).map_err(|_| DropReason::TooBig)?;
            h[4..6].copy_from_slice(&plen.to_be_bytes());
        } else {
            let tl = u16::try_from(total).map_err(|_| DropReason::TooBig)?;
            h[2..4].copy_from_slice(&tl.to_be_bytes());
            let sum = checksum::sum(&h[..20]);
            h[10..12].copy_from_slice(&(!sum).to_be_bytes());
        }
        if let Some(k) = l4 {
            set_l4_length(k, &mut h[hl..], total - hl)?;
            out.l4 = Some((hl, k));
        }
        Ok(out)
    }

    /// Transport mode: restore the transport header of protocol
    /// `protocol` (the trailer's Next Header) from the ESP payload.
    pub fn decompress_transport(&self, payload: &[u8], protocol: u8) -> Result<Restored, DropReason> {
        let mut out = Restored {
            header: [0; MAX_HEADER],
            header_len: 0,
            residue_len: 0,
            l4: None,
            next_header: protocol,
        };
        let Some(rule) = &self.iipc else { return Ok(out) };
        let mut r = BitReader { buf: payload, bit: 0 };
        let l4 = rule.get_l4(&mut r, protocol, &mut out.header)?;
        out.residue_len = r.octets();
        if let Some(k) = l4 {
            out.header_len = k.header_len();
            let seg = k.header_len() + payload.len() - out.residue_len;
            set_l4_length(k, &mut out.header, seg)?;
            out.l4 = Some((0, k));
        }
        Ok(out)
    }
}

fn low32(v: u32, bits: u32) -> u32 {
    if bits >= 32 {
        v
    } else {
        v & ((1u32 << bits) - 1)
    }
}

/// A `generated` Flow Label (§5.1.2, RFC 6437 §3: a hash of the flow's
/// addresses and protocol, never zero).
fn generated_flow(src: u128, dst: u128, nh: u8) -> u32 {
    // FNV-1a over the flow's fields, folded to 20 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in src.to_be_bytes().iter().chain(dst.to_be_bytes().iter()).chain([nh].iter()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let f = ((h ^ (h >> 20) ^ (h >> 40)) & 0xfffff) as u32;
    if f == 0 {
        1
    } else {
        f
    }
}

fn set_l4_length(k: L4, l4: &mut [u8], seg_len: usize) -> Result<(), DropReason> {
    if k == L4::Udp {
        let len = u16::try_from(seg_len).map_err(|_| DropReason::TooBig)?;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

impl IipcRule {
    fn put_tos(&self, w: &mut BitWriter<'_>, tos: u8) -> Result<(), DropReason> {
        let dscp = tos >> 2;
        match self.dscp {
            DscpRule::Sent => w.put(u128::from(dscp), 6),
            DscpRule::Lower => {}
            DscpRule::Equal(v) if v == dscp => {}
            DscpRule::Equal(_) => return Err(DropReason::DietUnfit),
            DscpRule::Mapping { list, len, bits } => {
                let i = list[..usize::from(len)].iter().position(|&d| d == dscp).ok_or(DropReason::DietUnfit)?;
                w.put(i as u128, bits);
            }
        }
        if self.ecn == EcnCda::NotCompressed {
            w.put(u128::from(tos & 3), 2);
        }
        Ok(())
    }

    fn get_tos(&self, r: &mut BitReader<'_>, outer_tos: u8) -> Result<u8, DropReason> {
        let dscp = match self.dscp {
            DscpRule::Sent => r.get(6)? as u8,
            DscpRule::Lower => outer_tos >> 2,
            DscpRule::Equal(v) => v,
            DscpRule::Mapping { list, len, bits } => {
                let i = r.get(bits)? as usize;
                if i >= usize::from(len) {
                    return Err(DropReason::BadInnerHeader);
                }
                list[i]
            }
        };
        let ecn = match self.ecn {
            EcnCda::NotCompressed => r.get(2)? as u8,
            EcnCda::Lower => outer_tos & 3,
        };
        Ok(dscp << 2 | ecn)
    }

    fn put_flow(&self, w: &mut BitWriter<'_>, flow: u32, bits: u32) -> Result<(), DropReason> {
        match self.flow {
            FlowLabelCda::NotCompressed => w.put(u128::from(flow), bits),
            FlowLabelCda::Zero if flow != 0 => return Err(DropReason::DietUnfit),
            _ => {}
        }
        Ok(())
    }

    fn get_flow(&self, r: &mut BitReader<'_>, bits: u32) -> Result<u32, DropReason> {
        Ok(match self.flow {
            FlowLabelCda::NotCompressed => r.get(bits)? as u32,
            _ => 0,
        })
    }

    fn get_proto(&self, r: &mut BitReader<'_>) -> Result<u8, DropReason> {
        match self.proto {
            Some(p) => Ok(p),
            None => Ok(r.get(8)? as u8),
        }
    }

    /// Compress the transport header at the front of `seg` (the IP payload)
    /// if `nh` is one IIPC knows; returns the Header octets consumed.
    fn put_l4(&self, w: &mut BitWriter<'_>, nh: u8, seg: &[u8]) -> Result<usize, DropReason> {
        let Some(k) = L4::of(nh) else { return Ok(0) };
        let n = k.header_len();
        if seg.len() < n {
            return Err(DropReason::DietUnfit);
        }
        let sport = u16::from_be_bytes([seg[0], seg[1]]);
        let dport = u16::from_be_bytes([seg[2], seg[3]]);
        if !self.sport.matches(sport.into()) || !self.dport.matches(dport.into()) {
            return Err(DropReason::DietUnfit);
        }
        w.put(sport.into(), self.sport.lsb);
        w.put(dport.into(), self.dport.lsb);
        let be16 = |o: usize| u128::from(u16::from_be_bytes([seg[o], seg[o + 1]]));
        match k {
            L4::Udp => {
                // Length elided (compute-length): it must be the IP payload's.
                if be16(4) as usize != seg.len() {
                    return Err(DropReason::DietUnfit);
                }
            }
            L4::UdpLite => {
                // RFC 3828 §3.1: the field is the Checksum Coverage, not a
                // length: value-sent (see docs/diet-esp.md).
                let cov = be16(4) as usize;
                if cov != 0 && (cov < 8 || cov > seg.len()) {
                    return Err(DropReason::DietUnfit);
                }
                w.put(cov as u128, 16);
            }
            L4::Tcp => {
                // Sequence, Acknowledgment, Data Offset + flags, Window are
                // value-sent; Checksum elided; Urgent Pointer value-sent.
                if usize::from(seg[12] >> 4) < 5 || usize::from(seg[12] >> 4) * 4 > seg.len() {
                    return Err(DropReason::DietUnfit);
                }
                w.put(u128::from_be_bytes({
                    let mut a = [0u8; 16];
                    a[4..16].copy_from_slice(&seg[4..16]);
                    a
                }), 96);
                w.put(be16(18), 16);
            }
            L4::Sctp => {
                // Verification Tag value-sent; the CRC32c Checksum elided.
                w.put(u128::from(u32::from_be_bytes(to4(&seg[4..8]))), 32);
            }
        }
        Ok(n)
    }

    fn get_l4(&self, r: &mut BitReader<'_>, nh: u8, out: &mut [u8]) -> Result<Option<L4>, DropReason> {
        let Some(k) = L4::of(nh) else { return Ok(None) };
        let sport = self.sport.restore(r.get(self.sport.lsb)?) as u16;
        let dport = self.dport.restore(r.get(self.dport.lsb)?) as u16;
        out[0..2].copy_from_slice(&sport.to_be_bytes());
        out[2..4].copy_from_slice(&dport.to_be_bytes());
        match k {
            L4::Udp => {}
            L4::UdpLite => {
                let cov = r.get(16)? as u16;
                out[4..6].copy_from_slice(&cov.to_be_bytes());
            }
            L4::Tcp => {
                let v = r.get(96)?;
                out[4..16].copy_from_slice(&v.to_be_bytes()[4..16]);
                let urg = r.get(16)? as u16;
                out[18..20].copy_from_slice(&urg.to_be_bytes());
            }
            L4::Sctp => {
                let tag = r.get(32)? as u32;
                out[4..8].copy_from_slice(&tag.to_be_bytes());
            }
        }
        Ok(Some(k))
    }
}

/// Compute and write the checksum of a transport segment `l4` (header and
/// payload) carried between `src` and `dst`: the Internet checksum over the
/// pseudo-header for UDP (0 sent as 0xffff, RFC 768), UDP-Lite (over its
/// Checksum Coverage, RFC 3828 §3.1) and TCP (RFC 9293 §3.1); CRC32c for
/// SCTP (RFC 9260 Appendix A).
pub fn fill_l4_checksum(kind: L4, src: IpAddr, dst: IpAddr, l4: &mut [u8]) {
    if l4.len() < kind.header_len() {
        return;
    }
    if kind == L4::Sctp {
        l4[8..12].fill(0);
        let crc = crc32c(l4);
        // RFC 9260 Appendix A: the CRC goes out least significant octet first.
        l4[8..12].copy_from_slice(&crc.to_le_bytes());
        return;
    }
    let at = if kind == L4::Tcp { 16 } else { 6 };
    l4[at..at + 2].fill(0);
    let covered = match kind {
        L4::UdpLite => match usize::from(u16::from_be_bytes([l4[4], l4[5]])) {
            0 => l4.len(),
            c => c.min(l4.len()),
        },
        _ => l4.len(),
    };
    let len = l4.len() as u32;
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_v4(s, d, kind.number(), len),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(s, d, kind.number(), len),
        _ => return,
    };
    let mut c = !checksum::combine(&[pseudo, checksum::sum(&l4[..covered])]);
    if c == 0 && kind != L4::Tcp {
        c = 0xffff;
    }
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// CRC32c (Castagnoli, reflected polynomial 0x82f63b78), table-driven.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // RFC 3720 B.4 / the CRC catalogue check value for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn msb_of_a_range_keeps_the_shared_bits() {
        let m = Msb::range(0x0a00_0001, 0x0a00_0005, 32);
        assert_eq!(m.lsb, 3);
        assert!(m.matches(0x0a00_0007) && !m.matches(0x0a00_0008));
        assert_eq!(m.restore(5), 0x0a00_0005);
        let all = Msb::range(0, u128::MAX, 128);
        assert_eq!(all.lsb, 128);
        assert!(all.matches(12345));
        assert_eq!(all.restore(77), 77);
        let one = Msb::range(9, 9, 16);
        assert_eq!(one.lsb, 0);
        assert_eq!(one.restore(0), 9);
    }

    #[test]
    fn bits_round_trip_across_octets() {
        let mut buf = [0u8; 8];
        let mut w = BitWriter { buf: &mut buf, bit: 0 };
        w.put(0b101, 3);
        w.put(0x1234, 16);
        w.put(1, 1);
        assert_eq!(w.octets(), 3);
        let mut r = BitReader { buf: &buf, bit: 0 };
        assert_eq!(r.get(3), Ok(0b101));
        assert_eq!(r.get(16), Ok(0x1234));
        assert_eq!(r.get(1), Ok(1));
        assert_eq!(r.get(48), Err(DropReason::Truncated));
    }

    #[test]
    fn mapping_needs_ceil_log2_bits() {
        assert_eq!(mapping_bits(2), 1);
        assert_eq!(mapping_bits(3), 2);
        assert_eq!(mapping_bits(4), 2);
        assert_eq!(mapping_bits(5), 3);
        assert_eq!(mapping_bits(7), 3);
    }
}
