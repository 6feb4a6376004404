//! Diet-ESP decompression (draft-ietf-ipsecme-diet-esp-07) of arbitrary
//! bytes never panics, and whatever compresses comes back. The first octets
//! pick a profile (CDAs, alignment, trailer, LSB widths, selector widths,
//! mode); the rest is, in turn: a residue handed to the IIPC decompressors,
//! a received packet run through the inbound SA's post-ICV path as if the
//! ICV had verified (CTEC trailer, IIPC restore, checksums), and an inner
//! packet that, if the rule takes it, must decompress to itself.
#![no_main]

use esp::diet::{Alignment, DietAttrs, DscpCda, EcnCda, EspTrailer, FlowLabelCda, Lower, Profile, Selectors};
use esp::{classify, InboundSa, Mode, PktBuf, SaParams, Suite};
use libfuzzer_sys::fuzz_target;

fn attrs(c: &[u8; 6]) -> DietAttrs {
    let mut a = DietAttrs::defaults();
    a.dscp_cda = DscpCda::ALL[usize::from(c[0]) % 3];
    a.ecn_cda = EcnCda::ALL[usize::from(c[0] >> 2) % 2];
    a.flow_label_cda = FlowLabelCda::ALL[usize::from(c[0] >> 3) % 4];
    a.alignment = Alignment::ALL[usize::from(c[0] >> 5) % 4];
    a.esp_trailer = if c[0] & 0x80 != 0 { EspTrailer::Mandatory } else { EspTrailer::Optional };
    a.esp_spi_lsb = c[1] % 33;
    a.esp_sn_lsb = ((8 - a.esp_spi_lsb % 8) % 8 + 8 * (c[1] >> 6)).min(32);
    a.dscp_list[..3].copy_from_slice(&[0, 10, 46]);
    a.dscp_list_len = 1 + c[2] % 3;
    let v6 = c[2] & 0x80 != 0;
    let w = if v6 { 128 } else { 32 };
    let bits = |b: u8| u32::from(b) % (w + 1);
    let range = |lsb: u32| -> (std::net::IpAddr, std::net::IpAddr) {
        let hi: u128 = if lsb >= 128 { u128::MAX } else { (1u128 << lsb) - 1 };
        if v6 {
            (std::net::Ipv6Addr::from(0x2001_0db8u128 << 96).into(), std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | hi).into())
        } else {
            let base = 0x0a00_0000u32 & !(hi as u32);
            (std::net::Ipv4Addr::from(base).into(), std::net::Ipv4Addr::from(base | hi as u32).into())
        }
    };
    let port = |b: u8| (1000u16 & !((1u16 << (b % 16)) - 1), 1000u16 | ((1u16 << (b % 16)) - 1));
    if c[3] & 1 == 0 {
        a.selectors = Some(Selectors {
            src: range(bits(c[3] >> 1)),
            dst: range(bits(c[4])),
            proto: [0u8, 17, 6, 132, 136][usize::from(c[5]) % 5],
            src_ports: port(c[5] >> 3),
            dst_ports: port(c[4] >> 3),
        });
    }
    a
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let (cfg, rest) = data.split_at(7);
    let c: [u8; 6] = cfg[..6].try_into().unwrap();
    let mut a = attrs(&c);
    let tunnel = cfg[6] & 1 == 0;
    let spi = 0x0102_0304u32;
    let Ok(prof) = Profile::new(&a, tunnel, false, 1, spi) else { return };
    // 1. The decompressors on arbitrary residues.
    let lower = Lower { tos: cfg[6], ttl: cfg[5], flow: u32::from(cfg[4]) << 12 };
    if let Ok(r) = prof.decompress_tunnel(rest, lower, 7) {
        assert!(r.residue_len <= rest.len());
        let mut pkt = r.header().to_vec();
        pkt.extend_from_slice(&rest[r.residue_len..]);
        r.finish_tunnel(&mut pkt);
    }
    if let Ok(r) = prof.decompress_transport(rest, cfg[5]) {
        assert!(r.residue_len <= rest.len());
    }
    let _ = prof.read_trailer(rest);
    let _ = prof.read_esp_header(rest);
    // 2. The inbound SA as if the ICV had verified.
    let mut p = SaParams::new(spi, Suite::AES128_GCM_16_IIV, &[7u8; 20]).unwrap();
    if tunnel {
        p.mode = Mode::Tunnel { src: [192, 0, 2, 1].into(), dst: [192, 0, 2, 2].into() };
    }
    if tunnel && a.flow_label_cda == FlowLabelCda::Generated {
        a.flow_label_cda = FlowLabelCda::NotCompressed;
    }
    p.diet = Some(a);
    if let Ok(mut inb) = InboundSa::new(&p) {
        if let Ok(loc) = classify(rest) {
            let mut buf = PktBuf::from_data(rest, 128, 0);
            if let Ok(op) = inb.prepare(buf.data(), &loc) {
                let _ = inb.finish(&mut buf, &op, true);
            }
        }
    }
    // 3. What compresses decompresses to itself (tunnel mode, non-lossy
    // CDAs: the generated Flow Label was switched off above).
    if tunnel {
        let Ok(prof) = Profile::new(&a, true, false, 1, spi) else { return };
        if let Ok(comp) = prof.compress_tunnel(rest) {
            let inner = &rest[..comp.inner_len];
            let mut payload = comp.residue().to_vec();
            payload.extend_from_slice(&inner[comp.header_len..]);
            let mut lower = comp.lower;
            if a.flow_label_cda == FlowLabelCda::Lower && inner[0] >> 4 == 6 {
                // An IPv4 outer Identification keeps 16 bits; this one is "IPv6".
                lower.flow &= 0xfffff;
            }
            let r = prof.decompress_tunnel(&payload, lower, 7).expect("own residue");
            let mut back = r.header().to_vec();
            back.extend_from_slice(&payload[r.residue_len..]);
            r.finish_tunnel(&mut back);
            assert_eq!(back.len(), inner.len());
            if prof.compresses_inner() {
                // Checksums are recomputed: compare up to them.
                assert_eq!(&back[..2], &inner[..2]);
                assert_eq!(back[comp.header_len..], inner[comp.header_len..]);
            }
        }
    }
});
