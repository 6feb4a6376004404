//! Shared by the DPDK test binaries: the EAL starts once per process, so each
//! test binary starts it on first use and every test in it shares it. A test
//! that cannot start the EAL fails with the reason; none is skipped.
#![allow(dead_code)]
use std::sync::OnceLock;

use dpdk::Eal;

static EAL: OnceLock<Eal> = OnceLock::new();

/// The EAL of this test process: no hugepages, no PCI, 512 MB, one lcore.
pub fn eal(prefix: &str) -> Eal {
    *EAL.get_or_init(|| {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned()))
            .unwrap_or_default();
        assert_eq!(uid, "0", "DPDK tests must run as root (EAL with --no-huge still needs it); run scripts/test as root");
        let args = ["esprit-test", "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", prefix, "--log-level", "lib.eal:error"];
        match Eal::init(args) {
            Ok((eal, _)) => eal,
            Err(e) => panic!("EAL did not start ({e}); is DPDK installed (scripts/setup) and are we root?"),
        }
    })
}

/// A test packet: Ethernet + IPv4 + UDP header-ish bytes, then a pattern
/// unique to (`tag`, `i`), `len` bytes in all.
pub fn packet(tag: u8, i: usize, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    p[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    if len > 13 {
        p[12] = 0x08;
        p[13] = 0x00;
    }
    for (k, b) in p.iter_mut().enumerate().skip(14) {
        *b = (k as u8).wrapping_mul(31).wrapping_add(i as u8).wrapping_add(tag);
    }
    p
}

/// Writes a classic libpcap file (microsecond timestamps, Ethernet link type).
pub fn write_pcap(path: &std::path::Path, pkts: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, p) in pkts.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// Reads the packets of a classic libpcap file (either byte order, µs or ns).
pub fn read_pcap(path: &std::path::Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).expect("read pcap");
    assert!(b.len() >= 24, "{} is not a pcap file ({} bytes)", path.display(), b.len());
    let le = match &b[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => panic!("bad pcap magic {m:02x?}"),
    };
    let u32at = |o: usize| {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
    };
    let mut pkts = Vec::new();
    let mut o = 24;
    while o + 16 <= b.len() {
        let caplen = u32at(o + 8) as usize;
        o += 16;
        assert!(o + caplen <= b.len(), "truncated pcap record");
        pkts.push(b[o..o + caplen].to_vec());
        o += caplen;
    }
    pkts
}
