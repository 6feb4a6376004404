//! A per-worker flow cache: the last verdict per 5-tuple (and segment).
//!
//! Four-way set associative: a flow hashes (seeded, so a sender inside who
//! learns which of its flows collide learns it for one worker of one process
//! only) to a set of four 64-byte lines, one entry each. A direct-mapped
//! table thrashed here: 1024 flows sent round-robin into 4096 lines leave
//! about a fifth of the flows sharing a line with another and missing on
//! every packet; with four ways a set overflows only when five flows of the
//! working set land in it.
//!
//! Entries carry the generation they were written in, in the key word's
//! spare bits (see [`FlowKey`]): [`FlowCache::clear`] bumps the generation,
//! so everything cached before is a miss; every 127 clears the lines are
//! wiped for real. The caller clears whenever what the verdicts depend on
//! (the SPD, the SA table) changed.

use crate::selector::FlowKey;

/// Where the generation sits in word 4 of a stored key (bits 56..63; a
/// [`FlowKey`] leaves them zero).
const GEN_SHIFT: u32 = 56;
const GEN_MAX: u64 = 0x7f;
const WAYS: usize = 4;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry<V: Copy> {
    /// The flow's key with the generation in word 4; generation 0 is never
    /// current, so a zeroed line matches nothing.
    key: [u64; 5],
    val: V,
}

/// Verdicts of type `V` by flow. `V` should be at most 24 bytes, so that an
/// entry is one cache line.
pub struct FlowCache<V: Copy> {
    entries: Box<[Entry<V>]>,
    /// Sets - 1 (sets are a power of two).
    mask: usize,
    seed: u64,
    gen: u64,
    /// The way replaced next when a set is full (round robin).
    victim: usize,
}

/// Where a flow's set is, from [`FlowCache::locate`]: hash once per packet,
/// then prefetch, get and insert with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetIndex(usize);

