//! IKEv2 handshake load: an initiator built on esprit's own sans-IO
//! endpoint, for measuring a responder (esprit-ike or charon) from outside:
//! its CPU time per handshake and its memory per IKE SA.
//!
//! The load side keeps `window` handshakes in flight until `count` have
//! completed (IKE_SA_INIT, IKE_AUTH with PSK and a virtual IP, one Child
//! SA); the responder's CPU time per handshake is what `bench/ike_handshakes.sh`
//! reports, so the generator's own speed does not enter the figure.
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use esprit_controlplane::config::DaemonConfig;
use ike_crypto::RustCryptoProvider;
use std::sync::Arc;

use ike_proto::{Command, Endpoint, Event, EndpointConfig, Identity, IkeSaHandle, Time};

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub established: usize,
    pub children: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

fn now() -> Time {
    Time::from_unix(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
}

/// The initiator's configuration: PSK, X25519, AES-256-GCM, a virtual IP
/// (so each Child SA has its own traffic selector), no INITIAL_CONTACT;
/// `identities` connections `load-N` with identities `load-N@esprit.bench`
/// (a pool gives one identity one address: distinct identities keep the
/// responder's Child SAs distinct, as real clients are).
pub fn initiator_config(local: SocketAddr, remote: SocketAddr, psk: &str, proposal: &str, identities: usize) -> Result<EndpointConfig, String> {
    let yaml = format!(
        r#"
ike:
  listen: [{local}]
  control_socket: /nonexistent/ike-load.sock
  sa_table: {{ path: /nonexistent/ike-load, capacity: 16 }}
  limits: {{ retransmit_timeout_ms: 2000, retransmit_tries: 3 }}
  connections:
    load:
      remote: {ip}
      local_id: load@esprit.bench
      remote_id: gw.esprit.bench
      local_auth: {{ psk: "{psk}" }}
      remote_auth: {{ psk: "{psk}" }}
      proposals: [{proposal}]
      initial_contact: false
      request_vip: [v4]
      child:
        esp_proposals: [aes256gcm16]
        remote_ts: [192.168.200.0/24]
"#,
        local = local.ip(),
        ip = remote.ip(),
    );
    let mut cfg = DaemonConfig::from_yaml(&yaml, Path::new(".")).map(|c| c.endpoint).map_err(|e| e.to_string())?;
    let base = cfg.connections.first().cloned().ok_or("no connection")?;
    cfg.connections = (0..identities.max(1))
        .map(|i| {
            let mut c = (*base).clone();
            c.name = format!("load-{i}");
            c.local_id = Identity::Email(format!("load-{i}@esprit.bench"));
            Arc::new(c)
        })
        .collect();
    Ok(cfg)
}

/// Runs `count` handshakes against `remote` from `local`, `window` at a
/// time; gives up after `timeout`.
pub fn run_load(cfg: EndpointConfig, local: SocketAddr, remote: SocketAddr, count: usize, window: usize, timeout: Duration) -> std::io::Result<LoadReport> {
    // IKE moves to port 4500 when the responder sees (or, like charon with
    // kernel-libipsec, fakes) a NAT: listen on both, send from the port the
    // endpoint chose.
    let natt = SocketAddr::new(local.ip(), 4500);
    let socks = [UdpSocket::bind(local)?, UdpSocket::bind(natt)?];
    for s in &socks {
        s.set_nonblocking(true)?;
    }
    let identities = cfg.connections.len();
    let mut ep = Endpoint::new(cfg, Box::new(RustCryptoProvider), Box::new(rand_core::OsRng), now());
    let start = Instant::now();
    let mut r = LoadReport::default();
    let mut pending: BTreeSet<IkeSaHandle> = BTreeSet::new();
    let mut initiated = 0;
    let mut buf = vec![0u8; 65536];
    while r.established + r.failed < count && start.elapsed() < timeout {
        while pending.len() < window && initiated < count {
            let connection = format!("load-{}", initiated % identities.max(1));
            let h = ep
                .handle_command(now(), Command::Initiate { connection, local, remote })
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            pending.insert(h);
            initiated += 1;
        }
        while let Some(t) = ep.poll_transmit() {
            let s = if t.local.port() == natt.port() { &socks[1] } else { &socks[0] };
            s.send_to(&t.payload, t.remote)?;
        }
        let mut idle = true;
        for (s, at) in socks.iter().zip([local, natt]) {
            match s.recv_from(&mut buf) {
                Ok((n, from)) => {
                    idle = false;
                    ep.handle_datagram(now(), at, from, &buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(100));
        }
        let t = now();
        if ep.poll_timeout().is_some_and(|d| d <= t) {
            ep.handle_timeout(t);
        }
        while let Some(ev) = ep.poll_event() {
            match ev {
                Event::IkeSaUp { ike_sa, .. } if pending.remove(&ike_sa) => r.established += 1,
                Event::IkeSaDown { ike_sa, .. } if pending.remove(&ike_sa) => r.failed += 1,
                Event::ChildSaInstall(_) => r.children += 1,
                _ => {}
            }
        }
    }
    r.elapsed = start.elapsed();
    Ok(r)
}
