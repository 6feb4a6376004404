//! IKE_SA_INIT under attack (RFC 7296 §2.6): the cookie and the half-open
//! limits are checked before any key exchange or IKE SA is spent, every
//! outcome is counted, and `plan_init_key_exchanges` (what esprit-ike
//! computes ahead on its pool) never includes a request the endpoint would
//! not spend a key exchange on.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ike_crypto::ke::{KeyExchange, Responded};
use ike_crypto::rng::DeterministicRng;
use ike_crypto::{CryptoProvider, RustCryptoProvider};
use ike_wire::{Message, Notify, NotifyType, Payload};
use rand_core::CryptoRngCore;

use super::util::*;
use crate::{Command, Endpoint, EndpointConfig, InitCounters};

/// RustCrypto, counting the responder key exchanges it computes.
struct Counting(Arc<AtomicUsize>);

impl CryptoProvider for Counting {
    fn key_exchange(&self, method: u16, rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, ike_crypto::Error> {
        RustCryptoProvider.key_exchange(method, rng)
    }
    fn key_exchange_respond(&self, method: u16, peer: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Responded, ike_crypto::Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        RustCryptoProvider.key_exchange_respond(method, peer, rng)
    }
    fn prf(&self, id: u16) -> Result<Box<dyn ike_crypto::prf::Prf>, ike_crypto::Error> {
        RustCryptoProvider.prf(id)
    }
    fn sk_protection(&self, encr: u16, key_bits: Option<u16>, integ: u16, sk_e: &[u8], sk_a: &[u8]) -> Result<Box<dyn ike_crypto::sk::SkProtection>, ike_crypto::Error> {
        RustCryptoProvider.sk_protection(encr, key_bits, integ, sk_e, sk_a)
    }
    fn encr_key_len(&self, encr: u16, key_bits: Option<u16>) -> Result<usize, ike_crypto::Error> {
        RustCryptoProvider.encr_key_len(encr, key_bits)
    }
    fn integ_key_len(&self, integ: u16) -> Result<usize, ike_crypto::Error> {
        RustCryptoProvider.integ_key_len(integ)
    }
    fn supports_key_exchange(&self, method: u16) -> bool {
        RustCryptoProvider.supports_key_exchange(method)
    }
}

const B: SocketAddr = SocketAddr::new(IP_B, 500);

/// A responder (B) counting its key exchanges, with `tune` applied to its
/// configuration, and an initiator (A) to make real requests with.
struct Bench {
    a: Endpoint,
    b: Endpoint,
    kes: Arc<AtomicUsize>,
    now: crate::Time,
}

impl Bench {
    fn new(tune: impl FnOnce(&mut EndpointConfig)) -> Self {
        let ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
        let mut cb = endpoint_config(psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false));
        tune(&mut cb);
        let kes = Arc::new(AtomicUsize::new(0));
        Self {
            a: Endpoint::new(endpoint_config(ca), Box::new(RustCryptoProvider), Box::new(DeterministicRng::from_u64(1)), T0, UNIX_T0),
            b: Endpoint::new(cb, Box::new(Counting(kes.clone())), Box::new(DeterministicRng::from_u64(2)), T0, UNIX_T0),
            kes,
            now: T0,
        }
    }

    /// `n` fresh IKE_SA_INIT requests from A (distinct SPIi and Ni).
    fn requests(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let local = SocketAddr::new(IP_A, 500);
                self.a.handle_command(self.now, Command::Initiate { connection: "site".into(), local, remote: B }).expect("initiate");
                self.a.poll_transmit().expect("an IKE_SA_INIT request").payload
            })
            .collect()
    }

    /// Feeds `req` to B from `ip` and returns B's answer, if any.
    fn feed(&mut self, ip: IpAddr, req: &[u8]) -> Option<Answer> {
        self.b.handle_datagram(self.now, B, SocketAddr::new(ip, 500), req);
        let answer = self.b.poll_transmit().map(|t| t.payload);
        assert!(self.b.poll_transmit().is_none(), "one answer per request");
        answer.map(|p| {
            let m = Message::parse(&p).expect("B's answer parses");
            Answer { spi_r: m.header.spi_r, cookie: m.notify(NotifyType::COOKIE).map(|n| n.data.to_vec()) }
        })
    }

    fn plan(&self, burst: &[(IpAddr, &[u8])]) -> usize {
        self.b.plan_init_key_exchanges(self.now, burst.iter().map(|(ip, r)| (B, SocketAddr::new(*ip, 500), *r))).len()
    }

    fn kes(&self) -> usize {
        self.kes.load(Ordering::Relaxed)
    }
}

