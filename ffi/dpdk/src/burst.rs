//! A burst of owned mbufs, the unit every stage of the dataplane works on.
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

use crate::{Error, Mbuf, Mempool, Result};

/// Most packets one burst holds (DPDK's usual 32, doubled for handoff merges).
pub const MAX_BURST: usize = 64;

/// Up to [`MAX_BURST`] mbufs, owned: whatever is left in a burst when it is
/// dropped is freed. Slots `0..len` hold non-null owned mbufs by
/// construction; the slots above `len` are never read, so they are left
/// uninitialised: a burst is made several times per poll, and zeroing its
/// 512 bytes each time (a `memset` call) and clearing each slot a packet
/// leaves were measurable per-packet work.
#[derive(Debug)]
pub struct Burst {
    pkts: [MaybeUninit<*mut rte_mbuf>; MAX_BURST],
    len: usize,
}

// SAFETY: a Burst uniquely owns its mbufs (like Vec<Mbuf>), and Mbuf is Send.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    pub const fn new() -> Burst {
        Burst { pkts: [const { MaybeUninit::uninit() }; MAX_BURST], len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// Adds an mbuf; gives it back when the burst is full.
    pub fn push(&mut self, m: Mbuf) -> std::result::Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.pkts[self.len] = MaybeUninit::new(m.into_raw().as_ptr());
        self.len += 1;
        Ok(())
    }

    /// Takes the last mbuf out.
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slots below len are initialised, non-null mbufs this burst
        // owned; len no longer covers the slot, so ownership moves to the
        // returned Mbuf.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(self.pkts[self.len].assume_init())) })
    }

    /// The mbufs, in order.
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf>, which has
        // the layout of *mut rte_mbuf (and of MaybeUninit of it); slots
        // 0..len are initialised and non-null.
        unsafe { std::slice::from_raw_parts(self.pkts.as_ptr() as *const Mbuf, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in as_slice; &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.pkts.as_mut_ptr() as *mut Mbuf, self.len) }
    }

    /// Keeps the mbufs for which `keep` is true, in order; frees the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Mbuf) -> bool) {
        let len = self.len;
        // Should `keep` panic, the burst owns nothing (the rest leaks
        // rather than being freed twice).
        self.len = 0;
        let mut w = 0;
        for r in 0..len {
            // SAFETY: slot r < len held an owned mbuf; len is 0 while it is
            // out, and w <= r, so each mbuf is owned by one place at a time.
            let mut m = unsafe { Mbuf::from_raw(NonNull::new_unchecked(self.pkts[r].assume_init())) };
            if keep(&mut m) {
                self.pkts[w] = MaybeUninit::new(m.into_raw().as_ptr());
                w += 1;
            }
        }
        self.len = w;
    }

    /// Allocates `n` mbufs at once from `pool` (`rte_pktmbuf_alloc_bulk`: all
    /// or nothing), appended to the burst.
    pub fn alloc_bulk(&mut self, pool: &Mempool, n: usize) -> Result<()> {
        if n > MAX_BURST - self.len {
            return Err(Error::invalid("rte_pktmbuf_alloc_bulk", "more mbufs than the burst holds"));
        }
        // SAFETY: the n slots after len are free and in bounds; DPDK fills
        // them with owned mbufs on success and leaves them untouched on error.
        let rc = unsafe { dpdk_sys::esprit_rte_pktmbuf_alloc_bulk(pool.as_ptr(), self.pkts.as_mut_ptr().add(self.len).cast(), n as u32) };
        if rc != 0 {
            return Err(Error::code("rte_pktmbuf_alloc_bulk", rc).on("mempool exhausted"));
        }
        self.len += n;
        Ok(())
    }

    /// Spare slots for a receive call: pointer to the first free slot and their count.
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut rte_mbuf, usize) {
        // SAFETY: len <= MAX_BURST, so the offset stays within the array.
        (unsafe { self.pkts.as_mut_ptr().add(self.len) }.cast(), MAX_BURST - self.len)
    }

    /// Records that `n` slots after `len` were filled by DPDK.
    pub(crate) fn filled(&mut self, n: usize) {
        debug_assert!(self.len + n <= MAX_BURST);
        self.len += n;
    }

    /// Raw pointer to the packets for a send call.
    pub(crate) fn raw_pkts(&mut self) -> *mut *mut rte_mbuf {
        self.pkts.as_mut_ptr().cast()
    }

    /// Forgets the first `n` mbufs (DPDK took them) and moves the rest to the front.
    pub(crate) fn consumed(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.pkts.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Moves every mbuf out, in order, into `out` (which must be empty
    /// there: `out[i]` is overwritten); returns how many.
    pub fn drain_into(&mut self, out: &mut [Option<Mbuf>; MAX_BURST]) -> usize {
        let n = self.len;
        self.len = 0;
        for (i, slot) in out.iter_mut().enumerate().take(n) {
            // SAFETY: slots below the old len hold owned non-null mbufs; len
            // is 0 now, so ownership moves to `out` exactly once.
            *slot = Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(self.pkts[i].assume_init())) });
        }
        n
    }

    /// Frees every mbuf in the burst.
    pub fn clear(&mut self) {
        while self.pop().is_some() {}
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}
