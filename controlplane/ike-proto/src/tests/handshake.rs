//! IKE_SA_INIT + IKE_AUTH with PSK and the first Child SA, both roles.
use ike_wire::{EncrId, EsnId, ExchangeType, KeId, NotifyType};

use super::util::*;
use crate::{DownReason, Event, Mode};

#[test]
fn psk_handshake_establishes_ike_and_child_sa_on_both_sides() {
    let mut p = Pair::psk(1);
    p.connect();
    let (a, b) = (p.installs(Side::A), p.installs(Side::B));
    assert_eq!((a.len(), b.len()), (1, 1));
    let (a, b) = (a[0], b[0]);
    // Each side's inbound is the other's outbound, with the same keys.
    assert_eq!((a.spi_in, a.spi_out), (b.spi_out, b.spi_in));
    assert_eq!(a.keys_in.encr[..], b.keys_out.encr[..]);
    assert_eq!(a.keys_out.encr[..], b.keys_in.encr[..]);
    assert_ne!(a.keys_in.encr[..], a.keys_out.encr[..]);
    // AES-GCM-16 256: 32 key octets + 4 salt (RFC 4106 §8.1).
    assert_eq!(a.keys_in.encr.len(), 36);
    assert_eq!(a.suite.encr, EncrId::ENCR_AES_GCM_16);
    assert_eq!(a.mode, Mode::Tunnel);
    assert_eq!(a.ts_local, vec![prefix("10.1.0.0/16")]);
    assert_eq!(a.ts_remote, vec![prefix("10.2.0.0/16")]);
    assert_eq!(b.ts_local, a.ts_remote);
    assert!(!a.udp_encap);
    // Exactly one request and one response per exchange: nothing resent.
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_SA_INIT, false), 1);
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_AUTH, false), 1);
    assert_eq!(p.sent(Side::B, ExchangeType::IKE_AUTH, true), 1);
}

#[test]
fn both_roles_work_when_b_initiates() {
    let mut p = Pair::psk(2);
    p.initiate(Side::B, "site");
    p.drive();
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1));
    let b = p.installs(Side::B)[0];
    assert_eq!(b.ts_local, vec![prefix("10.2.0.0/16")]);
}

fn handshake_with(seed: u64, ke: KeId, encr: EncrId, key_bits: Option<u16>, esn: EsnId) -> Pair {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    for c in [&mut ca, &mut cb] {
        c.ike_proposals = vec![ike_proposal(&[ke])];
        let mut e = esp_proposal(encr, key_bits);
        e.esn = vec![esn];
        c.child.esp_proposals = vec![e];
    }
    let mut p = Pair::new(seed, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    p
}

#[test]
fn every_required_key_exchange_group_completes_a_handshake() {
    for (i, ke) in [KeId::MODP_2048, KeId::ECP_256, KeId::ECP_384, KeId::ECP_521, KeId::CURVE25519].into_iter().enumerate() {
        let p = handshake_with(10 + i as u64, ke, EncrId::ENCR_AES_GCM_16, Some(128), EsnId::NO_ESN);
        assert_eq!(p.installs(Side::A).len(), 1, "group {ke:?}");
    }
}

#[test]
fn esp_suites_and_esn_are_negotiated_as_configured() {
    for (i, (encr, bits, key_len)) in
        [(EncrId::ENCR_AES_GCM_16, Some(128), 20), (EncrId::ENCR_AES_GCM_16, Some(256), 36), (EncrId::ENCR_CHACHA20_POLY1305, None, 36)]
            .into_iter()
            .enumerate()
    {
        for esn in [EsnId::ESN, EsnId::NO_ESN] {
            let p = handshake_with(20 + i as u64, KeId::CURVE25519, encr, bits, esn);
            let a = p.installs(Side::A)[0];
            let b = p.installs(Side::B)[0];
            assert_eq!(a.suite.encr, encr);
            assert_eq!(a.suite.esn, esn == EsnId::ESN);
            assert_eq!(b.suite, a.suite);
            assert_eq!(a.keys_out.encr.len(), key_len);
            assert!(a.keys_out.integ.is_empty());
        }
    }
}

#[test]
fn mismatched_ike_proposals_yield_no_proposal_chosen() {
    let ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    cb.ike_proposals[0].encr = EncrId::ENCR_CHACHA20_POLY1305;
    cb.ike_proposals[0].key_bits = None;
    let mut p = Pair::new(3, endpoint_config(ca), endpoint_config(cb));
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::A), vec![DownReason::Refused(NotifyType::NO_PROPOSAL_CHOSEN)]);
    assert_eq!(p.b.ep.ike_sa_count(), 0, "the responder keeps no state");
    assert_eq!(p.sent(Side::A, ExchangeType::IKE_SA_INIT, false), 1, "no retransmission after the answer");
}

