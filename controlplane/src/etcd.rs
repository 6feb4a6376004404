//! The cluster's store on etcd ([`crate::cluster::Kv`] over the
//! `etcd-client` crate: KV, Lease and Txn of etcd's v3 API).
//!
//! The daemon is synchronous; this module owns a small tokio runtime (one
//! worker) and blocks on it. Batches of per-SA transactions are packed
//! optimistically: up to [`MAX_TXN_OPS`] operations and [`MAX_TXN_BYTES`]
//! in one etcd transaction (all conditions must hold); a pack whose
//! conditions fail is run again one SA per transaction, so a refusal
//! still touches that SA only. Packs go out [`IN_FLIGHT`] at a time.
//! Ranges are read in pages of [`PAGE`] keys (etcd's default response
//! limit would refuse 100k records at once).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};

use crate::cluster::{Cmp, Entry, Kv, KvError, Lease, Op, MAX_TXN_BYTES, MAX_TXN_OPS};

/// Packs in flight at once.
pub const IN_FLIGHT: usize = 16;
/// Keys per range page.
pub const PAGE: i64 = 2000;

/// etcd through one client, shared by clones.
#[derive(Clone)]
pub struct EtcdKv {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
    endpoints: Vec<String>,
}

fn e(x: impl std::fmt::Display) -> KvError {
    KvError(x.to_string())
}

fn to_txn(when: &[Cmp], then: &[Op]) -> Txn {
    let cmps: Vec<Compare> = when
        .iter()
        .map(|c| match c {
            Cmp::Absent(k) => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
            Cmp::LeaseIs(k, l) => Compare::lease(k.clone(), CompareOp::Equal, *l),
        })
        .collect();
    let ops: Vec<TxnOp> = then
        .iter()
        .map(|o| match o {
            Op::Put { key, value, lease } => TxnOp::put(key.clone(), value.clone(), lease.map(|l| PutOptions::new().with_lease(l))),
            Op::Delete(k) => TxnOp::delete(k.clone(), None),
        })
        .collect();
    Txn::new().when(cmps).and_then(ops)
}

fn op_bytes(o: &Op) -> usize {
    match o {
        Op::Put { key, value, .. } => key.len() + value.len() + 16,
        Op::Delete(k) => k.len() + 8,
    }
}

/// Groups independent transactions into packs within etcd's limits.
pub fn pack(batch: &[(Vec<Cmp>, Vec<Op>)]) -> Vec<Vec<usize>> {
    let mut packs: Vec<Vec<usize>> = Vec::new();
    let (mut ops, mut cmps, mut bytes) = (0, 0, 0);
    for (i, (w, t)) in batch.iter().enumerate() {
        let b: usize = t.iter().map(op_bytes).sum::<usize>() + w.len() * 32;
        if packs.is_empty() || ops + t.len() > MAX_TXN_OPS || cmps + w.len() > MAX_TXN_OPS || bytes + b > MAX_TXN_BYTES {
            packs.push(Vec::new());
            (ops, cmps, bytes) = (0, 0, 0);
        }
        packs.last_mut().expect("pushed above").push(i);
        ops += t.len();
        cmps += w.len();
        bytes += b;
    }
    packs
}

type Batch = Arc<Vec<(Vec<Cmp>, Vec<Op>)>>;

/// One pack as one transaction; if a condition failed, its SAs one at a
/// time, so the others still go through.
async fn run_pack(mut c: Client, b: Batch, p: Vec<usize>) -> Result<Vec<(usize, bool)>, etcd_client::Error> {
    let when: Vec<Cmp> = p.iter().flat_map(|&i| b[i].0.iter().cloned()).collect();
    let then: Vec<Op> = p.iter().flat_map(|&i| b[i].1.iter().cloned()).collect();
    if c.txn(to_txn(&when, &then)).await?.succeeded() {
        return Ok(p.into_iter().map(|i| (i, true)).collect());
    }
    let mut r = Vec::with_capacity(p.len());
    for i in p {
        r.push((i, c.txn(to_txn(&b[i].0, &b[i].1)).await?.succeeded()));
    }
    Ok(r)
}

