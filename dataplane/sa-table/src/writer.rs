//! The writing side: every process that installs SAs (esprit-ike, and the
//! dataplane for its static SAs) holds a [`Writer`]; they share the table by
//! taking it in short write transactions.
//!
//! Guarantees:
//! * One writer at a time, per transaction: a writer takes an exclusive `flock`
//!   on the table file around each batch of writes ([`Writer::lock`], or
//!   implicitly around each single call) and drops it after, so several
//!   processes may hold a `Writer` on one table at once. The kernel drops the
//!   lock of a process that dies, so nobody waits on the dead. A writer waits
//!   for the lock at most [`TableConfig::lock_wait`] and then fails the call
//!   with [`WriteError::Busy`], leaving the table unchanged: a process that must
//!   not stall (esprit-ike's event loop) is never held longer than that.
//! * A writer's private bookkeeping (free slots, live ids, inbound keys) is
//!   brought up to date at the start of every transaction: when the published
//!   generation is not the one it left, another writer wrote in between, and it
//!   replays the journal entries since (each names a changed slot) to re-read
//!   those slots; when the journal was lapped, it rescans every slot. A writer
//!   therefore never allocates a slot another writer filled, and never reuses
//!   one another writer freed before the readers acknowledged that.
//! * A writer that died inside a transaction is found by the next one: the
//!   header's transaction mark is still set when the lock is taken. That writer
//!   rescans and repairs (half-written slots freed and zeroed, written but
//!   unpublished ones published), exactly as a writer attaching after a crash.
//! * Every change is, in order: slot written under its seqlock (generation `g`
//!   stamped in it), journal entry `g` written, generation `g` published. A reader
//!   therefore never follows a journal entry to a slot that does not have the change.
//! * Installs are validated (lengths, transform/key length, counts) and an inbound
//!   lookup key (SPI, or SPI+dst(+src) for group SAs) is never installed twice,
//!   whichever writer installed the first.
//! * A writer may be restricted to SAs whose cookie carries its tag
//!   ([`Writer::restrict_to_cookies`]): it then refuses to install, change or
//!   delete any other, so esprit-ike and the dataplane's static SAs cannot touch
//!   each other's slots.
//! * A freed slot is reused only after every registered live reader acknowledged the
//!   generation that freed it, so a worker still finishing a burst on the old SA
//!   never counts into, or reads keys of, the new one.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use crate::index::{FxBuild, InboundKey};
use crate::layout::{
    record_checksum, to_words, Family, SaParams, SaState, TrafficSelector, MAX_CAPACITY,
    MAX_KEY_BYTES, MAX_REPLAY_WINDOW_PKTS, MAX_SEC_LABEL_BYTES, MAX_SERVED_PREFIXES,
    MAX_TS_PER_SIDE, SLOT_FREE, SLOT_LIVE,
};
use crate::shm::{Shm, SlotRead};
use crate::{AttachError, Direction, InboundMatch, Mode, SaId};

/// How long a writer waits for another writer's transaction by default: far
/// longer than any batch takes (microseconds per SA), short enough that an
/// event loop blocked behind a stopped process notices within a tick.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_millis(100);

/// Size of a new table, and how its writer waits for the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Slots (maximum concurrent SAs, inbound and outbound counted separately).
    pub capacity: u32,
    /// Journal entries; a reader more than this many changes behind rebuilds.
    pub journal_len: u32,
    /// Which esprit instance this table belongs to (DESIGN.md §1 path `<instance>`).
    pub instance_id: u64,
    /// Permission bits of the file. It holds ESP keys: owner only by default;
    /// 0o660 with a shared group when the dataplane runs as another user.
    pub file_mode: u32,
    /// Longest wait for another writer's transaction (attach included).
    pub lock_wait: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            capacity: 1 << 16,
            journal_len: 1 << 16,
            instance_id: 0,
            file_mode: 0o600,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// Why a write was refused. The table is unchanged when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("invalid SA: {0}")]
    Invalid(&'static str),
    #[error(
        "inbound SPI {spi:#010x} is already installed with the same lookup key ({existing:?})"
    )]
    DuplicateInbound { spi: u32, existing: SaId },
    #[error(
        "no free slot (capacity {capacity}, {quarantined} freed slots still awaiting readers)"
    )]
    TableFull { capacity: u32, quarantined: usize },
    #[error("{0:?} is not installed (deleted, or its slot reused)")]
    Stale(SaId),
    #[error("another writer (pid {pid}) held the table's lock for longer than the wait allowed")]
    Busy { pid: u64 },
    #[error("locking the table file failed (errno {0})")]
    Lock(i32),
    #[error("SA cookie {cookie:#018x} does not carry this writer's tag")]
    NotOwner { cookie: u64 },
}

