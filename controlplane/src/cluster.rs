//! The cluster: N esprit-ike nodes sharing one etcd (DESIGN.md §8).
//!
//! The protocol is written against a small transactional key-value
//! interface ([`Kv`]: leases, compare-and-swap transactions, ranges) so the
//! same code runs against etcd ([`crate::etcd::EtcdKv`]) and against an
//! in-memory model with a simulated clock ([`MemKv`], for the ownership
//! property test).
//!
//! Keys under the configured prefix `P`:
//! * `P/member/<node>`: `{"node","slot","lease","since_unix"}`, attached to
//!   the node's lease: the node is alive while its lease is. A node whose
//!   lease expires (no keep-alive for `lease_ttl_secs`) is dead.
//! * `P/slot/<n>`: `<node>`, `n` in 1..=255, no lease: the node's SPI range,
//!   kept across its restarts. Our IKE SPIs and inbound ESP SPIs carry `n`
//!   in their top octet, so two nodes never allocate the same SPI and any
//!   node tells from an SPI which node made it.
//! * `P/owner/<spi>`: `<node>`, attached to the owner's lease. One key per
//!   IKE SA (the store key: our IKE SPI as 16 hex digits).
//! * `P/sa/<spi>`: the sealed snapshot ([`crate::store::Sealer`]), no lease:
//!   it outlives its owner so a survivor can resume the IKE SA.
//!
//! Guarantees (the property test in `tests` checks them against the model,
//! `tests/cluster_etcd.rs` against a real etcd):
//! * At most one owner: an owner key is created only by a transaction that
//!   requires it absent, and vanishes only with its owner's lease (or by the
//!   owner's own delete). Two nodes can never both hold it.
//! * Fenced writes: a snapshot is written only in a transaction that
//!   requires the writer's lease on the owner key (or, for a new IKE SA,
//!   the owner key absent, created in the same transaction). A node whose
//!   lease expired (paused, partitioned) cannot overwrite the record of the
//!   node that took its SA over.
//! * Takeover: when a lease expires, etcd deletes the dead node's owner
//!   keys; each survivor's [`ClusterNode::scan`] finds records without an
//!   owner and claims them (absent → mine), the ones it is preferred for
//!   first (a hash of the key over the live members, so survivors split the
//!   load) and any left over on its next scan. Each orphan is claimed by
//!   exactly one node.
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An etcd lease ID.
pub type Lease = i64;

/// Why the cluster store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cluster store: {0}")]
pub struct KvError(pub String);

/// A transaction's condition; all of a transaction's conditions must hold.
#[derive(Clone, Debug)]
pub enum Cmp {
    /// The key does not exist (etcd: create_revision == 0).
    Absent(Vec<u8>),
    /// The key exists and is attached to this lease.
    LeaseIs(Vec<u8>, Lease),
}

/// A transaction's operation.
#[derive(Clone, Debug)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8>, lease: Option<Lease> },
    Delete(Vec<u8>),
}

/// A key as a range returns it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// 0: no lease.
    pub lease: Lease,
}

/// What the cluster protocol needs of its store: etcd's KV, Lease and Txn.
pub trait Kv: Send {
    fn grant(&mut self, ttl_secs: i64) -> Result<Lease, KvError>;
    /// `false`: the lease is gone (expired or revoked).
    fn keep_alive(&mut self, lease: Lease) -> Result<bool, KvError>;
    fn revoke(&mut self, lease: Lease) -> Result<(), KvError>;
    /// Runs `then` if every condition of `when` holds; whether it did.
    fn txn(&mut self, when: &[Cmp], then: &[Op]) -> Result<bool, KvError>;
    /// Several independent transactions, in any order, possibly at once
    /// (a batch of SAs); each one's outcome.
    fn txns(&mut self, batch: Vec<(Vec<Cmp>, Vec<Op>)>) -> Result<Vec<bool>, KvError> {
        batch.into_iter().map(|(w, t)| self.txn(&w, &t)).collect()
    }
    /// Every key under `prefix`, in key order (values empty if `keys_only`).
    fn range(&mut self, prefix: &[u8], keys_only: bool) -> Result<Vec<Entry>, KvError>;
    /// Remaining seconds of a lease; `None` if it is gone.
    fn ttl(&mut self, lease: Lease) -> Result<Option<i64>, KvError>;
}

/// etcd's default `--max-txn-ops`: at most this many operations (and this
/// many conditions) in one transaction.
pub const MAX_TXN_OPS: usize = 128;
/// Below etcd's default 1.5 MiB request limit, with room for the framing.
pub const MAX_TXN_BYTES: usize = 1 << 20;

/// The store key of an IKE SA (8 octets, our SPI) as it appears in etcd.
pub fn key_hex(k: &[u8; 8]) -> String {
    hex::encode(k)
}

fn parse_key_hex(s: &[u8]) -> Option<[u8; 8]> {
    let mut k = [0u8; 8];
    hex::decode_to_slice(s, &mut k).ok()?;
    Some(k)
}

