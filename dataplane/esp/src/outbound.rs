//! Outbound ESP (RFC 4303 §3.3): encapsulation in place, in the packet's
//! head- and tailroom.
//!
//! * Tunnel mode (§3.1.2): `[outer IP][UDP?][ESP][IV][inner IP][TFC][pad][PL][NH][ICV]`,
//!   inner and outer each IPv4 or IPv6; outer DSCP/ECN copied from the inner
//!   header; Next Header 4 or 41.
//! * Transport mode (§3.1.1): ESP inserted after the IPv4 header, or after
//!   the IPv6 Hop-by-Hop/Routing/Fragment headers; the protocol / Next
//!   Header field that pointed at the payload now says 50 (or 17 with UDP).
//! * UDP encapsulation (RFC 3948 §2.1): UDP between IP and ESP, checksum 0
//!   over IPv4, computed over IPv6 (RFC 8200 §8.1) after sealing.
//! * Padding 1, 2, 3, ... to 4-octet alignment (§2.4); optional TFC padding
//!   (§2.7); dummy packets with Next Header 59 (§2.6).
//!
//! Each packet is *prepared* (framing, nonce, AAD), then the whole burst is
//! sealed by a [`BatchAead`], then *finished*.

use std::net::IpAddr;

use esp_wire::{ipv4::Ipv4Packet, ipv6::Ipv6Packet, udp, IpProtocol, TrailerRepr, UdpPacket};

use crate::aead::{aead_burst, BatchAead, CryptoOp};
use crate::buf::PktBuf;
use crate::sa::{
    IvPolicy, Mode, SaConsts, SaError, SaParams, TfcPadding, TunnelTemplate, UdpEncap,
};
use crate::seq::{SaEvent, SeqCounter, SeqGrant};
use crate::{DropReason, MAX_BURST};

/// A prepared outbound packet, ready for the AEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundOp {
    pub op: CryptoOp,
    /// Offset of a UDP header whose checksum must be filled after sealing
    /// (UDP over IPv6).
    udp_checksum_at: Option<usize>,
}

impl OutboundOp {
    /// Whether [`OutboundSa::finish`] has work to do for this packet after
    /// sealing (callers may skip it, and keeping the op, otherwise).
    #[inline]
    pub fn needs_finish(&self) -> bool {
        self.udp_checksum_at.is_some()
    }
}

/// A packet framed by [`OutboundSa::prepare_v4_fast`]: where the ESP packet
/// and its text now are in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// Offset of the outer IP header in the buffer.
    pub start: usize,
    /// Octets from the outer IP header to the end of the ICV.
    pub len: usize,
    /// Offset of the text from `start`.
    pub text_off: usize,
    pub text_len: usize,
}

impl Framed {
    /// The text and the ICV after it, from `start`: what the AEAD seals
    /// in place.
    pub fn sealed(&self) -> core::ops::Range<usize> {
        self.text_off..self.text_off + self.text_len + crate::suite::ICV_LEN
    }
}

/// Outer IPv4 header + ESP header + 8-octet IV: what the fast path prepends
/// (the headroom [`OutboundSa::prepare_v4_fast`] needs).
pub const FAST_V4_HEADROOM: usize = esp_wire::ipv4::HEADER_LEN + esp_wire::esp::HEADER_LEN + 8;

/// Copies the outer-header template's first `n` octets to the front of
/// `data`. The template lengths (20, 28, 40, 48) are done as two or three
/// fixed 16-byte moves (overlapping where `n` is not a multiple of 16): a
/// `match` with one constant-length copy per length was merged by LLVM
/// back into a single variable-length `memcpy` call.
#[inline(always)]
fn copy_template(data: &mut [u8], bytes: &[u8; 48], n: usize) {
    if (16..=48).contains(&n) && n <= data.len() {
        data[..16].copy_from_slice(&bytes[..16]);
        if n > 32 {
            data[16..32].copy_from_slice(&bytes[16..32]);
        }
        data[n - 16..n].copy_from_slice(&bytes[n - 16..n]);
    } else {
        data[..n].copy_from_slice(&bytes[..n]);
    }
}

/// Padding 1, 2, 3, ... (RFC 4303 §2.4) as one 16-byte store when it fits.
const PAD_PATTERN: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

