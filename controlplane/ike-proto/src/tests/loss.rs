//! Lost, duplicated and reordered datagrams (RFC 7296 §2.1).
use std::time::Duration;

use ike_wire::ExchangeType;

use super::util::*;
use crate::DownReason;

fn wire_times(p: &Pair, side: Side, exchange: ExchangeType, response: bool) -> Vec<Duration> {
    p.wire
        .iter()
        .filter(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == exchange && h.flags.response() == response))
        .map(|(t, _, _)| t.saturating_since(T0))
        .collect()
}

fn wire_bytes(p: &Pair, side: Side, exchange: ExchangeType, response: bool) -> Vec<Vec<u8>> {
    p.wire
        .iter()
        .filter(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == exchange && h.flags.response() == response))
        .map(|(_, _, d)| d.payload.clone())
        .collect()
}

#[test]
fn handshake_recovers_when_the_ike_sa_init_request_is_lost() {
    let mut p = Pair::psk(100);
    p.link.filter = Some(drop_nth(Side::A, ExchangeType::IKE_SA_INIT, false, 1));
    p.connect();
    let sent = wire_bytes(&p, Side::A, ExchangeType::IKE_SA_INIT, false);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "a retransmission is bit-identical (§2.1)");
    assert_eq!(wire_times(&p, Side::A, ExchangeType::IKE_SA_INIT, false)[1], Duration::from_secs(4));
}

#[test]
fn lost_ike_sa_init_response_is_answered_from_the_cache() {
    let mut p = Pair::psk(101);
    p.link.filter = Some(drop_nth(Side::B, ExchangeType::IKE_SA_INIT, true, 1));
    p.connect();
    let responses = wire_bytes(&p, Side::B, ExchangeType::IKE_SA_INIT, true);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0], responses[1], "the cached response, not a new SA");
    assert_eq!(p.b.ep.ike_sa_count(), 1);
}

#[test]
fn handshake_recovers_when_the_ike_auth_request_is_lost() {
    let mut p = Pair::psk(102);
    p.link.filter = Some(drop_nth(Side::A, ExchangeType::IKE_AUTH, false, 1));
    p.connect();
    let sent = wire_bytes(&p, Side::A, ExchangeType::IKE_AUTH, false);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);
    assert_eq!(p.installs(Side::B).len(), 1);
}

#[test]
fn lost_ike_auth_response_is_resent_from_the_cache_without_reprocessing() {
    let mut p = Pair::psk(103);
    p.link.filter = Some(drop_nth(Side::B, ExchangeType::IKE_AUTH, true, 1));
    p.connect();
    let responses = wire_bytes(&p, Side::B, ExchangeType::IKE_AUTH, true);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0], responses[1], "the cached response is resent as is");
    // Processed once: one IKE SA up, one Child SA installed on B.
    assert_eq!(p.ups(Side::B), 1);
    assert_eq!(p.installs(Side::B).len(), 1);
    let (a, b) = (p.installs(Side::A)[0], p.installs(Side::B)[0]);
    assert_eq!(a.spi_out, b.spi_in);
}

#[test]
fn duplicated_datagrams_create_nothing_twice() {
    let mut p = Pair::psk(104);
    p.link.dup_permille = 1000;
    p.connect();
    assert_eq!(p.b.ep.ike_sa_count(), 1);
    assert_eq!((p.installs(Side::A).len(), p.installs(Side::B).len()), (1, 1));
    assert_eq!(p.ups(Side::A) + p.ups(Side::B), 2);
}

#[test]
fn handshake_completes_over_a_lossy_reordering_link_for_many_seeds() {
    for seed in 0..12 {
        let mut p = Pair::psk(200 + seed);
        p.link.loss_permille = 200;
        p.link.dup_permille = 100;
        p.link.jitter = Duration::from_millis(300);
        p.initiate(Side::A, "site");
        p.drive();
        assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1), "seed {seed}");
        let (a, b) = (p.installs(Side::A), p.installs(Side::B));
        assert_eq!((a.len(), b.len()), (1, 1), "seed {seed}");
        assert_eq!(a[0].keys_out.encr[..], b[0].keys_in.encr[..], "seed {seed}");
    }
}

#[test]
fn retransmissions_back_off_exponentially_then_the_sa_dies() {
    let mut p = Pair::psk(105);
    p.link.filter = Some(Box::new(|side, _| side == Side::B));
    p.initiate(Side::A, "site");
    p.drive();
    let times = wire_times(&p, Side::A, ExchangeType::IKE_SA_INIT, false);
    // First send and 5 retransmits: 4 s, then ×1.8 each time.
    assert_eq!(times.len(), 6);
    let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    for (gap, want) in gaps.iter().zip([4.0, 7.2, 12.96, 23.328, 41.9904]) {
        assert!((gap - want).abs() < 1e-3, "gaps {gaps:?}");
    }
    assert_eq!(p.downs(Side::A), vec![DownReason::Timeout]);
}
