//! RFC 9242 IKE_INTERMEDIATE and RFC 9370 multiple key exchanges with
//! ML-KEM (draft-ietf-ipsecme-ikev2-mlkem) between two endpoints: the
//! exchanges on the wire, Message IDs, fragmentation, loss, fallback to a
//! classic proposal, bad KE data, and matching Child SA keys.
use std::time::Duration;

use ike_crypto::ke::{KeyExchange, Responded};
use ike_crypto::rng::DeterministicRng;
use ike_crypto::{CryptoProvider, RustCryptoProvider, Secret};
use ike_wire::{ExchangeType, KeId, Message, NotifyType, Payload, TransformType};
use rand_core::CryptoRngCore;

use super::util::*;
use crate::config::FragmentationConfig;
use crate::{ConnectionConfig, DownReason, Endpoint, EndpointConfig};

fn with_addke(mut c: ConnectionConfig, slots: &[&[KeId]]) -> ConnectionConfig {
    for p in &mut c.ike_proposals {
        p.additional_ke = slots.iter().map(|s| s.to_vec()).collect();
    }
    c
}

fn pq_pair(seed: u64, a_slots: &[&[KeId]], b_slots: &[&[KeId]]) -> Pair {
    let ca = with_addke(psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true), a_slots);
    let cb = with_addke(psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false), b_slots);
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

/// (Message ID, is response) of each datagram `side` sent in `exchange`.
fn mids(p: &Pair, side: Side, exchange: ExchangeType) -> Vec<(u32, bool)> {
    p.wire
        .iter()
        .filter(|(_, s, _)| *s == side)
        .filter_map(|(_, _, d)| d.header().filter(|h| h.exchange_type == exchange).map(|h| (h.message_id, h.flags.response())))
        .fold(Vec::new(), |mut v, m| {
            // One entry per message: fragments and retransmits collapse.
            if v.last() != Some(&m) {
                v.push(m);
            }
            v
        })
}

fn suite_of(p: &Pair, side: Side) -> crate::IkeSuite {
    let n = match side {
        Side::A => &p.a,
        Side::B => &p.b,
    };
    n.ep.ike_sas().into_iter().find(|s| s.state == "Established").and_then(|s| s.suite).expect("an established IKE SA")
}

fn assert_child_keys_match(p: &Pair) {
    let (a, b) = (p.installs(Side::A), p.installs(Side::B));
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(a[0].keys_out.encr[..], b[0].keys_in.encr[..]);
    assert_eq!(a[0].keys_in.encr[..], b[0].keys_out.encr[..]);
}

fn init_notify(p: &Pair, side: Side, t: NotifyType) -> bool {
    p.wire.iter().filter(|(_, s, _)| *s == side).any(|(_, _, d)| {
        d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT)
            && Message::parse(d.ike_bytes()).is_ok_and(|m| m.notify(t).is_some())
    })
}

#[test]
fn x25519_plus_mlkem768_runs_one_ike_intermediate_then_ike_auth_with_the_next_message_id() {
    let mut p = pq_pair(900, &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    p.connect();
    assert!(init_notify(&p, Side::A, NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED));
    assert!(init_notify(&p, Side::B, NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED));
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_INTERMEDIATE), vec![(1, false)]);
    assert_eq!(mids(&p, Side::B, ExchangeType::IKE_INTERMEDIATE), vec![(1, true)]);
    // RFC 9242 §3.2: IKE_AUTH takes the Message ID after the last intermediate.
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_AUTH), vec![(2, false)]);
    for side in [Side::A, Side::B] {
        let s = suite_of(&p, side);
        assert_eq!((s.ke, s.additional_ke.clone()), (KeId::CURVE25519, vec![KeId::ML_KEM_768]));
    }
    assert_child_keys_match(&p);
    // The ML-KEM-768 encapsulation key (1184) and ciphertext (1088) were
    // carried: the request and response are at least that long.
    let len = |side| p.wire.iter().filter(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_INTERMEDIATE)).map(|(_, _, d)| d.payload.len()).sum::<usize>();
    assert!(len(Side::A) > 1184 && len(Side::B) > 1088, "{} {}", len(Side::A), len(Side::B));
}

