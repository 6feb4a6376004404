//! Outside → inside (inbound), in stages:
//!
//! 1. [`Worker::outside_burst`] — classify: ARP/ND to the link layer,
//!    outer IP / UDP 4500 / ESP found, SPI looked up in the worker's own
//!    index; ESP for an SA another worker owns is batched to its inbox
//!    (one push per owner and burst; full = counted drop); the gateway's
//!    own traffic punted; other cleartext passed to the inside only where
//!    the SPD says BYPASS (RFC 4301 §5.2), else dropped by reason.
//! 2. [`Worker::inbound_esp`] — the worker's own ESP, cut into runs of one
//!    SA by what stage 1 found (each packet is classified and looked up
//!    once; a batch handed over by another worker is looked up again).
//! 3. Per run ([`Worker::open_run`]): `prepare` (replay pre-check before
//!    the ICV, RFC 4303 §3.4.3) and `open` (one AEAD call: [`open_mb`] fills
//!    the worker's CPU-crypto vector as it prepares, for ipsec-mb's one-call
//!    GCM decryption; [`open_soft`] on the ESP engine's backends) → `deliver`
//!    (window update only for authenticated packets, trailer, inner packet
//!    against the SA's selectors, RFC 4301 §5.2, Ethernet to the inside
//!    next hop, tagged with the VLAN of the SA's label, RFC 9478) → `save`
//!    (what the run changed in the window, into the SA table: `replay.rs`)
//!    → `account` (per-SA and per-worker counters).
//! 4. One TX burst inside, after every run's window is saved.

use std::net::IpAddr;

use dpdk::{Burst, CpuVec, Mbuf, MAX_BURST};
use esp::{DropReason, EspLocation, InboundOp, InboundSa, PktBuf};
use sa_table::SaId;

use super::ctx::SaCtx;
use super::diet::Found;
use super::link::{write_eth, write_eth_vlan, HopCache};
use super::replay::TableWindow;
use super::{ip_addrs, run_aead, DpDrop, RunDrops, Side, Worker};
use crate::crypto::{Aead, MbAead};
use crate::l2::field::ETH_LEN;
use crate::l2::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::policy::{inbound_flow, inner_flow, SaSelectors, Verdict, NO_SEGMENT};
use crate::ports::{INSIDE, OUTSIDE, PUNT};

/// A placeholder for the location arrays' unused entries.
const NO_LOCATION: EspLocation = EspLocation { esp_off: 0, end: 0, ip_hdr_len: 0, nh_off: 0, udp: false, v6: false, spi: 0 };

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

/// Stage 1 for one packet: off with its Ethernet header, then the SPI,
/// length and replay pre-check (RFC 4303 §3.4.3: before the ICV, no window
/// update yet), from where classification found its ESP (`loc`, relative
/// to the IP header).
#[inline]
fn prepare_one(sa: &InboundSa, m: &mut Mbuf, loc: &EspLocation) -> Result<InboundOp, DropReason> {
    if !m.adj(ETH_LEN) {
        return Err(DropReason::Truncated);
    }
    sa.prepare(m.data(), loc)
}

/// Stages 1 and 2 on intel-ipsec-mb: each packet goes into the worker's
/// CPU-crypto vector as soon as it is prepared; one call opens the run.
/// `ops` gets the prepared packets' ops in run order, `prepared` their
/// bits; packets that fail the pre-check are counted here (and freed by
/// [`deliver`]). Returns the mask of the packets whose ICV verified.
#[allow(clippy::too_many_arguments)]
#[inline]
fn open_mb(
    sa: &InboundSa,
    mb: &MbAead,
    cpu: &mut CpuVec,
    run: &mut [Option<Mbuf>],
    locs: &[EspLocation],
    ops: &mut Vec<InboundOp>,
    prepared: &mut u64,
    drops: &mut RunDrops,
) -> u64 {
    let mut batch = cpu.batch();
    for (k, (slot, loc)) in run.iter_mut().zip(locs).enumerate() {
        let Some(m) = slot.as_mut() else { continue };
        let op = match prepare_one(sa, m, loc) {
            Ok(op) => op,
            Err(r) => {
                // Counted here, freed by `deliver` (the batch may still
                // borrow other packets of the run).
                drops[r.index()] += 1;
                continue;
            }
        };
        let pushed = match m.data_mut().get_mut(op.op.text_range().start..op.op.end()) {
            Some(data) => batch.push(data, &op.op.nonce, op.op.aad_array(), k as u8),
            None => false,
        };
        if pushed {
            ops.push(op);
            *prepared |= 1 << k;
        } else {
            drops[DropReason::CryptoFailed.index()] += 1;
        }
    }
    mb.open_batch(&mut batch)
}