/// Writes padding, Pad Length and Next Header so that the text ends at
/// `text_end` in `data`. With up to 14 octets of padding and 16 octets of
/// room from the padding's start (the ICV space that follows the text,
/// written by the AEAD afterwards), the padding is one 16-byte store of
/// the pattern and two byte stores, not a byte loop.
#[inline(always)]
fn emit_trailer(data: &mut [u8], text_end: usize, tr: TrailerRepr) {
    let pad_start = text_end - tr.buffer_len();
    if tr.pad_len <= 14 && pad_start + 16 <= data.len() {
        data[pad_start..pad_start + 16].copy_from_slice(&PAD_PATTERN);
        data[text_end - 2] = tr.pad_len;
        data[text_end - 1] = tr.next_header.0;
    } else {
        tr.emit(&mut data[pad_start..text_end]);
    }
}

/// The fields of a tunnel's outer IPv4 header that change per packet, on
/// top of the template already copied to `data`: total length, DSCP/ECN
/// (RFC 6040 normal mode: copied from the inner header), identification,
/// and the checksum as the template's sum plus those three fields.
#[inline(always)]
fn finish_outer_v4(data: &mut [u8], t: &TunnelTemplate, total: usize, tos: u8, seq: u64) {
    let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
    ip.set_total_len(total as u16);
    ip.set_dscp_ecn(tos);
    ip.set_ident(seq as u16);
    let sum = esp_wire::checksum::fold(u64::from(t.v4_sum) + total as u64 + u64::from(tos) + u64::from(seq as u16));
    data[10..12].copy_from_slice(&(!sum).to_be_bytes());
}

/// RFC 5374 §3.1: the outer header (at the front of `data`) takes the
/// inner packet's (at `inner`) source and/or destination; an IPv4 header's
/// checksum is computed again. The inner packet must be of the tunnel's
/// family.
fn preserve_addresses(data: &mut [u8], inner: usize, v6: bool, (src, dst): (bool, bool)) -> Result<(), DropReason> {
    let (version, s, d) = if v6 { (6, 8..24, 24..40) } else { (4, 12..16, 16..20) };
    if data.get(inner).map(|b| b >> 4) != Some(version) || data.len() < inner + d.end {
        return Err(DropReason::BadInnerHeader);
    }
    if src {
        data.copy_within(inner + s.start..inner + s.end, s.start);
    }
    if dst {
        data.copy_within(inner + d.start..inner + d.end, d.start);
    }
    if !v6 {
        data[10..12].copy_from_slice(&[0, 0]);
        let sum = esp_wire::checksum::sum(&data[..esp_wire::ipv4::HEADER_LEN]);
        data[10..12].copy_from_slice(&(!sum).to_be_bytes());
    }
    Ok(())
}

/// The outbound half of a Child SA.
#[derive(Debug)]
pub struct OutboundSa {
    c: SaConsts,
    mode: Mode,
    udp: Option<UdpEncap>,
    tfc: TfcPadding,
    iv: IvPolicy,
    tunnel: Option<TunnelTemplate>,
    seq: SeqCounter,
    /// [`Self::prepare_v4_fast`] applies: an IPv4 tunnel without UDP
    /// encapsulation or TFC padding, 8-octet explicit IV, 4-octet
    /// alignment, 16-octet ICV (the AES-GCM and ChaCha20-Poly1305 SAs of
    /// a site-to-site gateway).
    fast_v4: bool,
    /// RFC 5374 §3.1: copy the inner source / destination to the outer header.
    preserve: (bool, bool),
}

impl OutboundSa {
    pub fn new(p: &SaParams) -> Result<Self, SaError> {
        p.validate()?;
        let tunnel = match p.mode {
            Mode::Tunnel { src, dst } => Some(TunnelTemplate::new(src, dst, p.ttl, p.udp_encap)),
            Mode::Transport => None,
        };
        let limit = p.seq_limit();
        let c = SaConsts::new(p)?;
        let fast_v4 = c.diet.is_none()
            && matches!(&tunnel, Some(t) if !t.v6 && t.len == esp_wire::ipv4::HEADER_LEN)
            && p.udp_encap.is_none()
            && p.tfc == TfcPadding::Off
            && c.iv_len == 8
            && c.align == 4
            && c.icv_len == 16
            && !p.preserve_src
            && !p.preserve_dst;
        Ok(Self {
            c,
            mode: p.mode,
            udp: p.udp_encap,
            tfc: p.tfc,
            iv: p.iv,
            tunnel,
            seq: SeqCounter::new(p.initial_seq, limit, p.soft_seq_limit.unwrap_or(u64::MAX)),
            fast_v4,
            preserve: (p.preserve_src, p.preserve_dst),
        })
    }

