//! Inside → outside (outbound), in stages:
//!
//! 1. [`Worker::inside_burst`] — classify: the 802.1Q tag gives the
//!    segment (RFC 9478 label), ARP/ND go to the link layer, the flow
//!    (addresses, protocol, ports, segment) is looked up in the worker's
//!    flow cache, or on a miss in the SPD (RFC 4301 §4.4.1, first match)
//!    and, for PROTECT, among the SAs whose prefixes cover the destination
//!    for one whose selectors and label contain the packet (RFC 4301
//!    §4.4.2). BYPASS goes out in clear ([`Worker::bypass`]), DISCARD and
//!    unmatched traffic are counted by reason.
//! 2. Per run of packets of one SA ([`Worker::seal_run`]): `next_hop` (tunnel
//!    mode: one outer Ethernet header per run; none known = the run is
//!    dropped before it takes sequence numbers) → `reserve` (the run's
//!    sequence numbers with one atomic add in the SA table, DESIGN §3) →
//!    `frame` and `seal` (ESP framing in head/tailroom, one AEAD call per
//!    run: [`seal_mb`] on intel-ipsec-mb's CPU crypto, [`seal_soft`] on the
//!    ESP engine's backends) → `finish` (IPv6 UDP checksums, transport
//!    mode's Ethernet header, into the TX burst) → `account`.
//! 3. One TX burst outside.

use std::net::IpAddr;

use dpdk::{Burst, CpuVec, Mbuf, MAX_BURST};
use esp::{DropReason, OutboundOp, OutboundSa, PktBuf};
use sa_table::{SaId, SaState};

use super::ctx::SaCtx;
use super::link::{eth_header, strip_vlan, HopCache};
use super::{ip_addrs, run_aead, DpDrop, RunDrops, Side, Worker};
use crate::crypto::{Aead, MbAead};
use crate::l2::field::ETH_LEN;
use crate::policy::{outbound_flow, vlan_of, Verdict};
use crate::ports::{INSIDE, OUTSIDE};

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

/// The IP packet's length in a frame from the inside, before it is
/// protected: its header's length field (a short packet's frame carries
/// Ethernet padding, which the ESP engine trims), at most the frame's.
#[inline]
fn inner_len(m: &Mbuf) -> u16 {
    let d = m.data();
    let frame = d.len().saturating_sub(ETH_LEN).min(usize::from(u16::MAX)) as u16;
    let field = |at: usize| d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ip = match d.get(ETH_LEN).map(|b| b >> 4) {
        Some(4) => field(ETH_LEN + 2),
        Some(6) => field(ETH_LEN + 4).map(|p| p.saturating_add(40)),
        _ => None,
    };
    ip.map_or(frame, |l| l.min(frame))
}

/// One run's progress through framing and sealing.
struct Sealing {
    /// Bit k: run[k] was framed and handed to the AEAD.
    framed: u64,
    /// Octets of the framed packets (with the Ethernet header, when written).
    framed_bytes: u64,
    /// Each framed packet's length before protection (its IP packet): what
    /// the SA's byte counter and lifetimes count, as they do inbound and as
    /// the peer does (RFC 4301 §4.4.2.1 counts the traffic the SA protects;
    /// strongSwan counts these octets both ways).
    inner_len: [u16; MAX_BURST],
    /// Only ops that need work after sealing (a UDP checksum over IPv6) are
    /// kept here by the ipsec-mb path (copying every 56-byte op out and back
    /// in cost ~1 ns per packet at 64 B).
    ops: [Option<OutboundOp>; MAX_BURST],
    drops: RunDrops,
}

impl Sealing {
    fn new() -> Self {
        Sealing {
            framed: 0,
            framed_bytes: 0,
            inner_len: [0; MAX_BURST],
            ops: [None; MAX_BURST],
            drops: [0; DropReason::COUNT + DpDrop::COUNT],
        }
    }
}

