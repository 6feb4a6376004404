//! Whole messages: header checks, the payload chain, SK placement, UDP 4500,
//! truncation and trailing bytes, the error -> Notify map.
mod common;

use common::unhex;
use ike_wire::{
    emit_inner, pad, parse_inner, strip_non_esp_marker, strip_padding, Error, ExchangeType, Flags,
    Header, Id, IdType, Ke, KeId, Message, Nonce, Notify, NotifyType, Payload, PayloadType, Sa, Sk,
    SkLayout, Skf, Unknown, VendorId, HEADER_LEN,
};

fn ike_sa_init_request() -> Message<'static> {
    let sa = Payload::Sa(Sa {
        proposals: vec![ike_wire::Proposal {
            proposal_num: 1,
            protocol_id: ike_wire::ProtocolId::IKE,
            spi: vec![].into(),
            transforms: vec![
                ike_wire::Transform::encr(ike_wire::EncrId::ENCR_AES_GCM_16, Some(128)),
                ike_wire::Transform::prf(ike_wire::PrfId::PRF_HMAC_SHA2_256),
                ike_wire::Transform::ke(KeId::CURVE25519),
                ike_wire::Transform::addke(1, KeId::ML_KEM_768).unwrap(),
            ],
        }],
    });
    Message::new(
        Header::new(
            0x0102030405060708,
            0,
            ExchangeType::IKE_SA_INIT,
            Flags::new(true, false),
            0,
        ),
        vec![
            sa,
            Payload::Ke(Ke {
                ke_method: KeId::CURVE25519,
                data: vec![0x42; 32].into(),
            }),
            Payload::Nonce(Nonce {
                data: vec![0x17; 32].into(),
            }),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                vec![1; 20],
            )),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                vec![2; 20],
            )),
            Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                vec![],
            )),
            Payload::Notify(Notify::new(
                NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED,
                vec![],
            )),
        ],
    )
}

/// Sets the header Length field to the buffer's length.
fn fix_length(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len() as u32;
    b[24..28].copy_from_slice(&n.to_be_bytes());
    b
}

#[test]
fn round_trips_ike_sa_init_request_byte_identically() {
    let msg = ike_sa_init_request();
    let wire = msg.emit().unwrap();
    assert_eq!(
        wire.len(),
        u32::from_be_bytes(wire[24..28].try_into().unwrap()) as usize
    );
    assert_eq!(
        wire[16],
        PayloadType::SA.0,
        "header Next Payload is the first payload"
    );
    assert_eq!(wire[17], 0x20, "version 2.0");
    let parsed = Message::parse(&wire).unwrap();
    assert_eq!(parsed.payloads, msg.payloads);
    assert_eq!(parsed.header.length as usize, wire.len());
    assert_eq!(parsed.emit().unwrap(), wire);
    assert!(parsed
        .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
        .is_some());
    assert!(parsed.notify(NotifyType::COOKIE).is_none());
}

#[test]
fn rejects_every_truncated_prefix_of_a_message() {
    let wire = ike_sa_init_request().emit().unwrap();
    for n in 0..wire.len() {
        assert!(
            Message::parse(&wire[..n]).is_err(),
            "raw prefix of {n} octets accepted"
        );
        if n >= HEADER_LEN {
            // Same prefix with a consistent header Length: the payload chain
            // itself must notice the cut.
            let patched = fix_length(wire[..n].to_vec());
            let err = Message::parse(&patched).unwrap_err();
            assert!(
                matches!(err, Error::Truncated | Error::Malformed(_)),
                "prefix of {n} octets with fixed Length: {err:?}"
            );
        }
    }
}

#[test]
fn rejects_trailing_bytes_after_the_last_payload() {
    let mut wire = ike_sa_init_request().emit().unwrap();
    wire.push(0);
    assert_eq!(
        Message::parse(&wire),
        Err(Error::LengthMismatch {
            header: wire.len() as u32 - 1,
            datagram: wire.len()
        })
    );
    let wire = fix_length(wire);
    let err = Message::parse(&wire).unwrap_err();
    assert_eq!(err, Error::TrailingBytes);
    assert_eq!(err.notify_type(), Some(NotifyType::INVALID_SYNTAX));
}