    pub fn spi(&self) -> u32 {
        self.c.spi
    }

    pub fn suite(&self) -> crate::Suite {
        self.c.suite
    }

    /// Reserve sequence numbers for a burst (one atomic operation).
    pub fn reserve(&self, n: u32) -> SeqGrant {
        self.seq.reserve(n)
    }

    pub fn seq(&self) -> &SeqCounter {
        &self.seq
    }

    /// Octets of headroom encapsulation needs (outer headers, ESP header, IV).
    pub fn headroom(&self) -> usize {
        let outer = match &self.tunnel {
            Some(t) => t.len,
            None => self.udp.map_or(0, |_| udp::HEADER_LEN),
        };
        outer + self.c.esp_hdr_len
    }

    /// Octets of tailroom encapsulation may need (worst-case padding,
    /// trailer, ICV; TFC padding comes on top).
    pub fn tailroom(&self) -> usize {
        match &self.c.diet {
            Some(d) => d.max_trailer_len() + self.c.icv_len,
            None => self.c.align - 1 + esp_wire::trailer::TRAILER_LEN + self.c.icv_len,
        }
    }

    /// The SA's Diet-ESP profile, if it compresses.
    pub fn diet(&self) -> Option<&crate::diet::Profile> {
        self.c.diet.as_deref()
    }

    fn explicit_iv(&self, seq: u64) -> [u8; 8] {
        match self.iv {
            IvPolicy::Counter => seq.to_be_bytes(),
            IvPolicy::SenderId { bits, sid } => {
                let shift = 64 - u32::from(bits);
                ((u64::from(sid) << shift) | seq).to_be_bytes()
            }
        }
    }

    /// The nonce and AAD that [`Self::prepare`] puts in its op for `seq`
    /// (for [`Self::prepare_v4_fast`], which returns neither).
    #[inline(always)]
    pub fn nonce_aad(&self, seq: u64) -> ([u8; 12], [u8; 12]) {
        let nonce = if self.c.iv_len > 0 {
            self.c.nonce(seq, Some(&self.explicit_iv(seq)))
        } else {
            self.c.nonce(seq, None)
        };
        (nonce, self.c.aad(seq).0)
    }

    /// Whether [`Self::prepare_v4_fast`] applies to this SA.
    pub fn fast_v4(&self) -> bool {
        self.fast_v4
    }

