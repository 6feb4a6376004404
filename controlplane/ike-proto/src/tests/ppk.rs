//! RFC 8784 post-quantum preshared keys over the two-endpoint harness: both
//! roles, mandatory and optional PPKs in the combinations of §3 (Table 1 and
//! the PPK_ID rules), and a known answer for the mixed keys computed with
//! the `hmac` crate, independently of ike-crypto's PRF module.
use hmac::{Hmac, Mac};
use ike_crypto::Secret;
use ike_wire::{ExchangeType, Message, NotifyType};
use sha2::Sha256;

use super::util::*;
use crate::message::Payloads;
use crate::{ConnectionConfig, DownReason, Ppk, PpkConfig, PpkExchange, PPK_ID_FIXED, PPK_ID_OPAQUE};

const PPK_A: &[u8] = b"0123456789abcdef0123456789abcdef-post-quantum";

fn ppk(id: &str, secret: &[u8]) -> Ppk {
    Ppk { id_type: PPK_ID_FIXED, id: id.as_bytes().to_vec(), secret: Secret::new(secret.to_vec()) }
}

fn conns(a: Option<PpkConfig>, b: Option<PpkConfig>) -> (ConnectionConfig, ConnectionConfig) {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.ppk = a;
    cb.ppk = b;
    (ca, cb)
}

fn pair(seed: u64, a: Option<PpkConfig>, b: Option<PpkConfig>) -> Pair {
    let (ca, cb) = conns(a, b);
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

fn policy(keys: Vec<Ppk>, required: bool) -> Option<PpkConfig> {
    Some(PpkConfig { keys, required, exchange: PpkExchange::IkeAuth })
}

/// Whether each side's (only) IKE SA used a PPK, from the IkeSaUp events
/// and the listing.
fn ppk_flags(p: &Pair) -> (bool, bool) {
    let flag = |side: Side| {
        let from_event = p
            .events(side)
            .iter()
            .find_map(|e| match e {
                crate::Event::IkeSaUp { ppk, .. } => Some(*ppk),
                _ => None,
            })
            .expect("IkeSaUp");
        let node = if side == Side::A { &p.a } else { &p.b };
        let listed = node.ep.ike_sas().iter().filter(|s| s.state == "Established").map(|s| s.ppk).collect::<Vec<_>>();
        assert_eq!(listed, vec![from_event], "listing agrees with the event");
        from_event
    };
    (flag(Side::A), flag(Side::B))
}

/// Whether `side`'s IKE_SA_INIT message (request or response) has N(USE_PPK).
fn init_has_use_ppk(p: &Pair, side: Side) -> bool {
    p.wire
        .iter()
        .filter(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
        .any(|(_, _, d)| {
            let m = Message::parse(d.ike_bytes()).expect("IKE_SA_INIT parses");
            Payloads(&m.payloads).notify(NotifyType::USE_PPK).is_some()
        })
}

fn encr_keys(p: &Pair) -> (Vec<u8>, Vec<u8>) {
    let a = p.installs(Side::A)[0];
    let b = p.installs(Side::B)[0];
    assert_eq!(a.keys_out.encr[..], b.keys_in.encr[..]);
    assert_eq!(a.keys_in.encr[..], b.keys_out.encr[..]);
    (a.keys_out.encr.to_vec(), a.keys_in.encr.to_vec())
}

#[test]
fn mandatory_ppk_both_roles_mixes_the_ppk_into_child_keys() {
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true);
    let mut p = pair(801, both(), both());
    p.connect();
    assert_eq!(ppk_flags(&p), (true, true));
    assert!(init_has_use_ppk(&p, Side::A) && init_has_use_ppk(&p, Side::B));
    let with_ppk = encr_keys(&p);

    // Same seeds without PPK: same nonces and DH values, different keys.
    let mut plain = pair(801, None, None);
    plain.connect();
    assert_eq!(ppk_flags(&plain), (false, false));
    assert!(!init_has_use_ppk(&plain, Side::A) && !init_has_use_ppk(&plain, Side::B));
    let without = encr_keys(&plain);
    assert_ne!(with_ppk.0, without.0);
    assert_ne!(with_ppk.1, without.1);

    // B as initiator.
    let mut p = pair(802, both(), both());
    p.initiate(Side::B, "site");
    p.drive();
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1));
    assert_eq!(ppk_flags(&p), (true, true));
    let b = p.installs(Side::B)[0];
    let a = p.installs(Side::A)[0];
    assert_eq!(b.keys_out.encr[..], a.keys_in.encr[..]);
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// RFC 7296 §2.13 prf+ over HMAC-SHA-256, written out here.
fn prf_plus(key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut t: Vec<u8> = Vec::new();
    let mut n = 1u8;
    while out.len() < len {
        t = hmac_sha256(key, &[&t, seed, &[n]]);
        out.extend_from_slice(&t);
        n += 1;
    }
    out.truncate(len);
    out
}