#[test]
fn rejects_header_length_larger_than_the_datagram() {
    let wire = ike_sa_init_request().emit().unwrap();
    let short = &wire[..wire.len() - 1];
    assert!(matches!(
        Message::parse(short),
        Err(Error::LengthMismatch { .. })
    ));
}

#[test]
fn rejects_other_major_versions_with_invalid_major_version() {
    for (version, major) in [(0x30u8, 3u8), (0x10, 1), (0xf0, 15)] {
        let mut wire = ike_sa_init_request().emit().unwrap();
        wire[17] = version;
        let err = Message::parse(&wire).unwrap_err();
        assert_eq!(err, Error::UnsupportedMajorVersion(major));
        assert_eq!(err.notify_type(), Some(NotifyType::INVALID_MAJOR_VERSION));
    }
}

#[test]
fn keeps_minor_version_and_unknown_flag_bits_as_received() {
    let mut wire = ike_sa_init_request().emit().unwrap();
    wire[17] = 0x21;
    wire[19] = 0x08 | 0x10 | 0x01;
    let parsed = Message::parse(&wire).unwrap();
    assert_eq!(parsed.header.minor_version, 1);
    assert!(parsed.header.flags.initiator());
    assert!(parsed.header.flags.version());
    assert!(!parsed.header.flags.response());
    assert_eq!(parsed.emit().unwrap(), wire);
}

#[test]
fn rejects_zero_spi_i_and_nonzero_spi_r_in_ike_sa_init_request() {
    let mut msg = ike_sa_init_request();
    msg.header.spi_i = 0;
    assert_eq!(
        Message::parse(&msg.emit().unwrap()),
        Err(Error::InvalidIkeSpi)
    );
    let mut msg = ike_sa_init_request();
    msg.header.spi_r = 1;
    assert_eq!(
        Message::parse(&msg.emit().unwrap()),
        Err(Error::InvalidIkeSpi)
    );
    assert_eq!(Error::InvalidIkeSpi.notify_type(), None);
    // A response may carry SPIr 0 (COOKIE / INVALID_KE_PAYLOAD replies) or not.
    for spi_r in [0, 9] {
        let mut msg = ike_sa_init_request();
        msg.header.spi_r = spi_r;
        msg.header.flags = Flags::new(false, true);
        assert!(Message::parse(&msg.emit().unwrap()).is_ok());
    }
}

#[test]
fn rejects_ike_sa_init_with_nonzero_message_id() {
    let mut msg = ike_sa_init_request();
    msg.header.message_id = 1;
    assert_eq!(
        Message::parse(&msg.emit().unwrap()),
        Err(Error::InvalidMessageId)
    );
    // Other exchanges may use any Message ID.
    msg.header.exchange_type = ExchangeType::IKE_INTERMEDIATE;
    msg.header.spi_r = 7;
    assert!(Message::parse(&msg.emit().unwrap()).is_ok());
}

#[test]
fn rejects_message_with_unknown_critical_payload() {
    let mut msg = ike_sa_init_request();
    msg.payloads.insert(
        1,
        Payload::Unknown(Unknown {
            payload_type: PayloadType(99),
            critical: true,
            body: vec![1, 2].into(),
        }),
    );
    let err = Message::parse(&msg.emit().unwrap()).unwrap_err();
    assert_eq!(err, Error::UnsupportedCriticalPayload(PayloadType(99)));
    assert_eq!(
        err.notify().unwrap().notify_type,
        NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD
    );
}

#[test]
fn skips_unknown_non_critical_payload_and_round_trips_the_message() {
    let mut msg = ike_sa_init_request();
    let unknown = Payload::Unknown(Unknown {
        payload_type: PayloadType(99),
        critical: false,
        body: vec![1, 2].into(),
    });
    msg.payloads.insert(1, unknown.clone());
    let wire = msg.emit().unwrap();
    let parsed = Message::parse(&wire).unwrap();
    assert_eq!(parsed.payloads[1], unknown);
    assert_eq!(parsed.payloads[2].payload_type(), PayloadType::KE);
    assert_eq!(parsed.emit().unwrap(), wire);
}

