//! Every payload type against a byte layout written out from its RFC diagram:
//! parse, emit, every truncated prefix rejected, trailing bytes rejected.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{check_payload, emit_one, unhex, with_extra_body_octet};
use ike_wire::{
    parse_chain, Attribute, AttributeValue, Auth, AuthMethod, Cert, CertEncoding, CertReq,
    CfgAttrType, CfgAttribute, CfgType, Chain, Cp, Delete, Eap, EncrId, Error, EsnId,
    GroupKeyBagAttrType, GroupPolicy, Gsa, GsaAttrType, GsaPolicy, GwpAttrType, Id, IdType,
    IntegId, Kd, Ke, KeId, KeyBag, MemberKeyBagAttrType, Nonce, Notify, NotifyType, Payload,
    PayloadType, PrfId, Proposal, ProtocolId, Raw, Sa, Sk, Skf, TrafficSelector, Transform,
    TransformAttrType, TransformType, Ts, TsType, Unknown, VendorId,
};

/// RFC 7296 §3.3: IKE proposal #1, no SPI, ENCR_AES_CBC/256, PRF_HMAC_SHA2_256,
/// AUTH_HMAC_SHA2_256_128, ECP-256.
const IKE_SA: &str = "00 00 00 30
    00 00 00 2c 01 01 00 04
    03 00 00 0c 01 00 00 0c 80 0e 01 00
    03 00 00 08 02 00 00 05
    03 00 00 08 03 00 00 0c
    00 00 00 08 04 00 00 13";

fn ike_sa() -> Payload<'static> {
    Payload::Sa(Sa {
        proposals: vec![Proposal {
            proposal_num: 1,
            protocol_id: ProtocolId::IKE,
            spi: vec![].into(),
            transforms: vec![
                Transform::encr(EncrId::ENCR_AES_CBC, Some(256)),
                Transform::prf(PrfId::PRF_HMAC_SHA2_256),
                Transform::integ(IntegId::AUTH_HMAC_SHA2_256_128),
                Transform::ke(KeId::ECP_256),
            ],
        }],
    })
}

#[test]
fn parses_and_emits_ike_sa_proposal() {
    let bytes = unhex(IKE_SA);
    check_payload(&bytes, ike_sa());
    let Payload::Sa(sa) = ike_sa() else {
        unreachable!()
    };
    let t = &sa.proposals[0].transforms;
    assert_eq!(t[0].encr_id(), Some(EncrId::ENCR_AES_CBC));
    assert_eq!(t[0].key_length(), Some(256));
    assert_eq!(t[1].prf_id(), Some(PrfId::PRF_HMAC_SHA2_256));
    assert_eq!(t[2].integ_id(), Some(IntegId::AUTH_HMAC_SHA2_256_128));
    assert_eq!(t[3].ke_id(), Some(KeId::ECP_256));
    assert_eq!(t[3].encr_id(), None);
}

/// Two ESP proposals with 4-octet SPIs: AES-GCM-16 + ESN choice + ADDKE1
/// ML-KEM-768 (RFC 9370), then AES-CBC with a TLV attribute of type 18.
const ESP_SA: &str = "00 00 00 50
    02 00 00 30 01 03 04 04 01 02 03 04
    03 00 00 0c 01 00 00 14 80 0e 00 80
    03 00 00 08 05 00 00 00
    03 00 00 08 05 00 00 01
    00 00 00 08 06 00 00 24
    00 00 00 1c 02 03 04 01 05 06 07 08
    00 00 00 10 01 00 00 0c 00 12 00 04 de ad be ef";

fn esp_sa() -> Payload<'static> {
    Payload::Sa(Sa {
        proposals: vec![
            Proposal {
                proposal_num: 1,
                protocol_id: ProtocolId::ESP,
                spi: vec![1, 2, 3, 4].into(),
                transforms: vec![
                    Transform::encr(EncrId::ENCR_AES_GCM_16, Some(128)),
                    Transform::esn(EsnId::NO_ESN),
                    Transform::esn(EsnId::ESN),
                    Transform::addke(1, KeId::ML_KEM_768).unwrap(),
                ],
            },
            Proposal {
                proposal_num: 2,
                protocol_id: ProtocolId::ESP,
                spi: vec![5, 6, 7, 8].into(),
                transforms: vec![Transform {
                    transform_type: TransformType::ENCR,
                    transform_id: EncrId::ENCR_AES_CBC.0,
                    attributes: vec![Attribute {
                        attr_type: TransformAttrType::SIGNATURE_ALGORITHM_IDENTIFIER,
                        value: AttributeValue::Tlv(vec![0xde, 0xad, 0xbe, 0xef].into()),
                    }],
                }],
            },
        ],
    })
}

