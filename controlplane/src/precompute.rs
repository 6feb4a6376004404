//! Responder key exchanges of a burst of IKE_SA_INIT requests, computed in
//! parallel with rayon before the (single-threaded) endpoint sees them.
//!
//! The endpoint is one sans-IO state machine and stays on the event loop.
//! What is expensive in an IKE_SA_INIT it answers is the key exchange: a
//! fresh key pair and the shared secret (MODP-2048 takes milliseconds,
//! ECP and X25519 tens of microseconds, ML-KEM encapsulation about as
//! much). Those depend only on the request's KE payload, so when a burst of
//! requests is waiting the daemon reads their KE payloads
//! ([`init_request_ke`]), has rayon compute the responses on every core
//! ([`Precomputing::precompute`]), and the endpoint's crypto provider, this
//! type, hands each result out once to the `key_exchange_respond` call with
//! the same method and peer data. Whatever is not claimed is dropped
//! ([`Precomputing::clear`]) before the next burst, so no responder key is
//! ever used twice and none outlives its burst.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ike_crypto::ke::{KeyExchange, Responded};
use ike_crypto::prf::Prf;
use ike_crypto::sk::SkProtection;
use ike_crypto::{CryptoProvider, Error, Rng as CryptoRngCore, RustCryptoProvider};
use ike_wire::{ExchangeType, Header, Message, NotifyType, Payload};
use rayon::prelude::*;

/// Below this many requests in a burst the loop computes inline: handing
/// work to other threads costs more than one X25519.
pub const MIN_BURST: usize = 4;
/// At most this many results wait for the endpoint.
const MAX_CACHED: usize = 4096;

type Key = (u16, Vec<u8>);

#[derive(Default)]
struct Shared {
    base: RustCryptoProvider,
    cache: Mutex<HashMap<Key, Responded>>,
    computed: AtomicU64,
    used: AtomicU64,
}

/// A [`CryptoProvider`] (RustCrypto underneath) that serves precomputed
/// responder key exchanges. Clones share the cache.
#[derive(Clone, Default)]
pub struct Precomputing {
    shared: Arc<Shared>,
}

impl Precomputing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Computes the responder side of each `(method, initiator KE data)` in
    /// parallel when there are at least [`MIN_BURST`]; returns how many
    /// were computed. Methods the provider lacks are left to the endpoint,
    /// which refuses them properly.
    pub fn precompute(&self, requests: &[(u16, &[u8])]) -> usize {
        if requests.len() < MIN_BURST {
            return 0;
        }
        let base = &self.shared.base;
        let results: Vec<(Key, Responded)> = requests
            .par_iter()
            .filter(|(m, _)| base.supports_key_exchange(*m))
            .filter_map(|&(m, data)| {
                let mut rng = rand_core::OsRng;
                base.key_exchange_respond(m, data, &mut rng).ok().map(|r| ((m, data.to_vec()), r))
            })
            .collect();
        let n = results.len();
        let mut cache = self.lock();
        for (k, r) in results {
            if cache.len() >= MAX_CACHED {
                break;
            }
            cache.insert(k, r);
        }
        self.shared.computed.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Drops every result the endpoint did not claim (requests it refused
    /// or answered with a cookie or INVALID_KE_PAYLOAD).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Results computed in parallel so far, and how many the endpoint used.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.computed.load(Ordering::Relaxed), self.shared.used.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Responded>> {
        // A panic elsewhere cannot leave the map half-updated in a way that
        // matters: entries are whole values.
        self.shared.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CryptoProvider for Precomputing {
    fn key_exchange(&self, method: u16, rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, Error> {
        self.shared.base.key_exchange(method, rng)
    }

    fn key_exchange_respond(&self, method: u16, peer_ke_data: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Responded, Error> {
        let hit = {
            let mut cache = self.lock();
            if cache.is_empty() {
                None
            } else {
                cache.remove(&(method, peer_ke_data.to_vec()))
            }
        };
        if let Some(r) = hit {
            self.shared.used.fetch_add(1, Ordering::Relaxed);
            return Ok(r);
        }
        self.shared.base.key_exchange_respond(method, peer_ke_data, rng)
    }

    fn prf(&self, id: u16) -> Result<Box<dyn Prf>, Error> {
        self.shared.base.prf(id)
    }

    fn sk_protection(&self, encr: u16, key_bits: Option<u16>, integ: u16, sk_e: &[u8], sk_a: &[u8]) -> Result<Box<dyn SkProtection>, Error> {
        self.shared.base.sk_protection(encr, key_bits, integ, sk_e, sk_a)
    }

    fn encr_key_len(&self, encr: u16, key_bits: Option<u16>) -> Result<usize, Error> {
        self.shared.base.encr_key_len(encr, key_bits)
    }

    fn integ_key_len(&self, integ: u16) -> Result<usize, Error> {
        self.shared.base.integ_key_len(integ)
    }

    fn supports_key_exchange(&self, method: u16) -> bool {
        self.shared.base.supports_key_exchange(method)
    }
}

/// The key exchange an IKE_SA_INIT request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitKe {
    pub method: u16,
    pub data: Vec<u8>,
    /// The request returns a COOKIE (its first payload, RFC 7296 §2.6).
    pub has_cookie: bool,
}

/// The KE payload of an IKE_SA_INIT request (`datagram` as received, on
/// the NAT-T port with its non-ESP marker or not), or `None` for anything
/// else.
pub fn init_request_ke(datagram: &[u8], on_natt_port: bool) -> Option<InitKe> {
    let bytes = if on_natt_port { ike_wire::strip_non_esp_marker(datagram).ok()? } else { datagram };
    let h = Header::parse_datagram(bytes).ok()?;
    if h.exchange_type != ExchangeType::IKE_SA_INIT || h.flags.response() || h.spi_r != 0 || h.message_id != 0 {
        return None;
    }
    let msg = Message::parse(bytes).ok()?;
    let has_cookie = matches!(msg.payloads.first(), Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE);
    msg.payloads.iter().find_map(|p| match p {
        Payload::Ke(ke) => Some(InitKe { method: ke.ke_method.0, data: ke.data.to_vec(), has_cookie }),
        _ => None,
    })
}
