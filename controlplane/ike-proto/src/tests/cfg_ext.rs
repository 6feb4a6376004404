//! RFC 8598 split DNS and RFC 8983 IP4_ALLOWED / IP6_ALLOWED over the
//! configuration payload, with the client on either side of the pair.
use std::net::{IpAddr, Ipv4Addr};

use ike_wire::NotifyType;

use super::util::*;
use crate::split_dns::{DnsDomain, DnssecTa, Refusal};
use crate::{ConnectionConfig, Event, Family, PoolConfig, TrafficSelector};

fn pool(v4: bool, v6: bool, domains: Vec<DnsDomain>) -> PoolConfig {
    PoolConfig {
        name: "clients".into(),
        v4: v4.then_some((Ipv4Addr::new(10, 99, 0, 1), 10)),
        v6: v6.then(|| ("fd00::1".parse().expect("v6"), 10)),
        dns: vec![IpAddr::V4(Ipv4Addr::new(10, 99, 0, 53)), IpAddr::V6("fd00::53".parse().expect("v6"))],
        dns_domains: domains,
    }
}

fn corp() -> DnsDomain {
    let mut d = DnsDomain::new("corp.example.test").expect("name");
    d.trust_anchors.push(DnssecTa { key_tag: 20326, algorithm: 8, digest_type: 2, digest: vec![0xe0; 32] });
    d
}

/// A remote-access pair: the client on `client`, the gateway on the other
/// side, both named "ra".
fn ra_pair(seed: u64, client: Side, edit_client: impl FnOnce(&mut ConnectionConfig), gw_pool: PoolConfig) -> Pair {
    let (a_side, b_side) = (client == Side::A, client == Side::B);
    let mut c = psk_conn("ra", "client.esprit.test", "gw.esprit.test", b"k", a_side);
    c.request_vip = vec![Family::V4];
    edit_client(&mut c);
    let mut g = psk_conn("ra", "gw.esprit.test", "client.esprit.test", b"k", b_side);
    g.pool = Some(gw_pool);
    g.child.remote_ts = vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()];
    let (a, b) = if a_side { (c, g) } else { (g, c) };
    Pair::new(seed, endpoint_config(a), endpoint_config(b))
}

fn other(s: Side) -> Side {
    if s == Side::A { Side::B } else { Side::A }
}

type SplitDnsSeen = (Vec<DnsDomain>, Vec<(String, Refusal)>);

fn split_dns(p: &Pair, side: Side) -> Option<SplitDnsSeen> {
    p.events(side).iter().find_map(|e| match e {
        Event::SplitDns { domains, refused, .. } => Some((domains.clone(), refused.clone())),
        _ => None,
    })
}

#[test]
fn split_dns_domains_and_trust_anchors_reach_a_client_that_asks_in_either_role() {
    for (seed, client) in [(900, Side::A), (901, Side::B)] {
        let com = DnsDomain::new("com").expect("name");
        let mut p = ra_pair(seed, client, |c| c.ext.split_dns.dnssec_ta_domains = vec!["example.test".into()], pool(true, false, vec![corp(), com]));
        p.initiate(client, "ra");
        p.drive();
        assert_eq!(p.installs(client).len(), 1);
        let (got, refused) = split_dns(&p, client).expect("client reports split DNS");
        assert_eq!(got, vec![corp()], "the domain and its TA, nothing else");
        assert_eq!(refused, vec![("com".to_string(), Refusal::PublicSuffix)]);
        let (pushed, _) = split_dns(&p, other(client)).expect("gateway reports what it pushed");
        assert_eq!(pushed.len(), 2);
        // The listing shows the accepted domains for the client's IKE SA.
        let ep = if client == Side::A { &p.a.ep } else { &p.b.ep };
        assert_eq!(ep.ike_sas()[0].ext.dns_domains, vec![corp()]);
    }
}

#[test]
fn trust_anchors_are_dropped_without_an_out_of_band_list_and_nothing_is_pushed_unasked() {
    let mut p = ra_pair(902, Side::A, |_| {}, pool(true, false, vec![corp()]));
    p.initiate(Side::A, "ra");
    p.drive();
    let (got, refused) = split_dns(&p, Side::A).expect("split DNS");
    assert_eq!(got[0].name, "corp.example.test");
    assert!(got[0].trust_anchors.is_empty());
    assert_eq!(refused, vec![("corp.example.test".to_string(), Refusal::TaNotAllowed)]);

    let mut p = ra_pair(903, Side::A, |c| c.ext.split_dns.request = false, pool(true, false, vec![corp()]));
    p.initiate(Side::A, "ra");
    p.drive();
    assert_eq!(p.installs(Side::A).len(), 1);
    assert!(split_dns(&p, Side::A).is_none());
    assert!(split_dns(&p, Side::B).is_none(), "RFC 8598 §3.1: only a client that asked gets domains");
}

#[test]
fn an_allow_list_and_a_full_tunnel_restrict_what_the_client_accepts() {
    let mut p = ra_pair(904, Side::B, |c| c.ext.split_dns.allowed_domains = Some(vec!["other.test".into()]), pool(true, false, vec![corp()]));
    p.initiate(Side::B, "ra");
    p.drive();
    let (got, refused) = split_dns(&p, Side::B).expect("split DNS");
    assert!(got.is_empty());
    assert_eq!(refused[0].1, Refusal::NotAllowed);

    let mut p = ra_pair(905, Side::A, |c| c.child.remote_ts = vec![TrafficSelector::any_v4()], pool(true, false, vec![corp()]));
    p.initiate(Side::A, "ra");
    p.drive();
    let (got, refused) = split_dns(&p, Side::A).expect("split DNS");
    assert!(got.is_empty(), "RFC 8598 §4: a full tunnel ignores split DNS");
    assert_eq!(refused[0].1, Refusal::FullTunnel);
}