#[test]
fn parses_and_emits_two_esp_proposals_with_addke_and_tlv_attribute() {
    let bytes = unhex(ESP_SA);
    check_payload(&bytes, esp_sa());
    let Payload::Sa(sa) = esp_sa() else {
        unreachable!()
    };
    assert_eq!(
        sa.proposals[0].transforms[3].transform_type,
        TransformType::ADDKE1
    );
    assert_eq!(
        sa.proposals[0].transforms[3].ke_id(),
        Some(KeId::ML_KEM_768)
    );
}

#[test]
fn rejects_sa_with_inconsistent_lengths_counts_or_last_substruc() {
    let good = unhex(IKE_SA);
    let sa = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        parse_chain(PayloadType::SA, &b, Chain::Outer).map(|_| ())
    };
    // Proposal "more follow" (2) on the only proposal.
    assert_eq!(sa(&|b| b[4] = 2), Err(Error::Truncated));
    // Proposal Last Substruc neither 0 nor 2.
    assert_eq!(
        sa(&|b| b[4] = 3),
        Err(Error::Malformed("Last Substruc of a proposal"))
    );
    // Num Transforms one too many / one too few.
    assert_eq!(
        sa(&|b| b[11] = 5),
        Err(Error::Malformed("Last Substruc of a transform"))
    );
    assert_eq!(
        sa(&|b| b[11] = 3),
        Err(Error::Malformed("Last Substruc of a transform"))
    );
    // Last transform marked "more".
    assert_eq!(
        sa(&|b| b[12 + 12 + 8 + 8] = 3),
        Err(Error::Malformed("Last Substruc of a transform"))
    );
    // Proposal Length shorter than its fixed part.
    assert_eq!(sa(&|b| b[7] = 7), Err(Error::Malformed("Proposal Length")));
    // Transform Length pointing past the proposal.
    assert_eq!(sa(&|b| b[15] = 0x40), Err(Error::Truncated));
    // An extra octet inside the SA body (after the last proposal).
    assert_eq!(
        parse_chain(PayloadType::SA, &with_extra_body_octet(&good), Chain::Outer).map(|_| ()),
        Err(Error::TrailingBytes)
    );
    // SA payload without proposals.
    assert_eq!(
        parse_chain(PayloadType::SA, &[0, 0, 0, 4], Chain::Outer).map(|_| ()),
        Err(Error::Truncated)
    );
}

#[test]
fn parses_and_emits_ke_with_curve25519_length_40() {
    let data: Vec<u8> = (0..32).collect();
    let mut bytes = unhex("00 00 00 28 00 1f 00 00");
    bytes.extend(&data);
    check_payload(
        &bytes,
        Payload::Ke(Ke {
            ke_method: KeId::CURVE25519,
            data: data.into(),
        }),
    );
}

#[test]
fn parses_and_emits_idi_idr_and_idg() {
    let fqdn = b"vpn.example".to_vec();
    let mut bytes = unhex("00 00 00 13 02 00 00 00");
    bytes.extend(&fqdn);
    let id = Id {
        id_type: IdType::ID_FQDN,
        data: fqdn.into(),
    };
    check_payload(&bytes, Payload::IdI(id.clone()));
    check_payload(&bytes, Payload::IdR(id.clone()));
    check_payload(
        &bytes,
        Payload::IdG(Id {
            id_type: IdType::ID_FQDN,
            ..id
        }),
    );
    // The 3 RESERVED octets are required.
    assert_eq!(
        parse_chain(PayloadType::IDI, &unhex("00 00 00 06 02 00"), Chain::Outer),
        Err(Error::Truncated)
    );
}

