//! One responder holding many IKE SAs: the per-handshake work must not
//! grow with the number held. RFC 7296 §2.4's INITIAL_CONTACT finds the
//! SAs it replaces through the endpoint's identity index, and the state
//! tally the daemon's gauges read is kept as SAs change. The crypto is
//! ike-crypto's INSECURE provider, so 10k handshakes take seconds.
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::provider::insecure::InsecureNoSecurityProvider;
use ike_crypto::rng::DeterministicRng;

use super::util::*;
use crate::{Command, DownReason, Endpoint, EndpointConfig, Event, Identity};

fn id(i: usize) -> Identity {
    Identity::Fqdn(format!("load-{i}.esprit.test"))
}

/// A holds connections `load-I` (identity `load-I.esprit.test`, with
/// INITIAL_CONTACT, as real clients send it); B answers any identity.
fn many_clients(n: usize) -> Pair {
    let base = psk_conn("load", "load.esprit.test", "b.esprit.test", b"k", true);
    let conns = (0..n)
        .map(|i| {
            let mut c = base.clone();
            c.name = format!("load-{i}");
            c.local_id = id(i);
            Arc::new(c)
        })
        .collect();
    let a = EndpointConfig { connections: conns, ..EndpointConfig::default() };
    let mut cb = psk_conn("rw", "b.esprit.test", "any", b"k", false);
    cb.remote_id = None;
    let b = EndpointConfig {
        cookie_threshold: usize::MAX,
        half_open_limit: usize::MAX,
        half_open_per_peer_limit: usize::MAX,
        ..endpoint_config(cb)
    };
    let insecure = |cfg, seed| Endpoint::new(cfg, Box::new(InsecureNoSecurityProvider), Box::new(DeterministicRng::from_u64(seed)), T0, UNIX_T0);
    Pair::from_endpoints(41, insecure(a, 1), insecure(b, 2))
}

fn established_of(p: &Pair, i: usize) -> Vec<crate::IkeSaHandle> {
    let listed = p.b.ep.ike_sas();
    p.b.ep
        .ike_sas_of(&id(i))
        .into_iter()
        .filter(|h| listed.iter().any(|s| s.ike_sa == *h && s.state == "Established"))
        .collect()
}

#[test]
fn initial_contact_among_10k_sas_replaces_only_its_identity_found_through_the_index() {
    let n = 10_000;
    let mut p = many_clients(n);
    for batch in (0..n).step_by(500) {
        for i in batch..batch + 500 {
            p.initiate(Side::A, &format!("load-{i}"));
        }
        p.drive_for(Duration::from_secs(2));
    }
    assert_eq!(p.ups(Side::B), n);
    assert_eq!(p.b.ep.tally().by_state.get("Established"), Some(&n));
    assert!(p.downs(Side::B).is_empty(), "distinct identities replace nothing");

    // An IKE SA rekey moves identity 7 to a new SA: the index follows.
    let first = established_of(&p, 7);
    assert_eq!(first.len(), 1);
    p.command(Side::B, Command::RekeyIke { ike_sa: first[0] });
    p.drive_for(Duration::from_secs(2));
    let rekeyed = established_of(&p, 7);
    assert_eq!(rekeyed.len(), 1);
    assert_ne!(rekeyed, first);

    // Clients 7 (through its rekeyed SA) and 42 come back with
    // INITIAL_CONTACT: exactly their old SAs go, the other 9998 stay.
    let old_42 = established_of(&p, 42);
    p.initiate(Side::A, "load-7");
    p.initiate(Side::A, "load-42");
    p.drive_for(Duration::from_secs(2));
    let replaced: Vec<_> = p
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDown { ike_sa, reason: DownReason::Replaced } => Some(*ike_sa),
            _ => None,
        })
        .collect();
    assert_eq!(replaced.len(), 2, "{replaced:?}");
    assert!(replaced.contains(&rekeyed[0]) && replaced.contains(&old_42[0]));
    for i in [7, 42] {
        let now = established_of(&p, i);
        assert_eq!(now.len(), 1);
        assert!(!replaced.contains(&now[0]));
    }
    assert_eq!(p.b.ep.tally().by_state.get("Established"), Some(&n));

    // The index and the tally agree with a full listing.
    let listed = p.b.ep.ike_sas();
    for s in &listed {
        let rid = s.remote_id.as_ref().expect("authenticated");
        assert!(p.b.ep.ike_sas_of(rid).contains(&s.ike_sa));
    }
    let indexed: usize = (0..n).map(|i| p.b.ep.ike_sas_of(&id(i)).len()).sum();
    assert_eq!(indexed, listed.len());
    let mut by_state = std::collections::BTreeMap::new();
    for s in &listed {
        *by_state.entry(s.state).or_insert(0) += 1;
    }
    assert_eq!(p.b.ep.tally().by_state, by_state);
}
