//! Shared-memory SA table benchmark: lookups, install rate, footprint and reader
//! attach time at 1k, 100k and 1M SAs.
//!
//! A table of N SAs holds N/2 tunnels: an inbound SA (random SPI) and an outbound
//! SA serving one IPv4 and one IPv6 inner prefix (three in four are remote-access
//! hosts, /32 and /128; one in four are sites, /24 and /64), so the IPv4 and IPv6
//! longest-prefix tables each hold N/2 prefixes of two lengths.
//!
//! Lookups (criterion, `lookup_<N>/<kind>`; one iteration is one lookup, so
//! criterion's time is ns per lookup) draw keys uniformly from the installed
//! ones in a random order (2^22 keys, cycled), so at 1M SAs nearly every
//! lookup misses the cache: "spi", "lpm4", "lpm6" are one lookup after another
//! (the CPU still overlaps independent misses); "_b32" is a burst of 32 that
//! prefetches its buckets first, as a worker does with an rx burst. Every
//! lookup must hit, or we would be timing misses.
//!
//! Measured once per size, not by criterion (each is seconds and hundreds of
//! MB at 1M SAs, a one-off cost rather than a loop): "create" is the writer
//! creating the (empty) table: it allocates every page up front, so installs
//! never fault pages in; "install" is then measured alone; "attach" is a
//! reader mapping the full table and building its indexes.
//!
//! Run: `cargo bench -p esprit-bench --bench sa_table` (about 2 minutes);
//! `-- lookup_1000000` for one size; `-- --test` runs each lookup once.
//! The closing table gathers this run's figures and the goals at 1M SAs.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use sa_table::{
    Direction, IpPrefix, Mode, Reader, SaId, SaParams, TableConfig, TransformId, Writer,
    BYTES_PER_SA,
};

mod common;
use common::{cell, estimate_ns, per_item};

const SIZES: [u32; 3] = [1_000, 100_000, 1_000_000];
/// Keys drawn per lookup kind, cycled through by the benchmarks.
const LOOKUPS: usize = 1 << 22;
const BURST: usize = 32;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn tunnel(i: u32, rng: &mut Rng) -> (SaParams, SaParams, Ipv4Addr, Ipv6Addr) {
    let mut p = SaParams::zeroed();
    p.direction = Direction::INBOUND;
    p.mode = Mode::TUNNEL;
    p.transform = TransformId::AES_GCM_16_IIV;
    p.set_key(&rng.next().to_le_bytes().repeat(4), [1, 2, 3, 4]);
    p.set_outer(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::from(0xc633_0000 + i)),
    );
    p.initial_seq = 1;
    p.replay_window_pkts = 1024;
    p.cookie = u64::from(i);
    // Random high bits; the low 21 bits (i + 256 < 2^21) keep SPIs unique and
    // out of the reserved 0-255 range.
    p.spi = ((rng.next() as u32) & 0xffe0_0000) | (i + 256);
    let mut o = p;
    o.direction = Direction::OUTBOUND;
    o.spi = p.spi ^ 0x8000_0000;
    let site = i % 4 == 3;
    let (v4, v4len) = if site {
        (Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24)
    } else {
        (Ipv4Addr::from(0x0a00_0000 + i), 32)
    };
    let (v6, v6len) = if site {
        (
            Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64)),
            64,
        )
    } else {
        (
            Ipv6Addr::from((0x2001_0db9_u128 << 96) | u128::from(i)),
            128,
        )
    };
    o.served[0] = IpPrefix::new(IpAddr::V4(v4), v4len);
    o.served[1] = IpPrefix::new(IpAddr::V6(v6), v6len);
    o.served_count = 2;
    // Look up an address inside the prefix, not its base.
    let probe4 = if site {
        Ipv4Addr::from(u32::from(v4) | 0x2a)
    } else {
        v4
    };
    let probe6 = if site {
        Ipv6Addr::from(u128::from(v6) | 0x2a)
    } else {
        v6
    };
    (p, o, probe4, probe6)
}

/// A table of `n` SAs, its reader, the keys to look up, and the one-off costs.
struct Fixture {
    path: PathBuf,
    w: Option<Writer>,
    r: Reader,
    spi_keys: Vec<u32>,
    v4_keys: Vec<Ipv4Addr>,
    v6_keys: Vec<Ipv6Addr>,
    create: Duration,
    install: Duration,
    attach: Duration,
    table_bytes: u64,
}

