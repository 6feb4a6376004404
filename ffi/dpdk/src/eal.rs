//! EAL start-up and thread registration.
use std::ffi::{c_char, c_int, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result};

static STARTED: AtomicBool = AtomicBool::new(false);

/// Witness that the EAL has started in this process. Cheap to copy; the EAL
/// lives until the process exits (DPDK objects are never torn down under it).
#[derive(Debug, Clone, Copy)]
pub struct Eal {
    _priv: (),
}

impl Eal {
    /// Starts the EAL with `args` (as on a DPDK command line, program name
    /// first, e.g. `["esprit", "--no-huge", "-m", "512", "--no-pci"]`).
    /// Returns the number of arguments the EAL consumed with the witness.
    /// The EAL starts once per process: a second call is an error.
    pub fn init<I, S>(args: I) -> Result<(Eal, usize)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(Error::invalid("rte_eal_init", "the EAL already started in this process"));
        }
        let mut owned = Vec::new();
        for a in args {
            match CString::new(a.as_ref()) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    STARTED.store(false, Ordering::SeqCst);
                    return Err(Error::invalid("rte_eal_init", "an argument contains a NUL byte"));
                }
            }
        }
        if owned.is_empty() {
            owned.push(CString::new("esprit").expect("no NUL"));
        }
        // The EAL may keep pointers into argv (and permutes it): leak the
        // strings and the array so they outlive the process's EAL.
        let argv: &'static mut [*mut c_char] =
            Box::leak(owned.into_iter().map(CString::into_raw).collect::<Vec<_>>().into_boxed_slice());
        let argc = argv.len() as c_int;
        // SAFETY: argv holds argc valid, NUL-terminated, leaked (so 'static)
        // strings; the STARTED flag makes this the only rte_eal_init call.
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            // The EAL cannot be started twice even after a failure.
            return Err(Error::last("rte_eal_init"));
        }
        Ok((Eal { _priv: () }, rc as usize))
    }

    /// Number of lcores the EAL was started with.
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: the EAL is started (self is its witness).
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    /// The NUMA socket of the calling thread's lcore, or 0 for unregistered threads.
    pub fn socket_id(&self) -> i32 {
        // SAFETY: the EAL is started; rte_socket_id reads per-thread state.
        let s = unsafe { dpdk_sys::rte_socket_id() } as i32;
        if s < 0 { 0 } else { s }
    }
}

/// The calling thread's DPDK lcore id, or `None` for a thread the EAL does
/// not know (neither an EAL lcore nor registered).
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads DPDK's thread-local lcore id through the shim.
    let id = unsafe { dpdk_sys::esprit_rte_lcore_id() };
    if id == u32::MAX { None } else { Some(id) }
}

/// A non-EAL thread registered with DPDK (`rte_thread_register`): it gets an
/// lcore id, so mempool caches and per-lcore state work on it. Unregisters on
/// drop; cannot move to another thread.
#[derive(Debug)]
pub struct ThreadRegistration {
    lcore: u32,
    _not_send: PhantomData<*const ()>,
}

impl ThreadRegistration {
    pub fn lcore(&self) -> u32 {
        self.lcore
    }
}

/// Registers the calling thread with DPDK.
pub fn register_thread(_eal: &Eal) -> Result<ThreadRegistration> {
    // SAFETY: the EAL is started (witness); registers the calling thread.
    let rc = unsafe { dpdk_sys::rte_thread_register() };
    if rc < 0 {
        return Err(Error::last("rte_thread_register"));
    }
    let lcore = lcore_id().ok_or_else(|| Error::invalid("rte_thread_register", "no lcore id after registration"))?;
    Ok(ThreadRegistration { lcore, _not_send: PhantomData })
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        // SAFETY: this thread registered itself (the value is !Send, so we are
        // on that thread) and unregisters once.
        unsafe { dpdk_sys::rte_thread_unregister() }
    }
}
