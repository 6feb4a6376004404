//! Protection of the Encrypted payload (SK, RFC 7296 §3.14) body.
//!
//! The SK payload body is `IV | ciphertext(inner payloads | Padding | Pad
//! Length) | ICV`. [`SkProtection::seal`] and [`SkProtection::open`] take
//! `aad`, the message octets that precede the IV: the IKE header and the SK
//! generic payload header (and any unencrypted payloads between them), with
//! their Length fields already final (use [`SkProtection::sealed_len`]).
//!
//! * AEAD (RFC 5282 §5.1 for AES-GCM, RFC 7634 §2-3 for ChaCha20-Poly1305):
//!   `aad` is the associated data; the nonce is the 4-octet salt from the
//!   end of SK_e followed by the 8-octet IV; the ICV is the 16-octet tag;
//!   there is no integrity transform (INTEG must be NONE). The IV is a
//!   per-key counter started at a random value drawn from the injected RNG,
//!   so it never repeats under one key. No padding is added (block size 1;
//!   RFC 7634 §3: the sender SHOULD NOT pad).
//! * AES-CBC + HMAC (RFC 7296 §3.14, RFC 3602): a fresh unpredictable
//!   16-octet IV from the injected RNG for every message, padding to the
//!   16-octet block, and an ICV over `aad | IV | ciphertext` (checked before
//!   decrypting).
//!
//! Guarantees: [`SkProtection::open`] verifies the ICV before returning any
//! plaintext, rejects bodies that are too short or not block-aligned and a
//! Pad Length that exceeds the decrypted data, and never panics on input.
//! Padding octets are not checked (§3.14: they may hold any value). Keys
//! are zeroized on drop.

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use cbc::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use chacha20poly1305::ChaCha20Poly1305;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::integ::Integ;
use crate::{ids, Error};

type Aes192Gcm = AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

