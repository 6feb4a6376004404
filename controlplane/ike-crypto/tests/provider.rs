//! The provider as the protocol core will use it: two endpoints run the
//! RFC 7296 + RFC 9370 key schedule (Curve25519 in IKE_SA_INIT, ML-KEM-768
//! as ADDKE1), protect an IKE_AUTH SK payload, agree on PSK AUTH and Child
//! SA keys; same seed gives the same bytes; the insecure provider keeps
//! the real lengths.

use ike_crypto::keys::{self, ChildSaKeys, IkeSaKeys, KeyLengths};
use ike_crypto::provider::insecure::{InsecureAcceptAnySignature, InsecureNoSecurityProvider};
use ike_crypto::rng::DeterministicRng;
use ike_crypto::sig::{SignatureScheme, Verifier};
use ike_crypto::{ids, CryptoProvider, RustCryptoProvider};
use rand_core::RngCore;

struct Transcript {
    ke_i: Vec<u8>,
    sk_body: Vec<u8>,
    keys_i: (Vec<u8>, Vec<u8>),
    child_i: Vec<u8>,
}

fn run(provider: &dyn CryptoProvider, seed: u64) -> Transcript {
    let mut rng_i = DeterministicRng::from_u64(seed);
    let mut rng_r = DeterministicRng::from_u64(seed + 1000);
    let prf = provider.prf(ids::prf::HMAC_SHA2_256).unwrap();
    let (encr, bits, integ) = (ids::encr::AES_GCM_16, Some(256), ids::integ::NONE);
    let lengths = KeyLengths { sk_a: provider.integ_key_len(integ).unwrap(), sk_e: provider.encr_key_len(encr, bits).unwrap() };
    let (mut ni, mut nr, mut spi_i, mut spi_r) = (vec![0u8; 32], vec![0u8; 32], [0u8; 8], [0u8; 8]);
    rng_i.fill_bytes(&mut ni);
    rng_i.fill_bytes(&mut spi_i);
    rng_r.fill_bytes(&mut nr);
    rng_r.fill_bytes(&mut spi_r);

    // IKE_SA_INIT with Curve25519.
    let ke_i = provider.key_exchange(ids::ke::CURVE25519, &mut rng_i).unwrap();
    let resp = provider.key_exchange_respond(ids::ke::CURVE25519, ke_i.public_key(), &mut rng_r).unwrap();
    let g_ir_i = ke_i.compute_shared(&resp.ke_data).unwrap();
    assert_eq!(g_ir_i, resp.shared);
    let derive = |g_ir: &[u8]| {
        let s = keys::skeyseed(&*prf, &ni, &nr, g_ir).unwrap();
        IkeSaKeys::derive(&*prf, &s, &ni, &nr, &spi_i, &spi_r, lengths).unwrap()
    };
    let (k0_i, k0_r) = (derive(&g_ir_i), derive(&resp.shared));

    // IKE_INTERMEDIATE with ML-KEM-768 (RFC 9370 §2.2.2); the IKE
    // initiator holds the KEM key pair.
    let kem_i = provider.key_exchange(ids::ke::ML_KEM_768, &mut rng_i).unwrap();
    let kem_r = provider.key_exchange_respond(ids::ke::ML_KEM_768, kem_i.public_key(), &mut rng_r).unwrap();
    let sk1_i = kem_i.compute_shared(&kem_r.ke_data).unwrap();
    let update = |prev: &IkeSaKeys, sk1: &[u8]| {
        let s = keys::skeyseed_additional_ke(&*prf, &prev.sk_d, sk1, &ni, &nr).unwrap();
        IkeSaKeys::derive(&*prf, &s, &ni, &nr, &spi_i, &spi_r, lengths).unwrap()
    };
    let (k1_i, k1_r) = (update(&k0_i, &sk1_i), update(&k0_r, &kem_r.shared));
    assert_eq!(k1_i.sk_ei, k1_r.sk_ei);
    assert_ne!(k1_i.sk_ei, k0_i.sk_ei);

    // IKE_AUTH: PSK AUTH over the signed octets, protected with SK_ei.
    let maced = keys::maced_id(&*prf, &k1_i.sk_pi, b"\x02\x00\x00\x00gw.esprit.test").unwrap();
    let octets = keys::signed_octets(b"IKE_SA_INIT request bytes", &nr, &maced, Some(b"IntAuth"));
    let auth_i = keys::psk_auth(&*prf, b"a pre-shared key", &octets).unwrap();
    let maced_r = keys::maced_id(&*prf, &k1_r.sk_pi, b"\x02\x00\x00\x00gw.esprit.test").unwrap();
    let octets_r = keys::signed_octets(b"IKE_SA_INIT request bytes", &nr, &maced_r, Some(b"IntAuth"));
    assert_eq!(auth_i, keys::psk_auth(&*prf, b"a pre-shared key", &octets_r).unwrap());

    let mut seal = provider.sk_protection(encr, bits, integ, &k1_i.sk_ei, &k1_i.sk_ai).unwrap();
    let open = provider.sk_protection(encr, bits, integ, &k1_r.sk_ei, &k1_r.sk_ai).unwrap();
    let inner = [b"IDi AUTH SAi2 TSi TSr".as_slice(), &auth_i].concat();
    let aad = [0xAAu8; 32];
    let body = seal.seal(&aad, &inner, &mut rng_i).unwrap();
    assert_eq!(body.len(), seal.sealed_len(inner.len()));
    assert_eq!(open.open(&aad, &body).unwrap(), inner);

    // The IKE_AUTH Child SA: KEYMAT from the final SK_d, IKE_SA_INIT nonces.
    let (e, a) = (provider.encr_key_len(ids::encr::AES_GCM_16, Some(128)).unwrap(), 0);
    let km_i = keys::child_sa_keymat(&*prf, &k1_i.sk_d, None, &ni, &nr, &[], ChildSaKeys::keymat_len(e, a)).unwrap();
    let km_r = keys::child_sa_keymat(&*prf, &k1_r.sk_d, None, &ni, &nr, &[], ChildSaKeys::keymat_len(e, a)).unwrap();
    assert_eq!(km_i, km_r);
    let child = ChildSaKeys::split(&km_i, e, a).unwrap();
    assert_eq!(child.encr_i.len(), 20);

    Transcript { ke_i: ke_i.public_key().to_vec(), sk_body: body, keys_i: (k1_i.sk_ei.to_vec(), k1_i.sk_er.to_vec()), child_i: km_i.to_vec() }
}

