//! RFC 9867 (the PPK negotiated in IKE_INTERMEDIATE) over the two-endpoint
//! harness: both roles, mandatory and optional PPKs, a wrong PPK_ID or
//! secret, peers that only do RFC 8784 or no PPK at all (fallback as
//! configured), with RFC 9370 additional key exchanges, a known answer for
//! the re-derived keys computed with the `hmac` crate, and the PPK_ID never
//! in the clear on the wire.
use hmac::{Hmac, Mac};
use ike_crypto::Secret;
use ike_wire::{ExchangeType, KeId, Message, NotifyType};
use sha2::Sha256;

use super::util::*;
use crate::message::Payloads;
use crate::{ConnectionConfig, DownReason, Ppk, PpkConfig, PpkExchange, PPK_ID_FIXED};

const PPK_A: &[u8] = b"0123456789abcdef0123456789abcdef-post-quantum";
const PPK_B: &[u8] = b"another post-quantum key, 32 octets or more";
/// Distinctive, so a search of the wire cannot hit it by chance.
const SECRET_ID: &str = "ppk-id-that-must-stay-confidential";

fn ppk(id: &str, secret: &[u8]) -> Ppk {
    Ppk { id_type: PPK_ID_FIXED, id: id.as_bytes().to_vec(), secret: Secret::new(secret.to_vec()) }
}

fn policy(keys: Vec<Ppk>, required: bool, exchange: PpkExchange) -> Option<PpkConfig> {
    Some(PpkConfig { keys, required, exchange })
}

fn conns(a: Option<PpkConfig>, b: Option<PpkConfig>, addke: bool) -> (ConnectionConfig, ConnectionConfig) {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.ppk = a;
    cb.ppk = b;
    if addke {
        for c in [&mut ca, &mut cb] {
            for p in &mut c.ike_proposals {
                p.additional_ke = vec![vec![KeId::ML_KEM_768]];
            }
        }
    }
    (ca, cb)
}

fn pair(seed: u64, a: Option<PpkConfig>, b: Option<PpkConfig>) -> Pair {
    let (ca, cb) = conns(a, b, false);
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

fn run(p: &mut Pair, initiator: Side) -> crate::IkeSaHandle {
    let h = p.initiate(initiator, "site");
    p.drive_until(|p| (p.ups(Side::A) == 1 && p.ups(Side::B) == 1) || !p.downs(initiator).is_empty());
    p.drive_for(std::time::Duration::from_secs(1));
    h
}

/// Whether each side's IKE SA used a PPK, from the IkeSaUp events and the
/// listing (which must agree).
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

/// The notify types in `side`'s IKE_SA_INIT message.
fn init_notifies(p: &Pair, side: Side) -> Vec<NotifyType> {
    let (_, _, d) = p
        .wire
        .iter()
        .rfind(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
        .expect("IKE_SA_INIT");
    let m = Message::parse(d.ike_bytes()).expect("IKE_SA_INIT parses");
    Payloads(&m.payloads).notifies().map(|n| n.notify_type).collect()
}

fn encr_keys(p: &Pair) -> (Vec<u8>, Vec<u8>) {
    let a = p.installs(Side::A)[0];
    let b = p.installs(Side::B)[0];
    assert_eq!(a.keys_out.encr[..], b.keys_in.encr[..]);
    assert_eq!(a.keys_in.encr[..], b.keys_out.encr[..]);
    (a.keys_out.encr.to_vec(), a.keys_in.encr.to_vec())
}

fn assert_auth_failed(p: &Pair, initiator: Side) {
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (0, 0));
    assert_eq!(p.downs(initiator), vec![DownReason::AuthenticationFailed], "{:?}", p.events(initiator));
    assert!(p.installs(Side::A).is_empty() && p.installs(Side::B).is_empty());
}

#[test]
fn mandatory_ppk_in_intermediate_both_roles() {
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Either);
    for (seed, initiator, responder) in [(1901, Side::A, Side::B), (1902, Side::B, Side::A)] {
        let mut p = pair(seed, both(), both());
        run(&mut p, initiator);
        assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1), "{initiator:?}");
        assert_eq!(ppk_flags(&p), (true, true));
        // The initiator offers both (RFC 8784 as fallback); the responder
        // answers USE_PPK_INT and then not USE_PPK.
        let i = init_notifies(&p, initiator);
        for t in [NotifyType::USE_PPK_INT, NotifyType::USE_PPK, NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED] {
            assert!(i.contains(&t), "initiator sends {t:?}: {i:?}");
        }
        let r = init_notifies(&p, responder);
        assert!(r.contains(&NotifyType::USE_PPK_INT) && r.contains(&NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED), "{r:?}");
        assert!(!r.contains(&NotifyType::USE_PPK), "USE_PPK_INT or USE_PPK, never both: {r:?}");
        // One IKE_INTERMEDIATE exchange, for the PPK alone.
        assert_eq!(p.sent(initiator, ExchangeType::IKE_INTERMEDIATE, false), 1);
        assert_eq!(p.sent(responder, ExchangeType::IKE_INTERMEDIATE, true), 1);
        encr_keys(&p);
    }
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