/// Protection of SK payload bodies in one direction (one SK_e/SK_a pair).
pub trait SkProtection: Send {
    /// IV length in the body (8 for the AEADs, 16 for AES-CBC).
    fn iv_len(&self) -> usize;
    /// ICV length at the end of the body.
    fn icv_len(&self) -> usize;
    /// The length of the body [`Self::seal`] produces for `inner_len`
    /// octets of inner payloads: what the SK payload's and the message's
    /// Length fields must count before sealing.
    fn sealed_len(&self, inner_len: usize) -> usize;
    /// Encrypt and integrity-protect the inner payloads; returns the body
    /// `IV | ciphertext | ICV`.
    fn seal(&mut self, aad: &[u8], inner: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error>;
    /// Verify and decrypt a body; returns the inner payloads with Padding
    /// and Pad Length removed.
    fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, Error>;
}

enum Cipher {
    Gcm128(Box<Aes128Gcm>),
    Gcm192(Box<Aes192Gcm>),
    Gcm256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
    Cbc { key: Zeroizing<Vec<u8>>, integ: Integ, integ_key: Zeroizing<Vec<u8>> },
}

/// The real SK payload protection for ENCR_AES_GCM_16 (20),
/// ENCR_CHACHA20_POLY1305 (28) and ENCR_AES_CBC (12) with an HMAC-SHA2
/// integrity transform.
pub struct SkCipher {
    cipher: Cipher,
    salt: [u8; 4],
    next_iv: Option<u64>,
    ivs_used: u64,
}

const AEAD_IV_LEN: usize = 8;
const AEAD_TAG_LEN: usize = 16;
const CBC_BLOCK: usize = 16;

/// Length of SK_e (and of a Child SA encryption key) for an ENCR transform
/// and its Key Length attribute: AES-GCM key + 4-octet salt (RFC 5282 §7.1),
/// ChaCha20-Poly1305 32 + 4 (RFC 7634 §2, no Key Length attribute), AES-CBC
/// the key (Key Length attribute required).
pub fn encr_key_len(encr: u16, key_bits: Option<u16>) -> Result<usize, Error> {
    // RFC 8750 §3: the IIV variants take the KEYMAT of their explicit-IV
    // counterparts (key and 4-octet salt).
    let encr = match encr {
        ids::encr::AES_GCM_16_IIV => ids::encr::AES_GCM_16,
        ids::encr::CHACHA20_POLY1305_IIV => ids::encr::CHACHA20_POLY1305,
        e => e,
    };
    match (encr, key_bits) {
        (ids::encr::AES_GCM_16, Some(bits @ (128 | 192 | 256))) => Ok(usize::from(bits) / 8 + 4),
        (ids::encr::AES_CBC, Some(bits @ (128 | 192 | 256))) => Ok(usize::from(bits) / 8),
        (ids::encr::CHACHA20_POLY1305, None | Some(256)) => Ok(36),
        (ids::encr::AES_GCM_16 | ids::encr::AES_CBC | ids::encr::CHACHA20_POLY1305, Some(bits)) => {
            Err(Error::KeyLengthAttribute { id: encr, bits })
        }
        (ids::encr::AES_GCM_16 | ids::encr::AES_CBC, None) => Err(Error::KeyLengthAttribute { id: encr, bits: 0 }),
        _ => Err(Error::Unsupported { kind: "ENCR", id: encr }),
    }
}

/// Whether an ENCR transform is an RFC 8750 implicit-IV one (ESP only).
pub fn is_implicit_iv(encr: u16) -> bool {
    matches!(encr, 29 | ids::encr::AES_GCM_16_IIV | ids::encr::CHACHA20_POLY1305_IIV)
}

/// Whether an ENCR transform is an AEAD (and so takes INTEG NONE).
pub fn is_aead(encr: u16) -> bool {
    matches!(encr, ids::encr::AES_GCM_16 | ids::encr::CHACHA20_POLY1305)
}

impl SkCipher {
    /// Build the protection for one direction: SK_ei/SK_ai for messages the
    /// original initiator sends, SK_er/SK_ar for the other direction.
    /// `integ` must be 0 (NONE) for AEADs and 12/13/14 for AES-CBC; `sk_a`
    /// is empty for AEADs.
    pub fn new(encr: u16, key_bits: Option<u16>, integ: u16, sk_e: &[u8], sk_a: &[u8]) -> Result<Self, Error> {
        if is_implicit_iv(encr) {
            // RFC 8750 §4: IKEv2 Message IDs may repeat; never for IKE.
            return Err(Error::Unsupported { kind: "ENCR (implicit IV is not allowed for IKE)", id: encr });
        }
        let key_len = encr_key_len(encr, key_bits)?;
        if sk_e.len() != key_len {
            return Err(Error::InvalidKey("SK_e length for the negotiated ENCR"));
        }
        if is_aead(encr) {
            if integ != ids::integ::NONE || !sk_a.is_empty() {
                return Err(Error::Unsupported { kind: "INTEG with AEAD", id: integ });
            }
            let (key, salt) = sk_e.split_at(key_len - 4);
            let salt: [u8; 4] = salt.try_into().map_err(|_| Error::InvalidKey("salt"))?;
            let bad = |_| Error::InvalidKey("AEAD key");
            let cipher = match (encr, key.len()) {
                (ids::encr::CHACHA20_POLY1305, _) => Cipher::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).map_err(bad)?)),
                (_, 16) => Cipher::Gcm128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?)),
                (_, 24) => Cipher::Gcm192(Box::new(Aes192Gcm::new_from_slice(key).map_err(bad)?)),
                _ => Cipher::Gcm256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?)),
            };
            Ok(Self { cipher, salt, next_iv: None, ivs_used: 0 })
        } else {
            let integ = Integ::from_id(integ)?;
            if sk_a.len() != integ.key_len() {
                return Err(Error::InvalidKey("SK_a length for the negotiated INTEG"));
            }
            Ok(Self {
                cipher: Cipher::Cbc {
                    key: Zeroizing::new(sk_e.to_vec()),
                    integ,
                    integ_key: Zeroizing::new(sk_a.to_vec()),
                },
                salt: [0; 4],
                next_iv: None,
                ivs_used: 0,
            })
        }
    }

    fn is_cbc(&self) -> bool {
        matches!(self.cipher, Cipher::Cbc { .. })
    }

    fn pad_len(&self, inner_len: usize) -> usize {
        if self.is_cbc() {
            // inner | padding | pad length (1) must fill whole blocks.
            (CBC_BLOCK - (inner_len + 1) % CBC_BLOCK) % CBC_BLOCK
        } else {
            0
        }
    }

    /// Seal with a caller-chosen IV and padding length. For known-answer
    /// tests and interop reproductions only: an AEAD IV must never repeat
    /// under one key, and [`SkProtection::seal`] guarantees that.
    pub fn seal_with_iv(&self, aad: &[u8], inner: &[u8], iv: &[u8], pad_len: u8) -> Result<Vec<u8>, Error> {
        if iv.len() != self.iv_len() {
            return Err(Error::InvalidKey("IV length"));
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(inner.len() + usize::from(pad_len) + 1 + CBC_BLOCK));
        buf.extend_from_slice(inner);
        // RFC 7296 §3.14: padding may hold any value; zeros are simplest.
        buf.resize(inner.len() + usize::from(pad_len), 0);
        buf.push(pad_len);
        let mut out = Vec::with_capacity(iv.len() + buf.len() + self.icv_len());
        out.extend_from_slice(iv);
        match &self.cipher {
            Cipher::Cbc { key, integ, integ_key } => {
                if buf.len() % CBC_BLOCK != 0 {
                    return Err(Error::InvalidPadding);
                }
                let len = buf.len();
                cbc_encrypt(key, iv, &mut buf, len)?;
                out.extend_from_slice(&buf);
                let icv = integ.compute(integ_key, &[aad, &out])?;
                out.extend_from_slice(&icv);
            }
            aead => {
                let nonce = self.nonce(iv);
                let tag = aead_seal(aead, &nonce, aad, &mut buf)?;
                out.extend_from_slice(&buf);
                out.extend_from_slice(&tag);
            }
        }
        Ok(out)
    }

    fn nonce(&self, iv: &[u8]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&iv[..AEAD_IV_LEN]);
        n
    }
}