#[test]
fn mlkem768_as_additional_ke_works_with_b_as_initiator() {
    let mut p = pq_pair(901, &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    p.initiate(Side::B, "site");
    p.drive_until(|p| p.ups(Side::A) == 1 && p.ups(Side::B) == 1);
    p.drive_for(Duration::from_secs(1));
    assert_eq!(mids(&p, Side::B, ExchangeType::IKE_INTERMEDIATE), vec![(1, false)]);
    assert_eq!(mids(&p, Side::B, ExchangeType::IKE_AUTH), vec![(2, false)]);
    assert_eq!(suite_of(&p, Side::A).additional_ke, vec![KeId::ML_KEM_768]);
    assert_child_keys_match(&p);
}

#[test]
fn two_additional_key_exchanges_run_in_addke_order() {
    let slots: &[&[KeId]] = &[&[KeId::ECP_256], &[KeId::ML_KEM_768]];
    let mut p = pq_pair(902, slots, slots);
    p.connect();
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_INTERMEDIATE), vec![(1, false), (2, false)]);
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_AUTH), vec![(3, false)]);
    // ADDKE1 (ECP-256, one small message) first, then ADDKE2 (ML-KEM-768,
    // fragmented at the default size).
    let lens: Vec<(u32, usize)> = p
        .wire
        .iter()
        .filter(|(_, s, _)| *s == Side::A)
        .filter_map(|(_, _, d)| d.header().filter(|h| h.exchange_type == ExchangeType::IKE_INTERMEDIATE).map(|h| (h.message_id, d.payload.len())))
        .collect();
    assert!(lens[0].0 == 1 && lens[0].1 < 300, "{lens:?}");
    assert!(lens.iter().filter(|l| l.0 == 2).map(|l| l.1).sum::<usize>() > 1184, "{lens:?}");
    assert_eq!(suite_of(&p, Side::B).additional_ke, vec![KeId::ECP_256, KeId::ML_KEM_768]);
    assert_child_keys_match(&p);
}

#[test]
fn optional_slots_and_no_duplicates_across_slots() {
    // A offers ADDKE1 {768, NONE}, ADDKE2 {768, 1024}; B allows only 768 in
    // both: B takes 768 for one slot and must not take it again.
    let a: &[&[KeId]] = &[&[KeId::ML_KEM_768, KeId::NONE], &[KeId::ML_KEM_768, KeId::ML_KEM_1024]];
    let b: &[&[KeId]] = &[&[KeId::ML_KEM_768, KeId::NONE], &[KeId::ML_KEM_1024, KeId::ML_KEM_768]];
    let mut p = pq_pair(903, a, b);
    p.connect();
    assert_eq!(suite_of(&p, Side::A).additional_ke, vec![KeId::ML_KEM_768, KeId::ML_KEM_1024]);
    // Now B allows 768 only, in either slot, slot 1 optional.
    let b: &[&[KeId]] = &[&[KeId::ML_KEM_768, KeId::NONE], &[KeId::ML_KEM_768]];
    let mut p = pq_pair(904, a, b);
    p.connect();
    assert_eq!(suite_of(&p, Side::A).additional_ke, vec![KeId::ML_KEM_768], "slot 1 NONE, slot 2 ML-KEM-768");
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_INTERMEDIATE).len(), 1);
    assert_child_keys_match(&p);
}

fn frag(conn: ConnectionConfig, max: usize) -> EndpointConfig {
    EndpointConfig { fragmentation: Some(FragmentationConfig { max_message_len: max, ..FragmentationConfig::default() }), ..endpoint_config(conn) }
}

fn frag_pair(seed: u64, max: usize) -> Pair {
    let slots: &[&[KeId]] = &[&[KeId::ML_KEM_1024]];
    let ca = with_addke(psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true), slots);
    let cb = with_addke(psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false), slots);
    Pair::new(seed, frag(ca, max), frag(cb, max))
}

fn skf(p: &Pair, side: Side, exchange: ExchangeType) -> Vec<(u16, u16, usize)> {
    p.wire
        .iter()
        .filter(|(_, s, _)| *s == side)
        .filter_map(|(_, _, d)| {
            let m = Message::parse(d.ike_bytes()).ok()?;
            let f = m.skf().filter(|_| m.header.exchange_type == exchange)?;
            Some((f.fragment_number, f.total_fragments, d.ike_bytes().len()))
        })
        .collect()
}

