//! A per-worker flow cache: the last verdict per 5-tuple (and segment).
//!
//! Direct-mapped, one 64-byte line per entry, keyed by a seeded hash (a
//! sender inside who learns which of its flows collide learns it for one
//! worker of one process only). Entries carry the generation they were
//! written in; [`FlowCache::clear`] bumps the generation, so everything
//! cached before is a miss again: the caller clears whenever what the
//! verdicts depend on (the SPD, the SA table) changed.

use crate::selector::FlowKey;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry<V: Copy> {
    key: FlowKey,
    gen: u32,
    val: V,
}

/// Verdicts of type `V` by flow.
pub struct FlowCache<V: Copy> {
    entries: Box<[Entry<V>]>,
    mask: usize,
    seed: u64,
    /// Starts at 1: the entries are born with generation 0, never valid.
    gen: u32,
}

#[inline]
fn mix(k: &FlowKey, seed: u64) -> u64 {
    let w = &k.0;
    let mut h = seed ^ w[4];
    for x in [w[0], w[1], w[2], w[3]] {
        h = (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 32;
    }
    h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

impl<V: Copy + Default> FlowCache<V> {
    /// A cache of `entries` (rounded up to a power of two, at least 16) lines.
    pub fn new(entries: usize, seed: u64) -> Self {
        let n = entries.max(16).next_power_of_two();
        let empty = Entry { key: FlowKey([0; 5]), gen: 0, val: V::default() };
        FlowCache { entries: vec![empty; n].into_boxed_slice(), mask: n - 1, seed, gen: 1 }
    }
}

impl<V: Copy> FlowCache<V> {
    #[inline]
    fn at(&self, k: &FlowKey) -> usize {
        mix(k, self.seed) as usize & self.mask
    }

    #[inline]
    pub fn get(&self, k: &FlowKey) -> Option<V> {
        let e = &self.entries[self.at(k)];
        (e.gen == self.gen && e.key == *k).then_some(e.val)
    }

    #[inline]
    pub fn insert(&mut self, k: FlowKey, v: V) {
        let i = self.at(&k);
        self.entries[i] = Entry { key: k, gen: self.gen, val: v };
    }

    /// Forgets every entry (O(1) but once every 2^32 calls, when the
    /// generation wraps and the lines are reset for real).
    pub fn clear(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            for e in self.entries.iter_mut() {
                e.gen = 0;
            }
            self.gen = 1;
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }
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
        c.clear();
        assert_eq!(c.get(&a), None);
    }

    #[test]
    fn a_fresh_cache_holds_no_zero_key() {
        let c: FlowCache<u32> = FlowCache::new(16, 0);
        assert_eq!(c.get(&FlowKey([0; 5])), None);
    }

    #[test]
    fn collisions_replace_never_confuse() {
        let mut c: FlowCache<u32> = FlowCache::new(16, 1);
        let keys: Vec<FlowKey> = (0..100).map(|i| FlowKey::v4(i, 9, 6, 1, 2, 0)).collect();
        for (i, k) in keys.iter().enumerate() {
            c.insert(*k, i as u32);
        }
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = c.get(k) {
                assert_eq!(v, i as u32);
            }
        }
    }
}
