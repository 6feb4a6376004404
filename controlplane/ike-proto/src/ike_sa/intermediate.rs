//! RFC 9242 IKE_INTERMEDIATE exchanges carrying RFC 9370 additional key
//! exchanges in the initial exchanges, and the IntAuth chain they feed into
//! both AUTH payloads (RFC 9242 §3.3).
//!
//! Guarantees:
//! * Each exchange is protected with the keys of the previous generation;
//!   IntAuth_i/IntAuth_r are extended with that generation's SK_pi/SK_pr
//!   over the message's `A | P` (the unfragmented form even when it was
//!   sent or received in RFC 7383 fragments, via ike-wire's
//!   `int_auth_octets`); only then are the keys derived again
//!   (`SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)`, RFC 9370 §2.2.2).
//! * The responder switches keys only after its response is out, so a
//!   retransmitted request is answered from the cache with the old keys.
//! * A responder with no additional key exchange pending answers an empty
//!   IKE_INTERMEDIATE request (RFC 9242 §3 allows them; libreswan 5.2's
//!   `intermediate=yes` sends one) with an empty response, at most
//!   `MAX_EMPTY_INTERMEDIATE` times; it joins the IntAuth chain.
//! * RFC 9867 (PPK in IKE_INTERMEDIATE, once N(USE_PPK_INT) went both ways
//!   in IKE_SA_INIT): the last IKE_INTERMEDIATE exchange (that of the last
//!   additional key exchange, or one of its own when there is none; as
//!   libreswan does) carries the initiator's N(PPK_IDENTITY_KEY, PPK_ID |
//!   PPK Confirmation) and, when the responder has that PPK and the
//!   confirmation matches, the responder's N(PPK_IDENTITY, PPK_ID). Both
//!   then derive every key again from `SKEYSEED' = prf+ (PPK, SK_d)`, after
//!   the exchange's additional key exchange and after IntAuth took in the
//!   exchange with the old keys. The PPK_ID is only ever sent under SK, so
//!   it is as confidential as the (possibly post-quantum) key exchanges
//!   before it, and IKE_AUTH runs under PPK-derived keys. No PPK in common:
//!   the keys stay; a mandatory PPK ends the IKE SA (the responder answers
//!   AUTHENTICATION_FAILED, RFC 9867 as RFC 8784 §3).
//! * Bad KE data ends the IKE SA: the responder answers INVALID_SYNTAX
//!   (FIPS 203 §7.2 check of an ML-KEM key), the initiator stops before
//!   IKE_AUTH (§7.3 ciphertext check), per draft-ietf-ipsecme-ikev2-mlkem.
use ike_wire::{ExchangeType, Ke, KeId, NotifyType, Payload};

use super::{IkeSa, IkeState, InitData, KeyUpdate, PpkInt, Reply, Task, Then};
use ike_crypto::ke::KeyExchange;
use ike_crypto::keys::{ppk_confirmation, PPK_CONFIRMATION_LEN};
use ike_wire::Notify;
use crate::config::Ppk;
use crate::error::ProtoError;
use crate::event::DownReason;
use crate::message::{self, Payloads};
use crate::sa::Ctx;

pub struct IntermediateTask {
    pub(super) init: InitData,
    /// The RFC 9370 additional key exchange of this exchange, if any.
    pub(super) ke: Option<Box<dyn KeyExchange>>,
    /// RFC 9867: the PPK offered in this exchange's N(PPK_IDENTITY_KEY).
    pub(super) ppk: Option<Ppk>,
    /// IntAuth_i including our request (computed with the keys that
    /// protected it).
    pub(super) int_auth_i: Vec<u8>,
}

impl InitData {
    pub(super) fn new(ni: Vec<u8>, nr: Vec<u8>, message1: Vec<u8>, message2: Vec<u8>, pending_ke: Vec<KeId>) -> Self {
        Self { ni, nr, message1, message2, pending_ke: pending_ke.into(), int_auth: None, empty_intermediates: 0, ppk_int: PpkInt::Off }
    }

    /// RFC 9242 §3.3.2: `IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID`,
    /// appended to both AUTH payloads' signed octets.
    pub(super) fn int_auth_for(&self, ike_auth_mid: u32) -> Option<Vec<u8>> {
        self.int_auth.as_ref().map(|(i, r)| [&i[..], &r[..], &ike_auth_mid.to_be_bytes()[..]].concat())
    }
}

/// Responder: IKE_INTERMEDIATE exchanges without a key exchange accepted
/// before IKE_AUTH.
const MAX_EMPTY_INTERMEDIATE: u8 = 4;

