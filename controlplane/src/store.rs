//! The state store: where esprit-ike keeps what it needs to resume its IKE
//! SAs after a restart (DESIGN.md §8), behind one trait ([`StateStore`]).
//! The embedded backend ([`RedbStore`], one file on local disk) is the
//! default; the cluster backend ([`crate::etcd::EtcdStore`], records in
//! etcd owned per node, `crate::cluster`) goes behind the same trait.
//!
//! Guarantees:
//! * A store holds opaque records under 8-octet keys (our IKE SPI); the
//!   records are [`ike_proto::snapshot::IkeSaSnapshot`]s sealed by a
//!   [`Sealer`] with XChaCha20-Poly1305 under the node key (read from a
//!   file, never stored), a fresh random 192-bit nonce per record and the
//!   store key as associated data: no key, identity or SPI leaves memory in
//!   the clear, and a record copied under another key does not open.
//! * [`StateStore::apply`] writes one batch (puts and deletes) atomically
//!   and durably: redb commits it in one write transaction with its
//!   default durability (fsync before the commit returns). The daemon
//!   writes one batch per event-loop turn, never per packet.
//! * [`Persister::load`] returns every record that opens and decodes, and
//!   counts the others (a record sealed under another key, or corrupt):
//!   a bad record costs that one IKE SA, never the start.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ike_proto::snapshot::{Changes, IkeSaSnapshot};
use rand_core::{OsRng, RngCore};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {msg}")]
    Backend { path: PathBuf, msg: String },
}

/// A stored record: its key and its sealed value.
pub type Record = (Vec<u8>, Vec<u8>);

/// A key-value store of sealed IKE SA records. Implementations write a
/// batch atomically: after a crash either all of it is there or none.
pub trait StateStore: Send {
    /// Every record.
    fn load(&mut self) -> Result<Vec<Record>, StoreError>;
    /// Puts and deletes in one atomic, durable write.
    fn apply(&mut self, puts: &[([u8; 8], Vec<u8>)], deletes: &[[u8; 8]]) -> Result<(), StoreError>;
    /// For logs and metrics.
    fn backend(&self) -> &'static str;
    /// The cluster side of a cluster backend (etcd); `None` on one box.
    fn cluster(&mut self) -> Option<&mut dyn crate::cluster::ClusterOps> {
        None
    }
}

const TABLE: redb::TableDefinition<'static, &[u8], &[u8]> = redb::TableDefinition::new("ike_sas");

/// The embedded backend: redb, a single file, copy-on-write B-trees with
/// atomic, fsynced commits (no write-ahead log to replay).
pub struct RedbStore {
    path: PathBuf,
    db: redb::Database,
}

impl RedbStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let e = |m: String| StoreError::Backend { path: path.to_path_buf(), msg: m };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|x| e(x.to_string()))?;
        }
        let db = redb::Database::create(path).map_err(|x| e(x.to_string()))?;
        // The table exists from the start: reads never race its creation.
        let w = db.begin_write().map_err(|x| e(x.to_string()))?;
        w.open_table(TABLE).map_err(|x| e(x.to_string()))?;
        w.commit().map_err(|x| e(x.to_string()))?;
        Ok(Self { path: path.to_path_buf(), db })
    }

    fn err(&self, m: impl ToString) -> StoreError {
        StoreError::Backend { path: self.path.clone(), msg: m.to_string() }
    }
}

impl StateStore for RedbStore {
    fn load(&mut self) -> Result<Vec<Record>, StoreError> {
        use redb::ReadableTable;
        let r = self.db.begin_read().map_err(|x| self.err(x))?;
        let t = r.open_table(TABLE).map_err(|x| self.err(x))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|x| self.err(x))? {
            let (k, v) = item.map_err(|x| self.err(x))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn apply(&mut self, puts: &[([u8; 8], Vec<u8>)], deletes: &[[u8; 8]]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(|x| self.err(x))?;
        {
            let mut t = w.open_table(TABLE).map_err(|x| self.err(x))?;
            for k in deletes {
                t.remove(&k[..]).map_err(|x| self.err(x))?;
            }
            for (k, v) in puts {
                t.insert(&k[..], &v[..]).map_err(|x| self.err(x))?;
            }
        }
        w.commit().map_err(|x| self.err(x))
    }

    fn backend(&self) -> &'static str {
        "redb"
    }
}

/// The node key: 32 octets from a file, zeroized on drop.
#[derive(Clone)]
pub struct NodeKey(zeroize::Zeroizing<[u8; 32]>);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

impl NodeKey {
    /// Reads `path`: 32 raw octets, or 64 hex digits (a trailing newline
    /// allowed).
    pub fn load(path: &Path) -> Result<Self, String> {
        let raw = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| e.to_string())?);
        Self::parse(&raw)
    }

    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        let text = raw.strip_suffix(b"\n").unwrap_or(raw);
        if raw.len() == 32 {
            k.copy_from_slice(raw);
        } else if text.len() == 64 && hex::decode_to_slice(text, &mut k[..]).is_ok() {
        } else {
            return Err(format!("{} octets; the node key is 32 raw octets or 64 hex digits", raw.len()));
        }
        Ok(Self(k))
    }

    pub fn from_bytes(k: [u8; 32]) -> Self {
        Self(zeroize::Zeroizing::new(k))
    }
}