/// Frame and seal on intel-ipsec-mb: each packet goes into the worker's
/// CPU-crypto vector as soon as it is framed; one call seals the run.
/// Returns the mask of sealed packets.
#[inline]
fn seal_mb(
    sa: &OutboundSa,
    mb: &MbAead,
    cpu: &mut CpuVec,
    run: &mut [Option<Mbuf>],
    first: u64,
    eth: Option<&[u8; ETH_LEN]>,
    s: &mut Sealing,
) -> u64 {
    // Where the outer IP header starts in a framed packet's data.
    let ip_at = if eth.is_some() { ETH_LEN } else { 0 };
    let mut batch = cpu.batch();
    let mut seq = first;
    // The IPv4-tunnel fast path (the same octets as prepare_out, fewer
    // instructions); anything it declines takes the general path below.
    let fast = match eth {
        Some(h) if sa.fast_v4() => Some(h),
        _ => None,
    };
    for (k, slot) in run.iter_mut().enumerate() {
        let Some(m) = slot.as_mut() else { continue };
        seq += 1;
        s.inner_len[k] = inner_len(m);
        if let Some(h) = fast {
            let f = match frame_v4_fast(sa, m, seq - 1, h) {
                Ok(f) => f,
                Err(r) => {
                    s.drops[r.index()] += 1;
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
                    s.framed |= 1 << k;
                    s.framed_bytes += (ETH_LEN + f.len) as u64;
                } else {
                    s.drops[DropReason::CryptoFailed.index()] += 1;
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
                    s.framed |= 1 << k;
                    s.framed_bytes += len as u64;
                    if op.needs_finish() {
                        s.ops[k] = Some(op);
                    }
                } else {
                    s.drops[DropReason::CryptoFailed.index()] += 1;
                }
            }
            Err(r) => s.drops[r.index()] += 1,
        }
    }
    mb.seal_batch(&mut batch)
}

/// Frame every packet, then seal the run with one call of the ESP engine's
/// batch AEAD. Returns the mask of sealed packets.
#[inline]
fn seal_soft(
    sa: &OutboundSa,
    aead: &Aead,
    run: &mut [Option<Mbuf>],
    first: u64,
    eth: Option<&[u8; ETH_LEN]>,
    s: &mut Sealing,
) -> u64 {
    let ip_at = if eth.is_some() { ETH_LEN } else { 0 };
    let mut seq = first;
    for (k, slot) in run.iter_mut().enumerate() {
        let Some(m) = slot.as_mut() else { continue };
        seq += 1;
        s.inner_len[k] = inner_len(m);
        match prepare_out(sa, m, seq - 1, eth) {
            Ok(op) => {
                s.framed |= 1 << k;
                s.framed_bytes += m.len() as u64;
                s.ops[k] = Some(op);
            }
            Err(r) => s.drops[r.index()] += 1,
        }
    }
    let crypto_ops: [Option<esp::CryptoOp>; MAX_BURST] = core::array::from_fn(|k| {
        s.ops[k].map(|o| {
            let mut c = o.op;
            c.text_off += ip_at as u32;
            c
        })
    });
    let ok = run_aead(aead, run, &crypto_ops, true);
    ok.iter().enumerate().fold(0u64, |acc, (k, &o)| acc | (u64::from(o) << k))
}

