//! The endpoint: many IKE SAs behind one sans-IO interface, quinn-proto
//! style. The owner feeds datagrams, timer expiries and commands in
//! (`handle_*`) and pulls datagrams, events and the next deadline out
//! (`poll_*`).
//!
//! Guarantees:
//! * Deterministic: time comes in as [`Time`], randomness from the injected
//!   RNG, crypto from the injected provider; SAs live in ordered maps. The
//!   same seed and the same calls produce the same bytes.
//! * No input panics the endpoint; anything malformed, unauthenticated or
//!   unexpected is dropped or answered with the Notify [`ProtoError::notify`]
//!   picks.
//! * IKE_SA_INIT requests (RFC 7296 §2.6) pass these checks, cheapest
//!   first, before any key exchange or IKE SA is spent on them:
//!   1. retransmits (same SPIi and Ni, same bytes) get the cached response;
//!   2. above `half_open_limit` half-open SAs requests are dropped, and so
//!      are requests from an address already holding
//!      `half_open_per_peer_limit` half-open SAs;
//!   3. from `cookie_threshold` half-open SAs on, a request without a valid
//!      cookie gets a stateless COOKIE answer (`version | HMAC-SHA-256(secret,
//!      Ni | IPi | SPIi)`, the secret rotated every `cookie_secret_lifetime`,
//!      the previous one still accepted): a forged or expired cookie costs
//!      one HMAC, no key exchange, no state;
//!   4. the proposal and the KE payload's group (NO_PROPOSAL_CHOSEN,
//!      INVALID_KE_PAYLOAD, no state);
//!   5. only then the key exchange and a half-open IKE SA.
//!
//!   Every outcome is counted ([`Endpoint::init_counters`]), and an owner
//!   that computes key exchanges ahead asks
//!   [`Endpoint::plan_init_key_exchanges`], which applies the same checks,
//!   so precomputation never spends what the endpoint would not.
//! * Timers run on the monotonic [`Time`] the owner passes; the wall-clock
//!   [`UnixTime`] (certificate validity only) comes through
//!   [`Endpoint::set_unix_time`] and moves no timer.
//! * The endpoint never opens sockets: each [`Transmit`] names the local
//!   address (port 500, or the NAT-T port after NAT detection, §2.23) to
//!   send from.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ike_crypto::prf::HashAlg;
use ike_crypto::{CryptoProvider, Rng};
use ike_wire::{strip_non_esp_marker, ExchangeType, Flags, Header, Message, Payload, PayloadType};

use crate::config::{EndpointConfig, Identity};
use crate::error::ProtoError;
use crate::event::{ChildSaHandle, ChildSaInstall, Command, CommandError, DownReason, Event, IkeSaHandle, Transmit};
use crate::ike_sa::{IkeSa, InitChoice, Queued};
use crate::message;
use crate::sa::{Alloc, Ctx, Effect, Outputs, Pools};
use crate::time::{Time, UnixTime};

/// The §2.6 cookie secret, rotated.
struct CookieJar {
    version: u8,
    secret: [u8; 32],
    previous: Option<(u8, [u8; 32])>,
    rotate_at: Time,
    lifetime: std::time::Duration,
}

impl CookieJar {
    fn compute(version: u8, secret: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        let ip = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let mac = HashAlg::Sha256.hmac(secret, &[ni, &ip, &spi_i.to_be_bytes()]).map(|m| m.to_vec()).unwrap_or_default();
        let mut c = vec![version];
        c.extend_from_slice(&mac);
        c
    }

    fn cookie(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        Self::compute(self.version, &self.secret, ni, ip, spi_i)
    }

    /// Whether `cookie` is one we handed out for (Ni, IPi, SPIi) under the
    /// current or the previous secret. Stateless and cheap: one
    /// HMAC-SHA-256 over about 60 octets, compared in constant time.
    /// With `at`, as it will answer once the secret is rotated for that
    /// instant (for planning ahead): after one due rotation only the
    /// current secret still counts, after two none.
    fn verify(&self, at: Option<Time>, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some(&v) = cookie.first() else { return false };
        let (rotating, both_gone) = match at {
            Some(t) => (t >= self.rotate_at, t >= self.rotate_at + self.lifetime),
            None => (false, false),
        };
        if both_gone {
            return false;
        }
        let secret = if v == self.version {
            &self.secret
        } else {
            match &self.previous {
                Some((pv, ps)) if *pv == v && !rotating => ps,
                _ => return false,
            }
        };
        let expected = Self::compute(v, secret, ni, ip, spi_i);
        expected.len() == cookie.len() && expected.iter().zip(cookie).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }

    /// A new secret once the current one has served its lifetime. The
    /// previous secret is kept for one more lifetime (cookies handed out
    /// just before the rotation still work), unless that too is over: a
    /// cookie never outlives two lifetimes of its secret, however long
    /// the endpoint went without a request.
    fn rotate(&mut self, now: Time, rng: &mut dyn Rng) {
        if now < self.rotate_at {
            return;
        }
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let old = std::mem::replace(&mut self.secret, secret);
        self.previous = (now < self.rotate_at + self.lifetime).then_some((self.version, old));
        self.version = self.version.wrapping_add(1);
        self.rotate_at = now + self.lifetime;
    }
}

/// The Nonce payload's data (Ni of an IKE_SA_INIT request).
fn nonce_of(msg: &Message<'_>) -> Option<Vec<u8>> {
    msg.payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.data.to_vec()),
        _ => None,
    })
}

/// One IKE SA as [`Endpoint::ike_sas`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeSaInfo {
    pub ike_sa: IkeSaHandle,
    pub connection: String,
    /// Connecting, HalfOpen, Established, Rekeyed, Deleting, PeerDeleted
    /// or Closed.
    pub state: &'static str,
    /// Whether we hold the I flag (original initiator or last rekeyer).
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Set once authenticated.
    pub remote_id: Option<crate::config::Identity>,
    pub suite: Option<crate::proposal::IkeSuite>,
    /// (handle, inbound SPI, outbound SPI) of its Child SAs.
    pub child_sas: Vec<(ChildSaHandle, u32, u32)>,
    /// An RFC 8784 PPK was mixed into this SA's keys (or, after a rekey,
    /// into those of the SA it descends from).
    pub ppk: bool,
    /// What the ipsecme extensions negotiated (split DNS, RFC 8983, ...).
    pub ext: crate::ike_sa::ExtState,
}

/// IKE SAs by state (the names of [`IkeSaInfo::state`]) and how many of
/// the established ones are keyed with ML-KEM, maintained as SAs change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaTally {
    pub by_state: BTreeMap<&'static str, usize>,
    pub pq_established: usize,
}