/// (Ni, Nr, SPIi, SPIr) of the IKE_SA_INIT exchange on the wire.
fn init_values(p: &Pair) -> (Vec<u8>, Vec<u8>, [u8; 8], [u8; 8]) {
    let msg = |side: Side| {
        p.wire
            .iter()
            .rfind(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
            .map(|(_, _, d)| d.ike_bytes().to_vec())
            .expect("IKE_SA_INIT")
    };
    let (a, b) = (msg(Side::A), msg(Side::B));
    let (ma, mb) = (Message::parse(&a).expect("parses"), Message::parse(&b).expect("parses"));
    let nonce = |m: &Message<'_>| Payloads(&m.payloads).nonce().expect("nonce").data.to_vec();
    (nonce(&ma), nonce(&mb), mb.header.spi_i.to_be_bytes(), mb.header.spi_r.to_be_bytes())
}

#[test]
fn keys_after_the_ppk_match_an_independent_rfc9867_computation() {
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Intermediate);
    let mut p = pair(1911, both(), both());
    let h = run(&mut p, Side::A);
    assert_eq!(ppk_flags(&p), (true, true));
    // Same seed, no PPK: the same IKE_SA_INIT values, so its SK_d is the
    // SK_d the PPK run had before the PPK exchange.
    let mut plain = pair(1911, None, None);
    let hp = run(&mut plain, Side::A);
    assert_eq!(ppk_flags(&plain), (false, false));
    let (ni, nr, spi_i, spi_r) = init_values(&p);
    assert_eq!(init_values(&plain), (ni.clone(), nr.clone(), spi_i, spi_r), "same IKE_SA_INIT values");
    let sk_d_before = plain.a.ep.sk_d(hp).expect("SK_d");
    // SKEYSEED' = prf+ (PPK, SK_d), as long as SK_d; then RFC 7296 §2.14.
    let skeyseed = prf_plus(PPK_A, &sk_d_before, 32);
    let sk_d = prf_plus(&skeyseed, &[&ni[..], &nr[..], &spi_i[..], &spi_r[..]].concat(), 32);
    assert_eq!(p.a.ep.sk_d(h).expect("SK_d"), sk_d);
    assert_eq!(p.b.ep.sk_d(up_handle(&p, Side::B)).expect("SK_d"), sk_d);
    // And the Child SA of IKE_AUTH from it (§2.17, AES-GCM-256: 36 + 36).
    let km = prf_plus(&sk_d, &[&ni[..], &nr[..]].concat(), 72);
    assert_eq!(encr_keys(&p), (km[..36].to_vec(), km[36..].to_vec()));
}

#[test]
fn the_ppk_id_never_appears_in_clear_on_the_wire() {
    let both = || policy(vec![ppk(SECRET_ID, PPK_A)], true, PpkExchange::Either);
    let mut p = pair(1921, both(), both());
    run(&mut p, Side::A);
    assert_eq!(ppk_flags(&p), (true, true));
    let id = SECRET_ID.as_bytes();
    let mut seen = 0;
    for (_, side, d) in &p.wire {
        let h = d.header().expect("IKE");
        if h.exchange_type == ExchangeType::IKE_SA_INIT || h.exchange_type == ExchangeType::IKE_INTERMEDIATE {
            seen += 1;
        }
        assert!(!d.payload.windows(id.len()).any(|w| w == id), "PPK_ID in clear in {side:?}'s {:?}", h.exchange_type);
    }
    assert_eq!(seen, 4, "IKE_SA_INIT and IKE_INTERMEDIATE, both ways");
    // It was sent, though: the responder found the PPK by it (the flags
    // above), and the IKE_INTERMEDIATE request is longer than an empty one
    // by at least the PPK_ID, the confirmation and a notify header.
    let len = |side: Side, t: ExchangeType, resp: bool| {
        p.wire.iter().find(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == t && h.flags.response() == resp)).map(|(_, _, d)| d.payload.len()).expect("message")
    };
    let request = len(Side::A, ExchangeType::IKE_INTERMEDIATE, false);
    assert!(request >= 28 + 4 + 8 + 16 + 8 + 1 + id.len() + 8, "request of {request} octets");
}

