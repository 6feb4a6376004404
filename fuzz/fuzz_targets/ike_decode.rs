//! IKEv2 message decode → encode → decode: no input panics the codec, and
//! whatever parses re-emits to bytes that parse to the same message (the
//! emitter normalises lengths and Next Payload fields, so the comparison is
//! on the second round trip). The decrypted-payload chain (`parse_inner`)
//! gets the same treatment from the tail of the input.
#![no_main]

use ike_wire::{emit_inner, parse_inner, Message, PayloadType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        if let Ok(bytes) = m.emit() {
            let again = Message::parse(&bytes).expect("what we emit must parse");
            let bytes2 = again.emit().expect("and emit again");
            assert_eq!(bytes, bytes2, "emit is not stable across a round trip");
        }
    }
    let _ = Message::parse_udp4500(data);
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(chain) = parse_inner(PayloadType(first), rest) {
            if let Ok((t, bytes)) = emit_inner(&chain) {
                let again = parse_inner(t, &bytes).expect("emitted chain must parse");
                let (_, bytes2) = emit_inner(&again).expect("and emit again");
                assert_eq!(bytes, bytes2);
            }
        }
    }
});
