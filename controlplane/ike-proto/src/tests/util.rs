//! The two-endpoint harness, after quinn-proto's `Pair`: two [`Endpoint`]s,
//! a virtual clock, and a link that drops, duplicates, delays and reorders
//! datagrams deterministically (its own seeded RNG), optionally through a
//! NAT that rewrites the first endpoint's source address.
// Helpers shared by test modules; not every module uses every helper.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::rng::DeterministicRng;
use ike_crypto::{RustCryptoProvider, Secret};
use ike_wire::{EncrId, EsnId, Header, IntegId, KeId, PrfId};
use rand_core::RngCore;

use crate::{
    ChildConfig, Command, ConnectionConfig, EndpointConfig, EspProposal, Event, Identity, IkeProposal, IkeSaHandle,
    Lifetimes, LocalAuth, Mode, RemoteAuth, Time, TrafficSelector, UnixTime,
};
use crate::Endpoint;

/// The virtual monotonic clock's start.
pub const T0: Time = Time::from_secs(1_800_000_000);
/// The wall-clock date at [`T0`] (2027-01-15), after the test PKI's notBefore.
pub const UNIX_T0: UnixTime = UnixTime::from_secs(1_800_000_000);

pub const IP_A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
pub const IP_B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
pub const IP_NAT: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    A,
    B,
}

pub struct Node {
    pub ep: Endpoint,
    pub ip: IpAddr,
    pub events: Vec<Event>,
}

/// One datagram on the wire.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

impl Datagram {
    /// The IKE header, marker stripped.
    pub fn header(&self) -> Option<Header> {
        let b = if self.payload.starts_with(&[0, 0, 0, 0]) { &self.payload[4..] } else { &self.payload[..] };
        Header::parse_datagram(b).ok()
    }

    pub fn ike_bytes(&self) -> &[u8] {
        if self.payload.starts_with(&[0, 0, 0, 0]) {
            &self.payload[4..]
        } else {
            &self.payload
        }
    }
}

/// Decides the fate of one datagram: `true` drops it.
pub type Filter = Box<dyn FnMut(Side, &Datagram) -> bool>;

pub struct Link {
    rng: DeterministicRng,
    pub latency: Duration,
    /// Extra delay drawn uniformly from 0..jitter: reorders.
    pub jitter: Duration,
    /// Loss and duplication probabilities in 1/1000.
    pub loss_permille: u32,
    pub dup_permille: u32,
    pub filter: Option<Filter>,
    /// A NAT in front of A: A's source (ip, port) becomes (IP_NAT, port + 10000).
    pub nat: bool,
}

pub struct Pair {
    pub a: Node,
    pub b: Node,
    /// The virtual monotonic clock.
    pub time: Time,
    /// The wall clock runs with `time` from [`UNIX_T0`], this many seconds
    /// off (a step of the wall clock; certificate validity sees it, no
    /// timer may).
    pub wall_offset_secs: i64,
    pub link: Link,
    in_flight: BTreeMap<(Time, u64), (Side, Datagram)>,
    seq: u64,
    /// Every datagram sent, before the link acts on it.
    pub wire: Vec<(Time, Side, Datagram)>,
    /// Print deliveries and events as they happen (debugging a failure).
    pub trace: bool,
    /// IKE_AUTH signature jobs (endpoints with `defer_signatures`) are run
    /// as soon as they appear, unless this holds them in `held_jobs`.
    pub hold_jobs: bool,
    pub held_jobs: Vec<(Side, crate::AuthJob)>,
    /// Jobs run so far, per side (A, B).
    pub jobs_run: [usize; 2],
    /// Unless held: each job finishes after a delay drawn uniformly from
    /// 0..job_latency (from the link's RNG), in virtual time.
    pub job_latency: Duration,
    delayed_jobs: BTreeMap<(Time, u64), (Side, crate::AuthJob)>,
}

pub fn ike_proposal(ke: &[KeId]) -> IkeProposal {
    IkeProposal { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), prf: PrfId::PRF_HMAC_SHA2_256, integ: IntegId::NONE, ke: ke.to_vec(), additional_ke: Vec::new(), kwa: Vec::new() }
}

pub fn esp_proposal(encr: EncrId, key_bits: Option<u16>) -> EspProposal {
    EspProposal { encr, key_bits, integ: IntegId::NONE, esn: vec![EsnId::NO_ESN], pfs: Vec::new(), additional_ke: Vec::new() }
}

pub fn prefix(s: &str) -> TrafficSelector {
    let (a, l) = s.split_once('/').expect("prefix");
    TrafficSelector::prefix(a.parse().expect("addr"), l.parse().expect("len")).expect("prefix len")
}

