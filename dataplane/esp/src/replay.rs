//! Inbound anti-replay (RFC 4303 §3.4.3 and Appendix A) with the RFC 6479
//! ring bitmap: a ring of 64-bit blocks, so sliding the window only zeroes
//! the blocks passed over, never shifts. Window sizes from 0 (anti-replay
//! off) up to any size; the bitmap is allocated once at SA creation.
//!
//! Use it boringtun/DPDK style: `check` (cheap, read-only, also infers the
//! ESN high half per Appendix A2.2) before decryption, and `mark` only after
//! the ICV verified (RFC 4303 §3.4.3: "the receive window is updated only if
//! the integrity verification succeeds"). `mark` re-checks, so two copies of
//! one packet in the same burst cannot both pass.
//!
//! Persistence ([`ReplayStore`]): a window is saved to a store of T and a
//! fixed number of 64-bit words (the SA table's dataplane-owned lines) with
//! [`ReplayWindow::save`], once per burst, writing only T (if it moved) and
//! the words that changed; [`ReplayWindow::restore`] rebuilds a window from
//! it. Guarantees:
//! * A window restored from a store never accepts a sequence number that
//!   the saved window had accepted before its last complete save, whatever
//!   its size, and whatever the window size of the restored one; nor after
//!   a save cut short at any store (a process killed mid-save), since T is
//!   stored before the words.
//! * Only the newest `WORDS` blocks (64 × `WORDS` numbers ending with T's
//!   block) are stored; everything older counts as seen after a restore.
//!   That is conservative: a late packet more than 64 × (`WORDS` - 1)
//!   numbers behind T may be dropped after a restart; a replay is never
//!   accepted. A window of at most 64 × (`WORDS` - 1) + 1 packets is
//!   restored exactly from a complete save.

use crate::DropReason;

/// The receive window of one inbound SA.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// W, in packets; 0 = anti-replay off.
    size: u32,
    esn: bool,
    /// T: highest authenticated sequence number (full 64 bits with ESN).
    top: u64,
    blocks: Box<[u64]>,
    mask: u64,
    /// T at the last [`ReplayWindow::save`] or restore.
    saved_top: u64,
    /// Lowest block marked since then ([`CLEAN`]: none).
    dirty_lo: u64,
}

const BLOCK_BITS: u64 = 64;
/// `dirty_lo` when no block changed since the last save.
const CLEAN: u64 = u64::MAX;

/// Where a window is kept across context rebuilds, restarts and owner
/// changes: T and `WORDS` 64-bit words. Word `b % WORDS` holds block `b`
/// (sequence numbers `64 b .. 64 b + 63`, bit `seq % 64`) for the `WORDS`
/// blocks ending with T's block; a set bit is a number seen (or assumed
/// seen), and every number of an older block counts as seen.
pub trait ReplayStore {
    /// 64-bit words of bitmap the store keeps (at least 1).
    const WORDS: usize;
    fn load_top(&self) -> u64;
    fn load_word(&self, i: usize) -> u64;
    /// Comes first in a save, before any of its `store_word`s. A store in
    /// memory another process reads after a crash must not let those words
    /// land before T (a release fence after this store): old words under a
    /// new T only look more seen, new words under an old T could alias
    /// blocks the old T still covers and open them to replays.
    fn store_top(&mut self, top: u64);
    fn store_word(&mut self, i: usize, bits: u64);
}

