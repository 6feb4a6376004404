//! A worker's per-SA contexts: built when the SA table's journal announces
//! an SA (never per packet), dropped when it goes.
//!
//! An inbound SA gets a context (crypto and replay window) only on its
//! owner worker (slot % workers); on the others it is [`SaCtx::Foreign`]
//! and its packets are handed to the owner. Its window comes from the SA
//! table, or from the context it replaces when that was the same SA with
//! the same window (see `replay.rs`).
//!
//! Keys: the AEAD holds the only key a context needs (wiped when it dies,
//! see `crate::crypto`); the slot record an inbound context keeps for its
//! selectors has its key and salt zeroed first, and every transient copy
//! of a record (the journal's batch of changes, a read) is wiped after use.

use std::net::IpAddr;

use esp::{InboundSa, OutboundSa, Suite};
use sa_table::{Change, SaFlags, SaId, SaParams as SlotParams};

use std::sync::atomic::{AtomicU64, Ordering};

use sa_table::Backends;

use super::replay::TableWindow;
use super::Worker;
use crate::crypto::{Aead, Fallback};
use crate::policy::SaSelectors;

/// SA install failures logged by this process so far, and the most it logs.
static LOGGED: AtomicU64 = AtomicU64::new(0);
const MAX_LOGGED: u64 = 32;

/// This dataplane run's tag in the SA states' backend words (non-zero,
/// different from the previous run's).
fn run_tag() -> u16 {
    (std::process::id() as u16).max(1)
}

/// What a worker keeps per SA (by slot), built when the journal announces it.
pub(super) enum SaCtx {
    /// `tunnel_dst`: the outer destination of a tunnel-mode SA (known once,
    /// not parsed back out of every packet).
    /// `sel`: its selectors and segment, for the SPD's SA search.
    Out { sa: Box<OutboundSa>, aead: Aead, esn: bool, tunnel_dst: Option<IpAddr>, sel: Box<SaSelectors> },
    /// `params`: the slot record for the selector check, key and salt zeroed;
    /// `segment`: the inside VLAN its decrypted packets go to (its label's).
    In { id: SaId, sa: Box<InboundSa>, aead: Aead, params: Box<SlotParams>, segment: u16 },
    /// Inbound SA owned by another worker.
    Foreign,
    /// Parameters the ESP engine refused; its packets are dropped.
    Unusable,
}

/// Maps a slot's parameters to the ESP engine's.
pub fn esp_params(p: &SlotParams) -> Result<esp::SaParams, &'static str> {
    let suite = Suite::from_transform(esp::TransformId(p.transform.0), Some(u16::from(p.key_len) * 8))
        .ok_or("transform or key length not supported by the ESP engine")?;
    let mut keymat = zeroize::Zeroizing::new([0u8; sa_table::MAX_KEY_BYTES + sa_table::SALT_BYTES]);
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
    // RFC 5374 §3.1 (G-IKEv2 group SAs): the outer header keeps the inner
    // addresses; inbound checks them.
    e.preserve_src = p.flags.contains(SaFlags::PRESERVE_SRC);
    e.preserve_dst = p.flags.contains(SaFlags::PRESERVE_DST);
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
pub fn diet_attrs(p: &SlotParams) -> Result<esp::DietAttrs, &'static str> {
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