fn ike_auth_request() -> Message<'static> {
    Message::new(
        Header::new(
            0x11,
            0x22,
            ExchangeType::IKE_AUTH,
            Flags::new(true, false),
            1,
        ),
        vec![Payload::Sk(Sk {
            first_inner: PayloadType::IDI,
            flags: 0,
            body: vec![0xee; 8 + 16 + 16].into(),
        })],
    )
}

#[test]
fn rejects_payload_after_sk() {
    // SK header + body, then a Vendor ID: built by hand since emit refuses it.
    let mut wire = ike_auth_request().emit().unwrap();
    wire.extend(unhex("00 00 00 05 aa"));
    let wire = fix_length(wire);
    let err = Message::parse(&wire).unwrap_err();
    assert_eq!(err, Error::EncryptedNotLast);
    assert_eq!(err.notify_type(), Some(NotifyType::INVALID_SYNTAX));
    let mut msg = ike_auth_request();
    msg.payloads.push(Payload::VendorId(VendorId {
        vid: vec![1].into(),
    }));
    assert_eq!(msg.emit(), Err(Error::EncryptedNotLast));
}

#[test]
fn sk_next_payload_names_the_first_inner_payload() {
    let wire = ike_auth_request().emit().unwrap();
    assert_eq!(wire[16], PayloadType::SK.0);
    assert_eq!(wire[HEADER_LEN], PayloadType::IDI.0);
    let parsed = Message::parse(&wire).unwrap();
    assert_eq!(parsed.sk().unwrap().first_inner, PayloadType::IDI);
}

#[test]
fn parses_decrypted_inner_chain_and_rejects_nested_sk() {
    let inner = vec![
        Payload::IdI(Id {
            id_type: IdType::ID_RFC822_ADDR,
            data: b"alice@example.test".to_vec().into(),
        }),
        Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
    ];
    let (first, chain) = emit_inner(&inner).unwrap();
    assert_eq!(first, PayloadType::IDI);
    let padded = pad(&chain, 16);
    assert_eq!(padded.len() % 16, 0);
    let stripped = strip_padding(&padded).unwrap();
    assert_eq!(parse_inner(first, stripped).unwrap(), inner);
    for n in 0..chain.len() {
        assert!(
            parse_inner(first, &chain[..n]).is_err(),
            "inner prefix of {n} octets accepted"
        );
    }
    let nested = vec![Payload::Sk(Sk {
        first_inner: PayloadType::NONE,
        flags: 0,
        body: vec![].into(),
    })];
    assert_eq!(emit_inner(&nested), Err(Error::NestedEncrypted));
    assert_eq!(
        parse_inner(PayloadType::SK, &unhex("00 00 00 04")),
        Err(Error::NestedEncrypted)
    );
    assert_eq!(
        parse_inner(PayloadType::SKF, &unhex("00 00 00 08 00 01 00 01")),
        Err(Error::NestedEncrypted)
    );
}

#[test]
fn strip_padding_refuses_a_pad_length_longer_than_the_content() {
    assert_eq!(strip_padding(&[]), Err(Error::Truncated));
    assert_eq!(
        strip_padding(&[1, 2, 3]),
        Err(Error::Malformed("Pad Length"))
    );
    assert_eq!(strip_padding(&[1, 2, 2]).unwrap(), &[] as &[u8]);
    assert_eq!(strip_padding(&[1, 9, 9, 2]).unwrap(), &[1]);
    assert_eq!(pad(&[1, 2, 3], 8), vec![1, 2, 3, 0, 0, 0, 0, 4]);
    assert_eq!(pad(&[1, 2, 3, 4, 5, 6, 7], 8), vec![1, 2, 3, 4, 5, 6, 7, 0]);
}

