//! Timers run on the monotonic clock: a wall clock stepped back and forth by
//! hours (an operator, a bad NTP source) moves no retransmission, DPD,
//! rekey or lifetime; only certificate validity reads the wall clock.
use std::time::Duration;

use ike_wire::ExchangeType;

use super::certs::cert_conns;
use super::util::*;
use crate::Time;

/// A certificate-authenticated pair (so the wall clock is read) with every
/// kind of timer short: DPD every 5 s, Child SA rekey at 20 s (hard 40 s),
/// IKE SA rekey at 45 s; a lossy link (retransmissions). Runs 80 s of
/// virtual time, the wall clock offset by each of `wall_offsets_secs` in
/// turn for 8 s each, and returns every datagram with its send time.
fn session(wall_offsets_secs: &[i64]) -> Vec<(Time, Side, Vec<u8>)> {
    let (mut ca, mut cb) = cert_conns("ed25519-client.key", "ed25519-client.pem", "root.pem");
    for c in [&mut ca, &mut cb] {
        c.dpd_delay = Some(Duration::from_secs(5));
        c.child.lifetime.rekey_secs = 20;
        c.child.lifetime.hard_secs = 40;
    }
    ca.ike_rekey_after = Some(Duration::from_secs(45));
    let mut p = Pair::new(905, endpoint_config(ca), endpoint_config(cb));
    p.link.loss_permille = 100;
    p.initiate(Side::A, "site");
    for offset in wall_offsets_secs {
        p.wall_offset_secs = *offset;
        p.drive_for(Duration::from_secs(8));
    }
    assert!(p.ups(Side::A) >= 1 && p.ups(Side::B) >= 1, "the IKE SA came up: {:?}", p.events(Side::A));
    p.wire.iter().map(|(t, s, d)| (*t, *s, d.payload.clone())).collect()
}

#[test]
fn a_wall_clock_stepped_by_hours_fires_no_timer_early_or_late() {
    const H: i64 = 3600;
    let steady = session(&[0; 10]);
    let stepped = session(&[0, 3 * H, -5 * H, 26 * H, -26 * H, 7 * H, -H, 12 * H, -12 * H, 0]);
    // The run exercised the timers: retransmissions (lossy link), DPD,
    // Child SA rekeys, the IKE SA rekey.
    let count = |x: ExchangeType| {
        steady.iter().filter(|(_, _, d)| ike_wire::Header::parse_datagram(d).is_ok_and(|h| h.exchange_type == x && !h.flags.response())).count()
    };
    assert!(count(ExchangeType::INFORMATIONAL) >= 5, "DPD ran");
    assert!(count(ExchangeType::CREATE_CHILD_SA) >= 3, "Child SA and IKE SA rekeys ran");
    // Every datagram at the same virtual instant, byte for byte: no timer
    // moved with the wall clock.
    assert_eq!(steady.len(), stepped.len(), "as many datagrams with the wall clock stepped");
    for (i, (a, b)) in steady.iter().zip(&stepped).enumerate() {
        assert_eq!((a.0, a.1), (b.0, b.1), "datagram {i}: sent at another instant or by another side");
        assert_eq!(a.2, b.2, "datagram {i}: other bytes");
    }
}
