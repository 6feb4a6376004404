//! `radius-wire`: RADIUS as esprit needs it to pass EAP through to an AAA
//! server, sans IO.
//!
//! * [`Packet`]: the packet and its attributes (RFC 2865 §3, §5), decoded
//!   and encoded without interpretation; helpers for what esprit reads:
//!   EAP-Message reassembly and splitting into 253-octet attributes
//!   (RFC 3579 §3.1), vendor-specific attributes (§5.26).
//! * The authenticators: the Access-Request's Message-Authenticator
//!   (HMAC-MD5, RFC 3579 §3.2), the Accounting-Request Authenticator (RFC
//!   2866 §3), and the checks of a reply ([`verify_reply`]: Response
//!   Authenticator, RFC 2865 §3, and the reply's Message-Authenticator,
//!   mandatory with EAP-Message).
//! * Hidden values: User-Password (RFC 2865 §5.2) and the MS-MPPE-Send/Recv
//!   keys (RFC 2548 §2.4.2, §2.4.3), from which [`msk`] makes the EAP MSK
//!   (Recv-Key | Send-Key, as strongSwan's eap-radius).
//! * [`client::Client`]: requests in flight, retransmission, failover to
//!   the next server, all driven by the owner's clock and sockets.
//!
//! Tests: RFC 2865 §7.1 and §7.2 packets with their authenticators, packets
//! captured from FreeRADIUS 3.2.1 (`testdata/`, with provenance), property
//! tests that decoding never panics and that encode/decode round-trip.
#![forbid(unsafe_code)]

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

pub mod client;

/// Header: Code, Identifier, Length, Authenticator.
pub const HEADER_LEN: usize = 20;
/// RFC 2865 §3: at most 4096 octets.
pub const MAX_PACKET_LEN: usize = 4096;
/// The longest attribute value (one octet of length for type and length too).
pub const MAX_ATTR_LEN: usize = 253;

/// Packet codes (RFC 2865 §3, RFC 2866 §3).
pub mod code {
    pub const ACCESS_REQUEST: u8 = 1;
    pub const ACCESS_ACCEPT: u8 = 2;
    pub const ACCESS_REJECT: u8 = 3;
    pub const ACCOUNTING_REQUEST: u8 = 4;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    pub const ACCESS_CHALLENGE: u8 = 11;
}

/// Attribute types used here (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5,
/// RFC 3579 §3, RFC 3162).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const SERVICE_TYPE: u8 = 6;
    pub const FRAMED_PROTOCOL: u8 = 7;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const FRAMED_MTU: u8 = 12;
    pub const LOGIN_IP_HOST: u8 = 14;
    pub const LOGIN_SERVICE: u8 = 15;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_INPUT_PACKETS: u8 = 47;
    pub const ACCT_OUTPUT_PACKETS: u8 = 48;
    pub const ACCT_TERMINATE_CAUSE: u8 = 49;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const NAS_PORT_TYPE: u8 = 61;
    pub const EAP_MESSAGE: u8 = 79;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
    pub const ACCT_INTERIM_INTERVAL: u8 = 85;
    pub const NAS_PORT_ID: u8 = 87;
    pub const FRAMED_POOL: u8 = 88;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
}

/// Microsoft's vendor ID and the MPPE key types (RFC 2548 §2.4.2, §2.4.3).
pub const VENDOR_MICROSOFT: u32 = 311;
pub const MS_MPPE_SEND_KEY: u8 = 16;
pub const MS_MPPE_RECV_KEY: u8 = 17;

/// Why a packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("shorter than its header or its Length")]
    Truncated,
    #[error("Length {0} out of range")]
    Length(usize),
    #[error("attribute {0} with a bad length")]
    Attribute(u8),
    #[error("value of attribute {0} longer than 253 octets")]
    TooLong(u8),
    #[error("packet longer than 4096 octets")]
    TooBig,
    #[error("Response Authenticator does not verify")]
    ResponseAuthenticator,
    #[error("Message-Authenticator does not verify")]
    MessageAuthenticator,
    #[error("EAP-Message without Message-Authenticator (RFC 3579 §3.2)")]
    MissingMessageAuthenticator,
    #[error("reply code {0} does not answer this request")]
    UnexpectedCode(u8),
    #[error("hidden value of a bad length")]
    Hidden,
}

/// One attribute: type and value (the value is at most 253 octets when
/// encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub typ: u8,
    pub value: Vec<u8>,
}