/// What [`Writer::reattach`] found and fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Slots left mid-write (odd seqlock) by a dead writer, now freed and zeroed.
    pub torn_slots: Vec<u32>,
    /// Slots whose checksum did not match, now freed and zeroed.
    pub corrupt_slots: Vec<u32>,
    /// Slots written but never published (the writer died before publishing),
    /// now published.
    pub republished: Vec<u32>,
    /// Live SAs after repair.
    pub live: usize,
    /// The table's writer epoch, this writer included.
    pub writer_epoch: u64,
}

/// The pair installed by [`Writer::rekey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyedSas {
    pub inbound: SaId,
    pub outbound: SaId,
}

/// How a writer's transactions went, since it attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions (lock taken and released).
    pub transactions: u64,
    /// Transactions that found another writer's changes and replayed the journal.
    pub catch_ups: u64,
    /// Journal entries replayed by those.
    pub caught_up_entries: u64,
    /// Full rescans of the slots: lapped by the journal, or after a writer died
    /// inside its transaction (attach not counted).
    pub rescans: u64,
    /// Transactions that found a dead writer's transaction and repaired it.
    pub dead_writer_repairs: u64,
    /// Transactions that had to wait for the lock.
    pub lock_waits: u64,
}

/// A handle on the table that writes it, in transactions.
pub struct Writer {
    shm: Shm,
    /// Last generation published (by this writer, or seen at catch-up).
    gen: u64,
    /// install_gen of each slot's SA, 0 when free.
    installed: Vec<u64>,
    /// Free slots, oldest first, with the generation that freed them. An entry
    /// is current only while its slot is free and `freed_at` still holds its
    /// generation: entries of slots another writer took (or freed again since)
    /// are skipped when they come up.
    free: VecDeque<(u32, u64)>,
    freed_at: Vec<u64>,
    inbound: HashMap<InboundKey, u32, FxBuild>,
    /// The inbound key of each live inbound slot, to unindex it when another
    /// writer's change to the slot is caught up.
    inbound_of: HashMap<u32, InboundKey, FxBuild>,
    /// Lowest acknowledged generation among live readers, as last computed.
    min_acked: u64,
    live: usize,
    /// Nesting depth of the transaction in progress (0 = lock not held).
    held: u32,
    lock_wait: Duration,
    /// (mask, tag) every cookie this writer touches must carry.
    owner: Option<(u64, u64)>,
    stats: WriterStats,
}

/// A write transaction in progress: the table's lock is held until it drops.
/// Dereferences to the [`Writer`], whose calls then take no lock of their own.
pub struct WriteLock<'w> {
    w: &'w mut Writer,
}

impl std::ops::Deref for WriteLock<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        self.w
    }
}

impl std::ops::DerefMut for WriteLock<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        self.w
    }
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        self.w.leave();
    }
}

fn lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a file descriptor we own and keep open for the writer's
        // life; it touches no memory.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

fn unlock(file: &File) {
    // SAFETY: as in lock_exclusive. Unlocking a lock we hold cannot fail on a
    // valid descriptor; were it to, closing the file at drop still releases it.
    unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_UN);
    }
}

/// Take the table file's lock, waiting at most `wait`: short naps that grow
/// from 20 µs to 1 ms, so a lock held for microseconds (the usual) costs
/// little latency, and one held long costs little CPU.
fn lock_within(file: &File, wait: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + wait;
    let mut nap = Duration::from_micros(20);
    loop {
        if lock_exclusive(file)? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(1));
    }
}

