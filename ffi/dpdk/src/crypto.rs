//! Symmetric cryptodev: AEAD sessions and op bursts, for lookaside crypto
//! (`crypto_aesni_gcm` from intel-ipsec-mb here, QAT on real hardware).
use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;

use dpdk_sys::{rte_crypto_op, rte_crypto_sym_op, rte_mempool};

use crate::{Eal, Error, Mbuf, Result};

/// Where the IV sits in an op: right after the op and its symmetric part
/// (DPDK's convention, as in its examples).
const IV_OFFSET: usize = std::mem::size_of::<rte_crypto_op>() + std::mem::size_of::<rte_crypto_sym_op>();
/// The IV area holds up to 16 bytes; the AAD follows it.
const AAD_OFFSET: usize = IV_OFFSET + 16;
/// Jobs per CPU-crypto vector call (a run of packets is at most a burst).
const CPU_CHUNK: usize = 32;
/// Per-op private room: IV (16) and AAD (up to 16).
const OP_PRIV_SIZE: u16 = 32;

/// AEAD algorithms esprit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadAlgo {
    AesGcm,
    Chacha20Poly1305,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadDirection {
    Encrypt,
    Decrypt,
}

/// A crypto device.
#[derive(Debug)]
pub struct CryptoDev {
    id: u8,
}

/// Mempool for a device's symmetric sessions. Never freed (like every mempool).
#[derive(Debug)]
pub struct SessionPool {
    raw: NonNull<rte_mempool>,
}

/// Mempool of symmetric crypto ops with room for IV and AAD. Never freed.
#[derive(Debug)]
pub struct CryptoOpPool {
    raw: NonNull<rte_mempool>,
}

// SAFETY: DPDK mempools are MP/MC safe and these are never freed.
unsafe impl Send for SessionPool {}
// SAFETY: as above.
unsafe impl Sync for SessionPool {}
// SAFETY: as above.
unsafe impl Send for CryptoOpPool {}
// SAFETY: as above.
unsafe impl Sync for CryptoOpPool {}

/// One AEAD operation on an mbuf: encrypt or decrypt `data_len` bytes at
/// `data_offset` in place, with the tag at `digest_offset` (written on
/// encrypt, checked on decrypt). `iv` and `aad` hold the first `iv_len`/
/// `aad_len` bytes the session was made with. After processing, `ok` tells
/// whether the device reported success (a failed tag check is `false`).
#[derive(Debug)]
pub struct AeadJob<'a> {
    pub mbuf: &'a mut Mbuf,
    pub data_offset: u32,
    pub data_len: u32,
    pub digest_offset: u32,
    pub iv: [u8; 16],
    pub aad: [u8; 16],
    pub ok: bool,
}

/// A symmetric AEAD session on one device; freed on drop.
#[derive(Debug)]
pub struct AeadSession {
    dev: u8,
    raw: NonNull<c_void>,
    aad_len: usize,
}

// SAFETY: a session is immutable after creation and DPDK allows using it from
// several queue pairs/threads; it is freed once, on drop.
unsafe impl Send for AeadSession {}
// SAFETY: as above.
unsafe impl Sync for AeadSession {}

impl CryptoDev {
    /// Probes a virtual crypto device (`crypto_aesni_gcm0`, `crypto_null0`, ...).
    pub fn probe(eal: &Eal, devargs: &str) -> Result<CryptoDev> {
        let c = CString::new(devargs).map_err(|_| Error::invalid("rte_dev_probe", "devargs has a NUL byte"))?;
        // SAFETY: valid C string for the call; the EAL is started.
        let rc = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if rc < 0 {
            return Err(Error::code("rte_dev_probe", rc).on(devargs));
        }
        CryptoDev::by_name(eal, devargs.split(',').next().unwrap_or(devargs))
    }

