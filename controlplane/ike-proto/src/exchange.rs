//! The exchange manager of one IKE SA: Message IDs in both directions, the
//! window, retransmission of our requests and the cache of our responses
//! (RFC 7296 §2.1-§2.3).
//!
//! Guarantees:
//! * Requests we send get consecutive Message IDs from 0 (§2.2); at most
//!   `send_window` are outstanding (1 until SET_WINDOW_SIZE, which a later
//!   change may honour: the outstanding set is already a map).
//! * An outstanding request is resent bit-identical after `timeout *
//!   base^n` (§2.1: exponential backoff); after `tries` retransmits and one
//!   more timeout the manager reports [`Timeout::GiveUp`] and the IKE SA dies.
//! * A peer request with the next expected Message ID is new; one whose ID
//!   and bytes match a cached response gets that response again, unprocessed
//!   (§2.1); anything else is dropped (§2.3: outside the window). Responses
//!   are kept for the last `recv_window` Message IDs.
//! * A response is accepted only for an outstanding Message ID (§2.1: "MUST
//!   ignore" other responses).
use std::collections::{BTreeMap, VecDeque};

use ike_crypto::prf::HashAlg;
use ike_wire::ExchangeType;

use crate::config::RetransmitConfig;
use crate::time::Time;

/// One request we sent and wait an answer for.
#[derive(Debug, Clone)]
pub struct Outstanding {
    pub exchange: ExchangeType,
    /// The datagrams of the request (one, or several fragments later),
    /// without any non-ESP marker.
    pub packets: Vec<Vec<u8>>,
    /// How many times it was resent.
    pub retransmits: u32,
    pub deadline: Time,
}

/// One response we sent, kept for retransmitted requests.
#[derive(Debug, Clone)]
struct CachedResponse {
    message_id: u32,
    /// SHA-256 of the request it answered: a retransmit is bit-identical.
    request_digest: Vec<u8>,
    packets: Vec<Vec<u8>>,
}

/// What to do with an incoming request.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestCheck<'a> {
    /// Process it.
    New,
    /// A retransmit: send these packets again.
    Resend(&'a [Vec<u8>]),
    /// Drop silently.
    Drop,
}

/// What a timer expiry means.
#[derive(Debug, PartialEq, Eq)]
pub enum Timeout {
    Nothing,
    /// Resend these packets.
    Resend(Vec<Vec<u8>>),
    /// Retransmissions are exhausted (§2.4: the peer is dead).
    GiveUp,
}

#[derive(Debug)]
pub struct ExchangeManager {
    next_request_id: u32,
    next_expected_id: u32,
    send_window: u32,
    recv_window: u32,
    outstanding: BTreeMap<u32, Outstanding>,
    responses: VecDeque<CachedResponse>,
    retransmit: RetransmitConfig,
}

pub fn digest(bytes: &[u8]) -> Vec<u8> {
    HashAlg::Sha256.digest(&[bytes])
}

impl ExchangeManager {
    pub fn new(retransmit: RetransmitConfig) -> Self {
        Self {
            next_request_id: 0,
            next_expected_id: 0,
            send_window: 1,
            recv_window: 1,
            outstanding: BTreeMap::new(),
            responses: VecDeque::new(),
            retransmit,
        }
    }

    /// Whether another request may be sent now (§2.3 window).
    pub fn can_send(&self) -> bool {
        (self.outstanding.len() as u64) < u64::from(self.send_window)
    }

    /// The Message ID the next request will carry.
    pub fn next_request_id(&self) -> u32 {
        self.next_request_id
    }