impl Attribute {
    pub fn new(typ: u8, value: impl Into<Vec<u8>>) -> Self {
        Self { typ, value: value.into() }
    }

    /// A 32-bit integer attribute (RFC 2865 §5: "integer").
    pub fn u32(typ: u8, v: u32) -> Self {
        Self::new(typ, v.to_be_bytes().to_vec())
    }

    /// A Vendor-Specific attribute (RFC 2865 §5.26) with one sub-attribute.
    pub fn vendor(vendor: u32, vtype: u8, value: &[u8]) -> Self {
        let mut v = vendor.to_be_bytes().to_vec();
        v.push(vtype);
        v.push(u8::try_from(value.len() + 2).unwrap_or(u8::MAX));
        v.extend_from_slice(value);
        Self::new(attr::VENDOR_SPECIFIC, v)
    }
}

/// A RADIUS packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

impl Packet {
    /// Decodes a packet: octets past Length are padding and ignored (RFC
    /// 2865 §3); a packet shorter than its Length, or an attribute running
    /// past it, is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&len) {
            return Err(Error::Length(len));
        }
        let bytes = bytes.get(..len).ok_or(Error::Truncated)?;
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&bytes[4..20]);
        let mut attributes = Vec::new();
        let mut rest = &bytes[HEADER_LEN..];
        while !rest.is_empty() {
            let typ = rest[0];
            let alen = usize::from(*rest.get(1).ok_or(Error::Attribute(typ))?);
            if alen < 2 || alen > rest.len() {
                return Err(Error::Attribute(typ));
            }
            attributes.push(Attribute { typ, value: rest[2..alen].to_vec() });
            rest = &rest[alen..];
        }
        Ok(Self { code: bytes[0], identifier: bytes[1], authenticator, attributes })
    }

    /// Encodes the packet as it is (no authenticator computed).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.attributes.iter().map(|a| a.value.len() + 2).sum::<usize>());
        out.extend_from_slice(&[self.code, self.identifier, 0, 0]);
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            if a.value.len() > MAX_ATTR_LEN {
                return Err(Error::TooLong(a.typ));
            }
            out.push(a.typ);
            out.push((a.value.len() + 2) as u8);
            out.extend_from_slice(&a.value);
        }
        if out.len() > MAX_PACKET_LEN {
            return Err(Error::TooBig);
        }
        let len = (out.len() as u16).to_be_bytes();
        out[2..4].copy_from_slice(&len);
        Ok(out)
    }

    /// The first attribute of this type.
    pub fn get(&self, typ: u8) -> Option<&[u8]> {
        self.attributes.iter().find(|a| a.typ == typ).map(|a| a.value.as_slice())
    }

    /// A 32-bit integer attribute.
    pub fn get_u32(&self, typ: u8) -> Option<u32> {
        self.get(typ).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(u32::from_be_bytes)
    }

    /// Every attribute of this type, in order.
    pub fn all(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes.iter().filter(move |a| a.typ == typ).map(|a| a.value.as_slice())
    }

    /// The EAP message, reassembled from its EAP-Message attributes in
    /// order (RFC 3579 §3.1); `None` without any.
    pub fn eap_message(&self) -> Option<Vec<u8>> {
        let mut parts = self.all(attr::EAP_MESSAGE).peekable();
        parts.peek()?;
        Some(parts.flatten().copied().collect())
    }

    /// The values of one vendor's sub-attributes of this type (RFC 2865
    /// §5.26, the recommended format: type, length, value).
    pub fn vendor(&self, vendor: u32, vtype: u8) -> impl Iterator<Item = &[u8]> {
        self.all(attr::VENDOR_SPECIFIC).filter_map(move |v| {
            if v.len() < 6 || u32::from_be_bytes([v[0], v[1], v[2], v[3]]) != vendor || v[4] != vtype {
                return None;
            }
            let l = usize::from(v[5]);
            (l >= 2 && l == v.len() - 4).then(|| &v[6..])
        })
    }
}

