//! Pseudorandom functions and `prf+`.
//!
//! Implements PRF_HMAC_SHA2_256/384/512 (RFC 4868 §2.1, Transform IDs 5/6/7)
//! and `prf+` (RFC 7296 §2.13):
//!
//! ```text
//! prf+ (K,S) = T1 | T2 | T3 | T4 | ...
//! T1 = prf (K, S | 0x01)
//! Tn = prf (K, T(n-1) | S | n)        n is one octet, so at most 255 blocks
//! ```
//!
//! Guarantees: outputs are [`Secret`]s (zeroized on drop); `prf+` refuses
//! (never wraps the counter) when asked for more than 255 blocks.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::{ids, Error, Secret};

/// A PRF transform (Transform Type 2), as the key schedule uses it.
pub trait Prf: Send + Sync {
    /// The IANA Transform ID.
    fn id(&self) -> u16;
    /// Output length in octets (32/48/64 for the HMAC-SHA2 PRFs).
    fn output_len(&self) -> usize;
    /// The preferred key length: the length of SK_d, SK_pi and SK_pr
    /// (RFC 7296 §2.14: "the preferred key size of the PRF"; for HMAC PRFs
    /// that is the output length, RFC 4868 §2.1.2).
    fn key_len(&self) -> usize {
        self.output_len()
    }
    /// `prf(key, data[0] | data[1] | ...)`, without concatenating first.
    fn prf(&self, key: &[u8], data: &[&[u8]]) -> Result<Secret, Error>;
}

/// The hash behind an HMAC PRF or integrity transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Digest length in octets.
    pub const fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// HMAC over the concatenation of `data`.
    pub fn hmac(self, key: &[u8], data: &[&[u8]]) -> Result<Secret, Error> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[&[u8]]) -> Result<Secret, Error> {
            // HMAC takes keys of any length (RFC 2104 §2); the error arm is
            // unreachable for Hmac<D> but mapped rather than unwrapped.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .map_err(|_| Error::InvalidKey("HMAC key"))?;
            for d in data {
                mac.update(d);
            }
            Ok(Secret::new(mac.finalize().into_bytes().to_vec()))
        }
        match self {
            HashAlg::Sha256 => run::<Hmac<Sha256>>(key, data),
            HashAlg::Sha384 => run::<Hmac<Sha384>>(key, data),
            HashAlg::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    /// Plain digest of the concatenation of `data`.
    pub fn digest(self, data: &[&[u8]]) -> Vec<u8> {
        use sha2::Digest;
        fn run<D: Digest>(data: &[&[u8]]) -> Vec<u8> {
            let mut h = D::new();
            for d in data {
                h.update(d);
            }
            h.finalize().to_vec()
        }
        match self {
            HashAlg::Sha256 => run::<Sha256>(data),
            HashAlg::Sha384 => run::<Sha384>(data),
            HashAlg::Sha512 => run::<Sha512>(data),
        }
    }
}

/// PRF_HMAC_SHA2_256/384/512 (RFC 4868).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HmacPrf {
    id: u16,
    hash: HashAlg,
}

impl HmacPrf {
    /// The PRF for an IANA Transform ID (5, 6 or 7).
    pub fn from_id(id: u16) -> Result<Self, Error> {
        let hash = match id {
            ids::prf::HMAC_SHA2_256 => HashAlg::Sha256,
            ids::prf::HMAC_SHA2_384 => HashAlg::Sha384,
            ids::prf::HMAC_SHA2_512 => HashAlg::Sha512,
            _ => return Err(Error::Unsupported { kind: "PRF", id }),
        };
        Ok(Self { id, hash })
    }

    /// The underlying hash.
    pub fn hash(&self) -> HashAlg {
        self.hash
    }
}

impl Prf for HmacPrf {
    fn id(&self) -> u16 {
        self.id
    }
    fn output_len(&self) -> usize {
        self.hash.output_len()
    }
    fn prf(&self, key: &[u8], data: &[&[u8]]) -> Result<Secret, Error> {
        self.hash.hmac(key, data)
    }
}

/// `prf+ (K, S)` truncated to `len` octets (RFC 7296 §2.13). `seed` is S,
/// given in parts that are concatenated.
pub fn prf_plus(prf: &dyn Prf, key: &[u8], seed: &[&[u8]], len: usize) -> Result<Secret, Error> {
    let block = prf.output_len();
    if block == 0 || len > 255 * block {
        return Err(Error::PrfPlusTooLong(len));
    }
    let mut out = Secret::new(Vec::with_capacity(len + block));
    let mut t = Secret::new(Vec::new());
    let mut n: u8 = 1;
    while out.len() < len {
        let counter = [n];
        let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
        parts.push(&t);
        parts.extend_from_slice(seed);
        parts.push(&counter);
        t = prf.prf(key, &parts)?;
        out.extend_from_slice(&t);
        // The bound check above keeps n <= 255 for every block we compute.
        n = n.wrapping_add(1);
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_prf_id_is_unsupported() {
        assert_eq!(
            HmacPrf::from_id(2),
            Err(Error::Unsupported { kind: "PRF", id: 2 })
        );
    }

    #[test]
    fn prf_plus_refuses_more_than_255_blocks() {
        let prf = HmacPrf::from_id(ids::prf::HMAC_SHA2_256).unwrap();
        assert!(prf_plus(&prf, b"k", &[b"s"], 255 * 32).is_ok());
        assert_eq!(
            prf_plus(&prf, b"k", &[b"s"], 255 * 32 + 1).unwrap_err(),
            Error::PrfPlusTooLong(255 * 32 + 1)
        );
    }

    #[test]
    fn prf_plus_first_block_is_prf_of_seed_and_0x01() {
        let prf = HmacPrf::from_id(ids::prf::HMAC_SHA2_256).unwrap();
        let out = prf_plus(&prf, b"key", &[b"seed"], 40).unwrap();
        let t1 = prf.prf(b"key", &[b"seed", &[1]]).unwrap();
        let t2 = prf.prf(b"key", &[&t1, b"seed", &[2]]).unwrap();
        assert_eq!(&out[..32], &t1[..]);
        assert_eq!(&out[32..], &t2[..8]);
    }
}
