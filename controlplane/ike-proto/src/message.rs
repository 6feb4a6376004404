//! Encoding and protecting whole messages, and the per-exchange payload
//! tables (RFC 7296 §1.2-§1.5, §3.14).
//!
//! Guarantees:
//! * [`seal`] emits the header and the SK payload with their final Length
//!   fields before encrypting, so the AEAD associated data (RFC 5282 §5.1)
//!   and the integrity-covered range (§3.14) are exactly what goes out.
//! * [`open`] verifies before any inner payload is parsed; a failure is
//!   [`ProtoError::Integrity`] (silence, §2.21.2).
//! * Syntax (ike-wire parse) and semantics ([`check`] against a `const`
//!   table of allowed payloads and their counts) are separate steps.
use ike_crypto::sk::SkProtection;
use ike_crypto::Rng;
use ike_wire::{emit_inner, Header, Message, Payload, PayloadType, Sk, HEADER_LEN};

use crate::error::ProtoError;

/// Encodes an unprotected message (IKE_SA_INIT).
pub fn plain(header: Header, payloads: Vec<Payload<'_>>) -> Result<Vec<u8>, ProtoError> {
    Ok(Message::new(header, payloads).emit()?)
}

/// Encodes `inner` inside an SK payload protected by `out`.
pub fn seal(header: Header, inner: &[Payload<'_>], out: &mut dyn SkProtection, rng: &mut dyn Rng) -> Result<Vec<u8>, ProtoError> {
    let (first_inner, plain) = emit_inner(inner)?;
    let body_len = out.sealed_len(plain.len());
    let sk = Sk { first_inner, flags: 0, body: vec![0u8; body_len].into() };
    let mut bytes = Message::new(header, vec![Payload::Sk(sk)]).emit()?;
    // The SK payload is the only payload: its body starts after the IKE
    // header and the 4-octet generic payload header.
    let aad_end = HEADER_LEN + 4;
    let body = out.seal(&bytes[..aad_end], &plain, rng)?;
    if body.len() != body_len || bytes.len() != aad_end + body_len {
        return Err(ProtoError::Invalid("sealed length"));
    }
    bytes[aad_end..].copy_from_slice(&body);
    Ok(bytes)
}

/// Verifies and decrypts the SK payload of `bytes` (already parsed as
/// `msg`); returns the decrypted inner chain (padding removed) and the type
/// of its first payload.
pub fn open(bytes: &[u8], msg: &Message<'_>, inbound: &dyn SkProtection) -> Result<(PayloadType, Vec<u8>), ProtoError> {
    let sk = msg.sk().ok_or(ProtoError::PayloadCount(PayloadType::SK))?;
    let aad_end = bytes.len().checked_sub(sk.body.len()).ok_or(ProtoError::Integrity)?;
    let inner = inbound.open(&bytes[..aad_end], &sk.body).map_err(|_| ProtoError::Integrity)?;
    Ok((sk.first_inner, inner))
}

/// How often a payload may appear.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub payload: PayloadType,
    pub min: u8,
    pub max: u8,
}

const fn one(payload: PayloadType) -> Rule {
    Rule { payload, min: 1, max: 1 }
}
const fn opt(payload: PayloadType) -> Rule {
    Rule { payload, min: 0, max: 1 }
}
const fn many(payload: PayloadType) -> Rule {
    Rule { payload, min: 0, max: u8::MAX }
}

/// Notify and Vendor ID may appear in any message (§3.10, §3.12).
const ALWAYS: [Rule; 2] = [many(PayloadType::NOTIFY), many(PayloadType::VENDOR_ID)];

