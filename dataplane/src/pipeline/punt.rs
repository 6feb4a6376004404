//! The punt path: what the gateway itself must see (IKE on 500, IKE on
//! 4500 behind the non-ESP marker, ARP/ND it learnt from, ICMP and other
//! IP to its addresses) goes to the kernel's TAP; what the kernel sends
//! comes back out of the outside port as it is.

use dpdk::{Burst, Mbuf};

use super::{DpDrop, Worker};
use crate::ports::{OUTSIDE, PUNT};

impl Worker<'_, '_> {
    /// Queues `m` for the kernel; a counted drop when there is no punt port.
    pub(super) fn punt(&mut self, m: Mbuf, to_kernel: &mut Burst) {
        if !self.env.has_punt || self.q.tx[PUNT].is_none() {
            self.drop_dp(DpDrop::NoPunt);
            return;
        }
        self.metrics.local.punted_to_kernel += 1;
        if let Err(m) = to_kernel.push(m) {
            // Burst full: cannot happen (input bursts are at most MAX_BURST).
            drop(m);
            self.drop_dp(DpDrop::TxFull);
        }
    }

    /// Frames from the kernel (TAP): out of the outside port as they are.
    pub(super) fn kernel_burst(&mut self, b: &mut Burst) {
        self.count_rx(PUNT, b);
        self.metrics.local.punted_from_kernel += b.len() as u64;
        self.send(OUTSIDE, b);
    }
}
