//! Inbound ESP (RFC 4303 §3.4): classification of the outer packet, then
//! per SA: SPI and sequence pre-check, AEAD open, window update only after
//! the ICV verified (§3.4.3), trailer and padding check (§2.4), dummy
//! packets (Next Header 59) dropped silently (§2.6), and reconstruction of
//! the inner packet (tunnel) or of the original IP packet (transport,
//! §3.1.1), with TFC padding stripped (§2.7).
//!
//! UDP-encapsulated ESP (RFC 3948 §2) is told apart from IKE (Non-ESP
//! Marker) and NAT keepalives, and an SA with UDP encapsulation also accepts
//! plain ESP (RFC 3948 §3.2). Outer fragments are dropped (§3.4.1).

use esp_wire::{
    classify_udp_encap, ipv4, ipv4::Ipv4Packet, ipv6::Ipv6Packet, udp, Error as WireError,
    EspPacket, EspTrailer, IpProtocol, UdpEncapKind, UdpPacket, NAT_T_PORT,
};

use crate::aead::{aead_burst, BatchAead, CryptoOp};
use crate::buf::PktBuf;
use crate::replay::ReplayWindow;
use crate::sa::{Mode, SaConsts, SaError, SaParams};
use crate::{DropReason, MAX_BURST};

/// Where ESP sits in a received IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspLocation {
    /// Offset of the SPI.
    pub esp_off: usize,
    /// End of the ESP packet (outer IP / UDP length; link padding excluded).
    pub end: usize,
    /// IP header length including extension headers before ESP / UDP.
    pub ip_hdr_len: usize,
    /// Offset of the octet that says 50 (ESP) or 17 (UDP).
    pub nh_off: usize,
    pub udp: bool,
    pub v6: bool,
    pub spi: u32,
}

fn outer(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Truncated,
        _ => DropReason::BadOuterHeader,
    }
}

/// Find ESP in an outer IP packet: raw ESP (protocol 50) or ESP in UDP to
/// port 4500. Keepalives and IKE on 4500 come back as the reasons
/// `NatKeepalive` / `NonEspMarker` so the caller can count or punt them.
pub fn classify(ip: &[u8]) -> Result<EspLocation, DropReason> {
    classify_with_port(ip, NAT_T_PORT)
}

/// `classify` with a non-standard UDP encapsulation port.
pub fn classify_with_port(ip: &[u8], nat_t_port: u16) -> Result<EspLocation, DropReason> {
    let (v6, ip_hdr_len, nh_off, proto, end) = match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(ip).map_err(outer)?;
            if !p.verify_checksum() {
                return Err(DropReason::BadOuterHeader);
            }
            if p.is_fragment() {
                return Err(DropReason::Fragment);
            }
            (
                false,
                p.header_len(),
                ipv4::field::PROTOCOL,
                p.protocol(),
                p.total_len(),
            )
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(ip).map_err(outer)?;
            let u = p.upper_layer().map_err(outer)?;
            if u.fragment {
                return Err(DropReason::Fragment);
            }
            (true, u.offset, u.nh_offset, u.protocol, p.total_len())
        }
        None => return Err(DropReason::Truncated),
        _ => return Err(DropReason::BadOuterHeader),
    };
    let (esp_off, end, udp) = match proto {
        IpProtocol::ESP => (ip_hdr_len, end, false),
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(&ip[ip_hdr_len..end]).map_err(outer)?;
            if u.dst_port() != nat_t_port && u.src_port() != nat_t_port {
                return Err(DropReason::NotEsp);
            }
            match classify_udp_encap(u.payload()) {
                Ok(UdpEncapKind::Esp) => {}
                Ok(UdpEncapKind::NatKeepalive) => return Err(DropReason::NatKeepalive),
                Ok(UdpEncapKind::Ike) => return Err(DropReason::NonEspMarker),
                Err(_) => return Err(DropReason::Truncated),
            }
            (ip_hdr_len + udp::HEADER_LEN, ip_hdr_len + u.len(), true)
        }
        _ => return Err(DropReason::NotEsp),
    };
    let esp = EspPacket::new_checked(&ip[esp_off..end]).map_err(|_| DropReason::Truncated)?;
    Ok(EspLocation {
        esp_off,
        end,
        ip_hdr_len,
        nh_off,
        udp,
        v6,
        spi: esp.spi(),
    })
}

/// A packet that passed the pre-check, ready for the AEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundOp {
    pub op: CryptoOp,
    /// The full (ESN-inferred) sequence number that was authenticated.
    pub seq: u64,
    pub loc: EspLocation,
}