/// A live member as `P/member/<node>` says.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Member {
    pub node: String,
    pub slot: u8,
    pub lease: Lease,
    pub since_unix: u64,
    #[serde(default)]
    pub draining: bool,
}

/// One node's side of the protocol.
pub struct ClusterNode<K: Kv> {
    kv: K,
    prefix: String,
    node: String,
    lease: Lease,
    ttl_secs: i64,
    slot: u8,
    /// The IKE SAs whose owner key holds our lease.
    owned: BTreeSet<[u8; 8]>,
    /// Orphans seen by an earlier scan and not ours to prefer: claimed by
    /// anyone on the next scan (a preferred survivor that died too).
    seen_orphans: HashMap<[u8; 8], u32>,
    draining: bool,
    /// What the last scan or drain did, for `esprit-ctl cluster status`.
    pub last_takeover: Option<Takeover>,
    /// Writes refused because another node owns the IKE SA now.
    pub fenced: u64,
}

/// A takeover, as status shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Takeover {
    pub claimed: usize,
    pub from: Vec<String>,
    pub took_ms: u64,
    pub at_unix: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl<K: Kv> ClusterNode<K> {
    /// Joins: a lease, the node's SPI slot (its own from before, or the
    /// lowest free one), its member key, and its owner keys from an earlier
    /// life whose lease has not expired yet (moved to the new lease).
    pub fn join(mut kv: K, prefix: &str, node: &str, ttl_secs: i64) -> Result<Self, KvError> {
        if node.is_empty() || node.contains('/') {
            return Err(KvError(format!("node name {node:?}: must be non-empty, without '/'")));
        }
        let prefix = prefix.trim_end_matches('/').to_string();
        let lease = kv.grant(ttl_secs)?;
        let slot = Self::take_slot(&mut kv, &prefix, node)?;
        let mut n = Self {
            kv,
            prefix,
            node: node.to_string(),
            lease,
            ttl_secs,
            slot,
            owned: BTreeSet::new(),
            seen_orphans: HashMap::new(),
            draining: false,
            last_takeover: None,
            fenced: 0,
        };
        n.put_member()?;
        // Our owner keys from before a restart, still under the old lease:
        // moved to ours, each by a compare on that old lease.
        let mine: Vec<(Vec<Cmp>, Vec<Op>)> = n
            .kv
            .range(n.k("owner/").as_bytes(), false)?
            .into_iter()
            .filter(|e| e.value == n.node.as_bytes() && e.lease != n.lease)
            .map(|e| {
                let put = Op::Put { key: e.key.clone(), value: e.value.clone(), lease: Some(n.lease) };
                (vec![Cmp::LeaseIs(e.key, e.lease)], vec![put])
            })
            .collect();
        let keys: Vec<Vec<u8>> = mine.iter().map(|(w, _)| if let Cmp::LeaseIs(k, _) = &w[0] { k.clone() } else { Vec::new() }).collect();
        for (ok, k) in n.kv.txns(mine)?.into_iter().zip(keys) {
            if let (true, Some(sk)) = (ok, n.store_key(&k, "owner/")) {
                n.owned.insert(sk);
            }
        }
        Ok(n)
    }

    fn k(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    fn store_key(&self, full: &[u8], kind: &str) -> Option<[u8; 8]> {
        full.strip_prefix(self.k(kind).as_bytes()).and_then(parse_key_hex)
    }

    fn take_slot(kv: &mut K, prefix: &str, node: &str) -> Result<u8, KvError> {
        for _ in 0..8 {
            let slots = kv.range(format!("{prefix}/slot/").as_bytes(), false)?;
            let mut used = BTreeSet::new();
            for e in &slots {
                let n: u8 = std::str::from_utf8(&e.key[prefix.len() + 6..]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                if e.value == node.as_bytes() {
                    return Ok(n);
                }
                used.insert(n);
            }
            let Some(free) = (1..=255u8).find(|n| !used.contains(n)) else {
                return Err(KvError("all 255 SPI slots are taken".into()));
            };
            let key = format!("{prefix}/slot/{free:03}").into_bytes();
            if kv.txn(&[Cmp::Absent(key.clone())], &[Op::Put { key, value: node.as_bytes().to_vec(), lease: None }])? {
                return Ok(free);
            }
        }
        Err(KvError("could not take an SPI slot (contention)".into()))
    }

    fn put_member(&mut self) -> Result<(), KvError> {
        let m = Member { node: self.node.clone(), slot: self.slot, lease: self.lease, since_unix: unix_now(), draining: self.draining };
        let key = self.k(&format!("member/{}", self.node)).into_bytes();
        let value = serde_json::to_vec(&m).expect("a member serialises");
        self.kv.txn(&[], &[Op::Put { key, value, lease: Some(self.lease) }]).map(|_| ())
    }

    pub fn node(&self) -> &str {
        &self.node
    }
    pub fn slot(&self) -> u8 {
        self.slot
    }
    pub fn lease(&self) -> Lease {
        self.lease
    }
    pub fn lease_ttl_secs(&self) -> i64 {
        self.ttl_secs
    }
    pub fn owned(&self) -> &BTreeSet<[u8; 8]> {
        &self.owned
    }
    pub fn is_draining(&self) -> bool {
        self.draining
    }
    pub fn kv(&mut self) -> &mut K {
        &mut self.kv
    }
    pub fn kv_ref(&self) -> &K {
        &self.kv
    }

    /// Keeps the lease alive; `false` once it is gone (the node must stop
    /// serving: its SAs may be another node's already).
    pub fn keep_alive(&mut self) -> Result<bool, KvError> {
        self.kv.keep_alive(self.lease)
    }

    /// The live members (their lease unexpired), by name.
    pub fn members(&mut self) -> Result<BTreeMap<String, Member>, KvError> {
        let p = self.k("member/");
        Ok(self
            .kv
            .range(p.as_bytes(), false)?
            .into_iter()
            .filter_map(|e| serde_json::from_slice::<Member>(&e.value).ok())
            .map(|m| (m.node.clone(), m))
            .collect())
    }

    /// Owner keys: IKE SA → node.
    pub fn owners(&mut self) -> Result<BTreeMap<[u8; 8], String>, KvError> {
        let p = self.k("owner/");
        let entries = self.kv.range(p.as_bytes(), false)?;
        Ok(entries
            .into_iter()
            .filter_map(|e| Some((self.store_key(&e.key, "owner/")?, String::from_utf8_lossy(&e.value).into_owned())))
            .collect())
    }

    /// The stored IKE SAs (keys only).
    pub fn records(&mut self) -> Result<Vec<[u8; 8]>, KvError> {
        let p = self.k("sa/");
        let entries = self.kv.range(p.as_bytes(), true)?;
        Ok(entries.into_iter().filter_map(|e| self.store_key(&e.key, "sa/")).collect())
    }

    /// The sealed records of `keys`.
    pub fn fetch(&mut self, keys: &BTreeSet<[u8; 8]>) -> Result<Vec<crate::store::Record>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.k("sa/");
        let entries = self.kv.range(p.as_bytes(), false)?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let k = self.store_key(&e.key, "sa/")?;
                keys.contains(&k).then(|| (k.to_vec(), e.value))
            })
            .collect())
    }

    /// One claim: the owner key, if absent, becomes ours.
    pub fn claim(&mut self, k: &[u8; 8]) -> Result<bool, KvError> {
        let key = self.k(&format!("owner/{}", key_hex(k))).into_bytes();
        let ok = self.kv.txn(&[Cmp::Absent(key.clone())], &[Op::Put { key, value: self.node.as_bytes().to_vec(), lease: Some(self.lease) }])?;
        if ok {
            self.owned.insert(*k);
        }
        Ok(ok)
    }

    /// Finds stored IKE SAs without an owner (their node's lease expired,
    /// or it drained) and claims them: those this node is preferred for at
    /// once, the others once they stayed orphans for a scan. Returns the
    /// claimed keys (their records are then [`Self::fetch`]ed and adopted).
    pub fn scan(&mut self) -> Result<Vec<[u8; 8]>, KvError> {
        if self.draining {
            return Ok(Vec::new());
        }
        let t0 = std::time::Instant::now();
        let members = self.members()?;
        let live: Vec<&String> = members.values().filter(|m| !m.draining).map(|m| &m.node).collect();
        let owners = self.owners()?;
        let records = self.records()?;
        let orphans: Vec<[u8; 8]> = records.into_iter().filter(|k| !owners.contains_key(k)).collect();
        let still: BTreeSet<[u8; 8]> = orphans.iter().copied().collect();
        self.seen_orphans.retain(|k, _| still.contains(k));
        let mut claimed = Vec::new();
        let mut batch = Vec::new();
        let mut batch_keys = Vec::new();
        for k in orphans {
            let preferred = if live.is_empty() { None } else { Some(live[(u64::from_be_bytes(k) % live.len() as u64) as usize]) };
            let seen = self.seen_orphans.entry(k).or_insert(0);
            *seen += 1;
            if preferred.is_some_and(|p| *p == self.node) || *seen > 1 || preferred.is_none() {
                let key = self.k(&format!("owner/{}", key_hex(&k))).into_bytes();
                let put = Op::Put { key: key.clone(), value: self.node.as_bytes().to_vec(), lease: Some(self.lease) };
                batch.push((vec![Cmp::Absent(key)], vec![put]));
                batch_keys.push(k);
            }
        }
        for (ok, k) in self.kv.txns(batch)?.into_iter().zip(batch_keys) {
            self.seen_orphans.remove(&k);
            if ok {
                self.owned.insert(k);
                claimed.push(k);
            }
        }
        if !claimed.is_empty() {
            self.last_takeover = Some(Takeover { claimed: claimed.len(), from: Vec::new(), took_ms: t0.elapsed().as_millis() as u64, at_unix: unix_now() });
        }
        Ok(claimed)
    }

    /// Fenced writes of one batch: a put of an SA we own requires our
    /// lease on its owner key; of a new SA, the owner key absent (created
    /// with it). Deletes require our lease too. Returns the keys refused
    /// (another node owns them now); they are no longer ours.
    pub fn write(&mut self, puts: &[([u8; 8], Vec<u8>)], deletes: &[[u8; 8]]) -> Result<Vec<[u8; 8]>, KvError> {
        // One transaction per IKE SA keeps a refusal to that SA; they go to
        // etcd together (Kv::txns), packed below its limits.
        let mut batch = Vec::with_capacity(puts.len() + deletes.len());
        let mut keys = Vec::with_capacity(puts.len() + deletes.len());
        let mut refused = Vec::new();
        for (k, v) in puts {
            let owner = self.k(&format!("owner/{}", key_hex(k))).into_bytes();
            let sa = Op::Put { key: self.k(&format!("sa/{}", key_hex(k))).into_bytes(), value: v.clone(), lease: None };
            if self.owned.contains(k) {
                batch.push((vec![Cmp::LeaseIs(owner, self.lease)], vec![sa]));
            } else {
                if self.draining {
                    // A draining node takes no new IKE SA.
                    refused.push(*k);
                    continue;
                }
                let put_owner = Op::Put { key: owner.clone(), value: self.node.as_bytes().to_vec(), lease: Some(self.lease) };
                batch.push((vec![Cmp::Absent(owner)], vec![put_owner, sa]));
            }
            keys.push(*k);
        }
        for k in deletes {
            if !self.owned.contains(k) {
                continue;
            }
            let owner = self.k(&format!("owner/{}", key_hex(k))).into_bytes();
            let sa = self.k(&format!("sa/{}", key_hex(k))).into_bytes();
            batch.push((vec![Cmp::LeaseIs(owner.clone(), self.lease)], vec![Op::Delete(sa), Op::Delete(owner)]));
            keys.push(*k);
        }
        let deleted: BTreeSet<[u8; 8]> = deletes.iter().copied().collect();
        for (ok, k) in self.kv.txns(batch)?.into_iter().zip(keys) {
            if ok {
                if deleted.contains(&k) {
                    self.owned.remove(&k);
                } else {
                    self.owned.insert(k);
                }
            } else {
                self.owned.remove(&k);
                self.fenced += 1;
                refused.push(k);
            }
        }
        Ok(refused)
    }

    /// Drain: no new IKE SA from now on, the member key says so, and every
    /// owner key of ours is deleted (by a compare on our lease) so the
    /// other nodes' next scan claims the SAs. Returns how many were handed
    /// over.
    pub fn drain(&mut self) -> Result<usize, KvError> {
        self.draining = true;
        self.put_member()?;
        let owned: Vec<[u8; 8]> = self.owned.iter().copied().collect();
        let mut batch = Vec::new();
        for k in &owned {
            let owner = self.k(&format!("owner/{}", key_hex(k))).into_bytes();
            batch.push((vec![Cmp::LeaseIs(owner.clone(), self.lease)], vec![Op::Delete(owner)]));
        }
        let n = self.kv.txns(batch)?.into_iter().filter(|ok| *ok).count();
        self.owned.clear();
        Ok(n)
    }

    /// Leaves: revokes the lease (member and owner keys go with it).
    pub fn leave(mut self) -> Result<(), KvError> {
        self.kv.revoke(self.lease)
    }
}

