//! A real exchange between two strongSwan 5.9.8 instances (see the provenance
//! header of the testdata file): every captured IKE datagram parses and
//! re-emits byte for byte, every truncated prefix is rejected, IKE_SA_INIT
//! decodes to what strongSwan logged, and every SK payload verifies
//! (HMAC-SHA2-256-128 over the range `SkLayout` gives), decrypts
//! (AES-CBC-128) to an inner chain that parses to the payloads strongSwan
//! logged and re-emits byte for byte.
mod common;

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use common::{captured_packets, load_vector, pcap_ike_udp_payloads, unhex, Packet};
use hmac::{Hmac, Mac};
use ike_wire::{
    parse_inner, strip_padding, write_chain, Chain, EncrId, ExchangeType, Header, IdType, IntegId,
    KeId, Message, NotifyType, Payload, PayloadType, PrfId, SkLayout, TrafficSelector, HEADER_LEN,
};

const VECTOR: &str =
    include_str!("../testdata/strongswan_5.9.8_ikev2_psk_aes128_sha256_x25519.txt");
const AES_CBC_IV_LEN: usize = 16;
const HMAC_SHA2_256_128_ICV_LEN: usize = 16;

fn packets() -> Vec<Packet> {
    captured_packets(VECTOR)
}

fn ike(p: &Packet) -> &[u8] {
    p.ike()
}

fn key(name: &str) -> Vec<u8> {
    unhex(&load_vector(VECTOR)[name])
}

fn types(payloads: &[Payload<'_>]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| match p {
            Payload::Notify(n) => format!("N({:?})", n.notify_type),
            other => format!("{:?}", other.payload_type()),
        })
        .collect()
}

#[test]
fn strongswan_capture_has_the_logged_exchanges() {
    let exchanges: Vec<(ExchangeType, u32, bool)> = packets()
        .iter()
        .map(|p| {
            let h = Header::parse_datagram(ike(p)).unwrap();
            (h.exchange_type, h.message_id, h.flags.response())
        })
        .collect();
    assert_eq!(
        exchanges,
        vec![
            (ExchangeType::IKE_SA_INIT, 0, false),
            (ExchangeType::IKE_SA_INIT, 0, true),
            (ExchangeType::IKE_AUTH, 1, false),
            (ExchangeType::IKE_AUTH, 1, true),
            (ExchangeType::INFORMATIONAL, 2, false),
            (ExchangeType::INFORMATIONAL, 2, true),
            (ExchangeType::INFORMATIONAL, 0, false),
            (ExchangeType::INFORMATIONAL, 0, true),
        ]
    );
}

#[test]
fn strongswan_datagrams_parse_and_re_emit_byte_identically() {
    for (i, p) in packets().iter().enumerate() {
        if p.dport == 4500 {
            let msg = Message::parse_udp4500(&p.udp_payload).unwrap();
            assert_eq!(
                msg.emit_udp4500().unwrap(),
                p.udp_payload,
                "packet {}",
                i + 1
            );
        } else {
            let msg = Message::parse(&p.udp_payload).unwrap();
            assert_eq!(msg.emit().unwrap(), p.udp_payload, "packet {}", i + 1);
        }
    }
}

#[test]
fn strongswan_datagrams_reject_every_truncated_prefix() {
    for p in packets() {
        let wire = ike(&p).to_vec();
        for n in 0..wire.len() {
            assert!(Message::parse(&wire[..n]).is_err());
            if n >= HEADER_LEN {
                let mut cut = wire[..n].to_vec();
                cut[24..28].copy_from_slice(&(n as u32).to_be_bytes());
                assert!(
                    Message::parse(&cut).is_err(),
                    "cut at {n} of {}",
                    wire.len()
                );
            }
        }
    }
}

#[test]
fn strongswan_ike_sa_init_decodes_to_the_logged_payloads_and_proposal() {
    let packets = packets();
    let request = Message::parse(ike(&packets[0])).unwrap();
    assert_eq!(
        types(&request.payloads),
        [
            "SA",
            "KE",
            "NONCE",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(IKEV2_FRAGMENTATION_SUPPORTED)",
            "N(SIGNATURE_HASH_ALGORITHMS)",
            "N(REDIRECT_SUPPORTED)"
        ]
    );
    assert!(request.header.flags.initiator());
    assert_eq!(request.header.spi_r, 0);
    let response = Message::parse(ike(&packets[1])).unwrap();
    assert_eq!(
        types(&response.payloads)[..],
        [
            "SA",
            "KE",
            "NONCE",
            "N(NAT_DETECTION_SOURCE_IP)",
            "N(NAT_DETECTION_DESTINATION_IP)",
            "N(IKEV2_FRAGMENTATION_SUPPORTED)",
            "N(SIGNATURE_HASH_ALGORITHMS)",
            "N(CHILDLESS_IKEV2_SUPPORTED)",
            "N(NotifyType(16404))"
        ]
    );
    // N(MULT_AUTH) is strongSwan's name for RFC 4739's MULTIPLE_AUTH_SUPPORTED
    // (16404), a type this crate has no name for: it must survive as a number.
    let Payload::Sa(sa) = &response.payloads[0] else {
        panic!("SA first")
    };
    let p = &sa.proposals[0];
    assert_eq!(p.protocol_id, ike_wire::ProtocolId::IKE);
    let mut seen: Vec<String> = p
        .transforms
        .iter()
        .map(|t| {
            if let Some(id) = t.encr_id() {
                format!("{id:?}/{}", t.key_length().unwrap())
            } else if let Some(id) = t.integ_id() {
                format!("{id:?}")
            } else if let Some(id) = t.prf_id() {
                format!("{id:?}")
            } else {
                format!("{:?}", t.ke_id().unwrap())
            }
        })
        .collect();
    seen.sort();
    let mut want = vec![
        format!("{:?}/128", EncrId::ENCR_AES_CBC),
        format!("{:?}", IntegId::AUTH_HMAC_SHA2_256_128),
        format!("{:?}", PrfId::PRF_HMAC_SHA2_256),
        format!("{:?}", KeId::CURVE25519),
    ];
    want.sort();
    assert_eq!(seen, want, "the selected proposal strongSwan logged");
    let Payload::Ke(ke) = &response.payloads[1] else {
        panic!("KE second")
    };
    assert_eq!(ke.ke_method, KeId::CURVE25519);
    assert_eq!(ke.data.len(), 32, "RFC 8031: 32-octet X25519 public value");
}

