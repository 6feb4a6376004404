//! End to end through the real process on `net_pcap` ports (DPDK, no NIC, as
//! root): plaintext in → ESP out that tshark decrypts and ICV-checks; that
//! ESP fed to a second dataplane configured as the peer → the original
//! inner packets, byte for byte. Replay protection across what rebuilds a
//! worker's SA contexts (a journal poll of more than 16 changes, a SIGKILL
//! and restart, an owner change): captured ESP replayed is dropped and
//! counted `replayed`, every valid packet delivered once.
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

/// A dataplane started in the background; killed if the test fails before
/// it stops it.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the dataplane on `cfg` without waiting (no idle exit; stopped
/// after 60 s at the latest).
fn spawn_dataplane(cfg: &Path) -> Reap {
    Reap(
        Command::new(env!("CARGO_BIN_EXE_esprit-dataplane"))
            .arg("--config")
            .arg(cfg)
            .args(["--max-secs", "60"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start esprit-dataplane"),
    )
}

/// SIGTERM, then the exit status and what it printed.
fn stop_dataplane(mut child: Reap) -> String {
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let mut out = String::new();
    {
        use std::io::Read;
        let _ = child.0.stdout.take().unwrap().read_to_string(&mut out);
        let _ = child.0.stderr.take().unwrap().read_to_string(&mut out);
    }
    let st = child.0.wait().unwrap();
    assert!(st.success(), "exit status after SIGTERM: {st}\n{out}");
    out
}

/// Polls `cond` every 10 ms for up to 20 s; panics naming `what` after.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn write_frames(p: &Path, frames: &[Vec<u8>]) {
    let mut b = Vec::new();
    esprit_bench::pcapgen::write_pcap_header(&mut b).unwrap();
    for (i, f) in frames.iter().enumerate() {
        esprit_bench::pcapgen::write_pcap_record(&mut b, i as u32, f).unwrap();
    }
    std::fs::write(p, b).unwrap();
}

/// ESP from the peer (172.16.2.5 → 172.16.1.5, tunnel mode, AES-128-GCM
/// with [`KEY`]) on `spi`, one frame per sequence number in `seqs`, each
/// carrying its own inner packet (anchor traffic frame `first + i`, which
/// [`tunnel_in_sa`] lets through). Returns the frames and the inner packets.
fn esp_frames(spi: u32, esn: bool, seqs: &[u64], first: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut p = esp::SaParams::new(spi, esp::Suite::AES128_GCM_16, &hex::decode(KEY).unwrap()).unwrap();
    p.esn = esn;
    p.mode = esp::Mode::Tunnel { src: "172.16.2.5".parse().unwrap(), dst: "172.16.1.5".parse().unwrap() };
    let aead = esp::soft_aead(esp::Backend::FASTEST, &p).unwrap();
    let t = Traffic::anchor(60);
    let (mut frames, mut inners) = (Vec::new(), Vec::new());
    for (i, &seq) in seqs.iter().enumerate() {
        let f = t.frame(first + i);
        let inner = f[14..14 + usize::from(u16::from_be_bytes([f[16], f[17]]))].to_vec();
        // The engine sends `initial_seq + 1` first.
        p.initial_seq = seq - 1;
        let sa = esp::OutboundSa::new(&p).unwrap();
        let mut pkts = [esp::PktBuf::from_data(&inner, 128, 64)];
        let mut v = [Err(esp::DropReason::NotEsp)];
        esp::seal_burst(&sa, &aead, &mut pkts, &mut v);
        assert_eq!(v[0], Ok(()), "sealing {spi:#x} seq {seq:#x}");
        let mut e = vec![2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 0, 0x20, 8, 0];
        e.extend_from_slice(pkts[0].data());
        frames.push(e);
        inners.push(inner);
    }
    (frames, inners)
}

/// The static inbound SA [`esp_frames`] is sealed for: any inner addresses,
/// a 1024-packet window unless `extra` says otherwise.
fn tunnel_in_sa(spi: u32, extra: &str) -> String {
    format!("    - {{ spi: {spi:#x}, direction: in, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.2.5, dst: 172.16.1.5{extra} }}\n")
}

/// Checks that a run sent inside exactly the inner packets `want`, each
/// once, in any order.
fn assert_delivered(dir: &Path, tag: &str, workers: usize, mut want: Vec<Vec<u8>>, what: &str, log: &str) {
    let mut got: Vec<Vec<u8>> = tx_frames(dir, tag, "inside", workers).into_iter().map(|f| f[14..].to_vec()).collect();
    assert_eq!(got.len(), want.len(), "{what}: packets sent inside\n{log}");
    got.sort();
    want.sort();
    assert!(got == want, "{what}: not the packets expected\n{log}");
}

/// The SA table a config's static SAs went into.
fn table_path(tag: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/esprit-e2e-{}-{tag}", std::process::id()))
}

/// (packets accepted, drops counted `replayed`) in the table's state of
/// inbound SA `spi`, as the dataplane leaves them.
fn sa_counts(r: &sa_table::Reader, spi: u32) -> Option<(u64, u64)> {
    let st = r.state(r.lookup_inbound_spi(spi)?)?;
    Some((st.pkts(), st.drops()[esp::DropReason::Replayed.index()]))
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

/// Every vector of `testdata/esp-aead.json` and `esp-aead-extra.json`.
fn vectors() -> Vec<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    ["esp-aead.json", "esp-aead-extra.json"]
        .iter()
        .flat_map(|f| {
            let p = dir.join(f);
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap();
            v["vectors"].as_array().unwrap().clone()
        })
        .collect()
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

/// One vector as the dataplane sees it.
struct Vec1 {
    name: String,
    spi: u32,
    seq: u64,
    esn: bool,
    iiv: bool,
    /// `dataplane.static_sas[].suite`
    suite: &'static str,
    /// key | salt, hex
    keymat: String,
    esp: Vec<u8>,
    /// The inner packet's payload (tunnel: the inner IP packet) and Next Header.
    payload: Vec<u8>,
    nh: u8,
    outer: Option<Vec<u8>>,
}

impl Vec1 {
    fn from_json(v: &serde_json::Value) -> Vec1 {
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("field {k}")).to_owned();
        let pt = hex::decode(s("esp_payload_plaintext")).unwrap();
        let (nh, pad) = (pt[pt.len() - 1], pt[pt.len() - 2] as usize);
        let key_len = s("key").len() / 2;
        let suite = match (v["transform_id"].as_u64().unwrap(), key_len) {
            (20 | 30, 16) => "aes-128-gcm",
            (20 | 30, 24) => "aes-192-gcm",
            (20 | 30, 32) => "aes-256-gcm",
            (28 | 31, 32) => "chacha20-poly1305",
            other => panic!("{}: transform/key length {other:?}", s("name")),
        };
        Vec1 {
            name: s("name"),
            spi: u32::from_str_radix(&s("spi"), 16).unwrap(),
            seq: u64::from_str_radix(&s("seq"), 16).unwrap(),
            esn: v["esn"].as_bool().unwrap(),
            iiv: v["iiv"].as_bool().unwrap(),
            suite,
            keymat: s("key") + &s("salt"),
            esp: hex::decode(s("esp_packet")).unwrap(),
            payload: pt[..pt.len() - 2 - pad].to_vec(),
            nh,
            outer: v.get("outer_ipv4_packet").and_then(|o| o.as_str()).map(|o| hex::decode(o).unwrap()),
        }
    }

    /// Tunnel mode when the payload is an IP packet marked as such (RFC
    /// 7634's), transport otherwise (McGrew's carry Next Header 1).
    fn tunnel(&self) -> bool {
        self.nh == 4
    }

    /// A static SA line for this vector's SA, `dir` in or out, between
    /// `src` and `dst` (outer addresses, or the transport-mode hosts).
    fn sa_line(&self, dir: &str, src: &str, dst: &str, rest: &str) -> String {
        format!(
            "    - {{ spi: {}, direction: {dir}, suite: {}, key: \"{}\", esn: {}, iiv: {}, mode: {}, src: {src}, dst: {dst}, initial_seq: {}{rest} }}\n",
            self.spi,
            self.suite,
            self.keymat,
            self.esn,
            self.iiv,
            if self.tunnel() { "tunnel" } else { "transport" },
            self.seq,
        )
    }
}

fn ip_str(b: &[u8]) -> String {
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

fn pcap_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    esprit_bench::pcapgen::write_pcap_header(&mut b).unwrap();
    for (i, f) in frames.iter().enumerate() {
        esprit_bench::pcapgen::write_pcap_record(&mut b, i as u32, f).unwrap();
    }
    b
}

/// A run on ipsec-mb whose SAs went to another backend did not test ipsec-mb.
fn fell_back(log: &str, failures: &mut Vec<String>) {
    for l in log.lines().filter(|l| l.contains("crypto ipsec-mb refuses") || l.contains("crypto ipsec-mb cannot key")) {
        failures.push(format!("not on the backend asked for: {l}"));
    }
}

const ETH_IPV4: [u8; 14] = [2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 0, 0x20, 0x08, 0x00];

/// Every vector through the dataplane's static-SA path on `backend`, as a
/// user checking the product would: an inbound SA from the vector (its
/// `initial_seq` the vector's SN, so that a receive window seeded from it
/// infers the ESN high half), a tampered copy and then the ESP packet in,
/// the inside capture compared byte for byte and the copy refused as
/// `icv_mismatch`; outbound, where the IV is the sequence number (RFC 8750),
/// an outbound SA sending from the vector's SN, the outside capture
/// compared byte for byte. The one vector no SA can carry (SPI 0, RFC 4303
/// §2.1) must be refused by the configuration. A vector that fails is
/// named; none is skipped.
fn published_vectors_through_the_dataplane(backend: &str) {
    let all: Vec<Vec1> = vectors().iter().map(Vec1::from_json).collect();
    assert_eq!(all.len(), 13 + 4, "every vector of both files");
    let dir = tmpdir(&format!("vectors-{backend}"));
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let mut failures: Vec<String> = Vec::new();
    let mut passed_in: Vec<&str> = Vec::new();
    let mut passed_out: Vec<&str> = Vec::new();
    let (peer, us) = ([172, 16, 2, 5], [172, 16, 1, 5]);

    // RFC 4303 §2.1: SPI 0 is reserved; its vector can only be refused.
    let (reserved, usable): (Vec<&Vec1>, Vec<&Vec1>) = all.iter().partition(|v| v.spi < 256);
    for v in &reserved {
        let cfg = config_with(&dir, &Cfg {
            tag: &format!("spi0-{backend}"),
            outside_rx: &none,
            inside_rx: &none,
            sas: &v.sa_line("in", &ip_str(&peer), &ip_str(&us), ""),
            workers: 1,
            extra: "metrics: { listen: null }",
            backend,
        });
        let out = Command::new(env!("CARGO_BIN_EXE_esprit-dataplane")).arg("--config").arg(&cfg).arg("--check").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) || !err.contains("dataplane.static_sas[0].spi") {
            failures.push(format!("{} (SPI {}): not refused by the configuration: {err}", v.name, v.spi));
        }
    }

    // Inbound, one run per batch of distinct SPIs (one inbound SA per SPI).
    let mut pending: Vec<&Vec1> = usable.clone();
    let mut batch = 0;
    while !pending.is_empty() {
        let mut spis = std::collections::HashSet::new();
        let (now, later): (Vec<&Vec1>, Vec<&Vec1>) = pending.iter().partition(|v| spis.insert(v.spi));
        pending = later;
        let mut frames = Vec::new();
        let mut sas = String::new();
        let mut expect = Vec::new();
        for v in &now {
            let outer = v.outer.clone().unwrap_or_else(|| {
                let mut o = ipv4_header(peer, us, 50, v.esp.len());
                o.extend_from_slice(&v.esp);
                o
            });
            let (src, dst) = (&outer[12..16], &outer[16..20]);
            sas += &v.sa_line("in", &ip_str(src), &ip_str(dst), ", replay_window: 64");
            // The tampered copy first: refused before the real one, and
            // without touching the window (RFC 4303 §3.4.3).
            let mut bad = outer.clone();
            *bad.last_mut().unwrap() ^= 1;
            for o in [bad, outer.clone()] {
                let mut f = ETH_IPV4.to_vec();
                f.extend_from_slice(&o);
                frames.push(f);
            }
            expect.push(if v.tunnel() {
                v.payload.clone()
            } else {
                let mut e = ipv4_header(src.try_into().unwrap(), dst.try_into().unwrap(), v.nh, v.payload.len());
                e.extend_from_slice(&v.payload);
                e
            });
        }
        let tag = format!("in{batch}-{backend}");
        batch += 1;
        let input = dir.join(format!("{tag}.pcap"));
        std::fs::write(&input, pcap_of(&frames)).unwrap();
        let cfg = config_with(&dir, &Cfg {
            tag: &tag,
            outside_rx: &input,
            inside_rx: &none,
            sas: &sas,
            workers: 1,
            extra: "metrics: { listen: null }",
            backend,
        });
        let log = run_dataplane(&cfg);
        fell_back(&log, &mut failures);
        let out = tx_frames(&dir, &tag, "inside", 1);
        let mut passed = 0;
        for (v, e) in now.iter().zip(&expect) {
            if out.iter().any(|o| o.get(14..) == Some(&e[..])) {
                passed_in.push(&v.name);
                passed += 1;
            } else {
                failures.push(format!("{} inbound: no byte-identical inner packet", v.name));
            }
        }
        let icv = summary_value(&log, "esprit_drops_total{reason=\"icv_mismatch\",worker=\"0\"}").unwrap_or(0);
        // Each tampered copy is one icv_mismatch (a vector that fails may add its own).
        let tampered_refused = if passed == now.len() { icv == now.len() as u64 } else { icv >= now.len() as u64 };
        if out.len() != passed || !tampered_refused {
            failures.push(format!(
                "inbound run {tag} ({:?}): {} packets out for {passed} matches, icv_mismatch {icv} for {} tampered copies:\n{log}",
                now.iter().map(|v| &v.name).collect::<Vec<_>>(),
                out.len(),
                now.len()
            ));
        }
        let _ = std::fs::remove_file(format!("/dev/shm/esprit-e2e-{}-{tag}", std::process::id()));
    }

    // Outbound where the IV is the sequence number (RFC 8750): the whole
    // ESP packet is determined, compared byte for byte. Each SA gets its
    // own inner destination so that the selectors tell them apart.
    let iiv: Vec<&Vec1> = usable.iter().copied().filter(|v| v.iiv).collect();
    let mut frames = Vec::new();
    let mut sas = String::new();
    for (i, v) in iiv.iter().enumerate() {
        let inner = if v.tunnel() {
            v.payload.clone()
        } else {
            let mut p = ipv4_header(us, [172, 16, 2, 10 + i as u8], v.nh, v.payload.len());
            p.extend_from_slice(&v.payload);
            p
        };
        let inner_dst = ip_str(&inner[16..20]);
        let (src, dst) = if v.tunnel() { ("203.0.113.153".to_owned(), "203.0.113.5".to_owned()) } else { (ip_str(&us), inner_dst.clone()) };
        sas += &v.sa_line("out", &src, &dst, &format!(", selectors: [\"{inner_dst}/32\"]"));
        let mut f = ETH_IPV4.to_vec();
        f.extend_from_slice(&inner);
        frames.push(f);
    }
    let input = dir.join("out.pcap");
    std::fs::write(&input, pcap_of(&frames)).unwrap();
    let tag = format!("out-{backend}");
    let cfg = config_with(&dir, &Cfg {
        tag: &tag,
        outside_rx: &none,
        inside_rx: &input,
        sas: &sas,
        workers: 1,
        extra: "metrics: { listen: null }",
        backend,
    });
    let log = run_dataplane(&cfg);
    fell_back(&log, &mut failures);
    let out = tx_frames(&dir, &tag, "outside", 1);
    for v in &iiv {
        if out.iter().any(|o| o.get(14 + 20..) == Some(&v.esp[..])) {
            passed_out.push(&v.name);
        } else {
            failures.push(format!("{} outbound: no byte-identical ESP packet", v.name));
        }
    }
    if out.len() != iiv.len() {
        failures.push(format!("outbound: {} packets out for {} SAs:\n{log}", out.len(), iiv.len()));
    }
    eprintln!("{backend}: inbound passed {passed_in:?}; outbound passed {passed_out:?}");
    assert!(failures.is_empty(), "{backend}: {} problem(s):\n{}", failures.len(), failures.join("\n"));
    assert_eq!(passed_in.len(), usable.len());
    assert_eq!(passed_out.len(), 4, "the four implicit-IV vectors");
    cleanup(&dir, &[&tag, &format!("spi0-{backend}")]);
}