/// What B answered: its SPI (zero for a stateless answer) and the COOKIE.
#[derive(Debug)]
struct Answer {
    spi_r: u64,
    cookie: Option<Vec<u8>>,
}

/// The COOKIE an answer carries.
fn cookie_of(a: &Answer) -> Option<Vec<u8>> {
    a.cookie.clone()
}

/// `req` with N(COOKIE) = `cookie` as its first payload (§2.6).
fn with_cookie(req: &[u8], cookie: &[u8]) -> Vec<u8> {
    let m = Message::parse(req).expect("request parses");
    let mut payloads = vec![Payload::Notify(Notify::new(NotifyType::COOKIE, cookie.to_vec()))];
    payloads.extend(m.payloads.into_iter().filter(|p| !matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::COOKIE)));
    Message::new(m.header, payloads).emit().expect("emits")
}

const IP_C: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));

#[test]
fn a_valid_cookie_is_accepted_and_only_then_a_key_exchange_is_spent() {
    let mut t = Bench::new(|c| c.cookie_threshold = 0);
    let req = t.requests(1).remove(0);
    assert_eq!(t.plan(&[(IP_A, &req)]), 0, "cookies are required: no key exchange planned without one");
    let answer = t.feed(IP_A, &req).expect("a COOKIE answer");
    let cookie = cookie_of(&answer).expect("the answer is a COOKIE");
    assert_eq!(answer.spi_r, 0, "stateless: no SPIr");
    assert_eq!((t.kes(), t.b.ike_sa_count()), (0, 0));
    let retry = with_cookie(&req, &cookie);
    assert_eq!(t.plan(&[(IP_A, &retry)]), 1, "the retry with the cookie is planned");
    let answer = t.feed(IP_A, &retry).expect("an IKE_SA_INIT response");
    assert!(cookie_of(&answer).is_none() && answer.spi_r != 0, "a real response: {answer:?}");
    assert_eq!((t.kes(), t.b.ike_sa_count(), t.b.half_open_count()), (1, 1, 1));
    assert_eq!(t.b.init_counters(), InitCounters { cookie_missing: 1, admitted: 1, ..InitCounters::default() });
    // The retransmitted retry is answered from the cache: no second one.
    assert_eq!(t.plan(&[(IP_A, &retry)]), 0);
    t.feed(IP_A, &retry).expect("the cached response");
    assert_eq!((t.kes(), t.b.ike_sa_count(), t.b.init_counters().retransmits), (1, 1, 1));
}

#[test]
fn forged_misbound_and_expired_cookies_cost_no_key_exchange_and_are_counted() {
    let lifetime = Duration::from_secs(120);
    let mut t = Bench::new(|c| {
        c.cookie_threshold = 0;
        c.cookie_secret_lifetime = lifetime;
    });
    let reqs = t.requests(4);
    // Forged: the right length and version, random MAC.
    let forged = with_cookie(&reqs[0], &[[0u8].as_slice(), &[0x5a; 32]].concat());
    // Another request's valid cookie (bound to its SPIi and Ni).
    let c1 = cookie_of(&t.feed(IP_A, &reqs[1]).unwrap()).unwrap();
    let misbound = with_cookie(&reqs[2], &c1);
    // A valid cookie presented from another address (§2.6: IPi is in it).
    let moved = with_cookie(&reqs[1], &c1);
    let burst: Vec<(IpAddr, &[u8])> = vec![(IP_A, &forged), (IP_A, &misbound), (IP_C, &moved)];
    assert_eq!(t.plan(&burst), 0, "no key exchange planned for a cookie that does not verify");
    for (ip, r) in &burst {
        let answer = t.feed(*ip, r).expect("a fresh COOKIE");
        assert!(cookie_of(&answer).is_some());
    }
    // Expired: a cookie handed out now, presented two secret lifetimes later.
    let c3 = cookie_of(&t.feed(IP_A, &reqs[3]).unwrap()).unwrap();
    t.now = t.now + 2 * lifetime;
    let expired = with_cookie(&reqs[3], &c3);
    assert_eq!(t.plan(&[(IP_A, &expired)]), 0);
    assert!(cookie_of(&t.feed(IP_A, &expired).expect("answered")).is_some(), "an expired cookie gets a fresh one");
    assert_eq!((t.kes(), t.b.ike_sa_count(), t.b.half_open_count()), (0, 0, 0), "no key exchange, no IKE SA");
    assert_eq!(t.b.init_counters(), InitCounters { cookie_missing: 2, cookie_invalid: 4, ..InitCounters::default() });
}

