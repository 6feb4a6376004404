//! The packet pipeline of one worker (DESIGN §4).
//!
//! * Outside → inside (inbound): Ethernet → ARP/ND answered or learnt →
//!   outer IP / UDP 4500 / ESP classified → SPI lookup in the worker's own
//!   index (followed from the SA table's journal) → if another worker owns
//!   the SA, handed over through its bounded inbox (full = counted drop) →
//!   replay pre-check → one AEAD call per run of packets of one SA → window
//!   update only after the ICV verified → inner packet checked against the
//!   SA's selectors → Ethernet (tagged with the SA's label's VLAN) to the
//!   inside next hop → the run's window saved in the SA table → TX burst.
//!   Cleartext not for the gateway passes only where the SPD says BYPASS
//!   (RFC 4301 §5.2).
//! * Inside → outside (outbound): 802.1Q tag → segment (RFC 9478 label) →
//!   flow (addresses, protocol, ports, segment) → the flow cache, or on a
//!   miss the SPD (RFC 4301 §4.4.1, first match) and an SA whose selectors
//!   and label contain the packet → BYPASS in clear, DISCARD counted, or
//!   PROTECT: sequence numbers reserved for the whole run with one atomic
//!   add in the SA table → ESP framing → one AEAD call per run → Ethernet
//!   to the outside next hop → TX burst.
//! * Anything else for the gateway (IKE on 500, IKE on 4500 behind the
//!   non-ESP marker, ICMP, ...) goes to the punt port (the kernel's TAP);
//!   what the kernel sends comes back out of the outside port.
//!
//! Guarantees: no lock, no allocation, no logging in steady state (SA
//! contexts are built when the journal announces an SA, not per packet);
//! every packet that is not forwarded is counted under one drop reason.
//!
//! Where each part lives, in the manner of DPDK's `lib/ipsec` (`esp_inb.c`
//! and `esp_outb.c` apart, each a handful of short stages):
//!
//! | file | what |
//! |------|------|
//! | `mod.rs` | the worker: its loop, queues and counters |
//! | `ctx.rs` | per-SA contexts, built from the SA table's journal |
//! | `inbound.rs` | outside → inside: classify, hand off, prepare, open, deliver |
//! | `outbound.rs` | inside → outside: classify, next hop, reserve, frame and seal, finish |
//! | `link.rs` | ARP/ND frames, next-hop lookups, Ethernet headers, solicitations |
//! | `punt.rs` | to and from the kernel's TAP |
//! | `replay.rs` | where replay windows live: the SA table, saved per run |
//! | `drops.rs` | the dataplane's drop reasons and their metric labels |

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam::queue::ArrayQueue;
use dpdk::{Burst, CpuVec, Mbuf, Mempool, RxQueue, TxQueue, MAX_BURST};
use esp::DropReason;
use esp_wire::{Ipv4Packet, Ipv6Packet};
use sa_table::{Reader, SaId};

use crate::crypto::{Aead, BackendChoice, MbDevices};
use crate::policy::{Policy, Verdict};
use crate::l2::{Mac, NeighbourTable};
use crate::metrics::WorkerMetrics;
use crate::ports::{INSIDE, OUTSIDE, PUNT};

mod ctx;
mod diet;
mod drops;
mod inbound;
mod link;
mod outbound;
mod punt;
mod replay;

use ctx::SaCtx;
pub use ctx::{diet_attrs, esp_params};
use drops::RunDrops;
pub use drops::{DpDrop, DROP_NAMES};

/// One side of the gateway: its port MAC, its addresses and its next hop.
#[derive(Debug, Clone)]
pub struct Side {
    pub mac: Mac,
    pub addrs: Vec<IpAddr>,
    /// Send everything to this next hop (else: to the destination, on-link).
    pub gateway: Option<IpAddr>,
}

/// What all workers share, read-only (the neighbour table and the inboxes
/// are internally synchronised).
pub struct Env<'a> {
    pub workers: usize,
    /// One per worker: batches of inbound ESP for the SAs it owns, one
    /// batch per sending worker and receive burst (one atomic operation
    /// per batch, not per packet).
    pub inboxes: &'a [ArrayQueue<Burst>],
    pub neigh: &'a NeighbourTable,
    pub sides: [Side; 2],
    pub has_punt: bool,
    pub backend: BackendChoice,
    /// The intel-ipsec-mb devices, when `backend` is `IpsecMb`.
    pub mb: Option<&'a MbDevices>,
    pub pool: Mempool,
    pub stop: &'a AtomicBool,
    /// The SPD and the label segments, compiled from the configuration.
    pub policy: &'a Policy,
}

/// One worker's queues, by port role; `None` where it has none.
pub struct Queues<'p> {
    pub rx: [Option<RxQueue<'p>>; 3],
    pub tx: [Option<TxQueue<'p>>; 3],
}

/// One worker's pipeline state.
pub struct Worker<'a, 'p> {
    pub id: usize,
    env: &'a Env<'a>,
    q: Queues<'p>,
    reader: Reader,
    sas: Vec<Option<SaCtx>>,
    pub metrics: WorkerMetrics,
    now_secs: u64,
    epoch: Instant,
    last_solicit: Instant,
    /// Per owner worker, the batch being filled in this receive burst.
    handoff: Vec<Burst>,
    /// The CPU-crypto vector the ipsec-mb backend fills per run.
    cpu: Box<CpuVec>,
    /// Compressed (Diet-ESP) inbound SAs by SPI low bits.
    diet_in: diet::DietIndex,
    /// Outbound verdicts by flow, cleared whenever the SA table changes.
    flows: spd::FlowCache<Verdict>,
    /// The outbound SAs the SPD names by SPI (static SAs), by SPI.
    named_out: Vec<(u32, SaId)>,
}

/// Flow cache lines per worker (64 bytes each: 512 KiB, of which only the
/// lines of live flows are ever touched).
const FLOW_CACHE_ENTRIES: usize = 8192;

// A cached verdict must fit beside its 40-byte key in one cache line.
const _: () = assert!(std::mem::size_of::<Verdict>() <= 24);

fn ip_addrs(ip: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match ip.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            Some((IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr())))
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip).ok()?;
            Some((IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr())))
        }
        _ => None,
    }
}