    pub fn by_name(_eal: &Eal, name: &str) -> Result<CryptoDev> {
        let c = CString::new(name).map_err(|_| Error::invalid("rte_cryptodev_get_dev_id", "name has a NUL byte"))?;
        // SAFETY: valid C string for the call.
        let id = unsafe { dpdk_sys::rte_cryptodev_get_dev_id(c.as_ptr()) };
        if id < 0 {
            return Err(Error::code("rte_cryptodev_get_dev_id", id).on(name));
        }
        Ok(CryptoDev { id: id as u8 })
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// The driver's name (`crypto_aesni_gcm`).
    pub fn driver_name(&self) -> String {
        // SAFETY: plain data that DPDK fills; valid device id.
        let mut info: dpdk_sys::rte_cryptodev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid device id and out-pointer.
        unsafe { dpdk_sys::rte_cryptodev_info_get(self.id, &mut info) };
        if info.driver_name.is_null() {
            return String::new();
        }
        // SAFETY: driver_name is a static C string of the driver.
        unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
    }

    /// Configures `queue_pairs` queue pairs of `nb_desc` descriptors, using
    /// `sessions` for sessionless ops, and starts the device.
    pub fn configure_and_start(&self, queue_pairs: u16, nb_desc: u32, sessions: &SessionPool) -> Result<()> {
        let conf = dpdk_sys::rte_cryptodev_config { socket_id: 0, nb_queue_pairs: queue_pairs, ff_disable: 0 };
        // SAFETY: valid device id; conf lives for the call (DPDK copies it).
        let rc = unsafe { dpdk_sys::rte_cryptodev_configure(self.id, &conf as *const _ as *mut _) };
        if rc != 0 {
            return Err(Error::code("rte_cryptodev_configure", rc).on(format!("cryptodev {}", self.id)));
        }
        for qp in 0..queue_pairs {
            let qconf = dpdk_sys::rte_cryptodev_qp_conf { nb_descriptors: nb_desc, mp_session: sessions.raw.as_ptr() };
            // SAFETY: valid device and queue-pair ids; qconf lives for the call.
            let rc = unsafe { dpdk_sys::rte_cryptodev_queue_pair_setup(self.id, qp, &qconf, 0) };
            if rc != 0 {
                return Err(Error::code("rte_cryptodev_queue_pair_setup", rc).on(format!("cryptodev {} qp {qp}", self.id)));
            }
        }
        // SAFETY: valid, configured device.
        let rc = unsafe { dpdk_sys::rte_cryptodev_start(self.id) };
        if rc != 0 {
            return Err(Error::code("rte_cryptodev_start", rc).on(format!("cryptodev {}", self.id)));
        }
        Ok(())
    }

    /// Runs `jobs` through queue pair `qp` with `session`: one enqueue burst,
    /// then dequeues until every op came back. Returns how many succeeded
    /// (each job's `ok` says which).
    pub fn process_aead(&self, qp: u16, session: &AeadSession, ops: &CryptoOpPool, jobs: &mut [AeadJob<'_>]) -> Result<usize> {
        if session.dev != self.id {
            return Err(Error::invalid("rte_cryptodev_enqueue_burst", "session belongs to another device"));
        }
        const MAX: usize = 64;
        if jobs.len() > MAX {
            return Err(Error::invalid("rte_cryptodev_enqueue_burst", "more than 64 jobs in one burst"));
        }
        let n = jobs.len();
        let mut raw: [*mut rte_crypto_op; MAX] = [std::ptr::null_mut(); MAX];
        // SAFETY: raw has room for n ops; the pool is a live op pool.
        let got = unsafe {
            dpdk_sys::esprit_rte_crypto_op_bulk_alloc(ops.raw.as_ptr(), dpdk_sys::RTE_CRYPTO_OP_TYPE_SYMMETRIC, raw.as_mut_ptr(), n as u16)
        };
        if got as usize != n {
            return Err(Error::code("rte_crypto_op_bulk_alloc", 105).on("op pool exhausted"));
        }
        for (i, job) in jobs.iter_mut().enumerate() {
            let m = job.mbuf.as_ptr();
            let end = job.data_offset as usize + job.data_len as usize;
            if end > job.mbuf.len() || job.digest_offset as usize + 16 > job.mbuf.len() {
                for op in &raw[..n] {
                    // SAFETY: ops allocated above, not yet enqueued.
                    unsafe { dpdk_sys::esprit_rte_crypto_op_free(*op) };
                }
                return Err(Error::invalid("rte_cryptodev_enqueue_burst", "job range outside the mbuf"));
            }
            let op = raw[i];
            // SAFETY: op is a fresh symmetric op with OP_PRIV_SIZE bytes of
            // private room after the sym op, so IV_OFFSET..AAD_OFFSET+16 is
            // in bounds; m is an mbuf the job borrows mutably for the whole
            // call; the ranges were checked against the mbuf's data above.
            unsafe {
                let base = op as *mut u8;
                std::ptr::copy_nonoverlapping(job.iv.as_ptr(), base.add(IV_OFFSET), 16);
                std::ptr::copy_nonoverlapping(job.aad.as_ptr(), base.add(AAD_OFFSET), 16);
                dpdk_sys::esprit_rte_crypto_op_attach_sym_session(op, session.raw.as_ptr());
                let sym = base.add(std::mem::size_of::<rte_crypto_op>()) as *mut rte_crypto_sym_op;
                (*sym).m_src = m;
                (*sym).m_dst = std::ptr::null_mut();
                let aead = &mut (*sym).__bindgen_anon_2.aead;
                let data = (*m).buf_addr as *mut u8;
                let data_off = (*m).data_off as u64;
                aead.data.offset = job.data_offset;
                aead.data.length = job.data_len;
                aead.digest.data = data.add(data_off as usize + job.digest_offset as usize);
                aead.digest.phys_addr = (*m).buf_iova + data_off + job.digest_offset as u64;
                aead.aad.data = base.add(AAD_OFFSET);
                aead.aad.phys_addr = (*op).phys_addr + AAD_OFFSET as u64;
            }
        }
        // SAFETY: raw[..n] are prepared ops; the device takes the ones it reports.
        let enq = unsafe { dpdk_sys::esprit_rte_cryptodev_enqueue_burst(self.id, qp, raw.as_mut_ptr(), n as u16) } as usize;
        for op in &raw[enq..n] {
            // SAFETY: ops the device did not take are still ours.
            unsafe { dpdk_sys::esprit_rte_crypto_op_free(*op) };
        }
        let mut done: [*mut rte_crypto_op; MAX] = [std::ptr::null_mut(); MAX];
        let mut deq = 0usize;
        let mut spins = 0u64;
        while deq < enq {
            // SAFETY: done has room for the remaining ops.
            let k = unsafe {
                dpdk_sys::esprit_rte_cryptodev_dequeue_burst(self.id, qp, done.as_mut_ptr().add(deq), (enq - deq) as u16)
            } as usize;
            deq += k;
            spins += 1;
            if spins > 100_000_000 {
                return Err(Error::invalid("rte_cryptodev_dequeue_burst", "device did not return its ops"));
            }
        }
        let mut ok = 0;
        for job in jobs.iter_mut() {
            job.ok = false;
        }
        for op in &done[..deq] {
            // SAFETY: a dequeued op is ours again; its index is recovered from
            // its position among the ops we enqueued (the PMD keeps order on a
            // queue pair, but match by pointer to be safe).
            unsafe {
                let idx = raw[..enq].iter().position(|p| p == op);
                let status = (**op).__bindgen_anon_1.__bindgen_anon_1.status;
                if let Some(i) = idx {
                    jobs[i].ok = status == dpdk_sys::RTE_CRYPTO_OP_STATUS_SUCCESS as u8;
                    ok += jobs[i].ok as usize;
                }
                dpdk_sys::esprit_rte_crypto_op_free(*op);
            }
        }
        Ok(ok)
    }
}

/// One buffer for synchronous CPU crypto ([`AeadSession::cpu_process`]):
/// `data` holds the text followed by the 16-byte tag; the text is encrypted
/// or decrypted in place, the tag written or checked. `iv` and `aad` hold
/// the first `iv_len`/`aad_len` bytes the session was made with.
#[derive(Debug)]
pub struct CpuAeadJob<'a> {
    pub data: &'a mut [u8],
    pub iv: [u8; 16],
    pub aad: [u8; 16],
    pub ok: bool,
}

impl CryptoDev {
    /// Whether the device offers synchronous CPU crypto
    /// (`RTE_CRYPTODEV_FF_SYM_CPU_CRYPTO`: intel-ipsec-mb's software PMDs do).
    pub fn has_cpu_crypto(&self) -> bool {
        // SAFETY: plain data that DPDK fills; valid device id.
        let mut info: dpdk_sys::rte_cryptodev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid device id and out-pointer.
        unsafe { dpdk_sys::rte_cryptodev_info_get(self.id, &mut info) };
        info.feature_flags & u64::from(dpdk_sys::RTE_CRYPTODEV_FF_SYM_CPU_CRYPTO) != 0
    }
}

impl AeadSession {
    /// Processes the jobs in synchronous calls on the calling CPU, 32 at a time
    /// (`rte_cryptodev_sym_cpu_crypto_process`): no queues, no ops, one
    /// vector per burst, as ipsec-secgw's cpu-crypto mode does. Sets each
    /// job's `ok`; returns how many succeeded.
    pub fn cpu_process(&self, jobs: &mut [CpuAeadJob<'_>]) -> usize {
        jobs.chunks_mut(CPU_CHUNK).map(|c| self.cpu_chunk(c)).sum()
    }

    /// One vector call for at most `CPU_CHUNK` jobs.
    fn cpu_chunk(&self, jobs: &mut [CpuAeadJob<'_>]) -> usize {
        const MAX: usize = CPU_CHUNK;
        let n = jobs.len().min(MAX);
        let zero_vec = dpdk_sys::rte_crypto_vec { base: std::ptr::null_mut(), iova: 0, len: 0, tot_len: 0 };
        let zero_ptr = dpdk_sys::rte_crypto_va_iova_ptr { va: std::ptr::null_mut(), iova: 0 };
        let mut vecs = [zero_vec; MAX];
        let mut sgls = [dpdk_sys::rte_crypto_sgl { vec: std::ptr::null_mut(), num: 0 }; MAX];
        let mut ivs = [zero_ptr; MAX];
        let mut aads = [zero_ptr; MAX];
        let mut digests = [zero_ptr; MAX];
        let mut status = [0i32; MAX];
        let mut valid = [false; MAX];
        let mut m = 0;
        for (i, job) in jobs.iter_mut().take(n).enumerate() {
            job.ok = false;
            let Some(text_len) = job.data.len().checked_sub(16) else { continue };
            let base = job.data.as_mut_ptr();
            vecs[m] = dpdk_sys::rte_crypto_vec { base: base.cast(), iova: 0, len: text_len as u32, tot_len: text_len as u32 };
            // SAFETY: text_len + 16 == data.len(), so the tag pointer is in bounds.
            digests[m] = dpdk_sys::rte_crypto_va_iova_ptr { va: unsafe { base.add(text_len) }.cast(), iova: 0 };
            ivs[m] = dpdk_sys::rte_crypto_va_iova_ptr { va: job.iv.as_mut_ptr().cast(), iova: 0 };
            aads[m] = dpdk_sys::rte_crypto_va_iova_ptr { va: job.aad.as_mut_ptr().cast(), iova: 0 };
            valid[i] = true;
            m += 1;
        }
        for (k, sgl) in sgls.iter_mut().enumerate().take(m) {
            sgl.vec = &mut vecs[k];
            sgl.num = 1;
        }
        let mut vec = dpdk_sys::rte_crypto_sym_vec {
            num: m as u32,
            src_sgl: sgls.as_mut_ptr(),
            dest_sgl: std::ptr::null_mut(),
            iv: ivs.as_mut_ptr(),
            digest: digests.as_mut_ptr(),
            __bindgen_anon_1: dpdk_sys::rte_crypto_sym_vec__bindgen_ty_1 { aad: aads.as_mut_ptr() },
            status: status.as_mut_ptr(),
        };
        let ofs = dpdk_sys::rte_crypto_sym_ofs { raw: 0 };
        // SAFETY: every pointer in `vec` points into `jobs` (exclusively
        // borrowed for this call) or into the local arrays above, all alive
        // until the call returns; lengths were checked; the session belongs
        // to `self.dev`, which supports CPU crypto (the caller checked).
        // The return value counts successes; the per-job statuses say which.
        unsafe { dpdk_sys::rte_cryptodev_sym_cpu_crypto_process(self.dev, self.raw.as_ptr(), ofs, &mut vec) };
        let mut k = 0;
        let mut ok = 0;
        for (i, job) in jobs.iter_mut().take(n).enumerate() {
            if valid[i] {
                job.ok = status[k] == 0;
                ok += job.ok as usize;
                k += 1;
            }
        }
        ok
    }
}

impl SessionPool {
    /// A pool of `n` sessions sized for `dev`'s private session data.
    pub fn new(_eal: &Eal, name: &str, dev: &CryptoDev, n: u32) -> Result<SessionPool> {
        let c = CString::new(name).map_err(|_| Error::invalid("rte_cryptodev_sym_session_pool_create", "NUL in name"))?;
        // SAFETY: valid device id.
        let elt = unsafe { dpdk_sys::rte_cryptodev_sym_get_private_session_size(dev.id) };
        // SAFETY: valid C string; DPDK copies the name.
        let p = unsafe { dpdk_sys::rte_cryptodev_sym_session_pool_create(c.as_ptr(), n, elt, 0, 0, 0) };
        NonNull::new(p).map(|raw| SessionPool { raw }).ok_or_else(|| Error::last("rte_cryptodev_sym_session_pool_create").on(name))
    }
}

impl CryptoOpPool {
    pub fn new(_eal: &Eal, name: &str, n: u32) -> Result<CryptoOpPool> {
        let c = CString::new(name).map_err(|_| Error::invalid("rte_crypto_op_pool_create", "NUL in name"))?;
        // SAFETY: valid C string; DPDK copies the name.
        let p = unsafe {
            dpdk_sys::rte_crypto_op_pool_create(c.as_ptr(), dpdk_sys::RTE_CRYPTO_OP_TYPE_SYMMETRIC, n, 0, OP_PRIV_SIZE, 0)
        };
        NonNull::new(p).map(|raw| CryptoOpPool { raw }).ok_or_else(|| Error::last("rte_crypto_op_pool_create").on(name))
    }
}

impl AeadSession {
    /// An AEAD session: `key` (copied by the driver), `iv_len` (12 for ESP's
    /// salt|IV nonce), 16-byte tag, `aad_len` (8, or 12 with ESN).
    pub fn new(
        dev: &CryptoDev,
        pool: &SessionPool,
        algo: AeadAlgo,
        dir: AeadDirection,
        key: &[u8],
        iv_len: u16,
        aad_len: u16,
    ) -> Result<AeadSession> {
        if iv_len > 16 || aad_len > 16 {
            return Err(Error::invalid("rte_cryptodev_sym_session_create", "IV and AAD are at most 16 bytes"));
        }
        // SAFETY: plain C data; all-zero is a valid starting point.
        let mut x: dpdk_sys::rte_crypto_sym_xform = unsafe { std::mem::zeroed() };
        x.type_ = dpdk_sys::RTE_CRYPTO_SYM_XFORM_AEAD;
        x.next = std::ptr::null_mut();
        // SAFETY: writing the aead member of a zeroed union we own.
        unsafe {
            let a = &mut x.__bindgen_anon_1.aead;
            a.op = match dir {
                AeadDirection::Encrypt => dpdk_sys::RTE_CRYPTO_AEAD_OP_ENCRYPT,
                AeadDirection::Decrypt => dpdk_sys::RTE_CRYPTO_AEAD_OP_DECRYPT,
            };
            a.algo = match algo {
                AeadAlgo::AesGcm => dpdk_sys::RTE_CRYPTO_AEAD_AES_GCM,
                AeadAlgo::Chacha20Poly1305 => dpdk_sys::RTE_CRYPTO_AEAD_CHACHA20_POLY1305,
            };
            a.key.data = key.as_ptr();
            a.key.length = key.len() as u16;
            a.iv.offset = IV_OFFSET as u16;
            a.iv.length = iv_len;
            a.digest_length = 16;
            a.aad_length = aad_len;
        }
        // SAFETY: valid device; x and the key it points to live for the call
        // (the driver expands the key into the session); pool is live.
        let s = unsafe { dpdk_sys::rte_cryptodev_sym_session_create(dev.id, &mut x, pool.raw.as_ptr()) };
        NonNull::new(s)
            .map(|raw| AeadSession { dev: dev.id, raw, aad_len: aad_len as usize })
            .ok_or_else(|| Error::last("rte_cryptodev_sym_session_create").on(format!("cryptodev {} {algo:?}", dev.id)))
    }

    pub fn aad_len(&self) -> usize {
        self.aad_len
    }
}

impl Drop for AeadSession {
    fn drop(&mut self) {
        // SAFETY: the session was created on dev and is freed once; no op
        // referencing it is in flight (process_aead waits for all of them).
        unsafe { dpdk_sys::rte_cryptodev_sym_session_free(self.dev, self.raw.as_ptr()) };
    }
}

/// Most buffers one [`CpuVec`] call takes (a run of packets is at most a burst).
pub const CPU_VEC_MAX: usize = crate::MAX_BURST;

/// Reusable arrays of one synchronous CPU-crypto vector
/// (`rte_crypto_sym_vec`), kept by a worker for its whole life so that a
/// burst fills in only what changes per packet: no intermediate job array,
/// no zeroed per-call arrays. Fill it through [`CpuVec::batch`].
pub struct CpuVec {
    n: usize,
    vecs: [dpdk_sys::rte_crypto_vec; CPU_VEC_MAX],
    sgls: [dpdk_sys::rte_crypto_sgl; CPU_VEC_MAX],
    ivs: [dpdk_sys::rte_crypto_va_iova_ptr; CPU_VEC_MAX],
    aads: [dpdk_sys::rte_crypto_va_iova_ptr; CPU_VEC_MAX],
    digests: [dpdk_sys::rte_crypto_va_iova_ptr; CPU_VEC_MAX],
    status: [i32; CPU_VEC_MAX],
    /// IV (12 bytes used) and AAD (8 or 12) per entry.
    iv: [[u8; 16]; CPU_VEC_MAX],
    aad: [[u8; 16]; CPU_VEC_MAX],
    /// The caller's index of each entry (below 64).
    tag: [u8; CPU_VEC_MAX],
}

// SAFETY: the raw pointers in the arrays are only meaningful during one
// `CpuBatch::process` call, which rewrites them first; between calls they
// are never dereferenced, so moving the vector between threads is fine.
unsafe impl Send for CpuVec {}

impl std::fmt::Debug for CpuVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuVec").field("n", &self.n).finish()
    }
}

impl CpuVec {
    /// A vector on the heap (it is a few kilobytes), allocated once per worker.
    pub fn new() -> Box<CpuVec> {
        let zv = dpdk_sys::rte_crypto_vec { base: std::ptr::null_mut(), iova: 0, len: 0, tot_len: 0 };
        let zp = dpdk_sys::rte_crypto_va_iova_ptr { va: std::ptr::null_mut(), iova: 0 };
        Box::new(CpuVec {
            n: 0,
            vecs: [zv; CPU_VEC_MAX],
            sgls: [dpdk_sys::rte_crypto_sgl { vec: std::ptr::null_mut(), num: 1 }; CPU_VEC_MAX],
            ivs: [zp; CPU_VEC_MAX],
            aads: [zp; CPU_VEC_MAX],
            digests: [zp; CPU_VEC_MAX],
            status: [0; CPU_VEC_MAX],
            iv: [[0; 16]; CPU_VEC_MAX],
            aad: [[0; 16]; CPU_VEC_MAX],
            tag: [0; CPU_VEC_MAX],
        })
    }