pub(crate) fn pid_alive(pid: u64) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission; it
    // delivers nothing and touches no memory.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn validate(p: &SaParams) -> Result<(), WriteError> {
    use WriteError::Invalid;
    if p.spi < 256 {
        return Err(Invalid("SPI 0-255 are reserved (RFC 4303 §2.1)"));
    }
    if p.direction != Direction::INBOUND && p.direction != Direction::OUTBOUND {
        return Err(Invalid("direction must be inbound or outbound"));
    }
    if p.mode != Mode::TRANSPORT && p.mode != Mode::TUNNEL {
        return Err(Invalid("mode must be transport or tunnel"));
    }
    if p.direction == Direction::OUTBOUND && p.initial_seq == 0 {
        return Err(Invalid(
            "outbound initial_seq must be at least 1 (RFC 4303 §3.3.3)",
        ));
    }
    if !p.flags.contains(crate::SaFlags::ESN) && p.initial_seq > u64::from(u32::MAX) {
        return Err(Invalid(
            "initial_seq past 2^32 - 1 needs ESN (RFC 4303 §2.2)",
        ));
    }
    let lens = p.transform.key_lens();
    if lens.is_empty() {
        return Err(Invalid("unsupported transform (20, 28, 30 or 31)"));
    }
    if usize::from(p.key_len) > MAX_KEY_BYTES || !lens.contains(&p.key_len) {
        return Err(Invalid("key length does not fit the transform"));
    }
    if p.outer_family != Family::V4 && p.outer_family != Family::V6 {
        return Err(Invalid("outer address family must be IPv4 or IPv6"));
    }
    if p.replay_window_pkts > MAX_REPLAY_WINDOW_PKTS {
        return Err(Invalid("replay window larger than MAX_REPLAY_WINDOW_PKTS"));
    }
    if usize::from(p.ts_local_count) > MAX_TS_PER_SIDE
        || usize::from(p.ts_remote_count) > MAX_TS_PER_SIDE
    {
        return Err(Invalid("more traffic selectors than MAX_TS_PER_SIDE"));
    }
    let ts_ok = |t: &TrafficSelector| {
        t.family() != Family::NONE && t.start_addr <= t.end_addr && t.start_port <= t.end_port
    };
    if !p.ts_local().iter().all(ts_ok) || !p.ts_remote().iter().all(ts_ok) {
        return Err(Invalid(
            "traffic selector with unknown type or an empty range",
        ));
    }
    if usize::from(p.served_count) > MAX_SERVED_PREFIXES {
        return Err(Invalid("more served prefixes than MAX_SERVED_PREFIXES"));
    }
    if p.served()
        .iter()
        .any(|s| (s.family != Family::V4 || s.len > 32) && (s.family != Family::V6 || s.len > 128))
    {
        return Err(Invalid(
            "served prefix with unknown family or length past its width",
        ));
    }
    if usize::from(p.sec_label_len) > MAX_SEC_LABEL_BYTES {
        return Err(Invalid("security label longer than MAX_SEC_LABEL_BYTES"));
    }
    if ![0, 8, 12, 16].contains(&p.sender_id_bits) {
        return Err(Invalid(
            "sender-ID width must be 0, 8, 12 or 16 bits (RFC 9838 §2.5)",
        ));
    }
    if p.sender_id_bits > 0 && u64::from(p.sender_id) >> p.sender_id_bits != 0 {
        return Err(Invalid(
            "sender ID does not fit its width (RFC 6054: fatal)",
        ));
    }
    if p.inbound_match.0 > InboundMatch::SPI_DST_SRC.0 {
        return Err(Invalid("unknown inbound match kind"));
    }
    if p.flags.contains(crate::SaFlags::ESN) && p.inbound_match != InboundMatch::SPI {
        return Err(Invalid("ESN is forbidden on group SAs (RFC 9838)"));
    }
    let c = &p.compression;
    if c.profile != 0
        && ((u16::from(c.esp_spi_lsb) + u16::from(c.esp_sn_lsb)) % 8 != 0
            || c.esp_spi_lsb > 32
            || c.esp_sn_lsb > 32)
    {
        return Err(Invalid(
            "Diet-ESP SPI+SN LSB bits must be ≤ 32 each and sum to a multiple of 8",
        ));
    }
    if p.reserved.iter().any(|&b| b != 0) {
        return Err(Invalid("reserved bytes must be zero"));
    }
    Ok(())
}

fn stamp(p: &SaParams, gen: u64, install_gen: u64, slot_state: u8) -> SaParams {
    let mut r = *p;
    r.gen = gen;
    r.install_gen = install_gen;
    r.slot_state = slot_state;
    r.checksum = 0;
    r.checksum = record_checksum(&to_words(&r));
    r
}

fn freed_record(gen: u64) -> SaParams {
    stamp(&SaParams::zeroed(), gen, 0, SLOT_FREE)
}

impl Writer {
    fn empty(shm: Shm, lock_wait: Duration) -> Self {
        let cap = shm.capacity() as usize;
        Self {
            shm,
            gen: 0,
            installed: vec![0; cap],
            free: VecDeque::with_capacity(cap),
            freed_at: vec![0; cap],
            inbound: HashMap::with_capacity_and_hasher(cap / 2, FxBuild::default()),
            inbound_of: HashMap::with_capacity_and_hasher(cap / 2, FxBuild::default()),
            min_acked: 0,
            live: 0,
            held: 0,
            lock_wait,
            owner: None,
            stats: WriterStats::default(),
        }
    }

