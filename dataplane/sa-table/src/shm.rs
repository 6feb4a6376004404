//! The mapped file and the two lock-free protocols on it: the per-slot seqlock and
//! the change journal.
//!
//! Guarantees:
//! * A slot copy returned by [`Shm::read_slot`] was not modified while it was taken
//!   (seqlock: even and unchanged sequence word around the copy, with acquire/release
//!   fences as in Boehm, "Can seqlocks get along with programming language memory
//!   models?", 2012). Every shared word is an atomic, so racing copies are defined
//!   behaviour; the retry discards them.
//! * A slot whose writer died mid-write keeps an odd sequence word: readers report it
//!   busy and never use it, until a new writer repairs it.
//! * A journal entry is trusted only if it carries the generation the reader expects
//!   in both of its words; anything else means the reader was lapped.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::layout::{
    region_offsets, to_words, Header, JournalEntry, SaParams, SaState, Slot, HEADER_BYTES,
    LAYOUT_HASH, LAYOUT_VERSION, MAGIC, RECORD_WORDS,
};
use crate::{AttachError, LayoutDiff};

/// Spins a reader gives a slot under write before calling it busy. A live writer
/// finishes a slot in well under a microsecond, but it may be descheduled, and a dead
/// one never finishes: the caller retries later instead of spinning forever.
const READ_SPINS: u32 = 2000;

/// Outcome of one seqlock read attempt sequence.
#[derive(Debug)]
// The copy is returned by value on purpose: boxing it would allocate per read.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SlotRead {
    Stable(SaParams),
    /// Odd or changing sequence word for the whole spin budget.
    Busy,
}

/// A shared mapping of a table file.
pub(crate) struct Shm {
    base: NonNull<u8>,
    len: usize,
    capacity: u32,
    journal_len: u64,
    slots_offset: usize,
    states_offset: usize,
    journal_offset: usize,
    /// Kept open for the mapping's life: the writer's flock lives on this descriptor.
    file: File,
}

// SAFETY: the mapping is shared memory that every process and thread accesses only
// through atomics or through header fields that are immutable after creation; the
// raw base pointer is just the address of that mapping and stays valid until drop.
unsafe impl Send for Shm {}
// SAFETY: as above; `&Shm` hands out only shared references to atomics.
unsafe impl Sync for Shm {}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned in `map`, and every
        // reference handed out borrows `self`, so none outlives the mapping.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

