//! The dataplane's AEAD backends behind the ESP engine's [`BatchAead`]:
//! the engine's software ones (`ring`, RustCrypto) and intel-ipsec-mb
//! through DPDK's synchronous CPU-crypto API (`crypto_aesni_gcm`, and
//! `crypto_chacha20_poly1305` where it offers CPU crypto): one vector call
//! per run of packets, on the worker's own core, the engine ipsec-secgw's
//! cpu-crypto mode uses. Outbound AES-GCM skips DPDK's wrapper (which calls
//! ipsec-mb's GCM init, update and finalize apart) for ipsec-mb's one-call
//! routine ([`dpdk::ImbGcmKey`]): 8 ns less per packet, measured.
//!
//! A suite the ipsec-mb devices cannot do, or an SA for which they have no
//! session left (`dataplane.crypto.sessions` is per device), falls back to
//! `ring`, and [`Aead::new`] says so ([`Fallback`]): the worker logs it once
//! per SA, counts it (`esprit_sa_install_failures_total{reason}`) and notes
//! the backend in the SA's state, where `esprit-ctl list-sas` shows it.

use dpdk::{AeadAlgo, AeadDirection, AeadSession, CpuAeadJob, CryptoDev, Eal, ImbGcmKey, SessionPool};
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

/// The intel-ipsec-mb devices and their session pools.
pub struct MbDevices {
    gcm: (CryptoDev, SessionPool),
    chacha: Option<(CryptoDev, SessionPool)>,
}

impl MbDevices {
    /// Probes the devices, with room for `sessions` SA directions each.
    pub fn open(eal: &Eal, sessions: u32) -> Result<MbDevices, String> {
        let open = |name: &str, pool: &str| -> Result<(CryptoDev, SessionPool), String> {
            let dev = CryptoDev::probe(eal, name).map_err(|e| format!("dataplane.crypto.backend ipsec-mb: {e}"))?;
            if !dev.has_cpu_crypto() {
                return Err(format!("{name} offers no CPU crypto"));
            }
            let pool = SessionPool::new(eal, pool, &dev, sessions).map_err(|e| format!("dataplane.crypto.sessions: {e}"))?;
            dev.configure_and_start(1, 128, &pool).map_err(|e| e.to_string())?;
            Ok((dev, pool))
        };
        let gcm = open("crypto_aesni_gcm_esprit", "esprit_gcm_sess")?;
        let chacha = open("crypto_chacha20_poly1305_esprit", "esprit_cc_sess").ok();
        Ok(MbDevices { gcm, chacha })
    }

    /// A session for one SA direction, or why there is none.
    fn session(&self, suite: Suite, encrypt: bool, key: &[u8], esn: bool) -> Result<AeadSession, Fallback> {
        let (algo, (dev, pool)) = match suite.cipher {
            Cipher::ChaCha20Poly1305 => (AeadAlgo::Chacha20Poly1305, self.chacha.as_ref().ok_or(Fallback::NoSuite)?),
            _ => (AeadAlgo::AesGcm, &self.gcm),
        };
        let dir = if encrypt { AeadDirection::Encrypt } else { AeadDirection::Decrypt };
        // RFC 4106 §5 / RFC 7634 §2.1: AAD = SPI | SN, or SPI | ESN (12 bytes).
        AeadSession::new(dev, pool, algo, dir, key, 12, if esn { 12 } else { 8 }).map_err(|_| Fallback::NoSession)
    }
}

/// One SA direction on intel-ipsec-mb.
pub struct MbAead {
    suite: Suite,
    pub(crate) session: AeadSession,
    pub(crate) encrypt: bool,
    /// AES-GCM encryption: the key for intel-ipsec-mb's one-call routine,
    /// which the outbound run uses instead of the CPU-crypto session.
    pub(crate) imb: Option<ImbGcmKey>,
}

impl MbAead {
    fn run(&self, jobs: &mut [AeadJob<'_>]) {
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
            self.session.cpu_process(&mut cpu[..n]);
            let oks: [bool; 32] = core::array::from_fn(|i| cpu[i].ok);
            for (j, ok) in chunk.iter_mut().zip(oks) {
                j.ok = ok;
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
        let mut fallback = None;
        if let (BackendChoice::IpsecMb, Some(mb)) = (choice, mb) {
            match mb.session(p.suite, encrypt, p.keymat.key(), p.esn) {
                Ok(session) => {
                    let imb = match p.suite.cipher {
                        Cipher::Aes128Gcm | Cipher::Aes256Gcm if encrypt => {
                            ImbGcmKey::new(p.keymat.key(), if p.esn { 12 } else { 8 })
                        }
                        _ => None,
                    };
                    return Ok((Aead::Mb(MbAead { suite: p.suite, session, encrypt, imb }), None));
                }
                Err(f) => fallback = Some(f),
            }
        }
        let soft = match choice {
            BackendChoice::Soft(b) => b,
            BackendChoice::IpsecMb => esp::Backend::FASTEST,
        };
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
