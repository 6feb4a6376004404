//! Errors of DPDK calls: the operation that failed and DPDK's errno.
use std::ffi::CStr;

/// A DPDK call failed. `op` names the call (`"rte_eth_dev_configure"`),
/// `errno` is `rte_errno` or the negated return code, `detail` says which
/// object it was about.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} failed{detail}: {msg} (rte_errno {errno})")]
pub struct Error {
    pub op: &'static str,
    pub errno: i32,
    msg: String,
    detail: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error whose code is DPDK's per-thread `rte_errno`.
    pub(crate) fn last(op: &'static str) -> Self {
        // SAFETY: reads DPDK's thread-local errno through the shim; no arguments.
        let errno = unsafe { dpdk_sys::esprit_rte_errno() };
        Self::code(op, errno)
    }

    /// An error from a call that returns `-errno` (or `errno`).
    pub(crate) fn code(op: &'static str, code: i32) -> Self {
        let errno = code.abs();
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string that stays valid until the next call on this
        // thread; we copy it out at once.
        let msg = unsafe {
            let p = dpdk_sys::rte_strerror(errno);
            if p.is_null() {
                String::from("unknown error")
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Error { op, errno, msg, detail: String::new() }
    }

    /// An error found by this wrapper before DPDK was called.
    pub(crate) fn invalid(op: &'static str, what: impl Into<String>) -> Self {
        Error { op, errno: 22, msg: what.into(), detail: String::new() }
    }

    /// Names the object the failed call was about.
    pub(crate) fn on(mut self, what: impl std::fmt::Display) -> Self {
        self.detail = format!(" for {what}");
        self
    }
}
