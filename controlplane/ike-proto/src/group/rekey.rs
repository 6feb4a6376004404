//! The GSA_REKEY message (RFC 9838 §2.4.1): a one-way IKEv2 message on the
//! Rekey SA, sent by the GCKS to the group's multicast address.
//!
//! ```text
//! HDR(GSA_REKEY, SPIi|SPIr = Rekey SA SPI, Message ID n), SK{GSA, KD, [N], [D], [AUTH]}
//! ```
//!
//! Guarantees:
//! * [`RekeySa::seal`] signs with GCAUTH Digital Signature (AUTH method 14,
//!   RFC 7427 layout) over `DataToAuthenticate = A | P` (§2.4.1.1): A is the
//!   IKE header and the Encrypted payload header with their lengths adjusted
//!   to `|A| + |P|` and `|P| + 4`, P the inner payloads in plaintext with the
//!   AUTH payload fully formed but its signature octets zero; the same `A |
//!   P` RFC 9242 IntAuth uses (`ike_wire::int_auth_octets`).
//! * [`RekeySa::open`] checks in the order §2.4.1.4 gives: the ICV with the
//!   KEK, then the signature with the GM's AUTH_KEY, then (by the caller)
//!   the Message ID; nothing of a message that fails a check is used.
//! * Header flags: Initiator set, Response clear (the GCKS originated the
//!   Rekey SA; the RFC keeps RFC 7296's flags and defines no others); a GM
//!   refuses a response-flagged or wrongly typed message.
use ike_crypto::sig::{PublicKey, SignatureScheme, Verifier};
use ike_crypto::sk::SkProtection;
use ike_crypto::Secret;
use ike_wire::{AuthMethod, ExchangeType, Flags, Header, KwaId, Message, Payload, PayloadType, HEADER_LEN};

use super::config::GcauthKey;
use crate::error::ProtoError;

/// The keys of one Rekey SA (KEK): `GSK_e | GSK_a | GSK_w` (§3.4).
pub struct RekeySa {
    pub spi: [u8; 16],
    pub kwa: KwaId,
    /// SK protection with GSK_e / GSK_a; the same keys both ways.
    pub sk: Box<dyn SkProtection>,
    /// The Rekey SA's default KWK: wraps the SA_KEYs of later rekeys.
    pub gsk_w: Secret,
}

/// Why a GM refused a GSA_REKEY (the `reason` label of
/// `esprit_ike_group_rekeys_total{result="rejected"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RekeyRejected {
    /// Not a GSA_REKEY request for a Rekey SA we hold.
    UnknownSpi,
    Malformed,
    /// The ICV did not verify with the KEK.
    Integrity,
    /// The AUTH payload is missing, or its signature does not verify with
    /// AUTH_KEY, or uses another algorithm than GCAUTH named.
    Signature,
    /// §2.4.1.4: a Message ID not above the last accepted one (replay).
    Replayed,
    /// The content is refused (policy, keys that do not unwrap).
    Content,
}

impl RekeyRejected {
    pub fn as_str(self) -> &'static str {
        match self {
            RekeyRejected::UnknownSpi => "unknown_spi",
            RekeyRejected::Malformed => "malformed",
            RekeyRejected::Integrity => "integrity",
            RekeyRejected::Signature => "signature",
            RekeyRejected::Replayed => "replayed",
            RekeyRejected::Content => "content",
        }
    }
}

/// The SPIs of a Rekey SA as IKE header SPIs (§4.4.2: first 8 octets SPIi).
pub fn header_spis(spi: &[u8; 16]) -> (u64, u64) {
    let mut i = [0u8; 8];
    let mut r = [0u8; 8];
    i.copy_from_slice(&spi[..8]);
    r.copy_from_slice(&spi[8..]);
    (u64::from_be_bytes(i), u64::from_be_bytes(r))
}

/// The Rekey SA SPI of a message header.
pub fn spi_of(header: &Header) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&header.spi_i.to_be_bytes());
    s[8..].copy_from_slice(&header.spi_r.to_be_bytes());
    s
}

