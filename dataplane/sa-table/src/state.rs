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
