//! A worker's per-SA contexts: built when the SA table's journal announces
//! an SA (never per packet), dropped when it goes.
//!
//! An inbound SA gets a context (crypto and replay window) only on its
//! owner worker (slot % workers); on the others it is [`SaCtx::Foreign`]
//! and its packets are handed to the owner. Its window comes from the SA
//! table, or from the context it replaces when that was the same SA with
//! the same window (see `replay.rs`).

use std::net::IpAddr;

use esp::{InboundSa, OutboundSa, Suite};
use sa_table::{Change, SaFlags, SaId, SaParams as SlotParams};

use super::replay::TableWindow;
use super::Worker;
use crate::crypto::Aead;

/// What a worker keeps per SA (by slot), built when the journal announces it.
pub(super) enum SaCtx {
    /// `tunnel_dst`: the outer destination of a tunnel-mode SA (known once,
    /// not parsed back out of every packet).
    Out { sa: Box<OutboundSa>, aead: Aead, esn: bool, tunnel_dst: Option<IpAddr> },
    In { id: SaId, sa: Box<InboundSa>, aead: Aead, params: Box<SlotParams> },
    /// Inbound SA owned by another worker.
    Foreign,
    /// Parameters the ESP engine refused; its packets are dropped.
    Unusable,
}

/// Maps a slot's parameters to the ESP engine's.
pub fn esp_params(p: &SlotParams) -> Result<esp::SaParams, &'static str> {
    let suite = Suite::from_transform(esp::TransformId(p.transform.0), Some(u16::from(p.key_len) * 8))
        .ok_or("transform or key length not supported by the ESP engine")?;
    let mut keymat = [0u8; sa_table::MAX_KEY_BYTES + sa_table::SALT_BYTES];
    let k = p.key();
    keymat[..k.len()].copy_from_slice(k);
    keymat[k.len()..k.len() + 4].copy_from_slice(&p.salt);
    let mut e = esp::SaParams::new(p.spi, suite, &keymat[..k.len() + 4]).ok_or("key length does not match the suite")?;
    e.esn = p.flags.contains(SaFlags::ESN);
    if p.mode == sa_table::Mode::TUNNEL {
        let (Some(src), Some(dst)) = (p.outer_src_addr(), p.outer_dst_addr()) else {
            return Err("tunnel mode without outer addresses");
        };
        e.mode = esp::Mode::Tunnel { src, dst };
    }
    if p.flags.contains(SaFlags::UDP_ENCAP) {
        e.udp_encap = Some(esp::UdpEncap { src_port: p.udp_src_port, dst_port: p.udp_dst_port });
    }
    e.replay_window = p.replay_window_pkts;
    if p.sender_id_bits != 0 {
        e.iv = esp::IvPolicy::SenderId { bits: p.sender_id_bits, sid: p.sender_id };
    }
    if p.compression.profile != 0 {
        e.diet = Some(diet_attrs(p)?);
    }
    Ok(e)
}

/// The Diet-ESP attributes of a slot (draft-ietf-ipsecme-diet-esp-07
/// §4.2): the negotiated AfRGs, and the selectors seen from this
/// direction's compressor: an outbound SA compresses packets from its local
/// to its remote selector, an inbound one decompresses the reverse. The
/// inner rule ("iipc_diet-esp") needs exactly one selector per side, of one
/// family, with one protocol; otherwise "iipc_not_compressed" (§4.2).
fn diet_attrs(p: &SlotParams) -> Result<esp::DietAttrs, &'static str> {
    use esp::diet::{Alignment, DscpCda, EcnCda, EspTrailer, FlowLabelCda, Selectors};
    let c = &p.compression;
    if c.profile != 1 {
        return Err("unknown header compression profile");
    }
    let mut a = esp::DietAttrs::defaults();
    a.dscp_cda = DscpCda::from_u8(c.dscp_cda).ok_or("unknown DSCP CDA")?;
    a.ecn_cda = EcnCda::from_u8(c.ecn_cda).ok_or("unknown ECN CDA")?;
    a.flow_label_cda = FlowLabelCda::from_u8(c.flow_label_cda).ok_or("unknown Flow Label CDA")?;
    a.alignment = Alignment::from_u8(c.alignment).ok_or("unknown alignment")?;
    a.esp_trailer = EspTrailer::from_u8(c.esp_trailer).ok_or("unknown ESP trailer mode")?;
    a.esp_spi_lsb = c.esp_spi_lsb;
    a.esp_sn_lsb = c.esp_sn_lsb;
    let n = usize::from(c.dscp_list_len).min(sa_table::MAX_DSCP_LIST);
    a.dscp_list[..n].copy_from_slice(&c.dscp_list[..n]);
    a.dscp_list_len = n as u8;
    if let ([l], [r]) = (p.ts_local(), p.ts_remote()) {
        let (src, dst) = if p.direction == sa_table::Direction::OUTBOUND { (l, r) } else { (r, l) };
        let proto = match (src.ip_proto, dst.ip_proto) {
            (x, y) if x == y => Some(x),
            (0, y) => Some(y),
            (x, 0) => Some(x),
            _ => None,
        };
        let range = |t: &sa_table::TrafficSelector| {
            sa_table::addr_from_bytes(t.family(), &t.start_addr).zip(sa_table::addr_from_bytes(t.family(), &t.end_addr))
        };
        if let (Some(proto), Some(s), Some(d)) = (proto, range(src), range(dst)) {
            if s.0.is_ipv4() == d.0.is_ipv4() {
                a.selectors = Some(Selectors {
                    src: s,
                    dst: d,
                    proto,
                    src_ports: (src.start_port, src.end_port),
                    dst_ports: (dst.start_port, dst.end_port),
                });
            }
        }
    }
    Ok(a)
}

