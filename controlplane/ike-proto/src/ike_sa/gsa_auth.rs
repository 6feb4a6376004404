//! GSA_AUTH (RFC 9838 §2.3.1) in both roles: IKE_AUTH's authentication
//! (same AUTH octets, IntAuth after IKE_INTERMEDIATE, PSK or RFC 7427
//! signatures, computed inline) followed by the group registration instead
//! of a Child SA.
//!
//! ```text
//! GM   HDR(GSA_AUTH), SK{IDi, [CERT], [CERTREQ], [IDr], AUTH, IDg, [N(GROUP_SENDER)]} -->
//! GCKS                 <-- HDR(GSA_AUTH), SK{IDr, [CERT], AUTH, GSA, KD, [N(USE_TRANSPORT_MODE)]}
//!                      <-- HDR(GSA_AUTH), SK{IDr, [CERT], AUTH, N(error)}
//! ```
//!
//! Guarantees:
//! * The GCKS registers a member only after its AUTH verified, and answers
//!   a group refusal (INVALID_GROUP_ID, AUTHORIZATION_FAILED,
//!   REGISTRATION_FAILED, NO_PROPOSAL_CHOSEN without a KWA) authenticated,
//!   with its own AUTH, then closes the IKE SA.
//! * The GM takes the GSA and KD only after the GCKS's AUTH verified; keys
//!   are unwrapped with `GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2")`
//!   (§3.1.1) and the IKE SA's KWA.
//! * By convention (§2.3.3) the GCKS closes the registration SA, after
//!   `registration_linger`, unless the group keeps it for GSA_INBAND_REKEY.
use ike_wire::{ExchangeType, Notify, NotifyType, Payload};

use super::{notify_payload, peer_auth_methods, IkeSa, IkeState, InitData, Queued, Reply, Task, Then};
use crate::config::Identity;
use crate::error::ProtoError;
use crate::event::{DownReason, Event};
use crate::group::{GroupId, GroupMembership};
use crate::message::{self, Payloads};
use crate::sa::{self, Ctx};

/// The initiator's GSA_AUTH in flight.
pub struct GsaAuthTask {
    pub(super) init: InitData,
    pub(super) message_id: u32,
    pub(super) membership: GroupMembership,
}

/// N(GROUP_SENDER) (§4.7.4): a 4-octet count of Sender-IDs wanted.
pub(super) fn group_sender_notify(count: u32) -> Payload<'static> {
    Payload::Notify(Notify::new(NotifyType::GROUP_SENDER, count.to_be_bytes().to_vec()))
}

/// The Sender-IDs a request asks for (0 without N(GROUP_SENDER)).
pub(super) fn sids_wanted(p: &Payloads<'_, '_>) -> Result<u32, ProtoError> {
    match p.notify(NotifyType::GROUP_SENDER) {
        None => Ok(0),
        Some(n) => <[u8; 4]>::try_from(&n.data[..]).map(u32::from_be_bytes).map_err(|_| ProtoError::Invalid("GROUP_SENDER data")),
    }
}

impl IkeSa {
    /// The default KWK of this IKE SA and its KWA (§3.1.1).
    pub(super) fn registration_kwk(&self) -> Result<(ike_wire::KwaId, ike_crypto::Secret), ProtoError> {
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let kwa = keys.suite.kwa.ok_or(ProtoError::NoProposalChosen)?;
        let len = ike_crypto::keywrap::kwk_len(kwa.0).ok_or(ProtoError::NoProposalChosen)?;
        Ok((kwa, crate::group::registration_kwk(&*keys.prf, &keys.sk_d, len)?))
    }