/// IKE_SA_INIT request: SA, KE, Ni (§1.2).
pub const IKE_SA_INIT_REQUEST: &[Rule] = &[one(PayloadType::SA), one(PayloadType::KE), one(PayloadType::NONCE), many(PayloadType::CERTREQ)];
/// IKE_SA_INIT response: `SA, KE, Nr, [CERTREQ]`. A response carrying only an
/// error or COOKIE notify is handled before this table is consulted.
pub const IKE_SA_INIT_RESPONSE: &[Rule] = &[one(PayloadType::SA), one(PayloadType::KE), one(PayloadType::NONCE), many(PayloadType::CERTREQ)];
/// IKE_AUTH request (§1.2): `IDi, [CERT+], [CERTREQ+], [IDr], AUTH, [CP],
/// SAi2, TSi, TSr` (the Child SA triple may be absent, RFC 6023).
pub const IKE_AUTH_REQUEST: &[Rule] = &[
    one(PayloadType::IDI),
    many(PayloadType::CERT),
    many(PayloadType::CERTREQ),
    opt(PayloadType::IDR),
    one(PayloadType::AUTH),
    opt(PayloadType::CP),
    opt(PayloadType::SA),
    opt(PayloadType::TSI),
    opt(PayloadType::TSR),
];
/// RFC 7296 §2.16: the first IKE_AUTH request of an EAP initiator, the
/// same without AUTH.
pub const IKE_AUTH_EAP_REQUEST: &[Rule] = &[
    one(PayloadType::IDI),
    many(PayloadType::CERT),
    many(PayloadType::CERTREQ),
    opt(PayloadType::IDR),
    opt(PayloadType::CP),
    opt(PayloadType::SA),
    opt(PayloadType::TSI),
    opt(PayloadType::TSR),
];
/// §2.16: the later IKE_AUTH requests: `EAP` while the EAP conversation
/// runs, `AUTH` after it succeeded.
pub const IKE_AUTH_EAP_CONTINUE: &[Rule] = &[opt(PayloadType::EAP), opt(PayloadType::AUTH)];
/// IKE_AUTH response: `IDr, [CERT+], AUTH, [CP], [SAr2, TSi, TSr]`.
pub const IKE_AUTH_RESPONSE: &[Rule] = &[
    one(PayloadType::IDR),
    many(PayloadType::CERT),
    one(PayloadType::AUTH),
    opt(PayloadType::CP),
    opt(PayloadType::SA),
    opt(PayloadType::TSI),
    opt(PayloadType::TSR),
];
/// CREATE_CHILD_SA (§1.3), both directions: `SA, Ni/Nr, [KE], [TSi, TSr]`.
pub const CREATE_CHILD_SA: &[Rule] = &[
    one(PayloadType::SA),
    one(PayloadType::NONCE),
    opt(PayloadType::KE),
    opt(PayloadType::TSI),
    opt(PayloadType::TSR),
];
/// IKE_INTERMEDIATE (RFC 9242) carrying an RFC 9370 additional key
/// exchange, both directions: `KEi(n)` / `KEr(n)`.
pub const IKE_INTERMEDIATE: &[Rule] = &[one(PayloadType::KE)];
/// IKE_FOLLOWUP_KE (RFC 9370 §2.2.4), both directions: `KE, [N(link)]`.
pub const IKE_FOLLOWUP_KE: &[Rule] = &[one(PayloadType::KE)];
/// RFC 9838 §2.3.1 GSA_AUTH request: `IDi, [CERT+], [CERTREQ+], [IDr],
/// AUTH, IDg, [SAg], [N(GROUP_SENDER)]` (SAg is an SA payload).
pub const GSA_AUTH_REQUEST: &[Rule] = &[
    one(PayloadType::IDI),
    many(PayloadType::CERT),
    many(PayloadType::CERTREQ),
    opt(PayloadType::IDR),
    one(PayloadType::AUTH),
    one(PayloadType::IDG),
    opt(PayloadType::SA),
];
/// GSA_AUTH response: `IDr, [CERT+], AUTH, [GSA, KD]` (an error answer
/// carries a notify instead of GSA and KD).
pub const GSA_AUTH_RESPONSE: &[Rule] = &[one(PayloadType::IDR), many(PayloadType::CERT), one(PayloadType::AUTH), opt(PayloadType::GSA), opt(PayloadType::KD)];
/// RFC 9838 §2.3.2 GSA_REGISTRATION request: `IDg, [SAg], [N]`.
pub const GSA_REGISTRATION_REQUEST: &[Rule] = &[one(PayloadType::IDG), opt(PayloadType::SA)];
/// GSA_REGISTRATION response: `[GSA, KD]` (or a notify).
pub const GSA_REGISTRATION_RESPONSE: &[Rule] = &[opt(PayloadType::GSA), opt(PayloadType::KD)];
/// RFC 9838 §2.4.2 GSA_INBAND_REKEY request: `GSA, KD` or `D`, `[N]`;
/// the response is empty.
pub const GSA_INBAND_REKEY: &[Rule] = &[opt(PayloadType::GSA), opt(PayloadType::KD), many(PayloadType::DELETE)];
/// INFORMATIONAL (§1.4): `[N], [D], [CP]`.
pub const INFORMATIONAL: &[Rule] = &[many(PayloadType::DELETE), opt(PayloadType::CP)];

