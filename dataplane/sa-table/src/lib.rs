//! The shared-memory SA table: the one contract between the processes that write
//! SAs ([`Writer`]: esprit-ike, and the dataplane for its static SAs, taking the
//! table in turns, one short transaction at a time) and the dataplane workers
//! (one [`Reader`] each), DESIGN.md §3.
//!
//! One file under `/dev/shm` holds, in this order (each region page aligned):
//!
//! | region  | contents |
//! |---------|----------|
//! | header  | magic, layout version and hash, capacity, instance id, published generation, writer epoch, transaction mark, reader registry |
//! | slots   | `capacity` × 512 B: a seqlock word + [`SaParams`] (everything a worker needs for one SA) |
//! | states  | `capacity` × [`SaState`]: dataplane-written counters, sequence counter, replay window, each group on its own cache lines |
//! | journal | ring of "slot i changed at generation g" |
//!
//! Guarantees:
//! * **No torn reads.** Every slot write is bracketed by its seqlock; a reader only
//!   returns a copy taken while the sequence word was even and unchanged, and the copy
//!   also carries a checksum the reader verifies. A writer that dies mid-write leaves
//!   the slot odd: readers skip it and keep their previous view until a new writer
//!   repairs it: the next transaction of any writer, or a writer attaching
//!   ([`Writer::reattach`]).
//! * **Writers take turns.** A writer holds the table's lock only for one batch of
//!   writes and catches up with the others' changes through the journal when it
//!   takes it again; each may be restricted to the SAs its cookie tag names. See
//!   `writer.rs` for the protocol.
//! * **Incremental, then correct.** Readers follow the journal to update their
//!   private indexes; a reader lapped by the ring (or finding an entry overwritten)
//!   rebuilds from the slots ([`Reader::poll_changes`]), and the result equals what
//!   it would have built by following every entry.
//! * **Make before break.** [`Writer::rekey`] makes the new inbound SA live before
//!   anything is removed, and switches outbound traffic at one journal entry (the new
//!   outbound SA's install: readers prefer the newest install for a prefix).
//! * **Keys do not outlive their SA in the table**: deleting zeroes the whole record.
//! * **A freed slot is not reused under a reader's feet**: readers register and
//!   acknowledge generations; the writer reuses a slot only once every live reader
//!   has applied the change that freed it.
//! * **Any process may restart while the others run.** A reader attaches and
//!   rebuilds; a writer attaches (waiting at most its lock wait for a transaction
//!   in progress), repairs half-written slots, republishes unpublished ones and can
//!   enumerate the live SAs ([`Writer::live`]) to reconcile.
//! * **Layout drift is refused**, with the list of what differs ([`AttachError`]).
//!
//! Memory ordering is argued where it happens, in `shm.rs`; the protocol is checked
//! exhaustively over all interleavings (with crashes) in `tests/model.rs`.
//!
//! # Use
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use std::path::Path;
//! use sa_table::{Change, Direction, IpPrefix, Mode, Reader, SaParams, TableConfig, TransformId, Writer};
//!
//! let path = Path::new("/dev/shm/esprit/0/sa-table");
//! // Control plane: create the table or attach to it (repairing what a dead writer
//! // left), and touch only SAs tagged as its own.
//! let (mut writer, _repair) = Writer::open(path, &TableConfig::default())?;
//! writer.restrict_to_cookies(0xffff << 48, 0x494b << 48);
//! let mut out = SaParams::zeroed();
//! out.spi = 0x1234_5678;
//! out.cookie = (0x494b << 48) | 1;
//! out.direction = Direction::OUTBOUND;
//! out.mode = Mode::TUNNEL;
//! out.transform = TransformId::AES_GCM_16_IIV;
//! out.set_key(&[7; 32], [1, 2, 3, 4]);
//! out.set_outer("192.0.2.1".parse()?, "198.51.100.2".parse()?);
//! out.initial_seq = 1;
//! out.served[0] = IpPrefix::new("10.1.0.0".parse()?, 16);
//! out.served_count = 1;
//! let id = writer.install(&out)?; // one transaction; `writer.lock()?` batches several
//!
//! // Each dataplane worker: attach once, then poll between bursts.
//! let mut reader = Reader::attach(path)?;
//! reader.poll_changes(|change| match change {
//!     Change::Upsert { id, params } => { /* (re)build the worker's crypto context for id.slot() */ }
//!     Change::Removed { id } => { /* drop it */ }
//! });
//! if let Some(sa) = reader.lookup_outbound_v4(Ipv4Addr::new(10, 1, 2, 3)) {
//!     let state = reader.state(sa).expect("in range");
//!     let first_seq = state.reserve_seq(32, false)?; // one atomic add per burst
//!     state.add_traffic(32, 32 * 1400);
//! }
//! // Control plane, later: lifetimes, idle detection, sequence exhaustion.
//! let st = writer.state(id)?;
//! let _ = (st.bytes(), st.pkts(), st.last_use_secs(), st.seq_next());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod index;
mod layout;
mod reader;
mod shm;
mod state;
mod writer;

