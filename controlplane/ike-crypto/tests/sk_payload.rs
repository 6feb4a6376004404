//! SK payload protection against RFC 7634 Appendix B, draft-mcgrew-gcm-test-01
//! and bodies made independently with Python `cryptography` (OpenSSL).

mod common;
use common::{hx, json};

use ike_crypto::rng::DeterministicRng;
use ike_crypto::sk::{self, SkCipher, SkProtection};
use ike_crypto::{ids, Error};
use proptest::prelude::*;

fn rfc7634_cipher() -> (SkCipher, serde_json::Value) {
    let v = json("rfc7634_appendix_b.json");
    let sk_e = [hx(&v["key"]), hx(&v["salt"])].concat();
    (SkCipher::new(ids::encr::CHACHA20_POLY1305, None, ids::integ::NONE, &sk_e, &[]).unwrap(), v)
}

#[test]
fn rfc7634_appendix_b_decrypts_the_ikev2_example() {
    let (c, v) = rfc7634_cipher();
    let aad = hx(&v["aad"]);
    assert_eq!(aad.len(), 32, "RFC 7634 §3: 32-octet AAD without unencrypted payloads");
    let body = [hx(&v["iv"]), hx(&v["ciphertext_and_tag"])].concat();
    // The message Length (0x45 = 69) covers AAD + body.
    assert_eq!(aad.len() + body.len(), 0x45);
    let inner = c.open(&aad, &body).unwrap();
    let plaintext = hx(&v["plaintext"]);
    assert_eq!(inner, plaintext[..plaintext.len() - 1], "one Notify payload, Pad Length 0");
    assert_eq!(c.sealed_len(inner.len()), body.len());
}

#[test]
fn rfc7634_appendix_b_seal_reproduces_the_example_bytes() {
    let (c, v) = rfc7634_cipher();
    let plaintext = hx(&v["plaintext"]);
    let body = c.seal_with_iv(&hx(&v["aad"]), &plaintext[..plaintext.len() - 1], &hx(&v["iv"]), 0).unwrap();
    assert_eq!(body, [hx(&v["iv"]), hx(&v["ciphertext_and_tag"])].concat());
}

#[test]
fn sk_bodies_match_independent_python_cryptography() {
    let v = json("sk_reference.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let encr = c["encr"].as_u64().unwrap() as u16;
        let bits = c["key_bits"].as_u64().unwrap() as u16;
        let integ = c["integ"].as_u64().unwrap() as u16;
        let cipher = SkCipher::new(encr, Some(bits), integ, &hx(&c["sk_e"]), &hx(&c["sk_a"])).unwrap();
        let (aad, body, inner) = (hx(&c["aad"]), hx(&c["body"]), hx(&c["inner"]));
        assert_eq!(cipher.open(&aad, &body).unwrap(), inner, "open {encr}/{bits}/{integ}");
        assert_eq!(cipher.sealed_len(inner.len()), body.len(), "sealed_len {encr}/{bits}/{integ}");
        if encr == ids::encr::AES_GCM_16 {
            // Same IV and no padding: the bytes must match exactly.
            let sealed = cipher.seal_with_iv(&aad, &inner, &hx(&c["iv"]), 0).unwrap();
            assert_eq!(sealed, body);
        }
    }
}

