//! Untrusted input never panics the endpoint (STYLE.md). With ike-crypto's
//! insecure provider the SK payloads are effectively clear and unchecked,
//! so mutated messages reach every exchange's semantic checks: the same
//! setup a cargo-fuzz target will use.
use std::net::SocketAddr;
use std::time::Duration;

use ike_crypto::provider::insecure::InsecureNoSecurityProvider;
use ike_crypto::rng::DeterministicRng;
use proptest::prelude::*;

use super::util::*;
use crate::{Command, Endpoint, Time};

fn insecure(seed: u64, cfg: crate::EndpointConfig) -> Endpoint {
    Endpoint::new(cfg, Box::new(InsecureNoSecurityProvider), Box::new(DeterministicRng::from_u64(seed)), T0, crate::fuzzing::UNIX_T0)
}

fn configs() -> (crate::EndpointConfig, crate::EndpointConfig) {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.child.esp_proposals[0].pfs = vec![ike_wire::KeId::CURVE25519];
    cb.child.esp_proposals[0].pfs = vec![ike_wire::KeId::CURVE25519];
    // An optional RFC 8784 PPK on both: the session carries USE_PPK,
    // PPK_IDENTITY and NO_PPK_AUTH for the mutations to hit, and mutated
    // ones lead into the fallback paths.
    let ppk = crate::PpkConfig {
        keys: vec![crate::Ppk { id_type: crate::PPK_ID_FIXED, id: b"fuzz".to_vec(), secret: ike_crypto::Secret::new(vec![7; 32]) }],
        required: false,
        exchange: crate::PpkExchange::IkeAuth,
    };
    ca.ppk = Some(ppk.clone());
    cb.ppk = Some(ppk);
    // RFC 9370: IKE_INTERMEDIATE in the initial exchanges, IKE_FOLLOWUP_KE
    // in the Child SA and IKE SA rekeys of the recorded session.
    for c in [&mut ca, &mut cb] {
        c.ike_proposals[0].additional_ke = vec![vec![ike_wire::KeId::ML_KEM_768]];
        c.child.esp_proposals[0].additional_ke = vec![vec![ike_wire::KeId::ECP_256]];
    }
    let mut cfg_b = endpoint_config(cb);
    cfg_b.cookie_threshold = 1;
    (endpoint_config(ca), cfg_b)
}

/// A recorded session between two insecure endpoints: every datagram, with
/// the time it was sent.
fn recorded_session() -> Vec<(Time, Side, Datagram)> {
    let (ca, cb) = configs();
    let mut p = Pair::from_endpoints(9, insecure(1, ca), insecure(2, cb));
    let h = p.connect();
    let child = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, Command::RekeyChild { ike_sa: h, child_sa: child });
    p.drive();
    p.command(Side::A, Command::CreateChild { ike_sa: h });
    p.drive();
    p.command(Side::A, Command::RekeyIke { ike_sa: h });
    p.drive();
    let h2 = up_handle(&p, Side::A);
    p.command(Side::A, Command::Dpd { ike_sa: h2 });
    p.drive();
    p.command(Side::A, Command::Terminate { ike_sa: h2 });
    p.drive();
    for x in [ike_wire::ExchangeType::IKE_INTERMEDIATE, ike_wire::ExchangeType::IKE_FOLLOWUP_KE] {
        assert!(p.wire.iter().any(|(_, _, d)| d.header().is_some_and(|h| h.exchange_type == x)), "no {x:?} in the session");
    }
    p.wire
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, value: u8 },
    Truncate { len: usize },
    Extend { bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Mutation::Extend { bytes }),
    ]
}

fn apply(payload: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut v = payload.to_vec();
    for m in ms {
        match m {
            Mutation::Flip { at, bit } if !v.is_empty() => {
                let i = at % v.len();
                v[i] ^= 1 << bit;
            }
            Mutation::Set { at, value } if !v.is_empty() => {
                let i = at % v.len();
                v[i] = *value;
            }
            Mutation::Truncate { len } => v.truncate(len % (v.len() + 1)),
            Mutation::Extend { bytes } => v.extend_from_slice(bytes),
            _ => {}
        }
    }
    v
}