/// Checks `payloads` against a table. Unknown non-critical payloads were
/// kept by ike-wire as `Unknown` and are ignored here (§2.5).
pub fn check(payloads: &[Payload<'_>], rules: &[Rule]) -> Result<(), ProtoError> {
    for p in payloads {
        let t = p.payload_type();
        if matches!(p, Payload::Unknown(_)) || ALWAYS.iter().any(|r| r.payload == t) {
            continue;
        }
        if !rules.iter().any(|r| r.payload == t) {
            return Err(ProtoError::UnexpectedPayload(t));
        }
    }
    for r in rules {
        let n = payloads.iter().filter(|p| p.payload_type() == r.payload).count();
        if n < usize::from(r.min) || n > usize::from(r.max) {
            return Err(ProtoError::PayloadCount(r.payload));
        }
    }
    Ok(())
}

/// Accessors over a checked payload list.
pub struct Payloads<'m, 'a>(pub &'m [Payload<'a>]);

macro_rules! first {
    ($name:ident, $variant:ident, $ty:ty) => {
        pub fn $name(&self) -> Option<&'m $ty> {
            self.0.iter().find_map(|p| match p {
                Payload::$variant(x) => Some(x),
                _ => None,
            })
        }
    };
}

impl<'m, 'a> Payloads<'m, 'a> {
    first!(sa, Sa, ike_wire::Sa<'a>);
    first!(ke, Ke, ike_wire::Ke<'a>);
    first!(nonce, Nonce, ike_wire::Nonce<'a>);
    first!(id_i, IdI, ike_wire::Id<'a>);
    first!(id_r, IdR, ike_wire::Id<'a>);
    first!(auth, Auth, ike_wire::Auth<'a>);
    first!(ts_i, TsI, ike_wire::Ts<'a>);
    first!(ts_r, TsR, ike_wire::Ts<'a>);
    first!(cp, Cp, ike_wire::Cp<'a>);
    first!(id_g, IdG, ike_wire::Id<'a>);
    first!(eap, Eap, ike_wire::Eap<'a>);
    first!(gsa, Gsa, ike_wire::Gsa<'a>);
    first!(kd, Kd, ike_wire::Kd<'a>);

    pub fn notify(&self, t: ike_wire::NotifyType) -> Option<&'m ike_wire::Notify<'a>> {
        self.notifies().find(|n| n.notify_type == t)
    }

    pub fn notifies(&self) -> impl Iterator<Item = &'m ike_wire::Notify<'a>> {
        self.0.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The first error-type notify (RFC 7296 §3.10.1: types below 16384).
    pub fn error_notify(&self) -> Option<ike_wire::NotifyType> {
        self.notifies().map(|n| n.notify_type).find(|t| t.is_error())
    }

    pub fn deletes(&self) -> impl Iterator<Item = &'m ike_wire::Delete<'a>> {
        self.0.iter().filter_map(|p| match p {
            Payload::Delete(d) => Some(d),
            _ => None,
        })
    }

    pub fn certs(&self) -> impl Iterator<Item = &'m ike_wire::Cert<'a>> {
        self.0.iter().filter_map(|p| match p {
            Payload::Cert(c) => Some(c),
            _ => None,
        })
    }
}
