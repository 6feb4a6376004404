//! First-match classification over ordered selectors, compiled into one
//! interval table per dimension (the bit-vector scheme).
//!
//! Each dimension (local address, remote address, protocol, local port,
//! remote port, segment) is cut at every range boundary of every entry into
//! disjoint intervals; each interval carries the set of entries (one bit per
//! entry, in SPD order) whose ranges contain it. A lookup finds the
//! packet's interval in each dimension by binary search and ANDs the six
//! sets: the lowest set bit is the first entry that matches in every
//! dimension. The sets cost (intervals × entries / 8) bytes per dimension,
//! O(n²) bits: meant for configured SPDs (tens to a few thousand entries),
//! not for one entry per negotiated SA (those are found by the SA table's
//! prefix index, see the dataplane's outbound stage).

use crate::selector::{AddrRange, FlowKey, Selector};

/// One dimension: interval starts (the first is 0) and, per interval,
/// `words` 64-bit words of entry bits.
#[derive(Clone, Debug)]
struct Dim {
    starts: Vec<u128>,
    sets: Vec<u64>,
    words: usize,
}

impl Dim {
    /// `ranges[e]`: entry `e`'s inclusive ranges in this dimension, whose
    /// values lie in `0..=max`.
    fn build(ranges: &[Vec<(u128, u128)>], max: u128) -> Dim {
        let words = ranges.len().div_ceil(64);
        let mut starts = vec![0u128];
        for rs in ranges {
            for &(lo, hi) in rs {
                starts.push(lo);
                if hi < max {
                    starts.push(hi + 1);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut sets = vec![0u64; starts.len() * words];
        for (e, rs) in ranges.iter().enumerate() {
            for &(lo, hi) in rs {
                let first = starts.partition_point(|&s| s < lo);
                let end = if hi < max { starts.partition_point(|&s| s <= hi) } else { starts.len() };
                for i in first..end {
                    sets[i * words + e / 64] |= 1 << (e % 64);
                }
            }
        }
        Dim { starts, sets, words }
    }

    /// The entry bits of the interval holding `x`.
    #[inline]
    fn set(&self, x: u128) -> &[u64] {
        // starts[0] == 0 <= x, so the point is at least 1.
        let i = self.starts.partition_point(|&s| s <= x) - 1;
        &self.sets[i * self.words..(i + 1) * self.words]
    }

    fn bytes(&self) -> usize {
        self.starts.len() * 16 + self.sets.len() * 8
    }
}

/// Ordered selectors compiled for first-match lookups.
#[derive(Clone, Debug)]
pub struct Classifier {
    len: usize,
    local4: Dim,
    local6: Dim,
    remote4: Dim,
    remote6: Dim,
    proto: Dim,
    local_port: Dim,
    remote_port: Dim,
    segment: Dim,
}

fn addr_ranges(list: &[AddrRange], v6: bool) -> Vec<(u128, u128)> {
    if list.is_empty() {
        let a = AddrRange::any(v6);
        return vec![(a.lo, a.hi)];
    }
    list.iter().filter(|r| r.v6 == v6).map(|r| (r.lo, r.hi)).collect()
}

impl Classifier {
    /// Compiles `entries`, in order: entry 0 wins over entry 1 where both match.
    pub fn new(entries: &[Selector]) -> Classifier {
        let dim = |f: &dyn Fn(&Selector) -> Vec<(u128, u128)>, max: u128| {
            Dim::build(&entries.iter().map(f).collect::<Vec<_>>(), max)
        };
        let v4max = u128::from(u32::MAX);
        Classifier {
            len: entries.len(),
            local4: dim(&|s| addr_ranges(&s.local, false), v4max),
            local6: dim(&|s| addr_ranges(&s.local, true), u128::MAX),
            remote4: dim(&|s| addr_ranges(&s.remote, false), v4max),
            remote6: dim(&|s| addr_ranges(&s.remote, true), u128::MAX),
            proto: dim(&|s| vec![s.proto.map_or((0, 255), |p| (u128::from(p), u128::from(p)))], 255),
            local_port: dim(&|s| vec![(u128::from(s.local_ports.lo), u128::from(s.local_ports.hi))], 0xffff),
            remote_port: dim(&|s| vec![(u128::from(s.remote_ports.lo), u128::from(s.remote_ports.hi))], 0xffff),
            segment: dim(&|s| vec![s.segment.map_or((0, 0xffff), |g| (u128::from(g), u128::from(g)))], 0xffff),
        }
    }

    /// The index of the first entry containing `k`.
    #[inline]
    pub fn first_match(&self, k: &FlowKey) -> Option<usize> {
        let (l, r) = if k.is_v6() { (&self.local6, &self.remote6) } else { (&self.local4, &self.remote4) };
        let sets = [
            l.set(k.local()),
            r.set(k.remote()),
            self.proto.set(u128::from(k.proto())),
            self.local_port.set(u128::from(k.local_port())),
            self.remote_port.set(u128::from(k.remote_port())),
            self.segment.set(u128::from(k.segment())),
        ];
        for w in 0..self.local4.words {
            let acc = sets.iter().fold(u64::MAX, |a, s| a & s[w]);
            if acc != 0 {
                return Some(w * 64 + acc.trailing_zeros() as usize);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory held by the compiled tables.
    pub fn bytes(&self) -> usize {
        [
            &self.local4,
            &self.local6,
            &self.remote4,
            &self.remote6,
            &self.proto,
            &self.local_port,
            &self.remote_port,
            &self.segment,
        ]
        .iter()
        .map(|d| d.bytes())
        .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::PortRange;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(src: &str, dst: &str, proto: u8, sp: u16, dp: u16, seg: u16) -> FlowKey {
        FlowKey::new(ip(src), ip(dst), proto, sp, dp, seg).unwrap()
    }

    #[test]
    fn empty_classifier_matches_nothing() {
        let c = Classifier::new(&[]);
        assert_eq!(c.first_match(&key("10.0.0.1", "10.0.0.2", 6, 1, 2, 0)), None);
        assert!(c.is_empty());
    }

    #[test]
    fn first_entry_in_order_wins_where_entries_overlap() {
        let mut dns = Selector::any();
        dns.remote = vec![AddrRange::prefix(ip("10.1.0.0"), 16)];
        dns.proto = Some(17);
        dns.remote_ports = PortRange { lo: 53, hi: 53 };
        let mut net = Selector::any();
        net.remote = vec![AddrRange::prefix(ip("10.0.0.0"), 8)];
        let c = Classifier::new(&[dns.clone(), net.clone(), Selector::any()]);
        assert_eq!(c.first_match(&key("192.168.1.1", "10.1.2.3", 17, 4000, 53, 0)), Some(0));
        assert_eq!(c.first_match(&key("192.168.1.1", "10.1.2.3", 6, 4000, 53, 0)), Some(1), "TCP/53 is not the UDP entry");
        assert_eq!(c.first_match(&key("192.168.1.1", "10.1.2.3", 17, 4000, 54, 0)), Some(1));
        assert_eq!(c.first_match(&key("192.168.1.1", "11.0.0.1", 17, 4000, 53, 0)), Some(2));
        // Reversed order: the broad entry hides the specific one.
        let c = Classifier::new(&[net, dns]);
        assert_eq!(c.first_match(&key("192.168.1.1", "10.1.2.3", 17, 4000, 53, 0)), Some(0));
    }

    #[test]
    fn a_range_is_kept_as_a_range_not_widened_to_a_prefix() {
        // 10.0.0.5-10.0.0.9: its covering prefix 10.0.0.0/28 would take .4 and .10.
        let mut s = Selector::any();
        s.remote = vec![AddrRange::new(ip("10.0.0.5"), ip("10.0.0.9")).unwrap()];
        s.local_ports = PortRange { lo: 1000, hi: 1999 };
        let c = Classifier::new(&[s]);
        for (dst, want) in [("10.0.0.4", None), ("10.0.0.5", Some(0)), ("10.0.0.9", Some(0)), ("10.0.0.10", None)] {
            assert_eq!(c.first_match(&key("1.1.1.1", dst, 6, 1500, 80, 0)), want, "{dst}");
        }
        assert_eq!(c.first_match(&key("1.1.1.1", "10.0.0.7", 6, 999, 80, 0)), None);
        assert_eq!(c.first_match(&key("1.1.1.1", "10.0.0.7", 6, 2000, 80, 0)), None);
    }

    #[test]
    fn families_and_segments_are_selectors() {
        let mut v6 = Selector::any();
        v6.remote = vec![AddrRange::prefix(ip("2001:db8::"), 32)];
        let mut seg = Selector::any();
        seg.segment = Some(200);
        let c = Classifier::new(&[v6, seg]);
        assert_eq!(c.first_match(&key("2001:db8:1::1", "2001:db8::2", 6, 1, 2, 0)), Some(0));
        assert_eq!(c.first_match(&key("10.0.0.1", "10.0.0.2", 6, 1, 2, 0)), None, "a v6-only entry and segment 0");
        assert_eq!(c.first_match(&key("10.0.0.1", "10.0.0.2", 6, 1, 2, 200)), Some(1));
        assert_eq!(c.first_match(&key("2001:db9::1", "2001:db9::2", 6, 1, 2, 200)), Some(1));
    }

    #[test]
    fn more_than_64_entries_use_further_words() {
        let mut entries = Vec::new();
        for i in 0..200u32 {
            let mut s = Selector::any();
            s.remote = vec![AddrRange::prefix(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24)];
            entries.push(s);
        }
        let c = Classifier::new(&entries);
        assert_eq!(c.first_match(&key("1.1.1.1", "10.0.150.7", 6, 1, 2, 0)), Some(150));
        assert_eq!(c.first_match(&key("1.1.1.1", "10.0.200.7", 6, 1, 2, 0)), None);
    }
}
