//! ESP engine micro-benchmark: seal and open per suite and backend at 64,
//! 512, 1420 and 8192-octet inner packets, in bursts of 32, next to the bare
//! AEAD call on the same buffers. The difference is the ESP framing cost
//! (headers, trailer, sequence reservation, replay window, classification).
//!
//! Run: `cargo bench -p esprit-bench --bench esp` (about 30-60 s).
//! Open measurements include restoring the sealed packet (a memcpy) in both
//! columns, so it cancels out of the framing column.
//!
//! Then the replay window alone: check + mark per packet in bursts of 32,
//! with and without the per-burst save to an SA-table-like store (T and 64
//! atomic words, a release fence after T, as the dataplane's `TableWindow`).
//! `ESP_BENCH_ONLY=replay` runs only that.

use std::hint::black_box;
use std::time::{Duration, Instant};

use std::sync::atomic::{fence, AtomicU64, Ordering::Relaxed, Ordering::Release};

use esp::{
    open_burst, seal_burst, soft_aead, AeadJob, Backend, BatchAead, CryptoOp, DropReason,
    InboundSa, Mode, OutboundSa, PktBuf, ReplayStore, ReplayWindow, SaParams, Suite,
};

const BURST: usize = 32;
const SIZES: [usize; 4] = [64, 512, 1420, 8192];
const HEADROOM: usize = 64;
const TAILROOM: usize = 64;

