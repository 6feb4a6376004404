//! A reader's private lookup indexes, built from slot copies.
//!
//! Guarantees: lookups allocate nothing and take one hash probe for a unicast SPI
//! and one probe per distinct prefix length present for outbound longest-prefix
//! match. Maintenance (insert/remove) happens only while applying journal changes,
//! never on the packet path.
//!
//! * Inbound: RFC 4303 §2.1 and RFC 5374 §5.2 longest match, as if searching
//!   (SPI, dst, src), then (SPI, dst), then (SPI). The SPI table entry carries a bit
//!   saying whether any group SA uses that SPI, so a unicast lookup never touches the
//!   group map.
//! * Outbound: longest prefix match over each SA's served prefixes (or the prefixes
//!   covering its remote selectors). Several SAs may serve the same prefix during a
//!   rekey; the most recently installed wins, which is the make-before-break switch.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::layout::{Family, IpPrefix, SaParams, TrafficSelector};
use crate::{Direction, InboundMatch, SaId};

/// A multiply-xorshift hash keyed per reader, so a peer that learns which of its
/// SPIs collide in one worker learns nothing about another process.
#[inline]
fn mix(x: u64, seed: u64) -> u64 {
    let mut h = (x ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    h.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// Keys of the open-addressing table; `EMPTY` never occurs as a real key.
pub(crate) trait FlatKey: Copy + Eq {
    const EMPTY: Self;
    fn hash(&self, seed: u64) -> u64;
}

impl FlatKey for u32 {
    // SPI 0 is reserved (RFC 4303 §2.1) and never installed.
    const EMPTY: Self = 0;
    #[inline]
    fn hash(&self, seed: u64) -> u64 {
        mix(u64::from(*self), seed)
    }
}

/// IPv4 prefix key: address (masked) << 8 | length, with bit 40 set so it is never 0.
impl FlatKey for u64 {
    const EMPTY: Self = 0;
    #[inline]
    fn hash(&self, seed: u64) -> u64 {
        mix(*self, seed)
    }
}

/// IPv6 prefix key: the masked address with a marker bit right after the prefix
/// (see `v6_map_key`), or a /128's address in the host map.
impl FlatKey for [u64; 2] {
    const EMPTY: Self = [0, 0];
    #[inline]
    fn hash(&self, seed: u64) -> u64 {
        mix(self[0] ^ self[1].rotate_left(29), seed)
    }
}

/// What an index entry points at: the slot and the SA's install generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) slot: u32,
    /// Bit 0 of `flags`: a group SA uses this SPI (inbound table only).
    pub(crate) flags: u32,
    pub(crate) install_gen: u64,
}

const NO_SLOT: u32 = u32::MAX;
const HAS_GROUP: u32 = 1;

impl Target {
    const NONE: Self = Self {
        slot: NO_SLOT,
        flags: 0,
        install_gen: 0,
    };

    fn id(self) -> Option<SaId> {
        (self.slot != NO_SLOT).then_some(SaId {
            slot: self.slot,
            install_gen: self.install_gen,
        })
    }
}

/// One bucket: 32 bytes, 32-aligned, so an entry never straddles two cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Entry<K: Copy> {
    key: K,
    val: Target,
}

const _: () = assert!(std::mem::size_of::<Entry<u32>>() == 32);
const _: () = assert!(std::mem::size_of::<Entry<u64>>() == 32);
const _: () = assert!(std::mem::size_of::<Entry<[u64; 2]>>() == 32);

/// Open addressing with linear probing and backward-shift deletion (no tombstones,
/// so probe lengths do not degrade under install/delete churn). Key and value sit
/// in the same entry: a lookup costs one cache miss, not two.
pub(crate) struct FlatMap<K: FlatKey> {
    entries: Vec<Entry<K>>,
    mask: usize,
    len: usize,
    seed: u64,
}

impl<K: FlatKey> FlatMap<K> {
    pub(crate) fn with_capacity(n: usize, seed: u64) -> Self {
        let cap = (n.max(8) * 2).next_power_of_two();
        Self {
            entries: alloc_entries(cap),
            mask: cap - 1,
            len: 0,
            seed,
        }
    }

    #[inline]
    fn home(&self, k: &K) -> usize {
        (k.hash(self.seed) >> 16) as usize & self.mask
    }

