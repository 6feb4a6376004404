//! IKE_AUTH signatures computed outside the endpoint ([`crate::auth_job`]):
//! a responder with `defer_signatures` hands them out as jobs and answers
//! when the results come back, whatever happened in between.
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::Secret;
use ike_wire::ExchangeType;

use super::certs::{cert_conns, psk_client_cert_gateway, trust};
use super::util::*;
use crate::{DownReason, EndpointConfig};

const A: usize = 0;
const B: usize = 1;

fn deferring(conn: crate::ConnectionConfig) -> EndpointConfig {
    EndpointConfig { defer_signatures: true, ..endpoint_config(conn) }
}

/// ECDSA gateway (B, deferring) and Ed25519 client (A, inline).
fn cert_pair(seed: u64) -> Pair {
    let (ca, cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    Pair::new(seed, endpoint_config(ca), deferring(cb))
}

fn ike_auth_responses(p: &Pair) -> usize {
    p.sent(Side::B, ExchangeType::IKE_AUTH, true)
}

#[test]
fn a_deferring_responder_completes_certificate_handshakes_through_one_job_each() {
    let mut p = cert_pair(900);
    p.connect();
    assert_eq!((p.installs(Side::A).len(), p.installs(Side::B).len()), (1, 1));
    // One job, for the responder only (the initiator computes inline).
    assert_eq!(p.jobs_run, [0, 1]);
    // The keys agree: what A sends B opens.
    let (a, b) = (p.installs(Side::A)[0], p.installs(Side::B)[0]);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(a.keys_out.encr[..], b.keys_in.encr[..]);
}

#[test]
fn a_psk_client_and_a_certificate_gateway_need_only_the_gateways_signature_job() {
    let (ca, cb) = psk_client_cert_gateway(b"client secret", b"client secret");
    let mut p = Pair::new(901, endpoint_config(ca), deferring(cb));
    p.connect();
    assert_eq!(p.jobs_run, [0, 1]);
    assert_eq!(p.installs(Side::A).len(), 1);

    // A wrong PSK is caught before any job is made.
    let (ca, cb) = psk_client_cert_gateway(b"wrong secret", b"client secret");
    let mut p = Pair::new(902, endpoint_config(ca), deferring(cb));
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.jobs_run, [0, 0]);
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
}

#[test]
fn psk_connections_never_make_jobs() {
    let ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(903, deferring(ca), deferring(cb));
    p.connect();
    assert_eq!(p.jobs_run, [0, 0]);
    assert_eq!(p.ups(Side::B), 1);
}

#[test]
fn a_signature_a_job_refuses_fails_authentication() {
    // B trusts another CA than the one that issued A's certificate.
    let (ca, mut cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    cb.remote_auth = trust("other-root.pem");
    let mut p = Pair::new(904, endpoint_config(ca), deferring(cb));
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.jobs_run, [0, 1]);
    assert_eq!(p.downs(Side::B), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.ups(Side::A), 0);
    assert_eq!(p.b.ep.ike_sa_count(), 0);
}

#[test]
fn retransmits_wait_for_the_job_and_then_get_the_one_response() {
    let mut p = cert_pair(905);
    p.hold_jobs = true;
    p.initiate(Side::A, "site");
    // Long enough for A to retransmit IKE_AUTH several times.
    p.drive_for(Duration::from_secs(8));
    let mut times: Vec<_> = p
        .wire
        .iter()
        .filter(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH))
        .map(|(t, _, _)| *t)
        .collect();
    times.dedup();
    assert!(times.len() >= 2, "A sent IKE_AUTH {} times", times.len());
    assert_eq!(p.held_jobs.len(), 1, "one job however often the request came");
    assert_eq!(ike_auth_responses(&p), 0, "no answer before the job is done");
    p.run_held_jobs(false);
    let first_response = ike_auth_responses(&p);
    assert!(first_response > 0);
    p.drive();
    assert_eq!(p.ups(Side::A), 1);
    assert_eq!(p.ups(Side::B), 1);
    assert_eq!(p.jobs_run, [0, 1]);
}

