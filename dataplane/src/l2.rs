//! Layer 2 for the gateway's own addresses: ARP (RFC 826) and IPv6 neighbour
//! discovery (RFC 4861 §4.3-4.4, §7.2), and the neighbour table that
//! resolves next hops.
//!
//! Guarantees: no function here panics on any input; a request for one of
//! our addresses is answered in place (the request buffer becomes the reply,
//! no allocation); the neighbour table is written by one worker (the one that
//! owns L2, worker 0) and read by all without locks (a seqlock per entry,
//! built on atomics, so a reader never uses a torn MAC).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

pub type Mac = [u8; 6];

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const BROADCAST: Mac = [0xff; 6];

pub(crate) mod field {
    use std::ops::Range;
    pub const ETH_DST: Range<usize> = 0..6;
    pub const ETH_SRC: Range<usize> = 6..12;
    pub const ETH_TYPE: Range<usize> = 12..14;
    pub const ETH_LEN: usize = 14;

    // ARP for Ethernet/IPv4 (RFC 826), after the Ethernet header.
    //  0      2      4    5    6      8          14        18         24        28
    //  | htype| ptype|hlen|plen| oper | sha(6)   | spa(4) | tha(6)   | tpa(4) |
    pub const ARP_HTYPE: Range<usize> = 0..2;
    pub const ARP_PTYPE: Range<usize> = 2..4;
    pub const ARP_HLEN: usize = 4;
    pub const ARP_PLEN: usize = 5;
    pub const ARP_OPER: Range<usize> = 6..8;
    pub const ARP_SHA: Range<usize> = 8..14;
    pub const ARP_SPA: Range<usize> = 14..18;
    pub const ARP_THA: Range<usize> = 18..24;
    pub const ARP_TPA: Range<usize> = 24..28;
    pub const ARP_LEN: usize = 28;
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// What the L2 stage decided about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Action {
    /// The frame was rewritten in place into a reply: send it back out of
    /// the port it came in on.
    Reply,
    /// Learnt from (or not for us); pass a copy to the kernel and drop here.
    Consumed,
    /// Not ARP/ND: the caller goes on with the frame.
    NotL2,
    /// ARP or ND that is malformed: count and drop.
    Malformed,
}

/// The EtherType of a frame, or `None` if shorter than an Ethernet header.
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    frame.get(field::ETH_TYPE).map(be16)
}

/// Handles an ARP frame: learns the sender, answers requests for `ours`
/// (rewriting the frame in place into the reply from `our_mac`).
pub fn handle_arp(frame: &mut [u8], our_mac: Mac, ours: &[IpAddr], table: &NeighbourTable) -> L2Action {
    if ethertype(frame) != Some(ETHERTYPE_ARP) {
        return L2Action::NotL2;
    }
    let Some(arp) = frame.get(field::ETH_LEN..field::ETH_LEN + field::ARP_LEN) else {
        return L2Action::Malformed;
    };
    if be16(&arp[field::ARP_HTYPE]) != 1
        || be16(&arp[field::ARP_PTYPE]) != ETHERTYPE_IPV4
        || arp[field::ARP_HLEN] != 6
        || arp[field::ARP_PLEN] != 4
    {
        return L2Action::Malformed;
    }
    let oper = be16(&arp[field::ARP_OPER]);
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&arp[field::ARP_SHA]);
    let spa = Ipv4Addr::from(<[u8; 4]>::try_from(&arp[field::ARP_SPA]).unwrap_or_default());
    let tpa = Ipv4Addr::from(<[u8; 4]>::try_from(&arp[field::ARP_TPA]).unwrap_or_default());
    if sha[0] & 1 == 1 || !(oper == 1 || oper == 2) {
        return L2Action::Malformed;
    }
    // RFC 826: merge the sender into the table (0.0.0.0 is a probe, RFC 5227).
    if !spa.is_unspecified() {
        table.learn(IpAddr::V4(spa), sha);
    }
    if oper == 1 && ours.contains(&IpAddr::V4(tpa)) {
        let arp = &mut frame[field::ETH_LEN..field::ETH_LEN + field::ARP_LEN];
        arp[field::ARP_OPER].copy_from_slice(&2u16.to_be_bytes());
        arp[field::ARP_THA].copy_from_slice(&sha);
        arp[field::ARP_TPA].copy_from_slice(&spa.octets());
        arp[field::ARP_SHA].copy_from_slice(&our_mac);
        arp[field::ARP_SPA].copy_from_slice(&tpa.octets());
        frame[field::ETH_DST].copy_from_slice(&sha);
        frame[field::ETH_SRC].copy_from_slice(&our_mac);
        return L2Action::Reply;
    }
    L2Action::Consumed
}

