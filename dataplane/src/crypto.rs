//! The dataplane's AEAD backends behind the ESP engine's [`BatchAead`]:
//! the engine's software ones (`ring`, RustCrypto) and intel-ipsec-mb
//! (`crypto.backend: ipsec-mb`), which does every suite the engine does:
//!
//! * AES-GCM (128, 192 and 256-bit keys) inbound through DPDK's synchronous
//!   CPU-crypto API on `crypto_aesni_gcm`: one vector call per run of
//!   packets, on the worker's own core, the engine ipsec-secgw's cpu-crypto
//!   mode uses; outbound through ipsec-mb's one-call GCM routine
//!   ([`dpdk::ImbKey`]), which skips DPDK's wrapper (it calls ipsec-mb's
//!   GCM init, update and finalize apart): 8 ns less per packet, measured.
//! * ChaCha20-Poly1305 both ways through ipsec-mb's direct API: DPDK
//!   22.11's `crypto_chacha20_poly1305` advertises CPU crypto but sets no
//!   `sym_cpu_process`, so every job of a CPU-crypto call fails there.
//!
//! [`MbDevices::open`] seals and opens a packet of every suite through
//! these very paths and compares with RustCrypto; a suite that fails is
//! refused on ipsec-mb, with a line saying so at start, and each SA of it
//! is keyed on `ring` instead, with a line naming the SA. Nothing falls
//! back silently.
//!
//! Keys: DPDK zeroes a session's private data when it is freed
//! (`rte_cryptodev_sym_session_free`); [`dpdk::ImbKey`] wipes its key with
//! `explicit_bzero`; the software backends' key schedules are wiped by the
//! ESP engine.
//!
//! An SA for which ipsec-mb was configured but which it cannot take (a
//! suite refused at start, or no session left: `dataplane.crypto.sessions`)
//! is keyed on `ring`, and [`Aead::new`] says so ([`Fallback`]): the worker
//! logs it once per SA, counts it (`esprit_sa_install_failures_total{reason}`)
//! and notes the backend in the SA's state, where `esprit-ctl list-sas` shows it.

use dpdk::{AeadAlgo, AeadDirection, AeadSession, CpuAeadJob, CpuBatch, CryptoDev, Eal, ImbKey, SessionPool};
use esp::{AeadJob, BatchAead, Cipher, SoftAead, Suite};
use sa_table::Backends;

/// Why an SA for which intel-ipsec-mb was configured runs on software.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No ipsec-mb device does the SA's suite.
    NoSuite,
    /// The device's session pool is used up (`dataplane.crypto.sessions`).
    NoSession,
}

impl Fallback {
    /// The `reason` label of `esprit_sa_install_failures_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Fallback::NoSuite => "ipsec_mb_no_suite",
            Fallback::NoSession => "ipsec_mb_no_session",
        }
    }
}

/// Which backend new SAs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Soft(esp::Backend),
    IpsecMb,
}

impl BackendChoice {
    /// `auto`, `ring`, `rustcrypto` or `ipsec-mb`.
    pub fn from_name(name: &str) -> Option<BackendChoice> {
        match name {
            "auto" => Some(BackendChoice::Soft(esp::Backend::FASTEST)),
            "ipsec-mb" => Some(BackendChoice::IpsecMb),
            n => esp::Backend::from_name(n).map(BackendChoice::Soft),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Soft(b) => b.name(),
            BackendChoice::IpsecMb => "ipsec-mb",
        }
    }
}

/// The ciphers ipsec-mb is asked for, one entry each in [`MbDevices`]'s
/// self-test.
const MB_CIPHERS: [Cipher; 4] = [Cipher::Aes128Gcm, Cipher::Aes192Gcm, Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305];

/// The intel-ipsec-mb GCM device and its session pool, and what the
/// self-test refused.
pub struct MbDevices {
    gcm: (CryptoDev, SessionPool),
    /// Ciphers that failed the self-test at start, with the reason.
    refused: Vec<(Cipher, String)>,
}

