//! IKEv2 handshake load: an initiator built on esprit's own sans-IO
//! endpoint, for measuring a responder (esprit-ike or charon) from outside:
//! its CPU time per handshake and its memory per IKE SA.
//!
//! The load side keeps `window` handshakes in flight until `count` have
//! completed (IKE_SA_INIT, IKE_AUTH with a PSK or a certificate and a
//! virtual IP, one Child SA); the responder's CPU time per handshake is what
//! `bench/ike_handshakes.sh` reports, so the generator's own speed does not
//! enter the figure. A responder that answers nothing, or stops completing
//! handshakes, ends the run early ([`LoadReport::stalled`]) instead of
//! waiting out every retransmission.
use std::collections::{BTreeSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use esprit_controlplane::config::DaemonConfig;
use ike_crypto::RustCryptoProvider;
use std::sync::Arc;

use ike_crypto::cert::Certificate;
use ike_proto::{Command, Endpoint, Event, EndpointConfig, Identity, IkeSaHandle, LocalAuth, Time, UnixTime};

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub established: usize,
    pub children: usize,
    pub failed: usize,
    pub elapsed: Duration,
    /// Why the run ended before `count` handshakes were done, if it did.
    pub stalled: Option<String>,
}

/// How the initiator authenticates, and the responder. `Debug` leaves the
/// PSK out.
#[derive(Clone)]
pub enum LoadAuth {
    /// Both sides with this PSK; distinct identities `load-N@esprit.bench`.
    Psk(String),
    /// Our certificate (chain, end entity first) and PKCS#8 key, loaded by
    /// the control plane's own loaders (PEM or DER), our identity (a SAN of
    /// the certificate), and the CA the responder's certificate must chain
    /// to. When both `cert` and `id` contain `{i}`, identity `i` (of
    /// `identities`) uses the certificate and identity with `i` put there,
    /// all with the one key; otherwise one identity serves every handshake
    /// (with INITIAL_CONTACT, each new IKE SA then replaces the one before).
    Cert { cert: PathBuf, key: PathBuf, ca: PathBuf, id: String },
}

impl std::fmt::Debug for LoadAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadAuth::Psk(_) => f.write_str("Psk([redacted])"),
            LoadAuth::Cert { cert, key, ca, id } => {
                f.debug_struct("Cert").field("cert", cert).field("key", key).field("ca", ca).field("id", id).finish()
            }
        }
    }
}

/// The load's clocks: monotonic for the endpoint's timers (from the first
/// call), the wall clock for certificate validity.
fn now() -> Time {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    Time::from_duration(ORIGIN.get_or_init(Instant::now).elapsed())
}

fn unix_now() -> UnixTime {
    UnixTime::from_duration(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
}

/// The initiator's configuration: X25519, AES-256-GCM, a virtual IP (so each
/// Child SA has its own traffic selector), INITIAL_CONTACT in every IKE_AUTH
/// when `initial_contact` (as real clients send it, RFC 7296 §2.4: the
/// responder then looks up the identity's older IKE SAs). With a PSK,
/// `identities` connections `load-N` with identities `load-N@esprit.bench`
/// (distinct identities keep the responder's Child SAs distinct, as real
/// clients are); with a certificate, as many as [`LoadAuth::Cert`] says.
pub fn initiator_config(
    local: SocketAddr,
    remote: SocketAddr,
    auth: &LoadAuth,
    proposal: &str,
    identities: usize,
    initial_contact: bool,
) -> Result<EndpointConfig, String> {
    // Paths as YAML double-quoted strings (escapes included).
    let quoted = |p: &Path| format!("{:?}", p.display().to_string());
    let (local_id, local_auth, remote_auth, identities) = match auth {
        LoadAuth::Psk(psk) => {
            let a = format!("{{ psk: {psk:?} }}");
            ("load@esprit.bench".to_string(), a.clone(), a, identities)
        }
        LoadAuth::Cert { cert, key, ca, id } => {
            let n = if templated(cert, id) { identities } else { 1 };
            let cert = nth(&cert.display().to_string(), 0);
            (nth(id, 0), format!("{{ cert: {}, key: {} }}", quoted(Path::new(&cert)), quoted(key)), format!("{{ cas: [{}] }}", quoted(ca)), n)
        }
    };
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
      local_id: {local_id:?}
      remote_id: gw.esprit.bench
      local_auth: {local_auth}
      remote_auth: {remote_auth}
      proposals: [{proposal}]
      initial_contact: {initial_contact}
      request_vip: [v4]
      child:
        esp_proposals: [aes256gcm16]
        remote_ts: [192.168.200.0/24]
"#,
        local = local.ip(),
        ip = remote.ip(),
    );
    let mut cfg = DaemonConfig::from_yaml(&yaml, Path::new(".")).map(|c| c.endpoint).map_err(|e| e.to_string())?;
    // esprit-ike's configuration hands IKE_AUTH signatures to its rayon
    // pool as jobs; the generator is one pinned thread and signs inline.
    cfg.defer_signatures = false;
    let base = cfg.connections.first().cloned().ok_or("no connection")?;
    cfg.connections = (0..identities.max(1))
        .map(|i| -> Result<_, String> {
            let mut c = (*base).clone();
            c.name = format!("load-{i}");
            match auth {
                LoadAuth::Psk(_) => c.local_id = Identity::Email(format!("load-{i}@esprit.bench")),
                LoadAuth::Cert { cert, id, .. } if i > 0 => {
                    let id = nth(id, i);
                    c.local_id = if id.contains('@') { Identity::Email(id) } else { Identity::Fqdn(id) };
                    let path = nth(&cert.display().to_string(), i);
                    let certs = Certificate::load_all(&path).map_err(|e| format!("{path}: {e}"))?;
                    if certs.is_empty() {
                        return Err(format!("{path}: no certificate"));
                    }
                    let LocalAuth::PubKey { signer, .. } = &c.local_auth else { return Err("no key".into()) };
                    c.local_auth = LocalAuth::PubKey { signer: signer.clone(), certs };
                }
                LoadAuth::Cert { .. } => {}
            }
            Ok(Arc::new(c))
        })
        .collect::<Result<_, _>>()?;
    Ok(cfg)
}