impl Fixture {
    fn new(n: u32) -> Fixture {
        let path = PathBuf::from(format!(
            "/dev/shm/esprit-bench-{}/sa_table_{n}",
            std::process::id()
        ));
        let cfg = TableConfig {
            capacity: n,
            journal_len: 1 << 16,
            instance_id: 1,
            ..TableConfig::default()
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(n));
        let tunnels: Vec<_> = (0..n / 2).map(|i| tunnel(i, &mut rng)).collect();

        let t = Instant::now();
        let mut w = Writer::create(&path, &cfg).expect("create table");
        let create = t.elapsed();
        let t = Instant::now();
        for (i, o, _, _) in &tunnels {
            w.install(i).expect("install inbound");
            w.install(o).expect("install outbound");
        }
        let install = t.elapsed();
        let table_bytes = std::fs::metadata(&path).expect("stat").len();

        let t = Instant::now();
        let r = Reader::attach(&path).expect("attach");
        let attach = t.elapsed();
        let (spis, groups, v4, v6) = r.index_sizes();
        assert_eq!(
            (spis, groups, v4, v6),
            (n as usize / 2, 0, n as usize / 2, n as usize / 2),
            "index sizes"
        );

        let pick = |rng: &mut Rng| (rng.next() % u64::from(n / 2)) as usize;
        let spi_keys = (0..LOOKUPS).map(|_| tunnels[pick(&mut rng)].0.spi).collect();
        let v4_keys = (0..LOOKUPS).map(|_| tunnels[pick(&mut rng)].2).collect();
        let v6_keys = (0..LOOKUPS).map(|_| tunnels[pick(&mut rng)].3).collect();
        Fixture { path, w: Some(w), r, spi_keys, v4_keys, v6_keys, create, install, attach, table_bytes }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.w.take());
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(self.path.parent().expect("parent"));
    }
}

/// One lookup after another over `keys` from `*at` on (wrapping); every one
/// must hit. Criterion's iteration is one lookup.
fn single<K: Copy>(iters: u64, keys: &[K], at: &mut usize, lookup: impl Fn(K) -> Option<SaId>) -> Duration {
    let mut hits = 0u64;
    let d = per_item(iters, 1, |n| {
        for _ in 0..n {
            hits += u64::from(black_box(lookup(black_box(keys[*at]))).is_some());
            *at = (*at + 1) % keys.len();
        }
    });
    assert_eq!(hits, iters.max(1), "every lookup hits");
    d
}

/// Bursts of 32 keys from `*at` on (wrapping at a burst boundary: LOOKUPS
/// is a multiple of 32); every one must hit. Criterion's iteration is one
/// lookup (the time of the bursts scaled to the iterations asked).
fn burst<K: Copy>(iters: u64, keys: &[K], at: &mut usize, lookup: impl Fn(&[K], &mut [Option<SaId>; BURST])) -> Duration {
    let mut out = [None::<SaId>; BURST];
    let mut hits = 0u64;
    let mut bursts = 0u64;
    let d = per_item(iters, BURST as u64, |n| {
        for _ in 0..n {
            lookup(black_box(&keys[*at..*at + BURST]), &mut out);
            hits += out.iter().filter(|o| o.is_some()).count() as u64;
            *at = (*at + BURST) % keys.len();
        }
        bursts = n;
    });
    assert_eq!(hits, bursts * BURST as u64, "every lookup hits");
    d
}

