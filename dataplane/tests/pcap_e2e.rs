//! End to end through the real process on `net_pcap` ports (DPDK, no NIC, as
//! root): plaintext in → ESP out that tshark decrypts and ICV-checks; that
//! ESP fed to a second dataplane configured as the peer → the original
//! inner packets, byte for byte.
use std::path::{Path, PathBuf};
use std::process::Command;

use esprit_bench::pcapgen::{read_pcap, Traffic};

const KEY: &str = "2b7e151628aed2a6abf7158809cf4f3cdeadbeef";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("esprit-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config with pcap ports. `outside_tx`/`inside_tx` give the number of TX
/// pcaps (one per worker: each worker needs its own TX queue).
struct Cfg<'a> {
    tag: &'a str,
    outside_rx: &'a Path,
    inside_rx: &'a Path,
    sas: &'a str,
    workers: usize,
    extra: &'a str,
    /// `dataplane.crypto.backend`
    backend: &'a str,
}

fn config(dir: &Path, tag: &str, outside_rx: &Path, inside_rx: &Path, sas: &str) -> PathBuf {
    config_with(dir, &Cfg { tag, outside_rx, inside_rx, sas, workers: 1, extra: "metrics: { listen: null }", backend: "auto" })
}

fn config_with(dir: &Path, c: &Cfg<'_>) -> PathBuf {
    let tx = |side: &str| -> String {
        (0..c.workers).map(|q| format!(",tx_pcap={}/{}-{side}-tx{q}.pcap", dir.display(), c.tag)).collect()
    };
    let y = format!(
        r#"
dataplane:
  eal_args: ["-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-e2e-{pid}-{tag}", "--log-level", "lib.eal:error"]
  ports:
    outside: {{ device: "net_pcap0,rx_pcap={orx}{otx}", rx_desc: 512, tx_desc: 512 }}
    inside: {{ device: "net_pcap1,rx_pcap={irx}{itx}", rx_desc: 512, tx_desc: 512 }}
  workers: {{ count: {workers} }}
  crypto: {{ backend: {backend} }}
  addresses:
    outside: [172.16.1.5]
    inside: [192.168.105.254]
    outside_gateway: 172.16.1.1
    inside_gateway: 192.168.105.1
  neighbours:
    - {{ ip: 172.16.1.1, mac: "02:00:00:00:01:01" }}
    - {{ ip: 192.168.105.1, mac: "02:00:00:00:02:01" }}
  sa_table: {{ path: /dev/shm/esprit-e2e-{pid}-{tag}, capacity: 64 }}
  static_sas:
{sas}
{extra}
"#,
        pid = std::process::id(),
        tag = c.tag,
        orx = c.outside_rx.display(),
        irx = c.inside_rx.display(),
        otx = tx("outside"),
        itx = tx("inside"),
        workers = c.workers,
        backend = c.backend,
        sas = c.sas,
        extra = c.extra,
    );
    let p = dir.join(format!("{}.yaml", c.tag));
    std::fs::write(&p, y).unwrap();
    p
}

/// All frames a run sent on one side, over its per-worker pcaps.
fn tx_frames(dir: &Path, tag: &str, side: &str, workers: usize) -> Vec<Vec<u8>> {
    (0..workers)
        .flat_map(|q| read_pcap(&std::fs::read(dir.join(format!("{tag}-{side}-tx{q}.pcap"))).unwrap()).unwrap())
        .collect()
}

fn cleanup(dir: &Path, tags: &[&str]) {
    for t in tags {
        let _ = std::fs::remove_file(format!("/dev/shm/esprit-e2e-{}-{t}", std::process::id()));
    }
    std::fs::remove_dir_all(dir).ok();
}

fn run_dataplane(cfg: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_esprit-dataplane"))
        .args(["--config"])
        .arg(cfg)
        .args(["--idle-exit-ms", "400", "--max-secs", "30"])
        .output()
        .expect("run esprit-dataplane");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "esprit-dataplane failed (root and DPDK needed):\n{text}");
    text
}