/// Where the AUTH payload's parts lie in the inner chain `plain` (first
/// payload `first`): `(auth method, RFC 7427 data, signature, end)`
/// offsets. RFC 7427 AUTH data is `ASN.1 length (1) | AlgorithmIdentifier |
/// signature`.
fn signature_range(first: PayloadType, plain: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let mut next = first;
    let mut at = 0usize;
    while next != PayloadType::NONE {
        let h = plain.get(at..at + 4)?;
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < 4 || at + len > plain.len() {
            return None;
        }
        if next == PayloadType::AUTH {
            // Auth Method (1), RESERVED (3), then the RFC 7427 data.
            let body = at + 4;
            let data = body + 4;
            let alg_len = usize::from(*plain.get(data)?);
            let sig = data + 1 + alg_len;
            return (sig <= at + len).then_some((body, data, sig, at + len));
        }
        next = PayloadType(h[0]);
        at += len;
    }
    None
}

impl RekeySa {
    /// Splits a KEK's keying material (§3.4: `GSK_e | GSK_a | GSK_w`).
    #[allow(clippy::too_many_arguments)]
    pub fn from_keymat(
        crypto: &dyn ike_crypto::CryptoProvider,
        spi: [u8; 16],
        encr: ike_wire::EncrId,
        key_bits: Option<u16>,
        integ: ike_wire::IntegId,
        kwa: KwaId,
        keymat: &[u8],
    ) -> Result<Self, ProtoError> {
        let (e, a, w) = Self::key_lens(crypto, encr, key_bits, integ, kwa)?;
        if keymat.len() != e + a + w {
            return Err(ProtoError::Invalid("KEK keying material length"));
        }
        let sk = crypto.sk_protection(encr.0, key_bits, integ.0, &keymat[..e], &keymat[e..e + a])?;
        Ok(Self { spi, kwa, sk, gsk_w: Secret::new(keymat[e + a..].to_vec()) })
    }

    /// (GSK_e, GSK_a, GSK_w) lengths.
    pub fn key_lens(
        crypto: &dyn ike_crypto::CryptoProvider,
        encr: ike_wire::EncrId,
        key_bits: Option<u16>,
        integ: ike_wire::IntegId,
        kwa: KwaId,
    ) -> Result<(usize, usize, usize), ProtoError> {
        let e = crypto.encr_key_len(encr.0, key_bits)?;
        let a = crypto.integ_key_len(integ.0)?;
        let w = ike_crypto::keywrap::kwk_len(kwa.0).ok_or(ProtoError::NoProposalChosen)?;
        Ok((e, a, w))
    }

    fn header(&self, message_id: u32) -> Header {
        let (i, r) = header_spis(&self.spi);
        Header::new(i, r, ExchangeType::GSA_REKEY, Flags::new(true, false), message_id)
    }