/// What a successfully decapsulated packet was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapsulated {
    pub seq: u64,
    /// The trailer's Next Header (4 / 41 in tunnel mode).
    pub next_header: IpProtocol,
}

/// The inbound half of a Child SA. Owned by one worker: `finish` updates
/// the replay window.
#[derive(Debug)]
pub struct InboundSa {
    c: SaConsts,
    tunnel: bool,
    /// RFC 5374 §3.1: inner source / destination must equal the outer.
    preserve: (bool, bool),
    replay: ReplayWindow,
}

impl InboundSa {
    pub fn new(p: &SaParams) -> Result<Self, SaError> {
        p.validate()?;
        Ok(Self {
            c: SaConsts::new(p)?,
            tunnel: matches!(p.mode, Mode::Tunnel { .. }),
            preserve: (p.preserve_src, p.preserve_dst),
            replay: ReplayWindow::new(p.replay_window, p.esn),
        })
    }

    pub fn spi(&self) -> u32 {
        self.c.spi
    }

    pub fn suite(&self) -> crate::Suite {
        self.c.suite
    }

    pub fn replay(&self) -> &ReplayWindow {
        &self.replay
    }

    pub fn replay_mut(&mut self) -> &mut ReplayWindow {
        &mut self.replay
    }

    /// The SA's Diet-ESP profile, if it compresses.
    pub fn diet(&self) -> Option<&crate::diet::Profile> {
        self.c.diet.as_deref()
    }

    /// SPI check, length check, replay pre-check, nonce and AAD.
    pub fn prepare(&self, data: &[u8], loc: &EspLocation) -> Result<InboundOp, DropReason> {
        if let Some(d) = &self.c.diet {
            return self.prepare_diet(d, data, loc);
        }
        let Some(esp) = data.get(loc.esp_off..loc.end) else {
            return Err(DropReason::Truncated);
        };
        let esp = EspPacket::new_checked(esp).map_err(|_| DropReason::Truncated)?;
        // At least the IV, Pad Length, Next Header and the ICV.
        if esp.payload().len() < self.c.iv_len + esp_wire::trailer::TRAILER_LEN + self.c.icv_len {
            return Err(DropReason::Truncated);
        }
        if esp.spi() != self.c.spi {
            return Err(DropReason::BadSpi);
        }
        // RFC 4303 §3.4.3: cheap check before the ICV; no window update yet.
        let seq = self.replay.check(esp.seq())?;
        let iv = (self.c.iv_len > 0).then(|| &esp.payload()[..self.c.iv_len]);
        let nonce = self.c.nonce(seq, iv);
        let (aad, aad_len) = self.c.aad(seq);
        let text_off = loc.esp_off + self.c.esp_hdr_len;
        let text_len = loc.end - text_off - self.c.icv_len;
        Ok(InboundOp {
            op: CryptoOp::new(nonce, &aad[..aad_len], text_off, text_len),
            seq,
            loc: *loc,
        })
    }

    /// Diet-ESP EEC decompression (diet-esp-07 §5.3): the SPI's low bits
    /// must be this SA's, the SN is inferred from its low bits and T, and
    /// the AAD and nonce are built from the full values.
    fn prepare_diet(
        &self,
        d: &crate::diet::Profile,
        data: &[u8],
        loc: &EspLocation,
    ) -> Result<InboundOp, DropReason> {
        let Some(esp) = data.get(loc.esp_off..loc.end) else {
            return Err(DropReason::Truncated);
        };
        let e = d.esp_header_len();
        if esp.len() < e + self.c.iv_len + self.c.icv_len {
            return Err(DropReason::Truncated);
        }
        let (spi, sn) = d.read_esp_header(esp)?;
        if spi != d.spi_bits(self.c.spi) {
            return Err(DropReason::BadSpi);
        }
        let seq = self.replay.check_lsb(sn, d.sn_lsb())?;
        let iv = (self.c.iv_len > 0).then(|| &esp[e..e + self.c.iv_len]);
        let nonce = self.c.nonce(seq, iv);
        let (aad, aad_len) = self.c.aad(seq);
        let text_off = loc.esp_off + self.c.esp_hdr_len;
        let text_len = loc.end - text_off - self.c.icv_len;
        Ok(InboundOp {
            op: CryptoOp::new(nonce, &aad[..aad_len], text_off, text_len),
            seq,
            loc: *loc,
        })
    }

