//! RFC 9370 §2.2.4 IKE_FOLLOWUP_KE: the additional key exchanges of a
//! CREATE_CHILD_SA (IKE SA rekey, new or rekeyed Child SA).
//!
//! ```text
//! HDR(CREATE_CHILD_SA), SK {SA, Ni, KEi, ...} -->
//!                 <-- HDR(CREATE_CHILD_SA), SK {SA, Nr, KEr, ..., N(ADDITIONAL_KEY_EXCHANGE)(link1)}
//! HDR(IKE_FOLLOWUP_KE), SK {KEi(1), N(ADDITIONAL_KEY_EXCHANGE)(link1)} -->
//!                 <-- HDR(IKE_FOLLOWUP_KE), SK {KEr(1), N(ADDITIONAL_KEY_EXCHANGE)(link2)}
//! ...             <-- the last response: KEr(n), no link
//! IKE SA:   SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
//! Child SA: KEYMAT = prf+(SK_d, [SK(0) |] Ni | Nr | SK(1) | ... | SK(n))
//! ```
//!
//! Guarantees:
//! * The new IKE SA or Child SA exists only once every negotiated
//!   additional key exchange is done, on both sides; until then the old SAs
//!   carry on.
//! * Responder: one pending exchange at a time, recognised by its link (an
//!   opaque random value); an IKE_FOLLOWUP_KE with an unknown or missing
//!   link is answered STATE_NOT_FOUND, and one the initiator abandons is
//!   dropped after [`FOLLOWUP_TIMEOUT`] with the SPI it held.
//! * Initiator: STATE_NOT_FOUND or any error ends the attempt (SPIs
//!   released); a time-driven rekey is tried again later (RFC 7296 §2.25).
//! * While a request of ours is outstanding the responder does not start
//!   exchanges that need follow-ups (TEMPORARY_FAILURE, §2.25), so the
//!   §2.8.1 simultaneous-rekey tie-break only ever runs without them.
use std::collections::VecDeque;

use ike_crypto::ke::KeyExchange;
use ike_crypto::Secret;
use ike_wire::{ExchangeType, Ke, KeId, Notify, NotifyType, Payload};

use super::{retry_backoff, ChildState, CreateChildTask, IkeSa, IkeState, Queued, RekeyIkeTask, Reply, Task};
use crate::error::ProtoError;
use crate::event::{ChildSaHandle, ChildSaInstall};
use crate::message::{self, Payloads};
use crate::proposal::IkeSuite;
use crate::sa::{Ctx, Effect, Role};
use crate::time::Time;

/// How long a responder keeps an exchange whose IKE_FOLLOWUP_KE does not
/// come (RFC 9370 asks for a graceful clean-up after a wait; the
/// initiator's retransmissions fit well inside).
pub const FOLLOWUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Octets of a link value we hand out.
const LINK_LEN: usize = 8;

/// What an IKE SA rekey needs once the additional key exchanges are done.
pub struct RekeyIkeState {
    pub handle: crate::event::IkeSaHandle,
    pub spi_i: u64,
    pub spi_r: u64,
    pub suite: IkeSuite,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
}

/// What a Child SA's KEYMAT needs besides SK(1..n).
pub struct ChildKeymat {
    pub g_ir: Option<Secret>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// Our role in the CREATE_CHILD_SA (the initiator's keys come first).
    pub role: Role,
}

pub enum Kind {
    RekeyIke { state: RekeyIkeState, sk0: Secret },
    /// `install` carries everything but the keys.
    Child { install: Box<ChildSaInstall>, keymat: ChildKeymat, rekey_of: Option<ChildSaHandle> },
}

/// Initiator: a CREATE_CHILD_SA in its IKE_FOLLOWUP_KE phase.
pub struct FollowupTask {
    pub origin: Origin,
    pub kind: Kind,
    /// SK(1).. so far.
    pub shared: Vec<Secret>,
    /// Methods still to run after the one in flight.
    pub pending: VecDeque<KeId>,
    /// The key exchange in flight.
    pub ke: Box<dyn KeyExchange>,
}

