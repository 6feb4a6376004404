//! `esprit-bench`: benchmark tools. Subcommands:
//!
//! * `gen-pcap OUT.pcap [--size N] [--packets N] [--flows N] [--src IP] [--dst IP]`
//!   writes plaintext UDP traffic (IPv4 or IPv6 by the addresses given).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use esprit_bench::pcapgen::Traffic;

fn usage() -> ExitCode {
    eprintln!("usage: esprit-bench gen-pcap OUT.pcap [--size N] [--packets N] [--flows N] [--src IP] [--dst IP]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen-pcap") => gen_pcap(&args[1..]),
        _ => usage(),
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
