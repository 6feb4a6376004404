//! The packet pipeline of one worker (DESIGN §4).
//!
//! * Outside → inside (inbound): Ethernet → ARP/ND answered or learnt →
//!   outer IP / UDP 4500 / ESP classified → SPI lookup in the worker's own
//!   index (followed from the SA table's journal) → if another worker owns
//!   the SA, handed over through its bounded inbox (full = counted drop) →
//!   replay pre-check → one AEAD call per run of packets of one SA → window
//!   update only after the ICV verified → inner packet checked against the
//!   SA's selectors → Ethernet to the inside next hop → TX burst.
//! * Inside → outside (outbound): inner destination → longest-prefix SA →
//!   sequence numbers reserved for the whole run with one atomic add in the
//!   SA table → ESP framing → one AEAD call per run → Ethernet to the
//!   outside next hop → TX burst.
//! * Anything else for the gateway (IKE on 500, IKE on 4500 behind the
//!   non-ESP marker, ICMP, ...) goes to the punt port (the kernel's TAP);
//!   what the kernel sends comes back out of the outside port.
//!
//! Guarantees: no lock, no allocation, no logging in steady state (SA
//! contexts are built when the journal announces an SA, not per packet);
//! every packet that is not forwarded is counted under one drop reason.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam::queue::ArrayQueue;
use dpdk::{Burst, CpuVec, Mbuf, Mempool, RxQueue, TxQueue, MAX_BURST};
use esp::{DropReason, InboundOp, InboundSa, OutboundOp, OutboundSa, PktBuf, Suite};
use esp_wire::{Ipv4Packet, Ipv6Packet};
use sa_table::{Change, Reader, SaFlags, SaId, SaParams as SlotParams};

use crate::crypto::{Aead, BackendChoice, MbDevices};
use crate::l2::field::ETH_LEN;
use crate::l2::{self, L2Action, Mac, NeighbourTable, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::metrics::WorkerMetrics;
use crate::ports::{INSIDE, OUTSIDE, PUNT};

/// Drop reasons of the dataplane beyond the ESP engine's (which come first,
/// at their own indexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DpDrop {
    /// No inbound SA for the SPI (RFC 4303 §3.4.2: discard, auditable).
    NoInboundSa = 0,
    /// No outbound SA covers the inner destination.
    NoOutboundSa = 1,
    /// The next hop's MAC is not known yet (a request went out).
    NoNeighbour = 2,
    /// An IP packet neither for the gateway nor ESP.
    NotForUs = 3,
    /// Not IPv4, IPv6 or ARP.
    NotIp = 4,
    /// A malformed ARP or neighbour-discovery message.
    BadL2 = 5,
    /// The inner packet is outside the SA's traffic selectors (RFC 4301 §5.2).
    SelectorMismatch = 6,
    /// The owner worker's handoff queue was full.
    HandoffFull = 7,
    /// The TX queue did not take the packet.
    TxFull = 8,
    /// For the gateway, but there is no punt port.
    NoPunt = 9,
    /// The SA's slot could not be read or its parameters are unusable.
    SaUnusable = 10,
    /// A multi-segment mbuf (esprit handles one segment per packet).
    Segmented = 11,
}

impl DpDrop {
    pub const COUNT: usize = 12;
    pub const NAMES: [&'static str; Self::COUNT] = [
        "no_inbound_sa",
        "no_outbound_sa",
        "no_neighbour",
        "not_for_us",
        "not_ip",
        "bad_l2",
        "selector_mismatch",
        "handoff_full",
        "tx_full",
        "no_punt",
        "sa_unusable",
        "segmented",
    ];

    /// Index in the worker's drop counters (after the ESP reasons).
    pub const fn index(self) -> usize {
        DropReason::COUNT + self as usize
    }
}

const fn all_drop_names() -> [&'static str; DropReason::COUNT + DpDrop::COUNT] {
    let mut out = [""; DropReason::COUNT + DpDrop::COUNT];
    let mut i = 0;
    while i < DropReason::COUNT {
        out[i] = DropReason::ALL[i].name();
        i += 1;
    }
    let mut j = 0;
    while j < DpDrop::COUNT {
        out[DropReason::COUNT + j] = DpDrop::NAMES[j];
        j += 1;
    }
    out
}

/// Every drop reason's metric label, by index.
pub static DROP_NAMES: [&str; DropReason::COUNT + DpDrop::COUNT] = all_drop_names();

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
}

