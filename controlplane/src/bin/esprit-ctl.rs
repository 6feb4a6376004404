//! `esprit-ctl [--socket PATH] [--json] COMMAND`: talks to esprit-ike over
//! its Unix control socket (one JSON line each way); `top` also scrapes the
//! dataplane's `/metrics`. The JSON shapes: docs/ctl-json.md.
#![forbid(unsafe_code)]
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{CommandFactory, Parser, Subcommand};
use esprit_controlplane::control::{call, Request};
use esprit_controlplane::top;

#[derive(Parser)]
#[command(name = "esprit-ctl", version, about = "Control and watch esprit-ike and the dataplane")]
struct Cli {
    /// esprit-ike's control socket
    #[arg(short, long, global = true, env = "ESPRIT_IKE_SOCKET", default_value = "/run/esprit/ike.sock")]
    socket: PathBuf,
    /// Print the answer as JSON (shapes: docs/ctl-json.md)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Every command. One that the daemon answers maps to a [`Request`] in
/// [`Command::request`]; the others run here.
#[derive(Subcommand)]
enum Command {
    /// IKE and Child SAs, SPIs, algorithms, counters
    ListSas,
    /// Start connection CONN
    Initiate {
        /// The connection's name in the configuration
        conn: String,
    },
    /// Delete IKE SA #IKE_SA and its Child SAs
    Terminate {
        /// The IKE SA's number (as list-sas shows it, `#` optional)
        #[arg(value_parser = sa_number)]
        ike_sa: u64,
    },
    /// Rekey a Child SA or an IKE SA
    #[command(subcommand)]
    Rekey(Rekey),
    /// Re-read the configuration file
    Reload,
    /// Counters and gauges (JSON)
    Stats,
    /// The cluster (ike.state.backend: etcd)
    #[command(subcommand)]
    Cluster(Cluster),
    /// G-IKEv2 groups: members, SIDs, KEK/TEK generations
    ListGroups,
    /// G-IKEv2 group commands (GCKS)
    #[command(subcommand)]
    Group(Group),
    /// A live view: per worker and port Mpps, Gbps, drops by reason; IKE SAs, handshakes/s
    Top(TopArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum Rekey {
    /// Rekey Child SA #CHILD_SA
    Child {
        /// The Child SA's number (`#` optional)
        #[arg(value_parser = sa_number)]
        child_sa: u64,
    },
    /// Rekey IKE SA #IKE_SA
    Ike {
        /// The IKE SA's number (`#` optional)
        #[arg(value_parser = sa_number)]
        ike_sa: u64,
    },
}

#[derive(Subcommand)]
enum Group {
    /// New TEKs for GROUP now
    Rekey {
        /// The group's name
        group: String,
    },
    /// Exclude member ID from GROUP (it stays out)
    Exclude {
        /// The group's name
        group: String,
        /// The member's identity
        member: String,
    },
}

#[derive(Subcommand)]
enum Cluster {
    /// Cluster members, their leases and owned IKE SAs
    Status,
    /// Take no new IKE SA, hand this node's over
    Drain,
}

#[derive(clap::Args)]
struct TopArgs {
    /// The dataplane's metrics.listen address
    #[arg(short, long, default_value = "127.0.0.1:9464")]
    dataplane: SocketAddr,
    /// Time between refreshes, in milliseconds
    #[arg(short, long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,
    /// Stop after this many refreshes (default: until interrupted)
    #[arg(short = 'n', long)]
    count: Option<u64>,
}

fn sa_number(s: &str) -> Result<u64, String> {
    s.trim_start_matches('#').parse().map_err(|_| format!("an SA number (as list-sas shows it), not {s:?}"))
}

impl Command {
    /// The daemon's request for this command, if the daemon answers it.
    fn request(&self) -> Option<Request> {
        Some(match self {
            Command::ListSas => Request::ListSas,
            Command::Initiate { conn } => Request::Initiate { conn: conn.clone() },
            Command::Terminate { ike_sa } => Request::Terminate { ike_sa: *ike_sa },
            Command::Rekey(Rekey::Child { child_sa }) => Request::RekeyChild { child_sa: *child_sa },
            Command::Rekey(Rekey::Ike { ike_sa }) => Request::RekeyIke { ike_sa: *ike_sa },
            Command::Reload => Request::Reload,
            Command::Stats => Request::Stats,
            Command::Cluster(Cluster::Status) => Request::ClusterStatus,
            Command::Cluster(Cluster::Drain) => Request::ClusterDrain,
            Command::ListGroups => Request::ListGroups,
            Command::Group(Group::Rekey { group }) => Request::GroupRekey { group: group.clone() },
            Command::Group(Group::Exclude { group, member }) => Request::GroupExclude { group: group.clone(), member: member.clone() },
            Command::Top(_) | Command::Completions { .. } => return None,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "esprit-ctl", &mut std::io::stdout());
            return Ok(());
        }
        Command::Top(a) => return run_top(&cli, a),
        _ => {}
    }
    let req = cli.command.request().expect("every other command is the daemon's");
    let resp = call(&cli.socket, &req)?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "failed".into()));
    }
    let data = resp.data.unwrap_or_default();
    if !cli.json && req == Request::ListSas {
        print!("{}", esprit_controlplane::show::list_sas(&data));
    } else if !cli.json && req == Request::ClusterStatus {
        print!("{}", esprit_controlplane::show::cluster_status(&data));
    } else if !cli.json && req == Request::ListGroups {
        print!("{}", esprit_controlplane::show::list_groups(&data));
    } else {
        println!("{}", serde_json::to_string_pretty(&data)?);
    }
    Ok(())
}

fn snapshot(cli: &Cli, a: &TopArgs) -> top::Snapshot {
    let dataplane = metrics_http::scrape(a.dataplane, Duration::from_secs(2)).map(|t| top::Samples::parse(&t)).map_err(|e| format!("{}: {e}", a.dataplane));
    let ike = match call(&cli.socket, &Request::Stats) {
        Ok(r) if r.ok => Ok(r.data.unwrap_or_default()),
        Ok(r) => Err(r.error.unwrap_or_else(|| "failed".into())),
        Err(e) => Err(format!("{}: {e}", cli.socket.display())),
    };
    top::Snapshot { dataplane, ike }
}

/// Refreshes every interval: a redrawn screen on a terminal, one JSON line
/// per refresh with `--json` (or plain screens one after the other when
/// the output is not a terminal).
fn run_top(cli: &Cli, a: &TopArgs) -> anyhow::Result<()> {
    let interval = Duration::from_millis(a.interval_ms);
    let tty = std::io::stdout().is_terminal();
    let mut before: Option<(top::Snapshot, Instant)> = None;
    let mut n = 0u64;
    loop {
        let t = Instant::now();
        let now = snapshot(cli, a);
        let v = top::view(&now, before.as_ref().map(|(s, at)| (s, t.duration_since(*at))));
        let mut out = std::io::stdout().lock();
        if cli.json {
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        } else {
            let header = format!(
                "esprit-ctl top: dataplane {}, esprit-ike {}, every {:.1} s, refresh {} (Ctrl-C quits)",
                a.dataplane,
                cli.socket.display(),
                interval.as_secs_f64(),
                n + 1
            );
            if tty {
                // Home and clear, as top does.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{}", top::render(&v, &header))?;
        }
        out.flush()?;
        drop(out);
        n += 1;
        if a.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        before = Some((now, t));
        std::thread::sleep(interval.saturating_sub(t.elapsed()));
    }
}