#[test]
fn mlkem1024_intermediate_is_fragmented_both_ways() {
    let mut p = frag_pair(905, 400);
    p.connect();
    for side in [Side::A, Side::B] {
        let f = skf(&p, side, ExchangeType::IKE_INTERMEDIATE);
        // 1568 octets of key or ciphertext in fragments of at most 400.
        assert!(f.len() >= 4, "{side:?}: {f:?}");
        assert!(f.iter().all(|(_, total, len)| usize::from(*total) == f.len() && *len <= 400), "{f:?}");
    }
    assert_eq!(suite_of(&p, Side::A).additional_ke, vec![KeId::ML_KEM_1024]);
    assert_child_keys_match(&p);
}

#[test]
fn mlkem1024_at_the_default_fragment_size_of_1280_octet_datagrams() {
    let mut p = frag_pair(906, FragmentationConfig::default().max_message_len);
    p.connect();
    let f = skf(&p, Side::A, ExchangeType::IKE_INTERMEDIATE);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_child_keys_match(&p);
}

#[test]
fn lost_intermediate_request_and_response_are_retransmitted() {
    for (seed, side, response) in [(907, Side::A, false), (908, Side::B, true)] {
        let mut p = pq_pair(seed, &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
        p.link.filter = Some(drop_nth(side, ExchangeType::IKE_INTERMEDIATE, response, 1));
        p.connect();
        // The ML-KEM-768 request is two fragments at the default size, the
        // response (ciphertext 1088 octets) one datagram.
        assert_eq!(p.sent(Side::A, ExchangeType::IKE_INTERMEDIATE, false), 4, "resent once");
        assert_eq!(p.sent(Side::B, ExchangeType::IKE_INTERMEDIATE, true), if response { 2 } else { 1 });
        assert_child_keys_match(&p);
    }
}

#[test]
fn lost_fragments_of_a_fragmented_intermediate_are_recovered() {
    for (seed, side, response, nth) in [(909, Side::A, false, 3), (910, Side::B, true, 2)] {
        let mut p = frag_pair(seed, 400);
        p.link.filter = Some(drop_nth(side, ExchangeType::IKE_INTERMEDIATE, response, nth));
        p.connect();
        assert_child_keys_match(&p);
    }
}

#[test]
fn random_loss_duplication_and_reordering_still_agree() {
    for seed in 911..916 {
        let mut p = frag_pair(seed, 500);
        p.link.loss_permille = 150;
        p.link.dup_permille = 100;
        p.link.jitter = Duration::from_millis(30);
        p.initiate(Side::A, "site");
        p.drive_until(|p| p.ups(Side::A) == 1 && p.ups(Side::B) == 1);
        p.drive_for(Duration::from_secs(2));
        assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1), "seed {seed}");
        assert_child_keys_match(&p);
    }
}

#[test]
fn falls_back_to_the_classic_proposal_against_a_peer_without_addke() {
    let mut p = pq_pair(916, &[&[KeId::ML_KEM_768]], &[]);
    p.connect();
    // The offer carried the ADDKE proposal and its classic fallback.
    let (_, _, d) = p
        .wire
        .iter()
        .find(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
        .expect("IKE_SA_INIT");
    let m = Message::parse(d.ike_bytes()).expect("parses");
    let sa = m.payloads.iter().find_map(|p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    });
    let sa = sa.expect("SAi1");
    assert_eq!(sa.proposals.len(), 2);
    assert!(sa.proposals[0].transforms.iter().any(|t| t.transform_type == TransformType::ADDKE1));
    assert!(!sa.proposals[1].transforms.iter().any(|t| t.transform_type == TransformType::ADDKE1));
    // B still announced IKE_INTERMEDIATE support; no exchange was needed.
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_INTERMEDIATE), vec![]);
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_AUTH), vec![(1, false)]);
    assert!(suite_of(&p, Side::A).additional_ke.is_empty());
    assert_child_keys_match(&p);
}

#[test]
fn falls_back_against_a_peer_that_does_not_know_intermediate() {
    let ca = with_addke(psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true), &[&[KeId::ML_KEM_768]]);
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut cfg_b = endpoint_config(cb);
    cfg_b.intermediate = false;
    let mut p = Pair::new(917, endpoint_config(ca), cfg_b);
    p.connect();
    assert!(!init_notify(&p, Side::B, NotifyType::INTERMEDIATE_EXCHANGE_SUPPORTED));
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_INTERMEDIATE), vec![]);
    assert_child_keys_match(&p);
}

