//! Property tests: the replay window against a set model across the 2^32
//! boundary with ESN; a window saved and restored (cut at any store of any
//! save) never accepting what it had accepted; sequence reservation near
//! exhaustion; seal/open round trips for random sizes 0..9000 with every
//! suite, mode and backend, and identical bytes from every backend.

mod common;

use std::collections::BTreeSet;

use common::*;
use esp::{
    open_burst, seal_burst, Backend, DropReason, OutboundSa, PktBuf, ReplayStore, ReplayWindow, SaEvent, SeqCounter,
    Suite,
};
use proptest::prelude::*;

/// The reference: a set of accepted numbers and the highest one.
struct Model {
    seen: BTreeSet<u64>,
    top: u64,
    size: u64,
}

impl Model {
    fn accepts(&self, seq: u64) -> bool {
        // Anti-replay off (size 0) accepts duplicates too.
        seq != 0
            && (self.size == 0
                || (!self.seen.contains(&seq) && (seq > self.top || self.top - seq < self.size)))
    }
}

/// The SA table's replay storage (64 words), every store logged so a test
/// can cut a save short anywhere, as a process killed mid-save leaves it.
#[derive(Clone)]
struct Image {
    top: u64,
    words: [u64; 64],
}

enum Store {
    Top(u64),
    Word(usize, u64),
}

struct LoggedImage {
    now: Image,
    log: Vec<Store>,
}

impl ReplayStore for Image {
    const WORDS: usize = 64;
    fn load_top(&self) -> u64 {
        self.top
    }
    fn load_word(&self, i: usize) -> u64 {
        self.words[i]
    }
    fn store_top(&mut self, top: u64) {
        self.top = top;
    }
    fn store_word(&mut self, i: usize, bits: u64) {
        self.words[i] = bits;
    }
}

impl ReplayStore for LoggedImage {
    const WORDS: usize = 64;
    fn load_top(&self) -> u64 {
        self.now.top
    }
    fn load_word(&self, i: usize) -> u64 {
        self.now.words[i]
    }
    fn store_top(&mut self, top: u64) {
        self.now.top = top;
        self.log.push(Store::Top(top));
    }
    fn store_word(&mut self, i: usize, bits: u64) {
        self.now.words[i] = bits;
        self.log.push(Store::Word(i, bits));
    }
}

const WINDOWS: [u32; 9] = [0, 1, 32, 64, 200, 1024, 4032, 4096, 8192];

