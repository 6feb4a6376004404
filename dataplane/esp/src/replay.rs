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
}

const BLOCK_BITS: u64 = 64;

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
        Ok(())
    }

    /// Restore T after a restart or for tests (the bitmap starts empty, so
    /// everything left of T counts as unseen-but-inside).
    pub fn set_top(&mut self, top: u64) {
        self.top = top;
        self.blocks.iter_mut().for_each(|b| *b = 0);
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
}
