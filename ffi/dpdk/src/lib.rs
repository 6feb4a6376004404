//! The one safe wrapper over DPDK. All of esprit's DPDK `unsafe` lives in this
//! crate (and the raw `dpdk-sys` under it).
//!
//! What it promises:
//! * every failing DPDK call returns an [`Error`] naming the operation and
//!   `rte_errno` (or the negative return code);
//! * [`Mbuf`] owns its buffer and frees it on drop; a [`Burst`] owns the
//!   mbufs it holds;
//! * [`RxQueue`]/[`TxQueue`] cannot leave the thread that took them (they are
//!   `!Send`), and each queue can be taken once;
//! * no raw pointer appears in a safe signature.
//!
//! The EAL starts once per process ([`Eal::init`]); everything else needs a
//! started EAL, which the constructors take as an `&Eal` witness.

mod burst;
mod crypto;
mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;

pub use burst::{Burst, MAX_BURST};
pub use crypto::{
    AeadAlgo, AeadDirection, AeadJob, AeadSession, CpuAeadJob, CpuBatch, CpuVec, CryptoDev, CryptoOpPool, ImbCipher, ImbKey, SessionPool,
    CPU_VEC_MAX,
};
pub use eal::{lcore_id, register_thread, Eal, ThreadRegistration};
pub use error::{Error, Result};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{Link, Port, PortConfig, PortInfo, PortStats, RxQueue, TxQueue};

pub use dpdk_sys as sys;

/// `rte_prefetch0`: starts loading the cache line holding `r` into every
/// cache level, without waiting for it (a burst's table lookups overlap
/// their misses this way). A plain Rust read would hold up retirement.
#[inline(always)]
pub fn prefetch0<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `r` is a live reference, so the address is mapped; a prefetch
    // has no architectural effect besides the cache (it cannot fault).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((r as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