    /// Diet-ESP after the AEAD: CTEC then IIPC decompression.
    fn finish_diet<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        pkt: &mut PktBuf<B>,
        iop: &InboundOp,
    ) -> Result<Decapsulated, DropReason> {
        let Some(d) = self.c.diet.as_deref() else {
            return Err(DropReason::BadTrailer);
        };
        let text = pkt.data().get(iop.op.text_range()).ok_or(DropReason::Truncated)?;
        let (payload_len, nh) = d.read_trailer(text)?;
        let next_header = IpProtocol(nh);
        if next_header == IpProtocol::NO_NEXT_HEADER {
            return Err(DropReason::Dummy);
        }
        let text_off = iop.op.text_off as usize;
        let loc = &iop.loc;
        if self.tunnel {
            if !d.compresses_inner() {
                let payload = &text[..payload_len];
                let inner_len = match next_header {
                    IpProtocol::IPV4 => Ipv4Packet::new_checked(payload).map(|p| p.total_len()),
                    IpProtocol::IPV6 => Ipv6Packet::new_checked(payload).map(|p| p.total_len()),
                    _ => return Err(DropReason::BadInnerHeader),
                }
                .map_err(|_| DropReason::BadInnerHeader)?;
                pkt.trim_front(text_off);
                pkt.truncate(inner_len);
                return Ok(Decapsulated { seq: iop.seq, next_header });
            }
            // §5.1.2 `lower`: read before the outer header is overwritten.
            let outer = pkt.data();
            let lower = if loc.v6 {
                let ip = Ipv6Packet::new_unchecked(outer);
                crate::diet::Lower { tos: ip.traffic_class(), ttl: ip.hop_limit(), flow: ip.flow_label() }
            } else {
                let ip = Ipv4Packet::new_unchecked(outer);
                crate::diet::Lower { tos: ip.dscp_ecn(), ttl: ip.ttl(), flow: u32::from(ip.ident()) }
            };
            let r = d.decompress_tunnel(&text[..payload_len], lower, iop.seq)?;
            let rest = payload_len - r.residue_len;
            pkt.trim_front(text_off + r.residue_len);
            pkt.truncate(rest);
            if !pkt.prepend(r.header_len) {
                return Err(DropReason::NoHeadroom);
            }
            let data = pkt.data_mut();
            data[..r.header_len].copy_from_slice(r.header());
            r.finish_tunnel(data);
            let next_header = if r.header()[0] >> 4 == 6 { IpProtocol::IPV6 } else { IpProtocol::IPV4 };
            return Ok(Decapsulated { seq: iop.seq, next_header });
        }
        // Transport mode: the IP header stays, the transport header returns.
        let r = d.decompress_transport(&text[..payload_len], nh)?;
        let hl = loc.ip_hdr_len;
        let mut ip_hdr = [0u8; 256];
        if hl > ip_hdr.len() {
            return Err(DropReason::BadOuterHeader);
        }
        ip_hdr[..hl].copy_from_slice(&pkt.data()[..hl]);
        let rest = payload_len - r.residue_len;
        pkt.trim_front(text_off + r.residue_len);
        pkt.truncate(rest);
        if !pkt.prepend(hl + r.header_len) {
            return Err(DropReason::NoHeadroom);
        }
        let data = pkt.data_mut();
        data[..hl].copy_from_slice(&ip_hdr[..hl]);
        data[loc.nh_off] = nh;
        data[hl..hl + r.header_len].copy_from_slice(r.header());
        let total = data.len();
        let (src, dst) = if loc.v6 {
            let mut ip = Ipv6Packet::new_unchecked(&mut data[..]);
            ip.set_payload_len((total - 40) as u16);
            (std::net::IpAddr::V6(ip.src_addr()), std::net::IpAddr::V6(ip.dst_addr()))
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
            ip.set_total_len(total as u16);
            ip.fill_checksum();
            (std::net::IpAddr::V4(ip.src_addr()), std::net::IpAddr::V4(ip.dst_addr()))
        };
        if let Some((_, kind)) = r.l4 {
            crate::diet::fill_l4_checksum(kind, src, dst, &mut data[hl..]);
        }
        Ok(Decapsulated { seq: iop.seq, next_header })
    }

    /// After the AEAD: update the window (only now), check the trailer and
    /// rebuild the packet. On success `pkt.data()` is the inner IP packet
    /// (tunnel) or the original IP packet (transport).
    pub fn finish<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        pkt: &mut PktBuf<B>,
        iop: &InboundOp,
        icv_ok: bool,
    ) -> Result<Decapsulated, DropReason> {
        if !icv_ok {
            return Err(DropReason::IcvMismatch);
        }
        // RFC 4303 §3.4.3: the window moves only for authenticated packets.
        self.replay.mark(iop.seq)?;
        if self.c.diet.is_some() {
            return self.finish_diet(pkt, iop);
        }
        let text = pkt
            .data()
            .get(iop.op.text_range())
            .ok_or(DropReason::Truncated)?;
        let t = EspTrailer::new_checked(text).map_err(|_| DropReason::BadTrailer)?;
        t.check_padding().map_err(|_| DropReason::BadPadding)?;
        let next_header = t.next_header();
        let payload_len = t.payload_len();
        if next_header == IpProtocol::NO_NEXT_HEADER {
            // RFC 4303 §2.6: discard dummy packets silently.
            return Err(DropReason::Dummy);
        }
        let text_off = iop.op.text_off as usize;
        if self.tunnel {
            let payload = &text[..payload_len];
            // Strip TFC padding: the inner header carries the real length.
            let inner_len = match next_header {
                IpProtocol::IPV4 => Ipv4Packet::new_checked(payload).map(|p| p.total_len()),
                IpProtocol::IPV6 => Ipv6Packet::new_checked(payload).map(|p| p.total_len()),
                _ => return Err(DropReason::BadInnerHeader),
            }
            .map_err(|_| DropReason::BadInnerHeader)?;
            if self.preserve != (false, false) && !addresses_preserved(pkt.data(), &iop.loc, payload, self.preserve) {
                return Err(DropReason::AddressMismatch);
            }
            pkt.trim_front(text_off);
            pkt.truncate(inner_len);
        } else {
            let loc = &iop.loc;
            let hl = loc.ip_hdr_len;
            let removed = text_off - hl;
            let data = pkt.data_mut();
            data[loc.nh_off] = next_header.0;
            data.copy_within(0..hl, removed);
            pkt.trim_front(removed);
            pkt.truncate(hl + payload_len);
            let data = pkt.data_mut();
            if loc.v6 {
                Ipv6Packet::new_unchecked(&mut data[..])
                    .set_payload_len((hl + payload_len - 40) as u16);
            } else {
                let mut ip = Ipv4Packet::new_unchecked(&mut data[..]);
                ip.set_total_len((hl + payload_len) as u16);
                ip.fill_checksum();
            }
        }
        Ok(Decapsulated {
            seq: iop.seq,
            next_header,
        })
    }
}