/// (packets, bytes) of the SA with `spi` in the table a run left behind.
fn sa_counters(tag: &str, spi: u32) -> (u64, u64) {
    let r = sa_table::Reader::attach(Path::new(&format!("/dev/shm/esprit-e2e-{}-{tag}", std::process::id()))).unwrap();
    let id = r.known_ids().find(|id| r.read(*id).is_ok_and(|p| p.spi == spi)).expect("the SA is in the table");
    let st = r.state(id).unwrap();
    (st.pkts(), st.bytes())
}

fn empty_pcap(p: &Path) {
    let mut b = Vec::new();
    esprit_bench::pcapgen::write_pcap_header(&mut b).unwrap();
    std::fs::write(p, b).unwrap();
}

/// A line of tshark's `esp_sa` table: IPv4 `src` → `dst` (`*` for any),
/// AES-128-GCM with [`KEY`].
fn tshark_sa(src: &str, dst: &str, spi: u32) -> String {
    format!("\"IPv4\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{KEY}\",\"NULL\",\"\"")
}

fn tshark_esp(pcap: &Path, home: &Path, sa_lines: &[String]) -> Vec<String> {
    let conf = home.join(".config/wireshark");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("esp_sa"), sa_lines.join("\n") + "\n").unwrap();
    let out = Command::new("tshark")
        .env("HOME", home)
        .arg("-r")
        .arg(pcap)
        .args(["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"])
        .args(["-T", "fields", "-e", "esp.spi", "-e", "esp.sequence", "-e", "esp.icv_good", "-e", "ip.dst", "-e", "udp.dstport"])
        .output()
        .expect("tshark (scripts/setup installs it)");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// `dir/plain.pcap`: `small` 60-byte frames over `flows` flows to
/// 192.168.105.x, then `large` 1434-byte ones; and the frames written.
fn mixed_traffic(dir: &Path, small: usize, flows: usize, large: usize) -> (PathBuf, Vec<Vec<u8>>) {
    let mut t = Traffic::anchor(60);
    t.packets = small;
    t.flows = flows;
    let plain = dir.join("plain.pcap");
    let mut buf = Vec::new();
    t.write_pcap(&mut buf).unwrap();
    t.frame_len = 1434;
    for i in 0..large {
        esprit_bench::pcapgen::write_pcap_record(&mut buf, 1000 + i as u32, &t.frame(i)).unwrap();
    }
    std::fs::write(&plain, &buf).unwrap();
    (plain, read_pcap(&buf).unwrap())
}

#[test]
fn plaintext_in_esp_out_decrypted_by_tshark_and_back_through_a_peer() {
    roundtrip("ring");
}

#[test]
fn the_same_round_trip_on_intel_ipsec_mb_cpu_crypto() {
    roundtrip("ipsec-mb");
}