fn lookups(c: &mut Criterion) {
    let started = SystemTime::now();
    let total = Instant::now();
    println!("sa_table: N SAs = N/2 inbound + N/2 outbound (each outbound serves an IPv4 and an IPv6 prefix)");
    println!("lookups: {LOOKUPS} uniformly random installed keys, ns per lookup; b32 = burst of {BURST} with prefetch");
    println!("slot + dataplane state = {BYTES_PER_SA} B per SA");
    let mut once = Vec::new();
    for n in SIZES {
        let f = Fixture::new(n);
        println!(
            "{n} SAs: create {:.1} ms, install {:.0} SA/s, attach {:.1} ms, table {:.0} B/SA, index {:.0} B/SA",
            f.create.as_secs_f64() * 1e3,
            f64::from(n) / f.install.as_secs_f64(),
            f.attach.as_secs_f64() * 1e3,
            f.table_bytes as f64 / f64::from(n),
            f.r.index_bytes() as f64 / f64::from(n),
        );
        let mut g = c.benchmark_group(format!("lookup_{n}"));
        let r = &f.r;
        let mut at = [0usize; 6];
        g.bench_function("spi", |b| b.iter_custom(|i| single(i, &f.spi_keys, &mut at[0], |k| r.lookup_inbound_spi(k))));
        g.bench_function("spi_b32", |b| b.iter_custom(|i| burst(i, &f.spi_keys, &mut at[1], |k, o| r.lookup_inbound_spi_burst(k, o))));
        g.bench_function("lpm4", |b| b.iter_custom(|i| single(i, &f.v4_keys, &mut at[2], |k| r.lookup_outbound_v4(k))));
        g.bench_function("lpm4_b32", |b| b.iter_custom(|i| burst(i, &f.v4_keys, &mut at[3], |k, o| r.lookup_outbound_v4_burst(k, o))));
        g.bench_function("lpm6", |b| b.iter_custom(|i| single(i, &f.v6_keys, &mut at[4], |k| r.lookup_outbound_v6(k))));
        g.bench_function("lpm6_b32", |b| b.iter_custom(|i| burst(i, &f.v6_keys, &mut at[5], |k, o| r.lookup_outbound_v6_burst(k, o))));
        g.finish();
        once.push((n, f.create, f64::from(n) / f.install.as_secs_f64(), f.table_bytes as f64 / f64::from(n), f.r.index_bytes() as f64 / f64::from(n), f.attach));
    }
    summary(&once, started);
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
}

/// This run's figures in one table (lookups as criterion estimated them,
/// "-" where criterion did not measure: a filter, `--test`), and the goals.
#[allow(clippy::type_complexity)]
fn summary(once: &[(u32, Duration, f64, f64, f64, Duration)], started: SystemTime) {
    let kinds = ["spi", "spi_b32", "lpm4", "lpm4_b32", "lpm6", "lpm6_b32"];
    let head = [
        "SAs", "SPI", "SPI b32", "LPM4", "LPM4 b32", "LPM6", "LPM6 b32", "install SA/s", "table B/SA", "index B/SA",
        "create ms", "attach ms",
    ];
    let line = |cells: &[String]| cells.iter().fold(String::from("|"), |l, c| l + &format!(" {c:>10} |"));
    println!();
    println!("{}", line(&head.map(String::from)));
    println!("{}", line(&head.map(|_| "-".repeat(10))));
    let mut big = None;
    for &(n, create, install_per_s, table_b, index_b, attach) in once {
        let ns: Vec<Option<f64>> = kinds.iter().map(|k| estimate_ns(&format!("lookup_{n}/{k}"), started)).collect();
        let mut cells = vec![n.to_string()];
        cells.extend(ns.iter().map(|v| cell(*v, 1)));
        cells.extend([
            format!("{install_per_s:.0}"),
            format!("{table_b:.0}"),
            format!("{index_b:.0}"),
            format!("{:.1}", create.as_secs_f64() * 1e3),
            format!("{:.1}", attach.as_secs_f64() * 1e3),
        ]);
        println!("{}", line(&cells));
        big = Some((ns, install_per_s, attach));
    }
    let Some((ns, install_per_s, attach)) = big else { return };
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    let (spi, spi_b, l4, l4b, l6, l6b) = (ns[0], ns[1], ns[2], ns[3], ns[4], ns[5]);
    println!();
    println!("goals at {} SAs:", SIZES[SIZES.len() - 1]);
    println!(
        "  inbound SPI lookup <= 30 ns: {} ns single, {} ns in bursts: {}",
        cell(spi, 1),
        cell(spi_b, 1),
        verdict(spi.map(|v| v <= 30.0))
    );
    println!(
        "  outbound LPM <= 30 ns: IPv4 {} / {} ns, IPv6 {} / {} ns (single / bursts): {}",
        cell(l4, 1),
        cell(l4b, 1),
        cell(l6, 1),
        cell(l6b, 1),
        verdict(l4.zip(l6).map(|(a, b)| a.max(b) <= 30.0))
    );
    println!("  install >= 500k SA/s: {install_per_s:.0}: {}", verdict(Some(install_per_s >= 500_000.0)));
    println!(
        "  attach + index build < 1 s: {:.0} ms: {}",
        attach.as_secs_f64() * 1e3,
        verdict(Some(attach < Duration::from_secs(1)))
    );
}

criterion_group! {
    name = benches;
    // Lookups are a few ns each: a short measurement gives tight intervals.
    config = common::criterion(Duration::from_millis(500), Duration::from_secs(2), 50);
    targets = lookups
}
criterion_main!(benches);
