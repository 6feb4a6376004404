//! Decapsulation of arbitrary bytes never panics. The first octet picks the
//! SA (suite, ESN, mode, UDP encapsulation, window); the rest is the
//! received IP packet. Besides the full `open_burst` path (where the ICV
//! never verifies on random input), the post-ICV code (window update,
//! trailer, padding, inner-header checks, transport reconstruction) is
//! driven directly by calling `finish` as if the ICV had verified.
#![no_main]

use esp::{
    classify, open_burst, soft_aead, Backend, DropReason, InboundSa, Mode, PktBuf, SaParams, Suite,
    UdpEncap,
};
use libfuzzer_sys::fuzz_target;

fn sa(cfg: u8) -> SaParams {
    let suite = Suite::ALL[usize::from(cfg) % Suite::ALL.len()];
    let mut p = SaParams::new(0x0102_0304, suite, &vec![7u8; suite.keymat_len()]).unwrap();
    p.esn = cfg & 0x08 != 0;
    if cfg & 0x10 != 0 {
        p.mode = Mode::Tunnel {
            src: [192, 0, 2, 1].into(),
            dst: [192, 0, 2, 2].into(),
        };
    }
    if cfg & 0x20 != 0 {
        p.udp_encap = Some(UdpEncap::default());
    }
    p.replay_window = if cfg & 0x40 != 0 { 0 } else { 64 };
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, pkt)) = data.split_first() else {
        return;
    };
    let params = sa(cfg);
    let mut inb = InboundSa::new(&params).unwrap();
    let aead = soft_aead(Backend::RustCrypto, &params).unwrap();
    let mut pkts = [PktBuf::from_data(pkt, 0, 0)];
    let mut v = [Err(DropReason::NotEsp)];
    open_burst(&mut inb, &aead, &mut pkts, &mut v);
    assert!(v[0].is_err(), "random bytes authenticated");
    // As if the ICV had verified.
    if let Ok(loc) = classify(pkt) {
        let mut buf = PktBuf::from_data(pkt, 0, 0);
        if let Ok(op) = inb.prepare(buf.data(), &loc) {
            if let Ok(d) = inb.finish(&mut buf, &op, true) {
                assert_eq!(d.seq, op.seq);
                assert!(buf.len() <= pkt.len());
            }
        }
    }
});
