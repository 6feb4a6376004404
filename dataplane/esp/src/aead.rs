//! The batch AEAD interface and the software backends.
//!
//! ESP processing is split DPDK lib/ipsec style into *prepare* (headers,
//! trailer, nonce, AAD: see `outbound` and `inbound`), *crypto* and
//! *finish*. A prepared packet is described by a [`CryptoOp`]: nonce, AAD
//! and the offsets of the text and ICV inside the packet. A synchronous
//! backend implements [`BatchAead`] and seals or opens a whole burst of
//! [`AeadJob`]s in place in one call. A lookaside engine (DPDK cryptodev)
//! does not have to: it can take the `CryptoOp`s of a burst, enqueue them
//! against its own buffers, and call the `finish` step when they come back,
//! so the framing code never assumes synchronous in-place crypto.
//!
//! Software backends: the pure-Rust `aes-gcm`/`chacha20poly1305` crates
//! ([`Backend::RustCrypto`]) and `ring` ([`Backend::Ring`], the faster one
//! by measurement, see `Backend::FASTEST`). All produce identical bytes.
//! `ring` has no AES-192-GCM (its `aead` module offers AES-128/256-GCM and
//! ChaCha20-Poly1305 only): an AES-192 SA asked of ring is keyed on
//! RustCrypto, and [`SoftAead::backend`] says so.
//!
//! Every key schedule lives in a [`WipeBox`]: when the SA dies its whole
//! allocation is zeroed, which neither library does itself (ring's key
//! types have no `Drop`; aes-gcm's GHASH key sits in a `polyval` union
//! that is never dropped on x86-64). Copies made while keying, on the
//! stack before the move into the box, are not reached.

use wipe::WipeBox;

use crate::suite::{Cipher, Suite, ICV_LEN, NONCE_LEN};

/// Everything the AEAD needs for one packet, with offsets relative to the
/// start of the packet data. The ICV immediately follows the text (RFC 4303
/// §2: it is the last field of the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoOp {
    pub nonce: [u8; NONCE_LEN],
    aad: [u8; 12],
    aad_len: u8,
    /// Offset of the plaintext/ciphertext.
    pub text_off: u32,
    pub text_len: u32,
}

impl CryptoOp {
    /// An op over `text_len` octets at `text_off`, the ICV right after
    /// them; `aad_in` is at most 12 octets (longer is cut to 12).
    pub fn new(nonce: [u8; NONCE_LEN], aad_in: &[u8], text_off: usize, text_len: usize) -> Self {
        let aad_in = &aad_in[..aad_in.len().min(12)];
        let mut aad = [0u8; 12];
        aad[..aad_in.len()].copy_from_slice(aad_in);
        Self {
            nonce,
            aad,
            aad_len: aad_in.len() as u8,
            text_off: text_off as u32,
            text_len: text_len as u32,
        }
    }

    /// As [`CryptoOp::new`], from the fixed-size AAD array the SA builds
    /// (`aad_len` octets used, the rest zero): no variable-length copy on
    /// the packet path.
    #[inline]
    pub(crate) fn from_parts(nonce: [u8; NONCE_LEN], aad: [u8; 12], aad_len: usize, text_off: usize, text_len: usize) -> Self {
        debug_assert!(aad_len <= 12 && aad[aad_len..].iter().all(|&b| b == 0));
        Self {
            nonce,
            aad,
            aad_len: aad_len as u8,
            text_off: text_off as u32,
            text_len: text_len as u32,
        }
    }

    /// SPI | SN (8 octets) or SPI | SN-high | SN-low (12, ESN).
    pub fn aad(&self) -> &[u8] {
        &self.aad[..usize::from(self.aad_len)]
    }

    /// The AAD in a fixed 12-octet array, zero after `aad().len()` octets:
    /// for backends that copy a fixed size and are told the length apart.
    pub fn aad_array(&self) -> &[u8; 12] {
        &self.aad
    }

    pub fn text_range(&self) -> core::ops::Range<usize> {
        self.text_off as usize..self.text_off as usize + self.text_len as usize
    }

    pub fn icv_range(&self) -> core::ops::Range<usize> {
        let end = self.text_range().end;
        end..end + ICV_LEN
    }

    /// Octets the buffer must hold for this op.
    pub fn end(&self) -> usize {
        self.icv_range().end
    }
}

