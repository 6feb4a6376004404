//! MOBIKE (RFC 4555) with B as the responder: A moves behind a NAT (the
//! link's NAT starts rewriting its source) and sends UPDATE_SA_ADDRESSES.
use std::net::SocketAddr;
use std::time::Duration;

use ike_wire::{ExchangeType, Notify, NotifyType, Payload};

use super::util::*;
use crate::{Event, Mobike, MobikeOutcome, MobikeRefusal};

const COOKIE: [u8; 16] = [0xc2; 16];

fn mobike_events(p: &Pair, side: Side) -> Vec<MobikeOutcome> {
    p.events(side)
        .iter()
        .filter_map(|e| match e {
            Event::Mobike { outcome, .. } => Some(*outcome),
            _ => None,
        })
        .collect()
}

fn moves(p: &Pair, side: Side) -> Vec<(SocketAddr, SocketAddr, bool)> {
    p.events(side)
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaMoved { local, remote, udp_encap, .. } => Some((*local, *remote, *udp_encap)),
            _ => None,
        })
        .collect()
}

fn b_mobike(p: &Pair) -> Mobike {
    p.b.ep.ike_sas().into_iter().next().expect("B's IKE SA").ext.mobike
}

/// Where A's datagrams appear to come from once the link's NAT is on.
fn nat_addr() -> SocketAddr {
    SocketAddr::new(IP_NAT, 500 + 10000)
}

fn pair_with(seed: u64, b_mobike: bool, rr: bool) -> Pair {
    let a = psk_conn("site", "a.esprit.test", "b.esprit.test", b"correct horse battery staple", true);
    let mut b = psk_conn("site", "b.esprit.test", "a.esprit.test", b"correct horse battery staple", false);
    b.ext.mobike = b_mobike;
    b.ext.mobike_return_routability = rr;
    Pair::new(seed, endpoint_config(a), endpoint_config(b))
}

#[test]
fn mobike_is_negotiated_in_ike_auth_and_the_child_sa_starts_on_the_ike_path() {
    let mut p = pair_with(4555, true, true);
    p.connect();
    let Mobike::On(m) = b_mobike(&p) else { panic!("MOBIKE not negotiated") };
    assert_eq!((m.esp.local.ip(), m.esp.remote.ip(), m.esp.udp_encap), (IP_B, IP_A, false));
    assert!(m.pending.is_none());
    assert!(matches!(p.a.ep.ike_sas()[0].ext.mobike, Mobike::On(_)), "A saw MOBIKE_SUPPORTED in the answer");
}

#[test]
fn responder_without_mobike_does_not_answer_mobike_supported() {
    let mut p = pair_with(4556, false, true);
    p.connect();
    assert_eq!(b_mobike(&p), Mobike::Off);
    assert_eq!(p.a.ep.ike_sas()[0].ext.mobike, Mobike::Off, "A turned MOBIKE on without the responder's notify");
}

#[test]
fn update_sa_addresses_moves_the_child_sas_only_after_the_return_routability_check() {
    let mut p = pair_with(4557, true, true);
    let h = p.connect();
    let child = p.installs(Side::B)[0].child_sa;
    let ike_spis = (p.b.ep.ike_sas()[0].spi_i, p.b.ep.ike_sas()[0].spi_r);
    // A's address changes: from now on it appears as IP_NAT:10500.
    p.link.nat = true;
    let t = p.time;
    p.a.ep.send_update_sa_addresses(t, h, Some(COOKIE.to_vec()), Some(COOKIE.to_vec()), Vec::new());
    p.drive_for(Duration::from_secs(5));
    // B answered the UPDATE (its COOKIE2 copied: A's check of it passed),
    // then checked the new address with an INFORMATIONAL of its own.
    assert_eq!(mobike_events(&p, Side::A), Vec::<MobikeOutcome>::new(), "A saw its COOKIE2 back");
    assert_eq!(mobike_events(&p, Side::B), vec![MobikeOutcome::CheckStarted, MobikeOutcome::Moved]);
    assert_eq!(p.sent(Side::B, ExchangeType::INFORMATIONAL, false), 1, "one return-routability check");
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, true), 1, "A answered it");
    // NAT detected on the new path: ESP goes in UDP to the mapped address.
    assert_eq!(moves(&p, Side::B), vec![(SocketAddr::new(IP_B, 500), nat_addr(), true)]);
    let ev = p.events(Side::B);
    let moved = ev.iter().position(|e| matches!(e, Event::IkeSaMoved { .. })).unwrap();
    let started = ev.iter().position(|e| matches!(e, Event::Mobike { outcome: MobikeOutcome::CheckStarted, .. })).unwrap();
    assert!(started < moved, "the Child SAs moved before the check was answered");
    let info = &p.b.ep.ike_sas()[0];
    assert_eq!((info.spi_i, info.spi_r), ike_spis, "same IKE SA");
    assert_eq!(info.remote, nat_addr());
    assert!(p.b.ep.child_sas(info.ike_sa).iter().any(|c| c.0 == child), "same Child SA");
    let Mobike::On(m) = b_mobike(&p) else { panic!() };
    assert_eq!((m.esp.remote, m.esp.udp_encap, m.pending, m.moves), (nat_addr(), true, None, 1));
    // No new IKE SA, no rekey, nothing deleted.
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_SA_INIT, false), 1);
    assert_eq!(p.sent(Side::A, ExchangeType::CREATE_CHILD_SA, false), 0);
    assert!(p.downs(Side::A).is_empty() && p.downs(Side::B).is_empty());
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::ChildSaDelete { .. })), 0);
}