    /// Create a new table at `path` (parent directories included). Fails with
    /// `AlreadyExists` if a table is there: use [`Writer::open`] to attach to it.
    pub fn create(path: &Path, cfg: &TableConfig) -> Result<Self, AttachError> {
        if cfg.capacity == 0 || cfg.capacity > MAX_CAPACITY {
            return Err(AttachError::BadConfig("capacity must be 1..=MAX_CAPACITY"));
        }
        if cfg.journal_len == 0 {
            return Err(AttachError::BadConfig("journal_len must be at least 1"));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let name = path
            .file_name()
            .ok_or(AttachError::BadConfig("path has no file name"))?;
        let tmp = path.with_file_name(format!(
            "{}.tmp.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        // A leftover from a creator with our pid that died before linking.
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            // Applied at creation: the keys are never readable by others, not
            // even between open and a later chmod.
            .mode(cfg.file_mode)
            .open(&tmp)?;
        let made = (|| -> Result<Shm, AttachError> {
            let mut shm = Shm::map_new(file, cfg.capacity, u64::from(cfg.journal_len))?;
            shm.init_header(cfg.instance_id);
            let h = shm.header();
            h.writer_epoch.store(1, Relaxed);
            h.writer_pid.store(u64::from(std::process::id()), Relaxed);
            // The file becomes visible, fully initialised, in one step; linking (not
            // renaming) refuses to replace a table another process created meanwhile.
            std::fs::hard_link(&tmp, path)?;
            Ok(shm)
        })();
        let _ = std::fs::remove_file(&tmp);
        let mut w = Self::empty(made?, cfg.lock_wait);
        let cap = w.shm.capacity();
        w.free.extend((0..cap).map(|i| (i, 0)));
        Ok(w)
    }

    /// Attach to the table at `path` if there is one, else create it with `cfg`.
    pub fn open(path: &Path, cfg: &TableConfig) -> Result<(Self, RepairReport), AttachError> {
        match Self::create(path, cfg) {
            Ok(w) => {
                let report = RepairReport {
                    writer_epoch: 1,
                    ..RepairReport::default()
                };
                Ok((w, report))
            }
            Err(AttachError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
                Self::attach(path, cfg.lock_wait)
            }
            Err(e) => Err(e),
        }
    }

    /// Attach to an existing table as one of its writers, waiting at most
    /// [`DEFAULT_LOCK_WAIT`] for the lock: build the writer's bookkeeping from
    /// the slots, repairing what a dead writer left (slots left mid-write,
    /// written but unpublished ones).
    pub fn reattach(path: &Path) -> Result<(Self, RepairReport), AttachError> {
        Self::attach(path, DEFAULT_LOCK_WAIT)
    }

    fn attach(path: &Path, lock_wait: Duration) -> Result<(Self, RepairReport), AttachError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let shm = Shm::map_existing(file)?;
        if !lock_within(shm.file(), lock_wait)? {
            let h = shm.header();
            let pid = match h.txn_pid.load(Acquire) {
                0 => h.writer_pid.load(Relaxed),
                p => p,
            };
            return Err(AttachError::WriterBusy { pid });
        }
        let mut w = Self::empty(shm, lock_wait);
        let h = w.shm.header();
        let epoch = h.writer_epoch.fetch_add(1, Relaxed) + 1;
        let me = u64::from(std::process::id());
        h.writer_pid.store(me, Relaxed);
        // Marked before the repair writes anything: dying in the middle of it
        // leaves the next writer a repair of its own to do.
        h.txn_pid.store(me, Release);
        let mut report = w.rescan();
        report.writer_epoch = epoch;
        w.shm.header().txn_pid.store(0, Release);
        unlock(w.shm.file());
        Ok((w, report))
    }

    /// Rebuild the bookkeeping from the slots (the lock is held): repair slots
    /// a dead writer left mid-write or with a bad checksum, publish slots it
    /// wrote but never published.
    fn rescan(&mut self) -> RepairReport {
        let published = self.shm.published();
        let cap = self.shm.capacity();
        self.gen = published;
        self.installed.iter_mut().for_each(|g| *g = 0);
        self.freed_at.iter_mut().for_each(|g| *g = 0);
        self.free.clear();
        self.inbound.clear();
        self.inbound_of.clear();
        self.live = 0;
        let mut report = RepairReport::default();
        for i in 0..cap {
            let torn = self.shm.slot_seq(i) & 1 == 1;
            let rec = if torn {
                None
            } else {
                match self.shm.read_slot(i) {
                    SlotRead::Stable(r) => Some(r),
                    // Nobody else writes while we hold the lock: a slot that
                    // keeps changing is as good as torn.
                    SlotRead::Busy => None,
                }
            };
            match rec {
                None => {
                    report.torn_slots.push(i);
                    self.free_slot_now(i);
                }
                // Never written since the table was created: free, not corrupt
                // (a fresh table's slots are all zero, checksum word included).
                Some(r) if r == SaParams::zeroed() && self.shm.slot_seq(i) == 0 => {
                    self.queue_free(i, 0);
                }
                Some(r) if !r.checksum_ok() => {
                    report.corrupt_slots.push(i);
                    self.free_slot_now(i);
                }
                Some(r) if r.slot_state == SLOT_LIVE => {
                    let mut r = r;
                    if r.gen > published {
                        // Written, never published: readers following the journal
                        // have not seen it. Publish it now under a fresh generation.
                        let g = self.next_gen();
                        let install_gen = if r.install_gen > published {
                            g
                        } else {
                            r.install_gen
                        };
                        r = stamp(&r, g, install_gen, SLOT_LIVE);
                        self.shm.write_slot(i, &r, || {});
                        self.shm.journal_write(g, i);
                        self.shm.publish(g);
                        report.republished.push(i);
                    }
                    self.note_live(i, &r);
                }
                Some(r) => {
                    if r.gen > published {
                        // An unpublished delete: publish it so readers drop the SA.
                        let g = self.next_gen();
                        self.shm.write_slot(i, &freed_record(g), || {});
                        self.shm.journal_write(g, i);
                        self.shm.publish(g);
                        report.republished.push(i);
                    }
                    // Freed at an unknown time: wait for readers to pass the present.
                    self.queue_free(i, self.gen);
                }
            }
        }
        // Oldest free first, as everywhere else: a slot repaired just now must
        // not stand in front of slots free since creation (reuse waits for the
        // readers at the head of the queue only).
        self.free.make_contiguous().sort_by_key(|&(_, g)| g);
        let repaired = (report.torn_slots.len() + report.corrupt_slots.len()) as u64;
        let h = self.shm.header();
        h.repairs.fetch_add(repaired, Relaxed);
        h.live_count.store(self.live as u64, Relaxed);
        report.live = self.live;
        report
    }

    /// Bookkeeping: slot `i` holds the live SA `r` (whoever wrote it).
    fn note_live(&mut self, i: u32, r: &SaParams) {
        self.forget(i);
        self.installed[i as usize] = r.install_gen;
        self.live += 1;
        if r.direction == Direction::INBOUND {
            let k = InboundKey::of(r);
            self.inbound.insert(k, i);
            self.inbound_of.insert(i, k);
        }
    }

    /// Bookkeeping: slot `i` was freed at generation `g` (whoever freed it);
    /// queue it for reuse unless that very free is queued already.
    fn note_free(&mut self, i: u32, g: u64) {
        let was_live = self.installed[i as usize] != 0;
        self.forget(i);
        // A free slot always has the entry of its latest free in the queue (it
        // leaves the queue only by being allocated, which makes it live).
        if was_live || self.freed_at[i as usize] != g {
            self.queue_free(i, g);
        }
    }

    fn queue_free(&mut self, i: u32, g: u64) {
        self.freed_at[i as usize] = g;
        self.free.push_back((i, g));
    }

    /// Bookkeeping: whatever slot `i` held is gone.
    fn forget(&mut self, i: u32) {
        if self.installed[i as usize] != 0 {
            self.installed[i as usize] = 0;
            self.live -= 1;
        }
        if let Some(k) = self.inbound_of.remove(&i) {
            if self.inbound.get(&k) == Some(&i) {
                self.inbound.remove(&k);
            }
        }
    }

    /// Start (or nest into) a write transaction: take the lock, then bring the
    /// bookkeeping up to date with whatever other writers did since ours.
    fn enter(&mut self) -> Result<(), WriteError> {
        if self.held > 0 {
            self.held += 1;
            return Ok(());
        }
        let file = self.shm.file();
        match lock_exclusive(file) {
            Ok(true) => {}
            Ok(false) => {
                self.stats.lock_waits += 1;
                match lock_within(file, self.lock_wait) {
                    Ok(true) => {}
                    Ok(false) => {
                        let h = self.shm.header();
                        let pid = match h.txn_pid.load(Acquire) {
                            0 => h.writer_pid.load(Relaxed),
                            p => p,
                        };
                        return Err(WriteError::Busy { pid });
                    }
                    Err(e) => return Err(WriteError::Lock(e.raw_os_error().unwrap_or(0))),
                }
            }
            Err(e) => return Err(WriteError::Lock(e.raw_os_error().unwrap_or(0))),
        }
        self.held = 1;
        self.stats.transactions += 1;
        let h = self.shm.header();
        let me = u64::from(std::process::id());
        h.writer_pid.store(me, Relaxed);
        // The lock is ours, so nobody else is inside a transaction: a mark
        // left set is the last holder's, who died before its end.
        let dead = h.txn_pid.swap(me, AcqRel);
        if dead != 0 {
            self.stats.dead_writer_repairs += 1;
            self.stats.rescans += 1;
            self.rescan();
        } else {
            self.catch_up();
        }
        Ok(())
    }

    /// End (or unnest from) the transaction: clear the mark, drop the lock.
    fn leave(&mut self) {
        debug_assert!(self.held > 0, "leave without enter");
        self.held = self.held.saturating_sub(1);
        if self.held == 0 {
            self.shm.header().txn_pid.store(0, Release);
            unlock(self.shm.file());
        }
    }

    /// Replay the journal entries other writers published since this writer's
    /// last transaction, re-reading each slot they name; rescan when the
    /// journal no longer holds them all.
    fn catch_up(&mut self) {
        let published = self.shm.published();
        if published == self.gen {
            return;
        }
        self.stats.catch_ups += 1;
        if published < self.gen || published - self.gen > self.shm.journal_len() {
            self.stats.rescans += 1;
            self.rescan();
            return;
        }
        for g in self.gen + 1..=published {
            let slot = match self.shm.journal_read(g) {
                Some(s) if s < self.shm.capacity() => s,
                _ => {
                    self.stats.rescans += 1;
                    self.rescan();
                    return;
                }
            };
            // The slot as it is now, which may already hold a later entry's
            // change: re-reading it then is idempotent.
            match self.shm.read_slot(slot) {
                SlotRead::Stable(r) if r.checksum_ok() => {
                    if r.slot_state == SLOT_LIVE {
                        self.note_live(slot, &r);
                    } else {
                        self.note_free(slot, r.gen);
                    }
                }
                // Not possible with the lock held and no transaction mark left;
                // the rescan repairs whatever it is.
                _ => {
                    self.stats.rescans += 1;
                    self.rescan();
                    return;
                }
            }
            self.stats.caught_up_entries += 1;
        }
        self.gen = published;
        self.shm
            .header()
            .live_count
            .store(self.live as u64, Relaxed);
    }

    /// Hold the table's lock for a batch of calls (one wait, one catch-up);
    /// released when the returned guard drops. Fails with [`WriteError::Busy`]
    /// after [`TableConfig::lock_wait`].
    pub fn lock(&mut self) -> Result<WriteLock<'_>, WriteError> {
        self.enter()?;
        Ok(WriteLock { w: self })
    }

    /// Catch up with other writers now (one short transaction), so that
    /// [`Writer::live`] and [`Writer::live_count`] include their latest changes.
    pub fn refresh(&mut self) -> Result<(), WriteError> {
        self.enter()?;
        self.leave();
        Ok(())
    }

    /// Run `f` inside a transaction of its own (or the one already held).
    fn txn<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, WriteError>,
    ) -> Result<R, WriteError> {
        self.enter()?;
        let r = f(self);
        self.leave();
        r
    }

