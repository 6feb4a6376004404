//! Key exchange methods against RFC 5903, RFC 7748, RFC 8031, FIPS 203
//! (NIST ACVP) vectors and an independent MODP computation; every malformed
//! peer value is rejected with an error, never a panic.

mod common;
use common::{h, hx, json};

use ike_crypto::ke;
use ike_crypto::rng::DeterministicRng;
use ike_crypto::{ids, Error};
use proptest::prelude::*;

fn group_vector(id: u16) -> serde_json::Value {
    let v = json("rfc5903_ecp.json");
    v["groups"].as_array().unwrap().iter().find(|g| g["id"] == id).unwrap().clone()
}

fn rfc5903_check(id: u16) {
    let g = group_vector(id);
    let gi = [hx(&g["gix"]), hx(&g["giy"])].concat();
    let gr = [hx(&g["grx"]), hx(&g["gry"])].concat();
    let initiator = ke::dh_from_private_key(id, &hx(&g["i"])).unwrap();
    let responder = ke::dh_from_private_key(id, &hx(&g["r"])).unwrap();
    // RFC 5903 §7: KE data is x | y with no 0x04 prefix.
    assert_eq!(initiator.public_key(), &gi[..], "g^i");
    assert_eq!(responder.public_key(), &gr[..], "g^r");
    assert_eq!(&initiator.compute_shared(&gr).unwrap()[..], &hx(&g["girx"])[..], "initiator girx");
    assert_eq!(&responder.compute_shared(&gi).unwrap()[..], &hx(&g["girx"])[..], "responder girx");
}

#[test]
fn rfc5903_ecp256_shared_secret() {
    rfc5903_check(ids::ke::ECP_256);
}

#[test]
fn rfc5903_ecp384_shared_secret() {
    rfc5903_check(ids::ke::ECP_384);
}

#[test]
fn rfc5903_ecp521_shared_secret() {
    rfc5903_check(ids::ke::ECP_521);
}

#[test]
fn ecp_rejects_bad_lengths_sec1_prefix_and_points_off_the_curve() {
    for id in [ids::ke::ECP_256, ids::ke::ECP_384, ids::ke::ECP_521] {
        let g = group_vector(id);
        let gr = [hx(&g["grx"]), hx(&g["gry"])].concat();
        let ke = ke::dh_from_private_key(id, &hx(&g["i"])).unwrap();
        let n = gr.len();
        for bad_len in [0, 1, n - 1, n + 1, 2 * n] {
            let v = vec![0x11; bad_len];
            assert!(matches!(ke.compute_shared(&v), Err(Error::InvalidPeerPublic(_))), "group {id} len {bad_len}");
        }
        let mut with_prefix = vec![0x04];
        with_prefix.extend_from_slice(&gr);
        assert!(matches!(ke.compute_shared(&with_prefix), Err(Error::InvalidPeerPublic(_))));
        let mut off_curve = gr.clone();
        *off_curve.last_mut().unwrap() ^= 1;
        assert!(matches!(ke.compute_shared(&off_curve), Err(Error::InvalidPeerPublic(_))), "group {id} off curve");
        assert!(matches!(ke.compute_shared(&vec![0u8; n]), Err(Error::InvalidPeerPublic(_))), "group {id} (0,0)");
        assert!(matches!(ke.compute_shared(&vec![0xffu8; n]), Err(Error::InvalidPeerPublic(_))), "group {id} all ones");
        assert!(matches!(ke::respond(id, &off_curve, &mut DeterministicRng::from_u64(1)), Err(Error::InvalidPeerPublic(_))));
    }
}

#[test]
fn rfc7748_x25519_function_vectors() {
    let v = json("rfc7748_rfc8031_x25519.json");
    for c in v["function"].as_array().unwrap() {
        let k: [u8; 32] = hx(&c["k"]).try_into().unwrap();
        let u: [u8; 32] = hx(&c["u"]).try_into().unwrap();
        assert_eq!(ke::x25519(k, u).to_vec(), hx(&c["out"]));
    }
}

