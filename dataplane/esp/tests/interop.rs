//! Interop with independent ESP implementations, driven from Rust:
//!
//! * scapy's `scapy.layers.ipsec` (Debian python3-scapy, run with
//!   `/usr/bin/python3`, script `tests/scapy_interop.py`) opens what esprit
//!   seals, checks the ESP bytes equal its own for the same IV, and seals
//!   packets that esprit opens: AES-GCM-128/256 and ChaCha20-Poly1305 (all
//!   the suites scapy has), ESN on and off, raw and UDP-encapsulated, tunnel
//!   mode over IPv4 and IPv6 and transport mode.
//! * tshark 4.0 decrypts esprit's AES-GCM output from a pcap, byte for
//!   byte, and dissects the inner packets (it has no ESN, no ChaCha20 and no
//!   implicit IV for ESP). Note: Wireshark 4.0's ESP dissector does not check
//!   AEAD ICVs (no `esp.icv_good` for AES-GCM; the AEAD tag check came in a
//!   later release), so the ICV is verified by scapy (pyca/cryptography)
//!   above, and by tshark only the keystream, nonce and framing.
//!
//! A missing tool fails the test with a message; nothing is skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use esp::{open_burst, seal_burst, Backend, DropReason, PktBuf, Suite};
use serde_json::{json, Value};

