//! IKE_SA_INIT (RFC 7296 §1.2) in both roles: the initiator's request with
//! its COOKIE (§2.6) and INVALID_KE_PAYLOAD (§1.2) retries, the responder's
//! half-open SA, NAT detection (§2.23), and the hand-off to the next initial
//! exchange (RFC 9242 IKE_INTERMEDIATE or IKE_AUTH).
//!
//! Guarantees: a responder SA exists only once its response is built (its
//! SPI is given back otherwise); the initiator takes the responder's SPI and
//! keys only from a response that matches its proposal and KE method.
use std::net::SocketAddr;
use std::sync::Arc;

use ike_crypto::ke::KeyExchange;
use ike_wire::{
    ExchangeType, Ke, KeId, Message,
    Nonce, Notify, NotifyType, Payload,
};

use super::{IkeSa, IkeState, InitChoice, InitData, MAX_INIT_RETRIES, PpkInt, Signatures, Task, notify_payload, peer_auth_methods, supported_auth_methods};
use crate::config::{ConnectionConfig, EndpointConfig};
use crate::error::ProtoError;
use crate::event::DownReason;
use crate::message::{self, Payloads};
use crate::proposal;
use crate::sa::{self, Ctx, IkeKeys, Role};

pub struct IkeSaInitTask {
    pub(super) ke: Box<dyn KeyExchange>,
    pub(super) ni: Vec<u8>,
    pub(super) cookie: Option<Vec<u8>>,
    pub(super) retries: u8,
}

impl IkeSa {
    // ------------------------------------------------------------------
    // Both roles: creation