#[test]
fn a_result_for_a_vanished_sa_is_dropped() {
    let mut p = cert_pair(906);
    p.hold_jobs = true;
    p.initiate(Side::A, "site");
    p.drive();
    // A gave up retransmitting; B's half-open SA timed out.
    assert_eq!(p.held_jobs.len(), 1);
    assert_eq!(p.b.ep.ike_sa_count(), 0);
    let sent = p.wire.len();
    p.run_held_jobs(false);
    p.drive();
    assert_eq!(p.wire.len(), sent, "nothing is sent for a result nobody waits for");
    assert_eq!(p.ups(Side::B), 0);
}

#[test]
fn a_reload_while_a_job_runs_redoes_the_work_inline() {
    let mut p = cert_pair(907);
    p.hold_jobs = true;
    p.initiate(Side::A, "site");
    p.drive_until(|p| !p.held_jobs.is_empty());
    // The same connections as new values: the job's result was computed
    // for the old ones and is not trusted.
    let conns: Vec<Arc<crate::ConnectionConfig>> = p.b.ep.config().connections.iter().map(|c| Arc::new((**c).clone())).collect();
    p.b.ep.set_connections(conns);
    p.run_held_jobs(false);
    p.hold_jobs = false;
    p.drive();
    assert_eq!(p.ups(Side::A), 1);
    assert_eq!(p.ups(Side::B), 1);
}

#[test]
fn jobs_of_many_sas_finish_in_any_order() {
    let (mut ca, cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    // Several SAs of one identity: no INITIAL_CONTACT replacing them.
    ca.initial_contact = false;
    // Six half-open SAs from one address (the default allows five).
    let cfg_b = EndpointConfig { half_open_per_peer_limit: 8, ..deferring(cb) };
    let mut p = Pair::new(908, endpoint_config(ca), cfg_b);
    p.hold_jobs = true;
    for _ in 0..6 {
        p.initiate(Side::A, "site");
    }
    p.drive_until(|p| p.held_jobs.len() == 6);
    assert_eq!(p.held_jobs.len(), 6);
    assert!(p.time < T0 + Duration::from_secs(1), "the six requests came at once");
    p.run_held_jobs(true);
    p.hold_jobs = false;
    p.drive();
    assert_eq!(p.ups(Side::A), 6);
    assert_eq!(p.ups(Side::B), 6);
    assert_eq!(p.jobs_run[B], 6);
    assert_eq!(p.jobs_run[A], 0);
    assert_eq!(p.installs(Side::B).len(), 6);
}


// ---- the initiator's side -------------------------------------------------

fn both_deferring(seed: u64, ca: crate::ConnectionConfig, cb: crate::ConnectionConfig) -> Pair {
    Pair::new(seed, deferring(ca), deferring(cb))
}

#[test]
fn a_deferring_initiator_signs_and_checks_through_jobs() {
    let (ca, cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    let mut p = both_deferring(910, ca, cb);
    p.connect();
    // A: its signature (before the request) and the check of B's (after
    // the response); B: one job for both of its signatures.
    assert_eq!(p.jobs_run, [2, 1]);
    let (a, b) = (p.installs(Side::A)[0], p.installs(Side::B)[0]);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(a.keys_out.encr[..], b.keys_in.encr[..]);
}

#[test]
fn an_initiator_refusing_the_responders_chain_through_a_job_deletes_the_sa() {
    // A trusts another CA than B's.
    let (ca, cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "other-root.pem");
    let mut p = both_deferring(911, ca, cb);
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.jobs_run, [2, 1]);
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.downs(Side::B), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.ups(Side::A), 0);
}