/// One link of the RFC 9242 §3.3.1 chain: `prf(SK_p, [previous |] A | P)`
/// with the SK_p of the keys that protected the message.
fn int_auth_link(prf: &dyn ike_crypto::prf::Prf, sk_p: &[u8], previous: Option<&[u8]>, octets: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2);
    if let Some(p) = previous {
        parts.push(p);
    }
    parts.push(octets);
    Ok(prf.prf(sk_p, &parts)?.to_vec())
}

/// RFC 9242 §3.3.2 `A | P` of an IKE_INTERMEDIATE message: `message` is it
/// (or its fragment 1, from the IKE header on), `plain` its inner payloads;
/// IV and ICV lengths from the SK protection that sealed it.
fn int_auth_octets(message: &[u8], sk: &dyn ike_crypto::sk::SkProtection, plain: &[u8]) -> Result<Vec<u8>, ProtoError> {
    Ok(ike_wire::int_auth_octets(message, sk.iv_len(), sk.icv_len(), plain)?)
}

/// RFC 9867: the PPK_IDENTITY_KEY notification data, `PPK_ID | PPK
/// Confirmation` (PPK_ID with its RFC 8784 type octet, the confirmation
/// [`PPK_CONFIRMATION_LEN`] octets).
fn ppk_identity_key(keys: &crate::sa::IkeKeys, ppk: &Ppk, init: &InitData, spi_i: u64, spi_r: u64) -> Result<Vec<u8>, ProtoError> {
    let mut data = ppk.wire_id();
    data.extend_from_slice(&ppk_confirmation(&*keys.prf, &ppk.secret, &init.ni, &init.nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes())?);
    Ok(data)
}

impl IkeSa {
    /// Whether the IKE_INTERMEDIATE exchange about to run (its additional
    /// key exchange, if any, already taken off `pending_ke`) is the one
    /// that carries the RFC 9867 PPK: the last one.
    fn ppk_exchange_now(init: &InitData) -> bool {
        init.ppk_int == PpkInt::Pending && init.pending_ke.is_empty()
    }

    /// `HDR, SK {[KEi(n),] [N(PPK_IDENTITY_KEY)]}`, protected with the
    /// current keys: the next additional key exchange and, in the last
    /// exchange, the RFC 9867 PPK.
    pub(super) fn start_intermediate(&mut self, ctx: &mut Ctx<'_>, init: InitData, method: Option<KeId>) -> Result<(), ProtoError> {
        let ke = match method {
            Some(m) => Some(ctx.crypto.key_exchange(m.0, ctx.rng)?),
            None => None,
        };
        let mut p = Vec::new();
        if let (Some(ke), Some(m)) = (&ke, method) {
            p.push(Payload::Ke(Ke { ke_method: m, data: ke.public_key().to_vec().into() }));
        }
        // RFC 9867: our PPK (the first configured, as RFC 8784 sends it).
        let ppk = if Self::ppk_exchange_now(&init) { self.conn.ppk.as_ref().and_then(|c| c.keys.first().cloned()) } else { None };
        if let Some(k) = &ppk {
            let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
            p.push(Payload::Notify(Notify::new(NotifyType::PPK_IDENTITY_KEY, ppk_identity_key(keys, k, &init, self.spi_i, self.spi_r)?)));
        }
        let id = self.xm.next_request_id();
        self.send_request(ctx, ExchangeType::IKE_INTERMEDIATE, &p)?;
        let first = self.xm.outstanding(id).and_then(|o| o.packets.first()).ok_or(ProtoError::MessageId)?;
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let (_, plain) = ike_wire::emit_inner(&p)?;
        let octets = int_auth_octets(first, &*keys.outbound, &plain)?;
        let int_auth_i = int_auth_link(&*keys.prf, &keys.sk_pi, init.int_auth.as_ref().map(|a| &a.0[..]), &octets)?;
        self.active = Some(Task::Intermediate(Box::new(IntermediateTask { init, ke, ppk, int_auth_i })));
        Ok(())
    }

