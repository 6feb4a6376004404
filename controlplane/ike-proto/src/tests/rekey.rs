//! CREATE_CHILD_SA: new Child SAs, Child SA and IKE SA rekeys, and
//! simultaneous rekeys (RFC 7296 §1.3, §2.8, §2.8.1, §2.18).
use std::time::Duration;

use ike_wire::{ExchangeType, KeId, Message};

use super::util::*;
use crate::{ChildSaHandle, Command, DownReason, Event, IkeSaHandle};

fn install_index(p: &Pair, side: Side, h: ChildSaHandle) -> Option<usize> {
    p.events(side).iter().position(|e| matches!(e, Event::ChildSaInstall(i) if i.child_sa == h))
}

fn delete_index(p: &Pair, side: Side, h: ChildSaHandle) -> Option<usize> {
    p.events(side).iter().position(|e| matches!(e, Event::ChildSaDelete { child_sa, .. } if *child_sa == h))
}

/// The Child SAs alive on a side: installed and not deleted.
fn live_children(p: &Pair, side: Side) -> Vec<(u32, u32)> {
    p.installs(side)
        .iter()
        .filter(|i| delete_index(p, side, i.child_sa).is_none())
        .map(|i| (i.spi_in, i.spi_out))
        .collect()
}

#[test]
fn create_child_sa_adds_a_second_child_sa() {
    let mut p = Pair::psk(500);
    let h = p.connect();
    p.command(Side::A, Command::CreateChild { ike_sa: h });
    p.drive();
    let (a, b) = (live_children(&p, Side::A), live_children(&p, Side::B));
    assert_eq!(a.len(), 2);
    let mut b_swapped: Vec<(u32, u32)> = b.iter().map(|(i, o)| (*o, *i)).collect();
    b_swapped.sort();
    let mut a = a;
    a.sort();
    assert_eq!(a, b_swapped);
    // KEYMAT of CREATE_CHILD_SA uses its own nonces: new keys.
    let ia = p.installs(Side::A);
    assert_ne!(ia[0].keys_out.encr[..], ia[1].keys_out.encr[..]);
}

fn rekey_child(seed: u64, pfs: bool) -> Pair {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    if pfs {
        ca.child.esp_proposals[0].pfs = vec![KeId::CURVE25519];
        cb.child.esp_proposals[0].pfs = vec![KeId::CURVE25519];
    }
    let mut p = Pair::new(seed, endpoint_config(ca), endpoint_config(cb));
    let h = p.connect();
    let old = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, Command::RekeyChild { ike_sa: h, child_sa: old });
    p.drive();
    p
}

#[test]
fn child_sa_rekey_installs_the_new_sa_before_deleting_the_old_on_both_sides() {
    for pfs in [false, true] {
        let p = rekey_child(501 + u64::from(pfs), pfs);
        for side in [Side::A, Side::B] {
            let installs = p.installs(side);
            assert_eq!(installs.len(), 2, "pfs {pfs}");
            let (old, new) = (installs[0].child_sa, installs[1].child_sa);
            assert_eq!(installs[1].rekey_of, Some(old));
            let (i, d) = (install_index(&p, side, new).expect("new"), delete_index(&p, side, old).expect("old deleted"));
            assert!(i < d, "make-before-break");
            assert_eq!(delete_index(&p, side, new), None);
            assert!(p.downs(side).is_empty());
        }
        let (a, b) = (live_children(&p, Side::A), live_children(&p, Side::B));
        assert_eq!(a, vec![(b[0].1, b[0].0)]);
        // With PFS the request carried a KE payload.
        let req = p
            .wire
            .iter()
            .find(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::CREATE_CHILD_SA))
            .expect("rekey sent");
        assert_eq!(req.2.header().expect("hdr").message_id, 2);
        let _ = Message::parse(req.2.ike_bytes()).expect("parses");
    }
}