/// An in-memory model of etcd's KV, Lease and Txn with a simulated clock:
/// the same semantics as far as the protocol uses them (a lease expiring
/// deletes its keys; conditions checked and operations applied at once).
#[derive(Default)]
pub struct MemState {
    pub now_ms: u64,
    next_lease: Lease,
    /// lease → (expiry, ttl)
    leases: BTreeMap<Lease, (u64, i64)>,
    kvs: BTreeMap<Vec<u8>, (Vec<u8>, Lease)>,
    /// Transactions run (for the test's figures).
    pub txns: u64,
}

impl MemState {
    /// Moves the clock; expired leases take their keys with them.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        let now = self.now_ms;
        let dead: Vec<Lease> = self.leases.iter().filter(|(_, (exp, _))| *exp <= now).map(|(l, _)| *l).collect();
        for l in dead {
            self.leases.remove(&l);
            self.kvs.retain(|_, (_, kl)| *kl != l);
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<(&[u8], Lease)> {
        self.kvs.get(key).map(|(v, l)| (&v[..], *l))
    }

    pub fn lease_alive(&self, l: Lease) -> bool {
        self.leases.contains_key(&l)
    }
}

/// A handle on a shared [`MemState`] (one per simulated node).
#[derive(Clone, Default)]
pub struct MemKv(pub std::sync::Arc<std::sync::Mutex<MemState>>);

impl Kv for MemKv {
    fn grant(&mut self, ttl_secs: i64) -> Result<Lease, KvError> {
        let mut s = self.0.lock().unwrap();
        s.next_lease += 1;
        let (l, exp) = (s.next_lease, s.now_ms + ttl_secs as u64 * 1000);
        s.leases.insert(l, (exp, ttl_secs));
        Ok(l)
    }

