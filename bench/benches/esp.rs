//! ESP engine micro-benchmark: seal and open per suite and backend at 64,
//! 512, 1420 and 8192-octet inner packets, in bursts of 32, next to the bare
//! AEAD call on the same buffers. The difference is the ESP framing cost
//! (headers, trailer, sequence reservation, replay window, classification).
//!
//! Criterion ids: `<backend>_<suite>/<seal_esp|seal_aead|open_esp|open_aead>/<size>`.
//! One iteration is one packet (bursts of 32, their time scaled), so
//! criterion's time is ns per packet and its throughput GB/s of inner packet.
//! Sealing re-arms each packet before the burst (its window and the 20-octet
//! inner header, which sealing encrypted); the re-arming alone is timed over
//! the same number of bursts and subtracted, so both seal columns time the
//! same work. Open measurements include restoring the sealed packet (a
//! memcpy) in both columns, so it cancels out of the framing column.
//!
//! Then the replay window alone (`replay/<in_order|reversed>[_save]`):
//! check + mark per packet in bursts of 32, with and without the per-burst
//! save to an SA-table-like store (T and 64 atomic words, a release fence
//! after T, as the dataplane's `TableWindow`).
//!
//! Run: `cargo bench -p esprit-bench --bench esp` (about 2 minutes; the
//! closing tables gather this run's figures with the framing and save
//! columns); `-- replay` for the replay window only, `-- ring_aes128gcm16/`
//! for one suite, `-- --test` to run each benchmark once.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use std::sync::atomic::{fence, AtomicU64, Ordering::Relaxed, Ordering::Release};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use esp::{
    open_burst, seal_burst, soft_aead, AeadJob, Backend, BatchAead, CryptoOp, DropReason,
    InboundSa, Mode, OutboundSa, PktBuf, ReplayStore, ReplayWindow, SaParams, Suite,
};

mod common;
use common::{cell, estimate_ns, per_item};

const BURST: usize = 32;
const SIZES: [usize; 4] = [64, 512, 1420, 8192];
const HEADROOM: usize = 64;
const TAILROOM: usize = 64;
const SUITES: [Suite; 4] = [
    Suite::AES128_GCM_16,
    Suite::AES256_GCM_16,
    Suite::CHACHA20_POLY1305,
    Suite::AES128_GCM_16_IIV,
];
const COLUMNS: [&str; 4] = ["seal_esp", "seal_aead", "open_esp", "open_aead"];

