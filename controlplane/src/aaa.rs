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
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
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

pub struct Aaa {
    client: Client,
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
        let aaa = Self {
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

    /// A datagram from the socket: the answer it completes, if any.
    pub fn datagram(&mut self, t: Time, from: SocketAddr, bytes: &[u8]) -> Option<AaaAnswer> {
        let done = self.client.handle_datagram(t.since_origin(), from, bytes)?;
        self.answer(done)
    }

    /// Retransmissions and failovers due; the requests no server answered.
    pub fn timeout(&mut self, t: Time) -> Vec<AaaAnswer> {
        let done = self.client.handle_timeout(t.since_origin());
        done.into_iter().filter_map(|d| self.answer(d)).collect()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.client.poll_timeout().map(Time::from_duration)
    }

    /// Sends what the client has to send.
    pub fn flush(&mut self) {
        while let Some(tr) = self.client.poll_transmit() {
            if let Err(e) = self.socket.send_to(&tr.bytes, tr.to) {
                crate::daemon::log_warn(format_args!("RADIUS send to {}: {e}", tr.to));
            }
        }
    }

    /// The IKE SA is gone: its conversation and any request of it.
    pub fn forget(&mut self, ike_sa: IkeSaHandle) {
        self.states.remove(&ike_sa);
        self.accepted.remove(&ike_sa);
        let tags: Vec<u64> = self.tags.iter().filter(|(_, (h, _))| *h == ike_sa).map(|(t, _)| *t).collect();
        for t in tags {
            self.tags.remove(&t);
            self.client.cancel(t);
        }
    }

    /// The client's counters since the last call (for the metrics).
    pub fn stats_delta(&mut self) -> Stats {
        let now = self.client.stats();
        let was = std::mem::replace(&mut self.counted, now);
        Stats {
            requests: now.requests - was.requests,
            retransmits: now.retransmits - was.retransmits,
            failovers: now.failovers - was.failovers,
            timeouts: now.timeouts - was.timeouts,
            bad_replies: now.bad_replies - was.bad_replies,
        }
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