    fn keep_alive(&mut self, lease: Lease) -> Result<bool, KvError> {
        let mut s = self.0.lock().unwrap();
        let now = s.now_ms;
        Ok(match s.leases.get_mut(&lease) {
            Some((exp, ttl)) => {
                *exp = now + *ttl as u64 * 1000;
                true
            }
            None => false,
        })
    }

    fn revoke(&mut self, lease: Lease) -> Result<(), KvError> {
        let mut s = self.0.lock().unwrap();
        s.leases.remove(&lease);
        s.kvs.retain(|_, (_, l)| *l != lease);
        Ok(())
    }

    fn txn(&mut self, when: &[Cmp], then: &[Op]) -> Result<bool, KvError> {
        let mut s = self.0.lock().unwrap();
        s.txns += 1;
        let holds = when.iter().all(|c| match c {
            Cmp::Absent(k) => !s.kvs.contains_key(k),
            Cmp::LeaseIs(k, l) => s.kvs.get(k).is_some_and(|(_, kl)| kl == l),
        });
        if !holds {
            return Ok(false);
        }
        for op in then {
            match op {
                Op::Put { key, value, lease } => {
                    let l = lease.unwrap_or(0);
                    if l != 0 && !s.leases.contains_key(&l) {
                        // etcd refuses a put under a lease that is gone.
                        return Err(KvError("requested lease not found".into()));
                    }
                    s.kvs.insert(key.clone(), (value.clone(), l));
                }
                Op::Delete(k) => {
                    s.kvs.remove(k);
                }
            }
        }
        Ok(true)
    }

