//! Protocol tests over the two-endpoint harness ([`util::Pair`]).
mod util;

mod handshake;
mod loss;
mod setup;
mod info;
mod rekey;
mod determinism;
mod fuzz;
mod tshark;
mod certs;
mod auth_jobs;
mod fragments;
mod consistency;
mod ppk;
mod ppk_int;
mod iiv;
mod cfg_ext;
mod labels;
mod diet_esp;
mod pq;
mod dos;
mod clocks;
mod scale;
mod gikev2;
mod resume;
mod mobike;