#[test]
fn parses_and_emits_cert_and_certreq() {
    check_payload(
        &unhex("00 00 00 08 04 30 03 02"),
        Payload::Cert(Cert {
            encoding: CertEncoding::X509_SIGNATURE,
            data: vec![0x30, 0x03, 0x02].into(),
        }),
    );
    let hash = [0x5a; 20];
    let mut bytes = unhex("00 00 00 19 04");
    bytes.extend(hash);
    check_payload(
        &bytes,
        Payload::CertReq(CertReq {
            encoding: CertEncoding::X509_SIGNATURE,
            authorities: hash.to_vec().into(),
        }),
    );
}

#[test]
fn parses_and_emits_auth_with_rfc7427_digital_signature_prefix() {
    // RFC 7427 Appendix B starts AUTH payloads "NN00 00LL 0e00 0000 0f30 0d06".
    let data = unhex("0f 30 0d 06 09 2a 86 48 86 f7 0d 01 01 0b 05 00 aa bb");
    let mut bytes = unhex("00 00 00 1a 0e 00 00 00");
    bytes.extend(&data);
    check_payload(
        &bytes,
        Payload::Auth(Auth {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: data.into(),
        }),
    );
}

#[test]
fn parses_and_emits_nonce_and_enforces_16_to_256_octets() {
    let data = vec![7u8; 32];
    let mut bytes = unhex("00 00 00 24");
    bytes.extend(&data);
    check_payload(&bytes, Payload::Nonce(Nonce { data: data.into() }));
    for (len, ok) in [(15, false), (16, true), (256, true), (257, false)] {
        let mut b = vec![0, 0, 0, 0];
        b[2..4].copy_from_slice(&(4 + len as u16).to_be_bytes());
        b.extend(vec![1u8; len]);
        assert_eq!(
            parse_chain(PayloadType::NONCE, &b, Chain::Outer).is_ok(),
            ok,
            "nonce of {len} octets"
        );
    }
    let short = Payload::Nonce(Nonce {
        data: vec![0; 15].into(),
    });
    assert!(
        ike_wire::write_chain(&[short], Chain::Outer, &mut ike_wire::codec::Writer::new()).is_err()
    );
}

#[test]
fn parses_and_emits_notify_about_the_ike_sa_and_about_a_child_sa() {
    let hash = [0x11; 20];
    let mut bytes = unhex("00 00 00 1c 00 00 40 04");
    bytes.extend(hash);
    check_payload(
        &bytes,
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            hash.to_vec(),
        )),
    );
    // REKEY_SA: Protocol ESP, 4-octet SPI, no data (RFC 7296 §1.3.3).
    check_payload(
        &unhex("00 00 00 0c 03 04 40 09 ca fe ba be"),
        Payload::Notify(Notify {
            protocol_id: ProtocolId::ESP,
            spi: vec![0xca, 0xfe, 0xba, 0xbe].into(),
            notify_type: NotifyType::REKEY_SA,
            data: vec![].into(),
        }),
    );
    // SPI Size larger than the payload.
    assert_eq!(
        parse_chain(
            PayloadType::NOTIFY,
            &unhex("00 00 00 0a 03 08 40 09 ca fe"),
            Chain::Outer
        ),
        Err(Error::Truncated)
    );
}

#[test]
fn parses_and_emits_delete_of_child_sas_and_of_the_ike_sa() {
    check_payload(
        &unhex("00 00 00 10 03 04 00 02 00 00 00 01 00 00 00 02"),
        Payload::Delete(Delete {
            protocol_id: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![vec![0, 0, 0, 1].into(), vec![0, 0, 0, 2].into()],
        }),
    );
    check_payload(
        &unhex("00 00 00 08 01 00 00 00"),
        Payload::Delete(Delete {
            protocol_id: ProtocolId::IKE,
            spi_size: 0,
            spis: vec![],
        }),
    );
    let two_spis = unhex("00 00 00 10 03 04 00 02 00 00 00 01 00 00 00 02");
    assert_eq!(
        parse_chain(
            PayloadType::DELETE,
            &with_extra_body_octet(&two_spis),
            Chain::Outer
        ),
        Err(Error::TrailingBytes)
    );
    assert_eq!(
        parse_chain(
            PayloadType::DELETE,
            &unhex("00 00 00 08 01 00 ff ff"),
            Chain::Outer
        ),
        Err(Error::Malformed("Num of SPIs with SPI Size 0"))
    );
}

