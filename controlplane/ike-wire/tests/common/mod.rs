//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ike_wire::codec::Writer;
use ike_wire::{parse_chain, write_chain, Chain, Error, Payload, PayloadType};

/// Hex with optional spaces/newlines, as vectors are printed in RFCs.
pub fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("valid hex in test data")
}

/// `key = value` lines of a testdata file; `#` lines are provenance comments.
pub fn load_vector(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// Emits one payload as a single-payload chain.
pub fn emit_one(p: &Payload<'_>) -> Vec<u8> {
    let mut w = Writer::new();
    write_chain(std::slice::from_ref(p), Chain::Outer, &mut w).expect("emit");
    w.into_vec()
}

/// The rustls handshake_test discipline for one payload: `bytes` (a generic
/// header + body, Next Payload 0) parses to `expected`, `expected` emits
/// `bytes`, every strict prefix is rejected, and a trailing octet is rejected.
pub fn check_payload(bytes: &[u8], expected: Payload<'_>) {
    let pt = expected.payload_type();
    let parsed = parse_chain(pt, bytes, Chain::Outer).expect("known layout parses");
    assert_eq!(parsed, vec![expected.clone()]);
    assert_eq!(
        emit_one(&expected),
        bytes,
        "emit reproduces the known layout"
    );
    for n in 0..bytes.len() {
        assert!(
            parse_chain(pt, &bytes[..n], Chain::Outer).is_err(),
            "prefix of {n}/{} octets of {pt:?} accepted",
            bytes.len()
        );
    }
    let mut long = bytes.to_vec();
    long.push(0);
    // An SK/SKF must end the message, anything else leaves trailing bytes.
    let want = if matches!(pt, PayloadType::SK | PayloadType::SKF) {
        Error::EncryptedNotLast
    } else {
        Error::TrailingBytes
    };
    assert_eq!(parse_chain(pt, &long, Chain::Outer), Err(want));
}

/// The same payload with one extra octet inside its body (Payload Length
/// grown by one): structured bodies must refuse it.
pub fn with_extra_body_octet(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.push(0);
    let len = u16::from_be_bytes([v[2], v[3]]) + 1;
    v[2..4].copy_from_slice(&len.to_be_bytes());
    v
}
