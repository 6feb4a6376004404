//! AUTH signatures: RFC 8032 §7.1 TEST 1, RFC 7427 AlgorithmIdentifiers,
//! signatures made by OpenSSL (an independent implementation) verified
//! here, and sign-then-verify with OpenSSL-generated keys.

mod common;
use common::{h, hx, json, testdata};

use ike_crypto::rng::DeterministicRng;
use ike_crypto::sig::{self, PrivateKey, PublicKey, SignatureScheme, Signer, Verifier};
use ike_crypto::Error;
use proptest::prelude::*;

fn pki(name: &str) -> std::path::PathBuf {
    testdata("pki").join(name)
}

fn message() -> Vec<u8> {
    std::fs::read(pki("message.bin")).unwrap()
}

#[test]
fn rfc8032_ed25519_test_1() {
    let v = json("rfc8032_ed25519.json");
    let key = PrivateKey::ed25519_from_secret(&hx(&v["secret_key"])).unwrap();
    let sig = key.sign(SignatureScheme::Ed25519, &hx(&v["message"]), &mut DeterministicRng::from_u64(0)).unwrap();
    assert_eq!(sig, hx(&v["signature"]));
    let public = PublicKey::ed25519_from_bytes(&hx(&v["public_key"])).unwrap();
    assert_eq!(key.public_key(), public);
    public.verify(SignatureScheme::Ed25519, b"", &sig).unwrap();
    assert_eq!(public.verify(SignatureScheme::Ed25519, b"x", &sig), Err(Error::BadSignature));
}

#[test]
fn rfc7427_algorithm_identifiers_match_the_appendix_and_round_trip() {
    let v = json("rfc7427_algorithm_identifiers.json");
    let blobs = v["blobs"].as_object().unwrap();
    assert_eq!(blobs.len(), SignatureScheme::ALL.len());
    for scheme in SignatureScheme::ALL {
        let want = hx(&blobs[&format!("{scheme:?}")]);
        assert_eq!(scheme.algorithm_identifier(), &want[..], "{scheme:?}");
        assert_eq!(SignatureScheme::from_algorithm_identifier(&want), Some(scheme));
        // Each blob is one well-formed DER AlgorithmIdentifier.
        let alg = spki::AlgorithmIdentifierOwned::try_from(&want[..]).unwrap();
        let oid = alg.oid.to_string();
        let expected_oid = match scheme {
            SignatureScheme::Ed25519 => "1.3.101.112",
            SignatureScheme::EcdsaP256Sha256 => "1.2.840.10045.4.3.2",
            SignatureScheme::EcdsaP384Sha384 => "1.2.840.10045.4.3.3",
            SignatureScheme::EcdsaSha512 => "1.2.840.10045.4.3.4",
            SignatureScheme::RsaPkcs1Sha256 => "1.2.840.113549.1.1.11",
            SignatureScheme::RsaPkcs1Sha384 => "1.2.840.113549.1.1.12",
            SignatureScheme::RsaPkcs1Sha512 => "1.2.840.113549.1.1.13",
            _ => "1.2.840.113549.1.1.10",
        };
        assert_eq!(oid, expected_oid, "{scheme:?}");
    }
    assert_eq!(SignatureScheme::from_algorithm_identifier(&hx(&blobs["RsaPkcs1Sha256"])[..14]), None);
    assert_eq!(SignatureScheme::Ed25519.hash_algorithm_id(), 5);
    assert_eq!(SignatureScheme::RsaPssSha384.hash_algorithm_id(), 3);
}

#[test]
fn rfc7427_auth_data_round_trips_and_rejects_garbage() {
    let data = sig::auth_data(SignatureScheme::RsaPkcs1Sha256, &[1, 2, 3]);
    assert_eq!(&data[..16], &hx(&json("rfc7427_algorithm_identifiers.json")["blobs"]["RsaPkcs1Sha256"]).iter().fold(vec![15u8], |mut v, b| { v.push(*b); v })[..]);
    assert_eq!(sig::parse_auth_data(&data).unwrap(), (SignatureScheme::RsaPkcs1Sha256, &[1u8, 2, 3][..]));
    assert!(sig::parse_auth_data(&[]).is_err());
    assert!(sig::parse_auth_data(&[200, 1, 2]).is_err());
    assert!(sig::parse_auth_data(&[3, 1, 2, 3, 4]).is_err());
}