#[test]
fn rfc7748_x25519_iterated_1_and_1000() {
    let v = json("rfc7748_rfc8031_x25519.json");
    let mut k: [u8; 32] = hx(&v["iterated"]["start"]).try_into().unwrap();
    let mut u = k;
    for i in 1..=1000 {
        let out = ke::x25519(k, u);
        u = k;
        k = out;
        if i == 1 {
            assert_eq!(k.to_vec(), hx(&v["iterated"]["after_1"]));
        }
    }
    assert_eq!(k.to_vec(), hx(&v["iterated"]["after_1000"]));
}

#[test]
fn rfc7748_section_6_1_and_rfc8031_curve25519_key_exchange() {
    let v = json("rfc7748_rfc8031_x25519.json");
    for c in v["dh"].as_array().unwrap() {
        let i = ke::dh_from_private_key(ids::ke::CURVE25519, &hx(&c["priv_i"])).unwrap();
        let r = ke::dh_from_private_key(ids::ke::CURVE25519, &hx(&c["priv_r"])).unwrap();
        assert_eq!(i.public_key(), &hx(&c["pub_i"])[..], "{}", c["source"]);
        assert_eq!(r.public_key(), &hx(&c["pub_r"])[..], "{}", c["source"]);
        assert_eq!(&i.compute_shared(&hx(&c["pub_r"])).unwrap()[..], &hx(&c["shared"])[..]);
        assert_eq!(&r.compute_shared(&hx(&c["pub_i"])).unwrap()[..], &hx(&c["shared"])[..]);
    }
}

proptest! {
    /// Our public value comes from the fixed-base table; it must be the
    /// ladder's X25519(k, 9) (RFC 7748 §6.1) for every scalar, clamping
    /// included (the top and low bits of k are arbitrary here).
    #[test]
    fn curve25519_public_value_is_x25519_of_the_basepoint(k in any::<[u8; 32]>()) {
        let mut nine = [0u8; 32];
        nine[0] = 9;
        let ke = ke::dh_from_private_key(ids::ke::CURVE25519, &k).unwrap();
        prop_assert_eq!(ke.public_key(), &ke::x25519(k, nine)[..]);
    }
}

#[test]
fn curve25519_rejects_bad_lengths_and_low_order_points() {
    let ke = ke::initiate(ids::ke::CURVE25519, &mut DeterministicRng::from_u64(3)).unwrap();
    for n in [0usize, 31, 33, 64] {
        assert!(matches!(ke.compute_shared(&vec![9; n]), Err(Error::InvalidPeerPublic(_))));
    }
    // u = 0 and u = 1 are low-order points: X25519 gives all zeros (RFC 8031 §2).
    let mut one = [0u8; 32];
    one[0] = 1;
    assert!(matches!(ke.compute_shared(&[0u8; 32]), Err(Error::InvalidPeerPublic(_))));
    assert!(matches!(ke.compute_shared(&one), Err(Error::InvalidPeerPublic(_))));
    // RFC 8031 §2: the top bit is masked, so a value with it set is accepted
    // and equals the value with it cleared.
    let peer = ke::initiate(ids::ke::CURVE25519, &mut DeterministicRng::from_u64(4)).unwrap();
    let mut high = peer.public_key().to_vec();
    high[31] |= 0x80;
    assert_eq!(ke.compute_shared(&high).unwrap(), ke.compute_shared(peer.public_key()).unwrap());
}

#[test]
fn modp2048_matches_independent_python_values() {
    let v = json("modp2048_reference.json");
    let x = ke::dh_from_private_key(ids::ke::MODP_2048, &hx(&v["x"])).unwrap();
    let y = ke::dh_from_private_key(ids::ke::MODP_2048, &hx(&v["y"])).unwrap();
    assert_eq!(x.public_key(), &hx(&v["g_x"])[..]);
    assert_eq!(y.public_key(), &hx(&v["g_y"])[..]);
    assert_eq!(&x.compute_shared(&hx(&v["g_y"])).unwrap()[..], &hx(&v["g_xy"])[..]);
    assert_eq!(&y.compute_shared(&hx(&v["g_x"])).unwrap()[..], &hx(&v["g_xy"])[..]);
}