    /// From now on, install, change and delete only SAs whose cookie has `tag`
    /// under `mask` (`cookie & mask == tag`); anything else is refused with
    /// [`WriteError::NotOwner`]. Two processes sharing a table tag their SAs
    /// apart and cannot touch each other's.
    pub fn restrict_to_cookies(&mut self, mask: u64, tag: u64) {
        self.owner = Some((mask, tag & mask));
    }

    fn check_owner(&self, cookie: u64) -> Result<(), WriteError> {
        match self.owner {
            Some((mask, tag)) if cookie & mask != tag => Err(WriteError::NotOwner { cookie }),
            _ => Ok(()),
        }
    }

    /// Set how long later transactions wait for the lock.
    pub fn set_lock_wait(&mut self, wait: Duration) {
        self.lock_wait = wait;
    }

    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    fn next_gen(&mut self) -> u64 {
        self.gen += 1;
        self.gen
    }

    /// Zero slot `i` (whatever state it is in), publish, and queue it as free.
    fn free_slot_now(&mut self, i: u32) {
        let g = self.next_gen();
        // write_slot turns an odd (torn) sequence word even again at the end.
        self.shm.write_slot(i, &freed_record(g), || {});
        self.shm.journal_write(g, i);
        self.shm.publish(g);
        self.note_free(i, g);
    }