/// Appends an EAP message as EAP-Message attributes of at most 253 octets
/// (RFC 3579 §3.1).
pub fn push_eap_message(attrs: &mut Vec<Attribute>, eap: &[u8]) {
    for chunk in eap.chunks(MAX_ATTR_LEN) {
        attrs.push(Attribute::new(attr::EAP_MESSAGE, chunk.to_vec()));
    }
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 of `packet` under `secret`: the Message-Authenticator's value
/// when `packet` holds it zeroed (RFC 3579 §3.2; a reply's with the
/// request's authenticator in its header). For servers and tests.
pub fn message_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    hmac_md5(secret, packet)
}

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Md5> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Where the Message-Authenticator's value sits in an encoded packet.
fn message_authenticator_at(bytes: &[u8]) -> Option<usize> {
    let mut i = HEADER_LEN;
    while i + 2 <= bytes.len() {
        let l = usize::from(bytes[i + 1]);
        if l < 2 {
            return None;
        }
        if bytes[i] == attr::MESSAGE_AUTHENTICATOR && l == 18 {
            return Some(i + 2);
        }
        i += l;
    }
    None
}

/// An Access-Request: `attributes` (without Message-Authenticator), the
/// given random Request Authenticator, and a Message-Authenticator (RFC
/// 3579 §3.2: on every Access-Request here, as servers patched against
/// BlastRADIUS require).
pub fn access_request(identifier: u8, authenticator: [u8; 16], attributes: &[Attribute], secret: &[u8]) -> Result<Vec<u8>, Error> {
    let mut attrs = attributes.to_vec();
    attrs.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0u8; 16].to_vec()));
    let p = Packet { code: code::ACCESS_REQUEST, identifier, authenticator, attributes: attrs };
    let mut bytes = p.encode()?;
    let at = message_authenticator_at(&bytes).ok_or(Error::MessageAuthenticator)?;
    let mac = hmac_md5(secret, &bytes);
    bytes[at..at + 16].copy_from_slice(&mac);
    Ok(bytes)
}

/// An Accounting-Request with its Request Authenticator `MD5(Code |
/// Identifier | Length | 16 zero octets | Attributes | Secret)` (RFC 2866
/// §3); returns the packet and that authenticator (the reply is checked
/// against it).
pub fn accounting_request(identifier: u8, attributes: &[Attribute], secret: &[u8]) -> Result<(Vec<u8>, [u8; 16]), Error> {
    let p = Packet { code: code::ACCOUNTING_REQUEST, identifier, authenticator: [0; 16], attributes: attributes.to_vec() };
    let mut bytes = p.encode()?;
    let auth = md5(&[&bytes, secret]);
    bytes[4..20].copy_from_slice(&auth);
    Ok((bytes, auth))
}

/// The Response Authenticator a server puts in a reply (RFC 2865 §3):
/// `MD5(Code | Identifier | Length | Request Authenticator | Attributes |
/// Secret)`, over `reply` as encoded.
pub fn response_authenticator(reply: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let len = usize::from(u16::from_be_bytes([reply[2], reply[3]])).min(reply.len());
    md5(&[&reply[..4], request_authenticator, &reply[HEADER_LEN..len], secret])
}

