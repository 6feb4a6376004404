//! Known-answer tests: every vector of `testdata/esp-aead.json` and
//! `testdata/esp-aead-extra.json` (draft-mcgrew-gcm-test-01 with 128, 192
//! and 256-bit keys, RFC 7634 Appendix A, RFC 8750 self-computed; see
//! `testdata/README.md`) in both directions and with every backend: seal
//! with the vector's IV (or the implicit one) and compare byte for byte;
//! open the vector's packet and recover the plaintext.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use esp::{
    open_burst, soft_aead, Backend, BatchAead, DropReason, Mode, OutboundSa, PktBuf, SaParams,
    Suite, TransformId,
};
use esp_wire::{IpProtocol, Ipv4Packet, Ipv4Repr};
use serde_json::Value;

struct Vector {
    name: String,
    params: SaParams,
    seq: u64,
    iv: Option<[u8; 8]>,
    plaintext: Vec<u8>,
    esp_packet: Vec<u8>,
    outer_ipv4: Option<Vec<u8>>,
}

fn vectors_paths() -> [PathBuf; 2] {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    [dir.join("esp-aead.json"), dir.join("esp-aead-extra.json")]
}

fn hex_field(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("field {k}"))).unwrap()
}

fn load() -> Vec<Vector> {
    let mut all = Vec::new();
    for path in vectors_paths() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let json: Value = serde_json::from_str(&text).unwrap();
        all.extend(json["vectors"].as_array().unwrap().iter().cloned());
    }
    all.iter()
        .map(|v| {
            let key = hex_field(v, "key");
            let tid = TransformId(v["transform_id"].as_u64().unwrap() as u16);
            let bits = matches!(
                tid,
                TransformId::ENCR_AES_GCM_16 | TransformId::ENCR_AES_GCM_16_IIV
            )
            .then_some(key.len() as u16 * 8);
            let suite = Suite::from_transform(tid, bits).unwrap();
            assert_eq!(suite.iiv, v["iiv"].as_bool().unwrap());
            let mut keymat = key;
            keymat.extend(hex_field(v, "salt"));
            let spi = u32::from_be_bytes(hex_field(v, "spi").try_into().unwrap());
            let mut params = SaParams::new(spi, suite, &keymat).unwrap();
            params.esn = v["esn"].as_bool().unwrap();
            let seq_bytes = hex_field(v, "seq");
            let seq = seq_bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
            let iv = v["iv"]
                .as_str()
                .map(|s| hex::decode(s).unwrap().try_into().unwrap());
            Vector {
                name: v["name"].as_str().unwrap().to_owned(),
                params,
                seq,
                iv,
                plaintext: hex_field(v, "esp_payload_plaintext"),
                esp_packet: hex_field(v, "esp_packet"),
                outer_ipv4: v
                    .get("outer_ipv4_packet")
                    .and_then(Value::as_str)
                    .map(|s| hex::decode(s).unwrap()),
            }
        })
        .collect()
}

const SRC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 153);
const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

fn ipv4_header(protocol: IpProtocol, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    Ipv4Repr {
        src_addr: SRC,
        dst_addr: DST,
        protocol,
        payload_len,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut h[..]));
    h
}

/// Split the vector plaintext into payload and Next Header (and check the
/// padding is the minimal 4-octet-aligned one, which is what esprit emits).
fn split(v: &Vector) -> (&[u8], IpProtocol) {
    let pt = &v.plaintext;
    let nh = IpProtocol(pt[pt.len() - 1]);
    let pad = usize::from(pt[pt.len() - 2]);
    (&pt[..pt.len() - 2 - pad], nh)
}

/// Tunnel mode when the payload is an IP packet marked as such (RFC 7634),
/// transport otherwise (the mcgrew vectors use Next Header 1).
fn is_tunnel(nh: IpProtocol) -> bool {
    nh == IpProtocol::IPV4 || nh == IpProtocol::IPV6
}

fn sa_params(v: &Vector, nh: IpProtocol) -> SaParams {
    let mut p = v.params.clone();
    if is_tunnel(nh) {
        p.mode = Mode::Tunnel {
            src: SRC.into(),
            dst: DST.into(),
        };
    }
    p
}

#[test]
fn loads_every_vector() {
    let vs = load();
    assert_eq!(vs.len(), 13 + 4, "esp-aead.json has 13, esp-aead-extra.json 4");
    assert!(vs.iter().any(|v| v.params.suite == Suite::AES192_GCM_16));
    assert!(vs.iter().any(|v| v.params.suite == Suite::AES192_GCM_16_IIV));
    assert!(vs.iter().any(|v| v.params.suite.iiv && v.params.esn));
    assert!(vs.iter().any(|v| v.name == "rfc7634-appendix-a"));
    assert!(vs
        .iter()
        .any(|v| v.params.suite.iiv && v.params.suite.cipher == esp::Cipher::ChaCha20Poly1305));
    assert!(vs
        .iter()
        .any(|v| v.params.suite.iiv && v.params.suite.cipher != esp::Cipher::ChaCha20Poly1305));
}

