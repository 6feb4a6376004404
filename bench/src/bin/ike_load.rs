//! IKEv2 handshake load generator for `bench/ike_handshakes`: esprit's own
//! initiator (the sans-IO `ike_proto::Endpoint` with the real crypto
//! provider) keeps `--inflight` IKE_SA_INIT + IKE_AUTH handshakes in flight
//! against one responder over UDP, PSK, X25519, AES-GCM-16-256, one Child
//! SA per IKE SA (AES-GCM-16-256), no INITIAL_CONTACT (every IKE SA stays).
//!
//! `ike-load --target IP:PORT --local IP:PORT [--natt-port P] [--secs S]
//! [--count N] [--inflight W] [--psk K]` runs until S seconds passed or N IKE SAs are up, then
//! prints one JSON line: `{"up":..,"failed":..,"secs":..}`.
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ike_crypto::rng::DeterministicRng;
use ike_crypto::{RustCryptoProvider, Secret};
use ike_proto::{
    ChildConfig, Command, ConnectionConfig, Endpoint, EndpointConfig, EspProposal, Event, Identity, IkeProposal, Lifetimes, LocalAuth, Mode,
    RemoteAuth, RetransmitConfig, Time, TrafficSelector,
};
use ike_wire::{EncrId, EsnId, IntegId, KeId, PrfId};

fn now() -> Time {
    Time::from_unix(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target: SocketAddr = arg(&args, "--target").expect("--target IP:PORT").parse().expect("--target");
    let local: SocketAddr = arg(&args, "--local").expect("--local IP:PORT").parse().expect("--local");
    let secs: f64 = arg(&args, "--secs").map_or(10.0, |s| s.parse().expect("--secs"));
    let count: u64 = arg(&args, "--count").map_or(u64::MAX, |s| s.parse().expect("--count"));
    let inflight: usize = arg(&args, "--inflight").map_or(64, |s| s.parse().expect("--inflight"));
    let psk = arg(&args, "--psk").unwrap_or_else(|| "bench-psk-0123456789".into());

    let all = |a: &str| TrafficSelector::prefix(a.parse().expect("addr"), 0).expect("prefix");
    let conn = ConnectionConfig {
        name: "load".into(),
        local_id: Identity::Fqdn("load.bench".into()),
        remote_id: Some(Identity::Fqdn("gw.bench".into())),
        local_auth: LocalAuth::Psk(Secret::new(psk.as_bytes().to_vec())),
        remote_auth: RemoteAuth::Psk(Secret::new(psk.as_bytes().to_vec())),
        ike_proposals: vec![IkeProposal {
            encr: EncrId::ENCR_AES_GCM_16,
            key_bits: Some(256),
            prf: PrfId::PRF_HMAC_SHA2_256,
            integ: IntegId::NONE,
            ke: vec![KeId::CURVE25519],
        }],
        child: ChildConfig {
            esp_proposals: vec![EspProposal { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: vec![EsnId::NO_ESN], pfs: Vec::new() }],
            local_ts: vec![all("0.0.0.0")],
            remote_ts: vec![all("0.0.0.0")],
            mode: Mode::Tunnel,
            lifetime: Lifetimes::default(),
        },
        ike_rekey_after: None,
        dpd_delay: None,
        pool: None,
        request_vip: Vec::new(),
        initial_contact: false,
    };
    // IKE floats to the NAT-T port when the peer sees a NAT (RFC 7296
    // §2.23; charon with kernel-libipsec fakes one): a second socket. The
    // endpoint expects the peer on the same port number.
    let natt_port: u16 = arg(&args, "--natt-port").map_or(4500, |s| s.parse().expect("--natt-port"));
    let natt = SocketAddr::new(local.ip(), natt_port);
    let cfg = EndpointConfig {
        connections: vec![Arc::new(conn)],
        natt_port: natt.port(),
        retransmit: RetransmitConfig { timeout: Duration::from_secs(2), base: 1.5, tries: 3 },
        fragmentation: None,
        ..EndpointConfig::default()
    };
    let seed = u64::from(std::process::id()) ^ now().unix_secs();
    let mut ep = Endpoint::new(cfg, Box::new(RustCryptoProvider), Box::new(DeterministicRng::from_u64(seed)), now());
    let socks = [UdpSocket::bind(local).expect("bind --local"), UdpSocket::bind(natt).expect("bind the NAT-T port")];
    for s in &socks {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let mut buf = vec![0u8; 65536];
    let (mut up, mut failed, mut started, mut pending) = (0u64, 0u64, 0u64, 0usize);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    while Instant::now() < deadline && up < count {
        let t = now();
        while pending < inflight && started < count.saturating_add(inflight as u64) && up + (pending as u64) < count {
            ep.handle_command(t, Command::Initiate { connection: "load".into(), local, remote: target }).expect("initiate");
            pending += 1;
            started += 1;
        }
        while let Some(tr) = ep.poll_transmit() {
            let s = if tr.local.port() == natt.port() { &socks[1] } else { &socks[0] };
            let _ = s.send_to(&tr.payload, tr.remote);
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::IkeSaUp { .. } => {
                    up += 1;
                    pending -= 1;
                }
                Event::IkeSaDown { .. } => {
                    failed += 1;
                    pending = pending.saturating_sub(1);
                }
                _ => {}
            }
        }
        // Everything that arrived, then the timers; a short nap when idle.
        let mut got = false;
        for (s, at) in socks.iter().zip([local, natt]) {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                ep.handle_datagram(now(), at, from, &buf[..n]);
                got = true;
            }
        }
        if !got {
            std::thread::sleep(Duration::from_micros(200));
        }
        let t = now();
        if ep.poll_timeout().is_some_and(|d| d <= t) {
            ep.handle_timeout(t);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("{{\"up\":{up},\"failed\":{failed},\"secs\":{secs:.3},\"ike_sas\":{}}}", ep.ike_sa_count());
}