    fn range(&mut self, prefix: &[u8], keys_only: bool) -> Result<Vec<Entry>, KvError> {
        let s = self.0.lock().unwrap();
        Ok(s.kvs
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, l))| Entry { key: k.clone(), value: if keys_only { Vec::new() } else { v.clone() }, lease: *l })
            .collect())
    }

    fn ttl(&mut self, lease: Lease) -> Result<Option<i64>, KvError> {
        let s = self.0.lock().unwrap();
        Ok(s.leases.get(&lease).map(|(exp, _)| ((exp.saturating_sub(s.now_ms)) / 1000) as i64))
    }
}

/// What the daemon asks of a cluster store (object-safe, through
/// [`crate::store::StateStore::cluster`]).
pub trait ClusterOps {
    /// This node's SPI slot (the top octet of its SPIs).
    fn spi_slot(&self) -> u8;
    /// Whether the node's lease is gone (the node must stop serving).
    fn lease_lost(&self) -> bool;
    /// Claims IKE SAs without an owner; their sealed records.
    fn scan(&mut self) -> Result<Vec<crate::store::Record>, KvError>;
    /// Stops taking new IKE SAs and hands the owned ones over.
    fn drain(&mut self) -> Result<usize, KvError>;
    fn is_draining(&self) -> bool;
    /// Members, leases, owned counts, the last takeover (`esprit-ctl cluster status`).
    fn status(&mut self) -> Result<serde_json::Value, KvError>;
    /// This node's name.
    fn node(&self) -> &str;
}

impl<K: Kv> ClusterNode<K> {
    /// The status as `esprit-ctl cluster status` shows it.
    pub fn status_json(&mut self) -> Result<serde_json::Value, KvError> {
        let members = self.members()?;
        let owners = self.owners()?;
        let records = self.records()?.len();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for n in owners.values() {
            *counts.entry(n.clone()).or_default() += 1;
        }
        let mut ms = Vec::new();
        for m in members.values() {
            let ttl = self.kv.ttl(m.lease)?;
            ms.push(serde_json::json!({
                "node": m.node,
                "slot": m.slot,
                "lease": format!("{:x}", m.lease),
                "lease_ttl_secs": ttl,
                "since_unix": m.since_unix,
                "draining": m.draining,
                "owned_ike_sas": counts.get(&m.node).copied().unwrap_or(0),
            }));
        }
        Ok(serde_json::json!({
            "node": self.node,
            "slot": self.slot,
            "lease": format!("{:x}", self.lease),
            "draining": self.draining,
            "members": ms,
            "stored_ike_sas": records,
            "unowned_ike_sas": records.saturating_sub(owners.len()),
            "fenced_writes": self.fenced,
            "last_takeover": self.last_takeover,
        }))
    }

    /// Claims orphans and fetches their records.
    pub fn scan_records(&mut self) -> Result<Vec<crate::store::Record>, KvError> {
        let claimed: BTreeSet<[u8; 8]> = self.scan()?.into_iter().collect();
        self.fetch(&claimed)
    }
}

