//! An owned packet buffer.
use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

/// One DPDK mbuf, owned: freed back to its pool on drop. Moving an `Mbuf` to
/// another thread is fine (worker handoff does it); sharing one is not.
///
/// The accessors treat the mbuf as one segment: esprit's pools are sized so
/// that every packet fits one, and [`Mbuf::is_contiguous`] tells otherwise.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf {
    raw: NonNull<rte_mbuf>,
}

// SAFETY: an Mbuf is the unique owner of its rte_mbuf; DPDK allows freeing an
// mbuf on any thread (the pool is MP/MC safe).
unsafe impl Send for Mbuf {}

// Per-packet accessors read the mbuf fields directly; these offsets are what
// the code below relies on (DPDK 22.11's layout, also checked by bindgen).
const _: () = {
    assert!(std::mem::offset_of!(rte_mbuf, buf_addr) == 0);
    assert!(std::mem::offset_of!(rte_mbuf, data_off) == 16);
    assert!(std::mem::offset_of!(rte_mbuf, pkt_len) == 36);
    assert!(std::mem::offset_of!(rte_mbuf, data_len) == 40);
    assert!(std::mem::offset_of!(rte_mbuf, buf_len) == 54);
    assert!(std::mem::size_of::<rte_mbuf>() == 128);
};

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must point to a valid mbuf from a pktmbuf pool that nobody else
    /// owns or will free.
    pub unsafe fn from_raw(raw: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Gives up ownership; the caller must free or hand on the mbuf.
    pub fn into_raw(self) -> NonNull<rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    /// The raw pointer, for passing to DPDK while `self` keeps ownership.
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.raw.as_ptr()
    }

    fn m(&self) -> &rte_mbuf {
        // SAFETY: we own a valid mbuf; shared access for the borrow's length.
        unsafe { self.raw.as_ref() }
    }

    /// Bytes in the first segment.
    pub fn len(&self) -> usize {
        self.m().data_len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total packet length over all segments.
    pub fn pkt_len(&self) -> usize {
        self.m().pkt_len as usize
    }

    /// True when the whole packet sits in this one segment.
    pub fn is_contiguous(&self) -> bool {
        self.m().nb_segs == 1
    }

    /// The packet bytes of the first segment.
    pub fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // buffer (DPDK's invariant), and we own the mbuf for the borrow.
        unsafe { std::slice::from_raw_parts((m.buf_addr as *const u8).add(m.data_off as usize), m.data_len as usize) }
    }

    /// The packet bytes of the first segment, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self makes the access exclusive.
        unsafe {
            let m = self.raw.as_ptr();
            std::slice::from_raw_parts_mut(((*m).buf_addr as *mut u8).add((*m).data_off as usize), (*m).data_len as usize)
        }
    }

    /// The whole first-segment buffer (headroom, data, tailroom) with the
    /// data's offset and length in it: for code that grows and shrinks a
    /// packet in place (the ESP engine's `PktBuf`), then calls [`Mbuf::set_data`].
    pub fn buffer_mut(&mut self) -> (&mut [u8], usize, usize) {
        // SAFETY: buf_addr .. buf_addr + buf_len is the mbuf's data buffer
        // (DPDK's invariant); &mut self makes the access exclusive. Only
        // single-segment mbufs are handled by esprit (see the type's docs).
        unsafe {
            let m = self.raw.as_ptr();
            let buf = std::slice::from_raw_parts_mut((*m).buf_addr as *mut u8, (*m).buf_len as usize);
            (buf, (*m).data_off as usize, (*m).data_len as usize)
        }
    }

    /// Sets the packet to `buffer[off .. off + len]` (one segment). False,
    /// and nothing changed, if that is outside the buffer or the mbuf has
    /// more than one segment.
    pub fn set_data(&mut self, off: usize, len: usize) -> bool {
        // SAFETY: we own the mbuf; the new range is checked against buf_len
        // before the fields are written.
        unsafe {
            let m = self.raw.as_ptr();
            if (*m).nb_segs != 1 || off.checked_add(len).is_none_or(|e| e > (*m).buf_len as usize) || off > u16::MAX as usize {
                return false;
            }
            (*m).data_off = off as u16;
            (*m).data_len = len as u16;
            (*m).pkt_len = len as u32;
        }
        true
    }

    pub fn headroom(&self) -> usize {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::esprit_rte_pktmbuf_headroom(self.raw.as_ptr()) as usize }
    }

    pub fn tailroom(&self) -> usize {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::esprit_rte_pktmbuf_tailroom(self.raw.as_ptr()) as usize }
    }

    /// Grows the packet at the front by `n` bytes (into the headroom) and
    /// returns them; `None` when the headroom is too small. (What
    /// `rte_pktmbuf_prepend` does, inline: it runs for every packet.)
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: valid owned mbuf, exclusively borrowed; the headroom
        // (data_off) is checked before the fields move into it, so the
        // returned bytes lie inside the buffer.
        unsafe {
            let m = self.raw.as_ptr();
            if n16 > (*m).data_off {
                return None;
            }
            (*m).data_off -= n16;
            (*m).data_len += n16;
            (*m).pkt_len += u32::from(n16);
            Some(std::slice::from_raw_parts_mut(((*m).buf_addr as *mut u8).add((*m).data_off as usize), n))
        }
    }

    /// Grows the packet at the end by `n` bytes (into the last segment's
    /// tailroom) and returns them; `None` when there is no room.
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: valid owned mbuf; DPDK checks the tailroom and returns NULL.
        let p = unsafe { dpdk_sys::esprit_rte_pktmbuf_append(self.raw.as_ptr(), n16) };
        // SAFETY: on success p points at n fresh bytes inside the buffer.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) })
    }

    /// Removes `n` bytes from the front; false if the first segment is
    /// shorter. (`rte_pktmbuf_adj`, inline.)
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else { return false };
        // SAFETY: valid owned mbuf, exclusively borrowed; the first
        // segment's length is checked before the fields change.
        unsafe {
            let m = self.raw.as_ptr();
            if n16 > (*m).data_len {
                return false;
            }
            (*m).data_off += n16;
            (*m).data_len -= n16;
            (*m).pkt_len -= u32::from(n16);
        }
        true
    }

    /// Removes `n` bytes from the end; false if the last segment is shorter.
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else { return false };
        // SAFETY: valid owned mbuf; DPDK checks the length.
        unsafe { dpdk_sys::esprit_rte_pktmbuf_trim(self.raw.as_ptr(), n16) == 0 }
    }

    /// The port the mbuf was received on.
    pub fn port(&self) -> u16 {
        self.m().port
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and free it exactly once.
        unsafe { dpdk_sys::esprit_rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}