impl Worker<'_, '_> {
    pub(super) fn owner(&self, id: SaId) -> usize {
        id.slot() as usize % self.env.workers
    }

    pub(super) fn install(&mut self, id: SaId, p: &SlotParams) {
        // Every worker looks up inbound packets before handing them to the
        // SA's owner: each indexes every compressed inbound SA.
        self.diet_in.remove(id);
        if p.direction == sa_table::Direction::INBOUND && p.compression.profile != 0 {
            if let (Some(peer), Ok(e)) = (p.outer_src_addr(), esp_params(p)) {
                let tunnel = matches!(e.mode, esp::Mode::Tunnel { .. });
                // The same profile the SA's context compiles: an SA the
                // engine refuses is not indexed (its packets count as
                // no_inbound_sa, as with any unknown SPI).
                let profile = e.diet.and_then(|a| esp::DietProfile::new(&a, tunnel, e.udp_encap.is_some(), 1, p.spi).ok());
                if let Some(d) = profile {
                    self.diet_in.insert(id, peer, d.spi_lsb() as u8, d.spi_bits(p.spi));
                }
            }
        }
        let ctx = if p.direction == sa_table::Direction::INBOUND && self.owner(id) != self.id {
            SaCtx::Foreign
        } else {
            match esp_params(p).and_then(|e| {
                let out = p.direction == sa_table::Direction::OUTBOUND;
                let aead = Aead::new(self.env.backend, self.env.mb, &e, out).map_err(|_| "key rejected")?;
                if out {
                    let sa = OutboundSa::new(&e).map_err(|_| "SA parameters refused")?;
                    let tunnel_dst = match e.mode {
                        esp::Mode::Tunnel { dst, .. } => Some(dst),
                        esp::Mode::Transport => None,
                    };
                    Ok(SaCtx::Out { sa: Box::new(sa), aead, esn: e.esn, tunnel_dst })
                } else {
                    let sa = InboundSa::new(&e).map_err(|_| "SA parameters refused")?;
                    Ok(SaCtx::In { id, sa: Box::new(sa), aead, params: Box::new(*p) })
                }
            }) {
                Ok(c) => c,
                Err(_) => SaCtx::Unusable,
            }
        };
        let Some(s) = self.sas.get_mut(id.slot() as usize) else { return };
        let old = s.replace(ctx);
        if let Some(SaCtx::In { sa, .. }) = s {
            match old {
                // The same SA re-installed with the same window (a context
                // rebuild, a re-read slot): the window goes on as it was.
                Some(SaCtx::In { id: old_id, sa: mut old_sa, params: old_p, .. })
                    if old_id == id
                        && old_p.replay_window_pkts == p.replay_window_pkts
                        && old_p.flags.contains(SaFlags::ESN) == p.flags.contains(SaFlags::ESN) =>
                {
                    std::mem::swap(sa.replay_mut(), old_sa.replay_mut());
                }
                // New to this worker (a start, an owner change) or a new
                // window: from the table, where the owner left it.
                _ => {
                    if let Some(st) = self.reader.state(id) {
                        sa.replay_mut().restore(&TableWindow(st));
                    }
                }
            }
        }
    }

    /// Applies the SA table's journal to this worker's contexts.
    pub fn follow_table(&mut self) {
        // The reader lends the params only inside its callback: copy out a
        // bounded number of changes, apply them after.
        let mut changes: [Option<(SaId, Option<SlotParams>)>; 16] = [None; 16];
        let mut n = 0;
        let mut overflow = false;
        self.reader.poll_changes(|c| {
            if n == changes.len() {
                overflow = true;
                return;
            }
            changes[n] = Some(match c {
                Change::Upsert { id, params } => (id, Some(*params)),
                Change::Removed { id } => (id, None),
            });
            n += 1;
        });
        if overflow {
            // More changes than fit: rebuild every context from the indexes.
            self.rebuild_contexts();
            return;
        }
        for c in changes.iter_mut().take(n) {
            match c.take() {
                Some((id, Some(p))) => self.install(id, &p),
                Some((id, None)) => {
                    self.diet_in.remove(id);
                    if let Some(s) = self.sas.get_mut(id.slot() as usize) {
                        *s = None;
                    }
                }
                None => {}
            }
        }
    }

    /// Every context again from the reader's indexes: the known SAs are
    /// re-installed (an unchanged inbound SA keeps its window), the others
    /// dropped.
    fn rebuild_contexts(&mut self) {
        let mut installed = vec![false; self.sas.len()];
        let ids: Vec<SaId> = self.reader.known_ids().collect();
        for id in ids {
            if let Ok(p) = self.reader.read(id) {
                self.install(id, &p);
                if let Some(i) = installed.get_mut(id.slot() as usize) {
                    *i = true;
                }
            }
        }
        for (i, (s, kept)) in self.sas.iter_mut().zip(installed).enumerate() {
            if !kept {
                *s = None;
                self.diet_in.remove_slot(i as u32);
            }
        }
    }
}