fn roundtrip(backend: &str) {
    let dir = tmpdir(&format!("roundtrip-{backend}"));
    let (plain, sent) = mixed_traffic(&dir, 300, 16, 100);
    let none = dir.join("none.pcap");
    empty_pcap(&none);

    // Gateway A: protects 192.168.105.0/24 with SPI 0x1005.
    let out_sa = format!(
        "    - {{ spi: 0x1005, direction: out, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.105.0/24\"] }}"
    );
    let (tag_a, tag_b) = (format!("a-{backend}"), format!("b-{backend}"));
    let cfg_a = config_with(&dir, &Cfg { tag: &tag_a, outside_rx: &none, inside_rx: &plain, sas: &out_sa, workers: 1, extra: "metrics: { listen: null }", backend });
    let log = run_dataplane(&cfg_a);
    let esp_out = dir.join(format!("{tag_a}-outside-tx0.pcap"));
    let esp = tx_frames(&dir, &tag_a, "outside", 1);
    assert_eq!(esp.len(), sent.len(), "every packet protected:\n{log}");

    // tshark decrypts each one and checks its ICV (an independent implementation).
    let rows = tshark_esp(
        &esp_out,
        &dir,
        &[tshark_sa("172.16.1.5", "172.16.2.5", 0x1005)],
    );
    assert_eq!(rows.len(), sent.len());
    for (i, r) in rows.iter().enumerate() {
        let c: Vec<&str> = r.split('\t').collect();
        assert_eq!(c[0], "0x00001005", "row {i}: {r}");
        assert_eq!(c[1], (i + 1).to_string(), "row {i}: sequence numbers from 1, in order: {r}");
        assert_eq!(c[2], "1", "row {i}: tshark's ICV check: {r}");
        // The inner destination, decrypted by tshark, is the original one.
        let inner_dst = c[3].split(',').next_back().unwrap();
        assert!(inner_dst.starts_with("192.168.105."), "row {i}: {r}");
    }
    // The check can fail: one flipped ICV bit, and tshark says so.
    let mut bad = esp.clone();
    let last = bad[0].len() - 1;
    bad[0][last] ^= 1;
    let bad_pcap = dir.join("bad.pcap");
    let mut b = Vec::new();
    esprit_bench::pcapgen::write_pcap_header(&mut b).unwrap();
    esprit_bench::pcapgen::write_pcap_record(&mut b, 0, &bad[0]).unwrap();
    std::fs::write(&bad_pcap, b).unwrap();
    let rows_bad = tshark_esp(
        &bad_pcap,
        &dir,
        &[tshark_sa("172.16.1.5", "172.16.2.5", 0x1005)],
    );
    assert_eq!(rows_bad[0].split('\t').nth(2), Some("0"), "tshark must flag a tampered ICV: {rows_bad:?}");
    // Ethernet towards the outside gateway.
    assert_eq!(&esp[0][0..6], &[2, 0, 0, 0, 1, 1]);

    // The SA counts what it protected, the inner IP packets, as the peer
    // will count them after decrypting (RFC 4301 §4.4.2.1 lifetimes; not the
    // ESP packets on the wire, which a byte lifetime would reach early).
    let inner_octets: u64 = sent.iter().map(|s| u64::from(u16::from_be_bytes([s[16], s[17]]))).sum();
    let wire_octets: u64 = esp.iter().map(|f| (f.len() - 14) as u64).sum();
    assert!(wire_octets > inner_octets);
    assert_eq!(sa_counters(&tag_a, 0x1005), (sent.len() as u64, inner_octets), "outbound SA counters");

    // Gateway B, the peer: opens SPI 0x1005 and gives back the inner packets.
    let in_sa = format!(
        "    - {{ spi: 0x1005, direction: in, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.5.0/24\"], local_selectors: [\"192.168.105.0/24\"] }}"
    );
    let cfg_b = config_with(&dir, &Cfg { tag: &tag_b, outside_rx: &esp_out, inside_rx: &none, sas: &in_sa, workers: 1, extra: "metrics: { listen: null }", backend });
    let log = run_dataplane(&cfg_b);
    let back = tx_frames(&dir, &tag_b, "inside", 1);
    assert_eq!(back.len(), sent.len(), "every packet decrypted:\n{log}");
    for (i, (b, s)) in back.iter().zip(&sent).enumerate() {
        assert_eq!(&b[0..6], &[2, 0, 0, 0, 2, 1], "packet {i}: to the inside gateway");
        // The inner IP packet, byte for byte (the frame may carry Ethernet padding).
        let ip_len = u16::from_be_bytes([s[16], s[17]]) as usize;
        assert_eq!(&b[14..], &s[14..14 + ip_len], "packet {i} differs");
    }
    assert_eq!(sa_counters(&tag_b, 0x1005), (sent.len() as u64, inner_octets), "inbound SA counters: the same octets");
    cleanup(&dir, &[&tag_a, &tag_b]);
}

fn vectors() -> Vec<serde_json::Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/esp-aead.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap();
    v["vectors"].as_array().unwrap().clone()
}

fn ipv4_header(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let ck = esprit_bench::pcapgen::checksum(&[&h], 0);
    h[10..12].copy_from_slice(&ck.to_be_bytes());
    h
}