fn aead_seal(c: &Cipher, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], Error> {
    let n = GenericArray::from_slice(nonce);
    let fail = |_| Error::MalformedSk("AEAD seal");
    let tag = match c {
        Cipher::Gcm128(a) => a.encrypt_in_place_detached(n, aad, buf).map_err(fail)?,
        Cipher::Gcm192(a) => a.encrypt_in_place_detached(n, aad, buf).map_err(fail)?,
        Cipher::Gcm256(a) => a.encrypt_in_place_detached(n, aad, buf).map_err(fail)?,
        Cipher::ChaCha(a) => a.encrypt_in_place_detached(n, aad, buf).map_err(fail)?,
        Cipher::Cbc { .. } => return Err(Error::MalformedSk("not an AEAD")),
    };
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag);
    Ok(out)
}

fn aead_open(c: &Cipher, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), Error> {
    let n = GenericArray::from_slice(nonce);
    let t = GenericArray::from_slice(tag);
    let fail = |_| Error::IntegrityCheckFailed;
    match c {
        Cipher::Gcm128(a) => a.decrypt_in_place_detached(n, aad, buf, t).map_err(fail),
        Cipher::Gcm192(a) => a.decrypt_in_place_detached(n, aad, buf, t).map_err(fail),
        Cipher::Gcm256(a) => a.decrypt_in_place_detached(n, aad, buf, t).map_err(fail),
        Cipher::ChaCha(a) => a.decrypt_in_place_detached(n, aad, buf, t).map_err(fail),
        Cipher::Cbc { .. } => Err(Error::MalformedSk("not an AEAD")),
    }
}