#[test]
fn the_responder_of_the_ike_sa_can_create_and_rekey_child_sas_too() {
    let mut p = Pair::psk(506);
    p.connect();
    let hb = up_handle(&p, Side::B);
    p.command(Side::B, Command::CreateChild { ike_sa: hb });
    p.drive();
    let newest = p.installs(Side::B)[1].child_sa;
    p.command(Side::B, Command::RekeyChild { ike_sa: hb, child_sa: newest });
    p.drive();
    for side in [Side::A, Side::B] {
        assert_eq!(p.installs(side).len(), 3);
        assert_eq!(live_children(&p, side).len(), 2);
    }
    let (mut a, mut b) = (live_children(&p, Side::A), live_children(&p, Side::B));
    a.sort();
    b = b.into_iter().map(|(i, o)| (o, i)).collect();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn child_sa_rekey_with_pfs_derives_keys_different_from_without() {
    let a = rekey_child(503, true);
    let b = rekey_child(503, false);
    assert_ne!(a.installs(Side::A)[1].keys_out.encr[..], b.installs(Side::A)[1].keys_out.encr[..]);
    assert_eq!(a.installs(Side::A)[1].keys_out.encr[..], a.installs(Side::B)[1].keys_in.encr[..]);
}

#[test]
fn child_sa_lifetime_triggers_a_rekey() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.child.lifetime.rekey_secs = 60;
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(504, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    p.drive_for(Duration::from_secs(70));
    assert_eq!(p.installs(Side::B).len(), 2);
    assert_eq!(live_children(&p, Side::B).len(), 1);
}

#[test]
fn ike_sa_rekey_moves_child_sas_and_deletes_the_old_ike_sa() {
    let mut p = Pair::psk(505);
    let h = p.connect();
    p.command(Side::A, Command::RekeyIke { ike_sa: h });
    p.drive();
    for side in [Side::A, Side::B] {
        assert_eq!(p.count(side, |e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
        assert_eq!(p.downs(side), vec![DownReason::Rekeyed]);
        assert_eq!(p.count(side, |e| matches!(e, Event::ChildSaDelete { .. })), 0, "Child SAs survive an IKE rekey");
    }
    let new_a = up_handle(&p, Side::A);
    assert_ne!(new_a, h);
    assert_eq!(p.a.ep.child_sas(new_a).len(), 1);
    // The new IKE SA works: Message IDs restart at 0, the I flag follows A.
    p.command(Side::A, Command::Dpd { ike_sa: new_a });
    p.drive();
    let last = p.wire.iter().rev().find(|(_, s, _)| *s == Side::A).expect("sent").2.header().expect("hdr");
    assert_eq!(last.message_id, 0);
    assert!(p.downs(Side::A).len() == 1);
    // And B can rekey it back the other way, then delete a Child SA over it.
    let new_b = up_handle(&p, Side::B);
    p.command(Side::B, Command::RekeyIke { ike_sa: new_b });
    p.drive();
    let newer_b = up_handle(&p, Side::B);
    let child = p.b.ep.child_sas(newer_b)[0].0;
    p.command(Side::B, Command::DeleteChild { ike_sa: newer_b, child_sa: child });
    p.drive();
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::ChildSaDelete { .. })), 1);
}

#[test]
fn simultaneous_child_sa_rekeys_leave_one_child_sa_the_same_on_both_sides() {
    for seed in 510..516 {
        let mut p = Pair::psk(seed);
        let ha = p.connect();
        let hb = up_handle(&p, Side::B);
        let (ca, cb) = (p.installs(Side::A)[0].child_sa, p.installs(Side::B)[0].child_sa);
        p.command(Side::A, Command::RekeyChild { ike_sa: ha, child_sa: ca });
        p.command(Side::B, Command::RekeyChild { ike_sa: hb, child_sa: cb });
        p.drive();
        let (a, b) = (live_children(&p, Side::A), live_children(&p, Side::B));
        assert_eq!(a.len(), 1, "seed {seed}: {:?}", p.a.events);
        assert_eq!(a, vec![(b[0].1, b[0].0)], "seed {seed}");
        for side in [Side::A, Side::B] {
            assert_eq!(p.installs(side).len(), 3, "seed {seed}: both rekeys created an SA");
            assert!(p.downs(side).is_empty());
        }
    }
}