impl<K: Kv> crate::store::StateStore for ClusterNode<K> {
    fn load(&mut self) -> Result<Vec<crate::store::Record>, crate::store::StoreError> {
        let owned = self.owned.clone();
        self.fetch(&owned).map_err(|x| crate::store::StoreError::Backend { path: self.prefix.clone().into(), msg: x.0 })
    }

    fn apply(&mut self, puts: &[([u8; 8], Vec<u8>)], deletes: &[[u8; 8]]) -> Result<(), crate::store::StoreError> {
        let refused = self.write(puts, deletes).map_err(|x| crate::store::StoreError::Backend { path: self.prefix.clone().into(), msg: x.0 })?;
        if refused.is_empty() {
            Ok(())
        } else {
            Err(crate::store::StoreError::Backend {
                path: self.prefix.clone().into(),
                msg: format!("{} IKE SA(s) owned by another node now (or refused while draining): not written", refused.len()),
            })
        }
    }

    fn backend(&self) -> &'static str {
        "etcd"
    }
}

#[cfg(test)]
mod tests {
    //! The ownership protocol against the model store, with a simulated
    //! clock and random node deaths, pauses (a node whose lease expires
    //! while it still believes it owns its SAs), drains and restarts.
    use super::*;

    /// xorshift64*: the same seed, the same run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[derive(PartialEq, Clone, Copy, Debug)]
    enum Life {
        Alive,
        /// Stopped keep-alives and everything else; resumes later.
        Paused,
        Dead,
    }

    struct Sim {
        kv: MemKv,
        nodes: Vec<(String, Option<ClusterNode<MemKv>>, Life)>,
        next_sa: u64,
        /// Owner keys that vanished (lease expiry, drain): each must be
        /// claimed exactly once.
        orphanings: BTreeMap<[u8; 8], u64>,
        claims: BTreeMap<[u8; 8], u64>,
        deleted: BTreeSet<[u8; 8]>,
    }

    const TTL: i64 = 3;
    const STEP_MS: u64 = 500;

    impl Sim {
        fn new(n: usize) -> Self {
            let kv = MemKv::default();
            let nodes = (0..n).map(|i| {
                let name = format!("node{i}");
                let node = ClusterNode::join(kv.clone(), "/esprit", &name, TTL).unwrap();
                (name, Some(node), Life::Alive)
            });
            Self { nodes: nodes.collect(), kv, next_sa: 1, orphanings: BTreeMap::new(), claims: BTreeMap::new(), deleted: BTreeSet::new() }
        }

        fn owner_map(&self) -> BTreeMap<[u8; 8], (String, Lease)> {
            let s = self.kv.0.lock().unwrap();
            s.kvs
                .iter()
                .filter_map(|(k, (v, l))| {
                    let sk = parse_key_hex(k.strip_prefix(b"/esprit/owner/")?)?;
                    Some((sk, (String::from_utf8(v.clone()).unwrap(), *l)))
                })
                .collect()
        }

        fn records(&self) -> BTreeMap<[u8; 8], Vec<u8>> {
            let s = self.kv.0.lock().unwrap();
            s.kvs.iter().filter_map(|(k, (v, _))| Some((parse_key_hex(k.strip_prefix(b"/esprit/sa/")?)?, v.clone()))).collect()
        }

        /// One random action, then the clock moves a step.
        fn step(&mut self, rng: &mut Rng) {
            let before = self.owner_map();
            let i = rng.below(self.nodes.len() as u64) as usize;
            let life = self.nodes[i].2;
            match (rng.below(100), life) {
                // New IKE SAs at a live node.
                (0..=29, Life::Alive) => {
                    let n = 1 + rng.below(20);
                    let puts: Vec<([u8; 8], Vec<u8>)> = (0..n)
                        .map(|_| {
                            self.next_sa += 1;
                            (self.next_sa.to_be_bytes(), format!("{} v1", self.nodes[i].0).into_bytes())
                        })
                        .collect();
                    self.write(i, &puts, &[]);
                }
                // Updates of SAs it believes it owns, and a delete or two.
                (30..=54, Life::Alive | Life::Paused) => {
                    let node = self.nodes[i].1.as_ref().unwrap();
                    let owned: Vec<[u8; 8]> = node.owned().iter().copied().collect();
                    if owned.is_empty() {
                        return self.tick(before);
                    }
                    let puts: Vec<([u8; 8], Vec<u8>)> = (0..5)
                        .map(|_| (owned[rng.below(owned.len() as u64) as usize], format!("{} v{}", self.nodes[i].0, rng.next()).into_bytes()))
                        .collect();
                    let dels = if rng.below(4) == 0 { vec![owned[rng.below(owned.len() as u64) as usize]] } else { vec![] };
                    let puts: Vec<_> = puts.into_iter().filter(|(k, _)| !dels.contains(k)).collect();
                    self.write(i, &puts, &dels);
                }
                (55..=59, Life::Alive) => self.nodes[i].2 = Life::Dead,
                (60..=63, Life::Alive) => self.nodes[i].2 = Life::Paused,
                (64..=66, Life::Paused) => self.nodes[i].2 = Life::Alive,
                (67..=68, Life::Alive) => {
                    let n = self.nodes[i].1.as_mut().unwrap().drain().unwrap();
                    let _ = n;
                }
                // A dead or drained node comes back (same name: same slot).
                (69..=74, Life::Dead) => {
                    let name = self.nodes[i].0.clone();
                    let node = ClusterNode::join(self.kv.clone(), "/esprit", &name, TTL).unwrap();
                    assert_eq!(node.slot() as usize, i + 1, "a node keeps its SPI slot across restarts");
                    self.nodes[i] = (name, Some(node), Life::Alive);
                }
                _ => {}
            }
            self.tick(before);
        }