impl EtcdKv {
    /// Connects to the cluster (`http://host:port` endpoints).
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, KvError> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("esprit-etcd").enable_all().build().map_err(e)?;
        let opts = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout).with_keep_alive(Duration::from_secs(2), timeout);
        let client = rt.block_on(Client::connect(endpoints, Some(opts))).map_err(|x| KvError(format!("connecting to {endpoints:?}: {x}")))?;
        let kv = Self { rt: Arc::new(rt), client, endpoints: endpoints.to_vec() };
        // The client connects lazily: ask once, so a wrong endpoint fails here.
        let mut c = kv.client.clone();
        kv.rt.block_on(c.status()).map_err(|x| KvError(format!("etcd at {endpoints:?}: {x}")))?;
        Ok(kv)
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Keeps `lease` alive from the runtime's own thread every `period`,
    /// whatever the caller is doing; the flag goes up once etcd says the
    /// lease is gone (or it could not be renewed for `ttl`).
    pub fn spawn_keepalive(&self, lease: Lease, period: Duration, ttl: Duration) -> Arc<AtomicBool> {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let mut client = self.client.clone();
        self.rt.spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                let alive = async {
                    let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    Ok::<_, etcd_client::Error>(stream.message().await?.map(|r| r.ttl() > 0))
                }
                .await;
                match alive {
                    Ok(Some(true)) => last_ok = tokio::time::Instant::now(),
                    Ok(_) => {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(_) if last_ok.elapsed() >= ttl => {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(period).await;
            }
        });
        lost
    }

    /// The etcd member's database size in octets (bench figures).
    pub fn db_size(&mut self) -> Result<u64, KvError> {
        let mut c = self.client.clone();
        Ok(self.rt.block_on(c.status()).map_err(e)?.db_size() as u64)
    }

    /// Deletes every key under `prefix` (bench and test clean-up).
    pub fn delete_prefix(&mut self, prefix: &[u8]) -> Result<(), KvError> {
        let mut c = self.client.clone();
        self.rt.block_on(c.delete(prefix.to_vec(), Some(etcd_client::DeleteOptions::new().with_prefix()))).map_err(e)?;
        Ok(())
    }
}

impl Kv for EtcdKv {
    fn grant(&mut self, ttl_secs: i64) -> Result<Lease, KvError> {
        let mut c = self.client.clone();
        Ok(self.rt.block_on(c.lease_grant(ttl_secs, None)).map_err(e)?.id())
    }