fn openssl_signed(file: &str, scheme: SignatureScheme, public: &PublicKey) {
    let sig = std::fs::read(pki(file)).unwrap();
    public.verify(scheme, &message(), &sig).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut other = message();
    other[0] ^= 1;
    assert_eq!(public.verify(scheme, &other, &sig), Err(Error::BadSignature), "{file}");
    let mut bad = sig.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(public.verify(scheme, &message(), &bad).is_err(), "{file}");
}

#[test]
fn verifies_signatures_made_by_openssl_dgst() {
    let rsa = PrivateKey::load(pki("rsa.key")).unwrap().public_key();
    openssl_signed("rsa-pkcs1-sha256.sig", SignatureScheme::RsaPkcs1Sha256, &rsa);
    openssl_signed("rsa-pkcs1-sha384.sig", SignatureScheme::RsaPkcs1Sha384, &rsa);
    openssl_signed("rsa-pss-sha256.sig", SignatureScheme::RsaPssSha256, &rsa);
    openssl_signed("rsa-pss-sha512.sig", SignatureScheme::RsaPssSha512, &rsa);
    // The ECDSA and Ed25519 public keys come from the OpenSSL certificates
    // and key files, not from our own derivation.
    let leaf = ike_crypto::cert::Certificate::load(pki("leaf.pem")).unwrap().public_key().unwrap();
    openssl_signed("ecdsa-p256-sha256.sig", SignatureScheme::EcdsaP256Sha256, &leaf);
    let inter = ike_crypto::cert::Certificate::load(pki("intermediate.pem")).unwrap().public_key().unwrap();
    openssl_signed("ecdsa-p384-sha384.sig", SignatureScheme::EcdsaP384Sha384, &inter);
    // The AlgorithmIdentifier names the hash, the key the curve.
    openssl_signed("ecdsa-p256-sha512.sig", SignatureScheme::EcdsaSha512, &leaf);
    openssl_signed("ecdsa-p256-sha384.sig", SignatureScheme::EcdsaP384Sha384, &leaf);
    let p512 = std::fs::read(pki("ecdsa-p256-sha512.sig")).unwrap();
    assert_eq!(leaf.verify(SignatureScheme::EcdsaP256Sha256, &message(), &p512), Err(Error::BadSignature), "hash must match");
    let ed = PrivateKey::load(pki("ed25519.key")).unwrap().public_key();
    openssl_signed("ed25519.sig", SignatureScheme::Ed25519, &ed);
}

#[test]
fn pkcs1_v15_signatures_are_byte_identical_to_openssl() {
    // PKCS#1 v1.5 is deterministic, so our signature must equal OpenSSL's.
    let key = PrivateKey::load(pki("rsa.key.der")).unwrap();
    let mut rng = DeterministicRng::from_u64(1);
    let ours = key.sign(SignatureScheme::RsaPkcs1Sha256, &message(), &mut rng).unwrap();
    assert_eq!(ours, std::fs::read(pki("rsa-pkcs1-sha256.sig")).unwrap());
    let ed = PrivateKey::load(pki("ed25519.key")).unwrap();
    assert_eq!(ed.sign(SignatureScheme::Ed25519, &message(), &mut rng).unwrap(), std::fs::read(pki("ed25519.sig")).unwrap());
}

#[test]
fn sign_then_verify_with_openssl_generated_keys() {
    let mut rng = DeterministicRng::from_u64(2);
    let keys = [
        PrivateKey::load(pki("rsa.key")).unwrap(),
        PrivateKey::load(pki("leaf.key")).unwrap(),
        PrivateKey::load(pki("intermediate.key")).unwrap(),
        PrivateKey::load(pki("ed25519.key")).unwrap(),
    ];
    let mut n = 0;
    for key in &keys {
        let public = key.public_key();
        for scheme in key.schemes() {
            let s = key.sign(scheme, &message(), &mut rng).unwrap();
            public.verify(scheme, &message(), &s).unwrap();
            assert_eq!(public.verify(scheme, b"other", &s), Err(Error::BadSignature), "{scheme:?}");
            n += 1;
        }
        for scheme in SignatureScheme::ALL.into_iter().filter(|s| !key.schemes().contains(s)) {
            assert_eq!(key.sign(scheme, b"m", &mut rng), Err(Error::SchemeKeyMismatch));
            // ECDSA keys take every ECDSA hash (the curve is the key's).
            let ecdsa = |s: SignatureScheme| matches!(s, SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 | SignatureScheme::EcdsaSha512);
            let want = if ecdsa(scheme) && key.schemes().iter().copied().any(ecdsa) { Error::BadSignature } else { Error::SchemeKeyMismatch };
            assert_eq!(public.verify(scheme, b"m", &[0; 64]), Err(want), "{scheme:?}");
        }
    }
    assert_eq!(n, 9);
}