    #[inline]
    pub(crate) fn get(&self, k: K) -> Option<&Target> {
        let mut i = self.home(&k);
        loop {
            let e = &self.entries[i];
            if e.key == k {
                return Some(&e.val);
            }
            let cur = e.key;
            if cur == K::EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Hint the cache about `k`'s home bucket (burst lookups).
    #[inline]
    pub(crate) fn prefetch(&self, k: K) {
        let i = self.home(&k);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: i <= mask < entries.len(), so the address is inside the
        // allocation; a prefetch has no architectural effect besides the cache.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                self.entries.as_ptr().add(i).cast(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    pub(crate) fn get_mut_or_insert(&mut self, k: K) -> &mut Target {
        debug_assert!(k != K::EMPTY);
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let mut i = self.home(&k);
        loop {
            let cur = self.entries[i].key;
            if cur == k {
                return &mut self.entries[i].val;
            }
            if cur == K::EMPTY {
                self.entries[i] = Entry {
                    key: k,
                    val: Target::NONE,
                };
                self.len += 1;
                return &mut self.entries[i].val;
            }
            i = (i + 1) & self.mask;
        }
    }

    pub(crate) fn remove(&mut self, k: K) {
        let mut i = self.home(&k);
        loop {
            let cur = self.entries[i].key;
            if cur == K::EMPTY {
                return;
            }
            if cur == k {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: pull later members of the cluster into the hole when their
        // home position does not lie (cyclically) between the hole and them.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let kj = self.entries[j].key;
            if kj == K::EMPTY {
                break;
            }
            let home = self.home(&kj);
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.entries[hole] = self.entries[j];
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.entries[hole] = Entry {
            key: K::EMPTY,
            val: Target::NONE,
        };
        self.len -= 1;
    }

    fn grow(&mut self) {
        let cap = self.entries.len() * 2;
        let old = std::mem::replace(&mut self.entries, alloc_entries(cap));
        self.mask = self.entries.len() - 1;
        self.len = 0;
        for e in old {
            if e.key != K::EMPTY {
                *self.get_mut_or_insert(e.key) = e.val;
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the table (for the per-SA footprint report).
    pub(crate) fn bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry<K>>()
    }
}

/// A zeroed-out entry array; large ones are put on transparent huge pages, since
/// random probes into a table of a million SAs otherwise miss the TLB as well as
/// the cache.
fn alloc_entries<K: FlatKey>(cap: usize) -> Vec<Entry<K>> {
    let mut v: Vec<Entry<K>> = Vec::with_capacity(cap);
    let bytes = cap * std::mem::size_of::<Entry<K>>();
    // Advise before the first touch, so the pages are born huge.
    if bytes >= 4 << 20 {
        advise_huge(v.as_ptr().cast(), bytes);
    }
    v.resize(
        cap,
        Entry {
            key: K::EMPTY,
            val: Target::NONE,
        },
    );
    v
}

#[cfg(target_os = "linux")]
fn advise_huge(p: *const u8, len: usize) {
    // madvise wants a page-aligned start: advise the whole pages inside the buffer.
    let page = 4096usize;
    let start = (p as usize).div_ceil(page) * page;
    let end = (p as usize + len) / page * page;
    if end > start {
        // SAFETY: [start, end) lies inside a live allocation we own; MADV_HUGEPAGE
        // only changes how the kernel backs those pages, never their contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: *const u8, _: usize) {}

/// A fast, deterministic hasher for the maintenance maps (keys are ours, not
/// attacker-chosen: they come from installed SAs).
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

/// The fields an inbound SA is looked up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct InboundKey {
    pub(crate) spi: u32,
    pub(crate) matching: InboundMatch,
    pub(crate) family: Family,
    pub(crate) dst: [u8; 16],
    pub(crate) src: [u8; 16],
}

impl InboundKey {
    pub(crate) fn of(p: &SaParams) -> Self {
        let matching = p.inbound_match;
        let (dst, src) = match matching {
            InboundMatch::SPI_DST => (p.outer_dst, [0; 16]),
            InboundMatch::SPI_DST_SRC => (p.outer_dst, p.outer_src),
            _ => ([0; 16], [0; 16]),
        };
        let family = if matching == InboundMatch::SPI {
            Family::NONE
        } else {
            p.outer_family
        };
        let matching = if family == Family::NONE {
            InboundMatch::SPI
        } else {
            matching
        };
        Self {
            spi: p.spi,
            matching,
            family,
            dst,
            src,
        }
    }
}

/// An outbound LPM key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PrefixKey {
    /// The IPv4 flat-map key (see `v4_key`).
    V4(u64),
    /// The IPv6 flat-map key as halves of the masked address and length + 1:
    /// 24 bytes instead of a u128's 48 once in an enum, and readers keep one per
    /// served prefix per SA.
    V6(u64, u64, u8),
}

fn v4_key(addr: u32, len: u8) -> u64 {
    let masked = if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len)))
    };
    (1 << 40) | (u64::from(masked) << 8) | u64::from(len)
}

fn v6_key(addr: u128, len: u8) -> (u128, u8) {
    let masked = if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    };
    (masked, len + 1)
}

impl PrefixKey {
    pub(crate) fn of(p: &IpPrefix) -> Option<Self> {
        match p.family {
            Family::V4 => {
                let a = u32::from_be_bytes([p.addr[0], p.addr[1], p.addr[2], p.addr[3]]);
                Some(Self::V4(v4_key(a, p.len.min(32))))
            }
            Family::V6 => Some(Self::v6(u128::from_be_bytes(p.addr), p.len.min(128)))
                .filter(|k| !k.is_unspecified_host()),
            _ => None,
        }
    }

