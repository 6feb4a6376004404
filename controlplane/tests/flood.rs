//! esprit-ike under an IKE_SA_INIT flood, over loopback UDP, the event loop
//! stepped by the test so that a whole flood is one burst:
//! * no key exchange (inline or on the rayon pool) for a request without a
//!   valid cookie while cookies are required, nor for one over the
//!   per-address half-open limit; every such request is counted;
//! * the datagram queues are bounded: a flood fills its own queue and the
//!   rest is dropped and counted, while datagrams of established SAs and
//!   control requests still get through.
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use esprit_controlplane::config::DaemonConfig;
use esprit_controlplane::control::{call, Request};
use esprit_controlplane::daemon::Daemon;
use ike_crypto::RustCryptoProvider;
use ike_proto::{Command, Endpoint, Time, UnixTime};
use ike_wire::{Message, Notify, NotifyType, Payload};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("esprit-flood-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path, name: &str, yaml: &str) -> DaemonConfig {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    DaemonConfig::load(&path).expect("config loads")
}

/// A responder on 127.0.0.2 with these `limits`; `slot` keeps the
/// tests' ports apart (they run in parallel).
fn responder(dir: &Path, slot: u16, limits: &str) -> Daemon {
    let port = 27000 + (std::process::id() % 1000) as u16 * 8 + slot * 2;
    let table = format!("/dev/shm/esprit-flood-{}-{}", std::process::id(), dir.file_name().unwrap().to_string_lossy());
    let yaml = format!(
        r#"
ike:
  listen: [127.0.0.2]
  port: {port}
  natt_port: {natt}
  control_socket: {dir}/resp.sock
  metrics_listen: null
  sa_table: {{ path: {table}, capacity: 64 }}
  limits: {limits}
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: {{ psk: "interop-psk-0123456789" }}
      remote_auth: {{ psk: "interop-psk-0123456789" }}
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.109.0/24]
        remote_ts: [10.0.0.0/8]
"#,
        dir = dir.display(),
        natt = port + 1,
    );
    let cfg = config(dir, "resp", &yaml);
    let (d, _) = Daemon::start(cfg, None).expect("daemon starts");
    let _ = std::fs::remove_file(&table);
    d
}

/// `n` IKE_SA_INIT requests (distinct SPIi, Ni, X25519 values) from an
/// initiator endpoint at `from` to `to`.
fn requests(dir: &Path, n: usize, from: SocketAddr, to: SocketAddr) -> Vec<Vec<u8>> {
    let yaml = r#"
ike:
  listen: [127.0.0.1]
  control_socket: /nonexistent/flood-init.sock
  sa_table: { path: /nonexistent/flood-init, capacity: 16 }
  connections:
    home:
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
    let cfg = config(dir, "init", yaml);
    let mut ep = Endpoint::new(cfg.endpoint, Box::new(RustCryptoProvider), Box::new(rand_core::OsRng), Time::ZERO, UnixTime::from_secs(1_800_000_000));
    (0..n)
        .map(|_| {
            ep.handle_command(Time::ZERO, Command::Initiate { connection: "home".into(), local: from, remote: to }).expect("initiate");
            ep.poll_transmit().expect("a request").payload
        })
        .collect()
}

/// `req` with a COOKIE notify of 33 made-up octets first (RFC 7296 §2.6).
fn with_forged_cookie(req: &[u8], i: u8) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut payloads = vec![Payload::Notify(Notify::new(NotifyType::COOKIE, [[0u8].as_slice(), &[i; 32]].concat()))];
    payloads.extend(m.payloads);
    Message::new(m.header, payloads).emit().unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn depth(d: &Daemon, queue: &str) -> usize {
    d.queue_depths().iter().find(|(q, _)| *q == queue).map_or(0, |(_, n)| *n)
}

fn counter(family: &prometheus::IntCounterVec, label: &str) -> u64 {
    family.with_label_values(&[label]).get()
}

/// The daemon's "port 500" (the lower of its two).
fn ike_addr(d: &Daemon) -> SocketAddr {
    d.local_addrs().into_iter().min().unwrap()
}

