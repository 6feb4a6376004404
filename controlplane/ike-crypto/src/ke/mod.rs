//! Key exchange methods (IKEv2 Transform Type 4, and ADDKE1-7 of RFC 9370).
//!
//! One trait, [`KeyExchange`], covers Diffie-Hellman groups and KEMs,
//! because RFC 9370 puts both in the same slots:
//!
//! * The **initiator** of a key exchange calls [`initiate`], sends
//!   [`KeyExchange::public_key`] in its KE payload (a DH public value, or an
//!   ML-KEM encapsulation key), and finishes with
//!   [`KeyExchange::compute_shared`] on the responder's KE data (DH: the
//!   peer's public value; ML-KEM: decapsulate the ciphertext).
//! * The **responder** calls [`respond`] with the initiator's KE data and
//!   gets back its own KE data and the shared secret (DH: its public value;
//!   ML-KEM: encapsulate, returning the ciphertext). For DH groups the
//!   responder may equally use `initiate` + `compute_shared`: DH is symmetric.
//!
//! Per draft-ietf-ipsecme-ikev2-mlkem the IKE initiator of an exchange is
//! always the KEM's key holder, even when it is the responder of the IKE SA.
//!
//! Implemented methods and the RFC sections for their encodings:
//!
//! | ID | method | KE data | shared secret |
//! |---|---|---|---|
//! | 14 | MODP-2048 (RFC 3526 §3) | 256 octets big-endian | g^ir, 256 octets (RFC 7296 §2.14) |
//! | 19/20/21 | ECP-256/384/521 (RFC 5903 §7) | x \| y, 32/48/66 octets each, no 0x04 | x of the shared point |
//! | 31 | Curve25519 (RFC 8031 §2) | 32 octets | X25519 output, all-zero rejected |
//! | 35/36/37 | ML-KEM-512/768/1024 (FIPS 203) | ek 800/1184/1568, ct 768/1088/1568 | 32 octets, unpadded |
//!
//! Guarantees: every peer value is validated before use (length; MODP
//! 1 < y < p-1; point on the curve; FIPS 203 §7.2 modulus check of ek,
//! §7.3 length check of ct) and a bad one returns
//! [`Error::InvalidPeerPublic`], never a panic. Private keys are zeroized on
//! drop (the libraries' own key types, or [`Secret`]).

mod ecp;
mod mlkem;
mod modp;
mod x25519;

pub use x25519::x25519;

use rand_core::CryptoRngCore;

use crate::{ids, Error, Secret};

/// An ephemeral key exchange in progress, from the point of view of the
/// party that sends its KE data first.
pub trait KeyExchange: Send {
    /// The Transform Type 4 ID.
    fn method(&self) -> u16;
    /// Whether this is a KEM (asymmetric roles) rather than a DH group.
    fn is_kem(&self) -> bool;
    /// The KE payload data to send: the DH public value, or the KEM
    /// encapsulation key.
    fn public_key(&self) -> &[u8];
    /// The shared secret from the peer's KE data: DH with the peer's public
    /// value, or KEM decapsulation of the responder's ciphertext.
    fn compute_shared(&self, peer_ke_data: &[u8]) -> Result<Secret, Error>;
}

/// What the responder of a key exchange sends and keeps.
pub struct Responded {
    /// The responder's KE payload data: its DH public value, or the KEM
    /// ciphertext.
    pub ke_data: Vec<u8>,
    /// The shared secret (g^ir, or the KEM shared key).
    pub shared: Secret,
}

impl core::fmt::Debug for Responded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Responded").field("ke_data_len", &self.ke_data.len()).finish_non_exhaustive()
    }
}

/// All key exchange methods this crate implements.
pub const SUPPORTED: &[u16] = &[
    ids::ke::MODP_2048,
    ids::ke::ECP_256,
    ids::ke::ECP_384,
    ids::ke::ECP_521,
    ids::ke::CURVE25519,
    ids::ke::ML_KEM_512,
    ids::ke::ML_KEM_768,
    ids::ke::ML_KEM_1024,
];

