//! The responder's EAP conversation inside IKE_AUTH (RFC 7296 §2.16, RFC
//! 5998); the contract with the owner is in [`crate::eap`].
use std::sync::Arc;

use ike_crypto::keys;
use ike_wire::{Auth, AuthMethod, Eap, IntoOwned, NotifyType, Payload};

use super::ike_auth::Signatures;
use super::{notify_payload, peer_auth_methods, IkeSa, IkeState, Reply, Then};
use crate::auth_job::{AuthJob, Phase, SignWork};
use crate::config::{ConnectionConfig, Identity, LocalAuth, RemoteAuth};
use crate::eap::{self, AaaAnswer, AaaOutcome, AaaRequest};
use crate::error::ProtoError;
use crate::event::DownReason;
use crate::message::{self, Payloads};
use crate::sa::{self, Ctx};

/// An EAP conversation of a responder IKE SA (boxed in the SA: rare).
pub struct EapState {
    conn: Arc<ConnectionConfig>,
    peer_id: Identity,
    /// IDi as the initiator's AUTH signs it (type, reserved, data).
    id_i_body: Vec<u8>,
    /// The first IKE_AUTH request's Message ID (RFC 9242 IKE_AUTH_MID).
    first_mid: u32,
    /// The first request's payloads: its CP, SA and TS make the Child SA
    /// once EAP and AUTH succeeded.
    request: Vec<Payload<'static>>,
    /// The EAP identity, once the initiator answered Request/Identity.
    identity: Option<Vec<u8>>,
    /// Identifier of the last EAP Response (for a Success or Failure we
    /// make up when the AAA server sent none).
    last_id: u8,
    rounds: u8,
    /// The AAA server accepted: the MSK, if the method made one.
    accepted: Option<Option<ike_crypto::Secret>>,
}

/// A whole EAP packet of this code (its Length field matching).
fn valid_eap(m: &[u8], code: u8) -> bool {
    m.len() >= 4 && m[0] == code && usize::from(u16::from_be_bytes([m[2], m[3]])) == m.len()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn eap_payload(m: Vec<u8>) -> Payload<'static> {
    Payload::Eap(Eap { message: m.into() })
}

