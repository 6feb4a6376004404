//! Encapsulating arbitrary bytes never panics, and whatever encapsulates
//! decapsulates back to the same packet; the IPv4-tunnel fast path either
//! declines (buffer untouched) or writes exactly what `prepare` writes. The
//! first octet picks the SA; the second the headroom; the rest is the
//! packet to protect.
#![no_main]

use esp::{
    open_burst, seal_burst, soft_aead, Backend, DropReason, InboundSa, Mode, OutboundSa, PktBuf,
    SaParams, Suite, TfcPadding, UdpEncap,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cfg, room, pkt @ ..] = data else { return };
    let suite = Suite::ALL[usize::from(*cfg) % Suite::ALL.len()];
    let mut p = SaParams::new(0x0a0b_0c0d, suite, &vec![3u8; suite.keymat_len()]).unwrap();
    p.esn = cfg & 0x08 != 0;
    if cfg & 0x10 != 0 {
        p.mode = if cfg & 0x80 != 0 {
            Mode::Tunnel {
                src: "2001:db8::1".parse().unwrap(),
                dst: "2001:db8::2".parse().unwrap(),
            }
        } else {
            Mode::Tunnel {
                src: [192, 0, 2, 1].into(),
                dst: [192, 0, 2, 2].into(),
            }
        };
        if cfg & 0x40 != 0 {
            p.tfc = TfcPadding::PadTo(u16::from(*room) * 4);
        }
    }
    if cfg & 0x20 != 0 {
        p.udp_encap = Some(UdpEncap::default());
    }
    let out = OutboundSa::new(&p).unwrap();
    let mut inb = InboundSa::new(&p).unwrap();
    let aead = soft_aead(Backend::FASTEST, &p).unwrap();
    {
        let room = usize::from(*room) / 2;
        let mut general = PktBuf::from_data(pkt, room, 1100);
        let mut fast = general.clone().into_parts().0;
        let before = fast.clone();
        let r = out.prepare(&mut general, 7);
        match out.prepare_v4_fast(&mut fast, room, pkt.len(), 7) {
            Some(f) => {
                let op = r.expect("prepare frames what the fast path frames");
                let (g, start, len) = general.into_parts();
                assert_eq!((f.start, f.len, f.text_off, f.text_len), (start, len, op.op.text_off as usize, op.op.text_len as usize));
                assert_eq!(fast, g);
                let (nonce, aad) = out.nonce_aad(7);
                assert_eq!((&nonce, &aad), (&op.op.nonce, op.op.aad_array()));
            }
            None => assert_eq!(fast, before, "declined, yet the buffer changed"),
        }
    }
    let mut pkts = [PktBuf::from_data(pkt, usize::from(*room) / 2, 1100)];
    let mut v = [Ok(())];
    seal_burst(&out, &aead, &mut pkts, &mut v);
    if v[0].is_ok() {
        let mut dv = [Err(DropReason::NotEsp)];
        open_burst(&mut inb, &aead, &mut pkts, &mut dv);
        let d = dv[0].expect("what esprit seals, esprit opens");
        assert_eq!(d.seq, 1);
        // The packet may have been trimmed to its IP length; in transport
        // mode the IPv4 header checksum is recomputed.
        let got = pkts[0].data();
        let transport_v4 = cfg & 0x10 == 0 && pkt.first().map(|b| b >> 4) == Some(4);
        assert!(got.len() <= pkt.len());
        assert!(got
            .iter()
            .zip(pkt)
            .enumerate()
            .all(|(i, (a, b))| a == b || (transport_v4 && (10..12).contains(&i))));
    }
});