#[test]
fn optional_ppk_without_a_common_ppk_continues_without_one() {
    // The responder has a different PPK_ID: no N(PPK_IDENTITY) back, both
    // go on with the classical keys (no NO_PPK_AUTH needed: the AUTH is
    // computed after the keys are settled).
    let mut p = pair(1931, policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::Either), policy(vec![ppk("other", PPK_A)], false, PpkExchange::Either));
    run(&mut p, Side::A);
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1));
    assert_eq!(ppk_flags(&p), (false, false));
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_INTERMEDIATE, false), 1);
    let mut plain = pair(1931, None, None);
    run(&mut plain, Side::A);
    assert_eq!(encr_keys(&p), encr_keys(&plain), "no PPK in the keys");
}

#[test]
fn wrong_ppk_id_with_a_mandatory_ppk_fails_either_way() {
    // Initiator mandatory, responder optional without that PPK_ID: the
    // initiator ends it after the IKE_INTERMEDIATE response.
    let mut p = pair(1941, policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Either), policy(vec![ppk("other", PPK_A)], false, PpkExchange::Either));
    p.initiate(Side::A, "site");
    p.drive();
    assert_auth_failed(&p, Side::A);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 0, "no IKE_AUTH after a failed PPK exchange");
    // Initiator optional, responder mandatory: the responder answers the
    // IKE_INTERMEDIATE with AUTHENTICATION_FAILED.
    let mut p = pair(1942, policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::Either), policy(vec![ppk("other", PPK_A)], true, PpkExchange::Either));
    p.initiate(Side::A, "site");
    p.drive();
    assert_auth_failed(&p, Side::A);
    assert_eq!(p.downs(Side::B), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 0);
}

#[test]
fn a_wrong_ppk_secret_is_caught_by_the_confirmation() {
    // Same PPK_ID, different secret: the PPK Confirmation does not match,
    // so the responder does not take the PPK. Optional on both ends: no PPK
    // (instead of an AUTH that cannot verify, as RFC 8784 would end);
    // mandatory on the responder: refused in IKE_INTERMEDIATE.
    let mut p = pair(1951, policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::Either), policy(vec![ppk("pqc-1", PPK_B)], false, PpkExchange::Either));
    run(&mut p, Side::A);
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1));
    assert_eq!(ppk_flags(&p), (false, false));
    let mut p = pair(1952, policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::Either), policy(vec![ppk("pqc-1", PPK_B)], true, PpkExchange::Either));
    p.initiate(Side::A, "site");
    p.drive();
    assert_auth_failed(&p, Side::A);
}

#[test]
fn the_responder_picks_the_ppk_by_id_among_its_keys() {
    // B lists two PPKs; A's is the second.
    let mut p = pair(1961, policy(vec![ppk("pqc-2", PPK_B)], true, PpkExchange::Either), policy(vec![ppk("pqc-1", PPK_A), ppk("pqc-2", PPK_B)], true, PpkExchange::Either));
    run(&mut p, Side::A);
    assert_eq!(ppk_flags(&p), (true, true));
}

#[test]
fn a_peer_with_only_rfc8784_gets_rfc8784_when_either_is_allowed() {
    // Either way round: the RFC 8784-only side neither sends nor answers
    // USE_PPK_INT; the PPK goes into IKE_AUTH as before.
    for (seed, initiator) in [(1971, Side::A), (1972, Side::B)] {
        let mut p = pair(seed, policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Either), policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::IkeAuth));
        run(&mut p, initiator);
        assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1), "{initiator:?}");
        assert_eq!(ppk_flags(&p), (true, true));
        assert!(!init_notifies(&p, Side::B).contains(&NotifyType::USE_PPK_INT));
        assert!(init_notifies(&p, Side::A).contains(&NotifyType::USE_PPK) && init_notifies(&p, Side::B).contains(&NotifyType::USE_PPK));
        assert_eq!(p.sent(initiator, ExchangeType::IKE_INTERMEDIATE, false), 0, "no IKE_INTERMEDIATE for RFC 8784");
    }
}