impl IkeSa {
    /// The first IKE_AUTH request without AUTH: choose an EAP connection,
    /// answer with our identity, our AUTH (unless EAP-only) and
    /// EAP-Request/Identity.
    pub(super) fn start_eap(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>], message_id: u32, work: Signatures) -> Result<Reply, ProtoError> {
        message::check(payloads, message::IKE_AUTH_EAP_REQUEST)?;
        let p = Payloads(payloads);
        let id_i = p.id_i().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::IDI))?;
        let peer_id = Identity::from_wire(id_i.id_type, &id_i.data).ok_or(ProtoError::AuthenticationFailed)?;
        let wanted_local = p.id_r().and_then(|i| Identity::from_wire(i.id_type, &i.data));
        let conn = ctx
            .config
            .connections
            .iter()
            .find(|c| {
                matches!(c.remote_auth, RemoteAuth::Eap(_))
                    && c.remote_id.as_ref().map_or(true, |r| *r == peer_id)
                    && wanted_local.as_ref().map_or(true, |l| *l == c.local_id)
            })
            .cloned()
            .ok_or(ProtoError::AuthenticationFailed)?;
        let RemoteAuth::Eap(eap_cfg) = &conn.remote_auth else { return Err(ProtoError::AuthenticationFailed) };
        let IkeState::HalfOpen(init) = &self.state else { return Err(ProtoError::MessageId) };
        // RFC 8784 with EAP is not implemented: a connection that demands
        // a PPK refuses, unless RFC 9867 already mixed one bound to it
        // into the keys.
        let ppk_int_bound = matches!(&init.ppk_int, super::PpkInt::Used(id) if conn.ppk.as_ref().is_some_and(|c| c.find(id).is_some()));
        if conn.ppk.as_ref().is_some_and(|c| c.required) && !ppk_int_bound {
            return Err(ProtoError::AuthenticationFailed);
        }
        if !init.pending_ke.is_empty() {
            return Err(ProtoError::Invalid("IKE_AUTH before the additional key exchanges"));
        }
        let eap_only = eap_cfg.eap_only && p.notify(NotifyType::EAP_ONLY_AUTHENTICATION).is_some();
        let peer_methods = peer_auth_methods(p.notify(NotifyType::SUPPORTED_AUTH_METHODS));
        let peer_schemes = peer_methods.as_deref().map(crate::auth_methods::schemes).unwrap_or_default();
        let mut signed = None;
        if !eap_only {
            let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
            let int_auth = init.int_auth_for(message_id);
            let id_r = sa::id_body(&conn.local_id);
            let octets_r = sa::signed_octets_int(&*keys.prf, &keys.sk_pr, &init.message2, &init.ni, &id_r, int_auth.as_deref())?;
            let local_sig = matches!(conn.local_auth, LocalAuth::PubKey { .. });
            let done = match work {
                Signatures::MayDefer if ctx.config.defer_signatures && local_sig => {
                    // Our signature on the pool (crate::auth_job); this
                    // request is answered when it is back.
                    let mut seed = [0u8; 32];
                    ctx.rng.fill_bytes(&mut seed);
                    ctx.out.jobs.push_back(AuthJob {
                        ike_sa: self.handle,
                        message_id,
                        phase: Phase::Respond,
                        conn: conn.clone(),
                        verify: None,
                        sign: vec![SignWork { octets: octets_r, peer_hashes: self.peer_hashes.clone(), peer_schemes, seed }],
                    });
                    return Ok(Reply { payloads: Vec::new(), then: Then::Defer });
                }
                Signatures::Done(d) if d.fits(Phase::Respond, message_id, &conn) => d.signed.into_iter().next(),
                _ => None,
            };
            signed = Some(match done {
                Some(r) => r?,
                None => sa::make_auth_with(&conn.local_auth, &*keys.prf, &octets_r, &self.peer_hashes, &peer_schemes, ctx.rng)?,
            });
        }
        let mut id_i_body = vec![id_i.id_type.0, 0, 0, 0];
        id_i_body.extend_from_slice(&id_i.data);
        let mut eap_id = [0u8; 1];
        ctx.rng.fill_bytes(&mut eap_id);
        let mut out = vec![Payload::IdR(sa::id_payload(&conn.local_id))];
        if let Some((auth, certs, scheme)) = signed {
            out.extend(certs.into_iter().map(Payload::Cert));
            out.push(Payload::Auth(auth));
            self.ext.auth_scheme = scheme;
        }
        out.push(eap_payload(eap::packet(eap::EAP_REQUEST, eap_id[0], Some(eap::EAP_TYPE_IDENTITY), &[])));
        self.ext.peer_auth_methods = peer_methods;
        self.conn = conn.clone();
        self.eap = Some(Box::new(EapState {
            conn,
            peer_id,
            id_i_body,
            first_mid: message_id,
            request: payloads.iter().cloned().map(IntoOwned::into_owned).collect(),
            identity: None,
            last_id: eap_id[0],
            rounds: 0,
            accepted: None,
        }));
        Ok(Reply::new(out))
    }

    /// A later IKE_AUTH request: an EAP Response for the AAA server, or,
    /// after EAP Success, the initiator's AUTH.
    pub(super) fn continue_eap(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>], message_id: u32) -> Result<Reply, ProtoError> {
        message::check(payloads, message::IKE_AUTH_EAP_CONTINUE)?;
        let p = Payloads(payloads);
        let Some(st) = self.eap.as_mut() else { return Err(ProtoError::MessageId) };
        if st.accepted.is_some() {
            return self.finish_eap(ctx, payloads);
        }
        let msg = p.eap().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::EAP))?.message.to_vec();
        if !valid_eap(&msg, eap::EAP_RESPONSE) {
            return Err(ProtoError::AuthenticationFailed);
        }
        st.rounds += 1;
        if st.rounds > eap::MAX_ROUNDS {
            return Err(ProtoError::AuthenticationFailed);
        }
        st.last_id = msg[1];
        let first = st.identity.is_none();
        if first {
            // RFC 3748 §5.1: the Identity Response's type data; an
            // initiator answering with something else (a NAK) uses its IDi.
            st.identity = Some(match msg.get(4) {
                Some(&eap::EAP_TYPE_IDENTITY) => msg[5..].to_vec(),
                _ => st.peer_id.data().to_vec(),
            });
        }
        ctx.out.aaa.push_back(AaaRequest {
            ike_sa: self.handle,
            message_id,
            connection: st.conn.name.clone(),
            identity: st.identity.clone().unwrap_or_default(),
            eap: msg,
            local: self.local,
            remote: self.remote,
            first,
        });
        Ok(Reply { payloads: Vec::new(), then: Then::Defer })
    }

    /// The AAA backend answered the request waiting in `pending_auth`.
    pub fn resume_eap(&mut self, ctx: &mut Ctx<'_>, answer: AaaAnswer) {
        if self.eap.is_none() || !self.pending_auth.as_ref().is_some_and(|p| p.header.message_id == answer.message_id) {
            return;
        }
        let Some(pending) = self.pending_auth.take() else { return };
        if !matches!(self.state, IkeState::HalfOpen(_)) {
            return;
        }
        let Some(st) = self.eap.as_mut() else { return };
        let failure = |eap: Option<Vec<u8>>, last_id: u8| {
            let m = eap.filter(|m| valid_eap(m, eap::EAP_FAILURE)).unwrap_or_else(|| eap::packet(eap::EAP_FAILURE, last_id, None, &[]));
            // §2.21.2: the EAP Failure, and AUTHENTICATION_FAILED (as
            // strongSwan's responder sends them); the IKE SA is gone.
            Ok(Reply {
                payloads: vec![eap_payload(m), notify_payload(NotifyType::AUTHENTICATION_FAILED)],
                then: Then::Close(DownReason::AuthenticationFailed),
            })
        };
        let result = match answer.outcome {
            AaaOutcome::Challenge(m) if valid_eap(&m, eap::EAP_REQUEST) => Ok(Reply::new(vec![eap_payload(m)])),
            AaaOutcome::Challenge(_) => failure(None, st.last_id),
            AaaOutcome::Accept { eap: m, msk } => {
                st.accepted = Some(msk);
                let m = m.filter(|m| valid_eap(m, eap::EAP_SUCCESS)).unwrap_or_else(|| eap::packet(eap::EAP_SUCCESS, st.last_id, None, &[]));
                Ok(Reply::new(vec![eap_payload(m)]))
            }
            AaaOutcome::Reject { eap: m } => failure(m, st.last_id),
            AaaOutcome::Unreachable => failure(None, st.last_id),
        };
        self.answer(ctx, &pending.header, &pending.request_bytes, result);
        self.pump(ctx);
    }

    /// §2.16 after EAP Success: the initiator's AUTH with the MSK (SK_pi
    /// without one), ours with the MSK (SK_pr), then as IKE_AUTH ends
    /// without EAP.
    fn finish_eap(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>]) -> Result<Reply, ProtoError> {
        let p = Payloads(payloads);
        let auth = p.auth().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::AUTH))?;
        if auth.method != AuthMethod::SHARED_KEY_MESSAGE_INTEGRITY_CODE {
            return Err(ProtoError::AuthenticationFailed);
        }
        let st = self.eap.take().ok_or(ProtoError::MessageId)?;
        let IkeState::HalfOpen(init) = &self.state else { return Err(ProtoError::MessageId) };
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let prf = &*keys.prf;
        let int_auth = init.int_auth_for(st.first_mid);
        let msk = st.accepted.as_ref().and_then(|m| m.as_ref());
        let octets_i = sa::signed_octets_int(prf, &keys.sk_pi, &init.message1, &init.nr, &st.id_i_body, int_auth.as_deref())?;
        let expected = keys::psk_auth(prf, msk.unwrap_or(&keys.sk_pi), &octets_i)?;
        if !ct_eq(&expected, &auth.data) {
            return Err(ProtoError::AuthenticationFailed);
        }
        let id_r = sa::id_body(&st.conn.local_id);
        let octets_r = sa::signed_octets_int(prf, &keys.sk_pr, &init.message2, &init.ni, &id_r, int_auth.as_deref())?;
        let auth_r = keys::psk_auth(prf, msk.unwrap_or(&keys.sk_pr), &octets_r)?;
        let mut out = vec![Payload::Auth(Auth { method: AuthMethod::SHARED_KEY_MESSAGE_INTEGRITY_CODE, data: auth_r.to_vec().into() })];
        if ctx.config.mid_sync {
            out.push(notify_payload(NotifyType::IKEV2_MESSAGE_ID_SYNC_SUPPORTED));
            self.mid_sync = true;
        }
        // Before IkeSaUp: who the AAA server authenticated.
        ctx.out.events.push_back(crate::event::Event::EapAuthenticated { ike_sa: self.handle, identity: st.identity.clone().unwrap_or_default() });
        self.establish_responder(ctx, st.conn, st.peer_id, &st.request, out)
    }
}
