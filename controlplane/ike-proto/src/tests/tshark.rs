//! The IKE_SA_INIT request our initiator sends, decoded by tshark's
//! `isakmp` dissector, an independent implementation of RFC 7296.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command as Process;

use super::util::*;
use crate::{Command, Endpoint};

/// A classic pcap (LINKTYPE_ETHERNET) with one IPv4/UDP datagram per entry.
pub(super) fn pcap(datagrams: &[(SocketAddr, SocketAddr, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, (src, dst, payload)) in datagrams.iter().enumerate() {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else { panic!("IPv4 only") };
        let mut f = Vec::new();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let total = 20 + 8 + payload.len();
        let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&s.octets());
        ip.extend_from_slice(&d.octets());
        let sum = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        let csum = !((sum & 0xffff) + (sum >> 16)) as u16;
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&src.port().to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        // RFC 768: a zero UDP checksum means "none" over IPv4.
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    out
}

pub(super) fn tshark_verbose(pcap_bytes: &[u8], name: &str) -> String {
    let path = std::env::temp_dir().join(format!("ike-proto-{name}-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap_bytes).expect("write pcap");
    let out = Process::new("tshark").arg("-r").arg(&path).arg("-V").arg("-O").arg("isakmp").output().expect("tshark runs (installed on this machine)");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn tshark_decodes_our_ike_sa_init_request() {
    let (ca, _) = (endpoint_config(psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true)), ());
    let mut ep = Endpoint::new(ca, Box::new(ike_crypto::RustCryptoProvider), Box::new(ike_crypto::rng::DeterministicRng::from_u64(7)), T0, UNIX_T0);
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 500);
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 500);
    ep.handle_command(T0, Command::Initiate { connection: "site".into(), local, remote }).expect("initiate");
    let t = ep.poll_transmit().expect("IKE_SA_INIT request");
    assert_eq!((t.local, t.remote), (local, remote));
    let text = tshark_verbose(&pcap(&[(t.local, t.remote, t.payload.clone())]), "init");
    let has = |s: &str| assert!(text.contains(s), "tshark output lacks {s:?}:\n{text}");
    has("Internet Security Association and Key Management Protocol");
    has("Exchange type: IKE_SA_INIT (34)");
    has("Version: 2.0");
    has("Flags: 0x08 (Initiator, No higher version, Request)");
    has("Message ID: 0x00000000");
    has(&format!("Length: {}", t.payload.len()));
    // The payload chain, in order: SA, KE, Nonce, four Notifies (top-level
    // payloads are the lines indented by four spaces).
    let chain: Vec<&str> = text.lines().filter(|l| l.starts_with("    Payload: ")).map(str::trim).collect();
    assert_eq!(
        chain,
        vec![
            "Payload: Security Association (33)",
            "Payload: Key Exchange (34)",
            "Payload: Nonce (40)",
            "Payload: Notify (41) - NAT_DETECTION_SOURCE_IP",
            "Payload: Notify (41) - NAT_DETECTION_DESTINATION_IP",
            "Payload: Notify (41) - IKEV2_FRAGMENTATION_SUPPORTED",
            "Payload: Notify (41) - SIGNATURE_HASH_ALGORITHMS",
        ],
        "{text}"
    );
    // The proposal: IKE, AES-GCM-16/256, PRF-HMAC-SHA2-256, groups 31, 19, 14.
    has("Proposal number: 1");
    has("Protocol ID: IKE (1)");
    has("Proposal transforms: 5");
    has("Transform ID (ENCR): AES-GCM with a 16 octet ICV (20)");
    has("Key Length: 256");
    has("Transform ID (PRF): PRF_HMAC_SHA2_256 (5)");
    let groups: Vec<&str> = text.lines().map(str::trim).filter(|l| l.starts_with("Transform ID (D-H):")).collect();
    assert_eq!(
        groups,
        vec![
            "Transform ID (D-H): Curve25519 (31)",
            "Transform ID (D-H): 256-bit random ECP group (19)",
            "Transform ID (D-H): 2048 bit MODP group (14)",
        ]
    );
    has("DH Group #: Curve25519 (31)");
    has("Supported Signature Hash Algorithm: Identity (5)");
    assert!(!text.contains("Malformed"), "{text}");
}
