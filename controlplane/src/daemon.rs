//! The esprit-ike event loop: UDP sockets, the endpoint's timers, the
//! control socket, and the SA table (DESIGN.md §1, §5).
//!
//! Shape: one thread owns the [`Endpoint`] and the table [`SaProgrammer`];
//! one reader thread per UDP socket and one per control connection feed it
//! through bounded crossbeam channels. The loop waits on those until the
//! endpoint's `poll_timeout` (or the next one-second housekeeping tick),
//! feeds what arrived, then drains `poll_transmit` to the sockets and
//! `poll_event` to the table and the metrics.
//!
//! * Sockets: for every `ike.listen` address, UDP `ike.port` (500) and
//!   `ike.natt_port` (4500). Datagrams go to the endpoint as received: it
//!   strips the non-ESP marker on the NAT-T port itself and adds it to what
//!   it sends from there (RFC 3948 §2.2, RFC 7296 §2.23); ESP never reaches
//!   these sockets, the dataplane keeps it.
//! * Back-pressure, not an unbounded queue. Four channels, each bounded by
//!   what may wait in it:
//!   - `init`: IKE_SA_INIT requests (SPIr zero, what a spoofed flood is
//!     made of) and `sa`: every other datagram (IKE SAs already set up).
//!     Each holds at most `ike.limits.datagram_queue` datagrams, and both
//!     together at most [`MAX_QUEUED_BYTES`]; a reader finding its queue
//!     full drops the datagram and counts it
//!     (`esprit_ike_datagrams_dropped_total{queue,reason="queue_full"}`),
//!     so a flood of new requests cannot crowd out IKE_AUTH and the
//!     exchanges of established SAs, and neither can delay the loop's
//!     timers: each turn takes at most one burst ([`MAX_BURST`]) from each.
//!     Payload buffers are recycled: no allocation per datagram once warm.
//!   - `control`: requests from `esprit-ctl`, never dropped: a control
//!     connection waits for room (64 requests) and the loop serves this
//!     queue before any datagram.
//!   - `auth`: results of IKE_AUTH signature jobs, never dropped (a lost
//!     one would stall its IKE SA): unbounded as a channel, bounded by the
//!     jobs in flight, at most one per half-open or initiating IKE SA
//!     (`half_open_limit` bounds those). Served before datagrams too.
//!
//!   `esprit_ike_queue_depth{queue}` shows each queue's occupancy.
//! * Clocks ([`Clocks`]): every timer (retransmits, DPD, rekeys,
//!   lifetimes, the housekeeping tick, orphans) runs on the monotonic
//!   clock (`Instant`); the wall clock is read only for the date
//!   certificates are checked at ([`Endpoint::set_unix_time`], each turn)
//!   and for log lines. A wall clock stepped by hours fires no timer early
//!   or late.
//! * Housekeeping tick (1 s): volume and sequence-number lifetimes from the
//!   table's counters become `RekeyChild` / `DeleteChild` commands, and
//!   inbound ESP postpones DPD, for the Child SAs whose poll is due only
//!   ([`SaProgrammer::poll_due`]); orphans of an earlier run are expired;
//!   gauges are refreshed from counts kept as SAs change
//!   ([`Endpoint::tally`]). Nothing in the tick visits every SA.
//! * State store (`ike.state`, [`crate::store`]): at start the stored IKE
//!   SAs are restored and their Child SAs adopted from the table; each turn
//!   the endpoint's changed snapshots are written in one batch *before* the
//!   turn's datagrams are sent (write-ahead: the peer never sees a Message
//!   ID the store lacks). A failed write is counted and logged and the
//!   datagrams go out anyway (availability first; such an SA may need the
//!   RFC 6311 sync after a restart).
//! * rayon, for what is expensive in a handshake storm:
//!   - IKE_SA_INIT: the responder key exchanges of a burst of requests
//!     (≥ [`precompute::MIN_BURST`]) are computed on the pool before the
//!     endpoint sees the burst ([`crate::precompute`]), but only those the
//!     endpoint will spend one on ([`Endpoint::plan_init_key_exchanges`]:
//!     a valid cookie while cookies are required, within the half-open
//!     limits, an acceptable proposal): a forged cookie costs no key
//!     exchange here either. A burst with fewer IKE_SA_INIT requests than
//!     that is not planned at all (its checks run once, in the endpoint);
//!   - IKE_AUTH, both roles: the endpoint defers signatures (making ours,
//!     checking the peer's certificate chain and signature) as jobs
//!     ([`ike_proto::auth_job`]); each is spawned on the pool and its
//!     result comes back through the `auth` channel, so the loop keeps
//!     serving other SAs meanwhile. PSK handshakes make no jobs.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{self, Receiver, Select, Sender, TrySendError};
use ike_proto::{ChildSaHandle, Command, DownReason, Endpoint, Event, Identity, IkeSaHandle, Time, TrafficSelector, UnixTime};
use serde_json::{json, Value};

use crate::config::DaemonConfig;
use crate::control::{self, ControlRequest, Request, Response};
use crate::metrics::IkeMetrics;
use crate::precompute::{self, Precomputing};
use crate::table::{ProgramError, SaProgrammer};

/// A datagram as a socket reader hands it to the loop.
pub struct Datagram {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub payload: Vec<u8>,
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
    #[error(transparent)]
    Store(crate::store::StoreError),
}