#[test]
fn published_esp_vectors_in_plaintext_out_byte_identical() {
    // Every vector whose sequence number a fresh SA accepts (ESN high half 0:
    // the receiver infers the high bits from its window, RFC 4303 App. A).
    let dir = tmpdir("vectors");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let (peer, us) = ([172, 16, 2, 5], [172, 16, 1, 5]);
    // Vectors sharing an SPI go to separate runs (one inbound SA per SPI).
    let mut pending: Vec<serde_json::Value> = vectors();
    let mut checked = Vec::new();
    let mut batch = 0;
    while !pending.is_empty() {
    let mut frames = Vec::new();
    let mut expect = Vec::new();
    let mut sas = String::new();
    let mut spis = std::collections::HashSet::new();
    let mut names = Vec::new();
    let mut later = Vec::new();
    for v in std::mem::take(&mut pending) {
        let seq = u64::from_str_radix(v["seq"].as_str().unwrap(), 16).unwrap();
        let spi = u32::from_str_radix(v["spi"].as_str().unwrap(), 16).unwrap();
        if seq >> 32 != 0 || spi < 256 {
            continue;
        }
        if !spis.insert(spi) {
            later.push(v);
            continue;
        }
        let pt = hex::decode(v["esp_payload_plaintext"].as_str().unwrap()).unwrap();
        let esp = hex::decode(v["esp_packet"].as_str().unwrap()).unwrap();
        let (nh, pad) = (pt[pt.len() - 1], pt[pt.len() - 2] as usize);
        let payload = &pt[..pt.len() - 2 - pad];
        let tunnel = nh == 4;
        let suite = match v["transform_id"].as_u64().unwrap() {
            20 | 30 if v["key"].as_str().unwrap().len() == 32 => "aes-128-gcm",
            20 | 30 => "aes-256-gcm",
            _ => "chacha20-poly1305",
        };
        let outer = if let Some(o) = v.get("outer_ipv4_packet") {
            hex::decode(o.as_str().unwrap()).unwrap()
        } else {
            let mut o = ipv4_header(peer, us, 50, esp.len());
            o.extend_from_slice(&esp);
            o
        };
        let (src, dst) = (&outer[12..16], &outer[16..20]);
        let ip = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
        let mode = format!("mode: {}, src: {}, dst: {}", if tunnel { "tunnel" } else { "transport" }, ip(src), ip(dst));
        sas += &format!(
            "    - {{ spi: {spi}, direction: in, suite: {suite}, key: \"{}{}\", esn: {}, iiv: {}, {mode}, replay_window: 64 }}\n",
            v["key"].as_str().unwrap(),
            v["salt"].as_str().unwrap(),
            v["esn"].as_bool().unwrap(),
            v["iiv"].as_bool().unwrap(),
        );
        let mut f = vec![2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 0, 0x20, 0x08, 0x00];
        f.extend_from_slice(&outer);
        frames.push(f);
        expect.push(if tunnel {
            payload.to_vec()
        } else {
            let mut e = ipv4_header(src.try_into().unwrap(), dst.try_into().unwrap(), nh, payload.len());
            e.extend_from_slice(payload);
            e
        });
        names.push(v["name"].as_str().unwrap().to_string());
    }
    pending = later;
    let tag = format!("v{batch}");
    batch += 1;
    let input = dir.join(format!("esp-in-{tag}.pcap"));
    let mut b = Vec::new();
    esprit_bench::pcapgen::write_pcap_header(&mut b).unwrap();
    for (i, f) in frames.iter().enumerate() {
        esprit_bench::pcapgen::write_pcap_record(&mut b, i as u32, f).unwrap();
    }
    std::fs::write(&input, b).unwrap();
    // Inner packets of the vectors go to addresses we do not know: one next hop.
    let cfg = config(&dir, &tag, &input, &none, &sas);
    let log = run_dataplane(&cfg);
    let out = tx_frames(&dir, &tag, "inside", 1);
    assert_eq!(out.len(), expect.len(), "vectors {names:?}\n{log}");
    for ((o, e), n) in out.iter().zip(&expect).zip(&names) {
        assert_eq!(&o[14..], &e[..], "{n}: decapsulated packet differs");
    }
    let _ = std::fs::remove_file(format!("/dev/shm/esprit-e2e-{}-{tag}", std::process::id()));
    checked.extend(names);
    }
    // Every vector a fresh SA can accept, the implicit-IV ones included.
    for must in ["rfc7634-appendix-a", "iiv-chacha20poly1305-rfc7634-sa", "iiv-aes-gcm-16-case2-sa", "mcgrew-gcm-test-01-case-2"] {
        assert!(checked.iter().any(|n| n == must), "{must} not checked: {checked:?}");
    }
    cleanup(&dir, &[]);
}