    /// GM: `HDR, SK{IDi, [CERT+], [CERTREQ], [IDr], AUTH, IDg, [N(GROUP_SENDER)]}`.
    pub(super) fn start_gsa_auth(&mut self, ctx: &mut Ctx<'_>, init: InitData, membership: GroupMembership) -> Result<(), ProtoError> {
        let conn = self.conn.clone();
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        if keys.suite.kwa.is_none() {
            // §2.1: registration needs the KWA transform from IKE_SA_INIT.
            return Err(ProtoError::NoProposalChosen);
        }
        let id_i = sa::id_body(&conn.local_id);
        let message_id = self.xm.next_request_id();
        let int_auth = init.int_auth_for(message_id);
        let octets = sa::signed_octets_int(&*keys.prf, &keys.sk_pi, &init.message1, &init.nr, &id_i, int_auth.as_deref())?;
        let peer_schemes = self.ext.peer_auth_methods.as_deref().map(crate::auth_methods::schemes).unwrap_or_default();
        let (auth, certs, scheme) = sa::make_auth_with(&conn.local_auth, &*keys.prf, &octets, &self.peer_hashes, &peer_schemes, ctx.rng)?;
        self.ext.auth_scheme = scheme;
        let mut p = vec![Payload::IdI(sa::id_payload(&conn.local_id))];
        p.extend(certs.into_iter().map(Payload::Cert));
        if let Some(req) = sa::certreq(&conn.remote_auth) {
            p.push(Payload::CertReq(req));
        }
        if let Some(r) = &conn.remote_id {
            p.push(Payload::IdR(sa::id_payload(r)));
        }
        p.push(Payload::Auth(auth));
        p.push(Payload::IdG(membership.group.to_wire()));
        if membership.sender_ids > 0 {
            p.push(group_sender_notify(membership.sender_ids));
        }
        self.send_request(ctx, ExchangeType::GSA_AUTH, &p)?;
        self.active = Some(Task::GsaAuth(Box::new(GsaAuthTask { init, message_id, membership })));
        Ok(())
    }