        /// A node writes; fenced: refused exactly where it does not own.
        fn write(&mut self, i: usize, puts: &[([u8; 8], Vec<u8>)], dels: &[[u8; 8]]) {
            let owners = self.owner_map();
            let stored = self.records();
            let (name, node, _) = &mut self.nodes[i];
            let lease = node.as_ref().unwrap().lease();
            let lease_alive = self.kv.0.lock().unwrap().lease_alive(lease);
            let r = node.as_mut().unwrap().write(puts, dels);
            let refused: BTreeSet<[u8; 8]> = match r {
                Ok(r) => r.into_iter().collect(),
                // A new SA under a lease that is gone: etcd refuses the
                // whole batch, and so does the model.
                Err(_) => {
                    assert!(!lease_alive);
                    return;
                }
            };
            let draining = node.as_ref().unwrap().is_draining();
            for (k, _) in puts {
                let mine = owners.get(k).is_some_and(|(n, l)| n == name && *l == lease);
                // A new IKE SA: no owner and no record yet.
                let new = !owners.contains_key(k) && !stored.contains_key(k) && lease_alive && !draining;
                assert_eq!(!refused.contains(k), mine || new, "{name} writing IKE SA {k:?} owned by {:?}", owners.get(k));
            }
            for k in dels {
                if !refused.contains(k) && owners.get(k).is_some_and(|(n, l)| n == name && *l == lease) {
                    self.deleted.insert(*k);
                }
            }
        }

        /// The clock moves; live nodes keep their leases and scan.
        fn tick(&mut self, before: BTreeMap<[u8; 8], (String, Lease)>) {
            self.kv.0.lock().unwrap().advance(STEP_MS);
            // Owner keys gone by expiry, drain (not by a delete) since the
            // step began are orphanings; claims come after.
            let mid = self.owner_map();
            for k in before.keys().filter(|k| !mid.contains_key(*k)) {
                if !self.deleted.contains(k) {
                    *self.orphanings.entry(*k).or_default() += 1;
                }
            }
            for (_, node, life) in &mut self.nodes {
                if *life != Life::Alive {
                    continue;
                }
                let n = node.as_mut().unwrap();
                if !n.keep_alive().unwrap() {
                    // Its lease expired while paused: it stops (fail-stop),
                    // as esprit-ike does.
                    *life = Life::Dead;
                    continue;
                }
                for k in n.scan().unwrap() {
                    *self.claims.entry(k).or_default() += 1;
                }
            }
            let after = self.owner_map();
            self.check(&after);
        }

        fn check(&self, owners: &BTreeMap<[u8; 8], (String, Lease)>) {
            let s = self.kv.0.lock().unwrap();
            // At most one owner, and it is the one the owner key names.
            for (name, node, _) in &self.nodes {
                let Some(n) = node else { continue };
                if !s.lease_alive(n.lease()) {
                    continue;
                }
                for k in n.owned() {
                    match owners.get(k) {
                        Some((o, l)) => assert!(o == name && *l == n.lease(), "{name} believes it owns {k:?}, etcd says {o}"),
                        // Released by its own drain, or deleted: not served.
                        None => assert!(n.is_draining() || self.deleted.contains(k), "{name} believes it owns {k:?}, which has no owner"),
                    }
                }
            }
            for (k, (o, l)) in owners {
                assert!(s.lease_alive(*l), "owner key of {k:?} under a dead lease");
                let holders = self.nodes.iter().filter(|(_, n, _)| n.as_ref().is_some_and(|n| s.lease_alive(n.lease()) && n.owned().contains(k))).count();
                assert!(holders <= 1, "{k:?} held by {holders} live nodes");
                let _ = o;
            }
        }

