//! `esprit-bench`: benchmark tools. Subcommands:
//!
//! * `gen-pcap OUT.pcap [--size N] [--packets N] [--flows N] [--src IP] [--dst IP]`
//!   writes plaintext UDP traffic (IPv4 or IPv6 by the addresses given).
//! * `ike-load LOCAL_IP REMOTE_IP [--count N] [--window N] [--proposal P] [--timeout-secs N]
//!   [--identities N] [--initial-contact yes|no] [--psk S | --cert FILE --key FILE --ca FILE [--id ID]]`
//!   runs IKEv2 handshakes (PSK or certificate, virtual IP, one Child SA)
//!   against a responder whose identity is `gw.esprit.bench` and prints
//!   `established N children N failed N secs S`; exits non-zero unless all
//!   completed, each with its Child SA. N distinct identities (default: one per handshake): with a
//!   PSK `load-I@esprit.bench`; with certificates when FILE
//!   and ID contain `{i}` (FILE with `{i}` = I, ID = a SAN of it), else one.
//!   Certificates are PEM or DER, the key PKCS#8 (one key for all); ID
//!   defaults to `load.esprit.bench`. Every IKE_AUTH carries INITIAL_CONTACT
//!   unless `--initial-contact no` (as real clients do: RFC 7296 §2.4).
//! * `ike-flood DST_IP:PORT --src-net NET/LEN [--count N] [--rate PPS] [--secs S] [--cookie none|forged] [--seed N]`
//!   sends spoofed IKE_SA_INIT requests (fresh SPIi, Ni, KE each; with a
//!   forged COOKIE first if asked) from random sources in NET/LEN through a
//!   raw socket (root), at most N, at PPS (0: unpaced), for at most S
//!   seconds, and prints `sent N errors N secs S pps R`. Only toward
//!   addresses in network namespaces of your own.
//! * `gikev2-load [--members N] [--window N]` registers N G-IKEv2 members
//!   (one process: GCKS and GMs as sans-IO endpoints) to one GCKS and sends
//!   one multicast rekey; prints the GCKS's registrations per CPU-second and
//!   the CPU time of the rekey on both sides.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use esprit_bench::ike_flood::CookieMode;
use esprit_bench::ike_load::LoadAuth;
use esprit_bench::pcapgen::Traffic;