impl SaTally {
    fn add(&mut self, (state, pq): (&'static str, bool), n: isize) {
        let c = self.by_state.entry(state).or_default();
        *c = c.saturating_add_signed(n);
        if *c == 0 {
            self.by_state.remove(state);
        }
        if pq {
            self.pq_established = self.pq_established.saturating_add_signed(n);
        }
    }
}

/// A sans-IO IKEv2 endpoint owning many IKE SAs.
pub struct Endpoint {
    config: EndpointConfig,
    crypto: Box<dyn CryptoProvider>,
    rng: Box<dyn Rng + Send>,
    sas: BTreeMap<IkeSaHandle, IkeSa>,
    alloc: Alloc,
    pools: Pools,
    out: Outputs,
    /// Every SA's next deadline, ordered: `poll_timeout` and
    /// `handle_timeout` cost O(log n), not a scan of every SA.
    deadlines: std::collections::BTreeSet<(Time, IkeSaHandle)>,
    deadline_of: BTreeMap<IkeSaHandle, Time>,
    /// Authenticated peer identity → its IKE SAs (any state), so that
    /// INITIAL_CONTACT (RFC 7296 §2.4) finds the SAs it replaces without a
    /// scan of every SA; kept by [`Self::refile`].
    by_remote_id: BTreeMap<Identity, std::collections::BTreeSet<IkeSaHandle>>,
    remote_id_of: BTreeMap<IkeSaHandle, Identity>,
    /// IKE SAs by state name and whether each is an established SA keyed
    /// with ML-KEM, kept by [`Self::refile`]: the owner's gauges read these
    /// counts instead of visiting every SA.
    tally: SaTally,
    tally_of: BTreeMap<IkeSaHandle, (&'static str, bool)>,
    /// Connection name → index in `config.connections` (`Initiate`).
    conn_index: std::collections::HashMap<String, usize>,
    /// Responder SAs between IKE_SA_INIT and IKE_AUTH (§2.6 load measure).
    half_open: BTreeMap<IkeSaHandle, IpAddr>,
    /// Half-open SAs per peer address (per-peer limit).
    half_open_by_peer: BTreeMap<IpAddr, usize>,
    /// (SPIi, Ni) of answered IKE_SA_INIT requests → their SA.
    init_index: BTreeMap<(u64, Vec<u8>), IkeSaHandle>,
    cookies: CookieJar,
    init_counters: InitCounters,
    /// The wall-clock date, for certificate validity only.
    unix: UnixTime,
    /// RFC 9838: the groups we serve (GCKS) and belong to (GM).
    groups: crate::group::GroupState,
    /// Snapshots ([`crate::snapshot`]): whether the owner keeps them, the
    /// SAs touched since [`Self::take_changes`], and for each SA with a
    /// stored snapshot its key and what it was written from.
    track: bool,
    dirty: std::collections::BTreeSet<IkeSaHandle>,
    stored: BTreeMap<IkeSaHandle, ([u8; 8], crate::ike_sa::Fingerprint)>,
}

/// What became of IKE_SA_INIT requests, by the check that decided
/// (RFC 7296 §2.6), for the owner's metrics. Only `admitted` requests cost
/// a key exchange; every other outcome is decided before one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitCounters {
    /// Retransmits of a request already answered: the cached response.
    pub retransmits: u64,
    /// Dropped: `half_open_limit` half-open SAs held.
    pub half_open_limit: u64,
    /// Dropped: the address holds `half_open_per_peer_limit` half-open SAs.
    pub peer_limit: u64,
    /// Cookies required, none presented: answered with a COOKIE.
    pub cookie_missing: u64,
    /// Cookies required, the one presented did not verify (forged, of an
    /// expired secret, or for another address, SPIi or Ni): answered with
    /// a fresh COOKIE.
    pub cookie_invalid: u64,
    /// Refused before the key exchange: malformed, no acceptable proposal,
    /// INVALID_KE_PAYLOAD.
    pub refused: u64,
    /// Passed every check: a key exchange was computed for it.
    pub admitted: u64,
}

/// The outcome of the checks on an IKE_SA_INIT request ([`Endpoint::judge_init`]).
enum InitVerdict {
    Retransmit(IkeSaHandle),
    HalfOpenLimit,
    PeerLimit,
    CookieMissing,
    CookieInvalid,
    Refused(ProtoError),
    Admit(InitChoice),
}

/// What a burst has admitted so far, while planning it
/// ([`Endpoint::plan_init_key_exchanges`]).
#[derive(Default)]
struct Planned {
    admitted: usize,
    per_peer: BTreeMap<IpAddr, usize>,
    requests: std::collections::BTreeSet<(u64, Vec<u8>)>,
}

impl Endpoint {
    /// A new endpoint. `now` (monotonic) starts the cookie secret's
    /// lifetime; `unix` is the date until [`Self::set_unix_time`] gives
    /// another.
    pub fn new(config: EndpointConfig, crypto: Box<dyn CryptoProvider>, mut rng: Box<dyn Rng + Send>, now: Time, unix: UnixTime) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let lifetime = config.cookie_secret_lifetime;
        let rotate_at = now + lifetime;
        let config_groups = config.groups.clone();
        Self {
            config,
            crypto,
            rng,
            sas: BTreeMap::new(),
            alloc: Alloc::default(),
            pools: Pools::default(),
            out: Outputs::default(),
            deadlines: std::collections::BTreeSet::new(),
            deadline_of: BTreeMap::new(),
            by_remote_id: BTreeMap::new(),
            remote_id_of: BTreeMap::new(),
            tally: SaTally::default(),
            tally_of: BTreeMap::new(),
            conn_index: std::collections::HashMap::new(),
            half_open: BTreeMap::new(),
            half_open_by_peer: BTreeMap::new(),
            init_index: BTreeMap::new(),
            cookies: CookieJar { version: 0, secret, previous: None, rotate_at, lifetime },
            init_counters: InitCounters::default(),
            unix,
            groups: crate::group::GroupState { gcks: crate::group::Gcks::new(&config_groups), gm: Default::default() },
            track: false,
            dirty: Default::default(),
            stored: BTreeMap::new(),
        }
    }

    /// The wall-clock date, for certificate validity (RFC 5280 §6.1.3) and
    /// nothing else: give it before feeding input that may carry
    /// certificates (esprit-ike: every turn of its loop). Timers never read
    /// it, so a stepped wall clock moves none of them.
    pub fn set_unix_time(&mut self, unix: UnixTime) {
        self.unix = unix;
    }

