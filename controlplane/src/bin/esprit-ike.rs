//! `esprit-ike --config FILE`: the IKEv2 daemon (see the library docs).
#![forbid(unsafe_code)]
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use esprit_controlplane::config::DaemonConfig;
use esprit_controlplane::daemon::Daemon;
use esprit_controlplane::logging;

/// Test-only code this build carries: `none` for anything shipped. The
/// features that bring it in (ike-crypto `insecure`, ike-proto `fuzzing`)
/// are for tests and fuzzing; cargo's feature unification can still pull
/// them into a binary built together with those, which scripts/check-release
/// catches on the release esprit-ike.
fn test_only_code() -> String {
    let mut v = Vec::new();
    if ike_crypto::provider::TEST_ONLY_CRYPTO {
        v.push("INSECURE-crypto-provider");
    }
    if ike_proto::FUZZING_HARNESS {
        v.push("INSECURE-fuzz-harness");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

#[derive(Parser)]
#[command(
    name = "esprit-ike",
    about = "The IKEv2 daemon: negotiates SAs and programs esprit's SA table",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    disable_version_flag = true
)]
struct Cli {
    /// The YAML configuration (the `ike` section is this daemon's)
    #[arg(short, long, required_unless_present = "version")]
    config: Option<PathBuf>,
    /// Load and verify the configuration, then exit
    #[arg(long)]
    check: bool,
    /// Version and any test-only code built in
    #[arg(short = 'V', long)]
    version: bool,
    /// Log format: text, or JSON objects one per line (levels: `ike.log_level`, or ESPRIT_LOG directives per module)
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

#[derive(Subcommand)]
enum Cmd {
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.version {
        println!("esprit-ike {} test-only code: {}", env!("CARGO_PKG_VERSION"), test_only_code());
        return Ok(());
    }
    if let Some(Cmd::Completions { shell }) = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "esprit-ike", &mut std::io::stdout());
        return Ok(());
    }
    let check = cli.check;
    let path = cli.config.context("--config FILE is required")?;
    let cfg = match DaemonConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            // As esprit-dataplane: a configuration error exits 2, naming
            // the field path ("ike.radius.servers[1].secret_file: ...").
            eprintln!("esprit-ike: {}: {e}", path.display());
            std::process::exit(2);
        }
    };
    if check {
        println!("{}: ok ({} connection(s))", path.display(), cfg.endpoint.connections.len());
        return Ok(());
    }
    logging::init(match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Json => logging::Format::Json,
    })
    .map_err(anyhow::Error::msg)?;
    // The pool that takes key exchanges and signatures off the event loop,
    // one thread per CPU the process may use; named for top -H and perf.
    rayon::ThreadPoolBuilder::new().thread_name(|i| format!("ike-pool-{i}")).build_global().context("starting the rayon pool")?;
    let (mut d, metrics) = Daemon::start(cfg, Some(path)).context("starting esprit-ike")?;
    tracing::info!(
        "esprit-ike: listening on {:?}, metrics on {}",
        d.local_addrs(),
        metrics.as_ref().map_or_else(|| "-".to_string(), |m| m.local_addr().to_string())
    );
    logging::flush();
    d.run();
    Ok(())
}