    /// An empty batch whose buffers stay borrowed until it is dropped.
    pub fn batch(&mut self) -> CpuBatch<'_> {
        self.n = 0;
        CpuBatch { v: self, _data: std::marker::PhantomData }
    }
}

/// The buffers of one CPU-crypto call, borrowed for `'a`.
pub struct CpuBatch<'a> {
    v: &'a mut CpuVec,
    _data: std::marker::PhantomData<&'a mut [u8]>,
}

impl<'a> CpuBatch<'a> {
    /// Adds `data` (the text followed by its 16-byte tag, processed in
    /// place) with its IV and AAD (the session's `iv_len`/`aad_len` leading
    /// bytes are used); `tag` (below 64) names it in [`CpuBatch::process`]'s
    /// result. False, and nothing added, when the batch is full, `data` is
    /// shorter than the tag or `tag` is 64 or more.
    #[inline]
    pub fn push(&mut self, data: &'a mut [u8], iv: &[u8; 12], aad: &[u8; 12], tag: u8) -> bool {
        let v = &mut *self.v;
        let k = v.n;
        let Some(text_len) = data.len().checked_sub(16) else { return false };
        if k >= CPU_VEC_MAX || tag >= 64 {
            return false;
        }
        let base = data.as_mut_ptr();
        // Only what the ipsec-mb call reads (the DPDK call's `tot_len` is
        // filled in `process`; `iova` stays 0 from construction).
        v.vecs[k].base = base.cast();
        v.vecs[k].len = text_len as u32;
        // SAFETY: text_len + 16 == data.len(), so the tag pointer is in bounds.
        v.digests[k].va = unsafe { base.add(text_len) }.cast();
        v.iv[k][..12].copy_from_slice(iv);
        v.aad[k][..12].copy_from_slice(aad);
        v.tag[k] = tag;
        v.n = k + 1;
        true
    }