#[test]
fn a_responder_with_addke_still_accepts_a_classic_only_initiator() {
    // B offers ML-KEM-768 mandatory; A has no ADDKE at all.
    let mut p = pq_pair(918, &[], &[&[KeId::ML_KEM_768]]);
    // B's with_fallbacks only applies to what it offers as initiator; as a
    // responder it chooses from its configured proposals and their
    // fallbacks, so a classic-only A still gets in. That is the documented
    // policy: "required" would be a separate switch.
    p.connect();
    assert!(suite_of(&p, Side::B).additional_ke.is_empty());
}

// ----------------------------------------------------------------------
// Bad KE data

/// A provider that breaks one direction of ML-KEM: `bad_ek` sends an
/// encapsulation key failing the FIPS 203 §7.2 modulus check; `bad_ct`
/// answers with a ciphertext of the wrong length (§7.3).
struct Tamper {
    bad_ek: bool,
    bad_ct: bool,
}

struct BadEk(Box<dyn KeyExchange>, Vec<u8>);

impl KeyExchange for BadEk {
    fn method(&self) -> u16 {
        self.0.method()
    }
    fn is_kem(&self) -> bool {
        true
    }
    fn public_key(&self) -> &[u8] {
        &self.1
    }
    fn compute_shared(&self, d: &[u8]) -> Result<Secret, ike_crypto::Error> {
        self.0.compute_shared(d)
    }
}

impl CryptoProvider for Tamper {
    fn key_exchange(&self, method: u16, rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, ike_crypto::Error> {
        let ke = RustCryptoProvider.key_exchange(method, rng)?;
        if self.bad_ek && ke.is_kem() {
            let len = ke.public_key().len();
            return Ok(Box::new(BadEk(ke, vec![0xff; len])));
        }
        Ok(ke)
    }
    fn key_exchange_respond(&self, method: u16, peer: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Responded, ike_crypto::Error> {
        let mut r = RustCryptoProvider.key_exchange_respond(method, peer, rng)?;
        if self.bad_ct && peer.len() > 700 {
            r.ke_data.truncate(r.ke_data.len() - 1);
        }
        Ok(r)
    }
    fn prf(&self, id: u16) -> Result<Box<dyn ike_crypto::prf::Prf>, ike_crypto::Error> {
        RustCryptoProvider.prf(id)
    }
    fn sk_protection(&self, encr: u16, key_bits: Option<u16>, integ: u16, sk_e: &[u8], sk_a: &[u8]) -> Result<Box<dyn ike_crypto::sk::SkProtection>, ike_crypto::Error> {
        RustCryptoProvider.sk_protection(encr, key_bits, integ, sk_e, sk_a)
    }
    fn encr_key_len(&self, encr: u16, key_bits: Option<u16>) -> Result<usize, ike_crypto::Error> {
        RustCryptoProvider.encr_key_len(encr, key_bits)
    }
    fn integ_key_len(&self, integ: u16) -> Result<usize, ike_crypto::Error> {
        RustCryptoProvider.integ_key_len(integ)
    }
    fn supports_key_exchange(&self, method: u16) -> bool {
        RustCryptoProvider.supports_key_exchange(method)
    }
}

fn tampered_pair(seed: u64, a: Tamper, b: Tamper) -> Pair {
    let ca = with_addke(psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true), &[&[KeId::ML_KEM_768]]);
    let cb = with_addke(psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false), &[&[KeId::ML_KEM_768]]);
    let ea = Endpoint::new(endpoint_config(ca), Box::new(a), Box::new(DeterministicRng::from_u64(seed)), T0, UNIX_T0);
    let eb = Endpoint::new(endpoint_config(cb), Box::new(b), Box::new(DeterministicRng::from_u64(seed ^ 1)), T0, UNIX_T0);
    Pair::from_endpoints(seed, ea, eb)
}