#[test]
fn an_initiator_waits_for_its_jobs_with_nothing_on_the_wire() {
    let (ca, cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    let mut p = both_deferring(912, ca, cb);
    p.hold_jobs = true;
    p.initiate(Side::A, "site");
    p.drive_for(Duration::from_secs(5));
    // IKE_SA_INIT done, A's signature job held: no IKE_AUTH yet, and no
    // retransmission of anything.
    assert_eq!(p.held_jobs.len(), 1);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 0);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_SA_INIT, false), 1);
    p.run_held_jobs(false);
    p.drive_for(Duration::from_secs(5));
    // B's job, then A's check of B's AUTH: one at a time.
    assert_eq!((p.held_jobs.len(), p.held_jobs[0].0), (1, Side::B));
    p.run_held_jobs(false);
    p.drive_for(Duration::from_secs(5));
    assert_eq!((p.held_jobs.len(), p.held_jobs[0].0), (1, Side::A));
    assert_eq!(p.ups(Side::B), 1);
    assert_eq!(p.ups(Side::A), 0, "A is up only once B's signature checked out");
    // B's response is not retransmitted to A meanwhile (A got it).
    p.run_held_jobs(false);
    p.drive();
    assert_eq!(p.ups(Side::A), 1);
    assert_eq!(p.jobs_run, [2, 1]);
}

#[test]
fn optional_ppks_with_deferred_signatures_send_auth_and_no_ppk_auth() {
    let ppk = |id: &str| {
        Some(crate::PpkConfig {
            keys: vec![crate::Ppk { id_type: crate::PPK_ID_FIXED, id: id.as_bytes().to_vec(), secret: Secret::new(vec![0x5a; 32]) }],
            required: false,
            exchange: crate::PpkExchange::IkeAuth,
        })
    };
    let up_with_ppk = |p: &Pair, side: Side| {
        p.events(side).iter().find_map(|e| match e {
            crate::Event::IkeSaUp { ppk, .. } => Some(*ppk),
            _ => None,
        })
    };
    // The gateway has the PPK: AUTH (with it) verifies.
    let (mut ca, mut cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    (ca.ppk, cb.ppk) = (ppk("pqc"), ppk("pqc"));
    let mut p = both_deferring(914, ca, cb);
    p.connect();
    assert_eq!((up_with_ppk(&p, Side::A), up_with_ppk(&p, Side::B)), (Some(true), Some(true)));
    assert_eq!(p.jobs_run, [2, 1]);
    // It has not: the NO_PPK_AUTH signature from the same job verifies.
    let (mut ca, mut cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    (ca.ppk, cb.ppk) = (ppk("pqc"), ppk("other"));
    let mut p = both_deferring(915, ca, cb);
    p.connect();
    assert_eq!((up_with_ppk(&p, Side::A), up_with_ppk(&p, Side::B)), (Some(false), Some(false)));
    assert_eq!((p.installs(Side::A).len(), p.installs(Side::B).len()), (1, 1));
}

// ---- any timing ------------------------------------------------------------

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Jobs that take up to several retransmission timeouts, on a link
    /// that reorders and duplicates (no loss: every handshake must then
    /// succeed), several handshakes at once, either side deferring: every
    /// handshake completes and both sides agree on every Child SA.
    #[test]
    fn handshakes_complete_whatever_the_jobs_take(
        seed in any::<u64>(),
        n in 1usize..4,
        latency_ms in 1u64..6000,
        jitter_ms in 0u64..300,
        dup in 0u32..300,
        defer in 1usize..4,
    ) {
        let (mut ca, cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
        ca.initial_contact = false;
        let cfg = |c: crate::ConnectionConfig, on: bool| EndpointConfig { defer_signatures: on, ..endpoint_config(c) };
        let mut p = Pair::new(seed, cfg(ca, defer & 1 != 0), cfg(cb, defer & 2 != 0));
        p.job_latency = Duration::from_millis(latency_ms);
        p.link.jitter = Duration::from_millis(jitter_ms);
        p.link.dup_permille = dup;
        for _ in 0..n {
            p.initiate(Side::A, "site");
        }
        p.drive_for(Duration::from_secs(120));
        prop_assert_eq!(p.ups(Side::A), n);
        prop_assert_eq!(p.ups(Side::B), n);
        let mut a: Vec<(u32, u32)> = p.installs(Side::A).iter().map(|i| (i.spi_in, i.spi_out)).collect();
        let mut b: Vec<(u32, u32)> = p.installs(Side::B).iter().map(|i| (i.spi_out, i.spi_in)).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a.len(), n);
        prop_assert_eq!(a, b);
        let per_side = [if defer & 1 != 0 { 2 * n } else { 0 }, if defer & 2 != 0 { n } else { 0 }];
        prop_assert_eq!(p.jobs_run, per_side);
    }
}