    /// [`Self::prepare`] for an IPv4 packet without options at
    /// `buf[start..start + len]` on an SA for which [`Self::fast_v4`]
    /// holds: the same octets (tested against `prepare`), with a fraction
    /// of its branches and bounds checks. The nonce and AAD come from
    /// [`Self::nonce_aad`]. `None`, and the buffer untouched, for anything
    /// else (another SA, an inner packet that is not IPv4 with a 20-octet
    /// header, malformed, too big, no room): [`Self::prepare`] then frames
    /// it or says what is wrong.
    #[inline]
    pub fn prepare_v4_fast(&self, buf: &mut [u8], start: usize, len: usize, seq: u64) -> Option<Framed> {
        if !self.fast_v4 {
            return None;
        }
        let t = self.tunnel.as_ref()?;
        let inner = buf.get(start..start.checked_add(len)?)?;
        if inner.len() < esp_wire::ipv4::HEADER_LEN || inner[0] != 0x45 {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
        if total < esp_wire::ipv4::HEADER_LEN || total > len {
            return None;
        }
        let tos = inner[1];
        let tr = TrailerRepr::for_payload(total, 8, 4, IpProtocol::IPV4);
        let text_len = total + tr.buffer_len();
        let esp_len = FAST_V4_HEADROOM + text_len + 16;
        if esp_len > usize::from(u16::MAX) || start < FAST_V4_HEADROOM {
            return None;
        }
        let new_start = start - FAST_V4_HEADROOM;
        let d = buf.get_mut(new_start..new_start + esp_len)?;
        // As prepare_tunnel and frame do, without their general cases.
        copy_template(d, &t.bytes, esp_wire::ipv4::HEADER_LEN);
        finish_outer_v4(d, t, esp_len, tos, seq);
        self.write_spi_seq(&mut d[esp_wire::ipv4::HEADER_LEN..], seq);
        d[28..36].copy_from_slice(&self.explicit_iv(seq));
        emit_trailer(d, FAST_V4_HEADROOM + text_len, tr);
        Some(Framed { start: new_start, len: esp_len, text_off: FAST_V4_HEADROOM, text_len })
    }

    /// SPI and the low 32 bits of the sequence number at the front of `esp`.
    #[inline(always)]
    fn write_spi_seq(&self, esp: &mut [u8], seq: u64) {
        esp[..4].copy_from_slice(&self.c.spi.to_be_bytes());
        esp[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    }

    /// Write padding, trailer, ESP header and IV around a payload already
    /// placed at `esp_off + esp_hdr_len`, and describe the AEAD operation.
    #[inline(always)]
    fn frame(
        &self,
        data: &mut [u8],
        esp_off: usize,
        payload_len: usize,
        tr: TrailerRepr,
        seq: u64,
        iv: Option<[u8; 8]>,
    ) -> CryptoOp {
        let text_off = esp_off + self.c.esp_hdr_len;
        let text_len = payload_len + tr.buffer_len();
        emit_trailer(data, text_off + text_len, tr);
        self.write_spi_seq(&mut data[esp_off..], seq);
        let nonce = if self.c.iv_len > 0 {
            let iv = iv.unwrap_or_else(|| self.explicit_iv(seq));
            data[esp_off + 8..esp_off + 16].copy_from_slice(&iv);
            self.c.nonce(seq, Some(&iv))
        } else {
            self.c.nonce(seq, None)
        };
        let (aad, aad_len) = self.c.aad(seq);
        CryptoOp::from_parts(nonce, aad, aad_len, text_off, text_len)
    }

    /// Frame one packet: `pkt.data()` is the inner IP packet (tunnel mode)
    /// or the IP packet to protect (transport mode). On success the data is
    /// the ESP packet with its outer header, text not yet encrypted.
    pub fn prepare<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        pkt: &mut PktBuf<B>,
        seq: u64,
    ) -> Result<OutboundOp, DropReason> {
        if let Some(d) = &self.c.diet {
            return match self.mode {
                Mode::Tunnel { .. } => self.prepare_diet_tunnel(d, pkt, seq, None),
                Mode::Transport => self.prepare_diet_transport(d, pkt, seq, None),
            };
        }
        match self.mode {
            Mode::Tunnel { .. } => self.prepare_tunnel(pkt, seq, false, None),
            Mode::Transport => self.prepare_transport(pkt, seq, None),
        }
    }

    /// `prepare` with an explicit IV chosen by the caller instead of the
    /// SA's `IvPolicy`: for known-answer tests, and for IV schemes managed
    /// outside this crate. The caller guarantees the IV never repeats under
    /// the key (RFC 4106 §3.1). Ignored by implicit-IV suites.
    pub fn prepare_with_iv<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        pkt: &mut PktBuf<B>,
        seq: u64,
        iv: [u8; 8],
    ) -> Result<OutboundOp, DropReason> {
        if let Some(d) = &self.c.diet {
            return match self.mode {
                Mode::Tunnel { .. } => self.prepare_diet_tunnel(d, pkt, seq, Some(iv)),
                Mode::Transport => self.prepare_diet_transport(d, pkt, seq, Some(iv)),
            };
        }
        match self.mode {
            Mode::Tunnel { .. } => self.prepare_tunnel(pkt, seq, false, Some(iv)),
            Mode::Transport => self.prepare_transport(pkt, seq, Some(iv)),
        }
    }

