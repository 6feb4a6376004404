//! esprit's sans-IO ESP engine (RFC 4303) over byte buffers: AEAD suites
//! (RFC 4106, RFC 7634, RFC 8750 implicit IV), ESN, tunnel and transport
//! mode over IPv4 and IPv6, UDP encapsulation (RFC 3948), padding and TFC
//! padding, dummy packets, anti-replay (RFC 4303 Appendix A, RFC 6479) and
//! sequence-number reservation per burst, and Diet-ESP header compression
//! (draft-ietf-ipsecme-diet-esp-07, [`diet`]).
//!
//! Guarantees: no `unsafe`, no I/O, no allocation on the packet path (per-SA
//! state is allocated at creation), and no panic on any input: every way a
//! packet can fail is a [`DropReason`]. Per-SA constants are computed once
//! at creation.
//!
//! The packet path, for the dataplane:
//!
//! * outbound: [`OutboundSa::new`], then [`seal_burst`] (or, for a lookaside
//!   crypto engine, [`OutboundSa::reserve`] + [`OutboundSa::prepare`] per
//!   packet, the engine, then [`OutboundSa::finish`]);
//! * inbound: [`classify`] (SPI lookup key), [`InboundSa::new`], then
//!   [`open_burst`] (or [`InboundSa::prepare`], the engine,
//!   [`InboundSa::finish`]).
#![forbid(unsafe_code)]

pub mod aead;
pub mod buf;
pub mod diet;
pub mod drop;
pub mod inbound;
pub mod outbound;
pub mod replay;
pub mod sa;
pub mod seq;
pub mod suite;

pub use aead::{aead_burst, AeadJob, Backend, BatchAead, CryptoOp, KeyError, SoftAead};
pub use buf::PktBuf;
pub use diet::{DietAttrs, DietError, Profile as DietProfile};
pub use drop::{DropCounters, DropReason};
pub use inbound::{
    classify, classify_with_port, open_burst, Decapsulated, EspLocation, InboundOp, InboundSa,
};
pub use outbound::{seal_burst, Framed, OutboundOp, OutboundSa, FAST_V4_HEADROOM};
pub use replay::{ReplayStore, ReplayWindow};
pub use sa::{IvPolicy, Mode, SaError, SaParams, TfcPadding, UdpEncap, MAX_REPLAY_WINDOW};
pub use seq::{reserve_on, SaEvent, SeqCounter, SeqGrant};
pub use suite::{Cipher, Keymat, Suite, TransformId};

/// Packets per AEAD call; longer bursts are processed in chunks of this.
pub const MAX_BURST: usize = 64;

/// Key a software AEAD for an SA's parameters.
pub fn soft_aead(backend: Backend, params: &SaParams) -> Result<SoftAead, SaError> {
    SoftAead::new(backend, params.suite, params.keymat.key()).map_err(|_| SaError::BadKey)
}