/// Stages 1 and 2 on the ESP engine's backends (and DPDK's CPU-crypto
/// session): prepare every packet, then one AEAD call over the run. As
/// [`open_mb`].
#[inline]
fn open_soft(
    sa: &InboundSa,
    aead: &Aead,
    run: &mut [Option<Mbuf>],
    locs: &[EspLocation],
    ops: &mut Vec<InboundOp>,
    prepared: &mut u64,
    drops: &mut RunDrops,
) -> u64 {
    let mut crypto_ops: [Option<esp::CryptoOp>; MAX_BURST] = [None; MAX_BURST];
    for (k, (slot, loc)) in run.iter_mut().zip(locs).enumerate() {
        let Some(m) = slot.as_mut() else { continue };
        match prepare_one(sa, m, loc) {
            Ok(op) => {
                crypto_ops[k] = Some(op.op);
                ops.push(op);
                *prepared |= 1 << k;
            }
            Err(r) => drops[r.index()] += 1,
        }
    }
    let opened = run_aead(aead, run, &crypto_ops, false);
    opened.iter().enumerate().fold(0u64, |mask, (k, &ok)| mask | (u64::from(ok) << k))
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
/// next hop, into its label's segment, into `out`. `ops` are the prepared
/// packets' (bits of `prepared`), in run order; `opened` says whose ICV
/// verified.
#[allow(clippy::too_many_arguments)]
#[inline]
fn deliver(
    sa: &mut InboundSa,
    sel: &SaSelectors,
    run: &mut [Option<Mbuf>],
    ops: &[InboundOp],
    prepared: u64,
    opened: u64,
    to: &Delivery<'_>,
    hops: &mut HopCache<'_>,
    out: &mut Burst,
    t: &mut Delivered,
) {
    let mut ops = ops.iter();
    for (k, slot) in run.iter_mut().enumerate() {
        // A packet that failed the pre-check was counted then; freed here.
        let Some(mut m) = slot.take() else { continue };
        if prepared & (1 << k) == 0 {
            continue;
        }
        let Some(op) = ops.next() else { continue };
        // ICV failures still go through finish() so the window is not touched.
        let (buf, off, len) = m.buffer_mut();
        let Some(mut pb) = PktBuf::new(buf, off, len) else {
            t.drops[DropReason::Truncated.index()] += 1;
            continue;
        };
        if let Err(r) = sa.finish(&mut pb, op, opened & (1 << k) != 0) {
            t.drops[r.index()] += 1;
            continue;
        }
        let (_, start, plen) = pb.into_parts();
        if !m.set_data(start, plen) {
            t.drops[DropReason::Truncated.index()] += 1;
            continue;
        }
        // One parse of the inner header gives the selector check and the
        // next hop what they need.
        let Some(flow) = inner_flow(m.data()) else {
            t.drops[DropReason::BadInnerHeader.index()] += 1;
            continue;
        };
        let dst = flow.remote_ip();
        // RFC 4301 §5.2 step 4: the decrypted packet must match the SA's selectors.
        if !sel.contains_inbound(&flow) {
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
        // What classification found for each of them: not looked up again.
        let mut ids: [Option<SaId>; MAX_BURST] = [None; MAX_BURST];
        let mut locs: [EspLocation; MAX_BURST] = [NO_LOCATION; MAX_BURST];
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
                    ids[nmine] = Some(id);
                    locs[nmine] = loc;
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
        self.inbound_esp(&mut mine[..nmine], &ids[..nmine], &locs[..nmine]);
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

    /// ESP packets (Ethernet header still on) for SAs this worker owns,
    /// with the SA each was found for and where its ESP is (in its IP
    /// packet), cut into runs of one SA.
    pub(super) fn inbound_esp(&mut self, pkts: &mut [Option<Mbuf>], ids: &[Option<SaId>], locs: &[EspLocation]) {
        let mut out = Burst::new();
        let mut i = 0;
        while i < pkts.len() {
            let id = ids[i];
            let mut j = i + 1;
            while j < pkts.len() && ids[j] == id {
                j += 1;
            }
            self.open_run(id, &mut pkts[i..j], &locs[i..j], &mut out);
            i = j;
        }
        self.send(INSIDE, &mut out);
    }

    /// A batch another worker handed over: classified and looked up again
    /// here (the batch carries only the packets), then as [`Self::inbound_esp`].
    pub(super) fn inbound_handed(&mut self, pkts: &mut [Option<Mbuf>]) {
        let mut ids: [Option<SaId>; MAX_BURST] = [None; MAX_BURST];
        let mut locs: [EspLocation; MAX_BURST] = [NO_LOCATION; MAX_BURST];
        for (k, m) in pkts.iter().enumerate() {
            if let Some((id, loc)) = m.as_ref().and_then(|m| self.lookup_esp(m)) {
                ids[k] = id;
                locs[k] = loc;
            }
        }
        let n = pkts.len();
        self.inbound_esp(pkts, &ids[..n], &locs[..n]);
    }

    fn lookup_esp(&self, m: &Mbuf) -> Option<(Option<SaId>, EspLocation)> {
        let ip = m.data().get(ETH_LEN..)?;
        let loc = esp::classify(ip).ok()?;
        let (src, dst) = ip_addrs(ip)?;
        Some((self.lookup_in(ip, &loc, src, dst).0, loc))
    }

    /// The inbound SA of an ESP packet: by its full SPI, or, when no SA has
    /// that SPI, as a Diet-ESP packet by its SPI's low bits and its peer
    /// (`diet.rs`). The second value says how the compressed lookup went.
    /// Inlined (the compressed lookup apart): its answer returned through
    /// memory was a store-forwarding stall per packet.
    #[inline(always)]
    fn lookup_in(&self, ip: &[u8], loc: &esp::EspLocation, src: IpAddr, dst: IpAddr) -> (Option<SaId>, Found) {
        if let Some(id) = self.reader.lookup_inbound(loc.spi, dst, src) {
            return (Some(id), Found::None);
        }
        if self.diet_in.is_empty() {
            return (None, Found::None);
        }
        self.lookup_diet(ip, loc, src)
    }

    #[inline(never)]
    fn lookup_diet(&self, ip: &[u8], loc: &esp::EspLocation, src: IpAddr) -> (Option<SaId>, Found) {
        let f = self.diet_in.lookup(src, ip.get(loc.esp_off..loc.end).unwrap_or(&[]));
        match f {
            Found::One(id) | Found::Newest(id) => (Some(id), f),
            Found::None => (None, f),
        }
    }

    /// One run of packets of one inbound SA, through the stages above.
    fn open_run(&mut self, id: Option<SaId>, run: &mut [Option<Mbuf>], locs: &[EspLocation], out: &mut Burst) {
        let n = run.iter().filter(|m| m.is_some()).count();
        let Some(id) = id else {
            self.metrics.local.drops[DpDrop::NoInboundSa.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let env = self.env;
        let Some(Some(SaCtx::In { sa, aead, sel, segment, .. })) = self.sas.get_mut(id.slot() as usize) else {
            self.metrics.local.drops[DpDrop::SaUnusable.index()] += n as u64;
            run.iter_mut().for_each(|m| *m = None);
            return;
        };
        let mut t = Delivered { pkts: 0, bytes: 0, drops: [0; DropReason::COUNT + DpDrop::COUNT], missing_hop: None };
        let ops = &mut self.in_ops;
        ops.clear();
        let mut prepared = 0u64;
        let opened = match aead {
            Aead::Mb(mb) => open_mb(sa, mb, &mut self.cpu, run, locs, ops, &mut prepared, &mut t.drops),
            soft => open_soft(sa, soft, run, locs, ops, &mut prepared, &mut t.drops),
        };
        let mut hops = HopCache::new(env.neigh);
        let to = Delivery { side: &env.sides[INSIDE], segment: *segment };
        deliver(sa, sel, run, ops, prepared, opened, &to, &mut hops, out, &mut t);
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
