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

/// A captured datagram from a `strongswan_*.txt` test data file.
pub struct Packet {
    pub dport: u16,
    pub udp_payload: Vec<u8>,
}

impl Packet {
    /// The IKE message itself (after the non-ESP marker on port 4500).
    pub fn ike(&self) -> &[u8] {
        if self.dport == 4500 {
            ike_wire::strip_non_esp_marker(&self.udp_payload).unwrap()
        } else {
            &self.udp_payload
        }
    }
}

/// The `packetN = sport dport hex` lines of a capture test data file.
pub fn captured_packets(text: &str) -> Vec<Packet> {
    let v = load_vector(text);
    (1..)
        .map_while(|i| v.get(&format!("packet{i}")))
        .map(|line| {
            let mut f = line.split_whitespace();
            let _sport = f.next().unwrap();
            let dport = f.next().unwrap().parse().unwrap();
            Packet {
                dport,
                udp_payload: unhex(f.next().unwrap()),
            }
        })
        .collect()
}

/// UDP payloads of the IKE datagrams in a little-endian Ethernet/IPv4 pcap:
/// port 500, and port 4500 with the non-ESP marker (ESP-in-UDP skipped).
pub fn pcap_ike_udp_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(
        u32::from_le_bytes(pcap[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut at = 24;
    let mut out = Vec::new();
    while at < pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..at + 16 + incl];
        at += 16 + incl;
        let ip = &frame[14..];
        assert_eq!(ip[9], 17, "only UDP was captured");
        let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        let payload = &udp[8..len];
        if dport == 4500 && !payload.starts_with(&[0, 0, 0, 0]) {
            continue;
        }
        out.push(payload.to_vec());
    }
    out
}
