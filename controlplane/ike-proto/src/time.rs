//! The endpoint's two clocks, both injected, never read.
//!
//! * [`Time`]: a monotonic instant, as a duration since an origin the owner
//!   picks (esprit-ike: its own start, from `std::time::Instant`; tests: a
//!   virtual clock). Every timer runs on it: retransmission (RFC 7296
//!   §2.1), DPD (§2.4), rekeys and lifetimes (§2.8), the half-open timeout,
//!   fragment reassembly, the cookie secret's rotation (§2.6). Every
//!   `handle_*` call takes one, and every deadline `poll_timeout` reports is
//!   a [`Time`] computed from those inputs, so a test with a virtual clock
//!   replays exactly (DESIGN.md §5).
//! * [`UnixTime`]: the wall-clock date, for the one thing in IKE that needs
//!   it: certificate validity (RFC 5280 §6.1.3 (a)(2)). The owner hands it
//!   over with `Endpoint::set_unix_time`; no deadline is computed from it,
//!   so a wall clock stepped by NTP or by hand moves no timer.
//!
//! Guarantees: nothing in this crate reads a clock; the two types do not
//! mix (no conversion between them exists).
use core::ops::Add;
use std::time::Duration;

/// A monotonic instant: time since the owner's chosen origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(Duration);

impl Time {
    /// The origin itself.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// `since_origin` after the owner's origin.
    pub const fn from_duration(since_origin: Duration) -> Self {
        Self(since_origin)
    }

    /// Whole seconds after the owner's origin.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Time since the owner's origin.
    pub fn since_origin(self) -> Duration {
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

/// A wall-clock date, as time since the UNIX epoch: only for certificate
/// validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(Duration);

impl UnixTime {
    /// From a duration since the UNIX epoch (`SystemTime::duration_since`).
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Self(since_epoch)
    }

    /// From whole seconds since the UNIX epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Whole seconds since the UNIX epoch.
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Time since the UNIX epoch.
    pub fn since_epoch(self) -> Duration {
        self.0
    }
}
