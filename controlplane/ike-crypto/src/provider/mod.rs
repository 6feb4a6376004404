//! The crypto provider the protocol core holds (`&dyn CryptoProvider` or
//! `Box<dyn CryptoProvider>`): every algorithm by its IANA transform ID.
//!
//! * [`RustCryptoProvider`]: the real implementations of this crate.
//! * `insecure::InsecureNoSecurityProvider`: fixed, fast, *insecure*
//!   stand-ins with the right lengths, for fuzzing the protocol core. Only
//!   with the test-only `insecure` feature, which no release binary has
//!   ([`TEST_ONLY_CRYPTO`] says whether this build does).
//!
//! Signing and verification are not on the provider: they belong to
//! configured credentials ([`crate::sig::Signer`], [`crate::sig::Verifier`],
//! [`crate::cert`]), which the core receives the same way.

#[cfg(any(test, feature = "insecure"))]
pub mod insecure;

/// Whether this build of ike-crypto carries the INSECURE test-only provider
/// (the `insecure` feature). Binaries print it (`esprit-ike --version`), so
/// a check of the release binary sees a feature that leaked in through
/// cargo's feature unification even where the provider itself is unused.
pub const TEST_ONLY_CRYPTO: bool = cfg!(feature = "insecure");

use rand_core::CryptoRngCore;

use crate::ke::{self, KeyExchange, Responded};
use crate::prf::{HmacPrf, Prf};
use crate::sk::{self, SkCipher, SkProtection};
use crate::{ids, integ::Integ, Error};

/// Algorithms by IANA transform ID, for a deterministic protocol core: all
/// randomness comes in through `rng`.
pub trait CryptoProvider: Send + Sync {
    /// Start a key exchange as the party that sends its KE data first
    /// (Transform Type 4 / ADDKE ID).
    fn key_exchange(&self, method: u16, rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, Error>;
    /// Answer a key exchange: DH public value or KEM ciphertext, and the
    /// shared secret.
    fn key_exchange_respond(&self, method: u16, peer_ke_data: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Responded, Error>;
    /// A PRF (Transform Type 2).
    fn prf(&self, id: u16) -> Result<Box<dyn Prf>, Error>;
    /// SK payload protection for one direction (ENCR + INTEG, Key Length
    /// attribute in bits if negotiated).
    fn sk_protection(&self, encr: u16, key_bits: Option<u16>, integ: u16, sk_e: &[u8], sk_a: &[u8])
        -> Result<Box<dyn SkProtection>, Error>;
    /// Length of SK_e (and of a Child SA encryption key) for an ENCR
    /// transform, salt included.
    fn encr_key_len(&self, encr: u16, key_bits: Option<u16>) -> Result<usize, Error>;
    /// Length of SK_a (and of a Child SA integrity key); 0 for NONE.
    fn integ_key_len(&self, integ: u16) -> Result<usize, Error>;
    /// Whether a key exchange method is implemented (for proposal matching).
    fn supports_key_exchange(&self, method: u16) -> bool;
}

/// The real provider: RustCrypto-based implementations of this crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCryptoProvider;

impl CryptoProvider for RustCryptoProvider {
    fn key_exchange(&self, method: u16, rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, Error> {
        ke::initiate(method, rng)
    }
    fn key_exchange_respond(&self, method: u16, peer_ke_data: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Responded, Error> {
        ke::respond(method, peer_ke_data, rng)
    }
    fn prf(&self, id: u16) -> Result<Box<dyn Prf>, Error> {
        Ok(Box::new(HmacPrf::from_id(id)?))
    }
    fn sk_protection(&self, encr: u16, key_bits: Option<u16>, integ: u16, sk_e: &[u8], sk_a: &[u8]) -> Result<Box<dyn SkProtection>, Error> {
        Ok(Box::new(SkCipher::new(encr, key_bits, integ, sk_e, sk_a)?))
    }
    fn encr_key_len(&self, encr: u16, key_bits: Option<u16>) -> Result<usize, Error> {
        sk::encr_key_len(encr, key_bits)
    }
    fn integ_key_len(&self, integ: u16) -> Result<usize, Error> {
        if integ == ids::integ::NONE {
            Ok(0)
        } else {
            Ok(Integ::from_id(integ)?.key_len())
        }
    }
    fn supports_key_exchange(&self, method: u16) -> bool {
        ke::SUPPORTED.contains(&method)
    }
}