/// A PSK connection; `a_side` picks which subnet is local.
pub fn psk_conn(name: &str, local: &str, remote: &str, psk: &[u8], a_side: bool) -> ConnectionConfig {
    let (lts, rts) = if a_side { ("10.1.0.0/16", "10.2.0.0/16") } else { ("10.2.0.0/16", "10.1.0.0/16") };
    ConnectionConfig {
        name: name.into(),
        local_id: Identity::Fqdn(local.into()),
        remote_id: Some(Identity::Fqdn(remote.into())),
        local_auth: LocalAuth::Psk(Secret::new(psk.to_vec())),
        remote_auth: RemoteAuth::Psk(Secret::new(psk.to_vec())),
        ike_proposals: vec![ike_proposal(&[KeId::CURVE25519, KeId::ECP_256, KeId::MODP_2048])],
        child: ChildConfig {
            esp_proposals: vec![esp_proposal(EncrId::ENCR_AES_GCM_16, Some(256))],
            local_ts: vec![prefix(lts)],
            remote_ts: vec![prefix(rts)],
            mode: Mode::Tunnel,
            lifetime: Lifetimes::default(),
            sec_label: None,
            compression: None,
        },
        ike_rekey_after: None,
        dpd_delay: None,
        pool: None,
        request_vip: Vec::new(),
        initial_contact: true,
        ppk: None,
        ext: crate::Extensions::default(),
    }
}

pub fn endpoint_config(conn: ConnectionConfig) -> EndpointConfig {
    EndpointConfig { connections: vec![Arc::new(conn)], ..EndpointConfig::default() }
}

impl Pair {
    pub fn new(seed: u64, a: EndpointConfig, b: EndpointConfig) -> Self {
        let ep_a = Endpoint::new(a, Box::new(RustCryptoProvider), Box::new(DeterministicRng::from_u64(seed)), T0, UNIX_T0);
        let ep_b = Endpoint::new(b, Box::new(RustCryptoProvider), Box::new(DeterministicRng::from_u64(seed ^ 0x5eed)), T0, UNIX_T0);
        Self::from_endpoints(seed, ep_a, ep_b)
    }

    pub fn from_endpoints(seed: u64, a: Endpoint, b: Endpoint) -> Self {
        Self {
            a: Node { ep: a, ip: IP_A, events: Vec::new() },
            b: Node { ep: b, ip: IP_B, events: Vec::new() },
            time: T0,
            wall_offset_secs: 0,
            link: Link {
                rng: DeterministicRng::from_u64(seed.wrapping_mul(31).wrapping_add(7)),
                latency: Duration::from_millis(10),
                jitter: Duration::ZERO,
                loss_permille: 0,
                dup_permille: 0,
                filter: None,
                nat: false,
            },
            in_flight: BTreeMap::new(),
            seq: 0,
            wire: Vec::new(),
            trace: false,
            hold_jobs: false,
            held_jobs: Vec::new(),
            jobs_run: [0, 0],
            job_latency: Duration::ZERO,
            delayed_jobs: BTreeMap::new(),
        }
    }

    /// The default pair: A initiates "site" towards B, both PSK.
    pub fn psk(seed: u64) -> Self {
        Self::new(
            seed,
            endpoint_config(psk_conn("site", "a.esprit.test", "b.esprit.test", b"correct horse battery staple", true)),
            endpoint_config(psk_conn("site", "b.esprit.test", "a.esprit.test", b"correct horse battery staple", false)),
        )
    }

    /// The wall-clock date now: [`UNIX_T0`] plus the virtual time elapsed,
    /// plus `wall_offset_secs`.
    pub fn unix(&self) -> UnixTime {
        let at = UNIX_T0.since_epoch() + self.time.saturating_since(T0);
        let shifted = if self.wall_offset_secs >= 0 {
            at.saturating_add(Duration::from_secs(self.wall_offset_secs.unsigned_abs()))
        } else {
            at.saturating_sub(Duration::from_secs(self.wall_offset_secs.unsigned_abs()))
        };
        UnixTime::from_duration(shifted)
    }

    /// Hands both endpoints the wall-clock date, as an owner does before
    /// feeding them.
    fn sync_wall(&mut self) {
        let unix = self.unix();
        self.a.ep.set_unix_time(unix);
        self.b.ep.set_unix_time(unix);
    }

    pub fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    pub fn initiate(&mut self, side: Side, connection: &str) -> IkeSaHandle {
        self.sync_wall();
        let time = self.time;
        let (local_ip, remote_ip) = match side {
            Side::A => (IP_A, IP_B),
            Side::B => (IP_B, IP_A),
        };
        self.node(side)
            .ep
            .handle_command(
                time,
                Command::Initiate {
                    connection: connection.into(),
                    local: SocketAddr::new(local_ip, 500),
                    remote: SocketAddr::new(remote_ip, 500),
                },
            )
            .expect("initiate")
    }