    /// Frame a dummy packet (RFC 4303 §2.6, Next Header 59) of `body_len`
    /// zero octets (tunnel mode only; the body is encrypted, so zeros are as
    /// good as random). `pkt` should be empty with enough room.
    pub fn prepare_dummy<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        pkt: &mut PktBuf<B>,
        body_len: usize,
        seq: u64,
    ) -> Result<OutboundOp, DropReason> {
        // Diet-ESP cannot carry Next Header 59 when the trailer elides it;
        // no dummy packets on compressed SAs.
        if self.tunnel.is_none() || self.c.diet.is_some() {
            return Err(DropReason::BadInnerHeader);
        }
        pkt.truncate(0);
        if !pkt.append(body_len) {
            return Err(DropReason::NoTailroom);
        }
        pkt.data_mut().iter_mut().for_each(|b| *b = 0);
        self.prepare_tunnel(pkt, seq, true, None)
    }

    fn prepare_tunnel<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        pkt: &mut PktBuf<B>,
        seq: u64,
        dummy: bool,
        iv: Option<[u8; 8]>,
    ) -> Result<OutboundOp, DropReason> {
        let Some(t) = &self.tunnel else {
            return Err(DropReason::BadInnerHeader);
        };
        let (nh, inner_len, tos) = if dummy {
            (IpProtocol::NO_NEXT_HEADER, pkt.len(), 0)
        } else {
            match pkt.data().first().map(|b| b >> 4) {
                Some(4) => {
                    let p = Ipv4Packet::new_checked(pkt.data())
                        .map_err(|_| DropReason::BadInnerHeader)?;
                    (IpProtocol::IPV4, p.total_len(), p.dscp_ecn())
                }
                Some(6) => {
                    let p = Ipv6Packet::new_checked(pkt.data())
                        .map_err(|_| DropReason::BadInnerHeader)?;
                    (IpProtocol::IPV6, p.total_len(), p.traffic_class())
                }
                _ => return Err(DropReason::BadInnerHeader),
            }
        };
        let payload_len = match self.tfc {
            TfcPadding::PadTo(n) if !dummy => inner_len.max(usize::from(n)),
            _ => inner_len,
        };
        let tr = TrailerRepr::for_payload(payload_len, self.c.iv_len, self.c.align, nh);
        let hdr = t.len + self.c.esp_hdr_len;
        let total = hdr + payload_len + tr.buffer_len() + self.c.icv_len;
        let ip_payload = total - t.ip_len;
        if (if t.v6 { ip_payload } else { total }) > usize::from(u16::MAX) {
            return Err(DropReason::TooBig);
        }
        if pkt.headroom() < hdr {
            return Err(DropReason::NoHeadroom);
        }
        pkt.truncate(inner_len);
        if !pkt.append(total - hdr - inner_len) {
            return Err(DropReason::NoTailroom);
        }
        pkt.prepend(hdr);
        let data = pkt.data_mut();
        data[hdr + inner_len..hdr + payload_len]
            .iter_mut()
            .for_each(|b| *b = 0);
        copy_template(data, &t.bytes, t.len);
        if t.v6 {
            let mut ip = Ipv6Packet::new_unchecked(&mut data[..]);
            ip.set_payload_len(ip_payload as u16);
            // RFC 6040 normal mode: copy DSCP and ECN.
            ip.set_version_tc_flow(tos, 0);
        } else {
            finish_outer_v4(data, t, total, tos, seq);
        }
        if self.preserve != (false, false) {
            preserve_addresses(data, hdr, t.v6, self.preserve)?;
        }
        let mut udp_checksum_at = None;
        if self.udp.is_some() {
            UdpPacket::new_unchecked(&mut data[t.ip_len..]).set_len((total - t.ip_len) as u16);
            if t.v6 {
                udp_checksum_at = Some(t.ip_len);
            }
        }
        let op = self.frame(data, t.len, payload_len, tr, seq, iv);
        Ok(OutboundOp {
            op,
            udp_checksum_at,
        })
    }

    fn prepare_transport<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        pkt: &mut PktBuf<B>,
        seq: u64,
        iv: Option<[u8; 8]>,
    ) -> Result<OutboundOp, DropReason> {
        // Where ESP goes, the protocol it replaces and who points at it.
        let (v6, hl, total, nh, nh_off) = match pkt.data().first().map(|b| b >> 4) {
            Some(4) => {
                let p =
                    Ipv4Packet::new_checked(pkt.data()).map_err(|_| DropReason::BadInnerHeader)?;
                if p.is_fragment() {
                    // RFC 4303 §3.1.1: transport mode applies to whole datagrams.
                    return Err(DropReason::Fragment);
                }
                (
                    false,
                    p.header_len(),
                    p.total_len(),
                    p.protocol(),
                    esp_wire::ipv4::field::PROTOCOL,
                )
            }
            Some(6) => {
                let p =
                    Ipv6Packet::new_checked(pkt.data()).map_err(|_| DropReason::BadInnerHeader)?;
                let at = p
                    .esp_insertion_point()
                    .map_err(|_| DropReason::BadInnerHeader)?;
                if at.fragment {
                    return Err(DropReason::Fragment);
                }
                (true, at.offset, p.total_len(), at.protocol, at.nh_offset)
            }
            _ => return Err(DropReason::BadInnerHeader),
        };
        if nh == IpProtocol::NO_NEXT_HEADER {
            // RFC 4303 §2.6: Next Header 59 marks a dummy packet; the peer
            // would discard this one silently. Found by the encap fuzzer.
            return Err(DropReason::BadInnerHeader);
        }
        let payload_len = total - hl;
        let tr = TrailerRepr::for_payload(payload_len, self.c.iv_len, self.c.align, nh);
        let udp_len = self.udp.map_or(0, |_| udp::HEADER_LEN);
        let ins = udp_len + self.c.esp_hdr_len;
        let new_total = total + ins + tr.buffer_len() + self.c.icv_len;
        let ip_len_field = if v6 {
            new_total - esp_wire::ipv6::HEADER_LEN
        } else {
            new_total
        };
        if ip_len_field > usize::from(u16::MAX) {
            return Err(DropReason::TooBig);
        }
        if pkt.headroom() < ins {
            return Err(DropReason::NoHeadroom);
        }
        pkt.truncate(total);
        if !pkt.append(new_total - total - ins) {
            return Err(DropReason::NoTailroom);
        }
        pkt.prepend(ins);
        let data = pkt.data_mut();
        data.copy_within(ins..ins + hl, 0);
        let proto = if self.udp.is_some() {
            IpProtocol::UDP
        } else {
            IpProtocol::ESP
        };
        data[nh_off] = proto.0;
        let mut udp_checksum_at = None;
        if v6 {
            Ipv6Packet::new_unchecked(&mut data[..]).set_payload_len(ip_len_field as u16);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
            ip.set_total_len(new_total as u16);
            ip.fill_checksum();
        }
        if let Some(u) = self.udp {
            udp::UdpRepr {
                src_port: u.src_port,
                dst_port: u.dst_port,
                payload_len: new_total - hl - udp_len,
            }
            .emit(&mut UdpPacket::new_unchecked(&mut data[hl..]));
            if v6 {
                udp_checksum_at = Some(hl);
            }
        }
        let op = self.frame(data, hl + udp_len, payload_len, tr, seq, iv);
        Ok(OutboundOp {
            op,
            udp_checksum_at,
        })
    }

    /// Diet-ESP framing around an ESP payload already in place:
    /// `data[text_off..text_off + payload_len]`. Writes the compressed ESP
    /// header, the IV and the CTEC trailer, and describes the AEAD op (the
    /// AAD holds the full SPI and SN: diet-esp-07 §4, EEC after the ICV).
    fn frame_diet(
        &self,
        d: &crate::diet::Profile,
        data: &mut [u8],
        esp_off: usize,
        (payload_len, next_header): (usize, u8),
        seq: u64,
        iv: Option<[u8; 8]>,
    ) -> CryptoOp {
        let text_off = esp_off + self.c.esp_hdr_len;
        let trailer = d.trailer_len(payload_len);
        d.write_trailer(&mut data[text_off + payload_len..text_off + payload_len + trailer], payload_len, next_header);
        d.write_esp_header(&mut data[esp_off..], self.c.spi, seq);
        let nonce = if self.c.iv_len > 0 {
            let iv = iv.unwrap_or_else(|| self.explicit_iv(seq));
            let at = esp_off + d.esp_header_len();
            data[at..at + 8].copy_from_slice(&iv);
            self.c.nonce(seq, Some(&iv))
        } else {
            self.c.nonce(seq, None)
        };
        let (aad, aad_len) = self.c.aad(seq);
        CryptoOp::from_parts(nonce, aad, aad_len, text_off, payload_len + trailer)
    }

    /// Tunnel mode with Diet-ESP: IIPC, then CTEC and EEC framing. The
    /// outer header takes the inner Hop Limit / TTL, Traffic Class and (with
    /// the `lower` Flow Label CDA) Flow Label or Identification, which the
    /// receiver's `lower` CDAs read back (diet-esp-07 §5.1.2).
    fn prepare_diet_tunnel<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        d: &crate::diet::Profile,
        pkt: &mut PktBuf<B>,
        seq: u64,
        iv: Option<[u8; 8]>,
    ) -> Result<OutboundOp, DropReason> {
        let Some(t) = &self.tunnel else {
            return Err(DropReason::BadInnerHeader);
        };
        let comp = d.compress_tunnel(pkt.data())?;
        let (h, r) = (comp.header_len, comp.residue_len);
        let payload_len = r + comp.inner_len - h;
        let hdr = t.len + self.c.esp_hdr_len;
        let trailer = d.trailer_len(payload_len);
        let total = hdr + payload_len + trailer + self.c.icv_len;
        let ip_payload = total - t.ip_len;
        if (if t.v6 { ip_payload } else { total }) > usize::from(u16::MAX) {
            return Err(DropReason::TooBig);
        }
        // The residue replaces the Header in place, right before the Payload.
        pkt.truncate(comp.inner_len);
        if pkt.headroom() + (h - r) < hdr {
            return Err(DropReason::NoHeadroom);
        }
        if !pkt.append(trailer + self.c.icv_len) {
            return Err(DropReason::NoTailroom);
        }
        pkt.data_mut()[h - r..h].copy_from_slice(comp.residue());
        pkt.trim_front(h - r);
        pkt.prepend(hdr);
        let data = pkt.data_mut();
        copy_template(data, &t.bytes, t.len);
        let flow_lower = d.attrs().flow_label_cda == crate::diet::FlowLabelCda::Lower;
        if t.v6 {
            let mut ip = Ipv6Packet::new_unchecked(&mut data[..]);
            ip.set_payload_len(ip_payload as u16);
            ip.set_version_tc_flow(comp.lower.tos, if flow_lower { comp.lower.flow & 0xfffff } else { 0 });
            ip.set_hop_limit(comp.lower.ttl);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
            ip.set_total_len(total as u16);
            ip.set_dscp_ecn(comp.lower.tos);
            ip.set_ident(if flow_lower { comp.lower.flow as u16 } else { seq as u16 });
            ip.set_ttl(comp.lower.ttl);
            ip.fill_checksum();
        }
        let mut udp_checksum_at = None;
        if self.udp.is_some() {
            UdpPacket::new_unchecked(&mut data[t.ip_len..]).set_len((total - t.ip_len) as u16);
            if t.v6 {
                udp_checksum_at = Some(t.ip_len);
            }
        }
        let op = self.frame_diet(d, data, t.len, (payload_len, comp.next_header), seq, iv);
        Ok(OutboundOp { op, udp_checksum_at })
    }

    /// Transport mode with Diet-ESP: the transport header is compressed,
    /// the IP header kept (diet-esp-07 §6).
    fn prepare_diet_transport<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        d: &crate::diet::Profile,
        pkt: &mut PktBuf<B>,
        seq: u64,
        iv: Option<[u8; 8]>,
    ) -> Result<OutboundOp, DropReason> {
        let (v6, hl, total, nh, nh_off) = match pkt.data().first().map(|b| b >> 4) {
            Some(4) => {
                let p = Ipv4Packet::new_checked(pkt.data()).map_err(|_| DropReason::BadInnerHeader)?;
                if p.is_fragment() {
                    return Err(DropReason::Fragment);
                }
                (false, p.header_len(), p.total_len(), p.protocol(), esp_wire::ipv4::field::PROTOCOL)
            }
            Some(6) => {
                let p = Ipv6Packet::new_checked(pkt.data()).map_err(|_| DropReason::BadInnerHeader)?;
                let at = p.esp_insertion_point().map_err(|_| DropReason::BadInnerHeader)?;
                if at.fragment {
                    return Err(DropReason::Fragment);
                }
                (true, at.offset, p.total_len(), at.protocol, at.nh_offset)
            }
            _ => return Err(DropReason::BadInnerHeader),
        };
        if nh == IpProtocol::NO_NEXT_HEADER {
            return Err(DropReason::BadInnerHeader);
        }
        let comp = d.compress_transport(&pkt.data()[hl..total], nh.0)?;
        let (h, r) = (comp.header_len, comp.residue_len);
        let payload_len = r + (total - hl) - h;
        let udp_len = self.udp.map_or(0, |_| udp::HEADER_LEN);
        let ins = udp_len + self.c.esp_hdr_len;
        let trailer = d.trailer_len(payload_len);
        let new_total = hl + ins + payload_len + trailer + self.c.icv_len;
        let ip_len_field = if v6 { new_total - esp_wire::ipv6::HEADER_LEN } else { new_total };
        if ip_len_field > usize::from(u16::MAX) {
            return Err(DropReason::TooBig);
        }
        pkt.truncate(total);
        if pkt.headroom() + (h - r) < ins {
            return Err(DropReason::NoHeadroom);
        }
        if !pkt.append(trailer + self.c.icv_len) {
            return Err(DropReason::NoTailroom);
        }
        // Residue over the end of the transport header, IP header moved up
        // against it, then room for UDP + ESP header between the two.
        let data = pkt.data_mut();
        data[hl + h - r..hl + h].copy_from_slice(comp.residue());
        data.copy_within(0..hl, h - r);
        pkt.trim_front(h - r);
        pkt.prepend(ins);
        let data = pkt.data_mut();
        data.copy_within(ins..ins + hl, 0);
        data[nh_off] = if self.udp.is_some() { IpProtocol::UDP.0 } else { IpProtocol::ESP.0 };
        let mut udp_checksum_at = None;
        if v6 {
            Ipv6Packet::new_unchecked(&mut data[..]).set_payload_len(ip_len_field as u16);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
            ip.set_total_len(new_total as u16);
            ip.fill_checksum();
        }
        if let Some(u) = self.udp {
            udp::UdpRepr { src_port: u.src_port, dst_port: u.dst_port, payload_len: new_total - hl - udp_len }
                .emit(&mut UdpPacket::new_unchecked(&mut data[hl..]));
            if v6 {
                udp_checksum_at = Some(hl);
            }
        }
        let op = self.frame_diet(d, data, hl + udp_len, (payload_len, nh.0), seq, iv);
        Ok(OutboundOp { op, udp_checksum_at })
    }

    /// After sealing: fill the UDP checksum over IPv6 (the only per-packet
    /// work that needs the ciphertext).
    pub fn finish<B: AsRef<[u8]> + AsMut<[u8]>>(&self, pkt: &mut PktBuf<B>, op: &OutboundOp) {
        if let Some(at) = op.udp_checksum_at {
            let data = pkt.data_mut();
            let ip = Ipv6Packet::new_unchecked(&data[..]);
            let (s, d) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
            UdpPacket::new_unchecked(&mut data[at..]).fill_checksum(s, d);
        }
    }
}

