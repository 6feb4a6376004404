//! The responder key exchanges of an IKE_SA_INIT burst, computed on the
//! rayon pool (`esprit_controlplane::precompute`): the endpoint uses them,
//! handshakes complete with them (the initiator derives the same keys, or
//! IKE_AUTH would fail), and what is not claimed is discarded.
use std::net::SocketAddr;
use std::path::Path;

use esprit_controlplane::config::DaemonConfig;
use esprit_controlplane::precompute::{Precomputing, MIN_BURST};
use ike_crypto::{CryptoProvider, RustCryptoProvider};
use ike_proto::{Command, Endpoint, Event, Time, UnixTime};

fn config(dir: &Path, name: &str, yaml: &str) -> DaemonConfig {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    DaemonConfig::load(&path).expect("config loads")
}

const RESPONDER: &str = r#"
ike:
  listen: [127.0.0.2]
  control_socket: /tmp/unused-resp.sock
  sa_table: { path: /dev/shm/unused-resp, capacity: 64 }
  limits: { half_open_per_peer_limit: 16 }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: { psk: "interop-psk-0123456789" }
      remote_auth: { psk: "interop-psk-0123456789" }
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.109.0/24]
        remote_ts: [10.0.0.0/8]
"#;

const INITIATOR: &str = r#"
ike:
  listen: [127.0.0.1]
  control_socket: /tmp/unused-init.sock
  sa_table: { path: /dev/shm/unused-init, capacity: 64 }
  connections:
    home:
      remote: 127.0.0.2
      local_id: client@esprit
      remote_id: gw.esprit
      local_auth: { psk: "interop-psk-0123456789" }
      remote_auth: { psk: "interop-psk-0123456789" }
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [10.0.0.0/8]
        remote_ts: [192.168.109.0/24]
"#;

struct Pair {
    init: Endpoint,
    resp: Endpoint,
    pre: Precomputing,
    a: SocketAddr,
    b: SocketAddr,
}

fn pair() -> Pair {
    let dir = std::env::temp_dir().join(format!("esprit-precompute-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ci, cr) = (config(&dir, "init", INITIATOR), config(&dir, "resp", RESPONDER));
    let _ = std::fs::remove_dir_all(&dir);
    let pre = Precomputing::new();
    let (t0, unix) = (Time::from_secs(1_000), UnixTime::from_secs(1_800_000_000));
    Pair {
        init: Endpoint::new(ci.endpoint, Box::new(RustCryptoProvider), Box::new(rand_core::OsRng), t0, unix),
        resp: Endpoint::new(cr.endpoint, Box::new(pre.clone()), Box::new(rand_core::OsRng), t0, unix),
        pre,
        a: "127.0.0.1:500".parse().unwrap(),
        b: "127.0.0.2:500".parse().unwrap(),
    }
}

fn ups(ep: &mut Endpoint) -> usize {
    std::iter::from_fn(|| ep.poll_event()).filter(|e| matches!(e, Event::IkeSaUp { .. })).count()
}

#[test]
fn a_burst_of_handshakes_uses_the_parallel_key_exchanges_and_completes() {
    let mut p = pair();
    let t = Time::from_secs(1_001);
    const N: usize = 8;
    for _ in 0..N {
        p.init.handle_command(t, Command::Initiate { connection: "home".into(), local: p.a, remote: p.b }).unwrap();
    }
    let (mut up_i, mut up_r) = (0, 0);
    for _round in 0..10 {
        // Initiator → responder, as one burst.
        let burst: Vec<Vec<u8>> = std::iter::from_fn(|| p.init.poll_transmit()).map(|x| x.payload).collect();
        let kes = p.resp.plan_init_key_exchanges(t, burst.iter().map(|d| (p.b, p.a, d.as_slice())));
        if !kes.is_empty() {
            assert_eq!(kes.len(), N, "every IKE_SA_INIT request is recognised");
            let refs: Vec<(u16, &[u8])> = kes.iter().map(|(m, d)| (*m, d.as_slice())).collect();
            assert_eq!(p.pre.precompute(&refs), N);
        }
        for d in &burst {
            p.resp.handle_datagram(t, p.b, p.a, d);
        }
        p.pre.clear();
        let back: Vec<Vec<u8>> = std::iter::from_fn(|| p.resp.poll_transmit()).map(|x| x.payload).collect();
        assert!(p.init.plan_init_key_exchanges(t, back.iter().map(|d| (p.a, p.b, d.as_slice()))).is_empty(), "responses are not requests");
        for d in &back {
            p.init.handle_datagram(t, p.a, p.b, d);
        }
        up_i += ups(&mut p.init);
        up_r += ups(&mut p.resp);
        if burst.is_empty() && back.is_empty() {
            break;
        }
    }
    assert_eq!((up_i, up_r), (N, N), "every handshake completes with a precomputed key exchange");
    assert_eq!(p.pre.counts(), (N as u64, N as u64), "all {N} computed in parallel were used");
}

#[test]
fn unclaimed_results_are_discarded_and_small_bursts_stay_inline() {
    let pre = Precomputing::new();
    let mut rng = rand_core::OsRng;
    let x25519 = ike_crypto::ids::ke::CURVE25519;
    let peers: Vec<Vec<u8>> = (0..MIN_BURST)
        .map(|_| RustCryptoProvider.key_exchange(x25519, &mut rng).unwrap().public_key().to_vec())
        .collect();
    let refs: Vec<(u16, &[u8])> = peers.iter().map(|d| (x25519, d.as_slice())).collect();
    assert_eq!(pre.precompute(&refs[..MIN_BURST - 1]), 0, "below MIN_BURST nothing runs in parallel");
    assert_eq!(pre.precompute(&refs), MIN_BURST);
    let first = pre.key_exchange_respond(x25519, &peers[0], &mut rng).unwrap();
    assert_eq!(pre.counts(), (MIN_BURST as u64, 1));
    pre.clear();
    // After clear, the same request gets a fresh key pair, never a reused one.
    let again = pre.key_exchange_respond(x25519, &peers[1], &mut rng).unwrap();
    assert_eq!(pre.counts(), (MIN_BURST as u64, 1));
    assert_ne!(first.ke_data, again.ke_data);
}
