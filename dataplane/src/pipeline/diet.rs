//! Inbound lookup of Diet-ESP packets (draft-ietf-ipsecme-diet-esp-07
//! §4.1, §8): a compressed ESP header starts with the SPI's `esp_spi_lsb`
//! low bits, so the full-SPI index cannot find its SA. Every worker keeps
//! this index of the compressed inbound SAs by (peer address, SPI width,
//! SPI bits) — the outer source narrows the SPI to one tunnel, as the
//! draft's "other selectors" — and looks a packet up here when the SPI
//! index has no SA for its first four octets.
//!
//! Bounded: at most [`MAX_CANDIDATES`] SAs per key (the oldest makes way),
//! as many lookups per packet as there are distinct SPI widths. Several
//! candidates (a rekey whose new SPI shares the old one's low bits) are
//! counted and resolved to the newest SA: its peer sends on it once the
//! rekey is done. The control plane keeps that rare by preferring child
//! SPIs whose low octet no live SA has (ike-proto `sa.rs`).

use std::collections::HashMap;
use std::net::IpAddr;

use sa_table::SaId;

/// Candidate SAs kept per (peer, width, bits).
pub const MAX_CANDIDATES: usize = 4;

/// What the index needs of an SA's name (an [`SaId`]; plain pairs in tests).
pub(super) trait Candidate: Copy + Eq {
    fn slot(&self) -> u32;
    fn install_gen(&self) -> u64;
}

impl Candidate for SaId {
    fn slot(&self) -> u32 {
        SaId::slot(*self)
    }
    fn install_gen(&self) -> u64 {
        SaId::install_gen(*self)
    }
}

pub(super) struct DietIndex<I = SaId> {
    map: HashMap<(IpAddr, u8, u32), Vec<I>>,
    /// Distinct SPI widths in use, with how many SAs use each.
    widths: Vec<(u8, usize)>,
}

impl<I> Default for DietIndex<I> {
    fn default() -> Self {
        Self { map: HashMap::new(), widths: Vec::new() }
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found<I = SaId> {
    None,
    One(I),
    /// Several candidates; the newest.
    Newest(I),
}

impl<I: Candidate> DietIndex<I> {
    pub fn is_empty(&self) -> bool {
        self.widths.is_empty()
    }

    pub fn insert(&mut self, id: I, peer: IpAddr, lsb: u8, bits: u32) {
        let v = self.map.entry((peer, lsb, bits)).or_default();
        if v.len() == MAX_CANDIDATES {
            // The oldest makes way: one SA out, one in, the width's count
            // unchanged.
            if let Some(oldest) = v.iter().copied().min_by_key(|c| c.install_gen()) {
                v.retain(|c| *c != oldest);
                v.push(id);
                return;
            }
        }
        v.push(id);
        match self.widths.iter_mut().find(|w| w.0 == lsb) {
            Some(w) => w.1 += 1,
            None => self.widths.push((lsb, 1)),
        }
    }

    fn dec(&mut self, lsb: u8) {
        if let Some(w) = self.widths.iter_mut().find(|w| w.0 == lsb) {
            w.1 -= 1;
        }
        self.widths.retain(|w| w.1 > 0);
    }

    /// Forget the SA in slot `slot` (any generation).
    pub fn remove_slot(&mut self, slot: u32) {
        let mut gone = Vec::new();
        self.map.retain(|k, v| {
            let before = v.len();
            v.retain(|c| c.slot() != slot);
            gone.extend(std::iter::repeat_n(k.1, before - v.len()));
            !v.is_empty()
        });
        for lsb in gone {
            self.dec(lsb);
        }
    }

    pub fn remove(&mut self, id: I) {
        self.remove_slot(id.slot());
    }

    /// The SA of a compressed ESP packet from `peer`; `esp` starts at the
    /// compressed header.
    pub fn lookup(&self, peer: IpAddr, esp: &[u8]) -> Found<I> {
        let mut head = [0u8; 4];
        let n = esp.len().min(4);
        head[..n].copy_from_slice(&esp[..n]);
        let head = u32::from_be_bytes(head);
        let mut found = Found::None;
        for &(lsb, _) in &self.widths {
            let bits = if lsb == 0 { 0 } else { head >> (32 - u32::from(lsb)) };
            let Some(v) = self.map.get(&(peer, lsb, bits)) else { continue };
            let Some(newest) = v.iter().copied().max_by_key(|c| c.install_gen()) else { continue };
            found = match (found, v.len()) {
                (Found::None, 1) => Found::One(newest),
                (Found::None, _) => Found::Newest(newest),
                (Found::One(a) | Found::Newest(a), _) => {
                    Found::Newest(if a.install_gen() >= newest.install_gen() { a } else { newest })
                }
            };
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct T(u32, u64);

    impl Candidate for T {
        fn slot(&self) -> u32 {
            self.0
        }
        fn install_gen(&self) -> u64 {
            self.1
        }
    }

    fn id(slot: u32, gen: u64) -> T {
        T(slot, gen)
    }

    #[test]
    fn finds_by_peer_and_spi_bits_and_prefers_the_newest() {
        let mut x = DietIndex::<T>::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        x.insert(id(1, 10), a, 8, 0xc3);
        x.insert(id(2, 11), b, 8, 0xc3);
        assert_eq!(x.lookup(a, &[0xc3, 0x01]), Found::One(id(1, 10)));
        assert_eq!(x.lookup(b, &[0xc3, 0x01]), Found::One(id(2, 11)));
        assert_eq!(x.lookup(a, &[0xc4, 0x01]), Found::None);
        // A rekeyed SA with the same low octet: both candidates, newest wins.
        x.insert(id(3, 12), a, 8, 0xc3);
        assert_eq!(x.lookup(a, &[0xc3]), Found::Newest(id(3, 12)));
        x.remove(id(3, 12));
        assert_eq!(x.lookup(a, &[0xc3]), Found::One(id(1, 10)));
        // Bounded: the oldest makes way.
        for s in 10..10 + MAX_CANDIDATES as u32 {
            x.insert(id(s, u64::from(s) + 100), a, 8, 0xc3);
        }
        assert_eq!(x.map[&(a, 8, 0xc3)].len(), MAX_CANDIDATES);
        assert!(!x.map[&(a, 8, 0xc3)].contains(&id(1, 10)));
        // Widths other than 8, and none at all.
        x.insert(id(20, 200), b, 4, 0xa);
        x.insert(id(21, 201), b, 0, 0);
        assert_eq!(x.lookup(b, &[0xa7]), Found::Newest(id(21, 201)));
        x.remove(id(21, 201));
        assert_eq!(x.lookup(b, &[0xa7]), Found::One(id(20, 200)));
        for s in [2, 10, 11, 12, 13, 20] {
            x.remove_slot(s);
        }
        assert!(x.is_empty(), "{:?}", x.widths);
    }
}