/// Receives what arrives on `s` within a short while.
fn answers(s: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    while out.len() < want {
        match s.recv(&mut buf) {
            Ok(n) => out.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn forged_cookies_cost_the_daemon_no_key_exchange_not_even_on_its_pool() {
    let dir = Dir::new("forged");
    let mut d = responder(&dir.0, 0, "{ cookie_threshold: 0, half_open_per_peer_limit: 64 }");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ike_addr(&d);
    const N: usize = 32;
    let reqs = requests(&dir.0, N, client.local_addr().unwrap(), to);
    // A burst (well above precompute::MIN_BURST) of requests with forged
    // cookies: queued first, then one turn of the loop takes them at once.
    for (i, r) in reqs.iter().enumerate() {
        client.send_to(&with_forged_cookie(r, i as u8), to).unwrap();
    }
    wait_for("the flood in the init queue", || depth(&d, "init") == N);
    d.step(Duration::ZERO);
    let m = &d.metrics;
    assert_eq!(counter(&m.key_exchanges, "respond"), 0, "a key exchange was computed for a forged cookie");
    assert_eq!(counter(&m.parallel_ke, "used") + counter(&m.parallel_ke, "discarded"), 0, "the pool computed key exchanges for forged cookies");
    assert_eq!(counter(&m.init_requests, "cookie_invalid"), N as u64);
    assert_eq!(d.endpoint().ike_sa_count(), 0, "no IKE SA for a forged cookie");
    let back = answers(&client, N);
    assert_eq!(back.len(), N, "each got a fresh COOKIE");
    let cookies: Vec<Vec<u8>> = back.iter().map(|b| Message::parse(b).unwrap().notify(NotifyType::COOKIE).expect("a COOKIE").data.to_vec()).collect();
    // The same requests with the cookies they were given get in, as one
    // burst, their key exchanges computed on the pool.
    for (r, c) in reqs.iter().zip(&cookies) {
        let m = Message::parse(r).unwrap();
        let mut payloads = vec![Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone()))];
        payloads.extend(m.payloads);
        client.send_to(&Message::new(m.header, payloads).emit().unwrap(), to).unwrap();
    }
    wait_for("the retries in the init queue", || depth(&d, "init") == N);
    d.step(Duration::ZERO);
    let m = &d.metrics;
    assert_eq!(counter(&m.init_requests, "admitted"), N as u64);
    assert_eq!(counter(&m.key_exchanges, "respond"), N as u64, "one key exchange per valid cookie");
    assert_eq!((counter(&m.parallel_ke, "used"), counter(&m.parallel_ke, "discarded")), (N as u64, 0), "all on the pool, none wasted");
}

#[test]
fn the_per_peer_half_open_limit_holds_before_the_pool_computes_anything() {
    let dir = Dir::new("peer");
    let mut d = responder(&dir.0, 1, "{ half_open_per_peer_limit: 2 }");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ike_addr(&d);
    const N: usize = 16;
    for r in requests(&dir.0, N, client.local_addr().unwrap(), to) {
        client.send_to(&r, to).unwrap();
    }
    wait_for("the burst in the init queue", || depth(&d, "init") == N);
    d.step(Duration::ZERO);
    let m = &d.metrics;
    assert_eq!(counter(&m.key_exchanges, "respond"), 2, "key exchanges beyond the per-peer limit");
    assert_eq!(counter(&m.parallel_ke, "discarded"), 0, "the pool computed key exchanges the endpoint refused");
    assert_eq!(counter(&m.init_requests, "peer_limit"), N as u64 - 2);
    assert_eq!(d.endpoint().half_open_count(), 2);
}

#[test]
fn a_flood_fills_its_bounded_queue_and_is_counted_while_sa_traffic_and_control_get_through() {
    let dir = Dir::new("queue");
    let mut d = responder(&dir.0, 2, "{ datagram_queue: 16, cookie_threshold: 0 }");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ike_addr(&d);
    // The loop is not running: the flood piles up in front of it.
    let req = requests(&dir.0, 1, client.local_addr().unwrap(), to).remove(0);
    const FLOOD: u64 = 300;
    let dropped = || d.metrics.datagrams_dropped.with_label_values(&["init", "queue_full"]).get();
    for i in 0..FLOOD {
        let mut r = with_forged_cookie(&req, i as u8);
        r[..8].copy_from_slice(&(i + 1).to_be_bytes()); // SPIi
        client.send_to(&r, to).unwrap();
        // One at a time: the kernel's socket buffer (a few hundred small
        // datagrams) must not be what drops them.
        wait_for("the datagram queued or dropped", || depth(&d, "init") as u64 + dropped() == i + 1);
    }
    assert_eq!(depth(&d, "init"), 16, "the init queue holds datagram_queue datagrams");
    assert_eq!(dropped(), FLOOD - 16, "the rest are dropped and counted");
    // A datagram of an existing IKE SA (SPIr set, here an INFORMATIONAL
    // request) has its own queue: not dropped behind the flood.
    let mut info = req.clone();
    info[8..16].copy_from_slice(&7u64.to_be_bytes());
    info[18] = 37;
    client.send_to(&info, to).unwrap();
    wait_for("the SA datagram queued", || depth(&d, "sa") == 1);
    assert_eq!(d.metrics.datagrams_dropped.with_label_values(&["sa", "queue_full"]).get(), 0);
    // A control request waits for the loop, never dropped, and is served
    // in the first turn, ahead of the flood.
    let socket = dir.0.join("resp.sock");
    let ctl = std::thread::spawn(move || call(&socket, &Request::Stats).expect("control answers"));
    wait_for("the control request queued", || depth(&d, "control") == 1);
    d.step(Duration::ZERO);
    let resp = ctl.join().unwrap();
    assert!(resp.ok, "{resp:?}");
    assert_eq!(d.queue_depths().iter().map(|(_, n)| n).sum::<usize>(), 0, "one turn took every queue's burst");
    assert_eq!(d.metrics.key_exchanges.with_label_values(&["respond"]).get(), 0);
}
