//! Curve25519 (RFC 8031, IKEv2 group 31) with X25519 (RFC 7748 §5).
//!
//! KE data is the 32-octet u-coordinate. RFC 8031 §2: the receiver masks
//! the top bit of the peer's value (X25519 decoding does) and accepts
//! non-canonical values; the all-zero result (a low-order peer point) MUST
//! make the exchange fail, and does here.

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::KeyExchange;
use crate::{ids, Error, Secret};

pub(super) struct X25519 {
    scalar: Zeroizing<[u8; 32]>,
    public: Vec<u8>,
}

impl X25519 {
    pub(super) fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut scalar = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut scalar[..]);
        Self::with_scalar(scalar)
    }

    pub(super) fn from_private(private: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; 32] = private.try_into().map_err(|_| Error::InvalidKey("X25519 scalar must be 32 octets"))?;
        Ok(Self::with_scalar(Zeroizing::new(bytes)))
    }

    fn with_scalar(scalar: Zeroizing<[u8; 32]>) -> Self {
        // X25519(k, 9) as a fixed-base multiplication over the precomputed
        // basepoint table (the same u-coordinate, RFC 7748 §6.1), not a
        // ladder: half of a responder's key-exchange cost was this ladder.
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*scalar)).to_bytes().to_vec();
        Self { scalar, public }
    }
}

impl KeyExchange for X25519 {
    fn method(&self) -> u16 {
        ids::ke::CURVE25519
    }
    fn is_kem(&self) -> bool {
        false
    }
    fn public_key(&self) -> &[u8] {
        &self.public
    }
    fn compute_shared(&self, peer: &[u8]) -> Result<Secret, Error> {
        let u: [u8; 32] = peer.try_into().map_err(|_| Error::InvalidPeerPublic("Curve25519 public value must be 32 octets"))?;
        let shared = Zeroizing::new(x25519_dalek::x25519(*self.scalar, u));
        if bool::from(shared.ct_eq(&[0u8; 32])) {
            return Err(Error::InvalidPeerPublic("Curve25519 shared secret is all zero (low-order point)"));
        }
        Ok(Secret::new(shared.to_vec()))
    }
}

/// X25519 itself, for the RFC 7748 §5.2 function tests.
pub fn x25519(k: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(k, u)
}