    /// What became of IKE_SA_INIT requests so far.
    pub fn init_counters(&self) -> InitCounters {
        self.init_counters
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Replaces the connection policies (a configuration reload). New
    /// IKE SAs and `Initiate` use the new set; existing IKE SAs keep the
    /// policy they were set up with until they are rekeyed or closed.
    pub fn set_connections(&mut self, connections: Vec<std::sync::Arc<crate::config::ConnectionConfig>>) {
        self.config.connections = connections;
        self.conn_index.clear();
    }

    /// Re-files SA `h` (after anything that may have changed it, or after
    /// it is gone) under its current deadline, its authenticated peer
    /// identity and its state in the tally. Each is O(log n): nothing here
    /// visits other SAs.
    fn refile(&mut self, h: IkeSaHandle) {
        let sa = self.sas.get(&h);
        let deadline = sa.and_then(IkeSa::deadline);
        if self.deadline_of.get(&h) != deadline.as_ref() {
            if let Some(old) = self.deadline_of.remove(&h) {
                self.deadlines.remove(&(old, h));
            }
            if let Some(d) = deadline {
                self.deadlines.insert((d, h));
                self.deadline_of.insert(h, d);
            }
        }
        let id = sa.and_then(|sa| sa.remote_id.as_ref());
        if self.remote_id_of.get(&h) != id {
            if let Some(old) = self.remote_id_of.remove(&h) {
                if let Some(set) = self.by_remote_id.get_mut(&old) {
                    set.remove(&h);
                    if set.is_empty() {
                        self.by_remote_id.remove(&old);
                    }
                }
            }
            if let Some(id) = id {
                self.by_remote_id.entry(id.clone()).or_default().insert(h);
                self.remote_id_of.insert(h, id.clone());
            }
        }
        let now = sa.map(|sa| (sa.state_name(), sa.is_established() && sa.keys.as_ref().is_some_and(|k| k.suite.has_pq_ke())));
        if self.tally_of.get(&h) != now.as_ref() {
            if let Some(old) = self.tally_of.remove(&h) {
                self.tally.add(old, -1);
            }
            if let Some(t) = now {
                self.tally.add(t, 1);
                self.tally_of.insert(h, t);
            }
        }
    }

    fn insert_sa(&mut self, sa: IkeSa) {
        let h = sa.handle;
        self.sas.insert(h, sa);
        self.refile(h);
        self.touch(h);
    }

    fn touch(&mut self, h: IkeSaHandle) {
        if self.track {
            self.dirty.insert(h);
        }
    }

    /// In a cluster (DESIGN.md §8): every IKE SPI and inbound ESP SPI this
    /// endpoint allocates from now on has `slot` (1-255, the node's) as its
    /// top octet, so nodes never allocate the same SPI and the slot names
    /// the node that made it.
    pub fn set_spi_slot(&mut self, slot: Option<u8>) {
        assert!(slot != Some(0), "slot 0 would make a zero octet (ESP SPIs 1-255 are reserved)");
        self.alloc.spi_slot = slot;
    }

    /// Gives a snapshot taken on another node fresh handles here (its own
    /// may name SAs of this endpoint); call before [`Self::restore`].
    pub fn rehandle(&mut self, s: &mut crate::snapshot::IkeSaSnapshot) {
        s.handle = self.alloc.ike_handle().0;
        for c in &mut s.children {
            c.handle = self.alloc.child_handle().0;
        }
    }

    /// From now on, [`Self::take_changes`] reports what changed.
    pub fn keep_snapshots(&mut self) {
        self.track = true;
    }

    /// The snapshots to write and the store keys to delete since the last
    /// call (call once per event-loop turn, after the turn's inputs). An
    /// SA is written again only when something a snapshot holds moved
    /// (Message IDs, Child SAs, rekey time, peer address, leases): a
    /// retransmission or an ESP note writes nothing.
    pub fn take_changes(&mut self, now: Time) -> crate::snapshot::Changes {
        let mut c = crate::snapshot::Changes::default();
        for h in std::mem::take(&mut self.dirty) {
            let sa = self.sas.get(&h);
            match sa.and_then(IkeSa::fingerprint) {
                Some(fp) => {
                    if self.stored.get(&h).is_some_and(|(_, f)| *f == fp) {
                        continue;
                    }
                    let Some(s) = sa.and_then(|sa| sa.snapshot(now)) else { continue };
                    self.stored.insert(h, (s.key(), fp));
                    c.put.push(s);
                }
                None => {
                    if let Some((key, _)) = self.stored.remove(&h) {
                        c.delete.push(key);
                    }
                }
            }
        }
        c
    }

    /// Brings back IKE SAs from snapshots taken `elapsed` ago (call on a
    /// fresh endpoint before any input, or, for a cluster takeover, with
    /// snapshots [`Self::rehandle`]d). Each keeps its handle, SPIs,
    /// Child SA handles and pool leases; with `mid_sync` configured it
    /// starts with an RFC 6311 sync. Returns, per snapshot, what became of
    /// it; a restored SA's Child SAs come as installs without keys (their
    /// keys are in the SA table, which the owner adopts them from).
    pub fn restore(&mut self, now: Time, snapshots: &[crate::snapshot::IkeSaSnapshot], elapsed: std::time::Duration) -> Vec<(crate::snapshot::RestoreOutcome, Vec<ChildSaInstall>)> {
        use crate::snapshot::RestoreOutcome;
        let mut out = Vec::new();
        for s in snapshots {
            let Some(conn) = self.config.connections.iter().find(|c| c.name == s.connection).cloned() else {
                out.push((RestoreOutcome::NoConnection(s.connection.clone()), Vec::new()));
                continue;
            };
            let h = IkeSaHandle(s.handle);
            let ours = if s.initiator { s.spi_i } else { s.spi_r };
            let children: Vec<(ChildSaHandle, u32)> = s.children.iter().map(|c| (ChildSaHandle(c.handle), c.spi_in)).collect();
            if self.sas.contains_key(&h) || !self.alloc.reserve_restored(h, ours, &children) {
                out.push((RestoreOutcome::Duplicate, Vec::new()));
                continue;
            }
            let Self { config, crypto, rng, alloc, pools, out: outputs, unix, groups, .. } = self;
            let mut ctx = Ctx { now, unix: *unix, crypto: &**crypto, rng: &mut **rng, config, out: outputs, alloc, pools, groups };
            let sa = match IkeSa::restore(&mut ctx, s, conn.clone(), elapsed) {
                Ok(sa) => sa,
                Err(_) => {
                    self.alloc.ike_spis.remove(&ours);
                    for (_, spi) in &children {
                        self.alloc.release_child_spi(*spi);
                    }
                    out.push((RestoreOutcome::BadKeys, Vec::new()));
                    continue;
                }
            };
            if let Some(pool) = &conn.pool {
                for a in &sa.leases {
                    self.pools.reserve(pool, *a);
                }
            }
            let installs = sa
                .children
                .values()
                .map(|c| ChildSaInstall {
                    ike_sa: h,
                    child_sa: c.handle,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    keys_in: crate::event::ChildKeys { encr: Default::default(), integ: Default::default() },
                    keys_out: crate::event::ChildKeys { encr: Default::default(), integ: Default::default() },
                    suite: c.suite,
                    mode: c.mode,
                    ts_local: c.ts_local.clone(),
                    ts_remote: c.ts_remote.clone(),
                    lifetime: conn.child.lifetime,
                    local: sa.local,
                    remote: sa.remote,
                    udp_encap: sa.nat_local || sa.nat_remote,
                    rekey_of: None,
                    sec_label: c.sec_label.clone(),
                    compression: c.compression,
                })
                .collect::<Vec<_>>();
            let fp = sa.fingerprint();
            self.insert_sa(sa);
            if let Some(fp) = fp {
                self.stored.insert(h, (s.key(), fp));
            }
            out.push((RestoreOutcome::Restored { ike_sa: h, children: installs.len() }, installs));
            // Start the sync (or nothing) now.
            self.with_sa(now, h, |sa, ctx| sa.pump(ctx));
        }
        out
    }

    /// Runs `f` on SA `h` with a context, then applies its effects.
    fn with_sa(&mut self, now: Time, h: IkeSaHandle, f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>)) {
        let Self { config, crypto, rng, sas, alloc, pools, out, unix, groups, .. } = self;
        let Some(sa) = sas.get_mut(&h) else { return };
        let mut ctx = Ctx { now, unix: *unix, crypto: &**crypto, rng: &mut **rng, config, out, alloc, pools, groups };
        f(sa, &mut ctx);
        if !sa.is_half_open() {
            self.forget_half_open(h);
        }
        self.refile(h);
        self.touch(h);
        self.apply_effects(now);
    }