    pub fn len(&self) -> usize {
        self.v.n
    }

    pub fn is_empty(&self) -> bool {
        self.v.n == 0
    }

    /// One `rte_cryptodev_sym_cpu_crypto_process` call over the batch with
    /// `session` (whose device must offer CPU crypto: [`CryptoDev::has_cpu_crypto`]).
    /// Returns a bit mask of the tags that succeeded (sealed, or opened with
    /// a valid tag); the batch is empty again afterwards.
    pub fn process(&mut self, session: &AeadSession) -> u64 {
        let v = &mut *self.v;
        let n = v.n;
        if n == 0 {
            return 0;
        }
        // The self-references are written here, not at construction, so
        // that they are right wherever the vector has been moved since.
        for k in 0..n {
            v.vecs[k].tot_len = v.vecs[k].len;
            v.sgls[k] = dpdk_sys::rte_crypto_sgl { vec: &mut v.vecs[k], num: 1 };
            v.ivs[k].va = v.iv[k].as_mut_ptr().cast();
            v.aads[k].va = v.aad[k].as_mut_ptr().cast();
            v.status[k] = -1;
        }
        let mut vec = dpdk_sys::rte_crypto_sym_vec {
            num: n as u32,
            src_sgl: v.sgls.as_mut_ptr(),
            dest_sgl: std::ptr::null_mut(),
            iv: v.ivs.as_mut_ptr(),
            digest: v.digests.as_mut_ptr(),
            __bindgen_anon_1: dpdk_sys::rte_crypto_sym_vec__bindgen_ty_1 { aad: v.aads.as_mut_ptr() },
            status: v.status.as_mut_ptr(),
        };
        let ofs = dpdk_sys::rte_crypto_sym_ofs { raw: 0 };
        // SAFETY: entries 0..n point into buffers borrowed mutably for 'a
        // (checked to hold text and tag when pushed) or into `v`, which is
        // borrowed mutably and not moved during the call; the session
        // belongs to its device. The statuses say which entries succeeded.
        unsafe { dpdk_sys::rte_cryptodev_sym_cpu_crypto_process(session.dev, session.raw.as_ptr(), ofs, &mut vec) };
        let mut ok = 0u64;
        for k in 0..n {
            ok |= u64::from(v.status[k] == 0) << v.tag[k];
        }
        v.n = 0;
        ok
    }
}

