//! A real strongSwan 6.1.0 exchange with RFC 9242 IKE_INTERMEDIATE, an RFC 9370
//! ML-KEM-768 additional key exchange (ADDKE1) and an RFC 7383 fragmented
//! request (see the provenance header of the testdata file): every datagram
//! parses and re-emits byte for byte, every cut is rejected, both SKF
//! fragments verify and decrypt (AES-256-GCM, AAD as `SkLayout` gives it,
//! including Fragment Number and Total Fragments) and reassemble to the KE
//! payload with the 1184-octet ML-KEM-768 encapsulation key, and IKE_AUTH
//! decrypts with the second-generation keys to the logged payloads.
mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use aes_gcm::Aes256Gcm;
use common::{captured_packets, load_vector, pcap_ike_udp_payloads, unhex, Packet};
use ike_wire::{
    int_auth_octets, parse_inner, strip_padding, write_chain, Chain, ExchangeType, Header, KeId,
    Message, NotifyType, Payload, PayloadType, SkLayout, TransformType, HEADER_LEN,
};

const VECTOR: &str =
    include_str!("../testdata/strongswan_6.1.0_ikev2_intermediate_mlkem768_fragments.txt");
const PCAP: &[u8] =
    include_bytes!("../testdata/strongswan_6.1.0_ikev2_intermediate_mlkem768_fragments.pcap");
/// RFC 5282: 8-octet IV, 16-octet ICV for ENCR_AES_GCM_16.
const GCM_IV_LEN: usize = 8;
const GCM_ICV_LEN: usize = 16;

fn packets() -> Vec<Packet> {
    captured_packets(VECTOR)
}

fn key(name: &str) -> Vec<u8> {
    unhex(&load_vector(VECTOR)[name])
}