#[test]
fn two_endpoints_agree_through_ike_sa_init_intermediate_mlkem_and_ike_auth() {
    let t = run(&RustCryptoProvider, 1);
    assert_eq!(t.ke_i.len(), 32);
    assert_eq!(t.keys_i.0.len(), 36);
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let (a, b, c) = (run(&RustCryptoProvider, 7), run(&RustCryptoProvider, 7), run(&RustCryptoProvider, 8));
    assert_eq!((&a.ke_i, &a.sk_body, &a.keys_i, &a.child_i), (&b.ke_i, &b.sk_body, &b.keys_i, &b.child_i));
    assert_ne!(a.sk_body, c.sk_body);
    assert_ne!(a.child_i, c.child_i);
}

#[test]
fn provider_reports_supported_methods_and_key_lengths() {
    let p = RustCryptoProvider;
    for m in [14u16, 19, 20, 21, 31, 35, 36, 37] {
        assert!(p.supports_key_exchange(m));
    }
    assert!(!p.supports_key_exchange(2));
    assert_eq!(p.integ_key_len(0).unwrap(), 0);
    assert_eq!(p.integ_key_len(14).unwrap(), 64);
    assert_eq!(p.encr_key_len(20, Some(128)).unwrap(), 20);
    assert!(p.prf(2).is_err());
    assert!(p.sk_protection(12, Some(128), 12, &[0; 16], &[0; 32]).is_ok());
}

#[test]
fn insecure_provider_keeps_real_lengths_and_runs_the_same_flow() {
    let t = run(&InsecureNoSecurityProvider, 3);
    assert_eq!(t.ke_i.len(), 32);
    let p = InsecureNoSecurityProvider;
    let mut rng = DeterministicRng::from_u64(0);
    assert_eq!(p.key_exchange(36, &mut rng).unwrap().public_key().len(), 1184);
    assert_eq!(p.key_exchange_respond(36, &[], &mut rng).unwrap().ke_data.len(), 1088);
    let sk = p.sk_protection(12, Some(128), 13, &[], &[]).unwrap();
    assert_eq!((sk.iv_len(), sk.icv_len()), (16, 24));
    assert_eq!(sk.sealed_len(10) % 16, (16 + 24) % 16);
    InsecureAcceptAnySignature.verify(SignatureScheme::Ed25519, b"m", b"not a signature").unwrap();
}