/// The process's intel-ipsec-mb manager (only its function table is used by
/// the direct GCM API, which keeps its state in per-call contexts, so one
/// manager serves every thread).
fn imb_mgr() -> Option<NonNull<c_void>> {
    static MGR: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: plain allocation and CPU-feature detection in the library.
    let p = *MGR.get_or_init(|| unsafe { dpdk_sys::esprit_imb_mgr_new() } as usize);
    NonNull::new(p as *mut c_void)
}

/// Which AEAD an [`ImbKey`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImbCipher {
    /// AES-GCM with a 16, 24 or 32-byte key.
    AesGcm { key_len: u32 },
    Chacha20Poly1305,
}

/// A key for intel-ipsec-mb's direct API: AES-GCM expanded for its one-call
/// routine (`IMB_AESxxx_GCM_ENC`, sealing only; opening goes through a
/// CPU-crypto [`AeadSession`]), or a ChaCha20-Poly1305 key for its
/// init/update/finalize routines, both ways (DPDK 22.11's
/// chacha20_poly1305 PMD advertises CPU crypto but implements none).
/// The key is wiped (`explicit_bzero`) and freed on drop.
#[derive(Debug)]
pub struct ImbKey {
    mgr: NonNull<c_void>,
    kd: NonNull<c_void>,
    cipher: ImbCipher,
    aad_len: u64,
}