fn flow_seed(id: usize) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(id);
    h.finish()
}

/// One batch AEAD call over the packets of a run that have an op.
fn run_aead(aead: &Aead, run: &mut [Option<Mbuf>], ops: &[Option<esp::CryptoOp>; MAX_BURST], seal: bool) -> [bool; MAX_BURST] {
    esp::aead_burst(aead, run.iter_mut().map(|m| m.as_mut().map(|m| m.data_mut())), ops, seal)
}

impl<'a, 'p> Worker<'a, 'p> {
    pub fn new(id: usize, env: &'a Env<'a>, q: Queues<'p>, reader: Reader, metrics: WorkerMetrics) -> Self {
        let cap = reader.capacity() as usize;
        let mut w = Worker {
            id,
            env,
            q,
            reader,
            sas: (0..cap).map(|_| None).collect(),
            metrics,
            now_secs: 0,
            epoch: Instant::now(),
            // So that the first packet to an unresolved next hop asks for it.
            last_solicit: Instant::now().checked_sub(std::time::Duration::from_secs(1)).unwrap_or_else(Instant::now),
            handoff: (0..env.workers).map(|_| Burst::new()).collect(),
            cpu: CpuVec::new(),
            diet_in: diet::DietIndex::default(),
            // Seeded per worker and start, so colliding flows are not
            // predictable from outside the process.
            flows: spd::FlowCache::new(FLOW_CACHE_ENTRIES, flow_seed(id)),
            named_out: Vec::new(),
        };
        let ids: Vec<SaId> = w.reader.known_ids().collect();
        for id in ids {
            if let Ok(mut p) = w.reader.read(id) {
                w.install(id, &p);
                p.wipe_key();
            }
        }
        w
    }

    fn drop_esp(&mut self, r: DropReason) {
        self.metrics.local.drops[r.index()] += 1;
    }

    fn drop_dp(&mut self, r: DpDrop) {
        self.metrics.local.drops[r.index()] += 1;
    }

    /// Runs until the stop flag is raised.
    pub fn run(&mut self) {
        let mut iter: u64 = 0;
        loop {
            if iter & 63 == 0 {
                if self.env.stop.load(Ordering::Relaxed) {
                    break;
                }
                self.follow_table();
            }
            if iter & 1023 == 0 {
                self.now_secs = self.epoch.elapsed().as_secs();
                self.metrics.local.handoff_depth = self.env.inboxes[self.id].len() as u64;
                self.metrics.flush();
            }
            self.poll_once();
            iter = iter.wrapping_add(1);
        }
        self.metrics.local.handoff_depth = self.env.inboxes[self.id].len() as u64;
        self.metrics.flush();
    }

    /// One turn of the loop: every queue this worker polls, once.
    pub fn poll_once(&mut self) -> usize {
        let mut work = 0;
        let mut b = Burst::new();
        if let Some(q) = self.q.rx[OUTSIDE].as_mut() {
            if q.rx_burst(&mut b) > 0 {
                work += b.len();
                self.outside_burst(&mut b);
            }
        }
        // Inbound ESP handed over by other workers.
        if let Some(mut batch) = self.env.inboxes[self.id].pop() {
            let mut slots: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
            let n = batch.drain_into(&mut slots);
            work += n;
            self.inbound_esp(&mut slots[..n]);
        }
        if let Some(q) = self.q.rx[INSIDE].as_mut() {
            if q.rx_burst(&mut b) > 0 {
                work += b.len();
                self.inside_burst(&mut b);
            }
        }
        if let Some(q) = self.q.rx[PUNT].as_mut() {
            if q.rx_burst(&mut b) > 0 {
                work += b.len();
                self.kernel_burst(&mut b);
            }
        }
        work
    }

    fn count_rx(&mut self, port: usize, b: &Burst) {
        self.metrics.local.rx_pkts[port] += b.len() as u64;
        self.metrics.local.rx_bytes[port] += b.as_slice().iter().map(|m| m.pkt_len() as u64).sum::<u64>();
    }

    fn send(&mut self, port: usize, out: &mut Burst) {
        if out.is_empty() {
            return;
        }
        let bytes: u64 = out.as_slice().iter().map(|m| m.pkt_len() as u64).sum();
        self.send_counted(port, out, bytes);
    }

    /// [`Self::send`] where the caller summed the packets' lengths (`bytes`)
    /// as it pushed them.
    fn send_counted(&mut self, port: usize, out: &mut Burst, bytes: u64) {
        if out.is_empty() {
            return;
        }
        let n = out.len();
        let sent = match self.q.tx[port].as_mut() {
            Some(q) => q.tx_burst(out),
            None => 0,
        };
        let left_bytes: u64 = if sent < n { out.as_slice().iter().map(|m| m.pkt_len() as u64).sum() } else { 0 };
        self.metrics.local.tx_pkts[port] += sent as u64;
        self.metrics.local.tx_bytes[port] += bytes - left_bytes;
        if sent < n {
            self.metrics.local.drops[DpDrop::TxFull.index()] += (n - sent) as u64;
            out.clear();
        }
    }
}