const PYTHON: &str = "/usr/bin/python3";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("esprit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn require_scapy() {
    let out = Command::new(PYTHON).args(["-c", "import scapy.layers.ipsec"]).output().unwrap_or_else(|e| {
        panic!("interop needs {PYTHON} with Debian's python3-scapy (apt-get install python3-scapy): {e}")
    });
    assert!(
        out.status.success(),
        "interop needs {PYTHON} with Debian's python3-scapy (apt-get install python3-scapy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Case {
    name: String,
    suite: Suite,
    esn: bool,
    udp: bool,
    /// None = transport, Some(v6) = tunnel with that outer family.
    tunnel: Option<bool>,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for suite in [
        Suite::AES128_GCM_16,
        Suite::AES256_GCM_16,
        Suite::CHACHA20_POLY1305,
    ] {
        for esn in [false, true] {
            for udp in [false, true] {
                for tunnel in [Some(false), Some(true), None] {
                    let mode = match tunnel {
                        Some(false) => "tunnel4",
                        Some(true) => "tunnel6",
                        None => "transport4",
                    };
                    let name = format!(
                        "{}-esn{}-udp{}-{mode}",
                        suite.name(),
                        u8::from(esn),
                        u8::from(udp)
                    );
                    v.push(Case {
                        name,
                        suite,
                        esn,
                        udp,
                        tunnel,
                    });
                }
            }
        }
    }
    v
}

fn inners(c: &Case) -> Vec<Vec<u8>> {
    match c.tunnel {
        Some(_) => vec![
            udp_v4(0),
            udp_v4(333),
            udp_v6(100, false),
            udp_v6(1200, true),
        ],
        None => vec![udp_v4(0), udp_v4(1), udp_v4(333), udp_v4(1400)],
    }
}

const ESN_HIGH: u64 = 7;

fn base_seq(c: &Case) -> u64 {
    if c.esn {
        ESN_HIGH << 32 | 10
    } else {
        10
    }
}

#[test]
fn scapy_opens_what_esprit_seals_and_esprit_opens_what_scapy_seals() {
    require_scapy();
    let dir = temp_dir("scapy");
    let mut jobs = Vec::new();
    for c in cases() {
        let mut prm = params(c.suite, c.esn, c.tunnel, c.udp);
        prm.initial_seq = base_seq(&c);
        let p = pair(&prm, Backend::FASTEST);
        let ins = inners(&c);
        let mut pkts: Vec<_> = ins.iter().map(|i| PktBuf::from_data(i, 128, 128)).collect();
        let mut v = vec![Err(DropReason::NotEsp); pkts.len()];
        seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
        let to_open: Vec<Value> = pkts
            .iter()
            .zip(&ins)
            .zip(&v)
            .enumerate()
            .map(|(i, ((pkt, inner), r))| {
                r.unwrap();
                let seq = base_seq(&c) + 1 + i as u64;
                json!({"wire": hex::encode(pkt.data()), "inner": hex::encode(inner),
                       "seq_low": seq as u32, "iv": hex::encode(seq.to_be_bytes())})
            })
            .collect();
        let to_seal: Vec<Value> = ins
            .iter()
            .enumerate()
            .map(|(i, inner)| json!({"inner": hex::encode(inner), "seq_low": 20 + i}))
            .collect();
        let (src, dst) = endpoints(c.tunnel == Some(true));
        jobs.push(json!({
            "name": c.name, "algo": if c.suite == Suite::CHACHA20_POLY1305 { "CHACHA20-POLY1305" } else { "AES-GCM" },
            "keymat": hex::encode(keymat(c.suite, 1)), "spi": p.out.spi(), "esn": c.esn, "esn_high": if c.esn { ESN_HIGH } else { 0 },
            "udp": c.udp, "mode": if c.tunnel.is_some() { "tunnel" } else { "transport" },
            "outer_v6": c.tunnel == Some(true), "src": src.to_string(), "dst": dst.to_string(),
            "to_open": to_open, "to_seal": to_seal,
        }));
    }
    let job_path = dir.join("job.json");
    let out_path = dir.join("out.json");
    std::fs::write(
        &job_path,
        serde_json::to_vec(&json!({ "cases": jobs })).unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scapy_interop.py");
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(&job_path)
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scapy interop failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    let results = result["results"].as_array().unwrap();
    assert_eq!(results.len(), cases().len());
    for (c, r) in cases().iter().zip(results) {
        assert_eq!(r["name"], c.name.as_str());
        assert_eq!(
            r["opened"].as_u64().unwrap() as usize,
            inners(c).len(),
            "{}: {}",
            c.name,
            r["errors"]
        );
        // Now esprit opens scapy's packets.
        let mut prm = params(c.suite, c.esn, c.tunnel, c.udp);
        prm.initial_seq = base_seq(c);
        let mut p = pair(&prm, Backend::FASTEST);
        p.inb.replay_mut().set_top(base_seq(c) + 5);
        let sealed = r["sealed"].as_array().unwrap();
        let mut pkts: Vec<_> = sealed
            .iter()
            .map(|h| PktBuf::from_data(&hex::decode(h.as_str().unwrap()).unwrap(), 0, 0))
            .collect();
        let mut v = vec![Err(DropReason::NotEsp); pkts.len()];
        open_burst(&mut p.inb, &p.open, &mut pkts, &mut v);
        for (i, ((r, pkt), inner)) in v.iter().zip(&pkts).zip(inners(c)).enumerate() {
            let d = r.unwrap_or_else(|e| {
                panic!("{}: esprit could not open scapy packet {i}: {e}", c.name)
            });
            assert_eq!(d.seq, base_seq(c) - 10 + 20 + i as u64, "{}", c.name);
            assert_eq!(pkt.data(), &inner[..], "{}: packet {i}", c.name);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pcap file of raw IP packets (LINKTYPE_RAW).
fn write_pcap(path: &Path, packets: &[Vec<u8>]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    std::fs::write(path, f).unwrap();
}

#[test]
fn tshark_decrypts_esprit_aes_gcm_byte_for_byte() {
    let version = Command::new("tshark")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!("interop needs tshark (apt-get install tshark): {e}");
        });
    assert!(version.status.success(), "tshark --version failed");
    let dir = temp_dir("tshark");
    let conf = dir.join("home/.config/wireshark");
    std::fs::create_dir_all(&conf).unwrap();
    let mut uat = String::new();
    let mut packets = Vec::new();
    let mut expected = Vec::new();
    let mut plaintexts = Vec::new();
    for (i, (suite, udp, v6)) in [
        (Suite::AES128_GCM_16, false, false),
        (Suite::AES256_GCM_16, true, false),
        (Suite::AES128_GCM_16, false, true),
        (Suite::AES256_GCM_16, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut prm = params(suite, false, Some(v6), udp);
        prm.spi = 0x0a00_0000 + i as u32;
        prm.keymat = esp::Keymat::new(suite, &keymat(suite, i as u8 + 3)).unwrap();
        let p = pair(&prm, Backend::FASTEST);
        let (src, dst) = endpoints(v6);
        uat.push_str(&format!(
            "\"{}\",\"{src}\",\"{dst}\",\"0x{:08x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{}\",\"NULL\",\"\"\n",
            if v6 { "IPv6" } else { "IPv4" },
            prm.spi,
            hex::encode(keymat(suite, i as u8 + 3)),
        ));
        let ins = [udp_v4(10 + i), udp_v6(200 + i, false)];
        let mut pkts: Vec<_> = ins.iter().map(|x| PktBuf::from_data(x, 128, 128)).collect();
        let mut v = vec![Err(DropReason::NotEsp); 2];
        seal_burst(&p.out, &p.seal, &mut pkts, &mut v);
        for ((pkt, r), inner) in pkts.iter().zip(v).zip(&ins) {
            r.unwrap();
            packets.push(pkt.data().to_vec());
            let pad = (4 - (inner.len() + 2) % 4) % 4;
            let mut plain = inner.clone();
            plain.extend(
                (1..=pad as u8).chain([pad as u8, if inner[0] >> 4 == 4 { 4 } else { 41 }]),
            );
            plaintexts.push(plain);
        }
        expected.push(("10.1.0.1", "10.2.0.1"));
        expected.push(("fd00:1::1", "fd00:2::1"));
    }
    std::fs::write(conf.join("esp_sa"), uat).unwrap();
    let pcap = dir.join("esprit.pcap");
    write_pcap(&pcap, &packets);
    let out = Command::new("tshark")
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("home/.config"))
        .args(["-n", "-r"])
        .arg(&pcap)
        .args([
            "-o",
            "esp.enable_encryption_decode:TRUE",
            "-o",
            "esp.enable_authentication_check:TRUE",
            "-o",
            "udp.try_heuristic_first:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "esp.spi",
            "-e",
            "esp.decrypted_data",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "udp.dstport",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), packets.len(), "tshark output:\n{stdout}");
    for ((line, (inner_src, _)), plain) in lines.iter().zip(&expected).zip(&plaintexts) {
        let f: Vec<&str> = line.split('|').collect();
        // tshark decrypted the packet to exactly the plaintext esprit
        // framed (inner packet, padding 1, 2, .., Pad Length, Next Header)...
        assert_eq!(
            f[1].replace(':', ""),
            hex::encode(plain),
            "decrypted data differs in: {line}\n{stdout}"
        );
        // ...and dissected the inner packet behind the outer one.
        assert!(
            f[2].contains(inner_src) || f[3].contains(inner_src),
            "inner packet not decoded in: {line}\n{stdout}"
        );
        assert!(
            f[4].contains("53"),
            "inner UDP not decoded in: {line}\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