/// The daemon's two clocks (the endpoint reads none itself, DESIGN.md §5).
#[derive(Clone)]
pub struct Clocks {
    origin: Instant,
    wall: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl Clocks {
    /// `Instant` for timers, `SystemTime` for the date.
    pub fn system() -> Self {
        Self::with_wall(SystemTime::now)
    }

    /// The monotonic clock of the system with another wall clock (tests
    /// step it by hours).
    pub fn with_wall(wall: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self { origin: Instant::now(), wall: Arc::new(wall) }
    }

    /// Monotonic time since the daemon started: what every timer runs on.
    pub fn now(&self) -> Time {
        Time::from_duration(self.origin.elapsed())
    }

    /// The wall-clock date: certificate validity only.
    pub fn unix(&self) -> UnixTime {
        UnixTime::from_duration((self.wall)().duration_since(UNIX_EPOCH).unwrap_or_default())
    }
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

/// At most this many datagrams are taken from each datagram queue as one
/// burst; timers run between bursts.
const MAX_BURST: usize = 256;
/// Datagrams waiting in both queues together hold at most this many
/// payload bytes (a flood of large datagrams is bounded in memory too).
pub const MAX_QUEUED_BYTES: usize = 16 << 20;
/// Control requests waiting for the loop; a further one waits for room.
const CONTROL_QUEUE: usize = 64;
/// Payload buffers kept for reuse are at most this large.
const RECYCLE_MAX_CAPACITY: usize = 4096;

/// The series the loop moves every turn, their labels resolved once (a
/// label lookup hashes and locks; a flood makes many turns).
struct Hot {
    rx: prometheus::IntCounter,
    tx: prometheus::IntCounter,
    pke_used: prometheus::IntCounter,
    pke_discarded: prometheus::IntCounter,
    ke_respond: prometheus::IntCounter,
    ke_initiate: prometheus::IntCounter,
    /// In the order of [`INIT_RESULTS`].
    init: Vec<prometheus::IntCounter>,
    /// In the order of [`Daemon::queue_depths`].
    depth: Vec<prometheus::IntGauge>,
}

/// `esprit_ike_init_requests_total{result}` labels, in the order the loop
/// copies [`ike_proto::InitCounters`].
const INIT_RESULTS: [&str; 7] = ["admitted", "retransmit", "cookie_missing", "cookie_invalid", "half_open_limit", "peer_limit", "refused"];

impl Hot {
    fn new(m: &IkeMetrics) -> Self {
        Self {
            rx: m.datagrams.with_label_values(&["rx"]),
            tx: m.datagrams.with_label_values(&["tx"]),
            pke_used: m.parallel_ke.with_label_values(&["used"]),
            pke_discarded: m.parallel_ke.with_label_values(&["discarded"]),
            ke_respond: m.key_exchanges.with_label_values(&["respond"]),
            ke_initiate: m.key_exchanges.with_label_values(&["initiate"]),
            init: INIT_RESULTS.iter().map(|r| m.init_requests.with_label_values(&[r])).collect(),
            depth: ["init", "sa", "control", "auth"].iter().map(|q| m.queue_depth.with_label_values(&[q])).collect(),
        }
    }
}

/// The loop's ends of its channels (see the module docs).
struct Queues {
    init: Receiver<Datagram>,
    sa: Receiver<Datagram>,
    control: Receiver<ControlRequest>,
    auth: Receiver<ike_proto::AuthDone>,
    auth_tx: Sender<ike_proto::AuthDone>,
    /// Payload bytes waiting in `init` and `sa`.
    queued_bytes: Arc<AtomicUsize>,
    /// Emptied payload buffers going back to the readers.
    recycle: Sender<Vec<u8>>,
}

/// The daemon: endpoint, sockets, table, metrics.
pub struct Daemon {
    cfg: DaemonConfig,
    config_path: Option<PathBuf>,
    clocks: Clocks,
    ep: Endpoint,
    /// The endpoint's crypto provider, filled per burst (rayon).
    precompute: Precomputing,
    /// IKE_AUTH signature jobs spawned on the pool, not yet back.
    auth_jobs_in_flight: usize,
    sockets: BTreeMap<SocketAddr, UdpSocket>,
    table: SaProgrammer,
    pub metrics: IkeMetrics,
    hot: Hot,
    queues: Queues,
    initiated: BTreeSet<IkeSaHandle>,
    up: BTreeMap<IkeSaHandle, UpInfo>,
    /// Hash of the last datagram sent to each peer per IKE SA (its SPI
    /// pair) for retransmit counting: several IKE SAs with one peer (a
    /// rekey, a dead peer's leftovers) interleave their sends.
    last_sent: HashMap<(SocketAddr, [u8; 16]), u64>,
    next_tick: Time,
    started: Time,
    /// The endpoint's IKE_SA_INIT counters as last copied to the metrics.
    init_counted: ike_proto::InitCounters,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// `ike.state`: the store the endpoint's snapshots go to each turn.
    persister: Option<crate::store::Persister>,
    /// With a store: the turn's datagrams, sent after its batch is stored.
    held: Vec<ike_proto::Transmit>,
    /// A cluster store: when to look for IKE SAs without an owner next.
    next_scan: Time,
    /// `ike.radius`: EAP connections' AAA client.
    aaa: Option<crate::aaa::Aaa>,
    /// EAP identities of responder IKE SAs the AAA server accepted.
    eap_ids: HashMap<IkeSaHandle, String>,
    /// RFC 9838 (see [`GroupIo`]).
    group: GroupIo,
}

/// RFC 9838 G-IKEv2 I/O of the daemon:
/// * GCKS: one UDP socket per GSA_REKEY source (`ike.groups[].rekey.source`),
///   multicast TTL, loop and interface (the source's address) set with
///   socket2; the endpoint's GSA_REKEY transmits (to a multicast
///   destination) leave through it;
/// * GM: once registered, a socket bound to the group's rekey destination
///   (the KEK policy's destination selector), joined on the interface of
///   the registration's local address, read by its own thread into the
///   `sa` queue (the endpoint tells GSA_REKEY from the header);
/// * TEKs (Data-Security SAs) go into the SA table as group slots: inbound
///   at once, a sender's outbound after GWP_ATD (`pending`), and out again
///   on the endpoint's `GroupSaDelete` (GWP_DTD after the rekey that
///   replaced them): old and new TEKs are in the table side by side.
#[derive(Default)]
struct GroupIo {
    send: BTreeMap<SocketAddr, UdpSocket>,
    joined: BTreeSet<SocketAddr>,
    pending: Vec<(Time, Box<ike_proto::group::GroupSaInstall>, IpAddr)>,
    /// What a new reader thread needs (the loop's sending ends).
    readers: Option<ReaderParts>,
}

#[derive(Clone)]
struct ReaderParts {
    init: Sender<Datagram>,
    sa: Sender<Datagram>,
    recycled: Receiver<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
}

/// A UDP socket for GSA_REKEY: `SO_REUSEADDR` before the bind; for
/// sending (GCKS) the multicast interface is the source address's, with the
/// TTL asked and loop on (members on this host hear it too); for receiving
/// (GM) bound to the group and port, joined on `iface`.
fn group_socket(bind: SocketAddr, send_ttl: Option<u32>, join: Option<(IpAddr, IpAddr)>) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if bind.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if let Some(ttl) = send_ttl {
        match bind.ip() {
            IpAddr::V4(a) => {
                s.set_multicast_if_v4(&a)?;
                s.set_multicast_ttl_v4(ttl)?;
                s.set_multicast_loop_v4(true)?;
            }
            IpAddr::V6(_) => {
                s.set_multicast_hops_v6(ttl)?;
                s.set_multicast_loop_v6(true)?;
            }
        }
    }
    s.bind(&bind.into())?;
    if let Some((group, iface)) = join {
        match (group, iface) {
            (IpAddr::V4(g), IpAddr::V4(i)) => s.join_multicast_v4(&g, &i)?,
            (IpAddr::V6(g), _) => s.join_multicast_v6(&g, 0)?,
            _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "group and interface of different families")),
        }
    }
    Ok(s.into())
}