/// Writes an ARP request for `target` into `out` (42 bytes); returns its length.
pub fn arp_request(out: &mut [u8], our_mac: Mac, our_ip: Ipv4Addr, target: Ipv4Addr) -> Option<usize> {
    let f = out.get_mut(..field::ETH_LEN + field::ARP_LEN)?;
    f[field::ETH_DST].copy_from_slice(&BROADCAST);
    f[field::ETH_SRC].copy_from_slice(&our_mac);
    f[field::ETH_TYPE].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut f[field::ETH_LEN..];
    a[field::ARP_HTYPE].copy_from_slice(&1u16.to_be_bytes());
    a[field::ARP_PTYPE].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    a[field::ARP_HLEN] = 6;
    a[field::ARP_PLEN] = 4;
    a[field::ARP_OPER].copy_from_slice(&1u16.to_be_bytes());
    a[field::ARP_SHA].copy_from_slice(&our_mac);
    a[field::ARP_SPA].copy_from_slice(&our_ip.octets());
    a[field::ARP_THA].copy_from_slice(&[0; 6]);
    a[field::ARP_TPA].copy_from_slice(&target.octets());
    Some(field::ETH_LEN + field::ARP_LEN)
}

// ---- IPv6 neighbour discovery -------------------------------------------

const IPV6_HDR: usize = 40;
const ICMPV6: u8 = 58;
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
const OPT_SLLA: u8 = 1;
const OPT_TLLA: u8 = 2;

/// ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1) and `msg`.
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        let mut it = b.chunks_exact(2);
        for c in &mut it {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        if let [last] = it.remainder() {
            sum += (*last as u32) << 8;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Handles ICMPv6 neighbour solicitations and advertisements (RFC 4861):
/// learns the link-layer addresses they carry and answers a solicitation for
/// one of `ours` in place with a solicited advertisement.
pub fn handle_nd(frame: &mut [u8], our_mac: Mac, ours: &[IpAddr], table: &NeighbourTable) -> L2Action {
    if ethertype(frame) != Some(ETHERTYPE_IPV6) {
        return L2Action::NotL2;
    }
    let Some(ip) = frame.get(field::ETH_LEN..field::ETH_LEN + IPV6_HDR) else {
        return L2Action::NotL2;
    };
    if ip[0] >> 4 != 6 || ip[6] != ICMPV6 {
        return L2Action::NotL2;
    }
    let plen = be16(&ip[4..6]) as usize;
    let hop_limit = ip[7];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap_or_default());
    let start = field::ETH_LEN + IPV6_HDR;
    let Some(msg) = frame.get(start..start + plen) else {
        return L2Action::Malformed;
    };
    let Some(&ty) = msg.first() else { return L2Action::Malformed };
    if ty != ND_NS && ty != ND_NA {
        return L2Action::NotL2;
    }
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[field::ETH_LEN + 24..field::ETH_LEN + 40]).unwrap_or_default());
    // RFC 4861 §7.1.1/§7.1.2: hop limit 255, code 0, length >= 24, valid checksum.
    if hop_limit != 255 || msg.len() < 24 || msg[1] != 0 || icmpv6_checksum(&src, &dst, msg) != 0 {
        return L2Action::Malformed;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&msg[8..24]).unwrap_or_default());
    // Options: (type, len in units of 8 bytes, data); a zero length is invalid.
    let mut lla = None;
    let mut opts = &msg[24..];
    while !opts.is_empty() {
        if opts.len() < 2 || opts[1] == 0 || opts.len() < opts[1] as usize * 8 {
            return L2Action::Malformed;
        }
        let olen = opts[1] as usize * 8;
        if (opts[0] == OPT_SLLA && ty == ND_NS) || (opts[0] == OPT_TLLA && ty == ND_NA) {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            lla = Some(m);
        }
        opts = &opts[olen..];
    }
    if ty == ND_NA {
        if let Some(m) = lla {
            table.learn(IpAddr::V6(target), m);
        }
        return L2Action::Consumed;
    }
    if !src.is_unspecified() {
        if let Some(m) = lla {
            table.learn(IpAddr::V6(src), m);
        }
    }
    if !ours.contains(&IpAddr::V6(target)) {
        return L2Action::Consumed;
    }
    // A solicited NA: to the solicitor (or all-nodes for DAD), flags S|O
    // (R is not set: the gateway's own addresses are not a router's here).
    let (reply_dst, solicited) = if src.is_unspecified() { (Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), false) } else { (src, true) };
    let na_len = 24 + 8;
    if frame.len() < start + na_len {
        return L2Action::Malformed;
    }
    let req_src_mac: Mac = frame[field::ETH_SRC].try_into().unwrap_or(BROADCAST);
    let dst_mac = if solicited { req_src_mac } else { [0x33, 0x33, 0, 0, 0, 1] };
    frame[field::ETH_DST].copy_from_slice(&dst_mac);
    frame[field::ETH_SRC].copy_from_slice(&our_mac);
    {
        let ip = &mut frame[field::ETH_LEN..field::ETH_LEN + IPV6_HDR];
        ip[4..6].copy_from_slice(&(na_len as u16).to_be_bytes());
        ip[7] = 255;
        ip[8..24].copy_from_slice(&target.octets());
        ip[24..40].copy_from_slice(&reply_dst.octets());
    }
    let msg = &mut frame[start..start + na_len];
    msg[0] = ND_NA;
    msg[1] = 0;
    msg[2..4].copy_from_slice(&[0, 0]);
    msg[4] = if solicited { 0x60 } else { 0x20 };
    msg[5..8].copy_from_slice(&[0, 0, 0]);
    msg[8..24].copy_from_slice(&target.octets());
    msg[24] = OPT_TLLA;
    msg[25] = 1;
    msg[26..32].copy_from_slice(&our_mac);
    let ck = icmpv6_checksum(&target, &reply_dst, msg);
    msg[2..4].copy_from_slice(&ck.to_be_bytes());
    // The frame may have been longer (options, padding): the caller trims to this.
    L2Action::Reply
}