#[derive(Parser)]
#[command(name = "esprit-bench", version, about = "esprit's benchmark tools")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write plaintext UDP traffic (IPv4 or IPv6 by the addresses given) to a pcap
    GenPcap {
        /// The pcap file to write
        out: PathBuf,
        /// Frame length in octets
        #[arg(long)]
        size: Option<usize>,
        /// Number of packets
        #[arg(long)]
        packets: Option<usize>,
        /// Number of flows (destination addresses)
        #[arg(long)]
        flows: Option<usize>,
        /// Source address
        #[arg(long)]
        src: Option<IpAddr>,
        /// First destination address
        #[arg(long)]
        dst: Option<IpAddr>,
    },
    /// Run IKEv2 handshakes (one Child SA each) against a responder `gw.esprit.bench`
    IkeLoad(IkeLoad),
    /// Send spoofed IKE_SA_INIT requests through a raw socket (root; only toward your own namespaces)
    IkeFlood {
        /// The responder's address and port
        dst: SocketAddrV4,
        /// The spoofed sources' network, NET/LEN with LEN in 8..=30
        #[arg(long, value_parser = src_net)]
        src_net: (std::net::Ipv4Addr, u8),
        /// Send at most N requests
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Requests per second (0: unpaced)
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Stop after S seconds
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Send a forged COOKIE first
        #[arg(long, value_enum, default_value_t = Cookie::None)]
        cookie: Cookie,
        /// Seed of the sources and SPIs
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Register N G-IKEv2 members to one GCKS and send one multicast rekey
    Gikev2Load {
        /// Group members
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Registrations in flight
        #[arg(long, default_value_t = 64)]
        window: usize,
    },
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Cookie {
    None,
    Forged,
}

#[derive(Clone, Copy, ValueEnum)]
enum YesNo {
    Yes,
    No,
}

#[derive(clap::Args)]
struct IkeLoad {
    /// Our address (port 500)
    local: IpAddr,
    /// The responder's address (port 500)
    remote: IpAddr,
    /// Handshakes to run
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Handshakes in flight
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// The IKE proposal
    #[arg(long, default_value = "aes256gcm16-prfsha256-x25519")]
    proposal: String,
    /// Give up after S seconds
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Distinct identities (default: one per handshake)
    #[arg(long)]
    identities: Option<usize>,
    /// Send INITIAL_CONTACT in every IKE_AUTH (as real clients do, RFC 7296 §2.4)
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    initial_contact: YesNo,
    /// The preshared key (the default when no certificate is given)
    #[arg(long, conflicts_with_all = ["cert", "key", "ca"])]
    psk: Option<String>,
    /// Our certificate, PEM or DER (`{i}` in it: one per identity)
    #[arg(long, requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// The PKCS#8 key of the certificates
    #[arg(long, requires_all = ["cert", "ca"])]
    key: Option<PathBuf>,
    /// The CA that signed the responder's certificate
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// Our identity with certificates (`{i}`: one per identity)
    #[arg(long, default_value = "load.esprit.bench")]
    id: String,
}

fn src_net(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    match s.split_once('/').map(|(a, l)| (a.parse(), l.parse::<u8>())) {
        Some((Ok(a), Ok(l))) if (8..=30).contains(&l) => Ok((a, l)),
        _ => Err(format!("NET/LEN with an IPv4 NET and LEN in 8..=30, not {s:?}")),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::GenPcap { out, size, packets, flows, src, dst } => {
            let mut t = Traffic::anchor(60);
            if let Some(x) = size {
                t.frame_len = x;
            }
            if let Some(x) = packets {
                t.packets = x;
            }
            if let Some(x) = flows {
                t.flows = x;
            }
            if let Some(x) = src {
                t.src = x;
            }
            if let Some(x) = dst {
                t.dst = x;
            }
            gen_pcap(&out, &t)
        }
        Cmd::IkeLoad(a) => ike_load(a),
        Cmd::IkeFlood { dst, src_net, count, rate, secs, cookie, seed } => ike_flood(esprit_bench::ike_flood::Flood {
            dst,
            src_net: src_net.0,
            src_prefix: src_net.1,
            count,
            rate_pps: rate,
            max_time: std::time::Duration::from_secs(secs),
            cookie: match cookie {
                Cookie::None => CookieMode::None,
                Cookie::Forged => CookieMode::Forged,
            },
            seed,
        }),
        Cmd::Gikev2Load { members, window } => gikev2_load(members, window),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "esprit-bench", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

fn gikev2_load(members: usize, window: usize) -> ExitCode {
    let r = esprit_bench::gikev2_load::run(members, window.max(1));
    let per_cpu_sec = r.registered as f64 / r.gcks_registration_cpu.as_secs_f64().max(1e-9);
    println!(
        "members {} registered {} gcks_cpu_s {:.3} registrations_per_cpu_s {:.0} rekey_bytes {} gcks_rekey_cpu_us {} accepted {} gm_rekey_cpu_us_mean {} gm_rekey_cpu_us_max {}",
        r.members,
        r.registered,
        r.gcks_registration_cpu.as_secs_f64(),
        per_cpu_sec,
        r.rekey_bytes,
        r.gcks_rekey_cpu.as_micros(),
        r.rekey_accepted,
        (r.gm_rekey_cpu_total / u32::try_from(r.members.max(1)).unwrap_or(u32::MAX)).as_micros(),
        r.gm_rekey_cpu_max.as_micros()
    );
    if r.registered == r.members && r.rekey_accepted == r.members {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn gen_pcap(out: &std::path::Path, t: &Traffic) -> ExitCode {
    if t.src.is_ipv4() != t.dst.is_ipv4() {
        eprintln!("esprit-bench gen-pcap: --src and --dst must be of one address family");
        return ExitCode::from(2);
    }
    let mut buf = Vec::new();
    t.write_pcap(&mut buf).expect("writing to memory");
    if let Err(e) = std::fs::write(out, buf) {
        eprintln!("esprit-bench gen-pcap: {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn ike_load(a: IkeLoad) -> ExitCode {
    let (lip, ip, count, window, timeout, proposal) = (a.local, a.remote, a.count, a.window, a.timeout_secs, a.proposal);
    let (identities, initial_contact) = (a.identities, matches!(a.initial_contact, YesNo::Yes));
    // clap has checked that --cert, --key and --ca come together, without --psk.
    let auth = match (a.cert, a.key, a.ca) {
        (Some(cert), Some(key), Some(ca)) => LoadAuth::Cert { cert, key, ca, id: a.id },
        _ => LoadAuth::Psk(a.psk.unwrap_or_else(|| "bench-psk-0123456789abcdef".into())),
    };
    let remote = std::net::SocketAddr::new(ip, 500);
    // Port 500 on a real address: no NAT is detected, IKE stays on 500.
    let local = std::net::SocketAddr::new(lip, 500);
    // At most 20000 identities by default: the endpoint finds connections
    // by a scan.
    let cfg = match esprit_bench::ike_load::initiator_config(local, remote, &auth, &proposal, identities.unwrap_or(count), initial_contact) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("esprit-bench ike-load: {e}");
            return ExitCode::from(2);
        }
    };
    match esprit_bench::ike_load::run_load(cfg, local, remote, count, window, std::time::Duration::from_secs(timeout)) {
        Ok(r) => {
            println!("established {} children {} failed {} secs {:.3}", r.established, r.children, r.failed, r.elapsed.as_secs_f64());
            if let Some(why) = &r.stalled {
                eprintln!("esprit-bench ike-load: stopped after {} of {count} handshakes: {why}", r.established);
            }
            // Every handshake brings up its IKE SA and its Child SA.
            if r.established == count && r.children == count {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("esprit-bench ike-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ike_flood(f: esprit_bench::ike_flood::Flood) -> ExitCode {
    match esprit_bench::ike_flood::run(&f) {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64();
            println!("sent {} errors {} secs {:.3} pps {:.0}", r.sent, r.send_errors, secs, r.sent as f64 / secs.max(1e-9));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("esprit-bench ike-flood: {e} (a raw socket needs root or CAP_NET_RAW)");
            ExitCode::FAILURE
        }
    }
}