/// The sealed packets into `out`: IPv6 UDP checksums finished, and in
/// transport mode the Ethernet header to each packet's own next hop.
/// Returns the packets queued, their octets before protection, and a next
/// hop that had no MAC.
#[allow(clippy::too_many_arguments)]
#[inline]
fn finish(
    sa: &OutboundSa,
    run: &mut [Option<Mbuf>],
    sealed: u64,
    eth: Option<&[u8; ETH_LEN]>,
    outside: &Side,
    hops: &mut HopCache<'_>,
    out: &mut Burst,
    s: &mut Sealing,
) -> (u64, u64, Option<IpAddr>) {
    let ip_at = if eth.is_some() { ETH_LEN } else { 0 };
    let mut missing_hop = None;
    let mut pkts_ok = 0u64;
    let mut inner_bytes = 0u64;
    for (k, slot) in run.iter_mut().enumerate() {
        let Some(mut m) = slot.take() else { continue };
        // Not framed: its drop was counted above; the mbuf is freed here.
        if s.framed >> k & 1 == 0 {
            continue;
        }
        if sealed >> k & 1 == 0 {
            s.drops[DropReason::CryptoFailed.index()] += 1;
            s.framed_bytes -= m.len() as u64;
            continue;
        }
        if let Some(op) = s.ops[k].as_ref().filter(|op| op.needs_finish()) {
            let (buf, off, len) = m.buffer_mut();
            if let Some(mut pb) = PktBuf::new(buf, off + ip_at, len - ip_at) {
                sa.finish(&mut pb, op);
            }
        }
        if eth.is_none() {
            // Transport mode: the next hop follows each packet's own
            // destination, and the Ethernet header goes on after sealing.
            let ip_len = m.len() as u64;
            s.framed_bytes -= ip_len;
            let (hop, h) = match ip_addrs(m.data()) {
                Some((_, dst)) => {
                    let hop = outside.gateway.unwrap_or(dst);
                    (hop, hops.lookup(hop).map(|mac| eth_header(mac, outside.mac, dst)))
                }
                None => {
                    s.drops[DropReason::BadOuterHeader.index()] += 1;
                    continue;
                }
            };
            let Some(h) = h else {
                s.drops[DpDrop::NoNeighbour.index()] += 1;
                missing_hop = Some(hop);
                continue;
            };
            match m.prepend(ETH_LEN) {
                Some(p) => p.copy_from_slice(&h),
                None => {
                    s.drops[DropReason::NoHeadroom.index()] += 1;
                    continue;
                }
            }
            s.framed_bytes += ip_len + ETH_LEN as u64;
        }
        match out.push(m) {
            Ok(()) => {
                pkts_ok += 1;
                inner_bytes += u64::from(s.inner_len[k]);
            }
            Err(m) => {
                s.framed_bytes -= m.len() as u64;
                drop(m);
                s.drops[DpDrop::TxFull.index()] += 1;
            }
        }
    }
    (pkts_ok, inner_bytes, missing_hop)
}