/// Seals and opens records (see the module docs).
pub struct Sealer {
    aead: XChaCha20Poly1305,
}

const AAD_LABEL: &[u8] = b"esprit-ike-sa/1";

impl Sealer {
    pub fn new(key: &NodeKey) -> Self {
        Self { aead: XChaCha20Poly1305::new((&*key.0).into()) }
    }

    fn aad(store_key: &[u8]) -> Vec<u8> {
        [AAD_LABEL, store_key].concat()
    }

    /// `nonce (24) | ciphertext | tag (16)`.
    pub fn seal(&self, store_key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &Self::aad(store_key) })
            .expect("XChaCha20-Poly1305 seals any length a record has");
        [&nonce[..], &ct].concat()
    }

    pub fn open(&self, store_key: &[u8], sealed: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        if sealed.len() < 24 + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(24);
        self.aead.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &Self::aad(store_key) }).ok().map(zeroize::Zeroizing::new)
    }
}

/// What one batch wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchStats {
    pub puts: usize,
    pub deletes: usize,
    pub bytes: usize,
    pub took: Duration,
}

/// A snapshot as loaded: how long ago it was written, by the wall clock.
pub struct Loaded {
    pub snapshot: IkeSaSnapshot,
    pub age: Duration,
}

/// The daemon's side of the store: seals the endpoint's changes and
/// writes them in one batch; loads and opens them at start.
pub struct Persister {
    store: Box<dyn StateStore>,
    sealer: Sealer,
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

impl Persister {
    pub fn new(store: Box<dyn StateStore>, key: &NodeKey) -> Self {
        Self { store, sealer: Sealer::new(key) }
    }

    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// The cluster side of the store, if it has one.
    pub fn cluster(&mut self) -> Option<&mut dyn crate::cluster::ClusterOps> {
        self.store.cluster()
    }

    /// Opens claimed records (a takeover); as [`Self::load`].
    pub fn open_records(&self, records: Vec<Record>, wall: SystemTime) -> (Vec<Loaded>, usize) {
        let now = unix_ms(wall);
        let mut bad = 0;
        let mut out = Vec::new();
        for (k, v) in records {
            match self.open_one(&k, &v, now) {
                Some(l) => out.push(l),
                None => bad += 1,
            }
        }
        (out, bad)
    }

    fn open_one(&self, k: &[u8], v: &[u8], now: u64) -> Option<Loaded> {
        let plain = self.sealer.open(k, v)?;
        let (stamp, rec) = plain.split_first_chunk::<8>()?;
        match IkeSaSnapshot::decode(rec) {
            Ok(s) if s.key()[..] == k[..] => {
                let age = Duration::from_millis(now.saturating_sub(u64::from_be_bytes(*stamp)));
                Some(Loaded { snapshot: s, age })
            }
            _ => None,
        }
    }

    /// Writes one turn's changes, stamped with the wall-clock time `wall`
    /// (a restart tells from it how long the records waited).
    pub fn write(&mut self, changes: &Changes, wall: SystemTime) -> Result<BatchStats, StoreError> {
        let t0 = std::time::Instant::now();
        let stamp = unix_ms(wall).to_be_bytes();
        let mut bytes = 0;
        let puts: Vec<([u8; 8], Vec<u8>)> = changes
            .put
            .iter()
            .map(|s| {
                let k = s.key();
                let plain = zeroize::Zeroizing::new([&stamp[..], &s.encode()].concat());
                let sealed = self.sealer.seal(&k, &plain);
                bytes += sealed.len();
                (k, sealed)
            })
            .collect();
        self.store.apply(&puts, &changes.delete)?;
        Ok(BatchStats { puts: puts.len(), deletes: changes.delete.len(), bytes, took: t0.elapsed() })
    }

    /// Every record that opens and decodes, and how many did not.
    pub fn load(&mut self, wall: SystemTime) -> Result<(Vec<Loaded>, usize), StoreError> {
        let records = self.store.load()?;
        Ok(self.open_records(records, wall))
    }

    /// Removes records (those that did not restore).
    pub fn delete(&mut self, keys: &[[u8; 8]]) -> Result<(), StoreError> {
        self.store.apply(&[], keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_are_32_raw_octets_or_64_hex_digits() {
        assert!(NodeKey::parse(&[7u8; 32]).is_ok());
        assert!(NodeKey::parse(format!("{}\n", "ab".repeat(32)).as_bytes()).is_ok());
        assert!(NodeKey::parse(&[7u8; 31]).is_err());
        assert!(NodeKey::parse("zz".repeat(32).as_bytes()).is_err());
    }

    #[test]
    fn a_sealed_record_opens_only_under_its_key_and_store_key() {
        let s = Sealer::new(&NodeKey::from_bytes([1; 32]));
        let sealed = s.seal(b"abcdefgh", b"secret record");
        assert_eq!(&s.open(b"abcdefgh", &sealed).unwrap()[..], b"secret record");
        assert!(s.open(b"abcdefgX", &sealed).is_none(), "moved to another key");
        assert!(Sealer::new(&NodeKey::from_bytes([2; 32])).open(b"abcdefgh", &sealed).is_none(), "another node key");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(s.open(b"abcdefgh", &flipped).is_none());
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }
}
