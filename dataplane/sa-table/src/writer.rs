//! The control plane's side: the only process that writes slots and the journal.
//!
//! Guarantees:
//! * One writer at a time: the writer holds an exclusive `flock` on the table file,
//!   which the kernel drops when the process dies, so a restarted control plane can
//!   take over at once.
//! * Every change is, in order: slot written under its seqlock (generation `g`
//!   stamped in it), journal entry `g` written, generation `g` published. A reader
//!   therefore never follows a journal entry to a slot that does not have the change.
//! * Installs are validated (lengths, transform/key length, counts) and an inbound
//!   lookup key (SPI, or SPI+dst(+src) for group SAs) is never installed twice.
//! * A freed slot is reused only after every registered live reader acknowledged the
//!   generation that freed it, so a worker still finishing a burst on the old SA
//!   never counts into, or reads keys of, the new one.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use crate::index::{FxBuild, InboundKey};
use crate::layout::{
    record_checksum, to_words, Family, SaParams, SaState, TrafficSelector, MAX_CAPACITY,
    MAX_KEY_BYTES, MAX_REPLAY_WINDOW_PKTS, MAX_SEC_LABEL_BYTES, MAX_SERVED_PREFIXES,
    MAX_TS_PER_SIDE, SLOT_FREE, SLOT_LIVE,
};
use crate::shm::{Shm, SlotRead};
use crate::{AttachError, Direction, InboundMatch, Mode, SaId};

/// Size of a new table.
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
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            capacity: 1 << 16,
            journal_len: 1 << 16,
            instance_id: 0,
            file_mode: 0o600,
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

/// The control plane's handle on the table.
pub struct Writer {
    shm: Shm,
    /// Last generation used (published or being written).
    gen: u64,
    /// install_gen of each slot's SA, 0 when free.
    installed: Vec<u64>,
    /// Free slots, oldest first, with the generation that freed them.
    free: VecDeque<(u32, u64)>,
    inbound: HashMap<InboundKey, u32, FxBuild>,
    /// Lowest acknowledged generation among live readers, as last computed.
    min_acked: u64,
    live: usize,
}