#[test]
fn two_workers_hand_inbound_esp_to_the_sa_owner() {
    let dir = tmpdir("handoff");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let mut t = Traffic::anchor(200);
    t.packets = 500;
    t.dst = "192.168.105.1".parse().unwrap();
    let plain = dir.join("plain.pcap");
    let mut buf = Vec::new();
    t.write_pcap(&mut buf).unwrap();
    std::fs::write(&plain, &buf).unwrap();
    let out_sa = format!(
        "    - {{ spi: 0x1005, direction: out, suite: aes-256-gcm, key: \"{KEY}{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.105.0/24\"] }}"
    )
    .replace(&format!("{KEY}{KEY}"), &format!("{}{}", &KEY[..32], KEY));
    run_dataplane(&config(&dir, "h1", &none, &plain, &out_sa));
    let esp = dir.join("h1-outside-tx0.pcap");
    // The peer, with two workers: the inbound SA is installed second, in slot
    // 1, so worker 1 owns it; only worker 0 polls the single-queue pcap port.
    let sas = format!(
        "    - {{ spi: 0x3005, direction: out, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.2.5, dst: 172.16.1.5, selectors: [\"10.99.0.0/16\"] }}\n{}",
        out_sa.replace("direction: out", "direction: in").replace("selectors: [\"192.168.105.0/24\"]", "local_selectors: [\"192.168.105.0/24\"]")
    );
    let cfg = config_with(
        &dir,
        &Cfg { tag: "h2", outside_rx: &esp, inside_rx: &none, sas: &sas, workers: 2, extra: "metrics: { listen: null }", backend: "auto" },
    );
    let log = run_dataplane(&cfg);
    let back = tx_frames(&dir, "h2", "inside", 2);
    assert_eq!(back.len(), t.packets, "{log}");
    let w1 = std::fs::read(dir.join("h2-inside-tx1.pcap")).unwrap();
    assert_eq!(read_pcap(&w1).unwrap().len(), t.packets, "worker 1 (the owner) sent every packet:\n{log}");
    let line = log.lines().find(|l| l.starts_with("worker 0:")).unwrap();
    assert!(line.contains(&format!("rx outside {}", t.packets)), "worker 0 received them all: {line}");
    cleanup(&dir, &["h1", "h2"]);
}

/// The value of a series in the summary a run prints at exit (non-zero
/// drop and byte counters).
fn summary_value(log: &str, series: &str) -> Option<u64> {
    log.lines().map(str::trim).find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
}