    pub fn command(&mut self, side: Side, cmd: Command) {
        self.sync_wall();
        let time = self.time;
        self.node(side).ep.handle_command(time, cmd).expect("command");
    }

    fn collect(&mut self) {
        loop {
            self.collect_outputs();
            for side in [Side::A, Side::B] {
                while let Some(j) = self.node(side).ep.poll_auth_job() {
                    self.held_jobs.push((side, j));
                }
            }
            if self.hold_jobs || self.held_jobs.is_empty() {
                return;
            }
            if !self.job_latency.is_zero() {
                for (side, j) in std::mem::take(&mut self.held_jobs) {
                    let delay = Duration::from_micros(u64::from(self.link.rng.next_u32()) % self.job_latency.as_micros().max(1) as u64);
                    self.seq += 1;
                    self.delayed_jobs.insert((self.time + delay, self.seq), (side, j));
                }
                return;
            }
            self.run_held_jobs(false);
        }
    }

    /// Runs the held signature jobs (in reverse order if asked) and feeds
    /// their results back.
    pub fn run_held_jobs(&mut self, reverse: bool) {
        self.sync_wall();
        let mut jobs = std::mem::take(&mut self.held_jobs);
        if reverse {
            jobs.reverse();
        }
        for (side, j) in jobs {
            let time = self.time;
            self.jobs_run[side as usize] += 1;
            let done = j.run();
            self.node(side).ep.handle_auth_done(time, done);
        }
        self.collect_outputs();
    }

    fn collect_outputs(&mut self) {
        for side in [Side::A, Side::B] {
            while let Some(t) = self.node(side).ep.poll_transmit() {
                let d = Datagram { from: t.local, to: t.remote, payload: t.payload };
                self.send(side, d);
            }
            while let Some(e) = self.node(side).ep.poll_event() {
                if self.trace {
                    eprintln!("{:?} {side:?} event {e:?}", self.time.saturating_since(T0));
                }
                self.node(side).events.push(e);
            }
        }
    }

