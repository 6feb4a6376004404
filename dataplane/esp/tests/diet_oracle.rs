//! The Diet-ESP IIPC residue checked against an independent SCHC
//! implementation: microSCHC (RFC 8724, PyPI `microschc` 0.22.0, installed
//! by scripts/setup) compresses the same inner IPv4/IPv6 + UDP headers with
//! the rule draft-ietf-ipsecme-diet-esp-07 §5.1 derives from the same
//! selectors and CDAs (`tests/diet_oracle.py` builds it from the field list
//! microSCHC's own parsers produce), and the residues must be equal bit for
//! bit. What microSCHC cannot express, and this test therefore leaves out,
//! is listed in the script and in docs/diet-esp.md.
//!
//! A missing Python or microSCHC fails the test; nothing is skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use esp::diet::{DietAttrs, DscpCda, EcnCda, FlowLabelCda, Profile, Selectors};
use serde_json::json;

const PYTHON: &str = "/usr/bin/python3";

/// A small deterministic generator (no dependence on proptest's shrinking:
/// the cases go to another process).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn u128(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }
}

fn udp_packet(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, tos: u8, flow: u32, payload: usize) -> Vec<u8> {
    let ulen = 8 + payload;
    let mut p = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[1] = tos;
            h[2..4].copy_from_slice(&((20 + ulen) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&(flow as u16).to_be_bytes());
            h[6] = 0x40;
            h[8] = 64;
            h[9] = 17;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0u8; 40];
            h[0..4].copy_from_slice(&(6u32 << 28 | u32::from(tos) << 20 | flow).to_be_bytes());
            h[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
            h[6] = 17;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            h
        }
        _ => unreachable!(),
    };
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(ulen as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend((0..payload).map(|i| i as u8));
    p
}

fn addr(v6: bool, v: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

fn hex(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => format!("{:x}", u32::from(a)),
        IpAddr::V6(a) => format!("{:x}", u128::from(a)),
    }
}

#[test]
fn microschc_computes_the_same_residue() {
    let out = Command::new(PYTHON).args(["-c", "import microschc"]).output().unwrap_or_else(|e| {
        panic!("the Diet-ESP oracle needs {PYTHON} with microschc 0.22.0 (scripts/setup installs it): {e}")
    });
    assert!(
        out.status.success(),
        "the Diet-ESP oracle needs {PYTHON} with microschc 0.22.0 (scripts/setup installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rng = Lcg(0x5eed_d1e7);
    let mut cases = Vec::new();
    for i in 0..400 {
        let v6 = i % 2 == 0;
        let width = if v6 { 128 } else { 32 };
        let mask = |lsb: u32| if lsb >= 128 { u128::MAX } else { (1u128 << lsb) - 1 };
        let (sl, dl) = (rng.below(u64::from(width) + 1) as u32, rng.below(u64::from(width) + 1) as u32);
        let (sb, db) = (rng.u128() & mask(width), rng.u128() & mask(width));
        let src = (addr(v6, sb & !mask(sl)), addr(v6, (sb | mask(sl)) & mask(width)));
        let dst = (addr(v6, db & !mask(dl)), addr(v6, (db | mask(dl)) & mask(width)));
        let (spl, dpl) = (rng.below(17) as u32, rng.below(17) as u32);
        let (spb, dpb) = (rng.next() as u16, rng.next() as u16);
        let pm = |l: u32| if l >= 16 { 0xffffu16 } else { (1u16 << l) - 1 };
        let proto = if rng.below(2) == 0 { 17 } else { 0 };
        let (spl, dpl) = if proto == 0 { (16, 16) } else { (spl, dpl) };
        let sports = (spb & !pm(spl), spb | pm(spl));
        let dports = (dpb & !pm(dpl), dpb | pm(dpl));
        let mut a = DietAttrs::defaults();
        a.selectors = Some(Selectors { src, dst, proto, src_ports: sports, dst_ports: dports });
        // The DSCP/ECN pairs microSCHC's 8-bit Traffic Class can express.
        let (dscp, ecn) = if rng.below(2) == 0 {
            (DscpCda::NotCompressed, EcnCda::NotCompressed)
        } else {
            (DscpCda::Lower, EcnCda::Lower)
        };
        a.dscp_cda = dscp;
        a.ecn_cda = ecn;
        a.flow_label_cda = FlowLabelCda::ALL[rng.below(4) as usize];
        let prof = Profile::new(&a, true, false, 1, 0x1234_5678).unwrap();
        let flow = match a.flow_label_cda {
            FlowLabelCda::Zero => 0,
            _ => rng.next() as u32 & if v6 { 0xfffff } else { 0xffff },
        };
        let pick = rng.u128();
        let s_addr = addr(v6, (sb & !mask(sl)) | (pick & mask(sl) & mask(width)));
        let d_addr = addr(v6, (db & !mask(dl)) | ((pick >> 7) & mask(dl) & mask(width)));
        let sport = sports.0 | (rng.next() as u16 & pm(spl));
        let dport = dports.0 | (rng.next() as u16 & pm(dpl));
        let pkt = udp_packet(s_addr, d_addr, sport, dport, rng.next() as u8, flow, rng.below(50) as usize);
        let c = prof.compress_tunnel(&pkt).expect("the packet lies inside its selectors");
        cases.push(json!({
            "v6": v6,
            "packet": hex::encode(&pkt),
            "src": [hex(src.0), hex(src.1)],
            "dst": [hex(dst.0), hex(dst.1)],
            "sports": [sports.0, sports.1],
            "dports": [dports.0, dports.1],
            "proto": proto,
            "dscp": dscp.name(),
            "flow": a.flow_label_cda.name(),
            "residue": hex::encode(c.residue()),
        }));
    }
    let dir = std::env::temp_dir().join(format!("esprit-diet-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/diet_oracle.py");
    let out = Command::new(PYTHON).arg(script).arg(&file).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "microSCHC disagrees:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("diet oracle: 400 passed, 0 failed"), "{stdout}");
}