/// Checks a reply to a request whose Request Authenticator was
/// `request_authenticator`: its Response Authenticator, and its
/// Message-Authenticator (required when it carries EAP-Message; RFC 3579
/// §3.2 computes it with the request's authenticator in the header).
pub fn verify_reply(bytes: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<Packet, Error> {
    let packet = Packet::decode(bytes)?;
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let bytes = &bytes[..len];
    let expected = response_authenticator(bytes, request_authenticator, secret);
    if !ct_eq(&expected, &packet.authenticator) {
        return Err(Error::ResponseAuthenticator);
    }
    match message_authenticator_at(bytes) {
        Some(at) => {
            let mut copy = bytes.to_vec();
            copy[4..20].copy_from_slice(request_authenticator);
            copy[at..at + 16].fill(0);
            if !ct_eq(&hmac_md5(secret, &copy), &bytes[at..at + 16]) {
                return Err(Error::MessageAuthenticator);
            }
        }
        None if packet.get(attr::EAP_MESSAGE).is_some() => return Err(Error::MissingMessageAuthenticator),
        None => {}
    }
    Ok(packet)
}

/// Checks the Message-Authenticator of a request (tests and servers):
/// HMAC-MD5 over the packet with the value zeroed.
pub fn verify_request_message_authenticator(bytes: &[u8], secret: &[u8]) -> Result<(), Error> {
    let at = message_authenticator_at(bytes).ok_or(Error::MessageAuthenticator)?;
    let mut copy = bytes.to_vec();
    copy[at..at + 16].fill(0);
    if ct_eq(&hmac_md5(secret, &copy), &bytes[at..at + 16]) {
        Ok(())
    } else {
        Err(Error::MessageAuthenticator)
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 2865 §5.2: hides a User-Password (padded to 16-octet blocks;
/// `c(1) = p(1) xor MD5(S | RA)`, `c(i) = p(i) xor MD5(S | c(i-1))`).
pub fn hide_password(password: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<Vec<u8>, Error> {
    if password.len() > 128 {
        return Err(Error::Hidden);
    }
    let mut p = password.to_vec();
    let padded = p.len().div_ceil(16).max(1) * 16;
    p.resize(padded, 0);
    let mut prev: Vec<u8> = request_authenticator.to_vec();
    for block in p.chunks_mut(16) {
        let b = md5(&[secret, &prev]);
        for (x, k) in block.iter_mut().zip(b) {
            *x ^= k;
        }
        prev = block.to_vec();
    }
    Ok(p)
}

/// RFC 2865 §5.2 in reverse: the password with its NUL padding removed.
pub fn unhide_password(hidden: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<Vec<u8>, Error> {
    if hidden.is_empty() || hidden.len() % 16 != 0 || hidden.len() > 128 {
        return Err(Error::Hidden);
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut prev: &[u8] = request_authenticator;
    for block in hidden.chunks(16) {
        let b = md5(&[secret, prev]);
        out.extend(block.iter().zip(b).map(|(c, k)| c ^ k));
        prev = block;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// RFC 2548 §2.4.2 (MS-MPPE-Send-Key; §2.4.3 Recv-Key is the same): the
/// key in `value` (Salt, then the encrypted String), hidden with the
/// shared secret and the Access-Request's authenticator: `b(1) = MD5(S |
/// R | A)`, `b(i) = MD5(S | c(i-1))`, `p(i) = c(i) xor b(i)`; the plain
/// String is the key length, the key, padding.
pub fn decrypt_mppe_key(value: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    if value.len() < 2 + 16 || (value.len() - 2) % 16 != 0 {
        return Err(Error::Hidden);
    }
    let (salt, c) = value.split_at(2);
    if salt[0] & 0x80 == 0 {
        // §2.4.2: "The most significant bit (leftmost) of the Salt field
        // MUST be set (1)".
        return Err(Error::Hidden);
    }
    let mut p = zeroize::Zeroizing::new(Vec::with_capacity(c.len()));
    let mut b = md5(&[secret, request_authenticator, salt]);
    for block in c.chunks(16) {
        p.extend(block.iter().zip(b).map(|(x, k)| x ^ k));
        b = md5(&[secret, block]);
    }
    let klen = usize::from(p[0]);
    if klen + 1 > p.len() {
        return Err(Error::Hidden);
    }
    Ok(zeroize::Zeroizing::new(p[1..=klen].to_vec()))
}

/// RFC 2548 in the server's direction (tests, and a reference for the
/// decryption): hides `key` with this salt.
pub fn encrypt_mppe_key(key: &[u8], salt: [u8; 2], request_authenticator: &[u8; 16], secret: &[u8]) -> Result<Vec<u8>, Error> {
    if key.len() > 240 {
        return Err(Error::Hidden);
    }
    let mut p = vec![key.len() as u8];
    p.extend_from_slice(key);
    p.resize(p.len().div_ceil(16) * 16, 0);
    let mut out = salt.to_vec();
    let mut b = md5(&[secret, request_authenticator, &salt]);
    for block in p.chunks(16) {
        let c: Vec<u8> = block.iter().zip(b).map(|(x, k)| x ^ k).collect();
        b = md5(&[secret, &c]);
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// The EAP MSK from an Access-Accept's MS-MPPE keys: Recv-Key | Send-Key
/// (strongSwan's eap-radius, `radius_socket.c`); `None` without both.
pub fn msk(accept: &Packet, request_authenticator: &[u8; 16], secret: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let recv = decrypt_mppe_key(accept.vendor(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY).next()?, request_authenticator, secret).ok()?;
    let send = decrypt_mppe_key(accept.vendor(VENDOR_MICROSOFT, MS_MPPE_SEND_KEY).next()?, request_authenticator, secret).ok()?;
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(recv.len() + send.len()));
    out.extend_from_slice(&recv);
    out.extend_from_slice(&send);
    Some(out)
}

#[cfg(test)]
mod tests;
