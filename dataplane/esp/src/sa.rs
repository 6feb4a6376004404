//! SA parameters and the per-SA constants computed once at creation
//! (DPDK lib/ipsec `sa.h` style): header, IV, ICV and trailer sizes, the
//! salt, and the prebuilt outer IPv4/IPv6 (+ UDP) tunnel header template.
//!
//! `SaParams` is `#[non_exhaustive]`: it is built with `SaParams::new` and
//! its public fields are then adjusted, so fields for group SAs (RFC 9838,
//! RFC 5374 address preservation) and ESP header compression profiles
//! (diet-esp) can be added without breaking callers.

use std::net::IpAddr;

use esp_wire::{ipv4, ipv6, udp, IpProtocol, NAT_T_PORT};

use crate::suite::{Keymat, Suite, SALT_LEN};

/// Transport or tunnel mode (RFC 4303 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Transport,
    /// Outer addresses of the tunnel; both of one family (the inner packets
    /// may be of either family, RFC 4303 §3.1.2).
    Tunnel {
        src: IpAddr,
        dst: IpAddr,
    },
}

/// UDP encapsulation ports (RFC 3948 §2.1), normally 4500 both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEncap {
    pub src_port: u16,
    pub dst_port: u16,
}

impl Default for UdpEncap {
    fn default() -> Self {
        Self {
            src_port: NAT_T_PORT,
            dst_port: NAT_T_PORT,
        }
    }
}

/// Traffic-flow confidentiality padding (RFC 4303 §2.7), tunnel mode only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TfcPadding {
    #[default]
    Off,
    /// Pad every inner packet with zeros up to this many octets.
    PadTo(u16),
}

/// How the explicit 8-octet IV is formed (RFC 4106 §3.1, RFC 7634 §2: it
/// must be unique per key; a counter is fine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IvPolicy {
    /// IV = the 64-bit sequence number (its low 32 bits equal the SN, as
    /// RFC 7634 §2 suggests).
    #[default]
    Counter,
    /// Group SAs with several senders (RFC 6054, RFC 9838 §2.5): the
    /// leftmost `bits` of the IV hold the sender-ID, the rest the sender's
    /// counter (its sequence number). `bits` is 8, 12 or 16.
    SenderId { bits: u8, sid: u32 },
}

/// Why an SA cannot be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaError {
    /// Tunnel endpoints of different families.
    AddressFamilyMismatch,
    /// RFC 8750 implicit IV has no IV field to carry a sender-ID.
    IivWithSenderId,
    /// Sender-ID width not 8, 12 or 16, or the ID does not fit.
    BadSenderId,
    /// TFC padding needs a payload that carries its own length (tunnel mode).
    TfcInTransportMode,
    /// The AEAD rejected the key.
    BadKey,
    /// The Diet-ESP attributes cannot make a profile.
    Diet(crate::diet::DietError),
    /// Replay window larger than [`MAX_REPLAY_WINDOW`].
    ReplayWindowTooLarge,
    /// Address preservation (RFC 5374) without tunnel mode, or with
    /// Diet-ESP (whose compressed tunnel header has no addresses to copy).
    PreserveNeedsTunnel,
}

/// Largest replay window accepted, in packets (an 8 KiB bitmap). RFC 4303
/// Appendix A assumes W <= 2^31; this keeps a misconfiguration from
/// allocating gigabytes.
pub const MAX_REPLAY_WINDOW: u32 = 1 << 16;

impl core::fmt::Display for SaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SaError::AddressFamilyMismatch => "tunnel endpoints are of different address families",
            SaError::IivWithSenderId => "implicit IV cannot carry a sender-ID",
            SaError::BadSenderId => "sender-ID width must be 8, 12 or 16 bits and the ID must fit",
            SaError::TfcInTransportMode => "TFC padding is only allowed in tunnel mode",
            SaError::BadKey => "key rejected by the AEAD",
            SaError::ReplayWindowTooLarge => "replay window larger than MAX_REPLAY_WINDOW",
            SaError::PreserveNeedsTunnel => "address preservation needs tunnel mode without Diet-ESP",
            SaError::Diet(e) => return write!(f, "Diet-ESP: {e}"),
        })
    }
}

impl std::error::Error for SaError {}