// SAFETY: the key is immutable after creation and the manager is only
// read (the direct API keeps its state in per-call contexts); both may be
// used from any thread.
unsafe impl Send for ImbKey {}
// SAFETY: as above.
unsafe impl Sync for ImbKey {}

impl ImbKey {
    /// AES-GCM: `key` is 16, 24 or 32 bytes; `aad_len` is 8 or 12 (ESP's
    /// SPI | SN, or with ESN). `None` for other lengths or when the library
    /// cannot be set up.
    pub fn aes_gcm(key: &[u8], aad_len: usize) -> Option<ImbKey> {
        if !matches!(key.len(), 16 | 24 | 32) || !matches!(aad_len, 8 | 12) {
            return None;
        }
        let mgr = imb_mgr()?;
        // SAFETY: mgr is a live manager; key is valid for key.len() bytes,
        // which the library expands into the key data it allocates.
        let kd = unsafe { dpdk_sys::esprit_imb_gcm_key_new(mgr.as_ptr(), key.as_ptr(), key.len() as u32) };
        let cipher = ImbCipher::AesGcm { key_len: key.len() as u32 };
        NonNull::new(kd).map(|kd| ImbKey { mgr, kd, cipher, aad_len: aad_len as u64 })
    }

    /// ChaCha20-Poly1305 (RFC 8439): `key` is 32 bytes, `aad_len` 8 or 12.
    pub fn chacha20_poly1305(key: &[u8], aad_len: usize) -> Option<ImbKey> {
        if key.len() != 32 || !matches!(aad_len, 8 | 12) {
            return None;
        }
        let mgr = imb_mgr()?;
        // SAFETY: key is valid for the 32 bytes the function copies.
        let kd = unsafe { dpdk_sys::esprit_imb_chacha_key_new(key.as_ptr()) };
        NonNull::new(kd).map(|kd| ImbKey { mgr, kd, cipher: ImbCipher::Chacha20Poly1305, aad_len: aad_len as u64 })
    }