/// Length of an NA written by [`handle_nd`] (Ethernet + IPv6 + NA + TLLA).
pub const ND_REPLY_LEN: usize = field::ETH_LEN + IPV6_HDR + 32;

/// Writes a neighbour solicitation for `target` from `our_ip` into `out`.
pub fn nd_solicit(out: &mut [u8], our_mac: Mac, our_ip: Ipv6Addr, target: Ipv6Addr) -> Option<usize> {
    let f = out.get_mut(..ND_REPLY_LEN)?;
    let t = target.octets();
    // Solicited-node multicast ff02::1:ffXX:XXXX (RFC 4291 §2.7.1) and its MAC.
    let snm = Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]]);
    f[field::ETH_DST].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f[field::ETH_SRC].copy_from_slice(&our_mac);
    f[field::ETH_TYPE].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut f[field::ETH_LEN..field::ETH_LEN + IPV6_HDR];
    ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&our_ip.octets());
    ip[24..40].copy_from_slice(&snm.octets());
    let msg = &mut f[field::ETH_LEN + IPV6_HDR..];
    msg.fill(0);
    msg[0] = ND_NS;
    msg[8..24].copy_from_slice(&t);
    msg[24] = OPT_SLLA;
    msg[25] = 1;
    msg[26..32].copy_from_slice(&our_mac);
    let ck = icmpv6_checksum(&our_ip, &snm, msg);
    msg[2..4].copy_from_slice(&ck.to_be_bytes());
    Some(ND_REPLY_LEN)
}

// ---- neighbour table -----------------------------------------------------

/// One entry: a seqlock (even = stable) around the address and MAC.
struct Entry {
    seq: AtomicU32,
    addr: [AtomicU32; 4],
    /// MAC in the low 48 bits; bit 63 = valid.
    mac: AtomicU64,
    learned_at: AtomicU64,
}

const VALID: u64 = 1 << 63;

/// A fixed-size, open-addressed neighbour table. One writer (the L2 worker)
/// calls [`NeighbourTable::learn`]; any thread may call
/// [`NeighbourTable::lookup`]. When full, the oldest entry in the probe
/// window is replaced.
pub struct NeighbourTable {
    entries: Box<[Entry]>,
    mask: usize,
    clock: AtomicU64,
}

const PROBE: usize = 8;

