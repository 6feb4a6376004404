//! `ike-crypto`: the cryptography behind the IKEv2 protocol core.
//!
//! `ike-proto` is sans-IO and deterministic: it never calls a crypto library
//! itself. It holds a [`CryptoProvider`] (as `&dyn` or `Box<dyn>`) and an RNG
//! ([`rand_core::CryptoRngCore`]) handed in by its owner, and asks for
//! algorithms by their IANA transform IDs (`u16`), so this crate does not
//! depend on the wire codec.
//!
//! What is here, and the RFC sections each module implements:
//!
//! * [`ke`]: key exchange methods (Transform Type 4 / ADDKE 6-12): MODP-2048
//!   (RFC 3526 group 14), ECP-256/384/521 (RFC 5903), Curve25519 (RFC 8031),
//!   ML-KEM-512/768/1024 (draft-ietf-ipsecme-ikev2-mlkem), behind one
//!   [`ke::KeyExchange`] trait that fits Diffie-Hellman and KEMs (RFC 9370).
//! * [`prf`] and [`keys`]: PRF_HMAC_SHA2_* (RFC 4868), `prf+` (RFC 7296
//!   §2.13), SKEYSEED and the SK_* split (§2.14), Child SA KEYMAT (§2.17),
//!   IKE SA rekey (§2.18), the RFC 9370 §2.2.2 key update after each
//!   additional key exchange, PSK AUTH (§2.15) and the RFC 8784 PPK mix.
//! * [`integ`]: AUTH_HMAC_SHA2_256_128/384_192/512_256 (RFC 4868).
//! * [`sk`]: the Encrypted payload body (RFC 7296 §3.14): AES-GCM-16
//!   (RFC 5282), ChaCha20-Poly1305 (RFC 7634), AES-CBC + HMAC.
//! * [`sig`] and [`cert`]: AUTH signatures (RFC 7427, RFC 8420), key and
//!   certificate loading, chain validation against configured CAs.
//! * [`rng`]: a seeded deterministic RNG for tests and simulations.
//! * [`provider`]: [`RustCryptoProvider`] (the real one) and
//!   `provider::insecure::InsecureNoSecurityProvider` (fuzzing and tests
//!   only: behind the `insecure` feature, never in a release binary).
//!
//! Guarantees: no `unsafe`; untrusted input (peer public values, ciphertexts,
//! signatures, certificates) returns an [`Error`], never panics; secret
//! material lives in [`Secret`] (zeroized on drop) or in library types that
//! zeroize themselves.
#![forbid(unsafe_code)]

pub mod cert;
pub mod error;
pub mod ids;
pub mod integ;
pub mod ke;
pub mod keys;
pub mod keywrap;
pub mod prf;
pub mod provider;
pub mod rng;
pub mod sig;
pub mod sk;

pub use error::Error;
pub use provider::{CryptoProvider, RustCryptoProvider};

/// Secret bytes (shared secrets, SKEYSEED, SK_* keys, KEYMAT): zeroized on drop.
pub type Secret = zeroize::Zeroizing<Vec<u8>>;

/// The RNG the protocol core injects. Any `RngCore + CryptoRng` qualifies,
/// including [`rng::DeterministicRng`] and `rand_core::OsRng`.
pub use rand_core::CryptoRngCore as Rng;
