//! esprit's benchmark tools: a pcap traffic generator (sizes, flows, IPv4 and
//! IPv6) for the testpmd-style runs on `net_pcap`, shared with the tests.
#![forbid(unsafe_code)]

pub mod pcapgen;