fn key(addr: IpAddr) -> [u32; 4] {
    match addr {
        // IPv4 as the IPv4-mapped IPv6 address, so one key type serves both.
        IpAddr::V4(a) => key(IpAddr::V6(a.to_ipv6_mapped())),
        IpAddr::V6(a) => {
            let o = a.octets();
            [0, 4, 8, 12].map(|i| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
        }
    }
}

fn hash(k: &[u32; 4]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in k {
        h = (h ^ *w as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 29)) as usize
}

impl NeighbourTable {
    /// A table of `capacity` entries (rounded up to a power of two).
    pub fn new(capacity: usize) -> NeighbourTable {
        let n = capacity.max(PROBE).next_power_of_two();
        let entries = (0..n)
            .map(|_| Entry {
                seq: AtomicU32::new(0),
                addr: Default::default(),
                mac: AtomicU64::new(0),
                learned_at: AtomicU64::new(0),
            })
            .collect();
        NeighbourTable { entries, mask: n - 1, clock: AtomicU64::new(1) }
    }

    fn read(&self, e: &Entry) -> Option<([u32; 4], u64, u64)> {
        for _ in 0..64 {
            let s1 = e.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let a = [0, 1, 2, 3].map(|i| e.addr[i].load(Ordering::Relaxed));
            let m = e.mac.load(Ordering::Relaxed);
            let t = e.learned_at.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if e.seq.load(Ordering::Relaxed) == s1 {
                return Some((a, m, t));
            }
        }
        None
    }

    /// The MAC of `addr`, if known.
    pub fn lookup(&self, addr: IpAddr) -> Option<Mac> {
        let k = key(addr);
        let h = hash(&k);
        for i in 0..PROBE {
            let e = &self.entries[(h + i) & self.mask];
            if let Some((a, m, _)) = self.read(e) {
                if m & VALID != 0 && a == k {
                    let b = m.to_be_bytes();
                    return Some([b[2], b[3], b[4], b[5], b[6], b[7]]);
                }
            }
        }
        None
    }

    /// Records (or refreshes) `addr` at `mac`. Single writer.
    pub fn learn(&self, addr: IpAddr, mac: Mac) {
        let k = key(addr);
        let h = hash(&k);
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut victim = h & self.mask;
        let mut oldest = u64::MAX;
        for i in 0..PROBE {
            let idx = (h + i) & self.mask;
            let Some((a, m, t)) = self.read(&self.entries[idx]) else { continue };
            if m & VALID != 0 && a == k {
                victim = idx;
                break;
            }
            let age = if m & VALID == 0 { 0 } else { t };
            if age < oldest {
                oldest = age;
                victim = idx;
            }
        }
        let e = &self.entries[victim];
        let s = e.seq.load(Ordering::Relaxed);
        e.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, w) in k.iter().enumerate() {
            e.addr[i].store(*w, Ordering::Relaxed);
        }
        let mut m = [0u8; 8];
        m[2..].copy_from_slice(&mac);
        e.mac.store(u64::from_be_bytes(m) | VALID, Ordering::Relaxed);
        e.learned_at.store(now, Ordering::Relaxed);
        e.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
    const PEER_MAC: Mac = [0x02, 0, 0, 0, 0, 0x99];

    fn arp_req(target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        arp_request(&mut f, PEER_MAC, Ipv4Addr::new(172, 16, 1, 9), target).unwrap();
        f
    }

    #[test]
    fn answers_arp_for_our_address_in_place() {
        let t = NeighbourTable::new(64);
        let ours = [IpAddr::V4(Ipv4Addr::new(172, 16, 1, 5))];
        let mut f = arp_req(Ipv4Addr::new(172, 16, 1, 5));
        assert_eq!(handle_arp(&mut f, OUR_MAC, &ours, &t), L2Action::Reply);
        assert_eq!(&f[0..6], &PEER_MAC);
        assert_eq!(&f[6..12], &OUR_MAC);
        assert_eq!(be16(&f[20..22]), 2);
        assert_eq!(&f[22..28], &OUR_MAC);
        assert_eq!(&f[28..32], &[172, 16, 1, 5]);
        assert_eq!(&f[32..38], &PEER_MAC);
        assert_eq!(&f[38..42], &[172, 16, 1, 9]);
        assert_eq!(t.lookup(IpAddr::V4(Ipv4Addr::new(172, 16, 1, 9))), Some(PEER_MAC), "learnt the requester");
    }

    #[test]
    fn arp_for_someone_else_is_learnt_not_answered() {
        let t = NeighbourTable::new(64);
        let ours = [IpAddr::V4(Ipv4Addr::new(172, 16, 1, 5))];
        let mut f = arp_req(Ipv4Addr::new(172, 16, 1, 6));
        let before = f.clone();
        assert_eq!(handle_arp(&mut f, OUR_MAC, &ours, &t), L2Action::Consumed);
        assert_eq!(f, before);
    }

    #[test]
    fn truncated_or_odd_arp_is_malformed_never_a_panic() {
        let t = NeighbourTable::new(64);
        let ours = [IpAddr::V4(Ipv4Addr::new(172, 16, 1, 5))];
        let good = arp_req(Ipv4Addr::new(172, 16, 1, 5));
        for n in 0..42 {
            let mut f = good[..n].to_vec();
            let a = handle_arp(&mut f, OUR_MAC, &ours, &t);
            assert!(matches!(a, L2Action::Malformed | L2Action::NotL2), "prefix {n}: {a:?}");
        }
        let mut f = good.clone();
        f[19] = 8; // hlen
        assert_eq!(handle_arp(&mut f, OUR_MAC, &ours, &t), L2Action::Malformed);
    }

    #[test]
    fn answers_neighbour_solicitation_with_valid_checksum() {
        let t = NeighbourTable::new(64);
        let our_ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let peer_ip: Ipv6Addr = "2001:db8::99".parse().unwrap();
        let mut f = vec![0u8; ND_REPLY_LEN];
        nd_solicit(&mut f, PEER_MAC, peer_ip, our_ip).unwrap();
        assert_eq!(handle_nd(&mut f, OUR_MAC, &[IpAddr::V6(our_ip)], &t), L2Action::Reply);
        assert_eq!(t.lookup(IpAddr::V6(peer_ip)), Some(PEER_MAC));
        // The reply is itself a valid NA that a peer table learns from.
        let peer_table = NeighbourTable::new(64);
        assert_eq!(handle_nd(&mut f, PEER_MAC, &[], &peer_table), L2Action::Consumed);
        assert_eq!(peer_table.lookup(IpAddr::V6(our_ip)), Some(OUR_MAC));
        assert_eq!(&f[0..6], &PEER_MAC);
    }

    #[test]
    fn nd_with_bad_checksum_or_hop_limit_is_malformed() {
        let t = NeighbourTable::new(64);
        let our_ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut f = vec![0u8; ND_REPLY_LEN];
        nd_solicit(&mut f, PEER_MAC, "2001:db8::99".parse().unwrap(), our_ip).unwrap();
        let mut bad = f.clone();
        bad[ND_REPLY_LEN - 1] ^= 1;
        assert_eq!(handle_nd(&mut bad, OUR_MAC, &[IpAddr::V6(our_ip)], &t), L2Action::Malformed);
        let mut bad = f.clone();
        bad[14 + 7] = 64;
        assert_eq!(handle_nd(&mut bad, OUR_MAC, &[IpAddr::V6(our_ip)], &t), L2Action::Malformed);
        for n in 0..ND_REPLY_LEN {
            let mut p = f[..n].to_vec();
            let _ = handle_nd(&mut p, OUR_MAC, &[IpAddr::V6(our_ip)], &t);
        }
    }

    #[test]
    fn table_keeps_the_newest_when_full_and_refreshes_in_place() {
        let t = NeighbourTable::new(8);
        for i in 0..100u8 {
            t.learn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), [2, 0, 0, 0, 0, i]);
        }
        assert_eq!(t.lookup(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99))), Some([2, 0, 0, 0, 0, 99]));
        t.learn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99)), [2, 0, 0, 0, 1, 99]);
        assert_eq!(t.lookup(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99))), Some([2, 0, 0, 0, 1, 99]));
        assert_eq!(t.lookup(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9))), None);
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_mac() {
        let t = std::sync::Arc::new(NeighbourTable::new(8));
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        t.learn(ip, [1; 6]);
        let r = {
            let t = t.clone();
            std::thread::spawn(move || {
                for _ in 0..200_000 {
                    if let Some(m) = t.lookup(ip) {
                        assert!(m.iter().all(|b| *b == m[0]), "torn MAC {m:?}");
                    }
                }
            })
        };
        for i in 0..200_000u32 {
            t.learn(ip, [(i % 250) as u8 + 1; 6]);
        }
        r.join().unwrap();
    }
}