fn established_with_children(p: &Pair, side: Side) -> Vec<(IkeSaHandle, usize)> {
    let ep = match side {
        Side::A => &p.a.ep,
        Side::B => &p.b.ep,
    };
    ep.established().into_iter().map(|h| (h, ep.child_sas(h).len())).collect()
}

#[test]
fn simultaneous_ike_sa_rekeys_leave_one_ike_sa_with_the_child_sas() {
    for seed in 520..526 {
        let mut p = Pair::psk(seed);
        let ha = p.connect();
        let hb = up_handle(&p, Side::B);
        p.command(Side::A, Command::RekeyIke { ike_sa: ha });
        p.command(Side::B, Command::RekeyIke { ike_sa: hb });
        p.drive();
        let (a, b) = (established_with_children(&p, Side::A), established_with_children(&p, Side::B));
        assert_eq!(a.len(), 1, "seed {seed}: {:?}", p.a.events);
        assert_eq!(b.len(), 1, "seed {seed}: {:?}", p.b.events);
        assert_eq!((a[0].1, b[0].1), (1, 1), "seed {seed}");
        // The survivor works in both directions.
        p.command(Side::A, Command::Dpd { ike_sa: a[0].0 });
        p.command(Side::B, Command::Dpd { ike_sa: b[0].0 });
        p.drive();
        for side in [Side::A, Side::B] {
            assert!(!p.downs(side).contains(&DownReason::Timeout), "seed {seed}");
            assert_eq!(p.count(side, |e| matches!(e, Event::ChildSaDelete { .. })), 0, "seed {seed}");
        }
    }
}

#[test]
fn ike_sa_lifetime_triggers_an_ike_sa_rekey() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.ike_rekey_after = Some(Duration::from_secs(3600));
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(530, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    // Up to 10% early (jitter), never later.
    p.drive_for(Duration::from_secs(3239));
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::IkeSaRekeyed { .. })), 0);
    p.drive_for(Duration::from_secs(370));
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::ChildSaDelete { .. })), 0);
}

#[test]
fn a_rekey_refused_with_temporary_failure_is_retried_later() {
    // B rekeys the IKE SA while A rekeys a Child SA: each refuses the
    // other's request with TEMPORARY_FAILURE (§2.25.2). B's rekey is
    // time-driven, so it comes back 5-15 s later and succeeds.
    let ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    cb.ike_rekey_after = Some(Duration::from_secs(3600));
    let mut p = Pair::new(531, endpoint_config(ca), endpoint_config(cb));
    let ha = p.connect();
    let hb = up_handle(&p, Side::B);
    let child = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, Command::RekeyChild { ike_sa: ha, child_sa: child });
    p.command(Side::B, Command::RekeyIke { ike_sa: hb });
    p.drive_for(Duration::from_secs(1));
    let refusals = |side| {
        p.wire
            .iter()
            .filter(|(_, s, d)| {
                *s == side
                    && d.header().is_some_and(|h| h.exchange_type == ExchangeType::CREATE_CHILD_SA && h.flags.response())
                    && d.ike_bytes().len() < 100
            })
            .count()
    };
    assert_eq!((refusals(Side::A), refusals(Side::B)), (1, 1), "both answered with a bare TEMPORARY_FAILURE");
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::IkeSaRekeyed { .. })), 0);
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::ChildSaFailed { notify: ike_wire::NotifyType::TEMPORARY_FAILURE, .. })), 1);
    p.drive_for(Duration::from_secs(4));
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::IkeSaRekeyed { .. })), 0, "not retried at once");
    p.drive_for(Duration::from_secs(12));
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::IkeSaRekeyed { .. })), 1);
}