/// One packet in a burst handed to a synchronous backend.
#[derive(Debug)]
pub struct AeadJob<'a> {
    pub op: CryptoOp,
    /// The packet data the op's offsets refer to.
    pub buf: &'a mut [u8],
    /// Set by the backend: sealed, or opened with a valid ICV.
    pub ok: bool,
}

impl Default for AeadJob<'_> {
    fn default() -> Self {
        Self {
            op: CryptoOp::new([0; NONCE_LEN], &[], 0, 0),
            buf: &mut [],
            ok: false,
        }
    }
}

/// A keyed AEAD that processes bursts in place. One instance per SA and
/// direction; shareable between threads.
pub trait BatchAead: Send + Sync {
    fn suite(&self) -> Suite;
    /// Backend name for metrics and benchmarks.
    fn backend_name(&self) -> &'static str;
    /// Encrypt each job's text in place and write its ICV. Sets `ok`.
    fn seal(&self, jobs: &mut [AeadJob<'_>]);
    /// Verify each job's ICV and decrypt in place. Sets `ok` only if the ICV
    /// verified; the text is unspecified otherwise.
    fn open(&self, jobs: &mut [AeadJob<'_>]);
}

/// One batch AEAD call over up to [`crate::MAX_BURST`] packets: `bufs[i]`
/// (the packet data `ops[i]`'s offsets refer to) is sealed (`seal`) or
/// opened in place when both are present. Returns, by index, which
/// succeeded (sealed, or opened with a valid ICV). Shared by the burst
/// functions of this crate and by callers that hold packets in their own
/// buffers (the dataplane's mbufs).
pub fn aead_burst<'a, A: BatchAead + ?Sized>(
    aead: &A,
    bufs: impl IntoIterator<Item = Option<&'a mut [u8]>>,
    ops: &[Option<CryptoOp>],
    seal: bool,
) -> [bool; crate::MAX_BURST] {
    const N: usize = crate::MAX_BURST;
    let mut jobs: [AeadJob<'a>; N] = core::array::from_fn(|_| AeadJob::default());
    let mut idx = [0u8; N];
    let mut n = 0;
    for (i, buf) in bufs.into_iter().enumerate().take(N) {
        if let (Some(buf), Some(Some(op))) = (buf, ops.get(i)) {
            jobs[n] = AeadJob { op: *op, buf, ok: false };
            idx[n] = i as u8;
            n += 1;
        }
    }
    if seal {
        aead.seal(&mut jobs[..n]);
    } else {
        aead.open(&mut jobs[..n]);
    }
    let mut ok = [false; N];
    for (j, job) in jobs[..n].iter().enumerate() {
        ok[usize::from(idx[j])] = job.ok;
    }
    ok
}

/// The software backends available in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Pure Rust: `aes-gcm` 0.10 and `chacha20poly1305` 0.10 (RustCrypto).
    RustCrypto,
    /// `ring` 0.17 (BoringSSL-derived assembly: AES-NI/CLMUL, AVX2 ChaCha).
    Ring,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::RustCrypto, Backend::Ring];

    /// The default, chosen by measurement on the project machine (AES-GCM
    /// 1420 B: ring 206 ns vs RustCrypto 1157 ns; ChaCha20-Poly1305: 687 vs
    /// 2896 ns). aws-lc-rs was 25% faster for AES-GCM at 1420 B but slower at
    /// 64 B and took 4x longer to build (50 s vs 12.5 s on one core).
    pub const FASTEST: Backend = Backend::Ring;

    pub const fn name(self) -> &'static str {
        match self {
            Backend::RustCrypto => "rustcrypto",
            Backend::Ring => "ring",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The key was rejected (wrong length for the suite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyError;

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("key length does not match the suite")
    }
}

impl std::error::Error for KeyError {}

/// RFC 4106 with a 192-bit key (aes-gcm names only the 128 and 256-bit types).
type Aes192Gcm = aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

enum Imp {
    RcAes128(WipeBox<aes_gcm::Aes128Gcm>),
    RcAes192(WipeBox<Aes192Gcm>),
    RcAes256(WipeBox<aes_gcm::Aes256Gcm>),
    RcChaCha(WipeBox<chacha20poly1305::ChaCha20Poly1305>),
    Ring(WipeBox<ring::aead::LessSafeKey>),
}

/// A software AEAD for one SA, selected at runtime by [`Backend`].
pub struct SoftAead {
    suite: Suite,
    backend: Backend,
    imp: Imp,
}

impl core::fmt::Debug for SoftAead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftAead")
            .field("suite", &self.suite)
            .field("backend", &self.backend)
            .finish()
    }
}

impl SoftAead {
    /// Key an AEAD for `suite` (the key without the salt). AES-192-GCM is
    /// keyed on RustCrypto whatever `backend` says (ring has none).
    pub fn new(backend: Backend, suite: Suite, key: &[u8]) -> Result<Self, KeyError> {
        use aes_gcm::KeyInit;
        if key.len() != suite.key_len() {
            return Err(KeyError);
        }
        let backend = match suite.cipher {
            Cipher::Aes192Gcm => Backend::RustCrypto,
            _ => backend,
        };
        let imp = match backend {
            Backend::RustCrypto => match suite.cipher {
                Cipher::Aes128Gcm => Imp::RcAes128(WipeBox::new(
                    aes_gcm::Aes128Gcm::new_from_slice(key).map_err(|_| KeyError)?,
                )),
                Cipher::Aes192Gcm => Imp::RcAes192(WipeBox::new(
                    Aes192Gcm::new_from_slice(key).map_err(|_| KeyError)?,
                )),
                Cipher::Aes256Gcm => Imp::RcAes256(WipeBox::new(
                    aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|_| KeyError)?,
                )),
                Cipher::ChaCha20Poly1305 => Imp::RcChaCha(WipeBox::new(
                    chacha20poly1305::ChaCha20Poly1305::new_from_slice(key)
                        .map_err(|_| KeyError)?,
                )),
            },
            Backend::Ring => {
                let alg = match suite.cipher {
                    Cipher::Aes128Gcm => &ring::aead::AES_128_GCM,
                    Cipher::Aes256Gcm => &ring::aead::AES_256_GCM,
                    Cipher::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
                    // Mapped to RustCrypto above.
                    Cipher::Aes192Gcm => return Err(KeyError),
                };
                Imp::Ring(WipeBox::new(ring::aead::LessSafeKey::new(
                    ring::aead::UnboundKey::new(alg, key).map_err(|_| KeyError)?,
                )))
            }
        };
        Ok(Self {
            suite,
            backend,
            imp,
        })
    }

