//! IKE SA rekey over CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18) in both roles,
//! with the simultaneous-rekey tie-break (§2.8.1).
//!
//! Guarantees: the Child SAs move to exactly one successor; the rekey
//! initiator deletes the old SA (§2.18 step 4); a responder refuses a rekey
//! while a request of its own other than an IKE rekey is in flight
//! (§2.25.2, TEMPORARY_FAILURE).

use ike_crypto::ke::KeyExchange;
use ike_crypto::keys;
use ike_wire::{
    ExchangeType, Ke, KeId,
    Nonce, NotifyType, Payload,
};

use super::{IkeSa, IkeState, MAX_INIT_RETRIES, Queued, Reply, Task, followup, ike_rekey_time, min_nonce, retry_backoff};
use crate::error::ProtoError;
use crate::event::{DownReason, Event, IkeSaHandle};
use crate::message::{self, Payloads};
use crate::proposal;
use crate::sa::{Ctx, Effect, IkeKeys, Role};

pub struct RekeyIkeTask {
    pub(super) new_handle: IkeSaHandle,
    pub(super) new_spi_i: u64,
    pub(super) ni: Vec<u8>,
    pub(super) ke: Box<dyn KeyExchange>,
    /// The peer rekeyed this IKE SA meanwhile: the smaller nonce of its
    /// exchange and the IKE SA it created.
    pub(super) collision: Option<(Vec<u8>, IkeSaHandle)>,
    /// INVALID_KE_PAYLOAD retries made so far (§1.3).
    pub(super) ke_retries: u8,
}

impl IkeSa {
    pub(super) fn start_rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ProtoError> {
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let method = keys.suite.ke;
        self.start_rekey_ike_with(ctx, method, 0)
    }

    /// IKE SA rekey with KE method `method` (§1.3.2: KE is mandatory).
    pub(super) fn start_rekey_ike_with(&mut self, ctx: &mut Ctx<'_>, method: KeId, ke_retries: u8) -> Result<(), ProtoError> {
        let new_handle = ctx.alloc.ike_handle();
        let new_spi_i = ctx.alloc.ike_spi(ctx.rng, new_handle);
        let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
        let ni = ctx.nonce();
        let p = vec![
            Payload::Sa(proposal::ike_sa_payload(&self.conn.ike_proposals, &new_spi_i.to_be_bytes())),
            Payload::Nonce(Nonce { data: ni.clone().into() }),
            Payload::Ke(Ke { ke_method: method, data: ke.public_key().to_vec().into() }),
        ];
        self.send_request(ctx, ExchangeType::CREATE_CHILD_SA, &p)?;
        self.active = Some(Task::RekeyIke(Box::new(RekeyIkeTask { new_handle, new_spi_i, ni, ke, collision: None, ke_retries })));
        Ok(())
    }