    /// ::/128 is the host map's empty key; the unspecified address is never an
    /// inner destination, so it is never indexed.
    fn is_unspecified_host(&self) -> bool {
        *self == Self::V6(0, 0, 129)
    }

    fn v6(addr: u128, len: u8) -> Self {
        let (m, l1) = v6_key(addr, len);
        Self::V6((m >> 64) as u64, m as u64, l1)
    }

    fn len(&self) -> u8 {
        match self {
            Self::V4(k) => (*k & 0xff) as u8,
            Self::V6(_, _, l) => *l - 1,
        }
    }
}

/// CIDR prefixes exactly covering `start..=end` in a `bits`-wide space (at most
/// 2 * bits of them): how a remote selector range becomes LPM keys.
pub(crate) fn range_prefixes(start: u128, end: u128, bits: u32, out: &mut Vec<(u128, u8)>) {
    if start > end {
        return;
    }
    let top = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let (mut s, end) = (start & top, end & top);
    loop {
        // The largest block of 2^k addresses aligned at `s` that does not pass `end`.
        let mut k = if s == 0 {
            bits
        } else {
            s.trailing_zeros().min(bits)
        };
        loop {
            let last = if k == 128 {
                Some(u128::MAX)
            } else {
                s.checked_add((1u128 << k) - 1)
            };
            if last.is_some_and(|l| l <= end) {
                break;
            }
            k -= 1;
        }
        out.push((s, (bits - k) as u8));
        if k == 128 {
            return;
        }
        let last = s + ((1u128 << k) - 1);
        if last >= end {
            return;
        }
        s = last + 1;
    }
}

/// LPM keys of an outbound SA.
pub(crate) fn outbound_keys(p: &SaParams, out: &mut Vec<PrefixKey>) {
    out.clear();
    if !p.served().is_empty() {
        out.extend(p.served().iter().filter_map(PrefixKey::of));
        return;
    }
    let mut ranges = Vec::new();
    for ts in p.ts_remote() {
        ranges.clear();
        match ts.ts_type {
            TrafficSelector::TS_IPV4_ADDR_RANGE => {
                let s = u32::from_be_bytes(ts.start_addr[..4].try_into().unwrap_or([0; 4]));
                let e = u32::from_be_bytes(ts.end_addr[..4].try_into().unwrap_or([0; 4]));
                range_prefixes(u128::from(s), u128::from(e), 32, &mut ranges);
                out.extend(
                    ranges
                        .iter()
                        .map(|&(a, l)| PrefixKey::V4(v4_key(a as u32, l))),
                );
            }
            TrafficSelector::TS_IPV6_ADDR_RANGE => {
                let s = u128::from_be_bytes(ts.start_addr);
                let e = u128::from_be_bytes(ts.end_addr);
                range_prefixes(s, e, 128, &mut ranges);
                out.extend(ranges.iter().map(|&(a, l)| PrefixKey::v6(a, l)));
            }
            _ => {}
        }
    }
    out.retain(|k| !k.is_unspecified_host());
    out.sort_unstable_by_key(|k| match k {
        PrefixKey::V4(x) => (0u8, u128::from(*x)),
        PrefixKey::V6(h, l, n) => (1 + *n, (u128::from(*h) << 64) | u128::from(*l)),
    });
    out.dedup();
}

/// A group SA's map key: (SPI, dst) or (SPI, dst, src).
type GroupKey = (u32, Family, [u8; 16], [u8; 16]);

/// Everything a reader looks SAs up with.
pub(crate) struct Indexes {
    spi: FlatMap<u32>,
    groups: HashMap<GroupKey, Target, FxBuild>,
    /// Group SAs per SPI, to keep the HAS_GROUP bit exact.
    group_spis: HashMap<u32, u32, FxBuild>,
    v4: FlatMap<u64>,
    /// IPv6 prefixes shorter than /128, keyed by `v6_map_key`.
    v6: FlatMap<[u64; 2]>,
    /// IPv6 /128s, keyed by address: no bit is left for a length marker.
    v6_host: FlatMap<[u64; 2]>,
    /// Which prefix lengths to probe for an address, per family.
    v4_lens: LenHint,
    v6_lens: LenHint,
    /// All SAs serving each prefix (usually one; two during a rekey).
    candidates: HashMap<PrefixKey, Vec<Target>, FxBuild>,
}

impl Indexes {
    pub(crate) fn new(capacity: u32, seed: u64) -> Self {
        let n = capacity as usize;
        Self {
            spi: FlatMap::with_capacity(n, seed),
            groups: HashMap::default(),
            group_spis: HashMap::default(),
            v4: FlatMap::with_capacity(n / 2, seed.rotate_left(21)),
            v6: FlatMap::with_capacity(16, seed.rotate_left(42)),
            v6_host: FlatMap::with_capacity(16, seed.rotate_left(50)),
            v4_lens: LenHint::new(16, false),
            v6_lens: LenHint::new(32, true),
            candidates: HashMap::default(),
        }
    }

