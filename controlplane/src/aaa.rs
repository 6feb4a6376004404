//! EAP through RADIUS for the event loop: the endpoint's
//! [`AaaRequest`]s become Access-Requests (RFC 3579: EAP-Message,
//! Message-Authenticator, State), the RADIUS client's verdicts become
//! [`AaaAnswer`]s (RFC 2548 MS-MPPE keys → the MSK).
//!
//! Never blocks: the socket is read by a thread of its own into a bounded
//! channel the loop selects on, like the IKE sockets; retransmission and
//! failover run on the loop's monotonic clock through
//! [`radius_wire::client::Client`] ([`Aaa::poll_timeout`] joins the loop's
//! wait). While a RADIUS round trip is out only its IKE SA's request waits.
//!
//! Accounting (RFC 2866, `ike.radius.accounting`): a session per
//! EAP-authenticated IKE SA, Start when its first Child SA is installed,
//! Interim-Update every `interim_interval_secs` (or the Access-Accept's
//! Acct-Interim-Interval, RFC 2869 §5.16), Stop with Acct-Terminate-Cause
//! when the IKE SA goes; octets and packets are the dataplane's counters
//! from the SA table, the Child SAs already deleted (rekeyed) included;
//! Framed-IP-Address is the pool's address; Class from the Access-Accept is
//! echoed (RFC 2865 §5.25). Accounting requests go to the servers'
//! accounting ports through a client of their own (same socket), with the
//! same retransmission and failover.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use ike_proto::{AaaAnswer, AaaOutcome, AaaRequest, IkeSaHandle, Time};
use radius_wire::client::{Client, Done, Outcome, Stats};
use radius_wire::{attr, code, Attribute};

use crate::config::RadiusConfig;

/// RADIUS replies waiting for the loop (more are dropped and retransmitted
/// by nobody: the server's answer is lost, the request times out).
const QUEUE: usize = 1024;

/// NAS-Port-Type Virtual (RFC 2865 §5.41), Service-Type Framed (§5.6).
const NAS_PORT_TYPE_VIRTUAL: u32 = 5;
const SERVICE_TYPE_FRAMED: u32 = 2;

/// What an Access-Accept said beyond the MSK (kept for accounting).
#[derive(Clone, Debug, Default)]
pub struct Accepted {
    pub class: Vec<Vec<u8>>,
    pub session_timeout: Option<u32>,
    pub interim_interval: Option<u32>,
}

/// RFC 2866 §5.1 Acct-Status-Type.
const ACCT_START: u32 = 1;
const ACCT_STOP: u32 = 2;
const ACCT_INTERIM: u32 = 3;

/// Traffic of a session, as the dataplane counted it (inbound: from the
/// client, Acct-Input).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Self) {
        self.in_octets += o.in_octets;
        self.out_octets += o.out_octets;
        self.in_pkts += o.in_pkts;
        self.out_pkts += o.out_pkts;
    }
}

/// What a new accounting session is told.
pub struct SessionStart {
    pub ike_sa: IkeSaHandle,
    pub user: Vec<u8>,
    pub framed_ip: Option<Ipv4Addr>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Wall-clock seconds, to make the Acct-Session-Id unique across restarts.
    pub unix_secs: u64,
}

struct Session {
    id: String,
    user: Vec<u8>,
    framed_ip: Option<Ipv4Addr>,
    class: Vec<Vec<u8>>,
    local: SocketAddr,
    remote: SocketAddr,
    started: Time,
    interim: Option<Duration>,
    next_interim: Option<Time>,
    /// Counters of the session's Child SAs that are gone.
    done: Totals,
}

struct Accounting {
    client: Client,
    interim: Option<Duration>,
    sessions: HashMap<IkeSaHandle, Session>,
    next_tag: u64,
    counted: Stats,
}

pub struct Aaa {
    client: Client,
    acct: Option<Accounting>,
    socket: UdpSocket,
    nas_identifier: String,
    /// The loop selects on this.
    pub rx: Receiver<(SocketAddr, Vec<u8>)>,
    /// The RADIUS State of each IKE SA's conversation (RFC 2865 §5.24).
    states: HashMap<IkeSaHandle, Vec<u8>>,
    /// In flight: tag → the IKE SA and the IKE_AUTH request waiting.
    tags: HashMap<u64, (IkeSaHandle, u32)>,
    next_tag: u64,
    /// Access-Accepts per IKE SA, until it is up or gone.
    pub accepted: HashMap<IkeSaHandle, Accepted>,
    counted: Stats,
}

