//! IKE_AUTH (RFC 7296 §1.2, §2.15) in both roles: identities, PSK or RFC 7427
//! signatures (computed inline or on an [`crate::auth_job`]), RFC 8784 PPK
//! mixing, RFC 9593 SUPPORTED_AUTH_METHODS, the CP exchange (`ike_config`)
//! and the first Child SA (`child_sa`).
//!
//! Guarantees: no Child SA is installed and no IKE SA is Established before
//! the peer's AUTH verified; a failed IKE_AUTH leaves no IKE SA (§2.21.2).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ike_crypto::keys;
use ike_wire::{
    parse_inner, CfgAttrType, CfgAttribute, CfgType, Cp, ExchangeType, Header, Notify, NotifyType, Payload,
};

use super::{ChildRequest, IkeSa, IkeState, InitData, PpkInt, Queued, Reply, Task, Then, Via, ike_rekey_time, notify_payload, peer_auth_methods, supported_auth_methods};
use crate::auth_job::{AuthDone, AuthJob, Phase, SignWork, VerifyWork};
use crate::config::{ConnectionConfig, Family, Identity, LocalAuth, Mode, RemoteAuth};
use crate::error::ProtoError;
use crate::event::{DownReason, Event};
use crate::message::{self, Payloads};
use crate::proposal;
use crate::sa::{self, Ctx, Effect, IkeKeys};
use crate::ts::{self, TrafficSelector};

pub struct IkeAuthTask {
    pub(super) init: InitData,
    pub(super) child: Option<ChildRequest>,
    /// RFC 8784: the PPK-mixed keys, taken on when the response carries
    /// N(PPK_IDENTITY); `None` when no PPK was offered.
    pub(super) ppk: Option<PpkKeys>,
    /// The IKE_AUTH request's Message ID (RFC 9242 IKE_AUTH_MID).
    pub(super) message_id: u32,
}

/// SK_d, SK_pi and SK_pr with a PPK mixed in (RFC 8784 §3).
pub struct PpkKeys {
    pub(super) sk_d: ike_crypto::Secret,
    pub(super) sk_pi: ike_crypto::Secret,
    pub(super) sk_pr: ike_crypto::Secret,
}

impl PpkKeys {
    pub(super) fn mix(keys: &IkeKeys, ppk: &[u8]) -> Result<Self, ProtoError> {
        let prf = &*keys.prf;
        Ok(Self {
            sk_d: keys::mix_ppk_key(prf, ppk, &keys.sk_d)?,
            sk_pi: keys::mix_ppk_key(prf, ppk, &keys.sk_pi)?,
            sk_pr: keys::mix_ppk_key(prf, ppk, &keys.sk_pr)?,
        })
    }

    /// From now on the SA uses the mixed keys; SK_e and SK_a stay.
    pub(super) fn apply(self, keys: &mut IkeKeys) {
        keys.sk_d = self.sk_d;
        keys.sk_pi = self.sk_pi;
        keys.sk_pr = self.sk_pr;
    }
}

/// How a responder authenticates the initiator (RFC 8784 §3, Table 1).
pub(super) enum PpkDecision<'a> {
    /// Plain IKEv2.
    None,
    /// Mix this PPK in; AUTH is computed with the mixed keys.
    Use(&'a crate::config::Ppk),
    /// Plain IKEv2 with the NO_PPK_AUTH data as the initiator's AUTH.
    NoPpkAuth(Vec<u8>),
}
/// Where the signatures of an IKE_AUTH request come from.
pub(super) enum Signatures {
    /// Inline, or from a job if the endpoint defers them.
    MayDefer,
    /// From this job's result where it applies, inline otherwise (never
    /// deferred again).
    Done(AuthDone),
}