/// The task whose CREATE_CHILD_SA started the follow-ups.
pub enum Origin {
    RekeyIke(Box<RekeyIkeTask>),
    Child(Box<CreateChildTask>),
}

/// Responder: an exchange answered with a link, waiting for IKE_FOLLOWUP_KE.
pub struct PendingFollowup {
    pub link: Vec<u8>,
    pub kind: Kind,
    pub shared: Vec<Secret>,
    pub pending: VecDeque<KeId>,
    pub expires: Time,
}

fn link_notify(link: &[u8]) -> Payload<'static> {
    Payload::Notify(Notify::new(NotifyType::ADDITIONAL_KEY_EXCHANGE, link.to_vec()))
}

fn new_link(ctx: &mut Ctx<'_>) -> Vec<u8> {
    let mut link = vec![0u8; LINK_LEN];
    ctx.rng.fill_bytes(&mut link);
    link
}

impl IkeSa {
    /// Initiator: the CREATE_CHILD_SA response of an IKE SA rekey chose
    /// additional key exchanges; `link` is its ADDITIONAL_KEY_EXCHANGE data.
    pub(super) fn start_followup(&mut self, ctx: &mut Ctx<'_>, rekey: RekeyIkeTask, state: RekeyIkeState, g_ir: Secret, link: &[u8]) {
        let pending = state.suite.additional_ke.iter().copied().collect();
        self.first_followup(ctx, Origin::RekeyIke(Box::new(rekey)), Kind::RekeyIke { state, sk0: g_ir }, pending, link);
    }

    /// Initiator: the same for a Child SA (`install` without keys).
    pub(super) fn start_child_followup(
        &mut self,
        ctx: &mut Ctx<'_>,
        task: CreateChildTask,
        install: ChildSaInstall,
        keymat: ChildKeymat,
        link: &[u8],
    ) {
        let pending = install.suite.additional().collect();
        let rekey_of = task.rekey_of;
        self.first_followup(ctx, Origin::Child(Box::new(task)), Kind::Child { install: Box::new(install), keymat, rekey_of }, pending, link);
    }

    fn first_followup(&mut self, ctx: &mut Ctx<'_>, origin: Origin, kind: Kind, mut pending: VecDeque<KeId>, link: &[u8]) {
        let started = (|| {
            let method = pending.pop_front().ok_or(ProtoError::Invalid("no additional key exchange"))?;
            self.send_followup(ctx, method, link)
        })();
        match started {
            Ok(ke) => self.active = Some(Task::FollowupKe(Box::new(FollowupTask { origin, kind, shared: Vec::new(), pending, ke }))),
            Err(e) => self.followup_failed(ctx, origin, e),
        }
    }

    /// `HDR(IKE_FOLLOWUP_KE), SK {KEi(n), N(ADDITIONAL_KEY_EXCHANGE)(link)}`.
    fn send_followup(&mut self, ctx: &mut Ctx<'_>, method: KeId, link: &[u8]) -> Result<Box<dyn KeyExchange>, ProtoError> {
        let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
        let p = [Payload::Ke(Ke { ke_method: method, data: ke.public_key().to_vec().into() }), link_notify(link)];
        self.send_request(ctx, ExchangeType::IKE_FOLLOWUP_KE, &p)?;
        Ok(ke)
    }

    /// Our attempt ends without a new SA.
    fn followup_failed(&mut self, ctx: &mut Ctx<'_>, origin: Origin, e: ProtoError) {
        match origin {
            Origin::RekeyIke(rekey) => {
                ctx.alloc.ike_spis.remove(&rekey.new_spi_i);
                if self.conn.ike_rekey_after.is_some() && matches!(self.state, IkeState::Established) {
                    // §2.25: try again later, not at once.
                    self.rekey_at = Some(ctx.now + retry_backoff(ctx));
                }
            }
            Origin::Child(task) => self.child_failed(ctx, *task, &Payloads(&[]), e),
        }
    }