fn lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a file descriptor we own and keep open for the writer's life;
    // it touches no memory.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
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
    /// Create a new table at `path` (parent directories included). Fails with
    /// `AlreadyExists` if a table is there: use [`Writer::open`] to take it over.
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
        let made = (|| {
            if !lock_exclusive(&file)? {
                return Err(AttachError::WriterBusy { pid: 0 });
            }
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
        let shm = made?;
        let cap = shm.capacity();
        Ok(Self {
            shm,
            gen: 0,
            installed: vec![0; cap as usize],
            free: (0..cap).map(|i| (i, 0)).collect(),
            inbound: HashMap::with_capacity_and_hasher(cap as usize / 2, FxBuild::default()),
            min_acked: 0,
            live: 0,
        })
    }

    /// Take over the table at `path` if there is one, else create it with `cfg`.
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
                Self::reattach(path)
            }
            Err(e) => Err(e),
        }
    }

    /// Attach to an existing table as its writer: repair slots a dead writer left
    /// mid-write, publish slots it wrote but never published, and rebuild the
    /// writer's bookkeeping from the slots.
    pub fn reattach(path: &Path) -> Result<(Self, RepairReport), AttachError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if !lock_exclusive(&file)? {
            let shm = Shm::map_existing(file)?;
            return Err(AttachError::WriterBusy {
                pid: shm.header().writer_pid.load(Relaxed),
            });
        }
        let shm = Shm::map_existing(file)?;
        let h = shm.header();
        let epoch = h.writer_epoch.fetch_add(1, Relaxed) + 1;
        h.writer_pid.store(u64::from(std::process::id()), Relaxed);
        let published = shm.published();
        let cap = shm.capacity();
        let mut w = Self {
            gen: published,
            installed: vec![0; cap as usize],
            free: VecDeque::new(),
            inbound: HashMap::default(),
            min_acked: 0,
            live: 0,
            shm,
        };
        let mut report = RepairReport {
            writer_epoch: epoch,
            ..RepairReport::default()
        };
        for i in 0..cap {
            let torn = w.shm.slot_seq(i) & 1 == 1;
            let rec = if torn {
                None
            } else {
                match w.shm.read_slot(i) {
                    SlotRead::Stable(r) => Some(r),
                    // Nobody else writes: a slot that keeps changing is as good as torn.
                    SlotRead::Busy => None,
                }
            };
            match rec {
                None => {
                    report.torn_slots.push(i);
                    w.free_slot_now(i);
                }
                // Never written since the table was created: free, not corrupt
                // (a fresh table's slots are all zero, checksum word included).
                Some(r) if r == SaParams::zeroed() && w.shm.slot_seq(i) == 0 => {
                    w.free.push_back((i, 0));
                }
                Some(r) if !r.checksum_ok() => {
                    report.corrupt_slots.push(i);
                    w.free_slot_now(i);
                }
                Some(r) if r.slot_state == SLOT_LIVE => {
                    let mut r = r;
                    if r.gen > published {
                        // Written, never published: readers following the journal
                        // have not seen it. Publish it now under a fresh generation.
                        let g = w.next_gen();
                        let install_gen = if r.install_gen > published {
                            g
                        } else {
                            r.install_gen
                        };
                        r = stamp(&r, g, install_gen, SLOT_LIVE);
                        w.shm.write_slot(i, &r, || {});
                        w.shm.journal_write(g, i);
                        w.shm.publish(g);
                        report.republished.push(i);
                    }
                    w.installed[i as usize] = r.install_gen;
                    if r.direction == Direction::INBOUND {
                        w.inbound.insert(InboundKey::of(&r), i);
                    }
                    w.live += 1;
                }
                Some(r) => {
                    if r.gen > published {
                        // An unpublished delete: publish it so readers drop the SA.
                        let g = w.next_gen();
                        w.shm.write_slot(i, &freed_record(g), || {});
                        w.shm.journal_write(g, i);
                        w.shm.publish(g);
                        report.republished.push(i);
                    }
                    // Freed at an unknown time: wait for readers to pass the present.
                    w.free.push_back((i, w.gen));
                }
            }
        }
        let repaired = (report.torn_slots.len() + report.corrupt_slots.len()) as u64;
        w.shm.header().repairs.fetch_add(repaired, Relaxed);
        w.shm.header().live_count.store(w.live as u64, Relaxed);
        report.live = w.live;
        Ok((w, report))
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
        self.free.push_back((i, g));
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
        self.installed[slot as usize] = g;
        if let Some(k) = key {
            self.inbound.insert(k, slot);
        }
        self.live += 1;
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
        self.check_id(id)?;
        validate(params)?;
        let old = self.read_live(id)?;
        let old_key = (old.direction == Direction::INBOUND).then(|| InboundKey::of(&old));
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
        if let Some(k) = old_key {
            self.inbound.remove(&k);
        }
        if let Some(k) = new_key {
            self.inbound.insert(k, id.slot);
        }
        Ok(())
    }

    /// Remove an SA: its record, keys included, is zeroed. The slot is reused only
    /// after every reader has seen the removal.
    pub fn delete(&mut self, id: SaId) -> Result<(), WriteError> {
        self.check_id(id)?;
        let old = self.read_live(id)?;
        let g = self.next_gen();
        self.shm.write_slot(id.slot, &freed_record(g), || {});
        self.shm.journal_write(g, id.slot);
        self.shm.publish(g);
        if old.direction == Direction::INBOUND {
            self.inbound.remove(&InboundKey::of(&old));
        }
        self.installed[id.slot as usize] = 0;
        self.free.push_back((id.slot, g));
        self.live -= 1;
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
    /// DELETE or a grace period), so in-flight packets still decrypt.
    pub fn rekey(
        &mut self,
        old_outbound: SaId,
        new_inbound: &SaParams,
        new_outbound: &SaParams,
    ) -> Result<RekeyedSas, WriteError> {
        self.check_id(old_outbound)?;
        if new_inbound.direction != Direction::INBOUND
            || new_outbound.direction != Direction::OUTBOUND
        {
            return Err(WriteError::Invalid(
                "rekey takes a new inbound and a new outbound SA",
            ));
        }
        validate(new_outbound)?;
        let inbound = self.install(new_inbound)?;
        let outbound = match self.install(new_outbound) {
            Ok(id) => id,
            Err(e) => {
                // Leave the table as it was: the half-done rekey must not linger.
                self.delete(inbound)?;
                return Err(e);
            }
        };
        self.delete(old_outbound)?;
        Ok(RekeyedSas { inbound, outbound })
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

    /// Every live SA, in slot order: what a restarted control plane reconciles
    /// against its own state (match on `cookie`).
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

    pub fn live_count(&self) -> usize {
        self.live
    }

    pub fn capacity(&self) -> u32 {
        self.shm.capacity()
    }

    /// Last published generation.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    pub fn instance_id(&self) -> u64 {
        self.shm.header().instance_id
    }

    /// Test hook: start rewriting `id`'s slot and stop halfway, as a writer killed
    /// mid-write would leave it. Nothing is published. Used by crash tests.
    #[doc(hidden)]
    pub fn abandon_write_midway(&mut self, id: SaId, garbage: u64) {
        self.shm.begin_write_and_abandon(id.slot, garbage);
    }

    /// Test hook: write and journal a change to `id` but die before publishing it
    /// (the process is expected to be killed right after).
    #[doc(hidden)]
    pub fn write_unpublished(&mut self, id: SaId, params: &SaParams) {
        let g = self.gen + 1;
        let rec = stamp(params, g, id.install_gen, SLOT_LIVE);
        self.shm.write_slot(id.slot, &rec, || {});
        self.shm.journal_write(g, id.slot);
    }
}
