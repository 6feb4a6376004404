//! The dataplane's side: one `Reader` per worker, with private lookup indexes built
//! from the slots and kept current from the change journal.
//!
//! Guarantees:
//! * Lookups touch only the reader's own memory (no shared cache lines, no atomics)
//!   and never allocate.
//! * [`Reader::poll_changes`] brings the indexes to the published generation, or as
//!   close as slots under write allow: a slot that stays mid-write (a dead writer) is
//!   skipped and keeps its previous indexing, which the writer's repair will correct
//!   with a journal entry of its own. A reader lapped by the journal rebuilds from
//!   the slots; the rebuilt indexes equal those of a reader that followed every entry.
//! * Every record the reader acts on was copied under a stable seqlock and passed its
//!   checksum.
//! * After each poll the reader acknowledges the generation it reached; the writer
//!   reuses a freed slot only after all readers acknowledged its removal. Call
//!   `poll_changes` between bursts, when the worker holds no [`SaId`] from before.

use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::index::{index_record, unindex, Indexes, Keys, PrefixKey};
use crate::layout::{addr_bytes, SaParams, SaState};
use crate::shm::{Shm, SlotRead};
use crate::writer::pid_alive;
use crate::{AttachError, SaId};

/// A change a worker may want to mirror in its own per-SA state (crypto contexts).
#[derive(Debug)]
pub enum Change<'a> {
    /// The SA was installed or its parameters changed (same id = update).
    Upsert { id: SaId, params: &'a SaParams },
    /// The SA is gone from the table.
    Removed { id: SaId },
}

/// What one poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Journal entries applied.
    pub entries: u64,
    /// The reader was lapped and rebuilt from the slots.
    pub rebuilt: bool,
    /// Slots found mid-write for the whole spin budget and skipped.
    pub busy_slots: u32,
    /// Generation reached.
    pub generation: u64,
}

/// Totals since attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub rebuilds: u64,
    pub entries: u64,
    pub busy_slots: u64,
    /// Stable copies whose checksum failed (never expected; counted, not used).
    pub corrupt: u64,
}

/// Why [`Reader::read`] returned no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("slot is being written (or its writer died mid-write)")]
    Busy,
    #[error("SA is no longer installed")]
    Gone,
    #[error("slot failed its checksum")]
    Corrupt,
}

#[derive(Default)]
struct Known {
    gen: u64,
    install_gen: u64,
    keys: Keys,
}

/// A worker's view of the table.
pub struct Reader {
    shm: Shm,
    ix: Indexes,
    known: Vec<Known>,
    applied: u64,
    registration: usize,
    stats: ReaderStats,
    scratch: Vec<PrefixKey>,
    path: PathBuf,
    /// (device, inode) of the mapped file, to notice a table replaced at `path`.
    file_id: (u64, u64),
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shm.header().readers[self.registration]
            .pid
            .store(0, Release);
    }
}