/// One worker's queues, by port role; `None` where it has none.
pub struct Queues<'p> {
    pub rx: [Option<RxQueue<'p>>; 3],
    pub tx: [Option<TxQueue<'p>>; 3],
}

/// What a worker keeps per SA (by slot), built when the journal announces it.
enum SaCtx {
    /// `tunnel_dst`: the outer destination of a tunnel-mode SA (known once,
    /// not parsed back out of every packet).
    Out { sa: Box<OutboundSa>, aead: Aead, esn: bool, tunnel_dst: Option<IpAddr> },
    In { sa: Box<InboundSa>, aead: Aead, params: Box<SlotParams> },
    /// Inbound SA owned by another worker.
    Foreign,
    /// Parameters the ESP engine refused; its packets are dropped.
    Unusable,
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
}

/// Maps a slot's parameters to the ESP engine's.
pub fn esp_params(p: &SlotParams) -> Result<esp::SaParams, &'static str> {
    let suite = Suite::from_transform(esp::TransformId(p.transform.0), Some(u16::from(p.key_len) * 8))
        .ok_or("transform or key length not supported by the ESP engine")?;
    let mut keymat = [0u8; sa_table::MAX_KEY_BYTES + sa_table::SALT_BYTES];
    let k = p.key();
    keymat[..k.len()].copy_from_slice(k);
    keymat[k.len()..k.len() + 4].copy_from_slice(&p.salt);
    let mut e = esp::SaParams::new(p.spi, suite, &keymat[..k.len() + 4]).ok_or("key length does not match the suite")?;
    e.esn = p.flags.contains(SaFlags::ESN);
    if p.mode == sa_table::Mode::TUNNEL {
        let (Some(src), Some(dst)) = (p.outer_src_addr(), p.outer_dst_addr()) else {
            return Err("tunnel mode without outer addresses");
        };
        e.mode = esp::Mode::Tunnel { src, dst };
    }
    if p.flags.contains(SaFlags::UDP_ENCAP) {
        e.udp_encap = Some(esp::UdpEncap { src_port: p.udp_src_port, dst_port: p.udp_dst_port });
    }
    e.replay_window = p.replay_window_pkts;
    if p.sender_id_bits != 0 {
        e.iv = esp::IvPolicy::SenderId { bits: p.sender_id_bits, sid: p.sender_id };
    }
    Ok(e)
}

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

/// (protocol, source port, destination port) of an inner packet, for the
/// selector check; ports are 0 when the packet carries none we read.
fn l4(ip: &[u8]) -> (u8, u16, u16) {
    let (proto, off) = match ip.first().map(|b| b >> 4) {
        Some(4) => match Ipv4Packet::new_checked(ip) {
            Ok(p) if !p.is_fragment() || p.frag_offset() == 0 => (p.protocol().0, p.header_len()),
            Ok(p) => return (p.protocol().0, 0, 0),
            Err(_) => return (0, 0, 0),
        },
        Some(6) => match Ipv6Packet::new_checked(ip).and_then(|p| p.upper_layer()) {
            Ok(u) => (u.protocol.0, u.offset),
            Err(_) => return (0, 0, 0),
        },
        _ => return (0, 0, 0),
    };
    match (proto, ip.get(off..off + 4)) {
        (6 | 17 | 132, Some(p)) => (proto, u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])),
        _ => (proto, 0, 0),
    }
}

/// Next-hop MAC lookups within one run of packets: consecutive packets
/// almost always share their next hop (always, in tunnel mode behind a
/// gateway), so one table lookup serves the run.
struct HopCache<'t> {
    table: &'t NeighbourTable,
    last: Option<(IpAddr, Option<Mac>)>,
}

impl<'t> HopCache<'t> {
    fn new(table: &'t NeighbourTable) -> Self {
        HopCache { table, last: None }
    }

    fn lookup(&mut self, hop: IpAddr) -> Option<Mac> {
        match self.last {
            Some((ip, mac)) if ip == hop => mac,
            _ => {
                let mac = self.table.lookup(hop);
                self.last = Some((hop, mac));
                mac
            }
        }
    }
}

/// One batch AEAD call over the packets of a run that have an op.
fn run_aead(aead: &Aead, run: &mut [Option<Mbuf>], ops: &[Option<esp::CryptoOp>; MAX_BURST], seal: bool) -> [bool; MAX_BURST] {
    esp::aead_burst(aead, run.iter_mut().map(|m| m.as_mut().map(|m| m.data_mut())), ops, seal)
}

/// Frames one outbound packet in place: the Ethernet header it arrived with
/// gives way to the ESP packet's outer headers, and those are preceded by
/// `eth` when the outer Ethernet header is known before sealing (tunnel
/// mode). Writing it here, while the packet's first lines are in L1, saves
/// a miss per packet after the run's AEAD pass has evicted them. The op's
/// offsets are relative to the outer IP header either way.
#[inline]
fn prepare_out(sa: &OutboundSa, m: &mut Mbuf, seq: u64, eth: Option<&[u8; ETH_LEN]>) -> Result<OutboundOp, DropReason> {
    let (buf, off, len) = m.buffer_mut();
    let ip_len = len.checked_sub(ETH_LEN).ok_or(DropReason::Truncated)?;
    let mut pb = PktBuf::new(buf, off + ETH_LEN, ip_len).ok_or(DropReason::Truncated)?;
    let op = sa.prepare(&mut pb, seq)?;
    let (buf, mut start, mut plen) = pb.into_parts();
    if let Some(h) = eth {
        start = start.checked_sub(ETH_LEN).ok_or(DropReason::NoHeadroom)?;
        buf[start..start + ETH_LEN].copy_from_slice(h);
        plen += ETH_LEN;
    }
    if !m.set_data(start, plen) {
        return Err(DropReason::NoTailroom);
    }
    Ok(op)
}

