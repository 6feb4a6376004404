//! The link layer on both ports: ARP (RFC 826) and neighbour discovery
//! (RFC 4861) frames answered, learnt or punted before any IP processing;
//! next hops resolved (once per run of packets) and Ethernet headers
//! written; requests for unresolved next hops sent, rate-limited.
//!
//! The protocol work is [`crate::l2`]'s; this file only decides what the
//! pipeline does with each frame.

use std::net::IpAddr;
use std::time::Instant;

use dpdk::{Burst, Mbuf};

use super::{DpDrop, Worker};
use crate::l2::field::ETH_LEN;
use crate::l2::{self, L2Action, Mac, NeighbourTable, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::ports::{INSIDE, OUTSIDE};

/// Next-hop MAC lookups within one run of packets: consecutive packets
/// almost always share their next hop (always, in tunnel mode behind a
/// gateway), so one table lookup serves the run.
pub(super) struct HopCache<'t> {
    table: &'t NeighbourTable,
    last: Option<(IpAddr, Option<Mac>)>,
}

impl<'t> HopCache<'t> {
    pub(super) fn new(table: &'t NeighbourTable) -> Self {
        HopCache { table, last: None }
    }

    pub(super) fn lookup(&mut self, hop: IpAddr) -> Option<Mac> {
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

/// The Ethernet header to `dst_mac` for an IP packet to `ip_dst`.
#[inline]
pub(super) fn eth_header(dst_mac: Mac, src_mac: Mac, ip_dst: IpAddr) -> [u8; ETH_LEN] {
    let et = if ip_dst.is_ipv4() { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
    let mut h = [0u8; ETH_LEN];
    h[0..6].copy_from_slice(&dst_mac);
    h[6..12].copy_from_slice(&src_mac);
    h[12..14].copy_from_slice(&et.to_be_bytes());
    h
}

pub(super) fn write_eth(m: &mut Mbuf, dst: Mac, src: Mac, ethertype: u16) -> bool {
    let Some(h) = m.prepend(14) else { return false };
    h[0..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..14].copy_from_slice(&ethertype.to_be_bytes());
    true
}

/// The 802.1Q tag ethertype (TPID).
pub(super) const ETHERTYPE_VLAN: u16 = 0x8100;

/// Removes a frame's 802.1Q tag: the MAC addresses move up over it.
#[inline]
pub(super) fn strip_vlan(m: &mut Mbuf) -> bool {
    match m.data_mut().get_mut(..16) {
        Some(h) => h.copy_within(0..12, 4),
        None => return false,
    }
    m.adj(4)
}

/// Prepends an Ethernet header tagged with VLAN `vid` (priority 0).
pub(super) fn write_eth_vlan(m: &mut Mbuf, dst: Mac, src: Mac, vid: u16, ethertype: u16) -> bool {
    let Some(h) = m.prepend(18) else { return false };
    h[0..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    h[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    h[16..18].copy_from_slice(&ethertype.to_be_bytes());
    true
}

/// Puts an 802.1Q tag for `vid` back into an untagged frame.
fn retag(m: &mut Mbuf, vid: u16) -> bool {
    if m.prepend(4).is_none() {
        return false;
    }
    let Some(h) = m.data_mut().get_mut(..16) else { return false };
    h.copy_within(4..16, 0);
    h[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    h[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    true
}

impl Worker<'_, '_> {
    /// [`Self::inside_link`] for a frame that arrived (and whose tag was
    /// stripped) on VLAN `vid`: its ARP/ND replies go back on that VLAN.
    pub(super) fn inside_link_tagged(&mut self, m: Mbuf, vid: u16, back: &mut Burst) -> Option<Mbuf> {
        let mut replies = Burst::new();
        let r = self.inside_link(m, &mut replies);
        let mut slots: [Option<Mbuf>; dpdk::MAX_BURST] = [const { None }; dpdk::MAX_BURST];
        let n = replies.drain_into(&mut slots);
        for mut m in slots.into_iter().take(n).flatten() {
            if !retag(&mut m, vid) {
                self.drop_esp(esp::DropReason::NoHeadroom);
                continue;
            }
            // `back` holds at most one reply per received frame.
            let _ = back.push(m);
        }
        r
    }

    /// ARP and ND on the outside port: replies go to `back`, what the
    /// kernel should also see to `to_kernel`. `Some(m)` for an IP packet
    /// the pipeline goes on with.
    pub(super) fn outside_link(&mut self, mut m: Mbuf, back: &mut Burst, to_kernel: &mut Burst) -> Option<Mbuf> {
        match l2::ethertype(m.data()) {
            Some(ETHERTYPE_ARP) => {
                let side = &self.env.sides[OUTSIDE];
                match l2::handle_arp(m.data_mut(), side.mac, &side.addrs, self.env.neigh) {
                    L2Action::Reply => {
                        let _ = back.push(m);
                    }
                    L2Action::Consumed => self.punt(m, to_kernel),
                    _ => self.drop_dp(DpDrop::BadL2),
                }
                return None;
            }
            Some(ETHERTYPE_IPV4) | Some(ETHERTYPE_IPV6) => {}
            _ => {
                self.drop_dp(DpDrop::NotIp);
                return None;
            }
        }
        let side = &self.env.sides[OUTSIDE];
        match l2::handle_nd(m.data_mut(), side.mac, &side.addrs, self.env.neigh) {
            L2Action::NotL2 => Some(m),
            L2Action::Reply => {
                let len = m.len();
                m.trim(len.saturating_sub(l2::ND_REPLY_LEN));
                let _ = back.push(m);
                None
            }
            L2Action::Consumed => {
                self.punt(m, to_kernel);
                None
            }
            L2Action::Malformed => {
                self.drop_dp(DpDrop::BadL2);
                None
            }
        }
    }

    /// ARP and ND on the inside port (replies to `back`). `Some(m)` for an
    /// IP packet to protect.
    #[inline]
    pub(super) fn inside_link(&mut self, mut m: Mbuf, back: &mut Burst) -> Option<Mbuf> {
        let env = self.env;
        let side = &env.sides[INSIDE];
        match l2::ethertype(m.data()) {
            Some(ETHERTYPE_ARP) => {
                let action = l2::handle_arp(m.data_mut(), side.mac, &side.addrs, env.neigh);
                self.inside_l2(m, action, false, back);
                None
            }
            Some(ETHERTYPE_IPV4) => Some(m),
            Some(ETHERTYPE_IPV6) => {
                // Neighbour discovery first: solicitations go to multicast.
                let action = l2::handle_nd(m.data_mut(), side.mac, &side.addrs, env.neigh);
                if action != L2Action::NotL2 {
                    self.inside_l2(m, action, true, back);
                    return None;
                }
                Some(m)
            }
            _ => {
                self.drop_dp(DpDrop::NotIp);
                None
            }
        }
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

    /// Sends an ARP request / neighbour solicitation for an unresolved next
    /// hop, at most every 100 ms per worker.
    pub(super) fn solicit_if_missing(&mut self, side_idx: usize, missing: bool, hop: Option<IpAddr>) {
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
}
