//! PRFs, integrity transforms and the key schedule against external vectors
//! (RFC 4231, RFC 4868) and against an independent Python computation
//! (testdata/keyschedule_reference.py).

mod common;
use common::{hx, json};

use ike_crypto::integ::Integ;
use ike_crypto::keys::{self, ChildSaKeys, IkeSaKeys, KeyLengths};
use ike_crypto::prf::{HmacPrf, Prf};
use ike_crypto::Error;

#[test]
fn rfc4231_hmac_sha2_prf_vectors() {
    let v = json("rfc4231_rfc4868_hmac_sha2.json");
    let mut checked = 0;
    for c in v["prf"].as_array().unwrap() {
        for (id, field) in [(5u16, "sha256"), (6, "sha384"), (7, "sha512")] {
            let prf = HmacPrf::from_id(id).unwrap();
            let out = prf.prf(&hx(&c["key"]), &[&hx(&c["data"])]).unwrap();
            assert_eq!(hex::encode(&out[..]), c[field].as_str().unwrap(), "case {} {field}", c["case"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}

#[test]
fn rfc4868_truncated_hmac_integrity_vectors() {
    let v = json("rfc4231_rfc4868_hmac_sha2.json");
    let cases = v["auth"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for c in cases {
        let integ = Integ::from_id(c["id"].as_u64().unwrap() as u16).unwrap();
        let key = hx(&c["key"]);
        let data = hx(&c["data"]);
        let icv = hx(&c["icv"]);
        assert_eq!(integ.compute(&key, &[&data]).unwrap(), icv);
        integ.verify(&key, &[&data], &icv).unwrap();
        let mut bad = icv.clone();
        bad[0] ^= 1;
        assert_eq!(integ.verify(&key, &[&data], &bad), Err(Error::IntegrityCheckFailed));
        assert_eq!(integ.verify(&key, &[&data], &icv[..icv.len() - 1]), Err(Error::IntegrityCheckFailed));
    }
}

#[test]
fn integrity_rejects_wrong_key_length_and_unknown_ids() {
    let integ = Integ::from_id(12).unwrap();
    assert_eq!((integ.key_len(), integ.icv_len()), (32, 16));
    assert_eq!(integ.compute(&[0; 31], &[b"x"]), Err(Error::InvalidKey("integrity key length")));
    assert!(Integ::from_id(2).is_err());
    assert_eq!((Integ::from_id(13).unwrap().icv_len(), Integ::from_id(14).unwrap().icv_len()), (24, 32));
}

fn keys_json(k: &IkeSaKeys) -> serde_json::Value {
    serde_json::json!({
        "sk_d": hex::encode(&k.sk_d[..]), "sk_ai": hex::encode(&k.sk_ai[..]), "sk_ar": hex::encode(&k.sk_ar[..]),
        "sk_ei": hex::encode(&k.sk_ei[..]), "sk_er": hex::encode(&k.sk_er[..]),
        "sk_pi": hex::encode(&k.sk_pi[..]), "sk_pr": hex::encode(&k.sk_pr[..]),
    })
}

#[test]
fn key_schedule_matches_independent_python_reference() {
    let v = json("keyschedule_reference.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let prf = HmacPrf::from_id(c["prf"].as_u64().unwrap() as u16).unwrap();
        let lengths = KeyLengths {
            sk_a: c["sk_a_len"].as_u64().unwrap() as usize,
            sk_e: c["sk_e_len"].as_u64().unwrap() as usize,
        };
        let (ni, nr) = (hx(&c["ni"]), hx(&c["nr"]));
        let spi_i: [u8; 8] = hx(&c["spi_i"]).try_into().unwrap();
        let spi_r: [u8; 8] = hx(&c["spi_r"]).try_into().unwrap();

        // RFC 7296 §2.14
        let skeyseed = keys::skeyseed(&prf, &ni, &nr, &hx(&c["g_ir"])).unwrap();
        assert_eq!(hex::encode(&skeyseed[..]), c["skeyseed"].as_str().unwrap());
        let keys0 = IkeSaKeys::derive(&prf, &skeyseed, &ni, &nr, &spi_i, &spi_r, lengths).unwrap();
        assert_eq!(keys_json(&keys0), c["keys0"]);

        // RFC 9370 §2.2.2, two IKE_INTERMEDIATE key exchanges
        let s1 = keys::skeyseed_additional_ke(&prf, &keys0.sk_d, &hx(&c["sk1"]), &ni, &nr).unwrap();
        assert_eq!(hex::encode(&s1[..]), c["skeyseed1"].as_str().unwrap());
        let keys1 = IkeSaKeys::derive(&prf, &s1, &ni, &nr, &spi_i, &spi_r, lengths).unwrap();
        assert_eq!(keys_json(&keys1), c["keys1"]);
        let s2 = keys::skeyseed_additional_ke(&prf, &keys1.sk_d, &hx(&c["sk2"]), &ni, &nr).unwrap();
        assert_eq!(hex::encode(&s2[..]), c["skeyseed2"].as_str().unwrap());
        let keys2 = IkeSaKeys::derive(&prf, &s2, &ni, &nr, &spi_i, &spi_r, lengths).unwrap();
        assert_eq!(keys_json(&keys2), c["keys2"]);

        // RFC 7296 §2.17 / RFC 9370 §2.2.4 KEYMAT
        let (cni, cnr, g_new) = (hx(&c["child_ni"]), hx(&c["child_nr"]), hx(&c["g_ir_new"]));
        let (sk1, sk2) = (hx(&c["sk1"]), hx(&c["sk2"]));
        let len = ChildSaKeys::keymat_len(lengths.sk_e, lengths.sk_a);
        let km = keys::child_sa_keymat(&prf, &keys2.sk_d, None, &ni, &nr, &[], len).unwrap();
        assert_eq!(hex::encode(&km[..]), c["keymat"].as_str().unwrap());
        let km_pfs = keys::child_sa_keymat(&prf, &keys2.sk_d, Some(&g_new), &cni, &cnr, &[], len).unwrap();
        assert_eq!(hex::encode(&km_pfs[..]), c["keymat_pfs"].as_str().unwrap());
        let km_addke = keys::child_sa_keymat(&prf, &keys2.sk_d, Some(&g_new), &cni, &cnr, &[&sk1, &sk2], len).unwrap();
        assert_eq!(hex::encode(&km_addke[..]), c["keymat_addke"].as_str().unwrap());
        let split = ChildSaKeys::split(&km, lengths.sk_e, lengths.sk_a).unwrap();
        assert_eq!(&split.encr_i[..], &km[..lengths.sk_e]);
        assert_eq!(&split.integ_r[..], &km[len - lengths.sk_a..]);

        // RFC 7296 §2.18 and RFC 9370 §2.2.4 rekey
        let rk = keys::skeyseed_rekey(&prf, &keys2.sk_d, &g_new, &cni, &cnr, &[]).unwrap();
        assert_eq!(hex::encode(&rk[..]), c["skeyseed_rekey"].as_str().unwrap());
        let rk_add = keys::skeyseed_rekey(&prf, &keys2.sk_d, &g_new, &cni, &cnr, &[&sk1]).unwrap();
        assert_eq!(hex::encode(&rk_add[..]), c["skeyseed_rekey_addke"].as_str().unwrap());

        // RFC 7296 §2.15
        let auth = keys::psk_auth(&prf, &hx(&c["psk"]), &hx(&c["signed_octets"])).unwrap();
        assert_eq!(hex::encode(&auth[..]), c["psk_auth"].as_str().unwrap());

        // RFC 8784 §3
        let mut mixed = IkeSaKeys::derive(&prf, &skeyseed, &ni, &nr, &spi_i, &spi_r, lengths).unwrap();
        mixed.mix_ppk(&prf, &hx(&c["ppk"])).unwrap();
        assert_eq!(hex::encode(&mixed.sk_d[..]), c["ppk_mixed"]["sk_d"].as_str().unwrap());
        assert_eq!(hex::encode(&mixed.sk_pi[..]), c["ppk_mixed"]["sk_pi"].as_str().unwrap());
        assert_eq!(hex::encode(&mixed.sk_pr[..]), c["ppk_mixed"]["sk_pr"].as_str().unwrap());
        assert_eq!(mixed.sk_ei[..], keys0.sk_ei[..], "PPK leaves SK_e alone");
    }
}

#[test]
fn keymat_split_rejects_wrong_length() {
    assert!(ChildSaKeys::split(&[0; 95], 36, 12).is_err());
    assert!(ChildSaKeys::split(&[0; 96], 36, 12).is_ok());
}

#[test]
fn signed_octets_concatenate_in_rfc7296_order_with_optional_int_auth() {
    assert_eq!(keys::signed_octets(b"msg", b"N", b"id", None), b"msgNid");
    assert_eq!(keys::signed_octets(b"msg", b"N", b"id", Some(b"ia")), b"msgNidia");
    assert_eq!(keys::KEY_PAD.len(), 17);
}

#[test]
fn nist_cavs_ikev2_kdf_skeyseed_dkm_and_rekey() {
    let v = json("nist_cavs_ikev2_kdf.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let prf = HmacPrf::from_id(c["prf"].as_u64().unwrap() as u16).unwrap();
        let (ni, nr) = (hx(&c["ni"]), hx(&c["nr"]));
        let (spi_i, spi_r) = (hx(&c["spi_i"]), hx(&c["spi_r"]));
        let skeyseed = keys::skeyseed(&prf, &ni, &nr, &hx(&c["g_ir"])).unwrap();
        assert_eq!(hex::encode(&skeyseed[..]), c["skeyseed"].as_str().unwrap(), "prf {}", c["prf"]);
        let dkm = hx(&c["dkm"]);
        let out = ike_crypto::prf::prf_plus(&prf, &skeyseed, &[&ni, &nr, &spi_i, &spi_r], dkm.len()).unwrap();
        assert_eq!(&out[..], &dkm[..], "DKM prf {}", c["prf"]);
        // The same octets through the SK_* split: SK_d leads the stream.
        let lengths = KeyLengths { sk_a: 0, sk_e: 0 };
        let split = IkeSaKeys::derive(&prf, &skeyseed, &ni, &nr, &spi_i.clone().try_into().unwrap(), &spi_r.clone().try_into().unwrap(), lengths).unwrap();
        assert_eq!(&split.sk_d[..], &dkm[..prf.output_len()]);
        let rekey = keys::skeyseed_rekey(&prf, &split.sk_d, &hx(&c["g_ir_new"]), &ni, &nr, &[]).unwrap();
        assert_eq!(hex::encode(&rekey[..]), c["skeyseed_rekey"].as_str().unwrap(), "rekey prf {}", c["prf"]);
    }
}
