#![recursion_limit = "256"]
//! esprit's control-plane daemon as a library: `esprit-ike` (the IKEv2
//! daemon that programs the dataplane's SA table) and `esprit-ctl` (its
//! control client) are thin `main`s over it, so tests drive the same code.
//!
//! * [`aaa`]: EAP through RADIUS (the endpoint's AAA requests on a
//!   non-blocking RADIUS client with failover).
//! * [`config`]: the `ike:` section of the YAML file, errors naming the
//!   field path.
//! * [`daemon`]: the event loop: UDP 500/4500, timers, control requests,
//!   events into the SA table.
//! * [`table`]: Child SAs into the shared-memory SA table (DESIGN.md §3),
//!   make-before-break rekeys, counters and lifetimes, restart
//!   reconciliation.
//! * [`control`]: the line-based JSON protocol of the Unix control socket.
//! * [`metrics`]: `esprit_ike_*` Prometheus series and `/metrics`.
//! * [`show`]: the human-readable views esprit-ctl prints.
//! * [`store`]: the state store that lets IKE SAs survive a restart.
#![forbid(unsafe_code)]

pub mod aaa;
pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
pub mod etcd;
pub mod logging;
pub mod metrics;
pub mod precompute;
pub mod show;
pub mod store;
pub mod table;
pub mod top;
