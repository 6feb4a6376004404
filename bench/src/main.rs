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

use std::process::ExitCode;

use esprit_bench::ike_load::LoadAuth;
use esprit_bench::pcapgen::Traffic;

fn usage() -> ExitCode {
    eprintln!("usage: esprit-bench gen-pcap OUT.pcap [--size N] [--packets N] [--flows N] [--src IP] [--dst IP]");
    eprintln!("       esprit-bench ike-load LOCAL_IP REMOTE_IP [--count N] [--window N] [--proposal P] [--timeout-secs N]");
    eprintln!("                             [--identities N] [--initial-contact yes|no] [--psk S | --cert FILE --key FILE --ca FILE [--id ID]]   ({{i}} in FILE and ID: one per identity)");
    eprintln!("       esprit-bench ike-flood DST_IP:PORT --src-net NET/LEN [--count N] [--rate PPS] [--secs S] [--cookie none|forged] [--seed N]");
    eprintln!("       esprit-bench gikev2-load [--members N] [--window N]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen-pcap") => gen_pcap(&args[1..]),
        Some("ike-load") => ike_load(&args[1..]),
        Some("ike-flood") => ike_flood(&args[1..]),
        Some("gikev2-load") => gikev2_load(&args[1..]),
        _ => usage(),
    }
}

fn gikev2_load(args: &[String]) -> ExitCode {
    let (mut members, mut window) = (1000usize, 64usize);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else { return usage() };
        let ok = match flag.as_str() {
            "--members" => v.parse().map(|x| members = x).is_ok(),
            "--window" => v.parse().map(|x| window = x).is_ok(),
            _ => false,
        };
        if !ok {
            return usage();
        }
    }
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

fn gen_pcap(args: &[String]) -> ExitCode {
    let Some(out) = args.first() else { return usage() };
    let mut t = Traffic::anchor(60);
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else { return usage() };
        let ok = match flag.as_str() {
            "--size" => v.parse().map(|x| t.frame_len = x).is_ok(),
            "--packets" => v.parse().map(|x| t.packets = x).is_ok(),
            "--flows" => v.parse().map(|x| t.flows = x).is_ok(),
            "--src" => v.parse().map(|x| t.src = x).is_ok(),
            "--dst" => v.parse().map(|x| t.dst = x).is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("esprit-bench gen-pcap: bad {flag} {v}");
            return usage();
        }
    }
    if t.src.is_ipv4() != t.dst.is_ipv4() {
        eprintln!("esprit-bench gen-pcap: --src and --dst must be of one address family");
        return ExitCode::from(2);
    }
    let mut buf = Vec::new();
    t.write_pcap(&mut buf).expect("writing to memory");
    if let Err(e) = std::fs::write(out, buf) {
        eprintln!("esprit-bench gen-pcap: {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn ike_load(args: &[String]) -> ExitCode {
    let (Some(Ok(lip)), Some(Ok(ip))) = (args.first().map(|a| a.parse::<std::net::IpAddr>()), args.get(1).map(|a| a.parse::<std::net::IpAddr>())) else {
        return usage();
    };
    let (mut count, mut window, mut timeout) = (1000usize, 64usize, 600u64);
    let mut identities = None;
    let mut initial_contact = true;
    let mut proposal = "aes256gcm16-prfsha256-x25519".to_string();
    let mut psk = None;
    let (mut cert, mut key, mut ca, mut id) = (None, None, None, "load.esprit.bench".to_string());
    let mut it = args[2..].iter();
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else { return usage() };
        let ok = match flag.as_str() {
            "--count" => v.parse().map(|x| count = x).is_ok(),
            "--identities" => v.parse().map(|x| identities = Some(x)).is_ok(),
            "--initial-contact" => match v.as_str() {
                "yes" => {
                    initial_contact = true;
                    true
                }
                "no" => {
                    initial_contact = false;
                    true
                }
                _ => false,
            },
            "--window" => v.parse().map(|x| window = x).is_ok(),
            "--timeout-secs" => v.parse().map(|x| timeout = x).is_ok(),
            "--proposal" => {
                proposal = v.clone();
                true
            }
            "--psk" => psk.replace(v.clone()).is_none(),
            "--cert" => cert.replace(std::path::PathBuf::from(v)).is_none(),
            "--key" => key.replace(std::path::PathBuf::from(v)).is_none(),
            "--ca" => ca.replace(std::path::PathBuf::from(v)).is_none(),
            "--id" => {
                id = v.clone();
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!("esprit-bench ike-load: bad {flag} {v}");
            return usage();
        }
    }
    let auth = match (cert, key, ca, psk) {
        (None, None, None, psk) => LoadAuth::Psk(psk.unwrap_or_else(|| "bench-psk-0123456789abcdef".into())),
        (Some(cert), Some(key), Some(ca), None) => LoadAuth::Cert { cert, key, ca, id },
        _ => {
            eprintln!("esprit-bench ike-load: --cert, --key and --ca go together, without --psk");
            return usage();
        }
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

fn ike_flood(args: &[String]) -> ExitCode {
    use esprit_bench::ike_flood::{CookieMode, Flood};
    let Some(Ok(dst)) = args.first().map(|a| a.parse::<std::net::SocketAddrV4>()) else { return usage() };
    let mut f = Flood {
        dst,
        src_net: std::net::Ipv4Addr::UNSPECIFIED,
        src_prefix: 0,
        count: 100_000,
        rate_pps: 20_000,
        max_time: std::time::Duration::from_secs(10),
        cookie: CookieMode::None,
        seed: 1,
    };
    let mut have_src = false;
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else { return usage() };
        let ok = match flag.as_str() {
            "--src-net" => match v.split_once('/').map(|(a, l)| (a.parse(), l.parse::<u8>())) {
                Some((Ok(a), Ok(l))) if (8..=30).contains(&l) => {
                    (f.src_net, f.src_prefix, have_src) = (a, l, true);
                    true
                }
                _ => false,
            },
            "--count" => v.parse().map(|x| f.count = x).is_ok(),
            "--rate" => v.parse().map(|x| f.rate_pps = x).is_ok(),
            "--secs" => v.parse().map(|x| f.max_time = std::time::Duration::from_secs(x)).is_ok(),
            "--seed" => v.parse().map(|x| f.seed = x).is_ok(),
            "--cookie" => match v.as_str() {
                "none" => {
                    f.cookie = CookieMode::None;
                    true
                }
                "forged" => {
                    f.cookie = CookieMode::Forged;
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !ok {
            eprintln!("esprit-bench ike-flood: bad {flag} {v}");
            return usage();
        }
    }
    if !have_src {
        eprintln!("esprit-bench ike-flood: --src-net NET/LEN (8..30) is required");
        return usage();
    }
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