#[test]
fn draft_mcgrew_gcm_vectors_open_through_the_sk_cipher() {
    // ESP packets: AAD = SPI | SN, body = IV | ciphertext | ICV, the same
    // nonce (salt | IV) and tag layout as RFC 5282 SK payloads. The ESP
    // trailer ends in Next Header, which open() reads as the Pad Length.
    let v = json("sk_reference.json");
    let vectors = v["mcgrew"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for m in vectors {
        let key = hx(&m["key"]);
        let sk_e = [key.clone(), hx(&m["salt"])].concat();
        let c = SkCipher::new(ids::encr::AES_GCM_16, Some((key.len() * 8) as u16), 0, &sk_e, &[]).unwrap();
        let plain = hx(&m["plaintext"]);
        let last = usize::from(*plain.last().unwrap());
        let inner = c.open(&hx(&m["aad"]), &hx(&m["body"])).unwrap();
        assert_eq!(inner, plain[..plain.len() - 1 - last], "{}", m["name"]);
    }
}

fn all_ciphers() -> Vec<SkCipher> {
    let mut v = Vec::new();
    for bits in [128u16, 192, 256] {
        v.push(SkCipher::new(20, Some(bits), 0, &vec![7; usize::from(bits) / 8 + 4], &[]).unwrap());
        for (integ, klen) in [(12u16, 32usize), (13, 48), (14, 64)] {
            v.push(SkCipher::new(12, Some(bits), integ, &vec![7; usize::from(bits) / 8], &vec![9; klen]).unwrap());
        }
    }
    v.push(SkCipher::new(28, None, 0, &[5; 36], &[]).unwrap());
    v
}

#[test]
fn every_cipher_round_trips_and_detects_tampering() {
    let mut rng = DeterministicRng::from_u64(77);
    let aad = [0x42u8; 32];
    for mut c in all_ciphers() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let body = c.seal(&aad, &inner, &mut rng).unwrap();
            assert_eq!(body.len(), c.sealed_len(len));
            assert_eq!(c.open(&aad, &body).unwrap(), inner);
            for flip in [0, c.iv_len(), body.len() - 1] {
                let mut bad = body.clone();
                bad[flip] ^= 0x80;
                assert_eq!(c.open(&aad, &bad), Err(Error::IntegrityCheckFailed), "flip at {flip}");
            }
            let mut bad_aad = aad;
            bad_aad[31] ^= 1;
            assert_eq!(c.open(&bad_aad, &body), Err(Error::IntegrityCheckFailed));
        }
    }
}

#[test]
fn aead_ivs_are_a_counter_from_a_random_start_and_never_repeat() {
    let mut rng = DeterministicRng::from_u64(5);
    let mut c = SkCipher::new(20, Some(128), 0, &[1; 20], &[]).unwrap();
    let a = c.seal(b"", b"x", &mut rng).unwrap();
    let b = c.seal(b"", b"x", &mut rng).unwrap();
    let ia = u64::from_be_bytes(a[..8].try_into().unwrap());
    let ib = u64::from_be_bytes(b[..8].try_into().unwrap());
    assert_eq!(ib, ia.wrapping_add(1));
    assert_ne!(a, b);
}

#[test]
fn cbc_ivs_are_fresh_random_blocks() {
    let mut rng = DeterministicRng::from_u64(6);
    let mut c = SkCipher::new(12, Some(128), 12, &[1; 16], &[2; 32]).unwrap();
    let a = c.seal(b"", b"x", &mut rng).unwrap();
    let b = c.seal(b"", b"x", &mut rng).unwrap();
    assert_ne!(a[..16], b[..16]);
}

#[test]
fn open_rejects_short_unaligned_and_bad_padding_bodies() {
    let aad = [0u8; 32];
    for c in all_ciphers() {
        let min = c.iv_len() + 1 + c.icv_len();
        for n in [0, 1, min - 1] {
            assert!(matches!(c.open(&aad, &vec![0; n]), Err(Error::MalformedSk(_))));
        }
    }
    // CBC: not a multiple of the block size.
    let c = SkCipher::new(12, Some(128), 12, &[1; 16], &[2; 32]).unwrap();
    assert!(matches!(c.open(&aad, &[0; 16 + 17 + 16]), Err(Error::MalformedSk(_))));
    // A correctly authenticated plaintext whose Pad Length (5) exceeds the
    // octets before it, encrypted directly with the AEAD (RFC 7634 nonce =
    // salt | IV).
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let (chacha, v) = rfc7634_cipher();
    let aead = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&hx(&v["key"])).unwrap();
    let iv = hx(&v["iv"]);
    let nonce = [hx(&v["salt"]), iv.clone()].concat();
    for plaintext in [vec![5u8], vec![0, 0, 3]] {
        let ct = aead.encrypt(nonce.as_slice().into(), Payload { msg: &plaintext, aad: &aad }).unwrap();
        let body = [iv.clone(), ct].concat();
        assert_eq!(chacha.open(&aad, &body), Err(Error::InvalidPadding));
    }
    let ok = aead.encrypt(nonce.as_slice().into(), Payload { msg: &[9, 9, 1, 1], aad: &aad }).unwrap();
    assert_eq!(chacha.open(&aad, &[iv, ok].concat()).unwrap(), vec![9, 9], "Pad Length 1 strips one octet of padding");
}