fn map_file(file: &File, len: usize, populate: bool) -> io::Result<NonNull<u8>> {
    let flags = if populate {
        libc::MAP_SHARED | libc::MAP_POPULATE
    } else {
        libc::MAP_SHARED
    };
    // SAFETY: a fresh shared mapping of an open file; the kernel picks the address,
    // so no existing Rust object is aliased. The file is at least `len` bytes
    // (checked or set by the callers), so every mapped page is backed.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl Shm {
    /// Map a file that the caller has just sized to `capacity`/`journal_len` and
    /// will initialise (the header is all zero until [`Shm::init_header`]).
    pub(crate) fn map_new(file: File, capacity: u32, journal_len: u64) -> io::Result<Self> {
        let (slots, states, journal, total) = region_offsets(u64::from(capacity), journal_len);
        file.set_len(total)?;
        // Allocate every page now. A sparse file would take its pages at first
        // write, and on a full /dev/shm that write is a SIGBUS in the middle of an
        // install; here it is an error at creation. It also takes page allocation
        // out of the install path.
        // SAFETY: plain syscall on a descriptor we own; no memory is passed.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, total as libc::off_t) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // The creating writer touches every slot and state as it installs: populate
        // the page tables in one walk instead of a fault per page.
        let base = map_file(&file, total as usize, true)?;
        Ok(Self {
            base,
            len: total as usize,
            capacity,
            journal_len,
            slots_offset: slots as usize,
            states_offset: states as usize,
            journal_offset: journal as usize,
            file,
        })
    }

    /// Map an existing table, refusing anything whose header does not describe
    /// exactly this build's layout and the file's size.
    pub(crate) fn map_existing(file: File) -> Result<Self, AttachError> {
        let file_len = file.metadata()?.len();
        if file_len < HEADER_BYTES as u64 {
            return Err(AttachError::TooShort {
                file_bytes: file_len,
            });
        }
        let head = map_file(&file, HEADER_BYTES, false)?;
        // SAFETY: `head` maps HEADER_BYTES (≥ size_of::<Header>()) bytes, page
        // aligned; Header holds only integers and atomics, valid for any bytes. The
        // immutable fields read here are written before the file gets its name.
        let h = unsafe { &*head.as_ptr().cast::<Header>() };
        let check = header_diffs(h, file_len);
        let (capacity, journal_len) = (h.capacity, h.journal_len);
        // SAFETY: unmapping the header window mapped just above; `h` is not used
        // after this point.
        unsafe {
            libc::munmap(head.as_ptr().cast(), HEADER_BYTES);
        }
        check?;
        let (slots, states, journal, total) = region_offsets(capacity, journal_len);
        // Not populated: an attaching reader scans only the slots, and faulting
        // those in (with the kernel's fault-around) is cheaper than walking the
        // page tables of the whole file, states included.
        let base = map_file(&file, total as usize, false)?;
        Ok(Self {
            base,
            len: total as usize,
            capacity: capacity as u32,
            journal_len,
            slots_offset: slots as usize,
            states_offset: states as usize,
            journal_offset: journal as usize,
            file,
        })
    }

    /// Readers write only dataplane state and their registry entry: make the slots
    /// and the journal read-only in this mapping, so a stray write in a worker
    /// faults at once instead of corrupting the table every process shares.
    pub(crate) fn protect_slots_and_journal(&self) -> std::io::Result<()> {
        let regions = [
            (self.slots_offset, self.states_offset - self.slots_offset),
            (self.journal_offset, self.len - self.journal_offset),
        ];
        for (off, len) in regions {
            // SAFETY: both regions are page aligned (region_offsets) and inside this
            // mapping; they are only ever accessed through atomic loads by a
            // reader, which read-only pages allow (lock-free 64-bit loads).
            let r =
                unsafe { libc::mprotect(self.base.as_ptr().add(off).cast(), len, libc::PROT_READ) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The table file: writers take their exclusive lock on it.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    pub(crate) fn journal_len(&self) -> u64 {
        self.journal_len
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping starts with HEADER_BYTES of header, page aligned, and
        // lives as long as `self`; all fields accept every bit pattern and the
        // mutable ones are atomics.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// Fill the immutable header of a new, still private (unnamed) file.
    pub(crate) fn init_header(&mut self, instance_id: u64) {
        let (slots, states, journal, total) =
            region_offsets(u64::from(self.capacity), self.journal_len);
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let fields = [
            MAGIC,
            LAYOUT_VERSION,
            LAYOUT_HASH,
            HEADER_BYTES as u64,
            std::mem::size_of::<Slot>() as u64,
            std::mem::size_of::<SaState>() as u64,
            std::mem::size_of::<JournalEntry>() as u64,
            u64::from(self.capacity),
            self.journal_len,
            instance_id,
            created,
            slots,
            states,
            journal,
            total,
        ];
        let p = self.base.as_ptr().cast::<u64>();
        for (i, v) in fields.iter().enumerate() {
            // SAFETY: the first 15 u64 of Header are these fields in this order
            // (repr(C), checked by `header_field_order` test); the file is not yet
            // visible to any other process and `&mut self` excludes our own readers.
            unsafe { p.add(i).write(*v) };
        }
    }

    pub(crate) fn slot(&self, i: u32) -> &Slot {
        assert!(i < self.capacity, "slot {i} out of range");
        // SAFETY: i < capacity, so the slot lies inside the slots region, which is
        // 64-byte aligned (page offset) and inside the mapping; Slot is atomics only.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(self.slots_offset + i as usize * size_of_slot())
                .cast::<Slot>()
        }
    }

    pub(crate) fn state(&self, i: u32) -> &SaState {
        assert!(i < self.capacity, "slot {i} out of range");
        // SAFETY: as for `slot`, in the states region; SaState is atomics only.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(self.states_offset + i as usize * std::mem::size_of::<SaState>())
                .cast::<SaState>()
        }
    }

    fn journal_entry(&self, gen: u64) -> &JournalEntry {
        let i = (gen % self.journal_len) as usize;
        // SAFETY: i < journal_len, so the entry lies inside the journal region (page
        // aligned, 16-byte entries) inside the mapping; JournalEntry is atomics only.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(self.journal_offset + i * std::mem::size_of::<JournalEntry>())
                .cast::<JournalEntry>()
        }
    }

    /// Copy slot `i` under its seqlock.
    pub(crate) fn read_slot(&self, i: u32) -> SlotRead {
        let slot = self.slot(i);
        let mut words = [0u64; RECORD_WORDS];
        for _ in 0..READ_SPINS {
            let s1 = slot.seq.load(Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            for (w, a) in words.iter_mut().zip(slot.words.iter()) {
                *w = a.load(Relaxed);
            }
            // Orders the copy before the re-check: if any word came from a write
            // section, the re-read sees that section's odd (or later) sequence.
            fence(Acquire);
            if slot.seq.load(Relaxed) == s1 {
                return SlotRead::Stable(crate::layout::from_words(&words));
            }
            std::hint::spin_loop();
        }
        SlotRead::Busy
    }

    /// The sequence word of slot `i` (odd = mid-write).
    pub(crate) fn slot_seq(&self, i: u32) -> u64 {
        self.slot(i).seq.load(Acquire)
    }

    /// Write slot `i` (writer only). `before_publish` runs inside the write section,
    /// so whatever it stores becomes visible together with the record.
    pub(crate) fn write_slot(&self, i: u32, rec: &SaParams, before_publish: impl FnOnce()) {
        let slot = self.slot(i);
        // A repaired or fresh slot is even here; force even so a logic error cannot
        // leave a stable slot looking busy.
        let s = slot.seq.load(Relaxed) & !1;
        slot.seq.store(s + 1, Relaxed);
        // Orders the odd store before the data stores (pairs with the reader's
        // acquire fence).
        fence(Release);
        for (a, w) in slot.words.iter().zip(to_words(rec).iter()) {
            a.store(*w, Relaxed);
        }
        before_publish();
        slot.seq.store(s + 2, Release);
    }

    /// Half of a write, for crash tests: leave slot `i` odd with a garbled record,
    /// as a writer killed between its first and last store would.
    #[doc(hidden)]
    pub(crate) fn begin_write_and_abandon(&self, i: u32, garbage: u64) {
        let slot = self.slot(i);
        let s = slot.seq.load(Relaxed) & !1;
        slot.seq.store(s + 1, Relaxed);
        fence(Release);
        for a in slot.words.iter().take(RECORD_WORDS / 2) {
            a.store(garbage, Relaxed);
        }
    }

    /// Append "slot changed at `gen`" (writer only); published by `publish`.
    pub(crate) fn journal_write(&self, gen: u64, slot: u32) {
        let e = self.journal_entry(gen);
        e.check_slot
            .store(((gen & 0xffff_ffff) << 32) | u64::from(slot), Relaxed);
        e.gen.store(gen, Release);
    }

    /// Make everything up to `gen` visible to readers.
    pub(crate) fn publish(&self, gen: u64) {
        self.header().generation.store(gen, Release);
    }

    pub(crate) fn published(&self) -> u64 {
        self.header().generation.load(Acquire)
    }

    /// The slot that changed at `gen`, or `None` if the entry was overwritten (or
    /// never written): the reader was lapped and must rebuild.
    pub(crate) fn journal_read(&self, gen: u64) -> Option<u32> {
        let e = self.journal_entry(gen);
        if e.gen.load(Acquire) != gen {
            return None;
        }
        let cs = e.check_slot.load(Relaxed);
        if cs >> 32 != gen & 0xffff_ffff {
            return None;
        }
        Some((cs & 0xffff_ffff) as u32)
    }
}

const fn size_of_slot() -> usize {
    std::mem::size_of::<Slot>()
}

/// Every way the header differs from this build, or what makes the file unusable.
fn header_diffs(h: &Header, file_len: u64) -> Result<(), AttachError> {
    if h.magic != MAGIC {
        return Err(AttachError::NotATable { magic: h.magic });
    }
    let mut diffs = Vec::new();
    let cmp = |diffs: &mut Vec<LayoutDiff>, field: &'static str, ours: u64, theirs: u64| {
        if ours != theirs {
            diffs.push(LayoutDiff {
                field,
                ours,
                theirs,
            });
        }
    };
    cmp(
        &mut diffs,
        "layout_version",
        LAYOUT_VERSION,
        h.layout_version,
    );
    cmp(&mut diffs, "layout_hash", LAYOUT_HASH, h.layout_hash);
    cmp(
        &mut diffs,
        "header_bytes",
        HEADER_BYTES as u64,
        h.header_bytes,
    );
    cmp(
        &mut diffs,
        "slot_bytes",
        std::mem::size_of::<Slot>() as u64,
        h.slot_bytes,
    );
    cmp(
        &mut diffs,
        "state_bytes",
        std::mem::size_of::<SaState>() as u64,
        h.state_bytes,
    );
    cmp(
        &mut diffs,
        "journal_entry_bytes",
        std::mem::size_of::<JournalEntry>() as u64,
        h.journal_entry_bytes,
    );
    if diffs.is_empty() {
        if h.capacity == 0
            || h.capacity > u64::from(crate::layout::MAX_CAPACITY)
            || h.journal_len == 0
        {
            return Err(AttachError::BadGeometry {
                capacity: h.capacity,
                journal_len: h.journal_len,
            });
        }
        let (s, st, j, total) = region_offsets(h.capacity, h.journal_len);
        cmp(&mut diffs, "slots_offset", s, h.slots_offset);
        cmp(&mut diffs, "states_offset", st, h.states_offset);
        cmp(&mut diffs, "journal_offset", j, h.journal_offset);
        cmp(&mut diffs, "total_bytes", total, h.total_bytes);
        cmp(&mut diffs, "file_bytes", total, file_len);
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(AttachError::LayoutMismatch(crate::LayoutDiffs(diffs)))
    }
}