/// An IPv4/UDP packet of `size` octets in total.
fn inner_header(size: usize) -> [u8; 20] {
    let mut h = [
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 2, 0, 1,
    ];
    h[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h
}

fn params(suite: Suite) -> SaParams {
    let keymat: Vec<u8> = (0..suite.keymat_len() as u8).collect();
    let mut p = SaParams::new(0x1000_0001, suite, &keymat).expect("keymat");
    p.mode = Mode::Tunnel {
        src: [192, 0, 2, 1].into(),
        dst: [198, 51, 100, 2].into(),
    };
    p.replay_window = 1024;
    p
}

/// Seal, bare AEAD seal, open and bare AEAD open of one backend, suite and
/// size, as criterion benchmarks in the group `<backend>_<suite>`.
fn bench_one(c: &mut Criterion, backend: Backend, suite: Suite, size: usize) {
    let prm = params(suite);
    let out = OutboundSa::new(&prm).expect("sa");
    let aead = soft_aead(backend, &prm).expect("aead");
    let hdr = inner_header(size);
    let total = HEADROOM + size + TAILROOM;
    let fresh = |buf: Vec<u8>| {
        let mut b = buf;
        b[HEADROOM..HEADROOM + 20].copy_from_slice(&hdr);
        PktBuf::new(b, HEADROOM, size).expect("room")
    };
    let rearm = |pkts: &mut Vec<PktBuf<Vec<u8>>>| {
        for p in pkts.iter_mut() {
            let (b, _, _) =
                std::mem::replace(p, PktBuf::new(Vec::new(), 0, 0).expect("empty")).into_parts();
            *p = fresh(b);
        }
    };
    let mut pkts: Vec<PktBuf<Vec<u8>>> = (0..BURST).map(|_| fresh(vec![0u8; total])).collect();
    let mut verdicts = [Ok(()); BURST];
    let mut g = c.benchmark_group(format!("{}_{}", backend.name(), suite.name()));
    g.throughput(Throughput::BytesDecimal(size as u64));

    // Seal: re-arm, then one seal_burst; minus the re-arming alone.
    g.bench_function(BenchmarkId::new("seal_esp", size), |b| {
        b.iter_custom(|iters| {
            let both = per_item(iters, BURST as u64, |n| {
                for _ in 0..n {
                    rearm(&mut pkts);
                    seal_burst(&out, &aead, &mut pkts, &mut verdicts);
                    black_box(&verdicts);
                }
            });
            let alone = per_item(iters, BURST as u64, |n| {
                for _ in 0..n {
                    rearm(&mut pkts);
                    black_box(&pkts);
                }
            });
            assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
            both.saturating_sub(alone)
        })
    });

    // Bare AEAD over buffers of the same layout and the same text length.
    let mut scratch = fresh(vec![0u8; total]);
    let sop = out.prepare(&mut scratch, 1).expect("prepare").op;
    let mut raw: Vec<Vec<u8>> = (0..BURST).map(|_| scratch.data().to_vec()).collect();
    g.bench_function(BenchmarkId::new("seal_aead", size), |b| {
        b.iter_custom(|iters| {
            per_item(iters, BURST as u64, |n| {
                for _ in 0..n {
                    let mut arr: [AeadJob<'_>; BURST] = core::array::from_fn(|_| AeadJob::default());
                    for (j, b) in arr.iter_mut().zip(raw.iter_mut()) {
                        *j = AeadJob { op: sop, buf: b, ok: false };
                    }
                    aead.seal(&mut arr);
                    black_box(&arr[0].ok);
                }
            })
        })
    });

    // Sealed packets to open, restored before each burst.
    rearm(&mut pkts);
    seal_burst(&out, &aead, &mut pkts, &mut verdicts);
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
    let sealed: Vec<Vec<u8>> = pkts.iter().map(|p| p.data().to_vec()).collect();
    let mut inb = InboundSa::new(&prm).expect("sa");
    let mut work: Vec<PktBuf<Vec<u8>>> = sealed
        .iter()
        .map(|s| PktBuf::new(s.clone(), 0, s.len()).expect("fits"))
        .collect();
    let mut dv = [Err(DropReason::NotEsp); BURST];
    g.bench_function(BenchmarkId::new("open_esp", size), |b| {
        b.iter_custom(|iters| {
            let d = per_item(iters, BURST as u64, |n| {
                for _ in 0..n {
                    for (p, s) in work.iter_mut().zip(&sealed) {
                        let (mut b, _, _) =
                            std::mem::replace(p, PktBuf::new(Vec::new(), 0, 0).expect("empty")).into_parts();
                        b.copy_from_slice(s);
                        *p = PktBuf::new(b, 0, s.len()).expect("fits");
                    }
                    inb.replay_mut().set_top(0);
                    open_burst(&mut inb, &aead, &mut work, &mut dv);
                    black_box(&dv);
                }
            });
            assert!(dv.iter().all(Result::is_ok), "{dv:?}");
            d
        })
    });

    // Bare AEAD open of the same packets (restored the same way), each with
    // its own nonce and AAD.
    let iops: Vec<CryptoOp> = sealed.iter().map(|s| inb_prepare(&prm, s)).collect();
    let mut raw: Vec<Vec<u8>> = sealed.clone();
    let mut all_ok = true;
    g.bench_function(BenchmarkId::new("open_aead", size), |b| {
        b.iter_custom(|iters| {
            let d = per_item(iters, BURST as u64, |n| {
                for _ in 0..n {
                    for (b, s) in raw.iter_mut().zip(&sealed) {
                        b.copy_from_slice(s);
                    }
                    let mut arr: [AeadJob<'_>; BURST] = core::array::from_fn(|_| AeadJob::default());
                    for ((j, b), op) in arr.iter_mut().zip(raw.iter_mut()).zip(&iops) {
                        *j = AeadJob { op: *op, buf: b, ok: false };
                    }
                    aead.open(&mut arr);
                    all_ok &= arr.iter().all(|j| j.ok);
                }
            });
            assert!(all_ok, "bare open failed");
            d
        })
    });
    g.finish();
}

/// The AEAD op a fresh inbound SA prepares for a sealed packet.
fn inb_prepare(prm: &SaParams, pkt: &[u8]) -> CryptoOp {
    let loc = esp::classify(pkt).expect("esp");
    InboundSa::new(prm)
        .expect("sa")
        .prepare(pkt, &loc)
        .expect("prepare")
        .op
}

/// The SA table's replay storage, as the dataplane writes it.
struct AtomicImage {
    top: AtomicU64,
    words: [AtomicU64; 64],
}

impl ReplayStore for &AtomicImage {
    const WORDS: usize = 64;
    fn load_top(&self) -> u64 {
        self.top.load(Relaxed)
    }
    fn load_word(&self, i: usize) -> u64 {
        self.words[i].load(Relaxed)
    }
    fn store_top(&mut self, top: u64) {
        self.top.store(top, Relaxed);
        fence(Release);
    }
    fn store_word(&mut self, i: usize, bits: u64) {
        self.words[i].store(bits, Relaxed);
    }
}

/// Check + mark over bursts of 32 (in order, or each burst's numbers
/// reversed), with or without a save after each burst; one iteration is
/// one packet.
fn bench_replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(1));
    for reversed in [false, true] {
        for save in [false, true] {
            let img = AtomicImage { top: AtomicU64::new(0), words: std::array::from_fn(|_| AtomicU64::new(0)) };
            let mut w = ReplayWindow::new(1024, true);
            w.restore(&&img);
            let mut next = 1u64;
            let name = format!("{}{}", if reversed { "reversed" } else { "in_order" }, if save { "_save" } else { "" });
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    per_item(iters, BURST as u64, |n| {
                        for _ in 0..n {
                            for k in 0..BURST as u64 {
                                let seq = if reversed { next + BURST as u64 - 1 - k } else { next + k };
                                let s = w.check(black_box(seq as u32)).unwrap();
                                w.mark(s).unwrap();
                            }
                            next += BURST as u64;
                            if save {
                                w.save(&mut &img);
                            }
                        }
                    })
                })
            });
        }
    }
    g.finish();
}