#[test]
fn a_child_sa_past_its_hard_lifetime_is_deleted_on_both_sides() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.child.lifetime.hard_secs = 30;
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(532, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    p.drive_for(Duration::from_secs(28));
    assert_eq!(p.count(Side::B, |e| matches!(e, Event::ChildSaDelete { .. })), 0);
    p.drive_for(Duration::from_secs(5));
    for side in [Side::A, Side::B] {
        assert_eq!(p.count(side, |e| matches!(e, Event::ChildSaDelete { .. })), 1);
        assert!(p.downs(side).is_empty(), "the IKE SA stays");
    }
}

#[test]
fn equal_lifetimes_on_both_sides_keep_exactly_one_child_sa_for_twenty_minutes() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.child.lifetime.rekey_secs = 100;
    cb.child.lifetime.rekey_secs = 100;
    let mut p = Pair::new(533, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    p.drive_for(Duration::from_secs(1200));
    let installs = p.installs(Side::A).len();
    // At least one rekey per 100 s (jittered up to 10% earlier).
    assert!((12..=15).contains(&installs), "{installs} Child SAs installed");
    assert_eq!(live_children(&p, Side::A).len(), 1);
    assert_eq!(live_children(&p, Side::B).len(), 1);
}

#[test]
fn child_sa_rekey_retries_with_the_pfs_group_the_responder_asks_for() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.child.esp_proposals[0].pfs = vec![KeId::CURVE25519, KeId::ECP_256];
    cb.child.esp_proposals[0].pfs = vec![KeId::ECP_256];
    let mut p = Pair::new(534, endpoint_config(ca), endpoint_config(cb));
    let h = p.connect();
    let old = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, Command::RekeyChild { ike_sa: h, child_sa: old });
    p.drive();
    // Two requests: KE 31 refused with INVALID_KE_PAYLOAD(19), then KE 19,
    // whose KE data (x | y, RFC 5903) is 32 octets longer than X25519's.
    let lens: Vec<usize> = p
        .wire
        .iter()
        .filter(|(_, s, d)| *s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::CREATE_CHILD_SA && !h.flags.response()))
        .map(|(_, _, d)| d.ike_bytes().len())
        .collect();
    assert_eq!(lens.len(), 2, "{lens:?}");
    assert_eq!(lens[1], lens[0] + 32, "{lens:?}");
    assert_eq!(p.installs(Side::A)[1].suite.ke, Some(KeId::ECP_256));
    assert_eq!(p.installs(Side::B)[1].suite.ke, Some(KeId::ECP_256));
    assert_eq!(live_children(&p, Side::A).len(), 1);
    assert_eq!(p.count(Side::A, |e| matches!(e, Event::ChildSaFailed { .. })), 0);
}

#[test]
fn the_old_ike_sa_goes_even_if_the_rekeying_peer_never_deletes_it() {
    // Found by the endpoint fuzz target: B answered A's IKE SA rekey, then
    // A's Delete of the old SA never came, and B kept the old SA (state
    // Rekeyed) forever. B now deletes it itself after a while.
    let mut p = Pair::psk(506);
    let h = p.connect();
    p.link.filter = Some(Box::new(|s, d| s == Side::A && d.header().is_some_and(|h| h.exchange_type == ExchangeType::INFORMATIONAL)));
    p.command(Side::A, Command::RekeyIke { ike_sa: h });
    p.drive_for(Duration::from_secs(15 * 60));
    let states: Vec<&str> = p.b.ep.ike_sas().iter().map(|i| i.state).collect();
    assert_eq!(states, vec!["Established"], "B's IKE SAs 15 minutes after the rekey");
    assert_eq!(p.downs(Side::B), vec![DownReason::Rekeyed]);
    assert_eq!(p.b.ep.child_sas(up_handle(&p, Side::B)).len(), 1, "the Child SA lives on with the new IKE SA");
}