pub use layout::{
    addr_bytes, addr_from_bytes, Compression, Direction, Family, InboundMatch, IpPrefix, Lifetimes,
    Mode, SaFlags, SaParams, SaState, TrafficSelector, TransformId, BYTES_PER_SA, DROP_REASONS,
    LAYOUT_HASH, LAYOUT_VERSION, MAX_CAPACITY, MAX_DSCP_LIST, MAX_KEY_BYTES, MAX_READERS,
    MAX_REPLAY_WINDOW_PKTS, MAX_SEC_LABEL_BYTES, MAX_SERVED_PREFIXES, MAX_TS_PER_SIDE,
    RECORD_WORDS, REPLAY_WORDS, SALT_BYTES, SLOT_FREE, SLOT_LIVE,
};
pub use reader::{Change, PollStats, ReadError, Reader, ReaderStats};
pub use state::{Backends, SeqExhausted};
pub use writer::{
    RekeyedSas, RepairReport, TableConfig, WriteError, WriteLock, Writer, WriterStats,
    DEFAULT_LOCK_WAIT,
};

/// Names one installed SA: its slot and the generation it was installed at. A stale
/// id (the SA was deleted, the slot reused) is detected, never confused with the
/// new occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaId {
    pub(crate) slot: u32,
    pub(crate) install_gen: u64,
}

impl SaId {
    /// Slot index: stable for the SA's life, dense, suitable for indexing a worker's
    /// own per-SA arrays (crypto contexts).
    pub fn slot(self) -> u32 {
        self.slot
    }

    pub fn install_gen(self) -> u64 {
        self.install_gen
    }
}

/// One way a table's layout differs from this build's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutDiff {
    pub field: &'static str,
    pub ours: u64,
    pub theirs: u64,
}

/// Everything that differs, for the error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutDiffs(pub Vec<LayoutDiff>);

impl std::fmt::Display for LayoutDiffs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}: this build {:#x}, table {:#x}",
                d.field, d.ours, d.theirs
            )?;
        }
        Ok(())
    }
}

/// Why a table could not be created or attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("SA table I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an esprit SA table (magic {magic:#018x})")]
    NotATable { magic: u64 },
    #[error("SA table file is {file_bytes} bytes, shorter than its header")]
    TooShort { file_bytes: u64 },
    #[error("SA table geometry is invalid (capacity {capacity}, journal length {journal_len})")]
    BadGeometry { capacity: u64, journal_len: u64 },
    #[error("SA table layout differs from this build: {0}")]
    LayoutMismatch(LayoutDiffs),
    #[error("another writer (pid {pid}) held the SA table's lock for longer than the wait allowed")]
    WriterBusy { pid: u64 },
    #[error("all {MAX_READERS} reader registrations of the SA table are taken")]
    TooManyReaders,
    #[error("invalid SA table configuration: {0}")]
    BadConfig(&'static str),
}