    pub(crate) fn insert_inbound(&mut self, k: &InboundKey, t: Target) {
        if k.spi == 0 {
            return;
        }
        if k.matching == InboundMatch::SPI {
            let e = self.spi.get_mut_or_insert(k.spi);
            *e = Target {
                flags: e.flags,
                ..t
            };
        } else {
            self.groups.insert((k.spi, k.family, k.dst, k.src), t);
            *self.group_spis.entry(k.spi).or_default() += 1;
            self.spi.get_mut_or_insert(k.spi).flags |= HAS_GROUP;
        }
    }

    pub(crate) fn remove_inbound(&mut self, k: &InboundKey, slot: u32) {
        if k.spi == 0 {
            return;
        }
        if k.matching == InboundMatch::SPI {
            let drop_entry = match self.spi.get(k.spi).copied() {
                Some(t) if t.slot == slot => {
                    if t.flags & HAS_GROUP == 0 {
                        true
                    } else {
                        *self.spi.get_mut_or_insert(k.spi) = Target {
                            flags: HAS_GROUP,
                            ..Target::NONE
                        };
                        false
                    }
                }
                _ => false,
            };
            if drop_entry {
                self.spi.remove(k.spi);
            }
        } else {
            let gk = (k.spi, k.family, k.dst, k.src);
            if self.groups.get(&gk).is_some_and(|t| t.slot == slot) {
                self.groups.remove(&gk);
                let n = self.group_spis.entry(k.spi).or_default();
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.group_spis.remove(&k.spi);
                    let unicast = self.spi.get(k.spi).copied().filter(|t| t.slot != NO_SLOT);
                    match unicast {
                        Some(t) => *self.spi.get_mut_or_insert(k.spi) = Target { flags: 0, ..t },
                        None => self.spi.remove(k.spi),
                    }
                }
            }
        }
    }

    #[inline]
    pub(crate) fn lookup_inbound(
        &self,
        spi: u32,
        dst: (Family, [u8; 16]),
        src: (Family, [u8; 16]),
    ) -> Option<SaId> {
        let t = *self.spi.get(spi)?;
        if t.flags & HAS_GROUP != 0 && dst.0 != Family::NONE {
            if let Some(g) = self.groups.get(&(spi, dst.0, dst.1, src.1)) {
                return g.id();
            }
            if let Some(g) = self.groups.get(&(spi, dst.0, dst.1, [0; 16])) {
                return g.id();
            }
        }
        t.id()
    }

    #[inline]
    pub(crate) fn lookup_spi(&self, spi: u32) -> Option<SaId> {
        self.spi.get(spi).and_then(|t| t.id())
    }

    #[inline]
    pub(crate) fn prefetch_spi(&self, spi: u32) {
        self.spi.prefetch(spi);
    }

    /// The flat-map entry of prefix `k`, inserted empty (`slot == NO_SLOT`) if absent.
    fn prefix_entry(&mut self, k: PrefixKey) -> &mut Target {
        match k {
            PrefixKey::V4(key) => self.v4.get_mut_or_insert(key),
            PrefixKey::V6(h, l, n) => match v6_flat(h, l, n) {
                (true, k) => self.v6_host.get_mut_or_insert(k),
                (false, k) => self.v6.get_mut_or_insert(k),
            },
        }
    }

    fn prefix_target(&self, k: PrefixKey) -> Option<Target> {
        match k {
            PrefixKey::V4(key) => self.v4.get(key).copied(),
            PrefixKey::V6(h, l, n) => match v6_flat(h, l, n) {
                (true, k) => self.v6_host.get(k).copied(),
                (false, k) => self.v6.get(k).copied(),
            },
        }
    }

    fn prefix_added(&mut self, k: PrefixKey) {
        match k {
            PrefixKey::V4(key) => self.v4_lens.add(v4_top(key), k.len()),
            PrefixKey::V6(h, _, _) => self.v6_lens.add((h >> 32) as u32, k.len()),
        }
    }

    fn prefix_removed(&mut self, k: PrefixKey) {
        match k {
            PrefixKey::V4(key) => {
                self.v4.remove(key);
                self.v4_lens.remove(v4_top(key), k.len());
            }
            PrefixKey::V6(h, l, n) => {
                match v6_flat(h, l, n) {
                    (true, k) => self.v6_host.remove(k),
                    (false, k) => self.v6.remove(k),
                }
                self.v6_lens.remove((h >> 32) as u32, k.len());
            }
        }
    }

    /// Index `t` under prefix `k`. One SA per prefix is the rule and costs one
    /// flat-map write; a second one (a rekey's new outbound SA) moves the prefix's
    /// SAs into the candidates map, and the newest install serves the prefix.
    pub(crate) fn insert_outbound(&mut self, k: PrefixKey, t: Target) {
        if !self.candidates.is_empty() {
            if let Some(c) = self.candidates.get_mut(&k) {
                c.retain(|x| x.slot != t.slot);
                c.push(t);
                let best = newest(c);
                *self.prefix_entry(k) = best;
                return;
            }
        }
        let e = self.prefix_entry(k);
        let prev = *e;
        if prev.slot == NO_SLOT || prev.slot == t.slot {
            *e = t;
            if prev.slot == NO_SLOT {
                self.prefix_added(k);
            }
            return;
        }
        *e = if t.install_gen >= prev.install_gen {
            t
        } else {
            prev
        };
        self.candidates.insert(k, vec![prev, t]);
    }