#[test]
fn a_request_for_an_unsupported_family_gets_the_allowed_family_instead_of_internal_address_failure() {
    for (seed, client) in [(910, Side::A), (911, Side::B)] {
        let mut p = ra_pair(seed, client, |_| {}, pool(false, true, Vec::new()));
        p.initiate(client, "ra");
        p.drive();
        assert_eq!((p.ups(client), p.ups(other(client))), (1, 1), "the IKE SA stays");
        assert!(p.installs(client).is_empty());
        assert_eq!(p.child_failures(other(client)), vec![NotifyType::IP6_ALLOWED]);
        assert_eq!(p.child_failures(client), vec![NotifyType::IP6_ALLOWED]);
        let ep = if client == Side::A { &p.a.ep } else { &p.b.ep };
        assert_eq!(ep.ike_sas()[0].ext.peer_allowed, vec![Family::V6]);
    }
}

#[test]
fn a_dual_stack_client_follows_ip6_allowed_with_a_new_ike_sa() {
    let mut p = ra_pair(912, Side::A, |c| c.ext.dual_stack = true, pool(false, true, Vec::new()));
    p.initiate(Side::A, "ra");
    p.drive();
    assert_eq!(p.ups(Side::A), 2, "a second IKE SA asking for IPv6");
    let a = p.installs(Side::A);
    assert_eq!(a.len(), 1);
    assert!(a[0].ts_local[0].start_addr.is_ipv6());
    assert_eq!(p.a.ep.established().len(), 1, "the childless first SA is deleted");
    // And it does not bounce back and forth.
    assert_eq!(p.sent(Side::A, ike_wire::ExchangeType::IKE_SA_INIT, false), 2);
}

#[test]
fn both_allowed_notifies_come_with_a_dual_stack_pool_and_only_the_supported_one_otherwise() {
    let mut p = ra_pair(913, Side::A, |c| c.request_vip = vec![Family::V4, Family::V6], pool(true, true, Vec::new()));
    p.initiate(Side::A, "ra");
    p.drive();
    assert_eq!(p.a.ep.ike_sas()[0].ext.peer_allowed, vec![Family::V4, Family::V6]);
    assert!(p.child_failures(Side::A).is_empty());
    // v4 and v6 asked, v4 supported: v4 assigned, IP4_ALLOWED only (Table 1).
    let mut p = ra_pair(914, Side::A, |c| c.request_vip = vec![Family::V4, Family::V6], pool(true, false, Vec::new()));
    p.initiate(Side::A, "ra");
    p.drive();
    assert_eq!(p.a.ep.ike_sas()[0].ext.peer_allowed, vec![Family::V4]);
    assert_eq!(p.installs(Side::A).len(), 1);
    // An exhausted pool of the right family is still INTERNAL_ADDRESS_FAILURE
    // (RFC 8983 §5: other address errors follow RFC 7296 §3.15.4).
    let mut g = pool(true, false, Vec::new());
    g.v4 = Some((Ipv4Addr::new(10, 99, 0, 1), 0));
    let mut p = ra_pair(915, Side::A, |_| {}, g);
    p.initiate(Side::A, "ra");
    p.drive();
    assert_eq!(p.child_failures(Side::A), vec![NotifyType::INTERNAL_ADDRESS_FAILURE]);
    assert_eq!(p.a.ep.ike_sas()[0].ext.peer_allowed, vec![Family::V4]);
}

#[test]
fn the_allowed_notifies_are_data_less_status_notifies() {
    // RFC 8983 §4 ("No data is associated") and §7 (16439, 16440), in the
    // RFC 7296 §3.10 Notify layout: Protocol ID 0, SPI Size 0.
    for (t, code) in [(NotifyType::IP4_ALLOWED, 16439u16), (NotifyType::IP6_ALLOWED, 16440)] {
        let n = ike_wire::Payload::Notify(ike_wire::Notify::new(t, Vec::new()));
        let h = ike_wire::Header::new(1, 2, ike_wire::ExchangeType::IKE_AUTH, ike_wire::Flags::new(false, true), 1);
        let b = ike_wire::Message::new(h, vec![n]).emit().expect("emits");
        let c = code.to_be_bytes();
        assert_eq!(&b[28..], &[0, 0, 0, 8, 0, 0, c[0], c[1]]);
    }
}

#[test]
fn split_dns_and_allowed_families_survive_an_ike_sa_rekey() {
    let mut p = ra_pair(916, Side::A, |_| {}, pool(true, false, vec![corp()]));
    let ike = p.initiate(Side::A, "ra");
    p.drive();
    let before = p.a.ep.ike_sas()[0].ext.clone();
    assert_eq!(before.dns_domains.len(), 1);
    p.command(Side::A, crate::Command::RekeyIke { ike_sa: ike });
    p.drive();
    let sas = p.a.ep.ike_sas();
    let new = sas.iter().find(|i| i.ike_sa != ike && i.state == "Established").expect("the rekeyed IKE SA");
    assert_eq!(new.ext, before);
}
