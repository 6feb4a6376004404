//! esprit's benchmark tools: a pcap traffic generator (sizes, flows, IPv4 and
//! IPv6) for the testpmd-style runs on `net_pcap`, shared with the tests, and
//! an IKEv2 handshake load generator (`ike_load`), a spoofed IKE_SA_INIT
//! flood (`ike_flood`), and an in-process G-IKEv2 group of N members
//! (`gikev2_load`).
#![forbid(unsafe_code)]

pub mod gikev2_load;
pub mod ike_flood;
pub mod ike_load;
pub mod pcapgen;