        /// No more failures: within a lease and two scans every stored SA
        /// has an owner, and each orphaning was claimed exactly once.
        fn settle(&mut self) {
            for (_, node, life) in &mut self.nodes {
                if *life == Life::Paused {
                    // Resumed: alive if its lease still is, else it stops.
                    *life = if node.as_mut().unwrap().keep_alive().unwrap() { Life::Alive } else { Life::Dead };
                }
            }
            let live_undrained = self.nodes.iter().any(|(_, n, l)| *l == Life::Alive && n.as_ref().is_some_and(|n| !n.is_draining()));
            if !live_undrained {
                let name = self.nodes[0].0.clone();
                self.nodes[0] = (name.clone(), Some(ClusterNode::join(self.kv.clone(), "/esprit", &name, TTL).unwrap()), Life::Alive);
            }
            let steps = (TTL as u64 * 1000 / STEP_MS) + 4;
            for _ in 0..steps {
                let before = self.owner_map();
                self.tick(before);
            }
            let owners = self.owner_map();
            for k in self.records().keys() {
                assert!(owners.contains_key(k), "IKE SA {k:?} has no owner {} ms after the last failure", steps * STEP_MS);
            }
            for (k, n) in &self.orphanings {
                assert_eq!(self.claims.get(k).copied().unwrap_or(0), *n, "IKE SA {k:?}: orphaned {n} times, claimed {:?} times", self.claims.get(k));
            }
            for (k, n) in &self.claims {
                assert_eq!(self.orphanings.get(k).copied().unwrap_or(0), *n, "IKE SA {k:?} claimed {n} times");
            }
        }
    }

    #[test]
    fn no_ike_sa_has_two_owners_and_every_orphan_is_claimed_once() {
        let mut claimed = 0;
        for seed in 1..=60u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut sim = Sim::new(2 + (seed % 3) as usize);
            for _ in 0..300 {
                sim.step(&mut rng);
            }
            sim.settle();
            claimed += sim.claims.values().sum::<u64>();
        }
        // The runs did exercise takeovers.
        assert!(claimed > 500, "only {claimed} claims in all runs");
    }

    #[test]
    fn a_paused_node_cannot_overwrite_the_record_of_the_node_that_took_over() {
        let kv = MemKv::default();
        let mut a = ClusterNode::join(kv.clone(), "/p", "a", 3).unwrap();
        let mut b = ClusterNode::join(kv.clone(), "/p", "b", 3).unwrap();
        assert_ne!(a.slot(), b.slot());
        let k = [1u8; 8];
        assert!(a.write(&[(k, b"a1".to_vec())], &[]).unwrap().is_empty());
        // a stops renewing; its lease expires, b claims the SA.
        for _ in 0..8 {
            kv.0.lock().unwrap().advance(500);
            assert!(b.keep_alive().unwrap());
        }
        assert_eq!(b.scan().unwrap(), vec![k]);
        assert!(b.write(&[(k, b"b1".to_vec())], &[]).unwrap().is_empty());
        // a wakes up and writes: refused, and the record is b's.
        assert_eq!(a.write(&[(k, b"a2".to_vec())], &[]).unwrap(), vec![k]);
        assert!(!a.keep_alive().unwrap());
        assert_eq!(kv.0.lock().unwrap().get(format!("/p/sa/{}", key_hex(&k)).as_bytes()).unwrap().0, b"b1");
    }

    #[test]
    fn a_restarted_node_takes_back_its_ike_sas_before_its_old_lease_expires() {
        let kv = MemKv::default();
        let mut a = ClusterNode::join(kv.clone(), "/p", "a", 5).unwrap();
        let mut b = ClusterNode::join(kv.clone(), "/p", "b", 5).unwrap();
        let puts: Vec<([u8; 8], Vec<u8>)> = (0..10u64).map(|i| (i.to_be_bytes(), b"x".to_vec())).collect();
        assert!(a.write(&puts, &[]).unwrap().is_empty());
        let slot = a.slot();
        drop(a);
        let mut a2 = ClusterNode::join(kv.clone(), "/p", "a", 5).unwrap();
        assert_eq!(a2.slot(), slot);
        assert_eq!(a2.owned().len(), 10, "its owner keys moved to the new lease");
        for _ in 0..20 {
            kv.0.lock().unwrap().advance(500);
            assert!(b.keep_alive().unwrap());
            assert!(a2.keep_alive().unwrap());
            assert!(b.scan().unwrap().is_empty(), "the old lease's expiry orphaned nothing");
        }
        assert_eq!(a2.owners().unwrap().len(), 10);
    }

    #[test]
    fn a_drained_node_hands_every_ike_sa_over_and_takes_no_new_one() {
        let kv = MemKv::default();
        let mut a = ClusterNode::join(kv.clone(), "/p", "a", 5).unwrap();
        let mut b = ClusterNode::join(kv.clone(), "/p", "b", 5).unwrap();
        let puts: Vec<([u8; 8], Vec<u8>)> = (0..50u64).map(|i| (i.to_be_bytes(), b"x".to_vec())).collect();
        assert!(a.write(&puts, &[]).unwrap().is_empty());
        assert_eq!(a.drain().unwrap(), 50);
        let mut got = b.scan().unwrap();
        got.extend(b.scan().unwrap());
        assert_eq!(got.len(), 50, "b claims all of them within two scans");
        assert_eq!(a.write(&[([9; 8], b"new".to_vec())], &[]).unwrap(), vec![[9; 8]]);
        assert!(a.scan().unwrap().is_empty());
    }
}
