//! Shared-memory SA table benchmark: lookups, install rate, footprint and reader
//! attach time at 1k, 100k and 1M SAs.
//!
//! A table of N SAs holds N/2 tunnels: an inbound SA (random SPI) and an outbound
//! SA serving one IPv4 and one IPv6 inner prefix (three in four are remote-access
//! hosts, /32 and /128; one in four are sites, /24 and /64), so the IPv4 and IPv6
//! longest-prefix tables each hold N/2 prefixes of two lengths.
//!
//! Lookups draw keys uniformly from the installed ones in a random order, so at 1M
//! SAs nearly every lookup misses the cache: "single" is one lookup after another
//! (the CPU still overlaps independent misses), "burst of 32" prefetches a burst's
//! buckets first, as a worker does with an rx burst.
//!
//! "create" is the writer creating the (empty) table: it allocates every page up
//! front, so installs never fault pages in; "install" is then measured alone.
//! "attach" is a reader mapping the full table and building its indexes.
//!
//! Run: `cargo bench -p esprit-bench --bench sa_table`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sa_table::{
    Direction, IpPrefix, Mode, Reader, SaId, SaParams, TableConfig, TransformId, Writer,
    BYTES_PER_SA,
};

const SIZES: [u32; 3] = [1_000, 100_000, 1_000_000];
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

fn ns_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

struct Row {
    sas: u32,
    spi_single: f64,
    spi_burst: f64,
    lpm4: f64,
    lpm6: f64,
    lpm4_burst: f64,
    lpm6_burst: f64,
    install_per_s: f64,
    table_bytes_per_sa: f64,
    index_bytes_per_sa: f64,
    attach: Duration,
    create: Duration,
}