#[test]
fn modp2048_rejects_out_of_range_and_bad_length_values() {
    let v = json("modp2048_reference.json");
    let p = hx(&v["p"]);
    let ke = ke::initiate(ids::ke::MODP_2048, &mut DeterministicRng::from_u64(5)).unwrap();
    let be = |n: u8| {
        let mut b = vec![0u8; 256];
        b[255] = n;
        b
    };
    let mut p_minus_1 = p.clone();
    p_minus_1[255] -= 1;
    // p ends in 0xff..ff, so p + 1 carries: p with its lowest 0xff byte
    // cleared and the next one bumped is simply "some value above p".
    let mut above_p = p.clone();
    above_p[128] = 0xff;
    assert!(above_p > p);
    for bad in [be(0), be(1), p_minus_1, p.clone(), above_p, vec![0xff; 256]] {
        assert!(matches!(ke.compute_shared(&bad), Err(Error::InvalidPeerPublic(_))));
    }
    assert!(ke.compute_shared(&be(2)).is_ok(), "2 is a valid element");
    for n in [0usize, 255, 257] {
        assert!(matches!(ke.compute_shared(&vec![2; n]), Err(Error::InvalidPeerPublic(_))));
    }
}

fn mlkem_id(name: &str) -> u16 {
    match name {
        "ML-KEM-512" => ids::ke::ML_KEM_512,
        "ML-KEM-768" => ids::ke::ML_KEM_768,
        "ML-KEM-1024" => ids::ke::ML_KEM_1024,
        other => panic!("unknown parameter set {other}"),
    }
}

#[test]
fn fips203_acvp_mlkem_keygen_encaps_decaps_vectors() {
    let v = json("mlkem_fips203_acvp.json");
    let mut n = 0;
    for c in v["keyGen"].as_array().unwrap() {
        let id = mlkem_id(c["parameterSet"].as_str().unwrap());
        let kem = ke::mlkem_from_seed(id, &hx(&c["d"]), &hx(&c["z"])).unwrap();
        assert_eq!(kem.public_key(), &hx(&c["ek"])[..], "keyGen {}", c["parameterSet"]);
        n += 1;
    }
    for c in v["encapsulation"].as_array().unwrap() {
        let id = mlkem_id(c["parameterSet"].as_str().unwrap());
        let out = ke::mlkem_encapsulate_with(id, &hx(&c["ek"]), &hx(&c["m"])).unwrap();
        assert_eq!(out.ke_data, hx(&c["c"]), "encaps ct {}", c["parameterSet"]);
        assert_eq!(&out.shared[..], &hx(&c["k"])[..], "encaps k {}", c["parameterSet"]);
        n += 1;
    }
    for c in v["decapsulation"].as_array().unwrap() {
        let id = mlkem_id(c["parameterSet"].as_str().unwrap());
        let k = ke::mlkem_decapsulate_with(id, &hx(&c["dk"]), &hx(&c["c"])).unwrap();
        assert_eq!(&k[..], &hx(&c["k"])[..], "decaps {}", c["parameterSet"]);
        n += 1;
    }
    assert_eq!(n, 9, "one keyGen, encaps and decaps case per parameter set");
}

#[test]
fn every_method_round_trips_between_initiator_and_responder() {
    let sizes = [
        (ids::ke::MODP_2048, 256, 256, 256),
        (ids::ke::ECP_256, 64, 64, 32),
        (ids::ke::ECP_384, 96, 96, 48),
        (ids::ke::ECP_521, 132, 132, 66),
        (ids::ke::CURVE25519, 32, 32, 32),
        (ids::ke::ML_KEM_512, 800, 768, 32),
        (ids::ke::ML_KEM_768, 1184, 1088, 32),
        (ids::ke::ML_KEM_1024, 1568, 1568, 32),
    ];
    assert_eq!(sizes.len(), ke::SUPPORTED.len());
    let mut rng = DeterministicRng::from_u64(42);
    for (id, init_len, resp_len, ss_len) in sizes {
        let i = ke::initiate(id, &mut rng).unwrap();
        assert_eq!(i.method(), id);
        assert_eq!(i.public_key().len(), init_len, "method {id} initiator KE data");
        let r = ke::respond(id, i.public_key(), &mut rng).unwrap();
        assert_eq!(r.ke_data.len(), resp_len, "method {id} responder KE data");
        let s = i.compute_shared(&r.ke_data).unwrap();
        assert_eq!(s.len(), ss_len);
        assert_eq!(s, r.shared, "method {id} shared secrets agree");
    }
}