/// Everything needed to create one direction of a Child SA.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SaParams {
    pub spi: u32,
    pub suite: Suite,
    pub keymat: Keymat,
    /// Extended (64-bit) sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    pub mode: Mode,
    pub udp_encap: Option<UdpEncap>,
    /// Inbound anti-replay window in packets; 0 turns it off. RFC 4303
    /// §3.4.3 suggests 64 as the default.
    pub replay_window: u32,
    pub tfc: TfcPadding,
    /// Outer TTL / hop limit in tunnel mode.
    pub ttl: u8,
    pub iv: IvPolicy,
    /// Raise `SaEvent::RekeySoon` once this many packets were sent.
    pub soft_seq_limit: Option<u64>,
    /// Last outbound sequence number already used (a restarted dataplane
    /// resumes from the SA table; 0 for a new SA).
    pub initial_seq: u64,
    /// Diet-ESP header compression (draft-ietf-ipsecme-diet-esp-07), with
    /// the selectors seen from this direction's compressor.
    pub diet: Option<crate::diet::DietAttrs>,
    /// RFC 5374 §3.1 tunnel mode with address preservation (group SAs,
    /// RFC 9838): outbound, the outer source (destination) is the inner
    /// packet's instead of the tunnel endpoint's; inbound, a packet whose
    /// inner source (destination) differs from the outer one is dropped
    /// ([`crate::DropReason::AddressMismatch`]). Tunnel mode only.
    pub preserve_src: bool,
    pub preserve_dst: bool,
}

impl SaParams {
    /// Defaults: transport mode, no ESN, no UDP encapsulation, window 64,
    /// no TFC, TTL 64, counter IVs. `keymat` is key | salt; `None` if its
    /// length does not match the suite.
    pub fn new(spi: u32, suite: Suite, keymat: &[u8]) -> Option<Self> {
        Some(Self {
            spi,
            suite,
            keymat: Keymat::new(suite, keymat)?,
            esn: false,
            mode: Mode::Transport,
            udp_encap: None,
            replay_window: 64,
            tfc: TfcPadding::Off,
            ttl: 64,
            iv: IvPolicy::Counter,
            soft_seq_limit: None,
            initial_seq: 0,
            diet: None,
            preserve_src: false,
            preserve_dst: false,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), SaError> {
        if self.replay_window > MAX_REPLAY_WINDOW {
            return Err(SaError::ReplayWindowTooLarge);
        }
        if let Mode::Tunnel { src, dst } = self.mode {
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(SaError::AddressFamilyMismatch);
            }
        } else if self.tfc != TfcPadding::Off {
            return Err(SaError::TfcInTransportMode);
        }
        if (self.preserve_src || self.preserve_dst) && (!matches!(self.mode, Mode::Tunnel { .. }) || self.diet.is_some()) {
            return Err(SaError::PreserveNeedsTunnel);
        }
        if self.diet.is_some() && self.tfc != TfcPadding::Off {
            return Err(SaError::Diet(crate::diet::DietError::Tfc));
        }
        if let IvPolicy::SenderId { bits, sid } = self.iv {
            if self.suite.iiv {
                return Err(SaError::IivWithSenderId);
            }
            if !matches!(bits, 8 | 12 | 16) || u64::from(sid) >= 1u64 << bits {
                return Err(SaError::BadSenderId);
            }
        }
        Ok(())
    }

    /// The highest outbound sequence number this SA may use (RFC 4303
    /// §3.3.3: never wrap; RFC 6054 §3: a sender stops when its IV counter
    /// space is used up).
    pub(crate) fn seq_limit(&self) -> u64 {
        let space = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        match self.iv {
            IvPolicy::SenderId { bits, .. } => space.min((1u64 << (64 - u32::from(bits))) - 1),
            IvPolicy::Counter => space,
        }
    }
}

/// Constants shared by both directions, computed once. The salt is KEYMAT
/// (RFC 4106 §8.1): `Debug` leaves it out and it is zeroed on drop.
#[derive(Clone)]
pub(crate) struct SaConsts {
    pub spi: u32,
    pub suite: Suite,
    pub salt: [u8; SALT_LEN],
    pub esn: bool,
    /// SPI + SN + IV.
    pub esp_hdr_len: usize,
    pub iv_len: usize,
    pub icv_len: usize,
    pub align: usize,
    /// The compiled Diet-ESP rules; `esp_hdr_len` then counts the
    /// compressed ESP header. Boxed: an inline `None` would leave some 290
    /// octets of the SA uninitialised, and moving the SA into its box copies
    /// whatever the stack held there, key copies of the caller included
    /// (`dataplane/tests/key_wipe.rs` finds them in freed memory).
    pub diet: Option<Box<crate::diet::Profile>>,
}

impl core::fmt::Debug for SaConsts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SaConsts")
            .field("spi", &self.spi)
            .field("suite", &self.suite)
            .field("esn", &self.esn)
            .field("esp_hdr_len", &self.esp_hdr_len)
            .finish_non_exhaustive()
    }
}