#[test]
fn rfc4754_fixed_ecdsa_encoding_converts_both_ways() {
    let leaf = ike_crypto::cert::Certificate::load(pki("leaf.pem")).unwrap().public_key().unwrap();
    let der = std::fs::read(pki("ecdsa-p256-sha256.sig")).unwrap();
    let fixed = sig::ecdsa_der_to_fixed(SignatureScheme::EcdsaP256Sha256, &der).unwrap();
    assert_eq!(fixed.len(), 64);
    let back = sig::ecdsa_fixed_to_der(SignatureScheme::EcdsaP256Sha256, &fixed).unwrap();
    leaf.verify(SignatureScheme::EcdsaP256Sha256, &message(), &back).unwrap();
    let p384 = std::fs::read(pki("ecdsa-p384-sha384.sig")).unwrap();
    assert_eq!(sig::ecdsa_der_to_fixed(SignatureScheme::EcdsaP384Sha384, &p384).unwrap().len(), 96);
    assert!(sig::ecdsa_fixed_to_der(SignatureScheme::EcdsaP256Sha256, &fixed[..63]).is_err());
    assert!(sig::ecdsa_der_to_fixed(SignatureScheme::Ed25519, &der).is_err());
}

#[test]
fn key_loading_rejects_garbage_and_reports_missing_files() {
    assert!(matches!(PrivateKey::from_pkcs8(b"not a key"), Err(Error::Decode(_))));
    assert!(matches!(PrivateKey::from_pkcs8(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), Err(Error::Decode(_))));
    let cert_pem = std::fs::read(pki("leaf.pem")).unwrap();
    assert!(matches!(PrivateKey::from_pkcs8(&cert_pem), Err(Error::Decode(_))), "a certificate is not a key");
    assert!(matches!(PrivateKey::load(pki("does-not-exist.pem")), Err(Error::Io { .. })));
    assert!(PublicKey::from_spki_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn arbitrary_signatures_and_auth_data_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), idx in 0usize..SignatureScheme::ALL.len()) {
        let scheme = SignatureScheme::ALL[idx];
        let ed = PublicKey::ed25519_from_bytes(&hx(&json("rfc8032_ed25519.json")["public_key"])).unwrap();
        let _ = ed.verify(scheme, b"m", &data);
        let _ = sig::parse_auth_data(&data);
        let _ = PublicKey::from_spki_der(&data);
        let _ = PrivateKey::from_pkcs8(&data);
    }
}

/// ECDSA P-256 signatures are RFC 6979 deterministic (DESIGN.md §5: a
/// seed gives a byte-identical session): RFC 6979 A.2.5, P-256 with
/// SHA-256, message "sample", equals the RFC's (r, s) whichever crate signs.
#[test]
fn ecdsa_p256_signs_the_rfc6979_a_2_5_vector() {
    use p256::pkcs8::EncodePrivateKey;
    let x = h("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721");
    let der = p256::SecretKey::from_slice(&x).unwrap().to_pkcs8_der().unwrap();
    let key = PrivateKey::from_pkcs8_der(der.as_bytes()).unwrap();
    let sig = key.sign(SignatureScheme::EcdsaP256Sha256, b"sample", &mut DeterministicRng::from_u64(9)).unwrap();
    let fixed = sig::ecdsa_der_to_fixed(SignatureScheme::EcdsaP256Sha256, &sig).unwrap();
    let want = [
        "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
        "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8",
    ]
    .concat();
    assert_eq!(fixed, h(&want));
    key.public_key().verify(SignatureScheme::EcdsaP256Sha256, b"sample", &sig).unwrap();
}