#[test]
fn parses_and_emits_vendor_id() {
    let vid = unhex("88 2f e5 6d 6f d2 0d bc 22 86 32 72 04 7c 98 2b");
    let mut bytes = unhex("00 00 00 14");
    bytes.extend(&vid);
    check_payload(&bytes, Payload::VendorId(VendorId { vid: vid.into() }));
}

const TS: &str = "00 00 00 40 02 00 00 00
    07 00 00 10 00 00 ff ff 0a 00 00 00 0a 00 00 ff
    08 11 00 28 01 f4 01 f4 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 00
                            20 01 0d b8 00 00 00 00 ff ff ff ff ff ff ff ff";

fn ts() -> Ts<'static> {
    Ts {
        selectors: vec![
            TrafficSelector::Ipv4 {
                ip_protocol: 0,
                start_port: 0,
                end_port: 65535,
                start_addr: Ipv4Addr::new(10, 0, 0, 0),
                end_addr: Ipv4Addr::new(10, 0, 0, 255),
            },
            TrafficSelector::Ipv6 {
                ip_protocol: 17,
                start_port: 500,
                end_port: 500,
                start_addr: "2001:db8::".parse::<Ipv6Addr>().unwrap(),
                end_addr: "2001:db8::ffff:ffff:ffff:ffff".parse::<Ipv6Addr>().unwrap(),
            },
        ],
    }
}

#[test]
fn parses_and_emits_tsi_and_tsr_address_ranges() {
    let bytes = unhex(TS);
    check_payload(&bytes, Payload::TsI(ts()));
    check_payload(&bytes, Payload::TsR(ts()));
    assert_eq!(
        parse_chain(
            PayloadType::TSI,
            &with_extra_body_octet(&bytes),
            Chain::Outer
        ),
        Err(Error::TrailingBytes)
    );
}

#[test]
fn rejects_address_range_selector_of_the_wrong_length() {
    // TS_IPV4_ADDR_RANGE claiming 20 octets.
    let bytes = unhex(
        "00 00 00 1c 01 00 00 00 07 00 00 14 00 00 ff ff 0a 00 00 00 0a 00 00 ff 00 00 00 00",
    );
    assert_eq!(
        parse_chain(PayloadType::TSI, &bytes, Chain::Outer),
        Err(Error::Malformed("Selector Length of an address range"))
    );
    // Number of TSs larger than the selectors present.
    let mut two = unhex(TS);
    two[4] = 3;
    assert_eq!(
        parse_chain(PayloadType::TSI, &two, Chain::Outer),
        Err(Error::Truncated)
    );
}

#[test]
fn parses_and_emits_ts_seclabel_and_keeps_unknown_ts_types() {
    let label = b"system_u:object_r:ipsec_spd_t:s0".to_vec();
    let mut bytes = unhex("00 00 00 34 02 00 00 00 0a 00 00 24");
    bytes.extend(&label);
    bytes.extend(unhex("09 06 00 08 01 02 03 04"));
    let ts = Ts {
        selectors: vec![
            TrafficSelector::SecLabel {
                label: label.into(),
            },
            TrafficSelector::Unknown {
                ts_type: TsType(9),
                ip_protocol: 6,
                data: vec![1, 2, 3, 4].into(),
            },
        ],
    };
    check_payload(&bytes, Payload::TsR(ts));
}