/// Whether a certificate load names one certificate and identity per
/// handshake identity.
fn templated(cert: &Path, id: &str) -> bool {
    cert.display().to_string().contains("{i}") && id.contains("{i}")
}

/// `template` with `{i}` replaced by `i`.
fn nth(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

/// With no handshake completed for this long the responder is taken as
/// stalled (an unanswered handshake gives up after about 24 s).
pub const STALL: Duration = Duration::from_secs(30);

/// Runs `count` handshakes against `remote` from `local`, `window` at a
/// time; gives up after `timeout`, after [`STALL`] without a completed
/// handshake, or when the first `window` handshakes all failed.
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
    let mut ep = Endpoint::new(cfg, Box::new(RustCryptoProvider), Box::new(rand_core::OsRng), now(), unix_now());
    let start = Instant::now();
    let mut r = LoadReport::default();
    let mut pending: BTreeSet<IkeSaHandle> = BTreeSet::new();
    let mut initiated = 0;
    let mut buf = vec![0u8; 65536];
    let mut inbox: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut progress = Instant::now();
    while r.established + r.failed < count {
        if start.elapsed() >= timeout {
            r.stalled = Some(format!("timeout after {} s", timeout.as_secs()));
            break;
        }
        if progress.elapsed() >= STALL {
            r.stalled = Some(format!("no handshake completed in the last {} s", STALL.as_secs()));
            break;
        }
        if r.established == 0 && r.failed >= window.min(count) {
            r.stalled = Some(format!("the first {} handshakes all failed", r.failed));
            break;
        }
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
        // Empty the sockets before handling anything: a window of IKE_AUTH
        // responses with certificates overflows the default receive buffer
        // while the initiator verifies one signature after the other, and
        // every datagram lost costs a 2 s retransmission (time the
        // responder sits idle, which would show in the wall-clock rate).
        for (s, at) in socks.iter().zip([local, natt]) {
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => inbox.push_back((at, from, buf[..n].to_vec())),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let idle = match inbox.pop_front() {
            Some((at, from, d)) => {
                ep.set_unix_time(unix_now());
                ep.handle_datagram(now(), at, from, &d);
                false
            }
            None => true,
        };
        if idle {
            std::thread::sleep(Duration::from_micros(100));
        }
        let t = now();
        if ep.poll_timeout().is_some_and(|d| d <= t) {
            ep.handle_timeout(t);
        }
        while let Some(ev) = ep.poll_event() {
            match ev {
                Event::IkeSaUp { ike_sa, .. } if pending.remove(&ike_sa) => {
                    r.established += 1;
                    progress = Instant::now();
                }
                Event::IkeSaDown { ike_sa, .. } if pending.remove(&ike_sa) => r.failed += 1,
                Event::ChildSaInstall(_) => r.children += 1,
                _ => {}
            }
        }
    }
    r.elapsed = start.elapsed();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_auth_never_prints_its_psk() {
        let text = format!("{:?}", LoadAuth::Psk("hunter2-psk".into()));
        assert!(!text.contains("hunter2"), "{text}");
    }
    use ike_proto::RemoteAuth;

    fn addrs() -> (SocketAddr, SocketAddr) {
        ("10.77.0.1:500".parse().unwrap(), "10.77.0.2:500".parse().unwrap())
    }

    fn pki(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane/ike-crypto/testdata/pki").join(file)
    }

    #[test]
    fn psk_load_uses_distinct_identities_and_initial_contact_only_when_asked() {
        let (l, r) = addrs();
        let cfg = initiator_config(l, r, &LoadAuth::Psk("k".into()), "aes256gcm16-prfsha256-x25519", 3, false).unwrap();
        let ids: Vec<_> = cfg.connections.iter().map(|c| c.local_id.clone()).collect();
        assert_eq!(ids, (0..3).map(|i| Identity::Email(format!("load-{i}@esprit.bench"))).collect::<Vec<_>>());
        // Nothing polls signature jobs in run_load: they must not be made.
        assert!(!cfg.defer_signatures);
        for c in &cfg.connections {
            assert!(!c.initial_contact);
            assert!(matches!(&c.local_auth, LocalAuth::Psk(_)) && matches!(&c.remote_auth, RemoteAuth::Psk(_)));
        }
    }

    #[test]
    fn certificate_load_is_one_identity_with_the_loaded_chain_and_ca() {
        let (l, r) = addrs();
        let auth = LoadAuth::Cert { cert: pki("leaf.pem"), key: pki("leaf.key"), ca: pki("root.pem"), id: "gw.esprit.test".into() };
        let cfg = initiator_config(l, r, &auth, "aes256gcm16-prfsha256-x25519", 20_000, true).unwrap();
        assert_eq!(cfg.connections.len(), 1);
        let c = &cfg.connections[0];
        assert_eq!((c.name.as_str(), &c.local_id), ("load-0", &Identity::Fqdn("gw.esprit.test".into())));
        assert!(c.initial_contact);
        let LocalAuth::PubKey { certs, .. } = &c.local_auth else { panic!("not a certificate") };
        let leaf = ike_crypto::cert::Certificate::load(pki("leaf.pem")).unwrap();
        assert_eq!(certs[0].der(), leaf.der());
        let RemoteAuth::PubKey { cas } = &c.remote_auth else { panic!("no CA") };
        assert_eq!(cas[0].der(), ike_crypto::cert::Certificate::load(pki("root.pem")).unwrap().der());
    }

    #[test]
    fn templated_certificates_give_each_identity_its_own_certificate_and_one_key() {
        let (l, r) = addrs();
        let dir = std::env::temp_dir().join(format!("esprit-ike-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, f) in ["leaf.pem", "intermediate.pem", "root.pem"].iter().enumerate() {
            std::fs::copy(pki(f), dir.join(format!("c-{i}.pem"))).unwrap();
        }
        let auth = LoadAuth::Cert { cert: dir.join("c-{i}.pem"), key: pki("leaf.key"), ca: pki("root.pem"), id: "load-{i}.x".into() };
        let cfg = initiator_config(l, r, &auth, "aes256gcm16-prfsha256-x25519", 3, true);
        let four = initiator_config(l, r, &auth, "aes256gcm16-prfsha256-x25519", 4, true);
        std::fs::remove_dir_all(&dir).unwrap();
        let cfg = cfg.unwrap();
        let signers: Vec<_> = cfg
            .connections
            .iter()
            .enumerate()
            .map(|(i, c)| {
                assert_eq!(c.local_id, Identity::Fqdn(format!("load-{i}.x")));
                let LocalAuth::PubKey { signer, certs } = &c.local_auth else { panic!("not a certificate") };
                let file = ["leaf.pem", "intermediate.pem", "root.pem"][i];
                assert_eq!(certs[0].der(), ike_crypto::cert::Certificate::load(pki(file)).unwrap().der(), "{i}");
                signer.clone()
            })
            .collect();
        assert!(signers.iter().all(|s| Arc::ptr_eq(s, &signers[0])));
        let Err(e) = four else { panic!("a fourth certificate out of nothing") };
        assert!(e.contains("c-3.pem"), "{e}");
    }

    #[test]
    fn a_missing_key_file_is_an_error_naming_the_field() {
        let (l, r) = addrs();
        let auth = LoadAuth::Cert { cert: pki("leaf.pem"), key: pki("absent.key"), ca: pki("root.pem"), id: "x".into() };
        let Err(e) = initiator_config(l, r, &auth, "aes256gcm16-prfsha256-x25519", 1, true) else { panic!("a missing key loaded") };
        assert!(e.contains("local_auth.key"), "{e}");
    }
}