impl ReplayWindow {
    /// A window of `size` packets; `esn` selects 64-bit sequence numbers.
    pub fn new(size: u32, esn: bool) -> Self {
        // RFC 6479 §2: M blocks with (M-1)*N >= W, M a power of two.
        let m = if size == 0 {
            1
        } else {
            (u64::from(size).div_ceil(BLOCK_BITS) + 1).next_power_of_two()
        };
        Self {
            size,
            esn,
            top: 0,
            blocks: vec![0; m as usize].into_boxed_slice(),
            mask: m - 1,
            saved_top: 0,
            // Anti-replay off keeps no bits: its first save stores "all seen".
            dirty_lo: if size == 0 { 0 } else { CLEAN },
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// T, the highest sequence number authenticated so far.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The window used to infer the ESN high half (RFC 4303 A2.2 assumes
    /// W <= 2^31); with anti-replay off, the nearest epoch to T is assumed.
    fn inference_window(&self) -> u32 {
        if self.size == 0 {
            1 << 31
        } else {
            self.size.min(1 << 31)
        }
    }

    /// Infer the full sequence number of a received low half (RFC 4303
    /// Appendix A2.2). Without ESN it is the low half itself.
    pub fn infer(&self, seq_low: u32) -> Result<u64, DropReason> {
        if !self.esn {
            return Ok(u64::from(seq_low));
        }
        let (th, tl) = ((self.top >> 32) as u32, self.top as u32);
        let w = self.inference_window();
        let bl = tl.wrapping_sub(w - 1);
        let seqh = if tl >= w - 1 {
            // Case A: the window lies within one epoch.
            if seq_low >= bl {
                th
            } else {
                th.checked_add(1).ok_or(DropReason::SeqExhausted)?
            }
        } else if seq_low >= bl {
            // Case B: the window spans two epochs and Seql is in the lower one.
            th.checked_sub(1).ok_or(DropReason::OutsideWindow)?
        } else {
            th
        };
        Ok((u64::from(seqh) << 32) | u64::from(seq_low))
    }

    /// Infer the full sequence number from its `bits` least significant
    /// bits (Diet-ESP EEC, draft-ietf-ipsecme-diet-esp-07 §5.3). The RFC
    /// 4303 A2.2 rule generalised: a value that would lie inside the window
    /// behind T (at most min(W, 2^(bits-1)) - 1 back, T itself included) is
    /// taken there, anything else ahead of T, up to 2^bits - 1 ahead. With
    /// 32 bits this is [`Self::infer`]; with 0 bits the packet is T + 1.
    pub fn infer_lsb(&self, lsb: u32, bits: u32) -> Result<u64, DropReason> {
        if bits >= 32 {
            return self.infer(lsb);
        }
        let t = self.top;
        let seq = if bits == 0 {
            t.checked_add(1).ok_or(DropReason::SeqExhausted)?
        } else {
            let m = 1u64 << bits;
            let lsb = u64::from(lsb) & (m - 1);
            let back = t.wrapping_sub(lsb) & (m - 1);
            let w = u64::from(self.inference_window()).min(m / 2);
            if back < w && back <= t {
                t - back
            } else {
                let ahead = lsb.wrapping_sub(t) & (m - 1);
                t.checked_add(if ahead == 0 { m } else { ahead }).ok_or(DropReason::SeqExhausted)?
            }
        };
        if !self.esn && seq > u64::from(u32::MAX) {
            return Err(DropReason::OutsideWindow);
        }
        Ok(seq)
    }

    /// [`Self::check`] for a sequence number sent as its `bits` low bits.
    pub fn check_lsb(&self, lsb: u32, bits: u32) -> Result<u64, DropReason> {
        let seq = self.infer_lsb(lsb, bits)?;
        self.test(seq)?;
        Ok(seq)
    }

    fn test(&self, seq: u64) -> Result<(), DropReason> {
        if seq == 0 {
            // RFC 4303 §3.3.3: the first packet carries 1; 0 is never sent.
            return Err(DropReason::OutsideWindow);
        }
        if self.size == 0 || seq > self.top {
            return Ok(());
        }
        if self.top - seq >= u64::from(self.size) {
            return Err(DropReason::OutsideWindow);
        }
        let block = self.blocks[((seq / BLOCK_BITS) & self.mask) as usize];
        if block & (1 << (seq % BLOCK_BITS)) != 0 {
            return Err(DropReason::Replayed);
        }
        Ok(())
    }

    /// The pre-check before decryption: infer the full SN and reject it if
    /// it is left of the window or already seen. Does not change the window.
    pub fn check(&self, seq_low: u32) -> Result<u64, DropReason> {
        let seq = self.infer(seq_low)?;
        self.test(seq)?;
        Ok(seq)
    }

    /// Record an authenticated sequence number, sliding the window if it is
    /// new on the right. Fails (and changes nothing) if it is now a replay.
    pub fn mark(&mut self, seq: u64) -> Result<(), DropReason> {
        self.test(seq)?;
        if self.size == 0 {
            self.top = self.top.max(seq);
            return Ok(());
        }
        if seq > self.top {
            let (old_block, new_block) = (self.top / BLOCK_BITS, seq / BLOCK_BITS);
            let passed = (new_block - old_block).min(self.mask + 1);
            for i in 1..=passed {
                self.blocks[((old_block + i) & self.mask) as usize] = 0;
            }
            self.top = seq;
        }
        self.blocks[((seq / BLOCK_BITS) & self.mask) as usize] |= 1 << (seq % BLOCK_BITS);
        self.dirty_lo = self.dirty_lo.min(seq / BLOCK_BITS);
        Ok(())
    }

    /// Start the window at T = `top` with an empty bitmap (everything left
    /// of T counts as unseen-but-inside): a new SA whose peer starts at
    /// `top + 1`, or tests. The next save writes the whole image.
    pub fn set_top(&mut self, top: u64) {
        self.top = top;
        self.blocks.iter_mut().for_each(|b| *b = 0);
        self.dirty_lo = 0;
    }

    /// Block `b` (at most T's block) as the store keeps it: the ring's bits,
    /// or all seen once the ring has moved past it (it is left of the window).
    fn image_block(&self, b: u64, top_block: u64) -> u64 {
        if b + self.mask < top_block {
            !0
        } else {
            self.blocks[(b & self.mask) as usize]
        }
    }

    /// Write what changed since the last save to `store`: T if it moved,
    /// then the words of the blocks marked or passed over since (a block
    /// the ring no longer holds as all seen). In order, with 32 packets a
    /// burst: T and one or two words. Nothing at all when nothing changed.
    pub fn save<S: ReplayStore + ?Sized>(&mut self, store: &mut S) {
        let moved = self.top != self.saved_top;
        if !moved && self.dirty_lo == CLEAN {
            return;
        }
        if moved {
            store.store_top(self.top);
        }
        if self.size == 0 {
            // No bits kept: any number up to T may have been accepted. Once
            // stored as all seen, the words stay right as T moves on.
            if self.dirty_lo != CLEAN {
                (0..S::WORDS).for_each(|i| store.store_word(i, !0));
            }
        } else {
            let words = S::WORDS.max(1) as u64;
            let tb = self.top / BLOCK_BITS;
            // The oldest block the store covers.
            let floor = tb.saturating_sub(words - 1);
            let mut lo = self.dirty_lo;
            if moved {
                // Blocks the top passed over (zeroed, maybe marked since).
                // A block that left the ring keeps the word of its last save,
                // which had every mark made before it (later ones are in
                // `dirty_lo`'s range, stored as all seen).
                lo = lo.min((self.saved_top / BLOCK_BITS).saturating_add(1));
            }
            for b in lo.max(floor)..=tb {
                store.store_word((b % words) as usize, self.image_block(b, tb));
            }
        }
        self.saved_top = self.top;
        self.dirty_lo = CLEAN;
    }

    /// Rebuild the window from `store` (see [`ReplayStore`]): T, the stored
    /// blocks the ring holds, everything older as seen.
    pub fn restore<S: ReplayStore + ?Sized>(&mut self, store: &S) {
        let top = store.load_top();
        let words = S::WORDS.max(1) as u64;
        let tb = top / BLOCK_BITS;
        self.top = top;
        self.blocks.iter_mut().for_each(|b| *b = !0);
        for k in 0..(self.mask + 1).min(words) {
            let Some(b) = tb.checked_sub(k) else { break };
            self.blocks[(b & self.mask) as usize] = store.load_word((b % words) as usize);
        }
        // Nothing right of T has been seen (`mark` relies on it).
        let bit = top % BLOCK_BITS;
        let through_top = if bit == BLOCK_BITS - 1 { !0 } else { (1u64 << (bit + 1)) - 1 };
        self.blocks[(tb & self.mask) as usize] &= through_top;
        self.saved_top = top;
        self.dirty_lo = if self.size == 0 { 0 } else { CLEAN };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_new_and_rejects_duplicates() {
        let mut w = ReplayWindow::new(64, false);
        for s in [1u32, 3, 2] {
            let seq = w.check(s).unwrap();
            w.mark(seq).unwrap();
        }
        assert_eq!(w.check(2), Err(DropReason::Replayed));
        assert_eq!(w.check(4), Ok(4));
        w.mark(100).unwrap();
        w.mark(60).unwrap();
        assert_eq!(w.check(60), Err(DropReason::Replayed));
        w.mark(100).unwrap_err();
        assert_eq!(w.check(3), Err(DropReason::OutsideWindow));
        assert_eq!(w.check(100), Err(DropReason::Replayed));
        assert_eq!(w.check(36), Err(DropReason::OutsideWindow));
        assert_eq!(w.check(37), Ok(37));
        assert_eq!(w.check(0), Err(DropReason::OutsideWindow));
    }

    #[test]
    fn rejects_a_second_copy_marked_in_the_same_burst() {
        let mut w = ReplayWindow::new(64, false);
        let a = w.check(5).unwrap();
        let b = w.check(5).unwrap();
        w.mark(a).unwrap();
        assert_eq!(w.mark(b), Err(DropReason::Replayed));
    }

    #[test]
    fn window_of_zero_turns_anti_replay_off() {
        let mut w = ReplayWindow::new(0, false);
        w.mark(w.check(7).unwrap()).unwrap();
        w.mark(w.check(7).unwrap()).unwrap();
        assert_eq!(w.check(1), Ok(1));
    }

    #[test]
    fn supports_4096_packet_windows() {
        let mut w = ReplayWindow::new(4096, false);
        w.mark(5000).unwrap();
        assert_eq!(w.check(905), Ok(905));
        assert_eq!(w.check(904), Err(DropReason::OutsideWindow));
        w.mark(905).unwrap();
        assert_eq!(w.check(905), Err(DropReason::Replayed));
    }

    #[test]
    fn infers_esn_high_half_across_the_2_pow_32_boundary() {
        let mut w = ReplayWindow::new(64, true);
        w.set_top(0xffff_fff0);
        // Case A: a small low half is the next epoch.
        assert_eq!(w.check(3), Ok(0x1_0000_0003));
        w.mark(0x1_0000_0003).unwrap();
        // Case B: a low half near 2^32 belongs to the previous epoch.
        assert_eq!(w.check(0xffff_fff1), Ok(0xffff_fff1));
        assert_eq!(w.check(0xffff_ffc4), Ok(0xffff_ffc4));
        // Left of the window it reads as the next epoch: the ICV then fails.
        assert_eq!(w.check(0xffff_ffc3), Ok(0x1_ffff_ffc3));
    }

    #[test]
    fn infers_a_sequence_number_from_its_low_bits() {
        let mut w = ReplayWindow::new(64, false);
        // A new SA: 8 low bits of 1 are packet 1.
        assert_eq!(w.check_lsb(1, 8), Ok(1));
        w.mark(300).unwrap(); // T = 300 = 0x12c
        // Ahead of T: 0x2d is 301, 0x2b is 299 (behind, inside the window).
        assert_eq!(w.infer_lsb(0x2d, 8), Ok(301));
        assert_eq!(w.infer_lsb(0x2b, 8), Ok(299));
        // 64 behind is outside the window, so it reads as 192 ahead.
        assert_eq!(w.infer_lsb((300 - 64) & 0xff, 8), Ok(300 + 192));
        assert_eq!(w.infer_lsb((300 - 63) & 0xff, 8), Ok(300 - 63));
        // T's own low bits are T (a replay).
        assert_eq!(w.check_lsb(0x2c, 8), Err(DropReason::Replayed));
        // 4 bits: at most 8 behind; 0 bits: always T + 1.
        assert_eq!(w.infer_lsb(300 & 0xf, 4), Ok(300));
        assert_eq!(w.infer_lsb((300 - 8) & 0xf, 4), Ok(300 + 8));
        assert_eq!(w.infer_lsb((300 - 7) & 0xf, 4), Ok(300 - 7));
        assert_eq!(w.infer_lsb(0, 0), Ok(301));
        // 32 bits is plain RFC 4303 inference.
        assert_eq!(w.infer_lsb(7, 32), Ok(7));
        // Without ESN nothing beyond 2^32 - 1.
        w.mark(u64::from(u32::MAX) - 1).unwrap();
        assert_eq!(w.infer_lsb(0x10, 8), Err(DropReason::OutsideWindow));
        let mut e = ReplayWindow::new(64, true);
        e.mark(u64::from(u32::MAX) - 1).unwrap();
        assert_eq!(e.infer_lsb(0x10, 8), Ok(0x1_0000_0010));
    }

    /// A store of `WORDS` words in memory, counting the words written.
    struct Image<const N: usize> {
        top: u64,
        words: [u64; N],
        stores: usize,
    }

    impl<const N: usize> ReplayStore for Image<N> {
        const WORDS: usize = N;
        fn load_top(&self) -> u64 {
            self.top
        }
        fn load_word(&self, i: usize) -> u64 {
            self.words[i]
        }
        fn store_top(&mut self, top: u64) {
            self.top = top;
        }
        fn store_word(&mut self, i: usize, bits: u64) {
            self.words[i] = bits;
            self.stores += 1;
        }
    }

    #[test]
    fn a_restored_window_rejects_what_the_saved_one_accepted() {
        let mut img = Image::<64> { top: 0, words: [0; 64], stores: 0 };
        let mut w = ReplayWindow::new(1024, false);
        for s in (1..=500u64).chain([700, 650, 900]) {
            w.mark(s).unwrap();
        }
        w.save(&mut img);
        let mut r = ReplayWindow::new(1024, false);
        r.restore(&img);
        assert_eq!(r.top(), 900);
        for s in (1..=500u64).chain([700, 650, 900]) {
            assert_eq!(r.check(s as u32), Err(DropReason::Replayed), "{s}");
        }
        // Numbers never seen inside the window are still welcome.
        assert_eq!(r.check(501), Ok(501));
        assert_eq!(r.check(899), Ok(899));
        assert_eq!(r.check(901), Ok(901));
    }

    #[test]
    fn a_burst_in_order_saves_the_top_and_a_word_or_two() {
        let mut img = Image::<64> { top: 0, words: [0; 64], stores: 0 };
        let mut w = ReplayWindow::new(1024, true);
        let mut seq = 1u64;
        for _ in 0..1000 {
            img.stores = 0;
            for _ in 0..32 {
                w.mark(seq).unwrap();
                seq += 1;
            }
            w.save(&mut img);
            assert!(img.stores <= 3, "{} words written for one burst", img.stores);
        }
        img.stores = 0;
        w.save(&mut img);
        assert_eq!(img.stores, 0, "nothing changed, nothing written");
    }

    #[test]
    fn numbers_older_than_the_stored_blocks_count_as_seen() {
        // A 4-word store under a 1024-packet window: after a restore only the
        // newest 4 blocks are known, the rest of the window is taken as seen.
        let mut img = Image::<4> { top: 0, words: [0; 4], stores: 0 };
        let mut w = ReplayWindow::new(1024, false);
        w.mark(1000).unwrap();
        w.save(&mut img);
        let mut r = ReplayWindow::new(1024, false);
        r.restore(&img);
        // 1000 is in block 15: blocks 12..=15 are stored.
        assert_eq!(r.check(768), Ok(768));
        assert_eq!(r.check(767), Err(DropReason::Replayed));
        assert_eq!(r.check(1000), Err(DropReason::Replayed));
    }

    #[test]
    fn a_fresh_image_starts_the_window_at_its_top() {
        // What the SA table's installer writes for a new inbound SA whose
        // peer starts at 2^32 - 5 with ESN: T = 2^32 - 6, everything up to
        // it seen.
        let img = Image::<64> { top: (1 << 32) - 6, words: [!0; 64], stores: 0 };
        let mut r = ReplayWindow::new(64, true);
        r.restore(&img);
        assert_eq!(r.check(0xffff_fffa), Err(DropReason::Replayed));
        assert_eq!(r.check(0xffff_ffc8), Err(DropReason::Replayed));
        assert_eq!(r.check(0xffff_fffb), Ok(0xffff_fffb));
        assert_eq!(r.check(2), Ok(0x1_0000_0002));
        r.mark(0x1_0000_0002).unwrap();
        assert_eq!(r.check(2), Err(DropReason::Replayed));
    }
}
