//! Outside → inside (inbound), in stages:
//!
//! 1. [`Worker::outside_burst`] — classify: ARP/ND to the link layer,
//!    outer IP / UDP 4500 / ESP found, SPI looked up in the worker's own
//!    index; ESP for an SA another worker owns is batched to its inbox
//!    (one push per owner and burst; full = counted drop); the gateway's
//!    own traffic punted; other cleartext passed to the inside only where
//!    the SPD says BYPASS (RFC 4301 §5.2), else dropped by reason.
//! 2. [`Worker::inbound_esp`] — the worker's own ESP, cut into runs of one SA.
//! 3. Per run ([`Worker::open_run`]): `prepare` (replay pre-check before
//!    the ICV, RFC 4303 §3.4.3) → `open` (one AEAD call) → `deliver`
//!    (window update only for authenticated packets, trailer, inner packet
//!    against the SA's selectors, RFC 4301 §5.2, Ethernet to the inside
//!    next hop, tagged with the VLAN of the SA's label, RFC 9478) → `save`
//!    (what the run changed in the window, into the SA table: `replay.rs`)
//!    → `account` (per-SA and per-worker counters).
//! 4. One TX burst inside, after every run's window is saved.

use std::net::IpAddr;

use dpdk::{Burst, Mbuf, MAX_BURST};
use esp::{DropReason, InboundOp, InboundSa, PktBuf};
use esp_wire::{Ipv4Packet, Ipv6Packet};
use sa_table::{SaId, SaParams as SlotParams};

use super::ctx::SaCtx;
use super::diet::Found;
use super::link::{write_eth, write_eth_vlan, HopCache};
use super::replay::TableWindow;
use super::{ip_addrs, run_aead, DpDrop, RunDrops, Side, Worker};
use crate::crypto::Aead;
use crate::l2::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::policy::{inbound_flow, Verdict, NO_SEGMENT};
use crate::ports::{INSIDE, OUTSIDE, PUNT};

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

// Every ESP drop reason has its per-SA counter in the table.
const _: () = assert!(DropReason::COUNT <= sa_table::DROP_REASONS);

/// Whether an IP packet (options or extension headers aside) carries UDP.
fn is_udp(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => ip.get(9) == Some(&17),
        Some(6) => ip.get(6) == Some(&17),
        _ => false,
    }
}

/// What became of one run's packets.
struct Delivered {
    pkts: u64,
    bytes: u64,
    drops: RunDrops,
    /// A next hop that had no MAC (a request goes out after the run).
    missing_hop: Option<IpAddr>,
}

/// Stage 1: classify each packet and pre-check its sequence number against
/// the window (RFC 4303 §3.4.3: before the ICV; no window update yet).
#[inline]
fn prepare(
    sa: &InboundSa,
    run: &mut [Option<Mbuf>],
    ops: &mut [Option<InboundOp>; MAX_BURST],
    verdict: &mut [Result<(), DropReason>; MAX_BURST],
) {
    for (k, slot) in run.iter_mut().enumerate() {
        let Some(m) = slot.as_mut() else { continue };
        m.adj(14);
        let data = m.data();
        verdict[k] = esp::classify(data).and_then(|loc| sa.prepare(data, &loc)).map(|op| ops[k] = Some(op));
    }
}

/// Stage 2: one AEAD call opens the run; a failed tag is the packet's verdict.
#[inline]
fn open(
    aead: &Aead,
    run: &mut [Option<Mbuf>],
    ops: &[Option<InboundOp>; MAX_BURST],
    verdict: &mut [Result<(), DropReason>; MAX_BURST],
) {
    let crypto_ops: [Option<esp::CryptoOp>; MAX_BURST] = core::array::from_fn(|k| ops[k].map(|o| o.op));
    let opened = run_aead(aead, run, &crypto_ops, false);
    for (k, v) in verdict.iter_mut().enumerate().take(run.len()) {
        if ops[k].is_some() && !opened[k] {
            *v = Err(DropReason::IcvMismatch);
        }
    }
}

/// Where a run's decrypted packets go: the inside, in the segment of the
/// SA's label (RFC 9478: untagged for an unlabeled SA, else the label's
/// VLAN; [`NO_SEGMENT`] for a label without one, whose packets are dropped).
struct Delivery<'s> {
    side: &'s Side,
    segment: u16,
}

