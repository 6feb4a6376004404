//! A G-IKEv2 group member fed GSA_REKEY datagrams: arbitrary ones, and the
//! GCKS's own rekeys mutated, truncated and replayed, with time passing
//! (RFC 9838 §2.4.1.4 checks, GSA/KD content, key unwrap, TEK rollover).
//! Input format and checks: `ike_proto::fuzzing::gikev2`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ike_proto::fuzzing::gikev2::run(data);
});
