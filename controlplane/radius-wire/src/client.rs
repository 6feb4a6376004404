//! A sans-IO RADIUS client: requests in flight, retransmission, failover.
//!
//! The owner sends [`Transmit`]s from [`Client::poll_transmit`] on its UDP
//! socket, feeds every datagram back through [`Client::handle_datagram`],
//! and calls [`Client::handle_timeout`] at [`Client::poll_timeout`]. Time is
//! a [`Duration`] since an origin of the owner's choosing (its monotonic
//! clock); nothing here reads a clock or blocks.
//!
//! Behaviour:
//! * A request goes to the *current* server (the first configured, or the
//!   one the last failover moved to). Without an answer within `timeout`
//!   it is sent again, unchanged (same Identifier and Authenticator, RFC
//!   2865 §3), `retries` times; then it fails over: it is rebuilt for the
//!   next server (its own secret, a new Identifier) and that server becomes
//!   the current one for later requests. A request that went unanswered
//!   by every server completes as [`Outcome::Timeout`].
//! * A reply counts only if it comes from the server the request is with,
//!   carries the request's Identifier and verifies ([`crate::verify_reply`]);
//!   anything else is dropped and counted ([`Stats::bad_replies`]).
//! * Identifiers: one space of 256 for all servers (one socket); a request
//!   beyond 256 in flight waits in a queue until one completes.
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::{code, Attribute, Error, Packet};

/// One RADIUS server.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    pub secret: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).field("secret", &"[redacted]").finish()
    }
}

/// The client's servers (in failover order) and timing.
#[derive(Clone, Debug)]
pub struct Config {
    pub servers: Vec<Server>,
    /// How long to wait for an answer before sending again.
    pub timeout: Duration,
    /// Retransmissions to one server before failing over to the next.
    pub retries: u32,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A verified reply from `server` (an index into [`Config::servers`]);
    /// `request_authenticator` and the server's secret decrypt hidden
    /// attributes ([`crate::msk`]).
    Reply { server: usize, packet: Packet, request_authenticator: [u8; 16] },
    /// No server answered.
    Timeout,
}

/// A completed request, with the owner's tag.
#[derive(Debug, Clone)]
pub struct Done {
    pub tag: u64,
    pub outcome: Outcome,
}

/// Counters, for the owner's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub retransmits: u64,
    pub failovers: u64,
    pub timeouts: u64,
    pub bad_replies: u64,
}

struct Request {
    tag: u64,
    code: u8,
    attributes: Vec<Attribute>,
    authenticator: [u8; 16],
}

struct InFlight {
    req: Request,
    server: usize,
    /// Servers tried so far, this one included.
    servers_tried: usize,
    sent: u32,
    deadline: Duration,
    bytes: Vec<u8>,
    /// The authenticator the reply is checked against.
    request_authenticator: [u8; 16],
}

/// The client.
pub struct Client {
    cfg: Config,
    current: usize,
    next_id: u8,
    in_flight: BTreeMap<u8, InFlight>,
    waiting: VecDeque<Request>,
    out: VecDeque<Transmit>,
    stats: Stats,
}

impl Client {
    pub fn new(cfg: Config) -> Self {
        Self { cfg, current: 0, next_id: 0, in_flight: BTreeMap::new(), waiting: VecDeque::new(), out: VecDeque::new(), stats: Stats::default() }
    }

    /// The servers.
    pub fn servers(&self) -> &[Server] {
        &self.cfg.servers
    }