/// Stage 3: the window moves for authenticated packets only; each inner
/// packet is checked against the SA's selectors and framed to the inside
/// next hop, into its label's segment, into `out`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn deliver(
    sa: &mut InboundSa,
    params: &SlotParams,
    run: &mut [Option<Mbuf>],
    ops: &[Option<InboundOp>; MAX_BURST],
    verdict: &[Result<(), DropReason>; MAX_BURST],
    to: &Delivery<'_>,
    hops: &mut HopCache<'_>,
    out: &mut Burst,
    t: &mut Delivered,
) {
    for (k, slot) in run.iter_mut().enumerate() {
        let Some(mut m) = slot.take() else { continue };
        let (Some(op), Ok(())) = (ops[k], verdict[k]) else {
            // ICV failures still go through finish() so the window is not touched.
            match verdict[k] {
                Err(r) => t.drops[r.index()] += 1,
                Ok(()) => t.drops[DropReason::CryptoFailed.index()] += 1,
            }
            continue;
        };
        let (buf, off, len) = m.buffer_mut();
        let Some(mut pb) = PktBuf::new(buf, off, len) else {
            t.drops[DropReason::Truncated.index()] += 1;
            continue;
        };
        match sa.finish(&mut pb, &op, true) {
            Ok(_) => {}
            Err(r) => {
                t.drops[r.index()] += 1;
                continue;
            }
        }
        let (_, start, plen) = pb.into_parts();
        if !m.set_data(start, plen) {
            t.drops[DropReason::Truncated.index()] += 1;
            continue;
        }
        let inner = m.data();
        let Some((src, dst)) = ip_addrs(inner) else {
            t.drops[DropReason::BadInnerHeader.index()] += 1;
            continue;
        };
        // RFC 4301 §5.2 step 4: the decrypted packet must match the SA's selectors.
        let (proto, sport, dport) = l4(inner);
        if !params.selectors_match(dst, src, proto, dport, sport) {
            t.drops[DpDrop::SelectorMismatch.index()] += 1;
            continue;
        }
        if to.segment == NO_SEGMENT {
            t.drops[DpDrop::LabelUnmapped.index()] += 1;
            continue;
        }
        let hop = to.side.gateway.unwrap_or(dst);
        let Some(mac) = hops.lookup(hop) else {
            t.drops[DpDrop::NoNeighbour.index()] += 1;
            t.missing_hop = Some(hop);
            continue;
        };
        let et = if dst.is_ipv4() { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
        t.pkts += 1;
        t.bytes += plen as u64;
        let framed = if to.segment == spd::UNTAGGED {
            write_eth(&mut m, mac, to.side.mac, et)
        } else {
            write_eth_vlan(&mut m, mac, to.side.mac, to.segment, et)
        };
        if !framed {
            t.drops[DropReason::NoHeadroom.index()] += 1;
            continue;
        }
        if let Err(m) = out.push(m) {
            drop(m);
            t.drops[DpDrop::TxFull.index()] += 1;
        }
    }
}

impl Worker<'_, '_> {
    /// Frames from the outside port.
    pub(super) fn outside_burst(&mut self, b: &mut Burst) {
        self.count_rx(OUTSIDE, b);
        let mut slots: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let n = b.drain_into(&mut slots);
        let mut mine: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let mut nmine = 0;
        let mut back = Burst::new();
        let mut to_kernel = Burst::new();
        let mut clear = Burst::new();
        for slot in slots.iter_mut().take(n) {
            let Some(m) = slot.take() else { continue };
            if !m.is_contiguous() {
                self.drop_dp(DpDrop::Segmented);
                continue;
            }
            let Some(m) = self.outside_link(m, &mut back, &mut to_kernel) else { continue };
            let side = &self.env.sides[OUTSIDE];
            let ip = &m.data()[14..];
            match esp::classify(ip) {
                Ok(loc) => {
                    let Some((src, dst)) = ip_addrs(ip) else {
                        self.drop_esp(DropReason::BadOuterHeader);
                        continue;
                    };
                    let (id, found) = self.lookup_in(ip, &loc, src, dst);
                    match found {
                        Found::One(_) => self.metrics.local.diet_lookups[0] += 1,
                        Found::Newest(_) => self.metrics.local.diet_lookups[1] += 1,
                        Found::None => {}
                    }
                    let Some(id) = id else {
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
                    // Ours, or multicast UDP (RFC 9838 §2.4.1: GSA_REKEY goes to
                    // the group's address; the kernel delivers it only to a
                    // socket that joined the group on the punt TAP).
                    let for_us = ip_addrs(ip).is_some_and(|(_, d)| side.addrs.contains(&d) || (d.is_multicast() && is_udp(ip)));
                    if for_us {
                        self.punt(m, &mut to_kernel);
                    } else if !self.env.policy.configured() {
                        // No SPD configured: cleartext is never forwarded.
                        self.drop_dp(DpDrop::NotForUs);
                    } else {
                        // RFC 4301 §5.2: cleartext passes only where the SPD
                        // says BYPASS; PROTECT traffic must come as ESP.
                        match inbound_flow(ip).map(|k| self.env.policy.inbound_clear(&k)) {
                            Some(Verdict::Bypass) => {
                                let _ = clear.push(m);
                            }
                            Some(Verdict::Drop(r)) => self.drop_dp(r.into()),
                            Some(Verdict::Protect(_)) | None => self.drop_esp(DropReason::BadInnerHeader),
                        }
                    }
                }
                Err(r) => self.drop_esp(r),
            }
        }
        self.send(OUTSIDE, &mut back);
        self.send(PUNT, &mut to_kernel);
        if !clear.is_empty() {
            self.bypass(INSIDE, &mut clear);
        }
        self.hand_off();
        self.inbound_esp(&mut mine[..nmine]);
    }

    /// Pushes this burst's batch for each other owner to its inbox.
    fn hand_off(&mut self) {
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
    }

    /// ESP packets (Ethernet header still on) for SAs this worker owns.
    pub(super) fn inbound_esp(&mut self, pkts: &mut [Option<Mbuf>]) {
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
        self.lookup_in(ip, &loc, src, dst).0
    }

    /// The inbound SA of an ESP packet: by its full SPI, or, when no SA has
    /// that SPI, as a Diet-ESP packet by its SPI's low bits and its peer
    /// (`diet.rs`). The second value says how the compressed lookup went.
    fn lookup_in(&self, ip: &[u8], loc: &esp::EspLocation, src: IpAddr, dst: IpAddr) -> (Option<SaId>, Found) {
        if let Some(id) = self.reader.lookup_inbound(loc.spi, dst, src) {
            return (Some(id), Found::None);
        }
        if self.diet_in.is_empty() {
            return (None, Found::None);
        }
        let f = self.diet_in.lookup(src, ip.get(loc.esp_off..loc.end).unwrap_or(&[]));
        match f {
            Found::One(id) | Found::Newest(id) => (Some(id), f),
            Found::None => (None, f),
        }
    }

    /// One run of packets of one inbound SA, through the stages above.
    fn open_run(&mut self, id: Option<SaId>, run: &mut [Option<Mbuf>], out: &mut Burst) {
        let n = run.iter().filter(|m| m.is_some()).count();
        let Some(id) = id else {
            self.metrics.local.drops[DpDrop::NoInboundSa.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let env = self.env;
        let Some(Some(SaCtx::In { sa, aead, params, segment, .. })) = self.sas.get_mut(id.slot() as usize) else {
            self.metrics.local.drops[DpDrop::SaUnusable.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let mut ops: [Option<InboundOp>; MAX_BURST] = [None; MAX_BURST];
        let mut verdict: [Result<(), DropReason>; MAX_BURST] = [Ok(()); MAX_BURST];
        prepare(sa, run, &mut ops, &mut verdict);
        open(aead, run, &ops, &mut verdict);
        let mut hops = HopCache::new(env.neigh);
        let mut t = Delivered { pkts: 0, bytes: 0, drops: [0; DropReason::COUNT + DpDrop::COUNT], missing_hop: None };
        let to = Delivery { side: &env.sides[INSIDE], segment: *segment };
        deliver(sa, params, run, &ops, &verdict, &to, &mut hops, out, &mut t);
        // The run's packets are in `out`, not yet sent: the window is in the
        // table before any of them leaves (a SIGKILL in between must not let
        // them be replayed into a restarted dataplane).
        if let Some(st) = self.reader.state(id) {
            sa.replay_mut().save(&mut TableWindow(st));
        }
        self.account_in(id, &t);
    }

    /// Stage 4: the run's counts into the SA's state and the worker's metrics.
    fn account_in(&mut self, id: SaId, t: &Delivered) {
        if let Some(st) = self.reader.state(id) {
            st.add_traffic(t.pkts, t.bytes);
            st.touch(self.now_secs);
            for (r, c) in t.drops.iter().enumerate().take(DropReason::COUNT) {
                for _ in 0..*c {
                    st.count_drop(r);
                }
            }
        }
        self.metrics.local.decrypted += t.pkts;
        for (r, c) in t.drops.iter().enumerate() {
            self.metrics.local.drops[r] += c;
        }
        if t.missing_hop.is_some() {
            self.solicit_if_missing(INSIDE, true, t.missing_hop);
        }
    }
}