/// Encapsulate and seal a burst: one sequence reservation, one AEAD call
/// per `MAX_BURST` packets. `verdicts[i]` says what became of `pkts[i]`;
/// dropped packets are left for the caller to count and free. Returns the
/// SA event raised by the reservation, if any (at most one per chunk; the
/// exhaustion event wins).
pub fn seal_burst<B, A>(
    sa: &OutboundSa,
    aead: &A,
    pkts: &mut [PktBuf<B>],
    verdicts: &mut [Result<(), DropReason>],
) -> Option<SaEvent>
where
    B: AsRef<[u8]> + AsMut<[u8]>,
    A: BatchAead + ?Sized,
{
    let mut event = None;
    for (pkts, verdicts) in pkts
        .chunks_mut(MAX_BURST)
        .zip(verdicts.chunks_mut(MAX_BURST))
    {
        let grant = sa.reserve(pkts.len() as u32);
        if grant.event.is_some() && event != Some(SaEvent::SeqExhausted) {
            event = grant.event;
        }
        let mut ops = [None::<OutboundOp>; MAX_BURST];
        for (i, (pkt, v)) in pkts.iter_mut().zip(verdicts.iter_mut()).enumerate() {
            *v = if (i as u32) < grant.count {
                sa.prepare(pkt, grant.first + i as u64)
                    .map(|op| ops[i] = Some(op))
            } else {
                Err(DropReason::SeqExhausted)
            };
        }
        let crypto: [Option<CryptoOp>; MAX_BURST] = core::array::from_fn(|k| ops[k].map(|o| o.op));
        let ok = aead_burst(aead, pkts.iter_mut().map(|p| Some(p.data_mut())), &crypto, true);
        for (i, pkt) in pkts.iter_mut().enumerate() {
            if let Some(op) = &ops[i] {
                if ok[i] {
                    sa.finish(pkt, op);
                } else {
                    verdicts[i] = Err(DropReason::CryptoFailed);
                }
            }
        }
    }
    event
}