impl Drop for SaConsts {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl SaConsts {
    pub fn new(p: &SaParams) -> Result<Self, SaError> {
        let diet = match &p.diet {
            None => None,
            Some(a) => Some(
                crate::diet::Profile::new(
                    a,
                    matches!(p.mode, Mode::Tunnel { .. }),
                    p.udp_encap.is_some(),
                    1,
                    p.spi,
                )
                .map(Box::new)
                .map_err(SaError::Diet)?,
            ),
        };
        let esp_hdr = diet.as_ref().map_or(esp_wire::esp::HEADER_LEN, |d| d.esp_header_len());
        Ok(Self {
            spi: p.spi,
            suite: p.suite,
            salt: p.keymat.salt(),
            esn: p.esn,
            esp_hdr_len: esp_hdr + p.suite.iv_len(),
            iv_len: p.suite.iv_len(),
            icv_len: p.suite.icv_len(),
            align: p.suite.align(),
            diet,
        })
    }

    /// AAD (RFC 4106 §5, RFC 7634 §2.1): SPI | SN, or SPI | SN-high | SN-low.
    pub fn aad(&self, seq: u64) -> ([u8; 12], usize) {
        let mut a = [0u8; 12];
        a[..4].copy_from_slice(&self.spi.to_be_bytes());
        if self.esn {
            a[4..12].copy_from_slice(&seq.to_be_bytes());
            (a, 12)
        } else {
            a[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
            (a, 8)
        }
    }

    /// Nonce = salt | IV. With RFC 8750 the IV is 0 | SN (no ESN) or the
    /// 64-bit ESN; otherwise it is the explicit IV from the packet.
    pub fn nonce(&self, seq: u64, explicit_iv: Option<&[u8]>) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        match explicit_iv {
            Some(iv) => n[4..12].copy_from_slice(iv),
            None if self.esn => n[4..12].copy_from_slice(&seq.to_be_bytes()),
            None => n[8..12].copy_from_slice(&(seq as u32).to_be_bytes()),
        }
        n
    }
}

/// The prebuilt outer header of a tunnel SA: IP (+ UDP), lengths and
/// checksums left to fill per packet.
#[derive(Debug, Clone)]
pub(crate) struct TunnelTemplate {
    pub bytes: [u8; ipv6::HEADER_LEN + udp::HEADER_LEN],
    /// IP header length (20 or 40).
    pub ip_len: usize,
    /// IP + UDP header length.
    pub len: usize,
    pub v6: bool,
    /// IPv4: one's-complement sum of the template header with total length,
    /// DSCP/ECN, identification and checksum zero, so each packet's header
    /// checksum is three additions (RFC 1624 style) instead of a full sum.
    pub v4_sum: u16,
}

impl TunnelTemplate {
    pub fn new(src: IpAddr, dst: IpAddr, ttl: u8, udp_encap: Option<UdpEncap>) -> Self {
        let mut bytes = [0u8; ipv6::HEADER_LEN + udp::HEADER_LEN];
        let next = if udp_encap.is_some() {
            IpProtocol::UDP
        } else {
            IpProtocol::ESP
        };
        let ip_len = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ipv4::Ipv4Repr {
                    src_addr: s,
                    dst_addr: d,
                    protocol: next,
                    payload_len: 0,
                    ttl,
                    dscp_ecn: 0,
                    ident: 0,
                    dont_frag: false,
                }
                .emit(&mut ipv4::Ipv4Packet::new_unchecked(&mut bytes[..]));
                ipv4::HEADER_LEN
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ipv6::Ipv6Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: next,
                    payload_len: 0,
                    hop_limit: ttl,
                    traffic_class: 0,
                    flow_label: 0,
                }
                .emit(&mut ipv6::Ipv6Packet::new_unchecked(&mut bytes[..]));
                ipv6::HEADER_LEN
            }
            // Mixed families are refused by SaParams::validate.
            _ => 0,
        };
        let mut len = ip_len;
        if let Some(u) = udp_encap {
            udp::UdpRepr {
                src_port: u.src_port,
                dst_port: u.dst_port,
                payload_len: 0,
            }
            .emit(&mut udp::UdpPacket::new_unchecked(&mut bytes[ip_len..]));
            len += udp::HEADER_LEN;
        }
        let v4_sum = if src.is_ipv6() {
            0
        } else {
            let mut h = [0u8; ipv4::HEADER_LEN];
            h.copy_from_slice(&bytes[..ipv4::HEADER_LEN]);
            h[1] = 0;
            h[2..6].fill(0);
            h[10..12].fill(0);
            esp_wire::checksum::sum(&h)
        };
        Self {
            bytes,
            ip_len,
            len,
            v6: src.is_ipv6(),
            v4_sum,
        }
    }
}