/// Verifies the ICV and decrypts the SK payload of one captured message with
/// the keys of its sender (I flag set: the original initiator's SK_ei/SK_ai).
fn open(wire: &[u8]) -> Vec<u8> {
    let header = Header::parse_datagram(wire).unwrap();
    let (ke, ka) = if header.flags.initiator() {
        ("sk_ei", "sk_ai")
    } else {
        ("sk_er", "sk_ar")
    };
    let l = SkLayout::locate(wire, AES_CBC_IV_LEN, HMAC_SHA2_256_128_ICV_LEN)
        .unwrap()
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key(ka)).unwrap();
    mac.update(&wire[l.integrity_covered()]);
    assert_eq!(
        &mac.finalize().into_bytes()[..16],
        &wire[l.icv.clone()],
        "ICV over header..Pad Length"
    );
    let mut buf = wire[l.ciphertext.clone()].to_vec();
    let plain = cbc::Decryptor::<aes::Aes128>::new_from_slices(&key(ke), &wire[l.iv.clone()])
        .unwrap()
        .decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut buf)
        .unwrap()
        .to_vec();
    plain
}

#[test]
fn strongswan_sk_payloads_verify_decrypt_and_their_inner_chains_re_emit() {
    let packets = packets();
    for (i, p) in packets.iter().enumerate().skip(2) {
        let wire = ike(p);
        let msg = Message::parse(wire).unwrap();
        let sk = msg.sk().expect("protected after IKE_SA_INIT");
        let plain = open(wire);
        let inner = strip_padding(&plain).unwrap();
        let payloads = parse_inner(sk.first_inner, inner).unwrap();
        let mut w = ike_wire::codec::Writer::new();
        let first = write_chain(&payloads, Chain::Inner, &mut w).unwrap();
        assert_eq!(first, sk.first_inner);
        assert_eq!(
            w.as_slice(),
            inner,
            "inner chain of packet {} re-emits byte for byte",
            i + 1
        );
    }
}

#[test]
fn strongswan_ike_auth_decrypts_to_the_logged_payloads() {
    let packets = packets();
    let request = ike(&packets[2]);
    let sk_first = Message::parse(request).unwrap().sk().unwrap().first_inner;
    let plain = open(request);
    let payloads = parse_inner(sk_first, strip_padding(&plain).unwrap()).unwrap();
    assert_eq!(
        types(&payloads),
        [
            "IDI",
            "N(INITIAL_CONTACT)",
            "IDR",
            "AUTH",
            "SA",
            "TSI",
            "TSR",
            "N(MOBIKE_SUPPORTED)",
            "N(ADDITIONAL_IP6_ADDRESS)",
            "N(NotifyType(16404))",
            "N(EAP_ONLY_AUTHENTICATION)",
            "N(IKEV2_MESSAGE_ID_SYNC_SUPPORTED)"
        ],
        "strongSwan: IDi N(INIT_CONTACT) IDr AUTH SA TSi TSr N(MOBIKE_SUP) N(ADD_6_ADDR) N(MULT_AUTH) N(EAP_ONLY) N(MSG_ID_SYN_SUP)"
    );
    // MULT_AUTH, EAP_ONLY and MSG_ID_SYN_SUP are strongSwan's names for status
    // types this crate does not name (RFC 4739, RFC 5998, RFC 6311): they must
    // survive as plain numbers.
    let Payload::IdI(id) = &payloads[0] else {
        panic!("IDi")
    };
    assert_eq!(id.id_type, IdType::ID_FQDN);
    assert_eq!(id.data.as_ref(), b"a.example");
    let Payload::TsI(ts) = &payloads[5] else {
        panic!("TSi")
    };
    assert!(ts.selectors.contains(&TrafficSelector::Ipv4 {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: "198.51.100.1".parse().unwrap(),
        end_addr: "198.51.100.1".parse().unwrap(),
    }));
    assert!(ts.selectors.contains(&TrafficSelector::Ipv6 {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: "fd00:a::1".parse().unwrap(),
        end_addr: "fd00:a::1".parse().unwrap(),
    }));
    let Payload::Auth(auth) = &payloads[3] else {
        panic!("AUTH")
    };
    assert_eq!(
        auth.method,
        ike_wire::AuthMethod::SHARED_KEY_MESSAGE_INTEGRITY_CODE
    );
    assert_eq!(auth.data.len(), 32, "prf = HMAC-SHA2-256");
    assert!(payloads
        .iter()
        .any(|p| matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::INITIAL_CONTACT)));
    assert_eq!(payloads[0].payload_type(), PayloadType::IDI);
}

#[test]
fn strongswan_testdata_hex_is_exactly_the_committed_capture() {
    let pcap = include_bytes!("../testdata/strongswan_5.9.8_ikev2_psk_aes128_sha256_x25519.pcap");
    let from_text: Vec<Vec<u8>> = packets().into_iter().map(|p| p.udp_payload).collect();
    assert_eq!(pcap_ike_udp_payloads(pcap), from_text);
}
