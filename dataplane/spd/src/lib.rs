//! The security policy database of esprit's dataplane (RFC 4301 §4.4.1),
//! without DPDK: selectors, a compiled first-match classifier and a
//! per-worker flow cache.
//!
//! Guarantees:
//! * [`Classifier::first_match`] returns the index of the first selector, in
//!   the order given to [`Classifier::new`], that contains the packet's
//!   [`FlowKey`]: the same answer as trying each [`Selector::matches`] in turn
//!   (RFC 4301 §4.4.1: "the SPD is an ordered database", first match wins;
//!   a property test holds the two to each other).
//! * Ranges stay ranges (RFC 4301 §4.4.1.1: address and port selectors are
//!   ranges, lists of them allowed): nothing is widened to a covering prefix.
//! * A lookup allocates nothing, does one binary search per dimension and
//!   ANDs one bit vector per dimension (the bit-vector scheme of Lakshman and
//!   Stiliadis, SIGCOMM 1998); all the work of ordering is done once, when
//!   the classifier is built from the configuration.
//! * [`FlowCache`] remembers a verdict per flow until [`FlowCache::clear`],
//!   (a generation bump, and a wipe every 127 clears); a miss or a
//!   collision is only ever a slower lookup, never a wrong answer.
#![forbid(unsafe_code)]

mod cache;
mod classifier;
mod selector;

pub use cache::{FlowCache, SetIndex};
pub use classifier::Classifier;
pub use selector::{AddrRange, FlowKey, PortRange, Selector, UNTAGGED};