    pub fn cipher(&self) -> ImbCipher {
        self.cipher
    }

    /// Whether [`ImbKey::open`] works with this key (ChaCha20-Poly1305).
    pub fn can_open(&self) -> bool {
        self.cipher == ImbCipher::Chacha20Poly1305
    }

    /// Encrypts `data` (text followed by its 16-byte tag) in place and
    /// writes the tag; `aad` holds at least the key's `aad_len` bytes.
    /// False when `data` is shorter than a tag or `aad` than the AAD.
    pub fn seal(&self, data: &mut [u8], nonce: &[u8; 12], aad: &[u8]) -> bool {
        let Some(text_len) = data.len().checked_sub(16) else { return false };
        if aad.len() < self.aad_len as usize {
            return false;
        }
        let base = data.as_mut_ptr();
        match self.cipher {
            ImbCipher::AesGcm { key_len } => {
                let mut iv = [0u8; 16];
                iv[..12].copy_from_slice(nonce);
                let mut aad16 = [0u8; 16];
                aad16[..self.aad_len as usize].copy_from_slice(&aad[..self.aad_len as usize]);
                let text = dpdk_sys::rte_crypto_vec { base: base.cast(), iova: 0, len: text_len as u32, tot_len: text_len as u32 };
                // SAFETY: text_len + 16 == data.len(): the tag pointer is in bounds.
                let tag = dpdk_sys::rte_crypto_va_iova_ptr { va: unsafe { base.add(text_len) }.cast(), iova: 0 };
                // SAFETY: one entry: text and tag point into `data`, borrowed
                // mutably for the call; the IV and AAD are 16-byte locals;
                // the key and manager are live.
                unsafe {
                    dpdk_sys::esprit_imb_gcm_enc_vec(
                        self.mgr.as_ptr(),
                        self.kd.as_ptr(),
                        key_len,
                        1,
                        &text,
                        &tag,
                        iv.as_ptr(),
                        aad16.as_ptr(),
                        self.aad_len,
                    )
                };
            }
            ImbCipher::Chacha20Poly1305 => {
                // SAFETY: text and tag are in `data` (checked above), nonce
                // is 12 bytes, aad holds aad_len bytes; key and manager live.
                unsafe {
                    dpdk_sys::esprit_imb_chacha_seal(
                        self.mgr.as_ptr(),
                        self.kd.as_ptr(),
                        base,
                        text_len as u64,
                        base.add(text_len),
                        nonce.as_ptr(),
                        aad.as_ptr(),
                        self.aad_len,
                    )
                };
            }
        }
        true
    }