#[test]
fn same_seed_gives_same_key_exchange_bytes() {
    for &id in ke::SUPPORTED {
        let a = ke::initiate(id, &mut DeterministicRng::from_u64(9)).unwrap();
        let b = ke::initiate(id, &mut DeterministicRng::from_u64(9)).unwrap();
        assert_eq!(a.public_key(), b.public_key(), "method {id}");
    }
}

#[test]
fn mlkem_rejects_bad_lengths_and_encapsulation_keys_failing_the_modulus_check() {
    let mut rng = DeterministicRng::from_u64(11);
    for (id, ek_len, ct_len) in [(35u16, 800usize, 768usize), (36, 1184, 1088), (37, 1568, 1568)] {
        let i = ke::initiate(id, &mut rng).unwrap();
        for n in [0, ek_len - 1, ek_len + 1] {
            assert!(matches!(ke::respond(id, &vec![0; n], &mut rng), Err(Error::InvalidPeerPublic(_))));
        }
        for n in [0, ct_len - 1, ct_len + 1] {
            assert!(matches!(i.compute_shared(&vec![0; n]), Err(Error::InvalidPeerPublic(_))));
        }
        // First coefficient = 0xfff >= q = 3329.
        let mut ek = i.public_key().to_vec();
        ek[0] = 0xff;
        ek[1] |= 0x0f;
        assert!(matches!(ke::respond(id, &ek, &mut rng), Err(Error::InvalidPeerPublic(_))), "method {id}");
        // A tampered ciphertext decapsulates (implicit rejection) to another key.
        let r = ke::respond(id, i.public_key(), &mut rng).unwrap();
        let mut ct = r.ke_data.clone();
        ct[0] ^= 1;
        assert_ne!(i.compute_shared(&ct).unwrap(), r.shared);
    }
}

#[test]
fn unknown_methods_are_unsupported() {
    let mut rng = DeterministicRng::from_u64(1);
    assert!(matches!(ke::initiate(2, &mut rng), Err(Error::Unsupported { .. })));
    assert!(matches!(ke::respond(32, &[0; 56], &mut rng), Err(Error::Unsupported { .. })));
    assert!(matches!(ke::dh_from_private_key(ids::ke::ML_KEM_768, &[0; 32]), Err(Error::Unsupported { .. })));
    assert!(ke::dh_from_private_key(ids::ke::ECP_256, &[0; 32]).is_err(), "zero scalar");
    assert!(ke::dh_from_private_key(ids::ke::ECP_256, &h("01")).is_err(), "short scalar");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_peer_values_never_panic(idx in 0usize..8, data in proptest::collection::vec(any::<u8>(), 0..1700)) {
        let id = ke::SUPPORTED[idx];
        let mut rng = DeterministicRng::from_u64(idx as u64);
        let i = ke::initiate(id, &mut rng).unwrap();
        let _ = i.compute_shared(&data);
        let _ = ke::respond(id, &data, &mut rng);
    }

    #[test]
    fn right_length_random_peer_values_never_panic(idx in 0usize..8, seed in any::<u64>()) {
        let id = ke::SUPPORTED[idx];
        let mut rng = DeterministicRng::from_u64(seed);
        let i = ke::initiate(id, &mut rng).unwrap();
        let mut data = i.public_key().to_vec();
        rand_core::RngCore::fill_bytes(&mut rng, &mut data);
        let _ = i.compute_shared(&data);
        let _ = ke::respond(id, &data, &mut rng);
    }
}