#[test]
fn locates_aad_iv_ciphertext_icv_of_sk_after_unencrypted_payloads() {
    let mut msg = ike_auth_request();
    msg.payloads.insert(
        0,
        Payload::VendorId(VendorId {
            vid: vec![0xab; 4].into(),
        }),
    );
    let wire = msg.emit().unwrap();
    let l = SkLayout::locate(&wire, 8, 16).unwrap().unwrap();
    // 28 header + 8 Vendor ID + 4 SK header.
    assert_eq!(l.aad, 0..40);
    assert_eq!(l.iv, 40..48);
    assert_eq!(l.ciphertext, 48..64);
    assert_eq!(l.icv, 64..80);
    assert_eq!(l.integrity_covered(), 0..64);
    assert_eq!(SkLayout::locate(&wire, 8, 40), Err(Error::Truncated));
    assert_eq!(
        SkLayout::locate(&ike_sa_init_request().emit().unwrap(), 8, 16),
        Ok(None)
    );
}

#[test]
fn locates_skf_with_fragment_numbers_inside_the_aad() {
    let msg = Message::new(
        Header::new(
            0x11,
            0x22,
            ExchangeType::IKE_AUTH,
            Flags::new(true, false),
            1,
        ),
        vec![Payload::Skf(Skf {
            first_inner: PayloadType::IDI,
            flags: 0,
            fragment_number: 1,
            total_fragments: 2,
            body: vec![0; 8 + 5 + 16].into(),
        })],
    );
    let wire = msg.emit().unwrap();
    let l = SkLayout::locate(&wire, 8, 16).unwrap().unwrap();
    assert_eq!(l.payload_type, PayloadType::SKF);
    assert_eq!(
        l.aad,
        0..36,
        "RFC 7383 §2.5: AAD includes Fragment Number and Total Fragments"
    );
    assert_eq!(l.ciphertext, 44..49);
    assert_eq!(
        Message::parse(&wire)
            .unwrap()
            .skf()
            .unwrap()
            .total_fragments,
        2
    );
}

#[test]
fn reads_ike_header_after_the_non_esp_marker_on_port_4500() {
    let msg = ike_auth_request();
    let udp = msg.emit_udp4500().unwrap();
    assert_eq!(&udp[..4], &[0, 0, 0, 0]);
    let header = Header::parse_udp4500(&udp).unwrap();
    assert_eq!(header.exchange_type, ExchangeType::IKE_AUTH);
    assert_eq!(header.message_id, 1);
    assert_eq!(
        Message::parse_udp4500(&udp).unwrap(),
        Message::parse(&udp[4..]).unwrap()
    );
    // ESP (non-zero SPI) and the NAT-keepalive are not IKE.
    assert_eq!(
        strip_non_esp_marker(&unhex("00 00 10 01 00 00 00 01")),
        Err(Error::NotIke)
    );
    assert_eq!(strip_non_esp_marker(&[0xff]), Err(Error::NotIke));
    assert_eq!(Header::parse_udp4500(&[0, 0, 0]), Err(Error::NotIke));
    assert_eq!(Error::NotIke.notify_type(), None);
}