fn init_nonces(p: &Pair) -> (Vec<u8>, Vec<u8>) {
    let nonce = |side: Side| {
        let (_, _, d) = p
            .wire
            .iter()
            .find(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
            .expect("IKE_SA_INIT");
        let m = Message::parse(d.ike_bytes()).expect("parses");
        Payloads(&m.payloads).nonce().expect("nonce").data.to_vec()
    };
    (nonce(Side::A), nonce(Side::B))
}

#[test]
fn ppk_child_keys_match_an_independent_rfc8784_computation() {
    // PRF_HMAC_SHA2_256, AES-GCM-16-256 (36-octet keys, no integrity).
    let mut plain = pair(811, None, None);
    let h = plain.connect();
    let sk_d_prime = plain.a.ep.sk_d(h).expect("SK_d");
    let (ni, nr) = init_nonces(&plain);
    // Sanity of the independent prf+: the plain Child SA's KEYMAT.
    let km = prf_plus(&sk_d_prime, &[&ni[..], &nr[..]].concat(), 72);
    assert_eq!(encr_keys(&plain), (km[..36].to_vec(), km[36..].to_vec()));

    // The same seeds with a PPK: SKEYSEED and SK_d' are the same; SK_d =
    // prf+(PPK, SK_d') (RFC 8784 §3), and the KEYMAT comes from it.
    let both = || policy(vec![ppk("pqc-1", PPK_A)], false);
    let mut p = pair(811, both(), both());
    let h = p.connect();
    assert_eq!(init_nonces(&p), (ni.clone(), nr.clone()), "same nonces as the plain run");
    let sk_d = prf_plus(PPK_A, &sk_d_prime, 32);
    // For a 32-octet PRF output prf+ is one block: prf(PPK, SK_d' | 0x01).
    assert_eq!(sk_d, hmac_sha256(PPK_A, &[&sk_d_prime, &[1]]));
    assert_eq!(p.a.ep.sk_d(h).expect("SK_d"), sk_d);
    let km = prf_plus(&sk_d, &[&ni[..], &nr[..]].concat(), 72);
    assert_eq!(encr_keys(&p), (km[..36].to_vec(), km[36..].to_vec()));
    assert_eq!(ppk_flags(&p), (true, true));
}

#[test]
fn optional_ppk_against_a_responder_without_ppks_is_plain_ikev2() {
    let mut p = pair(821, policy(vec![ppk("pqc-1", PPK_A)], false), None);
    p.connect();
    assert!(init_has_use_ppk(&p, Side::A));
    assert!(!init_has_use_ppk(&p, Side::B), "no USE_PPK from a responder without PPKs");
    assert_eq!(ppk_flags(&p), (false, false));
}

#[test]
fn optional_ppk_with_an_unknown_ppk_id_falls_back_to_no_ppk_auth() {
    // B negotiates USE_PPK but has no PPK for A's PPK_ID: its AUTH was made
    // with the mixed SK_pi, so only the NO_PPK_AUTH data can verify.
    let mut p = pair(831, policy(vec![ppk("pqc-1", PPK_A)], false), policy(vec![ppk("other", b"another ppk of 32 octets or more!")], false));
    p.connect();
    assert!(init_has_use_ppk(&p, Side::B));
    assert_eq!(ppk_flags(&p), (false, false));
    let mut plain = pair(831, None, None);
    plain.connect();
    assert_eq!(encr_keys(&p), encr_keys(&plain), "no PPK in the keys");
}

fn assert_auth_failed(p: &Pair) {
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (0, 0));
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed], "A: {:?}", p.events(Side::A));
    assert!(p.installs(Side::A).is_empty() && p.installs(Side::B).is_empty());
}