impl Aaa {
    /// Binds the RADIUS socket and starts its reader thread.
    pub fn start(cfg: &RadiusConfig, stop: Arc<AtomicBool>) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let any = match cfg.client.servers.first().map(|s| s.addr.ip()) {
            Some(IpAddr::V6(_)) => IpAddr::from([0u16; 8]),
            _ => IpAddr::from([0u8; 4]),
        };
        let socket = UdpSocket::bind(SocketAddr::new(cfg.source.unwrap_or(any), 0))?;
        let reader = socket.try_clone()?;
        reader.set_read_timeout(Some(Duration::from_millis(200)))?;
        let (tx, rx) = channel::bounded(QUEUE);
        let thread = std::thread::Builder::new().name("radius".into()).spawn(move || read(reader, tx, stop))?;
        let acct = cfg.accounting.as_ref().map(|a| Accounting {
            client: Client::new(a.client.clone()),
            interim: a.interim,
            sessions: HashMap::new(),
            next_tag: 1,
            counted: Stats::default(),
        });
        let aaa = Self {
            acct,
            client: Client::new(cfg.client.clone()),
            socket,
            nas_identifier: cfg.nas_identifier.clone(),
            rx,
            states: HashMap::new(),
            tags: HashMap::new(),
            next_tag: 1,
            accepted: HashMap::new(),
            counted: Stats::default(),
        };
        Ok((aaa, thread))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// An EAP Response to pass to the server, with the conversation's
    /// State. An answer comes back from [`Self::datagram`] or
    /// [`Self::timeout`]; a request that cannot be built is answered at
    /// once (Unreachable).
    pub fn request(&mut self, t: Time, req: AaaRequest, authenticator: [u8; 16]) -> Option<AaaAnswer> {
        if req.first {
            self.states.remove(&req.ike_sa);
            self.accepted.remove(&req.ike_sa);
        }
        let mut a = vec![Attribute::new(attr::USER_NAME, req.identity.clone())];
        match req.local.ip() {
            IpAddr::V4(v4) => a.push(Attribute::new(attr::NAS_IP_ADDRESS, v4.octets().to_vec())),
            IpAddr::V6(v6) => a.push(Attribute::new(attr::NAS_IPV6_ADDRESS, v6.octets().to_vec())),
        }
        a.push(Attribute::new(attr::NAS_IDENTIFIER, self.nas_identifier.as_bytes().to_vec()));
        a.push(Attribute::u32(attr::NAS_PORT_TYPE, NAS_PORT_TYPE_VIRTUAL));
        a.push(Attribute::u32(attr::SERVICE_TYPE, SERVICE_TYPE_FRAMED));
        // As strongSwan's eap-radius: the gateway's and the client's
        // addresses with ports.
        a.push(Attribute::new(attr::CALLED_STATION_ID, format!("{}[{}]", req.local.ip(), req.local.port()).into_bytes()));
        a.push(Attribute::new(attr::CALLING_STATION_ID, format!("{}[{}]", req.remote.ip(), req.remote.port()).into_bytes()));
        radius_wire::push_eap_message(&mut a, &req.eap);
        if let Some(s) = self.states.get(&req.ike_sa) {
            a.push(Attribute::new(attr::STATE, s.clone()));
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        if self.client.send(t.since_origin(), tag, code::ACCESS_REQUEST, a, authenticator).is_err() {
            return Some(AaaAnswer { ike_sa: req.ike_sa, message_id: req.message_id, outcome: AaaOutcome::Unreachable });
        }
        self.tags.insert(tag, (req.ike_sa, req.message_id));
        None
    }

    /// A datagram from the socket: the answer it completes, if any (an
    /// accounting server's reply completes its Accounting-Request).
    pub fn datagram(&mut self, t: Time, from: SocketAddr, bytes: &[u8]) -> Option<AaaAnswer> {
        if let Some(a) = self.acct.as_mut().filter(|a| a.client.servers().iter().any(|s| s.addr == from)) {
            a.client.handle_datagram(t.since_origin(), from, bytes);
            return None;
        }
        let done = self.client.handle_datagram(t.since_origin(), from, bytes)?;
        self.answer(done)
    }

    /// Retransmissions and failovers due; the requests no server answered.
    pub fn timeout(&mut self, t: Time) -> Vec<AaaAnswer> {
        if let Some(a) = self.acct.as_mut() {
            // An Accounting-Request no server took is lost (counted).
            a.client.handle_timeout(t.since_origin());
        }
        let done = self.client.handle_timeout(t.since_origin());
        done.into_iter().filter_map(|d| self.answer(d)).collect()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        let acct = self.acct.as_ref().and_then(|a| a.client.poll_timeout());
        [self.client.poll_timeout(), acct].into_iter().flatten().min().map(Time::from_duration)
    }

    /// Sends what the clients have to send.
    pub fn flush(&mut self) {
        let acct = self.acct.as_mut().map(|a| std::iter::from_fn(|| a.client.poll_transmit()).collect::<Vec<_>>()).unwrap_or_default();
        let auth: Vec<_> = std::iter::from_fn(|| self.client.poll_transmit()).collect();
        for tr in auth.into_iter().chain(acct) {
            if let Err(e) = self.socket.send_to(&tr.bytes, tr.to) {
                crate::daemon::log_warn(format_args!("RADIUS send to {}: {e}", tr.to));
            }
        }
    }

    /// Whether accounting is on and `ike_sa` has no session yet.
    pub fn wants_session(&self, ike_sa: IkeSaHandle) -> bool {
        self.acct.as_ref().is_some_and(|a| !a.sessions.contains_key(&ike_sa))
    }

    /// Accounting-Start for an IKE SA whose first Child SA is up.
    pub fn start_session(&mut self, t: Time, s: SessionStart) {
        let accepted = self.accepted.remove(&s.ike_sa).unwrap_or_default();
        let nas = self.nas_identifier.clone();
        let Some(a) = self.acct.as_mut() else { return };
        let interim = accepted.interim_interval.map(|i| Duration::from_secs(u64::from(i.max(1)))).or(a.interim);
        let session = Session {
            id: format!("{:08x}-{:x}", s.unix_secs, s.ike_sa.0),
            user: s.user,
            framed_ip: s.framed_ip,
            class: accepted.class,
            local: s.local,
            remote: s.remote,
            started: t,
            interim,
            next_interim: interim.map(|i| t + i),
            done: Totals::default(),
        };
        let attrs = acct_attributes(&session, &nas, ACCT_START, t, None, None);
        a.sessions.insert(s.ike_sa, session);
        a.send(t, attrs);
    }

    /// A Child SA of the session went (rekeyed or deleted): its counters.
    pub fn child_gone(&mut self, ike_sa: IkeSaHandle, c: Totals) {
        if let Some(s) = self.acct.as_mut().and_then(|a| a.sessions.get_mut(&ike_sa)) {
            s.done += c;
        }
    }

    /// The IKE SA was rekeyed: the session goes on under the new one.
    pub fn rekeyed(&mut self, old: IkeSaHandle, new: IkeSaHandle) {
        if let Some(a) = self.acct.as_mut() {
            if let Some(s) = a.sessions.remove(&old) {
                a.sessions.insert(new, s);
            }
        }
    }

    /// Sessions whose Interim-Update is due.
    pub fn due_interims(&self, t: Time) -> Vec<IkeSaHandle> {
        self.acct.as_ref().map_or_else(Vec::new, |a| a.sessions.iter().filter(|(_, s)| s.next_interim.is_some_and(|n| n <= t)).map(|(h, _)| *h).collect())
    }

    /// Interim-Update with the live Child SAs' counters.
    pub fn interim(&mut self, t: Time, ike_sa: IkeSaHandle, live: Totals) {
        let nas = self.nas_identifier.clone();
        let Some(a) = self.acct.as_mut() else { return };
        let Some(s) = a.sessions.get_mut(&ike_sa) else { return };
        let mut total = s.done;
        total += live;
        s.next_interim = s.interim.map(|i| t + i);
        let attrs = acct_attributes(s, &nas, ACCT_INTERIM, t, Some(total), None);
        a.send(t, attrs);
    }

    /// Stop: the IKE SA is down (its Child SAs' counters already in).
    pub fn stop(&mut self, t: Time, ike_sa: IkeSaHandle, live: Totals, cause: u32) {
        let nas = self.nas_identifier.clone();
        let Some(a) = self.acct.as_mut() else { return };
        let Some(s) = a.sessions.remove(&ike_sa) else { return };
        let mut total = s.done;
        total += live;
        let attrs = acct_attributes(&s, &nas, ACCT_STOP, t, Some(total), Some(cause));
        a.send(t, attrs);
    }

    /// The IKE SA is gone: its conversation and any request of it (its
    /// accounting session ends with [`Self::stop`]).
    pub fn forget(&mut self, ike_sa: IkeSaHandle) {
        self.states.remove(&ike_sa);
        self.accepted.remove(&ike_sa);
        let tags: Vec<u64> = self.tags.iter().filter(|(_, (h, _))| *h == ike_sa).map(|(t, _)| *t).collect();
        for t in tags {
            self.tags.remove(&t);
            self.client.cancel(t);
        }
    }

    /// The clients' counters since the last call (for the metrics):
    /// authentication, then accounting.
    pub fn stats_delta(&mut self) -> (Stats, Stats) {
        let now = self.client.stats();
        let was = std::mem::replace(&mut self.counted, now);
        let acct = match self.acct.as_mut() {
            Some(a) => {
                let now = a.client.stats();
                let was = std::mem::replace(&mut a.counted, now);
                delta(now, was)
            }
            None => Stats::default(),
        };
        (delta(now, was), acct)
    }

    /// The server new requests go to (its address).
    pub fn current_server(&self) -> SocketAddr {
        self.client.servers()[self.client.current_server()].addr
    }

    fn answer(&mut self, done: Done) -> Option<AaaAnswer> {
        let (ike_sa, message_id) = self.tags.remove(&done.tag)?;
        let outcome = match done.outcome {
            Outcome::Timeout => {
                self.states.remove(&ike_sa);
                AaaOutcome::Unreachable
            }
            Outcome::Reply { server, packet, request_authenticator } => match packet.code {
                code::ACCESS_CHALLENGE => match packet.eap_message() {
                    Some(eap) => {
                        match packet.get(attr::STATE) {
                            Some(s) => self.states.insert(ike_sa, s.to_vec()),
                            None => self.states.remove(&ike_sa),
                        };
                        AaaOutcome::Challenge(eap)
                    }
                    // A challenge without EAP cannot go on.
                    None => AaaOutcome::Reject { eap: None },
                },
                code::ACCESS_ACCEPT => {
                    self.states.remove(&ike_sa);
                    let secret = &self.client.servers()[server].secret;
                    let msk = radius_wire::msk(&packet, &request_authenticator, secret);
                    self.accepted.insert(
                        ike_sa,
                        Accepted {
                            class: packet.all(attr::CLASS).map(<[u8]>::to_vec).collect(),
                            session_timeout: packet.get_u32(attr::SESSION_TIMEOUT),
                            interim_interval: packet.get_u32(attr::ACCT_INTERIM_INTERVAL),
                        },
                    );
                    AaaOutcome::Accept { eap: packet.eap_message(), msk }
                }
                _ => {
                    self.states.remove(&ike_sa);
                    AaaOutcome::Reject { eap: packet.eap_message() }
                }
            },
        };
        Some(AaaAnswer { ike_sa, message_id, outcome })
    }
}

fn delta(now: Stats, was: Stats) -> Stats {
    Stats {
        requests: now.requests - was.requests,
        retransmits: now.retransmits - was.retransmits,
        failovers: now.failovers - was.failovers,
        timeouts: now.timeouts - was.timeouts,
        bad_replies: now.bad_replies - was.bad_replies,
    }
}

impl Accounting {
    fn send(&mut self, t: Time, attrs: Vec<Attribute>) {
        let tag = self.next_tag;
        self.next_tag += 1;
        if let Err(e) = self.client.send(t.since_origin(), tag, code::ACCOUNTING_REQUEST, attrs, [0; 16]) {
            crate::daemon::log_warn(format_args!("RADIUS accounting request not sent: {e}"));
        }
    }
}

/// An Accounting-Request's attributes (RFC 2866 §5): octets above 4 GiB
/// in the Gigawords attributes (RFC 2869 §5.1, §5.2).
fn acct_attributes(s: &Session, nas: &str, status: u32, t: Time, total: Option<Totals>, cause: Option<u32>) -> Vec<Attribute> {
    let mut a = vec![
        Attribute::u32(attr::ACCT_STATUS_TYPE, status),
        Attribute::new(attr::ACCT_SESSION_ID, s.id.as_bytes().to_vec()),
        Attribute::new(attr::USER_NAME, s.user.clone()),
    ];
    match s.local.ip() {
        IpAddr::V4(v4) => a.push(Attribute::new(attr::NAS_IP_ADDRESS, v4.octets().to_vec())),
        IpAddr::V6(v6) => a.push(Attribute::new(attr::NAS_IPV6_ADDRESS, v6.octets().to_vec())),
    }
    a.push(Attribute::new(attr::NAS_IDENTIFIER, nas.as_bytes().to_vec()));
    a.push(Attribute::u32(attr::NAS_PORT_TYPE, NAS_PORT_TYPE_VIRTUAL));
    a.push(Attribute::u32(attr::SERVICE_TYPE, SERVICE_TYPE_FRAMED));
    a.push(Attribute::new(attr::CALLED_STATION_ID, format!("{}[{}]", s.local.ip(), s.local.port()).into_bytes()));
    a.push(Attribute::new(attr::CALLING_STATION_ID, format!("{}[{}]", s.remote.ip(), s.remote.port()).into_bytes()));
    if let Some(ip) = s.framed_ip {
        a.push(Attribute::new(attr::FRAMED_IP_ADDRESS, ip.octets().to_vec()));
    }
    for c in &s.class {
        a.push(Attribute::new(attr::CLASS, c.clone()));
    }
    if let Some(n) = total {
        let secs = t.saturating_since(s.started).as_secs();
        a.push(Attribute::u32(attr::ACCT_SESSION_TIME, u32::try_from(secs).unwrap_or(u32::MAX)));
        a.push(Attribute::u32(attr::ACCT_INPUT_OCTETS, n.in_octets as u32));
        a.push(Attribute::u32(attr::ACCT_OUTPUT_OCTETS, n.out_octets as u32));
        a.push(Attribute::u32(attr::ACCT_INPUT_GIGAWORDS, (n.in_octets >> 32) as u32));
        a.push(Attribute::u32(attr::ACCT_OUTPUT_GIGAWORDS, (n.out_octets >> 32) as u32));
        a.push(Attribute::u32(attr::ACCT_INPUT_PACKETS, u32::try_from(n.in_pkts).unwrap_or(u32::MAX)));
        a.push(Attribute::u32(attr::ACCT_OUTPUT_PACKETS, u32::try_from(n.out_pkts).unwrap_or(u32::MAX)));
    }
    if let Some(c) = cause {
        a.push(Attribute::u32(attr::ACCT_TERMINATE_CAUSE, c));
    }
    a
}

/// RFC 2866 §5.10 Acct-Terminate-Cause for why an IKE SA went down.
pub fn terminate_cause(reason: &ike_proto::DownReason) -> u32 {
    use ike_proto::DownReason as D;
    match reason {
        // The client or the operator deleted it.
        D::Deleted => 1,   // User-Request
        D::Timeout => 2,   // Lost-Carrier (DPD found the peer gone)
        D::Replaced => 10, // NAS-Request (another SA of this identity took over)
        D::AuthenticationFailed | D::Refused(_) => 9, // NAS-Error
        D::Rekeyed => 10,
    }
}

/// The reader thread: datagrams to the loop until the stop flag.
fn read(socket: UdpSocket, tx: Sender<(SocketAddr, Vec<u8>)>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; radius_wire::MAX_PACKET_LEN];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => match tx.try_send((from, buf[..n].to_vec())) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            // ICMP port unreachable from a dead server surfaces here on
            // Linux: the request's timeout handles it.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