#[test]
fn intermediate_only_refuses_an_rfc8784_peer_when_mandatory_and_goes_without_when_optional() {
    // A insists on RFC 9867 with a mandatory PPK; B only does RFC 8784:
    // A aborts after IKE_SA_INIT (no PPK_ID ever sent under classical keys).
    let mut p = pair(1981, policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Intermediate), policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::IkeAuth));
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 0);
    assert!(!init_notifies(&p, Side::A).contains(&NotifyType::USE_PPK), "no RFC 8784 offer");
    // Optional: plain IKEv2.
    let mut p = pair(1982, policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::Intermediate), policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::IkeAuth));
    run(&mut p, Side::A);
    assert_eq!(ppk_flags(&p), (false, false));
    // As responder, RFC 9867 only: an RFC 8784 initiator gets no USE_PPK.
    let mut p = pair(1983, policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::IkeAuth), policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::Intermediate));
    run(&mut p, Side::A);
    assert_eq!(ppk_flags(&p), (false, false));
    assert!(!init_notifies(&p, Side::B).contains(&NotifyType::USE_PPK));
}

#[test]
fn a_peer_without_ppk_support_gets_plain_ikev2_or_a_refusal() {
    // Responder without any PPK: it ignores USE_PPK_INT (and USE_PPK).
    let mut p = pair(1991, policy(vec![ppk("pqc-1", PPK_A)], false, PpkExchange::Either), None);
    run(&mut p, Side::A);
    assert_eq!(ppk_flags(&p), (false, false));
    assert!(!init_notifies(&p, Side::B).contains(&NotifyType::USE_PPK_INT));
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_INTERMEDIATE, false), 0);
    // Mandatory on the initiator: abort after IKE_SA_INIT.
    let mut p = pair(1992, policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Either), None);
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    // Initiator without PPKs, responder mandatory: refused in IKE_AUTH.
    let mut p = pair(1993, None, policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Either));
    p.initiate(Side::A, "site");
    p.drive();
    assert_auth_failed(&p, Side::A);
}

#[test]
fn ppk_rides_the_last_additional_key_exchange_both_roles() {
    // X25519 + ML-KEM-768: the PPK_IDENTITY_KEY goes with the ML-KEM
    // exchange (the last), so there is still one IKE_INTERMEDIATE exchange
    // (its request in two fragments), and the PPK is mixed after ML-KEM.
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Either);
    for (seed, initiator) in [(2001, Side::A), (2002, Side::B)] {
        let (ca, cb) = conns(both(), both(), true);
        let mut p = Pair::new(seed, endpoint_config(ca), endpoint_config(cb));
        run(&mut p, initiator);
        assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1), "{initiator:?}");
        assert_eq!(ppk_flags(&p), (true, true));
        assert_eq!(p.sent(initiator, ExchangeType::IKE_INTERMEDIATE, false), 2, "one ML-KEM-768 request in two fragments");
        let keys = encr_keys(&p);
        let (ca, cb) = conns(None, None, true);
        let mut plain = Pair::new(seed, endpoint_config(ca), endpoint_config(cb));
        run(&mut plain, initiator);
        assert_ne!(encr_keys(&plain).0, keys.0, "the PPK is in the keys");
    }
}

#[test]
fn the_ppk_survives_a_lost_intermediate_response() {
    // The responder changes keys once its response is out; a retransmitted
    // request is answered from the cache with the old keys.
    let both = || policy(vec![ppk("pqc-1", PPK_A)], true, PpkExchange::Either);
    let mut p = pair(2011, both(), both());
    p.link.filter = Some(drop_nth(Side::B, ExchangeType::IKE_INTERMEDIATE, true, 1));
    run(&mut p, Side::A);
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1));
    assert_eq!(ppk_flags(&p), (true, true));
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_INTERMEDIATE, false), 2, "retransmitted once");
}