#[test]
fn mandatory_ppk_on_the_responder_refuses_an_initiator_without_one() {
    let mut p = pair(841, None, policy(vec![ppk("pqc-1", PPK_A)], true));
    p.initiate(Side::A, "site");
    p.drive();
    // A got N(AUTHENTICATION_FAILED) in the IKE_AUTH response.
    assert_auth_failed(&p);
    assert_eq!(p.sent(Side::B, ExchangeType::IKE_AUTH, true), 1);
    assert_eq!(p.downs(Side::B), vec![DownReason::AuthenticationFailed]);
}

#[test]
fn mandatory_ppk_on_the_initiator_aborts_without_use_ppk() {
    let mut p = pair(851, policy(vec![ppk("pqc-1", PPK_A)], true), None);
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 0, "RFC 8784 §3: abort after IKE_SA_INIT");
    assert_eq!(p.ups(Side::B), 0);
}

#[test]
fn mandatory_ppk_with_an_unknown_ppk_id_fails_either_way() {
    // Initiator mandatory (so no NO_PPK_AUTH), responder optional without
    // that PPK_ID.
    let mut p = pair(861, policy(vec![ppk("pqc-1", PPK_A)], true), policy(vec![ppk("other", PPK_A)], false));
    p.initiate(Side::A, "site");
    p.drive();
    assert_auth_failed(&p);
    // Initiator optional (NO_PPK_AUTH sent), responder mandatory.
    let mut p = pair(862, policy(vec![ppk("pqc-1", PPK_A)], false), policy(vec![ppk("other", PPK_A)], true));
    p.initiate(Side::A, "site");
    p.drive();
    assert_auth_failed(&p);
}

#[test]
fn a_wrong_ppk_fails_authentication_even_when_optional() {
    // Same PPK_ID, different secret: the responder uses its PPK (§3: "use
    // the PPK") and the AUTH does not verify; no fallback to NO_PPK_AUTH.
    let mut p = pair(871, policy(vec![ppk("pqc-1", PPK_A)], false), policy(vec![ppk("pqc-1", b"a different post-quantum key of 32+ octets")], false));
    p.initiate(Side::A, "site");
    p.drive();
    assert_auth_failed(&p);
}

#[test]
fn the_responder_picks_the_ppk_by_id_and_accepts_both_id_types() {
    let mut opaque = ppk("second", b"the second ppk, also 32 octets long...");
    opaque.id_type = PPK_ID_OPAQUE;
    let mut p = pair(
        881,
        policy(vec![opaque], true),
        policy(vec![ppk("first", PPK_A), ppk("second", b"the second ppk, also 32 octets long...")], true),
    );
    p.connect();
    assert_eq!(ppk_flags(&p), (true, true));
}

#[test]
fn an_ike_sa_rekeyed_from_a_ppk_sa_keeps_the_ppk_flag() {
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true);
    let mut p = pair(891, both(), both());
    let h = p.connect();
    p.command(Side::A, crate::Command::RekeyIke { ike_sa: h });
    p.drive();
    let listed: Vec<bool> = p.a.ep.ike_sas().iter().filter(|s| s.state == "Established").map(|s| s.ppk).collect();
    assert_eq!(listed, vec![true]);
    assert!(p.a.ep.ike_sas().iter().all(|s| s.ike_sa != h), "the old SA is gone");
}