    pub(crate) fn remove_outbound(&mut self, k: PrefixKey, slot: u32) {
        if !self.candidates.is_empty() {
            if let Some(c) = self.candidates.get_mut(&k) {
                c.retain(|x| x.slot != slot);
                match c.len() {
                    0 => {
                        self.candidates.remove(&k);
                        self.prefix_removed(k);
                    }
                    1 => {
                        let only = c[0];
                        self.candidates.remove(&k);
                        *self.prefix_entry(k) = only;
                    }
                    _ => {
                        let best = newest(c);
                        *self.prefix_entry(k) = best;
                    }
                }
                return;
            }
        }
        if self.prefix_target(k).is_some_and(|t| t.slot == slot) {
            self.prefix_removed(k);
        }
    }

    #[inline]
    pub(crate) fn lookup_v4(&self, dst: u32) -> Option<SaId> {
        let mut m = self.v4_lens.long_mask(dst >> 16);
        while m != 0 {
            let b = 127 - m.leading_zeros();
            if let Some(t) = self.v4.get(v4_key(dst, 17 + b as u8)) {
                return t.id();
            }
            m &= !(1u128 << b);
        }
        for &len in &self.v4_lens.short {
            if let Some(t) = self.v4.get(v4_key(dst, len)) {
                return t.id();
            }
        }
        None
    }

    /// `lookup_v4`, and the mask of the destination bits its answer
    /// depended on: every destination equal to `dst` under the mask gets
    /// the same answer while the index is unchanged (the bucket's longest
    /// length, at least the bucket's 16 bits).
    #[inline]
    pub(crate) fn lookup_v4_span(&self, dst: u32) -> (Option<SaId>, u32) {
        let m = self.v4_lens.long_mask(dst >> 16);
        let sig = if m != 0 { 17 + (127 - m.leading_zeros()) } else { 16 };
        (self.lookup_v4(dst), u32::MAX << (32 - sig.min(32)))
    }

    /// Prefetch the bucket of the first length `lookup_v4` will probe.
    #[inline]
    pub(crate) fn prefetch_v4(&self, dst: u32) {
        let m = self.v4_lens.long_mask(dst >> 16);
        let len = if m != 0 {
            17 + (127 - m.leading_zeros()) as u8
        } else {
            self.v4_lens.short.first().copied().unwrap_or(0)
        };
        self.v4.prefetch(v4_key(dst, len));
    }

    #[inline]
    fn v6_get(&self, dst: u128, len: u8) -> Option<&Target> {
        if len == 128 {
            self.v6_host.get(u128_words(dst))
        } else {
            self.v6.get(v6_map_key(dst, len))
        }
    }

    #[inline]
    pub(crate) fn lookup_v6(&self, dst: u128) -> Option<SaId> {
        let mut m = self.v6_lens.long_mask((dst >> 96) as u32);
        while m != 0 {
            let b = 127 - m.leading_zeros();
            if let Some(t) = self.v6_get(dst, 33 + b as u8) {
                return t.id();
            }
            m &= !(1u128 << b);
        }
        for &len in &self.v6_lens.short {
            if let Some(t) = self.v6_get(dst, len) {
                return t.id();
            }
        }
        None
    }

    /// Calls `f` with every SA serving a prefix that contains `dst`: longest
    /// prefix first, and within a prefix the newest install first (the SA
    /// `lookup_v4` returns comes first). Stops at the first `true`; returns
    /// whether `f` accepted one. Allocates nothing.
    pub(crate) fn outbound_candidates_v4(&self, dst: u32, f: &mut dyn FnMut(SaId) -> bool) -> bool {
        let mut m = self.v4_lens.long_mask(dst >> 16);
        while m != 0 {
            let b = 127 - m.leading_zeros();
            let key = v4_key(dst, 17 + b as u8);
            if let Some(t) = self.v4.get(key) {
                if self.offer(PrefixKey::V4(key), *t, f) {
                    return true;
                }
            }
            m &= !(1u128 << b);
        }
        for &len in &self.v4_lens.short {
            let key = v4_key(dst, len);
            if let Some(t) = self.v4.get(key) {
                if self.offer(PrefixKey::V4(key), *t, f) {
                    return true;
                }
            }
        }
        false
    }

