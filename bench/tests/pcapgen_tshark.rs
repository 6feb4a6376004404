//! The generator's captures, as tshark reads them: right sizes, addresses,
//! and checksums that tshark verifies (an independent decoder).
use std::process::Command;

use esprit_bench::pcapgen::{read_pcap, Traffic};

fn tshark_fields(pcap: &std::path::Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r"]).arg(pcap).args(["-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark (Debian package tshark; scripts/setup installs it)");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

fn check(t: &Traffic, v6: bool) {
    let dir = std::env::temp_dir().join(format!("esprit-gen-{}-{v6}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("t.pcap");
    let mut buf = Vec::new();
    t.write_pcap(&mut buf).unwrap();
    std::fs::write(&p, &buf).unwrap();
    assert_eq!(read_pcap(&buf).unwrap().len(), t.packets);
    let (ipck, dst) = if v6 { ("ipv6.dst", "ipv6.dst") } else { ("ip.checksum.status", "ip.dst") };
    let rows = tshark_fields(&p, &["frame.len", ipck, "udp.checksum.status", dst, "udp.srcport"]);
    assert_eq!(rows.len(), t.packets);
    for (i, r) in rows.iter().enumerate() {
        let c: Vec<&str> = r.split('\t').collect();
        assert_eq!(c[0], t.frame_len.to_string(), "row {i}: {r}");
        if !v6 {
            assert_eq!(c[1], "1", "row {i}: IPv4 checksum not good (tshark: 0 bad, 1 good, 2 unverified): {r}");
        }
        assert_eq!(c[2], "1", "row {i}: UDP checksum not good: {r}");
        assert_eq!(c[4], (1024 + i % t.flows).to_string());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ipv4_traffic_has_good_checksums_per_tshark() {
    let mut t = Traffic::anchor(60);
    t.packets = 300;
    t.flows = 7;
    check(&t, false);
    let mut t = Traffic::anchor(1434);
    t.packets = 20;
    check(&t, false);
}

#[test]
fn ipv6_traffic_has_good_checksums_per_tshark() {
    let mut t = Traffic::anchor(200);
    t.src = "2001:db8:5::1".parse().unwrap();
    t.dst = "2001:db8:105::1".parse().unwrap();
    t.packets = 50;
    t.flows = 5;
    check(&t, true);
}