#[test]
fn published_esp_vectors_through_the_dataplane_on_ring() {
    published_vectors_through_the_dataplane("ring");
}

#[test]
fn published_esp_vectors_through_the_dataplane_on_rustcrypto() {
    published_vectors_through_the_dataplane("rustcrypto");
}

#[test]
fn published_esp_vectors_through_the_dataplane_on_ipsec_mb() {
    published_vectors_through_the_dataplane("ipsec-mb");
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
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let value = |text: &str, series: &str| -> Option<u64> {
        text.lines().find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
    };
    let scrape = || value(&scrape_text()?, "esprit_esp_packets_total{op=\"encrypt\",worker=\"0\"}");
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
        // Beside it the table's size, for the near-capacity alert
        // (deploy/prometheus): the configured 64 slots.
        assert_eq!(value(&text, "esprit_sa_table_capacity "), Some(64), "{text}");
        assert!(value(&text, "esprit_worker_flushes_total{worker=\"0\"}").unwrap_or(0) > 0, "the worker's heartbeat: {text}");
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

/// Item 1 of issue 13: a journal poll with more than 16 changes rebuilds
/// every SA context of the worker; the window of an SA that did not change
/// survives. The capture loops forever: SA 0x1005's 100 packets, then 3
/// each for 20 SAs not installed yet. Once the first loop is in, the test
/// installs 200 SAs at once (those 20 among them) while the dataplane runs.
#[test]
fn replays_after_a_poll_of_more_than_16_table_changes_are_dropped() {
    let dir = tmpdir("replay-rebuild");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let (mut frames, mut want) = esp_frames(0x1005, false, &(1..=100).collect::<Vec<_>>(), 0);
    for k in 0..20u32 {
        let (f, i) = esp_frames(0x2000 + k, false, &[1, 2, 3], 100 + 3 * k as usize);
        frames.extend(f);
        want.extend(i);
    }
    let esp = dir.join("esp.pcap");
    write_frames(&esp, &frames);
    let looped = format!("{},infinite_rx=1", esp.display());
    let cfg = config_with(
        &dir,
        &Cfg { tag: "rb", outside_rx: Path::new(&looped), inside_rx: &none, sas: &tunnel_in_sa(0x1005, ""), workers: 1, extra: "metrics: { listen: null }", backend: "auto" },
    );
    // Room for 200 more SAs.
    let yaml = std::fs::read_to_string(&cfg).unwrap().replace("capacity: 64", "capacity: 512");
    std::fs::write(&cfg, yaml).unwrap();
    let child = spawn_dataplane(&cfg);
    let table = table_path("rb");
    wait_until("the SA table", || table.exists());
    let r = sa_table::Reader::attach(&table).unwrap();
    // The first loop delivered, the next two replayed.
    wait_until("100 packets accepted and 200 replays", || sa_counts(&r, 0x1005).is_some_and(|(p, d)| p == 100 && d >= 200));
    let (mut w, _) = sa_table::Writer::open(&table, &sa_table::TableConfig::default()).unwrap();
    let mut p = r.read(r.lookup_inbound_spi(0x1005).unwrap()).unwrap();
    p.cookie = 0;
    for k in 0..200u32 {
        // The first 20 are the ones the capture carries; the rest only change the table.
        p.spi = if k < 20 { 0x2000 + k } else { 0x3000 + k };
        w.install(&p).unwrap();
    }
    drop(w);
    let mut r = r;
    r.poll_changes(|_| {});
    wait_until("the 20 new SAs' packets in, and more loops replayed", || {
        (0..20).all(|k| sa_counts(&r, 0x2000 + k).is_some_and(|(p, d)| p >= 3 && d >= 9))
    });
    let (pkts, _) = sa_counts(&r, 0x1005).unwrap();
    assert_eq!(pkts, 100, "SA 0x1005 accepted its packets again after the contexts were rebuilt");
    for k in 0..20 {
        assert_eq!(sa_counts(&r, 0x2000 + k).unwrap().0, 3, "SA {:#x}: each packet once", 0x2000 + k);
    }
    let log = stop_dataplane(child);
    assert_delivered(&dir, "rb", 1, want, "every valid packet once", &log);
    // Everything else was a replay, or for an SA not installed yet.
    let line = log.lines().find(|l| l.starts_with("worker 0:")).unwrap();
    let rx: u64 = line.split("rx outside ").nth(1).and_then(|t| t.split(' ').next()).unwrap().parse().unwrap();
    let replayed = summary_value(&log, "esprit_drops_total{reason=\"replayed\",worker=\"0\"}").unwrap();
    let no_sa = summary_value(&log, "esprit_drops_total{reason=\"no_inbound_sa\",worker=\"0\"}").unwrap();
    assert_eq!(rx, 160 + replayed + no_sa, "{log}");
    cleanup(&dir, &["rb"]);
}

/// Item 2: the window lives in the SA table. A dataplane killed with
/// SIGKILL right after delivering 100 packets is restarted on the same
/// table; the capture again, interleaved with 50 new packets: the 100 are
/// replays, the 50 go through.
#[test]
fn replays_after_a_sigkill_and_restart_are_dropped() {
    let dir = tmpdir("replay-kill");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let (first, _) = esp_frames(0x1005, false, &(1..=100).collect::<Vec<_>>(), 0);
    let p1 = dir.join("p1.pcap");
    write_frames(&p1, &first);
    let cfg = config_with(
        &dir,
        &Cfg { tag: "rk", outside_rx: &p1, inside_rx: &none, sas: &tunnel_in_sa(0x1005, ""), workers: 1, extra: "metrics: { listen: null }", backend: "auto" },
    );
    let mut child = spawn_dataplane(&cfg);
    let table = table_path("rk");
    wait_until("the SA table", || table.exists());
    {
        let r = sa_table::Reader::attach(&table).unwrap();
        wait_until("100 packets delivered", || sa_counts(&r, 0x1005) == Some((100, 0)));
    }
    // SIGKILL: no signal handler, no flush, no goodbye.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // The replays, two by two, each pair followed by a new packet.
    let (new, want) = esp_frames(0x1005, false, &(101..=150).collect::<Vec<_>>(), 100);
    let mut second = Vec::new();
    for (i, n) in new.into_iter().enumerate() {
        second.extend([first[2 * i].clone(), first[2 * i + 1].clone(), n]);
    }
    let p2 = dir.join("p2.pcap");
    write_frames(&p2, &second);
    let cfg = config_with(
        &dir,
        &Cfg { tag: "rk", outside_rx: &p2, inside_rx: &none, sas: &tunnel_in_sa(0x1005, ""), workers: 1, extra: "metrics: { listen: null }", backend: "auto" },
    );
    let log = run_dataplane(&cfg);
    assert_delivered(&dir, "rk", 1, want, "the 50 new packets, once each, and no replay", &log);
    assert_eq!(summary_value(&log, "esprit_drops_total{reason=\"replayed\",worker=\"0\"}"), Some(100), "{log}");
    cleanup(&dir, &["rk"]);
}

/// Item 2: a window handed to another worker goes with the SA. The inbound
/// SA sits in slot 1 (an outbound placeholder takes slot 0): worker 0 owns
/// it with one worker, worker 1 after a restart with two.
#[test]
fn a_window_goes_with_its_sa_to_another_worker_after_a_restart() {
    let dir = tmpdir("replay-owner");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let sas = format!(
        "    - {{ spi: 0x3005, direction: out, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"10.99.0.0/16\"] }}\n{}",
        tunnel_in_sa(0x1005, "")
    );
    let (first, first_inner) = esp_frames(0x1005, false, &(1..=100).collect::<Vec<_>>(), 0);
    let p1 = dir.join("p1.pcap");
    write_frames(&p1, &first);
    let cfg = config_with(&dir, &Cfg { tag: "ro", outside_rx: &p1, inside_rx: &none, sas: &sas, workers: 1, extra: "metrics: { listen: null }", backend: "auto" });
    let log = run_dataplane(&cfg);
    assert_delivered(&dir, "ro", 1, first_inner, "one worker delivers the first 100", &log);
    let (new, want) = esp_frames(0x1005, false, &(101..=150).collect::<Vec<_>>(), 100);
    let mut second = Vec::new();
    for (i, n) in new.into_iter().enumerate() {
        second.extend([n, first[2 * i].clone(), first[2 * i + 1].clone()]);
    }
    let p2 = dir.join("p2.pcap");
    write_frames(&p2, &second);
    let cfg = config_with(&dir, &Cfg { tag: "ro", outside_rx: &p2, inside_rx: &none, sas: &sas, workers: 2, extra: "metrics: { listen: null }", backend: "auto" });
    let log = run_dataplane(&cfg);
    assert_delivered(&dir, "ro", 2, want, "the 50 new packets, once each, and no replay", &log);
    assert!(log.contains("esprit_drops_total{reason=\"replayed\",worker=\"1\"} 100"), "worker 1, the new owner, dropped the replays:\n{log}");
    cleanup(&dir, &["ro"]);
}

/// `initial_seq` on an inbound static SA sets where its window starts: with
/// ESN, packets past 2^32 (high half 1) are accepted from the start; numbers
/// before `initial_seq` count as seen. Without ESN, the same at 1000.
#[test]
fn an_inbound_static_sa_s_window_starts_at_its_initial_seq() {
    let dir = tmpdir("replay-initial");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    let base = (1u64 << 32) - 10;
    let sas = tunnel_in_sa(0x1005, &format!(", esn: true, initial_seq: {base}, replay_window: 64"))
        + &tunnel_in_sa(0x1006, ", initial_seq: 1000, replay_window: 64");
    let (before, _) = esp_frames(0x1005, true, &[base - 3, base - 2, base - 1], 0);
    let (after, mut want) = esp_frames(0x1005, true, &(base..=base + 20).collect::<Vec<_>>(), 10);
    let (before2, _) = esp_frames(0x1006, false, &(995..1000).collect::<Vec<_>>(), 40);
    let (after2, want2) = esp_frames(0x1006, false, &(1000..=1010).collect::<Vec<_>>(), 50);
    want.extend(want2);
    let frames: Vec<Vec<u8>> = before.into_iter().chain(after).chain(before2).chain(after2).collect();
    let esp = dir.join("esp.pcap");
    write_frames(&esp, &frames);
    let cfg = config_with(&dir, &Cfg { tag: "ri", outside_rx: &esp, inside_rx: &none, sas: &sas, workers: 1, extra: "metrics: { listen: null }", backend: "auto" });
    let log = run_dataplane(&cfg);
    assert_delivered(&dir, "ri", 1, want, "from initial_seq on, across 2^32 with ESN", &log);
    assert_eq!(summary_value(&log, "esprit_drops_total{reason=\"replayed\",worker=\"0\"}"), Some(8), "{log}");
    cleanup(&dir, &["ri"]);
}

#[test]
fn sas_beyond_the_ipsec_mb_sessions_fall_back_to_ring_logged_once_counted_and_noted_per_sa() {
    let dir = tmpdir("fallback");
    let none = dir.join("none.pcap");
    empty_pcap(&none);
    // Five inbound AES-GCM SAs (inbound runs on DPDK sessions; outbound
    // AES-GCM keys ipsec-mb directly and needs none), three sessions: three
    // SAs get one, two run on ring.
    let spis = [0x1005u32, 0x1006, 0x1007, 0x1008, 0x1009];
    let sas: String = spis.iter().map(|&spi| tunnel_in_sa(spi, "")).collect();
    let (mut frames, mut want) = (Vec::new(), Vec::new());
    for (i, &spi) in spis.iter().enumerate() {
        let (f, w) = esp_frames(spi, false, &[1, 2, 3], 3 * i);
        frames.extend(f);
        want.extend(w);
    }
    let esp = dir.join("esp.pcap");
    write_frames(&esp, &frames);
    let tag = "fallback";
    let cfg = config_with(
        &dir,
        &Cfg { tag, outside_rx: &esp, inside_rx: &none, sas: &sas, workers: 1, extra: "metrics: { listen: null }", backend: "ipsec-mb, sessions: 3" },
    );
    let log = run_dataplane(&cfg);
    assert_eq!(log.matches("ipsec-mb has no session left").count(), 2, "each fallback logged once:\n{log}");
    assert_eq!(
        summary_value(&log, "esprit_sa_install_failures_total{reason=\"ipsec_mb_no_session\"}"),
        Some(2),
        "{log}"
    );
    // Traffic still goes through, on whichever backend its SA got.
    assert_delivered(&dir, tag, 1, want, "every packet of every SA", &log);
    let r = sa_table::Reader::attach(&table_path(tag)).unwrap();
    let mut backends: Vec<Vec<&str>> = r.known_ids().map(|id| r.state(id).unwrap().backends().names()).collect();
    backends.sort();
    assert_eq!(backends, vec![vec!["ipsec-mb"], vec!["ipsec-mb"], vec!["ipsec-mb"], vec!["ring", "fallback"], vec!["ring", "fallback"]]);
    cleanup(&dir, &[tag]);
}