impl MbDevices {
    /// Probes the device, with room for `sessions` SA directions, and
    /// checks every suite (see the module docs).
    pub fn open(eal: &Eal, sessions: u32) -> Result<MbDevices, String> {
        let dev = CryptoDev::probe(eal, "crypto_aesni_gcm_esprit").map_err(|e| format!("dataplane.crypto.backend ipsec-mb: {e}"))?;
        if !dev.has_cpu_crypto() {
            return Err("crypto_aesni_gcm offers no CPU crypto".into());
        }
        let pool = SessionPool::new(eal, "esprit_gcm_sess", &dev, sessions).map_err(|e| format!("dataplane.crypto.sessions: {e}"))?;
        // The self-test's sessions come from a pool of their own, so that
        // `dataplane.crypto.sessions` is exactly what the SAs get.
        let test_pool = SessionPool::new(eal, "esprit_gcm_test", &dev, 2).map_err(|e| format!("ipsec-mb self-test: {e}"))?;
        dev.configure_and_start(1, 128, &pool).map_err(|e| e.to_string())?;
        let mut mb = MbDevices { gcm: (dev, test_pool), refused: Vec::new() };
        for c in MB_CIPHERS {
            if let Err(why) = mb.self_test(c) {
                tracing::warn!(
                    "esprit-dataplane: crypto ipsec-mb refuses {c:?}: {why}; its SAs are keyed on {}",
                    esp::Backend::FASTEST.name()
                );
                mb.refused.push((c, why));
            }
        }
        mb.gcm.1 = pool;
        Ok(mb)
    }

    /// Ciphers the self-test refused, with the reason.
    pub fn refused(&self) -> &[(Cipher, String)] {
        &self.refused
    }

    /// One SA direction on ipsec-mb, or why not.
    fn aead(&self, p: &esp::SaParams, encrypt: bool) -> Result<MbAead, (Fallback, String)> {
        let suite = p.suite;
        if let Some((_, why)) = self.refused.iter().find(|(c, _)| *c == suite.cipher) {
            return Err((Fallback::NoSuite, format!("refused at start ({why})")));
        }
        // RFC 4106 §5 / RFC 7634 §2.1: AAD = SPI | SN, or SPI | ESN (12 bytes).
        let aad_len = if p.esn { 12 } else { 8 };
        let key = p.keymat.key();
        let imp = match (suite.cipher, encrypt) {
            (Cipher::ChaCha20Poly1305, _) => MbImp::Direct(
                ImbKey::chacha20_poly1305(key, aad_len)
                    .ok_or((Fallback::NoSuite, "intel-ipsec-mb refused the ChaCha20-Poly1305 key".to_owned()))?,
            ),
            (_, true) => match ImbKey::aes_gcm(key, aad_len) {
                Some(k) => MbImp::Direct(k),
                None => MbImp::Session(self.session(AeadDirection::Encrypt, key, aad_len)?),
            },
            (_, false) => MbImp::Session(self.session(AeadDirection::Decrypt, key, aad_len)?),
        };
        Ok(MbAead { suite, encrypt, imp })
    }

    fn session(&self, dir: AeadDirection, key: &[u8], aad_len: usize) -> Result<AeadSession, (Fallback, String)> {
        let (dev, pool) = &self.gcm;
        AeadSession::new(dev, pool, AeadAlgo::AesGcm, dir, key, 12, aad_len as u16).map_err(|e| (Fallback::NoSession, e.to_string()))
    }