/// Verifies and decrypts the SK or SKF payload of `wire` with the sender's
/// keys of the given generation ("" or "_gen2"); returns the inner content
/// without Padding / Pad Length.
fn open(wire: &[u8], generation: &str) -> Vec<u8> {
    let header = Header::parse_datagram(wire).unwrap();
    let name = if header.flags.initiator() {
        "sk_ei"
    } else {
        "sk_er"
    };
    let keymat = key(&format!("{name}{generation}"));
    // RFC 5282 §7.1: SK_e = 32-octet AES-256 key | 4-octet salt.
    let (aes_key, salt) = keymat.split_at(32);
    let l = SkLayout::locate(wire, GCM_IV_LEN, GCM_ICV_LEN)
        .unwrap()
        .unwrap();
    let nonce = [salt, &wire[l.iv.clone()]].concat();
    let plain = Aes256Gcm::new_from_slice(aes_key)
        .unwrap()
        .decrypt(
            nonce.as_slice().into(),
            AeadPayload {
                msg: &wire[l.ciphertext.start..l.icv.end],
                aad: &wire[l.aad.clone()],
            },
        )
        .expect("AES-GCM tag verifies over the AAD SkLayout reports");
    strip_padding(&plain).unwrap().to_vec()
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
fn intermediate_testdata_hex_is_exactly_the_committed_capture() {
    let from_text: Vec<Vec<u8>> = packets().into_iter().map(|p| p.udp_payload).collect();
    assert_eq!(pcap_ike_udp_payloads(PCAP), from_text);
}

#[test]
fn intermediate_capture_has_the_logged_exchanges_and_fragments() {
    let seen: Vec<(ExchangeType, u32, bool, PayloadType)> = packets()
        .iter()
        .map(|p| {
            let h = Header::parse_datagram(p.ike()).unwrap();
            (
                h.exchange_type,
                h.message_id,
                h.flags.response(),
                h.next_payload,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (ExchangeType::IKE_SA_INIT, 0, false, PayloadType::SA),
            (ExchangeType::IKE_SA_INIT, 0, true, PayloadType::SA),
            (ExchangeType::IKE_INTERMEDIATE, 1, false, PayloadType::SKF),
            (ExchangeType::IKE_INTERMEDIATE, 1, false, PayloadType::SKF),
            (ExchangeType::IKE_INTERMEDIATE, 1, true, PayloadType::SK),
            (ExchangeType::IKE_AUTH, 2, false, PayloadType::SK),
            (ExchangeType::IKE_AUTH, 2, true, PayloadType::SK),
            // Teardown: Delete of the IKE SA, and the responder's liveness
            // check answered after it.
            (ExchangeType::INFORMATIONAL, 3, false, PayloadType::SK),
            (ExchangeType::INFORMATIONAL, 3, true, PayloadType::SK),
            (ExchangeType::INFORMATIONAL, 0, false, PayloadType::SK),
            (ExchangeType::INFORMATIONAL, 0, true, PayloadType::SK),
        ]
    );
}

#[test]
fn intermediate_datagrams_parse_re_emit_and_reject_every_cut() {
    for (i, p) in packets().iter().enumerate() {
        let msg = if p.dport == 4500 {
            Message::parse_udp4500(&p.udp_payload).unwrap()
        } else {
            Message::parse(&p.udp_payload).unwrap()
        };
        let again = if p.dport == 4500 {
            msg.emit_udp4500()
        } else {
            msg.emit()
        };
        assert_eq!(again.unwrap(), p.udp_payload, "packet {}", i + 1);
        let wire = p.ike();
        for n in 0..wire.len() {
            assert!(Message::parse(&wire[..n]).is_err());
            if n >= HEADER_LEN {
                let mut cut = wire[..n].to_vec();
                cut[24..28].copy_from_slice(&(n as u32).to_be_bytes());
                assert!(Message::parse(&cut).is_err(), "packet {} cut at {n}", i + 1);
            }
        }
    }
}

#[test]
fn intermediate_ike_sa_init_proposes_ml_kem_768_as_addke1() {
    let packets = packets();
    let request = Message::parse(packets[0].ike()).unwrap();
    let Payload::Sa(sa) = &request.payloads[0] else {
        panic!("SA first")
    };
    let addke1: Vec<_> = sa.proposals[0]
        .transforms
        .iter()
        .filter(|t| t.transform_type == TransformType::ADDKE1)
        .collect();
    assert_eq!(addke1.len(), 1);
    assert_eq!(addke1[0].ke_id(), Some(KeId::ML_KEM_768));
    assert!(request
        .notify(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED)
        .is_some());
    let response = Message::parse(packets[1].ike()).unwrap();
    assert!(response
        .notify(NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED)
        .is_some());
    let Payload::Ke(ke) = &response.payloads[1] else {
        panic!("KE second")
    };
    assert_eq!(ke.ke_method, KeId::CURVE25519);
}

#[test]
fn intermediate_fragments_decrypt_and_reassemble_to_the_ml_kem_encapsulation_key() {
    let packets = packets();
    let frag1 = Message::parse(packets[2].ike()).unwrap();
    let frag2 = Message::parse(packets[3].ike()).unwrap();
    let (s1, s2) = (frag1.skf().unwrap(), frag2.skf().unwrap());
    assert_eq!((s1.fragment_number, s1.total_fragments), (1, 2));
    assert_eq!((s2.fragment_number, s2.total_fragments), (2, 2));
    // RFC 7383 §2.5: fragment 1 names the first inner payload, the others 0.
    assert_eq!(s1.first_inner, PayloadType::KE);
    assert_eq!(s2.first_inner, PayloadType::NONE);
    let l = SkLayout::locate(packets[2].ike(), GCM_IV_LEN, GCM_ICV_LEN)
        .unwrap()
        .unwrap();
    assert_eq!(l.payload_type, PayloadType::SKF);
    assert_eq!(
        l.aad,
        0..HEADER_LEN + 8,
        "AAD ends after Fragment Number and Total Fragments"
    );

    let mut inner = open(packets[2].ike(), "");
    inner.extend(open(packets[3].ike(), ""));
    let payloads = parse_inner(s1.first_inner, &inner).unwrap();
    let [Payload::Ke(ke)] = &payloads[..] else {
        panic!("one KE payload, got {:?}", types(&payloads))
    };
    assert_eq!(ke.ke_method, KeId::ML_KEM_768);
    assert_eq!(
        ke.data.len(),
        1184,
        "draft-ietf-ipsecme-ikev2-mlkem: ML-KEM-768 encapsulation key"
    );
    let mut w = ike_wire::codec::Writer::new();
    write_chain(&payloads, Chain::Inner, &mut w).unwrap();
    assert_eq!(w.as_slice(), &inner[..]);
}

#[test]
fn intermediate_response_decrypts_to_the_ml_kem_ciphertext() {
    let packets = packets();
    let wire = packets[4].ike();
    let sk = Message::parse(wire).unwrap().sk().unwrap().clone();
    let inner = open(wire, "");
    let payloads = parse_inner(sk.first_inner, &inner).unwrap();
    let [Payload::Ke(ke)] = &payloads[..] else {
        panic!("one KE payload")
    };
    assert_eq!(ke.ke_method, KeId::ML_KEM_768);
    assert_eq!(ke.data.len(), 1088, "ML-KEM-768 ciphertext");
}

#[test]
fn intermediate_ike_auth_decrypts_with_second_generation_keys() {
    let packets = packets();
    let want = [
        vec![
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
            "N(IKEV2_MESSAGE_ID_SYNC_SUPPORTED)",
        ],
        vec![
            "IDR",
            "AUTH",
            "SA",
            "TSI",
            "TSR",
            "N(MOBIKE_SUPPORTED)",
            "N(ADDITIONAL_IP6_ADDRESS)",
        ],
    ];
    for (p, want) in packets[5..7].iter().zip(want) {
        let wire = p.ike();
        let first = Message::parse(wire).unwrap().sk().unwrap().first_inner;
        let inner = open(wire, "_gen2");
        let payloads = parse_inner(first, &inner).unwrap();
        assert_eq!(types(&payloads), want);
        let mut w = ike_wire::codec::Writer::new();
        write_chain(&payloads, Chain::Inner, &mut w).unwrap();
        assert_eq!(w.as_slice(), &inner[..]);
    }
}

type HmacSha384 = hmac::Hmac<sha2::Sha384>;

/// PRF_HMAC_SHA2_384, the negotiated PRF.
fn prf(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = <HmacSha384 as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The PSK the capture was made with (see the .txt file's header).
const PSK: &[u8] = b"interop-test-psk-0123456789";

fn first_payload<'a>(payloads: &'a [Payload<'a>], t: PayloadType) -> &'a Payload<'a> {
    payloads.iter().find(|p| p.payload_type() == t).unwrap()
}

/// RestOfInitIDPayload / RestOfRespIDPayload (RFC 7296 §2.15): the ID payload
/// without its generic header.
fn rest_of_id(p: &Payload<'_>) -> Vec<u8> {
    common::emit_one(p)[4..].to_vec()
}

#[test]
fn intermediate_int_auth_octets_reproduce_both_strongswan_auth_payloads() {
    let packets = packets();
    let frag1 = packets[2].ike();
    let mut p_request = open(frag1, "");
    p_request.extend(open(packets[3].ike(), ""));
    let response = packets[4].ike();
    let p_response = open(response, "");

    // RFC 9242 §3.1, one IKE_INTERMEDIATE exchange, protected by (and so
    // authenticated with) the first generation of keys.
    let int_auth_i1 = prf(
        &key("sk_pi"),
        &int_auth_octets(frag1, GCM_IV_LEN, GCM_ICV_LEN, &p_request).unwrap(),
    );
    let int_auth_r1 = prf(
        &key("sk_pr"),
        &int_auth_octets(response, GCM_IV_LEN, GCM_ICV_LEN, &p_response).unwrap(),
    );
    let ike_auth_mid = Header::parse_datagram(packets[5].ike()).unwrap().message_id;
    let int_auth = [
        int_auth_i1,
        int_auth_r1,
        ike_auth_mid.to_be_bytes().to_vec(),
    ]
    .concat();

    let nonce = |wire: &[u8]| match first_payload(
        &Message::parse(wire).unwrap().payloads,
        PayloadType::NONCE,
    ) {
        Payload::Nonce(n) => n.data.to_vec(),
        _ => unreachable!(),
    };
    let (real_message_1, real_message_2) = (packets[0].ike(), packets[1].ike());
    let (ni, nr) = (nonce(real_message_1), nonce(real_message_2));
    let key_pad = prf(PSK, b"Key Pad for IKEv2");

    for (wire, id_type, sk_p, real_message, other_nonce) in [
        (
            packets[5].ike(),
            PayloadType::IDI,
            "sk_pi_gen2",
            real_message_1,
            &nr,
        ),
        (
            packets[6].ike(),
            PayloadType::IDR,
            "sk_pr_gen2",
            real_message_2,
            &ni,
        ),
    ] {
        let first = Message::parse(wire).unwrap().sk().unwrap().first_inner;
        let inner = open(wire, "_gen2");
        let payloads = parse_inner(first, &inner).unwrap();
        let maced_id = prf(&key(sk_p), &rest_of_id(first_payload(&payloads, id_type)));
        let signed = [real_message, other_nonce, &maced_id, &int_auth].concat();
        let Payload::Auth(auth) = first_payload(&payloads, PayloadType::AUTH) else {
            unreachable!()
        };
        assert_eq!(
            auth.data.as_ref(),
            &prf(&key_pad, &signed)[..],
            "{id_type:?} side AUTH"
        );
    }
}

#[test]
fn int_auth_octets_adjust_the_lengths_and_refuse_later_fragments() {
    let packets = packets();
    let response = packets[4].ike();
    let p = open(response, "");
    let octets = int_auth_octets(response, GCM_IV_LEN, GCM_ICV_LEN, &p).unwrap();
    assert_eq!(octets.len(), HEADER_LEN + 4 + p.len());
    assert_eq!(&octets[..24], &response[..24]);
    assert_eq!(
        u32::from_be_bytes(octets[24..28].try_into().unwrap()) as usize,
        octets.len()
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([octets[30], octets[31]])),
        p.len() + 4
    );
    assert_eq!(&octets[32..], &p[..]);
    // The SKF header of fragment 1 becomes an SK header named by the IKE header.
    let frag1 = int_auth_octets(packets[2].ike(), GCM_IV_LEN, GCM_ICV_LEN, &[]).unwrap();
    assert_eq!(frag1[16], PayloadType::SK.0);
    assert_eq!(frag1[HEADER_LEN], PayloadType::KE.0);
    assert_eq!(frag1.len(), HEADER_LEN + 4);
    assert!(int_auth_octets(packets[3].ike(), GCM_IV_LEN, GCM_ICV_LEN, &[]).is_err());
    assert!(
        int_auth_octets(packets[0].ike(), GCM_IV_LEN, GCM_ICV_LEN, &[]).is_err(),
        "no SK in IKE_SA_INIT"
    );
}