#[test]
fn parses_and_emits_sk_and_splits_iv_ciphertext_icv() {
    let bytes = unhex("23 00 00 14 a0 a1 a2 a3 a4 a5 a6 a7 c1 c2 c3 c4 f1 f2 f3 f4");
    let sk = Sk {
        first_inner: PayloadType::IDI,
        flags: 0,
        body: bytes[4..].to_vec().into(),
    };
    check_payload(&bytes, Payload::Sk(sk.clone()));
    let parts = sk.split(8, 4).unwrap();
    assert_eq!(parts.iv, &bytes[4..12]);
    assert_eq!(parts.ciphertext, &bytes[12..16]);
    assert_eq!(parts.icv, &bytes[16..20]);
    assert_eq!(sk.split(8, 8).unwrap().ciphertext, &[] as &[u8]);
    assert_eq!(sk.split(8, 9), Err(Error::Truncated));
    assert_eq!(sk.split(usize::MAX, 1), Err(Error::Truncated));
}

#[test]
fn parses_and_emits_skf_with_fragment_numbering() {
    let bytes = unhex("00 00 00 10 00 02 00 03 a0 a1 a2 a3 f1 f2 f3 f4");
    let skf = Skf {
        first_inner: PayloadType::NONE,
        flags: 0,
        fragment_number: 2,
        total_fragments: 3,
        body: bytes[8..].to_vec().into(),
    };
    check_payload(&bytes, Payload::Skf(skf.clone()));
    assert_eq!(skf.split(4, 4).unwrap().iv, &bytes[8..12]);
}

#[test]
fn rejects_skf_numbered_zero_or_beyond_total_and_drops_it_silently() {
    for (number, total) in [(0u16, 3u16), (1, 0), (4, 3), (0, 0)] {
        let mut b = unhex("00 00 00 08 00 00 00 00");
        b[4..6].copy_from_slice(&number.to_be_bytes());
        b[6..8].copy_from_slice(&total.to_be_bytes());
        let err = parse_chain(PayloadType::SKF, &b, Chain::Outer).unwrap_err();
        assert_eq!(err, Error::InvalidFragment);
        assert_eq!(
            err.notify_type(),
            None,
            "RFC 7383 §2.6: discarded, not answered"
        );
    }
}

#[test]
fn parses_and_emits_cp_request_with_split_dns_attributes() {
    let domain = b"example.com".to_vec();
    let mut bytes = unhex("00 00 00 1f 01 00 00 00 00 01 00 00 00 03 00 00 00 19 00 0b");
    bytes.extend(&domain);
    let cp = Cp {
        cfg_type: CfgType::CFG_REQUEST,
        attributes: vec![
            CfgAttribute::new(CfgAttrType::INTERNAL_IP4_ADDRESS, vec![]),
            CfgAttribute::new(CfgAttrType::INTERNAL_IP4_DNS, vec![]),
            CfgAttribute::new(CfgAttrType::INTERNAL_DNS_DOMAIN, domain),
        ],
    };
    check_payload(&bytes, Payload::Cp(cp));
    // An attribute Length past the payload.
    assert_eq!(
        parse_chain(
            PayloadType::CP,
            &unhex("00 00 00 0c 02 00 00 00 00 01 00 04"),
            Chain::Outer
        ),
        Err(Error::Truncated)
    );
}

#[test]
fn cp_attribute_r_bit_is_ignored_on_receipt() {
    let bytes = unhex("00 00 00 0c 02 00 00 00 80 1a 00 00");
    let parsed = parse_chain(PayloadType::CP, &bytes, Chain::Outer).unwrap();
    let Payload::Cp(cp) = &parsed[0] else {
        panic!("not CP")
    };
    assert_eq!(cp.attributes[0].attr_type, CfgAttrType::INTERNAL_DNSSEC_TA);
    assert_eq!(
        emit_one(&parsed[0]),
        unhex("00 00 00 0c 02 00 00 00 00 1a 00 00")
    );
}

#[test]
fn parses_and_emits_eap_and_checks_the_eap_length() {
    // EAP-Request/Identity, RFC 3748 §5.1.
    let msg = unhex("01 05 00 05 01");
    let mut bytes = unhex("00 00 00 09");
    bytes.extend(&msg);
    check_payload(
        &bytes,
        Payload::Eap(Eap {
            message: msg.into(),
        }),
    );
    assert_eq!(
        parse_chain(
            PayloadType::EAP,
            &unhex("00 00 00 09 01 05 00 06 01"),
            Chain::Outer
        ),
        Err(Error::Malformed("EAP Length"))
    );
    assert_eq!(
        parse_chain(
            PayloadType::EAP,
            &unhex("00 00 00 07 01 05 00"),
            Chain::Outer
        ),
        Err(Error::Truncated)
    );
}

