//! `ike-proto`: a deterministic, sans-IO IKEv2 endpoint (RFC 7296).
//!
//! The daemon owns sockets, clocks and the SA table; this crate owns the
//! protocol. It follows quinn-proto's contract: [`Endpoint::handle_datagram`],
//! [`Endpoint::handle_timeout`] and [`Endpoint::handle_command`] feed it;
//! [`Endpoint::poll_transmit`], [`Endpoint::poll_event`] and
//! [`Endpoint::poll_timeout`] drain it. Time ([`Time`], monotonic: every
//! timer; the wall-clock date, [`UnixTime`], only for certificate
//! validity, through [`Endpoint::set_unix_time`]), randomness (an
//! injected [`ike_crypto::Rng`]) and crypto (an injected
//! [`ike_crypto::CryptoProvider`]) are inputs, so the same seed and the same
//! calls give the same bytes.
//!
//! Modules and the RFC sections they implement:
//! * [`endpoint`]: SA dispatch by SPI, IKE_SA_INIT retransmit detection,
//!   cookies and half-open limits checked before any key exchange, counted
//!   ([`InitCounters`]), and the plan of a burst's key exchanges for an
//!   owner that computes them ahead (§2.1, §2.6).
//! * [`exchange`]: Message IDs, window, retransmission, response cache
//!   (§2.1-§2.3).
//! * [`ike_sa`]: the IKE SA state machine and its tasks: IKE_SA_INIT,
//!   IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL (§1.2-§1.4, §2.8, §2.9, §2.15,
//!   §2.17, §2.18, §2.23, §3.15); RFC 9242 IKE_INTERMEDIATE with the IntAuth
//!   chain, RFC 9370 additional key exchanges in the initial exchanges and,
//!   over IKE_FOLLOWUP_KE, in IKE and Child SA rekeys (`ike_sa::intermediate`,
//!   `ike_sa::followup`);
//!   ML-KEM per draft-ietf-ipsecme-ikev2-mlkem.
//! * [`proposal`]: SA payloads and proposal selection (§2.7, §3.3).
//! * [`ts`]: traffic selectors and narrowing (§2.9).
//! * [`fragment`]: IKE fragmentation and reassembly (RFC 7383).
//! * [`message`]: SK protection of whole messages and the per-exchange
//!   payload tables (§3.14).
//! * [`error`]: refusals and the Notify each maps to (§2.21, §3.10.1).
//! * [`sa`]: allocation, pools, key material, AUTH (§2.15, RFC 7427), NAT
//!   detection (§2.23).
//! * [`config`], [`event`], [`time`]: the plain values going in and out.
//!
//! * [`eap`]: EAP in IKE_AUTH as the responder, passed through to the
//!   owner's AAA backend (§2.16, RFC 5998 EAP-only).
//!
//! * MOBIKE (RFC 4555) as the responder (`ike_sa/mobike.rs`): address
//!   updates, return-routability checks, NAT detection on the new path.
//!
//! Not yet here: EAP as the initiator; MOBIKE as the moving initiator; redirect; SET_WINDOW_SIZE (the exchange
//! manager keeps a map of outstanding requests, so a window above 1 is a
//! local change); IKE_INTERMEDIATE exchanges for anything but RFC 9370 key
//! exchanges; simultaneous rekeys that both need IKE_FOLLOWUP_KE (the
//! responder answers TEMPORARY_FAILURE while a request of its own is out,
//! RFC 7296 §2.25).
//!
//! Tests (`src/tests/`): a two-endpoint harness after quinn's `Pair` with a
//! virtual clock and a seeded lossy, duplicating, reordering link and a NAT;
//! every exchange in both roles, loss and retransmission, cookies, rekey
//! collisions, fragmentation, certificates, determinism, tshark's decoding,
//! IKE_INTERMEDIATE / ML-KEM / IKE_FOLLOWUP_KE (`tests/pq.rs`),
//! never-panic property tests, a property that both sides agree on
//! every SA after any sequence of operations, the order of the
//! IKE_SA_INIT checks under forged cookies and over-limit floods
//! (`tests/dos.rs`), and every timer unmoved by a wall clock stepped by
//! hours (`tests/clocks.rs`).
#![forbid(unsafe_code)]

pub mod auth_job;
pub mod auth_methods;
pub mod compression;
pub mod config;
pub mod eap;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod exchange;
pub mod fragment;
pub mod group;
/// INSECURE harness of the endpoint fuzz target (seed corpus, properties):
/// only in this crate's tests and with the test-only `fuzzing` feature.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod ike_sa;
pub mod message;
pub mod proposal;
pub mod sa;
pub mod snapshot;
pub mod split_dns;
pub mod time;
pub mod ts;

#[cfg(test)]
mod tests;

/// Whether this build carries the INSECURE fuzz harness (the `fuzzing`
/// feature); `esprit-ike --version` prints it for the release check.
pub const FUZZING_HARNESS: bool = cfg!(feature = "fuzzing");

pub use config::{
    ChildConfig, ConnectionConfig, EapConfig, EndpointConfig, EspProposal, Extensions, Family, FragmentationConfig, Identity, IkeProposal, Lifetimes, LocalAuth, Mode,
    PoolConfig, Ppk, PpkConfig, PpkExchange, RemoteAuth, RetransmitConfig, PPK_ID_FIXED, PPK_ID_OPAQUE,
};
pub use auth_job::{AuthDone, AuthJob};
pub use eap::{AaaAnswer, AaaOutcome, AaaRequest};
pub use endpoint::{Endpoint, IkeSaInfo, InitCounters, SaTally};
pub use error::ProtoError;
pub use ike_sa::{EspPath, Mobike, MobikeOutcome, MobikeRefusal};
pub use event::{ChildKeys, ChildSaHandle, ChildSaInstall, Command, CommandError, DownReason, Event, IkeSaHandle, Transmit};
pub use proposal::{EspSuite, IkeSuite};
pub use time::{Time, UnixTime};
pub use ts::TrafficSelector;