#[test]
fn a_lost_return_routability_check_is_retransmitted_and_the_move_waits_for_its_answer() {
    let mut p = pair_with(4558, true, true);
    let h = p.connect();
    p.link.nat = true;
    // The check's request is lost once: B retransmits it (same Message ID,
    // same bytes) and moves only on the answer.
    p.link.filter = Some(drop_nth(Side::B, ExchangeType::INFORMATIONAL, false, 1));
    let t = p.time;
    p.a.ep.send_update_sa_addresses(t, h, None, None, Vec::new());
    p.drive_for(Duration::from_millis(100));
    assert_eq!(mobike_events(&p, Side::B), vec![MobikeOutcome::CheckStarted]);
    assert!(moves(&p, Side::B).is_empty(), "moved before the check was answered");
    p.drive_for(Duration::from_secs(30));
    assert_eq!(p.sent(Side::B, ExchangeType::INFORMATIONAL, false), 2, "the check and its retransmit");
    assert_eq!(mobike_events(&p, Side::B), vec![MobikeOutcome::CheckStarted, MobikeOutcome::Moved]);
    assert_eq!(moves(&p, Side::B).len(), 1);
}

#[test]
fn a_retransmitted_update_is_answered_from_the_cache_and_applied_once() {
    let mut p = pair_with(4559, true, false);
    let h = p.connect();
    p.link.nat = true;
    // B's answer is lost: A retransmits the same request.
    p.link.filter = Some(drop_nth(Side::B, ExchangeType::INFORMATIONAL, true, 1));
    let t = p.time;
    p.a.ep.send_update_sa_addresses(t, h, Some(COOKIE.to_vec()), Some(COOKIE.to_vec()), Vec::new());
    p.drive_for(Duration::from_secs(30));
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, false), 2, "request and retransmit");
    assert_eq!(p.sent(Side::B, ExchangeType::INFORMATIONAL, true), 2, "answer and the cached answer");
    // Without return routability (strongSwan's way) the move is at once.
    assert_eq!(mobike_events(&p, Side::B), vec![MobikeOutcome::Moved]);
    assert_eq!(moves(&p, Side::B), vec![(SocketAddr::new(IP_B, 500), nat_addr(), true)]);
    assert_eq!(p.sent(Side::B, ExchangeType::INFORMATIONAL, false), 0, "no check");
    assert!(p.downs(Side::A).is_empty());
}

#[test]
fn update_without_negotiated_mobike_is_refused_and_nothing_moves() {
    let mut p = pair_with(4560, false, true);
    let h = p.connect();
    p.link.nat = true;
    let t = p.time;
    p.a.ep.send_update_sa_addresses(t, h, None, None, Vec::new());
    p.drive_for(Duration::from_secs(5));
    assert_eq!(mobike_events(&p, Side::B), vec![MobikeOutcome::Refused(MobikeRefusal::NotNegotiated)]);
    assert!(moves(&p, Side::B).is_empty());
    assert_eq!(p.sent(Side::B, ExchangeType::INFORMATIONAL, true), 1, "answered all the same");
    assert!(p.downs(Side::A).is_empty() && p.downs(Side::B).is_empty());
}

