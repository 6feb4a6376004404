//! esprit-dataplane: the poll-mode ESP dataplane process.
//!
//! usage: esprit-dataplane --config FILE [--check] [--stats-ms N] [--idle-exit-ms N] [--max-secs N]
//!
//! * `--check`: load and check the configuration, print what it would run, exit.
//! * `--stats-ms N`: print per-worker and total Mpps/Gbps every N ms, like testpmd.
//! * `--idle-exit-ms N`: stop once no packet arrived for N ms (pcap replays in tests).
//! * `--max-secs N`: stop after N seconds (benchmarks).
//!
//! The configuration is checked before DPDK is touched; a bad file exits
//! with status 2 and an error naming the field path. SIGTERM or SIGINT stop
//! the workers, flush their counters, and exit 0. The SA table stays: a
//! restarted dataplane attaches to it and forwards again.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};
use crossbeam::queue::ArrayQueue;
use dpdk::{Eal, Mempool};
use esprit_dataplane::config::{parse_mac, Config};
use esprit_dataplane::crypto::{BackendChoice, MbDevices};
use esprit_dataplane::l2::NeighbourTable;
use esprit_dataplane::policy::Policy;
use esprit_dataplane::metrics::{DataplaneMetrics, PORT_NAMES};
use esprit_dataplane::pipeline::{Env, Side, Worker, DROP_NAMES};
use esprit_dataplane::ports::{self, INSIDE, OUTSIDE, PUNT};
use esprit_dataplane::runtime::run_workers;
use esprit_dataplane::statics;

#[derive(Parser)]
#[command(
    name = "esprit-dataplane",
    version,
    about = "esprit's poll-mode ESP dataplane (DPDK workers, the shared SA table)",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// The YAML configuration (the `dataplane` and `metrics` sections)
    #[arg(short, long, required = true)]
    config: Option<PathBuf>,
    /// Load and check the configuration, print what it would run, exit
    #[arg(long)]
    check: bool,
    /// Print per-worker and total Mpps/Gbps every N ms, like testpmd
    #[arg(long, value_name = "N")]
    stats_ms: Option<u64>,
    /// Stop once no packet arrived for N ms (pcap replays in tests)
    #[arg(long, value_name = "N")]
    idle_exit_ms: Option<u64>,
    /// Stop after N seconds (benchmarks)
    #[arg(long, value_name = "N")]
    max_secs: Option<u64>,
    /// Log format: text, or JSON objects one per line (levels per module: ESPRIT_LOG, e.g. `warn,esprit_dataplane=info`)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr through `tracing`: start-up, configuration, SA install
