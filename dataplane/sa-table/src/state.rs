//! Dataplane-written per-SA state: the outbound sequence counter, traffic and drop
//! counters, last-use time and the replay window storage.
//!
//! Guarantees: every access is a single atomic operation on shared memory, so any
//! worker (and the control plane, reading) may touch it concurrently without tearing
//! a counter. A burst reserves its sequence numbers with one `fetch_add`, so two
//! workers sending on the same SA never reuse a number (a nonce with RFC 8750 IIV).
//!
//! The replay window is plain storage (the `esp` crate owns the algorithm and the
//! meaning of the words, `esp::ReplayStore`): T and [`REPLAY_WORDS`] words, word
//! `b % REPLAY_WORDS` holding block `b` of 64 sequence numbers. The writer sets it
//! once, at install, inside the slot's write section (for an inbound SA T =
//! `initial_seq - 1` and every bit set: nothing before `initial_seq` is accepted),
//! so a reader that sees the SA sees its starting window. After that only the SA's
//! owner worker writes it (RFC 4303 §3.4.3: after the ICV verified, once per burst,
//! before the burst is sent); anyone may read it, and a restarted dataplane or a
//! new owner resumes from it.

use std::sync::atomic::Ordering::Relaxed;

use crate::layout::{Direction, SaParams, SaState, DROP_REASONS, REPLAY_WORDS};

/// Which AEAD backends a dataplane run built an SA's crypto contexts on, as
/// bits: every worker that builds one ORs in its own, so a mix (one worker's
/// ipsec-mb session, another's software fallback) shows as a mix. The
/// meanings are part of the table's contract: esprit-ike shows them in
/// `esprit-ctl list-sas` without knowing the dataplane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backends(pub u64);

impl Backends {
    pub const RING: Self = Self(1);
    pub const RUSTCRYPTO: Self = Self(2);
    pub const IPSEC_MB: Self = Self(4);
    /// intel-ipsec-mb was asked for and the SA got a software backend instead
    /// (no session left, or no device for its suite).
    pub const FALLBACK: Self = Self(8);
    /// The dataplane refused the SA's parameters or key: its packets are dropped.
    pub const UNUSABLE: Self = Self(16);
    const NAMES: [(Self, &'static str); 5] = [
        (Self::IPSEC_MB, "ipsec-mb"),
        (Self::RING, "ring"),
        (Self::RUSTCRYPTO, "rustcrypto"),
        (Self::FALLBACK, "fallback"),
        (Self::UNUSABLE, "unusable"),
    ];
    const MASK: u64 = 0xffff_ffff_ffff;

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the bits set, in a fixed order (`["ipsec-mb", "ring",
    /// "fallback"]`); empty when no dataplane built the SA yet.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES.iter().filter(|(b, _)| self.contains(*b)).map(|(_, n)| *n).collect()
    }
}

impl std::ops::BitOr for Backends {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The SA cannot send: the reservation would pass the last sequence number allowed
/// (2^32 - 1 without ESN, 2^64 - 1 with; RFC 4303 §3.3.3, RFC 8750 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sequence numbers exhausted (next {next}, asked for {asked})")]
pub struct SeqExhausted {
    pub next: u64,
    pub asked: u32,
}

impl SaState {
    /// Reserve `n` consecutive outbound sequence numbers with one atomic add and
    /// return the first. Numbers past the SA's limit are never handed out: the burst
    /// is refused, counted, and the control plane sees it in
    /// [`SaState::seq_exhausted`] and in [`SaState::seq_next`] and rekeys.
    pub fn reserve_seq(&self, n: u32, esn: bool) -> Result<u64, SeqExhausted> {
        let limit = if esn { u64::MAX } else { u64::from(u32::MAX) };
        let first = self.seq_next.fetch_add(u64::from(n), Relaxed);
        // A u64 counter incremented by at most 2^32 per call cannot wrap before the
        // ESN limit trips, so `first` is a faithful count of what was handed out.
        match first.checked_add(u64::from(n).saturating_sub(1)) {
            Some(last) if last <= limit && first != 0 => Ok(first),
            _ => {
                self.seq_exhausted.fetch_add(1, Relaxed);
                Err(SeqExhausted {
                    next: first,
                    asked: n,
                })
            }
        }
    }

    /// The next sequence number a reservation would return.
    pub fn seq_next(&self) -> u64 {
        self.seq_next.load(Relaxed)
    }

