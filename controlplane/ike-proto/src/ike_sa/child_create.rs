//! CREATE_CHILD_SA for Child SAs (RFC 7296 §1.3.1, §1.3.3): new and rekeyed
//! Child SAs with optional PFS, INVALID_KE_PAYLOAD retries, and simultaneous
//! rekeys of the same Child SA (§2.8.1).
//!
//! Guarantees: of two simultaneous rekeys the one with the lowest nonce
//! makes the redundant SA and its initiator deletes it; a Child SA the peer
//! deleted before our response arrived is never installed.

use ike_crypto::ke::KeyExchange;
use ike_wire::{
    ExchangeType, Ke, KeId,
    Nonce, Notify, NotifyType, Payload, ProtocolId,
};

use super::{ChildRequest, ChildState, IkeSa, IkeState, MAX_INIT_RETRIES, Queued, Reply, Task, Via, min_nonce, notify_payload, retry_backoff, spi_of};
use crate::config::Mode;
use crate::error::ProtoError;
use crate::event::{ChildSaHandle, ChildSaInstall, Event};
use crate::message::{self, Payloads};
use crate::proposal;
use crate::sa::Ctx;
use crate::ts::{self, TrafficSelector};

pub struct CreateChildTask {
    pub(super) child: ChildRequest,
    pub(super) ni: Vec<u8>,
    pub(super) ke: Option<Box<dyn KeyExchange>>,
    pub(super) rekey_of: Option<ChildSaHandle>,
    /// The peer rekeyed the same Child SA meanwhile (§2.8.1): the smaller
    /// nonce of its exchange and the Child SA it created.
    pub(super) collision: Option<(Vec<u8>, ChildSaHandle)>,
    /// INVALID_KE_PAYLOAD retries made so far (§1.3).
    pub(super) ke_retries: u8,
}

impl IkeSa {
    pub(super) fn start_create_child(&mut self, ctx: &mut Ctx<'_>, rekey_of: Option<ChildSaHandle>) -> Result<(), ProtoError> {
        let pfs = self.conn.child.esp_proposals.first().and_then(|e| e.pfs.first()).copied();
        self.start_create_child_with(ctx, rekey_of, pfs, 0)
    }

    /// CREATE_CHILD_SA for a new or rekeyed Child SA with the PFS method
    /// `pfs` in the KE payload (the full proposal list is always offered).
    pub(super) fn start_create_child_with(
        &mut self,
        ctx: &mut Ctx<'_>,
        rekey_of: Option<ChildSaHandle>,
        pfs: Option<KeId>,
        ke_retries: u8,
    ) -> Result<(), ProtoError> {
        let conn = self.conn.clone();
        let mut child = self.child_request(ctx);
        let mut p = Vec::new();
        if let Some(h) = rekey_of {
            let old = self.children.get_mut(&h).ok_or(ProtoError::ChildSaNotFound)?;
            old.state = ChildState::Rekeying;
            child.ts_local = old.ts_local.clone();
            child.ts_remote = old.ts_remote.clone();
            // §3.10.1 REKEY_SA: protocol ESP, the SPI we receive on.
            p.push(Payload::Notify(Notify {
                protocol_id: ProtocolId::ESP,
                spi: old.spi_in.to_be_bytes().to_vec().into(),
                notify_type: NotifyType::REKEY_SA,
                data: Vec::new().into(),
            }));
        } else if !self.leases.is_empty() {
            child.ts_local = self.leases.iter().map(|a| TrafficSelector::host(*a)).collect();
        }
        let ni = ctx.nonce();
        let ke = match pfs {
            Some(m) => Some(ctx.crypto.key_exchange(m.0, ctx.rng)?),
            None => None,
        };
        p.push(Payload::Sa(proposal::esp_sa_payload(&conn.child.esp_proposals, child.spi_in, true)));
        p.push(Payload::Nonce(Nonce { data: ni.clone().into() }));
        if let Some(k) = &ke {
            p.push(Payload::Ke(Ke { ke_method: KeId(k.method()), data: k.public_key().to_vec().into() }));
        }
        let label = self.conn.child.sec_label.as_deref();
        p.push(Payload::TsI(ts::to_wire_list_labeled(&child.ts_local, label)));
        p.push(Payload::TsR(ts::to_wire_list_labeled(&child.ts_remote, label)));
        if conn.child.mode == Mode::Transport {
            p.push(notify_payload(NotifyType::USE_TRANSPORT_MODE));
        }
        p.extend(self.hcp_request(rekey_of)?);
        self.send_request(ctx, ExchangeType::CREATE_CHILD_SA, &p)?;
        self.active = Some(Task::CreateChild(Box::new(CreateChildTask { child, ni, ke, rekey_of, collision: None, ke_retries })));
        Ok(())
    }

