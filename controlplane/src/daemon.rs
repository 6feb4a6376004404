//! The esprit-ike event loop: UDP sockets, the endpoint's timers, the
//! control socket, and the SA table (DESIGN.md §1, §5).
//!
//! Shape: one thread owns the [`Endpoint`] and the table [`SaProgrammer`];
//! one reader thread per UDP socket and one per control connection feed it
//! through a channel. The loop waits on that channel until the endpoint's
//! `poll_timeout` (or the next one-second housekeeping tick), feeds what
//! arrived, then drains `poll_transmit` to the sockets and `poll_event` to
//! the table and the metrics.
//!
//! * Sockets: for every `ike.listen` address, UDP `ike.port` (500) and
//!   `ike.natt_port` (4500). Datagrams go to the endpoint as received: it
//!   strips the non-ESP marker on the NAT-T port itself and adds it to what
//!   it sends from there (RFC 3948 §2.2, RFC 7296 §2.23); ESP never reaches
//!   these sockets, the dataplane keeps it.
//! * Housekeeping tick (1 s): volume and sequence-number lifetimes from the
//!   table's counters ([`SaProgrammer::check_lifetimes`]) become
//!   `RekeyChild` / `DeleteChild` commands; orphans of an earlier run are
//!   expired; gauges are refreshed.
//! * rayon, for what is expensive in a handshake storm:
//!   - IKE_SA_INIT: a burst of requests (≥ [`precompute::MIN_BURST`]) has
//!     its responder key exchanges computed on the pool before the
//!     endpoint sees the burst ([`crate::precompute`]);
//!   - IKE_AUTH, both roles: the endpoint defers signatures (making ours,
//!     checking the peer's certificate chain and signature) as jobs
//!     ([`ike_proto::auth_job`]); each is spawned on the pool and its
//!     result comes back through this loop's channel
//!     ([`Input::AuthDone`]), so the loop keeps serving other SAs
//!     meanwhile. PSK handshakes make no jobs.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ike_proto::{ChildSaHandle, Command, DownReason, Endpoint, Event, Identity, IkeSaHandle, Time, TrafficSelector};
use serde_json::{json, Value};

use crate::config::DaemonConfig;
use crate::control::{self, ControlRequest, Request, Response};
use crate::metrics::IkeMetrics;
use crate::precompute::{self, Precomputing};
use crate::table::{ProgramError, SaProgrammer};