fn esp_table(c: &mut Criterion) {
    for backend in Backend::ALL {
        for suite in SUITES {
            for size in SIZES {
                bench_one(c, backend, suite, size);
            }
        }
    }
}

/// This run's figures as one table each (criterion's estimates; "-" where
/// it did not measure: a filter, `--test`), with the derived columns:
/// framing = ESP - bare AEAD, and the cost of the save per packet.
fn summary(started: SystemTime) {
    let est = |id: String| estimate_ns(&id, started);
    let mut any = false;
    let mut rows = Vec::new();
    for backend in Backend::ALL {
        for suite in SUITES {
            for size in SIZES {
                let g = format!("{}_{}", backend.name(), suite.name());
                let v = COLUMNS.map(|col| est(format!("{g}/{col}/{size}")));
                any |= v.iter().any(Option::is_some);
                rows.push((backend, suite, size, v));
            }
        }
    }
    let replay = ["in_order", "in_order_save", "reversed", "reversed_save"].map(|r| est(format!("replay/{r}")));
    if !any && replay.iter().all(Option::is_none) {
        println!("(no figures measured in this run: nothing to sum up)");
        return;
    }
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let gbs = |size: usize, ns: Option<f64>| ns.map(|ns| size as f64 / ns);
    println!();
    println!("ESP seal/open, bursts of {BURST}, tunnel mode IPv4, no ESN; ns per packet; GB/s of inner packet");
    println!(
        "{:<11} {:<21} {:>5} | {:>9} {:>9} {:>8} {:>6} | {:>9} {:>9} {:>8} {:>6}",
        "backend", "suite", "size", "seal_esp", "seal_aead", "framing", "GB/s", "open_esp", "open_aead", "framing", "GB/s"
    );
    for (backend, suite, size, [se, sa, oe, oa]) in rows {
        if [se, sa, oe, oa].iter().all(Option::is_none) {
            continue;
        }
        println!(
            "{:<11} {:<21} {:>5} | {:>9} {:>9} {:>8} {:>6} | {:>9} {:>9} {:>8} {:>6}",
            backend.name(),
            suite.name(),
            size,
            cell(se, 1),
            cell(sa, 1),
            cell(diff(se, sa), 1),
            cell(gbs(size, se), 2),
            cell(oe, 1),
            cell(oa, 1),
            cell(diff(oe, oa), 1),
            cell(gbs(size, oe), 2),
        );
    }
    println!();
    println!("replay window 1024, ESN, bursts of {BURST}; ns per packet");
    println!("{:<10} {:>10} {:>14} {:>6}", "order", "check+mark", "+ save/burst", "save");
    for (name, a, b) in [("in order", replay[0], replay[1]), ("reversed", replay[2], replay[3])] {
        println!("{:<10} {:>10} {:>14} {:>6}", name, cell(a, 2), cell(b, 2), cell(diff(b, a), 2));
    }
}

fn all(c: &mut Criterion) {
    let started = SystemTime::now();
    let t = Instant::now();
    esp_table(c);
    bench_replay(c);
    summary(started);
    println!("done in {:.1} s", t.elapsed().as_secs_f64());
}

criterion_group! {
    name = benches;
    // 136 rows: a short warm-up and measurement each (the old hand-made
    // loop timed 200 ms per figure); `-- --measurement-time S` for more.
    config = common::criterion(Duration::from_millis(100), Duration::from_millis(400), 20);
    targets = all
}
criterion_main!(benches);