/// Replays the session's datagrams to a fresh endpoint of `side`, the
/// `target`-th one mutated, and drives its timers for a while.
fn replay(side: Side, target: usize, ms: &[Mutation]) {
    let session = recorded_session();
    let (ca, cb) = configs();
    let (mut ep, incoming): (Endpoint, Vec<&(Time, Side, Datagram)>) = match side {
        Side::A => (insecure(1, ca), session.iter().filter(|(_, s, _)| *s == Side::B).collect()),
        Side::B => (insecure(2, cb), session.iter().filter(|(_, s, _)| *s == Side::A).collect()),
    };
    if side == Side::A {
        let cmd = Command::Initiate {
            connection: "site".into(),
            local: SocketAddr::new(IP_A, 500),
            remote: SocketAddr::new(IP_B, 500),
        };
        ep.handle_command(T0, cmd).expect("initiate");
    }
    let target = target % incoming.len().max(1);
    for (i, (t, _, d)) in incoming.iter().enumerate() {
        let payload = if i == target { apply(&d.payload, ms) } else { d.payload.clone() };
        ep.handle_datagram(*t, d.to, d.from, &payload);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
    let mut now = incoming.last().map_or(T0, |x| x.0);
    for _ in 0..10 {
        now = now + Duration::from_secs(30);
        ep.handle_timeout(now);
        while ep.poll_transmit().is_some() {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_panic_the_endpoint(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..8),
        natt in any::<bool>(),
    ) {
        let (_, cb) = configs();
        let mut ep = insecure(3, cb);
        let local = SocketAddr::new(IP_B, if natt { 4500 } else { 500 });
        for (i, d) in datagrams.iter().enumerate() {
            ep.handle_datagram(T0 + Duration::from_millis(i as u64), local, SocketAddr::new(IP_A, 500), d);
            while ep.poll_transmit().is_some() {}
        }
        ep.handle_timeout(T0 + Duration::from_secs(3600));
    }

    #[test]
    fn datagrams_with_a_valid_ike_header_and_random_payloads_never_panic(
        spi_i in 1u64.., exchange in 30u8..48, flags in any::<u8>(), message_id in 0u32..4,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (_, cb) = configs();
        let mut ep = insecure(4, cb);
        let mut d = Vec::new();
        d.extend_from_slice(&spi_i.to_be_bytes());
        d.extend_from_slice(&0u64.to_be_bytes());
        d.push(body.first().copied().unwrap_or(0));
        d.push(0x20);
        d.push(exchange);
        d.push(flags);
        d.extend_from_slice(&message_id.to_be_bytes());
        d.extend_from_slice(&((28 + body.len()) as u32).to_be_bytes());
        d.extend_from_slice(&body);
        ep.handle_datagram(T0, SocketAddr::new(IP_B, 500), SocketAddr::new(IP_A, 500), &d);
        while ep.poll_transmit().is_some() {}
    }

    #[test]
    fn certificate_accessors_never_panic_on_arbitrary_der(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(c) = ike_crypto::cert::Certificate::from_der(&bytes) {
            let _ = c.subject_alt_names();
            let _ = c.spki_der();
        }
    }

    #[test]
    fn mutated_session_messages_never_panic_the_responder(target in any::<usize>(), ms in proptest::collection::vec(mutation(), 1..4)) {
        replay(Side::B, target, &ms);
    }

    #[test]
    fn mutated_session_messages_never_panic_the_initiator(target in any::<usize>(), ms in proptest::collection::vec(mutation(), 1..4)) {
        replay(Side::A, target, &ms);
    }
}

#[test]
fn the_recorded_insecure_session_reaches_every_exchange() {
    // The mutation tests are only as deep as this session.
    let s = recorded_session();
    for x in [34u8, 35, 36, 37] {
        assert!(s.iter().any(|(_, _, d)| d.header().is_some_and(|h| h.exchange_type.0 == x)), "exchange {x}");
    }
    // The PPK notifies, in the clear under the insecure provider: Protocol
    // ID 0, SPI Size 0 and the Notify type of USE_PPK (IKE_SA_INIT),
    // PPK_IDENTITY and NO_PPK_AUTH (IKE_AUTH request).
    let has = |x: u8, t: ike_wire::NotifyType| {
        let [hi, lo] = t.0.to_be_bytes();
        s.iter().any(|(_, _, d)| {
            d.header().is_some_and(|h| h.exchange_type.0 == x) && d.ike_bytes().windows(4).any(|w| w == [0, 0, hi, lo])
        })
    };
    assert!(has(34, ike_wire::NotifyType::USE_PPK));
    assert!(has(35, ike_wire::NotifyType::PPK_IDENTITY));
    assert!(has(35, ike_wire::NotifyType::NO_PPK_AUTH));
}
