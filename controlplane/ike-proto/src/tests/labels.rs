//! RFC 9478 labeled IPsec: TS_SECLABEL negotiated in both roles, kept
//! across a rekey, refused when the two ends disagree, absent (and the
//! exchange unchanged) when neither end has a label.
use ike_wire::{Header, Message, NotifyType, Payload, TrafficSelector as WireTs};

use super::util::*;
use crate::ts;

const CTX: &[u8] = b"system_u:object_r:ipsec_spd_t:s0";

fn labeled(seed: u64, a: Option<&[u8]>, b: Option<&[u8]>) -> Pair {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.child.sec_label = a.map(<[u8]>::to_vec);
    cb.child.sec_label = b.map(<[u8]>::to_vec);
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

#[test]
fn a_shared_label_is_negotiated_and_stored_on_the_child_sa_in_either_role() {
    for (seed, initiator) in [(950, Side::A), (951, Side::B)] {
        let mut p = labeled(seed, Some(CTX), Some(CTX));
        p.initiate(initiator, "site");
        p.drive();
        let mut want = CTX.to_vec();
        want.push(0);
        for side in [Side::A, Side::B] {
            let i = p.installs(side);
            assert_eq!(i.len(), 1, "{initiator:?} initiating");
            assert_eq!(i[0].sec_label.as_deref(), Some(&want[..]));
        }
    }
}

#[test]
fn the_label_survives_a_child_sa_rekey() {
    let mut p = labeled(952, Some(CTX), Some(CTX));
    let ike = p.connect();
    let child = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, crate::Command::RekeyChild { ike_sa: ike, child_sa: child });
    p.drive();
    for side in [Side::A, Side::B] {
        let i = p.installs(side);
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].sec_label, i[0].sec_label);
        assert!(i[1].sec_label.is_some());
    }
}

#[test]
fn different_or_one_sided_labels_are_ts_unacceptable_and_the_ike_sa_stays() {
    for (seed, a, b) in [(953, Some(CTX), Some(&b"user_u:object_r:other_t:s0"[..])), (954, Some(CTX), None), (955, None, Some(CTX))] {
        let mut p = labeled(seed, a, b);
        p.connect();
        assert!(p.installs(Side::A).is_empty() && p.installs(Side::B).is_empty(), "seed {seed}");
        assert_eq!(p.child_failures(Side::B), vec![NotifyType::TS_UNACCEPTABLE], "seed {seed}");
        assert_eq!(p.child_failures(Side::A), vec![NotifyType::TS_UNACCEPTABLE], "seed {seed}");
        assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1));
    }
}

#[test]
fn a_label_without_its_nul_matches_the_same_label_with_it() {
    let mut with_nul = CTX.to_vec();
    with_nul.push(0);
    let mut p = labeled(956, Some(CTX), Some(&with_nul));
    p.connect();
    assert_eq!(p.installs(Side::A).len(), 1);
    assert_eq!(p.installs(Side::A)[0].sec_label, p.installs(Side::B)[0].sec_label);
}

#[test]
fn ts_seclabel_byte_layout_follows_rfc_9478() {
    // TS payload: Number of TSs 2, the address range, then
    // TS Type 10 | Reserved 0 | Selector Length | label (NUL-terminated,
    // as strongSwan and libreswan send it).
    let t = ts::to_wire_list_labeled(&[prefix("10.1.0.0/16")], Some(b"ctx"));
    assert!(matches!(t.selectors[1], WireTs::SecLabel { .. }));
    let h = Header::new(1, 2, ike_wire::ExchangeType::IKE_AUTH, ike_wire::Flags::new(true, false), 1);
    let b = Message::new(h, vec![Payload::TsI(t)]).emit().expect("emits");
    #[rustfmt::skip]
    let want: &[u8] = &[
        0, 0, 0, 32,            // TSi payload header, length 32
        2, 0, 0, 0,             // Number of TSs 2
        7, 0, 0, 16, 0, 0, 0xff, 0xff, 10, 1, 0, 0, 10, 1, 0xff, 0xff,
        10, 0, 0, 8, b'c', b't', b'x', 0,
    ];
    assert_eq!(&b[28..], want);
    let parsed = Message::parse(&b).expect("parses");
    let Payload::TsI(t) = &parsed.payloads[0] else { panic!() };
    assert_eq!(ts::labels_of(&t.selectors), vec![b"ctx\0".to_vec()]);
    assert_eq!(ts::from_wire_list(&t.selectors), vec![prefix("10.1.0.0/16")], "labels are not address selectors");
}
