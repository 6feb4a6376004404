//! A worker's per-SA contexts: built when the SA table's journal announces
//! an SA (never per packet), dropped when it goes.
//!
//! An inbound SA gets a context (crypto and replay window) only on its
//! owner worker (slot % workers); on the others it is [`SaCtx::Foreign`]
//! and its packets are handed to the owner.

use std::net::IpAddr;

use esp::{InboundSa, OutboundSa, Suite};
use sa_table::{Change, SaFlags, SaId, SaParams as SlotParams};

use std::sync::atomic::{AtomicU64, Ordering};

use sa_table::Backends;

use super::Worker;
use crate::crypto::{Aead, Fallback};

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
    Out { sa: Box<OutboundSa>, aead: Aead, esn: bool, tunnel_dst: Option<IpAddr> },
    In { sa: Box<InboundSa>, aead: Aead, params: Box<SlotParams> },
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
    Ok(e)
}

impl Worker<'_, '_> {
    pub(super) fn owner(&self, id: SaId) -> usize {
        id.slot() as usize % self.env.workers
    }

    pub(super) fn install(&mut self, id: SaId, p: &SlotParams) {
        let ctx = if p.direction == sa_table::Direction::INBOUND && self.owner(id) != self.id {
            SaCtx::Foreign
        } else {
            let (ctx, backend, failure) = self.build(p);
            self.report_install(id, p, backend, failure);
            ctx
        };
        if let Some(s) = self.sas.get_mut(id.slot() as usize) {
            *s = Some(ctx);
        }
    }

    /// The context of an SA this worker runs, the backend it got and what
    /// went wrong, if anything (an `esprit_sa_install_failures_total` reason).
    fn build(&self, p: &SlotParams) -> (SaCtx, Backends, Option<(&'static str, &'static str)>) {
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
        let ctx = if out {
            match OutboundSa::new(&e) {
                Ok(sa) => {
                    let tunnel_dst = match e.mode {
                        esp::Mode::Tunnel { dst, .. } => Some(dst),
                        esp::Mode::Transport => None,
                    };
                    SaCtx::Out { sa: Box::new(sa), aead, esn: e.esn, tunnel_dst }
                }
                Err(_) => return (SaCtx::Unusable, Backends::UNUSABLE, Some(("params_refused", "the ESP engine refused its parameters"))),
            }
        } else {
            match InboundSa::new(&e) {
                Ok(sa) => SaCtx::In { sa: Box::new(sa), aead, params: Box::new(*p) },
                Err(_) => return (SaCtx::Unusable, Backends::UNUSABLE, Some(("params_refused", "the ESP engine refused its parameters"))),
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
            eprintln!("esprit-dataplane: {dir} SA {:#010x} (slot {}): {why}", p.spi, id.slot());
        } else if n == MAX_LOGGED {
            eprintln!("esprit-dataplane: more SA install failures are counted in esprit_sa_install_failures_total, not logged");
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
                    if let Some(s) = self.sas.get_mut(id.slot() as usize) {
                        *s = None;
                    }
                }
                None => {}
            }
        }
    }

    fn rebuild_contexts(&mut self) {
        for s in self.sas.iter_mut() {
            *s = None;
        }
        let ids: Vec<SaId> = self.reader.known_ids().collect();
        for id in ids {
            if let Ok(p) = self.reader.read(id) {
                self.install(id, &p);
            }
        }
    }
}
