//! INFORMATIONAL (RFC 7296 §1.4): Deletes of the IKE SA and of Child SAs in
//! both roles. (Liveness checks, §2.4, are empty INFORMATIONAL requests
//! started from the queue.)
//!
//! Guarantees: a Delete of Child SAs is answered with our inbound SPIs of
//! the same pairs, except those we are deleting ourselves (§1.4.1); a Delete
//! of the IKE SA is answered, then the SA closes.

use ike_wire::{Delete, ExchangeType, NotifyType, Payload, ProtocolId};

use super::{ChildState, IkeSa, IkeState, Reply, Task, Then, notify_payload};
use crate::error::ProtoError;
use crate::event::DownReason;
use crate::message::{self, Payloads};
use crate::sa::{Ctx, Effect};

impl IkeSa {
    pub(super) fn respond_informational(
        &mut self,
        ctx: &mut Ctx<'_>,
        payloads: &[Payload<'_>],
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    ) -> Result<Reply, ProtoError> {
        message::check(payloads, message::INFORMATIONAL)?;
        let p = Payloads(payloads);
        // RFC 4555 (module `mobike`): COOKIE2, NAT detection and address
        // updates; checked before anything else changes.
        let mut out = self.respond_mobike(ctx, &p, local, remote)?;
        let mut spis_in = Vec::new();
        for d in p.deletes() {
            match d.protocol_id {
                ProtocolId::IKE => {
                    // Simultaneous rekey whose own request went unanswered:
                    // the peer's rekey won and it deletes the old SA, so
                    // the Child SAs go to the SA its rekey created (§2.8.1).
                    if let Some(Task::RekeyIke(t)) = &self.active {
                        if let Some((_, theirs)) = t.collision {
                            ctx.out.effects.push(Effect::Resolved { successor: theirs });
                            self.hand_over(ctx, theirs);
                            self.state = IkeState::PeerDeleted { successor: theirs };
                            return Ok(Reply::new(Vec::new()));
                        }
                    }
                    // The peer deletes the SA its simultaneous rekey created
                    // as redundant (it lost, §2.8.1) before our own rekey
                    // response came: the parked Child SAs go back to the SA
                    // whose rekey will win.
                    if let Some(pred) = self.predecessor.take() {
                        ctx.out.effects.push(Effect::MoveChildren { from: self.handle, to: pred });
                        self.state = IkeState::Rekeyed { successor: pred };
                    }
                    // §1.4.1: answer with an empty INFORMATIONAL, then close.
                    let reason = match self.state {
                        IkeState::Rekeyed { .. } => DownReason::Rekeyed,
                        _ if p.notify(NotifyType::AUTHENTICATION_FAILED).is_some() => DownReason::AuthenticationFailed,
                        _ => DownReason::Deleted,
                    };
                    return Ok(Reply { payloads: Vec::new(), then: Then::Close(reason) });
                }
                ProtocolId::ESP | ProtocolId::AH => {
                    for spi in &d.spis {
                        let Ok(b) = <[u8; 4]>::try_from(&spi[..]) else { continue };
                        let spi = u32::from_be_bytes(b);
                        let Some(h) = self.children.values().find(|c| c.spi_out == spi).map(|c| c.handle) else {
                            if matches!(self.active, Some(Task::CreateChild(_))) || self.child_in_followup() {
                                self.early_deletes.push(spi);
                            }
                            continue;
                        };
                        if let Some(c) = self.children.get(&h) {
                            // §1.4.1: answer with our inbound SPIs, unless
                            // we are deleting it ourselves (simultaneous).
                            if c.state != ChildState::Deleting {
                                spis_in.push(c.spi_in.to_be_bytes().to_vec().into());
                            }
                        }
                        self.remove_child(ctx, h);
                    }
                }
                _ => {}
            }
        }
        if !spis_in.is_empty() {
            out.push(Payload::Delete(Delete { protocol_id: ProtocolId::ESP, spi_size: 4, spis: spis_in }));
        }
        Ok(Reply::new(out))
    }

    /// Sends the INFORMATIONAL Delete of this IKE SA (§1.4.1), with an
    /// error notify if the deletion is the answer to one (§2.21.2).
    pub(super) fn start_delete_ike(&mut self, ctx: &mut Ctx<'_>, reason: DownReason, error: Option<NotifyType>) -> Result<(), ProtoError> {
        if matches!(self.state, IkeState::Established | IkeState::Connecting) {
            self.state = IkeState::Deleting;
        }
        let mut p = Vec::new();
        if let Some(t) = error {
            p.push(notify_payload(t));
        }
        p.push(Payload::Delete(Delete { protocol_id: ProtocolId::IKE, spi_size: 0, spis: Vec::new() }));
        self.send_request(ctx, ExchangeType::INFORMATIONAL, &p)?;
        self.active = Some(Task::DeleteIke(reason));
        Ok(())
    }

}