    /// Records a request just sent; returns its Message ID.
    pub fn start_request(&mut self, now: Time, exchange: ExchangeType, packets: Vec<Vec<u8>>) -> u32 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let deadline = now + self.retransmit.timeout_after(0);
        self.outstanding.insert(id, Outstanding { exchange, packets, retransmits: 0, deadline });
        id
    }

    /// Replaces the packets of an outstanding request and restarts its
    /// timer: the IKE_SA_INIT retry with a COOKIE or another KE group keeps
    /// Message ID 0 (§2.2, §2.6).
    pub fn restart_request(&mut self, now: Time, id: u32, packets: Vec<Vec<u8>>) {
        if let Some(o) = self.outstanding.get_mut(&id) {
            o.packets = packets;
            o.retransmits = 0;
            o.deadline = now + self.retransmit.timeout_after(0);
        }
    }

    pub fn outstanding(&self, id: u32) -> Option<&Outstanding> {
        self.outstanding.get(&id)
    }

    pub fn has_outstanding(&self) -> bool {
        !self.outstanding.is_empty()
    }

    /// A response arrived: the request it answers, if it was outstanding and
    /// of the same exchange.
    pub fn take_response(&mut self, id: u32, exchange: ExchangeType) -> Option<Outstanding> {
        match self.outstanding.get(&id) {
            Some(o) if o.exchange == exchange => self.outstanding.remove(&id),
            _ => None,
        }
    }

    /// Classifies a peer request by Message ID and bytes.
    pub fn check_request(&self, id: u32, request: &[u8]) -> RequestCheck<'_> {
        if id == self.next_expected_id {
            return RequestCheck::New;
        }
        match self.responses.iter().find(|r| r.message_id == id) {
            Some(r) if r.request_digest == digest(request) => RequestCheck::Resend(&r.packets),
            _ => RequestCheck::Drop,
        }
    }

    /// Records the response to request `id` (which must have been
    /// [`RequestCheck::New`]) and moves the window on.
    pub fn record_response(&mut self, id: u32, request: &[u8], packets: Vec<Vec<u8>>) {
        self.next_expected_id = id.wrapping_add(1);
        self.responses.push_back(CachedResponse { message_id: id, request_digest: digest(request), packets });
        while self.responses.len() > self.recv_window as usize {
            self.responses.pop_front();
        }
    }

    /// Marks request `id` as consumed without a response (a request that is
    /// answered with silence still moves the window on, so a retransmit of
    /// it is dropped rather than processed twice).
    pub fn skip_request(&mut self, id: u32) {
        self.next_expected_id = id.wrapping_add(1);
    }

    /// The earliest retransmission deadline.
    pub fn deadline(&self) -> Option<Time> {
        self.outstanding.values().map(|o| o.deadline).min()
    }

    /// Fires due retransmissions.
    pub fn on_timeout(&mut self, now: Time) -> Timeout {
        let tries = self.retransmit.tries;
        let mut resend = Vec::new();
        for o in self.outstanding.values_mut() {
            if o.deadline > now {
                continue;
            }
            if o.retransmits >= tries {
                return Timeout::GiveUp;
            }
            o.retransmits += 1;
            o.deadline = now + self.retransmit.timeout_after(o.retransmits);
            resend.extend(o.packets.iter().cloned());
        }
        if resend.is_empty() {
            Timeout::Nothing
        } else {
            Timeout::Resend(resend)
        }
    }

    /// Forgets outstanding requests (the IKE SA closes, or a rekeyed SA
    /// stops retransmitting).
    pub fn clear_outstanding(&mut self) {
        self.outstanding.clear();
    }

    /// The Message ID of the next request we expect from the peer.
    pub fn next_expected_id(&self) -> u32 {
        self.next_expected_id
    }

    /// Both counters as a snapshot recorded them, or as an RFC 6311
    /// IKEV2_MESSAGE_ID_SYNC exchange settled them; no request is
    /// outstanding and no response cached afterwards.
    pub fn set_ids(&mut self, next_request_id: u32, next_expected_id: u32) {
        self.next_request_id = next_request_id;
        self.next_expected_id = next_expected_id;
        self.outstanding.clear();
        self.responses.clear();
    }

    /// As [`Self::set_ids`], keeping an outstanding request (its answer
    /// may still come, under its own ID).
    pub fn set_next_ids_keep_outstanding(&mut self, next_request_id: u32, next_expected_id: u32) {
        self.next_request_id = next_request_id;
        self.next_expected_id = next_expected_id;
        self.responses.clear();
    }

    /// The outstanding request, if any (the window is 1).
    pub fn first_outstanding(&self) -> Option<(u32, &Outstanding)> {
        self.outstanding.iter().next().map(|(id, o)| (*id, o))
    }

    /// An outstanding request restored from a snapshot: due for resending
    /// at `now`.
    pub fn restore_outstanding(&mut self, now: Time, id: u32, exchange: ExchangeType, packets: Vec<Vec<u8>>) {
        self.outstanding.insert(id, Outstanding { exchange, packets, retransmits: 0, deadline: now });
    }

    /// Records an RFC 6311 synchronisation request just sent: it always
    /// carries Message ID 0 (§4.1) and takes no ID from the sequence.
    pub fn start_sync_request(&mut self, now: Time, exchange: ExchangeType, packets: Vec<Vec<u8>>) {
        let deadline = now + self.retransmit.timeout_after(0);
        self.outstanding.insert(0, Outstanding { exchange, packets, retransmits: 0, deadline });
    }
}
