//! Same seed, same inputs, same bytes (DESIGN.md §5).
use std::time::Duration;

use super::util::*;
use crate::Command;

/// A full session over a lossy, reordering link: handshake, a Child SA
/// rekey with PFS, an IKE SA rekey, a liveness check, a delete.
fn session(seed: u64) -> Vec<(crate::Time, Side, Vec<u8>)> {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.child.esp_proposals[0].pfs = vec![ike_wire::KeId::ECP_256];
    cb.child.esp_proposals[0].pfs = vec![ike_wire::KeId::ECP_256];
    let mut p = Pair::new(seed, endpoint_config(ca), endpoint_config(cb));
    p.link.loss_permille = 100;
    p.link.dup_permille = 100;
    p.link.jitter = Duration::from_millis(50);
    let h = p.connect();
    let child = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, Command::RekeyChild { ike_sa: h, child_sa: child });
    p.drive();
    p.command(Side::A, Command::RekeyIke { ike_sa: h });
    p.drive();
    let h2 = up_handle(&p, Side::A);
    p.command(Side::A, Command::Dpd { ike_sa: h2 });
    p.drive();
    p.command(Side::A, Command::Terminate { ike_sa: h2 });
    p.drive();
    p.wire.into_iter().map(|(t, s, d)| (t, s, d.payload)).collect()
}

#[test]
fn same_seed_gives_the_same_datagrams_byte_for_byte() {
    let first = session(42);
    let second = session(42);
    assert!(first.len() > 12, "the session is not trivial: {} datagrams", first.len());
    assert_eq!(first.len(), second.len());
    for (i, (x, y)) in first.iter().zip(&second).enumerate() {
        assert_eq!(x, y, "datagram {i} differs");
    }
}

#[test]
fn another_seed_gives_other_bytes() {
    let a = session(42);
    let b = session(43);
    assert_ne!(a[0].2, b[0].2);
}