/// Overwrite a transient copy's key material before it goes out of scope.
fn wipe(p: &mut SaParams) {
    for b in p.key.iter_mut().chain(p.salt.iter_mut()) {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a byte; the
        // volatile store only keeps the compiler from eliding the wipe.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

impl Reader {
    /// Map the table at `path`, register for slot-reuse protection and build the
    /// indexes from the slots.
    pub fn attach(path: &Path) -> Result<Self, AttachError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let meta = file.metadata()?;
        let file_id = (meta.dev(), meta.ino());
        let shm = Shm::map_existing(file)?;
        shm.protect_slots_and_journal()?;
        let registration = register(&shm)?;
        let cap = shm.capacity();
        let seed = (u64::from(std::process::id()) << 32)
            ^ (registration as u64).wrapping_mul(0x9e37_79b9)
            ^ shm.header().created_unix_nanos;
        let mut r = Self {
            ix: Indexes::new(cap, seed),
            known: (0..cap).map(|_| Known::default()).collect(),
            applied: 0,
            registration,
            stats: ReaderStats::default(),
            scratch: Vec::new(),
            path: path.to_path_buf(),
            file_id,
            shm,
        };
        r.rebuild(&mut |_| {});
        Ok(r)
    }

    /// Apply the journal up to the published generation, calling `on_change` for
    /// every SA that appeared, changed or disappeared. Rebuilds from the slots if the
    /// journal has been overwritten past this reader.
    pub fn poll_changes(&mut self, mut on_change: impl FnMut(Change<'_>)) -> PollStats {
        let published = self.shm.published();
        let mut stats = PollStats {
            generation: self.applied,
            ..PollStats::default()
        };
        if published == self.applied {
            self.acknowledge();
            return stats;
        }
        // Behind by more than the ring holds, or (never expected) a generation that
        // went backwards: either way the journal cannot be trusted from here.
        if published < self.applied || published - self.applied > self.shm.journal_len() {
            return self.rebuild(&mut on_change);
        }
        let mut g = self.applied;
        while g < published {
            let Some(slot) = self.shm.journal_read(g + 1) else {
                // Lapped while reading: the entry already holds a later change.
                return self.rebuild(&mut on_change);
            };
            if slot >= self.shm.capacity() {
                return self.rebuild(&mut on_change);
            }
            if !self.apply_slot(slot, &mut on_change) {
                stats.busy_slots += 1;
            }
            g += 1;
            stats.entries += 1;
        }
        self.applied = g;
        self.stats.entries += stats.entries;
        self.stats.busy_slots += u64::from(stats.busy_slots);
        stats.generation = g;
        self.acknowledge();
        stats
    }

    fn acknowledge(&self) {
        self.shm.header().readers[self.registration]
            .acked_gen
            .store(self.applied, Release);
    }

    /// Re-read every slot and reconcile the indexes with it.
    fn rebuild(&mut self, on_change: &mut dyn FnMut(Change<'_>)) -> PollStats {
        // Changes published after this point are re-applied from the journal later;
        // applying a slot is idempotent, so reading some of them now is harmless.
        let start = self.shm.published();
        let mut stats = PollStats {
            rebuilt: true,
            ..PollStats::default()
        };
        for i in 0..self.shm.capacity() {
            if !self.apply_slot(i, on_change) {
                stats.busy_slots += 1;
            }
        }
        self.applied = start;
        self.stats.rebuilds += 1;
        self.stats.busy_slots += u64::from(stats.busy_slots);
        stats.generation = start;
        self.acknowledge();
        stats
    }

    /// Bring slot `i`'s indexing in line with its current record. Returns false if
    /// the slot could not be read (mid-write), leaving its indexing as it was.
    fn apply_slot(&mut self, i: u32, on_change: &mut dyn FnMut(Change<'_>)) -> bool {
        let mut rec = match self.shm.read_slot(i) {
            SlotRead::Stable(r) => r,
            SlotRead::Busy => return false,
        };
        let valid = rec.checksum_ok();
        if !valid {
            self.stats.corrupt += 1;
        }
        let live = valid && rec.is_live();
        let k = &mut self.known[i as usize];
        if live && k.install_gen == rec.install_gen && k.gen == rec.gen {
            wipe(&mut rec);
            return true;
        }
        if !live && k.install_gen == 0 {
            wipe(&mut rec);
            return true;
        }
        let old = std::mem::take(k);
        if old.install_gen != 0 {
            unindex(&mut self.ix, i, &old.keys);
            if !live || old.install_gen != rec.install_gen {
                on_change(Change::Removed {
                    id: SaId {
                        slot: i,
                        install_gen: old.install_gen,
                    },
                });
            }
        }
        if live {
            let keys = index_record(&mut self.ix, i, &rec, &mut self.scratch);
            self.known[i as usize] = Known {
                gen: rec.gen,
                install_gen: rec.install_gen,
                keys,
            };
            on_change(Change::Upsert {
                id: SaId {
                    slot: i,
                    install_gen: rec.install_gen,
                },
                params: &rec,
            });
        }
        wipe(&mut rec);
        true
    }

    /// RFC 4303 §2.1 / RFC 5374 §5.2 inbound lookup: the longest of (SPI, dst, src),
    /// (SPI, dst), (SPI) that is installed. `dst`/`src` are the outer addresses.
    #[inline]
    pub fn lookup_inbound(&self, spi: u32, dst: IpAddr, src: IpAddr) -> Option<SaId> {
        self.ix
            .lookup_inbound(spi, addr_bytes(dst), addr_bytes(src))
    }

    /// Inbound lookup by SPI alone (unicast SAs; group SAs need the addresses).
    #[inline]
    pub fn lookup_inbound_spi(&self, spi: u32) -> Option<SaId> {
        self.ix.lookup_spi(spi)
    }

    /// SPI lookups for a burst: every bucket is prefetched before any is probed, so
    /// the cache misses of a large table overlap instead of queueing.
    pub fn lookup_inbound_spi_burst(&self, spis: &[u32], out: &mut [Option<SaId>]) {
        for &s in spis {
            self.ix.prefetch_spi(s);
        }
        for (o, &s) in out.iter_mut().zip(spis) {
            *o = self.ix.lookup_spi(s);
        }
    }

    /// Outbound longest-prefix match on the inner destination.
    #[inline]
    pub fn lookup_outbound(&self, dst: IpAddr) -> Option<SaId> {
        match dst {
            IpAddr::V4(a) => self.lookup_outbound_v4(a),
            IpAddr::V6(a) => self.lookup_outbound_v6(a),
        }
    }

    #[inline]
    pub fn lookup_outbound_v4(&self, dst: Ipv4Addr) -> Option<SaId> {
        self.ix.lookup_v4(u32::from(dst))
    }

    #[inline]
    pub fn lookup_outbound_v6(&self, dst: Ipv6Addr) -> Option<SaId> {
        self.ix.lookup_v6(u128::from(dst))
    }

    /// [`Reader::lookup_outbound_v4`], and the mask of the destination bits
    /// the answer depended on: a destination equal to `dst` under the mask
    /// has the same answer until the next [`Reader::poll_changes`], so a
    /// burst of packets to one subnet needs one lookup.
    #[inline]
    pub fn lookup_outbound_v4_span(&self, dst: Ipv4Addr) -> (Option<SaId>, u32) {
        self.ix.lookup_v4_span(u32::from(dst))
    }

    /// Every outbound SA serving a prefix that contains `dst`, longest prefix
    /// first and newest install first within a prefix, to `f` until it
    /// returns `true` (the SA it accepts); `false` when it accepted none.
    /// For callers that check more than the destination (RFC 4301 §4.4.2: the
    /// SA chosen must have selectors containing the whole packet, ports and
    /// labels included), where the longest prefix's SA may not be the one.
    pub fn outbound_candidates(&self, dst: IpAddr, mut f: impl FnMut(SaId) -> bool) -> bool {
        match dst {
            IpAddr::V4(a) => self.ix.outbound_candidates_v4(u32::from(a), &mut f),
            IpAddr::V6(a) => self.ix.outbound_candidates_v6(u128::from(a), &mut f),
        }
    }

    /// Outbound lookups for a burst of IPv4 destinations, prefetching first.
    pub fn lookup_outbound_v4_burst(&self, dsts: &[Ipv4Addr], out: &mut [Option<SaId>]) {
        for &d in dsts {
            self.ix.prefetch_v4(u32::from(d));
        }
        for (o, &d) in out.iter_mut().zip(dsts) {
            *o = self.ix.lookup_v4(u32::from(d));
        }
    }

    /// Outbound lookups for a burst of IPv6 destinations, prefetching first.
    pub fn lookup_outbound_v6_burst(&self, dsts: &[Ipv6Addr], out: &mut [Option<SaId>]) {
        for &d in dsts {
            self.ix.prefetch_v6(u128::from(d));
        }
        for (o, &d) in out.iter_mut().zip(dsts) {
            *o = self.ix.lookup_v6(u128::from(d));
        }
    }

    /// A consistent copy of the SA's parameters (keys included; wipe it when done).
    pub fn read(&self, id: SaId) -> Result<SaParams, ReadError> {
        if id.slot >= self.shm.capacity() {
            return Err(ReadError::Gone);
        }
        match self.shm.read_slot(id.slot) {
            SlotRead::Busy => Err(ReadError::Busy),
            SlotRead::Stable(r) if !r.checksum_ok() => Err(ReadError::Corrupt),
            SlotRead::Stable(r) if !r.is_live() || r.install_gen != id.install_gen => {
                Err(ReadError::Gone)
            }
            SlotRead::Stable(r) => Ok(r),
        }
    }

    /// The SA's dataplane state: sequence reservation, counters, replay storage.
    /// `None` for an id out of range. The slot is not reused while this reader has
    /// not polled past the SA's removal.
    #[inline]
    pub fn state(&self, id: SaId) -> Option<&SaState> {
        (id.slot < self.shm.capacity()).then(|| self.shm.state(id.slot))
    }

    /// Has the file at the attach path been removed or replaced by another table
    /// (a control plane that recreated it)? Then this reader maps a table nobody
    /// writes any more and should attach again. A system call: poll it rarely.
    pub fn is_replaced(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != self.file_id,
            Err(_) => true,
        }
    }

    /// Generation the indexes reflect.
    pub fn generation(&self) -> u64 {
        self.applied
    }

    pub fn stats(&self) -> ReaderStats {
        self.stats
    }

    pub fn capacity(&self) -> u32 {
        self.shm.capacity()
    }

    pub fn instance_id(&self) -> u64 {
        self.shm.header().instance_id
    }

    /// Writer epoch: changes when a control plane (re)attaches.
    pub fn writer_epoch(&self) -> u64 {
        self.shm.header().writer_epoch.load(Relaxed)
    }

    /// Entries in the indexes: (unicast SPIs, group keys, IPv4 prefixes, IPv6 prefixes).
    pub fn index_sizes(&self) -> (usize, usize, usize, usize) {
        self.ix.sizes()
    }

    /// Bytes of this reader's private lookup tables (its per-worker footprint).
    pub fn index_bytes(&self) -> usize {
        self.ix.lookup_bytes() + self.known.len() * std::mem::size_of::<Known>()
    }

    /// Every SA the indexes know, by slot (for tests and diagnostics).
    pub fn known_ids(&self) -> impl Iterator<Item = SaId> + '_ {
        self.known
            .iter()
            .enumerate()
            .filter(|(_, k)| k.install_gen != 0)
            .map(|(i, k)| SaId {
                slot: i as u32,
                install_gen: k.install_gen,
            })
    }
}

/// Take a free reader entry, or one whose process is gone.
fn register(shm: &Shm) -> Result<usize, AttachError> {
    let me = u64::from(std::process::id());
    let readers = &shm.header().readers;
    for pass in 0..2 {
        for (i, r) in readers.iter().enumerate() {
            let pid = r.pid.load(Acquire);
            let takeable = pid == 0 || (pass == 1 && !pid_alive(pid));
            if takeable && r.pid.compare_exchange(pid, me, Acquire, Relaxed).is_ok() {
                // Until the first acknowledgement, claim nothing has been applied:
                // the writer must not reuse any slot freed from now on.
                r.acked_gen.store(shm.published(), Release);
                return Ok(i);
            }
        }
    }
    Err(AttachError::TooManyReaders)
}
