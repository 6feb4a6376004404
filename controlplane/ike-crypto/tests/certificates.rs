//! Certificate chain validation with a CA + intermediate + leaf made by
//! `openssl req/x509` (testdata/pki/make.sh), and its rejections.

mod common;
use common::testdata;

use ike_crypto::cert::{validate_chain, CertError, Certificate};
use ike_crypto::sig::{PrivateKey, PublicKey};
use ike_crypto::Error;

fn cert(name: &str) -> Certificate {
    Certificate::load(testdata("pki").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// 2027-06-01T00:00:00Z: inside the 20-year validity of the test PKI made
/// on 2026-11-28, after the one-day short-leaf expired. The clock is
/// injected; the wall clock is never read.
const NOW: u64 = 1_811_808_000;
/// 2020-01-01T00:00:00Z: before every certificate was issued.
const BEFORE_ISSUE: u64 = 1_577_836_800;

#[test]
fn valid_chain_returns_the_leaf_key() {
    let leaf = cert("leaf.pem");
    let key = validate_chain(&leaf, &[cert("intermediate.pem")], &[cert("root.pem")], NOW).unwrap();
    let own = PrivateKey::load(testdata("pki").join("leaf.key")).unwrap().public_key();
    assert_eq!(key, own);
    assert!(matches!(key, PublicKey::EcdsaP256(_)));
    // RFC 4514 string form: the last RDN first.
    assert_eq!(leaf.subject(), "CN=gw.esprit.test,O=esprit test");
}

#[test]
fn intermediates_may_come_in_any_order_with_extra_certificates() {
    let extra = [cert("other-root.pem"), cert("leaf.pem"), cert("intermediate.pem")];
    validate_chain(&cert("leaf.pem"), &extra, &[cert("other-root.pem"), cert("root.pem")], NOW).unwrap();
}

#[test]
fn rejects_an_expired_and_a_not_yet_valid_chain() {
    let (inter, root) = (cert("intermediate.pem"), cert("root.pem"));
    let short = cert("short-leaf.pem");
    let (nb, na) = short.validity_unix_secs();
    assert_eq!(na - nb, 86_400);
    validate_chain(&short, std::slice::from_ref(&inter), std::slice::from_ref(&root), nb + 3600).unwrap();
    assert!(matches!(validate_chain(&short, std::slice::from_ref(&inter), std::slice::from_ref(&root), NOW), Err(CertError::NotValidAtTime(_))));
    assert!(matches!(validate_chain(&cert("leaf.pem"), &[inter], &[root], BEFORE_ISSUE), Err(CertError::NotValidAtTime(_))));
}

#[test]
fn rejects_a_leaf_from_the_wrong_issuer() {
    let wrong = cert("wrong-issuer-leaf.pem");
    // Same issuer name as our intermediate, different key: only the
    // signature check can tell them apart.
    assert!(matches!(
        validate_chain(&wrong, &[cert("intermediate.pem")], &[cert("root.pem")], NOW),
        Err(CertError::BadSignature(_))
    ));
    // Without our intermediate no certificate has the issuer's name.
    let e = validate_chain(&wrong, &[], &[cert("root.pem")], NOW);
    assert!(matches!(e, Err(CertError::IssuerNotFound(_))), "{e:?}");
    // It does chain to the CA that really issued it.
    validate_chain(&wrong, &[], &[cert("other-root.pem")], NOW).unwrap();
}

#[test]
fn rejects_a_bad_signature() {
    assert!(matches!(
        validate_chain(&cert("leaf-bad-signature.pem"), &[cert("intermediate.pem")], &[cert("root.pem")], NOW),
        Err(CertError::BadSignature(_))
    ));
}

#[test]
fn rejects_a_certificate_issued_by_a_non_ca() {
    let e = validate_chain(&cert("not-ca-leaf.pem"), &[cert("leaf.pem"), cert("intermediate.pem")], &[cert("root.pem")], NOW);
    assert!(matches!(e, Err(CertError::NotCa(ref s)) if s.contains("gw.esprit.test")), "{e:?}");
}

#[test]
fn rejects_a_missing_intermediate_and_an_untrusted_root() {
    assert!(matches!(validate_chain(&cert("leaf.pem"), &[], &[cert("root.pem")], NOW), Err(CertError::IssuerNotFound(_))));
    assert!(matches!(
        validate_chain(&cert("leaf.pem"), &[cert("intermediate.pem")], &[cert("other-root.pem")], NOW),
        Err(CertError::IssuerNotFound(_))
    ));
}

#[test]
fn the_root_validates_as_its_own_anchor_and_errors_convert() {
    let root = cert("root.pem");
    validate_chain(&root, &[], std::slice::from_ref(&root), NOW).unwrap();
    let e: Error = CertError::TooLong.into();
    assert!(matches!(e, Error::Certificate(CertError::TooLong)));
}

#[test]
fn certificate_loading_accepts_pem_and_der_and_rejects_garbage() {
    let leaf = cert("leaf.pem");
    let again = Certificate::from_der(leaf.der()).unwrap();
    assert_eq!(again, leaf);
    assert!(Certificate::from_der(&leaf.der()[..leaf.der().len() - 1]).is_err());
    assert!(Certificate::from_pem_or_der(b"garbage").is_err());
    assert!(matches!(Certificate::load(testdata("pki").join("missing.pem")), Err(Error::Io { .. })));
    for n in [0usize, 1, 2, 10, 100] {
        assert!(Certificate::from_der(&leaf.der()[..n]).is_err(), "prefix {n}");
    }
}