#[test]
fn keeps_puzzle_solution_body_raw() {
    check_payload(
        &unhex("00 00 00 08 01 02 03 04"),
        Payload::Ps(Raw {
            body: vec![1, 2, 3, 4].into(),
        }),
    );
}

/// RFC 9838 (draft-23 §4.4): an ESP TEK policy (SPI, UDP source/destination
/// selectors to 239.1.2.3:5000, AES-GCM-16/256 and the 32-bit Unspecified SN
/// transform, GSA_KEY_LIFETIME 3600 s) and a GW policy (Sender-ID bits 16,
/// ATD 5).
const GSA: &str = "00 00 00 54
    03 04 00 44 11 22 33 44
    07 11 00 10 00 00 ff ff c0 00 02 01 c0 00 02 01
    07 11 00 10 13 88 13 88 ef 01 02 03 ef 01 02 03
    03 00 00 0c 01 00 00 14 80 0e 01 00
    00 00 00 08 05 00 00 02
    00 01 00 04 00 00 0e 10
    00 00 00 0c 80 03 00 10 80 01 00 05";

fn gsa() -> Payload<'static> {
    let udp = |port: (u16, u16), addr: [u8; 4]| TrafficSelector::Ipv4 {
        ip_protocol: 17,
        start_port: port.0,
        end_port: port.1,
        start_addr: Ipv4Addr::from(addr),
        end_addr: Ipv4Addr::from(addr),
    };
    Payload::Gsa(Gsa {
        policies: vec![
            GroupPolicy::Sa(GsaPolicy {
                protocol_id: ProtocolId::ESP,
                spi: vec![0x11, 0x22, 0x33, 0x44].into(),
                src_ts: udp((0, 65535), [192, 0, 2, 1]),
                dst_ts: udp((5000, 5000), [239, 1, 2, 3]),
                transforms: vec![
                    Transform::encr(EncrId::ENCR_AES_GCM_16, Some(256)),
                    Transform::esn(EsnId::UNSPECIFIED_32),
                ],
                attributes: vec![Attribute {
                    attr_type: GsaAttrType::GSA_KEY_LIFETIME,
                    value: AttributeValue::Tlv(3600u32.to_be_bytes().to_vec().into()),
                }],
            }),
            GroupPolicy::GroupWide {
                attributes: vec![
                    Attribute {
                        attr_type: GwpAttrType::GWP_SENDER_ID_BITS,
                        value: AttributeValue::Tv(16),
                    },
                    Attribute {
                        attr_type: GwpAttrType::GWP_ATD,
                        value: AttributeValue::Tv(5),
                    },
                ],
            },
        ],
    })
}

#[test]
fn parses_and_emits_gikev2_gsa_with_tek_and_group_wide_policies() {
    check_payload(&unhex(GSA), gsa());
}

#[test]
fn rejects_gsa_policy_whose_transform_list_does_not_end() {
    let mut b = unhex(GSA);
    // Last transform (SN) marked "more": the attribute is read as a transform.
    b[4 + 8 + 32 + 12] = 3;
    assert!(parse_chain(PayloadType::GSA, &b, Chain::Outer).is_err());
    let mut b = unhex(GSA);
    b[4 + 8 + 32 + 12] = 2;
    assert_eq!(
        parse_chain(PayloadType::GSA, &b, Chain::Outer).map(|_| ()),
        Err(Error::Malformed("Last Substruc of a GSA transform"))
    );
    // Policy Length shorter than its header.
    let mut b = unhex(GSA);
    b[6..8].copy_from_slice(&[0, 3]);
    assert_eq!(
        parse_chain(PayloadType::GSA, &b, Chain::Outer).map(|_| ()),
        Err(Error::Malformed("G-IKEv2 substructure Length"))
    );
}