    /// Verifies the tag that ends `data` and decrypts the text before it in
    /// place (the text is unspecified when the tag is wrong). True only if
    /// the tag verified; always false for AES-GCM keys (see [`ImbKey`]).
    pub fn open(&self, data: &mut [u8], nonce: &[u8; 12], aad: &[u8]) -> bool {
        let Some(text_len) = data.len().checked_sub(16) else { return false };
        if aad.len() < self.aad_len as usize || self.cipher != ImbCipher::Chacha20Poly1305 {
            return false;
        }
        let base = data.as_mut_ptr();
        // SAFETY: text and tag are in `data` (checked above), nonce is 12
        // bytes, aad holds aad_len bytes; key and manager are live.
        let ok = unsafe {
            dpdk_sys::esprit_imb_chacha_open(
                self.mgr.as_ptr(),
                self.kd.as_ptr(),
                base,
                text_len as u64,
                base.add(text_len),
                nonce.as_ptr(),
                aad.as_ptr(),
                self.aad_len,
            )
        };
        ok == 1
    }
}

impl Drop for ImbKey {
    fn drop(&mut self) {
        // SAFETY: allocated by the matching *_key_new, wiped and freed once.
        unsafe {
            match self.cipher {
                ImbCipher::AesGcm { .. } => dpdk_sys::esprit_imb_gcm_key_free(self.kd.as_ptr()),
                ImbCipher::Chacha20Poly1305 => dpdk_sys::esprit_imb_chacha_key_free(self.kd.as_ptr()),
            }
        }
    }
}

impl CpuBatch<'_> {
    /// Encrypts the batch in place with `key` through intel-ipsec-mb's
    /// direct API (the IVs' first 12 bytes, the AADs' first `aad_len`),
    /// writing each 16-byte tag: one vector call for AES-GCM, one call per
    /// packet for ChaCha20-Poly1305. Returns the mask of the tags pushed
    /// (encryption cannot fail); the batch is empty again afterwards.
    pub fn seal_imb(&mut self, key: &ImbKey) -> u64 {
        let v = &mut *self.v;
        let n = v.n;
        if n == 0 {
            return 0;
        }
        match key.cipher {
            // SAFETY: entries 0..n point into buffers borrowed mutably for
            // the batch's lifetime, each holding `len` text bytes followed by
            // the 16-byte tag its digest pointer names (checked when pushed);
            // the IV and AAD arrays hold n 16-byte entries; the key and
            // manager are live.
            ImbCipher::AesGcm { key_len } => unsafe {
                dpdk_sys::esprit_imb_gcm_enc_vec(
                    key.mgr.as_ptr(),
                    key.kd.as_ptr(),
                    key_len,
                    n as u32,
                    v.vecs.as_ptr(),
                    v.digests.as_ptr(),
                    v.iv.as_ptr().cast(),
                    v.aad.as_ptr().cast(),
                    key.aad_len,
                )
            },
            ImbCipher::Chacha20Poly1305 => {
                for k in 0..n {
                    // SAFETY: as above, for entry k: `len` text bytes at
                    // `base` and the tag at its digest pointer, inside one
                    // mutably borrowed buffer; 16-byte IV and AAD entries.
                    unsafe {
                        dpdk_sys::esprit_imb_chacha_seal(
                            key.mgr.as_ptr(),
                            key.kd.as_ptr(),
                            v.vecs[k].base.cast(),
                            u64::from(v.vecs[k].len),
                            v.digests[k].va.cast(),
                            v.iv[k].as_ptr(),
                            v.aad[k].as_ptr(),
                            key.aad_len,
                        )
                    };
                }
            }
        }
        let mut ok = 0u64;
        for k in 0..n {
            ok |= 1u64 << v.tag[k];
        }
        v.n = 0;
        ok
    }
}