    /// GCKS: authenticate, authorize, register.
    pub(super) fn respond_gsa_auth(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>], message_id: u32) -> Result<Reply, ProtoError> {
        message::check(payloads, message::GSA_AUTH_REQUEST)?;
        let p = Payloads(payloads);
        let id_i = p.id_i().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::IDI))?;
        let auth = p.auth().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::AUTH))?;
        let id_g = p.id_g().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::IDG))?;
        let peer_id = Identity::from_wire(id_i.id_type, &id_i.data).ok_or(ProtoError::AuthenticationFailed)?;
        let wanted_local = p.id_r().and_then(|i| Identity::from_wire(i.id_type, &i.data));
        let conn = ctx
            .config
            .connections
            .iter()
            .find(|c| c.remote_id.as_ref().map_or(true, |r| *r == peer_id) && wanted_local.as_ref().map_or(true, |l| *l == c.local_id))
            .cloned()
            .ok_or(ProtoError::AuthenticationFailed)?;
        let IkeState::HalfOpen(init) = &self.state else { return Err(ProtoError::MessageId) };
        if !init.pending_ke.is_empty() {
            return Err(ProtoError::Invalid("GSA_AUTH before the additional key exchanges"));
        }
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let int_auth = init.int_auth_for(message_id);
        let mut id_i_body = vec![id_i.id_type.0, 0, 0, 0];
        id_i_body.extend_from_slice(&id_i.data);
        let octets_i = sa::signed_octets_int(&*keys.prf, &keys.sk_pi, &init.message1, &init.nr, &id_i_body, int_auth.as_deref())?;
        sa::check_scheme_allowed(auth, &conn.ext.signature_schemes)?;
        let certs: Vec<&ike_wire::Cert<'_>> = p.certs().collect();
        sa::verify_auth(&conn.remote_auth, &*keys.prf, &octets_i, auth, &certs, &peer_id, ctx.unix)?;
        let peer_methods = peer_auth_methods(p.notify(NotifyType::SUPPORTED_AUTH_METHODS));
        let peer_schemes = peer_methods.as_deref().map(crate::auth_methods::schemes).unwrap_or_default();
        let id_r = sa::id_body(&conn.local_id);
        let octets_r = sa::signed_octets_int(&*keys.prf, &keys.sk_pr, &init.message2, &init.ni, &id_r, int_auth.as_deref())?;
        let (auth_r, certs_r, scheme) = sa::make_auth_with(&conn.local_auth, &*keys.prf, &octets_r, &self.peer_hashes, &peer_schemes, ctx.rng)?;
        self.ext.peer_auth_methods = peer_methods;
        self.ext.auth_scheme = scheme;
        self.conn = conn.clone();
        self.remote_id = Some(peer_id.clone());
        self.state = IkeState::Established;
        ctx.out.events.push_back(Event::IkeSaUp {
            ike_sa: self.handle,
            connection: conn.name.clone(),
            local: self.local,
            remote: self.remote,
            local_id: conn.local_id.clone(),
            remote_id: peer_id.clone(),
            virtual_ips: Vec::new(),
            dns: Vec::new(),
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            ppk: false,
        });
        let mut out = vec![Payload::IdR(sa::id_payload(&conn.local_id))];
        out.extend(certs_r.into_iter().map(Payload::Cert));
        out.push(Payload::Auth(auth_r));
        let group = GroupId::from_wire(id_g);
        match self.register_member(ctx, &group, &peer_id, sids_wanted(&p)?) {
            Ok(reg) => {
                out.extend(reg);
                Ok(Reply::new(out))
            }
            Err(e) => {
                // §2.3.1: the refusal is authenticated (IDr, AUTH, N).
                let n = e.notify().map_or(NotifyType::REGISTRATION_FAILED, |n| n.notify_type);
                out.push(notify_payload(n));
                Ok(Reply { payloads: out, then: Then::Close(DownReason::Refused(n)) })
            }
        }
    }

    /// GCKS: the GSA, KD and mode notify of a registration (GSA_AUTH and
    /// GSA_REGISTRATION), or the refusal.
    pub(super) fn register_member(&mut self, ctx: &mut Ctx<'_>, group: &GroupId, member: &Identity, sids: u32) -> Result<Vec<Payload<'static>>, ProtoError> {
        let (kwa, kwk) = self.registration_kwk()?;
        // A connection naming groups lets its peers join those only.
        let allowed = self.conn.ext.groups.is_empty() || self.conn.ext.groups.iter().any(|m| &m.group == group);
        let result = match ctx.groups.gcks.groups.get_mut(group) {
            Some(_) if !allowed => Err(ProtoError::AuthorizationFailed),
            None => Err(ProtoError::InvalidGroupId),
            Some(g) => g.register(ctx.now, ctx.crypto, ctx.rng, &mut ctx.out.transmits, member, self.handle, sids, kwa, &kwk).map(|r| (r, g.cfg.inband_rekey, g.cfg.registration_linger)),
        };
        let (reg, inband, linger) = match result {
            Ok(r) => r,
            Err(e) => {
                let notify = e.notify().map(|n| n.notify_type);
                ctx.out.events.push_back(Event::GroupMemberRegistration { group: Some(group.clone()), member: member.clone(), sender_ids: Vec::new(), notify });
                return Err(e);
            }
        };
        ctx.out.events.push_back(Event::GroupMemberRegistration { group: Some(group.clone()), member: member.clone(), sender_ids: reg.sender_ids.clone(), notify: None });
        if !inband {
            // §2.3.4: close the registration SA after a short while.
            self.group_close_at = Some(ctx.now + linger);
        } else {
            self.group_close_at = None;
            self.inband_groups.push(group.clone());
        }
        let mut out = vec![Payload::Gsa(reg.gsa.to_wire()), Payload::Kd(reg.kd.to_wire())];
        if reg.transport {
            out.push(notify_payload(NotifyType::USE_TRANSPORT_MODE));
        }
        Ok(out)
    }

    /// GM: the GSA_AUTH response.
    pub(super) fn process_gsa_auth_response(&mut self, ctx: &mut Ctx<'_>, task: GsaAuthTask, payloads: &[Payload<'_>]) {
        match self.complete_gsa_auth(ctx, task, payloads) {
            Ok(()) => {}
            Err(ProtoError::AuthenticationFailed) => self.close(ctx, DownReason::AuthenticationFailed),
            Err(e) => self.close(ctx, DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type))),
        }
    }

    fn complete_gsa_auth(&mut self, ctx: &mut Ctx<'_>, task: GsaAuthTask, payloads: &[Payload<'_>]) -> Result<(), ProtoError> {
        let p = Payloads(payloads);
        if p.auth().is_none() {
            return Err(match p.error_notify() {
                Some(NotifyType::AUTHENTICATION_FAILED) | None => ProtoError::AuthenticationFailed,
                Some(t) => group_error(t),
            });
        }
        message::check(payloads, message::GSA_AUTH_RESPONSE)?;
        let (Some(id_r), Some(auth)) = (p.id_r(), p.auth()) else { return Err(ProtoError::PayloadCount(ike_wire::PayloadType::IDR)) };
        let peer_id = Identity::from_wire(id_r.id_type, &id_r.data).ok_or(ProtoError::AuthenticationFailed)?;
        if self.conn.remote_id.as_ref().is_some_and(|r| *r != peer_id) {
            return Err(ProtoError::AuthenticationFailed);
        }
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let mut id_r_body = vec![id_r.id_type.0, 0, 0, 0];
        id_r_body.extend_from_slice(&id_r.data);
        let int_auth = task.init.int_auth_for(task.message_id);
        let octets = sa::signed_octets_int(&*keys.prf, &keys.sk_pr, &task.init.message2, &task.init.ni, &id_r_body, int_auth.as_deref())?;
        sa::check_scheme_allowed(auth, &self.conn.ext.signature_schemes)?;
        let certs: Vec<&ike_wire::Cert<'_>> = p.certs().collect();
        sa::verify_auth(&self.conn.remote_auth, &*keys.prf, &octets, auth, &certs, &peer_id, ctx.unix)?;
        self.remote_id = Some(peer_id.clone());
        self.state = IkeState::Established;
        ctx.out.events.push_back(Event::IkeSaUp {
            ike_sa: self.handle,
            connection: self.conn.name.clone(),
            local: self.local,
            remote: self.remote,
            local_id: self.conn.local_id.clone(),
            remote_id: peer_id,
            virtual_ips: Vec::new(),
            dns: Vec::new(),
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            ppk: false,
        });
        self.take_registration(ctx, &task.membership, &p)?;
        // §2.3.2: the other groups of this connection, on this IKE SA.
        for m in self.conn.ext.groups.iter().skip(1) {
            self.queue.push_back(Queued::GsaRegistration(m.group.clone()));
        }
        Ok(())
    }

    /// GM: the GSA and KD of a registration response (GSA_AUTH or
    /// GSA_REGISTRATION).
    pub(super) fn take_registration(&mut self, ctx: &mut Ctx<'_>, membership: &GroupMembership, p: &Payloads<'_, '_>) -> Result<(), ProtoError> {
        if let Some(t) = p.error_notify() {
            return Err(group_error(t));
        }
        let (Some(gsa), Some(kd)) = (p.gsa(), p.kd()) else { return Err(ProtoError::PayloadCount(ike_wire::PayloadType::GSA)) };
        let gsa = crate::group::policy::GsaContent::from_wire(gsa)?;
        let kd = crate::group::policy::KdContent::from_wire(kd)?;
        let transport = p.notify(NotifyType::USE_TRANSPORT_MODE).is_some();
        let (kwa, kwk) = self.registration_kwk()?;
        ctx.groups.gm.registered(
            ctx.now,
            ctx.crypto,
            membership,
            self.conn.clone(),
            (self.local, self.remote),
            self.handle,
            &gsa,
            &kd,
            transport,
            kwa,
            &kwk,
            &mut ctx.out.events,
        )
    }
}

/// The error a GCKS's refusal notify stands for.
pub(super) fn group_error(t: NotifyType) -> ProtoError {
    match t {
        NotifyType::INVALID_GROUP_ID => ProtoError::InvalidGroupId,
        NotifyType::AUTHORIZATION_FAILED => ProtoError::AuthorizationFailed,
        NotifyType::REGISTRATION_FAILED => ProtoError::RegistrationFailed,
        NotifyType::AUTHENTICATION_FAILED => ProtoError::AuthenticationFailed,
        _ => ProtoError::NoProposalChosen,
    }
}
