//! Snapshots and restores (crate::snapshot): the byte encoding round trip
//! and a restored endpoint resuming its IKE SA with the peer, Message IDs
//! resynchronised by RFC 6311.
use std::time::Duration;

use ike_crypto::rng::DeterministicRng;
use ike_crypto::RustCryptoProvider;
use ike_wire::ExchangeType;
use proptest::prelude::*;

use super::util::*;
use crate::snapshot::{IkeSaSnapshot, RestoreOutcome};
use crate::{Command, Endpoint, Event};

/// A pair whose A side keeps snapshots, both announcing RFC 6311; `cbc`
/// negotiates AES-CBC with HMAC (no AEAD) for IKE, the suites A syncs.
fn pair(seed: u64, cbc: bool) -> Pair {
    let conn = |a| {
        let mut c = psk_conn("site", if a { "a.esprit.test" } else { "b.esprit.test" }, if a { "b.esprit.test" } else { "a.esprit.test" }, b"correct horse battery staple", a);
        if cbc {
            c.ike_proposals[0].encr = ike_wire::EncrId::ENCR_AES_CBC;
            c.ike_proposals[0].integ = ike_wire::IntegId::AUTH_HMAC_SHA2_256_128;
        }
        c
    };
    let cfg = |a| crate::EndpointConfig { mid_sync: true, ..endpoint_config(conn(a)) };
    let mut p = Pair::new(seed, cfg(true), cfg(false));
    p.a.ep.keep_snapshots();
    p
}

/// A's endpoint replaced by a fresh one that restored `snaps`, as after a
/// restart `elapsed` after they were written.
fn restart_a(p: &mut Pair, snaps: &[IkeSaSnapshot], elapsed: Duration) -> Vec<RestoreOutcome> {
    let cfg = p.a.ep.config().clone();
    let mut ep = Endpoint::new(cfg, Box::new(RustCryptoProvider), Box::new(DeterministicRng::from_u64(77)), p.time, p.unix());
    ep.keep_snapshots();
    let out = ep.restore(p.time, snaps, elapsed).into_iter().map(|(o, _)| o).collect();
    p.a.ep = ep;
    p.a.events.clear();
    out
}

fn informational_requests(p: &Pair, side: Side) -> usize {
    p.sent(side, ExchangeType::INFORMATIONAL, false)
}

#[test]
fn snapshots_are_written_at_setup_and_on_completed_exchanges_only() {
    let mut p = pair(900, false);
    let h = p.connect();
    let c = p.a.ep.take_changes(p.time);
    assert_eq!((c.put.len(), c.delete.len()), (1, 0), "IKE_AUTH done: one snapshot");
    assert_eq!(c.put[0].handle, h.0);
    assert_eq!(c.put[0].children.len(), 1);
    // Nothing moved: nothing written (an ESP note touches the SA only).
    p.a.ep.note_inbound_esp(p.time, h);
    assert!(p.a.ep.take_changes(p.time).is_empty());
    // A completed exchange moves the Message IDs: written again.
    p.command(Side::A, Command::Dpd { ike_sa: h });
    p.drive();
    let c = p.a.ep.take_changes(p.time);
    assert_eq!(c.put.len(), 1);
    assert_eq!(c.put[0].next_request_id, 3, "IKE_SA_INIT 0, IKE_AUTH 1, the DPD 2");
    // Deleted: the record goes.
    p.command(Side::A, Command::Terminate { ike_sa: h });
    p.drive();
    let c = p.a.ep.take_changes(p.time);
    assert_eq!((c.put.len(), c.delete.len()), (0, 1));
}

#[test]
fn a_stale_snapshot_is_resynchronised_by_rfc_6311_and_the_ike_sa_goes_on() {
    let mut p = pair(901, true);
    let h = p.connect();
    let snap = p.a.ep.take_changes(p.time).put;
    // The snapshot goes stale: exchanges in both directions after it.
    p.command(Side::A, Command::Dpd { ike_sa: h });
    p.drive();
    let hb = up_handle(&p, Side::B);
    p.command(Side::B, Command::Dpd { ike_sa: hb });
    p.drive();

    let out = restart_a(&mut p, &snap, Duration::from_secs(3));
    assert!(matches!(out[..], [RestoreOutcome::Restored { children: 1, .. }]), "{out:?}");
    let syncs_before = informational_requests(&p, Side::A);
    p.drive();
    // The RFC 6311 sync went out (Message ID 0) and was answered.
    let sync = p.wire.iter().rev().find(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::INFORMATIONAL && h.message_id == 0 && !h.flags.response()));
    assert!(sync.is_some(), "no IKEV2_MESSAGE_ID_SYNC request");
    assert!(informational_requests(&p, Side::A) > syncs_before);
    goes_on(&mut p, h);
}