    fn apply_effects(&mut self, now: Time) {
        while !self.out.effects.is_empty() {
            let effects = std::mem::take(&mut self.out.effects);
            for e in effects {
                match e {
                    Effect::NewIkeSa(sa) => self.insert_sa(*sa),
                    Effect::MoveChildren { from, to } => {
                        self.touch(from);
                        let (children, leases) = match self.sas.get_mut(&from) {
                            Some(old) => (std::mem::take(&mut old.children), std::mem::take(&mut old.leases)),
                            None => continue,
                        };
                        if self.sas.get(&to).is_some_and(|sa| sa.closed_until().is_none()) {
                            self.with_sa(now, to, |sa, _| sa.adopt_children(children, leases));
                        } else {
                            // The successor is gone: its Child SAs are too.
                            for c in children.values() {
                                self.out.events.push_back(Event::ChildSaDelete { ike_sa: from, child_sa: c.handle, spi_in: c.spi_in, spi_out: c.spi_out });
                                self.alloc.release_child_spi(c.spi_in);
                            }
                            if let Some(pool) = self.sas.get(&from).and_then(|sa| sa.conn.pool.clone()) {
                                for a in leases {
                                    self.pools.release(&pool.name, a);
                                }
                            }
                        }
                    }
                    Effect::Resolved { successor } => {
                        if let Some(sa) = self.sas.get_mut(&successor) {
                            sa.predecessor = None;
                        }
                    }
                    Effect::DeleteIkeSa(h) => {
                        self.with_sa(now, h, |sa, ctx| {
                            sa.enqueue(Queued::DeleteIke);
                            sa.pump(ctx);
                        });
                    }
                    Effect::Reinitiate { conn, local, remote } => {
                        let Self { config, crypto, rng, alloc, pools, out, unix, groups, .. } = self;
                        let mut ctx = Ctx { now, unix: *unix, crypto: &**crypto, rng: &mut **rng, config, out, alloc, pools, groups };
                        if let Ok(sa) = IkeSa::initiate(&mut ctx, conn, local, remote) {
                            self.insert_sa(sa);
                        }
                    }
                    Effect::InitialContact { keep, remote_id } => {
                        // Through the identity index: the cost is the SAs
                        // of this identity, not every SA held.
                        let others: Vec<IkeSaHandle> = self
                            .by_remote_id
                            .get(&remote_id)
                            .into_iter()
                            .flatten()
                            .filter(|h| **h != keep && self.sas.get(h).is_some_and(IkeSa::is_established))
                            .copied()
                            .collect();
                        for h in others {
                            // §2.4: the peer rebooted; its old SAs are gone
                            // on its side, so no Delete is sent.
                            self.with_sa(now, h, |sa, ctx| sa.close(ctx, DownReason::Replaced));
                        }
                    }
                }
            }
        }
    }

    /// A UDP datagram arrived on `local` from `remote`. `payload` is the
    /// UDP payload: on the NAT-T port it starts with the non-ESP marker
    /// (anything else there is ESP or a keepalive, not ours).
    pub fn handle_datagram(&mut self, now: Time, local: SocketAddr, remote: SocketAddr, payload: &[u8]) {
        let bytes = if local.port() == self.config.natt_port {
            match strip_non_esp_marker(payload) {
                Ok(b) => b,
                Err(_) => return,
            }
        } else {
            payload
        };
        // §2.21.4 / §2.5: malformed headers and unknown SPIs are dropped
        // without answer (an unprotected error would be spoofable).
        let header = match Header::parse_datagram(bytes) {
            Ok(h) => h,
            Err(ike_wire::Error::UnsupportedMajorVersion(v)) if v > 2 => {
                self.answer_major_version(bytes, local, remote);
                return;
            }
            Err(_) => return,
        };
        if header.exchange_type == ExchangeType::IKE_SA_INIT && !header.flags.response() {
            self.handle_init_request(now, &header, bytes, local, remote);
            return;
        }
        if header.exchange_type == ExchangeType::GSA_REKEY && !header.flags.response() {
            // RFC 9838 §2.4.1: multicast to the group, on no IKE SA.
            self.handle_group_rekey(now, bytes);
            return;
        }
        let spi = if header.flags.initiator() { header.spi_r } else { header.spi_i };
        let Some(&h) = self.alloc.ike_spis.get(&spi) else { return };
        self.with_sa(now, h, |sa, ctx| sa.handle_datagram(ctx, &header, bytes, local, remote));
        self.reap(now);
    }

    /// Whether IKE_SA_INIT requests without a valid cookie are answered
    /// with one now (too many half-open SAs, RFC 7296 §2.6).
    pub fn cookies_required(&self) -> bool {
        self.half_open() >= self.config.cookie_threshold
    }

    fn half_open(&self) -> usize {
        self.half_open.len()
    }

