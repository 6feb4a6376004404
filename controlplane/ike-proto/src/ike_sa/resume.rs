//! Resuming an IKE SA after a restart: its snapshot ([`crate::snapshot`]),
//! the SA rebuilt from one, and the RFC 6311 IKEV2_MESSAGE_ID_SYNC
//! exchange that settles Message IDs a stale snapshot missed.
//!
//! Guarantees:
//! * A restored SA is Established with the snapshot's keys, SPIs, peer,
//!   Child SAs and leases; nothing is in flight; timers (DPD, rekeys)
//!   count on from the snapshot, less the time it spent in the store.
//! * With `mid_sync` (we announced IKEV2_MESSAGE_ID_SYNC_SUPPORTED), the
//!   first exchange of a restored SA is the RFC 6311 §4 sync: an
//!   INFORMATIONAL with Message ID 0 carrying only N(IKEV2_MESSAGE_ID_SYNC)
//!   = nonce | M1 | P1, where M1 (the ID of our next request) is the
//!   snapshot's plus [`MID_SYNC_MARGIN`], so it is at least what the peer
//!   expects however many of our requests the snapshot missed (§5.1: the
//!   peer drops a sync whose M1 is lower). The answer's P2 and M2 become
//!   the IDs we expect and send next. An answer without the notify is a
//!   peer that took the message for an ordinary request 0 (strongSwan
//!   does when it never saw a request from us): we send 1 next. Without
//!   `mid_sync`, the snapshot's IDs are used as they are (a request that
//!   was in flight has used its ID).
use std::time::Duration;

use ike_wire::{ExchangeType, Header, Notify, NotifyType, Payload};

use super::{ChildSa, ChildState, IkeSa, IkeState, Queued, Task};
use crate::error::ProtoError;
use crate::event::{ChildSaHandle, IkeSaHandle};
use crate::fragment;
use crate::message::Payloads;
use crate::sa::{Ctx, IkeKeys, Role, SkEa};
use crate::snapshot::{ChildSnapshot, IkeSaSnapshot, PendingRequest};
use crate::time::Time;

/// How far past the snapshot's next request ID the sync's M1 goes: more
/// than the requests of ours a snapshot can miss (it is written every
/// event-loop turn, and each turn starts at most a few exchanges per SA).
pub const MID_SYNC_MARGIN: u32 = 64;

/// The sync request in flight.
pub struct MidSyncTask {
    nonce: u32,
    m1: u32,
}

/// A cheap summary of everything a snapshot holds that changes: the
/// endpoint writes a new snapshot only when it moved.
pub type Fingerprint = (u32, u32, bool, Vec<(u64, u32, u32)>, Option<Time>, std::net::SocketAddr, usize, u64);

impl IkeSa {
    /// Whether this SA can be snapshotted: established, with keys, not a
    /// G-IKEv2 registration (its group state is not kept).
    fn persistable(&self) -> bool {
        matches!(self.state, IkeState::Established)
            && self.keys.as_ref().is_some_and(|k| k.suite.kwa.is_none())
            && self.inband_groups.is_empty()
            && self.group_close_at.is_none()
    }

    fn kept_children(&self) -> impl Iterator<Item = &ChildSa> {
        // Replaced or deleting Child SAs are on their way out: their slots
        // become orphans of the restarted daemon and are cleared.
        self.children.values().filter(|c| matches!(c.state, ChildState::Installed | ChildState::Rekeying))
    }