    /// The server new requests go to.
    pub fn current_server(&self) -> usize {
        self.current
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Requests in flight and waiting for an Identifier.
    pub fn pending(&self) -> usize {
        self.in_flight.len() + self.waiting.len()
    }

    /// Sends an Access-Request (`code::ACCESS_REQUEST`, with a
    /// Message-Authenticator; `authenticator` must be random) or an
    /// Accounting-Request (`code::ACCOUNTING_REQUEST`; `authenticator` is
    /// unused, RFC 2866 §3 computes it). `tag` comes back in [`Done`].
    pub fn send(&mut self, now: Duration, tag: u64, code: u8, attributes: Vec<Attribute>, authenticator: [u8; 16]) -> Result<(), Error> {
        if self.cfg.servers.is_empty() {
            return Err(Error::Truncated);
        }
        // Encodable at all? (Checked once here, not at each failover.)
        Packet { code, identifier: 0, authenticator, attributes: attributes.clone() }.encode()?;
        self.stats.requests += 1;
        let req = Request { tag, code, attributes, authenticator };
        if self.in_flight.len() >= 256 {
            self.waiting.push_back(req);
            return Ok(());
        }
        self.start(now, req, self.current, 1);
        Ok(())
    }

    /// Forgets a request (its IKE SA went away); a late reply is dropped.
    pub fn cancel(&mut self, tag: u64) {
        self.in_flight.retain(|_, f| f.req.tag != tag);
        self.waiting.retain(|r| r.tag != tag);
    }

    fn free_id(&mut self) -> Option<u8> {
        for _ in 0..=255u16 {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.in_flight.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn start(&mut self, now: Duration, req: Request, server: usize, servers_tried: usize) {
        let Some(id) = self.free_id() else {
            self.waiting.push_front(req);
            return;
        };
        let s = &self.cfg.servers[server];
        let built = match req.code {
            code::ACCOUNTING_REQUEST => crate::accounting_request(id, &req.attributes, &s.secret),
            _ => crate::access_request(id, req.authenticator, &req.attributes, &s.secret).map(|b| (b, req.authenticator)),
        };
        // Checked encodable in `send`; a failure here only drops it.
        let Ok((bytes, request_authenticator)) = built else { return };
        self.out.push_back(Transmit { to: s.addr, bytes: bytes.clone() });
        self.in_flight.insert(id, InFlight { req, server, servers_tried, sent: 1, deadline: now + self.cfg.timeout, bytes, request_authenticator });
    }

    /// A datagram from the socket: the request it completes, if any.
    pub fn handle_datagram(&mut self, now: Duration, from: SocketAddr, bytes: &[u8]) -> Option<Done> {
        let id = *bytes.get(1)?;
        let Some(f) = self.in_flight.get(&id) else {
            self.stats.bad_replies += 1;
            return None;
        };
        let s = &self.cfg.servers[f.server];
        if s.addr != from {
            self.stats.bad_replies += 1;
            return None;
        }
        let packet = match crate::verify_reply(bytes, &f.request_authenticator, &s.secret) {
            Ok(p) => p,
            Err(_) => {
                self.stats.bad_replies += 1;
                return None;
            }
        };
        let ok = match f.req.code {
            code::ACCOUNTING_REQUEST => packet.code == code::ACCOUNTING_RESPONSE,
            _ => matches!(packet.code, code::ACCESS_ACCEPT | code::ACCESS_REJECT | code::ACCESS_CHALLENGE),
        };
        if !ok {
            self.stats.bad_replies += 1;
            return None;
        }
        let f = self.in_flight.remove(&id)?;
        self.next_waiting(now);
        Some(Done { tag: f.req.tag, outcome: Outcome::Reply { server: f.server, packet, request_authenticator: f.request_authenticator } })
    }

    fn next_waiting(&mut self, now: Duration) {
        while self.in_flight.len() < 256 {
            let Some(r) = self.waiting.pop_front() else { break };
            self.start(now, r, self.current, 1);
        }
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.in_flight.values().map(|f| f.deadline).min()
    }

    /// Retransmits, fails over, and completes the requests no server
    /// answered.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Done> {
        let due: Vec<u8> = self.in_flight.iter().filter(|(_, f)| f.deadline <= now).map(|(id, _)| *id).collect();
        let mut done = Vec::new();
        let n = self.cfg.servers.len();
        for id in due {
            let Some(f) = self.in_flight.get_mut(&id) else { continue };
            if f.sent <= self.cfg.retries {
                f.sent += 1;
                f.deadline = now + self.cfg.timeout;
                self.stats.retransmits += 1;
                self.out.push_back(Transmit { to: self.cfg.servers[f.server].addr, bytes: f.bytes.clone() });
                continue;
            }
            let Some(f) = self.in_flight.remove(&id) else { continue };
            if f.servers_tried >= n {
                self.stats.timeouts += 1;
                done.push(Done { tag: f.req.tag, outcome: Outcome::Timeout });
                continue;
            }
            let next = (f.server + 1) % n;
            self.stats.failovers += 1;
            if self.current == f.server {
                // Later requests skip the server that did not answer.
                self.current = next;
            }
            self.start(now, f.req, next, f.servers_tried + 1);
        }
        self.next_waiting(now);
        done
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
}