/// After the restart, DPD both ways, a Child SA rekey from each side and
/// an IKE SA rekey all succeed on the same IKE SA.
fn goes_on(p: &mut Pair, h: crate::IkeSaHandle) {
    let hb = up_handle(p, Side::B);
    let inits_before = p.sent(Side::A, ExchangeType::IKE_SA_INIT, false) + p.sent(Side::B, ExchangeType::IKE_SA_INIT, false);
    p.command(Side::A, Command::Dpd { ike_sa: h });
    p.drive();
    p.command(Side::B, Command::Dpd { ike_sa: hb });
    p.drive();
    let child = p.a.ep.child_sas(h)[0].0;
    p.command(Side::A, Command::RekeyChild { ike_sa: h, child_sa: child });
    p.drive();
    let child_b = p.b.ep.child_sas(hb)[0].0;
    p.command(Side::B, Command::RekeyChild { ike_sa: hb, child_sa: child_b });
    p.drive();
    p.command(Side::A, Command::RekeyIke { ike_sa: h });
    p.drive();
    assert!(p.downs(Side::A).iter().all(|r| *r == crate::DownReason::Rekeyed), "A: {:?}", p.downs(Side::A));
    assert!(p.downs(Side::B).iter().all(|r| *r == crate::DownReason::Rekeyed), "B: {:?}", p.downs(Side::B));
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::IkeSaRekeyed { .. })), 1, "{:?}", p.a.events);
    assert!(p.count(Side::A, |e| matches!(e, Event::ChildSaInstall(_))) >= 2, "A's Child SA rekeys: {:?}", p.a.events);
    let inits_after = p.sent(Side::A, ExchangeType::IKE_SA_INIT, false) + p.sent(Side::B, ExchangeType::IKE_SA_INIT, false);
    assert_eq!(inits_before, inits_after, "no new IKE_SA_INIT");
}

#[test]
fn a_request_in_flight_at_the_snapshot_is_resent_whether_or_not_the_peer_saw_it() {
    for delivered in [false, true] {
        let mut p = pair(904 + u64::from(delivered), false);
        let h = p.connect();
        let _ = p.a.ep.take_changes(p.time);
        p.command(Side::A, Command::Dpd { ike_sa: h });
        // Written ahead: the snapshot holds the DPD request before it goes out.
        let snap = p.a.ep.take_changes(p.time).put;
        assert_eq!(snap.len(), 1);
        assert!(snap[0].pending_request.is_some());
        if delivered {
            // B answers; the answer reaches the A that is about to die.
            p.drive();
        }
        restart_a(&mut p, &snap, Duration::from_secs(1));
        p.drive();
        assert!(p.downs(Side::A).is_empty() && p.downs(Side::B).is_empty());
        // No sync with an AEAD suite (strongSwan could not answer it).
        assert!(!p.wire.iter().any(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::INFORMATIONAL && h.message_id == 0)));
        goes_on(&mut p, h);
    }
}

#[test]
fn without_the_sync_a_stale_snapshot_loses_the_ike_sa() {
    // The control: the same restart with RFC 6311 off on the restored side
    // (its requests reuse Message IDs the peer has seen: dropped, §2.3).
    let mut p = pair(902, true);
    let h = p.connect();
    let mut snap = p.a.ep.take_changes(p.time).put;
    p.command(Side::A, Command::Dpd { ike_sa: h });
    p.drive();
    snap[0].mid_sync = false;
    restart_a(&mut p, &snap, Duration::ZERO);
    p.command(Side::A, Command::Dpd { ike_sa: h });
    p.drive();
    assert_eq!(p.downs(Side::A), vec![crate::DownReason::Timeout]);
}

#[test]
fn sas_set_up_with_mid_sync_on_say_so_in_their_snapshots() {
    // Both IKE_AUTH messages carry N(IKEV2_MESSAGE_ID_SYNC_SUPPORTED), so
    // strongSwan (which requires it, ike_mid_sync.c) answers a sync.
    let mut p = pair(903, false);
    p.connect();
    let snap = p.a.ep.take_changes(p.time).put;
    assert!(snap[0].mid_sync);
    let b = p.b.ep.take_changes(p.time);
    assert!(b.is_empty(), "B does not keep snapshots");
}