/// RFC 5374 §3.1: whether the inner packet `inner` carries the outer
/// header's (at the front of `outer`) source and/or destination.
fn addresses_preserved(outer: &[u8], loc: &EspLocation, inner: &[u8], (src, dst): (bool, bool)) -> bool {
    let (version, s, d) = if loc.v6 { (6, 8..24, 24..40) } else { (4, 12..16, 16..20) };
    if inner.first().map(|b| b >> 4) != Some(version) || inner.len() < d.end || outer.len() < d.end {
        return false;
    }
    (!src || outer[s.clone()] == inner[s]) && (!dst || outer[d.clone()] == inner[d])
}

/// Classify, pre-check, open and decapsulate a burst for one SA: one AEAD
/// call per `MAX_BURST` packets. `pkts[i].data()` starts at the outer IP
/// header. `verdicts[i]` says what became of `pkts[i]`.
pub fn open_burst<B, A>(
    sa: &mut InboundSa,
    aead: &A,
    pkts: &mut [PktBuf<B>],
    verdicts: &mut [Result<Decapsulated, DropReason>],
) where
    B: AsRef<[u8]> + AsMut<[u8]>,
    A: BatchAead + ?Sized,
{
    for (pkts, verdicts) in pkts
        .chunks_mut(MAX_BURST)
        .zip(verdicts.chunks_mut(MAX_BURST))
    {
        let mut ops = [None::<InboundOp>; MAX_BURST];
        for (i, (pkt, v)) in pkts.iter().zip(verdicts.iter_mut()).enumerate() {
            match classify(pkt.data()).and_then(|loc| sa.prepare(pkt.data(), &loc)) {
                Ok(op) => ops[i] = Some(op),
                Err(r) => *v = Err(r),
            }
        }
        let crypto: [Option<CryptoOp>; MAX_BURST] = core::array::from_fn(|k| ops[k].map(|o| o.op));
        let ok = aead_burst(aead, pkts.iter_mut().map(|p| Some(p.data_mut())), &crypto, false);
        for (i, pkt) in pkts.iter_mut().enumerate() {
            if let Some(op) = &ops[i] {
                verdicts[i] = sa.finish(pkt, op, ok[i]);
            }
        }
    }
}