/// An IKE_AUTH request whose signatures are being computed elsewhere
/// ([`crate::auth_job`]): what answering it later needs.
pub(super) struct PendingAuth {
    pub(super) header: Header,
    pub(super) request_bytes: Vec<u8>,
    pub(super) first: ike_wire::PayloadType,
    pub(super) plain: Vec<u8>,
}
/// RFC 8784 §3 responder rules (Table 1 and the PPK_ID checks) for the
/// connection chosen by the initiator's identity. Errors are
/// AUTHENTICATION_FAILED.
///
/// After RFC 9867 (`ppk_int` not `Off`) the PPK is already in the keys or
/// not: the chosen connection must be one the PPK is bound to (it lists
/// that PPK_ID; RFC 8784 §3 "not bound to the IDi"), and a connection that
/// demands a PPK refuses an IKE SA without one.
pub(super) fn ppk_decision<'a>(conn: &'a ConnectionConfig, negotiated: bool, ppk_int: &PpkInt, p: &Payloads<'_, '_>) -> Result<PpkDecision<'a>, ProtoError> {
    let required = conn.ppk.as_ref().is_some_and(|c| c.required);
    match ppk_int {
        PpkInt::Off => {}
        PpkInt::Used(id) => {
            return if conn.ppk.as_ref().is_some_and(|c| c.exchange.intermediate() && c.find(id).is_some()) {
                Ok(PpkDecision::None)
            } else {
                Err(ProtoError::AuthenticationFailed)
            };
        }
        // Pending: the initiator went to IKE_AUTH without the PPK exchange.
        PpkInt::Pending | PpkInt::NotUsed => {
            return if required { Err(ProtoError::AuthenticationFailed) } else { Ok(PpkDecision::None) };
        }
    }
    if !negotiated {
        // No USE_PPK from the initiator (or none of our connections has
        // PPKs): plain IKEv2, unless this one demands a PPK.
        return if required { Err(ProtoError::AuthenticationFailed) } else { Ok(PpkDecision::None) };
    }
    // USE_PPK was exchanged: the initiator must name its PPK.
    let id = p.notify(NotifyType::PPK_IDENTITY).ok_or(ProtoError::AuthenticationFailed)?;
    if let Some(k) = conn.ppk.as_ref().and_then(|c| c.find(&id.data)) {
        return Ok(PpkDecision::Use(k));
    }
    // No PPK for this PPK_ID (or this peer): continue without one only if
    // it is optional and the initiator gave NO_PPK_AUTH.
    match p.notify(NotifyType::NO_PPK_AUTH) {
        Some(n) if !required && !n.data.is_empty() => Ok(PpkDecision::NoPpkAuth(n.data.to_vec())),
        _ => Err(ProtoError::AuthenticationFailed),
    }
}