fn measure(n: u32) -> Row {
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
    let spi_keys: Vec<u32> = (0..LOOKUPS)
        .map(|_| tunnels[pick(&mut rng)].0.spi)
        .collect();
    let v4_keys: Vec<Ipv4Addr> = (0..LOOKUPS).map(|_| tunnels[pick(&mut rng)].2).collect();
    let v6_keys: Vec<Ipv6Addr> = (0..LOOKUPS).map(|_| tunnels[pick(&mut rng)].3).collect();

    // Every key must hit, or we would be timing misses.
    let mut hits = 0usize;
    let t = Instant::now();
    for &k in &spi_keys {
        hits += usize::from(black_box(r.lookup_inbound_spi(black_box(k))).is_some());
    }
    let spi_single = ns_per(t.elapsed(), LOOKUPS);
    assert_eq!(hits, LOOKUPS);

    let mut out = [None::<SaId>; BURST];
    hits = 0;
    let t = Instant::now();
    for chunk in spi_keys.chunks_exact(BURST) {
        r.lookup_inbound_spi_burst(black_box(chunk), &mut out);
        hits += out.iter().filter(|o| o.is_some()).count();
    }
    let spi_burst = ns_per(t.elapsed(), LOOKUPS);
    assert_eq!(hits, LOOKUPS);

    hits = 0;
    let t = Instant::now();
    for &k in &v4_keys {
        hits += usize::from(black_box(r.lookup_outbound_v4(black_box(k))).is_some());
    }
    let lpm4 = ns_per(t.elapsed(), LOOKUPS);
    assert_eq!(hits, LOOKUPS);

    hits = 0;
    let t = Instant::now();
    for chunk in v4_keys.chunks_exact(BURST) {
        r.lookup_outbound_v4_burst(black_box(chunk), &mut out);
        hits += out.iter().filter(|o| o.is_some()).count();
    }
    let lpm4_burst = ns_per(t.elapsed(), LOOKUPS);
    assert_eq!(hits, LOOKUPS);

    hits = 0;
    let t = Instant::now();
    for chunk in v6_keys.chunks_exact(BURST) {
        r.lookup_outbound_v6_burst(black_box(chunk), &mut out);
        hits += out.iter().filter(|o| o.is_some()).count();
    }
    let lpm6_burst = ns_per(t.elapsed(), LOOKUPS);
    assert_eq!(hits, LOOKUPS);

    hits = 0;
    let t = Instant::now();
    for &k in &v6_keys {
        hits += usize::from(black_box(r.lookup_outbound_v6(black_box(k))).is_some());
    }
    let lpm6 = ns_per(t.elapsed(), LOOKUPS);
    assert_eq!(hits, LOOKUPS);

    let index_bytes = r.index_bytes();
    drop(r);
    drop(w);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(path.parent().expect("parent"));
    Row {
        sas: n,
        spi_single,
        spi_burst,
        lpm4,
        lpm6,
        lpm4_burst,
        lpm6_burst,
        install_per_s: f64::from(n) / install.as_secs_f64(),
        table_bytes_per_sa: table_bytes as f64 / f64::from(n),
        index_bytes_per_sa: index_bytes as f64 / f64::from(n),
        attach,
        create,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; arguments are accepted and ignored.
    let total = Instant::now();
    println!("sa_table: N SAs = N/2 inbound + N/2 outbound (each outbound serves an IPv4 and an IPv6 prefix)");
    println!("lookups: {LOOKUPS} uniformly random installed keys, ns per lookup; b32 = burst of {BURST} with prefetch");
    println!("slot + dataplane state = {BYTES_PER_SA} B per SA");
    println!();
    let head = [
        "SAs",
        "SPI",
        "SPI b32",
        "LPM4",
        "LPM4 b32",
        "LPM6",
        "LPM6 b32",
        "install SA/s",
        "table B/SA",
        "index B/SA",
        "create ms",
        "attach ms",
    ];
    let line = |cells: &[String]| {
        let mut l = String::from("|");
        for c in cells {
            l.push_str(&format!(" {c:>10} |"));
        }
        l
    };
    println!("{}", line(&head.map(String::from)));
    println!("{}", line(&head.map(|_| "-".repeat(10))));
    let mut rows = Vec::new();
    for n in SIZES {
        let r = measure(n);
        let cells = [
            format!("{}", r.sas),
            format!("{:.1}", r.spi_single),
            format!("{:.1}", r.spi_burst),
            format!("{:.1}", r.lpm4),
            format!("{:.1}", r.lpm4_burst),
            format!("{:.1}", r.lpm6),
            format!("{:.1}", r.lpm6_burst),
            format!("{:.0}", r.install_per_s),
            format!("{:.0}", r.table_bytes_per_sa),
            format!("{:.0}", r.index_bytes_per_sa),
            format!("{:.1}", r.create.as_secs_f64() * 1e3),
            format!("{:.1}", r.attach.as_secs_f64() * 1e3),
        ];
        println!("{}", line(&cells));
        rows.push(r);
    }
    let big = rows.last().expect("rows");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("goals at 1M SAs:");
    println!(
        "  inbound SPI lookup <= 30 ns: {:.1} ns single, {:.1} ns in bursts: {}",
        big.spi_single,
        big.spi_burst,
        verdict(big.spi_single <= 30.0)
    );
    println!(
        "  outbound LPM <= 30 ns: IPv4 {:.1} / {:.1} ns, IPv6 {:.1} / {:.1} ns (single / bursts): {}",
        big.lpm4,
        big.lpm4_burst,
        big.lpm6,
        big.lpm6_burst,
        verdict(big.lpm4.max(big.lpm6) <= 30.0)
    );
    println!(
        "  install >= 500k SA/s: {:.0}: {}",
        big.install_per_s,
        verdict(big.install_per_s >= 500_000.0)
    );
    println!(
        "  attach + index build < 1 s: {:.0} ms: {}",
        big.attach.as_secs_f64() * 1e3,
        verdict(big.attach < Duration::from_secs(1))
    );
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
}