    /// Reservations refused because the sequence space is used up.
    pub fn seq_exhausted(&self) -> u64 {
        self.seq_exhausted.load(Relaxed)
    }

    /// Record that dataplane run `run` (any non-zero tag that differs
    /// between runs, such as the process id) built the SA on `b`; bits of an
    /// earlier run are replaced, so a restarted dataplane reports its own.
    /// Returns the bits this run had noted before, so that the first worker
    /// to note a fallback or a refusal is the one that reports it (once per
    /// SA and run, however many workers build it).
    pub fn note_backend(&self, run: u16, b: Backends) -> Backends {
        let tag = u64::from(run) << 48;
        let mut cur = self.backends.load(Relaxed);
        loop {
            let mine = if cur & !Backends::MASK == tag { cur & Backends::MASK } else { 0 };
            let new = tag | mine | (b.0 & Backends::MASK);
            if new == cur {
                return Backends(mine);
            }
            match self.backends.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => return Backends(mine),
                Err(now) => cur = now,
            }
        }
    }

    /// The backends the last dataplane run built the SA on.
    pub fn backends(&self) -> Backends {
        Backends(self.backends.load(Relaxed) & Backends::MASK)
    }

    /// Count packets and bytes processed on the SA (lifetimes, RFC 4301 §4.4.2.1).
    pub fn add_traffic(&self, pkts: u64, bytes: u64) {
        self.pkts.fetch_add(pkts, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }

    /// Record the last time (seconds, dataplane clock) the SA carried a packet.
    /// A plain store: idle detection needs recency, not an exact maximum.
    pub fn touch(&self, now_secs: u64) {
        self.last_use_secs.store(now_secs, Relaxed);
    }

    /// Count a dropped packet. Reasons past the array are counted in the last one,
    /// so a newer dataplane's reason never panics an older table.
    pub fn count_drop(&self, reason: usize) {
        self.drops[reason.min(DROP_REASONS - 1)].fetch_add(1, Relaxed);
    }

    pub fn pkts(&self) -> u64 {
        self.pkts.load(Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub fn last_use_secs(&self) -> u64 {
        self.last_use_secs.load(Relaxed)
    }

    pub fn drops(&self) -> [u64; DROP_REASONS] {
        std::array::from_fn(|i| self.drops[i].load(Relaxed))
    }

    /// T, the highest accepted sequence number (64-bit, ESN-inferred). Written by the
    /// owner worker only.
    pub fn replay_top(&self) -> u64 {
        self.replay_top.load(Relaxed)
    }

    /// Owner worker only.
    pub fn set_replay_top(&self, seq: u64) {
        self.replay_top.store(seq, Relaxed);
    }

    /// Word `i` (mod [`REPLAY_WORDS`]) of the replay bitmap.
    pub fn replay_word(&self, i: usize) -> u64 {
        self.replay_bitmap[i % REPLAY_WORDS].load(Relaxed)
    }

    /// Owner worker only.
    pub fn set_replay_word(&self, i: usize, bits: u64) {
        self.replay_bitmap[i % REPLAY_WORDS].store(bits, Relaxed);
    }

    /// Put the state back to "just installed" for `p`. Writer only, inside the slot's
    /// write section, so a reader that sees the new SA also sees the reset state: the
    /// next outbound sequence number `p.initial_seq`; for an inbound SA a receive
    /// window whose T is `p.initial_seq - 1` (the peer's first packet carries
    /// `initial_seq`; 0 and 1 both mean a new SA, RFC 4303 §3.3.3), every number up
    /// to T seen.
    pub(crate) fn reset(&self, p: &SaParams) {
        self.seq_next.store(p.initial_seq, Relaxed);
        self.pkts.store(0, Relaxed);
        self.bytes.store(0, Relaxed);
        self.last_use_secs.store(0, Relaxed);
        self.seq_exhausted.store(0, Relaxed);
        self.backends.store(0, Relaxed);
        for d in &self.drops {
            d.store(0, Relaxed);
        }
        let inbound = p.direction == Direction::INBOUND;
        let top = if inbound { p.initial_seq.saturating_sub(1) } else { 0 };
        self.replay_top.store(top, Relaxed);
        // Every number up to T counts as seen: the peer starts at initial_seq, and
        // an operator who sets it to skip old traffic of a static key must not see
        // that traffic replayed into the window.
        let bits = if inbound { u64::MAX } else { 0 };
        for w in &self.replay_bitmap {
            w.store(bits, Relaxed);
        }
    }
}
