//! IKE_SA_INIT variations: COOKIE under load, INVALID_KE_PAYLOAD, NAT
//! detection; IKE_AUTH's configuration payload and INITIAL_CONTACT.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ike_wire::{ExchangeType, KeId, Message, NotifyType, Payload};

use super::util::*;
use crate::{DownReason, Event, Family, PoolConfig, TrafficSelector};

fn init_requests(p: &Pair) -> Vec<Vec<u8>> {
    p.wire
        .iter()
        .filter(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT && !h.flags.response()))
        .map(|(_, _, d)| d.ike_bytes().to_vec())
        .collect()
}

#[test]
fn cookie_is_demanded_once_half_open_sas_reach_the_threshold() {
    let ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut cfg_b = endpoint_config(cb);
    cfg_b.cookie_threshold = 2;
    let mut p = Pair::new(300, endpoint_config(ca), cfg_b);
    // Hold every IKE_AUTH back so B's SAs stay half-open.
    p.link.filter = Some(Box::new(|side, d| side == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH)));
    for _ in 0..3 {
        p.initiate(Side::A, "site");
        p.drive_for(Duration::from_secs(1));
    }
    assert_eq!(p.b.ep.half_open_count(), 3);
    let reqs = init_requests(&p);
    assert_eq!(reqs.len(), 4, "the third SA needed a second request");
    let cookie_answers: Vec<_> = p
        .wire
        .iter()
        .filter(|(_, s, d)| *s == Side::B && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_SA_INIT))
        .filter_map(|(_, _, d)| {
            let m = Message::parse(d.ike_bytes()).ok()?;
            m.notify(NotifyType::COOKIE).map(|n| (m.header.spi_r, n.data.to_vec()))
        })
        .collect();
    assert_eq!(cookie_answers.len(), 1);
    assert_eq!(cookie_answers[0].0, 0, "a COOKIE answer keeps no state (SPIr 0)");
    // §2.6: the retry carries the cookie as its first payload.
    let retry = Message::parse(&reqs[3]).expect("retry parses");
    match &retry.payloads[0] {
        Payload::Notify(n) => {
            assert_eq!(n.notify_type, NotifyType::COOKIE);
            assert_eq!(n.data[..], cookie_answers[0].1[..]);
        }
        other => panic!("first payload {other:?}"),
    }
    p.link.filter = None;
    p.drive();
    assert_eq!(p.ups(Side::A), 3);
    assert_eq!(p.b.ep.half_open_count(), 0);
}

#[test]
fn invalid_ke_payload_makes_the_initiator_retry_with_the_requested_group() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.ike_proposals = vec![ike_proposal(&[KeId::CURVE25519, KeId::ECP_384])];
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    cb.ike_proposals = vec![ike_proposal(&[KeId::ECP_384])];
    let mut p = Pair::new(301, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    let reqs = init_requests(&p);
    assert_eq!(reqs.len(), 2);
    let ke_of = |b: &[u8]| {
        Message::parse(b).expect("parses").payloads.iter().find_map(|p| match p {
            Payload::Ke(k) => Some(k.ke_method),
            _ => None,
        })
    };
    assert_eq!(ke_of(&reqs[0]), Some(KeId::CURVE25519));
    assert_eq!(ke_of(&reqs[1]), Some(KeId::ECP_384));
    // §1.2: the retry still offers the full proposal list.
    let sa = |b: &[u8]| {
        Message::parse(b).expect("parses").payloads.iter().find_map(|p| match p {
            Payload::Sa(s) => Some(s.clone().proposals[0].transforms.len()),
            _ => None,
        })
    };
    assert_eq!(sa(&reqs[0]), sa(&reqs[1]));
    assert_eq!(p.b.ep.ike_sa_count(), 1);
}

#[test]
fn nat_is_detected_and_ike_moves_to_port_4500() {
    let mut p = Pair::psk(302);
    p.link.nat = true;
    p.connect();
    let up = |side| {
        p.events(side).iter().find_map(|e| match e {
            Event::IkeSaUp { nat_local, nat_remote, local, remote, .. } => Some((*nat_local, *nat_remote, *local, *remote)),
            _ => None,
        })
    };
    let (a_local_nat, a_remote_nat, a_local, a_remote) = up(Side::A).expect("A up");
    assert!(a_local_nat && !a_remote_nat);
    assert_eq!((a_local.port(), a_remote.port()), (4500, 4500));
    let (b_local_nat, b_remote_nat, _, b_remote) = up(Side::B).expect("B up");
    assert!(!b_local_nat && b_remote_nat);
    assert_eq!(b_remote, "203.0.113.7:14500".parse().expect("addr"));
    // IKE_AUTH went on port 4500 with the non-ESP marker.
    let auth = p.wire.iter().find(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH));
    let (_, _, d) = auth.expect("IKE_AUTH sent");
    assert_eq!((d.from.port(), d.to.port()), (4500, 4500));
    assert_eq!(d.payload[..4], [0, 0, 0, 0]);
    for side in [Side::A, Side::B] {
        assert!(p.installs(side)[0].udp_encap);
    }
}