    fn keep_alive(&mut self, lease: Lease) -> Result<bool, KvError> {
        let mut c = self.client.clone();
        self.rt.block_on(async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.map_err(e)?;
            keeper.keep_alive().await.map_err(e)?;
            Ok(stream.message().await.map_err(e)?.is_some_and(|r| r.ttl() > 0))
        })
    }

    fn revoke(&mut self, lease: Lease) -> Result<(), KvError> {
        let mut c = self.client.clone();
        match self.rt.block_on(c.lease_revoke(lease)) {
            Ok(_) => Ok(()),
            Err(x) if x.to_string().contains("not found") => Ok(()),
            Err(x) => Err(e(x)),
        }
    }

    fn txn(&mut self, when: &[Cmp], then: &[Op]) -> Result<bool, KvError> {
        let mut c = self.client.clone();
        Ok(self.rt.block_on(c.txn(to_txn(when, then))).map_err(e)?.succeeded())
    }

    fn txns(&mut self, batch: Vec<(Vec<Cmp>, Vec<Op>)>) -> Result<Vec<bool>, KvError> {
        let packs = pack(&batch);
        let batch = Arc::new(batch);
        let client = self.client.clone();
        self.rt.block_on(async move {
            let mut out = vec![false; batch.len()];
            let mut set = tokio::task::JoinSet::new();
            let mut packs = packs.into_iter();
            loop {
                while set.len() < IN_FLIGHT {
                    let Some(p) = packs.next() else { break };
                    set.spawn(run_pack(client.clone(), batch.clone(), p));
                }
                let Some(done) = set.join_next().await else { break };
                for (i, ok) in done.map_err(e)?.map_err(e)? {
                    out[i] = ok;
                }
            }
            Ok(out)
        })
    }

    fn range(&mut self, prefix: &[u8], keys_only: bool) -> Result<Vec<Entry>, KvError> {
        let mut end = prefix.to_vec();
        match end.last_mut() {
            Some(b) if *b < 0xff => *b += 1,
            _ => return Err(KvError("range prefix must end below 0xff".into())),
        }
        let mut c = self.client.clone();
        let start = prefix.to_vec();
        self.rt.block_on(async move {
            let mut out = Vec::new();
            let mut from = start;
            loop {
                let mut o = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                if keys_only {
                    o = o.with_keys_only();
                }
                let r = c.get(from.clone(), Some(o)).await.map_err(e)?;
                for kv in r.kvs() {
                    out.push(Entry { key: kv.key().to_vec(), value: kv.value().to_vec(), lease: kv.lease() });
                }
                match (r.more(), r.kvs().last()) {
                    (true, Some(last)) => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
            Ok(out)
        })
    }

    fn ttl(&mut self, lease: Lease) -> Result<Option<i64>, KvError> {
        let mut c = self.client.clone();
        let r = self.rt.block_on(c.lease_time_to_live(lease, None)).map_err(e)?;
        Ok((r.ttl() > 0).then_some(r.ttl()))
    }
}

/// The etcd backend of the state store: a cluster node whose records,
/// owner keys and lease live in etcd, its lease kept alive from the
/// runtime's thread.
pub struct EtcdStore {
    node: crate::cluster::ClusterNode<EtcdKv>,
    lost: Arc<AtomicBool>,
}

impl EtcdStore {
    /// Connects and joins the cluster as `cfg.node`.
    pub fn open(cfg: &crate::config::EtcdConfig) -> Result<Self, crate::store::StoreError> {
        let be = |x: KvError| crate::store::StoreError::Backend { path: cfg.endpoints.join(",").into(), msg: x.0 };
        let ttl = Duration::from_secs(cfg.lease_ttl_secs as u64);
        let kv = EtcdKv::connect(&cfg.endpoints, Duration::from_secs(2).min(ttl)).map_err(be)?;
        let node = crate::cluster::ClusterNode::join(kv, &cfg.prefix, &cfg.node, cfg.lease_ttl_secs).map_err(be)?;
        // Renewed three times per TTL: one lost keep-alive never kills it.
        let lost = node.kv_ref().spawn_keepalive(node.lease(), ttl / 3, ttl);
        Ok(Self { node, lost })
    }

    pub fn node_mut(&mut self) -> &mut crate::cluster::ClusterNode<EtcdKv> {
        &mut self.node
    }
}

impl crate::store::StateStore for EtcdStore {
    fn load(&mut self) -> Result<Vec<crate::store::Record>, crate::store::StoreError> {
        self.node.load()
    }
    fn apply(&mut self, puts: &[([u8; 8], Vec<u8>)], deletes: &[[u8; 8]]) -> Result<(), crate::store::StoreError> {
        self.node.apply(puts, deletes)
    }
    fn backend(&self) -> &'static str {
        "etcd"
    }
    fn cluster(&mut self) -> Option<&mut dyn crate::cluster::ClusterOps> {
        Some(self)
    }
}

impl crate::cluster::ClusterOps for EtcdStore {
    fn spi_slot(&self) -> u8 {
        self.node.slot()
    }
    fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
    fn scan(&mut self) -> Result<Vec<crate::store::Record>, KvError> {
        self.node.scan_records()
    }
    fn drain(&mut self) -> Result<usize, KvError> {
        self.node.drain()
    }
    fn is_draining(&self) -> bool {
        self.node.is_draining()
    }
    fn status(&mut self) -> Result<serde_json::Value, KvError> {
        let mut v = self.node.status_json()?;
        v["endpoints"] = serde_json::json!(self.node.kv_ref().endpoints());
        Ok(v)
    }
    fn node(&self) -> &str {
        self.node.node()
    }
}
