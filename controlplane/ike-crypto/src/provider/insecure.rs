//! **INSECURE.** A "no security" provider for fuzzing the protocol core.
//!
//! Everything here has the lengths of the real algorithms (so the codec and
//! the state machine see well-formed messages) but none of their security:
//! key exchanges return fixed values, the PRF is a non-cryptographic mix,
//! SK payloads are not encrypted and their ICV is never checked, and the
//! credentials accept any signature. A fuzzer can then reach every state
//! without forging cryptography. Never use it outside fuzzing and tests;
//! the names say so on purpose.

use rand_core::CryptoRngCore;

use super::CryptoProvider;
use crate::ke::{KeyExchange, Responded};
use crate::prf::Prf;
use crate::sig::{SignatureScheme, Signer, Verifier};
use crate::sk::SkProtection;
use crate::{ids, Error, Secret};

/// INSECURE provider for fuzzing: fixed key exchanges, a toy PRF, SK
/// payloads in the clear with unchecked ICVs.
#[derive(Clone, Copy, Debug, Default)]
pub struct InsecureNoSecurityProvider;

/// (initiator KE length, responder KE length) of the real methods.
fn ke_lengths(method: u16) -> (usize, usize) {
    match method {
        ids::ke::MODP_2048 => (256, 256),
        ids::ke::ECP_256 => (64, 64),
        ids::ke::ECP_384 => (96, 96),
        ids::ke::ECP_521 => (132, 132),
        ids::ke::CURVE25519 => (32, 32),
        ids::ke::ML_KEM_512 => (800, 768),
        ids::ke::ML_KEM_768 => (1184, 1088),
        ids::ke::ML_KEM_1024 => (1568, 1568),
        _ => (32, 32),
    }
}

const FIXED_SHARED: [u8; 32] = *b"INSECURE-FUZZING-SHARED-SECRET!!";

struct InsecureKeyExchange {
    method: u16,
    public: Vec<u8>,
}

impl KeyExchange for InsecureKeyExchange {
    fn method(&self) -> u16 {
        self.method
    }
    fn is_kem(&self) -> bool {
        matches!(self.method, ids::ke::ML_KEM_512 | ids::ke::ML_KEM_768 | ids::ke::ML_KEM_1024)
    }
    fn public_key(&self) -> &[u8] {
        &self.public
    }
    fn compute_shared(&self, _peer: &[u8]) -> Result<Secret, Error> {
        Ok(Secret::new(FIXED_SHARED.to_vec()))
    }
}

/// A non-cryptographic PRF with the real output lengths (FNV-1a based):
/// deterministic and input-dependent, so both ends derive equal "keys".
struct InsecurePrf {
    id: u16,
    len: usize,
}

impl Prf for InsecurePrf {
    fn id(&self) -> u16 {
        self.id
    }
    fn output_len(&self) -> usize {
        self.len
    }
    fn prf(&self, key: &[u8], data: &[&[u8]]) -> Result<Secret, Error> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        key.iter().copied().for_each(&mut mix);
        mix(0xff);
        data.iter().flat_map(|d| d.iter().copied()).for_each(&mut mix);
        let mut out = Vec::with_capacity(self.len);
        let mut x = h;
        while out.len() < self.len {
            x = x.wrapping_mul(0x0000_0100_0000_01b3) ^ (out.len() as u64);
            out.extend_from_slice(&x.to_be_bytes());
        }
        out.truncate(self.len);
        Ok(Secret::new(out))
    }
}

/// SK "protection" that copies the inner payloads in the clear, with a
/// zero IV and a zero ICV of the real lengths, and never checks the ICV.
struct InsecureSk {
    iv_len: usize,
    icv_len: usize,
    block: usize,
}