#[test]
fn seals_every_vector_byte_for_byte() {
    for v in load() {
        let (payload, nh) = split(&v);
        let params = sa_params(&v, nh);
        let sa = OutboundSa::new(&params).unwrap();
        for backend in Backend::ALL {
            let aead = soft_aead(backend, &params).unwrap();
            let input = if is_tunnel(nh) {
                payload.to_vec()
            } else {
                let mut p = ipv4_header(nh, payload.len());
                p.extend_from_slice(payload);
                p
            };
            let mut pkt = PktBuf::from_data(&input, 64, 64);
            let op = match v.iv {
                Some(iv) => sa.prepare_with_iv(&mut pkt, v.seq, iv),
                None => sa.prepare(&mut pkt, v.seq),
            }
            .unwrap_or_else(|r| panic!("{}: {r}", v.name));
            let mut jobs = [esp::AeadJob {
                op: op.op,
                buf: pkt.data_mut(),
                ok: false,
            }];
            aead.seal(&mut jobs);
            assert!(jobs[0].ok);
            sa.finish(&mut pkt, &op);
            let out = pkt.data();
            assert_eq!(
                hex::encode(&out[20..]),
                hex::encode(&v.esp_packet),
                "{} via {}",
                v.name,
                backend.name()
            );
            if let Some(outer) = &v.outer_ipv4 {
                // The RFC's outer header has Identification 0x2345; esprit puts
                // the low SN bits there, so compare all but ident and checksum.
                assert_eq!(out.len(), outer.len(), "{}", v.name);
                assert_eq!(out[..4], outer[..4]);
                assert_eq!(out[6..10], outer[6..10]);
                assert_eq!(out[12..], outer[12..]);
                assert!(Ipv4Packet::new_checked(out).unwrap().verify_checksum());
            }
        }
    }
}

#[test]
fn opens_every_vector() {
    for v in load() {
        let (payload, nh) = split(&v);
        let params = sa_params(&v, nh);
        for backend in Backend::ALL {
            let aead = soft_aead(backend, &params).unwrap();
            let mut sa = esp::InboundSa::new(&params).unwrap();
            // Put T just below the vector's SN so the ESN high half infers.
            sa.replay_mut().set_top(v.seq - 1);
            let wire = match &v.outer_ipv4 {
                Some(outer) => outer.clone(),
                None => {
                    let mut p = ipv4_header(IpProtocol::ESP, v.esp_packet.len());
                    p.extend_from_slice(&v.esp_packet);
                    p
                }
            };
            let mut pkts = [PktBuf::from_data(&wire, 0, 0)];
            let mut verdicts = [Err(DropReason::NotEsp)];
            open_burst(&mut sa, &aead, &mut pkts, &mut verdicts);
            let d =
                verdicts[0].unwrap_or_else(|r| panic!("{} via {}: {r}", v.name, backend.name()));
            assert_eq!(d.seq, v.seq);
            assert_eq!(d.next_header, nh);
            let out = pkts[0].data();
            if is_tunnel(nh) {
                assert_eq!(out, payload, "{}", v.name);
            } else {
                let mut expect = ipv4_header(nh, payload.len());
                expect.extend_from_slice(payload);
                assert_eq!(out, &expect[..], "{}", v.name);
            }
            // The same packet again is a replay, caught before decryption.
            let mut pkts = [PktBuf::from_data(&wire, 0, 0)];
            open_burst(&mut sa, &aead, &mut pkts, &mut verdicts);
            assert_eq!(verdicts[0], Err(DropReason::Replayed), "{}", v.name);
        }
    }
}

#[test]
fn rfc7634_appendix_a() {
    let v = load()
        .into_iter()
        .find(|v| v.name == "rfc7634-appendix-a")
        .unwrap();
    let outer = v.outer_ipv4.clone().unwrap();
    let mut params = v.params.clone();
    params.mode = Mode::Tunnel {
        src: SRC.into(),
        dst: DST.into(),
    };
    let mut sa = esp::InboundSa::new(&params).unwrap();
    let aead = soft_aead(Backend::FASTEST, &params).unwrap();
    let mut pkts = [PktBuf::from_data(&outer, 0, 0)];
    let mut verdicts = [Err(DropReason::NotEsp)];
    open_burst(&mut sa, &aead, &mut pkts, &mut verdicts);
    assert_eq!(verdicts[0].unwrap().seq, 5);
    let inner = Ipv4Packet::new_checked(pkts[0].data()).unwrap();
    assert_eq!(inner.protocol(), IpProtocol::ICMP);
    assert_eq!(inner.src_addr(), Ipv4Addr::new(198, 51, 100, 5));
    assert_eq!(inner.dst_addr(), Ipv4Addr::new(192, 0, 2, 5));
}

#[test]
fn rejects_every_vector_with_a_flipped_bit() {
    for v in load() {
        let (_, nh) = split(&v);
        let params = sa_params(&v, nh);
        let aead = soft_aead(Backend::RustCrypto, &params).unwrap();
        for at in [8 + v.params.suite.iv_len(), v.esp_packet.len() - 1] {
            let mut sa = esp::InboundSa::new(&params).unwrap();
            sa.replay_mut().set_top(v.seq - 1);
            let mut esp_packet = v.esp_packet.clone();
            esp_packet[at] ^= 0x80;
            let mut wire = ipv4_header(IpProtocol::ESP, esp_packet.len());
            wire.extend_from_slice(&esp_packet);
            let mut pkts = [PktBuf::from_data(&wire, 0, 0)];
            let mut verdicts = [Ok(esp::Decapsulated {
                seq: 0,
                next_header: nh,
            })];
            open_burst(&mut sa, &aead, &mut pkts, &mut verdicts);
            assert_eq!(
                verdicts[0],
                Err(DropReason::IcvMismatch),
                "{} bit at {at}",
                v.name
            );
            // RFC 4303 §3.4.3: a failed ICV leaves the window untouched.
            assert_eq!(sa.replay().top(), v.seq - 1);
        }
    }
}