#[test]
fn use_ppk_stays_on_the_cookie_retry() {
    // RFC 8784 §3: the initiator keeps N(USE_PPK) when it resends
    // IKE_SA_INIT with a COOKIE.
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true);
    let (ca, cb) = conns(both(), both());
    let mut cfg_b = endpoint_config(cb);
    cfg_b.cookie_threshold = 0;
    let mut p = Pair::new(901, endpoint_config(ca), cfg_b);
    p.connect();
    let requests: Vec<Message<'_>> = p
        .wire
        .iter()
        .filter(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
        .map(|(_, _, d)| Message::parse(d.ike_bytes()).expect("parses"))
        .collect();
    assert_eq!(requests.len(), 2, "plain, then with the cookie");
    for m in &requests {
        assert!(Payloads(&m.payloads).notify(NotifyType::USE_PPK).is_some());
    }
    assert!(Payloads(&requests[1].payloads).notify(NotifyType::COOKIE).is_some());
    assert_eq!(ppk_flags(&p), (true, true));
}

#[test]
fn ppk_ids_match_exactly_and_only_with_a_defined_type() {
    let c = PpkConfig { keys: vec![ppk("pqc-1", PPK_A)], required: true, exchange: PpkExchange::IkeAuth };
    assert!(c.find(b"\x02pqc-1").is_some());
    assert!(c.find(b"\x01pqc-1").is_some(), "PPK_ID_OPAQUE names the same key");
    for bad in [&b""[..], b"\x02", b"\x00pqc-1", b"\x03pqc-1", b"\x80pqc-1", b"\x02pqc-", b"\x02pqc-11", b"\x02PQC-1"] {
        assert!(c.find(bad).is_none(), "{bad:?}");
    }
}

// ----------------------------------------------------------------------
// PPK together with RFC 9370 additional key exchanges (X25519 + ML-KEM-768)