impl SkProtection for InsecureSk {
    fn iv_len(&self) -> usize {
        self.iv_len
    }
    fn icv_len(&self) -> usize {
        self.icv_len
    }
    fn sealed_len(&self, inner_len: usize) -> usize {
        let pad = (self.block - (inner_len + 1) % self.block) % self.block;
        self.iv_len + inner_len + pad + 1 + self.icv_len
    }
    fn seal(&mut self, _aad: &[u8], inner: &[u8], _rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error> {
        let total = self.sealed_len(inner.len());
        let pad = total - self.iv_len - inner.len() - 1 - self.icv_len;
        let mut out = vec![0u8; self.iv_len];
        out.extend_from_slice(inner);
        out.resize(out.len() + pad, 0);
        out.push(pad as u8);
        out.resize(total, 0);
        Ok(out)
    }
    fn open(&self, _aad: &[u8], body: &[u8]) -> Result<Vec<u8>, Error> {
        if body.len() < self.iv_len + 1 + self.icv_len {
            return Err(Error::MalformedSk("body shorter than IV + Pad Length + ICV"));
        }
        let plain = &body[self.iv_len..body.len() - self.icv_len];
        let pad = usize::from(plain[plain.len() - 1]);
        if pad + 1 > plain.len() {
            return Err(Error::InvalidPadding);
        }
        Ok(plain[..plain.len() - 1 - pad].to_vec())
    }
}

impl CryptoProvider for InsecureNoSecurityProvider {
    fn key_exchange(&self, method: u16, _rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, Error> {
        let (len, _) = ke_lengths(method);
        Ok(Box::new(InsecureKeyExchange { method, public: vec![0x11; len] }))
    }
    fn key_exchange_respond(&self, method: u16, _peer: &[u8], _rng: &mut dyn CryptoRngCore) -> Result<Responded, Error> {
        let (_, len) = ke_lengths(method);
        Ok(Responded { ke_data: vec![0x22; len], shared: Secret::new(FIXED_SHARED.to_vec()) })
    }
    fn prf(&self, id: u16) -> Result<Box<dyn Prf>, Error> {
        let len = match id {
            ids::prf::HMAC_SHA2_384 => 48,
            ids::prf::HMAC_SHA2_512 => 64,
            _ => 32,
        };
        Ok(Box::new(InsecurePrf { id, len }))
    }
    fn sk_protection(&self, encr: u16, _key_bits: Option<u16>, integ: u16, _sk_e: &[u8], _sk_a: &[u8]) -> Result<Box<dyn SkProtection>, Error> {
        let (iv_len, block) = if encr == ids::encr::AES_CBC { (16, 16) } else { (8, 1) };
        let icv_len = match integ {
            ids::integ::HMAC_SHA2_384_192 => 24,
            ids::integ::HMAC_SHA2_512_256 => 32,
            _ => 16,
        };
        Ok(Box::new(InsecureSk { iv_len, icv_len, block }))
    }
    fn encr_key_len(&self, encr: u16, key_bits: Option<u16>) -> Result<usize, Error> {
        Ok(crate::sk::encr_key_len(encr, key_bits).unwrap_or(16))
    }
    fn integ_key_len(&self, integ: u16) -> Result<usize, Error> {
        Ok(match integ {
            ids::integ::NONE => 0,
            ids::integ::HMAC_SHA2_384_192 => 48,
            ids::integ::HMAC_SHA2_512_256 => 64,
            _ => 32,
        })
    }
    fn supports_key_exchange(&self, _method: u16) -> bool {
        true
    }
}

/// INSECURE: a verifier that accepts every signature. Fuzzing only.
#[derive(Clone, Copy, Debug, Default)]
pub struct InsecureAcceptAnySignature;

impl Verifier for InsecureAcceptAnySignature {
    fn verify(&self, _scheme: SignatureScheme, _message: &[u8], _signature: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

/// INSECURE: a signer that returns a fixed 64-octet "signature". Fuzzing only.
#[derive(Clone, Copy, Debug, Default)]
pub struct InsecureFixedSigner;

impl Signer for InsecureFixedSigner {
    fn schemes(&self) -> Vec<SignatureScheme> {
        SignatureScheme::ALL.to_vec()
    }
    fn sign(&self, _scheme: SignatureScheme, _message: &[u8], _rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error> {
        Ok(vec![0x5a; 64])
    }
}
