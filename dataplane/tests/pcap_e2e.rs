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

/// A one-worker config: outside and inside are pcap ports.
fn config(dir: &Path, tag: &str, outside_rx: &Path, inside_rx: &Path, sas: &str) -> PathBuf {
    let y = format!(
        r#"
dataplane:
  eal_args: ["-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-e2e-{pid}-{tag}", "--log-level", "lib.eal:error"]
  ports:
    outside: {{ device: "net_pcap0,rx_pcap={orx},tx_pcap={dir}/{tag}-outside-tx.pcap", rx_desc: 512, tx_desc: 512 }}
    inside: {{ device: "net_pcap1,rx_pcap={irx},tx_pcap={dir}/{tag}-inside-tx.pcap", rx_desc: 512, tx_desc: 512 }}
  workers: {{ count: 1 }}
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
metrics: {{ listen: null }}
"#,
        pid = std::process::id(),
        orx = outside_rx.display(),
        irx = inside_rx.display(),
        dir = dir.display(),
    );
    let p = dir.join(format!("{tag}.yaml"));
    std::fs::write(&p, y).unwrap();
    p
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

fn empty_pcap(p: &Path) {
    let mut b = Vec::new();
    esprit_bench::pcapgen::write_pcap_header(&mut b).unwrap();
    std::fs::write(p, b).unwrap();
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

#[test]
fn plaintext_in_esp_out_decrypted_by_tshark_and_back_through_a_peer() {
    let dir = tmpdir("roundtrip");
    let mut t = Traffic::anchor(60);
    t.packets = 300;
    t.flows = 16;
    t.dst = "192.168.105.1".parse().unwrap();
    let plain = dir.join("plain.pcap");
    let mut buf = Vec::new();
    t.write_pcap(&mut buf).unwrap();
    let mut t2 = t.clone();
    t2.frame_len = 1434;
    t2.packets = 100;
    for i in 0..t2.packets {
        esprit_bench::pcapgen::write_pcap_record(&mut buf, 1000 + i as u32, &t2.frame(i)).unwrap();
    }
    std::fs::write(&plain, &buf).unwrap();
    let sent = read_pcap(&buf).unwrap();
    let none = dir.join("none.pcap");
    empty_pcap(&none);

    // Gateway A: protects 192.168.105.0/24 with SPI 0x1005.
    let out_sa = format!(
        "    - {{ spi: 0x1005, direction: out, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.105.0/24\"] }}"
    );
    let cfg_a = config(&dir, "a", &none, &plain, &out_sa);
    let log = run_dataplane(&cfg_a);
    let esp_out = dir.join("a-outside-tx.pcap");
    let esp = read_pcap(&std::fs::read(&esp_out).unwrap()).unwrap();
    assert_eq!(esp.len(), sent.len(), "every packet protected:\n{log}");

    // tshark decrypts each one and checks its ICV (an independent implementation).
    let rows = tshark_esp(
        &esp_out,
        &dir,
        &[format!("\"IPv4\",\"172.16.1.5\",\"172.16.2.5\",\"0x00001005\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{KEY}\",\"NULL\",\"\"")],
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
    // Ethernet towards the outside gateway.
    assert_eq!(&esp[0][0..6], &[2, 0, 0, 0, 1, 1]);

    // Gateway B, the peer: opens SPI 0x1005 and gives back the inner packets.
    let in_sa = format!(
        "    - {{ spi: 0x1005, direction: in, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"192.168.5.0/24\"], local_selectors: [\"192.168.105.0/24\"] }}"
    );
    let cfg_b = config(&dir, "b", &esp_out, &none, &in_sa);
    let log = run_dataplane(&cfg_b);
    let back = read_pcap(&std::fs::read(dir.join("b-inside-tx.pcap")).unwrap()).unwrap();
    assert_eq!(back.len(), sent.len(), "every packet decrypted:\n{log}");
    for (i, (b, s)) in back.iter().zip(&sent).enumerate() {
        assert_eq!(&b[0..6], &[2, 0, 0, 0, 2, 1], "packet {i}: to the inside gateway");
        // The inner IP packet, byte for byte (the frame may carry Ethernet padding).
        let ip_len = u16::from_be_bytes([s[16], s[17]]) as usize;
        assert_eq!(&b[14..], &s[14..14 + ip_len], "packet {i} differs");
    }
    let _ = std::fs::remove_file(format!("/dev/shm/esprit-e2e-{}-a", std::process::id()));
    let _ = std::fs::remove_file(format!("/dev/shm/esprit-e2e-{}-b", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
}