    /// Seals a packet of `cipher` both with and without ESN on the SA
    /// paths of ipsec-mb and on RustCrypto, compares, opens it again, and
    /// checks that a flipped bit is refused.
    fn self_test(&self, cipher: Cipher) -> Result<(), String> {
        for (suite, esn) in [(Suite { cipher, iiv: false }, false), (Suite { cipher, iiv: true }, true)] {
            let keymat: Vec<u8> = (0..suite.keymat_len() as u8).map(|i| i.wrapping_mul(29) ^ 0x6b).collect();
            let mut p = esp::SaParams::new(0x5e1f_7e57, suite, &keymat).ok_or("keymat length")?;
            p.esn = esn;
            let soft = esp::soft_aead(esp::Backend::RustCrypto, &p).map_err(|e| e.to_string())?;
            let seal = self.aead(&p, true).map_err(|(_, why)| why)?;
            let open = Aead::Mb(self.aead(&p, false).map_err(|(_, why)| why)?);
            let aad = [0x5e, 0x1f, 0x7e, 0x57, 0, 0, 0, 1, 0, 0, 0, 2];
            let op = esp::CryptoOp::new([0xa5; 12], &aad[..if esn { 12 } else { 8 }], 16, 77);
            let plain: Vec<u8> = (0..op.end()).map(|i| (i * 7) as u8).collect();
            let sealed = |a: &dyn BatchAead| -> Option<Vec<u8>> {
                let mut b = plain.clone();
                let mut jobs = [AeadJob { op, buf: &mut b, ok: false }];
                a.seal(&mut jobs);
                jobs[0].ok.then_some(b)
            };
            let expect = sealed(&soft).ok_or("RustCrypto failed to seal")?;
            // The pipeline's own batch path (outbound runs).
            let mut v = dpdk::CpuVec::new();
            let mut batched = plain.clone();
            let mask = {
                let mut batch = v.batch();
                let (nonce, aad) = (op.nonce, *op.aad_array());
                let data = &mut batched[op.text_range().start..op.end()];
                if !batch.push(data, &nonce, &aad, 0) {
                    return Err("batch refused the packet".into());
                }
                seal.seal_batch(&mut batch)
            };
            let mut got = sealed(&Aead::Mb(seal)).ok_or("sealing failed")?;
            if mask != 1 || got != expect || batched != expect {
                return Err(format!("sealed bytes differ from RustCrypto's (ESN {esn})"));
            }
            let mut bad = got.clone();
            bad[op.end() - 1] ^= 1;
            for (buf, want) in [(&mut got, true), (&mut bad, false)] {
                let mut jobs = [AeadJob { op, buf, ok: !want }];
                open.open(&mut jobs);
                if jobs[0].ok != want {
                    return Err(format!("opening {} packet failed (ESN {esn})", if want { "a sealed" } else { "a tampered" }));
                }
            }
            // The tag overwrote the plaintext's last 16 octets; the text is back.
            let end = op.text_range().end;
            if got[..end] != plain[..end] {
                return Err(format!("opened bytes differ from the plaintext (ESN {esn})"));
            }
        }
        Ok(())
    }
}

/// How an [`MbAead`] reaches intel-ipsec-mb.
enum MbImp {
    /// DPDK's CPU-crypto session (AES-GCM decryption; encryption when the
    /// direct key cannot be made).
    Session(AeadSession),
    /// The direct API (AES-GCM encryption, ChaCha20-Poly1305 both ways).
    Direct(ImbKey),
}

/// One SA direction on intel-ipsec-mb.
pub struct MbAead {
    suite: Suite,
    pub(crate) encrypt: bool,
    imp: MbImp,
}

impl MbAead {
    /// Seals the worker's batch (the outbound run) and empties it; the
    /// mask of the tags that succeeded.
    pub(crate) fn seal_batch(&self, batch: &mut CpuBatch<'_>) -> u64 {
        match &self.imp {
            MbImp::Direct(k) => batch.seal_imb(k),
            MbImp::Session(s) => batch.process(s),
        }
    }