impl Worker<'_, '_> {
    /// Frames from the inside port: classify them by the SPD, then
    /// protect, bypass or drop them.
    pub(super) fn inside_burst(&mut self, b: &mut Burst) {
        // Received packets and bytes are counted in the classification loop
        // (which reads every mbuf anyway), not in a pass of their own.
        self.metrics.local.rx_pkts[INSIDE] += b.len() as u64;
        let mut rx_bytes = 0u64;
        let mut slots: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let n = b.drain_into(&mut slots);
        let mut ids: [Option<SaId>; MAX_BURST] = [None; MAX_BURST];
        let mut back = Burst::new();
        let mut clear = Burst::new();
        // Pass 1: link layer and flow of each packet, and its flow cache
        // set prefetched, so the lookups of pass 2 find their lines loaded
        // (1024 flows of 64-byte lines outgrow L1; a miss per packet
        // cost ~15 ns when each lookup waited for its own).
        // Valid where `slots[k]` is still `Some` after pass 1.
        let mut keys = [spd::FlowKey::v4(0, 0, 0, 0, 0, 0); MAX_BURST];
        let mut sets = [spd::SetIndex::default(); MAX_BURST];
        for k in 0..n {
            let Some(mut m) = slots[k].take() else { continue };
            rx_bytes += m.pkt_len() as u64;
            if !m.is_contiguous() {
                self.drop_dp(DpDrop::Segmented);
                continue;
            }
            // The segment (RFC 9478 label) the frame comes from; its tag
            // goes, so the rest of the pipeline sees plain Ethernet.
            let segment = match vlan_of(m.data()) {
                None => spd::UNTAGGED,
                Some(vid) if vid == 0 || self.env.policy.knows_vlan(vid) => {
                    if !strip_vlan(&mut m) {
                        self.drop_esp(DropReason::Truncated);
                        continue;
                    }
                    vid
                }
                Some(_) => {
                    self.drop_dp(DpDrop::UnknownVlan);
                    continue;
                }
            };
            let link = if segment == spd::UNTAGGED {
                self.inside_link(m, &mut back)
            } else {
                self.inside_link_tagged(m, segment, &mut back)
            };
            let Some(m) = link else { continue };
            let Some((key, dst)) = outbound_flow(&m.data()[14..], segment) else {
                self.drop_esp(DropReason::BadInnerHeader);
                continue;
            };
            if self.env.sides[INSIDE].addrs.contains(&dst) {
                // To the gateway's inside address: nothing serves it there.
                self.drop_dp(DpDrop::NotForUs);
                continue;
            }
            sets[k] = self.flows.locate(&key);
            dpdk::prefetch0(self.flows.line(sets[k]));
            keys[k] = key;
            slots[k] = Some(m);
        }
        // Pass 2: the flow cache answers for established flows; the SPD and
        // the SA search run once per flow and SA table change.
        for k in 0..n {
            if slots[k].is_none() {
                continue;
            }
            let key = &keys[k];
            let verdict = match self.flows.get_at(sets[k], key) {
                Some(v) => v,
                None => {
                    let v = self.decide(key, key.remote_ip());
                    self.flows.insert_at(sets[k], *key, v);
                    v
                }
            };
            match verdict {
                Verdict::Protect(id) => ids[k] = Some(id),
                Verdict::Bypass => {
                    // At most one per received frame: `clear` has room.
                    if let Some(m) = slots[k].take() {
                        let _ = clear.push(m);
                    }
                }
                Verdict::Drop(r) => {
                    slots[k] = None;
                    self.drop_dp(r.into());
                }
            }
        }
        self.metrics.local.rx_bytes[INSIDE] += rx_bytes;
        self.send(INSIDE, &mut back);
        if !clear.is_empty() {
            self.bypass(OUTSIDE, &mut clear);
        }
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

    /// The SPD's verdict for a flow the cache did not know.
    fn decide(&self, key: &spd::FlowKey, dst: IpAddr) -> Verdict {
        let sas = &self.sas;
        let sel = |id: SaId| match sas.get(id.slot() as usize) {
            Some(Some(SaCtx::Out { sel, .. })) => Some(&**sel),
            _ => None,
        };
        let named = |spi: u32| self.named_out.iter().find(|(s, _)| *s == spi).map(|&(_, id)| id);
        self.env.policy.decide(key, dst, &self.reader, sel, named)
    }

    /// BYPASS (RFC 4301 §4.4.1): IP packets (plain Ethernet) out of port
    /// `to` in clear, to that side's next hop, untagged. Counted per
    /// direction; a next hop without a MAC drops the packet and asks for it.
    pub(super) fn bypass(&mut self, to: usize, b: &mut Burst) {
        let side = &self.env.sides[to];
        let mut hops = HopCache::new(self.env.neigh);
        let mut missing = None;
        let mut out = Burst::new();
        let mut slots: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let n = b.drain_into(&mut slots);
        for mut m in slots.into_iter().take(n).flatten() {
            let Some((_, dst)) = m.data().get(14..).and_then(ip_addrs) else {
                self.drop_esp(DropReason::BadInnerHeader);
                continue;
            };
            let hop = side.gateway.unwrap_or(dst);
            let Some(mac) = hops.lookup(hop) else {
                missing = Some(hop);
                self.drop_dp(DpDrop::NoNeighbour);
                continue;
            };
            m.data_mut()[..ETH_LEN].copy_from_slice(&eth_header(mac, side.mac, dst));
            let _ = out.push(m);
        }
        let sent = out.len() as u64;
        if to == OUTSIDE {
            self.metrics.local.bypassed_out += sent;
        } else {
            self.metrics.local.bypassed_in += sent;
        }
        self.send(to, &mut out);
        if missing.is_some() {
            self.solicit_if_missing(to, true, missing);
        }
    }

    /// Drops the whole run (`n` packets) under `reason`.
    fn drop_run(&mut self, run: &mut [Option<Mbuf>], n: usize, reason: usize) {
        self.metrics.local.drops[reason] += n as u64;
        run.iter_mut().for_each(|m| *m = None);
    }

    /// One run of packets to one outbound SA, through the stages above.
    /// `out_bytes` grows by the length of each packet pushed to `out`.
    fn seal_run(&mut self, id: Option<SaId>, run: &mut [Option<Mbuf>], out: &mut Burst, out_bytes: &mut u64) {
        let n = run.iter().filter(|m| m.is_some()).count();
        let Some(id) = id else {
            return self.drop_run(run, n, DpDrop::NoOutboundSa.index());
        };
        let env = self.env;
        let Some(Some(SaCtx::Out { sa, aead, esn, tunnel_dst, .. })) = self.sas.get(id.slot() as usize) else {
            return self.drop_run(run, n, DpDrop::SaUnusable.index());
        };
        let outside = &env.sides[OUTSIDE];
        let mut hops = HopCache::new(env.neigh);
        let run_eth = match next_hop(*tunnel_dst, outside, &mut hops) {
            Ok(e) => e,
            Err(hop) => {
                self.drop_run(run, n, DpDrop::NoNeighbour.index());
                self.solicit_if_missing(OUTSIDE, true, Some(hop));
                return;
            }
        };
        let eth = run_eth.as_ref();
        let Some(st) = self.reader.state(id) else {
            return self.drop_run(run, n, DpDrop::SaUnusable.index());
        };
        let Some(first) = reserve(st, n, *esn) else {
            return self.drop_run(run, n, DropReason::SeqExhausted.index());
        };
        let mut s = Sealing::new();
        let sealed = match aead {
            Aead::Mb(mb) if mb.encrypt => seal_mb(sa, mb, &mut self.cpu, run, first, eth, &mut s),
            _ => seal_soft(sa, aead, run, first, eth, &mut s),
        };
        let (pkts_ok, inner_bytes, missing_hop) = finish(sa, run, sealed, eth, outside, &mut hops, out, &mut s);
        // `framed_bytes` is now what went out, Ethernet headers included
        // (the port's counters); the SA counts what it protected.
        *out_bytes += s.framed_bytes;
        st.add_traffic(pkts_ok, inner_bytes);
        st.touch(self.now_secs);
        self.metrics.local.encrypted += pkts_ok;
        if s.drops.iter().any(|&c| c != 0) {
            for (r, c) in s.drops.iter().enumerate() {
                self.metrics.local.drops[r] += c;
            }
        }
        if missing_hop.is_some() {
            self.solicit_if_missing(OUTSIDE, true, missing_hop);
        }
    }
}

/// Tunnel mode: one outer destination for the whole run, so one next hop
/// and one Ethernet header, looked up and built once per run and written
/// while framing (`Ok(None)` in transport mode: per packet, after sealing).
/// `Err(hop)` when the next hop has no MAC yet.
#[inline]
fn next_hop(tunnel_dst: Option<IpAddr>, outside: &Side, hops: &mut HopCache<'_>) -> Result<Option<[u8; ETH_LEN]>, IpAddr> {
    match tunnel_dst {
        Some(dst) => {
            let hop = outside.gateway.unwrap_or(dst);
            match hops.lookup(hop) {
                Some(mac) => Ok(Some(eth_header(mac, outside.mac, dst))),
                None => Err(hop),
            }
        }
        None => Ok(None),
    }
}

/// One atomic add reserves the run's `n` sequence numbers (DESIGN §3);
/// `None`, counted in the SA's state, when the SA has no more to give.
#[inline]
fn reserve(st: &SaState, n: usize, esn: bool) -> Option<u64> {
    match st.reserve_seq(n as u32, esn) {
        Ok(f) => Some(f),
        Err(_) => {
            for _ in 0..n {
                st.count_drop(DropReason::SeqExhausted.index());
            }
            None
        }
    }
}
