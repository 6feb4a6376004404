//! Integrity transforms for non-AEAD SK payloads (Transform Type 3).
//!
//! Implements AUTH_HMAC_SHA2_256_128, AUTH_HMAC_SHA2_384_192 and
//! AUTH_HMAC_SHA2_512_256 (RFC 4868 §2.3, IDs 12/13/14): HMAC with a key as
//! long as the hash output, truncated to half of it (left-most octets).
//!
//! Guarantees: [`Integ::verify`] compares in constant time and accepts only
//! an ICV of exactly the truncated length.

use subtle::ConstantTimeEq;

use crate::prf::HashAlg;
use crate::{ids, Error};

/// One of the HMAC-SHA2 integrity transforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Integ {
    id: u16,
    hash: HashAlg,
}

impl Integ {
    /// The transform for an IANA INTEG ID (12, 13 or 14).
    pub fn from_id(id: u16) -> Result<Self, Error> {
        let hash = match id {
            ids::integ::HMAC_SHA2_256_128 => HashAlg::Sha256,
            ids::integ::HMAC_SHA2_384_192 => HashAlg::Sha384,
            ids::integ::HMAC_SHA2_512_256 => HashAlg::Sha512,
            _ => return Err(Error::Unsupported { kind: "INTEG", id }),
        };
        Ok(Self { id, hash })
    }

    /// The IANA Transform ID.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Key length (SK_ai/SK_ar, and Child SA integrity keys): the hash length
    /// (RFC 4868 §2.1.1).
    pub fn key_len(&self) -> usize {
        self.hash.output_len()
    }

    /// ICV length: half the hash length (RFC 4868 §2.3).
    pub fn icv_len(&self) -> usize {
        self.hash.output_len() / 2
    }

    /// The truncated MAC over the concatenation of `data`.
    pub fn compute(&self, key: &[u8], data: &[&[u8]]) -> Result<Vec<u8>, Error> {
        if key.len() != self.key_len() {
            return Err(Error::InvalidKey("integrity key length"));
        }
        let full = self.hash.hmac(key, data)?;
        Ok(full[..self.icv_len()].to_vec())
    }

    /// Check `icv` against the MAC of `data`, in constant time.
    pub fn verify(&self, key: &[u8], data: &[&[u8]], icv: &[u8]) -> Result<(), Error> {
        let expected = self.compute(key, data)?;
        if icv.len() == expected.len() && bool::from(expected.ct_eq(icv)) {
            Ok(())
        } else {
            Err(Error::IntegrityCheckFailed)
        }
    }
}