/// Transport mode (the Ethernet header follows each packet's own next hop,
/// written after sealing) on both outbound crypto paths, tshark checking
/// every ICV; and a tunnel SA whose next hop is unknown: the whole run is
/// dropped before sealing, counted, and an ARP request goes out instead.
#[test]
fn transport_mode_outbound_and_a_tunnel_without_next_hop() {
    let dir = tmpdir("transport");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let (plain, sent) = mixed_traffic(&dir, 40, 8, 20);
    let mut tags = Vec::new();
    for backend in ["ipsec-mb", "ring"] {
        let tag = format!("tr-{backend}");
        let sa = format!(
            "    - {{ spi: 0x2005, direction: out, suite: aes-128-gcm, key: \"{KEY}\", mode: transport, src: 192.168.5.1, dst: 192.168.105.1, selectors: [\"192.168.105.0/24\"] }}"
        );
        let cfg = config_with(&dir, &Cfg { tag: &tag, outside_rx: &none, inside_rx: &plain, sas: &sa, workers: 1, extra: "metrics: { listen: null }", backend });
        let log = run_dataplane(&cfg);
        let esp = tx_frames(&dir, &tag, "outside", 1);
        assert_eq!(esp.len(), sent.len(), "{backend}: every packet protected:\n{log}");
        let rows = tshark_esp(
            &dir.join(format!("{tag}-outside-tx0.pcap")),
            &dir,
            &[tshark_sa("192.168.5.1", "*", 0x2005)],
        );
        assert_eq!(rows.len(), sent.len());
        for (i, (r, (e, s))) in rows.iter().zip(esp.iter().zip(&sent)).enumerate() {
            let c: Vec<&str> = r.split('\t').collect();
            assert_eq!((c[0], c[2]), ("0x00002005", "1"), "{backend} row {i}: SPI and tshark's ICV check: {r}");
            assert_eq!(c[1], (i + 1).to_string(), "{backend} row {i}: sequence numbers from 1: {r}");
            // The packet's own header, protocol now ESP, towards the outside gateway.
            assert_eq!(&e[0..6], &[2, 0, 0, 0, 1, 1], "{backend} packet {i}: next hop");
            assert_eq!((&e[12..14], e[14 + 9]), (&[8u8, 0][..], 50), "{backend} packet {i}: IPv4, ESP");
            assert_eq!(&e[14 + 12..14 + 20], &s[14 + 12..14 + 20], "{backend} packet {i}: addresses kept");
            // The inner UDP destination port, decrypted by tshark.
            assert_eq!(c[4], "5001", "{backend} row {i}: {r}");
        }
        let bytes: u64 = esp.iter().map(|f| f.len() as u64).sum();
        assert_eq!(
            summary_value(&log, "esprit_port_bytes_total{dir=\"tx\",port=\"outside\",worker=\"0\"}"),
            Some(bytes),
            "{backend}: transmitted bytes counted as sent:\n{log}"
        );
        tags.push(tag);
    }
    // No neighbour entry for the outside gateway: nothing sealed or sent
    // but a request for it.
    let tag = "nohop".to_string();
    let sa = format!(
        "    - {{ spi: 0x1005, direction: out, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.105.0/24\"] }}"
    );
    let cfg = config_with(&dir, &Cfg { tag: &tag, outside_rx: &none, inside_rx: &plain, sas: &sa, workers: 1, extra: "metrics: { listen: null }", backend: "ipsec-mb" });
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    let without = yaml.replace("    - { ip: 172.16.1.1, mac: \"02:00:00:00:01:01\" }\n", "");
    assert_ne!(yaml, without, "the test removes the gateway's neighbour entry");
    std::fs::write(&cfg, without).unwrap();
    let log = run_dataplane(&cfg);
    let out = tx_frames(&dir, &tag, "outside", 1);
    assert!(!out.is_empty() && out.iter().all(|f| f[12..14] == [8, 6]), "only ARP requests go out:\n{log}");
    assert_eq!(&out[0][14 + 24..14 + 28], &[172, 16, 1, 1], "ARP asks for the gateway");
    assert_eq!(summary_value(&log, "esprit_drops_total{reason=\"no_neighbour\",worker=\"0\"}"), Some(sent.len() as u64), "{log}");
    assert_eq!(summary_value(&log, "esprit_esp_packets_total"), None, "{log}");
    tags.push(tag);
    cleanup(&dir, &tags.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn sigterm_stops_cleanly_metrics_move_and_a_restart_continues_the_sequence() {
    use std::io::{Read, Write};
    let dir = tmpdir("restart");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let mut t = Traffic::anchor(60);
    t.packets = 64;
    let plain = dir.join("plain.pcap");
    let mut buf = Vec::new();
    t.write_pcap(&mut buf).unwrap();
    std::fs::write(&plain, &buf).unwrap();
    let sa = format!(
        "    - {{ spi: 0x1005, direction: out, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.105.0/24\"] }}"
    );
    let port = 20000 + (std::process::id() % 20000) as u16;
    let dev = format!("{},infinite_rx=1", plain.display());
    let cfg = config_with(
        &dir,
        &Cfg { tag: "r", outside_rx: &none, inside_rx: Path::new(&dev), sas: &sa, workers: 1, extra: &format!("metrics: {{ listen: \"127.0.0.1:{port}\", per_sa: true }}"), backend: "auto" },
    );
    let scrape_text = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let value = |text: &str, series: &str| -> Option<u64> {
        text.lines().find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
    };
    let scrape = || value(&scrape_text()?, "esprit_esp_packets_total{op=\"encrypt\",worker=\"0\"}");
    /// Kills the dataplane if the test fails before its SIGTERM.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut last_seq = 0u32;
    for round in 0..2 {
        let mut child = Reap(
            Command::new(env!("CARGO_BIN_EXE_esprit-dataplane"))
                .arg("--config")
                .arg(&cfg)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut first = None;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if let Some(v) = scrape() {
                if v > 0 {
                    first = Some(v);
                    break;
                }
            }
        }
        let first = first.expect("metrics endpoint answers with traffic counted");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let second = scrape().unwrap();
        assert!(second > first, "round {round}: the encrypt counter moves ({first} -> {second})");
        // The SA table's view, refreshed once a second.
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let text = scrape_text().unwrap();
        assert_eq!(value(&text, "esprit_active_sas{dir=\"out\"}"), Some(1), "{text}");
        let per_sa = value(&text, "esprit_sa_packets_total{dir=\"out\",spi=\"0x00001005\"}").unwrap_or(0);
        assert!(per_sa > 0, "per-SA packets counted from the table: {text}");
        // SIGTERM: stop, flush, exit 0.
        Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
        let st = child.0.wait().unwrap();
        assert!(st.success(), "round {round}: exit status after SIGTERM: {st}");
        let esp = tx_frames(&dir, "r", "outside", 1);
        assert!(!esp.is_empty());
        let seq_at = |f: &Vec<u8>| u32::from_be_bytes(f[14 + 20 + 4..14 + 20 + 8].try_into().unwrap());
        if round == 1 {
            assert!(seq_at(&esp[0]) > last_seq, "a restarted dataplane goes on from the table's sequence counter ({} after {last_seq})", seq_at(&esp[0]));
        }
        last_seq = seq_at(esp.last().unwrap());
    }
    cleanup(&dir, &["r"]);
}

#[test]
fn sas_beyond_the_ipsec_mb_sessions_fall_back_to_ring_logged_once_counted_and_noted_per_sa() {
    let dir = tmpdir("fallback");
    let (plain, sent) = mixed_traffic(&dir, 50, 4, 10);
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    // Three outbound SAs, one ipsec-mb session: one SA gets it, two run on ring.
    let sas: String = [0x1005u32, 0x1006, 0x1007]
        .iter()
        .enumerate()
        .map(|(i, spi)| {
            format!(
                "    - {{ spi: {spi:#x}, direction: out, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.{}.0/24\"] }}\n",
                105 + i
            )
        })
        .collect();
    let tag = "fallback";
    let cfg = config_with(
        &dir,
        &Cfg { tag, outside_rx: &none, inside_rx: &plain, sas: &sas, workers: 1, extra: "metrics: { listen: null }", backend: "ipsec-mb, sessions: 1" },
    );
    let log = run_dataplane(&cfg);
    assert_eq!(log.matches("ipsec-mb has no session left").count(), 2, "each fallback logged once:\n{log}");
    assert_eq!(
        summary_value(&log, "esprit_sa_install_failures_total{reason=\"ipsec_mb_no_session\"}"),
        Some(2),
        "{log}"
    );
    // Traffic still goes through, on whichever backend its SA got.
    assert_eq!(tx_frames(&dir, tag, "outside", 1).len(), sent.len(), "{log}");
    let r = sa_table::Reader::attach(Path::new(&format!("/dev/shm/esprit-e2e-{}-{tag}", std::process::id()))).unwrap();
    let mut backends: Vec<Vec<&str>> = r.known_ids().map(|id| r.state(id).unwrap().backends().names()).collect();
    backends.sort();
    assert_eq!(backends, vec![vec!["ipsec-mb"], vec!["ring", "fallback"], vec!["ring", "fallback"]]);
    cleanup(&dir, &[tag]);
}