    pub(super) fn process_followup_response(&mut self, ctx: &mut Ctx<'_>, task: FollowupTask, payloads: &[Payload<'_>]) {
        let FollowupTask { origin, kind, mut shared, mut pending, ke } = task;
        let p = Payloads(payloads);
        let step = (|| {
            match p.error_notify() {
                // The peer lost (or never had) the exchange.
                Some(NotifyType::STATE_NOT_FOUND) => return Err(ProtoError::StateNotFound),
                Some(_) => return Err(ProtoError::Invalid("IKE_FOLLOWUP_KE refused")),
                None => {}
            }
            message::check(payloads, message::IKE_FOLLOWUP_KE)?;
            let ke_r = p.ke().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
            if ke_r.ke_method.0 != ke.method() {
                return Err(ProtoError::Invalid("KE method of the IKE_FOLLOWUP_KE response"));
            }
            shared.push(ke.compute_shared(&ke_r.data)?);
            Ok(p.notify(NotifyType::ADDITIONAL_KEY_EXCHANGE).map(|n| n.data.to_vec()))
        })();
        let link = match step {
            Ok(l) => l,
            Err(e) => return self.followup_failed(ctx, origin, e),
        };
        match (pending.pop_front(), link) {
            (Some(method), Some(link)) => match self.send_followup(ctx, method, &link) {
                Ok(ke) => self.active = Some(Task::FollowupKe(Box::new(FollowupTask { origin, kind, shared, pending, ke }))),
                Err(e) => self.followup_failed(ctx, origin, e),
            },
            (Some(_), None) => self.followup_failed(ctx, origin, ProtoError::Invalid("IKE_FOLLOWUP_KE response without the next link")),
            (None, _) => {
                let extra: Vec<&[u8]> = shared.iter().map(|s| &s[..]).collect();
                match (origin, kind) {
                    (Origin::RekeyIke(rekey), Kind::RekeyIke { state: s, sk0 }) => {
                        match self.rekeyed_sa(ctx, s.handle, Role::Initiator, s.spi_i, s.spi_r, &s.suite, &sk0, &s.ni, &s.nr, &extra) {
                            Ok(new) => self.finish_rekey_ike(ctx, *rekey, new, s.nr.clone()),
                            Err(e) => self.followup_failed(ctx, Origin::RekeyIke(rekey), e),
                        }
                    }
                    (Origin::Child(task), Kind::Child { mut install, keymat, .. }) => {
                        let k = &keymat;
                        match self.child_keys(ctx, &install.suite, k.g_ir.as_ref().map(|g| &g[..]), &k.ni, &k.nr, &extra, k.role) {
                            Ok((out, inb)) => {
                                install.keys_out = out;
                                install.keys_in = inb;
                                self.child_created(ctx, *task, *install, keymat.nr.clone());
                            }
                            Err(e) => self.followup_failed(ctx, Origin::Child(task), e),
                        }
                    }
                    (origin, _) => self.followup_failed(ctx, origin, ProtoError::Invalid("follow-up kind")),
                }
            }
        }
    }

    /// Responder: an IKE SA rekey whose chosen proposal has additional key
    /// exchanges. Keeps the state, answers with the first link.
    pub(super) fn defer_rekey_ike(&mut self, ctx: &mut Ctx<'_>, state: RekeyIkeState, g_ir: Secret) -> Payload<'static> {
        let pending = state.suite.additional_ke.iter().copied().collect();
        self.pend(ctx, Kind::RekeyIke { state, sk0: g_ir }, pending)
    }

    /// Responder: the same for a Child SA (`install` without keys).
    pub(super) fn defer_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        install: ChildSaInstall,
        keymat: Option<ChildKeymat>,
        rekey_of: Option<ChildSaHandle>,
    ) -> Result<Payload<'static>, ProtoError> {
        let keymat = keymat.filter(|_| self.active.is_none());
        let Some(keymat) = keymat else {
            // A request of ours is outstanding (maybe a rekey of the same
            // Child SA): no follow-ups now.
            ctx.alloc.release_child_spi(install.spi_in);
            return Err(ProtoError::TemporaryFailure);
        };
        let pending = install.suite.additional().collect();
        Ok(self.pend(ctx, Kind::Child { install: Box::new(install), keymat, rekey_of }, pending))
    }

    fn pend(&mut self, ctx: &mut Ctx<'_>, kind: Kind, pending: VecDeque<KeId>) -> Payload<'static> {
        let link = new_link(ctx);
        self.drop_pending_followup(ctx);
        self.followup = Some(PendingFollowup { link: link.clone(), kind, shared: Vec::new(), pending, expires: ctx.now + FOLLOWUP_TIMEOUT });
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
                self.followup = Some(f);
                self.drop_pending_followup(ctx);
                return Err(e);
            }
        };
        if !f.pending.is_empty() {
            let link = new_link(ctx);
            f.link = link.clone();
            f.expires = ctx.now + FOLLOWUP_TIMEOUT;
            self.followup = Some(f);
            return Ok(Reply::new(vec![ke_payload, link_notify(&link)]));
        }
        let extra: Vec<&[u8]> = f.shared.iter().map(|x| &x[..]).collect();
        match f.kind {
            Kind::RekeyIke { state: s, sk0 } => {
                let new = match self.rekeyed_sa(ctx, s.handle, Role::Responder, s.spi_i, s.spi_r, &s.suite, &sk0, &s.ni, &s.nr, &extra) {
                    Ok(n) => n,
                    Err(e) => {
                        ctx.alloc.ike_spis.remove(&s.spi_r);
                        return Err(e);
                    }
                };
                ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
                self.hand_over(ctx, s.handle);
            }
            Kind::Child { mut install, keymat: k, rekey_of } => {
                match self.child_keys(ctx, &install.suite, k.g_ir.as_ref().map(|g| &g[..]), &k.ni, &k.nr, &extra, k.role) {
                    Ok((out, inb)) => {
                        install.keys_out = out;
                        install.keys_in = inb;
                    }
                    Err(e) => {
                        ctx.alloc.release_child_spi(install.spi_in);
                        return Err(e);
                    }
                }
                self.install_child(ctx, *install);
                if let Some(h) = rekey_of {
                    if let Some(c) = self.children.get_mut(&h) {
                        c.state = ChildState::Rekeyed;
                    }
                    self.queue.retain(|q| *q != Queued::RekeyChild(h));
                }
            }
        }
        Ok(Reply::new(vec![ke_payload]))
    }

    /// Forgets a responder-side pending exchange (expired, replaced,
    /// refused, closing) and what it held.
    pub(super) fn drop_pending_followup(&mut self, ctx: &mut Ctx<'_>) {
        match self.followup.take().map(|f| f.kind) {
            Some(Kind::RekeyIke { state, .. }) => {
                ctx.alloc.ike_spis.remove(&state.spi_r);
            }
            Some(Kind::Child { install, .. }) => ctx.alloc.release_child_spi(install.spi_in),
            None => {}
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

    /// Whether our outstanding work is a Child SA in its follow-ups (a
    /// Delete for a SPI we do not know yet may name it: the peer installed
    /// it and our last response got lost).
    pub(super) fn child_in_followup(&self) -> bool {
        matches!(&self.active, Some(Task::FollowupKe(t)) if matches!(t.origin, Origin::Child(_)))
    }

    /// Responder: a peer's IKE SA rekey waits for its IKE_FOLLOWUP_KE.
    pub(super) fn ike_rekey_pending_followup(&self) -> bool {
        matches!(&self.followup, Some(PendingFollowup { kind: Kind::RekeyIke { .. }, .. }))
    }

    /// SPIs held by our follow-up task, for `close`.
    pub(super) fn release_followup_task(&self, ctx: &mut Ctx<'_>, t: &FollowupTask) {
        match &t.origin {
            Origin::RekeyIke(r) => {
                ctx.alloc.ike_spis.remove(&r.new_spi_i);
            }
            Origin::Child(c) => ctx.alloc.release_child_spi(c.child.spi_in),
        }
    }
}