impl IkeSa {
    /// A signature job of this SA is done: go on where it was made. A
    /// result for anything no longer waiting is dropped.
    pub fn resume_auth(&mut self, ctx: &mut Ctx<'_>, done: AuthDone) {
        match done.phase {
            Phase::Respond => self.resume_respond(ctx, done),
            Phase::Start => {
                let Some(init) = self.pending_start.take() else { return };
                if !matches!(self.state, IkeState::Connecting) {
                    return;
                }
                if let Err(e) = self.start_ike_auth(ctx, *init, Signatures::Done(done)) {
                    let reason = DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type));
                    self.close(ctx, reason);
                }
            }
            Phase::Complete => {
                if !self.pending_complete.as_ref().is_some_and(|p| p.2 == done.message_id) {
                    return;
                }
                let Some(pending) = self.pending_complete.take() else { return };
                let (first, plain, _) = *pending;
                let Some(Task::IkeAuth(task)) = self.active.take() else { return };
                let payloads = parse_inner(first, &plain).unwrap_or_default();
                self.process_ike_auth_response(ctx, *task, &payloads, first, &plain, Signatures::Done(done));
            }
        }
        self.pump(ctx);
    }

    pub(super) fn resume_respond(&mut self, ctx: &mut Ctx<'_>, done: AuthDone) {
        if !self.pending_auth.as_ref().is_some_and(|p| p.header.message_id == done.message_id) {
            return;
        }
        let Some(pending) = self.pending_auth.take() else { return };
        if !matches!(self.state, IkeState::HalfOpen(_)) {
            return;
        }
        let result = match parse_inner(pending.first, &pending.plain) {
            Err(e) => Err(ProtoError::from(e)),
            Ok(payloads) => self.respond_ike_auth(ctx, &payloads, pending.header.message_id, Signatures::Done(done)),
        };
        self.answer(ctx, &pending.header, &pending.request_bytes, result);
    }

    /// Sends the IKE_AUTH request, or hands its signature(s) to a job first
    /// (then `pending_start` keeps `init` until [`Self::resume_auth`]).
    pub(super) fn start_ike_auth(&mut self, ctx: &mut Ctx<'_>, init: InitData, work: Signatures) -> Result<(), ProtoError> {
        let conn = self.conn.clone();
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let id_i = sa::id_body(&conn.local_id);
        let message_id = self.xm.next_request_id();
        let int_auth = init.int_auth_for(message_id);
        let octets = sa::signed_octets_int(&*keys.prf, &keys.sk_pi, &init.message1, &init.nr, &id_i, int_auth.as_deref())?;
        let peer_schemes = self.ext.peer_auth_methods.as_deref().map(crate::auth_methods::schemes).unwrap_or_default();
        // RFC 8784 §3: with a PPK, AUTH uses the mixed SK_pi; NO_PPK_AUTH
        // carries the AUTH data with the original SK_pi' (same method),
        // only when the PPK is optional.
        let ppk = conn.ppk.as_ref().filter(|_| self.ppk_negotiated).and_then(|c| c.keys.first().map(|k| (k, c.required)));
        let mixed = match ppk {
            Some((k, _)) => Some(PpkKeys::mix(keys, &k.secret)?),
            None => None,
        };
        // What we sign: AUTH's octets, then NO_PPK_AUTH's.
        let mut to_sign = Vec::new();
        match &mixed {
            Some(m) => {
                to_sign.push(sa::signed_octets_int(&*keys.prf, &m.sk_pi, &init.message1, &init.nr, &id_i, int_auth.as_deref())?);
                if ppk.is_some_and(|(_, required)| !required) {
                    to_sign.push(octets);
                }
            }
            None => to_sign.push(octets),
        }
        let precomputed = match work {
            Signatures::MayDefer if ctx.config.defer_signatures && matches!(conn.local_auth, LocalAuth::PubKey { .. }) => {
                let sign = to_sign
                    .into_iter()
                    .map(|octets| {
                        let mut seed = [0u8; 32];
                        ctx.rng.fill_bytes(&mut seed);
                        SignWork { octets, peer_hashes: self.peer_hashes.clone(), peer_schemes: peer_schemes.clone(), seed }
                    })
                    .collect();
                ctx.out.jobs.push_back(AuthJob { ike_sa: self.handle, message_id, phase: Phase::Start, conn, verify: None, sign });
                self.pending_start = Some(Box::new(init));
                return Ok(());
            }
            Signatures::Done(d) if d.fits(Phase::Start, message_id, &conn) => d.signed,
            _ => Vec::new(),
        };
        let mut precomputed = precomputed.into_iter();
        let mut signed = Vec::with_capacity(to_sign.len());
        for o in &to_sign {
            signed.push(match precomputed.next() {
                Some(r) => r?,
                None => sa::make_auth_with(&conn.local_auth, &*keys.prf, o, &self.peer_hashes, &peer_schemes, ctx.rng)?,
            });
        }
        let mut signed = signed.into_iter();
        let (auth, certs, scheme) = signed.next().ok_or(ProtoError::Invalid("no AUTH"))?;
        let mut ppk_notifies = Vec::new();
        if let Some((k, _)) = ppk {
            ppk_notifies.push(Payload::Notify(Notify::new(NotifyType::PPK_IDENTITY, k.wire_id())));
            if let Some((no_ppk, _, _)) = signed.next() {
                ppk_notifies.push(Payload::Notify(Notify::new(NotifyType::NO_PPK_AUTH, no_ppk.data.to_vec())));
            }
        }
        let ppk_keys = mixed;
        self.ext.auth_scheme = scheme;
        let child = self.child_request(ctx);
        let mut p = vec![Payload::IdI(sa::id_payload(&conn.local_id))];
        p.extend(certs.into_iter().map(Payload::Cert));
        if let Some(req) = sa::certreq(&conn.remote_auth) {
            p.push(Payload::CertReq(req));
        }
        if conn.initial_contact {
            p.push(notify_payload(NotifyType::INITIAL_CONTACT));
        }
        if conn.ext.mobike {
            // RFC 4555 §3.3: we answer return-routability checks and take
            // the responder's address lists (we never move ourselves).
            p.push(notify_payload(NotifyType::MOBIKE_SUPPORTED));
        }
        if ctx.config.mid_sync {
            // RFC 6311 §3: we can resume this SA after a restart and then
            // resynchronise Message IDs.
            p.push(notify_payload(NotifyType::IKEV2_MESSAGE_ID_SYNC_SUPPORTED));
        }
        if let Some(r) = &conn.remote_id {
            p.push(Payload::IdR(sa::id_payload(r)));
        }
        p.push(Payload::Auth(auth));
        p.extend(ppk_notifies);
        // RFC 9593 §3.1: the initiator's list, once the responder sent one.
        if conn.ext.announce_auth_methods && self.ext.peer_auth_methods.is_some() {
            p.push(supported_auth_methods(&conn));
        }
        if !conn.request_vip.is_empty() {
            let mut attributes = Vec::new();
            for f in &conn.request_vip {
                let (addr, dns) = match f {
                    Family::V4 => (CfgAttrType::INTERNAL_IP4_ADDRESS, CfgAttrType::INTERNAL_IP4_DNS),
                    Family::V6 => (CfgAttrType::INTERNAL_IP6_ADDRESS, CfgAttrType::INTERNAL_IP6_DNS),
                };
                attributes.push(CfgAttribute::new(addr, Vec::new()));
                attributes.push(CfgAttribute::new(dns, Vec::new()));
            }
            // RFC 8598 §3.1: with the DNS server requests above.
            attributes.extend(crate::split_dns::request_attributes(&conn.ext.split_dns));
            p.push(Payload::Cp(Cp { cfg_type: CfgType::CFG_REQUEST, attributes }));
        }
        if conn.child.mode == Mode::Transport {
            p.push(notify_payload(NotifyType::USE_TRANSPORT_MODE));
        }
        p.push(Payload::Sa(proposal::esp_sa_payload(&conn.child.esp_proposals, child.spi_in, false)));
        let label = self.conn.child.sec_label.as_deref();
        p.push(Payload::TsI(ts::to_wire_list_labeled(&child.ts_local, label)));
        p.push(Payload::TsR(ts::to_wire_list_labeled(&child.ts_remote, label)));
        p.extend(self.hcp_request(None)?);
        self.send_request(ctx, ExchangeType::IKE_AUTH, &p)?;
        self.active = Some(Task::IkeAuth(Box::new(IkeAuthTask { init, child: Some(child), ppk: ppk_keys, message_id })));
        Ok(())
    }

    pub(super) fn respond_ike_auth(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>], message_id: u32, work: Signatures) -> Result<Reply, ProtoError> {
        // RFC 7296 §2.16: an EAP conversation under way, or one starting
        // (no AUTH from the initiator).
        if self.eap.is_some() {
            return self.continue_eap(ctx, payloads, message_id);
        }
        if Payloads(payloads).auth().is_none() {
            return self.start_eap(ctx, payloads, message_id, work);
        }
        message::check(payloads, message::IKE_AUTH_REQUEST)?;
        let p = Payloads(payloads);
        let id_i = p.id_i().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::IDI))?;
        let auth = p.auth().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::AUTH))?;
        let peer_id = Identity::from_wire(id_i.id_type, &id_i.data).ok_or(ProtoError::AuthenticationFailed)?;
        let wanted_local = p.id_r().and_then(|i| Identity::from_wire(i.id_type, &i.data));
        // The connection is chosen by identities (strongSwan's peer_cfg
        // selection); IKE_SA_INIT only fixed the IKE proposal.
        let conn = ctx
            .config
            .connections
            .iter()
            .find(|c| {
                // An initiator that sends AUTH does not do EAP.
                !matches!(c.remote_auth, RemoteAuth::Eap(_))
                    && c.remote_id.as_ref().map_or(true, |r| *r == peer_id)
                    && wanted_local.as_ref().map_or(true, |l| *l == c.local_id)
            })
            .cloned()
            .ok_or(ProtoError::AuthenticationFailed)?;
        let IkeState::HalfOpen(init) = &self.state else { return Err(ProtoError::MessageId) };
        if !init.pending_ke.is_empty() {
            // RFC 9370 §2.2.2: every negotiated additional key exchange
            // completes before IKE_AUTH.
            return Err(ProtoError::Invalid("IKE_AUTH before the additional key exchanges"));
        }
        let int_auth = init.int_auth_for(message_id);
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let decision = ppk_decision(&conn, self.ppk_negotiated, &init.ppk_int, &p)?;
        let mixed = match &decision {
            PpkDecision::Use(k) => Some(PpkKeys::mix(keys, &k.secret)?),
            _ => None,
        };
        let (sk_pi, sk_pr) = mixed.as_ref().map_or((&keys.sk_pi, &keys.sk_pr), |m| (&m.sk_pi, &m.sk_pr));
        let mut id_i_body = vec![id_i.id_type.0, 0, 0, 0];
        id_i_body.extend_from_slice(&id_i.data);
        let octets_i = sa::signed_octets_int(&*keys.prf, sk_pi, &init.message1, &init.nr, &id_i_body, int_auth.as_deref())?;
        let certs: Vec<&ike_wire::Cert<'_>> = p.certs().collect();
        let no_ppk_auth;
        let auth = match &decision {
            // §3: "the same method as in the AUTH payload".
            PpkDecision::NoPpkAuth(data) => {
                no_ppk_auth = ike_wire::Auth { method: auth.method, data: data.as_slice().into() };
                &no_ppk_auth
            }
            _ => auth,
        };
        sa::check_scheme_allowed(auth, &conn.ext.signature_schemes)?;
        let peer_methods = peer_auth_methods(p.notify(NotifyType::SUPPORTED_AUTH_METHODS));
        let peer_schemes = peer_methods.as_deref().map(crate::auth_methods::schemes).unwrap_or_default();
        let id_r = sa::id_body(&conn.local_id);
        let octets_r = sa::signed_octets_int(&*keys.prf, sk_pr, &init.message2, &init.ni, &id_r, int_auth.as_deref())?;
        let remote_sig = matches!(conn.remote_auth, RemoteAuth::PubKey { .. });
        let local_sig = matches!(conn.local_auth, LocalAuth::PubKey { .. });
        let (verified, signed) = match work {
            Signatures::MayDefer if ctx.config.defer_signatures && (remote_sig || local_sig) => {
                // The signatures go to a job (crate::auth_job); a PSK is
                // checked here, its failure answered at once.
                if !remote_sig {
                    sa::verify_auth(&conn.remote_auth, &*keys.prf, &octets_i, auth, &certs, &peer_id, ctx.unix)?;
                }
                let mut seed = [0u8; 32];
                ctx.rng.fill_bytes(&mut seed);
                ctx.out.jobs.push_back(AuthJob {
                    ike_sa: self.handle,
                    message_id,
                    phase: Phase::Respond,
                    conn: conn.clone(),
                    verify: remote_sig.then(|| VerifyWork {
                        octets: octets_i.clone(),
                        auth: ike_wire::Auth { method: auth.method, data: auth.data.to_vec().into() },
                        certs: certs.iter().map(|c| ike_wire::Cert { encoding: c.encoding, data: c.data.to_vec().into() }).collect(),
                        peer_id: peer_id.clone(),
                        unix: ctx.unix,
                    }),
                    sign: local_sig
                        .then(|| SignWork { octets: octets_r.clone(), peer_hashes: self.peer_hashes.clone(), peer_schemes: peer_schemes.clone(), seed })
                        .into_iter()
                        .collect(),
                });
                return Ok(Reply { payloads: Vec::new(), then: Then::Defer });
            }
            // A result computed for this request and this connection (a
            // reload in between makes it stale: redone inline).
            Signatures::Done(d) if d.fits(Phase::Respond, message_id, &conn) => (d.verified, d.signed.into_iter().next()),
            _ => (None, None),
        };
        match verified {
            Some(r) => r?,
            None => sa::verify_auth(&conn.remote_auth, &*keys.prf, &octets_i, auth, &certs, &peer_id, ctx.unix)?,
        }
        let (auth_r, certs_r, scheme) = match signed {
            Some(r) => r?,
            None => sa::make_auth_with(&conn.local_auth, &*keys.prf, &octets_r, &self.peer_hashes, &peer_schemes, ctx.rng)?,
        };
        self.ext.peer_auth_methods = peer_methods;
        self.ext.auth_scheme = scheme;
        let rfc8784_ppk = mixed.is_some();
        if let Some(m) = mixed {
            // Before the Child SA's KEYMAT: it comes from the mixed SK_d.
            if let Some(k) = self.keys.as_mut() {
                m.apply(k);
            }
            self.ppk_used = true;
        }
        let mut out = vec![Payload::IdR(sa::id_payload(&conn.local_id))];
        if ctx.config.mid_sync {
            // RFC 6311 §3 (see the initiator's request).
            out.push(notify_payload(NotifyType::IKEV2_MESSAGE_ID_SYNC_SUPPORTED));
            self.mid_sync = true;
        }
        out.extend(certs_r.into_iter().map(Payload::Cert));
        out.push(Payload::Auth(auth_r));
        if rfc8784_ppk {
            // §3: the responder's PPK_IDENTITY carries no PPK_ID.
            out.push(notify_payload(NotifyType::PPK_IDENTITY));
        }
        self.establish_responder(ctx, conn, peer_id, payloads, out)
    }

    /// The responder's IKE_AUTH once the initiator is authenticated (by
    /// its AUTH, or by EAP and the MSK-based AUTH): the CP reply, the first
    /// Child SA from `payloads` (the request that carried them), the IKE SA
    /// Established. `out` holds what goes before (IDr, CERT, AUTH, ...).
    pub(super) fn establish_responder(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: Arc<ConnectionConfig>,
        peer_id: Identity,
        payloads: &[Payload<'_>],
        mut out: Vec<Payload<'static>>,
    ) -> Result<Reply, ProtoError> {
        let p = Payloads(payloads);
        let IkeState::HalfOpen(init) = &self.state else { return Err(ProtoError::MessageId) };
        let (ni, nr) = (init.ni.clone(), init.nr.clone());
        self.conn = conn.clone();
        self.remote_id = Some(peer_id.clone());
        // RFC 4555 §3.3: MOBIKE_SUPPORTED in the last IKE_AUTH response.
        out.extend(self.negotiate_mobike_responder(&p));
        if p.notify(NotifyType::INITIAL_CONTACT).is_some() {
            ctx.out.effects.push(Effect::InitialContact { keep: self.handle, remote_id: peer_id.clone() });
        }
        // §3.15: CFG_REPLY only in answer to CFG_REQUEST.
        let mut dns = Vec::new();
        let cp_result = match p.cp().filter(|c| c.cfg_type == CfgType::CFG_REQUEST) {
            Some(cp) => {
                let r = self.assign_config(ctx, cp, &mut dns).map(|c| {
                    out.push(Payload::Cp(c));
                });
                // RFC 8983 §5 Table 1: the families we assign, whenever an
                // address was asked for (the error case carries its own).
                if !matches!(r, Err(ProtoError::AddressFamilyNotAllowed(_))) {
                    out.extend(self.allowed_notifies(cp).into_iter().map(notify_payload));
                }
                r
            }
            None => Ok(()),
        };
        let child = match (cp_result, p.sa(), p.ts_i(), p.ts_r()) {
            (Err(e), _, _, _) => Err(e),
            (Ok(()), Some(sa_i), Some(ts_i), Some(ts_r)) => {
                let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
                let hcp = self.hcp_data(payloads);
                self.respond_child(ctx, sa_i, ts_i, ts_r, None, &ni, &nr, None, transport, Via::IkeAuth, hcp)
            }
            // RFC 6023 childless, or a malformed triple: no Child SA.
            (Ok(()), _, _, _) => Err(ProtoError::NoProposalChosen),
        };
        self.state = IkeState::Established;
        self.rekey_at = ike_rekey_time(&conn, ctx);
        ctx.out.events.push_back(Event::IkeSaUp {
            ike_sa: self.handle,
            connection: conn.name.clone(),
            local: self.local,
            remote: self.remote,
            local_id: conn.local_id.clone(),
            remote_id: peer_id,
            virtual_ips: self.leases.clone(),
            dns,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            ppk: self.ppk_used,
        });
        if !self.ext.dns_domains.is_empty() {
            ctx.out.events.push_back(Event::SplitDns { ike_sa: self.handle, domains: self.ext.dns_domains.clone(), refused: Vec::new() });
        }
        match child {
            Ok((payloads, install)) => {
                out.extend(payloads);
                self.install_child(ctx, *install);
            }
            Err(e) => {
                if let Some(n) = e.notify() {
                    ctx.out.events.push_back(Event::ChildSaFailed { ike_sa: self.handle, notify: n.notify_type });
                    out.push(Payload::Notify(n));
                }
            }
        }
        Ok(Reply::new(out))
    }
    pub(super) fn process_ike_auth_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        task: IkeAuthTask,
        payloads: &[Payload<'_>],
        first: ike_wire::PayloadType,
        plain: &[u8],
        work: Signatures,
    ) {
        let peer_refused = Payloads(payloads).auth().is_none();
        match self.complete_ike_auth(ctx, task, payloads, first, plain, work) {
            Ok(()) => {}
            // §2.21.2: the responder's AUTH did not verify; tell it in an
            // INFORMATIONAL and delete, rather than leave it half-up.
            Err(ProtoError::AuthenticationFailed) if !peer_refused => {
                if self.start_delete_ike(ctx, DownReason::AuthenticationFailed, Some(NotifyType::AUTHENTICATION_FAILED)).is_err() {
                    self.close(ctx, DownReason::AuthenticationFailed);
                }
            }
            Err(ProtoError::AuthenticationFailed) => self.close(ctx, DownReason::AuthenticationFailed),
            Err(e) => self.close(ctx, DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type))),
        }
    }

    /// Checks and takes the IKE_AUTH response; `Ok` also when the check of
    /// the responder's signature went to a job (the task waits in
    /// `active`, the response in `pending_complete`).
    pub(super) fn complete_ike_auth(
        &mut self,
        ctx: &mut Ctx<'_>,
        mut task: IkeAuthTask,
        payloads: &[Payload<'_>],
        first: ike_wire::PayloadType,
        plain: &[u8],
        work: Signatures,
    ) -> Result<(), ProtoError> {
        let p = Payloads(payloads);
        if p.auth().is_none() {
            // An error answer (§2.21.2): AUTHENTICATION_FAILED or similar.
            return match p.error_notify() {
                Some(NotifyType::AUTHENTICATION_FAILED) => Err(ProtoError::AuthenticationFailed),
                Some(NotifyType::NO_PROPOSAL_CHOSEN) => Err(ProtoError::NoProposalChosen),
                _ => Err(ProtoError::PayloadCount(ike_wire::PayloadType::AUTH)),
            };
        }
        message::check(payloads, message::IKE_AUTH_RESPONSE)?;
        let (Some(id_r), Some(auth)) = (p.id_r(), p.auth()) else {
            return Err(ProtoError::PayloadCount(ike_wire::PayloadType::IDR));
        };
        let peer_id = Identity::from_wire(id_r.id_type, &id_r.data).ok_or(ProtoError::AuthenticationFailed)?;
        if self.conn.remote_id.as_ref().is_some_and(|r| *r != peer_id) {
            return Err(ProtoError::AuthenticationFailed);
        }
        // RFC 8784 §3: N(PPK_IDENTITY) in the response says the responder
        // used the PPK (its content is ignored); without it, a mandatory
        // PPK fails, an optional one was dropped via NO_PPK_AUTH. The
        // mixed keys are taken on once the AUTH verified.
        let use_ppk = match (&task.ppk, p.notify(NotifyType::PPK_IDENTITY).is_some()) {
            (Some(_), true) => true,
            (Some(_), false) if self.conn.ppk.as_ref().is_some_and(|c| c.required) => return Err(ProtoError::AuthenticationFailed),
            _ => false,
        };
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let sk_pr = match &task.ppk {
            Some(m) if use_ppk => &m.sk_pr,
            _ => &keys.sk_pr,
        };
        let mut id_r_body = vec![id_r.id_type.0, 0, 0, 0];
        id_r_body.extend_from_slice(&id_r.data);
        let int_auth = task.init.int_auth_for(task.message_id);
        let octets = sa::signed_octets_int(&*keys.prf, sk_pr, &task.init.message2, &task.init.ni, &id_r_body, int_auth.as_deref())?;
        let certs: Vec<&ike_wire::Cert<'_>> = p.certs().collect();
        sa::check_scheme_allowed(auth, &self.conn.ext.signature_schemes)?;
        let remote_sig = matches!(self.conn.remote_auth, RemoteAuth::PubKey { .. });
        let verified = match work {
            Signatures::MayDefer if ctx.config.defer_signatures && remote_sig => {
                ctx.out.jobs.push_back(AuthJob {
                    ike_sa: self.handle,
                    message_id: task.message_id,
                    phase: Phase::Complete,
                    conn: self.conn.clone(),
                    verify: Some(VerifyWork {
                        octets,
                        auth: ike_wire::Auth { method: auth.method, data: auth.data.to_vec().into() },
                        certs: certs.iter().map(|c| ike_wire::Cert { encoding: c.encoding, data: c.data.to_vec().into() }).collect(),
                        peer_id,
                        unix: ctx.unix,
                    }),
                    sign: Vec::new(),
                });
                self.pending_complete = Some(Box::new((first, plain.to_vec(), task.message_id)));
                self.active = Some(Task::IkeAuth(Box::new(task)));
                return Ok(());
            }
            Signatures::Done(d) if d.fits(Phase::Complete, task.message_id, &self.conn) => d.verified,
            _ => None,
        };
        match verified {
            Some(r) => r?,
            None => sa::verify_auth(&self.conn.remote_auth, &*keys.prf, &octets, auth, &certs, &peer_id, ctx.unix)?,
        }
        if use_ppk {
            if let (Some(m), Some(k)) = (task.ppk.take(), self.keys.as_mut()) {
                m.apply(k);
            }
            self.ppk_used = true;
        }
        self.remote_id = Some(peer_id.clone());
        let mut dns = Vec::new();
        let mut vips = Vec::new();
        let mut split_dns = crate::split_dns::SplitDnsOutcome::default();
        for (t, f) in [(NotifyType::IP4_ALLOWED, Family::V4), (NotifyType::IP6_ALLOWED, Family::V6)] {
            if p.notify(t).is_some() {
                self.ext.peer_allowed.push(f);
            }
        }
        if let Some(cp) = p.cp().filter(|c| c.cfg_type == CfgType::CFG_REPLY) {
            for a in &cp.attributes {
                match a.attr_type {
                    CfgAttrType::INTERNAL_IP4_ADDRESS => {
                        if let Ok(b) = <[u8; 4]>::try_from(&a.value[..]) {
                            vips.push(IpAddr::V4(Ipv4Addr::from(b)));
                        }
                    }
                    CfgAttrType::INTERNAL_IP6_ADDRESS if a.value.len() == 17 => {
                        if let Ok(b) = <[u8; 16]>::try_from(&a.value[..16]) {
                            vips.push(IpAddr::V6(Ipv6Addr::from(b)));
                        }
                    }
                    CfgAttrType::INTERNAL_IP4_DNS => {
                        if let Ok(b) = <[u8; 4]>::try_from(&a.value[..]) {
                            dns.push(IpAddr::V4(Ipv4Addr::from(b)));
                        }
                    }
                    CfgAttrType::INTERNAL_IP6_DNS => {
                        if let Ok(b) = <[u8; 16]>::try_from(&a.value[..]) {
                            dns.push(IpAddr::V6(Ipv6Addr::from(b)));
                        }
                    }
                    _ => {}
                }
            }
            // RFC 8598 §3.3: domains need a DNS server to go to.
            if !dns.is_empty() {
                let full_tunnel = self.conn.child.remote_ts.iter().any(|t| *t == TrafficSelector::any_v4() || *t == TrafficSelector::any_v6());
                split_dns = crate::split_dns::accept_reply(&self.conn.ext.split_dns, &cp.attributes, full_tunnel);
                self.ext.dns_domains = split_dns.accepted.clone();
            }
        }
        self.negotiate_mobike_initiator(&p);
        self.state = IkeState::Established;
        self.rekey_at = ike_rekey_time(&self.conn, ctx);
        self.mid_sync = ctx.config.mid_sync;
        ctx.out.events.push_back(Event::IkeSaUp {
            ike_sa: self.handle,
            connection: self.conn.name.clone(),
            local: self.local,
            remote: self.remote,
            local_id: self.conn.local_id.clone(),
            remote_id: peer_id,
            virtual_ips: vips.clone(),
            dns,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            ppk: self.ppk_used,
        });
        if !split_dns.accepted.is_empty() || !split_dns.refused.is_empty() {
            ctx.out.events.push_back(Event::SplitDns { ike_sa: self.handle, domains: split_dns.accepted, refused: split_dns.refused });
        }
        let Some(mut child) = task.child else { return Ok(()) };
        if !vips.is_empty() {
            // Our side of the tunnel is the assigned address.
            child.ts_local = vips.iter().map(|a| TrafficSelector::host(*a)).collect();
        }
        let result = match (p.sa(), p.ts_i(), p.ts_r()) {
            (Some(sa_r), Some(ts_i), Some(ts_r)) => {
                let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
                let hcp = self.hcp_data(p.0);
                self.accept_child(ctx, &child, sa_r, ts_i, ts_r, None, &task.init.ni, &task.init.nr, None, transport, vips.is_empty(), Via::IkeAuth, hcp)
            }
            _ => Err(ProtoError::NoProposalChosen),
        };
        match result {
            Ok(install) => self.install_child(ctx, install),
            Err(e) => {
                ctx.alloc.release_child_spi(child.spi_in);
                let mut notify = p.error_notify().or_else(|| e.notify().map(|n| n.notify_type)).unwrap_or(NotifyType::NO_PROPOSAL_CHOSEN);
                if let Some(t) = self.address_family_refused(vips.is_empty()) {
                    notify = t;
                    self.follow_allowed_family(ctx);
                }
                ctx.out.events.push_back(Event::ChildSaFailed { ike_sa: self.handle, notify });
            }
        }
        Ok(())
    }

    /// RFC 8983: we asked for addresses, got none, and the responder's
    /// IPx_ALLOWED names only families we did not ask for: the status to
    /// report (IP4_ALLOWED or IP6_ALLOWED).
    pub(super) fn address_family_refused(&self, no_vips: bool) -> Option<NotifyType> {
        let asked = &self.conn.request_vip;
        let allowed = &self.ext.peer_allowed;
        if !no_vips || asked.is_empty() || allowed.is_empty() || allowed.iter().any(|f| asked.contains(f)) {
            return None;
        }
        Some(if allowed.contains(&Family::V4) { NotifyType::IP4_ALLOWED } else { NotifyType::IP6_ALLOWED })
    }

    /// RFC 8983 §5: a dual-stack initiator that asked for one family and
    /// was told only the other is assigned "MUST send a request for" it; the
    /// configuration payload only goes in IKE_AUTH, so on a new IKE SA.
    /// This one has no Child SA and is deleted. The new SA asks only for
    /// the allowed families and does not fall back again.
    pub(super) fn follow_allowed_family(&mut self, ctx: &mut Ctx<'_>) {
        if !self.conn.ext.dual_stack || !self.children.is_empty() {
            return;
        }
        let mut conn = (*self.conn).clone();
        conn.request_vip = self.ext.peer_allowed.clone();
        conn.ext.dual_stack = false;
        ctx.out.effects.push(Effect::Reinitiate { conn: Arc::new(conn), local: self.local, remote: self.remote });
        self.enqueue(Queued::Terminate);
    }

}