fn measure_for() -> Duration {
    Duration::from_millis(
        std::env::var("ESP_BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200),
    )
}

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

/// Run `f` (one burst) repeatedly for the measurement time; ns per packet.
fn time_burst(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let budget = measure_for();
    let start = Instant::now();
    let mut bursts = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        bursts += 16;
    }
    start.elapsed().as_nanos() as f64 / (bursts * BURST as u64) as f64
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

struct Row {
    seal_esp: f64,
    seal_aead: f64,
    open_esp: f64,
    open_aead: f64,
}

fn bench_one(backend: Backend, suite: Suite, size: usize) -> Row {
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
    let mut pkts: Vec<PktBuf<Vec<u8>>> = (0..BURST).map(|_| fresh(vec![0u8; total])).collect();
    let mut verdicts = [Ok(()); BURST];

    // Seal: re-arm each packet (window and the 20-octet inner header, which
    // sealing encrypted), then one seal_burst.
    let seal_esp = time_burst(|| {
        for p in pkts.iter_mut() {
            let (b, _, _) =
                std::mem::replace(p, PktBuf::new(Vec::new(), 0, 0).expect("empty")).into_parts();
            *p = fresh(b);
        }
        seal_burst(&out, &aead, &mut pkts, &mut verdicts);
        black_box(&verdicts);
    });
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");

    // Re-arming alone, subtracted from the seal column so both columns
    // time the same work.
    let rearm = time_burst(|| {
        for p in pkts.iter_mut() {
            let (b, _, _) =
                std::mem::replace(p, PktBuf::new(Vec::new(), 0, 0).expect("empty")).into_parts();
            *p = fresh(b);
        }
        black_box(&pkts);
    });
    let seal_esp = seal_esp - rearm;

    // Bare AEAD over buffers of the same layout and the same text length.
    let mut scratch = fresh(vec![0u8; total]);
    let sop = out.prepare(&mut scratch, 1).expect("prepare").op;
    let mut raw: Vec<Vec<u8>> = (0..BURST).map(|_| scratch.data().to_vec()).collect();
    let seal_aead = time_burst(|| {
        let mut arr: [AeadJob<'_>; BURST] = core::array::from_fn(|_| AeadJob::default());
        for (j, b) in arr.iter_mut().zip(raw.iter_mut()) {
            *j = AeadJob {
                op: sop,
                buf: b,
                ok: false,
            };
        }
        aead.seal(&mut arr);
        black_box(&arr[0].ok);
    });

    // (sealing above re-armed the packets; seal them once more for open)
    for p in pkts.iter_mut() {
        let (b, _, _) =
            std::mem::replace(p, PktBuf::new(Vec::new(), 0, 0).expect("empty")).into_parts();
        *p = fresh(b);
    }
    seal_burst(&out, &aead, &mut pkts, &mut verdicts);
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");

    // Open: keep the sealed packets, restore them before each burst.
    let sealed: Vec<Vec<u8>> = pkts.iter().map(|p| p.data().to_vec()).collect();
    let mut inb = InboundSa::new(&prm).expect("sa");
    let mut work: Vec<PktBuf<Vec<u8>>> = sealed
        .iter()
        .map(|s| PktBuf::new(s.clone(), 0, s.len()).expect("fits"))
        .collect();
    let mut dv = [Err(DropReason::NotEsp); BURST];
    let open_esp = time_burst(|| {
        for (p, s) in work.iter_mut().zip(&sealed) {
            let (mut b, _, _) =
                std::mem::replace(p, PktBuf::new(Vec::new(), 0, 0).expect("empty")).into_parts();
            b.copy_from_slice(s);
            *p = PktBuf::new(b, 0, s.len()).expect("fits");
        }
        inb.replay_mut().set_top(0);
        open_burst(&mut inb, &aead, &mut work, &mut dv);
        black_box(&dv);
    });
    assert!(dv.iter().all(Result::is_ok), "{dv:?}");

    // Bare AEAD open of the same packets (restored the same way), each with
    // its own nonce and AAD.
    let iops: Vec<CryptoOp> = sealed.iter().map(|s| inb_prepare(&prm, s)).collect();
    let mut raw: Vec<Vec<u8>> = sealed.clone();
    let mut all_ok = true;
    let open_aead = time_burst(|| {
        for (b, s) in raw.iter_mut().zip(&sealed) {
            b.copy_from_slice(s);
        }
        let mut arr: [AeadJob<'_>; BURST] = core::array::from_fn(|_| AeadJob::default());
        for ((j, b), op) in arr.iter_mut().zip(raw.iter_mut()).zip(&iops) {
            *j = AeadJob {
                op: *op,
                buf: b,
                ok: false,
            };
        }
        aead.open(&mut arr);
        all_ok &= arr.iter().all(|j| j.ok);
    });
    assert!(all_ok, "bare open failed");
    Row {
        seal_esp,
        seal_aead,
        open_esp,
        open_aead,
    }
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

/// ns per packet of check + mark over bursts of 32 (in order, or each
/// burst's numbers reversed), with or without a save after each burst.
fn bench_replay(save: bool, reversed: bool) -> f64 {
    let img = AtomicImage { top: AtomicU64::new(0), words: std::array::from_fn(|_| AtomicU64::new(0)) };
    let mut w = ReplayWindow::new(1024, true);
    w.restore(&&img);
    let mut next = 1u64;
    time_burst(|| {
        for k in 0..BURST as u64 {
            let seq = if reversed { next + BURST as u64 - 1 - k } else { next + k };
            let s = w.check(black_box(seq as u32)).unwrap();
            w.mark(s).unwrap();
        }
        next += BURST as u64;
        if save {
            w.save(&mut &img);
        }
    })
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let started = Instant::now();
    if std::env::var("ESP_BENCH_ONLY").as_deref() != Ok("replay") {
        bench_table();
    }
    println!("replay window 1024, ESN, bursts of {BURST}; ns per packet");
    println!("{:<10} {:>10} {:>14} {:>6}", "order", "check+mark", "+ save/burst", "save");
    for reversed in [false, true] {
        let (a, b) = (bench_replay(false, reversed), bench_replay(true, reversed));
        println!("{:<10} {:>10.2} {:>14.2} {:>6.2}", if reversed { "reversed" } else { "in order" }, a, b, b - a);
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}

fn bench_table() {
    println!("ESP seal/open, bursts of {BURST}, tunnel mode IPv4, no ESN; ns per packet; GB/s of inner packet");
    println!(
        "{:<11} {:<21} {:>5} | {:>9} {:>9} {:>8} {:>6} | {:>9} {:>9} {:>8} {:>6}",
        "backend",
        "suite",
        "size",
        "seal_esp",
        "seal_aead",
        "framing",
        "GB/s",
        "open_esp",
        "open_aead",
        "framing",
        "GB/s"
    );
    let suites = [
        Suite::AES128_GCM_16,
        Suite::AES256_GCM_16,
        Suite::CHACHA20_POLY1305,
        Suite::AES128_GCM_16_IIV,
    ];
    for backend in Backend::ALL {
        for suite in suites {
            for size in SIZES {
                let r = bench_one(backend, suite, size);
                println!(
                    "{:<11} {:<21} {:>5} | {:>9.1} {:>9.1} {:>8.1} {:>6.2} | {:>9.1} {:>9.1} {:>8.1} {:>6.2}",
                    backend.name(),
                    suite.name(),
                    size,
                    r.seal_esp,
                    r.seal_aead,
                    r.seal_esp - r.seal_aead,
                    size as f64 / r.seal_esp,
                    r.open_esp,
                    r.open_aead,
                    r.open_esp - r.open_aead,
                    size as f64 / r.open_esp,
                );
            }
        }
    }
}