fn pq_ppk_pair(seed: u64, a: Option<PpkConfig>, b: Option<PpkConfig>) -> Pair {
    let (mut ca, mut cb) = conns(a, b);
    for c in [&mut ca, &mut cb] {
        for p in &mut c.ike_proposals {
            p.additional_ke = vec![vec![ike_wire::KeId::ML_KEM_768]];
        }
    }
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

/// Each side's established IKE SA: (DH method, additional KE methods).
fn ke_methods(p: &Pair, side: Side) -> (ike_wire::KeId, Vec<ike_wire::KeId>) {
    let node = if side == Side::A { &p.a } else { &p.b };
    let s = node.ep.ike_sas().into_iter().find(|s| s.state == "Established").and_then(|s| s.suite).expect("established");
    (s.ke, s.additional_ke)
}

#[test]
fn mandatory_ppk_with_x25519_and_mlkem768_both_roles() {
    use ike_wire::KeId;
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true);
    let pq = (KeId::CURVE25519, vec![KeId::ML_KEM_768]);
    for (seed, initiator) in [(951, Side::A), (952, Side::B)] {
        let mut p = pq_ppk_pair(seed, both(), both());
        let h = p.initiate(initiator, "site");
        p.drive_until(|p| p.ups(Side::A) == 1 && p.ups(Side::B) == 1);
        p.drive_for(std::time::Duration::from_secs(1));
        assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1), "{initiator:?}");
        assert_eq!(ppk_flags(&p), (true, true), "{initiator:?}");
        assert!(init_has_use_ppk(&p, Side::A) && init_has_use_ppk(&p, Side::B));
        assert_eq!(p.sent(initiator, ExchangeType::IKE_INTERMEDIATE, false), 2, "one ML-KEM-768 request in two fragments");
        assert_eq!((ke_methods(&p, Side::A), ke_methods(&p, Side::B)), (pq.clone(), pq.clone()));
        let keys = encr_keys(&p);

        // Same seed, the same X25519 + ML-KEM-768 exchange, no PPK: the
        // initiator's SK_d before the PPK is the SK_d after the
        // IKE_INTERMEDIATE key update; RFC 8784 §3 mixes the PPK into that.
        let mut plain = pq_ppk_pair(seed, None, None);
        let hp = plain.initiate(initiator, "site");
        plain.drive_until(|p| p.ups(Side::A) == 1 && p.ups(Side::B) == 1);
        plain.drive_for(std::time::Duration::from_secs(1));
        assert_eq!(ppk_flags(&plain), (false, false));
        assert_eq!(ke_methods(&plain, Side::A), pq);
        assert_eq!(plain.sent(initiator, ExchangeType::IKE_INTERMEDIATE, false), 2);
        assert_eq!(init_nonces(&plain), init_nonces(&p), "same nonces as the PPK run");
        let plain_keys = encr_keys(&plain);
        assert_ne!(keys.0, plain_keys.0);
        assert_ne!(keys.1, plain_keys.1);
        let node = |p: &Pair| if initiator == Side::A { p.a.ep.sk_d(h) } else { p.b.ep.sk_d(h) };
        let node_plain = |p: &Pair| if initiator == Side::A { p.a.ep.sk_d(hp) } else { p.b.ep.sk_d(hp) };
        let sk_d_prime = node_plain(&plain).expect("SK_d'");
        assert_eq!(node(&p).expect("SK_d"), prf_plus(PPK_A, &sk_d_prime, 32), "SK_d = prf+(PPK, SK_d') over the updated keys");

        // And the same seed with the PPK but no ML-KEM: different keys
        // again, so the additional key exchange is in there too.
        let mut classic = pair(seed, both(), both());
        classic.initiate(initiator, "site");
        classic.drive_until(|p| p.ups(Side::A) == 1 && p.ups(Side::B) == 1);
        classic.drive_for(std::time::Duration::from_secs(1));
        assert_eq!(ppk_flags(&classic), (true, true));
        assert_ne!(encr_keys(&classic).0, keys.0);
    }
}

#[test]
fn ike_sa_rekey_with_ike_followup_ke_keeps_the_ppk_flag() {
    use ike_wire::KeId;
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true);
    let mut p = pq_ppk_pair(961, both(), both());
    p.connect();
    for (n, side) in [(1, Side::A), (2, Side::B)] {
        let h = up_handle(&p, side);
        let followups = p.sent(side, ExchangeType::IKE_FOLLOWUP_KE, false);
        p.command(side, crate::Command::RekeyIke { ike_sa: h });
        p.drive();
        for s in [Side::A, Side::B] {
            assert_eq!(p.count(s, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), n, "{s:?}");
            let node = if s == Side::A { &p.a } else { &p.b };
            let listed: Vec<bool> = node.ep.ike_sas().iter().filter(|i| i.state == "Established").map(|i| i.ppk).collect();
            assert_eq!(listed, vec![true], "{s:?} after rekey {n}");
            assert_eq!(ke_methods(&p, s), (KeId::CURVE25519, vec![KeId::ML_KEM_768]));
        }
        assert!(p.sent(side, ExchangeType::IKE_FOLLOWUP_KE, false) > followups, "{side:?} ran IKE_FOLLOWUP_KE");
        assert_ne!(up_handle(&p, side), h);
    }
    // The rekeyed SA still makes Child SAs whose keys agree.
    let h = up_handle(&p, Side::A);
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    p.drive();
    let (a, b) = (p.installs(Side::A), p.installs(Side::B));
    assert_eq!(a.last().expect("A").keys_out.encr[..], b.last().expect("B").keys_in.encr[..]);
}