/// Two independent multiplies over the folded key words (they run in
/// parallel), then a final mix. Not collision resistant against flows
/// chosen to collide: a collision only costs the colliding flows a slower
/// lookup, never a wrong verdict (entries hold the whole key).
#[inline]
fn mix(k: &FlowKey, seed: u64) -> u64 {
    let w = &k.0;
    let a = (w[0] ^ w[2].rotate_left(32) ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = (w[1] ^ w[3].rotate_left(32) ^ w[4] ^ seed.rotate_left(17)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (a ^ b.rotate_left(29)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl<V: Copy + Default> FlowCache<V> {
    /// A cache of `entries` (rounded up to a power of two, at least 16) lines.
    pub fn new(entries: usize, seed: u64) -> Self {
        let n = entries.max(16).next_power_of_two();
        let empty = Entry { key: [0; 5], val: V::default() };
        FlowCache { entries: vec![empty; n].into_boxed_slice(), mask: n / WAYS - 1, seed, gen: 1, victim: 0 }
    }
}

impl<V: Copy> FlowCache<V> {
    /// The set `k` belongs in.
    #[inline]
    pub fn locate(&self, k: &FlowKey) -> SetIndex {
        SetIndex(((mix(k, self.seed) >> 16) as usize & self.mask) * WAYS)
    }

    #[inline]
    fn stored(&self, k: &FlowKey) -> [u64; 5] {
        let w = k.0;
        [w[0], w[1], w[2], w[3], w[4] | (self.gen << GEN_SHIFT)]
    }

    /// The first line of a set, for the caller to prefetch (this crate has
    /// no `unsafe`; DPDK's `rte_prefetch0` is the caller's): a burst's
    /// lookups then overlap their misses instead of queueing them.
    #[inline]
    pub fn line(&self, s: SetIndex) -> &impl Sized {
        &self.entries[s.0]
    }

    #[inline]
    pub fn get(&self, k: &FlowKey) -> Option<V> {
        self.get_at(self.locate(k), k)
    }

    /// [`Self::get`] where `s` is `k`'s [`Self::locate`].
    #[inline]
    pub fn get_at(&self, s: SetIndex, k: &FlowKey) -> Option<V> {
        let want = self.stored(k);
        let ways: &[Entry<V>; WAYS] = self.entries[s.0..s.0 + WAYS].try_into().ok()?;
        // Way 0 first: a set rarely holds more than one live flow.
        if same(&ways[0].key, &want) {
            return Some(ways[0].val);
        }
        ways[1..].iter().find(|e| same(&e.key, &want)).map(|e| e.val)
    }

    #[inline]
    pub fn insert(&mut self, k: FlowKey, v: V) {
        self.insert_at(self.locate(&k), k, v)
    }

    /// [`Self::insert`] where `s` is `k`'s [`Self::locate`].
    #[inline]
    pub fn insert_at(&mut self, s: SetIndex, k: FlowKey, v: V) {
        let want = self.stored(&k);
        let gen = self.gen;
        let ways = &mut self.entries[s.0..s.0 + WAYS];
        // The flow's own line, else a line of an older generation, else the
        // next victim.
        let i = match ways.iter().position(|e| same(&e.key, &want)) {
            Some(i) => i,
            None => match ways.iter().position(|e| e.key[4] >> GEN_SHIFT != gen) {
                Some(i) => i,
                None => {
                    self.victim = (self.victim + 1) % WAYS;
                    self.victim
                }
            },
        };
        ways[i] = Entry { key: want, val: v };
    }

    /// Forgets every entry: O(1), but for one wipe of the lines every 127 calls.
    pub fn clear(&mut self) {
        self.gen += 1;
        if self.gen > GEN_MAX {
            for e in self.entries.iter_mut() {
                e.key = [0; 5];
            }
            self.gen = 1;
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }
}

/// Key equality without a call to `memcmp` (which `[u64; 5] ==` can become).
#[inline]
fn same(a: &[u64; 5], b: &[u64; 5]) -> bool {
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4])) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_cleared() {
        let mut c: FlowCache<u32> = FlowCache::new(64, 7);
        let a = FlowKey::v4(1, 2, 17, 3, 4, 0);
        let b = FlowKey::v4(1, 2, 17, 3, 5, 0);
        assert_eq!(c.get(&a), None);
        c.insert(a, 11);
        assert_eq!(c.get(&a), Some(11));
        assert_eq!(c.get(&b), None, "another port is another flow");
        c.insert(a, 12);
        assert_eq!(c.get(&a), Some(12), "a flow has one line");
        c.clear();
        assert_eq!(c.get(&a), None);
    }

    #[test]
    fn a_fresh_cache_holds_no_zero_key() {
        let c: FlowCache<u32> = FlowCache::new(16, 0);
        assert_eq!(c.get(&FlowKey([0; 5])), None);
    }

    #[test]
    fn clearing_past_the_generation_bits_wipes_and_still_forgets() {
        let mut c: FlowCache<u32> = FlowCache::new(16, 3);
        let a = FlowKey::v4(1, 2, 6, 1, 2, 0);
        for round in 0..300u32 {
            c.insert(a, round);
            assert_eq!(c.get(&a), Some(round));
            c.clear();
            assert_eq!(c.get(&a), None, "round {round}");
        }
    }

    #[test]
    fn round_robin_over_a_quarter_of_the_lines_hits_after_the_first_pass() {
        // The benchmark's traffic: 1024 flows in turn, a 4096-line cache.
        let mut c: FlowCache<u32> = FlowCache::new(4096, 0x1234_5678);
        let keys: Vec<FlowKey> = (0..1024).map(|i| FlowKey::v4(0xc0a8_0501 + i, 0xc0a8_6901, 17, 1024 + i as u16, 5001, 0)).collect();
        for (i, k) in keys.iter().enumerate() {
            c.insert(*k, i as u32);
        }
        let misses = keys.iter().filter(|k| c.get(k).is_none()).count();
        // Direct-mapped, about 100 would be; four ways leave a handful.
        assert!(misses <= 16, "{misses} of 1024 flows evicted");
    }
}