/// failures; never from the packet loop, never a key.
fn init_logging(format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("ESPRIT_LOG").ok().filter(|s| !s.trim().is_empty()) {
        Some(d) => EnvFilter::try_new(&d).map_err(|e| format!("ESPRIT_LOG={d:?}: {e}"))?,
        None => EnvFilter::new("info"),
    };
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    }
    .map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Cmd::Completions { shell }) = args.command {
        clap_complete::generate(shell, &mut Args::command(), "esprit-dataplane", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(args.log_format) {
        eprintln!("esprit-dataplane: {e}");
        return ExitCode::from(2);
    }
    let Some(config) = args.config.clone() else { unreachable!("clap requires --config when no subcommand is given") };
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("esprit-dataplane: {}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        let d = &cfg.dataplane;
        println!(
            "esprit-dataplane: {} ok: {} worker(s), outside {}, inside {}, {} static SA(s), table {}",
            config.display(),
            d.workers.count,
            d.ports.outside.device,
            d.ports.inside.device,
            d.static_sas.len(),
            d.sa_table.path.display()
        );
        return ExitCode::SUCCESS;
    }
    match run(cfg, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("esprit-dataplane: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: Config, args: &Args) -> Result<(), String> {
    let d = &cfg.dataplane;
    // The table first: static SAs in, or an empty table made for the control plane.
    let report = statics::sync(&d.sa_table.path, d.sa_table.capacity, &d.static_sas)?;
    if !d.static_sas.is_empty() {
        tracing::info!(
            "esprit-dataplane: static SAs: {} kept, {} installed, {} removed",
            report.kept, report.installed, report.deleted
        );
    }
    let backend = BackendChoice::from_name(&d.crypto.backend).unwrap_or(BackendChoice::Soft(esp::Backend::FASTEST));

    let mut eal_args = vec!["esprit-dataplane".to_string()];
    eal_args.extend(d.eal_args.iter().cloned());
    let (eal, _) = Eal::init(&eal_args).map_err(|e| format!("dataplane.eal_args: {e}"))?;
    let pool = Mempool::pktmbuf(&eal, "esprit_pkts", ports::pool_size(d), 256, 2176 + 128, eal.socket_id())
        .map_err(|e| format!("mbuf pool: {e}"))?;
    let mb = match backend {
        BackendChoice::IpsecMb => Some(MbDevices::open(&eal, d.crypto.sessions)?),
        BackendChoice::Soft(_) => None,
    };
    let mut opened = ports::open_ports(&eal, d, pool)?;
    opened.sort_by_key(|p| p.role);
    let mac_of = |role: usize| opened.iter().find(|p| p.role == role).map(|p| p.mac).unwrap_or([0; 6]);

    let metrics = DataplaneMetrics::new(cfg.metrics.per_sa);
    metrics.set_crypto_backend(backend.name());
    let _server = match cfg.metrics.listen {
        Some(addr) => {
            let srv = metrics.serve(addr).map_err(|e| format!("metrics.listen {addr}: {e}"))?;
            // The bound address (port 0 in the config picks a free one).
            tracing::info!("esprit-dataplane: metrics on {}", srv.local_addr());
            Some(srv)
        }
        None => None,
    };

    let neigh = NeighbourTable::new(4096);
    for n in &d.neighbours {
        neigh.learn(n.ip, parse_mac(&n.mac).unwrap_or([0; 6]));
    }
    let workers = d.workers.count as usize;
    // Batches of up to a burst; the configured depth is in packets.
    let batches = (d.workers.handoff_queue_pkts as usize / 32).max(2);
    let inboxes: Vec<ArrayQueue<dpdk::Burst>> = (0..workers).map(|_| ArrayQueue::new(batches)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal handler: {e}"))?;
    }
    let policy = Policy::new(d);
    let env = Env {
        workers,
        inboxes: &inboxes,
        neigh: &neigh,
        sides: [
            Side { mac: mac_of(OUTSIDE), addrs: d.addresses.outside.clone(), gateway: d.addresses.outside_gateway },
            Side { mac: mac_of(INSIDE), addrs: d.addresses.inside.clone(), gateway: d.addresses.inside_gateway },
        ],
        has_punt: opened.iter().any(|p| p.role == PUNT),
        backend,
        mb: mb.as_ref(),
        pool,
        stop: &stop,
        policy: &policy,
    };
    for p in &opened {
        tracing::info!(
            "esprit-dataplane: port {} ({}, {}): {} rx / {} tx queue(s), mac {}",
            p.port.id(),
            PORT_NAMES[p.role],
            p.driver,
            p.rx_queues,
            p.tx_queues,
            p.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
        );
    }
    tracing::info!("esprit-dataplane: {workers} worker(s), crypto {}, table {}", backend.name(), d.sa_table.path.display());

    let started = Instant::now();
    let table_path = d.sa_table.path.clone();
    let result = std::thread::scope(|s| {
        // The live stats / stop watcher.
        let watcher = s.spawn(|| watch(&metrics, &stop, workers, args, started, &table_path));
        let r = run_workers(eal, workers, &d.workers.cpus, &stop, |ctx| {
            let q = ports::worker_queues(&opened, ctx.id as u16, d.workers.burst_pkts)?;
            let reader = sa_table::Reader::attach(&table_path).map_err(|e| format!("SA table: {e}"))?;
            let m = metrics.worker(ctx.id, &DROP_NAMES);
            let mut w = Worker::new(ctx.id, &env, q, reader, m);
            w.run();
            Ok(())
        });
        stop.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        r
    });
    // Whatever is still waiting in the inboxes is freed with them.
    drop(inboxes);
    summary(&metrics, workers, started.elapsed());
    for p in opened {
        let _ = p.port.close();
    }
    result
}

/// Once a second, off the packet path: `esprit_active_sas` and (if enabled)
/// the per-SA series, from the SA table's own counters.
struct SaWatch {
    reader: sa_table::Reader,
    known: std::collections::HashMap<sa_table::SaId, (String, &'static str, u64, u64)>,
}

impl SaWatch {
    fn update(&mut self, m: &DataplaneMetrics) {
        let known = &mut self.known;
        self.reader.poll_changes(|c| match c {
            sa_table::Change::Upsert { id, params } => {
                let dir = if params.direction == sa_table::Direction::INBOUND { "in" } else { "out" };
                known.entry(id).or_insert((format!("{:#010x}", params.spi), dir, 0, 0));
            }
            sa_table::Change::Removed { id } => {
                known.remove(&id);
            }
        });
        let (mut n_in, mut n_out) = (0, 0);
        for (id, (spi, dir, pkts, bytes)) in self.known.iter_mut() {
            if *dir == "in" { n_in += 1 } else { n_out += 1 }
            if let (Some((pf, bf)), Some(st)) = (m.per_sa(), self.reader.state(*id)) {
                let (p, b) = (st.pkts(), st.bytes());
                pf.with_label_values(&[spi.as_str(), dir]).inc_by(p.saturating_sub(*pkts));
                bf.with_label_values(&[spi.as_str(), dir]).inc_by(b.saturating_sub(*bytes));
                (*pkts, *bytes) = (p, b);
            }
        }
        m.active_sas.with_label_values(&["in"]).set(n_in);
        m.active_sas.with_label_values(&["out"]).set(n_out);
        m.sa_table_capacity.set(i64::from(self.reader.capacity()));
    }
}

/// Prints the live stats line every `--stats-ms`, keeps the SA series
/// current, and raises `stop` on `--idle-exit-ms` / `--max-secs`.
fn watch(m: &DataplaneMetrics, stop: &AtomicBool, workers: usize, args: &Args, started: Instant, table: &std::path::Path) {
    let mut sas = sa_table::Reader::attach(table).ok().map(|reader| {
        // What the table held at attach is in the reader's indexes, not in
        // its journal: take it from there.
        let mut known = std::collections::HashMap::new();
        for id in reader.known_ids() {
            if let Ok(p) = reader.read(id) {
                let dir = if p.direction == sa_table::Direction::INBOUND { "in" } else { "out" };
                known.insert(id, (format!("{:#010x}", p.spi), dir, 0, 0));
            }
        }
        SaWatch { reader, known }
    });
    let mut last_sa_update = Instant::now() - Duration::from_secs(2);
    let tick = Duration::from_millis(args.stats_ms.unwrap_or(100).clamp(10, 10_000));
    let mut last = (Instant::now(), vec![(0u64, 0u64); workers]);
    let mut last_rx_total = 0u64;
    let mut last_change = Instant::now();
    let mut last_print = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick.min(Duration::from_millis(50)));
        if last_sa_update.elapsed() >= Duration::from_secs(1) {
            last_sa_update = Instant::now();
            if let Some(s) = sas.as_mut() {
                s.update(m);
            }
        }
        let rx_total: u64 = (0..workers)
            .map(|w| PORT_NAMES.iter().map(|p| m.port_counters(p, "rx", w).0).sum::<u64>())
            .sum();
        if rx_total != last_rx_total {
            last_rx_total = rx_total;
            last_change = Instant::now();
        }
        if let Some(ms) = args.idle_exit_ms {
            // Idle only counts once something arrived, or after a grace period.
            if (rx_total > 0 || started.elapsed() > Duration::from_secs(5))
                && last_change.elapsed() >= Duration::from_millis(ms)
            {
                stop.store(true, Ordering::Relaxed);
            }
        }
        if let Some(s) = args.max_secs {
            if started.elapsed() >= Duration::from_secs(s) {
                stop.store(true, Ordering::Relaxed);
            }
        }
        if args.stats_ms.is_some() && last_print.elapsed() >= tick {
            last_print = Instant::now();
            let dt = last.0.elapsed().as_secs_f64();
            let mut line = String::new();
            let (mut tp, mut tb) = (0.0, 0.0);
            for w in 0..workers {
                let (p, b) = tx_sum(m, w);
                let (pp, bb) = last.1[w];
                let mpps = (p - pp) as f64 / dt / 1e6;
                let gbps = (b - bb) as f64 * 8.0 / dt / 1e9;
                tp += mpps;
                tb += gbps;
                line.push_str(&format!("w{w} {mpps:7.3} Mpps {gbps:7.3} Gbps | "));
                last.1[w] = (p, b);
            }
            last.0 = Instant::now();
            println!("{line}total {tp:7.3} Mpps {tb:7.3} Gbps");
        }
    }
}

fn tx_sum(m: &DataplaneMetrics, w: usize) -> (u64, u64) {
    let (a, b) = m.port_counters("outside", "tx", w);
    let (c, d) = m.port_counters("inside", "tx", w);
    (a + c, b + d)
}

fn summary(m: &DataplaneMetrics, workers: usize, elapsed: Duration) {
    for w in 0..workers {
        let rx: Vec<u64> = PORT_NAMES.iter().map(|p| m.port_counters(p, "rx", w).0).collect();
        let tx: Vec<u64> = PORT_NAMES.iter().map(|p| m.port_counters(p, "tx", w).0).collect();
        println!(
            "worker {w}: rx outside {} inside {} punt {} | tx outside {} inside {} punt {} | drops {}",
            rx[0], rx[1], rx[2], tx[0], tx[1], tx[2], m.drops_of(w, &DROP_NAMES)
        );
    }
    println!("ran {:.1} s", elapsed.as_secs_f64());
    let text = m.render();
    let shown = |l: &&str| {
        [
            "esprit_drops_total",
            "esprit_port_bytes_total",
            "esprit_spd_bypass_packets_total",
            "esprit_sa_install_failures_total",
            "esprit_diet_esp_lookups_total",
        ]
        .iter()
        .any(|p| l.starts_with(p))
            && !l.ends_with(" 0")
    };
    for line in text.lines().filter(shown) {
        println!("  {line}");
    }
}