#[test]
fn mismatched_esp_proposals_leave_the_ike_sa_up_without_a_child_sa() {
    let ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    cb.child.esp_proposals = vec![esp_proposal(EncrId::ENCR_CHACHA20_POLY1305, None)];
    let mut p = Pair::new(4, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    assert!(p.installs(Side::A).is_empty() && p.installs(Side::B).is_empty());
    for side in [Side::A, Side::B] {
        assert_eq!(p.count(side, |e| matches!(e, Event::ChildSaFailed { notify: NotifyType::NO_PROPOSAL_CHOSEN, .. })), 1);
    }
}

#[test]
fn wrong_psk_yields_authentication_failed_on_both_sides() {
    let ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"right", true);
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"wrong", false);
    let mut p = Pair::new(5, endpoint_config(ca), endpoint_config(cb));
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::B), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
    assert_eq!(p.ups(Side::A) + p.ups(Side::B), 0);
    assert!(p.installs(Side::A).is_empty() && p.installs(Side::B).is_empty());
}

#[test]
fn unknown_remote_identity_yields_authentication_failed() {
    let ca = psk_conn("site", "mallory.esprit.test", "b.esprit.test", b"k", true);
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(6, endpoint_config(ca), endpoint_config(cb));
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::A), vec![DownReason::AuthenticationFailed]);
}

#[test]
fn responder_narrows_traffic_selectors_to_its_policy() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    // A asks for everything behind B; B only serves 10.2.3.0/24.
    ca.child.remote_ts = vec![prefix("10.0.0.0/8")];
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    cb.child.local_ts = vec![prefix("10.2.3.0/24")];
    let mut p = Pair::new(7, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    let a = p.installs(Side::A)[0];
    assert_eq!(a.ts_remote, vec![prefix("10.2.3.0/24")]);
    assert_eq!(p.installs(Side::B)[0].ts_local, vec![prefix("10.2.3.0/24")]);
}

#[test]
fn disjoint_traffic_selectors_yield_ts_unacceptable() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.child.remote_ts = vec![prefix("172.16.0.0/12")];
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(8, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::ChildSaFailed { notify: NotifyType::TS_UNACCEPTABLE, .. })), 1);
}

#[test]
fn transport_mode_is_used_only_when_both_sides_want_it() {
    for (a_mode, b_mode, want) in [
        (Mode::Transport, Mode::Transport, Mode::Transport),
        (Mode::Transport, Mode::Tunnel, Mode::Tunnel),
        (Mode::Tunnel, Mode::Transport, Mode::Tunnel),
    ] {
        let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
        let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
        ca.child.mode = a_mode;
        cb.child.mode = b_mode;
        let mut p = Pair::new(30, endpoint_config(ca), endpoint_config(cb));
        p.connect();
        assert_eq!(p.installs(Side::B)[0].mode, want, "{a_mode:?}/{b_mode:?}");
        assert_eq!(p.installs(Side::A)[0].mode, want, "{a_mode:?}/{b_mode:?}");
    }
}

#[test]
fn a_higher_major_version_gets_invalid_major_version() {
    use std::net::SocketAddr;
    let mut p = Pair::psk(31);
    let mut d = vec![0u8; 28];
    d[..8].copy_from_slice(&7u64.to_be_bytes());
    d[17] = 0x30; // version 3.0
    d[18] = 34;
    d[19] = 0x08;
    d[24..28].copy_from_slice(&28u32.to_be_bytes());
    let (local, remote) = (SocketAddr::new(IP_B, 500), SocketAddr::new(IP_A, 500));
    p.b.ep.handle_datagram(T0, local, remote, &d);
    let t = p.b.ep.poll_transmit().expect("an answer");
    let m = ike_wire::Message::parse(&t.payload).expect("parses");
    assert_eq!(m.header.major_version, 2);
    assert_eq!(m.header.spi_i, 7);
    assert!(m.header.flags.response());
    assert!(m.notify(NotifyType::INVALID_MAJOR_VERSION).is_some());
    // A response of a higher version is dropped.
    d[19] = 0x20;
    p.b.ep.handle_datagram(T0, local, remote, &d);
    assert!(p.b.ep.poll_transmit().is_none());
}

#[test]
fn unknown_ike_spis_and_garbage_are_dropped_silently() {
    use std::net::SocketAddr;
    let mut p = Pair::psk(32);
    p.connect();
    let (local, remote) = (SocketAddr::new(IP_B, 500), SocketAddr::new(IP_A, 500));
    // A valid-looking INFORMATIONAL for an SA B does not have.
    let h = ike_wire::Header::new(99, 98, ike_wire::ExchangeType::INFORMATIONAL, ike_wire::Flags::new(true, false), 1);
    let bytes = ike_wire::Message::new(h, vec![]).emit().expect("emit");
    p.b.ep.handle_datagram(p.time, local, remote, &bytes);
    p.b.ep.handle_datagram(p.time, local, remote, b"not IKE at all");
    assert!(p.b.ep.poll_transmit().is_none());
    assert!(p.b.ep.poll_event().is_none());
}