#[test]
fn a_bad_encapsulation_key_is_answered_with_invalid_syntax_and_ends_both_sides() {
    let mut p = tampered_pair(919, Tamper { bad_ek: true, bad_ct: false }, Tamper { bad_ek: false, bad_ct: false });
    p.initiate(Side::A, "site");
    p.drive_for(Duration::from_secs(5));
    assert_eq!(p.downs(Side::A), vec![DownReason::Refused(NotifyType::INVALID_SYNTAX)]);
    assert_eq!(p.downs(Side::B), vec![DownReason::Refused(NotifyType::INVALID_SYNTAX)]);
    let answer = p
        .wire
        .iter()
        .filter(|(_, s, d)| *s == Side::B && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_INTERMEDIATE))
        .count();
    assert_eq!(answer, 1, "one (error) response");
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 0);
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (0, 0));
}

#[test]
fn a_bad_ciphertext_stops_the_initiator_before_ike_auth() {
    let mut p = tampered_pair(920, Tamper { bad_ek: false, bad_ct: false }, Tamper { bad_ek: false, bad_ct: true });
    p.initiate(Side::A, "site");
    p.drive_for(Duration::from_secs(5));
    assert_eq!(p.downs(Side::A), vec![DownReason::Refused(NotifyType::INVALID_SYNTAX)]);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 0, "no IKE_AUTH after a failed decapsulation");
    assert_eq!(p.ups(Side::B), 0);
}

// ----------------------------------------------------------------------
// IKE SA rekeys with IKE_FOLLOWUP_KE (RFC 9370 §2.2.4)

fn rekey_ike(p: &mut Pair, side: Side) -> crate::IkeSaHandle {
    let h = up_handle(p, side);
    p.command(side, crate::Command::RekeyIke { ike_sa: h });
    p.drive();
    h
}

/// The new IKE SA works both ways: a liveness check from each side, and a
/// new Child SA whose keys match.
fn assert_new_sa_works(p: &mut Pair) {
    for side in [Side::A, Side::B] {
        let h = up_handle(p, side);
        p.command(side, crate::Command::Dpd { ike_sa: h });
        p.drive();
    }
    let h = up_handle(p, Side::A);
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    p.drive();
    let (a, b) = (p.installs(Side::A), p.installs(Side::B));
    let (la, lb) = (a.last().expect("A child"), b.last().expect("B child"));
    assert_eq!(la.spi_out, lb.spi_in);
    assert_eq!(la.keys_out.encr[..], lb.keys_in.encr[..]);
    assert!(p.downs(Side::A).iter().all(|d| *d == DownReason::Rekeyed), "{:?}", p.downs(Side::A));
}

#[test]
fn ike_sa_rekey_with_mlkem768_runs_ike_followup_ke_in_both_directions() {
    let mut p = pq_pair(930, &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    p.connect();
    let old = rekey_ike(&mut p, Side::A);
    // After IKE_INTERMEDIATE (1) and IKE_AUTH (2): CREATE_CHILD_SA 3, then
    // IKE_FOLLOWUP_KE 4, both on the old SA.
    assert_eq!(mids(&p, Side::A, ExchangeType::CREATE_CHILD_SA), vec![(3, false)]);
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_FOLLOWUP_KE), vec![(4, false)]);
    assert_eq!(mids(&p, Side::B, ExchangeType::IKE_FOLLOWUP_KE), vec![(4, true)]);
    for side in [Side::A, Side::B] {
        assert_eq!(p.count(side, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), 1, "{side:?}");
        assert_eq!(suite_of(&p, side).additional_ke, vec![KeId::ML_KEM_768]);
    }
    assert_ne!(up_handle(&p, Side::A), old);
    assert_new_sa_works(&mut p);
    // B rekeys the new SA back (B holds the ML-KEM key pair this time).
    rekey_ike(&mut p, Side::B);
    assert_eq!(p.count(Side::A, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), 2);
    // (B's new SA sent a liveness check, 0, then CREATE_CHILD_SA 1.)
    assert_eq!(mids(&p, Side::B, ExchangeType::IKE_FOLLOWUP_KE), vec![(4, true), (2, false)]);
    assert_new_sa_works(&mut p);
}