    fn check_id(&self, id: SaId) -> Result<(), WriteError> {
        match self.installed.get(id.slot as usize) {
            Some(&g) if g != 0 && g == id.install_gen => Ok(()),
            _ => Err(WriteError::Stale(id)),
        }
    }

    /// Lowest generation every live registered reader has acknowledged; entries of
    /// dead processes are released on the way.
    fn refresh_min_acked(&mut self) -> u64 {
        let mut min = u64::MAX;
        for r in &self.shm.header().readers {
            let pid = r.pid.load(Acquire);
            if pid == 0 {
                continue;
            }
            let acked = r.acked_gen.load(Acquire);
            if acked < self.gen && !pid_alive(pid) {
                // A crashed worker process: its registration must not pin slots.
                let _ = r.pid.compare_exchange(pid, 0, Relaxed, Relaxed);
                continue;
            }
            min = min.min(acked);
        }
        self.min_acked = min;
        min
    }

    fn alloc_slot(&mut self) -> Result<u32, WriteError> {
        // Entries of slots another writer has taken, or freed again since, are
        // stale: drop them until a current one comes up.
        while let Some(&(slot, freed)) = self.free.front() {
            let i = slot as usize;
            if self.installed[i] == 0 && self.freed_at[i] == freed {
                break;
            }
            self.free.pop_front();
        }
        let &(slot, freed) = self.free.front().ok_or(WriteError::TableFull {
            capacity: self.shm.capacity(),
            quarantined: 0,
        })?;
        if freed > self.min_acked && freed > self.refresh_min_acked() {
            return Err(WriteError::TableFull {
                capacity: self.shm.capacity(),
                quarantined: self.free.len(),
            });
        }
        self.free.pop_front();
        Ok(slot)
    }