    pub(super) fn process_intermediate_response(&mut self, ctx: &mut Ctx<'_>, task: IntermediateTask, payloads: &[Payload<'_>], first_bytes: &[u8], plain: &[u8]) {
        let IntermediateTask { mut init, ke, ppk, int_auth_i } = task;
        let p = Payloads(payloads);
        if let Some(t) = p.error_notify() {
            self.close(ctx, match t {
                NotifyType::AUTHENTICATION_FAILED => DownReason::AuthenticationFailed,
                t => DownReason::Refused(t),
            });
            return;
        }
        let ppk_here = Self::ppk_exchange_now(&init);
        let updated = (|| {
            let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
            let octets = int_auth_octets(first_bytes, &*keys.inbound, plain)?;
            let int_auth_r = int_auth_link(&*keys.prf, &keys.sk_pr, init.int_auth.as_ref().map(|a| &a.1[..]), &octets)?;
            let mut new = match &ke {
                Some(ke) => {
                    message::check(payloads, message::IKE_INTERMEDIATE)?;
                    let ke_r = p.ke().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
                    if ke_r.ke_method.0 != ke.method() {
                        return Err(ProtoError::Invalid("KE method of the IKE_INTERMEDIATE response"));
                    }
                    // ML-KEM: the FIPS 203 §7.3 ciphertext check; a failure
                    // ends the IKE SA here, before any IKE_AUTH
                    // (draft-ietf-ipsecme-ikev2-mlkem §4).
                    let shared = ke.compute_shared(&ke_r.data)?;
                    Some(keys.additional_ke(ctx.crypto, &shared, &init.ni, &init.nr, self.spi_i, self.spi_r, self.role)?)
                }
                None => {
                    message::check(payloads, &[])?;
                    None
                }
            };
            let mut outcome = None;
            if ppk_here {
                // RFC 9867: N(PPK_IDENTITY) names the PPK the responder took
                // (one we offered); without it, it has none of ours.
                outcome = Some(match (p.notify(NotifyType::PPK_IDENTITY), &ppk) {
                    (Some(n), Some(k)) if n.data[..] == k.wire_id()[..] => {
                        let base = new.as_ref().unwrap_or(keys);
                        new = Some(base.with_ppk(ctx.crypto, &k.secret, &init.ni, &init.nr, self.spi_i, self.spi_r, self.role)?);
                        PpkInt::Used(k.wire_id())
                    }
                    (Some(_), _) => return Err(ProtoError::Invalid("PPK_IDENTITY names a PPK not offered")),
                    (None, _) if self.conn.ppk.as_ref().is_some_and(|c| c.required) => return Err(ProtoError::AuthenticationFailed),
                    (None, _) => PpkInt::NotUsed,
                });
            }
            Ok((new, int_auth_r, outcome))
        })();
        match updated {
            Ok((keys, int_auth_r, outcome)) => {
                if let Some(keys) = keys {
                    self.keys = Some(keys);
                }
                if let Some(o) = outcome {
                    self.ppk_used = matches!(o, PpkInt::Used(_));
                    init.ppk_int = o;
                }
                init.int_auth = Some((int_auth_i, int_auth_r));
                self.start_next_initial_exchange(ctx, init);
            }
            Err(ProtoError::AuthenticationFailed) => self.close(ctx, DownReason::AuthenticationFailed),
            Err(e) => self.close(ctx, DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type))),
        }
    }

    /// Responder, RFC 9867: the first of the initiator's PPK_IDENTITY_KEY
    /// notifications naming a PPK one of our connections has (and accepts
    /// in IKE_INTERMEDIATE) whose confirmation matches. Malformed ones
    /// (no room for the confirmation) are skipped.
    fn choose_ppk_int(&self, ctx: &Ctx<'_>, init: &InitData, p: &Payloads<'_, '_>) -> Result<Option<Ppk>, ProtoError> {
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        for n in p.notifies().filter(|n| n.notify_type == NotifyType::PPK_IDENTITY_KEY) {
            let Some(split) = n.data.len().checked_sub(PPK_CONFIRMATION_LEN).filter(|&s| s > 1) else { continue };
            let (id, confirmation) = n.data.split_at(split);
            let candidates = ctx.config.connections.iter().filter_map(|c| c.ppk.as_ref()).filter(|c| c.exchange.intermediate());
            for c in candidates {
                if let Some(k) = c.find(id) {
                    if ppk_identity_key(keys, k, init, self.spi_i, self.spi_r)?[split..] == *confirmation {
                        return Ok(Some(k.clone()));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Responder, RFC 9867: what the PPK exchange answers and the keys
    /// after it (`base`: the keys after this exchange's additional key
    /// exchange, if any).
    fn respond_ppk_int(&self, ctx: &Ctx<'_>, init: &InitData, p: &Payloads<'_, '_>, base: Option<&crate::sa::IkeKeys>) -> Result<(Option<Payload<'static>>, Option<crate::sa::IkeKeys>, PpkInt), ProtoError> {
        match self.choose_ppk_int(ctx, init, p)? {
            Some(k) => {
                let keys = base.or(self.keys.as_ref()).ok_or(ProtoError::Invalid("no keys"))?;
                let new = keys.with_ppk(ctx.crypto, &k.secret, &init.ni, &init.nr, self.spi_i, self.spi_r, self.role)?;
                Ok((Some(Payload::Notify(Notify::new(NotifyType::PPK_IDENTITY, k.wire_id()))), Some(new), PpkInt::Used(k.wire_id())))
            }
            // No PPK in common: refused now if the connection IKE_SA_INIT
            // chose demands one (IKE_AUTH checks the one the identities
            // choose either way).
            None if self.conn.ppk.as_ref().is_some_and(|c| c.required) => Err(ProtoError::AuthenticationFailed),
            None => Ok((None, None, PpkInt::NotUsed)),
        }
    }

    /// Responder: `HDR, SK {KEr(n)}` for the next pending additional key
    /// exchange. The keys change once the response is out
    /// ([`Self::finish_intermediate`]): the response itself is protected
    /// with the keys the request came with.
    pub(super) fn respond_intermediate(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>], request_bytes: &[u8], plain: &[u8]) -> Result<Reply, ProtoError> {
        let IkeState::HalfOpen(init) = &self.state else { return Err(ProtoError::MessageId) };
        let p = Payloads(payloads);
        // RFC 9867: the PPK goes with the last additional key exchange.
        let ppk_here = init.ppk_int == PpkInt::Pending && init.pending_ke.len() <= 1;
        let Some(&method) = init.pending_ke.front() else {
            // RFC 9242 §3: the initiator may run IKE_INTERMEDIATE for
            // other purposes (libreswan 5.2 sends one empty request with
            // `intermediate=yes`, and the RFC 9867 PPK may come in one of
            // its own). No payload but notifies goes in it; answered with
            // the PPK's outcome or empty, IntAuth extended, the keys
            // changed only by a PPK. Bounded: §3 asks the responder to
            // limit the number of exchanges.
            if init.empty_intermediates >= MAX_EMPTY_INTERMEDIATE {
                return Err(ProtoError::Invalid("too many IKE_INTERMEDIATE exchanges"));
            }
            message::check(payloads, &[])?;
            let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
            let octets = int_auth_octets(request_bytes, &*keys.inbound, plain)?;
            let int_auth_i = int_auth_link(&*keys.prf, &keys.sk_pi, init.int_auth.as_ref().map(|a| &a.0[..]), &octets)?;
            let (out, keys, ppk) = if ppk_here {
                let (n, k, o) = self.respond_ppk_int(ctx, init, &p, None)?;
                (n.into_iter().collect(), k, Some(o))
            } else {
                (Vec::new(), None, None)
            };
            if let IkeState::HalfOpen(init) = &mut self.state {
                init.empty_intermediates += 1;
            }
            return Ok(Reply { payloads: out, then: Then::KeyUpdate(Box::new(KeyUpdate { keys, additional_ke: false, ppk, int_auth_i })) });
        };
        message::check(payloads, message::IKE_INTERMEDIATE)?;
        let ke_i = Payloads(payloads).ke().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
        if ke_i.ke_method != method {
            return Err(ProtoError::Invalid("KE method of IKE_INTERMEDIATE"));
        }
        // ML-KEM: the FIPS 203 §7.2 checks of ek; a failure answers
        // INVALID_SYNTAX (draft-ietf-ipsecme-ikev2-mlkem §4).
        let responded = ctx.crypto.key_exchange_respond(method.0, &ke_i.data, ctx.rng)?;
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let octets = int_auth_octets(request_bytes, &*keys.inbound, plain)?;
        let int_auth_i = int_auth_link(&*keys.prf, &keys.sk_pi, init.int_auth.as_ref().map(|a| &a.0[..]), &octets)?;
        let mut new = keys.additional_ke(ctx.crypto, &responded.shared, &init.ni, &init.nr, self.spi_i, self.spi_r, self.role)?;
        let mut out = vec![Payload::Ke(Ke { ke_method: method, data: responded.ke_data.into() })];
        let mut ppk = None;
        if ppk_here {
            let (n, k, o) = self.respond_ppk_int(ctx, init, &p, Some(&new))?;
            out.extend(n);
            if let Some(k) = k {
                new = k;
            }
            ppk = Some(o);
        }
        Ok(Reply { payloads: out, then: Then::KeyUpdate(Box::new(KeyUpdate { keys: Some(new), additional_ke: true, ppk, int_auth_i })) })
    }

    /// Responder, after the IKE_INTERMEDIATE response went out: IntAuth_r
    /// over it (old keys), then the new keys.
    pub(super) fn finish_intermediate(&mut self, u: KeyUpdate, first: &[u8], payloads: &[Payload<'_>]) -> Result<(), ProtoError> {
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let IkeState::HalfOpen(init) = &mut self.state else { return Err(ProtoError::MessageId) };
        let (_, plain) = ike_wire::emit_inner(payloads)?;
        let octets = int_auth_octets(first, &*keys.outbound, &plain)?;
        let int_auth_r = int_auth_link(&*keys.prf, &keys.sk_pr, init.int_auth.as_ref().map(|a| &a.1[..]), &octets)?;
        init.int_auth = Some((u.int_auth_i, int_auth_r));
        if u.additional_ke {
            init.pending_ke.pop_front();
        }
        if let Some(o) = u.ppk {
            self.ppk_used = matches!(o, PpkInt::Used(_));
            init.ppk_int = o;
        }
        if let Some(keys) = u.keys {
            self.keys = Some(keys);
        }
        Ok(())
    }
}