    /// [`Self::outbound_candidates_v4`] for IPv6.
    pub(crate) fn outbound_candidates_v6(&self, dst: u128, f: &mut dyn FnMut(SaId) -> bool) -> bool {
        let mut m = self.v6_lens.long_mask((dst >> 96) as u32);
        while m != 0 {
            let b = 127 - m.leading_zeros();
            let len = 33 + b as u8;
            if let Some(t) = self.v6_get(dst, len) {
                if self.offer(PrefixKey::v6(dst, len), *t, f) {
                    return true;
                }
            }
            m &= !(1u128 << b);
        }
        for &len in &self.v6_lens.short {
            if let Some(t) = self.v6_get(dst, len) {
                if self.offer(PrefixKey::v6(dst, len), *t, f) {
                    return true;
                }
            }
        }
        false
    }

    /// The SAs of one prefix, newest install first: the flat map's entry,
    /// then (during a rekey, or where several SAs share a prefix) the rest
    /// of its candidates in falling install order, picked without sorting
    /// into an allocation (there are a handful at most).
    fn offer(&self, k: PrefixKey, best: Target, f: &mut dyn FnMut(SaId) -> bool) -> bool {
        if let Some(id) = best.id() {
            if f(id) {
                return true;
            }
        }
        let Some(c) = self.candidates.get(&k) else { return false };
        let mut below = best.install_gen;
        loop {
            let next = c.iter().filter(|t| t.install_gen < below).max_by_key(|t| t.install_gen);
            let Some(t) = next else { return false };
            below = t.install_gen;
            if let Some(id) = t.id() {
                if f(id) {
                    return true;
                }
            }
        }
    }

    /// Prefetch the bucket of the first length `lookup_v6` will probe.
    #[inline]
    pub(crate) fn prefetch_v6(&self, dst: u128) {
        let m = self.v6_lens.long_mask((dst >> 96) as u32);
        let len = if m != 0 {
            33 + (127 - m.leading_zeros()) as u8
        } else {
            self.v6_lens.short.first().copied().unwrap_or(0)
        };
        if len == 128 {
            self.v6_host.prefetch(u128_words(dst));
        } else {
            self.v6.prefetch(v6_map_key(dst, len));
        }
    }

    /// Bytes of the lookup tables proper (maintenance maps excluded).
    pub(crate) fn lookup_bytes(&self) -> usize {
        self.spi.bytes() + self.v4.bytes() + self.v6.bytes() + self.v6_host.bytes()
    }

    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.spi.len(),
            self.groups.len(),
            self.v4.len(),
            self.v6.len() + self.v6_host.len(),
        )
    }
}

fn newest(c: &[Target]) -> Target {
    c.iter()
        .copied()
        .max_by_key(|x| x.install_gen)
        .unwrap_or(Target::NONE)
}

/// Flat-map key of a maintenance key: (is it a /128, key).
fn v6_flat(hi: u64, lo: u64, len1: u8) -> (bool, [u64; 2]) {
    let addr = (u128::from(hi) << 64) | u128::from(lo);
    let len = len1 - 1;
    if len == 128 {
        (true, u128_words(addr))
    } else {
        (false, v6_map_key(addr, len))
    }
}

#[inline]
fn u128_words(a: u128) -> [u64; 2] {
    [(a >> 64) as u64, a as u64]
}

/// A prefix shorter than /128 as one 16-byte key: the masked address with the
/// bit right after the prefix set. The marker's position encodes the length, so
/// (address, length) pairs map to distinct keys, and no key is zero.
#[inline]
fn v6_map_key(addr: u128, len: u8) -> [u64; 2] {
    let masked = if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    };
    u128_words(masked | (1u128 << (127 - u32::from(len))))
}

fn v4_top(key: u64) -> u32 {
    ((key >> 8) as u32) >> 16
}

/// Which prefix lengths can match an address, so a lookup probes only lengths
/// that exist near it (one probe, typically, instead of one per length in use).
///
/// Lengths up to `split` (16 for IPv4, 32 for IPv6) are listed for all addresses;
/// longer ones are kept per bucket of the address's top `split` bits as a bitmask
/// (bit `len - split - 1`). IPv4 buckets are exact (one per /16); IPv6 buckets hash
/// the top 32 bits, so two /32s may share a mask: a mask is then a superset, which
/// costs a probe, never a match.
struct LenHint {
    split: u8,
    hashed: bool,
    /// Lengths ≤ split in use, longest first.
    short: Vec<u8>,
    masks: Vec<u128>,
    /// Prefixes per (bucket, length); bucket u32::MAX holds the short lengths.
    counts: HashMap<(u32, u8), u32, FxBuild>,
}

const V6_HINT_BUCKETS_LOG: u32 = 14;

impl LenHint {
    fn new(split: u8, hashed: bool) -> Self {
        let buckets = if hashed {
            1 << V6_HINT_BUCKETS_LOG
        } else {
            1 << split
        };
        Self {
            split,
            hashed,
            short: Vec::new(),
            masks: vec![0; buckets],
            counts: HashMap::default(),
        }
    }

    #[inline]
    fn bucket(&self, top: u32) -> usize {
        if self.hashed {
            (top.wrapping_mul(0x9e37_79b1) >> (32 - V6_HINT_BUCKETS_LOG)) as usize
        } else {
            top as usize & (self.masks.len() - 1)
        }
    }

