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
//! * Bad KE data ends the IKE SA: the responder answers INVALID_SYNTAX
//!   (FIPS 203 §7.2 check of an ML-KEM key), the initiator stops before
//!   IKE_AUTH (§7.3 ciphertext check), per draft-ietf-ipsecme-ikev2-mlkem.
use ike_wire::{ExchangeType, Ke, KeId, NotifyType, Payload};

use super::{IkeSa, IkeState, InitData, KeyUpdate, Reply, Task, Then};
use ike_crypto::ke::KeyExchange;
use crate::error::ProtoError;
use crate::event::DownReason;
use crate::message::{self, Payloads};
use crate::sa::Ctx;

pub struct IntermediateTask {
    pub(super) init: InitData,
    pub(super) ke: Box<dyn KeyExchange>,
    /// IntAuth_i including our request (computed with the keys that
    /// protected it).
    pub(super) int_auth_i: Vec<u8>,
}

impl InitData {
    pub(super) fn new(ni: Vec<u8>, nr: Vec<u8>, message1: Vec<u8>, message2: Vec<u8>, pending_ke: Vec<KeId>) -> Self {
        Self { ni, nr, message1, message2, pending_ke: pending_ke.into(), int_auth: None, empty_intermediates: 0 }
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

impl IkeSa {
    /// `HDR, SK {KEi(n)}`, protected with the current keys.
    pub(super) fn start_intermediate(&mut self, ctx: &mut Ctx<'_>, init: InitData, method: KeId) -> Result<(), ProtoError> {
        let ke = ctx.crypto.key_exchange(method.0, ctx.rng)?;
        let p = [Payload::Ke(Ke { ke_method: method, data: ke.public_key().to_vec().into() })];
        let id = self.xm.next_request_id();
        self.send_request(ctx, ExchangeType::IKE_INTERMEDIATE, &p)?;
        let first = self.xm.outstanding(id).and_then(|o| o.packets.first()).ok_or(ProtoError::MessageId)?;
        let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
        let (_, plain) = ike_wire::emit_inner(&p)?;
        let octets = int_auth_octets(first, &*keys.outbound, &plain)?;
        let int_auth_i = int_auth_link(&*keys.prf, &keys.sk_pi, init.int_auth.as_ref().map(|a| &a.0[..]), &octets)?;
        self.active = Some(Task::Intermediate(Box::new(IntermediateTask { init, ke, int_auth_i })));
        Ok(())
    }

    pub(super) fn process_intermediate_response(&mut self, ctx: &mut Ctx<'_>, task: IntermediateTask, payloads: &[Payload<'_>], first_bytes: &[u8], plain: &[u8]) {
        let IntermediateTask { mut init, ke, int_auth_i } = task;
        let p = Payloads(payloads);
        if let Some(t) = p.error_notify() {
            self.close(ctx, DownReason::Refused(t));
            return;
        }
        let updated = (|| {
            message::check(payloads, message::IKE_INTERMEDIATE)?;
            let ke_r = p.ke().ok_or(ProtoError::PayloadCount(ike_wire::PayloadType::KE))?;
            if ke_r.ke_method.0 != ke.method() {
                return Err(ProtoError::Invalid("KE method of the IKE_INTERMEDIATE response"));
            }
            // ML-KEM: the FIPS 203 §7.3 ciphertext check; a failure ends
            // the IKE SA here, before any IKE_AUTH (draft-ietf-ipsecme-
            // ikev2-mlkem §4).
            let shared = ke.compute_shared(&ke_r.data)?;
            let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
            let octets = int_auth_octets(first_bytes, &*keys.inbound, plain)?;
            let int_auth_r = int_auth_link(&*keys.prf, &keys.sk_pr, init.int_auth.as_ref().map(|a| &a.1[..]), &octets)?;
            let new = keys.additional_ke(ctx.crypto, &shared, &init.ni, &init.nr, self.spi_i, self.spi_r, self.role)?;
            Ok((new, int_auth_r))
        })();
        match updated {
            Ok((keys, int_auth_r)) => {
                self.keys = Some(keys);
                init.int_auth = Some((int_auth_i, int_auth_r));
                self.start_next_initial_exchange(ctx, init);
            }
            Err(e) => self.close(ctx, DownReason::Refused(e.notify().map_or(NotifyType::INVALID_SYNTAX, |n| n.notify_type))),
        }
    }

    /// Responder: `HDR, SK {KEr(n)}` for the next pending additional key
    /// exchange. The keys change once the response is out
    /// ([`Self::finish_intermediate`]): the response itself is protected
    /// with the keys the request came with.
    pub(super) fn respond_intermediate(&mut self, ctx: &mut Ctx<'_>, payloads: &[Payload<'_>], request_bytes: &[u8], plain: &[u8]) -> Result<Reply, ProtoError> {
        let IkeState::HalfOpen(init) = &mut self.state else { return Err(ProtoError::MessageId) };
        let Some(&method) = init.pending_ke.front() else {
            // RFC 9242 §3: the initiator may run IKE_INTERMEDIATE for
            // other purposes (libreswan 5.2 sends one empty request with
            // `intermediate=yes`). Nothing we know of goes in it, so the
            // request must be empty apart from notifies; answered empty,
            // IntAuth extended, keys unchanged. Bounded: §3 asks the
            // responder to limit the number of exchanges.
            if init.empty_intermediates >= MAX_EMPTY_INTERMEDIATE {
                return Err(ProtoError::Invalid("too many IKE_INTERMEDIATE exchanges"));
            }
            message::check(payloads, &[])?;
            init.empty_intermediates += 1;
            let keys = self.keys.as_ref().ok_or(ProtoError::Invalid("no keys"))?;
            let octets = int_auth_octets(request_bytes, &*keys.inbound, plain)?;
            let int_auth_i = int_auth_link(&*keys.prf, &keys.sk_pi, init.int_auth.as_ref().map(|a| &a.0[..]), &octets)?;
            return Ok(Reply { payloads: Vec::new(), then: Then::KeyUpdate(Box::new(KeyUpdate { keys: None, int_auth_i })) });
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
        let new = keys.additional_ke(ctx.crypto, &responded.shared, &init.ni, &init.nr, self.spi_i, self.spi_r, self.role)?;
        Ok(Reply {
            payloads: vec![Payload::Ke(Ke { ke_method: method, data: responded.ke_data.into() })],
            then: Then::KeyUpdate(Box::new(KeyUpdate { keys: Some(new), int_auth_i })),
        })
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
        if let Some(keys) = u.keys {
            init.pending_ke.pop_front();
            self.keys = Some(keys);
        }
        Ok(())
    }
}