    fn run(&self, jobs: &mut [AeadJob<'_>]) {
        match &self.imp {
            MbImp::Direct(k) => {
                for j in jobs.iter_mut() {
                    let (start, end) = (j.op.text_range().start, j.op.icv_range().end);
                    let (nonce, aad) = (j.op.nonce, *j.op.aad_array());
                    j.ok = match j.buf.get_mut(start..end) {
                        Some(data) if self.encrypt => k.seal(data, &nonce, &aad),
                        Some(data) => k.open(data, &nonce, &aad),
                        None => false,
                    };
                }
            }
            MbImp::Session(session) => {
                for chunk in jobs.chunks_mut(32) {
                    let mut cpu: [CpuAeadJob<'_>; 32] =
                        core::array::from_fn(|_| CpuAeadJob { data: &mut [], iv: [0; 16], aad: [0; 16], ok: false });
                    let n = chunk.len();
                    for (c, j) in cpu.iter_mut().zip(chunk.iter_mut()) {
                        let (start, end) = (j.op.text_range().start, j.op.icv_range().end);
                        let Some(data) = j.buf.get_mut(start..end) else { continue };
                        c.data = data;
                        c.iv[..12].copy_from_slice(&j.op.nonce);
                        let aad = j.op.aad();
                        c.aad[..aad.len()].copy_from_slice(aad);
                    }
                    session.cpu_process(&mut cpu[..n]);
                    let oks: [bool; 32] = core::array::from_fn(|i| cpu[i].ok);
                    for (j, ok) in chunk.iter_mut().zip(oks) {
                        j.ok = ok;
                    }
                }
            }
        }
    }
}

/// The AEAD of one SA direction, whichever backend.
pub enum Aead {
    Soft(SoftAead),
    Mb(MbAead),
}

impl Aead {
    /// Keys an AEAD for `p` (one direction) on the chosen backend; with
    /// ipsec-mb chosen, says why the SA got `ring` instead, if it did.
    pub fn new(choice: BackendChoice, mb: Option<&MbDevices>, p: &esp::SaParams, encrypt: bool) -> Result<(Aead, Option<Fallback>), esp::SaError> {
        let soft = match choice {
            BackendChoice::Soft(b) => b,
            BackendChoice::IpsecMb => esp::Backend::FASTEST,
        };
        let mut fallback = None;
        if choice == BackendChoice::IpsecMb {
            let (f, why) = match mb {
                Some(mb) => match mb.aead(p, encrypt) {
                    Ok(m) => return Ok((Aead::Mb(m), None)),
                    Err(e) => e,
                },
                None => (Fallback::NoSuite, "no ipsec-mb devices".to_owned()),
            };
            tracing::warn!(
                spi = format_args!("{:08x}", p.spi),
                "esprit-dataplane: crypto ipsec-mb cannot key the {} SA {:#010x} ({}): {why}; {} does it",
                if encrypt { "outbound" } else { "inbound" },
                p.spi,
                p.suite.name(),
                soft.name()
            );
            fallback = Some(f);
        }
        esp::soft_aead(soft, p).map(|a| (Aead::Soft(a), fallback))
    }

    /// The backend as the SA table records it.
    pub fn backend(&self) -> Backends {
        match self {
            Aead::Mb(_) => Backends::IPSEC_MB,
            Aead::Soft(s) if s.backend_name() == esp::Backend::RustCrypto.name() => Backends::RUSTCRYPTO,
            Aead::Soft(_) => Backends::RING,
        }
    }
}

impl BatchAead for Aead {
    fn suite(&self) -> Suite {
        match self {
            Aead::Soft(s) => s.suite(),
            Aead::Mb(m) => m.suite,
        }
    }

    fn backend_name(&self) -> &'static str {
        match self {
            Aead::Soft(s) => s.backend_name(),
            Aead::Mb(_) => "ipsec-mb",
        }
    }

    fn seal(&self, jobs: &mut [AeadJob<'_>]) {
        match self {
            Aead::Soft(s) => s.seal(jobs),
            Aead::Mb(m) if m.encrypt => m.run(jobs),
            Aead::Mb(_) => jobs.iter_mut().for_each(|j| j.ok = false),
        }
    }

    fn open(&self, jobs: &mut [AeadJob<'_>]) {
        match self {
            Aead::Soft(s) => s.open(jobs),
            Aead::Mb(m) if !m.encrypt => m.run(jobs),
            Aead::Mb(_) => jobs.iter_mut().for_each(|j| j.ok = false),
        }
    }
}