/// What the loop waits for.
pub enum Input {
    Datagram { local: SocketAddr, remote: SocketAddr, payload: Vec<u8> },
    Control(ControlRequest),
    /// An IKE_AUTH signature job finished on the rayon pool.
    AuthDone(ike_proto::AuthDone),
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding UDP {addr}: {err}")]
    Bind { addr: SocketAddr, err: std::io::Error },
    #[error("control socket {path}: {err}")]
    Control { path: PathBuf, err: std::io::Error },
    #[error("SA table {path}: {err}")]
    Table { path: PathBuf, err: ProgramError },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// An established IKE SA as the daemon remembers it.
#[derive(Clone, Debug)]
struct UpInfo {
    local_id: Identity,
    virtual_ips: Vec<IpAddr>,
    dns: Vec<IpAddr>,
    nat_local: bool,
    nat_remote: bool,
    established_at: Time,
    connection: String,
    /// RFC 8598 domains in force for this IKE SA.
    dns_domains: Vec<ike_proto::split_dns::DnsDomain>,
}

/// Wall-clock time as the endpoint takes it.
pub fn now() -> Time {
    Time::from_unix(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// The daemon: endpoint, sockets, table, metrics.
/// At most this many inputs are taken from the queue as one burst.
const MAX_BURST: usize = 256;

pub struct Daemon {
    cfg: DaemonConfig,
    config_path: Option<PathBuf>,
    ep: Endpoint,
    /// The endpoint's crypto provider, filled per burst (rayon).
    precompute: Precomputing,
    /// IKE_AUTH signature jobs spawned on the pool, not yet back.
    auth_jobs_in_flight: usize,
    sockets: BTreeMap<SocketAddr, UdpSocket>,
    table: SaProgrammer,
    pub metrics: IkeMetrics,
    rx: Receiver<Input>,
    tx: Sender<Input>,
    initiated: BTreeSet<IkeSaHandle>,
    up: BTreeMap<IkeSaHandle, UpInfo>,
    /// Hash of the last datagram sent to each peer per IKE SA (its SPI
    /// pair) for retransmit counting: several IKE SAs with one peer (a
    /// rekey, a dead peer's leftovers) interleave their sends.
    last_sent: HashMap<(SocketAddr, [u8; 16]), u64>,
    next_tick: Time,
    started: Time,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Daemon {
    /// Stops the socket and control threads, so the ports and the control
    /// socket are free again when this returns. SAs stay in the table: a
    /// restarted daemon reconciles them ([`SaProgrammer::open`]).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn log(msg: std::fmt::Arguments<'_>) {
    let t = now().since_epoch();
    eprintln!("{}.{:03} esprit-ike: {msg}", t.as_secs(), t.subsec_millis());
}

fn id_str(id: &Identity) -> String {
    match id {
        Identity::Ipv4(a) => a.to_string(),
        Identity::Ipv6(a) => a.to_string(),
        Identity::Fqdn(s) | Identity::Email(s) => s.clone(),
        Identity::Dn(d) => format!("dn:{}", hex::encode(d)),
        Identity::KeyId(d) => format!("keyid:{}", hex::encode(d)),
    }
}

fn ts_str(t: &TrafficSelector) -> String {
    let mut s = match crate::table::prefix_len(t) {
        Some(len) => format!("{}/{len}", t.start_addr),
        None => format!("{}-{}", t.start_addr, t.end_addr),
    };
    if t.ip_protocol != 0 || t.start_port != 0 || t.end_port != u16::MAX {
        s.push_str(&format!("[{}/{}-{}]", t.ip_protocol, t.start_port, t.end_port));
    }
    s
}

fn name_of<T: std::fmt::Debug>(v: T) -> String {
    format!("{v:?}")
}

/// Whether an IKE SA's keys include a post-quantum key exchange (ML-KEM,
/// in IKE_SA_INIT or as an RFC 9370 additional key exchange).
fn has_pq_ke(s: &ike_proto::IkeSuite) -> bool {
    std::iter::once(&s.ke).chain(&s.additional_ke).any(|k| matches!(*k, ike_wire::KeId::ML_KEM_512 | ike_wire::KeId::ML_KEM_768 | ike_wire::KeId::ML_KEM_1024))
}

/// The KE method of IKE_SA_INIT, then the RFC 9370 additional ones.
fn key_exchanges(s: &ike_proto::IkeSuite) -> Vec<String> {
    std::iter::once(&s.ke).chain(&s.additional_ke).map(|k| name_of(*k)).collect()
}

impl Daemon {
    /// Opens the table (reconciling with what an earlier run left), binds
    /// the sockets and the control socket, and starts the metrics listener.
    /// `config_path` is what `reload` reads again.
    pub fn start(cfg: DaemonConfig, config_path: Option<PathBuf>) -> Result<(Self, Option<crate::metrics::MetricsServer>), StartError> {
        let t = now();
        let (table, report) = open_table(&cfg, t)?;
        if !report.torn_slots.is_empty() || !report.corrupt_slots.is_empty() {
            log(format_args!(
                "SA table reattached: {} torn and {} checksum-failing slot(s) freed, {} live",
                report.torn_slots.len(),
                report.corrupt_slots.len(),
                report.live
            ));
        }
        if !table.orphans().is_empty() {
            log(format_args!(
                "{} SA slot(s) of an earlier esprit-ike kept for {} s, then deleted",
                table.orphans().len(),
                cfg.orphan_grace.as_secs()
            ));
        }
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut sockets = BTreeMap::new();
        for ip in &cfg.listen {
            for port in [cfg.port, cfg.endpoint.natt_port] {
                let addr = SocketAddr::new(*ip, port);
                let s = UdpSocket::bind(addr).map_err(|err| StartError::Bind { addr, err })?;
                let local = s.local_addr().map_err(|err| StartError::Bind { addr, err })?;
                let r = s.try_clone().map_err(|err| StartError::Bind { addr, err })?;
                // The reader wakes up now and then to see the stop flag.
                r.set_read_timeout(Some(Duration::from_millis(200))).map_err(|err| StartError::Bind { addr, err })?;
                let (tx2, stop2) = (tx.clone(), stop.clone());
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("ike-udp-{port}"))
                        .spawn(move || read_socket(r, local, tx2, stop2))
                        .map_err(|err| StartError::Bind { addr, err })?,
                );
                sockets.insert(local, s);
            }
        }
        threads.push(
            control::serve(&cfg.control_socket, tx.clone(), Input::Control, stop.clone())
                .map_err(|err| StartError::Control { path: cfg.control_socket.clone(), err })?,
        );
        let metrics = IkeMetrics::new()?;
        let server = match cfg.metrics_listen {
            Some(a) => Some(
                crate::metrics::MetricsServer::start(metrics.clone(), a)
                    .map_err(|err| StartError::Bind { addr: a, err })?,
            ),
            None => None,
        };
        let precompute = Precomputing::new();
        let ep = Endpoint::new(cfg.endpoint.clone(), Box::new(precompute.clone()), Box::new(rand_core::OsRng), t);
        let d = Self {
            cfg,
            config_path,
            ep,
            precompute,
            auth_jobs_in_flight: 0,
            sockets,
            table,
            metrics,
            rx,
            tx,
            initiated: BTreeSet::new(),
            up: BTreeMap::new(),
            last_sent: HashMap::new(),
            next_tick: t,
            started: t,
            stop,
            threads,
        };
        Ok((d, server))
    }

    /// The UDP addresses bound (for tests that bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.keys().copied().collect()
    }

    /// Raising this flag ends [`Daemon::run`] within a second.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// A sender into the loop (tests inject control requests with it).
    pub fn sender(&self) -> Sender<Input> {
        self.tx.clone()
    }

    pub fn table(&self) -> &SaProgrammer {
        &self.table
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Runs until the stop flag is raised.
    pub fn run(&mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            self.step(Duration::from_secs(1));
        }
    }

    /// One turn: waits at most `max_wait` (less if a timer is due), handles
    /// what arrived, timers, housekeeping, and drains the endpoint.
    pub fn step(&mut self, max_wait: Duration) {
        let t = now();
        let mut wait = max_wait.min(self.next_tick.saturating_since(t));
        if let Some(d) = self.ep.poll_timeout() {
            wait = wait.min(d.saturating_since(t));
        }
        match self.rx.recv_timeout(wait) {
            Ok(input) => {
                // Take whatever else is already queued before the timers, in
                // bursts whose IKE_SA_INIT key exchanges run in parallel.
                let mut first = Some(input);
                loop {
                    let mut burst: Vec<Input> = first.take().into_iter().collect();
                    while burst.len() < MAX_BURST {
                        match self.rx.try_recv() {
                            Ok(i) => burst.push(i),
                            Err(_) => break,
                        }
                    }
                    if burst.is_empty() {
                        break;
                    }
                    self.precompute_burst(&burst);
                    for input in burst {
                        self.handle(input);
                    }
                    self.finish_burst();
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        let t = now();
        if self.ep.poll_timeout().is_some_and(|d| d <= t) {
            self.ep.handle_timeout(t);
        }
        if self.next_tick <= t {
            self.next_tick = t + Duration::from_secs(1);
            self.housekeeping(t);
        }
        self.drain(t);
    }

    /// Has rayon compute the responder key exchanges of the IKE_SA_INIT
    /// requests in `burst` (see [`crate::precompute`]). While cookies are
    /// required only requests that carry one can be answered with a key
    /// exchange, so only those count.
    fn precompute_burst(&mut self, burst: &[Input]) {
        let natt = self.cfg.endpoint.natt_port;
        let cookies = self.ep.cookies_required();
        let kes: Vec<(u16, Vec<u8>)> = burst
            .iter()
            .filter_map(|i| match i {
                Input::Datagram { local, payload, .. } => precompute::init_request_ke(payload, local.port() == natt),
                Input::Control(_) | Input::AuthDone(_) => None,
            })
            .filter(|k| !cookies || k.has_cookie)
            .map(|k| (k.method, k.data))
            .collect();
        if kes.len() >= precompute::MIN_BURST {
            let refs: Vec<(u16, &[u8])> = kes.iter().map(|(m, d)| (*m, d.as_slice())).collect();
            self.precompute.precompute(&refs);
        }
    }

    /// Drops what the endpoint did not claim and counts both.
    fn finish_burst(&mut self) {
        self.precompute.clear();
        let (computed, used) = self.precompute.counts();
        let m = &self.metrics.parallel_ke;
        let (u, d) = (m.with_label_values(&["used"]), m.with_label_values(&["discarded"]));
        u.inc_by(used.saturating_sub(u.get()));
        d.inc_by(computed.saturating_sub(used).saturating_sub(d.get()));
    }

    fn handle(&mut self, input: Input) {
        let t = now();
        match input {
            Input::Datagram { local, remote, payload } => {
                self.metrics.datagrams.with_label_values(&["rx"]).inc();
                self.ep.handle_datagram(t, local, remote, &payload);
            }
            Input::Control(ControlRequest { request, reply }) => {
                let r = self.control(t, request);
                let _ = reply.send(r);
            }
            Input::AuthDone(done) => {
                self.auth_jobs_in_flight = self.auth_jobs_in_flight.saturating_sub(1);
                self.metrics.auth_jobs.with_label_values(&[if done.peer_refused() { "refused" } else { "done" }]).inc();
                self.ep.handle_auth_done(t, done);
            }
        }
        self.drain(t);
    }

    fn housekeeping(&mut self, t: Time) {
        for a in self.table.check_lifetimes(t) {
            let (cmd, what) = match a {
                crate::table::LifetimeAction::Rekey { ike_sa, child_sa } => (Command::RekeyChild { ike_sa, child_sa }, "rekey"),
                crate::table::LifetimeAction::Delete { ike_sa, child_sa } => (Command::DeleteChild { ike_sa, child_sa }, "delete"),
            };
            log(format_args!("Child SA #{}: volume or sequence lifetime reached: {what}", child_of(&cmd)));
            if let Err(e) = self.ep.handle_command(t, cmd) {
                log(format_args!("lifetime {what} refused: {e}"));
            }
        }
        for ike_sa in self.table.inbound_moved() {
            self.ep.note_inbound_esp(t, ike_sa);
        }
        let n = self.table.expire_orphans(t);
        if n > 0 {
            log(format_args!("deleted {n} SA slot(s) left by an earlier esprit-ike"));
        }
        self.refresh_gauges();
    }

    fn refresh_gauges(&self) {
        let mut by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
        for s in ["Connecting", "HalfOpen", "Established", "Rekeyed", "Deleting", "PeerDeleted", "Closed"] {
            by_state.insert(s, 0);
        }
        let mut pq = 0;
        for i in self.ep.ike_sas() {
            *by_state.entry(i.state).or_default() += 1;
            if i.state == "Established" && i.suite.as_ref().is_some_and(has_pq_ke) {
                pq += 1;
            }
        }
        self.metrics.pq_ike_sas.set(pq);
        for (s, n) in by_state {
            self.metrics.ike_sas.with_label_values(&[s]).set(n);
        }
        self.metrics.half_open.set(self.ep.half_open_count() as i64);
        self.metrics.child_sas.set(self.table.children().count() as i64);
        self.metrics.orphans.set(self.table.orphans().len() as i64);
    }

    /// Sends what the endpoint has to send; applies its events.
    fn drain(&mut self, t: Time) {
        // IKE_AUTH signature jobs go to the pool; their results come back
        // as inputs (the SA answers then).
        while let Some(job) = self.ep.poll_auth_job() {
            let tx = self.tx.clone();
            self.auth_jobs_in_flight += 1;
            rayon::spawn(move || {
                // The loop is gone when this fails: nothing waits for it.
                let _ = tx.send(Input::AuthDone(job.run()));
            });
        }
        self.metrics.auth_jobs_in_flight.set(i64::try_from(self.auth_jobs_in_flight).unwrap_or(i64::MAX));
        while let Some(tr) = self.ep.poll_transmit() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            tr.payload.hash(&mut h);
            let digest = h.finish();
            // The IKE header's SPI pair, after the non-ESP marker on 4500.
            let off = if tr.payload.starts_with(&[0; 4]) { 4 } else { 0 };
            let mut spis = [0u8; 16];
            if let Some(b) = tr.payload.get(off..off + 16) {
                spis.copy_from_slice(b);
            }
            if self.last_sent.len() >= 65536 {
                self.last_sent.clear();
            }
            if self.last_sent.insert((tr.remote, spis), digest) == Some(digest) {
                self.metrics.retransmits.inc();
            }
            let sock = self.sockets.get(&tr.local).or_else(|| self.sockets.iter().find(|(a, _)| a.port() == tr.local.port()).map(|(_, s)| s));
            match sock {
                Some(s) => match s.send_to(&tr.payload, tr.remote) {
                    Ok(_) => self.metrics.datagrams.with_label_values(&["tx"]).inc(),
                    Err(e) => log(format_args!("send {} -> {}: {e}", tr.local, tr.remote)),
                },
                None => log(format_args!("no socket bound on {} (datagram to {} dropped)", tr.local, tr.remote)),
            }
        }
        while let Some(ev) = self.ep.poll_event() {
            self.event(t, ev);
        }
    }

    fn event(&mut self, t: Time, ev: Event) {
        match ev {
            Event::IkeSaUp { ike_sa, connection, local, remote, local_id, remote_id, virtual_ips, dns, nat_local, nat_remote, ppk } => {
                let role = if self.initiated.contains(&ike_sa) { "initiator" } else { "responder" };
                self.metrics.handshakes.with_label_values(&[role]).inc();
                if ppk {
                    self.metrics.ppk_handshakes.with_label_values(&[role]).inc();
                }
                log(format_args!(
                    "IKE SA #{} {connection} up ({role}): {local} '{}' <-> {remote} '{}' vips {virtual_ips:?} nat local={nat_local} remote={nat_remote} ppk={ppk}",
                    ike_sa.0,
                    id_str(&local_id),
                    id_str(&remote_id)
                ));
                self.up.insert(
                    ike_sa,
                    UpInfo { local_id, virtual_ips, dns, nat_local, nat_remote, established_at: t, connection, dns_domains: Vec::new() },
                );
            }
            Event::IkeSaDown { ike_sa, reason } => {
                let gone = self.up.remove(&ike_sa);
                let was_up = gone.is_some();
                if let Some(u) = gone.filter(|u| !u.dns_domains.is_empty() && self.initiated.contains(&ike_sa)) {
                    // RFC 8598 §4: the forwarding rules go with the IKE SA.
                    self.split_dns_hook("down", ike_sa, &u);
                }
                self.initiated.remove(&ike_sa);
                // A rekeyed SA's entry moved to its successor: not a failure.
                if !was_up && reason != DownReason::Rekeyed {
                    let r = match &reason {
                        DownReason::Timeout => "timeout".to_string(),
                        DownReason::AuthenticationFailed => "auth_failed".into(),
                        DownReason::Refused(n) => n.name().map_or_else(|| format!("notify_{}", n.0), |s| s.to_lowercase()),
                        DownReason::Deleted => "deleted".into(),
                        DownReason::Rekeyed => "rekeyed".into(),
                        DownReason::Replaced => "replaced".into(),
                    };
                    self.metrics.handshake_failures.with_label_values(&[&r]).inc();
                }
                let n = self.table.delete_ike_sa(ike_sa);
                log(format_args!("IKE SA #{} down: {reason:?}{}", ike_sa.0, if n > 0 { format!(" ({n} Child SA(s) removed)") } else { String::new() }));
            }
            Event::IkeSaRekeyed { old, new } => {
                self.metrics.rekeys.with_label_values(&["ike"]).inc();
                self.table.reparent(old, new);
                if let Some(i) = self.up.remove(&old) {
                    self.up.insert(new, i);
                }
                if self.initiated.remove(&old) {
                    self.initiated.insert(new);
                }
                log(format_args!("IKE SA #{} rekeyed as #{}", old.0, new.0));
            }
            Event::ChildSaInstall(i) => {
                if i.rekey_of.is_some() {
                    self.metrics.rekeys.with_label_values(&["child"]).inc();
                }
                if i.suite.implicit_iv() {
                    self.metrics.child_features.with_label_values(&["iiv"]).inc();
                }
                if i.sec_label.is_some() {
                    self.metrics.child_features.with_label_values(&["label"]).inc();
                }
                if i.compression.is_some() {
                    self.metrics.child_features.with_label_values(&["diet_esp"]).inc();
                }
                match self.table.install(t, &i) {
                    Ok(e) => log(format_args!(
                        "Child SA #{} of IKE SA #{} installed: SPIs in {:08x} out {:08x}, {:?}{}, {} <-> {}{}",
                        e.child_sa.0,
                        e.ike_sa.0,
                        e.spi_in,
                        e.spi_out,
                        e.suite.encr,
                        e.suite.key_bits.map(|b| format!("-{b}")).unwrap_or_default(),
                        e.ts_local.iter().map(ts_str).collect::<Vec<_>>().join(","),
                        e.ts_remote.iter().map(ts_str).collect::<Vec<_>>().join(","),
                        if e.udp_encap { ", UDP-encapsulated" } else { "" }
                    )),
                    Err(err) => {
                        self.metrics.child_failures.with_label_values(&["table"]).inc();
                        log(format_args!("Child SA #{} not programmed ({err}); deleting it", i.child_sa.0));
                        let _ = self.ep.handle_command(t, Command::DeleteChild { ike_sa: i.ike_sa, child_sa: i.child_sa });
                    }
                }
            }
            Event::ChildSaDelete { ike_sa, child_sa, spi_in, spi_out } => {
                self.table.delete(child_sa);
                log(format_args!("Child SA #{} of IKE SA #{} deleted (SPIs {spi_in:08x}/{spi_out:08x})", child_sa.0, ike_sa.0));
            }
            // RFC 9838 events are only logged here: the daemon does not yet
            // read groups from its YAML nor program group SAs into the table
            // (which has no group fields yet), so none of these occur.
            ev @ (Event::GroupSaInstall(_)
            | Event::GroupSaDelete { .. }
            | Event::GroupRegistered { .. }
            | Event::GroupRekeyAccepted { .. }
            | Event::GroupRekeyRejected { .. }
            | Event::GroupExcluded { .. }
            | Event::GroupMemberRegistration { .. }) => {
                log(format_args!("G-IKEv2: {ev:?}"));
            }
            Event::SplitDns { ike_sa, mut domains, refused } => {
                let initiator = self.initiated.contains(&ike_sa) || self.ep.ike_sas().iter().any(|i| i.ike_sa == ike_sa && i.initiator);
                if initiator {
                    // RFC 8598 §5: no two connections resolve the same domain.
                    let conn = self.up.get(&ike_sa).map(|u| u.connection.clone()).unwrap_or_default();
                    let active = self.up.iter().filter(|(h, _)| **h != ike_sa).map(|(_, u)| (u.connection.as_str(), &u.dns_domains[..]));
                    for name in ike_proto::split_dns::drop_conflicts(&conn, &mut domains, active) {
                        self.metrics.split_dns.with_label_values(&["refused"]).inc();
                        log(format_args!("IKE SA #{}: split-DNS {name:?} refused (another connection holds it)", ike_sa.0));
                    }
                }
                let (ok, what) = if initiator { ("accepted", "accepted") } else { ("pushed", "pushed") };
                self.metrics.split_dns.with_label_values(&[ok]).inc_by(domains.len() as u64);
                self.metrics.split_dns.with_label_values(&["refused"]).inc_by(refused.len() as u64);
                for (name, why) in &refused {
                    log(format_args!("IKE SA #{}: split-DNS {name:?} refused ({why:?})", ike_sa.0));
                }
                let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
                log(format_args!("IKE SA #{}: split-DNS domains {what}: {names:?}", ike_sa.0));
                if let Some(u) = self.up.get_mut(&ike_sa) {
                    u.dns_domains = domains;
                    if initiator {
                        self.initiated.insert(ike_sa);
                        let u = u.clone();
                        self.split_dns_hook("up", ike_sa, &u);
                    }
                }
            }
            Event::ChildSaFailed { ike_sa, notify } => {
                let r = notify.name().map_or_else(|| format!("notify_{}", notify.0), |s| s.to_lowercase());
                self.metrics.child_failures.with_label_values(&[&r]).inc();
                log(format_args!("Child SA of IKE SA #{} failed: {notify:?}", ike_sa.0));
            }
        }
    }

    /// Runs the connection's RFC 8598 resolver hook, if any, without
    /// waiting for it (a reaper thread collects it). Environment:
    /// ESPRIT_EVENT (up/down), ESPRIT_CONNECTION, ESPRIT_IKE_SA,
    /// ESPRIT_DNS_DOMAINS (space separated), ESPRIT_DNS_SERVERS,
    /// ESPRIT_DNSSEC_TAS (`domain keytag alg digesttype HEX` joined by ';').
    fn split_dns_hook(&self, what: &str, ike_sa: IkeSaHandle, u: &UpInfo) {
        let Some(hook) = self.cfg.split_dns_hooks.get(&u.connection) else { return };
        let domains: Vec<&str> = u.dns_domains.iter().map(|d| d.name.as_str()).collect();
        let servers: Vec<String> = u.dns.iter().map(|a| a.to_string()).collect();
        let tas: Vec<String> =
            u.dns_domains.iter().flat_map(|d| d.trust_anchors.iter().map(move |t| format!("{} {}", d.name, t.presentation()))).collect();
        let child = std::process::Command::new(hook)
            .env("ESPRIT_EVENT", what)
            .env("ESPRIT_CONNECTION", &u.connection)
            .env("ESPRIT_IKE_SA", ike_sa.0.to_string())
            .env("ESPRIT_DNS_DOMAINS", domains.join(" "))
            .env("ESPRIT_DNS_SERVERS", servers.join(" "))
            .env("ESPRIT_DNSSEC_TAS", tas.join(";"))
            .stdin(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(mut c) => {
                std::thread::spawn(move || {
                    if let Ok(st) = c.wait() {
                        if !st.success() {
                            log(format_args!("split-DNS hook exited with {st}"));
                        }
                    }
                });
            }
            Err(e) => log(format_args!("split-DNS hook {}: {e}", hook.display())),
        }
    }

    /// Carries out one control request.
    pub fn control(&mut self, t: Time, req: Request) -> Response {
        match req {
            Request::ListSas => Response::ok(self.list_sas(t)),
            Request::Stats => Response::ok(self.stats(t)),
            Request::Initiate { conn } => {
                let Some(a) = self.cfg.initiate.get(&conn).cloned() else {
                    return Response::err(format!("no connection named {conn:?}"));
                };
                let Some(remote) = a.remote else {
                    return Response::err(format!("connection {conn:?} has no remote address (responder only)"));
                };
                let cmd = Command::Initiate {
                    connection: conn,
                    local: SocketAddr::new(a.local, self.cfg.port),
                    remote: SocketAddr::new(remote, self.cfg.port),
                };
                match self.ep.handle_command(t, cmd) {
                    Ok(h) => {
                        self.initiated.insert(h);
                        Response::ok(json!({ "ike_sa": h.0 }))
                    }
                    Err(e) => Response::err(e),
                }
            }
            Request::Terminate { ike_sa } => self.command(t, Command::Terminate { ike_sa: IkeSaHandle(ike_sa) }),
            Request::RekeyIke { ike_sa } => self.command(t, Command::RekeyIke { ike_sa: IkeSaHandle(ike_sa) }),
            Request::RekeyChild { child_sa } => {
                let h = ChildSaHandle(child_sa);
                let ike = self.table.child(h).map(|e| e.ike_sa).or_else(|| {
                    self.ep.ike_sas().into_iter().find(|i| i.child_sas.iter().any(|c| c.0 == h)).map(|i| i.ike_sa)
                });
                match ike {
                    Some(ike_sa) => self.command(t, Command::RekeyChild { ike_sa, child_sa: h }),
                    None => Response::err(format!("no Child SA #{child_sa}")),
                }
            }
            Request::Reload => self.reload(),
        }
    }

    fn command(&mut self, t: Time, cmd: Command) -> Response {
        match self.ep.handle_command(t, cmd) {
            Ok(h) => Response::ok(json!({ "ike_sa": h.0 })),
            Err(e) => Response::err(e),
        }
    }

    /// Re-reads the file: connections, pools and initiate addresses take
    /// effect for new IKE SAs; sockets, the table and the control socket
    /// need a restart (reported, not applied).
    fn reload(&mut self) -> Response {
        let Some(path) = self.config_path.clone() else {
            return Response::err("started without a configuration file");
        };
        let new = match DaemonConfig::load(&path) {
            Ok(c) => c,
            Err(e) => return Response::err(format!("not reloaded: {e}")),
        };
        let mut restart = Vec::new();
        if new.listen != self.cfg.listen || new.port != self.cfg.port || new.endpoint.natt_port != self.cfg.endpoint.natt_port {
            restart.push("ike.listen/port/natt_port");
        }
        if new.sa_table_path != self.cfg.sa_table_path {
            restart.push("sa_table");
        }
        if new.control_socket != self.cfg.control_socket {
            restart.push("ike.control_socket");
        }
        if new.metrics_listen != self.cfg.metrics_listen {
            restart.push("ike.metrics_listen");
        }
        self.ep.set_connections(new.endpoint.connections.clone());
        let names: Vec<String> = new.endpoint.connections.iter().map(|c| c.name.clone()).collect();
        self.cfg.endpoint.connections = new.endpoint.connections;
        self.cfg.initiate = new.initiate;
        log(format_args!("configuration reloaded: connections {names:?}"));
        Response::ok(json!({ "connections": names, "needs_restart": restart }))
    }

    fn stats(&self, t: Time) -> Value {
        let ike = self.ep.ike_sas();
        let established = ike.iter().filter(|i| i.state == "Established").count();
        json!({
            "uptime_secs": t.saturating_since(self.started).as_secs(),
            "ike_sas": ike.len(),
            "ike_sas_established": established,
            "half_open": self.ep.half_open_count(),
            "child_sas": self.table.children().count(),
            "sa_table_slots": self.table.live_slots(),
            "sa_table_capacity": self.table.writer().capacity(),
            "orphan_slots": self.table.orphans().len(),
            "counters": counters(&self.metrics),
        })
    }

    fn list_sas(&self, t: Time) -> Value {
        let mut out = Vec::new();
        for i in self.ep.ike_sas() {
            let up = self.up.get(&i.ike_sa);
            let mut children = Vec::new();
            for (h, spi_in, spi_out) in &i.child_sas {
                let mut c = json!({ "child_sa": h.0, "spi_in": format!("{spi_in:08x}"), "spi_out": format!("{spi_out:08x}") });
                if let Some(e) = self.table.child(*h) {
                    let k = self.table.counters(e);
                    c["state"] = json!("INSTALLED");
                    c["encr"] = json!(format!("{:?}{}", e.suite.encr, e.suite.key_bits.map(|b| format!("-{b}")).unwrap_or_default()));
                    c["esn"] = json!(e.suite.esn);
                    c["pfs"] = json!(e.suite.ke.map(name_of));
                    c["iiv"] = json!(e.suite.implicit_iv());
                    c["label"] = json!(e.sec_label.as_ref().map(|l| String::from_utf8_lossy(l.strip_suffix(&[0]).unwrap_or(l)).into_owned()));
                    c["compression"] = json!(e.compression.map(|p| format!("Diet-ESP ({}) {}", ike_proto::compression::PROFILE_REVISION, p.describe())));
                    c["additional_ke"] = json!(e.suite.additional().map(name_of).collect::<Vec<_>>());
                    c["mode"] = json!(match e.mode {
                        ike_proto::Mode::Tunnel => "TUNNEL",
                        ike_proto::Mode::Transport => "TRANSPORT",
                    });
                    c["udp_encap"] = json!(e.udp_encap);
                    c["installed_secs"] = json!(t.saturating_since(e.installed_at).as_secs());
                    c["rekey_secs"] = json!(e.lifetime.rekey_secs);
                    c["ts_local"] = json!(e.ts_local.iter().map(ts_str).collect::<Vec<_>>());
                    c["ts_remote"] = json!(e.ts_remote.iter().map(ts_str).collect::<Vec<_>>());
                    c["in_bytes"] = json!(k.in_bytes);
                    c["in_pkts"] = json!(k.in_pkts);
                    c["out_bytes"] = json!(k.out_bytes);
                    c["out_pkts"] = json!(k.out_pkts);
                    c["seq_next"] = json!(k.seq_next);
                    c["idle_secs"] = json!(e.last_active.map(|a| t.saturating_since(a).as_secs()));
                } else {
                    c["state"] = json!("NOT-IN-TABLE");
                }
                children.push(c);
            }
            out.push(json!({
                "ike_sa": i.ike_sa.0,
                "connection": i.connection,
                "state": i.state,
                "initiator": i.initiator,
                "spi_i": format!("{:016x}", i.spi_i),
                "spi_r": format!("{:016x}", i.spi_r),
                "local": i.local.to_string(),
                "remote": i.remote.to_string(),
                "local_id": up.map(|u| id_str(&u.local_id)),
                "remote_id": i.remote_id.as_ref().map(id_str),
                "suite": i.suite.as_ref().map(|s| format!(
                    "{:?}{}/{:?}{}/{}",
                    s.encr,
                    s.key_bits.map(|b| format!("-{b}")).unwrap_or_default(),
                    s.prf,
                    if s.integ == ike_wire::IntegId::NONE { String::new() } else { format!("/{:?}", s.integ) },
                    key_exchanges(s).join("+")
                )),
                "key_exchanges": i.suite.as_ref().map(key_exchanges),
                "pq": i.suite.as_ref().map(has_pq_ke),
                "established_secs": up.map(|u| t.saturating_since(u.established_at).as_secs()),
                "virtual_ips": up.map(|u| u.virtual_ips.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                "dns": up.map(|u| u.dns.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                "nat_local": up.map(|u| u.nat_local),
                "nat_remote": up.map(|u| u.nat_remote),
                "ppk": i.ppk,
                "dns_domains": up.map(|u| u.dns_domains.iter().map(|d| d.name.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                "dnssec_tas": up.map(|u| u.dns_domains.iter().flat_map(|d| d.trust_anchors.iter().map(move |t| format!("{} {}", d.name, t.presentation()))).collect::<Vec<_>>()).unwrap_or_default(),
                "auth_scheme": i.ext.auth_scheme.map(|s| format!("{s:?}")),
                "peer_auth_methods": i.ext.peer_auth_methods.as_ref().map(|a| a.iter().map(|x| match x {
                    ike_proto::auth_methods::Announcement::Method(m) => format!("method {m}"),
                    ike_proto::auth_methods::Announcement::WithCertLink { method, .. } => format!("method {method}"),
                    ike_proto::auth_methods::Announcement::Signature { scheme: Some(s), .. } => format!("{s:?}"),
                    ike_proto::auth_methods::Announcement::Signature { scheme: None, .. } => "unknown signature".to_string(),
                }).collect::<Vec<_>>()),
                "peer_allowed_families": i.ext.peer_allowed.iter().map(|f| match f { ike_proto::Family::V4 => "v4", ike_proto::Family::V6 => "v6" }).collect::<Vec<_>>(),
                "child_sas": children,
            }));
        }
        let orphans: Vec<Value> = self.table.orphans().iter().map(|o| json!({ "spi": format!("{:08x}", o.spi) })).collect();
        json!({ "ike_sas": out, "orphans": orphans })
    }
}

fn child_of(c: &Command) -> u64 {
    match c {
        Command::RekeyChild { child_sa, .. } | Command::DeleteChild { child_sa, .. } => child_sa.0,
        _ => 0,
    }
}

/// Counter families as `{"name{label=value}": n}`.
fn counters(m: &IkeMetrics) -> Value {
    let mut out = serde_json::Map::new();
    for f in m.registry.gather() {
        let counter = f.get_field_type() == prometheus::proto::MetricType::COUNTER;
        for s in f.get_metric() {
            let labels: Vec<String> = s.get_label().iter().map(|l| format!("{}={}", l.name(), l.value())).collect();
            let key = if labels.is_empty() { f.name().to_string() } else { format!("{}{{{}}}", f.name(), labels.join(",")) };
            let v = if counter { s.get_counter().get_value() } else { s.get_gauge().get_value() };
            out.insert(key, json!(v as i64));
        }
    }
    Value::Object(out)
}

fn open_table(cfg: &DaemonConfig, t: Time) -> Result<(SaProgrammer, sa_table::RepairReport), StartError> {
    // The dataplane holds the writer role for a moment at its start (static
    // SAs): wait up to 5 s for it rather than fail.
    let open = || SaProgrammer::open(&cfg.sa_table_path, cfg.sa_table_capacity, cfg.replay_window_pkts, cfg.endpoint.natt_port, t, cfg.orphan_grace);
    let mut tries = 0;
    loop {
        match open() {
            Err(ProgramError::Attach(sa_table::AttachError::WriterBusy { .. })) if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r.map_err(|err| StartError::Table { path: cfg.sa_table_path.clone(), err }),
        }
    }
}

fn read_socket(s: UdpSocket, local: SocketAddr, tx: Sender<Input>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match s.recv_from(&mut buf) {
            Ok((n, remote)) => {
                if tx.send(Input::Datagram { local, remote, payload: buf[..n].to_vec() }).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            // ICMP port unreachable from a peer shows up as an error on
            // Linux UDP sockets; the socket itself is fine.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
