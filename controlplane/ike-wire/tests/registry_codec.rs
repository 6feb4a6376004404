//! The open registries and the Reader/Writer primitives.
use ike_wire::codec::{Reader, Writer};
use ike_wire::{
    AuthMethod, CertEncoding, CfgAttrType, CfgType, EncrId, Error, EsnId, ExchangeType, IdType,
    IntegId, KeId, NotifyType, PayloadType, PrfId, ProtocolId, TransformAttrType, TransformType,
    TsType,
};

/// No two constants of a registry share a value (a duplicate would make the
/// name lookup lie).
macro_rules! assert_distinct {
    ($($t:ty),*) => {$(
        let known = <$t>::KNOWN;
        for (i, a) in known.iter().enumerate() {
            for b in &known[i + 1..] {
                assert_ne!(a, b, "{} has two names for one value", stringify!($t));
            }
        }
    )*};
}

#[test]
fn registry_constants_are_distinct() {
    assert_distinct!(
        ExchangeType,
        PayloadType,
        TransformType,
        EncrId,
        PrfId,
        IntegId,
        KeId,
        EsnId,
        TransformAttrType,
        ProtocolId,
        NotifyType,
        AuthMethod,
        IdType,
        CertEncoding,
        TsType,
        CfgType,
        CfgAttrType
    );
}

#[test]
fn registry_values_match_the_digest() {
    assert_eq!(ExchangeType::IKE_SA_INIT.0, 34);
    assert_eq!(ExchangeType::IKE_INTERMEDIATE.0, 43);
    assert_eq!(ExchangeType::IKE_FOLLOWUP_KE.0, 44);
    assert_eq!(
        (
            ExchangeType::GSA_AUTH.0,
            ExchangeType::GSA_REGISTRATION.0,
            ExchangeType::GSA_REKEY.0
        ),
        (39, 40, 41)
    );
    assert_eq!(
        (PayloadType::SK.0, PayloadType::SKF.0, PayloadType::PS.0),
        (46, 53, 54)
    );
    assert_eq!(
        (PayloadType::IDG.0, PayloadType::GSA.0, PayloadType::KD.0),
        (50, 51, 52)
    );
    assert_eq!(
        (KeId::ML_KEM_512.0, KeId::ML_KEM_768.0, KeId::ML_KEM_1024.0),
        (35, 36, 37)
    );
    assert_eq!(TransformType::ADDKE1.0, 6);
    assert_eq!(TransformType::ADDKE7.0, 12);
    assert_eq!(TsType::TS_SECLABEL.0, 10);
    assert_eq!(
        (
            CfgAttrType::INTERNAL_DNS_DOMAIN.0,
            CfgAttrType::INTERNAL_DNSSEC_TA.0
        ),
        (25, 26)
    );
    assert_eq!(NotifyType::SIGNATURE_HASH_ALGORITHMS.0, 16431);
    assert_eq!(
        (
            NotifyType::TEMPORARY_FAILURE.0,
            NotifyType::CHILD_SA_NOT_FOUND.0
        ),
        (43, 44)
    );
    assert_eq!(NotifyType::USE_PPK_INT.0, 16445);
    assert_eq!(EncrId::ENCR_CHACHA20_POLY1305.0, 28);
}

#[test]
fn addke_transform_types_share_the_ke_id_registry() {
    for n in 1..=7 {
        let t = TransformType::addke(n).unwrap();
        assert_eq!(t.0, 5 + n);
        assert!(t.uses_ke_ids());
    }
    assert_eq!(TransformType::addke(0), None);
    assert_eq!(TransformType::addke(8), None);
    assert!(TransformType::KE.uses_ke_ids());
    assert!(!TransformType::ESN.uses_ke_ids());
    assert!(!TransformType::KWA.uses_ke_ids());
}

#[test]
fn unknown_registry_values_keep_their_number_and_debug_shows_it() {
    assert_eq!(
        format!("{:?}", NotifyType::INVALID_SYNTAX),
        "INVALID_SYNTAX"
    );
    assert_eq!(format!("{:?}", NotifyType(40000)), "NotifyType(40000)");
    assert_eq!(NotifyType(40000).name(), None);
    assert_eq!(u16::from(NotifyType::from(40000)), 40000);
    assert!(NotifyType::INVALID_SYNTAX.is_error());
    assert!(!NotifyType::COOKIE.is_error());
    assert!(KeId::CURVE25519.is_known());
    assert!(!KeId(1234).is_known());
}

#[test]
fn reader_takes_subs_and_refuses_trailing_bytes() {
    let data = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    let mut r = Reader::new(&data);
    assert_eq!(r.u8(), Ok(1));
    assert_eq!(r.u16(), Ok(0x0203));
    let mut sub = r.sub(4).unwrap();
    assert_eq!(sub.u32(), Ok(0x04050607));
    assert!(sub.is_empty());
    assert_eq!(sub.u8(), Err(Error::Truncated));
    assert_eq!(r.offset(), 7);
    assert_eq!(r.expect_empty(), Err(Error::TrailingBytes));
    assert_eq!(r.take(5), Err(Error::Truncated));
    assert_eq!(r.left(), 4, "a failed take consumes nothing");
    assert_eq!(r.sub(usize::MAX).err(), Some(Error::Truncated));
    assert_eq!(r.rest(), &[8, 9, 10, 11]);
    assert_eq!(r.expect_empty(), Ok(()));
    assert_eq!(Reader::new(&[0; 7]).u64(), Err(Error::Truncated));
}

#[test]
fn writer_patches_lengths_in_place_and_refuses_overflow() {
    let mut w = Writer::new();
    w.u8(0xaa);
    let start = w.len();
    let slot = w.u16_placeholder(start);
    w.bytes(&[1, 2, 3]);
    w.patch_u16(slot).unwrap();
    let slot32 = w.u32_placeholder(0);
    w.patch_u32(slot32).unwrap();
    assert_eq!(w.as_slice(), &[0xaa, 0, 5, 1, 2, 3, 0, 0, 0, 10]);
    assert_eq!(w.u8_len(256), Err(Error::TooLong));
    assert_eq!(w.u16_len(65536), Err(Error::TooLong));
    let mut big = Writer::new();
    let slot = big.u16_placeholder(0);
    big.bytes(&vec![0; 65534]);
    assert_eq!(
        big.patch_u16(slot),
        Err(Error::TooLong),
        "65536 octets do not fit a u16 length"
    );
}
