//! The IKEv2 endpoint fed arbitrary datagrams and commands, with ike-crypto's
//! INSECURE no-security provider so that mutated messages get past the SK
//! payload's ICV and reach the exchanges' semantic checks. Input format and
//! the checked properties (no panic; bounded IKE SAs, half-open SAs and
//! output per input; nothing left half-done after two hours of timers) are
//! in `ike_proto::fuzzing`, which also makes the seed corpus from a real
//! session (`ESPRIT_WRITE_FUZZ_SEEDS=1 cargo test -p ike-proto fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ike_proto::fuzzing::run(data);
});
