//! Outbound sequence numbers (RFC 4303 §3.3.3), reserved once per burst with
//! a single atomic read-modify-write. The counter never wraps: it stops at
//! the last usable value (2^32-1 without ESN, 2^64-1 with ESN, or the end of
//! the sender-specific counter space with RFC 6054 sender-IDs), and the
//! reservation that reaches the limit carries the event asking for a rekey.
//! Exactly one reservation sees each event.

use std::sync::atomic::{AtomicU64, Ordering};

/// Something the control plane must hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaEvent {
    /// The soft limit was crossed: start a rekey.
    RekeySoon,
    /// The last sequence number was handed out: the SA is stopped and must
    /// be replaced (RFC 4303 §3.3.3, RFC 8750 §2: never reuse an SN/nonce).
    SeqExhausted,
}

/// The result of a reservation: sequence numbers `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqGrant {
    pub first: u64,
    /// May be less than requested near the limit; 0 once exhausted.
    pub count: u32,
    pub event: Option<SaEvent>,
}

/// Reserve `n` sequence numbers on `last` (the last one used; 0 initially).
/// `limit` is the highest number that may be used; `soft` the value whose
/// crossing raises `RekeySoon`. Usable on a counter in shared memory.
pub fn reserve_on(last: &AtomicU64, n: u32, limit: u64, soft: u64) -> SeqGrant {
    let step = |cur: u64| cur.saturating_add(u64::from(n)).min(limit);
    match last.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
        (cur < limit && n > 0).then(|| step(cur))
    }) {
        Err(cur) => SeqGrant {
            first: cur.saturating_add(1),
            count: 0,
            event: None,
        },
        Ok(old) => {
            let new = step(old);
            let event = if new == limit {
                Some(SaEvent::SeqExhausted)
            } else if old < soft && new >= soft {
                Some(SaEvent::RekeySoon)
            } else {
                None
            };
            SeqGrant {
                first: old + 1,
                count: (new - old) as u32,
                event,
            }
        }
    }
}

/// An SA's outbound counter.
#[derive(Debug)]
pub struct SeqCounter {
    last: AtomicU64,
    limit: u64,
    soft: u64,
}

impl SeqCounter {
    /// A counter whose last used number is `last` (0 for a new SA).
    pub fn new(last: u64, limit: u64, soft: u64) -> Self {
        Self {
            last: AtomicU64::new(last),
            limit,
            soft,
        }
    }

    pub fn reserve(&self, n: u32) -> SeqGrant {
        reserve_on(&self.last, n, self.limit, self.soft)
    }

    /// The last number handed out.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn is_exhausted(&self) -> bool {
        self.last() >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_carries_one() {
        let c = SeqCounter::new(0, u32::MAX.into(), u64::MAX);
        assert_eq!(
            c.reserve(32),
            SeqGrant {
                first: 1,
                count: 32,
                event: None
            }
        );
        assert_eq!(c.reserve(1).first, 33);
    }

    #[test]
    fn stops_at_the_limit_and_asks_for_rekey_once() {
        let limit = u64::from(u32::MAX);
        let c = SeqCounter::new(limit - 3, limit, limit - 10);
        assert_eq!(
            c.reserve(8),
            SeqGrant {
                first: limit - 2,
                count: 3,
                event: Some(SaEvent::SeqExhausted)
            }
        );
        assert_eq!(c.reserve(8).count, 0);
        assert_eq!(c.reserve(8).event, None);
        assert!(c.is_exhausted());
        assert_eq!(c.last(), limit);
    }

    #[test]
    fn raises_rekey_soon_when_crossing_the_soft_limit() {
        let c = SeqCounter::new(90, 1000, 100);
        assert_eq!(c.reserve(5).event, None);
        assert_eq!(c.reserve(5).event, Some(SaEvent::RekeySoon));
        assert_eq!(c.reserve(5).event, None);
    }

    #[test]
    fn esn_counter_reaches_u64_max_without_wrapping() {
        let c = SeqCounter::new(u64::MAX - 1, u64::MAX, u64::MAX);
        assert_eq!(
            c.reserve(4),
            SeqGrant {
                first: u64::MAX,
                count: 1,
                event: Some(SaEvent::SeqExhausted)
            }
        );
        assert_eq!(c.reserve(4).count, 0);
    }
}