#[test]
fn ike_sa_rekey_with_two_additional_key_exchanges_chains_the_links() {
    let slots: &[&[KeId]] = &[&[KeId::ECP_256], &[KeId::ML_KEM_1024]];
    let ca = with_addke(psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true), slots);
    let cb = with_addke(psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false), slots);
    let mut p = Pair::new(931, frag(ca, 600), frag(cb, 600));
    p.connect();
    rekey_ike(&mut p, Side::A);
    // IKE_INTERMEDIATE 1 and 2, IKE_AUTH 3, CREATE_CHILD_SA 4.
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_FOLLOWUP_KE), vec![(5, false), (6, false)]);
    // Each IKE_FOLLOWUP_KE request but the first carries a link the
    // responder made in its previous answer; the ML-KEM-1024 one is
    // fragmented at 600 octets.
    assert!(skf(&p, Side::A, ExchangeType::IKE_FOLLOWUP_KE).len() >= 3);
    assert_eq!(suite_of(&p, Side::B).additional_ke, vec![KeId::ECP_256, KeId::ML_KEM_1024]);
    assert_new_sa_works(&mut p);
}

#[test]
fn ike_sa_rekey_survives_loss_of_an_ike_followup_ke_response() {
    let mut p = pq_pair(932, &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    p.connect();
    p.link.filter = Some(drop_nth(Side::B, ExchangeType::IKE_FOLLOWUP_KE, true, 1));
    rekey_ike(&mut p, Side::A);
    assert_eq!(p.sent(Side::B, ExchangeType::IKE_FOLLOWUP_KE, true), 2, "the cached response, resent");
    for side in [Side::A, Side::B] {
        assert_eq!(p.count(side, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), 1);
    }
    assert_new_sa_works(&mut p);
}

#[test]
fn an_abandoned_followup_is_forgotten_and_answered_with_state_not_found() {
    let mut p = pq_pair(933, &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    p.connect();
    let old_b = up_handle(&p, Side::B);
    // A's IKE_FOLLOWUP_KE requests are lost until B gave up on the rekey.
    let until = p.time + Duration::from_secs(35);
    let clock = std::rc::Rc::new(std::cell::Cell::new(p.time));
    let c2 = clock.clone();
    p.link.filter = Some(Box::new(move |side, d| {
        side == Side::A && c2.get() < until && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_FOLLOWUP_KE)
    }));
    let h = up_handle(&p, Side::A);
    p.command(Side::A, crate::Command::RekeyIke { ike_sa: h });
    while p.time < until + Duration::from_secs(60) {
        p.drive_for(Duration::from_secs(1));
        clock.set(p.time);
    }
    // B answered a late retransmit (it had forgotten the link): STATE_NOT_FOUND.
    let answers = p.sent(Side::B, ExchangeType::IKE_FOLLOWUP_KE, true);
    assert_eq!(answers, 1, "one answer, the error");
    for side in [Side::A, Side::B] {
        assert_eq!(p.count(side, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), 0, "{side:?}: no rekey happened");
        assert!(p.downs(side).is_empty(), "{side:?}: {:?}", p.downs(side));
    }
    assert_eq!(up_handle(&p, Side::B), old_b);
    // The SPIs set aside for the new SA were given back: one IKE SA each.
    assert_eq!((p.a.ep.ike_sa_count(), p.b.ep.ike_sa_count()), (1, 1));
    // The old SA still works and can be rekeyed now.
    rekey_ike(&mut p, Side::A);
    assert_eq!(p.count(Side::B, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), 1);
    assert_new_sa_works(&mut p);
}

#[test]
fn followup_code_points_match_rfc_9370() {
    // RFC 9370 §5 / IANA: IKE_FOLLOWUP_KE 44, ADDITIONAL_KEY_EXCHANGE 16441,
    // STATE_NOT_FOUND 47; ADDKE1..7 are transform types 6..12.
    assert_eq!(ExchangeType::IKE_FOLLOWUP_KE.0, 44);
    assert_eq!(NotifyType::ADDITIONAL_KEY_EXCHANGE.0, 16441);
    assert_eq!(NotifyType::STATE_NOT_FOUND.0, 47);
    assert_eq!((TransformType::ADDKE1.0, TransformType::ADDKE7.0), (6, 12));
    let n = crate::error::ProtoError::StateNotFound.notify().expect("a notify");
    assert_eq!(n.notify_type, NotifyType::STATE_NOT_FOUND);
}

#[test]
fn ike_sa_rekey_against_a_peer_without_addke_stays_classic() {
    let mut p = pq_pair(935, &[&[KeId::ML_KEM_768]], &[]);
    p.connect();
    rekey_ike(&mut p, Side::A);
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_FOLLOWUP_KE), vec![]);
    assert_eq!(p.count(Side::B, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), 1);
    assert_new_sa_works(&mut p);
}