#[test]
fn the_per_peer_and_global_half_open_limits_hold_before_any_key_exchange() {
    let mut t = Bench::new(|c| {
        c.half_open_per_peer_limit = 2;
        c.half_open_limit = 3;
    });
    let reqs = t.requests(6);
    // Four from one address: two get in; the burst's own admissions count.
    let burst: Vec<(IpAddr, &[u8])> = reqs[..4].iter().map(|r| (IP_A, r.as_slice())).collect();
    assert_eq!(t.plan(&burst), 2);
    for (ip, r) in &burst {
        t.feed(*ip, r);
    }
    assert_eq!((t.kes(), t.b.half_open_count()), (2, 2));
    // Two more from other addresses: one fits under the global limit (3).
    let burst: Vec<(IpAddr, &[u8])> = vec![(IP_C, &reqs[4]), (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4)), &reqs[5])];
    assert_eq!(t.plan(&burst), 1);
    for (ip, r) in &burst {
        assert!(t.feed(*ip, r).is_none() || t.b.half_open_count() <= 3, "over a limit: dropped without answer");
    }
    assert_eq!((t.kes(), t.b.half_open_count()), (3, 3));
    assert_eq!(t.b.init_counters(), InitCounters { peer_limit: 2, half_open_limit: 1, admitted: 3, ..InitCounters::default() });
}

#[test]
fn the_plan_of_a_mixed_burst_is_exactly_what_the_endpoint_spends() {
    // Cookies from the second half-open SA on, one per address, a burst
    // mixing valid, forged and missing cookies, duplicates and retries.
    let mut t = Bench::new(|c| {
        c.cookie_threshold = 1;
        c.half_open_per_peer_limit = 1;
    });
    let reqs = t.requests(6);
    let ip = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
    // Cookies for requests 2 and 3 (handed out while the threshold is met:
    // one half-open SA first).
    t.feed(ip(1), &reqs[0]);
    let c2 = cookie_of(&t.feed(ip(2), &reqs[2]).unwrap()).unwrap();
    let c3 = cookie_of(&t.feed(ip(3), &reqs[3]).unwrap()).unwrap();
    let (ok2, ok3) = (with_cookie(&reqs[2], &c2), with_cookie(&reqs[3], &c3));
    let forged = with_cookie(&reqs[4], &[[0u8].as_slice(), &[1; 32]].concat());
    let burst: Vec<(IpAddr, &[u8])> = vec![
        (ip(1), &reqs[0]), // retransmit of the admitted one
        (ip(2), &ok2),
        (ip(2), &ok2), // the same again, in the same burst
        (ip(4), &forged),
        (ip(5), &reqs[5]), // no cookie
        (ip(3), &ok3),
        (ip(1), &reqs[1]), // no cookie, and its address is at its limit
    ];
    let planned = t.plan(&burst);
    let before = t.kes();
    for (ip, r) in &burst {
        t.feed(*ip, r);
    }
    assert_eq!(planned, 2);
    assert_eq!(t.kes() - before, planned, "the plan is what the endpoint spent");
}