#[test]
fn construction_rejects_wrong_key_lengths_and_integ_combinations() {
    assert!(matches!(SkCipher::new(20, Some(128), 0, &[0; 16], &[]), Err(Error::InvalidKey(_))), "GCM needs the salt");
    assert!(matches!(SkCipher::new(20, Some(128), 12, &[0; 20], &[0; 32]), Err(Error::Unsupported { .. })), "AEAD + INTEG");
    assert!(matches!(SkCipher::new(20, None, 0, &[0; 20], &[]), Err(Error::KeyLengthAttribute { .. })));
    assert!(matches!(SkCipher::new(20, Some(64), 0, &[0; 12], &[]), Err(Error::KeyLengthAttribute { .. })));
    assert!(matches!(SkCipher::new(12, Some(128), 0, &[0; 16], &[]), Err(Error::Unsupported { .. })), "CBC without INTEG");
    assert!(matches!(SkCipher::new(12, Some(128), 12, &[0; 16], &[0; 31]), Err(Error::InvalidKey(_))));
    assert!(matches!(SkCipher::new(28, Some(128), 0, &[0; 36], &[]), Err(Error::KeyLengthAttribute { .. })));
    assert!(matches!(SkCipher::new(13, Some(128), 12, &[0; 16], &[0; 32]), Err(Error::Unsupported { .. })));
    assert_eq!(sk::encr_key_len(20, Some(256)), Ok(36));
    assert_eq!(sk::encr_key_len(28, None), Ok(36));
    assert_eq!(sk::encr_key_len(12, Some(192)), Ok(24));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn arbitrary_bodies_never_panic(idx in 0usize..13, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let ciphers = all_ciphers();
        let c = &ciphers[idx % ciphers.len()];
        prop_assert!(c.open(&[0u8; 32], &body).is_err());
    }
}

#[test]
fn implicit_iv_transforms_have_child_sa_keymat_but_never_protect_ike() {
    // RFC 8750 §3: KEYMAT as RFC 4106 / RFC 7634 (key + 4-octet salt).
    assert_eq!(sk::encr_key_len(ids::encr::AES_GCM_16_IIV, Some(128)).unwrap(), 20);
    assert_eq!(sk::encr_key_len(ids::encr::AES_GCM_16_IIV, Some(256)).unwrap(), 36);
    assert_eq!(sk::encr_key_len(ids::encr::CHACHA20_POLY1305_IIV, None).unwrap(), 36);
    assert!(sk::encr_key_len(ids::encr::AES_GCM_16_IIV, None).is_err());
    // RFC 8750 §4: "Not Allowed" for IKEv2.
    for (id, bits) in [(ids::encr::AES_GCM_16_IIV, Some(256)), (ids::encr::CHACHA20_POLY1305_IIV, None)] {
        assert!(sk::is_implicit_iv(id));
        assert!(matches!(SkCipher::new(id, bits, ids::integ::NONE, &[7u8; 36], &[]), Err(Error::Unsupported { .. })));
    }
    assert!(!sk::is_implicit_iv(ids::encr::AES_GCM_16));
}
