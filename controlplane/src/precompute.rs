//! Responder key exchanges of a burst of IKE_SA_INIT requests, computed in
//! parallel with rayon before the (single-threaded) endpoint sees them.
//!
//! The endpoint is one sans-IO state machine and stays on the event loop.
//! What is expensive in an IKE_SA_INIT it answers is the key exchange: a
//! fresh key pair and the shared secret (MODP-2048 takes milliseconds,
//! ECP and X25519 tens of microseconds, ML-KEM encapsulation about as
//! much). Those depend only on the request's KE payload, so when a burst of
//! requests is waiting the daemon asks the endpoint which of them it will
//! spend a key exchange on (`Endpoint::plan_init_key_exchanges`: the same
//! half-open limits, cookie check and proposal choice it applies itself,
//! so a request without a valid cookie, while cookies are required, is
//! never among them), has rayon compute those on every core
//! ([`Precomputing::precompute`]), and the endpoint's crypto provider, this
//! type, hands each result out once to the `key_exchange_respond` call with
//! the same method and peer data. Whatever is not claimed is dropped
//! ([`Precomputing::clear`]) before the next burst, so no responder key is
//! ever used twice and none outlives its burst. Every key exchange the
//! provider computes, here or inline, is counted
//! ([`Precomputing::key_exchanges`]).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ike_crypto::ke::{KeyExchange, Responded};
use ike_crypto::prf::Prf;
use ike_crypto::sk::SkProtection;
use ike_crypto::{CryptoProvider, Error, Rng as CryptoRngCore, RustCryptoProvider};
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
    /// Every responder key exchange computed (here or inline), and every
    /// one we started.
    responded: AtomicU64,
    initiated: AtomicU64,
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
        self.shared.responded.fetch_add(n as u64, Ordering::Relaxed);
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

    /// Key exchanges computed so far: (responder side, on the pool or
    /// inline; initiator side). What a flood of IKE_SA_INIT requests
    /// without a valid cookie must not move.
    pub fn key_exchanges(&self) -> (u64, u64) {
        (self.shared.responded.load(Ordering::Relaxed), self.shared.initiated.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Responded>> {
        // A panic elsewhere cannot leave the map half-updated in a way that
        // matters: entries are whole values.
        self.shared.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CryptoProvider for Precomputing {
    fn key_exchange(&self, method: u16, rng: &mut dyn CryptoRngCore) -> Result<Box<dyn KeyExchange>, Error> {
        self.shared.initiated.fetch_add(1, Ordering::Relaxed);
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
        self.shared.responded.fetch_add(1, Ordering::Relaxed);
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