/// Start a key exchange as the party that sends first: generate an
/// ephemeral key pair from `rng`.
pub fn initiate(method: u16, rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, Error> {
    Ok(match method {
        ids::ke::MODP_2048 => Box::new(modp::Modp2048::generate(rng)),
        ids::ke::ECP_256 => Box::new(ecp::Ecp::<p256::NistP256>::generate(method, rng)),
        ids::ke::ECP_384 => Box::new(ecp::Ecp::<p384::NistP384>::generate(method, rng)),
        ids::ke::ECP_521 => Box::new(ecp::Ecp::<p521::NistP521>::generate(method, rng)),
        ids::ke::CURVE25519 => Box::new(x25519::X25519::generate(rng)),
        ids::ke::ML_KEM_512 => Box::new(mlkem::MlKem::<ml_kem::MlKem512>::generate(method, rng)),
        ids::ke::ML_KEM_768 => Box::new(mlkem::MlKem::<ml_kem::MlKem768>::generate(method, rng)),
        ids::ke::ML_KEM_1024 => Box::new(mlkem::MlKem::<ml_kem::MlKem1024>::generate(method, rng)),
        _ => return Err(Error::Unsupported { kind: "KE", id: method }),
    })
}

/// Answer a key exchange as the party that sends second.
pub fn respond(method: u16, peer_ke_data: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Responded, Error> {
    match method {
        ids::ke::ML_KEM_512 => mlkem::encapsulate::<ml_kem::MlKem512>(peer_ke_data, rng),
        ids::ke::ML_KEM_768 => mlkem::encapsulate::<ml_kem::MlKem768>(peer_ke_data, rng),
        ids::ke::ML_KEM_1024 => mlkem::encapsulate::<ml_kem::MlKem1024>(peer_ke_data, rng),
        _ => {
            let ke = initiate(method, rng)?;
            let shared = ke.compute_shared(peer_ke_data)?;
            Ok(Responded { ke_data: ke.public_key().to_vec(), shared })
        }
    }
}

/// A DH key exchange with a known private key, for known-answer tests and
/// interop reproductions. ECP: the scalar, big-endian (RFC 5903 §8 `i`/`r`);
/// Curve25519: the 32-octet scalar (RFC 7748); MODP: the exponent,
/// big-endian, at most 256 octets. KEMs are not accepted (use
/// [`mlkem_from_seed`]).
pub fn dh_from_private_key(method: u16, private: &[u8]) -> Result<Box<dyn KeyExchange>, Error> {
    Ok(match method {
        ids::ke::MODP_2048 => Box::new(modp::Modp2048::from_exponent(private)?),
        ids::ke::ECP_256 => Box::new(ecp::Ecp::<p256::NistP256>::from_private(method, private)?),
        ids::ke::ECP_384 => Box::new(ecp::Ecp::<p384::NistP384>::from_private(method, private)?),
        ids::ke::ECP_521 => Box::new(ecp::Ecp::<p521::NistP521>::from_private(method, private)?),
        ids::ke::CURVE25519 => Box::new(x25519::X25519::from_private(private)?),
        _ => return Err(Error::Unsupported { kind: "DH", id: method }),
    })
}

/// An ML-KEM key pair from the FIPS 203 KeyGen seeds `d` and `z` (32 octets
/// each), for known-answer tests.
pub fn mlkem_from_seed(method: u16, d: &[u8], z: &[u8]) -> Result<Box<dyn KeyExchange>, Error> {
    Ok(match method {
        ids::ke::ML_KEM_512 => Box::new(mlkem::MlKem::<ml_kem::MlKem512>::from_seed(method, d, z)?),
        ids::ke::ML_KEM_768 => Box::new(mlkem::MlKem::<ml_kem::MlKem768>::from_seed(method, d, z)?),
        ids::ke::ML_KEM_1024 => Box::new(mlkem::MlKem::<ml_kem::MlKem1024>::from_seed(method, d, z)?),
        _ => return Err(Error::Unsupported { kind: "KEM", id: method }),
    })
}

/// ML-KEM encapsulation with the FIPS 203 Encaps randomness `m` given, for
/// known-answer tests.
pub fn mlkem_encapsulate_with(method: u16, ek: &[u8], m: &[u8]) -> Result<Responded, Error> {
    match method {
        ids::ke::ML_KEM_512 => mlkem::encapsulate_with::<ml_kem::MlKem512>(ek, m),
        ids::ke::ML_KEM_768 => mlkem::encapsulate_with::<ml_kem::MlKem768>(ek, m),
        ids::ke::ML_KEM_1024 => mlkem::encapsulate_with::<ml_kem::MlKem1024>(ek, m),
        _ => Err(Error::Unsupported { kind: "KEM", id: method }),
    }
}

/// ML-KEM decapsulation with an encoded decapsulation key (FIPS 203 dk),
/// for known-answer tests.
pub fn mlkem_decapsulate_with(method: u16, dk: &[u8], ct: &[u8]) -> Result<Secret, Error> {
    match method {
        ids::ke::ML_KEM_512 => mlkem::decapsulate_with::<ml_kem::MlKem512>(dk, ct),
        ids::ke::ML_KEM_768 => mlkem::decapsulate_with::<ml_kem::MlKem768>(dk, ct),
        ids::ke::ML_KEM_1024 => mlkem::decapsulate_with::<ml_kem::MlKem1024>(dk, ct),
        _ => Err(Error::Unsupported { kind: "KEM", id: method }),
    }
}