#[test]
fn malformed_mobike_notify_is_refused_with_invalid_syntax_and_changes_nothing() {
    let mut p = pair_with(4561, true, true);
    let h = p.connect();
    p.link.nat = true;
    let t = p.time;
    // COOKIE2 of 4 octets (§4.2.5: 8 to 64).
    let bad = Payload::Notify(Notify::new(NotifyType::COOKIE2, vec![1, 2, 3, 4]));
    p.a.ep.send_update_sa_addresses(t, h, None, None, vec![bad]);
    p.drive_for(Duration::from_secs(5));
    assert_eq!(
        mobike_events(&p, Side::B),
        vec![MobikeOutcome::Refused(MobikeRefusal::Malformed(crate::ike_sa::MobikeError::Cookie2Length(4)))]
    );
    assert!(moves(&p, Side::B).is_empty());
    let Mobike::On(m) = b_mobike(&p) else { panic!() };
    assert_eq!((m.esp.remote.ip(), m.pending), (IP_A, None));
    assert!(p.downs(Side::B).is_empty(), "the IKE SA stays");
}

#[test]
fn no_nats_allowed_that_does_not_match_the_ip_header_is_answered_unexpected_nat() {
    let mut p = pair_with(4562, true, false);
    let h = p.connect();
    p.link.nat = true;
    let t = p.time;
    // A believes it sends from IP_A:500; the NAT says otherwise (§3.9).
    let nn = crate::ike_sa::mobike_no_nats_for_test(SocketAddr::new(IP_A, 500), SocketAddr::new(IP_B, 500));
    p.a.ep.send_update_sa_addresses(t, h, None, None, vec![nn]);
    p.drive_for(Duration::from_secs(5));
    assert_eq!(mobike_events(&p, Side::B), vec![MobikeOutcome::Refused(MobikeRefusal::UnexpectedNat)]);
    assert!(moves(&p, Side::B).is_empty());
}

#[test]
fn a_wrong_cookie2_in_the_answer_closes_the_ike_sa() {
    let mut p = pair_with(4563, true, false);
    let h = p.connect();
    let t = p.time;
    // A sends one COOKIE2 and waits for another: B's faithful copy then
    // looks like a forged answer to A, which must close the IKE SA (§3.7).
    p.a.ep.send_update_sa_addresses(t, h, Some(COOKIE.to_vec()), Some(vec![0x5a; 16]), Vec::new());
    p.drive_for(Duration::from_secs(5));
    assert_eq!(mobike_events(&p, Side::A), vec![MobikeOutcome::Refused(MobikeRefusal::CookieMismatch)]);
    assert_eq!(p.downs(Side::A), vec![crate::DownReason::Deleted]);
    assert_eq!(p.downs(Side::B), vec![crate::DownReason::Deleted]);
}

#[test]
fn an_update_from_the_path_in_use_changes_nothing_and_the_additional_addresses_are_kept() {
    let mut p = pair_with(4564, true, true);
    let h = p.connect();
    let t = p.time;
    let extra = vec![Payload::Notify(Notify::new(NotifyType::ADDITIONAL_IP4_ADDRESS, vec![192, 0, 2, 77]))];
    p.a.ep.send_update_sa_addresses(t, h, None, None, extra);
    p.drive_for(Duration::from_secs(5));
    assert_eq!(mobike_events(&p, Side::B), vec![MobikeOutcome::Unchanged]);
    let Mobike::On(m) = b_mobike(&p) else { panic!() };
    assert_eq!(m.peer_addresses, vec![IP_A, "192.0.2.77".parse().unwrap()]);
    assert_eq!(p.sent(Side::B, ExchangeType::INFORMATIONAL, false), 0, "no check of a proven path");
}

#[test]
fn a_child_sa_created_after_the_move_is_installed_on_the_new_path() {
    let mut p = pair_with(4565, true, false);
    let h = p.connect();
    p.link.nat = true;
    let t = p.time;
    p.a.ep.send_update_sa_addresses(t, h, None, None, Vec::new());
    p.drive_for(Duration::from_secs(2));
    p.command(Side::A, crate::Command::CreateChild { ike_sa: h });
    p.drive_for(Duration::from_secs(5));
    let last = *p.installs(Side::B).last().unwrap();
    assert_eq!((last.remote, last.udp_encap), (nat_addr(), true));
}