    /// The new IKE SA of a rekey, inheriting this one's identity, addresses
    /// and leases; `role` is ours in the rekey exchange (the I flag follows
    /// the rekey initiator, §2.18).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rekeyed_sa(
        &mut self,
        ctx: &mut Ctx<'_>,
        handle: IkeSaHandle,
        role: Role,
        spi_i: u64,
        spi_r: u64,
        suite: &proposal::IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        additional: &[&[u8]],
    ) -> Result<IkeSa, ProtoError> {
        let old = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        // §2.18: SKEYSEED with the old PRF and SK_d, keys with the new PRF;
        // RFC 9370 §2.2.4 appends the IKE_FOLLOWUP_KE secrets.
        let skeyseed = keys::skeyseed_rekey(&*old.prf, &old.sk_d, g_ir, ni, nr, additional)?;
        let keys = IkeKeys::derive(ctx.crypto, suite, &skeyseed, ni, nr, spi_i, spi_r, role)?;
        let mut sa = IkeSa::new(handle, self.conn.clone(), role, spi_i, spi_r, self.local, self.remote, ctx);
        sa.keys = Some(keys);
        sa.state = IkeState::Established;
        sa.nat_local = self.nat_local;
        sa.nat_remote = self.nat_remote;
        sa.remote_id = self.remote_id.clone();
        sa.peer_hashes = self.peer_hashes.clone();
        sa.fragment_len = self.fragment_len;
        // RFC 8784 §3: no new PPK mix, but SK_d descends from the mixed one.
        sa.ppk_used = self.ppk_used;
        sa.mid_sync = self.mid_sync;
        // Split-DNS domains, RFC 8983 and RFC 9593 state carry over.
        sa.ext = self.ext.clone();
        if matches!(&sa.ext.mobike, super::Mobike::On(m) if m.pending.is_some()) {
            // RFC 4555 §3.7: a check the old SA had not finished.
            sa.enqueue(super::Queued::MobikeCheck);
        }
        sa.rekey_at = ike_rekey_time(&self.conn, ctx);
        Ok(sa)
    }

    pub(super) fn respond_rekey_ike(&mut self, ctx: &mut Ctx<'_>, sa_i: &ike_wire::Sa<'_>, ni: &Nonce<'_>, ke_i: Option<&Ke<'_>>) -> Result<Reply, ProtoError> {
        if !matches!(self.state, IkeState::Established) {
            return Err(ProtoError::TemporaryFailure);
        }
        // §2.25.2: a Child SA operation of ours is in flight. Any of our
        // requests counts: a Delete or a liveness check answered on the old
        // SA after its Child SAs moved would act on the wrong SA. Our own
        // IKE rekey is the simultaneous-rekey case, handled below.
        if self.active.as_ref().is_some_and(|t| !matches!(t, Task::RekeyIke(_))) {
            return Err(ProtoError::TemporaryFailure);
        }
        let ke_i = ke_i.ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
        // RFC 9370 §2.2.4: a rekey with additional key exchanges only when
        // no simultaneous rekey of ours needs the §2.8.1 tie-break.
        let addke = self.active.is_none();
        let spi_i = sa_i
            .proposals
            .iter()
            .find_map(|p| <[u8; 8]>::try_from(&p.spi[..]).ok())
            .map(u64::from_be_bytes)
            .filter(|s| *s != 0)
            .ok_or(ProtoError::Invalid("IKE rekey SPI"))?;
        let handle = ctx.alloc.ike_handle();
        let spi_r = ctx.alloc.ike_spi(ctx.rng, handle);
        let built = (|| {
            let (suite, answer) = proposal::select_ike_for_ke(&self.conn.ike_proposals, sa_i, &spi_r.to_be_bytes(), ke_i.ke_method, addke)?;
            if suite.ke != ke_i.ke_method {
                return Err(ProtoError::InvalidKePayload(suite.ke));
            }
            let responded = ctx.crypto.key_exchange_respond(suite.ke.0, &ke_i.data, ctx.rng)?;
            let nr = ctx.nonce();
            if !suite.additional_ke.is_empty() {
                return Ok((suite, answer, responded, nr, None));
            }
            let new = self.rekeyed_sa(ctx, handle, Role::Responder, spi_i, spi_r, &suite, &responded.shared, &ni.data, &nr, &[])?;
            Ok((suite, answer, responded, nr, Some(new)))
        })();
        let (suite, answer, responded, nr, new) = match built {
            Ok(b) => b,
            Err(e) => {
                // Nothing was created: give the SPI back.
                ctx.alloc.ike_spis.remove(&spi_r);
                return Err(e);
            }
        };
        let mut out = vec![
            Payload::Sa(answer),
            Payload::Nonce(Nonce { data: nr.clone().into() }),
            Payload::Ke(Ke { ke_method: suite.ke, data: responded.ke_data.into() }),
        ];
        let Some(new) = new else {
            // RFC 9370 §2.2.4: the new SA waits for the IKE_FOLLOWUP_KE
            // exchanges; the link names this rekey in the first one.
            let state = followup::RekeyIkeState { handle, spi_i, spi_r, suite, ni: ni.data.to_vec(), nr };
            out.push(self.defer_rekey_ike(ctx, state, responded.shared));
            return Ok(Reply::new(out));
        };
        match &mut self.active {
            Some(Task::RekeyIke(t)) => {
                // §2.8.1: simultaneous rekey, decided when our response
                // comes. Until then the Child SAs live in the peer's new SA
                // (the peer may use it at once if it never saw our request);
                // it remembers us in case the peer deletes it as redundant.
                t.collision = Some((min_nonce(&ni.data, &nr).to_vec(), handle));
                let mut new = new;
                new.predecessor = Some(self.handle);
                ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
                ctx.out.effects.push(Effect::MoveChildren { from: self.handle, to: handle });
            }
            _ => {
                ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
                self.hand_over(ctx, handle);
            }
        }
        Ok(Reply::new(out))
    }

    /// Children and leases move to `successor`; this SA waits for deletion.
    pub(super) fn hand_over(&mut self, ctx: &mut Ctx<'_>, successor: IkeSaHandle) {
        ctx.out.effects.push(Effect::MoveChildren { from: self.handle, to: successor });
        let announced = matches!(self.state, IkeState::Rekeyed { successor: s } | IkeState::PeerDeleted { successor: s } if s == successor);
        if !announced {
            ctx.out.events.push_back(Event::IkeSaRekeyed { old: self.handle, new: successor });
        }
        self.state = IkeState::Rekeyed { successor };
        if self.queue.contains(&Queued::Terminate) {
            // The owner asked to terminate the tunnel, not this generation.
            ctx.out.effects.push(Effect::DeleteIkeSa(successor));
        }
        self.queue.retain(|q| matches!(q, Queued::DeleteIke));
    }

    pub(super) fn process_rekey_ike_response(&mut self, ctx: &mut Ctx<'_>, task: RekeyIkeTask, payloads: &[Payload<'_>]) {
        let peer_deleted = matches!(self.state, IkeState::PeerDeleted { .. });
        self.complete_rekey_ike(ctx, task, payloads);
        if peer_deleted {
            // The peer already deleted this SA: nothing more to send on it.
            self.queue.clear();
            self.close(ctx, DownReason::Rekeyed);
        }
    }

    pub(super) fn complete_rekey_ike(&mut self, ctx: &mut Ctx<'_>, task: RekeyIkeTask, payloads: &[Payload<'_>]) {
        let p = Payloads(payloads);
        let new = (|| {
            message::check(payloads, message::CREATE_CHILD_SA)?;
            let (Some(sa_r), Some(nr), Some(ke_r)) = (p.sa(), p.nonce(), p.ke()) else {
                return Err(ProtoError::PayloadCount(ike_wire::PayloadType::SA));
            };
            let (suite, spi) = proposal::accept_ike(&self.conn.ike_proposals, sa_r)?;
            let spi_r = <[u8; 8]>::try_from(&spi[..]).map(u64::from_be_bytes).map_err(|_| ProtoError::Invalid("IKE rekey SPI"))?;
            if spi_r == 0 || suite.ke.0 != task.ke.method() || ke_r.ke_method != suite.ke {
                return Err(ProtoError::Invalid("IKE rekey response"));
            }
            let g_ir = task.ke.compute_shared(&ke_r.data)?;
            if !suite.additional_ke.is_empty() {
                // RFC 9370 §2.2.4: IKE_FOLLOWUP_KE exchanges follow.
                let link = p.notify(NotifyType::ADDITIONAL_KEY_EXCHANGE).map(|n| n.data.to_vec()).ok_or(ProtoError::Invalid("ADDKE without a link"))?;
                let state = followup::RekeyIkeState { handle: task.new_handle, spi_i: task.new_spi_i, spi_r, suite, ni: task.ni.clone(), nr: nr.data.to_vec() };
                return Ok(Err((state, g_ir, link)));
            }
            let new = self.rekeyed_sa(ctx, task.new_handle, Role::Initiator, task.new_spi_i, spi_r, &suite, &g_ir, &task.ni, &nr.data, &[])?;
            Ok(Ok((new, nr.data.to_vec())))
        })();
        let new = match new {
            Ok(Err((state, g_ir, link))) if task.collision.is_none() && matches!(self.state, IkeState::Established) => {
                self.start_followup(ctx, task, state, g_ir, &link);
                return;
            }
            // A simultaneous rekey (or a peer Delete) meanwhile: no
            // follow-up exchanges on this SA; the attempt is given up.
            Ok(Err(_)) => Err(ProtoError::TemporaryFailure),
            Ok(Ok(n)) => Ok(n),
            Err(e) => Err(e),
        };
        let (new, nr) = match new {
            Ok(n) => n,
            Err(_) => {
                ctx.alloc.ike_spis.remove(&task.new_spi_i);
                // §1.3.2 / §1.2: the responder wants another KE method.
                if let Some(group) = p.notify(NotifyType::INVALID_KE_PAYLOAD).and_then(|n| <[u8; 2]>::try_from(&n.data[..]).ok()) {
                    let group = KeId(u16::from_be_bytes(group));
                    let offered = self.conn.ike_proposals.iter().any(|pr| pr.ke.contains(&group));
                    if offered
                        && group.0 != task.ke.method()
                        && task.ke_retries < MAX_INIT_RETRIES
                        && task.collision.is_none()
                        && matches!(self.state, IkeState::Established)
                        && self.start_rekey_ike_with(ctx, group, task.ke_retries + 1).is_ok()
                    {
                        return;
                    }
                }
                if let Some((_, theirs)) = task.collision {
                    // Ours failed but the peer's simultaneous rekey, which
                    // we answered, stands: it is the successor.
                    ctx.out.effects.push(Effect::Resolved { successor: theirs });
                    self.hand_over(ctx, theirs);
                } else if self.conn.ike_rekey_after.is_some() {
                    // TEMPORARY_FAILURE or a refusal: try again later if
                    // the rekey is time-driven (§2.25).
                    self.rekey_at = Some(ctx.now + retry_backoff(ctx));
                }
                return;
            }
        };
        self.finish_rekey_ike(ctx, task, new, nr);
    }

    /// Our IKE SA rekey produced `new` (with the responder's nonce `nr`):
    /// the §2.8.1 tie-break, then the hand-over.
    pub(super) fn finish_rekey_ike(&mut self, ctx: &mut Ctx<'_>, task: RekeyIkeTask, new: IkeSa, nr: Vec<u8>) {
        let ours = task.new_handle;
        ctx.out.effects.push(Effect::NewIkeSa(Box::new(new)));
        match task.collision {
            // §2.8.1: our exchange holds the lowest nonce, so the SA we
            // created is redundant: we delete it; the peer deletes the old.
            Some((peer_min, theirs)) if min_nonce(&task.ni, &nr) < &peer_min[..] => {
                ctx.out.effects.push(Effect::DeleteIkeSa(ours));
                ctx.out.effects.push(Effect::Resolved { successor: theirs });
                self.hand_over(ctx, theirs);
            }
            collision => {
                if let Some((_, theirs)) = collision {
                    // We won: the peer deletes its redundant SA; the Child
                    // SAs parked there come to ours.
                    ctx.out.effects.push(Effect::Resolved { successor: theirs });
                    ctx.out.effects.push(Effect::MoveChildren { from: theirs, to: ours });
                }
                self.hand_over(ctx, ours);
                // §2.18 step 4: the rekey initiator deletes the old SA.
                self.queue.push_back(Queued::DeleteIke);
            }
        }
    }

}
