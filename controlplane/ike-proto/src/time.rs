//! The endpoint's notion of time: an injected instant, never read from a clock.
//!
//! Guarantees: nothing in this crate reads a clock. Every `handle_*` call
//! takes a [`Time`], and every deadline the endpoint reports through
//! `poll_timeout` is a [`Time`] computed from those inputs, so a test with a
//! virtual clock replays exactly (DESIGN.md §5). The value counts from the
//! UNIX epoch because certificate validity (RFC 5280 §6.1.3 (a)(2)) is
//! checked against it; the daemon passes wall-clock time, tests start their
//! virtual clock at a fixed date.
use core::ops::Add;
use std::time::Duration;

/// An instant, as time since the UNIX epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(Duration);

impl Time {
    /// From a duration since the UNIX epoch.
    pub const fn from_unix(since_epoch: Duration) -> Self {
        Self(since_epoch)
    }

    /// From whole seconds since the UNIX epoch.
    pub const fn from_unix_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Whole seconds since the UNIX epoch (for certificate validity).
    pub fn unix_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Time since the UNIX epoch.
    pub fn since_epoch(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}
