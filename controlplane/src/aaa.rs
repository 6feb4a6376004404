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
                tracing::warn!("RADIUS send to {}: {e}", tr.to);
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
            tracing::warn!("RADIUS accounting request not sent: {e}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use radius_wire::client::{Config, Server};
    use radius_wire::Packet;

    const SECRET: &[u8] = b"aaa-test-secret";

    fn server(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn aaa(accounting: bool) -> Aaa {
        let servers = vec![Server { addr: server(18121), secret: zeroize::Zeroizing::new(SECRET.to_vec()) }];
        let client = Config { servers, timeout: Duration::from_millis(100), retries: 0 };
        let acct = Config {
            servers: vec![Server { addr: server(18122), secret: zeroize::Zeroizing::new(SECRET.to_vec()) }],
            ..client.clone()
        };
        let cfg = RadiusConfig {
            client,
            nas_identifier: "nas-t".into(),
            source: Some(IpAddr::from([127, 0, 0, 1])),
            accounting: accounting.then(|| crate::config::AccountingConfig { client: acct, interim: Some(Duration::from_secs(5)) }),
        };
        let (a, _thread) = Aaa::start(&cfg, Arc::new(AtomicBool::new(true))).expect("binds");
        a
    }

    fn request(ike_sa: u64, eap: &[u8], first: bool) -> AaaRequest {
        AaaRequest {
            ike_sa: IkeSaHandle(ike_sa),
            message_id: 2,
            connection: "rw".into(),
            identity: b"alice".to_vec(),
            eap: eap.to_vec(),
            local: SocketAddr::from(([172, 16, 0, 1], 4500)),
            remote: SocketAddr::from(([172, 16, 0, 2], 4500)),
            first,
        }
    }

    /// What the client sent last, decoded.
    fn sent(a: &mut Aaa) -> (SocketAddr, Vec<u8>, Packet) {
        let tr = a.client.poll_transmit().expect("a request went out");
        let p = Packet::decode(&tr.bytes).expect("decodes");
        (tr.to, tr.bytes, p)
    }

    /// A reply as FreeRADIUS builds it (Message-Authenticator, then the
    /// Response Authenticator).
    fn reply(code: u8, request: &Packet, mut attrs: Vec<Attribute>) -> Vec<u8> {
        attrs.push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, vec![0; 16]));
        let mut p = Packet { code, identifier: request.identifier, authenticator: request.authenticator, attributes: attrs }.encode().expect("encodes");
        // The Message-Authenticator is last: HMAC-MD5 over the packet with
        // it zeroed (RFC 3579 §3.2), made by radius-wire's request builder
        // on the same octets.
        let mac = radius_wire::message_authenticator(&p, SECRET);
        let n = p.len();
        p[n - 16..].copy_from_slice(&mac);
        let ra = radius_wire::response_authenticator(&p, &request.authenticator, SECRET);
        p[4..20].copy_from_slice(&ra);
        p
    }

    #[test]
    fn a_conversation_carries_state_and_ends_with_the_msk() {
        let mut a = aaa(false);
        let t = Time::from_secs(1);
        assert!(a.request(t, request(1, &[2, 7, 0, 10, 1, b'a', b'l', b'i', b'c', b'e'], true), [1; 16]).is_none());
        let (to, bytes, p) = sent(&mut a);
        assert_eq!(to, server(18121));
        radius_wire::verify_request_message_authenticator(&bytes, SECRET).expect("Message-Authenticator");
        assert_eq!(p.get(attr::USER_NAME), Some(&b"alice"[..]));
        assert_eq!(p.get(attr::NAS_IP_ADDRESS), Some(&[172, 16, 0, 1][..]));
        assert_eq!(p.get(attr::NAS_IDENTIFIER), Some(&b"nas-t"[..]));
        assert_eq!(p.get(attr::CALLING_STATION_ID), Some(&b"172.16.0.2[4500]"[..]));
        assert_eq!(p.eap_message().as_deref(), Some(&[2, 7, 0, 10, 1, b'a', b'l', b'i', b'c', b'e'][..]));
        assert!(p.get(attr::STATE).is_none(), "no State on the first request");
        // Challenge with a State: the next request echoes it.
        let challenge = reply(code::ACCESS_CHALLENGE, &p, vec![Attribute::new(attr::EAP_MESSAGE, vec![1, 8, 0, 6, 4, 0]), Attribute::new(attr::STATE, b"st-1".to_vec())]);
        let ans = a.datagram(t, server(18121), &challenge).expect("answers");
        assert!(matches!(ans.outcome, AaaOutcome::Challenge(ref m) if m == &[1, 8, 0, 6, 4, 0]), "{ans:?}");
        assert_eq!((ans.ike_sa, ans.message_id), (IkeSaHandle(1), 2));
        assert!(a.request(t, request(1, &[2, 8, 0, 6, 4, 0], false), [2; 16]).is_none());
        let (_, _, p2) = sent(&mut a);
        assert_eq!(p2.get(attr::STATE), Some(&b"st-1"[..]));
        // Accept with MS-MPPE keys: the MSK is Recv | Send.
        let recv = [0x11u8; 32];
        let send = [0x22u8; 32];
        let hide = |k: &[u8], salt| radius_wire::encrypt_mppe_key(k, salt, &p2.authenticator, SECRET).expect("hides");
        let accept = reply(
            code::ACCESS_ACCEPT,
            &p2,
            vec![
                Attribute::new(attr::EAP_MESSAGE, vec![3, 8, 0, 4]),
                Attribute::vendor(radius_wire::VENDOR_MICROSOFT, radius_wire::MS_MPPE_RECV_KEY, &hide(&recv, [0x80, 1])),
                Attribute::vendor(radius_wire::VENDOR_MICROSOFT, radius_wire::MS_MPPE_SEND_KEY, &hide(&send, [0x80, 2])),
                Attribute::new(attr::CLASS, b"gold".to_vec()),
                Attribute::u32(attr::ACCT_INTERIM_INTERVAL, 60),
            ],
        );
        // Not from the server: dropped.
        assert!(a.datagram(t, server(9), &accept).is_none());
        let ans = a.datagram(t, server(18121), &accept).expect("answers");
        let AaaOutcome::Accept { eap, msk } = ans.outcome else { panic!("{ans:?}") };
        assert_eq!(eap.as_deref(), Some(&[3, 8, 0, 4][..]));
        let msk = msk.expect("MSK");
        assert_eq!((&msk[..32], &msk[32..]), (&recv[..], &send[..]));
        let acc = a.accepted.get(&IkeSaHandle(1)).expect("kept for accounting");
        assert_eq!((acc.class.clone(), acc.interim_interval), (vec![b"gold".to_vec()], Some(60)));
        assert!(a.states.is_empty(), "the conversation is over");
    }

    #[test]
    fn no_answer_is_unreachable_and_a_reject_is_a_reject() {
        let mut a = aaa(false);
        let t = Time::from_secs(1);
        a.request(t, request(3, &[2, 1, 0, 5, 1], true), [3; 16]);
        let (_, _, p) = sent(&mut a);
        assert_eq!(a.poll_timeout(), Some(t + Duration::from_millis(100)));
        let ans = a.timeout(t + Duration::from_millis(100));
        assert!(matches!(ans.as_slice(), [AaaAnswer { outcome: AaaOutcome::Unreachable, .. }]), "{ans:?}");
        // A late reply completes nothing.
        let late = reply(code::ACCESS_REJECT, &p, vec![]);
        assert!(a.datagram(t, server(18121), &late).is_none());
        a.request(t, request(4, &[2, 1, 0, 5, 1], true), [4; 16]);
        let (_, _, p) = sent(&mut a);
        let reject = reply(code::ACCESS_REJECT, &p, vec![Attribute::new(attr::EAP_MESSAGE, vec![4, 1, 0, 4])]);
        let ans = a.datagram(t, server(18121), &reject).expect("answers");
        assert!(matches!(ans.outcome, AaaOutcome::Reject { eap: Some(ref m) } if m == &[4, 1, 0, 4]), "{ans:?}");
        // An IKE SA that goes away cancels its request.
        a.request(t, request(5, &[2, 1, 0, 5, 1], true), [5; 16]);
        let _ = sent(&mut a);
        a.forget(IkeSaHandle(5));
        assert!(a.timeout(t + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn accounting_start_interim_stop_carry_the_counters() {
        let mut a = aaa(true);
        let t = Time::from_secs(10);
        let h = IkeSaHandle(7);
        a.accepted.insert(h, Accepted { class: vec![b"c1".to_vec()], session_timeout: None, interim_interval: None });
        assert!(a.wants_session(h));
        a.start_session(
            t,
            SessionStart { ike_sa: h, user: b"alice".to_vec(), framed_ip: Some(Ipv4Addr::new(10, 99, 0, 1)), local: SocketAddr::from(([172, 16, 0, 1], 4500)), remote: SocketAddr::from(([172, 16, 0, 2], 4500)), unix_secs: 0x1234 },
        );
        assert!(!a.wants_session(h));
        let acct = a.acct.as_mut().expect("accounting");
        let tr = acct.client.poll_transmit().expect("Start sent");
        assert_eq!(tr.to, server(18122));
        let p = Packet::decode(&tr.bytes).expect("decodes");
        assert_eq!(p.code, code::ACCOUNTING_REQUEST);
        assert_eq!(p.get_u32(attr::ACCT_STATUS_TYPE), Some(ACCT_START));
        assert_eq!(p.get(attr::ACCT_SESSION_ID), Some(&b"00001234-7"[..]));
        assert_eq!(p.get(attr::FRAMED_IP_ADDRESS), Some(&[10, 99, 0, 1][..]));
        assert_eq!(p.get(attr::CLASS), Some(&b"c1"[..]));
        assert!(p.get(attr::ACCT_INPUT_OCTETS).is_none());
        // Interim at the configured 5 s, with a deleted Child SA's counters
        // added to the live ones; octets past 4 GiB in Gigawords.
        assert!(a.due_interims(t + Duration::from_secs(4)).is_empty());
        assert_eq!(a.due_interims(t + Duration::from_secs(5)), vec![h]);
        a.child_gone(h, Totals { in_octets: 5 << 32, out_octets: 100, in_pkts: 10, out_pkts: 1 });
        a.interim(t + Duration::from_secs(5), h, Totals { in_octets: 7, out_octets: 8, in_pkts: 2, out_pkts: 3 });
        let acct = a.acct.as_mut().expect("accounting");
        let p = Packet::decode(&acct.client.poll_transmit().expect("Interim sent").bytes).expect("decodes");
        assert_eq!(p.get_u32(attr::ACCT_STATUS_TYPE), Some(ACCT_INTERIM));
        assert_eq!(p.get_u32(attr::ACCT_INPUT_OCTETS), Some(7));
        assert_eq!(p.get_u32(attr::ACCT_INPUT_GIGAWORDS), Some(5));
        assert_eq!(p.get_u32(attr::ACCT_OUTPUT_OCTETS), Some(108));
        assert_eq!((p.get_u32(attr::ACCT_INPUT_PACKETS), p.get_u32(attr::ACCT_OUTPUT_PACKETS)), (Some(12), Some(4)));
        assert_eq!(p.get_u32(attr::ACCT_SESSION_TIME), Some(5));
        assert!(a.due_interims(t + Duration::from_secs(9)).is_empty());
        // A rekeyed IKE SA keeps the session; Stop with the cause.
        a.rekeyed(h, IkeSaHandle(8));
        a.stop(t + Duration::from_secs(6), IkeSaHandle(8), Totals::default(), terminate_cause(&ike_proto::DownReason::Timeout));
        let acct = a.acct.as_mut().expect("accounting");
        let p = Packet::decode(&acct.client.poll_transmit().expect("Stop sent").bytes).expect("decodes");
        assert_eq!(p.get_u32(attr::ACCT_STATUS_TYPE), Some(ACCT_STOP));
        assert_eq!(p.get_u32(attr::ACCT_TERMINATE_CAUSE), Some(2));
        assert_eq!(p.get_u32(attr::ACCT_INPUT_PACKETS), Some(10));
        assert!(a.due_interims(t + Duration::from_secs(60)).is_empty(), "the session is over");
    }
}
