//! The SPD (RFC 4301 §4.4.1, §5.1, §5.2) and RFC 9478 labels end to end,
//! through the real process on `net_pcap` ports (DPDK, no NIC, as root).
//! scapy builds the traffic (each packet carries a marker in its payload)
//! and reads what left each port: ESP it decrypts with the SA's key (so the
//! SPI and the inner packet are checked by an independent implementation),
//! cleartext, and 802.1Q tags. Needs Debian's python3-scapy (scripts/setup);
//! fails loudly without it.
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const KEY: &str = "2b7e151628aed2a6abf7158809cf4f3cdeadbeef";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("esprit-spd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs a scapy script (`DIR` and `KEY` predefined) and returns its stdout.
fn scapy(dir: &Path, script: &str) -> String {
    let prelude = format!(
        "import sys\nfrom scapy.all import *\nfrom scapy.layers.ipsec import SecurityAssociation, ESP\n\
         DIR = {dir:?}\nKEY = bytes.fromhex({KEY:?})\n\
         def sa(spi, src, dst):\n    return SecurityAssociation(ESP, spi=spi, crypt_algo='AES-GCM', crypt_key=KEY, auth_algo='NULL', tunnel_header=IP(src=src, dst=dst))\n",
        dir = dir.display().to_string()
    );
    let mut child = Command::new("/usr/bin/python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (Debian's python3 with python3-scapy; run scripts/setup)");
    child.stdin.take().unwrap().write_all((prelude + script).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "scapy script failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What left the gateway, one line per frame, as scapy reads it:
/// `outside esp SPI MARKER` (decrypted with the SA of that SPI, tunnel
/// 172.16.1.5 → 172.16.2.5), `outside clear MARKER`, `inside vlan VID MARKER`
/// or `inside untagged MARKER`; the destination MACs are checked too.
const READ_OUTPUT: &str = r#"
def marker(p):
    # The L4 payload as sent (scapy would parse port 53's as DNS).
    for l4 in (UDP, TCP, ICMP):
        if l4 in p:
            return bytes(p[l4].payload).decode(errors='replace')
    return '?'
for side, f in (('outside', DIR + '/outside-tx.pcap'), ('inside', DIR + '/inside-tx.pcap')):
    for e in rdpcap(f):
        want_mac = '02:00:00:00:01:01' if side == 'outside' else '02:00:00:00:02:01'
        if e.dst != want_mac:
            print(side, 'wrong-mac', e.dst, e.summary())
            continue
        if side == 'inside':
            tag = 'vlan %d' % e[Dot1Q].vlan if Dot1Q in e else 'untagged'
            print(side, tag, marker(e))
        elif ESP in e:
            ip = e[IP]
            assert (ip.src, ip.dst) == ('172.16.1.5', '172.16.2.5'), e.summary()
            spi = e[ESP].spi
            inner = sa(spi, ip.src, ip.dst).decrypt(ip)
            print(side, 'esp', hex(spi), marker(inner))
        else:
            print(side, 'clear', marker(e))
"#;

fn run_dataplane(dir: &Path, yaml: &str) -> String {
    let cfg = dir.join("c.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_esprit-dataplane"))
        .arg("--config")
        .arg(&cfg)
        .args(["--idle-exit-ms", "400", "--max-secs", "30"])
        .output()
        .expect("run esprit-dataplane");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "esprit-dataplane failed (root and DPDK needed):\n{text}");
    text
}

fn config(dir: &Path, tag: &str, rest: &str) -> String {
    let d = dir.display();
    format!(
        r#"
dataplane:
  eal_args: ["-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-spd-{pid}-{tag}", "--log-level", "lib.eal:error"]
  ports:
    outside: {{ device: "net_pcap0,rx_pcap={d}/outside-rx.pcap,tx_pcap={d}/outside-tx.pcap", rx_desc: 512, tx_desc: 512 }}
    inside: {{ device: "net_pcap1,rx_pcap={d}/inside-rx.pcap,tx_pcap={d}/inside-tx.pcap", rx_desc: 512, tx_desc: 512 }}
  addresses:
    outside: [172.16.1.5]
    inside: [192.168.5.254]
    outside_gateway: 172.16.1.1
    inside_gateway: 192.168.5.1
  neighbours:
    - {{ ip: 172.16.1.1, mac: "02:00:00:00:01:01" }}
    - {{ ip: 192.168.5.1, mac: "02:00:00:00:02:01" }}
  sa_table: {{ path: /dev/shm/esprit-spd-{pid}-{tag}, capacity: 64 }}
{rest}
metrics: {{ listen: null }}
"#,
        pid = std::process::id()
    )
}

fn drops(log: &str, reason: &str) -> u64 {
    let series = format!("esprit_drops_total{{reason=\"{reason}\",worker=\"0\"}}");
    log.lines().map(str::trim).find(|l| l.starts_with(&series)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_owned).collect()
}

fn cleanup(dir: &Path, tag: &str) {
    let _ = std::fs::remove_file(format!("/dev/shm/esprit-spd-{}-{tag}", std::process::id()));
    std::fs::remove_dir_all(dir).ok();
}

/// BYPASS, DISCARD over an address range, a port- and protocol-specific
/// PROTECT entry naming its SA, a PROTECT entry over a port range that
/// takes whichever SA's selectors contain the packet, and traffic no entry
/// matches: each packet goes where the SPD, in order, says; and inbound
/// cleartext passes only where it says BYPASS.
#[test]
fn outbound_traffic_is_sorted_as_the_spd_says_and_inbound_cleartext_too() {
    let dir = tmpdir("sort");
    scapy(
        &dir,
        r#"
def frame(dst, l4, m, src='192.168.5.2'):
    return Ether(src='02:00:00:00:02:01', dst='02:00:00:00:00:99')/IP(src=src, dst=dst)/l4/Raw(m.encode())
inside = [
    frame('10.9.1.1', UDP(sport=999, dport=53), 'dns-bypass'),
    frame('10.9.1.1', TCP(sport=999, dport=53), 'tcp53-nomatch'),
    frame('192.168.105.7', UDP(sport=999, dport=5001), 'range-discard'),
    frame('192.168.105.4', UDP(sport=999, dport=5001), 'below-range-a'),
    frame('192.168.105.10', UDP(sport=999, dport=5001), 'udp-a'),
    frame('192.168.105.200', TCP(sport=999, dport=443), 'https-b'),
    frame('192.168.105.10', TCP(sport=999, dport=443), 'https-low-nomatch'),
    frame('192.168.105.200', UDP(sport=999, dport=5500), 'udp-high-b'),
    frame('192.168.105.10', UDP(sport=999, dport=6000), 'port-nomatch'),
    frame('192.168.105.10', ICMP(), 'icmp-nomatch'),
    frame('192.168.105.10', UDP(sport=999, dport=5001), 'from-elsewhere-nosa', src='192.168.6.2'),
]
wrpcap(DIR + '/inside-rx.pcap', inside)
def inbound(src, l4, m):
    return Ether(src='02:00:00:00:01:01', dst='02:00:00:00:00:98')/IP(src=src, dst='192.168.5.2')/l4/Raw(m.encode())
wrpcap(DIR + '/outside-rx.pcap', [
    inbound('10.9.1.1', UDP(sport=53, dport=999), 'dns-answer-in'),
    inbound('192.168.105.10', UDP(sport=5001, dport=999), 'clear-protected-in'),
])
"#,
    );
    let sa = |spi: &str, dir_: &str, sel: &str| {
        format!("    - {{ spi: {spi}, direction: {dir_}, suite: aes-128-gcm, key: \"{KEY}\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"{sel}\"], local_selectors: [\"192.168.5.0/24\"] }}\n")
    };
    let rest = format!(
        "  static_sas:\n{}{}  spd:\n{}",
        sa("0x1005", "out", "192.168.105.0/24"),
        sa("0x1006", "out", "192.168.105.128/25"),
        r#"    - { action: bypass, remote: ["10.9.0.0/16"], proto: udp, remote_ports: 53 }
    - { action: discard, remote: ["192.168.105.5-192.168.105.9"] }
    - { action: protect, remote: ["192.168.105.128/25"], proto: tcp, remote_ports: 443, spi: 0x1006 }
    - { action: protect, remote: ["192.168.105.0/24"], proto: udp, remote_ports: "5000-5999" }
"#
    );
    let log = run_dataplane(&dir, &config(&dir, "sort", &rest));
    let seen = lines(&scapy(&dir, READ_OUTPUT));
    let want = lines(
        "outside clear dns-bypass\n\
         outside esp 0x1005 below-range-a\n\
         outside esp 0x1005 udp-a\n\
         outside esp 0x1006 https-b\n\
         outside esp 0x1006 udp-high-b\n\
         inside untagged dns-answer-in\n",
    );
    assert_eq!(seen, want, "what left the gateway:\n{log}");
    assert_eq!(drops(&log, "spd_discard"), 1, "{log}");
    // TCP to 53, HTTPS to the low half, UDP 6000, ICMP: no entry.
    assert_eq!(drops(&log, "no_spd_match"), 4, "{log}");
    // PROTECT, but no SA has 192.168.6.0/24 as its local selector.
    assert_eq!(drops(&log, "no_outbound_sa"), 1, "{log}");
    // RFC 4301 §5.2: cleartext the SPD wants protected is refused.
    assert_eq!(drops(&log, "cleartext_protected"), 1, "{log}");
    cleanup(&dir, "sort");
}

/// RFC 9478 labels on two inside VLANs: cleartext from one label's VLAN
/// leaves only on that label's SA, though both SAs have the same
/// selectors; untagged traffic and an unknown VLAN take neither; decrypted
/// traffic comes out tagged with its SA's label's VLAN.
#[test]
fn labeled_traffic_stays_in_its_segment_both_ways() {
    let dir = tmpdir("labels");
    scapy(
        &dir,
        r#"
def frame(vlan, m):
    e = Ether(src='02:00:00:00:02:01', dst='02:00:00:00:00:99')
    if vlan is not None:
        e = e/Dot1Q(vlan=vlan)
    return e/IP(src='192.168.5.2', dst='192.168.105.10')/UDP(sport=999, dport=5001)/Raw(m.encode())
wrpcap(DIR + '/inside-rx.pcap', [
    frame(100, 'red-out'), frame(200, 'blue-out'), frame(None, 'untagged-out'), frame(300, 'vlan300-out'),
    frame(100, 'red-out-2'),
])
esp = []
for spi, m in ((0x3001, 'red-in'), (0x3002, 'blue-in')):
    inner = IP(src='192.168.105.10', dst='192.168.5.2')/UDP(sport=5001, dport=999)/Raw(m.encode())
    esp.append(Ether(src='02:00:00:00:01:01', dst='02:00:00:00:00:98')/sa(spi, '172.16.2.5', '172.16.1.5').encrypt(inner))
wrpcap(DIR + '/outside-rx.pcap', esp)
"#,
    );
    let sa = |spi: &str, dir_: &str, label: &str| {
        let (src, dst) = if dir_ == "out" { ("172.16.1.5", "172.16.2.5") } else { ("172.16.2.5", "172.16.1.5") };
        format!("    - {{ spi: {spi}, direction: {dir_}, suite: aes-128-gcm, key: \"{KEY}\", src: {src}, dst: {dst}, selectors: [\"192.168.105.0/24\"], sec_label: \"{label}\" }}\n")
    };
    let rest = format!(
        "  labels:\n    - {{ label: \"system_u:object_r:red_t:s0\", vlan: 100 }}\n    - {{ label: \"system_u:object_r:blue_t:s0\", vlan: 200 }}\n  static_sas:\n{}{}{}{}",
        sa("0x2001", "out", "system_u:object_r:red_t:s0"),
        sa("0x2002", "out", "system_u:object_r:blue_t:s0"),
        sa("0x3001", "in", "system_u:object_r:red_t:s0"),
        sa("0x3002", "in", "system_u:object_r:blue_t:s0"),
    );
    let log = run_dataplane(&dir, &config(&dir, "labels", &rest));
    let seen = lines(&scapy(&dir, READ_OUTPUT));
    let want = lines(
        "outside esp 0x2001 red-out\n\
         outside esp 0x2001 red-out-2\n\
         outside esp 0x2002 blue-out\n\
         inside vlan 100 red-in\n\
         inside vlan 200 blue-in\n",
    );
    assert_eq!(seen, want, "what left the gateway:\n{log}");
    // Untagged: both SAs' selectors contain it, neither's label is its.
    assert_eq!(drops(&log, "label_mismatch"), 1, "{log}");
    assert_eq!(drops(&log, "unknown_vlan"), 1, "{log}");
    cleanup(&dir, "labels");
}

/// A label that owns the inside port's untagged network (`vlan: 0`, one
/// port per label): untagged traffic leaves on that label's SA, never on an
/// unlabeled SA with the same selectors, and what an unlabeled SA decrypts
/// has no segment to go to.
#[test]
fn a_label_owning_the_untagged_network_keeps_unlabeled_sas_out() {
    let dir = tmpdir("untagged-label");
    scapy(
        &dir,
        r#"
def frame(m):
    return Ether(src='02:00:00:00:02:01', dst='02:00:00:00:00:99')/IP(src='192.168.5.2', dst='192.168.105.10')/UDP(sport=999, dport=5001)/Raw(m.encode())
wrpcap(DIR + '/inside-rx.pcap', [frame('plain-1'), frame('plain-2')])
esp = []
for spi, m in ((0x3001, 'red-in'), (0x3003, 'unlabeled-in')):
    inner = IP(src='192.168.105.10', dst='192.168.5.2')/UDP(sport=5001, dport=999)/Raw(m.encode())
    esp.append(Ether(src='02:00:00:00:01:01', dst='02:00:00:00:00:98')/sa(spi, '172.16.2.5', '172.16.1.5').encrypt(inner))
wrpcap(DIR + '/outside-rx.pcap', esp)
"#,
    );
    let sa = |spi: &str, dir_: &str, label: Option<&str>| {
        let (src, dst) = if dir_ == "out" { ("172.16.1.5", "172.16.2.5") } else { ("172.16.2.5", "172.16.1.5") };
        let label = label.map(|l| format!(", sec_label: \"{l}\"")).unwrap_or_default();
        format!("    - {{ spi: {spi}, direction: {dir_}, suite: aes-128-gcm, key: \"{KEY}\", src: {src}, dst: {dst}, selectors: [\"192.168.105.0/24\"]{label} }}\n")
    };
    let red = Some("system_u:object_r:red_t:s0");
    // The unlabeled outbound SA is installed last: the newest SA of the
    // prefix, the one a destination-only lookup would take.
    let rest = format!(
        "  labels:\n    - {{ label: \"system_u:object_r:red_t:s0\", vlan: 0 }}\n  static_sas:\n{}{}{}{}",
        sa("0x2001", "out", red),
        sa("0x2003", "out", None),
        sa("0x3001", "in", red),
        sa("0x3003", "in", None),
    );
    let log = run_dataplane(&dir, &config(&dir, "untagged-label", &rest));
    let seen = lines(&scapy(&dir, READ_OUTPUT));
    let want = lines(
        "outside esp 0x2001 plain-1\n\
         outside esp 0x2001 plain-2\n\
         inside untagged red-in\n",
    );
    assert_eq!(seen, want, "what left the gateway:\n{log}");
    assert_eq!(drops(&log, "label_unmapped"), 1, "{log}");
    cleanup(&dir, "untagged-label");
}
