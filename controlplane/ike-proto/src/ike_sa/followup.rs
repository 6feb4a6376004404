//! RFC 9370 §2.2.4 IKE_FOLLOWUP_KE: the additional key exchanges of an IKE
//! SA rekey, after its CREATE_CHILD_SA.
//!
//! ```text
//! HDR(CREATE_CHILD_SA), SK {SA, Ni, KEi} -->
//!                 <-- HDR(CREATE_CHILD_SA), SK {SA, Nr, KEr, N(ADDITIONAL_KEY_EXCHANGE)(link1)}
//! HDR(IKE_FOLLOWUP_KE), SK {KEi(1), N(ADDITIONAL_KEY_EXCHANGE)(link1)} -->
//!                 <-- HDR(IKE_FOLLOWUP_KE), SK {KEr(1), N(ADDITIONAL_KEY_EXCHANGE)(link2)}
//! ...             <-- the last response: KEr(n), no link
//! SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
//! ```
//!
//! Guarantees:
//! * The new IKE SA exists only once every negotiated additional key
//!   exchange is done, on both sides; until then the old SA carries on.
//! * Responder: one pending rekey at a time, recognised by its link (an
//!   opaque random value); an IKE_FOLLOWUP_KE with an unknown or missing
//!   link is answered STATE_NOT_FOUND, and a pending rekey the initiator
//!   abandons is dropped after [`FOLLOWUP_TIMEOUT`] with its SPI.
//! * Initiator: STATE_NOT_FOUND or any error ends the attempt (the new SPI
//!   is released) and a time-driven rekey is tried again later (§2.25).
//! * A simultaneous IKE SA rekey that would need additional key exchanges
//!   is refused with TEMPORARY_FAILURE (RFC 7296 §2.25), so the §2.8.1
//!   tie-break only ever runs on rekeys without them.
use std::collections::VecDeque;

use ike_crypto::ke::KeyExchange;
use ike_crypto::Secret;
use ike_wire::{ExchangeType, Ke, KeId, Notify, NotifyType, Payload};

use super::{retry_backoff, IkeSa, IkeState, RekeyIkeTask, Reply, Task};
use crate::error::ProtoError;
use crate::message::{self, Payloads};
use crate::proposal::IkeSuite;
use crate::sa::{Ctx, Effect, Role};
use crate::time::Time;

/// How long a responder keeps a rekey whose IKE_FOLLOWUP_KE does not come
/// (RFC 9370 asks for a graceful clean-up after a wait; retransmissions of
/// the initiator's request fit well inside).
pub const FOLLOWUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Octets of a link value we hand out.
const LINK_LEN: usize = 8;

/// What the rekey needs once the additional key exchanges are done.
pub struct RekeyIkeState {
    pub handle: crate::event::IkeSaHandle,
    pub spi_i: u64,
    pub spi_r: u64,
    pub suite: IkeSuite,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
}

/// Initiator: the rekey in its IKE_FOLLOWUP_KE phase.
pub struct FollowupTask {
    pub rekey: RekeyIkeTask,
    pub state: RekeyIkeState,
    /// SK(0) of the CREATE_CHILD_SA, then SK(1).. so far.
    pub shared: Vec<Secret>,
    /// Methods still to run after the one in flight.
    pub pending: VecDeque<KeId>,
    /// The key exchange in flight.
    pub ke: Box<dyn KeyExchange>,
}

/// Responder: a rekey answered with a link, waiting for IKE_FOLLOWUP_KE.
pub struct PendingFollowup {
    pub link: Vec<u8>,
    pub state: RekeyIkeState,
    pub shared: Vec<Secret>,
    pub pending: VecDeque<KeId>,
    pub expires: Time,
}

fn link_notify(link: &[u8]) -> Payload<'static> {
    Payload::Notify(Notify::new(NotifyType::ADDITIONAL_KEY_EXCHANGE, link.to_vec()))
}