/// Overwrites the dead stack below the caller's frame. `esp_params` and
/// `Aead::new` return values that hold the key, and a move leaves the old
/// copy behind in a frame that has returned; the SA built next is moved
/// into its box with its uninitialised octets (enum variants such as a
/// Diet-ESP rule's `None`, padding) copied from wherever it was built, that
/// same stack (`dataplane/tests/key_wipe.rs` found the key in freed SA
/// boxes that way). Not on the packet path: once per SA context.
#[inline(never)]
fn wipe_dead_stack() {
    let mut dead = [0u8; 16 * 1024];
    zeroize::Zeroize::zeroize(&mut dead[..]);
    std::hint::black_box(&dead);
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
            // The same profile the SA's context compiles (without another
            // copy of the key): an SA the engine refuses is not indexed
            // (its packets count as no_inbound_sa, as with any unknown SPI).
            if let (Some(peer), Ok(a)) = (p.outer_src_addr(), diet_attrs(p)) {
                let tunnel = p.mode == sa_table::Mode::TUNNEL;
                let udp = p.flags.contains(SaFlags::UDP_ENCAP);
                if let Ok(d) = esp::DietProfile::new(&a, tunnel, udp, 1, p.spi) {
                    self.diet_in.insert(id, peer, d.spi_lsb() as u8, d.spi_bits(p.spi));
                }
            }
        }
        let ctx = if p.direction == sa_table::Direction::INBOUND && self.owner(id) != self.id {
            SaCtx::Foreign
        } else {
            let (ctx, backend, failure) = self.build(id, p);
            self.report_install(id, p, backend, failure);
            ctx
        };
        self.named_out.retain(|(_, n)| n.slot() != id.slot());
        if matches!(ctx, SaCtx::Out { .. }) && self.env.policy.names_spi(p.spi) {
            self.named_out.push((p.spi, id));
        }
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

    /// The context of an SA this worker runs, the backend it got and what
    /// went wrong, if anything (an `esprit_sa_install_failures_total` reason).
    fn build(&self, id: SaId, p: &SlotParams) -> (SaCtx, Backends, Option<(&'static str, &'static str)>) {
        const REFUSED: &str = "the ESP engine refused its parameters";
        let e = match esp_params(p) {
            Ok(e) => e,
            Err(why) => return (SaCtx::Unusable, Backends::UNUSABLE, Some(("params_refused", why))),
        };
        let out = p.direction == sa_table::Direction::OUTBOUND;
        let (aead, fallback) = match Aead::new(self.env.backend, self.env.mb, &e, out) {
            Ok(a) => a,
            Err(_) => return (SaCtx::Unusable, Backends::UNUSABLE, Some(("key_rejected", "the AEAD refused the key"))),
        };
        let mut backend = aead.backend();
        let mut failure = None;
        if let Some(f) = fallback {
            backend = backend | Backends::FALLBACK;
            let why = match f {
                Fallback::NoSuite => "no ipsec-mb device does its suite; it runs on ring",
                Fallback::NoSession => "ipsec-mb has no session left (dataplane.crypto.sessions); it runs on ring",
            };
            failure = Some((f.reason(), why));
        }
        wipe_dead_stack();
        let ctx = if out {
            match OutboundSa::new(&e) {
                Ok(sa) => {
                    let tunnel_dst = match e.mode {
                        // RFC 5374 address preservation: each packet's outer
                        // destination is its own, so is its next hop.
                        esp::Mode::Tunnel { .. } if e.preserve_dst => None,
                        esp::Mode::Tunnel { dst, .. } => Some(dst),
                        esp::Mode::Transport => None,
                    };
                    let sel = Box::new(SaSelectors::of(p, self.env.policy));
                    SaCtx::Out { sa: Box::new(sa), aead, esn: e.esn, tunnel_dst, sel }
                }
                Err(_) => return (SaCtx::Unusable, Backends::UNUSABLE, Some(("params_refused", REFUSED))),
            }
        } else {
            match InboundSa::new(&e) {
                Ok(sa) => {
                    let segment = self.env.policy.segment_of_label(p.sec_label());
                    let mut kept = *p;
                    kept.wipe_key();
                    SaCtx::In { id, sa: Box::new(sa), aead, params: Box::new(kept), segment }
                }
                Err(_) => return (SaCtx::Unusable, Backends::UNUSABLE, Some(("params_refused", REFUSED))),
            }
        };
        (ctx, backend, failure)
    }

    /// Notes the SA's backend in its table state (`esprit-ctl list-sas`
    /// shows it) and reports a fallback or a refusal: counted and logged by
    /// the first worker of this run that meets it on this SA, never again
    /// (an SA every worker builds is reported once, not once per worker).
    fn report_install(&mut self, id: SaId, p: &SlotParams, backend: Backends, failure: Option<(&'static str, &'static str)>) {
        let Some(st) = self.reader.state(id) else { return };
        let before = st.note_backend(run_tag(), backend);
        let Some((reason, why)) = failure else { return };
        if before.contains(Backends::FALLBACK) || before.contains(Backends::UNUSABLE) {
            return;
        }
        self.metrics.count_install_failure(reason);
        // A burst of failures (sessions run out for thousands of SAs) is
        // counted in full but logged only for the first few.
        let n = LOGGED.fetch_add(1, Ordering::Relaxed);
        let dir = if p.direction == sa_table::Direction::INBOUND { "inbound" } else { "outbound" };
        if n < MAX_LOGGED {
            tracing::warn!(spi = format_args!("{:08x}", p.spi), "esprit-dataplane: {dir} SA {:#010x} (slot {}): {why}", p.spi, id.slot());
        } else if n == MAX_LOGGED {
            tracing::warn!("esprit-dataplane: more SA install failures are counted in esprit_sa_install_failures_total, not logged");
        }
    }

    fn remove(&mut self, id: SaId) {
        self.named_out.retain(|(_, n)| n.slot() != id.slot());
        self.diet_in.remove(id);
        if let Some(s) = self.sas.get_mut(id.slot() as usize) {
            *s = None;
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
        if n > 0 || overflow {
            // Cached verdicts name SAs and were chosen among the SAs there
            // were: any change may change them.
            self.flows.clear();
        }
        if !overflow {
            for c in changes.iter().take(n) {
                match c {
                    Some((id, Some(p))) => self.install(*id, p),
                    Some((id, None)) => self.remove(*id),
                    None => {}
                }
            }
        }
        // The copies hold keys: wiped in place before the array dies.
        for (_, p) in changes.iter_mut().flatten() {
            if let Some(p) = p {
                p.wipe_key();
            }
        }
        if overflow {
            // More changes than fit: rebuild every context from the indexes.
            self.rebuild_contexts();
        }
    }

    /// Every context again from the reader's indexes: the known SAs are
    /// re-installed (an unchanged inbound SA keeps its window), the others
    /// dropped.
    fn rebuild_contexts(&mut self) {
        let mut installed = vec![false; self.sas.len()];
        self.named_out.clear();
        let ids: Vec<SaId> = self.reader.known_ids().collect();
        for id in ids {
            if let Ok(mut p) = self.reader.read(id) {
                self.install(id, &p);
                p.wipe_key();
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