#[test]
fn round_trips_intermediate_and_gikev2_exchanges() {
    // IKE_INTERMEDIATE carrying ADDKE data under SK (RFC 9242, RFC 9370).
    let mut m = ike_auth_request();
    m.header.exchange_type = ExchangeType::IKE_INTERMEDIATE;
    let wire = m.emit().unwrap();
    assert_eq!(wire[18], 43);
    assert_eq!(
        Message::parse(&wire).unwrap(),
        Message {
            header: Header {
                length: wire.len() as u32,
                next_payload: PayloadType::SK,
                ..m.header
            },
            payloads: m.payloads
        }
    );
    // GSA_AUTH request inner chain: IDg + SAg (+ GROUP_SENDER).
    let inner = vec![
        Payload::IdG(Id {
            id_type: IdType::ID_KEY_ID,
            data: vec![0, 0, 0, 7].into(),
        }),
        Payload::Notify(Notify::new(
            NotifyType::GROUP_SENDER,
            1u32.to_be_bytes().to_vec(),
        )),
    ];
    let (first, chain) = emit_inner(&inner).unwrap();
    assert_eq!(first, PayloadType::IDG);
    assert_eq!(parse_inner(first, &chain).unwrap(), inner);
    // GSA_REKEY body: a GW policy and a member key bag, empty.
    let inner = vec![
        Payload::Gsa(ike_wire::Gsa {
            policies: vec![ike_wire::GroupPolicy::GroupWide { attributes: vec![] }],
        }),
        Payload::Kd(ike_wire::Kd {
            key_bags: vec![ike_wire::KeyBag::Member { attributes: vec![] }],
        }),
    ];
    let (first, chain) = emit_inner(&inner).unwrap();
    assert_eq!(first, PayloadType::GSA);
    assert_eq!(parse_inner(first, &chain).unwrap(), inner);
    let mut rekey = ike_auth_request();
    rekey.header.exchange_type = ExchangeType::GSA_REKEY;
    rekey.header.message_id = 0;
    let wire = rekey.emit().unwrap();
    assert_eq!(
        Message::parse(&wire).unwrap().header.exchange_type,
        ExchangeType::GSA_REKEY
    );
}

#[test]
fn maps_each_error_to_the_notify_to_send() {
    let cases = [
        (Error::Truncated, Some(NotifyType::INVALID_SYNTAX)),
        (Error::TrailingBytes, Some(NotifyType::INVALID_SYNTAX)),
        (Error::Malformed("x"), Some(NotifyType::INVALID_SYNTAX)),
        (
            Error::LengthMismatch {
                header: 1,
                datagram: 2,
            },
            Some(NotifyType::INVALID_SYNTAX),
        ),
        (Error::EncryptedNotLast, Some(NotifyType::INVALID_SYNTAX)),
        (Error::NestedEncrypted, Some(NotifyType::INVALID_SYNTAX)),
        (
            Error::UnsupportedMajorVersion(3),
            Some(NotifyType::INVALID_MAJOR_VERSION),
        ),
        (
            Error::UnsupportedCriticalPayload(PayloadType(99)),
            Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD),
        ),
        (Error::InvalidIkeSpi, None),
        (Error::InvalidMessageId, None),
        (Error::InvalidFragment, None),
        (Error::NotIke, None),
        (Error::TooLong, None),
    ];
    for (err, want) in cases {
        assert_eq!(err.notify_type(), want, "{err:?}");
        assert_eq!(err.notify().map(|n| n.notify_type), want);
        if let Some(n) = err.notify() {
            assert_eq!(n.protocol_id, ike_wire::ProtocolId::NONE);
            assert!(n.spi.is_empty());
        }
    }
}

#[test]
fn decoded_payloads_borrow_from_the_datagram() {
    let wire = ike_sa_init_request().emit().unwrap();
    let msg = Message::parse(&wire).unwrap();
    let range = wire.as_ptr_range();
    for p in &msg.payloads {
        let field: &std::borrow::Cow<'_, [u8]> = match p {
            Payload::Ke(ke) => &ke.data,
            Payload::Nonce(n) => &n.data,
            Payload::Notify(n) => &n.data,
            _ => continue,
        };
        assert!(
            matches!(field, std::borrow::Cow::Borrowed(_)),
            "{p:?} copied"
        );
        assert!(field.is_empty() || range.contains(&field.as_ptr()));
    }
}

#[test]
fn into_owned_detaches_a_decoded_message_from_its_buffer() {
    use ike_wire::IntoOwned;
    let owned: Message<'static> = {
        let wire = ike_sa_init_request().emit().unwrap();
        Message::parse(&wire).unwrap().into_owned()
    };
    assert_eq!(owned.payloads, ike_sa_init_request().payloads);
    let Payload::Nonce(n) = &owned.payloads[2] else {
        panic!("Nonce third")
    };
    assert!(matches!(n.data, std::borrow::Cow::Owned(_)));
}