    #[inline]
    fn long_mask(&self, top: u32) -> u128 {
        self.masks[self.bucket(top)]
    }

    fn add(&mut self, top: u32, len: u8) {
        self.change(top, len, true);
    }

    fn remove(&mut self, top: u32, len: u8) {
        self.change(top, len, false);
    }

    fn change(&mut self, top: u32, len: u8, added: bool) {
        let long = len > self.split;
        let b = if long {
            self.bucket(top) as u32
        } else {
            u32::MAX
        };
        let n = self.counts.entry((b, len)).or_default();
        let was = *n;
        *n = if added {
            was + 1
        } else {
            was.saturating_sub(1)
        };
        let now = *n;
        if now == 0 {
            self.counts.remove(&(b, len));
        }
        match (was == 0, now == 0) {
            (true, false) if long => self.masks[b as usize] |= 1u128 << (len - self.split - 1),
            (false, true) if long => self.masks[b as usize] &= !(1u128 << (len - self.split - 1)),
            (true, false) => {
                self.short.push(len);
                self.short.sort_unstable_by(|a, b| b.cmp(a));
            }
            (false, true) => self.short.retain(|&x| x != len),
            _ => {}
        }
    }
}

/// Keys a slot was indexed under, kept so they can be removed after the slot's
/// record has been overwritten. Up to two prefixes (the served-prefix case) are
/// held inline: building the indexes of a million SAs allocates nothing per SA.
#[derive(Clone, Debug, Default)]
pub(crate) enum Keys {
    #[default]
    None,
    Inbound(InboundKey),
    Outbound {
        n: u8,
        inline: [PrefixKey; 2],
        /// Prefixes past the second (selector ranges split into many prefixes).
        extra: Option<Box<[PrefixKey]>>,
    },
}

/// Index a live record; returns the keys used.
pub(crate) fn index_record(
    ix: &mut Indexes,
    slot: u32,
    p: &SaParams,
    scratch: &mut Vec<PrefixKey>,
) -> Keys {
    let t = Target {
        slot,
        flags: 0,
        install_gen: p.install_gen,
    };
    match p.direction {
        Direction::INBOUND => {
            let k = InboundKey::of(p);
            ix.insert_inbound(&k, t);
            Keys::Inbound(k)
        }
        Direction::OUTBOUND => {
            outbound_keys(p, scratch);
            for &k in scratch.iter() {
                ix.insert_outbound(k, t);
            }
            let none = PrefixKey::V4(0);
            let inline = [
                scratch.first().copied().unwrap_or(none),
                scratch.get(1).copied().unwrap_or(none),
            ];
            let extra = (scratch.len() > 2).then(|| scratch[2..].into());
            Keys::Outbound {
                n: scratch.len().min(2) as u8,
                inline,
                extra,
            }
        }
        _ => Keys::None,
    }
}

