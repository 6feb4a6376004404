//! GSA_REGISTRATION (RFC 9838 §2.3.2) in both roles: one more group on an
//! established registration IKE SA.
//!
//! ```text
//! GM   HDR(GSA_REGISTRATION), SK{IDg, [SAg], [N(GROUP_SENDER)]} -->
//! GCKS                         <-- HDR(GSA_REGISTRATION), SK{GSA, KD, [N]}
//!                              <-- HDR(GSA_REGISTRATION), SK{N(error)}
//! ```
//!
//! Guarantees: the GCKS authorizes the IKE SA's authenticated identity for
//! the named group exactly as in GSA_AUTH; a refusal leaves the IKE SA (and
//! the groups already joined on it) as they were.
use ike_wire::{ExchangeType, Payload};

use super::gsa_auth::{group_sender_notify, sids_wanted};
use super::{IkeSa, Reply, Task};
use crate::error::ProtoError;
use crate::event::Event;
use crate::group::GroupId;
use crate::message::{self, Payloads};
use crate::sa::Ctx;

impl IkeSa {
    /// GM: `HDR, SK{IDg, [N(GROUP_SENDER)]}` for a group of this
    /// connection.
    pub(super) fn start_gsa_registration(&mut self, ctx: &mut Ctx<'_>, group: GroupId) -> Result<(), ProtoError> {
        let m = self.conn.ext.groups.iter().find(|m| m.group == group).cloned().ok_or(ProtoError::InvalidGroupId)?;
        let mut p = vec![Payload::IdG(m.group.to_wire())];
        if m.sender_ids > 0 {
            p.push(group_sender_notify(m.sender_ids));
        }
        self.send_request(ctx, ExchangeType::GSA_REGISTRATION, &p)?;
        self.active = Some(Task::GsaRegistration(group));
        Ok(())
    }

    /// GCKS: register the IKE SA's peer to one more group.
    pub(super) fn respond_gsa_registration(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>]) -> Result<Reply, ProtoError> {
        message::check(payloads, message::GSA_REGISTRATION_REQUEST)?;
        let p = Payloads(payloads);
        let id_g = p.id_g().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::IDG))?;
        let member = self.remote_id.clone().ok_or(ProtoError::AuthenticationFailed)?;
        let sids = sids_wanted(&p)?;
        Ok(Reply::new(self.register_member(ctx, &GroupId::from_wire(id_g), &member, sids)?))
    }

    /// GM: the response; a refusal only ends this registration.
    pub(super) fn process_gsa_registration_response(&mut self, ctx: &mut Ctx<'_>, group: GroupId, payloads: &[Payload<'_>]) {
        let Some(m) = self.conn.ext.groups.iter().find(|m| m.group == group).cloned() else { return };
        let p = Payloads(payloads);
        let r = message::check(payloads, message::GSA_REGISTRATION_RESPONSE).and_then(|()| self.take_registration(ctx, &m, &p));
        if let Err(e) = r {
            let notify = e.notify().map_or(ike_wire::NotifyType::REGISTRATION_FAILED, |n| n.notify_type);
            ctx.out.events.push_back(Event::ChildSaFailed { ike_sa: self.handle, notify });
        }
    }
}
