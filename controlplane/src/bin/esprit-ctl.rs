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
    /// A live view: per worker and port Mpps, Gbps, drops by reason; IKE SAs, handshakes/s (q quits)
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
    /// Stop after this many refreshes (default: until q, or Ctrl-C)
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
/// the output is not a terminal). `q` (or Ctrl-C) quits when the input is
/// a terminal; the terminal is put back as it was however `top` ends.
fn run_top(cli: &Cli, a: &TopArgs) -> anyhow::Result<()> {
    let interval = Duration::from_millis(a.interval_ms);
    let screen = std::io::stdout().is_terminal() && !cli.json;
    let term = Terminal::enter(std::io::stdin().is_terminal(), screen)?;
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
                "esprit-ctl top: dataplane {}, esprit-ike {}, every {:.1} s, refresh {} ({} quits)",
                a.dataplane,
                cli.socket.display(),
                interval.as_secs_f64(),
                n + 1,
                if term.keys() { "q" } else { "Ctrl-C" }
            );
            if screen {
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
        if term.wait_for_quit(interval.saturating_sub(t.elapsed()))? {
            return Ok(());
        }
    }
}

/// The terminal while `top` runs on it. With `keys`, the input's local
/// modes without ICANON (a key is read when pressed, not at Enter), ECHO
/// (the `q` is not drawn on the screen) and ISIG (Ctrl-C arrives as a byte
/// and quits through here, so the modes are put back; as a signal it would
/// kill us first). With `screen`, the alternate screen and no cursor, so
/// the shell's screen comes back on exit, as with top or less. Drop undoes
/// both, on every way out of `run_top` (quit, `--count`, an error).
struct Terminal {
    saved: Option<rustix::termios::Termios>,
    screen: bool,
}

impl Terminal {
    fn enter(keys: bool, screen: bool) -> std::io::Result<Self> {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions, SpecialCodeIndex};
        let mut term = Terminal { saved: None, screen: false };
        if keys {
            let stdin = std::io::stdin();
            let saved = tcgetattr(&stdin)?;
            let mut t = saved.clone();
            t.local_modes.remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG);
            t.special_codes[SpecialCodeIndex::VMIN] = 1;
            t.special_codes[SpecialCodeIndex::VTIME] = 0;
            tcsetattr(&stdin, OptionalActions::Now, &t)?;
            term.saved = Some(saved);
        }
        if screen {
            let mut out = std::io::stdout().lock();
            write!(out, "\x1b[?1049h\x1b[?25l")?;
            out.flush()?;
            term.screen = true;
        }
        Ok(term)
    }

    fn keys(&self) -> bool {
        self.saved.is_some()
    }

    /// Waits `timeout`, or less if a quitting key comes: `q`, `Q`, Ctrl-C.
    /// Other keys are read and ignored. Returns whether to quit.
    fn wait_for_quit(&self, timeout: Duration) -> std::io::Result<bool> {
        if !self.keys() {
            std::thread::sleep(timeout);
            return Ok(false);
        }
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let deadline = Instant::now() + timeout;
        let stdin = std::io::stdin();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let ts = Timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ };
            let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // Read the file descriptor itself: std's Stdin buffers, and a
            // key in its buffer would not wake the next poll.
            let mut buf = [0u8; 64];
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) => {
                    // The input is gone (end of file): no more keys.
                    std::thread::sleep(left);
                    return Ok(false);
                }
                Ok(n) => {
                    if buf[..n].iter().any(|b| matches!(b, b'q' | b'Q' | 0x03)) {
                        return Ok(true);
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.screen {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[?25h\x1b[?1049l");
            let _ = out.flush();
        }
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, saved);
        }
    }
}
