//! MODP-2048, RFC 3526 §3 (IKEv2 group 14).
//!
//! Public values and g^ir are 256 octets, big-endian, zero-padded (RFC 7296
//! §2.14). Peer values must satisfy 1 < y < p-1 (anything else is 0, 1, the
//! order-2 element p-1, or not reduced). Exponents are 256 bits, which RFC
//! 3526 §8 puts above the group's ~110-bit strength by a comfortable margin;
//! exponentiation is constant-time (`crypto-bigint`'s Montgomery ladder).

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U2048, U256};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::KeyExchange;
use crate::{ids, Error, Secret};

/// RFC 3526 §3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }, g = 2.
const P_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
);
const P: U2048 = U2048::from_be_hex(P_HEX);
const LEN: usize = 256;

pub(super) struct Modp2048 {
    x: Zeroizing<U256>,
    public: Vec<u8>,
}

fn params() -> DynResidueParams<{ U2048::LIMBS }> {
    // P is odd (a prime), so this cannot panic.
    DynResidueParams::new(&P)
}

impl Modp2048 {
    pub(super) fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut bytes[..]);
            let x = U256::from_be_slice(&bytes[..]);
            // x >= 2 keeps g^x out of {1, 2}; the chance of looping is 2^-255.
            if x > U256::ONE {
                return Self::with_exponent(x);
            }
        }
    }

    pub(super) fn from_exponent(exponent: &[u8]) -> Result<Self, Error> {
        if exponent.is_empty() || exponent.len() > 32 {
            return Err(Error::InvalidKey("MODP exponent must be 1..=32 octets"));
        }
        let mut buf = Zeroizing::new([0u8; 32]);
        buf[32 - exponent.len()..].copy_from_slice(exponent);
        let x = U256::from_be_slice(&buf[..]);
        if x <= U256::ONE {
            return Err(Error::InvalidKey("MODP exponent must be > 1"));
        }
        Ok(Self::with_exponent(x))
    }

    fn with_exponent(x: U256) -> Self {
        let g = DynResidue::new(&U2048::from_u8(2), params());
        let y = g.pow(&x).retrieve();
        Self { x: Zeroizing::new(x), public: y.to_be_bytes().to_vec() }
    }
}

impl KeyExchange for Modp2048 {
    fn method(&self) -> u16 {
        ids::ke::MODP_2048
    }
    fn is_kem(&self) -> bool {
        false
    }
    fn public_key(&self) -> &[u8] {
        &self.public
    }
    fn compute_shared(&self, peer: &[u8]) -> Result<Secret, Error> {
        if peer.len() != LEN {
            return Err(Error::InvalidPeerPublic("MODP-2048 public value must be 256 octets"));
        }
        let y = U2048::from_be_slice(peer);
        let p_minus_1 = P.wrapping_sub(&U2048::ONE);
        if y <= U2048::ONE || y >= p_minus_1 {
            return Err(Error::InvalidPeerPublic("MODP-2048 public value out of range (1, p-1)"));
        }
        let shared = DynResidue::new(&y, params()).pow(&*self.x).retrieve();
        Ok(Secret::new(shared.to_be_bytes().to_vec()))
    }
}
