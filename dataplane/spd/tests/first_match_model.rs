//! The compiled classifier against the definition: for random ordered SPDs
//! and random packets, `first_match` is the first entry whose
//! `Selector::matches` holds (RFC 4301 §4.4.1, first match in order).
//! Values are drawn from small universes so that entries overlap and
//! packets fall on range edges.
use std::net::{IpAddr, Ipv6Addr};

use proptest::prelude::*;
use spd::{AddrRange, Classifier, FlowCache, FlowKey, PortRange, Selector};

fn addr_range() -> impl Strategy<Value = AddrRange> {
    (any::<bool>(), 0u128..40, 0u128..40).prop_map(|(v6, a, b)| {
        // IPv6 ranges sit in the same small space, shifted high, so both
        // families see hits and the v4 and v6 tables are told apart.
        let off = if v6 { 1u128 << 100 } else { 0 };
        AddrRange { v6, lo: off + a.min(b), hi: off + a.max(b) }
    })
}

fn ports() -> impl Strategy<Value = PortRange> {
    prop_oneof![Just(PortRange::ANY), (0u16..12, 0u16..12).prop_map(|(a, b)| PortRange { lo: a.min(b), hi: a.max(b) })]
}

fn selector() -> impl Strategy<Value = Selector> {
    (
        prop::collection::vec(addr_range(), 0..3),
        prop::collection::vec(addr_range(), 0..3),
        prop::option::of(0u8..4),
        ports(),
        ports(),
        prop::option::of(0u16..3),
    )
        .prop_map(|(local, remote, proto, local_ports, remote_ports, segment)| Selector {
            local,
            remote,
            proto,
            local_ports,
            remote_ports,
            segment,
        })
}

fn key() -> impl Strategy<Value = FlowKey> {
    (any::<bool>(), 0u128..42, 0u128..42, 0u8..5, 0u16..14, 0u16..14, 0u16..4).prop_map(|(v6, l, r, p, lp, rp, s)| {
        if v6 {
            let base = 1u128 << 100;
            let a = |x: u128| IpAddr::from(Ipv6Addr::from(base + x));
            FlowKey::new(a(l), a(r), p, lp, rp, s).expect("same family")
        } else {
            FlowKey::v4(l as u32, r as u32, p, lp, rp, s)
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn first_match_equals_the_naive_ordered_scan(
        entries in prop::collection::vec(selector(), 0..90),
        keys in prop::collection::vec(key(), 1..64),
    ) {
        let c = Classifier::new(&entries);
        for k in &keys {
            let naive = entries.iter().position(|s| s.matches(k));
            prop_assert_eq!(c.first_match(k), naive, "key {:?}", k);
        }
    }

    #[test]
    fn the_flow_cache_never_returns_another_flows_verdict(
        keys in prop::collection::vec(key(), 1..300),
    ) {
        let mut cache: FlowCache<usize> = FlowCache::new(16, 42);
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = cache.get(k) {
                prop_assert_eq!(keys[v], *k);
            }
            cache.insert(*k, i);
        }
    }
}