    /// The backend doing the work (RustCrypto for AES-192-GCM, whatever
    /// was asked).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn seal_one(&self, op: &CryptoOp, buf: &mut [u8]) -> bool {
        use aes_gcm::AeadInPlace;
        if buf.len() < op.end() {
            return false;
        }
        let (head, icv) = buf.split_at_mut(op.text_range().end);
        let text = &mut head[op.text_off as usize..];
        let icv = &mut icv[..ICV_LEN];
        macro_rules! rc {
            ($c:expr) => {
                match $c.encrypt_in_place_detached((&op.nonce).into(), op.aad(), text) {
                    Ok(tag) => {
                        icv.copy_from_slice(&tag);
                        true
                    }
                    Err(_) => false,
                }
            };
        }
        match &self.imp {
            Imp::RcAes128(c) => rc!(c),
            Imp::RcAes192(c) => rc!(c),
            Imp::RcAes256(c) => rc!(c),
            Imp::RcChaCha(c) => rc!(c),
            Imp::Ring(k) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(op.nonce);
                match k.seal_in_place_separate_tag(nonce, ring::aead::Aad::from(op.aad()), text) {
                    Ok(tag) => {
                        icv.copy_from_slice(tag.as_ref());
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    }

    fn open_one(&self, op: &CryptoOp, buf: &mut [u8]) -> bool {
        use aes_gcm::AeadInPlace;
        if buf.len() < op.end() {
            return false;
        }
        match &self.imp {
            Imp::Ring(k) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(op.nonce);
                let in_out = &mut buf[op.text_off as usize..op.end()];
                k.open_in_place(nonce, ring::aead::Aad::from(op.aad()), in_out)
                    .is_ok()
            }
            imp => {
                let (head, icv) = buf.split_at_mut(op.text_range().end);
                let text = &mut head[op.text_off as usize..];
                let tag = aes_gcm::Tag::clone_from_slice(&icv[..ICV_LEN]);
                match imp {
                    Imp::RcAes128(c) => c
                        .decrypt_in_place_detached((&op.nonce).into(), op.aad(), text, &tag)
                        .is_ok(),
                    Imp::RcAes192(c) => c
                        .decrypt_in_place_detached((&op.nonce).into(), op.aad(), text, &tag)
                        .is_ok(),
                    Imp::RcAes256(c) => c
                        .decrypt_in_place_detached((&op.nonce).into(), op.aad(), text, &tag)
                        .is_ok(),
                    Imp::RcChaCha(c) => c
                        .decrypt_in_place_detached((&op.nonce).into(), op.aad(), text, &tag)
                        .is_ok(),
                    Imp::Ring(_) => false,
                }
            }
        }
    }
}

impl BatchAead for SoftAead {
    fn suite(&self) -> Suite {
        self.suite
    }

    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    fn seal(&self, jobs: &mut [AeadJob<'_>]) {
        for j in jobs {
            j.ok = self.seal_one(&j.op, j.buf);
        }
    }

    fn open(&self, jobs: &mut [AeadJob<'_>]) {
        for j in jobs {
            j.ok = self.open_one(&j.op, j.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(text_len: usize) -> CryptoOp {
        CryptoOp::new([3; NONCE_LEN], &[1, 2, 3, 4, 0, 0, 0, 9], 8, text_len)
    }

    #[test]
    fn every_backend_gives_identical_bytes() {
        for suite in [
            Suite::AES128_GCM_16,
            Suite::AES192_GCM_16,
            Suite::AES256_GCM_16,
            Suite::CHACHA20_POLY1305,
        ] {
            let key: Vec<u8> = (0..suite.key_len() as u8).collect();
            let outs: Vec<Vec<u8>> = Backend::ALL
                .iter()
                .map(|&b| {
                    let a = SoftAead::new(b, suite, &key).unwrap();
                    let mut buf: Vec<u8> = (0..8 + 100 + 16).map(|i| i as u8).collect();
                    let mut jobs = [AeadJob {
                        op: op(100),
                        buf: &mut buf,
                        ok: false,
                    }];
                    a.seal(&mut jobs);
                    assert!(jobs[0].ok);
                    buf
                })
                .collect();
            assert!(outs.windows(2).all(|w| w[0] == w[1]), "{suite:?}");
        }
    }

    #[test]
    fn rejects_short_buffers_and_tampered_icv_without_panicking() {
        for b in Backend::ALL {
            let a = SoftAead::new(b, Suite::AES128_GCM_16, &[0; 16]).unwrap();
            let mut short = vec![0u8; 20];
            let mut jobs = [AeadJob {
                op: op(100),
                buf: &mut short,
                ok: true,
            }];
            a.seal(&mut jobs);
            assert!(!jobs[0].ok);
            let mut buf = vec![0u8; 8 + 10 + 16];
            let mut jobs = [AeadJob {
                op: op(10),
                buf: &mut buf,
                ok: false,
            }];
            a.seal(&mut jobs);
            jobs[0].buf[30] ^= 1;
            a.open(&mut jobs);
            assert!(!jobs[0].ok, "{b:?}");
        }
    }

    #[test]
    fn aes192_gcm_on_ring_is_done_by_rustcrypto_and_says_so() {
        let a = SoftAead::new(Backend::Ring, Suite::AES192_GCM_16, &[7; 24]).unwrap();
        assert_eq!(a.backend(), Backend::RustCrypto);
        assert_eq!(a.backend_name(), "rustcrypto");
        let b = SoftAead::new(Backend::Ring, Suite::AES256_GCM_16, &[7; 32]).unwrap();
        assert_eq!(b.backend(), Backend::Ring);
        assert_eq!(
            SoftAead::new(Backend::Ring, Suite::AES192_GCM_16, &[7; 16]).err(),
            Some(KeyError)
        );
    }

    #[test]
    fn rejects_keys_of_the_wrong_length() {
        assert_eq!(
            SoftAead::new(Backend::Ring, Suite::AES256_GCM_16, &[0; 16]).err(),
            Some(KeyError)
        );
        assert_eq!(
            SoftAead::new(Backend::RustCrypto, Suite::CHACHA20_POLY1305, &[0; 31]).err(),
            Some(KeyError)
        );
    }
}
