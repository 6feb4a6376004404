//! Shared helpers for the integration tests: reading testdata/ files.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

pub fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(testdata(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Hex from a JSON string field (spaces allowed, as RFCs print them).
pub fn hx(v: &serde_json::Value) -> Vec<u8> {
    let s: String = v.as_str().expect("hex string").split_whitespace().collect();
    hex::decode(s).expect("valid hex")
}

pub fn h(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).expect("valid hex")
}