/// [`OutboundSa::prepare_v4_fast`] on an mbuf, with the outer Ethernet
/// header `eth` in front. `Ok(None)`, the mbuf untouched, where the fast
/// path does not apply.
#[inline]
fn frame_v4_fast(sa: &OutboundSa, m: &mut Mbuf, seq: u64, eth: &[u8; ETH_LEN]) -> Result<Option<esp::Framed>, DropReason> {
    let (buf, off, len) = m.buffer_mut();
    // Room for the Ethernet header in front of what the fast path prepends.
    if off < esp::FAST_V4_HEADROOM || len < ETH_LEN {
        return Ok(None);
    }
    let Some(f) = sa.prepare_v4_fast(buf, off + ETH_LEN, len - ETH_LEN, seq) else { return Ok(None) };
    let at = f.start - ETH_LEN;
    buf[at..f.start].copy_from_slice(eth);
    if !m.set_data(at, f.len + ETH_LEN) {
        return Err(DropReason::NoTailroom);
    }
    Ok(Some(f))
}

/// The Ethernet header to `dst_mac` for an IP packet to `ip_dst`.
#[inline]
fn eth_header(dst_mac: Mac, src_mac: Mac, ip_dst: IpAddr) -> [u8; ETH_LEN] {
    let et = if ip_dst.is_ipv4() { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
    let mut h = [0u8; ETH_LEN];
    h[0..6].copy_from_slice(&dst_mac);
    h[6..12].copy_from_slice(&src_mac);
    h[12..14].copy_from_slice(&et.to_be_bytes());
    h
}

fn write_eth(m: &mut Mbuf, dst: Mac, src: Mac, ethertype: u16) -> bool {
    let Some(h) = m.prepend(14) else { return false };
    h[0..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..14].copy_from_slice(&ethertype.to_be_bytes());
    true
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
        };
        let ids: Vec<SaId> = w.reader.known_ids().collect();
        for id in ids {
            if let Ok(p) = w.reader.read(id) {
                w.install(id, &p);
            }
        }
        w
    }

    fn owner(&self, id: SaId) -> usize {
        id.slot() as usize % self.env.workers
    }

    fn install(&mut self, id: SaId, p: &SlotParams) {
        let ctx = if p.direction == sa_table::Direction::INBOUND && self.owner(id) != self.id {
            SaCtx::Foreign
        } else {
            match esp_params(p).and_then(|e| {
                let out = p.direction == sa_table::Direction::OUTBOUND;
                let aead = Aead::new(self.env.backend, self.env.mb, &e, out).map_err(|_| "key rejected")?;
                if out {
                    let sa = OutboundSa::new(&e).map_err(|_| "SA parameters refused")?;
                    let tunnel_dst = match e.mode {
                        esp::Mode::Tunnel { dst, .. } => Some(dst),
                        esp::Mode::Transport => None,
                    };
                    Ok(SaCtx::Out { sa: Box::new(sa), aead, esn: e.esn, tunnel_dst })
                } else {
                    let sa = InboundSa::new(&e).map_err(|_| "SA parameters refused")?;
                    Ok(SaCtx::In { sa: Box::new(sa), aead, params: Box::new(*p) })
                }
            }) {
                Ok(c) => c,
                Err(_) => SaCtx::Unusable,
            }
        };
        if let Some(s) = self.sas.get_mut(id.slot() as usize) {
            *s = Some(ctx);
        }
    }

    /// Applies the SA table's journal to this worker's contexts.
    pub fn follow_table(&mut self) {
        // The reader lends the params only inside its callback: copy out a
        // bounded number of changes, apply them after.
        let mut changes: [Option<(SaId, Option<SlotParams>)>; 16] = [None; 16];
        let mut n = 0;
        let mut overflow = false;
        self.reader.poll_changes(|c| {
            if n == changes.len() {
                overflow = true;
                return;
            }
            changes[n] = Some(match c {
                Change::Upsert { id, params } => (id, Some(*params)),
                Change::Removed { id } => (id, None),
            });
            n += 1;
        });
        if overflow {
            // More changes than fit: rebuild every context from the indexes.
            self.rebuild_contexts();
            return;
        }
        for c in changes.iter_mut().take(n) {
            match c.take() {
                Some((id, Some(p))) => self.install(id, &p),
                Some((id, None)) => {
                    if let Some(s) = self.sas.get_mut(id.slot() as usize) {
                        *s = None;
                    }
                }
                None => {}
            }
        }
    }

    fn rebuild_contexts(&mut self) {
        for s in self.sas.iter_mut() {
            *s = None;
        }
        let ids: Vec<SaId> = self.reader.known_ids().collect();
        for id in ids {
            if let Ok(p) = self.reader.read(id) {
                self.install(id, &p);
            }
        }
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

    fn punt(&mut self, m: Mbuf, to_kernel: &mut Burst) {
        if !self.env.has_punt || self.q.tx[PUNT].is_none() {
            self.drop_dp(DpDrop::NoPunt);
            return;
        }
        self.metrics.local.punted_to_kernel += 1;
        if let Err(m) = to_kernel.push(m) {
            // Burst full: cannot happen (input bursts are at most MAX_BURST).
            drop(m);
            self.drop_dp(DpDrop::TxFull);
        }
    }

    /// Frames from the outside port.
    fn outside_burst(&mut self, b: &mut Burst) {
        self.count_rx(OUTSIDE, b);
        let mut slots: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let n = b.drain_into(&mut slots);
        let mut mine: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let mut nmine = 0;
        let mut back = Burst::new();
        let mut to_kernel = Burst::new();
        for slot in slots.iter_mut().take(n) {
            let Some(mut m) = slot.take() else { continue };
            if !m.is_contiguous() {
                self.drop_dp(DpDrop::Segmented);
                continue;
            }
            match l2::ethertype(m.data()) {
                Some(ETHERTYPE_ARP) => {
                    let side = &self.env.sides[OUTSIDE];
                    match l2::handle_arp(m.data_mut(), side.mac, &side.addrs, self.env.neigh) {
                        L2Action::Reply => {
                            let _ = back.push(m);
                        }
                        L2Action::Consumed => self.punt(m, &mut to_kernel),
                        _ => self.drop_dp(DpDrop::BadL2),
                    }
                    continue;
                }
                Some(ETHERTYPE_IPV4) | Some(ETHERTYPE_IPV6) => {}
                _ => {
                    self.drop_dp(DpDrop::NotIp);
                    continue;
                }
            }
            let side = &self.env.sides[OUTSIDE];
            match l2::handle_nd(m.data_mut(), side.mac, &side.addrs, self.env.neigh) {
                L2Action::NotL2 => {}
                L2Action::Reply => {
                    let len = m.len();
                    m.trim(len.saturating_sub(l2::ND_REPLY_LEN));
                    let _ = back.push(m);
                    continue;
                }
                L2Action::Consumed => {
                    self.punt(m, &mut to_kernel);
                    continue;
                }
                L2Action::Malformed => {
                    self.drop_dp(DpDrop::BadL2);
                    continue;
                }
            }
            let ip = &m.data()[14..];
            match esp::classify(ip) {
                Ok(loc) => {
                    let Some((src, dst)) = ip_addrs(ip) else {
                        self.drop_esp(DropReason::BadOuterHeader);
                        continue;
                    };
                    let Some(id) = self.reader.lookup_inbound(loc.spi, dst, src) else {
                        self.drop_dp(DpDrop::NoInboundSa);
                        continue;
                    };
                    let owner = self.owner(id);
                    if owner != self.id {
                        // Input bursts hold at most MAX_BURST: the batch has room.
                        let _ = self.handoff[owner].push(m);
                        continue;
                    }
                    mine[nmine] = Some(m);
                    nmine += 1;
                }
                Err(DropReason::NonEspMarker) => self.punt(m, &mut to_kernel),
                Err(DropReason::NatKeepalive) => self.drop_esp(DropReason::NatKeepalive),
                Err(DropReason::NotEsp) => {
                    let for_us = ip_addrs(ip).is_some_and(|(_, d)| side.addrs.contains(&d));
                    if for_us {
                        self.punt(m, &mut to_kernel);
                    } else {
                        self.drop_dp(DpDrop::NotForUs);
                    }
                }
                Err(r) => self.drop_esp(r),
            }
        }
        self.send(OUTSIDE, &mut back);
        self.send(PUNT, &mut to_kernel);
        for owner in 0..self.handoff.len() {
            if self.handoff[owner].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.handoff[owner]);
            if let Err(full) = self.env.inboxes[owner].push(batch) {
                // A full inbox is a counted drop, never a wait.
                let n = full.len() as u64;
                self.metrics.local.drops[DpDrop::HandoffFull.index()] += n;
                self.metrics.local.handoff_drops += n;
            }
        }
        self.inbound_esp(&mut mine[..nmine]);
    }

    /// ESP packets (Ethernet header still on) for SAs this worker owns.
    fn inbound_esp(&mut self, pkts: &mut [Option<Mbuf>]) {
        let mut out = Burst::new();
        let mut i = 0;
        while i < pkts.len() {
            // A run of packets for one SA.
            let Some(first) = pkts[i].as_ref() else {
                i += 1;
                continue;
            };
            let id = self.lookup_esp(first);
            let mut j = i + 1;
            while j < pkts.len() && pkts[j].as_ref().map(|m| self.lookup_esp(m)) == Some(id) {
                j += 1;
            }
            self.open_run(id, &mut pkts[i..j], &mut out);
            i = j;
        }
        self.send(INSIDE, &mut out);
    }

    fn lookup_esp(&self, m: &Mbuf) -> Option<SaId> {
        let ip = m.data().get(14..)?;
        let loc = esp::classify(ip).ok()?;
        let (src, dst) = ip_addrs(ip)?;
        self.reader.lookup_inbound(loc.spi, dst, src)
    }

    fn open_run(&mut self, id: Option<SaId>, run: &mut [Option<Mbuf>], out: &mut Burst) {
        let n = run.iter().filter(|m| m.is_some()).count();
        let Some(id) = id else {
            self.metrics.local.drops[DpDrop::NoInboundSa.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let Some(Some(SaCtx::In { sa, aead, params })) = self.sas.get_mut(id.slot() as usize) else {
            self.metrics.local.drops[DpDrop::SaUnusable.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let mut ops: [Option<InboundOp>; MAX_BURST] = [None; MAX_BURST];
        let mut verdict: [Result<(), DropReason>; MAX_BURST] = [Ok(()); MAX_BURST];
        // Prepare: classify and replay pre-check (RFC 4303 §3.4.3: before the ICV).
        for (k, slot) in run.iter_mut().enumerate() {
            let Some(m) = slot.as_mut() else { continue };
            m.adj(14);
            let data = m.data();
            verdict[k] = esp::classify(data).and_then(|loc| sa.prepare(data, &loc)).map(|op| ops[k] = Some(op));
        }
        let crypto_ops: [Option<esp::CryptoOp>; MAX_BURST] = core::array::from_fn(|k| ops[k].map(|o| o.op));
        let opened = run_aead(aead, run, &crypto_ops, false);
        for (k, v) in verdict.iter_mut().enumerate().take(run.len()) {
            if ops[k].is_some() && !opened[k] {
                *v = Err(DropReason::IcvMismatch);
            }
        }
        let inside = &self.env.sides[INSIDE];
        let mut hops = HopCache::new(self.env.neigh);
        let mut missing_hop = None;
        let mut pkts_ok = 0u64;
        let mut bytes_ok = 0u64;
        let mut drops = [0u64; DropReason::COUNT + DpDrop::COUNT];
        for (k, slot) in run.iter_mut().enumerate() {
            let Some(mut m) = slot.take() else { continue };
            let (Some(op), Ok(())) = (ops[k], verdict[k]) else {
                // ICV failures still go through finish() so the window is not touched.
                match verdict[k] {
                    Err(r) => drops[r.index()] += 1,
                    Ok(()) => drops[DropReason::CryptoFailed.index()] += 1,
                }
                continue;
            };
            let (buf, off, len) = m.buffer_mut();
            let Some(mut pb) = PktBuf::new(buf, off, len) else {
                drops[DropReason::Truncated.index()] += 1;
                continue;
            };
            match sa.finish(&mut pb, &op, true) {
                Ok(_) => {}
                Err(r) => {
                    drops[r.index()] += 1;
                    continue;
                }
            }
            let (_, start, plen) = pb.into_parts();
            if !m.set_data(start, plen) {
                drops[DropReason::Truncated.index()] += 1;
                continue;
            }
            let inner = m.data();
            let Some((src, dst)) = ip_addrs(inner) else {
                drops[DropReason::BadInnerHeader.index()] += 1;
                continue;
            };
            // RFC 4301 §5.2 step 4: the decrypted packet must match the SA's selectors.
            let (proto, sport, dport) = l4(inner);
            if !params.selectors_match(dst, src, proto, dport, sport) {
                drops[DpDrop::SelectorMismatch.index()] += 1;
                continue;
            }
            let hop = inside.gateway.unwrap_or(dst);
            let Some(mac) = hops.lookup(hop) else {
                drops[DpDrop::NoNeighbour.index()] += 1;
                missing_hop = Some(hop);
                continue;
            };
            let et = if dst.is_ipv4() { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
            pkts_ok += 1;
            bytes_ok += plen as u64;
            if !write_eth(&mut m, mac, inside.mac, et) {
                drops[DropReason::NoHeadroom.index()] += 1;
                continue;
            }
            if let Err(m) = out.push(m) {
                drop(m);
                drops[DpDrop::TxFull.index()] += 1;
            }
        }
        if let Some(st) = self.reader.state(id) {
            st.add_traffic(pkts_ok, bytes_ok);
            st.touch(self.now_secs);
            for (r, c) in drops.iter().enumerate().take(sa_table::DROP_REASONS) {
                for _ in 0..*c {
                    st.count_drop(r);
                }
            }
        }
        self.metrics.local.decrypted += pkts_ok;
        for (r, c) in drops.iter().enumerate() {
            self.metrics.local.drops[r] += c;
        }
        if missing_hop.is_some() {
            self.solicit_if_missing(INSIDE, true, missing_hop);
        }
    }

    /// Frames from the inside port: protect them.
    fn inside_burst(&mut self, b: &mut Burst) {
        // Received packets and bytes are counted in the classification loop
        // (which reads every mbuf anyway), not in a pass of their own.
        self.metrics.local.rx_pkts[INSIDE] += b.len() as u64;
        let mut rx_bytes = 0u64;
        let mut slots: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let n = b.drain_into(&mut slots);
        let mut ids: [Option<SaId>; MAX_BURST] = [None; MAX_BURST];
        let mut back = Burst::new();
        // The last IPv4 answer and the destination bits it depended on: the
        // index does not change within a burst (the journal is followed
        // between polls).
        let mut memo_v4: Option<(u32, u32, Option<SaId>)> = None;
        for k in 0..n {
            let Some(m) = slots[k].as_mut() else { continue };
            rx_bytes += m.pkt_len() as u64;
            if !m.is_contiguous() {
                slots[k] = None;
                self.drop_dp(DpDrop::Segmented);
                continue;
            }
            let env = self.env;
            let side = &env.sides[INSIDE];
            match l2::ethertype(m.data()) {
                Some(ETHERTYPE_ARP) => {
                    let action = l2::handle_arp(m.data_mut(), side.mac, &side.addrs, env.neigh);
                    let m = slots[k].take().expect("checked above");
                    self.inside_l2(m, action, false, &mut back);
                    continue;
                }
                Some(ETHERTYPE_IPV4) => {}
                Some(ETHERTYPE_IPV6) => {
                    // Neighbour discovery first: solicitations go to multicast.
                    let action = l2::handle_nd(m.data_mut(), side.mac, &side.addrs, env.neigh);
                    if action != L2Action::NotL2 {
                        let m = slots[k].take().expect("checked above");
                        self.inside_l2(m, action, true, &mut back);
                        continue;
                    }
                }
                _ => {
                    slots[k] = None;
                    self.drop_dp(DpDrop::NotIp);
                    continue;
                }
            }
            let Some((_, dst)) = ip_addrs(&m.data()[14..]) else {
                slots[k] = None;
                self.drop_esp(DropReason::BadInnerHeader);
                continue;
            };
            if side.addrs.contains(&dst) {
                // To the gateway's inside address: nothing serves it there.
                slots[k] = None;
                self.drop_dp(DpDrop::NotForUs);
                continue;
            }
            let found = match dst {
                IpAddr::V4(d) => {
                    let d = u32::from(d);
                    match memo_v4 {
                        Some((last, mask, id)) if (d ^ last) & mask == 0 => id,
                        _ => {
                            let (id, mask) = self.reader.lookup_outbound_v4_span(d.into());
                            memo_v4 = Some((d, mask, id));
                            id
                        }
                    }
                }
                IpAddr::V6(_) => self.reader.lookup_outbound(dst),
            };
            match found {
                Some(id) => ids[k] = Some(id),
                None => {
                    slots[k] = None;
                    self.drop_dp(DpDrop::NoOutboundSa);
                }
            }
        }
        self.metrics.local.rx_bytes[INSIDE] += rx_bytes;
        self.send(INSIDE, &mut back);
        let mut out = Burst::new();
        let mut out_bytes = 0u64;
        let mut i = 0;
        while i < n {
            if slots[i].is_none() {
                i += 1;
                continue;
            }
            let id = ids[i];
            let mut j = i + 1;
            while j < n && (slots[j].is_none() || ids[j] == id) {
                j += 1;
            }
            self.seal_run(id, &mut slots[i..j], &mut out, &mut out_bytes);
            i = j;
        }
        self.send_counted(OUTSIDE, &mut out, out_bytes);
    }

    /// What ARP/ND handling decided for a frame from the inside.
    fn inside_l2(&mut self, mut m: Mbuf, action: L2Action, nd: bool, back: &mut Burst) {
        match action {
            L2Action::Reply => {
                if nd {
                    let len = m.len();
                    m.trim(len.saturating_sub(l2::ND_REPLY_LEN));
                }
                let _ = back.push(m);
            }
            // Learnt; the inside has no kernel to pass it to.
            L2Action::Consumed => {}
            L2Action::NotL2 => self.drop_dp(DpDrop::NotForUs),
            L2Action::Malformed => self.drop_dp(DpDrop::BadL2),
        }
    }

    /// `out_bytes` grows by the length of each packet pushed to `out`.
    fn seal_run(&mut self, id: Option<SaId>, run: &mut [Option<Mbuf>], out: &mut Burst, out_bytes: &mut u64) {
        let n = run.iter().filter(|m| m.is_some()).count();
        let Some(id) = id else {
            self.metrics.local.drops[DpDrop::NoOutboundSa.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let Some(Some(SaCtx::Out { sa, aead, esn, tunnel_dst })) = self.sas.get(id.slot() as usize) else {
            self.metrics.local.drops[DpDrop::SaUnusable.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let outside = &self.env.sides[OUTSIDE];
        let mut hops = HopCache::new(self.env.neigh);
        // Tunnel mode: one outer destination for the whole run, so one next
        // hop and one Ethernet header, looked up and built once per run and
        // written while framing. Without a next hop the run is dropped
        // before it takes sequence numbers or AEAD time.
        let run_eth: Option<[u8; ETH_LEN]> = match *tunnel_dst {
            Some(dst) => {
                let hop = outside.gateway.unwrap_or(dst);
                match hops.lookup(hop) {
                    Some(mac) => Some(eth_header(mac, outside.mac, dst)),
                    None => {
                        self.metrics.local.drops[DpDrop::NoNeighbour.index()] += n as u64;
                        run.iter_mut().for_each(|m| *m = None);
                        self.solicit_if_missing(OUTSIDE, true, Some(hop));
                        return;
                    }
                }
            }
            None => None,
        };
        let eth = run_eth.as_ref();
        // Where the outer IP header starts in a framed packet's data.
        let ip_at = if eth.is_some() { ETH_LEN } else { 0 };
        let Some(st) = self.reader.state(id) else {
            self.metrics.local.drops[DpDrop::SaUnusable.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        // One atomic add reserves the run's sequence numbers (DESIGN §3).
        let first = match st.reserve_seq(n as u32, *esn) {
            Ok(f) => f,
            Err(_) => {
                self.metrics.local.drops[DropReason::SeqExhausted.index()] += n as u64;
                for _ in 0..n {
                    st.count_drop(DropReason::SeqExhausted.index());
                }
                run.iter_mut().for_each(|m| *m = None);
                return;
            }
        };
        // Bit k: run[k] was framed and handed to the AEAD. Only ops that
        // need work after sealing (a UDP checksum over IPv6) are kept in
        // `ops` (copying every 56-byte op out and back in cost ~1 ns per
        // packet at 64 B).
        let mut framed = 0u64;
        // Octets of the framed packets (with `eth`, when written).
        let mut framed_bytes = 0u64;
        let mut ops: [Option<OutboundOp>; MAX_BURST] = [None; MAX_BURST];
        let mut drops = [0u64; DropReason::COUNT + DpDrop::COUNT];
        // Bit k: run[k] was sealed.
        let sealed: u64 = match aead {
            // intel-ipsec-mb: each packet goes into the worker's CPU-crypto
            // vector as soon as it is framed; one call seals the run.
            Aead::Mb(mb) if mb.encrypt => {
                let mut batch = self.cpu.batch();
                let mut seq = first;
                // The IPv4-tunnel fast path (the same octets as prepare_out,
                // fewer instructions); anything it declines takes the
                // general path below.
                let fast = match eth {
                    Some(h) if sa.fast_v4() => Some(h),
                    _ => None,
                };
                for (k, slot) in run.iter_mut().enumerate() {
                    let Some(m) = slot.as_mut() else { continue };
                    seq += 1;
                    if let Some(h) = fast {
                        let f = match frame_v4_fast(sa, m, seq - 1, h) {
                            Ok(f) => f,
                            Err(r) => {
                                drops[r.index()] += 1;
                                continue;
                            }
                        };
                        if let Some(f) = f {
                            let (nonce, aad) = sa.nonce_aad(seq - 1);
                            let sealed = f.sealed();
                            let range = ETH_LEN + sealed.start..ETH_LEN + sealed.end;
                            let pushed = match m.data_mut().get_mut(range) {
                                Some(data) => batch.push(data, &nonce, &aad, k as u8),
                                None => false,
                            };
                            if pushed {
                                framed |= 1 << k;
                                framed_bytes += (ETH_LEN + f.len) as u64;
                            } else {
                                drops[DropReason::CryptoFailed.index()] += 1;
                            }
                            continue;
                        }
                    }
                    match prepare_out(sa, m, seq - 1, eth) {
                        Ok(op) => {
                            let len = m.len();
                            let range = ip_at + op.op.text_off as usize..ip_at + op.op.end();
                            let pushed = match m.data_mut().get_mut(range) {
                                Some(data) => batch.push(data, &op.op.nonce, op.op.aad_array(), k as u8),
                                None => false,
                            };
                            if pushed {
                                framed |= 1 << k;
                                framed_bytes += len as u64;
                                if op.needs_finish() {
                                    ops[k] = Some(op);
                                }
                            } else {
                                drops[DropReason::CryptoFailed.index()] += 1;
                            }
                        }
                        Err(r) => drops[r.index()] += 1,
                    }
                }
                mb.seal_batch(&mut batch)
            }
            _ => {
                let mut seq = first;
                for (k, slot) in run.iter_mut().enumerate() {
                    let Some(m) = slot.as_mut() else { continue };
                    seq += 1;
                    match prepare_out(sa, m, seq - 1, eth) {
                        Ok(op) => {
                            framed |= 1 << k;
                            framed_bytes += m.len() as u64;
                            ops[k] = Some(op);
                        }
                        Err(r) => drops[r.index()] += 1,
                    }
                }
                let crypto_ops: [Option<esp::CryptoOp>; MAX_BURST] = core::array::from_fn(|k| {
                    ops[k].map(|o| {
                        let mut c = o.op;
                        c.text_off += ip_at as u32;
                        c
                    })
                });
                let ok = run_aead(aead, run, &crypto_ops, true);
                ok.iter().enumerate().fold(0u64, |acc, (k, &o)| acc | (u64::from(o) << k))
            }
        };
        let mut missing_hop = None;
        let mut pkts_ok = 0u64;
        for (k, slot) in run.iter_mut().enumerate() {
            let Some(mut m) = slot.take() else { continue };
            // Not framed: its drop was counted above; the mbuf is freed here.
            if framed >> k & 1 == 0 {
                continue;
            }
            if sealed >> k & 1 == 0 {
                drops[DropReason::CryptoFailed.index()] += 1;
                framed_bytes -= m.len() as u64;
                continue;
            }
            if let Some(op) = ops[k].as_ref().filter(|op| op.needs_finish()) {
                let (buf, off, len) = m.buffer_mut();
                if let Some(mut pb) = PktBuf::new(buf, off + ip_at, len - ip_at) {
                    sa.finish(&mut pb, op);
                }
            }
            if eth.is_none() {
                // Transport mode: the next hop follows each packet's own
                // destination, and the Ethernet header goes on after sealing.
                let ip_len = m.len() as u64;
                framed_bytes -= ip_len;
                let (hop, h) = match ip_addrs(m.data()) {
                    Some((_, dst)) => {
                        let hop = outside.gateway.unwrap_or(dst);
                        (hop, hops.lookup(hop).map(|mac| eth_header(mac, outside.mac, dst)))
                    }
                    None => {
                        drops[DropReason::BadOuterHeader.index()] += 1;
                        continue;
                    }
                };
                let Some(h) = h else {
                    drops[DpDrop::NoNeighbour.index()] += 1;
                    missing_hop = Some(hop);
                    continue;
                };
                match m.prepend(ETH_LEN) {
                    Some(p) => p.copy_from_slice(&h),
                    None => {
                        drops[DropReason::NoHeadroom.index()] += 1;
                        continue;
                    }
                }
                framed_bytes += ip_len + ETH_LEN as u64;
            }
            match out.push(m) {
                Ok(()) => pkts_ok += 1,
                Err(m) => {
                    framed_bytes -= m.len() as u64;
                    drop(m);
                    drops[DpDrop::TxFull.index()] += 1;
                }
            }
        }
        // `framed_bytes` is now what went out, Ethernet headers included.
        *out_bytes += framed_bytes;
        st.add_traffic(pkts_ok, framed_bytes - pkts_ok * ETH_LEN as u64);
        st.touch(self.now_secs);
        self.metrics.local.encrypted += pkts_ok;
        if drops.iter().any(|&c| c != 0) {
            for (r, c) in drops.iter().enumerate() {
                self.metrics.local.drops[r] += c;
            }
        }
        if missing_hop.is_some() {
            self.solicit_if_missing(OUTSIDE, true, missing_hop);
        }
    }

    /// Sends an ARP request / neighbour solicitation for an unresolved next
    /// hop, at most every 100 ms per worker.
    fn solicit_if_missing(&mut self, side_idx: usize, missing: bool, hop: Option<IpAddr>) {
        if !missing || self.last_solicit.elapsed().as_millis() < 100 {
            return;
        }
        let side = &self.env.sides[side_idx];
        let Some(target) = hop.or(side.gateway) else { return };
        self.last_solicit = Instant::now();
        let Ok(mut m) = self.env.pool.alloc() else { return };
        let Some(buf) = m.append(l2::ND_REPLY_LEN) else { return };
        let len = match target {
            IpAddr::V4(t) => side.addrs.iter().find_map(|a| match a {
                IpAddr::V4(o) => l2::arp_request(buf, side.mac, *o, t),
                _ => None,
            }),
            IpAddr::V6(t) => side.addrs.iter().find_map(|a| match a {
                IpAddr::V6(o) => l2::nd_solicit(buf, side.mac, *o, t),
                _ => None,
            }),
        };
        let Some(len) = len else { return };
        let total = m.len();
        m.trim(total - len);
        let mut b = Burst::new();
        let _ = b.push(m);
        self.send(side_idx, &mut b);
    }

    /// Frames from the kernel (TAP): out of the outside port as they are.
    fn kernel_burst(&mut self, b: &mut Burst) {
        self.count_rx(PUNT, b);
        self.metrics.local.punted_from_kernel += b.len() as u64;
        self.send(OUTSIDE, b);
    }
}
