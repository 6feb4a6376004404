//! The generic payload header and the payload chain (RFC 7296 §3.2, §2.5).
//!
//! Guarantees:
//! * Every payload's Payload Length lies inside the data and covers at least
//!   its own 4-octet header; the chain ends exactly at the end of the data.
//! * A payload type this crate does not know is kept as [`Unknown`] when its
//!   critical bit is clear, and rejects the message with
//!   [`Error::UnsupportedCriticalPayload`] when set (RFC 7296 §2.5). The C bit
//!   of known payloads is ignored on receipt and sent as zero (§3.2).
//! * SK / SKF is the last payload of a message (§3.14, RFC 7383 §2.5); its
//!   Next Payload is the first inner payload's type. Decrypted content never
//!   contains another SK / SKF (§3).
//! * Emitting computes every Next Payload and Payload Length field.
//!
//! Which payloads an exchange allows, and in which order, is `ike-proto`'s job.
pub mod cp;
pub mod encrypted;
pub mod gikev2;
pub mod hcp;
pub mod sa;
pub mod simple;
pub mod ts;

pub use cp::{CfgAttribute, Cp};
pub use encrypted::{int_auth_octets, pad, strip_padding, Sk, SkLayout, SkParts, Skf};
pub use gikev2::{GroupPolicy, Gsa, GsaPolicy, Kd, KeyBag};
pub use hcp::HcpProposal;
pub use sa::{Attribute, AttributeValue, Proposal, Sa, Transform};
pub use simple::{Auth, Cert, CertReq, Delete, Eap, Id, Ke, Nonce, Notify, Raw, VendorId};
pub use ts::{TrafficSelector, Ts};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::registry::PayloadType;
use crate::Bytes;

/// The critical bit in the octet after Next Payload.
pub const CRITICAL: u8 = 0x80;

/// A payload whose type this crate does not know, received with C = 0
/// (or built to test a peer's handling of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown<'a> {
    pub payload_type: PayloadType,
    pub critical: bool,
    pub body: Bytes<'a>,
}

