//! Inside → outside (outbound), in stages:
//!
//! 1. [`Worker::inside_burst`] — classify: ARP/ND to the link layer, the
//!    inner destination looked up (longest prefix) in the worker's own
//!    index, a memo serving a burst to one subnet with one lookup.
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
use super::link::{eth_header, HopCache};
use super::{ip_addrs, run_aead, DpDrop, RunDrops, Side, Worker};
use crate::crypto::{Aead, MbAead};
use crate::l2::field::ETH_LEN;
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
    match &mb.imb {
        Some(key) => batch.seal_imb(key),
        None => batch.process(&mb.session),
    }
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
    /// Frames from the inside port: protect them.
    pub(super) fn inside_burst(&mut self, b: &mut Burst) {
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
            let Some(m) = slots[k].take() else { continue };
            rx_bytes += m.pkt_len() as u64;
            if !m.is_contiguous() {
                self.drop_dp(DpDrop::Segmented);
                continue;
            }
            let Some(m) = self.inside_link(m, &mut back) else { continue };
            let side = &self.env.sides[INSIDE];
            let Some((_, dst)) = ip_addrs(&m.data()[14..]) else {
                self.drop_esp(DropReason::BadInnerHeader);
                continue;
            };
            if side.addrs.contains(&dst) {
                // To the gateway's inside address: nothing serves it there.
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
                Some(id) => {
                    ids[k] = Some(id);
                    slots[k] = Some(m);
                }
                None => self.drop_dp(DpDrop::NoOutboundSa),
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
        let Some(Some(SaCtx::Out { sa, aead, esn, tunnel_dst })) = self.sas.get(id.slot() as usize) else {
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