/// RFC 9838 (draft-23 §4.5): a Group Key Bag for the ESP TEK with one SA_KEY
/// (Key ID 0, KWK ID 0, wrapped key) and a Member Key Bag with GM_SENDER_ID 1.
const KD: &str = "00 00 00 28
    03 04 00 18 11 22 33 44 00 01 00 0c 00 00 00 00 00 00 00 00 aa bb cc dd
    00 00 00 0c 00 03 00 04 00 00 00 01";

#[test]
fn parses_and_emits_gikev2_kd_with_group_and_member_key_bags() {
    let kd = Payload::Kd(Kd {
        key_bags: vec![
            KeyBag::Group {
                protocol_id: ProtocolId::ESP,
                spi: vec![0x11, 0x22, 0x33, 0x44].into(),
                attributes: vec![Attribute {
                    attr_type: GroupKeyBagAttrType::SA_KEY,
                    value: AttributeValue::Tlv(unhex("00 00 00 00 00 00 00 00 aa bb cc dd").into()),
                }],
            },
            KeyBag::Member {
                attributes: vec![Attribute {
                    attr_type: MemberKeyBagAttrType::GM_SENDER_ID,
                    value: AttributeValue::Tlv(vec![0, 0, 0, 1].into()),
                }],
            },
        ],
    });
    check_payload(&unhex(KD), kd);
    // A key bag SPI longer than the bag.
    let mut b = unhex(KD);
    b[5] = 0x20;
    assert_eq!(
        parse_chain(PayloadType::KD, &b, Chain::Outer).map(|_| ()),
        Err(Error::Truncated)
    );
}

#[test]
fn skips_unknown_non_critical_payload_and_round_trips_it() {
    let bytes = unhex("00 00 00 07 aa bb cc");
    check_payload(
        &bytes,
        Payload::Unknown(Unknown {
            payload_type: PayloadType(200),
            critical: false,
            body: vec![0xaa, 0xbb, 0xcc].into(),
        }),
    );
}

#[test]
fn rejects_unknown_critical_payload_with_unsupported_critical_payload() {
    let err = parse_chain(
        PayloadType(200),
        &unhex("00 80 00 07 aa bb cc"),
        Chain::Outer,
    )
    .unwrap_err();
    assert_eq!(err, Error::UnsupportedCriticalPayload(PayloadType(200)));
    assert_eq!(
        err.notify_type(),
        Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
    );
    let n = err.notify().unwrap();
    assert_eq!(
        n.data.as_ref(),
        &[200],
        "RFC 7296 §3.10.1: the one-octet payload type"
    );
}

#[test]
fn ignores_critical_bit_on_known_payloads() {
    let mut bytes = unhex("00 80 00 14");
    bytes.extend([9u8; 16]);
    let parsed = parse_chain(PayloadType::NONCE, &bytes, Chain::Outer).unwrap();
    assert_eq!(
        parsed,
        vec![Payload::Nonce(Nonce {
            data: vec![9; 16].into()
        })]
    );
}

#[test]
fn rejects_payload_length_shorter_than_the_generic_header() {
    for len in 0u8..4 {
        assert_eq!(
            parse_chain(PayloadType::VENDOR_ID, &[0, 0, 0, len], Chain::Outer),
            Err(Error::Malformed("Payload Length"))
        );
    }
}

#[test]
fn refuses_to_emit_what_would_not_parse_back() {
    let mut w = ike_wire::codec::Writer::new();
    let unknown_with_known_type = Payload::Unknown(Unknown {
        payload_type: PayloadType::NONCE,
        critical: false,
        body: vec![].into(),
    });
    assert!(ike_wire::write_chain(&[unknown_with_known_type], Chain::Outer, &mut w).is_err());
    let big = Payload::VendorId(VendorId {
        vid: vec![0; 70_000].into(),
    });
    assert_eq!(
        ike_wire::write_chain(&[big], Chain::Outer, &mut w),
        Err(Error::TooLong)
    );
    let bad_delete = Payload::Delete(Delete {
        protocol_id: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![vec![1].into()],
    });
    assert!(ike_wire::write_chain(&[bad_delete], Chain::Outer, &mut w).is_err());
    let empty_sa = Payload::Sa(Sa { proposals: vec![] });
    assert!(ike_wire::write_chain(&[empty_sa], Chain::Outer, &mut w).is_err());
}