/// One payload of an IKE message, decoded. Variant names are the RFC
/// notations (SA, KE, IDi, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Sa(Sa<'a>),
    Ke(Ke<'a>),
    IdI(Id<'a>),
    IdR(Id<'a>),
    Cert(Cert<'a>),
    CertReq(CertReq<'a>),
    Auth(Auth<'a>),
    Nonce(Nonce<'a>),
    Notify(Notify<'a>),
    Delete(Delete<'a>),
    VendorId(VendorId<'a>),
    TsI(Ts<'a>),
    TsR(Ts<'a>),
    Sk(Sk<'a>),
    Cp(Cp<'a>),
    Eap(Eap<'a>),
    /// G-IKEv2 Group Identification (ID payload format).
    IdG(Id<'a>),
    /// G-IKEv2 Group Security Association.
    Gsa(Gsa<'a>),
    /// G-IKEv2 Key Download.
    Kd(Kd<'a>),
    Skf(Skf<'a>),
    /// RFC 8019 Puzzle Solution, body kept raw.
    Ps(Raw<'a>),
    Unknown(Unknown<'a>),
}

impl<'a> Payload<'a> {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Cert(_) => PayloadType::CERT,
            Payload::CertReq(_) => PayloadType::CERTREQ,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Sk(_) => PayloadType::SK,
            Payload::Cp(_) => PayloadType::CP,
            Payload::Eap(_) => PayloadType::EAP,
            Payload::IdG(_) => PayloadType::IDG,
            Payload::Gsa(_) => PayloadType::GSA,
            Payload::Kd(_) => PayloadType::KD,
            Payload::Skf(_) => PayloadType::SKF,
            Payload::Ps(_) => PayloadType::PS,
            Payload::Unknown(u) => u.payload_type,
        }
    }

    /// Decodes one payload body. `next` is the Next Payload field of this
    /// payload's own header (only SK/SKF keep it: the first inner type).
    pub fn read_body(
        payload_type: PayloadType,
        next: PayloadType,
        flags: u8,
        body: &'a [u8],
    ) -> Result<Self> {
        let mut r = Reader::new(body);
        let p = match payload_type {
            PayloadType::SA => Payload::Sa(Sa::read(&mut r)?),
            PayloadType::KE => Payload::Ke(Ke::read(&mut r)?),
            PayloadType::IDI => Payload::IdI(Id::read(&mut r)?),
            PayloadType::IDR => Payload::IdR(Id::read(&mut r)?),
            PayloadType::CERT => Payload::Cert(Cert::read(&mut r)?),
            PayloadType::CERTREQ => Payload::CertReq(CertReq::read(&mut r)?),
            PayloadType::AUTH => Payload::Auth(Auth::read(&mut r)?),
            PayloadType::NONCE => Payload::Nonce(Nonce::read(&mut r)?),
            PayloadType::NOTIFY => Payload::Notify(Notify::read(&mut r)?),
            PayloadType::DELETE => Payload::Delete(Delete::read(&mut r)?),
            PayloadType::VENDOR_ID => Payload::VendorId(VendorId::read(&mut r)?),
            PayloadType::TSI => Payload::TsI(Ts::read(&mut r)?),
            PayloadType::TSR => Payload::TsR(Ts::read(&mut r)?),
            PayloadType::SK => Payload::Sk(Sk::read(next, flags, &mut r)?),
            PayloadType::CP => Payload::Cp(Cp::read(&mut r)?),
            PayloadType::EAP => Payload::Eap(Eap::read(&mut r)?),
            PayloadType::IDG => Payload::IdG(Id::read(&mut r)?),
            PayloadType::GSA => Payload::Gsa(Gsa::read(&mut r)?),
            PayloadType::KD => Payload::Kd(Kd::read(&mut r)?),
            PayloadType::SKF => Payload::Skf(Skf::read(next, flags, &mut r)?),
            PayloadType::PS => Payload::Ps(Raw::read(&mut r)?),
            _ if flags & CRITICAL != 0 => {
                return Err(Error::UnsupportedCriticalPayload(payload_type))
            }
            _ => Payload::Unknown(Unknown {
                payload_type,
                critical: false,
                body: r.rest().into(),
            }),
        };
        r.expect_empty()?;
        Ok(p)
    }

    fn is_encrypted(&self) -> bool {
        matches!(self, Payload::Sk(_) | Payload::Skf(_))
    }

    /// Writes the generic header and the body; `next` is the following
    /// payload's type (ignored for SK/SKF, which carry their first inner type).
    pub fn write(&self, next: PayloadType, w: &mut Writer) -> Result<()> {
        let start = w.len();
        let (next, flags) = match self {
            Payload::Sk(sk) => (sk.first_inner, sk.flags),
            Payload::Skf(skf) => (skf.first_inner, skf.flags),
            Payload::Unknown(u) => {
                if u.payload_type.is_known() {
                    // It would parse back as the known payload.
                    return Err(Error::Malformed("Unknown payload with a known type"));
                }
                (next, if u.critical { CRITICAL } else { 0 })
            }
            _ => (next, 0),
        };
        w.u8(next.0);
        w.u8(flags);
        let len = w.u16_placeholder(start);
        match self {
            Payload::Sa(p) => p.write(w)?,
            Payload::Ke(p) => p.write(w)?,
            Payload::IdI(p) | Payload::IdR(p) | Payload::IdG(p) => p.write(w)?,
            Payload::Cert(p) => p.write(w)?,
            Payload::CertReq(p) => p.write(w)?,
            Payload::Auth(p) => p.write(w)?,
            Payload::Nonce(p) => p.write(w)?,
            Payload::Notify(p) => p.write(w)?,
            Payload::Delete(p) => p.write(w)?,
            Payload::VendorId(p) => p.write(w)?,
            Payload::TsI(p) | Payload::TsR(p) => p.write(w)?,
            Payload::Sk(p) => p.write(w)?,
            Payload::Cp(p) => p.write(w)?,
            Payload::Eap(p) => p.write(w)?,
            Payload::Gsa(p) => p.write(w)?,
            Payload::Kd(p) => p.write(w)?,
            Payload::Ps(p) => p.write(w)?,
            Payload::Skf(p) => p.write(w)?,
            Payload::Unknown(u) => w.bytes(&u.body),
        }
        w.patch_u16(len)
    }
}

/// Which chain is being parsed or written: the message's own, or the
/// decrypted content of SK / SKF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// May end with one SK or SKF payload.
    Outer,
    /// Must not contain SK or SKF.
    Inner,
}

/// Parses a chain of payloads starting with type `first` that fills `buf`
/// exactly.
pub fn parse_chain(first: PayloadType, buf: &[u8], chain: Chain) -> Result<Vec<Payload<'_>>> {
    let mut r = Reader::new(buf);
    let mut payloads = Vec::new();
    let mut current = first;
    while current != PayloadType::NONE {
        let next = PayloadType(r.u8()?);
        let flags = r.u8()?;
        let len = usize::from(r.u16()?);
        if len < 4 {
            return Err(Error::Malformed("Payload Length"));
        }
        let body = r.take(len - 4)?;
        let p = Payload::read_body(current, next, flags, body)?;
        if p.is_encrypted() {
            if chain == Chain::Inner {
                return Err(Error::NestedEncrypted);
            }
            // SK / SKF's Next Payload names the first inner payload; nothing
            // may follow it in the message.
            if !r.is_empty() {
                return Err(Error::EncryptedNotLast);
            }
            payloads.push(p);
            return Ok(payloads);
        }
        payloads.push(p);
        current = next;
    }
    r.expect_empty()?;
    Ok(payloads)
}

/// Parses the decrypted content of an SK payload (after
/// [`strip_padding`]); `first` is [`Sk::first_inner`].
pub fn parse_inner(first: PayloadType, inner: &[u8]) -> Result<Vec<Payload<'_>>> {
    parse_chain(first, inner, Chain::Inner)
}

/// Writes a chain; returns the first payload's type (0 for none), which goes
/// in the IKE header or the SK header.
pub fn write_chain(payloads: &[Payload<'_>], chain: Chain, w: &mut Writer) -> Result<PayloadType> {
    for (i, p) in payloads.iter().enumerate() {
        let next = match payloads.get(i + 1) {
            Some(n) => n.payload_type(),
            None => PayloadType::NONE,
        };
        if p.is_encrypted() {
            if chain == Chain::Inner {
                return Err(Error::NestedEncrypted);
            }
            if i + 1 != payloads.len() {
                return Err(Error::EncryptedNotLast);
            }
        }
        p.write(next, w)?;
    }
    Ok(payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type))
}

/// Encodes the payloads that go inside an SK payload: returns the type for
/// [`Sk::first_inner`] and the plaintext chain, to be [`pad`]ded and
/// encrypted by the caller.
pub fn emit_inner(payloads: &[Payload<'_>]) -> Result<(PayloadType, Vec<u8>)> {
    let mut w = Writer::new();
    let first = write_chain(payloads, Chain::Inner, &mut w)?;
    Ok((first, w.into_vec()))
}