    fn forget_half_open(&mut self, h: IkeSaHandle) {
        if let Some(ip) = self.half_open.remove(&h) {
            if let Some(n) = self.half_open_by_peer.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.half_open_by_peer.remove(&ip);
                }
            }
        }
    }

    /// The checks of an IKE_SA_INIT request, cheapest first, before any
    /// work (RFC 7296 §2.6): a retransmit (§2.1: same SPIi and Ni) gets the
    /// cached answer; then the global half-open limit and the per-address
    /// one (map lookups); then, while cookies are required, the cookie (one
    /// HMAC); then the proposal and the KE payload's group. Only a request
    /// that passes all of them costs a key exchange and an IKE SA. Nothing
    /// here changes state. `plan` carries what earlier requests of the same
    /// burst were admitted, and the instant the cookie secret will be
    /// rotated for, when planning ahead ([`Self::plan_init_key_exchanges`]).
    fn judge_init(&self, plan: Option<(Time, &Planned)>, spi_i: u64, msg: &Message<'_>, ni: &[u8], ip: IpAddr) -> InitVerdict {
        let key = (spi_i, ni.to_vec());
        if let Some(&h) = self.init_index.get(&key) {
            return InitVerdict::Retransmit(h);
        }
        let (extra, extra_peer) = match plan {
            Some((_, p)) => {
                if p.requests.contains(&key) {
                    // A retransmit of a request earlier in the same burst.
                    return InitVerdict::Retransmit(IkeSaHandle(0));
                }
                (p.admitted, p.per_peer.get(&ip).copied().unwrap_or(0))
            }
            None => (0, 0),
        };
        let half_open = self.half_open() + extra;
        if half_open >= self.config.half_open_limit {
            return InitVerdict::HalfOpenLimit;
        }
        // One address may not hold more half-open SAs than this (strongSwan's
        // block_threshold); a cookie would not stop it, it can answer them.
        if self.half_open_by_peer.get(&ip).copied().unwrap_or(0) + extra_peer >= self.config.half_open_per_peer_limit {
            return InitVerdict::PeerLimit;
        }
        if half_open >= self.config.cookie_threshold {
            // §2.6: the COOKIE must be the first payload; one that does not
            // verify is treated as absent (and counted apart).
            let presented = match msg.payloads.first() {
                Some(Payload::Notify(n)) if n.notify_type == ike_wire::NotifyType::COOKIE => Some(&n.data[..]),
                _ => None,
            };
            match presented {
                None => return InitVerdict::CookieMissing,
                Some(c) if !self.cookies.verify(plan.map(|(t, _)| t), c, ni, ip, spi_i) => return InitVerdict::CookieInvalid,
                Some(_) => {}
            }
        }
        match IkeSa::choose_init(&self.config, &self.config.connections, msg) {
            Ok(choice) => InitVerdict::Admit(choice),
            Err(e) => InitVerdict::Refused(e),
        }
    }

    /// The key exchanges [`Self::handle_datagram`] will compute if given
    /// `burst` (local, remote, UDP payload) in this order at `now`: the
    /// (KE method, initiator KE data) of each IKE_SA_INIT request that
    /// passes every check of [`Self::judge_init`], earlier admissions of
    /// the burst counted against the limits and the cookie threshold. The
    /// owner may compute those ahead, in parallel, and serve them through
    /// its crypto provider (esprit-ike's `precompute`); a request without a
    /// valid cookie (while cookies are required), over a half-open limit, a
    /// retransmit or one refused for its proposal is never among them.
    /// Changes nothing.
    pub fn plan_init_key_exchanges<'a>(&self, now: Time, burst: impl IntoIterator<Item = (SocketAddr, SocketAddr, &'a [u8])>) -> Vec<(u16, Vec<u8>)> {
        let mut planned = Planned::default();
        let mut out = Vec::new();
        for (local, remote, payload) in burst {
            let bytes = if local.port() == self.config.natt_port {
                match strip_non_esp_marker(payload) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            } else {
                payload
            };
            let Ok(header) = Header::parse_datagram(bytes) else { continue };
            if header.exchange_type != ExchangeType::IKE_SA_INIT || header.flags.response() {
                continue;
            }
            let Ok(msg) = Message::parse(bytes) else { continue };
            let Some(ni) = nonce_of(&msg) else { continue };
            if let InitVerdict::Admit(choice) = self.judge_init(Some((now, &planned)), header.spi_i, &msg, &ni, remote.ip()) {
                let ke = msg.payloads.iter().find_map(|p| match p {
                    Payload::Ke(k) => Some(k.data.to_vec()),
                    _ => None,
                });
                if let Some(data) = ke {
                    out.push((choice.suite.ke.0, data));
                }
                planned.admitted += 1;
                *planned.per_peer.entry(remote.ip()).or_default() += 1;
                planned.requests.insert((header.spi_i, ni));
            }
        }
        out
    }

    fn handle_init_request(&mut self, now: Time, header: &Header, bytes: &[u8], local: SocketAddr, remote: SocketAddr) {
        let Ok(msg) = Message::parse(bytes) else { return };
        let Some(ni) = nonce_of(&msg) else {
            self.init_counters.refused += 1;
            self.answer_init_error(header, local, remote, &ProtoError::PayloadCount(PayloadType::NONCE));
            return;
        };
        self.rotate_cookie_secret(now);
        let choice = match self.judge_init(None, header.spi_i, &msg, &ni, remote.ip()) {
            InitVerdict::Retransmit(h) => {
                // §2.1: answered from the cache if it is bit-identical.
                self.init_counters.retransmits += 1;
                self.with_sa(now, h, |sa, ctx| sa.handle_datagram(ctx, header, bytes, local, remote));
                return;
            }
            InitVerdict::HalfOpenLimit => {
                self.init_counters.half_open_limit += 1;
                return;
            }
            InitVerdict::PeerLimit => {
                self.init_counters.peer_limit += 1;
                return;
            }
            v @ (InitVerdict::CookieMissing | InitVerdict::CookieInvalid) => {
                if matches!(v, InitVerdict::CookieMissing) {
                    self.init_counters.cookie_missing += 1;
                } else {
                    self.init_counters.cookie_invalid += 1;
                }
                let cookie = self.cookies.cookie(&ni, remote.ip(), header.spi_i);
                self.answer_init_error(header, local, remote, &ProtoError::CookieRequired(cookie));
                return;
            }
            InitVerdict::Refused(e) => {
                self.init_counters.refused += 1;
                self.answer_init_error(header, local, remote, &e);
                return;
            }
            InitVerdict::Admit(choice) => choice,
        };
        self.init_counters.admitted += 1;
        let Self { config, crypto, rng, alloc, pools, out, unix, groups, .. } = self;
        let conns = config.connections.clone();
        let mut ctx = Ctx { now, unix: *unix, crypto: &**crypto, rng: &mut **rng, config, out, alloc, pools, groups };
        match IkeSa::respond_init(&mut ctx, choice, &conns, bytes, &msg, local, remote) {
            Ok((sa, _)) => {
                if let Some(k) = sa.init_key.clone() {
                    self.init_index.insert(k, sa.handle);
                }
                self.half_open.insert(sa.handle, remote.ip());
                *self.half_open_by_peer.entry(remote.ip()).or_default() += 1;
                self.insert_sa(sa);
            }
            Err(e) => self.answer_init_error(header, local, remote, &e),
        }
    }

    /// An unprotected IKE_SA_INIT answer carrying only a Notify (§1.2:
    /// NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, COOKIE, INVALID_SYNTAX);
    /// no state is kept.
    fn answer_init_error(&mut self, request: &Header, local: SocketAddr, remote: SocketAddr, e: &ProtoError) {
        let Some(n) = e.notify() else { return };
        let header = Header::new(request.spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::new(false, true), 0);
        let Ok(bytes) = message::plain(header, vec![Payload::Notify(n)]) else { return };
        let payload = if local.port() == self.config.natt_port {
            let mut v = ike_wire::NON_ESP_MARKER.to_vec();
            v.extend_from_slice(&bytes);
            v
        } else {
            bytes
        };
        self.out.transmits.push_back(Transmit { local, remote, payload });
    }

    /// RFC 7296 §2.5: a request of a higher major version gets an
    /// unprotected INVALID_MAJOR_VERSION in a version 2.0 header naming the
    /// same SPIs, exchange type and Message ID. Responses are dropped.
    fn answer_major_version(&mut self, bytes: &[u8], local: SocketAddr, remote: SocketAddr) {
        let mut r = ike_wire::codec::Reader::new(bytes);
        let (Ok(spi_i), Ok(spi_r), Ok(_next), Ok(_version), Ok(exchange), Ok(flags), Ok(message_id)) =
            (r.u64(), r.u64(), r.u8(), r.u8(), r.u8(), r.u8(), r.u32())
        else {
            return;
        };
        if Flags(flags).response() || spi_i == 0 {
            return;
        }
        let e = ProtoError::Wire(ike_wire::Error::UnsupportedMajorVersion(0));
        let Some(n) = e.notify() else { return };
        let header = Header::new(spi_i, spi_r, ExchangeType(exchange), Flags::new(!Flags(flags).initiator(), true), message_id);
        let Ok(reply) = message::plain(header, vec![Payload::Notify(n)]) else { return };
        let payload = if local.port() == self.config.natt_port {
            let mut v = ike_wire::NON_ESP_MARKER.to_vec();
            v.extend_from_slice(&reply);
            v
        } else {
            reply
        };
        self.out.transmits.push_back(Transmit { local, remote, payload });
    }

    fn rotate_cookie_secret(&mut self, now: Time) {
        self.cookies.rotate(now, &mut *self.rng);
    }

    /// Timers: call when [`Endpoint::poll_timeout`]'s instant has come.
    pub fn handle_timeout(&mut self, now: Time) {
        for h in self.due(now) {
            self.with_sa(now, h, |sa, ctx| {
                if sa.closed_until().is_none() {
                    sa.handle_timeout(ctx);
                }
            });
        }
        self.rotate_cookie_secret(now);
        self.group_timeout(now);
        self.reap(now);
    }

    /// SAs whose deadline has come, in deadline order.
    fn due(&self, now: Time) -> Vec<IkeSaHandle> {
        self.deadlines.range(..=(now, IkeSaHandle(u64::MAX))).map(|(_, h)| *h).collect()
    }

    /// Removes closed SAs whose linger time is over.
    fn reap(&mut self, now: Time) {
        let dead: Vec<IkeSaHandle> =
            self.due(now).into_iter().filter(|h| self.sas.get(h).and_then(IkeSa::closed_until).is_some_and(|u| u <= now)).collect();
        for h in dead {
            let Some(sa) = self.sas.remove(&h) else { continue };
            self.touch(h);
            self.forget_half_open(h);
            self.refile(h);
            self.alloc.ike_spis.remove(&sa.local_spi());
            if let Some(k) = &sa.init_key {
                self.init_index.remove(k);
            }
        }
    }

    /// Carries out a command. `Initiate` returns the new IKE SA's handle;
    /// the others the IKE SA they act on.
    pub fn handle_command(&mut self, now: Time, cmd: Command) -> Result<IkeSaHandle, CommandError> {
        let (h, q) = match cmd {
            Command::Initiate { connection, local, remote } => {
                if self.conn_index.len() != self.config.connections.len() {
                    self.conn_index = self.config.connections.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
                }
                let conn = self
                    .conn_index
                    .get(&connection)
                    .and_then(|i| self.config.connections.get(*i))
                    .filter(|c| c.name == connection)
                    .cloned()
                    .ok_or(CommandError::UnknownConnection(connection))?;
                let Self { config, crypto, rng, alloc, pools, out, unix, groups, .. } = self;
                let mut ctx = Ctx { now, unix: *unix, crypto: &**crypto, rng: &mut **rng, config, out, alloc, pools, groups };
                let sa = IkeSa::initiate(&mut ctx, conn, local, remote).map_err(|e| CommandError::Failed(e.to_string()))?;
                let h = sa.handle;
                self.insert_sa(sa);
                return Ok(h);
            }
            Command::Terminate { ike_sa } => (ike_sa, Queued::Terminate),
            Command::CreateChild { ike_sa } => (ike_sa, Queued::CreateChild),
            Command::RekeyChild { ike_sa, child_sa } => {
                self.child_exists(ike_sa, child_sa)?;
                (ike_sa, Queued::RekeyChild(child_sa))
            }
            Command::DeleteChild { ike_sa, child_sa } => {
                self.child_exists(ike_sa, child_sa)?;
                (ike_sa, Queued::DeleteChild(child_sa))
            }
            Command::RekeyIke { ike_sa } => (ike_sa, Queued::RekeyIke),
            Command::Dpd { ike_sa } => (ike_sa, Queued::Dpd),
        };
        let sa = self.sas.get(&h).ok_or(CommandError::UnknownIkeSa)?;
        if !sa.is_established() {
            return Err(CommandError::NotEstablished);
        }
        self.with_sa(now, h, |sa, ctx| {
            sa.enqueue(q);
            sa.pump(ctx);
        });
        Ok(h)
    }

    /// Tells the endpoint that ESP traffic protected by `ike_sa`'s Child
    /// SAs arrived (the daemon learns it from the dataplane's counters).
    /// RFC 7296 §2.4: a liveness check is only due when nothing
    /// cryptographically protected, IKE or ESP, came from the peer for the
    /// DPD delay, so this postpones it. Unknown or not established SAs are
    /// ignored.
    pub fn note_inbound_esp(&mut self, now: Time, ike_sa: IkeSaHandle) {
        if self.sas.get(&ike_sa).is_some_and(IkeSa::is_established) {
            self.with_sa(now, ike_sa, |sa, ctx| sa.note_inbound_esp(ctx.now));
        }
    }

    fn child_exists(&self, ike_sa: IkeSaHandle, child_sa: ChildSaHandle) -> Result<(), CommandError> {
        let sa = self.sas.get(&ike_sa).ok_or(CommandError::UnknownIkeSa)?;
        if sa.children.contains_key(&child_sa) {
            Ok(())
        } else {
            Err(CommandError::UnknownChildSa)
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event.
    /// The next IKE_AUTH signature job (only with
    /// [`EndpointConfig::defer_signatures`]). Run it anywhere and hand the
    /// result to [`Self::handle_auth_done`]; until then its request waits.
    pub fn poll_auth_job(&mut self) -> Option<crate::auth_job::AuthJob> {
        self.out.jobs.pop_front()
    }

    /// A job from [`Self::poll_auth_job`] is done: its SA answers the
    /// IKE_AUTH request. A result whose SA or request is gone is dropped.
    pub fn handle_auth_done(&mut self, now: Time, done: crate::auth_job::AuthDone) {
        let h = done.ike_sa();
        self.with_sa(now, h, |sa, ctx| sa.resume_auth(ctx, done));
    }

    /// The next EAP Response for the AAA backend ([`crate::eap`]): send it
    /// (esprit-ike: RADIUS) and hand the answer to
    /// [`Self::handle_aaa_answer`]; until then its IKE_AUTH request waits.
    pub fn poll_aaa_request(&mut self) -> Option<crate::eap::AaaRequest> {
        self.out.aaa.pop_front()
    }

    /// The AAA backend's answer to a [`Self::poll_aaa_request`]: the IKE SA
    /// answers its IKE_AUTH request. An answer whose SA or request is gone
    /// is dropped.
    pub fn handle_aaa_answer(&mut self, now: Time, answer: crate::eap::AaaAnswer) {
        let h = answer.ike_sa;
        self.with_sa(now, h, |sa, ctx| sa.resume_eap(ctx, answer));
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let sa_min = self.deadlines.first().map(|(t, _)| *t);
        // The cookie secret only needs rotating while cookies are handed out.
        let cookie = (self.half_open() >= self.config.cookie_threshold).then_some(self.cookies.rotate_at);
        [sa_min, cookie, self.groups.gcks.deadline(), self.groups.gm.deadline()].into_iter().flatten().min()
    }

    /// RFC 9838 GM: a GSA_REKEY datagram (marker stripped).
    fn handle_group_rekey(&mut self, now: Time, bytes: &[u8]) {
        let Self { crypto, rng, groups, out, .. } = self;
        groups.gm.handle_rekey(now, &**crypto, &mut **rng, bytes, &mut out.events);
    }

    /// RFC 9838 timers of both roles: scheduled rekeys and their copies
    /// (GCKS), DTD deletions and re-registrations (GM).
    fn group_timeout(&mut self, now: Time) {
        let Self { crypto, rng, groups, out, .. } = self;
        groups.gcks.handle_timeout(now, &**crypto, &mut **rng, &mut out.transmits);
        let mut again = Vec::new();
        groups.gm.handle_timeout(now, &mut **rng, &mut out.events, &mut again);
        for (conn, local, remote) in again {
            self.out.effects.push(crate::sa::Effect::Reinitiate { conn, local, remote });
        }
        self.apply_effects(now);
    }

    /// RFC 9838 GCKS commands: rekey a group now, exclude a member.
    pub fn handle_group_command(&mut self, now: Time, cmd: crate::event::GroupCommand) -> Result<(), CommandError> {
        let Self { crypto, rng, groups, out, .. } = self;
        let unknown = |g: &crate::group::GroupId| CommandError::Failed(format!("no group {g}"));
        match cmd {
            crate::event::GroupCommand::Rekey { group } => {
                let g = groups.gcks.groups.get_mut(&group).ok_or_else(|| unknown(&group))?;
                g.force_rekey(now, &**crypto, &mut **rng, &mut out.transmits).map_err(|e| CommandError::Failed(e.to_string()))?;
                let inband = g.cfg.kek.is_none();
                if inband {
                    for h in g.inband_members() {
                        self.with_sa(now, h, |sa, ctx| sa.start_group_inband(ctx, &group));
                    }
                }
            }
            crate::event::GroupCommand::Exclude { group, member } => {
                let g = groups.gcks.groups.get_mut(&group).ok_or_else(|| unknown(&group))?;
                let sa = g.exclude(now, &**crypto, &mut **rng, &member).map_err(|e| CommandError::Failed(e.to_string()))?;
                g.flush_now(now, &mut out.transmits);
                if let Some(h) = sa {
                    // §2.4.3: the GCKS may delete the unicast SA at once.
                    self.with_sa(now, h, |sa, ctx| {
                        sa.enqueue(Queued::DeleteIke);
                        sa.pump(ctx);
                    });
                }
            }
        }
        Ok(())
    }

    /// RFC 9838 GM: the groups this endpoint belongs to.
    pub fn member_groups(&self) -> &std::collections::BTreeMap<crate::group::GroupId, crate::group::GmGroup> {
        &self.groups.gm.groups
    }

    /// RFC 9838 GCKS: the Rekey SA SPI of a served group (listings).
    pub fn group_kek_spi(&self, group: &crate::group::GroupId) -> Option<[u8; 16]> {
        self.groups.gcks.groups.get(group).and_then(|g| g.kek_spi())
    }

    /// RFC 9838 GCKS: the group's registration and rekey counters.
    pub fn group_stats(&self, group: &crate::group::GroupId) -> Option<crate::group::gcks::GcksStats> {
        self.groups.gcks.groups.get(group).map(|g| g.stats)
    }

    /// RFC 9838 GCKS: a new set of groups (configuration reload); groups
    /// that stay keep their keys, members and counters.
    pub fn set_groups(&mut self, groups: crate::group::config::Groups) {
        self.groups.gcks.reconfigure(&groups);
        self.config.groups = groups;
    }

    /// RFC 9838 GCKS: the groups served, for listings.
    pub fn groups(&self) -> Vec<crate::group::GroupInfo> {
        self.groups.gcks.groups.values().map(crate::group::GcksGroup::info).collect()
    }

    /// RFC 9838 both roles: counters per group.
    pub fn group_state(&self) -> &crate::group::GroupState {
        &self.groups
    }

    /// IKE SAs by state, counted as they change (no SA is visited).
    pub fn tally(&self) -> &SaTally {
        &self.tally
    }

    /// The IKE SAs authenticated as `id` (any state), from the index
    /// INITIAL_CONTACT uses.
    pub fn ike_sas_of(&self, id: &Identity) -> Vec<IkeSaHandle> {
        self.by_remote_id.get(id).map_or_else(Vec::new, |s| s.iter().copied().collect())
    }

    /// Number of IKE SAs held (any state).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// Number of responder IKE SAs waiting for IKE_AUTH.
    pub fn half_open_count(&self) -> usize {
        self.half_open()
    }

    /// The Child SAs of an IKE SA, with their SPIs (inbound, outbound).
    pub fn child_sas(&self, ike_sa: IkeSaHandle) -> Vec<(ChildSaHandle, u32, u32)> {
        self.sas.get(&ike_sa).map_or_else(Vec::new, |sa| sa.children.values().map(|c| (c.handle, c.spi_in, c.spi_out)).collect())
    }

    /// A snapshot of every IKE SA, for listings (`esprit-ctl`).
    pub fn ike_sas(&self) -> Vec<IkeSaInfo> {
        self.sas
            .values()
            .map(|sa| IkeSaInfo {
                ike_sa: sa.handle,
                connection: sa.conn.name.clone(),
                state: sa.state_name(),
                initiator: sa.role == crate::sa::Role::Initiator,
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                local: sa.local,
                remote: sa.remote,
                remote_id: sa.remote_id.clone(),
                suite: sa.keys.as_ref().map(|k| k.suite.clone()),
                child_sas: sa.children.values().map(|c| (c.handle, c.spi_in, c.spi_out)).collect(),
                ppk: sa.ppk_used,
                ext: sa.ext.clone(),
            })
            .collect()
    }

    /// Test peer: sends UPDATE_SA_ADDRESSES on an established IKE SA
    /// (`IkeSa::send_update_sa_addresses`).
    #[cfg(test)]
    pub(crate) fn send_update_sa_addresses(
        &mut self,
        now: Time,
        h: IkeSaHandle,
        cookie2: Option<Vec<u8>>,
        expect: Option<Vec<u8>>,
        extra: Vec<ike_wire::Payload<'static>>,
    ) {
        self.with_sa(now, h, |sa, ctx| sa.send_update_sa_addresses(ctx, cookie2, expect, extra).expect("UPDATE_SA_ADDRESSES sent"));
    }

    /// SK_d of an IKE SA, for known-answer tests of the key schedule.
    #[cfg(test)]
    pub(crate) fn sk_d(&self, h: IkeSaHandle) -> Option<Vec<u8>> {
        self.sas.get(&h)?.keys.as_ref().map(|k| k.sk_d.to_vec())
    }

    /// Handles of established IKE SAs.
    pub fn established(&self) -> Vec<IkeSaHandle> {
        self.sas.iter().filter(|(_, sa)| sa.is_established()).map(|(h, _)| *h).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use ike_crypto::rng::DeterministicRng;
    use ike_crypto::RustCryptoProvider;

    use super::*;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn cookies_verify_for_the_current_and_previous_secret_only() {
        let t0 = Time::from_secs(1_800_000_000);
        let cfg = EndpointConfig { cookie_secret_lifetime: Duration::from_secs(120), ..EndpointConfig::default() };
        let mut ep = Endpoint::new(cfg, Box::new(RustCryptoProvider), Box::new(DeterministicRng::from_u64(1)), t0, UnixTime::from_secs(1_800_000_000));
        let ni = [7u8; 32];
        let c0 = ep.cookies.cookie(&ni, IP, 42);
        assert!(ep.cookies.verify(None, &c0, &ni, IP, 42));
        // Bound to Ni, the initiator's address and SPIi (RFC 7296 §2.6).
        assert!(!ep.cookies.verify(None, &c0, &[8u8; 32], IP, 42));
        assert!(!ep.cookies.verify(None, &c0, &ni, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 42));
        assert!(!ep.cookies.verify(None, &c0, &ni, IP, 43));
        // Not yet due: no rotation.
        ep.rotate_cookie_secret(t0 + Duration::from_secs(119));
        assert_eq!(ep.cookies.cookie(&ni, IP, 42), c0);
        // One rotation: the old cookie still passes, new ones differ.
        ep.rotate_cookie_secret(t0 + Duration::from_secs(120));
        let c1 = ep.cookies.cookie(&ni, IP, 42);
        assert_ne!(c0, c1);
        assert!(ep.cookies.verify(None, &c0, &ni, IP, 42));
        assert!(ep.cookies.verify(None, &c1, &ni, IP, 42));
        // Two rotations: the first secret is gone.
        ep.rotate_cookie_secret(t0 + Duration::from_secs(240));
        assert!(!ep.cookies.verify(None, &c0, &ni, IP, 42));
        assert!(ep.cookies.verify(None, &c1, &ni, IP, 42));
        assert!(!ep.cookies.verify(None, &[], &ni, IP, 42));
    }

    #[test]
    fn a_cookie_expires_with_its_secret_even_after_a_long_idle_time() {
        let t0 = Time::from_secs(1_800_000_000);
        let cfg = EndpointConfig { cookie_secret_lifetime: Duration::from_secs(120), ..EndpointConfig::default() };
        let mut ep = Endpoint::new(cfg, Box::new(RustCryptoProvider), Box::new(DeterministicRng::from_u64(1)), t0, UnixTime::from_secs(1_800_000_000));
        let ni = [7u8; 32];
        let c0 = ep.cookies.cookie(&ni, IP, 42);
        // Planning for an instant one rotation ahead: the current secret
        // will be the previous one, still good; two rotations ahead: gone.
        assert!(ep.cookies.verify(Some(t0 + Duration::from_secs(130)), &c0, &ni, IP, 42));
        assert!(!ep.cookies.verify(Some(t0 + Duration::from_secs(240)), &c0, &ni, IP, 42));
        // No request for an hour, then one rotation: the cookie of an hour
        // ago must not pass as "the previous secret's".
        ep.rotate_cookie_secret(t0 + Duration::from_secs(3600));
        assert!(!ep.cookies.verify(None, &c0, &ni, IP, 42));
        let c1 = ep.cookies.cookie(&ni, IP, 42);
        assert!(ep.cookies.verify(None, &c1, &ni, IP, 42));
        // A rotation in time keeps the previous secret for one lifetime.
        ep.rotate_cookie_secret(t0 + Duration::from_secs(3600 + 150));
        assert!(ep.cookies.verify(None, &c1, &ni, IP, 42));
        assert!(!ep.cookies.verify(Some(t0 + Duration::from_secs(3600 + 150 + 120)), &c1, &ni, IP, 42));
    }
}
