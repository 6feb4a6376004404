//! Packet-buffer mempools.
use std::ffi::CString;
use std::ptr::NonNull;

use crate::{Eal, Error, Mbuf, Result};

/// A DPDK pktmbuf pool. Mempools are never freed: mbufs from them may be in
/// flight anywhere (queues, rings, other threads) until the process exits,
/// which is how DPDK applications treat them. Pool names are process-wide
/// and must be unique.
#[derive(Debug, Clone, Copy)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe (the default
// ring ops); the pool itself is never freed, so the pointer stays valid.
unsafe impl Send for Mempool {}
// SAFETY: as above; every operation on a shared &Mempool is thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `rte_pktmbuf_pool_create`: `n` mbufs with `data_room` bytes each
    /// (headroom included; `RTE_MBUF_DEFAULT_BUF_SIZE` is 2176).
    pub fn pktmbuf(_eal: &Eal, name: &str, n: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name).map_err(|_| Error::invalid("rte_pktmbuf_pool_create", "name has a NUL byte"))?;
        // SAFETY: cname is a valid C string for the call's duration; the EAL
        // is started (witness). DPDK copies the name.
        let p = unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        NonNull::new(p).map(|raw| Mempool { raw }).ok_or_else(|| Error::last("rte_pktmbuf_pool_create").on(name))
    }

    /// One mbuf, or an error when the pool is empty.
    pub fn alloc(&self) -> Result<Mbuf> {
        // SAFETY: raw is a live pktmbuf pool (never freed).
        let m = unsafe { dpdk_sys::esprit_rte_pktmbuf_alloc(self.raw.as_ptr()) };
        match NonNull::new(m) {
            // SAFETY: a fresh mbuf from the pool, owned by nobody else.
            Some(m) => Ok(unsafe { Mbuf::from_raw(m) }),
            None => Err(Error::code("rte_pktmbuf_alloc", 105 /* ENOBUFS */).on("mempool exhausted")),
        }
    }

    /// An mbuf holding a copy of `bytes`.
    pub fn alloc_from(&self, bytes: &[u8]) -> Result<Mbuf> {
        let mut m = self.alloc()?;
        let dst = m
            .append(bytes.len())
            .ok_or_else(|| Error::invalid("rte_pktmbuf_append", format!("{} bytes do not fit an mbuf", bytes.len())))?;
        dst.copy_from_slice(bytes);
        Ok(m)
    }

    /// Mbufs currently free in the pool (cache included).
    pub fn available(&self) -> u32 {
        // SAFETY: raw is a live pool.
        unsafe { dpdk_sys::esprit_rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }
}