impl Drop for Daemon {
    /// Stops the socket and control threads, so the ports and the control
    /// socket are free again when this returns. SAs stay in the table: a
    /// restarted daemon reconciles them ([`SaProgrammer::open`]).
    fn drop(&mut self) {
        crate::logging::flush();
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
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

/// The KE method of IKE_SA_INIT, then the RFC 9370 additional ones.
fn key_exchanges(s: &ike_proto::IkeSuite) -> Vec<String> {
    std::iter::once(&s.ke).chain(&s.additional_ke).map(|k| name_of(*k)).collect()
}

impl Daemon {
    /// Opens the table (reconciling with what an earlier run left), binds
    /// the sockets and the control socket, and starts the metrics listener.
    /// `config_path` is what `reload` reads again.
    pub fn start(cfg: DaemonConfig, config_path: Option<PathBuf>) -> Result<(Self, Option<crate::metrics::MetricsServer>), StartError> {
        Self::start_with_clocks(cfg, config_path, Clocks::system())
    }

    /// [`Self::start`] with given clocks (tests step the wall clock).
    pub fn start_with_clocks(
        cfg: DaemonConfig,
        config_path: Option<PathBuf>,
        clocks: Clocks,
    ) -> Result<(Self, Option<crate::metrics::MetricsServer>), StartError> {
        crate::logging::set_level(cfg.log_level);
        let t = clocks.now();
        let (table, report) = open_table(&cfg, t)?;
        if !report.torn_slots.is_empty() || !report.corrupt_slots.is_empty() {
            tracing::warn!(
                "SA table reattached: {} torn and {} checksum-failing slot(s) freed, {} live",
                report.torn_slots.len(),
                report.corrupt_slots.len(),
                report.live
            );
        }
        if !table.orphans().is_empty() {
            tracing::warn!(
                "{} SA slot(s) of an earlier esprit-ike kept for {} s, then deleted",
                table.orphans().len(),
                cfg.orphan_grace.as_secs()
            );
        }
        let metrics = IkeMetrics::new()?;
        let (init_tx, init) = channel::bounded(cfg.datagram_queue);
        let (sa_tx, sa) = channel::bounded(cfg.datagram_queue);
        let (control_tx, control) = channel::bounded(CONTROL_QUEUE);
        let (auth_tx, auth) = channel::unbounded();
        let (recycle, recycled) = channel::bounded(2 * cfg.datagram_queue);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
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
                let reader = Reader {
                    socket: r,
                    local,
                    natt: local.port() == cfg.endpoint.natt_port,
                    init: init_tx.clone(),
                    sa: sa_tx.clone(),
                    recycled: recycled.clone(),
                    queued_bytes: queued_bytes.clone(),
                    metrics: metrics.clone(),
                    stop: stop.clone(),
                };
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("ike-udp-{port}"))
                        .spawn(move || reader.run())
                        .map_err(|err| StartError::Bind { addr, err })?,
                );
                sockets.insert(local, s);
            }
        }
        threads.push(
            control::serve(&cfg.control_socket, control_tx, stop.clone())
                .map_err(|err| StartError::Control { path: cfg.control_socket.clone(), err })?,
        );
        let server = match cfg.metrics_listen {
            Some(a) => Some(
                metrics.serve(a)
                    .map_err(|err| StartError::Bind { addr: a, err })?,
            ),
            None => None,
        };
        let aaa = match &cfg.radius {
            None => None,
            Some(r) => {
                let (aaa, thread) = crate::aaa::Aaa::start(r, stop.clone()).map_err(|err| StartError::Bind {
                    addr: SocketAddr::new(r.source.unwrap_or(IpAddr::from([0u8; 4])), 0),
                    err,
                })?;
                threads.push(thread);
                tracing::warn!(
                    "RADIUS client on {} for EAP: servers {:?}",
                    aaa.local_addr().map_or_else(|| "?".into(), |a| a.to_string()),
                    r.client.servers.iter().map(|s| s.addr).collect::<Vec<_>>()
                );
                Some(aaa)
            }
        };
        let mut group = GroupIo {
            readers: Some(ReaderParts { init: init_tx.clone(), sa: sa_tx.clone(), recycled: recycled.clone(), queued_bytes: queued_bytes.clone() }),
            ..GroupIo::default()
        };
        for g in &cfg.endpoint.groups {
            let Some(k) = &g.kek else { continue };
            if group.send.contains_key(&k.source) {
                continue;
            }
            let s = group_socket(k.source, Some(cfg.group_ttl.get(&g.name).copied().unwrap_or(1)), None)
                .map_err(|err| StartError::Bind { addr: k.source, err })?;
            group.send.insert(k.source, s);
        }
        let precompute = Precomputing::new();
        let ep = Endpoint::new(cfg.endpoint.clone(), Box::new(precompute.clone()), Box::new(rand_core::OsRng), t, clocks.unix());
        let d = Self {
            cfg,
            config_path,
            clocks,
            ep,
            precompute,
            auth_jobs_in_flight: 0,
            sockets,
            table,
            hot: Hot::new(&metrics),
            metrics,
            queues: Queues { init, sa, control, auth, auth_tx, queued_bytes, recycle },
            initiated: BTreeSet::new(),
            up: BTreeMap::new(),
            last_sent: HashMap::new(),
            next_tick: t,
            started: t,
            init_counted: ike_proto::InitCounters::default(),
            stop,
            threads,
            persister: None,
            held: Vec::new(),
            next_scan: t,
            aaa,
            eap_ids: HashMap::new(),
            group,
        };
        let mut d = d;
        if let Some(st) = d.cfg.state.clone() {
            let store: Box<dyn crate::store::StateStore> = match &st.backend {
                crate::config::StateBackend::Redb { path } => Box::new(crate::store::RedbStore::open(path).map_err(StartError::Store)?),
                crate::config::StateBackend::Etcd(c) => Box::new(crate::etcd::EtcdStore::open(c).map_err(StartError::Store)?),
            };
            d.persister = Some(crate::store::Persister::new(store, &st.key));
            if let Some(c) = d.persister.as_mut().and_then(|p| p.cluster()) {
                // Disjoint SPI ranges: the node's slot is the top octet.
                let slot = c.spi_slot();
                tracing::warn!("cluster: joined as {:?}, SPI slot {slot} (SPIs {slot:02x}......)", c.node());
                d.ep.set_spi_slot(Some(slot));
            }
            d.ep.keep_snapshots();
            d.resume(t).map_err(StartError::Store)?;
        }
        Ok((d, server))
    }

    /// Brings back the IKE SAs of the state store (DESIGN.md §8): each is
    /// restored into the endpoint, its Child SAs adopt their slots in the
    /// SA table (no longer orphans), a Child SA without both slots or with
    /// an implicit-IV suite (RFC 8750: its IV is the jumped counter) is
    /// rekeyed at once, and the RFC 6311 syncs go out. Records that do not
    /// restore are deleted from the store.
    fn resume(&mut self, t: Time) -> Result<(), crate::store::StoreError> {
        let Some(p) = self.persister.as_mut() else { return Ok(()) };
        let (loaded, bad) = p.load(SystemTime::now())?;
        let (restored, adopted, rekeyed, dropped) = self.restore_loaded(t, loaded, false)?;
        if let Some(p) = self.persister.as_mut() {
            tracing::warn!(
                "state store ({}): {restored} IKE SA(s) restored, {adopted} Child SA(s) adopted from the SA table, {rekeyed} rekeyed at once, {dropped} record(s) dropped, {bad} unreadable",
                p.backend(),
            );
        }
        self.drain(t);
        self.persist(t);
        self.flush_held();
        Ok(())
    }

    /// Restores loaded snapshots (a restart's, or a takeover's: those get
    /// fresh handles here first) and adopts or rekeys their Child SAs.
    /// Returns (restored, adopted, rekeyed, dropped records).
    fn restore_loaded(&mut self, t: Time, mut loaded: Vec<crate::store::Loaded>, takeover: bool) -> Result<(usize, usize, usize, usize), crate::store::StoreError> {
        let (mut restored, mut adopted, mut rekeyed) = (0usize, 0usize, 0usize);
        let mut drop_keys = Vec::new();
        for l in &mut loaded {
            if takeover {
                self.ep.rehandle(&mut l.snapshot);
            }
            let s = &l.snapshot;
            for (outcome, installs) in self.ep.restore(t, std::slice::from_ref(s), l.age) {
                let ike_proto::snapshot::RestoreOutcome::Restored { ike_sa, .. } = outcome else {
                    tracing::warn!(spi_i = format_args!("{:016x}", s.spi_i), spi_r = format_args!("{:016x}", s.spi_r), "stored IKE SA {:016x}/{:016x} not restored: {outcome:?}", s.spi_i, s.spi_r);
                    drop_keys.push(s.key());
                    continue;
                };
                restored += 1;
                let conn = self.cfg.endpoint.connections.iter().find(|c| c.name == s.connection);
                self.up.insert(
                    ike_sa,
                    UpInfo {
                        local_id: conn.map_or(Identity::KeyId(Vec::new()), |c| c.local_id.clone()),
                        virtual_ips: s.leases.clone(),
                        dns: Vec::new(),
                        nat_local: s.nat_local,
                        nat_remote: s.nat_remote,
                        established_at: t,
                        connection: s.connection.clone(),
                        dns_domains: Vec::new(),
                    },
                );
                if s.initiator {
                    self.initiated.insert(ike_sa);
                }
                for i in installs {
                    let r = self.table.adopt(t, &i);
                    let rekey = match r {
                        crate::table::AdoptResult::Adopted { .. } => {
                            adopted += 1;
                            i.suite.implicit_iv()
                        }
                        _ => true,
                    };
                    tracing::warn!(ike_sa = ike_sa.0, child_sa = i.child_sa.0, "Child SA #{} of IKE SA #{} ({:08x}/{:08x}): {r:?}", i.child_sa.0, ike_sa.0, i.spi_in, i.spi_out);
                    if rekey {
                        rekeyed += 1;
                        let _ = self.ep.handle_command(t, Command::RekeyChild { ike_sa, child_sa: i.child_sa });
                    }
                }
            }
        }
        if let Some(p) = self.persister.as_mut() {
            if !drop_keys.is_empty() {
                p.delete(&drop_keys)?;
            }
        }
        self.metrics.store_restored.inc_by(restored as u64);
        self.metrics.store_adopted.inc_by(adopted as u64);
        Ok((restored, adopted, rekeyed, drop_keys.len()))
    }

    /// A cluster store's turn (every `ike.state.scan_interval_ms`): a node
    /// whose lease is gone stops at once (its IKE SAs may be another
    /// node's already: fail-stop, the service manager restarts it and it
    /// joins anew); otherwise it claims IKE SAs without an owner, runs
    /// `on_takeover` (the service address moves here), restores them and
    /// installs their Child SAs in this node's table by rekeying them.
    fn cluster_turn(&mut self, t: Time) {
        let Some(crate::config::StateBackend::Etcd(cfg)) = self.cfg.state.as_ref().map(|s| s.backend.clone()) else { return };
        let Some(p) = self.persister.as_mut() else { return };
        let Some(c) = p.cluster() else { return };
        if c.lease_lost() {
            tracing::warn!("cluster: this node's lease is gone; its IKE SAs may be served elsewhere now: stopping");
            crate::logging::flush();
            std::process::exit(75);
        }
        let t0 = Instant::now();
        let records = match c.scan() {
            Ok(r) => r,
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::warn!("cluster: scan failed: {e}");
                return;
            }
        };
        if records.is_empty() {
            return;
        }
        let claimed = records.len();
        let (loaded, bad) = p.open_records(records, SystemTime::now());
        if let Some(hook) = &cfg.on_takeover {
            run_hook(hook, &[("ESPRIT_EVENT", "takeover".into()), ("ESPRIT_NODE", cfg.node.clone()), ("ESPRIT_CLAIMED", claimed.to_string())]);
        }
        match self.restore_loaded(t, loaded, true) {
            Ok((restored, adopted, rekeyed, dropped)) => {
                self.metrics.cluster_takeovers.inc();
                self.metrics.cluster_claimed.inc_by(claimed as u64);
                tracing::warn!(
                    "cluster: took over {claimed} IKE SA(s) in {} ms: {restored} restored, {adopted} Child SA(s) adopted, {rekeyed} rekeyed at once, {dropped} dropped, {bad} unreadable",
                    t0.elapsed().as_millis()
                );
            }
            Err(e) => tracing::warn!("cluster: takeover failed: {e}"),
        }
        self.drain(t);
    }

    fn draining(&mut self) -> bool {
        self.persister.as_mut().and_then(|p| p.cluster()).is_some_and(|c| c.is_draining())
    }

    /// `esprit-ctl cluster status|drain`.
    fn cluster_control(&mut self, drain: bool) -> Response {
        let on_drain = match self.cfg.state.as_ref().map(|s| &s.backend) {
            Some(crate::config::StateBackend::Etcd(c)) => c.on_drain.clone(),
            _ => None,
        };
        let Some(c) = self.persister.as_mut().and_then(|p| p.cluster()) else {
            return Response::err("not in a cluster (ike.state.backend is not etcd)");
        };
        if !drain {
            return match c.status() {
                Ok(v) => Response::ok(v),
                Err(e) => Response::err(e),
            };
        }
        let t0 = Instant::now();
        match c.drain() {
            Ok(n) => {
                let node = c.node().to_string();
                tracing::warn!("cluster: draining: {n} IKE SA(s) handed over, no new IKE SA taken");
                if let Some(hook) = on_drain {
                    run_hook(&hook, &[("ESPRIT_EVENT", "drain".into()), ("ESPRIT_NODE", node), ("ESPRIT_HANDED_OVER", n.to_string())]);
                }
                Response::ok(json!({ "handed_over": n, "took_ms": t0.elapsed().as_millis() as u64 }))
            }
            Err(e) => Response::err(e),
        }
    }

    /// Writes what this turn changed to the state store, in one batch.
    fn persist(&mut self, t: Time) {
        let Some(p) = self.persister.as_mut() else { return };
        let changes = self.ep.take_changes(t);
        if changes.is_empty() {
            return;
        }
        match p.write(&changes, SystemTime::now()) {
            Ok(s) => {
                self.metrics.store_batches.inc();
                self.metrics.store_records.with_label_values(&["put"]).inc_by(s.puts as u64);
                self.metrics.store_records.with_label_values(&["delete"]).inc_by(s.deletes as u64);
                self.metrics.store_seconds.inc_by(s.took.as_secs_f64());
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::warn!("state store write failed: {e}");
            }
        }
    }

    /// The UDP addresses bound (for tests that bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.keys().copied().collect()
    }

    /// Raising this flag ends [`Daemon::run`] within a second.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn table(&self) -> &SaProgrammer {
        &self.table
    }

    /// Inputs waiting in each queue: init, sa, control, auth.
    pub fn queue_depths(&self) -> [(&'static str, usize); 4] {
        let q = &self.queues;
        [("init", q.init.len()), ("sa", q.sa.len()), ("control", q.control.len()), ("auth", q.auth.len())]
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

    /// One turn: waits at most `max_wait` (less if a timer is due) for any
    /// input; serves every control request and signature result waiting,
    /// then at most one burst from each datagram queue; then timers,
    /// housekeeping, and drains the endpoint.
    pub fn step(&mut self, max_wait: Duration) {
        let t = self.clocks.now();
        let mut wait = max_wait.min(self.next_tick.saturating_since(t));
        if let Some(d) = self.ep.poll_timeout() {
            wait = wait.min(d.saturating_since(t));
        }
        if let Some(d) = self.aaa.as_ref().and_then(crate::aaa::Aaa::poll_timeout) {
            wait = wait.min(d.saturating_since(t));
        }
        if let Some(d) = self.group.pending.iter().map(|p| p.0).min() {
            wait = wait.min(d.saturating_since(t));
        }
        self.wait_for_input(wait);
        self.ep.set_unix_time(self.clocks.unix());
        // What must never wait behind a flood first.
        while let Ok(req) = self.queues.control.try_recv() {
            let t = self.clocks.now();
            let r = self.control(t, req.request);
            let _ = req.reply.send(r);
            self.drain(t);
        }
        while let Ok(done) = self.queues.auth.try_recv() {
            let t = self.clocks.now();
            self.auth_jobs_in_flight = self.auth_jobs_in_flight.saturating_sub(1);
            self.metrics.auth_jobs.with_label_values(&[if done.peer_refused() { "refused" } else { "done" }]).inc();
            self.ep.handle_auth_done(t, done);
            self.drain(t);
        }
        // RADIUS answers and timeouts: the IKE_AUTH requests waiting on
        // them go on.
        let t = self.clocks.now();
        let mut answers = Vec::new();
        if let Some(aaa) = self.aaa.as_mut() {
            while let Ok((from, bytes)) = aaa.rx.try_recv() {
                answers.extend(aaa.datagram(t, from, &bytes));
            }
            if aaa.poll_timeout().is_some_and(|d| d <= t) {
                answers.extend(aaa.timeout(t));
            }
        }
        for a in answers {
            self.aaa_answer(t, a);
        }
        // Then one burst of each kind of datagram: existing SAs' exchanges
        // first, new requests second; whatever is left waits for the next
        // turn, after the timers.
        let mut burst: Vec<Datagram> = self.queues.sa.try_iter().take(MAX_BURST).collect();
        if self.draining() {
            // A draining cluster node takes no new IKE SA: its IKE_SA_INIT
            // requests go unanswered (the peer retries at another node).
            for d in self.queues.init.try_iter().take(MAX_BURST).collect::<Vec<_>>() {
                self.queues.queued_bytes.fetch_sub(d.payload.len(), Ordering::Relaxed);
                self.recycle(d.payload);
            }
        } else {
            burst.extend(self.queues.init.try_iter().take(MAX_BURST));
        }
        if !burst.is_empty() {
            let bytes: usize = burst.iter().map(|d| d.payload.len()).sum();
            self.queues.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            let t = self.clocks.now();
            self.precompute_burst(t, &burst);
            for d in burst {
                let t = self.clocks.now();
                self.hot.rx.inc();
                self.ep.handle_datagram(t, d.local, d.remote, &d.payload);
                self.drain(t);
                self.recycle(d.payload);
            }
            self.finish_burst();
        }
        let t = self.clocks.now();
        if self.ep.poll_timeout().is_some_and(|d| d <= t) {
            self.ep.handle_timeout(t);
        }
        if self.next_tick <= t {
            self.next_tick = t + Duration::from_secs(1);
            self.housekeeping(t);
        }
        if let Some(crate::config::StateBackend::Etcd(c)) = self.cfg.state.as_ref().map(|s| &s.backend) {
            if self.next_scan <= t {
                self.next_scan = t + c.scan_interval;
                self.cluster_turn(t);
            }
        }
        self.activate_group_senders(t);
        self.drain(t);
        // One batch per turn, written ahead of the turn's datagrams: the
        // peer never sees a message ID, request or answer the store does
        // not hold (a crash before the send loses only what the peer never
        // saw; its retransmissions are then answered as new).
        self.persist(t);
        self.flush_held();
        self.count_key_exchanges();
        self.queue_gauges();
        crate::logging::flush();
    }

    /// An AAA answer for the endpoint, counted.
    fn aaa_answer(&mut self, t: Time, a: ike_proto::AaaAnswer) {
        let result = match &a.outcome {
            ike_proto::AaaOutcome::Challenge(_) => "challenge",
            ike_proto::AaaOutcome::Accept { .. } => "accept",
            ike_proto::AaaOutcome::Reject { .. } => "reject",
            ike_proto::AaaOutcome::Unreachable => "unreachable",
        };
        self.metrics.eap.with_label_values(&[result]).inc();
        if result != "challenge" {
            tracing::info!("IKE SA #{}: RADIUS {result}", a.ike_sa.0);
        }
        if matches!(a.outcome, ike_proto::AaaOutcome::Unreachable) {
            tracing::warn!("IKE SA #{}: no RADIUS server answered (EAP fails)", a.ike_sa.0);
        }
        self.ep.handle_aaa_answer(t, a);
        self.drain(t);
    }

    /// Blocks until any queue has input or `wait` has passed.
    fn wait_for_input(&self, wait: Duration) {
        let q = &self.queues;
        let radius_waiting = self.aaa.as_ref().is_some_and(|a| !a.rx.is_empty());
        if radius_waiting || !(q.control.is_empty() && q.auth.is_empty() && q.sa.is_empty() && q.init.is_empty()) {
            return;
        }
        let mut sel = Select::new();
        sel.recv(&q.control);
        sel.recv(&q.auth);
        sel.recv(&q.sa);
        sel.recv(&q.init);
        if let Some(a) = &self.aaa {
            sel.recv(&a.rx);
        }
        let _ = sel.ready_timeout(wait);
    }

    /// Gives an emptied payload buffer back to the readers (small ones only).
    fn recycle(&self, mut payload: Vec<u8>) {
        if payload.capacity() <= RECYCLE_MAX_CAPACITY {
            payload.clear();
            let _ = self.queues.recycle.try_send(payload);
        }
    }

    /// Has rayon compute the responder key exchanges the endpoint will
    /// spend on the IKE_SA_INIT requests of `burst` (see
    /// [`crate::precompute`]): only requests that pass the endpoint's own
    /// checks ([`Endpoint::plan_init_key_exchanges`]: within the half-open
    /// limits, with a valid cookie while cookies are required, an
    /// acceptable proposal), so a request the endpoint refuses, or answers
    /// with a cookie, costs no key exchange here either.
    fn precompute_burst(&mut self, t: Time, burst: &[Datagram]) {
        // Fewer requests than the pool takes cannot make a parallel batch:
        // skip planning them (a header check, no parse, no HMAC).
        let natt = self.cfg.endpoint.natt_port;
        if burst.iter().filter(|d| is_init_request(&d.payload, d.local.port() == natt)).count() < precompute::MIN_BURST {
            return;
        }
        let kes = self.ep.plan_init_key_exchanges(t, burst.iter().map(|d| (d.local, d.remote, d.payload.as_slice())));
        if kes.len() >= precompute::MIN_BURST {
            let refs: Vec<(u16, &[u8])> = kes.iter().map(|(m, d)| (*m, d.as_slice())).collect();
            self.precompute.precompute(&refs);
        }
    }

    /// Drops what the endpoint did not claim (counted as discarded).
    fn finish_burst(&mut self) {
        self.precompute.clear();
    }

    /// The queues' occupancy, per turn.
    fn queue_gauges(&self) {
        for ((_, n), g) in self.queue_depths().into_iter().zip(&self.hot.depth) {
            g.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Copies the crypto provider's and the endpoint's counters to the
    /// metrics (they count on their own; the metrics follow).
    fn count_key_exchanges(&mut self) {
        let h = &self.hot;
        let (computed, used) = self.precompute.counts();
        h.pke_used.inc_by(used.saturating_sub(h.pke_used.get()));
        h.pke_discarded.inc_by(computed.saturating_sub(used).saturating_sub(h.pke_discarded.get()));
        let (responded, initiated) = self.precompute.key_exchanges();
        h.ke_respond.inc_by(responded.saturating_sub(h.ke_respond.get()));
        h.ke_initiate.inc_by(initiated.saturating_sub(h.ke_initiate.get()));
        let now = self.ep.init_counters();
        let was = std::mem::replace(&mut self.init_counted, now);
        let pairs = [
            (now.admitted, was.admitted),
            (now.retransmits, was.retransmits),
            (now.cookie_missing, was.cookie_missing),
            (now.cookie_invalid, was.cookie_invalid),
            (now.half_open_limit, was.half_open_limit),
            (now.peer_limit, was.peer_limit),
            (now.refused, was.refused),
        ];
        for ((n, w), c) in pairs.into_iter().zip(&h.init) {
            if n > w {
                c.inc_by(n - w);
            }
        }
    }

    /// The counters of an IKE SA's Child SAs in the table (accounting).
    fn live_totals(&self, ike_sa: IkeSaHandle) -> crate::aaa::Totals {
        let mut sum = crate::aaa::Totals::default();
        for c in self.table.children_of(ike_sa) {
            if let Some(e) = self.table.child(c) {
                sum += totals(&self.table.counters(e));
            }
        }
        sum
    }

    fn housekeeping(&mut self, t: Time) {
        // RFC 2866 Interim-Updates that are due.
        let due = self.aaa.as_ref().map(|a| a.due_interims(t)).unwrap_or_default();
        for ike_sa in due {
            let live = self.live_totals(ike_sa);
            if let Some(aaa) = self.aaa.as_mut() {
                aaa.interim(t, ike_sa, live);
            }
        }
        if let Some(aaa) = self.aaa.as_mut() {
            aaa.flush();
        }
        // Only the Child SAs whose poll is due (crate::table): the tick's
        // cost follows them, not the number held.
        let polled = self.table.poll_due(t);
        for a in polled.actions {
            let (cmd, what) = match a {
                crate::table::LifetimeAction::Rekey { ike_sa, child_sa } => (Command::RekeyChild { ike_sa, child_sa }, "rekey"),
                crate::table::LifetimeAction::Delete { ike_sa, child_sa } => (Command::DeleteChild { ike_sa, child_sa }, "delete"),
            };
            tracing::info!("Child SA #{}: volume or sequence lifetime reached: {what}", child_of(&cmd));
            if let Err(e) = self.ep.handle_command(t, cmd) {
                tracing::warn!("lifetime {what} refused: {e}");
            }
        }
        for ike_sa in polled.inbound_moved {
            self.ep.note_inbound_esp(t, ike_sa);
        }
        let n = self.table.expire_orphans(t);
        if n > 0 {
            tracing::warn!("deleted {n} SA slot(s) left by an earlier esprit-ike");
        }
        let before = self.table.deferred_deletes();
        if before > 0 {
            let left = self.table.retry_deletes();
            tracing::warn!("{} deferred SA slot delete(s) done, {left} still waiting for the table", before - left);
        }
        self.refresh_gauges();
    }

    /// From counts kept as SAs change ([`Endpoint::tally`]): no SA is
    /// visited, whatever the number held.
    fn refresh_gauges(&self) {
        let tally = self.ep.tally();
        for s in ["Connecting", "HalfOpen", "Established", "Rekeyed", "Deleting", "PeerDeleted", "Closed"] {
            let n = tally.by_state.get(s).copied().unwrap_or(0);
            self.metrics.ike_sas.with_label_values(&[s]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.metrics.pq_ike_sas.set(i64::try_from(tally.pq_established).unwrap_or(i64::MAX));
        self.metrics.half_open.set(self.ep.half_open_count() as i64);
        self.metrics.child_sas.set(self.table.child_count() as i64);
        self.metrics.orphans.set(self.table.orphans().len() as i64);
        for g in self.ep.groups() {
            self.metrics.group_members.with_label_values(&[&g.name]).set(i64::try_from(g.members.len()).unwrap_or(i64::MAX));
        }
    }

    /// Sends what the endpoint has to send; applies its events.
    fn drain(&mut self, t: Time) {
        // IKE_AUTH signature jobs go to the pool; their results come back
        // as inputs (the SA answers then).
        while let Some(job) = self.ep.poll_auth_job() {
            let tx = self.queues.auth_tx.clone();
            self.auth_jobs_in_flight += 1;
            rayon::spawn(move || {
                // The loop is gone when this fails: nothing waits for it.
                let _ = tx.send(job.run());
            });
        }
        self.metrics.auth_jobs_in_flight.set(i64::try_from(self.auth_jobs_in_flight).unwrap_or(i64::MAX));
        // EAP Responses to the RADIUS server (answered in a later turn).
        while let Some(req) = self.ep.poll_aaa_request() {
            let answer = match self.aaa.as_mut() {
                Some(aaa) => {
                    let mut authenticator = [0u8; 16];
                    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut authenticator);
                    aaa.request(t, req, authenticator)
                }
                // Config refuses EAP connections without ike.radius; a
                // reload could still get here.
                None => Some(ike_proto::AaaAnswer { ike_sa: req.ike_sa, message_id: req.message_id, outcome: ike_proto::AaaOutcome::Unreachable }),
            };
            if let Some(a) = answer {
                self.metrics.eap.with_label_values(&["unreachable"]).inc();
                self.ep.handle_aaa_answer(t, a);
            }
        }
        if let Some(aaa) = self.aaa.as_mut() {
            aaa.flush();
            let (d, acct) = aaa.stats_delta();
            for (prefix, d) in [("", d), ("acct_", acct)] {
                for (event, n) in [("requests", d.requests), ("retransmits", d.retransmits), ("failovers", d.failovers), ("timeouts", d.timeouts), ("bad_replies", d.bad_replies)] {
                    if n > 0 {
                        self.metrics.radius.with_label_values(&[&format!("{prefix}{event}")]).inc_by(n);
                    }
                }
            }
            if d.failovers > 0 {
                tracing::warn!("RADIUS: failed over; requests now go to {}", aaa.current_server());
            }
        }
        while let Some(tr) = self.ep.poll_transmit() {
            if self.persister.is_some() {
                // Written ahead: sent once the turn's snapshots are stored.
                self.held.push(tr);
            } else {
                self.send(tr);
            }
        }
        while let Some(ev) = self.ep.poll_event() {
            self.event(t, ev);
        }
    }

    /// Sends one datagram of the endpoint's.
    fn send(&mut self, tr: ike_proto::Transmit) {
        // The IKE header's SPI pair, after the non-ESP marker on 4500.
        let off = if tr.payload.starts_with(&[0; 4]) { 4 } else { 0 };
        let mut spis = [0u8; 16];
        if let Some(b) = tr.payload.get(off..off + 16) {
            spis.copy_from_slice(b);
        }
        // Stateless answers (SPIr zero: COOKIE, INVALID_KE_PAYLOAD, ...)
        // are never retransmitted by us; a flood of them must not churn
        // the retransmit map.
        if spis[8..] != [0; 8] {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            tr.payload.hash(&mut h);
            let digest = h.finish();
            if self.last_sent.len() >= 65536 {
                self.last_sent.clear();
            }
            if self.last_sent.insert((tr.remote, spis), digest) == Some(digest) {
                self.metrics.retransmits.inc();
            }
        }
        if tr.remote.ip().is_multicast() {
            // RFC 9838 §2.4.1: a GSA_REKEY to the group.
            let r = match self.group.send.get(&tr.local) {
                Some(s) => s.send_to(&tr.payload, tr.remote).map(|_| ()),
                None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no GSA_REKEY socket for this source")),
            };
            match r {
                Ok(()) => {
                    self.hot.tx.inc();
                    self.metrics.group_rekeys.with_label_values(&["sent", "sent"]).inc();
                }
                Err(e) => {
                    self.metrics.group_rekeys.with_label_values(&["sent", "send_error"]).inc();
                    tracing::warn!("GSA_REKEY {} -> {}: {e}", tr.local, tr.remote);
                }
            }
            return;
        }
        let sock = self.sockets.get(&tr.local).or_else(|| self.sockets.iter().find(|(a, _)| a.port() == tr.local.port()).map(|(_, s)| s));
        match sock {
            Some(s) => match s.send_to(&tr.payload, tr.remote) {
                Ok(_) => self.hot.tx.inc(),
                Err(e) => tracing::warn!("send {} -> {}: {e}", tr.local, tr.remote),
            },
            None => tracing::warn!("no socket bound on {} (datagram to {} dropped)", tr.local, tr.remote),
        }
    }

    /// Sends what waited for this turn's snapshots to be stored.
    fn flush_held(&mut self) {
        for tr in std::mem::take(&mut self.held) {
            self.send(tr);
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
                tracing::info!(
                    ike_sa = ike_sa.0,
                    "IKE SA #{} {connection} up ({role}): {local} '{}' <-> {remote} '{}' vips {virtual_ips:?} nat local={nat_local} remote={nat_remote} ppk={ppk}",
                    ike_sa.0,
                    id_str(&local_id),
                    id_str(&remote_id)
                );
                self.up.insert(
                    ike_sa,
                    UpInfo { local_id, virtual_ips, dns, nat_local, nat_remote, established_at: t, connection, dns_domains: Vec::new() },
                );
            }
            Event::EapAuthenticated { ike_sa, identity } => {
                let id = String::from_utf8_lossy(&identity).into_owned();
                tracing::info!("IKE SA #{}: EAP identity '{id}' authenticated", ike_sa.0);
                self.eap_ids.insert(ike_sa, id);
            }
            Event::IkeSaDown { ike_sa, reason } => {
                if reason != DownReason::Rekeyed {
                    let live = self.live_totals(ike_sa);
                    if let Some(aaa) = self.aaa.as_mut() {
                        aaa.stop(t, ike_sa, live, crate::aaa::terminate_cause(&reason));
                        aaa.flush();
                    }
                }
                if let Some(aaa) = self.aaa.as_mut() {
                    aaa.forget(ike_sa);
                }
                self.eap_ids.remove(&ike_sa);
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
                tracing::info!(ike_sa = ike_sa.0, "IKE SA #{} down: {reason:?}{}", ike_sa.0, if n > 0 { format!(" ({n} Child SA(s) removed)") } else { String::new() });
            }
            Event::IkeSaMoved { ike_sa, local, remote, udp_encap, nat_local, nat_remote } => {
                // RFC 4555: the Child SAs follow, same SPIs and keys.
                if let Some(u) = self.up.get_mut(&ike_sa) {
                    (u.nat_local, u.nat_remote) = (nat_local, nat_remote);
                }
                match self.table.move_ike_sa(ike_sa, local, remote, udp_encap) {
                    Ok(n) => tracing::info!(
                        ike_sa = ike_sa.0,
                        "IKE SA #{} moved (MOBIKE): {n} Child SA(s) now {local} <-> {remote}{} (nat local={nat_local} remote={nat_remote})",
                        ike_sa.0,
                        if udp_encap || local.port() == self.table.natt_port() { ", UDP-encapsulated" } else { "" }
                    ),
                    Err(err) => {
                        // The table kept the old path: traffic goes on there
                        // until the next update; counted, never silent.
                        self.metrics.mobike.with_label_values(&["table_error"]).inc();
                        tracing::warn!(ike_sa = ike_sa.0, "IKE SA #{} moved to {remote} but its Child SAs could not follow: {err}", ike_sa.0);
                    }
                }
            }
            Event::Mobike { ike_sa, outcome } => {
                self.metrics.mobike.with_label_values(&[outcome.label()]).inc();
                match outcome {
                    ike_proto::MobikeOutcome::Refused(r) => tracing::warn!(ike_sa = ike_sa.0, "IKE SA #{}: MOBIKE update refused: {r}", ike_sa.0),
                    o => tracing::info!(ike_sa = ike_sa.0, "IKE SA #{}: MOBIKE update: {}", ike_sa.0, o.label()),
                }
            }
            Event::IkeSaRekeyed { old, new } => {
                self.metrics.rekeys.with_label_values(&["ike"]).inc();
                self.table.reparent(old, new);
                if let Some(aaa) = self.aaa.as_mut() {
                    aaa.rekeyed(old, new);
                }
                if let Some(id) = self.eap_ids.remove(&old) {
                    self.eap_ids.insert(new, id);
                }
                if let Some(i) = self.up.remove(&old) {
                    self.up.insert(new, i);
                }
                if self.initiated.remove(&old) {
                    self.initiated.insert(new);
                }
                tracing::info!(ike_sa = new.0, old_ike_sa = old.0, "IKE SA #{} rekeyed as #{}", old.0, new.0);
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
                let (ike_sa, local, remote) = (i.ike_sa, i.local, i.remote);
                let installed = match self.table.install(t, &i) {
                    Ok(e) => {
                        tracing::info!(
                            ike_sa = e.ike_sa.0,
                            child_sa = e.child_sa.0,
                            spi_in = format_args!("{:08x}", e.spi_in),
                            spi_out = format_args!("{:08x}", e.spi_out),
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
                        );
                        true
                    }
                    Err(err) => {
                        self.metrics.child_failures.with_label_values(&["table"]).inc();
                        tracing::warn!("Child SA #{} not programmed ({err}); deleting it", i.child_sa.0);
                        let _ = self.ep.handle_command(t, Command::DeleteChild { ike_sa: i.ike_sa, child_sa: i.child_sa });
                        false
                    }
                };
                if installed && self.aaa.as_ref().is_some_and(|a| a.wants_session(ike_sa)) {
                    // RFC 2866 Start: the first Child SA of an EAP client.
                    if let Some(user) = self.eap_ids.get(&ike_sa) {
                        let framed_ip = self.up.get(&ike_sa).and_then(|u| {
                            u.virtual_ips.iter().find_map(|a| match a {
                                IpAddr::V4(v4) => Some(*v4),
                                IpAddr::V6(_) => None,
                            })
                        });
                        let unix_secs = self.clocks.unix().secs();
                        let start = crate::aaa::SessionStart { ike_sa, user: user.as_bytes().to_vec(), framed_ip, local, remote, unix_secs };
                        if let Some(aaa) = self.aaa.as_mut() {
                            aaa.start_session(t, start);
                            aaa.flush();
                        }
                    }
                }
            }
            Event::ChildSaDelete { ike_sa, child_sa, spi_in, spi_out } => {
                // Accounting keeps what the Child SA carried.
                if let (Some(aaa), Some(e)) = (self.aaa.as_mut(), self.table.child(child_sa)) {
                    aaa.child_gone(ike_sa, totals(&self.table.counters(e)));
                }
                self.table.delete(child_sa);
                tracing::info!(
                    ike_sa = ike_sa.0,
                    child_sa = child_sa.0,
                    spi_in = format_args!("{spi_in:08x}"),
                    spi_out = format_args!("{spi_out:08x}"),
                    "Child SA #{} of IKE SA #{} deleted (SPIs {spi_in:08x}/{spi_out:08x})",
                    child_sa.0,
                    ike_sa.0
                );
            }
            Event::GroupSaInstall(i) => self.group_sa_install(t, i),
            Event::GroupSaDelete { group, spi } => {
                self.group.pending.retain(|p| p.1.spi != spi);
                if self.table.delete_group(spi).is_some() {
                    tracing::info!("group {group}: TEK {spi:08x} deleted");
                }
            }
            Event::GroupRegistered { group, ike_sa, sender_ids } => {
                self.metrics.group_registrations.with_label_values(&["joined"]).inc();
                tracing::info!("group {group}: registered on IKE SA #{}, Sender-IDs {sender_ids:?}", ike_sa.0);
                self.join_group_rekeys(&group);
            }
            Event::GroupRekeyAccepted { group, message_id } => {
                self.metrics.group_rekeys.with_label_values(&["received", "accepted"]).inc();
                tracing::info!("group {group}: GSA_REKEY message {message_id} accepted");
            }
            Event::GroupRekeyRejected { group, reason } => {
                self.metrics.group_rekeys.with_label_values(&["received", reason.as_str()]).inc();
                tracing::info!("group {}: GSA_REKEY rejected: {}", group.map_or_else(|| "?".into(), |g| g.to_string()), reason.as_str());
            }
            Event::GroupExcluded { group } => {
                self.metrics.group_rekeys.with_label_values(&["received", "excluded"]).inc();
                tracing::warn!("group {group}: excluded by the GCKS; its SAs are gone");
            }
            Event::GroupMemberRegistration { group, member, sender_ids, notify } => {
                let r = notify.map_or_else(|| "ok".to_string(), |n| n.name().map_or_else(|| format!("notify_{}", n.0), |s| s.to_lowercase()));
                self.metrics.group_registrations.with_label_values(&[&r]).inc();
                let g = group.map_or_else(|| "?".into(), |g| g.to_string());
                tracing::info!("group {g}: member '{}' registration {r}, Sender-IDs {sender_ids:?}", id_str(&member));
            }
            Event::SplitDns { ike_sa, mut domains, refused } => {
                let initiator = self.initiated.contains(&ike_sa) || self.ep.ike_sas().iter().any(|i| i.ike_sa == ike_sa && i.initiator);
                if initiator {
                    // RFC 8598 §5: no two connections resolve the same domain.
                    let conn = self.up.get(&ike_sa).map(|u| u.connection.clone()).unwrap_or_default();
                    let active = self.up.iter().filter(|(h, _)| **h != ike_sa).map(|(_, u)| (u.connection.as_str(), &u.dns_domains[..]));
                    for name in ike_proto::split_dns::drop_conflicts(&conn, &mut domains, active) {
                        self.metrics.split_dns.with_label_values(&["refused"]).inc();
                        tracing::info!("IKE SA #{}: split-DNS {name:?} refused (another connection holds it)", ike_sa.0);
                    }
                }
                let (ok, what) = if initiator { ("accepted", "accepted") } else { ("pushed", "pushed") };
                self.metrics.split_dns.with_label_values(&[ok]).inc_by(domains.len() as u64);
                self.metrics.split_dns.with_label_values(&["refused"]).inc_by(refused.len() as u64);
                for (name, why) in &refused {
                    tracing::info!("IKE SA #{}: split-DNS {name:?} refused ({why:?})", ike_sa.0);
                }
                let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
                tracing::info!("IKE SA #{}: split-DNS domains {what}: {names:?}", ike_sa.0);
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
                tracing::warn!(ike_sa = ike_sa.0, "Child SA of IKE SA #{} failed: {notify:?}", ike_sa.0);
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
                            tracing::warn!("split-DNS hook exited with {st}");
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("split-DNS hook {}: {e}", hook.display()),
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
            Request::ClusterStatus => self.cluster_control(false),
            Request::ClusterDrain => self.cluster_control(true),
            Request::ListGroups => Response::ok(self.list_groups(t)),
            Request::GroupRekey { group } => self.group_command(t, &group, None),
            Request::GroupExclude { group, member } => self.group_command(t, &group, Some(member)),
        }
    }

    /// A group by its name (`ike.groups[].name`) or its ID.
    fn group_id(&self, name: &str) -> Option<ike_proto::group::GroupId> {
        self.cfg.endpoint.groups.iter().find(|g| g.name == name || g.id.data == name.as_bytes()).map(|g| g.id.clone())
    }

    fn group_command(&mut self, t: Time, group: &str, exclude: Option<String>) -> Response {
        let Some(id) = self.group_id(group) else { return Response::err(format!("no group {group:?}")) };
        let cmd = match exclude {
            None => ike_proto::event::GroupCommand::Rekey { group: id },
            Some(m) => ike_proto::event::GroupCommand::Exclude { group: id, member: crate::config::identity_of(&m) },
        };
        match self.ep.handle_group_command(t, cmd) {
            Ok(()) => {
                self.drain(t);
                Response::ok(json!({ "group": group }))
            }
            Err(e) => Response::err(e),
        }
    }

    /// RFC 9838 GM: a TEK into the table; a sender's outbound slot waits
    /// for GWP_ATD (receivers' inbound goes in at once).
    fn group_sa_install(&mut self, t: Time, i: Box<ike_proto::group::GroupSaInstall>) {
        let local = self
            .ep
            .member_groups()
            .get(&i.group)
            .map(|g| g.local_addr().ip())
            .or_else(|| self.cfg.listen.iter().copied().find(|a| a.is_ipv4() == i.dst.start_addr.is_ipv4()))
            .unwrap_or(self.cfg.listen[0]);
        #[cfg(debug_assertions)]
        if std::env::var_os("ESPRIT_IKE_LOG_TEKS").is_some_and(|v| v == "1") {
            // Test builds only (never in release): a capture can then be
            // decrypted (scapy) with the key and salt.
            tracing::warn!("TEST-ONLY TEK spi={:08x} key+salt={}", i.spi, hex::encode(&*i.keys.encr));
        }
        let delay = Duration::from_secs(u64::from(i.activation_delay_secs));
        let now = delay.is_zero();
        match self.table.install_group(t, &i, local, now) {
            Ok(e) => tracing::info!(
                "group {}: TEK {:08x} gen {} installed ({:?}, {} -> {}){}",
                i.group,
                e.spi,
                e.generation,
                i.direction,
                ts_str(&i.src),
                ts_str(&i.dst),
                match (e.outbound.is_some(), e.sender_id) {
                    (true, Some(sid)) => format!(", sending with SID {sid}"),
                    (false, Some(_)) => format!(", sending after {} s", delay.as_secs()),
                    _ => String::new(),
                }
            ),
            Err(err) => {
                self.metrics.child_failures.with_label_values(&["table"]).inc();
                tracing::warn!("group {}: TEK {:08x} not programmed: {err}", i.group, i.spi);
                return;
            }
        }
        if !now && matches!(i.direction, ike_proto::group::GroupSaDirection::Outbound | ike_proto::group::GroupSaDirection::Both) {
            self.group.pending.push((t + delay, i, local));
        }
    }

    /// Senders' outbound TEKs whose GWP_ATD has passed.
    fn activate_group_senders(&mut self, t: Time) {
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.group.pending).into_iter().partition(|p| p.0 <= t);
        self.group.pending = keep;
        for (_, i, local) in due {
            match self.table.activate_group_outbound(&i, local) {
                Ok(()) => tracing::info!("group {}: sending on TEK {:08x}", i.group, i.spi),
                Err(err) => tracing::warn!("group {}: outbound TEK {:08x} not programmed: {err}", i.group, i.spi),
            }
        }
    }

    /// RFC 9838 GM: listen for the group's GSA_REKEYs (once per destination).
    fn join_group_rekeys(&mut self, group: &ike_proto::group::GroupId) {
        let Some(g) = self.ep.member_groups().get(group) else { return };
        let Some(dst) = g.rekey_destination else { return };
        let iface = g.local_addr().ip();
        if self.group.joined.contains(&dst) {
            return;
        }
        let Some(parts) = self.group.readers.clone() else { return };
        let bind = if dst.ip().is_multicast() { dst } else { SocketAddr::new(iface, dst.port()) };
        let sock = match group_socket(bind, None, dst.ip().is_multicast().then_some((dst.ip(), iface))) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("group {group}: cannot listen for GSA_REKEY on {dst}: {e}");
                return;
            }
        };
        let r = match sock.try_clone() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("group {group}: {e}");
                return;
            }
        };
        let _ = r.set_read_timeout(Some(Duration::from_millis(200)));
        let reader = Reader {
            socket: r,
            local: dst,
            natt: false,
            init: parts.init,
            sa: parts.sa,
            recycled: parts.recycled,
            queued_bytes: parts.queued_bytes,
            metrics: self.metrics.clone(),
            stop: self.stop.clone(),
        };
        match std::thread::Builder::new().name(format!("gsa-rekey-{}", dst.port())).spawn(move || reader.run()) {
            Ok(h) => {
                self.threads.push(h);
                self.group.joined.insert(dst);
                tracing::info!("group {group}: listening for GSA_REKEY on {dst} (interface {iface})");
                // The socket lives as long as its reader's clone.
                drop(sock);
            }
            Err(e) => tracing::warn!("group {group}: reader thread: {e}"),
        }
    }

    /// `list-groups`: served (GCKS) and joined (GM).
    fn list_groups(&self, t: Time) -> Value {
        let served: Vec<Value> = self
            .ep
            .groups()
            .into_iter()
            .map(|g| {
                let st = self.ep.group_stats(&g.id).unwrap_or_default();
                json!({
                    "name": g.name,
                    "id": g.id.to_string(),
                    "members": g.members.iter().map(|m| json!({
                        "id": id_str(&m.identity),
                        "sender": m.sender,
                        "sender_ids": m.sender_ids,
                        "registered_secs": t.saturating_since(m.registered_at).as_secs(),
                    })).collect::<Vec<_>>(),
                    "tek_spis": g.tek_spis.iter().map(|s| format!("{s:08x}")).collect::<Vec<_>>(),
                    "tek_generation": g.tek_generation,
                    "kek_generation": g.kek_generation,
                    "kek_spi": self.ep.group_kek_spi(&g.id).map(hex::encode),
                    "next_message_id": g.next_message_id,
                    "sids_allocated": g.sids_allocated,
                    "next_rekey_secs": g.next_rekey.map(|n| n.saturating_since(t).as_secs()),
                    "registrations_ok": st.registrations_ok,
                    "registrations_refused": st.registrations_refused,
                    "rekeys_sent": st.rekeys_sent,
                    "exclusions": st.exclusions,
                })
            })
            .collect();
        let joined: Vec<Value> = self
            .ep
            .member_groups()
            .iter()
            .map(|(id, g)| {
                let kek = g.kek();
                let sas: Vec<Value> = self
                    .table
                    .group_sas()
                    .filter(|e| &e.group == id)
                    .map(|e| {
                        let (inp, outp) = self.table.group_counters(e);
                        json!({
                            "spi": format!("{:08x}", e.spi),
                            "generation": e.generation,
                            "src": ts_str(&e.src),
                            "dst": ts_str(&e.dst),
                            "in_pkts": inp,
                            "out_pkts": outp,
                            "outbound": e.outbound.is_some(),
                            "sender_id": e.sender_id,
                            "sender_id_bits": e.sender_id_bits,
                        })
                    })
                    .collect();
                json!({
                    "id": id.to_string(),
                    "registered": g.registered,
                    "sender_ids": g.sender_ids,
                    "tek_generation": g.generation(),
                    "kek_spi": kek.map(|k| hex::encode(k.0)),
                    "last_message_id": kek.and_then(|k| k.1),
                    "rekey_destination": g.rekey_destination.map(|d| d.to_string()),
                    "rekeys_accepted": g.stats.rekeys_accepted,
                    "rekeys_rejected": g.stats.rekeys_rejected.values().sum::<u64>(),
                    "rekeys_rejected_by_reason": g.stats.rekeys_rejected.iter().map(|(r, n)| (r.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                    "reregistrations": g.stats.reregistrations,
                    "registrations": g.stats.registrations,
                    "sas": sas,
                })
            })
            .collect();
        json!({ "served": served, "joined": joined })
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
        self.cfg.log_level = new.log_level;
        crate::logging::set_level(new.log_level);
        tracing::warn!("configuration reloaded: connections {names:?}");
        Response::ok(json!({ "connections": names, "needs_restart": restart }))
    }

    fn stats(&self, t: Time) -> Value {
        // From the tally: a stats call at 100k SAs copies none of them.
        let established = self.ep.tally().by_state.get("Established").copied().unwrap_or(0);
        json!({
            "uptime_secs": t.saturating_since(self.started).as_secs(),
            "ike_sas": self.ep.ike_sa_count(),
            "ike_sas_established": established,
            "half_open": self.ep.half_open_count(),
            "child_sas": self.table.child_count(),
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
                    // The outer addresses in the table (RFC 4555: they
                    // follow the peer's moves).
                    c["outer_local"] = json!(e.local.to_string());
                    c["outer_remote"] = json!(e.remote.to_string());
                    c["installed_secs"] = json!(t.saturating_since(e.installed_at).as_secs());
                    c["rekey_secs"] = json!(e.lifetime.rekey_secs);
                    c["ts_local"] = json!(e.ts_local.iter().map(ts_str).collect::<Vec<_>>());
                    c["ts_remote"] = json!(e.ts_remote.iter().map(ts_str).collect::<Vec<_>>());
                    c["in_bytes"] = json!(k.in_bytes);
                    c["in_pkts"] = json!(k.in_pkts);
                    c["out_bytes"] = json!(k.out_bytes);
                    c["out_pkts"] = json!(k.out_pkts);
                    c["seq_next"] = json!(k.seq_next);
                    // What the dataplane runs each direction on (it notes
                    // fallbacks from ipsec-mb to ring there, and refusals).
                    c["in_backend"] = json!(k.in_backends.names());
                    c["out_backend"] = json!(k.out_backends.names());
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
                "eap_identity": self.eap_ids.get(&i.ike_sa),
                "suite": i.suite.as_ref().map(|s| format!(
                    "{:?}{}/{:?}{}/{}",
                    s.encr,
                    s.key_bits.map(|b| format!("-{b}")).unwrap_or_default(),
                    s.prf,
                    if s.integ == ike_wire::IntegId::NONE { String::new() } else { format!("/{:?}", s.integ) },
                    key_exchanges(s).join("+")
                )),
                "key_exchanges": i.suite.as_ref().map(key_exchanges),
                "pq": i.suite.as_ref().map(ike_proto::IkeSuite::has_pq_ke),
                "established_secs": up.map(|u| t.saturating_since(u.established_at).as_secs()),
                "virtual_ips": up.map(|u| u.virtual_ips.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                "dns": up.map(|u| u.dns.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                "nat_local": up.map(|u| u.nat_local),
                "nat_remote": up.map(|u| u.nat_remote),
                "ppk": i.ppk,
                "mobike": match &i.ext.mobike {
                    ike_proto::Mobike::Off => Value::Null,
                    ike_proto::Mobike::On(m) => json!({
                        "moves": m.moves,
                        "pending": m.pending.map(|p| p.remote.to_string()),
                        "peer_addresses": m.peer_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    }),
                },
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

/// A Child SA's dataplane counters as accounting totals.
fn totals(c: &crate::table::ChildCounters) -> crate::aaa::Totals {
    crate::aaa::Totals { in_octets: c.in_bytes, out_octets: c.out_bytes, in_pkts: c.in_pkts, out_pkts: c.out_pkts }
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
    // The dataplane writes its static SAs at start in one transaction,
    // which may be longer than a transaction's wait with many of them:
    // try for up to 5 s rather than fail.
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

/// One UDP socket's reader thread: sorts datagrams into the loop's two
/// datagram queues and drops, counted, what does not fit.
struct Reader {
    socket: UdpSocket,
    local: SocketAddr,
    /// The NAT-T port: IKE datagrams start with the non-ESP marker.
    natt: bool,
    init: Sender<Datagram>,
    sa: Sender<Datagram>,
    recycled: Receiver<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
    metrics: IkeMetrics,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(self) {
        let mut buf = vec![0u8; 65536];
        let dropped = |queue: &str| self.metrics.datagrams_dropped.with_label_values(&[queue, "queue_full"]);
        let (dropped_init, dropped_sa) = (dropped("init"), dropped("sa"));
        // A buffer whose datagram was dropped, for the next one.
        let mut spare: Option<Vec<u8>> = None;
        while !self.stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buf) {
                Ok((n, remote)) => {
                    let bytes = &buf[..n];
                    let (queue, dropped) = if is_init_request(bytes, self.natt) { (&self.init, &dropped_init) } else { (&self.sa, &dropped_sa) };
                    // Both queues together hold at most MAX_QUEUED_BYTES.
                    if self.queued_bytes.fetch_add(n, Ordering::Relaxed) + n > MAX_QUEUED_BYTES {
                        self.queued_bytes.fetch_sub(n, Ordering::Relaxed);
                        dropped.inc();
                        continue;
                    }
                    let mut payload = spare.take().or_else(|| self.recycled.try_recv().ok()).unwrap_or_default();
                    payload.extend_from_slice(bytes);
                    match queue.try_send(Datagram { local: self.local, remote, payload }) {
                        Ok(()) => {}
                        Err(TrySendError::Full(d)) => {
                            self.queued_bytes.fetch_sub(n, Ordering::Relaxed);
                            dropped.inc();
                            let mut p = d.payload;
                            p.clear();
                            spare = Some(p);
                        }
                        Err(TrySendError::Disconnected(_)) => return,
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
}

/// Whether a datagram is an IKE_SA_INIT request (RFC 7296 §3.1: exchange
/// type 34, R flag clear, SPIr zero), read from the fixed header alone:
/// those go to the `init` queue, everything else (including what is not
/// IKE at all, which the endpoint drops) to `sa`.
fn is_init_request(datagram: &[u8], natt: bool) -> bool {
    let ike = if natt {
        match datagram.strip_prefix(&ike_wire::NON_ESP_MARKER) {
            Some(b) => b,
            None => return false,
        }
    } else {
        datagram
    };
    ike.len() >= 28 && ike[18] == 34 && ike[19] & 0x20 == 0 && ike[8..16] == [0; 8]
}

/// Runs a cluster hook (`on_takeover`, `on_drain`) and waits for it (at
/// most 10 s): the service address must be here before the IKE SAs it
/// serves speak from it. Its failure is logged, not fatal.
fn run_hook(path: &std::path::Path, env: &[(&str, String)]) {
    let mut cmd = std::process::Command::new(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    match cmd.stdin(std::process::Stdio::null()).spawn() {
        Ok(mut child) => loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => break,
                Ok(Some(st)) => {
                    tracing::warn!("cluster hook {}: {st}", path.display());
                    break;
                }
                Ok(None) if started.elapsed() > Duration::from_secs(10) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    tracing::warn!("cluster hook {}: killed after 10 s", path.display());
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    tracing::warn!("cluster hook {}: {e}", path.display());
                    break;
                }
            }
        },
        Err(e) => tracing::warn!("cluster hook {}: {e}", path.display()),
    }
}