impl IkeSa {
    /// Initiator: the CREATE_CHILD_SA response chose additional key
    /// exchanges; `link` is its ADDITIONAL_KEY_EXCHANGE data. On failure
    /// the attempt ends here (SPI released, retried later if time-driven).
    pub(super) fn start_followup(&mut self, ctx: &mut Ctx<'_>, rekey: RekeyIkeTask, state: RekeyIkeState, g_ir: Secret, link: &[u8]) {
        let mut pending: VecDeque<KeId> = state.suite.additional_ke.iter().copied().collect();
        let started = (|| {
            let method = pending.pop_front().ok_or(ProtoError::Invalid("no additional key exchange"))?;
            let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
            let p = [Payload::Ke(Ke { ke_method: method, data: ke.public_key().to_vec().into() }), link_notify(link)];
            self.send_request(ctx, ExchangeType::IKE_FOLLOWUP_KE, &p)?;
            Ok::<_, ProtoError>(ke)
        })();
        match started {
            Ok(ke) => self.active = Some(Task::FollowupKe(Box::new(FollowupTask { rekey, state, shared: vec![g_ir], pending, ke }))),
            Err(_) => self.abandon_rekey(ctx, &rekey),
        }
    }

    /// Our rekey attempt ends without a new SA.
    fn abandon_rekey(&mut self, ctx: &mut Ctx<'_>, rekey: &RekeyIkeTask) {
        ctx.alloc.ike_spis.remove(&rekey.new_spi_i);
        if self.conn.ike_rekey_after.is_some() && matches!(self.state, IkeState::Established) {
            // §2.25: try again later, not at once.
            self.rekey_at = Some(ctx.now + retry_backoff(ctx));
        }
    }

