//! Where an inbound SA's replay window lives (DESIGN §3, issue 13 items 1-2):
//! in the SA table's dataplane-owned lines of its slot, so that no context
//! rebuild, restart or owner change ever opens it to a replay.
//!
//! * The installer (control plane, or the static-SA sync) seeds it inside the
//!   slot's write section, before the journal entry is published: T =
//!   `initial_seq - 1`, no bit set.
//! * After that only the owner worker (slot % workers) writes it: after each
//!   run of packets of the SA, T if it moved and the words that changed
//!   (`esp::ReplayWindow::save`: with 32 in-order packets, T and one or two
//!   words; no atomic read-modify-write, no per-packet store). That is before
//!   the burst is transmitted, so a packet that left the dataplane is in the
//!   table even if the process is killed right after.
//! * A worker builds a window from the table (`restore`) whenever it builds a
//!   new context for the SA: at start (a restarted dataplane), when it owns an
//!   SA it did not have (another worker count since the last run: the window
//!   goes with the SA), when the window size or ESN changed. Re-installing an
//!   unchanged SA (same slot and install generation: a journal poll with more
//!   than 16 changes rebuilds every context, a lapped reader re-reads slots)
//!   keeps the window in memory, which equals the table's.
//! * The table keeps T and the newest 64 blocks of 64 numbers (4096 bits,
//!   `MAX_REPLAY_WINDOW_PKTS`); a window restored from it counts everything
//!   older as seen. Windows up to 4033 packets come back exactly; a larger
//!   one may drop, after a restart, a late packet more than 4032 behind T,
//!   never accept a replay.

use std::sync::atomic::{fence, Ordering};

use esp::ReplayStore;
use sa_table::{SaState, REPLAY_WORDS};

/// An inbound SA's replay storage in the SA table, as the ESP engine's store.
pub(super) struct TableWindow<'s>(pub(super) &'s SaState);

impl ReplayStore for TableWindow<'_> {
    const WORDS: usize = REPLAY_WORDS;

    fn load_top(&self) -> u64 {
        self.0.replay_top()
    }

    fn load_word(&self, i: usize) -> u64 {
        self.0.replay_word(i)
    }

    fn store_top(&mut self, top: u64) {
        self.0.set_replay_top(top);
        // The words of this save must not land before T (see ReplayStore):
        // the compiler may not sink this store below the ones that follow.
        fence(Ordering::Release);
    }

    fn store_word(&mut self, i: usize, bits: u64) {
        self.0.set_replay_word(i, bits);
    }
}