fn cbc_encrypt(key: &[u8], iv: &[u8], buf: &mut [u8], len: usize) -> Result<(), Error> {
    let bad = |_| Error::InvalidKey("AES-CBC key or IV");
    let pad = |_| Error::InvalidPadding;
    match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv).map_err(bad)?.encrypt_padded_mut::<NoPadding>(buf, len).map_err(pad)?,
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv).map_err(bad)?.encrypt_padded_mut::<NoPadding>(buf, len).map_err(pad)?,
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(bad)?.encrypt_padded_mut::<NoPadding>(buf, len).map_err(pad)?,
    };
    Ok(())
}

fn cbc_decrypt(key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), Error> {
    let bad = |_| Error::InvalidKey("AES-CBC key or IV");
    let pad = |_| Error::MalformedSk("AES-CBC ciphertext not block aligned");
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv).map_err(bad)?.decrypt_padded_mut::<NoPadding>(buf).map_err(pad)?,
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv).map_err(bad)?.decrypt_padded_mut::<NoPadding>(buf).map_err(pad)?,
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(bad)?.decrypt_padded_mut::<NoPadding>(buf).map_err(pad)?,
    };
    Ok(())
}

/// Strip Padding and Pad Length (RFC 7296 §3.14) from decrypted data.
fn strip_padding(mut plain: Vec<u8>) -> Result<Vec<u8>, Error> {
    let pad_len = usize::from(*plain.last().ok_or(Error::InvalidPadding)?);
    if pad_len + 1 > plain.len() {
        return Err(Error::InvalidPadding);
    }
    plain.truncate(plain.len() - pad_len - 1);
    Ok(plain)
}

impl SkProtection for SkCipher {
    fn iv_len(&self) -> usize {
        if self.is_cbc() {
            CBC_BLOCK
        } else {
            AEAD_IV_LEN
        }
    }

    fn icv_len(&self) -> usize {
        match &self.cipher {
            Cipher::Cbc { integ, .. } => integ.icv_len(),
            _ => AEAD_TAG_LEN,
        }
    }

    fn sealed_len(&self, inner_len: usize) -> usize {
        self.iv_len() + inner_len + self.pad_len(inner_len) + 1 + self.icv_len()
    }

    fn seal(&mut self, aad: &[u8], inner: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error> {
        let pad_len = u8::try_from(self.pad_len(inner.len())).map_err(|_| Error::InvalidPadding)?;
        if self.is_cbc() {
            let mut iv = [0u8; CBC_BLOCK];
            rng.fill_bytes(&mut iv);
            self.seal_with_iv(aad, inner, &iv, pad_len)
        } else {
            let counter = match self.next_iv {
                Some(c) => c,
                None => rng.next_u64(),
            };
            // The counter may start anywhere but must never come back
            // round: refuse after 2^64 - 1 messages rather than repeat.
            if self.ivs_used == u64::MAX {
                return Err(Error::MalformedSk("IV space exhausted"));
            }
            self.ivs_used += 1;
            self.next_iv = Some(counter.wrapping_add(1));
            self.seal_with_iv(aad, inner, &counter.to_be_bytes(), pad_len)
        }
    }

    fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, Error> {
        let (iv_len, icv_len) = (self.iv_len(), self.icv_len());
        // At least one octet of encrypted data: the Pad Length.
        if body.len() < iv_len + 1 + icv_len {
            return Err(Error::MalformedSk("body shorter than IV + Pad Length + ICV"));
        }
        let (iv, rest) = body.split_at(iv_len);
        let (ct, icv) = rest.split_at(rest.len() - icv_len);
        match &self.cipher {
            Cipher::Cbc { key, integ, integ_key } => {
                if ct.len() % CBC_BLOCK != 0 {
                    return Err(Error::MalformedSk("AES-CBC ciphertext not block aligned"));
                }
                // Integrity first, over everything up to the ICV.
                integ.verify(integ_key, &[aad, iv, ct], icv)?;
                let mut buf = ct.to_vec();
                cbc_decrypt(key, iv, &mut buf)?;
                strip_padding(buf)
            }
            aead => {
                let nonce = self.nonce(iv);
                let mut buf = ct.to_vec();
                aead_open(aead, &nonce, aad, &mut buf, icv)?;
                strip_padding(buf)
            }
        }
    }
}
