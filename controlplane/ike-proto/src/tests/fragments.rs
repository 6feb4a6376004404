//! IKE fragmentation (RFC 7383) between two endpoints, and the reassembly
//! rules on their own.
use std::time::Duration;

use ike_wire::{ExchangeType, Message, PayloadType};

use super::util::*;
use crate::config::FragmentationConfig;
use crate::fragment::{Fragment, Reassembly};
use crate::{Command, DownReason, EndpointConfig};

/// A PSK pair whose IKE_AUTH is padded (a long identity) to need fragments.
fn big_auth_pair(seed: u64, max_a: Option<usize>, max_b: Option<usize>) -> Pair {
    let long = format!("{}.esprit.test", "x".repeat(700));
    let ca = psk_conn("site", &long, "b.esprit.test", b"k", true);
    let cb = psk_conn("site", "b.esprit.test", &long, b"k", false);
    let with = |conn, max: Option<usize>| EndpointConfig {
        fragmentation: max.map(|m| FragmentationConfig { max_message_len: m, ..FragmentationConfig::default() }),
        ..endpoint_config(conn)
    };
    Pair::new(seed, with(ca, max_a), with(cb, max_b))
}

fn skf_datagrams(p: &Pair, side: Side) -> Vec<(u32, u16, u16, usize)> {
    p.wire
        .iter()
        .filter(|(_, s, _)| *s == side)
        .filter_map(|(_, _, d)| {
            let m = Message::parse(d.ike_bytes()).ok()?;
            let f = m.skf()?;
            Some((m.header.message_id, f.fragment_number, f.total_fragments, d.ike_bytes().len()))
        })
        .collect()
}

#[test]
fn large_ike_auth_is_fragmented_and_reassembled_both_ways() {
    let mut p = big_auth_pair(800, Some(300), Some(300));
    p.connect();
    let a = skf_datagrams(&p, Side::A);
    assert!(a.len() >= 3, "{a:?}");
    assert!(a.iter().all(|(mid, _, total, len)| *mid == 1 && *total as usize == a.len() && *len <= 300));
    // Fragment numbers 1..=Total, in order.
    assert_eq!(a.iter().map(|f| f.1).collect::<Vec<_>>(), (1..=a.len() as u16).collect::<Vec<_>>());
    // Only fragment 1 names the first inner payload (§2.5).
    let firsts: Vec<PayloadType> = p
        .wire
        .iter()
        .filter(|(_, s, _)| *s == Side::A)
        .filter_map(|(_, _, d)| Message::parse(d.ike_bytes()).ok()?.skf().map(|f| f.first_inner))
        .collect();
    assert_eq!(firsts[0], PayloadType::IDI);
    assert!(firsts[1..].iter().all(|t| *t == PayloadType::NONE));
    // B's answer (long IDi is not echoed, but TS and SA are) fits or is fragmented too.
    assert_eq!((p.installs(Side::A).len(), p.installs(Side::B).len()), (1, 1));
}

#[test]
fn no_fragments_without_the_peers_announcement() {
    let mut p = big_auth_pair(801, Some(300), None);
    p.connect();
    assert!(skf_datagrams(&p, Side::A).is_empty());
    assert_eq!(p.installs(Side::B).len(), 1);
}

#[test]
fn a_lost_fragment_is_recovered_by_retransmitting_the_message() {
    let mut p = big_auth_pair(802, Some(300), Some(300));
    let mut n = 0;
    p.link.filter = Some(Box::new(move |side, d| {
        if side == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH) {
            n += 1;
            return n == 2;
        }
        false
    }));
    p.connect();
    let a = skf_datagrams(&p, Side::A);
    let total = a[0].2 as usize;
    assert_eq!(a.len(), 2 * total, "every fragment resent once");
    assert_eq!(p.installs(Side::B).len(), 1);
}

#[test]
fn fragmented_response_is_resent_only_for_a_retransmitted_first_fragment() {
    // Make B's IKE_AUTH response big too (a long ID of its own) and lose
    // its last fragment once.
    let long = format!("{}.esprit.test", "y".repeat(700));
    let mut ca = psk_conn("site", "a.esprit.test", &long, b"k", true);
    let mut cb = psk_conn("site", &long, "a.esprit.test", b"k", false);
    ca.remote_id = Some(crate::Identity::Fqdn(long.clone()));
    cb.local_id = crate::Identity::Fqdn(long);
    let frag = |c| EndpointConfig { fragmentation: Some(FragmentationConfig { max_message_len: 300, ..Default::default() }), ..endpoint_config(c) };
    let mut p = Pair::new(803, frag(ca), frag(cb));
    let mut n = 0;
    p.link.filter = Some(Box::new(move |side, d| {
        if side == Side::B && d.header().is_some_and(|h| h.exchange_type == ExchangeType::IKE_AUTH) {
            n += 1;
            return n == 1;
        }
        false
    }));
    p.connect();
    let b = skf_datagrams(&p, Side::B);
    let total = b[0].2 as usize;
    assert!(total >= 3);
    // The response went out twice, whole: once, then for A's retransmit.
    assert_eq!(b.len(), 2 * total);
    assert_eq!(p.ups(Side::B), 1, "the request was processed once");
}

