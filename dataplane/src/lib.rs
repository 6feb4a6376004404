//! esprit-dataplane as a library: configuration, metrics and the pieces of
//! the packet pipeline, so tests and the bench drive them without a process.
//! The binary (`main.rs`) only wires them together.
#![forbid(unsafe_code)]

pub mod config;
pub mod crypto;
pub mod l2;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod ports;
pub mod runtime;
pub mod statics;