// ----------------------------------------------------------------------
// Child SAs with additional key exchanges (CREATE_CHILD_SA + IKE_FOLLOWUP_KE)

fn child_addke_pair(seed: u64, pfs: &[KeId], a_slots: &[&[KeId]], b_slots: &[&[KeId]]) -> Pair {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    for (c, slots) in [(&mut ca, a_slots), (&mut cb, b_slots)] {
        c.child.esp_proposals[0].pfs = pfs.to_vec();
        c.child.esp_proposals[0].additional_ke = slots.iter().map(|s| s.to_vec()).collect();
    }
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

fn last_installs_match(p: &Pair) -> (crate::EspSuite, crate::EspSuite) {
    let (a, b) = (p.installs(Side::A), p.installs(Side::B));
    let (la, lb) = (a.last().expect("A child"), b.last().expect("B child"));
    assert_eq!(la.spi_out, lb.spi_in);
    assert_eq!(la.spi_in, lb.spi_out);
    assert_eq!(la.keys_out.encr[..], lb.keys_in.encr[..]);
    assert_eq!(la.keys_in.encr[..], lb.keys_out.encr[..]);
    assert_eq!(la.keys_out.encr.len(), 36, "real keys, not placeholders");
    (la.suite, lb.suite)
}

#[test]
fn a_new_child_sa_with_pfs_and_mlkem768_runs_one_ike_followup_ke() {
    let mut p = child_addke_pair(940, &[KeId::CURVE25519], &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    let h = p.connect();
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    p.drive();
    assert_eq!(mids(&p, Side::A, ExchangeType::CREATE_CHILD_SA), vec![(2, false)]);
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_FOLLOWUP_KE), vec![(3, false)]);
    assert_eq!(p.installs(Side::A).len(), 2);
    let (sa, sb) = last_installs_match(&p);
    assert_eq!((sa.ke, sa.additional().collect::<Vec<_>>()), (Some(KeId::CURVE25519), vec![KeId::ML_KEM_768]));
    assert_eq!(sa, sb);
    // The IKE_AUTH Child SA never has additional key exchanges.
    assert_eq!(p.installs(Side::A)[0].suite.additional().count(), 0);
}

#[test]
fn a_child_sa_rekey_with_only_additional_key_exchanges_both_directions() {
    // No PFS KE (SK(0) absent), ADDKE1 ECP-256 and ADDKE2 ML-KEM-768.
    let slots: &[&[KeId]] = &[&[KeId::ECP_256], &[KeId::ML_KEM_768]];
    let mut p = child_addke_pair(941, &[], slots, slots);
    let h = p.connect();
    let old = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, crate::Command::RekeyChild { ike_sa: h, child_sa: old });
    p.drive();
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_FOLLOWUP_KE), vec![(3, false), (4, false)], "{:?}", p.a.events);
    let (sa, _) = last_installs_match(&p);
    assert_eq!((sa.ke, sa.additional().collect::<Vec<_>>()), (None, vec![KeId::ECP_256, KeId::ML_KEM_768]));
    // The old Child SA is gone on both sides, one new one remains.
    for side in [Side::A, Side::B] {
        assert_eq!(p.count(side, |e| matches!(e, crate::Event::ChildSaDelete { .. })), 1, "{side:?}");
    }
    // B rekeys it back.
    let hb = up_handle(&p, Side::B);
    let child_b = p.installs(Side::B).last().expect("child").child_sa;
    p.command(Side::B, crate::Command::RekeyChild { ike_sa: hb, child_sa: child_b });
    p.drive();
    last_installs_match(&p);
    assert_eq!(p.count(Side::A, |e| matches!(e, crate::Event::ChildSaDelete { .. })), 2);
}

#[test]
fn a_child_sa_against_a_peer_without_esp_addke_falls_back() {
    let mut p = child_addke_pair(942, &[KeId::CURVE25519], &[&[KeId::ML_KEM_768]], &[]);
    let h = p.connect();
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    p.drive();
    assert_eq!(mids(&p, Side::A, ExchangeType::IKE_FOLLOWUP_KE), vec![]);
    let (sa, _) = last_installs_match(&p);
    assert_eq!((sa.ke, sa.additional().count()), (Some(KeId::CURVE25519), 0));
}