    pub(super) fn respond_create_child(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>]) -> Result<Reply, ProtoError> {
        message::check(payloads, message::CREATE_CHILD_SA)?;
        let p = Payloads(payloads);
        let (Some(sa_i), Some(ni)) = (p.sa(), p.nonce()) else {
            return Err(ProtoError::PayloadCount(ike_wire::PayloadType::SA));
        };
        if sa_i.proposals.iter().any(|pr| pr.protocol_id == ProtocolId::IKE) {
            return self.respond_rekey_ike(ctx, sa_i, ni, p.ke());
        }
        if !matches!(self.state, IkeState::Established) {
            // §2.25.1: closing or rekeyed; the peer retries on the new SA.
            return Err(ProtoError::TemporaryFailure);
        }
        if matches!(self.active, Some(Task::RekeyIke(_))) {
            return Err(ProtoError::TemporaryFailure);
        }
        let (Some(ts_i), Some(ts_r)) = (p.ts_i(), p.ts_r()) else {
            return Err(ProtoError::PayloadCount(ike_wire::PayloadType::TSI));
        };
        let rekey_of = match p.notify(NotifyType::REKEY_SA) {
            Some(n) => {
                let spi = spi_of(n).ok_or(ProtoError::Invalid("REKEY_SA SPI"))?;
                let old = self.children.values().find(|c| c.spi_out == spi).ok_or(ProtoError::ChildSaNotFound)?;
                if matches!(old.state, ChildState::Rekeyed | ChildState::Deleting) {
                    return Err(ProtoError::TemporaryFailure);
                }
                Some(old.handle)
            }
            None => None,
        };
        let nr = ctx.nonce();
        let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
        let old = rekey_of.and_then(|h| self.children.get(&h)).cloned();
        let hcp = self.hcp_data(payloads);
        let (mut out, install) = self.respond_child(ctx, sa_i, ts_i, ts_r, p.ke(), &ni.data, &nr, old.as_ref(), transport, Via::CreateChildSa, hcp)?;
        if install.suite.additional().next().is_some() {
            // RFC 9370 §2.2.4: installed after the IKE_FOLLOWUP_KE exchanges.
            let keymat = self.pending_keymat.take();
            out.push(self.defer_child(ctx, *install, keymat, rekey_of)?);
            return Ok(Reply::new(out));
        }
        let new_handle = install.child_sa;
        self.install_child(ctx, *install);
        if let Some(h) = rekey_of {
            if let Some(c) = self.children.get_mut(&h) {
                c.state = ChildState::Rekeyed;
            }
            // §2.8.1: are we rekeying the same Child SA right now?
            if let Some(Task::CreateChild(t)) = &mut self.active {
                if t.rekey_of == Some(h) {
                    t.collision = Some((min_nonce(&ni.data, &nr).to_vec(), new_handle));
                }
            }
            self.queue.retain(|q| *q != Queued::RekeyChild(h));
        }
        Ok(Reply::new(out))
    }

    pub(super) fn process_create_child_response(&mut self, ctx: &mut Ctx<'_>, task: CreateChildTask, payloads: &[Payload<'_>]) {
        let p = Payloads(payloads);
        let refusal = p.sa().is_none().then(|| p.error_notify()).flatten();
        let result = match (refusal, message::check(payloads, message::CREATE_CHILD_SA), p.sa(), p.nonce(), p.ts_i(), p.ts_r()) {
            // An error answer (§1.3): the notify says why.
            (Some(t), ..) => Err(match t {
                NotifyType::TEMPORARY_FAILURE => ProtoError::TemporaryFailure,
                NotifyType::CHILD_SA_NOT_FOUND => ProtoError::ChildSaNotFound,
                NotifyType::TS_UNACCEPTABLE => ProtoError::TsUnacceptable,
                NotifyType::INVALID_KE_PAYLOAD => ProtoError::InvalidKePayload(KeId::NONE),
                _ => ProtoError::NoProposalChosen,
            }),
            (None, Ok(()), Some(sa_r), Some(nr), Some(ts_i), Some(ts_r)) => {
                let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
                let ke = task.ke.as_deref().map(|k| (k, p.ke()));
                let hcp = self.hcp_data(payloads);
                self.accept_child(ctx, &task.child, sa_r, ts_i, ts_r, ke, &task.ni, &nr.data, task.rekey_of, transport, true, Via::CreateChildSa, hcp)
                    .map(|i| (i, nr.data.to_vec()))
            }
            (None, Err(e), ..) => Err(e),
            _ => Err(ProtoError::PayloadCount(ike_wire::PayloadType::SA)),
        };
        let result = match result {
            // RFC 9370 §2.2.4: installed after the IKE_FOLLOWUP_KE exchanges.
            Ok((install, _)) if install.suite.additional().next().is_some() => {
                let link = p.notify(NotifyType::ADDITIONAL_KEY_EXCHANGE).map(|n| n.data.to_vec());
                match (link, self.pending_keymat.take()) {
                    (Some(link), Some(keymat)) => {
                        self.start_child_followup(ctx, task, install, keymat, &link);
                        return;
                    }
                    _ => Err(ProtoError::Invalid("ADDKE without a link")),
                }
            }
            r => r,
        };
        match result {
            Ok((install, nr)) => self.child_created(ctx, task, install, nr),
            Err(e) => self.child_failed(ctx, task, &p, e),
        }
    }

    /// Our CREATE_CHILD_SA made `install`: install it, unless the peer
    /// deleted it meanwhile, and settle a rekey (§2.8.1 collisions).
    pub(super) fn child_created(&mut self, ctx: &mut Ctx<'_>, task: CreateChildTask, install: ChildSaInstall, nr: Vec<u8>) {
        let early_deletes = std::mem::take(&mut self.early_deletes);
        if early_deletes.contains(&install.spi_out) {
            // Deleted by the peer before we learnt of it: never install.
            ctx.alloc.release_child_spi(install.spi_in);
            if let Some(old) = task.rekey_of.and_then(|h| self.children.get_mut(&h)) {
                // The peer took the rekey as done: the old SA goes too.
                old.state = ChildState::Rekeyed;
                let h = old.handle;
                self.queue.push_back(Queued::DeleteChild(h));
            }
            return;
        }
        let new_handle = install.child_sa;
        self.install_child(ctx, install);
        let Some(old) = task.rekey_of else { return };
        match task.collision {
            // §2.8.1: the exchange with the lowest nonce made the
            // redundant SA; its initiator (we) deletes it, and the
            // peer deletes the old one.
            Some((peer_min, _)) if min_nonce(&task.ni, &nr) < &peer_min[..] => {
                if let Some(c) = self.children.get_mut(&new_handle) {
                    c.state = ChildState::Deleting;
                }
                self.queue.push_back(Queued::DeleteChild(new_handle));
            }
            _ => {
                if let Some(c) = self.children.get_mut(&old) {
                    c.state = ChildState::Rekeyed;
                }
                self.queue.push_back(Queued::DeleteChild(old));
            }
        }
    }

    /// Our CREATE_CHILD_SA failed: give the SPI back, retry with another
    /// PFS group if asked, or later.
    pub(super) fn child_failed(&mut self, ctx: &mut Ctx<'_>, task: CreateChildTask, p: &Payloads<'_, '_>, e: ProtoError) {
        ctx.alloc.release_child_spi(task.child.spi_in);
        // §1.3: the responder wants another PFS group; retry with it if we
        // offered it.
        if let Some(group) = p.notify(NotifyType::INVALID_KE_PAYLOAD).and_then(|n| <[u8; 2]>::try_from(&n.data[..]).ok()) {
            let group = KeId(u16::from_be_bytes(group));
            let offered = self.conn.child.esp_proposals.iter().any(|e| e.pfs.contains(&group));
            let current = task.ke.as_ref().map(|k| k.method());
            if offered && current != Some(group.0) && task.ke_retries < MAX_INIT_RETRIES
                && self.start_create_child_with(ctx, task.rekey_of, Some(group), task.ke_retries + 1).is_ok()
            {
                return;
            }
        }
        let backoff = retry_backoff(ctx);
        if let Some(old) = task.rekey_of.and_then(|h| self.children.get_mut(&h)) {
            if old.state == ChildState::Rekeying {
                old.state = ChildState::Installed;
                // §2.25: retry later, not at once.
                old.rekey_due = old.rekey_due.map(|_| ctx.now + backoff);
            }
        }
        let notify = e.notify().map_or(NotifyType::NO_PROPOSAL_CHOSEN, |n| n.notify_type);
        ctx.out.events.push_back(Event::ChildSaFailed { ike_sa: self.handle, notify });
    }

}