pub(crate) fn unindex(ix: &mut Indexes, slot: u32, keys: &Keys) {
    match keys {
        Keys::None => {}
        Keys::Inbound(k) => ix.remove_inbound(k, slot),
        Keys::Outbound { n, inline, extra } => {
            for &k in inline[..usize::from(*n)]
                .iter()
                .chain(extra.iter().flat_map(|e| e.iter()))
            {
                ix.remove_outbound(k, slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_map_survives_churn_against_a_std_model() {
        let mut m = FlatMap::<u32>::with_capacity(64, 7);
        let mut model = std::collections::HashMap::new();
        let mut x: u64 = 1;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 300) as u32 + 1;
            if x & 0x100 == 0 {
                *m.get_mut_or_insert(k) = Target {
                    slot: step,
                    flags: 0,
                    install_gen: 1,
                };
                model.insert(k, step);
            } else {
                m.remove(k);
                model.remove(&k);
            }
            if step % 1000 == 0 {
                for k in 1..=301 {
                    assert_eq!(m.get(k).map(|t| t.slot), model.get(&k).copied(), "key {k}");
                }
                assert_eq!(m.len(), model.len());
            }
        }
    }

    struct Xs(u64);
    impl Xs {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random nested prefixes (some served by two SAs at once), inserted and
    /// removed; every lookup must equal the brute-force longest match, newest
    /// install first among equal prefixes.
    fn lpm_against_brute_force(v6: bool) {
        let mut ix = Indexes::new(64, 11);
        let lens: &[u8] = if v6 {
            &[0, 16, 32, 33, 48, 64, 100, 127, 128]
        } else {
            &[0, 8, 12, 16, 17, 20, 24, 28, 31, 32]
        };
        let bits = if v6 { 128 } else { 32 };
        let mut x = Xs(0xfeed);
        // Addresses from a narrow pool, so prefixes nest and collide.
        let addr = |x: &mut Xs| -> u128 {
            let low = u128::from(x.next() as u16 & 0x3ff);
            let hi = u128::from(x.next() % 3);
            if v6 {
                (0x2001_0db8u128 << 96) | (hi << 64) | low
            } else {
                (0x0a00_0000u128 | (hi << 16) | low) & 0xffff_ffff
            }
        };
        let key = |a: u128, l: u8| {
            if v6 {
                PrefixKey::v6(a, l)
            } else {
                PrefixKey::V4(v4_key(a as u32, l))
            }
        };
        let covers = |p: u128, l: u8, a: u128| l == 0 || (p ^ a) >> (bits - u32::from(l)) == 0;
        let mut live: Vec<(u128, u8, Target)> = Vec::new();
        for step in 0..4000u32 {
            if live.len() < 40 || x.next() & 3 != 0 {
                let (a, l) = if !live.is_empty() && x.next() & 7 == 0 {
                    let (a, l, _) = live[x.next() as usize % live.len()];
                    (a, l)
                } else {
                    (addr(&mut x), lens[x.next() as usize % lens.len()])
                };
                let t = Target {
                    slot: step,
                    flags: 0,
                    install_gen: u64::from(step) + 1,
                };
                ix.insert_outbound(key(a, l), t);
                live.push((a, l, t));
            } else {
                let (a, l, t) = live.swap_remove(x.next() as usize % live.len());
                ix.remove_outbound(key(a, l), t.slot);
            }
            for _ in 0..8 {
                let a = addr(&mut x);
                let want = live
                    .iter()
                    .filter(|(p, l, _)| covers(*p, *l, a))
                    .max_by_key(|(_, l, t)| (*l, t.install_gen))
                    .map(|(_, _, t)| t.slot);
                let got = if v6 {
                    ix.lookup_v6(a)
                } else {
                    ix.lookup_v4(a as u32)
                };
                assert_eq!(got.map(|id| id.slot), want, "step {step}, address {a:#x}");
                // Every SA covering the address, longest prefix first and
                // newest first within a prefix: what the SPD's SA search walks.
                let mut want_all: Vec<(u8, u64, u32)> = live
                    .iter()
                    .filter(|(p, l, _)| covers(*p, *l, a))
                    .map(|(_, l, t)| (*l, t.install_gen, t.slot))
                    .collect();
                want_all.sort_by_key(|w| std::cmp::Reverse((w.0, w.1)));
                let mut all = Vec::new();
                let mut take = |id: SaId| {
                    all.push(id.slot);
                    false
                };
                let accepted = if v6 {
                    ix.outbound_candidates_v6(a, &mut take)
                } else {
                    ix.outbound_candidates_v4(a as u32, &mut take)
                };
                assert!(!accepted);
                assert_eq!(all, want_all.iter().map(|w| w.2).collect::<Vec<_>>(), "step {step}, address {a:#x}");
                if !v6 {
                    // The span: other addresses equal under its mask (low
                    // bits flipped at random) have the same brute-force answer.
                    let (id, mask) = ix.lookup_v4_span(a as u32);
                    assert_eq!(id, got);
                    for _ in 0..4 {
                        let b = u128::from((a as u32 & mask) | (x.next() as u32 & !mask));
                        let want_b = live
                            .iter()
                            .filter(|(p, l, _)| covers(*p, *l, b))
                            .max_by_key(|(_, l, t)| (*l, t.install_gen))
                            .map(|(_, _, t)| t.slot);
                        assert_eq!(id.map(|id| id.slot), want_b, "step {step}, {a:#x} span {mask:#x}, {b:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn ipv4_longest_prefix_match_agrees_with_brute_force() {
        lpm_against_brute_force(false);
    }

    #[test]
    fn ipv6_longest_prefix_match_agrees_with_brute_force() {
        lpm_against_brute_force(true);
    }

    #[test]
    fn range_prefixes_cover_exactly_the_range() {
        let cases: &[(u128, u128, u32)] = &[
            (0, u32::MAX as u128, 32),
            (10, 10, 32),
            (0x0a00_0001, 0x0a00_00fe, 32),
            (0xc0a8_0000, 0xc0a8_ffff, 32),
            (5, 1000, 32),
            (0, u128::MAX, 128),
            (1, u128::MAX, 128),
            (0, u128::MAX - 1, 128),
        ];
        for &(s, e, bits) in cases {
            let mut out = Vec::new();
            range_prefixes(s, e, bits, &mut out);
            assert!(
                out.len() <= 2 * bits as usize,
                "{s:#x}-{e:#x}: {} prefixes",
                out.len()
            );
            // Blocks are disjoint, ascending and contiguous from s to e.
            let mut next = s;
            for (i, &(a, l)) in out.iter().enumerate() {
                assert_eq!(a, next, "block {i} of {s:#x}-{e:#x}");
                let size_log = bits - u32::from(l);
                if size_log == 128 {
                    assert_eq!((s, e), (0, u128::MAX));
                    continue;
                }
                let last = a + ((1u128 << size_log) - 1);
                assert!(last <= e);
                next = last.wrapping_add(1);
            }
            assert_eq!(next.wrapping_sub(1), e, "{s:#x}-{e:#x} ends at {e:#x}");
        }
    }
}