#[test]
fn a_lost_child_followup_request_is_retransmitted() {
    let mut p = child_addke_pair(943, &[KeId::CURVE25519], &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    let h = p.connect();
    p.link.filter = Some(drop_nth(Side::A, ExchangeType::IKE_FOLLOWUP_KE, false, 1));
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    p.drive();
    last_installs_match(&p);
    assert_eq!(p.installs(Side::B).len(), 2);
}

#[test]
fn behind_a_nat_the_first_ike_intermediate_already_uses_port_4500() {
    let mut p = pq_pair(950, &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    p.link.nat = true;
    p.connect();
    // RFC 9242 §3.2 / RFC 7296 §2.23: after NAT detection in IKE_SA_INIT.
    for (_, side, d) in p.wire.iter().filter(|(_, _, d)| d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_INTERMEDIATE)) {
        let port = if *side == Side::A { d.to.port() } else { d.from.port() };
        assert_eq!(port, 4500, "{side:?}");
        assert_eq!(d.payload[..4], [0, 0, 0, 0], "non-ESP marker");
    }
    assert_child_keys_match(&p);
    assert!(p.installs(Side::A)[0].udp_encap);
}

#[test]
fn mlkem512_alone_in_ike_sa_init_both_roles() {
    // draft-ietf-ipsecme-ikev2-mlkem §3: ML-KEM-512 MAY be the only key
    // exchange of IKE_SA_INIT (its 800-octet key fits one datagram); the
    // initiator sends ek, the responder the 768-octet ciphertext.
    for (seed, side) in [(960, Side::A), (961, Side::B)] {
        let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
        let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
        ca.ike_proposals = vec![ike_proposal(&[KeId::ML_KEM_512])];
        cb.ike_proposals = vec![ike_proposal(&[KeId::ML_KEM_512])];
        let mut p = Pair::new(seed, endpoint_config(ca), endpoint_config(cb));
        p.initiate(side, "site");
        p.drive_until(|p| p.ups(Side::A) == 1 && p.ups(Side::B) == 1);
        p.drive_for(Duration::from_secs(1));
        assert_eq!(suite_of(&p, Side::A).ke, KeId::ML_KEM_512);
        assert_eq!(mids(&p, side, ExchangeType::IKE_INTERMEDIATE), vec![]);
        let init_len = |s: Side| p.wire.iter().find(|(_, x, d)| *x == s && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT)).map(|(_, _, d)| d.payload.len()).expect("sent");
        let other = if side == Side::A { Side::B } else { Side::A };
        assert!(init_len(side) > 800 && init_len(other) > 768 && init_len(side) < 1228, "{} {}", init_len(side), init_len(other));
        assert_child_keys_match(&p);
        // And an IKE SA rekey with ML-KEM-512, started by the other side:
        // it holds the ML-KEM key pair as the rekey's initiator.
        rekey_ike(&mut p, other);
        assert_new_sa_works(&mut p);
    }
}

#[test]
fn a_child_sa_whose_followup_the_responder_forgot_fails_with_state_not_found() {
    let mut p = child_addke_pair(944, &[KeId::CURVE25519], &[&[KeId::ML_KEM_768]], &[&[KeId::ML_KEM_768]]);
    let h = p.connect();
    // A's IKE_FOLLOWUP_KE requests are lost until B dropped the pending
    // Child SA (30 s); the retransmit after that gets STATE_NOT_FOUND.
    let until = p.time + Duration::from_secs(35);
    let clock = std::rc::Rc::new(std::cell::Cell::new(p.time));
    let c2 = clock.clone();
    p.link.filter = Some(Box::new(move |side, d| {
        side == Side::A && c2.get() < until && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_FOLLOWUP_KE)
    }));
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    while p.time < until + Duration::from_secs(60) {
        p.drive_for(Duration::from_secs(1));
        clock.set(p.time);
    }
    assert_eq!(p.child_failures(Side::A), vec![NotifyType::STATE_NOT_FOUND]);
    // Nothing was installed for it on either side; the IKE SA lives on.
    assert_eq!((p.installs(Side::A).len(), p.installs(Side::B).len()), (1, 1));
    assert!(p.downs(Side::A).is_empty() && p.downs(Side::B).is_empty());
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    p.drive();
    last_installs_match(&p);
}
