//! RFC 7634 Appendix B, the published ChaCha20-Poly1305 IKEv2 example, checked
//! end to end: the transcription against the RFC's own snoop capture, the
//! header and SK split, the AAD range, decryption with the `chacha20poly1305`
//! crate, the inner Notify, and re-encryption + re-emission byte for byte.
mod common;

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::ChaCha20Poly1305;
use common::{load_vector, unhex};
use ike_wire::{
    emit_inner, pad, parse_inner, strip_padding, ExchangeType, Flags, Header, Message, Notify,
    NotifyType, Payload, PayloadType, Sk, SkLayout,
};

const VECTOR: &str = include_str!("../testdata/rfc7634_appendix_b.txt");
const CHACHA20_POLY1305_IV_LEN: usize = 8;
const CHACHA20_POLY1305_ICV_LEN: usize = 16;

fn v(key: &str) -> Vec<u8> {
    unhex(&load_vector(VECTOR)[key])
}

/// Minimal RFC 4648 base64 decoder, so the test needs no extra crate.
fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let chars: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in chars {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

#[test]
fn rfc7634_appendix_b_transcription_matches_the_rfc_snoop_capture() {
    let snoop = base64(&load_vector(VECTOR)["snoop_base64"]);
    // RFC 1761: "snoop\0\0\0", version 2, datalink 4 (Ethernet).
    assert_eq!(&snoop[..8], b"snoop\0\0\0");
    assert_eq!(be32(&snoop[8..12]), 2);
    assert_eq!(be32(&snoop[12..16]), 4);
    let mut records = Vec::new();
    let mut at = 16;
    while at < snoop.len() {
        let included = be32(&snoop[at + 4..at + 8]);
        let record_len = be32(&snoop[at + 8..at + 12]);
        records.push(&snoop[at + 24..at + 24 + included]);
        at += record_len;
    }
    assert_eq!(records.len(), 3, "ICMP, ESP and IKE packets");
    let frame = records[2];
    let ip = &frame[14..];
    assert_eq!(ip[9], 17, "UDP");
    let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
    assert_eq!(&udp[0..4], &[0x01, 0xf4, 0x01, 0xf4], "UDP 500 -> 500");
    assert_eq!(&udp[8..], &v("ike_message")[..]);
}

#[test]
fn rfc7634_appendix_b_header_and_sk_split_parse() {
    let wire = v("ike_message");
    let header = Header::parse_datagram(&wire).unwrap();
    assert_eq!(header.spi_i.to_be_bytes().to_vec(), v("spi_i"));
    assert_eq!(header.spi_r.to_be_bytes().to_vec(), v("spi_r"));
    assert_eq!(header.exchange_type, ExchangeType::INFORMATIONAL);
    assert_eq!(header.next_payload, PayloadType::SK);
    assert_eq!(header.flags, Flags(0));
    assert_eq!(header.message_id, 9);
    assert_eq!(header.length, 69);

    let msg = Message::parse(&wire).unwrap();
    assert_eq!(msg.payloads.len(), 1);
    let sk = msg.sk().unwrap();
    assert_eq!(sk.first_inner, PayloadType::NOTIFY);
    let parts = sk
        .split(CHACHA20_POLY1305_IV_LEN, CHACHA20_POLY1305_ICV_LEN)
        .unwrap();
    assert_eq!(parts.iv, &v("iv")[..]);
    assert_eq!(parts.ciphertext, &v("ciphertext")[..]);
    assert_eq!(parts.icv, &v("tag")[..]);

    let layout = SkLayout::locate(&wire, CHACHA20_POLY1305_IV_LEN, CHACHA20_POLY1305_ICV_LEN)
        .unwrap()
        .unwrap();
    assert_eq!(layout.payload_type, PayloadType::SK);
    assert_eq!(
        &wire[layout.aad.clone()],
        &v("aad")[..],
        "AAD = IKE header | SK header (RFC 5282 §5.1)"
    );
    assert_eq!(&wire[layout.aad.end..], &v("encrypted_payload")[4..]);
    assert_eq!(&wire[layout.iv], &v("iv")[..]);
    assert_eq!(&wire[layout.ciphertext], &v("ciphertext")[..]);
    assert_eq!(&wire[layout.icv], &v("tag")[..]);
    assert_eq!(msg.emit().unwrap(), wire);
}

fn cipher() -> (ChaCha20Poly1305, Vec<u8>) {
    let aead = ChaCha20Poly1305::new_from_slice(&v("key")).unwrap();
    // RFC 7634 §2: nonce = salt (4 octets) | IV (8 octets).
    let nonce = [v("salt"), v("iv")].concat();
    (aead, nonce)
}

#[test]
fn rfc7634_appendix_b_decrypts_to_one_set_window_size_notify() {
    let wire = v("ike_message");
    let layout = SkLayout::locate(&wire, CHACHA20_POLY1305_IV_LEN, CHACHA20_POLY1305_ICV_LEN)
        .unwrap()
        .unwrap();
    let (aead, nonce) = cipher();
    let ct_and_tag = &wire[layout.ciphertext.start..layout.icv.end];
    let plaintext = aead
        .decrypt(
            nonce.as_slice().into(),
            AeadPayload {
                msg: ct_and_tag,
                aad: &wire[layout.aad.clone()],
            },
        )
        .expect("RFC 7634 Appendix B authenticates");
    assert_eq!(plaintext, v("plaintext"));
    let inner = strip_padding(&plaintext).unwrap();
    assert_eq!(inner, &v("notify_payload")[..]);
    let payloads = parse_inner(PayloadType::NOTIFY, inner).unwrap();
    assert_eq!(
        payloads,
        vec![Payload::Notify(Notify::new(
            NotifyType::SET_WINDOW_SIZE,
            10u32.to_be_bytes().to_vec()
        ))]
    );
}

#[test]
fn rfc7634_appendix_b_is_rebuilt_byte_for_byte_from_its_notify() {
    let inner = vec![Payload::Notify(Notify::new(
        NotifyType::SET_WINDOW_SIZE,
        10u32.to_be_bytes().to_vec(),
    ))];
    let (first_inner, chain) = emit_inner(&inner).unwrap();
    assert_eq!(chain, v("notify_payload"));
    // RFC 7634 §3: no padding, a zero Pad Length.
    let plaintext = pad(&chain, 1);
    assert_eq!(plaintext, v("plaintext"));

    // Emit with a zeroed body of the final size, take the AAD, fill in.
    let header = Header::new(
        u64::from_be_bytes(v("spi_i").try_into().unwrap()),
        u64::from_be_bytes(v("spi_r").try_into().unwrap()),
        ExchangeType::INFORMATIONAL,
        Flags(0),
        9,
    );
    let body_len = CHACHA20_POLY1305_IV_LEN + plaintext.len() + CHACHA20_POLY1305_ICV_LEN;
    let sk = Sk {
        first_inner,
        flags: 0,
        body: vec![0; body_len].into(),
    };
    let mut wire = Message::new(header, vec![Payload::Sk(sk)]).emit().unwrap();
    let layout = SkLayout::locate(&wire, CHACHA20_POLY1305_IV_LEN, CHACHA20_POLY1305_ICV_LEN)
        .unwrap()
        .unwrap();
    assert_eq!(&wire[layout.aad.clone()], &v("aad")[..]);
    let (aead, nonce) = cipher();
    let sealed = aead
        .encrypt(
            nonce.as_slice().into(),
            AeadPayload {
                msg: &plaintext,
                aad: &wire[layout.aad.clone()],
            },
        )
        .unwrap();
    wire[layout.iv].copy_from_slice(&v("iv"));
    wire[layout.ciphertext.start..layout.icv.end].copy_from_slice(&sealed);
    assert_eq!(wire, v("ike_message"));
}
