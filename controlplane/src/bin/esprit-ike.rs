//! `esprit-ike --config FILE`: the IKEv2 daemon (see the library docs).
#![forbid(unsafe_code)]
use std::path::PathBuf;

use anyhow::{bail, Context};
use esprit_controlplane::config::DaemonConfig;
use esprit_controlplane::daemon::Daemon;

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

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut check = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config = Some(PathBuf::from(args.next().context("--config needs a file")?)),
            "--check" => check = true,
            "--version" | "-V" => {
                println!("esprit-ike {} test-only code: {}", env!("CARGO_PKG_VERSION"), test_only_code());
                return Ok(());
            }
            "--help" | "-h" => {
                println!(
                    "usage: esprit-ike --config FILE [--check]\n  --check    load and verify the configuration, then exit\n  --version  version and any test-only code built in"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let path = config.context("--config FILE is required")?;
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
    // The pool that takes key exchanges and signatures off the event loop,
    // one thread per CPU the process may use; named for top -H and perf.
    rayon::ThreadPoolBuilder::new().thread_name(|i| format!("ike-pool-{i}")).build_global().context("starting the rayon pool")?;
    let (mut d, metrics) = Daemon::start(cfg, Some(path)).context("starting esprit-ike")?;
    eprintln!(
        "esprit-ike: listening on {:?}, metrics on {}",
        d.local_addrs(),
        metrics.as_ref().map_or_else(|| "-".to_string(), |m| m.local_addr().to_string())
    );
    d.run();
    Ok(())
}