    /// What the endpoint compares to decide whether to write again.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        if !self.persistable() {
            return None;
        }
        Some((
            self.xm.next_request_id(),
            self.xm.next_expected_id(),
            self.xm.has_outstanding(),
            self.kept_children().map(|c| (c.handle.0, c.spi_in, c.spi_out)).collect(),
            self.rekey_at,
            self.remote,
            self.leases.len(),
            self.spi_i ^ self.spi_r.rotate_left(1),
        ))
    }

    /// The snapshot of this SA at `now`, if it is persistable.
    pub fn snapshot(&self, now: Time) -> Option<IkeSaSnapshot> {
        if !self.persistable() {
            return None;
        }
        let k = self.keys.as_ref()?;
        let left = |t: Option<Time>| t.map(|t| t.saturating_since(now));
        Some(IkeSaSnapshot {
            handle: self.handle.0,
            connection: self.conn.name.clone(),
            initiator: self.role == Role::Initiator,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            local: self.local,
            remote: self.remote,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            suite: k.suite.clone(),
            sk_d: k.sk_d.clone(),
            sk_ei: k.sk_e_a.sk_ei.clone(),
            sk_ai: k.sk_e_a.sk_ai.clone(),
            sk_er: k.sk_e_a.sk_er.clone(),
            sk_ar: k.sk_e_a.sk_ar.clone(),
            sk_pi: k.sk_pi.clone(),
            sk_pr: k.sk_pr.clone(),
            next_request_id: self.xm.next_request_id(),
            next_expected_id: self.xm.next_expected_id(),
            // An RFC 6311 sync in flight is not kept: a restore starts its
            // own.
            pending_request: match &self.active {
                Some(Task::MidSync(_)) => None,
                _ => self.xm.first_outstanding().map(|(id, o)| PendingRequest { message_id: id, exchange: o.exchange.0, packets: o.packets.clone() }),
            },
            mid_sync: self.mid_sync,
            remote_id: self.remote_id.clone(),
            peer_hashes: self.peer_hashes.clone(),
            leases: self.leases.clone(),
            ppk_used: self.ppk_used,
            fragment_len: self.fragment_len.and_then(|n| u32::try_from(n).ok()),
            rekey_in: left(self.rekey_at),
            children: self
                .kept_children()
                .map(|c| ChildSnapshot {
                    handle: c.handle.0,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    suite: c.suite,
                    mode: c.mode,
                    ts_local: c.ts_local.clone(),
                    ts_remote: c.ts_remote.clone(),
                    sec_label: c.sec_label.clone(),
                    compression: c.compression,
                    age: now.saturating_since(c.installed_at),
                    rekey_in: left(c.rekey_due),
                })
                .collect(),
        })
    }

    /// Rebuilds an SA from its snapshot, taken `elapsed` ago, for `conn`
    /// (the connection of that name now).
    pub fn restore(
        ctx: &mut Ctx<'_>,
        s: &IkeSaSnapshot,
        conn: std::sync::Arc<crate::config::ConnectionConfig>,
        elapsed: Duration,
    ) -> Result<Self, ProtoError> {
        let role = if s.initiator { Role::Initiator } else { Role::Responder };
        let sk_e_a = SkEa { sk_ei: s.sk_ei.clone(), sk_ai: s.sk_ai.clone(), sk_er: s.sk_er.clone(), sk_ar: s.sk_ar.clone() };
        let keys = IkeKeys::from_parts(ctx.crypto, &s.suite, s.sk_d.clone(), s.sk_pi.clone(), s.sk_pr.clone(), sk_e_a, role)?;
        let mut sa = IkeSa::new(IkeSaHandle(s.handle), conn, role, s.spi_i, s.spi_r, s.local, s.remote, ctx);
        sa.nat_local = s.nat_local;
        sa.nat_remote = s.nat_remote;
        sa.keys = Some(keys);
        sa.state = IkeState::Established;
        sa.remote_id = s.remote_id.clone();
        sa.peer_hashes = s.peer_hashes.clone();
        sa.leases = s.leases.clone();
        sa.ppk_used = s.ppk_used;
        sa.fragment_len = s.fragment_len.map(|n| n as usize);
        sa.mid_sync = s.mid_sync;
        let now = ctx.now;
        // A deadline that passed while the daemon was down is due at once.
        let due = |left: Option<Duration>| left.map(|l| now + l.saturating_sub(elapsed));
        sa.rekey_at = due(s.rekey_in);
        for c in &s.children {
            let age = c.age + elapsed;
            let installed_at = Time::from_duration(now.since_origin().saturating_sub(age));
            sa.children.insert(
                ChildSaHandle(c.handle),
                ChildSa {
                    handle: ChildSaHandle(c.handle),
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    suite: c.suite,
                    mode: c.mode,
                    ts_local: c.ts_local.clone(),
                    ts_remote: c.ts_remote.clone(),
                    sec_label: c.sec_label.clone(),
                    compression: c.compression,
                    state: ChildState::Installed,
                    installed_at,
                    rekey_due: due(c.rekey_in),
                },
            );
        }
        sa.xm.set_ids(s.next_request_id, s.next_expected_id);
        if let Some(p) = &s.pending_request {
            // Resent at once and then as any request (§2.1); the peer
            // answers it or replays its cached answer.
            sa.xm.restore_outstanding(now, p.message_id, ExchangeType(p.exchange), p.packets.clone());
            sa.active = Some(Task::Resumed);
        }
        // strongSwan encrypts its IKE messages under an AEAD with the
        // Message ID as IV counter (iv_gen_seq.c) and refuses to reuse
        // one: its answer to a sync (Message ID 0) fails once it has sent
        // a message with ID 0 and a higher one, and it then destroys the
        // IKE SA. So the sync is asked only of SAs without AEAD; AEAD SAs
        // rely on the snapshot being written before anything is sent
        // (esprit-ike writes ahead), which leaves nothing to resynchronise.
        let aead = s.suite.integ == ike_wire::IntegId::NONE;
        if s.mid_sync && !aead {
            sa.queue.push_front(Queued::MidSync);
        }
        Ok(sa)
    }

    /// RFC 6311 §4: the sync request, Message ID 0.
    pub(super) fn start_mid_sync(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ProtoError> {
        let nonce = ctx.rng.next_u32();
        let m1 = self.xm.next_request_id().wrapping_add(MID_SYNC_MARGIN);
        let p1 = self.xm.next_expected_id();
        let mut data = Vec::with_capacity(12);
        data.extend_from_slice(&nonce.to_be_bytes());
        data.extend_from_slice(&m1.to_be_bytes());
        data.extend_from_slice(&p1.to_be_bytes());
        let inner = [Payload::Notify(Notify::new(NotifyType::IKEV2_MESSAGE_ID_SYNC, data))];
        let header = self.header(ExchangeType::INFORMATIONAL, false, 0);
        let keys = self.keys.as_mut().ok_or(ProtoError::Invalid("no keys"))?;
        let packets = fragment::seal(header, &inner, &mut *keys.outbound, ctx.rng, self.fragment_len)?;
        for p in &packets {
            self.transmit(ctx, p);
        }
        self.xm.start_sync_request(ctx.now, ExchangeType::INFORMATIONAL, packets);
        self.active = Some(Task::MidSync(MidSyncTask { nonce, m1 }));
        Ok(())
    }

    /// RFC 6311 §4-§5.1, responder: an INFORMATIONAL with Message ID 0
    /// carrying only N(IKEV2_MESSAGE_ID_SYNC). M2 = max(M1, the ID we
    /// expect), P2 = max(P1, the ID our next request gets, past one in
    /// flight); both become ours and go back with the peer's nonce. Any
    /// other message with ID 0 is dropped (§4: not processed as a request).
    pub(super) fn respond_mid_sync(&mut self, ctx: &mut Ctx<'_>, header: &Header, bytes: &[u8]) {
        let Ok(msg) = ike_wire::Message::parse(bytes) else { return };
        let Some((first, plain, _)) = self.decrypt(ctx, header, bytes, &msg) else { return };
        let Ok(payloads) = ike_wire::parse_inner(first, &plain) else { return };
        let [Payload::Notify(n)] = &payloads[..] else { return };
        if n.notify_type != NotifyType::IKEV2_MESSAGE_ID_SYNC || n.data.len() != 12 {
            return;
        }
        let d = &n.data;
        let m1 = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        let p1 = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        let expected = self.xm.next_expected_id();
        if m1 < expected {
            // §5.1: lower than what we have seen: dropped.
            return;
        }
        self.last_inbound = ctx.now;
        let m2 = m1.max(expected);
        let ours = self.xm.next_request_id();
        let p2 = p1.max(ours);
        // A request of ours in flight keeps its ID (its answer may still
        // come); the next one starts at P2.
        let in_flight = self.xm.has_outstanding();
        let mut data = d[..4].to_vec();
        data.extend_from_slice(&p2.to_be_bytes());
        data.extend_from_slice(&m2.to_be_bytes());
        let inner = [Payload::Notify(Notify::new(NotifyType::IKEV2_MESSAGE_ID_SYNC, data))];
        let h = self.header(ExchangeType::INFORMATIONAL, true, 0);
        let Some(keys) = self.keys.as_mut() else { return };
        let Ok(packets) = fragment::seal(h, &inner, &mut *keys.outbound, ctx.rng, self.fragment_len) else { return };
        for p in &packets {
            self.transmit(ctx, p);
        }
        if in_flight {
            self.xm.set_next_ids_keep_outstanding(p2, m2);
        } else {
            self.xm.set_ids(p2, m2);
        }
    }

    /// RFC 6311 §4: the answer carries our nonce, P2 (the peer's next
    /// request ID) and M2 (the ID it expects from us).
    pub(super) fn process_mid_sync_response(&mut self, _ctx: &mut Ctx<'_>, t: MidSyncTask, payloads: &[Payload<'_>]) {
        let p = Payloads(payloads);
        match p.notify(NotifyType::IKEV2_MESSAGE_ID_SYNC).map(|n| &n.data[..]) {
            Some(d) if d.len() == 12 && d[..4] == t.nonce.to_be_bytes() => {
                let p2 = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                let m2 = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
                // §5.1: M2 is at least M1; never go below what we sent.
                self.xm.set_ids(m2.max(t.m1), p2.max(self.xm.next_expected_id()));
            }
            // Not a sync answer: the peer processed Message ID 0 as an
            // ordinary request (it had seen none from us).
            None => {
                let expected = self.xm.next_expected_id();
                self.xm.set_ids(1, expected);
            }
            // A wrong nonce or length: keep our IDs (M1 went out as
            // advice only); the next exchange shows whether they hold.
            Some(_) => {
                let expected = self.xm.next_expected_id();
                self.xm.set_ids(t.m1, expected);
            }
        }
    }
}