#[test]
fn messages_with_more_fragments_than_allowed_are_dropped() {
    let long = format!("{}.esprit.test", "x".repeat(700));
    let ca = psk_conn("site", &long, "b.esprit.test", b"k", true);
    let cb = psk_conn("site", "b.esprit.test", &long, b"k", false);
    let cfg_a = EndpointConfig { fragmentation: Some(FragmentationConfig { max_message_len: 200, ..Default::default() }), ..endpoint_config(ca) };
    let cfg_b = EndpointConfig { fragmentation: Some(FragmentationConfig { max_fragments: 2, ..Default::default() }), ..endpoint_config(cb) };
    let mut p = Pair::new(804, cfg_a, cfg_b);
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.ups(Side::B), 0);
    assert_eq!(p.downs(Side::A), vec![DownReason::Timeout]);
}

#[test]
fn rekeyed_ike_sa_keeps_fragmenting() {
    let mut p = big_auth_pair(805, Some(300), Some(300));
    let h = p.connect();
    p.command(Side::A, Command::RekeyIke { ike_sa: h });
    p.drive();
    assert_eq!(p.count(Side::A, |e| matches!(e, crate::Event::IkeSaRekeyed { .. })), 1);
}

fn frag(number: u16, total: u16, plain: &[u8]) -> Fragment {
    Fragment { number, total, first_inner: if number == 1 { PayloadType::NOTIFY } else { PayloadType::NONE }, plain: plain.to_vec() }
}

#[test]
fn reassembly_drops_duplicates_restarts_on_a_larger_total_and_ignores_a_smaller_one() {
    let cfg = FragmentationConfig::default();
    let mut r = Reassembly::default();
    let key = (false, 3);
    assert!(r.add(&cfg, T0, key, b"f1", frag(1, 3, b"aa")).is_none());
    assert!(r.add(&cfg, T0, key, b"f1", frag(1, 3, b"XX")).is_none(), "duplicate");
    assert!(r.add(&cfg, T0, key, b"g", frag(2, 2, b"zz")).is_none(), "smaller Total ignored");
    assert!(r.add(&cfg, T0, key, b"f2", frag(2, 3, b"bb")).is_none());
    let whole = r.add(&cfg, T0, key, b"f3", frag(3, 3, b"cc")).expect("complete");
    assert_eq!(whole.plain, b"aabbcc");
    assert_eq!(whole.first_inner, PayloadType::NOTIFY);
    assert_eq!(whole.first_bytes, b"f1");
    // A larger Total restarts: the old pieces are gone.
    assert!(r.add(&cfg, T0, key, b"h1", frag(1, 2, b"11")).is_none());
    assert!(r.add(&cfg, T0, key, b"h3", frag(3, 3, b"33")).is_none());
    assert!(r.add(&cfg, T0, key, b"h2", frag(2, 3, b"22")).is_none(), "fragment 1 of the new Total is missing");
    let whole = r.add(&cfg, T0, key, b"h1b", frag(1, 3, b"11")).expect("complete");
    assert_eq!(whole.plain, b"112233");
}

#[test]
fn reassembly_is_abandoned_after_its_timeout_and_bounded_in_size() {
    let cfg = FragmentationConfig { max_reassembled_len: 5, ..FragmentationConfig::default() };
    let mut r = Reassembly::default();
    assert!(r.add(&cfg, T0, (true, 1), b"", frag(1, 2, b"aa")).is_none());
    assert_eq!(r.deadline(&cfg), Some(T0 + Duration::from_secs(30)));
    r.expire(&cfg, T0 + Duration::from_secs(30));
    assert_eq!(r.deadline(&cfg), None);
    assert!(r.add(&cfg, T0, (true, 1), b"", frag(2, 2, b"bb")).is_none(), "fragment 1 was abandoned");
    assert!(r.add(&cfg, T0, (true, 2), b"", frag(1, 2, b"aaaa")).is_none());
    assert!(r.add(&cfg, T0, (true, 2), b"", frag(2, 2, b"bb")).is_none(), "over max_reassembled_len");
    assert_eq!(r.deadline(&cfg), None);
}