    /// Initiator: a new IKE SA; sends the IKE_SA_INIT request.
    pub fn initiate(
        ctx: &mut Ctx<'_>,
        conn: Arc<ConnectionConfig>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Self, ProtoError> {
        let handle = ctx.alloc.ike_handle();
        let spi_i = ctx.alloc.ike_spi(ctx.rng, handle);
        let method = conn.ike_proposals.first().and_then(|p| p.ke.first()).copied().ok_or(ProtoError::NoProposalChosen)?;
        let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
        let ni = ctx.nonce();
        let mut sa = Self::new(handle, conn, Role::Initiator, spi_i, 0, local, remote, ctx);
        let task = IkeSaInitTask { ke, ni, cookie: None, retries: 0 };
        let bytes = sa.ike_sa_init_request(&task, ctx.config.fragmentation.is_some(), ctx.config.intermediate)?;
        sa.xm.start_request(ctx.now, ExchangeType::IKE_SA_INIT, vec![bytes.clone()]);
        sa.transmit(ctx, &bytes);
        sa.active = Some(Task::IkeSaInit(task));
        Ok(sa)
    }

    /// HDR, [N(COOKIE)], SAi1, KEi, Ni, N(NAT_D)x2, N(SIGNATURE_HASH_ALGORITHMS).
    pub(super) fn ike_sa_init_request(&self, task: &IkeSaInitTask, fragmentation: bool, intermediate: bool) -> Result<Vec<u8>, ProtoError> {
        let mut p = Vec::new();
        if let Some(c) = &task.cookie {
            // §2.6: the COOKIE notify goes first.
            p.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone())));
        }
        p.push(Payload::Sa(proposal::ike_sa_payload(&self.conn.ike_proposals, &[])));
        p.push(Payload::Ke(Ke { ke_method: KeId(task.ke.method()), data: task.ke.public_key().to_vec().into() }));
        p.push(Payload::Nonce(Nonce { data: task.ni.clone().into() }));
        for n in sa::nat_notifies(self.spi_i, 0, self.local, self.remote) {
            p.push(Payload::Notify(n));
        }
        if fragmentation {
            p.push(notify_payload(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
        }
        // RFC 9867: the PPK in IKE_INTERMEDIATE, when we may use it there.
        let ppk_int = intermediate && self.conn.ppk.as_ref().is_some_and(|c| c.exchange.intermediate());
        // RFC 9242 §3.1, RFC 9370 §2.2.1: announced when we offer ADDKE
        // (or, RFC 9867, the PPK in IKE_INTERMEDIATE).
        if intermediate && (ppk_int || self.conn.ike_proposals.iter().any(|p| p.has_additional_ke())) {
            p.push(notify_payload(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED));
        }
        p.push(Payload::Notify(sa::signature_hashes_notify()));
        // RFC 8784 §3: also on COOKIE / INVALID_KE retries (rebuilt here).
        if self.conn.ppk.as_ref().is_some_and(|c| c.exchange.ike_auth()) {
            p.push(notify_payload(NotifyType::USE_PPK));
        }
        // RFC 9867: N(USE_PPK_INT), next to USE_PPK when RFC 8784 is the
        // fallback (libreswan sends both the same way).
        if ppk_int {
            p.push(notify_payload(NotifyType::USE_PPK_INT));
        }
        message::plain(self.header(ExchangeType::IKE_SA_INIT, false, 0), p)
    }

    /// Responder: answers an IKE_SA_INIT request with a new half-open SA.
    /// `conns` are the candidate connections in order.
    /// The cheap half of answering an IKE_SA_INIT request: its syntax, the
    /// connection and proposal chosen, and that its KE payload is of the
    /// chosen group. No key exchange, no state: the endpoint asks this
    /// before it spends one ([`crate::endpoint`]'s order of checks).
    pub fn choose_init(config: &EndpointConfig, conns: &[Arc<ConnectionConfig>], msg: &Message<'_>) -> Result<InitChoice, ProtoError> {
        message::check(&msg.payloads, message::IKE_SA_INIT_REQUEST)?;
        let p = Payloads(&msg.payloads);
        let (Some(sa_i), Some(ke_i), Some(_)) = (p.sa(), p.ke(), p.nonce()) else {
            return Err(ProtoError::Invalid("IKE_SA_INIT"));
        };
        // RFC 9370 §2.2.1: additional key exchanges only over IKE_INTERMEDIATE.
        let intermediate = config.intermediate && p.notify(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some();
        let mut chosen = None;
        for conn in conns {
            if let Ok((suite, answer)) = proposal::select_ike_for_ke(&conn.ike_proposals, sa_i, &[], ke_i.ke_method, intermediate) {
                chosen = Some((conn.clone(), suite, answer));
                break;
            }
        }
        let (conn, suite, answer) = chosen.ok_or(ProtoError::NoProposalChosen)?;
        if suite.ke != ke_i.ke_method {
            // §1.2: the KE payload's group must be the one chosen.
            return Err(ProtoError::InvalidKePayload(suite.ke));
        }
        Ok(InitChoice { conn, suite, answer, intermediate })
    }

    /// Answers an IKE_SA_INIT request [`Self::choose_init`] accepted: the
    /// key exchange, a new half-open IKE SA, the response.
    pub fn respond_init(
        ctx: &mut Ctx<'_>,
        choice: InitChoice,
        conns: &[Arc<ConnectionConfig>],
        request: &[u8],
        msg: &Message<'_>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(Self, Vec<u8>), ProtoError> {
        let InitChoice { conn, suite, answer, intermediate } = choice;
        let p = Payloads(&msg.payloads);
        let (Some(ke_i), Some(ni)) = (p.ke(), p.nonce()) else {
            return Err(ProtoError::Invalid("IKE_SA_INIT"));
        };
        let responded = ctx.crypto.key_exchange_respond(suite.ke.0, &ke_i.data, ctx.rng)?;
        let handle = ctx.alloc.ike_handle();
        let spi_i = msg.header.spi_i;
        let spi_r = ctx.alloc.ike_spi(ctx.rng, handle);
        let nr = ctx.nonce();
        let mut sa = Self::new(handle, conn, Role::Responder, spi_i, spi_r, local, remote, ctx);
        let notifies: Vec<&Notify<'_>> = p.notifies().collect();
        (sa.nat_local, sa.nat_remote) = sa::detect_nat(&notifies, spi_i, 0, local, remote);
        if let Some(n) = p.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS) {
            sa.peer_hashes = sa::parse_signature_hashes(&n.data);
        }
        match IkeKeys::initial(ctx.crypto, &suite, &responded.shared, &ni.data, &nr, spi_i, spi_r, Role::Responder) {
            Ok(k) => sa.keys = Some(k),
            Err(e) => {
                ctx.alloc.ike_spis.remove(&spi_r);
                return Err(e);
            }
        }
        let mut out = vec![
            Payload::Sa(answer),
            Payload::Ke(Ke { ke_method: suite.ke, data: responded.ke_data.into() }),
            Payload::Nonce(Nonce { data: nr.clone().into() }),
        ];
        for n in sa::nat_notifies(spi_i, spi_r, local, remote) {
            out.push(Payload::Notify(n));
        }
        // §1.2: the responder asks for the initiator's certificate here.
        if let Some(req) = sa::certreq(&sa.conn.remote_auth) {
            out.push(Payload::CertReq(req));
        }
        // RFC 7383 §2.3: announce support only in answer to the initiator's.
        if let (Some(f), Some(_)) = (ctx.config.fragmentation, p.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)) {
            out.push(notify_payload(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
            sa.fragment_len = Some(f.max_message_len);
        }
        if intermediate {
            out.push(notify_payload(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED));
        }
        out.push(Payload::Notify(sa::signature_hashes_notify()));
        // RFC 9867: answer USE_PPK_INT (and then not USE_PPK) when both
        // announced IKE_INTERMEDIATE and a connection that could be chosen
        // in IKE_AUTH takes its PPK there. RFC 8784 §3 otherwise: answer
        // USE_PPK when such a connection has PPKs for IKE_AUTH.
        let ppk_int = intermediate
            && p.notify(NotifyType::USE_PPK_INT).is_some()
            && conns.iter().any(|c| c.ppk.as_ref().is_some_and(|k| k.exchange.intermediate()));
        if ppk_int {
            out.push(notify_payload(NotifyType::USE_PPK_INT));
        } else if p.notify(NotifyType::USE_PPK).is_some() && conns.iter().any(|c| c.ppk.as_ref().is_some_and(|k| k.exchange.ike_auth())) {
            out.push(notify_payload(NotifyType::USE_PPK));
            sa.ppk_negotiated = true;
        }
        // RFC 9593 §3.1: the responder announces in IKE_SA_INIT.
        if sa.conn.ext.announce_auth_methods {
            out.push(supported_auth_methods(&sa.conn));
        }
        let response = match message::plain(sa.header(ExchangeType::IKE_SA_INIT, true, 0), out) {
            Ok(r) => r,
            Err(e) => {
                ctx.alloc.ike_spis.remove(&spi_r);
                return Err(e);
            }
        };
        sa.xm.record_response(0, request, vec![response.clone()]);
        sa.transmit(ctx, &response);
        sa.init_key = Some((spi_i, ni.data.to_vec()));
        let mut init = InitData::new(ni.data.to_vec(), nr, request.to_vec(), response.clone(), suite.additional_ke.clone());
        if ppk_int {
            init.ppk_int = PpkInt::Pending;
        }
        sa.state = IkeState::HalfOpen(Box::new(init));
        Ok((sa, response))
    }

    // ------------------------------------------------------------------
    // Initiator: the response

    pub(super) fn process_ike_sa_init_response(&mut self, ctx: &mut Ctx<'_>, msg: &Message<'_>, bytes: &[u8], local: SocketAddr, remote: SocketAddr) {
        let Some(Task::IkeSaInit(mut task)) = self.active.take() else { return };
        let p = Payloads(&msg.payloads);
        // §2.6: a COOKIE answer; retry with it.
        if let Some(c) = p.notify(NotifyType::COOKIE) {
            if task.retries < MAX_INIT_RETRIES && !c.data.is_empty() {
                task.retries += 1;
                task.cookie = Some(c.data.to_vec());
                self.retry_init(ctx, task);
            } else {
                self.close(ctx, DownReason::Refused(NotifyType::COOKIE));
            }
            return;
        }
        // §1.2: INVALID_KE_PAYLOAD names the group the responder wants.
        if let Some(n) = p.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let wanted = <[u8; 2]>::try_from(&n.data[..]).ok().map(|b| KeId(u16::from_be_bytes(b)));
            let offered = |k: KeId| self.conn.ike_proposals.iter().any(|p| p.ke.contains(&k));
            match wanted {
                Some(k) if offered(k) && k.0 != task.ke.method() && task.retries < MAX_INIT_RETRIES => {
                    match ctx.crypto.key_exchange(k.0, ctx.rng) {
                        Ok(ke) => {
                            task.retries += 1;
                            task.ke = ke;
                            self.retry_init(ctx, task);
                        }
                        Err(_) => self.close(ctx, DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD)),
                    }
                }
                _ => self.close(ctx, DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD)),
            }
            return;
        }
        if let Some(t) = p.error_notify() {
            self.close(ctx, DownReason::Refused(t));
            return;
        }
        // RFC 9867 when the responder answered USE_PPK_INT (with
        // IKE_INTERMEDIATE), RFC 8784 when it answered USE_PPK.
        let ppk = self.conn.ppk.as_ref();
        let ppk_int = ppk.is_some_and(|c| c.exchange.intermediate())
            && ctx.config.intermediate
            && p.notify(NotifyType::USE_PPK_INT).is_some()
            && p.notify(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some();
        self.ppk_negotiated = !ppk_int && ppk.is_some_and(|c| c.exchange.ike_auth()) && p.notify(NotifyType::USE_PPK).is_some();
        if ppk.is_some_and(|c| c.required) && !ppk_int && !self.ppk_negotiated {
            // RFC 8784 §3: a mandatory PPK and a responder without USE_PPK
            // (or USE_PPK_INT): abort (the peer can never authenticate as
            // this policy needs).
            self.close(ctx, DownReason::AuthenticationFailed);
            return;
        }
        match self.complete_ike_sa_init(ctx, task, msg, bytes, local, remote) {
            Ok(mut init) => {
                if ppk_int {
                    init.ppk_int = PpkInt::Pending;
                }
                self.start_next_initial_exchange(ctx, init)
            }
            Err(_) => self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX)),
        }
    }

    pub(super) fn retry_init(&mut self, ctx: &mut Ctx<'_>, task: IkeSaInitTask) {
        match self.ike_sa_init_request(&task, ctx.config.fragmentation.is_some(), ctx.config.intermediate) {
            Ok(bytes) => {
                self.xm.restart_request(ctx.now, 0, vec![bytes.clone()]);
                self.transmit(ctx, &bytes);
                self.active = Some(Task::IkeSaInit(task));
            }
            Err(_) => self.close(ctx, DownReason::Refused(NotifyType::INVALID_SYNTAX)),
        }
    }

    pub(super) fn complete_ike_sa_init(
        &mut self,
        ctx: &mut Ctx<'_>,
        task: IkeSaInitTask,
        msg: &Message<'_>,
        bytes: &[u8],
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<InitData, ProtoError> {
        message::check(&msg.payloads, message::IKE_SA_INIT_RESPONSE)?;
        let p = Payloads(&msg.payloads);
        let (Some(sa_r), Some(ke_r), Some(nr)) = (p.sa(), p.ke(), p.nonce()) else {
            return Err(ProtoError::Invalid("IKE_SA_INIT response"));
        };
        if msg.header.spi_r == 0 {
            return Err(ProtoError::Invalid("SPIr"));
        }
        let (suite, _) = proposal::accept_ike(&self.conn.ike_proposals, sa_r)?;
        if suite.ke.0 != task.ke.method() || ke_r.ke_method != suite.ke {
            return Err(ProtoError::Invalid("KE method of the response"));
        }
        // RFC 9370 §2.2.1: ADDKE needs both sides' IKE_INTERMEDIATE support.
        let intermediate = ctx.config.intermediate && p.notify(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some();
        if !suite.additional_ke.is_empty() && !intermediate {
            return Err(ProtoError::Invalid("ADDKE chosen without IKE_INTERMEDIATE"));
        }
        let g_ir = task.ke.compute_shared(&ke_r.data)?;
        let outstanding = self.xm.take_response(0, ExchangeType::IKE_SA_INIT).ok_or(ProtoError::MessageId)?;
        let message1 = outstanding.packets.into_iter().next().ok_or(ProtoError::MessageId)?;
        self.spi_r = msg.header.spi_r;
        let notifies: Vec<&Notify<'_>> = p.notifies().collect();
        (self.nat_local, self.nat_remote) = sa::detect_nat(&notifies, self.spi_i, self.spi_r, local, remote);
        if let Some(n) = p.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS) {
            self.peer_hashes = sa::parse_signature_hashes(&n.data);
        }
        if let (Some(f), Some(_)) = (ctx.config.fragmentation, p.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)) {
            self.fragment_len = Some(f.max_message_len);
        }
        self.ext.peer_auth_methods = peer_auth_methods(p.notify(NotifyType::SUPPORTED_AUTH_METHODS));
        self.keys = Some(IkeKeys::initial(ctx.crypto, &suite, &g_ir, &task.ni, &nr.data, self.spi_i, self.spi_r, Role::Initiator)?);
        if self.nat_local || self.nat_remote {
            // §2.23: after a NAT is detected, IKE moves to port 4500.
            self.local.set_port(ctx.config.natt_port);
            self.remote.set_port(ctx.config.natt_port);
        }
        Ok(InitData::new(task.ni, nr.data.to_vec(), message1, bytes.to_vec(), suite.additional_ke))
    }

    /// After IKE_SA_INIT and after each IKE_INTERMEDIATE: the next exchange
    /// of the initial sequence. One RFC 9242 IKE_INTERMEDIATE exchange per
    /// RFC 9370 additional key exchange, each updating the keys and the
    /// IntAuth chain kept with `init`, then IKE_AUTH (whose Message ID
    /// follows the last IKE_INTERMEDIATE's).
    pub(super) fn start_next_initial_exchange(&mut self, ctx: &mut Ctx<'_>, mut init: InitData) {
        let r = match init.pending_ke.pop_front() {
            Some(method) => self.start_intermediate(ctx, init, Some(method)),
            // RFC 9867 without additional key exchanges: an exchange for
            // the PPK alone.
            None if init.ppk_int == PpkInt::Pending => self.start_intermediate(ctx, init, None),
            None => match self.conn.ext.groups.first().cloned() {
                // RFC 9838 §2.3.1: a group member registers instead.
                Some(m) => self.start_gsa_auth(ctx, init, m),
                None => self.start_ike_auth(ctx, init, Signatures::MayDefer),
            },
        };
        if let Err(e) = r {
            let reason = DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type));
            self.close(ctx, reason);
        }
    }

}