    pub(super) fn process_followup_response(&mut self, ctx: &mut Ctx<'_>, task: FollowupTask, payloads: &[Payload<'_>]) {
        let FollowupTask { rekey, state, mut shared, mut pending, ke } = task;
        let p = Payloads(payloads);
        let step = (|| {
            if p.error_notify().is_some() {
                // STATE_NOT_FOUND: the peer lost (or never had) the rekey.
                return Err(ProtoError::Invalid("IKE_FOLLOWUP_KE refused"));
            }
            message::check(payloads, message::IKE_FOLLOWUP_KE)?;
            let ke_r = p.ke().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
            if ke_r.ke_method.0 != ke.method() {
                return Err(ProtoError::Invalid("KE method of the IKE_FOLLOWUP_KE response"));
            }
            shared.push(ke.compute_shared(&ke_r.data)?);
            Ok(p.notify(NotifyType::ADDITIONAL_KEY_EXCHANGE).map(|n| n.data.to_vec()))
        })();
        let result = match step {
            Err(e) => Err(e),
            Ok(link) => match (pending.pop_front(), link) {
                (Some(method), Some(link)) => {
                    let next = (|| {
                        let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
                        let p = [Payload::Ke(Ke { ke_method: method, data: ke.public_key().to_vec().into() }), link_notify(&link)];
                        self.send_request(ctx, ExchangeType::IKE_FOLLOWUP_KE, &p)?;
                        Ok(ke)
                    })();
                    match next {
                        Ok(ke) => {
                            self.active = Some(Task::FollowupKe(Box::new(FollowupTask { rekey, state, shared, pending, ke })));
                            return;
                        }
                        Err(e) => Err(e),
                    }
                }
                (Some(_), None) => Err(ProtoError::Invalid("IKE_FOLLOWUP_KE response without the next link")),
                (None, _) => {
                    let extra: Vec<&[u8]> = shared[1..].iter().map(|s| &s[..]).collect();
                    self.rekeyed_sa(ctx, state.handle, Role::Initiator, state.spi_i, state.spi_r, &state.suite, &shared[0], &state.ni, &state.nr, &extra)
                        .map(|new| (new, state.nr.clone()))
                }
            },
        };
        match result {
            Ok((new, nr)) => self.finish_rekey_ike(ctx, rekey, new, nr),
            Err(_) => self.abandon_rekey(ctx, &rekey),
        }
    }

    /// Responder: a rekey whose chosen proposal has additional key
    /// exchanges. Keeps the state, answers with the first link.
    pub(super) fn defer_rekey_ike(&mut self, ctx: &mut Ctx<'_>, state: RekeyIkeState, g_ir: Secret) -> Payload<'static> {
        let mut link = vec![0u8; LINK_LEN];
        ctx.rng.fill_bytes(&mut link);
        let pending = state.suite.additional_ke.iter().copied().collect();
        self.drop_pending_followup(ctx);
        self.followup = Some(PendingFollowup { link: link.clone(), state, shared: vec![g_ir], pending, expires: ctx.now + FOLLOWUP_TIMEOUT });
        link_notify(&link)
    }

    /// Responder: `HDR(IKE_FOLLOWUP_KE), SK {KEr(n), [N(link)]}`.
    pub(super) fn respond_followup(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>]) -> Result<Reply, ProtoError> {
        let p = Payloads(payloads);
        let link = p.notify(NotifyType::ADDITIONAL_KEY_EXCHANGE).map(|n| n.data.to_vec());
        let known = matches!((&self.followup, &link), (Some(f), Some(l)) if f.link == *l);
        if !known || !matches!(self.state, IkeState::Established) {
            return Err(ProtoError::StateNotFound);
        }
        let Some(mut f) = self.followup.take() else { return Err(ProtoError::StateNotFound) };
        let answered = (|| {
            message::check(payloads, message::IKE_FOLLOWUP_KE)?;
            let method = f.pending.pop_front().ok_or(ProtoError::StateNotFound)?;
            let ke_i = p.ke().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
            if ke_i.ke_method != method {
                return Err(ProtoError::Invalid("KE method of IKE_FOLLOWUP_KE"));
            }
            let r = ctx.crypto.key_exchange_respond(method.0, &ke_i.data, ctx.rng)?;
            f.shared.push(r.shared);
            Ok(Payload::Ke(Ke { ke_method: method, data: r.ke_data.into() }))
        })();
        let ke_payload = match answered {
            Ok(k) => k,
            Err(e) => {
                ctx.alloc.ike_spis.remove(&f.state.spi_r);
                return Err(e);
            }
        };
        if !f.pending.is_empty() {
            let mut link = vec![0u8; LINK_LEN];
            ctx.rng.fill_bytes(&mut link);
            f.link = link.clone();
            f.expires = ctx.now + FOLLOWUP_TIMEOUT;
            self.followup = Some(f);
            return Ok(Reply::new(vec![ke_payload, link_notify(&link)]));
        }
        let s = &f.state;
        let extra: Vec<&[u8]> = f.shared[1..].iter().map(|x| &x[..]).collect();
        let new = self.rekeyed_sa(ctx, s.handle, Role::Responder, s.spi_i, s.spi_r, &s.suite, &f.shared[0], &s.ni, &s.nr, &extra);
        let new = match new {
            Ok(n) => n,
            Err(e) => {
                ctx.alloc.ike_spis.remove(&s.spi_r);
                return Err(e);
            }
        };
        ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
        self.hand_over(ctx, s.handle);
        Ok(Reply::new(vec![ke_payload]))
    }

    /// Forgets a responder-side pending rekey (expired, replaced, closing).
    pub(super) fn drop_pending_followup(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(f) = self.followup.take() {
            ctx.alloc.ike_spis.remove(&f.state.spi_r);
        }
    }

    pub(super) fn followup_deadline(&self) -> Option<Time> {
        self.followup.as_ref().map(|f| f.expires)
    }

    pub(super) fn expire_followup(&mut self, ctx: &mut Ctx<'_>) {
        if self.followup.as_ref().is_some_and(|f| f.expires <= ctx.now) {
            self.drop_pending_followup(ctx);
        }
    }
}
