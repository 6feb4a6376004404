//! INFORMATIONAL: deletes and liveness checks (RFC 7296 §1.4, §2.4).
use std::time::Duration;

use ike_wire::ExchangeType;

use super::util::*;
use crate::{Command, DownReason, Event};

fn child_deletes(p: &Pair, side: Side) -> usize {
    p.count(side, |e| matches!(e, Event::ChildSaDelete { .. }))
}

#[test]
fn initiator_terminates_and_both_sides_delete_ike_and_child_sa() {
    let mut p = Pair::psk(400);
    let h = p.connect();
    p.command(Side::A, Command::Terminate { ike_sa: h });
    p.drive();
    for side in [Side::A, Side::B] {
        assert_eq!(p.downs(side), vec![DownReason::Deleted]);
        assert_eq!(child_deletes(&p, side), 1);
    }
    // Closed SAs linger for retransmits, then go.
    assert_eq!((p.a.ep.ike_sa_count(), p.b.ep.ike_sa_count()), (0, 0));
}

#[test]
fn responder_terminates_and_both_sides_delete() {
    let mut p = Pair::psk(401);
    p.connect();
    let hb = up_handle(&p, Side::B);
    p.command(Side::B, Command::Terminate { ike_sa: hb });
    p.drive();
    for side in [Side::A, Side::B] {
        assert_eq!(p.downs(side), vec![DownReason::Deleted]);
        assert_eq!(child_deletes(&p, side), 1);
    }
}

#[test]
fn deleting_a_child_sa_keeps_the_ike_sa() {
    let mut p = Pair::psk(402);
    let h = p.connect();
    let child = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, Command::DeleteChild { ike_sa: h, child_sa: child });
    p.drive();
    for side in [Side::A, Side::B] {
        assert_eq!(child_deletes(&p, side), 1);
        assert!(p.downs(side).is_empty());
    }
    assert!(p.a.ep.child_sas(h).is_empty());
}

#[test]
fn liveness_check_is_answered_and_keeps_the_sa() {
    let mut p = Pair::psk(403);
    let h = p.connect();
    p.command(Side::A, Command::Dpd { ike_sa: h });
    p.drive();
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, false), 1);
    assert_eq!(p.sent(Side::B, ExchangeType::INFORMATIONAL, true), 1);
    assert!(p.downs(Side::A).is_empty());
}

#[test]
fn liveness_check_timeout_takes_the_ike_sa_and_its_child_sas_down() {
    let mut p = Pair::psk(404);
    let h = p.connect();
    p.link.filter = Some(Box::new(|side, _| side == Side::B));
    p.command(Side::A, Command::Dpd { ike_sa: h });
    p.drive();
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, false), 6, "first send and 5 retransmits");
    assert_eq!(p.downs(Side::A), vec![DownReason::Timeout]);
    // The Child SA delete comes before the IKE SA down.
    let ev = p.events(Side::A);
    let del = ev.iter().position(|e| matches!(e, Event::ChildSaDelete { .. })).expect("child deleted");
    let down = ev.iter().position(|e| matches!(e, Event::IkeSaDown { .. })).expect("down");
    assert!(del < down);
}

#[test]
fn idle_sa_sends_periodic_liveness_checks() {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.dpd_delay = Some(Duration::from_secs(30));
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(405, endpoint_config(ca), endpoint_config(cb));
    p.connect();
    p.drive_for(Duration::from_secs(100));
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, false), 3);
    assert!(p.downs(Side::A).is_empty());
}

#[test]
fn inbound_esp_postpones_liveness_checks_until_it_stops() {
    // §2.4: ESP from the peer proves it alive as well as IKE does.
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    ca.dpd_delay = Some(Duration::from_secs(30));
    let cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    let mut p = Pair::new(406, endpoint_config(ca), endpoint_config(cb));
    let h = p.connect();
    // ESP arrives every 10 s for 100 s: no liveness check.
    for _ in 0..10 {
        p.drive_for(Duration::from_secs(10));
        let now = p.time;
        p.a.ep.note_inbound_esp(now, h);
    }
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, false), 0);
    // Traffic stops: the check is due 30 s after the last ESP, not before.
    p.drive_for(Duration::from_secs(29));
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, false), 0);
    p.drive_for(Duration::from_secs(2));
    assert_eq!(p.sent(Side::A, ExchangeType::INFORMATIONAL, false), 1);
    // Unknown handles are ignored.
    let now = p.time;
    p.a.ep.note_inbound_esp(now, crate::IkeSaHandle(u64::MAX));
    assert!(p.downs(Side::A).is_empty());
}