/// Every order of six sequence numbers (two in one block, a neighbour
/// block, one 80 blocks on, one far behind it, one just past 2^32 with
/// ESN), every split of that order into bursts, every cut of the stores
/// of the saves, restored with a window of 64, 200 or 4096: no number
/// accepted before the last complete save is accepted again. Exhaustive
/// where the property test above samples.
#[test]
fn every_order_burst_split_and_cut_of_six_packets_restores_safely() {
    fn permutations(v: &[u64]) -> Vec<Vec<u64>> {
        if v.len() <= 1 {
            return vec![v.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..v.len() {
            let mut rest = v.to_vec();
            let x = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }
    let base = (1u64 << 32) - 130;
    let seqs = [base + 1, base + 2, base + 70, base + 70 + 64 * 80, base + 64 * 80 - 20, (1 << 32) + 5];
    let mut restores = 0u64;
    for size in [64u32, 200, 4096] {
        for order in permutations(&seqs) {
            // Bit i of `split`: a burst ends after packet i.
            for split in 0u32..1 << (order.len() - 1) {
                let first = Image { top: base, words: [!0; 64] };
                let mut img = LoggedImage { now: first.clone(), log: Vec::new() };
                let mut w = ReplayWindow::new(size, true);
                w.restore(&img);
                let (mut accepted, mut saves) = (Vec::new(), vec![(0usize, 0usize)]);
                for (i, &seq) in order.iter().enumerate() {
                    if let Ok(x) = w.check(seq as u32) {
                        if x == seq && w.mark(seq).is_ok() {
                            accepted.push(seq);
                        }
                    }
                    if i + 1 == order.len() || split >> i & 1 == 1 {
                        w.save(&mut img);
                        saves.push((img.log.len(), accepted.len()));
                    }
                }
                for cut in 0..=img.log.len() {
                    let mut left = first.clone();
                    for st in &img.log[..cut] {
                        match *st {
                            Store::Top(t) => left.store_top(t),
                            Store::Word(i, b) => left.store_word(i, b),
                        }
                    }
                    let sent = &accepted[..saves.iter().rev().find(|(n, _)| *n <= cut).unwrap().1];
                    for restored_size in [64u32, 200, 4096] {
                        let mut r = ReplayWindow::new(restored_size, true);
                        r.restore(&left);
                        restores += 1;
                        for &s in sent {
                            assert!(
                                !matches!(r.check(s as u32), Ok(x) if x == s),
                                "{s:#x} accepted again: order {order:x?}, split {split:b}, cut {cut}, {size} -> {restored_size}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(restores > 100_000, "explored only {restores} restores");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// An SA's window lives through bursts: packets in any order, far jumps
    /// and far-behind ones, a save after each burst (what the dataplane does
    /// before the burst is sent). Cut the stores anywhere (a SIGKILL
    /// mid-save) and restore, with the same window size or another (an SA
    /// updated while the dataplane was down): no number accepted before the
    /// last complete save is accepted again. Restored from a complete save,
    /// a window of at most 4033 packets is the same window as the saved one.
    #[test]
    fn a_saved_window_cut_at_any_store_never_accepts_an_accepted_number(
        size in proptest::sample::select(WINDOWS.to_vec()),
        other_size in proptest::sample::select(WINDOWS.to_vec()),
        esn in any::<bool>(),
        start in prop_oneof![Just(0u64), Just((1u64 << 32) - 700), 1u64..1 << 40],
        bursts in proptest::collection::vec(
            prop_oneof![
                8 => proptest::collection::vec(prop_oneof![8 => -40i64..100, 1 => -9000i64..0, 1 => 0i64..20_000], 1..33),
                // A burst that is one far jump.
                1 => proptest::collection::vec(64i64..300_000, 1..2),
            ],
            1..60,
        ),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 8),
    ) {
        let start = if esn { start } else { start & 0x7fff_ffff };
        // The installer's image: T = start, nothing seen.
        let first = Image { top: start, words: [0; 64] };
        let mut img = LoggedImage { now: first.clone(), log: Vec::new() };
        let mut w = ReplayWindow::new(size, esn);
        w.restore(&img);
        let mut cursor = start;
        // After each complete save: the stores so far and the numbers
        // accepted up to that burst.
        let mut saves: Vec<(usize, usize)> = vec![(0, 0)];
        let mut accepted = Vec::new();
        for burst in &bursts {
            for &d in burst {
                let seq = (cursor as i64 + d).max(1) as u64;
                let seq = if esn { seq } else { seq.min(u64::from(u32::MAX)) };
                cursor = cursor.max(seq);
                if let Ok(inferred) = w.check(seq as u32) {
                    // Only the true number authenticates.
                    if inferred == seq && w.mark(seq).is_ok() {
                        accepted.push(seq);
                    }
                }
            }
            w.save(&mut img);
            saves.push((img.log.len(), accepted.len()));
            if size <= 4033 {
                // A clean restore is the same window.
                let mut r = ReplayWindow::new(size, esn);
                r.restore(&img.now);
                let t = w.top();
                for s in t.saturating_sub(u64::from(size) + 70)..t + 70 {
                    prop_assert_eq!(r.check(s as u32), w.check(s as u32), "{:#x} after a clean restore (T {:#x})", s, t);
                }
            }
        }
        for cut in cuts {
            let cut = cut.index(img.log.len() + 1);
            let mut left = first.clone();
            for st in &img.log[..cut] {
                match *st {
                    Store::Top(t) => left.store_top(t),
                    Store::Word(i, b) => left.store_word(i, b),
                }
            }
            // What had been sent: everything up to the last save complete at the cut.
            let delivered = &accepted[..saves.iter().rev().find(|(n, _)| *n <= cut).unwrap().1];
            for restored_size in [size, other_size] {
                if restored_size == 0 {
                    continue; // anti-replay off promises nothing
                }
                let mut r = ReplayWindow::new(restored_size, esn);
                r.restore(&left);
                for &s in delivered {
                    prop_assert!(
                        !matches!(r.check(s as u32), Ok(x) if x == s),
                        "{s:#x} accepted again (size {size} restored as {restored_size}, cut {cut} of {}, T {:#x})",
                        img.log.len(), r.top()
                    );
                }
            }
        }
    }

    /// Packets arrive in any order around 2^32 (or from a random start);
    /// only the low 32 bits travel. Whenever the true SN is not left of the
    /// window, the window infers it exactly and accepts it iff the model
    /// does. Left of the window it is never accepted as that SN (the ICV
    /// would fail on the wrongly inferred high half). Marking happens only
    /// for packets that "authenticate" (inferred == true SN).
    #[test]
    fn replay_window_matches_a_set_model_across_the_esn_wrap(
        size in prop_oneof![Just(0u32), Just(32), Just(64), 1u32..200, Just(1024), Just(4096)],
        start in prop_oneof![Just((1u64 << 32) - 300), Just(1u64 << 32), (1u64 << 33) - 5000..(1u64 << 33) + 5000, 1u64..1000],
        steps in proptest::collection::vec(-6000i64..600, 1..400),
    ) {
        let mut w = ReplayWindow::new(size, true);
        let mut m = Model { seen: BTreeSet::new(), top: 0, size: u64::from(size) };
        w.set_top(start);
        m.top = start;
        let mut cursor = start;
        for d in steps {
            // Mostly forward with jitter, sometimes far back.
            let seq = (cursor as i64 + d).max(1) as u64;
            if d > 0 { cursor = cursor.max(seq); }
            let low = seq as u32;
            let in_range = size == 0 || seq + u64::from(size) > m.top;
            match w.check(low) {
                Ok(inferred) if inferred == seq => {
                    prop_assert!(m.accepts(seq), "window accepted {seq:#x} the model rejects (top {:#x})", m.top);
                    prop_assert!(w.mark(seq).is_ok());
                    m.seen.insert(seq);
                    m.top = m.top.max(seq);
                }
                Ok(inferred) => {
                    // Wrong epoch: only allowed when the SN is left of the window
                    // (or, with anti-replay off, more than 2^31 away).
                    prop_assert!(!in_range || size == 0, "inferred {inferred:#x} for {seq:#x} (top {:#x})", m.top);
                }
                Err(r) => {
                    prop_assert!(!in_range || !m.accepts(seq), "rejected {seq:#x} ({r}) the model accepts");
                    prop_assert!(matches!(r, DropReason::Replayed | DropReason::OutsideWindow));
                }
            }
            prop_assert_eq!(w.top(), m.top);
        }
    }

    /// Reservations hand out contiguous, never-repeating numbers, never pass
    /// the limit, and exactly one of them reports exhaustion.
    #[test]
    fn sequence_reservation_never_wraps_near_exhaustion(
        esn in any::<bool>(),
        left in 0u64..300,
        bursts in proptest::collection::vec(0u32..80, 1..40),
    ) {
        let limit = if esn { u64::MAX } else { u64::from(u32::MAX) };
        let c = SeqCounter::new(limit - left, limit, u64::MAX);
        // u128 so the model itself cannot overflow at 2^64.
        let mut next = u128::from(limit - left) + 1;
        let mut exhausted = 0;
        let mut wanted = 0u64;
        for n in bursts {
            let g = c.reserve(n);
            wanted += u64::from(n);
            prop_assert!(g.count <= n);
            if g.count > 0 {
                prop_assert_eq!(u128::from(g.first), next);
                next = u128::from(g.first) + u128::from(g.count);
                prop_assert!(next - 1 <= u128::from(limit));
            }
            if g.event == Some(SaEvent::SeqExhausted) { exhausted += 1; }
        }
        let granted = (next - (u128::from(limit - left) + 1)) as u64;
        prop_assert_eq!(granted, wanted.min(left));
        prop_assert_eq!(exhausted, u32::from(left > 0 && wanted >= left));
        prop_assert_eq!(c.is_exhausted(), wanted >= left);
    }

    /// Any size 0..9000, any suite, ESN, mode, UDP and backend round-trips,
    /// and every backend produces the same bytes.
    #[test]
    fn seal_open_round_trips_random_sizes_with_every_suite(
        len in 0usize..9000,
        suite in proptest::sample::select(Suite::ALL.to_vec()),
        esn in any::<bool>(),
        udp in any::<bool>(),
        mode in prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        v6_inner in any::<bool>(),
        initial_seq in prop_oneof![Just(0u64), Just((1u64 << 32) - 2), 0u64..1 << 40],
    ) {
        let mut prm = params(suite, esn, mode, udp);
        if !esn { prm.initial_seq = initial_seq & 0xffff_fff0; } else { prm.initial_seq = initial_seq; }
        let inner = if v6_inner { udp_v6(len, len % 2 == 1) } else { udp_v4(len) };
        let mut outputs = Vec::new();
        for backend in Backend::ALL {
            let mut p = pair(&prm, backend);
            p.inb.replay_mut().set_top(prm.initial_seq);
            let mut pkts = [PktBuf::from_data(&inner, 128, 64)];
            let mut v = [Err(DropReason::NotEsp)];
            seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
            prop_assert_eq!(v[0], Ok(()));
            outputs.push(pkts[0].data().to_vec());
            let mut dv = [Err(DropReason::NotEsp)];
            open_burst(&mut p.inb, &p.open, &mut pkts, &mut dv);
            prop_assert_eq!(dv[0].map(|d| d.seq), Ok(prm.initial_seq + 1));
            prop_assert_eq!(pkts[0].data(), &inner[..]);
        }
        prop_assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    }

    /// Decapsulating arbitrary bytes never panics and never succeeds.
    #[test]
    fn random_bytes_never_decapsulate(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut p = pair(&params(Suite::AES128_GCM_16, true, Some(false), true), Backend::FASTEST);
        let mut pkts = [PktBuf::from_data(&bytes, 0, 0)];
        let mut v = [Ok(esp::Decapsulated { seq: 0, next_header: esp_wire::IpProtocol(0) })];
        open_burst(&mut p.inb, &p.open, &mut pkts, &mut v);
        prop_assert!(v[0].is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// The IPv4-tunnel fast path writes exactly the octets `prepare` writes
    /// (outer header, ESP header, IV, padding, trailer), over the same
    /// range, with the same nonce, AAD and text; it declines (buffer
    /// untouched) whatever is not an option-less IPv4 packet on a fast SA,
    /// and `prepare` is then the one that frames or refuses it.
    #[test]
    fn the_ipv4_tunnel_fast_path_frames_exactly_as_prepare(
        suite in prop_oneof![Just(Suite::AES128_GCM_16), Just(Suite::AES256_GCM_16), Just(Suite::CHACHA20_POLY1305), Just(Suite::AES128_GCM_16_IIV)],
        esn in any::<bool>(),
        outer_v6 in prop_oneof![4 => Just(false), 1 => Just(true)],
        udp in prop_oneof![4 => Just(false), 1 => Just(true)],
        inner in prop_oneof![8 => Just(0u8), 1 => Just(1), 1 => Just(2), 1 => Just(3)],
        payload in 0usize..1600,
        frame_pad in 0usize..8,
        tos in any::<u8>(),
        seq in prop_oneof![1u64..1000, (1u64 << 32) - 3..(1u64 << 32) + 3, Just(u64::from(u32::MAX))],
        headroom in prop_oneof![4 => Just(128usize), 1 => 0usize..64],
    ) {
        let p = params(suite, esn, Some(outer_v6), udp);
        let sa = OutboundSa::new(&p).unwrap();
        let expect_fast = !outer_v6 && !udp && !suite.iiv;
        prop_assert_eq!(sa.fast_v4(), expect_fast);
        // 0: IPv4, 1: IPv4 with options, 2: IPv6, 3: IPv4 whose total length exceeds the frame.
        let mut pkt = match inner {
            2 => udp_v6(payload, false),
            _ => udp_v4(payload),
        };
        pkt[1] = if inner == 2 { pkt[1] } else { tos };
        if inner == 1 {
            // IHL 6: one 4-octet option (NOPs), lengths adjusted.
            pkt.splice(20..20, [1u8, 1, 1, 1]);
            pkt[0] = 0x46;
            let total = pkt.len() as u16;
            pkt[2..4].copy_from_slice(&total.to_be_bytes());
        }
        let len = pkt.len() + frame_pad;
        if inner == 3 {
            let total = (len + 1) as u16;
            pkt[2..4].copy_from_slice(&total.to_be_bytes());
        }
        let mut buf = vec![0xeeu8; headroom + len + 64];
        buf[headroom..headroom + pkt.len()].copy_from_slice(&pkt);
        let orig = buf.clone();

        let mut general = buf.clone();
        let mut pb = PktBuf::new(&mut general[..], headroom, len).unwrap();
        let r = sa.prepare(&mut pb, seq);
        let (_, g_start, g_len) = pb.into_parts();

        match sa.prepare_v4_fast(&mut buf, headroom, len, seq) {
            Some(f) => {
                prop_assert!(expect_fast && inner == 0);
                let op = r.expect("prepare frames what the fast path frames");
                prop_assert_eq!((f.start, f.len), (g_start, g_len));
                prop_assert_eq!(&buf[..], &general[..], "identical octets");
                prop_assert_eq!(op.op.text_off as usize, f.text_off);
                prop_assert_eq!(op.op.text_len as usize, f.text_len);
                let (nonce, aad) = sa.nonce_aad(seq);
                prop_assert_eq!(nonce, op.op.nonce);
                prop_assert_eq!(&aad, op.op.aad_array());
                prop_assert!(!op.needs_finish());
            }
            None => {
                prop_assert_eq!(&buf[..], &orig[..], "a declined packet is left untouched");
                // An ordinary IPv4 packet on a fast SA is declined only
                // where prepare refuses it too (no room).
                if expect_fast && inner == 0 {
                    prop_assert!(r.is_err(), "declined, yet prepare framed it: {:?}", r);
                }
            }
        }
    }
}