    /// Install an SA; its writer-stamped fields are ignored. Readers see it after
    /// their next poll.
    pub fn install(&mut self, params: &SaParams) -> Result<SaId, WriteError> {
        validate(params)?;
        self.check_owner(params.cookie)?;
        self.txn(|w| w.install_locked(params))
    }

    fn install_locked(&mut self, params: &SaParams) -> Result<SaId, WriteError> {
        let key = (params.direction == Direction::INBOUND).then(|| InboundKey::of(params));
        if let Some(k) = &key {
            if let Some(&s) = self.inbound.get(k) {
                let existing = SaId {
                    slot: s,
                    install_gen: self.installed[s as usize],
                };
                return Err(WriteError::DuplicateInbound {
                    spi: params.spi,
                    existing,
                });
            }
        }
        let slot = self.alloc_slot()?;
        let g = self.next_gen();
        let rec = stamp(params, g, g, SLOT_LIVE);
        let state = self.shm.state(slot);
        // The dataplane state is reset inside the write section: a reader that sees
        // the new SA sees fresh counters and the initial sequence number with it.
        self.shm
            .write_slot(slot, &rec, || state.reset(params));
        self.shm.journal_write(g, slot);
        self.shm.publish(g);
        self.note_live(slot, &rec);
        self.shm
            .header()
            .live_count
            .store(self.live as u64, Relaxed);
        Ok(SaId {
            slot,
            install_gen: g,
        })
    }

    /// Replace an SA's parameters in place (e.g. new lifetimes); its counters and
    /// sequence number carry on. The id stays valid.
    pub fn update(&mut self, id: SaId, params: &SaParams) -> Result<(), WriteError> {
        validate(params)?;
        self.check_owner(params.cookie)?;
        self.txn(|w| w.update_locked(id, params))
    }

    fn update_locked(&mut self, id: SaId, params: &SaParams) -> Result<(), WriteError> {
        self.check_id(id)?;
        let old = self.read_live(id)?;
        self.check_owner(old.cookie)?;
        let new_key = (params.direction == Direction::INBOUND).then(|| InboundKey::of(params));
        if let Some(k) = &new_key {
            if let Some(&s) = self.inbound.get(k) {
                if s != id.slot {
                    let existing = SaId {
                        slot: s,
                        install_gen: self.installed[s as usize],
                    };
                    return Err(WriteError::DuplicateInbound {
                        spi: params.spi,
                        existing,
                    });
                }
            }
        }
        let g = self.next_gen();
        let rec = stamp(params, g, id.install_gen, SLOT_LIVE);
        self.shm.write_slot(id.slot, &rec, || {});
        self.shm.journal_write(g, id.slot);
        self.shm.publish(g);
        self.note_live(id.slot, &rec);
        Ok(())
    }

    /// Remove an SA: its record, keys included, is zeroed. The slot is reused only
    /// after every reader has seen the removal.
    pub fn delete(&mut self, id: SaId) -> Result<(), WriteError> {
        self.txn(|w| w.delete_locked(id))
    }

    fn delete_locked(&mut self, id: SaId) -> Result<(), WriteError> {
        self.check_id(id)?;
        let old = self.read_live(id)?;
        self.check_owner(old.cookie)?;
        let g = self.next_gen();
        self.shm.write_slot(id.slot, &freed_record(g), || {});
        self.shm.journal_write(g, id.slot);
        self.shm.publish(g);
        self.note_free(id.slot, g);
        self.shm
            .header()
            .live_count
            .store(self.live as u64, Relaxed);
        Ok(())
    }

