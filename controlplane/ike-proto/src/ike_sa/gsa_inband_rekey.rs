//! GSA_INBAND_REKEY (RFC 9838 §2.4.2) in both roles: the GCKS pushes new
//! TEKs (or Deletes) to one member over the registration IKE SA it kept.
//!
//! ```text
//! GCKS  HDR(GSA_INBAND_REKEY), SK{GSA, KD, [D]}  or  SK{D} -->
//! GM                            <-- HDR(GSA_INBAND_REKEY), SK{}
//! ```
//!
//! Guarantees: keys are wrapped under this IKE SA's own GSK_w; a GM answers
//! only after the content was applied (a request it cannot apply is
//! answered INVALID_SYNTAX and changes nothing); a Delete of GIKE_UPDATE
//! with SPI 0 excludes it (it registers again after a random delay).
use ike_wire::{ExchangeType, Payload};

use super::{IkeSa, IkeState, Reply, Task};
use crate::error::ProtoError;
use crate::group::GroupId;
use crate::message;
use crate::sa::Ctx;

impl IkeSa {
    /// GCKS: send the group's current TEKs to this member.
    pub fn start_group_inband(&mut self, ctx: &mut Ctx<'_>, group: &GroupId) {
        if !matches!(self.state, IkeState::Established) || !self.inband_groups.contains(group) {
            return;
        }
        let payloads = self.registration_kwk().and_then(|(kwa, kwk)| {
            let g = ctx.groups.gcks.groups.get_mut(group).ok_or(ProtoError::InvalidGroupId)?;
            g.inband_payloads(ctx.now, ctx.crypto, ctx.rng, kwa, &kwk)
        });
        let Ok(payloads) = payloads else { return };
        self.pending_inband.push_back(payloads);
        self.enqueue(super::Queued::GsaInbandRekey);
        self.pump(ctx);
    }

    pub(super) fn send_group_inband(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ProtoError> {
        let Some(p) = self.pending_inband.pop_front() else { return Ok(()) };
        self.send_request(ctx, ExchangeType::GSA_INBAND_REKEY, &p)?;
        self.active = Some(Task::GsaInbandRekey);
        Ok(())
    }

    /// GM: apply and answer empty.
    pub(super) fn respond_gsa_inband_rekey(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>]) -> Result<Reply, ProtoError> {
        message::check(payloads, message::GSA_INBAND_REKEY)?;
        let group = self.conn.ext.groups.first().map(|m| m.group.clone()).ok_or(ProtoError::InvalidGroupId)?;
        let (kwa, kwk) = self.registration_kwk()?;
        ctx.groups.gm.inband(ctx.now, ctx.crypto, ctx.rng, &group, payloads, kwa, &kwk, &mut ctx.out.events)?;
        Ok(Reply::new(Vec::new()))
    }
}