fn arb_snapshot() -> impl Strategy<Value = IkeSaSnapshot> {
    let secret = || proptest::collection::vec(any::<u8>(), 0..64);
    let ts = (any::<u8>(), any::<u16>(), any::<u16>(), any::<[u8; 4]>(), any::<[u8; 16]>(), any::<bool>()).prop_map(|(proto, sp, ep, a4, a6, v6)| {
        let (s, e) = if v6 { (std::net::IpAddr::from(a6), std::net::IpAddr::from(a6)) } else { (a4.into(), a4.into()) };
        crate::TrafficSelector { ip_protocol: proto, start_port: sp, end_port: ep, start_addr: s, end_addr: e }
    });
    let child = (any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>(), proptest::collection::vec(ts.clone(), 0..3), proptest::collection::vec(ts, 0..3), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)), any::<u32>(), proptest::option::of(any::<u32>()))
        .prop_map(|(handle, spi_in, spi_out, esn, tl, tr, label, age, rekey)| crate::snapshot::ChildSnapshot {
            handle,
            spi_in,
            spi_out,
            suite: crate::EspSuite { encr: ike_wire::EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: ike_wire::IntegId::NONE, esn, ke: None, additional_ke: [ike_wire::KeId::NONE; 7] },
            mode: if esn { crate::Mode::Transport } else { crate::Mode::Tunnel },
            ts_local: tl,
            ts_remote: tr,
            sec_label: label,
            compression: esn.then_some(crate::compression::DietProfile { values: [1, 2, 3, 4, 5, 6, 7] }),
            age: Duration::from_millis(u64::from(age)),
            rekey_in: rekey.map(|r| Duration::from_millis(u64::from(r))),
        });
    (
        (any::<u64>(), "[a-z]{0,12}", any::<bool>(), 1u64.., 1u64.., any::<[u8; 4]>(), any::<u16>(), any::<bool>()),
        (secret(), secret(), secret(), secret(), secret(), secret(), secret()),
        (any::<u32>(), any::<u32>(), any::<bool>(), any::<bool>(), proptest::option::of("[a-z.]{1,20}"), proptest::collection::vec(any::<u16>(), 0..4), proptest::collection::vec(any::<[u8; 4]>(), 0..3)),
        (any::<bool>(), proptest::option::of(any::<u32>()), proptest::option::of(any::<u32>()), proptest::collection::vec(child, 0..4), proptest::collection::vec(any::<u16>(), 0..3)),
    )
        .prop_map(|((handle, conn, initiator, spi_i, spi_r, ip, port, nat), (d, ei, ai, er, ar, pi, pr), (nreq, nexp, inflight, ms, rid, hashes, leases), (ppk, frag, rekey, children, addke))| IkeSaSnapshot {
            handle,
            connection: conn,
            initiator,
            spi_i,
            spi_r,
            local: std::net::SocketAddr::new(ip.into(), port),
            remote: std::net::SocketAddr::new(std::net::IpAddr::from([1u8; 16]), port ^ 1),
            nat_local: nat,
            nat_remote: !nat,
            suite: crate::IkeSuite {
                encr: ike_wire::EncrId::ENCR_AES_GCM_16,
                key_bits: Some(256),
                prf: ike_wire::PrfId::PRF_HMAC_SHA2_256,
                integ: ike_wire::IntegId::NONE,
                ke: ike_wire::KeId::CURVE25519,
                additional_ke: addke.into_iter().map(ike_wire::KeId).collect(),
                kwa: None,
            },
            sk_d: d.into(),
            sk_ei: ei.into(),
            sk_ai: ai.into(),
            sk_er: er.into(),
            sk_ar: ar.into(),
            sk_pi: pi.into(),
            sk_pr: pr.into(),
            next_request_id: nreq,
            next_expected_id: nexp,
            pending_request: inflight.then(|| crate::snapshot::PendingRequest { message_id: nreq.wrapping_sub(1), exchange: 37, packets: vec![vec![1, 2, 3], vec![]] }),
            mid_sync: ms,
            remote_id: rid.map(crate::Identity::Fqdn),
            peer_hashes: hashes,
            leases: leases.into_iter().map(std::net::IpAddr::from).collect(),
            ppk_used: ppk,
            fragment_len: frag,
            rekey_in: rekey.map(|r| Duration::from_millis(u64::from(r))),
            children,
        })
}

proptest! {
    #[test]
    fn snapshots_decode_to_what_was_encoded(s in arb_snapshot()) {
        let bytes = s.encode();
        prop_assert_eq!(IkeSaSnapshot::decode(&bytes).unwrap(), s);
        // Every strict prefix, and any trailing byte, is refused.
        for n in [0, 4, 5, bytes.len() / 2, bytes.len() - 1] {
            prop_assert!(IkeSaSnapshot::decode(&bytes[..n]).is_err());
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        prop_assert!(IkeSaSnapshot::decode(&longer).is_err());
    }

    #[test]
    fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut v = b"EIKS\x01".to_vec();
        v.extend(b);
        let _ = IkeSaSnapshot::decode(&v);
    }
}