    /// Builds and protects a GSA_REKEY with `inner` (GSA, KD, [N], [D]); with
    /// `gcauth`, an AUTH payload signed over `A | P` comes last.
    pub fn seal(
        &mut self,
        message_id: u32,
        mut inner: Vec<Payload<'static>>,
        gcauth: Option<&GcauthKey>,
        rng: &mut dyn ike_crypto::Rng,
    ) -> Result<Vec<u8>, ProtoError> {
        let header = self.header(message_id);
        let Some(key) = gcauth else {
            return crate::message::seal(header, &inner, &mut *self.sk, rng);
        };
        // The signature's length is known once it exists (ECDSA DER varies):
        // sign with a guess, and again if the guess was wrong.
        let mut sig_len = match key.scheme {
            SignatureScheme::Ed25519 => 64,
            _ => key.signer.sign(key.scheme, b"length probe", rng)?.len(),
        };
        inner.push(Payload::Auth(ike_wire::Auth { method: AuthMethod::DIGITAL_SIGNATURE, data: Vec::new().into() }));
        for _ in 0..8 {
            let zero = ike_crypto::sig::auth_data(key.scheme, &vec![0u8; sig_len]);
            if let Some(Payload::Auth(a)) = inner.last_mut() {
                a.data = zero.into();
            }
            let (first, plain0) = ike_wire::emit_inner(&inner)?;
            // A: the header and SK payload header as they will be sent
            // (their lengths are replaced by int_auth_octets).
            let body_len = self.sk.sealed_len(plain0.len());
            let sk = ike_wire::Sk { first_inner: first, flags: 0, body: vec![0u8; body_len].into() };
            let skeleton = Message::new(header, vec![Payload::Sk(sk)]).emit()?;
            let data = ike_wire::int_auth_octets(&skeleton, self.sk.iv_len(), self.sk.icv_len(), &plain0)?;
            let signature = key.signer.sign(key.scheme, &data, rng)?;
            if signature.len() != sig_len {
                sig_len = signature.len();
                continue;
            }
            if let Some(Payload::Auth(a)) = inner.last_mut() {
                a.data = ike_crypto::sig::auth_data(key.scheme, &signature).into();
            }
            return crate::message::seal(header, &inner, &mut *self.sk, rng);
        }
        Err(ProtoError::Invalid("GCAUTH signature length"))
    }

    /// Checks and decrypts a GSA_REKEY for this Rekey SA: ICV, then (with
    /// `auth_key`) the signature. Returns the header, the first inner payload
    /// type and the inner chain.
    pub fn open(&self, bytes: &[u8], auth_key: Option<&(PublicKey, SignatureScheme)>) -> Result<(Header, PayloadType, Vec<u8>), RekeyRejected> {
        let msg = Message::parse(bytes).map_err(|_| RekeyRejected::Malformed)?;
        let h = msg.header;
        if h.exchange_type != ExchangeType::GSA_REKEY || h.flags.response() || spi_of(&h) != self.spi {
            return Err(RekeyRejected::UnknownSpi);
        }
        if bytes.len() < HEADER_LEN {
            return Err(RekeyRejected::Malformed);
        }
        let (first, plain) = crate::message::open(bytes, &msg, &*self.sk).map_err(|_| RekeyRejected::Integrity)?;
        if let Some((public, scheme)) = auth_key {
            let (method_at, data_at, start, end) = signature_range(first, &plain).ok_or(RekeyRejected::Signature)?;
            // AUTH method 14 with the GCAUTH AlgorithmIdentifier (§4.4.2.1).
            if plain[method_at] != AuthMethod::DIGITAL_SIGNATURE.0 {
                return Err(RekeyRejected::Signature);
            }
            let (used, signature) = ike_crypto::sig::parse_auth_data(&plain[data_at..end]).map_err(|_| RekeyRejected::Signature)?;
            if used != *scheme {
                return Err(RekeyRejected::Signature);
            }
            let mut plain0 = plain.clone();
            plain0[start..end].fill(0);
            let data = ike_wire::int_auth_octets(bytes, self.sk.iv_len(), self.sk.icv_len(), &plain0).map_err(|_| RekeyRejected::Malformed)?;
            public.verify(*scheme, &data, signature).map_err(|_| RekeyRejected::Signature)?;
        }
        Ok((h, first, plain))
    }
}

/// The `A | P` a GSA_REKEY's signature covers, from the message as sent and
/// its decrypted inner chain (for independent checks, e.g. with OpenSSL):
/// the signature octets zeroed, lengths adjusted as §2.4.1.1 says.
pub fn data_to_authenticate(bytes: &[u8], first: PayloadType, plain: &[u8], iv_len: usize, icv_len: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, _, start, end) = signature_range(first, plain)?;
    let signature = plain[start..end].to_vec();
    let mut plain0 = plain.to_vec();
    plain0[start..end].fill(0);
    Some((ike_wire::int_auth_octets(bytes, iv_len, icv_len, &plain0).ok()?, signature))
}