    /// Child SA rekey, make before break (RFC 7296 §2.8): the new inbound SA goes
    /// live first (the peer may already use it), then the new outbound SA is
    /// installed, which is the single point where readers switch outbound traffic
    /// (newest install wins its prefixes), then the old outbound SA is deleted.
    /// The old inbound SA stays until the caller deletes it (after the peer's
    /// DELETE or a grace period), so in-flight packets still decrypt. One
    /// transaction: no other writer comes in between.
    pub fn rekey(
        &mut self,
        old_outbound: SaId,
        new_inbound: &SaParams,
        new_outbound: &SaParams,
    ) -> Result<RekeyedSas, WriteError> {
        if new_inbound.direction != Direction::INBOUND
            || new_outbound.direction != Direction::OUTBOUND
        {
            return Err(WriteError::Invalid(
                "rekey takes a new inbound and a new outbound SA",
            ));
        }
        validate(new_inbound)?;
        validate(new_outbound)?;
        self.check_owner(new_inbound.cookie)?;
        self.check_owner(new_outbound.cookie)?;
        self.txn(|w| {
            w.check_id(old_outbound)?;
            let inbound = w.install_locked(new_inbound)?;
            let outbound = match w.install_locked(new_outbound) {
                Ok(id) => id,
                Err(e) => {
                    // Leave the table as it was: the half-done rekey must not linger.
                    w.delete_locked(inbound)?;
                    return Err(e);
                }
            };
            w.delete_locked(old_outbound)?;
            Ok(RekeyedSas { inbound, outbound })
        })
    }

    fn read_live(&self, id: SaId) -> Result<SaParams, WriteError> {
        match self.shm.read_slot(id.slot) {
            SlotRead::Stable(r) if r.slot_state == SLOT_LIVE && r.install_gen == id.install_gen => {
                Ok(r)
            }
            _ => Err(WriteError::Stale(id)),
        }
    }

    /// The SA's current parameters.
    pub fn get(&self, id: SaId) -> Result<SaParams, WriteError> {
        self.check_id(id)?;
        self.read_live(id)
    }

    /// Every live SA, in slot order, whichever writer installed it, as of this
    /// writer's last transaction ([`Writer::refresh`] for now): what a restarted
    /// writer reconciles against its own state (match on `cookie`).
    pub fn live(&self) -> impl Iterator<Item = (SaId, SaParams)> + '_ {
        (0..self.shm.capacity())
            .filter(|&i| self.installed[i as usize] != 0)
            .filter_map(move |i| {
                let id = SaId {
                    slot: i,
                    install_gen: self.installed[i as usize],
                };
                self.read_live(id).ok().map(|p| (id, p))
            })
    }

    /// The dataplane-written state of a live SA (counters for lifetimes, idle
    /// detection, the sequence-exhaustion rekey).
    pub fn state(&self, id: SaId) -> Result<&SaState, WriteError> {
        self.check_id(id)?;
        Ok(self.shm.state(id.slot))
    }

    /// Live SAs of every writer, as of this writer's last transaction.
    pub fn live_count(&self) -> usize {
        self.live
    }

    pub fn capacity(&self) -> u32 {
        self.shm.capacity()
    }

    /// Last generation published (by this writer, or seen at its last catch-up).
    pub fn generation(&self) -> u64 {
        self.gen
    }

    pub fn instance_id(&self) -> u64 {
        self.shm.header().instance_id
    }

    /// Test hook: start rewriting `id`'s slot and stop halfway, as a writer killed
    /// mid-write would leave it. Nothing is published and the transaction never
    /// ends (its mark stays set; the lock goes when this writer is dropped, as
    /// the kernel drops a dead process's). Used by crash tests.
    #[doc(hidden)]
    pub fn abandon_write_midway(&mut self, id: SaId, garbage: u64) {
        if self.enter().is_ok() {
            self.shm.begin_write_and_abandon(id.slot, garbage);
        }
    }

    /// Test hook: write and journal a change to `id` but die before publishing it
    /// (the process is expected to be killed, or this writer dropped, right after;
    /// the transaction never ends).
    #[doc(hidden)]
    pub fn write_unpublished(&mut self, id: SaId, params: &SaParams) {
        if self.enter().is_ok() {
            let g = self.gen + 1;
            let rec = stamp(params, g, id.install_gen, SLOT_LIVE);
            self.shm.write_slot(id.slot, &rec, || {});
            self.shm.journal_write(g, id.slot);
        }
    }
}