    fn send(&mut self, side: Side, mut d: Datagram) {
        if self.trace {
            if let Some(h) = d.header() {
                eprintln!("{:?} send from {side:?} {:?} resp={} mid={} len={}", self.time.saturating_since(T0), h.exchange_type, h.flags.response(), h.message_id, d.payload.len());
            }
        }
        self.wire.push((self.time, side, d.clone()));
        if let Some(f) = self.link.filter.as_mut() {
            if f(side, &d) {
                return;
            }
        }
        if self.link.loss_permille > 0 && self.link.rng.next_u32() % 1000 < self.link.loss_permille {
            return;
        }
        if self.link.nat {
            if side == Side::A {
                d.from = SocketAddr::new(IP_NAT, d.from.port() + 10000);
            } else if d.to.ip() == IP_NAT {
                d.to = SocketAddr::new(IP_A, d.to.port() - 10000);
            }
        }
        let copies = if self.link.dup_permille > 0 && self.link.rng.next_u32() % 1000 < self.link.dup_permille { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = if self.link.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(u64::from(self.link.rng.next_u32()) % self.link.jitter.as_micros().max(1) as u64)
            };
            let to = if d.to.ip() == IP_A { Side::A } else { Side::B };
            self.seq += 1;
            self.in_flight.insert((self.time + self.link.latency + jitter, self.seq), (to, d.clone()));
        }
    }

    fn next_wakeup(&self) -> Option<Time> {
        [self.in_flight.keys().next().map(|k| k.0), self.delayed_jobs.keys().next().map(|k| k.0), self.a.ep.poll_timeout(), self.b.ep.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// One step: flush outputs, then advance to the next arrival or timer
    /// and handle it. `false` when nothing is left before `horizon`.
    pub fn step(&mut self, horizon: Time) -> bool {
        self.collect();
        let Some(next) = self.next_wakeup() else { return false };
        if next > horizon {
            return false;
        }
        self.time = self.time.max(next);
        self.sync_wall();
        let due: Vec<(Time, u64)> = self.in_flight.range(..=(self.time, u64::MAX)).map(|(k, _)| *k).collect();
        for k in due {
            if let Some((to, d)) = self.in_flight.remove(&k) {
                let time = self.time;
                if self.trace {
                    if let Some(h) = d.header() {
                        eprintln!("{:?} deliver to {to:?} {:?} resp={} mid={} len={}", time.saturating_since(T0), h.exchange_type, h.flags.response(), h.message_id, d.payload.len());
                    }
                }
                self.node(to).ep.handle_datagram(time, d.to, d.from, &d.payload);
            }
            self.collect();
        }
        let due: Vec<(Time, u64)> = self.delayed_jobs.range(..=(self.time, u64::MAX)).map(|(k, _)| *k).collect();
        for k in due {
            if let Some((side, j)) = self.delayed_jobs.remove(&k) {
                let time = self.time;
                self.jobs_run[side as usize] += 1;
                let done = j.run();
                self.node(side).ep.handle_auth_done(time, done);
            }
            self.collect();
        }
        for side in [Side::A, Side::B] {
            let time = self.time;
            if self.node(side).ep.poll_timeout().is_some_and(|t| t <= time) {
                self.node(side).ep.handle_timeout(time);
            }
        }
        self.collect();
        true
    }

    /// Runs for `d` of virtual time: the clock ends at now + `d`.
    pub fn drive_for(&mut self, d: Duration) {
        let horizon = self.time + d;
        let mut steps = 0;
        while self.step(horizon) {
            steps += 1;
            assert!(steps < 100_000, "the pair never settles");
        }
        self.time = self.time.max(horizon);
    }

    /// No datagram is on the link.
    pub fn link_is_quiet(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Runs until `done` holds (checked after every step), idle, or ten
    /// virtual minutes passed.
    pub fn drive_until(&mut self, done: impl Fn(&Pair) -> bool) {
        let horizon = self.time + Duration::from_secs(600);
        let mut steps = 0;
        while !done(self) && self.step(horizon) {
            steps += 1;
            assert!(steps < 100_000, "the pair never settles");
        }
        self.collect();
    }

    /// Runs until idle (bounded to ten virtual minutes).
    pub fn drive(&mut self) {
        self.drive_for(Duration::from_secs(600));
    }

    pub fn events(&self, side: Side) -> &[Event] {
        match side {
            Side::A => &self.a.events,
            Side::B => &self.b.events,
        }
    }

    pub fn count(&self, side: Side, pred: impl Fn(&Event) -> bool) -> usize {
        self.events(side).iter().filter(|e| pred(e)).count()
    }

    pub fn ups(&self, side: Side) -> usize {
        self.count(side, |e| matches!(e, Event::IkeSaUp { .. }))
    }

    pub fn installs(&self, side: Side) -> Vec<&crate::ChildSaInstall> {
        self.events(side)
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaInstall(i) => Some(&**i),
                _ => None,
            })
            .collect()
    }

    /// The Notify of every ChildSaFailed event of `side`, in order.
    pub fn child_failures(&self, side: Side) -> Vec<ike_wire::NotifyType> {
        self.events(side)
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaFailed { notify, .. } => Some(*notify),
                _ => None,
            })
            .collect()
    }

    pub fn downs(&self, side: Side) -> Vec<crate::DownReason> {
        self.events(side)
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaDown { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// Datagrams of one direction and exchange that were put on the wire.
    pub fn sent(&self, side: Side, exchange: ike_wire::ExchangeType, response: bool) -> usize {
        self.wire
            .iter()
            .filter(|(_, s, d)| *s == side && d.header().is_some_and(|h| h.exchange_type == exchange && h.flags.response() == response))
            .count()
    }

    /// Establishes A→B and returns A's handle.
    pub fn connect(&mut self) -> IkeSaHandle {
        let h = self.initiate(Side::A, "site");
        self.drive_until(|p| p.ups(Side::A) == 1 && p.ups(Side::B) == 1);
        // Let the last datagrams land.
        self.drive_for(Duration::from_secs(1));
        assert_eq!(self.ups(Side::A), 1, "A up: {:?}", self.a.events);
        assert_eq!(self.ups(Side::B), 1, "B up: {:?}", self.b.events);
        h
    }
}

/// Drops the `nth` (1-based) datagram matching `exchange`/`response` sent by `side`.
pub fn drop_nth(side: Side, exchange: ike_wire::ExchangeType, response: bool, nth: usize) -> Filter {
    let mut seen = 0;
    Box::new(move |s, d| {
        if s == side && d.header().is_some_and(|h| h.exchange_type == exchange && h.flags.response() == response) {
            seen += 1;
            return seen == nth;
        }
        false
    })
}

/// The handle B uses for its IKE SA (from its IkeSaUp).
pub fn up_handle(p: &Pair, side: Side) -> IkeSaHandle {
    p.events(side)
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::IkeSaUp { ike_sa, .. } => Some(*ike_sa),
            Event::IkeSaRekeyed { new, .. } => Some(*new),
            _ => None,
        })
        .expect("an IKE SA came up")
}