fn remote_access_pair(seed: u64, initial_contact: bool) -> Pair {
    let mut ca = psk_conn("ra", "client.esprit.test", "b.esprit.test", b"k", true);
    ca.request_vip = vec![Family::V4, Family::V6];
    ca.initial_contact = initial_contact;
    let mut cb = psk_conn("ra", "b.esprit.test", "client.esprit.test", b"k", false);
    cb.pool = Some(PoolConfig {
        name: "clients".into(),
        v4: Some((Ipv4Addr::new(10, 99, 0, 1), 10)),
        v6: Some(("fd00::1".parse().expect("v6"), 10)),
        dns: vec![IpAddr::V4(Ipv4Addr::new(10, 99, 0, 53)), IpAddr::V6("fd00::53".parse().expect("v6"))],
        dns_domains: Vec::new(),
    });
    cb.child.remote_ts = vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()];
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

#[test]
fn remote_access_client_gets_addresses_and_dns_from_the_pool() {
    let mut p = remote_access_pair(303, true);
    p.initiate(Side::A, "ra");
    p.drive();
    let (vips, dns) = p
        .events(Side::A)
        .iter()
        .find_map(|e| match e {
            Event::IkeSaUp { virtual_ips, dns, .. } => Some((virtual_ips.clone(), dns.clone())),
            _ => None,
        })
        .expect("A up");
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));
    let v6 = IpAddr::V6("fd00::1".parse::<Ipv6Addr>().expect("v6"));
    assert_eq!(vips, vec![v4, v6]);
    assert_eq!(dns.len(), 2);
    let a = p.installs(Side::A)[0];
    assert_eq!(a.ts_local, vec![TrafficSelector::host(v4), TrafficSelector::host(v6)]);
    assert_eq!(p.installs(Side::B)[0].ts_remote, a.ts_local);
    // A second client (no INITIAL_CONTACT) gets the next addresses.
    let mut p = remote_access_pair(304, false);
    p.initiate(Side::A, "ra");
    p.initiate(Side::A, "ra");
    p.drive();
    let mut all: Vec<IpAddr> = p
        .events(Side::B)
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaUp { virtual_ips, .. } => Some(virtual_ips.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    all.sort();
    assert_eq!(all.len(), 4);
    all.dedup();
    assert_eq!(all.len(), 4, "no address handed out twice");
}

#[test]
fn initial_contact_replaces_the_old_ike_sa_of_the_same_identity() {
    let mut p = Pair::psk(305);
    p.connect();
    let first_child = p.installs(Side::B)[0].child_sa;
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.downs(Side::B), vec![DownReason::Replaced]);
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::ChildSaDelete { child_sa, .. } if *child_sa == first_child)), 1);
    assert_eq!(p.b.ep.established().len(), 1);
}

#[test]
fn half_open_sas_expire_when_ike_auth_never_comes() {
    let mut p = Pair::psk(306);
    p.link.filter = Some(Box::new(|side, d| side == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH)));
    p.initiate(Side::A, "site");
    p.drive_for(Duration::from_secs(1));
    assert_eq!(p.b.ep.half_open_count(), 1);
    p.drive_for(Duration::from_secs(30));
    assert_eq!(p.b.ep.half_open_count(), 0);
    assert_eq!(p.downs(Side::B), vec![DownReason::Timeout]);
}

#[test]
fn cookie_and_invalid_ke_together_keep_the_cookie_on_the_group_retry() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.ike_proposals = vec![ike_proposal(&[KeId::CURVE25519, KeId::ECP_256])];
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    cb.ike_proposals = vec![ike_proposal(&[KeId::ECP_256])];
    let mut cfg_b = endpoint_config(cb);
    cfg_b.cookie_threshold = 0;
    let mut p = Pair::new(307, endpoint_config(ca), cfg_b);
    p.connect();
    let reqs = init_requests(&p);
    assert_eq!(reqs.len(), 3, "plain, with cookie, with cookie and the new group");
    let first_is_cookie = |b: &[u8]| {
        matches!(&Message::parse(b).expect("parses").payloads[0], Payload::Notify(n) if n.notify_type == NotifyType::COOKIE)
    };
    assert!(!first_is_cookie(&reqs[0]));
    // §2.6.1 short form: the cookie stays on the retry that changes the group.
    assert!(first_is_cookie(&reqs[1]) && first_is_cookie(&reqs[2]));
}

#[test]
fn one_address_may_hold_only_a_few_half_open_sas() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.initial_contact = false;
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut cfg_b = endpoint_config(cb);
    cfg_b.half_open_per_peer_limit = 2;
    let mut p = Pair::new(308, endpoint_config(ca), cfg_b);
    p.link.filter = Some(Box::new(|side, d| side == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH)));
    for _ in 0..3 {
        p.initiate(Side::A, "site");
    }
    p.drive_for(Duration::from_secs(1));
    assert_eq!(p.b.ep.half_open_count(), 2, "the third IKE_SA_INIT is dropped");
    assert_eq!(p.b.ep.ike_sa_count(), 2);
    // Once the first two complete, A's retransmitted third request gets in.
    p.link.filter = None;
    p.drive();
    assert_eq!(p.ups(Side::A), 3);
    let listed = p.b.ep.ike_sas();
    assert_eq!(listed.iter().filter(|s| s.state == "Established").count(), 3);
    assert!(listed.iter().all(|s| !s.initiator && s.child_sas.len() == 1 && s.remote_id.is_some()));
}
