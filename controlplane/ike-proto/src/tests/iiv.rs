//! RFC 8750 implicit IV: negotiated for Child SAs in both roles, with the
//! explicit-IV transform as fallback, and never for the IKE SA.
use ike_wire::{EncrId, Header, Message, Payload, ProtocolId, TransformType};

use super::util::*;
use crate::proposal;
use crate::Event;

fn iiv_pair(seed: u64, a_offers: Vec<crate::EspProposal>, b_accepts: Vec<crate::EspProposal>) -> Pair {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.child.esp_proposals = a_offers;
    cb.child.esp_proposals = b_accepts;
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

fn gcm_iiv() -> crate::EspProposal {
    esp_proposal(EncrId::ENCR_AES_GCM_16_IIV, Some(256))
}

fn gcm() -> crate::EspProposal {
    esp_proposal(EncrId::ENCR_AES_GCM_16, Some(256))
}

#[test]
fn an_iiv_child_sa_is_negotiated_when_both_sides_have_it_in_either_role() {
    for (seed, initiator) in [(800, Side::A), (801, Side::B)] {
        let mut p = iiv_pair(seed, vec![gcm_iiv(), gcm()], vec![gcm_iiv(), gcm()]);
        p.initiate(initiator, "site");
        p.drive();
        let (a, b) = (p.installs(Side::A), p.installs(Side::B));
        assert_eq!((a.len(), b.len()), (1, 1), "{initiator:?} initiating");
        for i in [a[0], b[0]] {
            assert_eq!(i.suite.encr, EncrId::ENCR_AES_GCM_16_IIV);
            assert!(i.suite.implicit_iv());
            // RFC 8750 §3: the KEYMAT is that of RFC 4106 (32 + 4 salt).
            assert_eq!(i.keys_in.encr.len(), 36);
        }
        assert_eq!(a[0].keys_out.encr[..], b[0].keys_in.encr[..]);
    }
}

#[test]
fn chacha20_poly1305_iiv_takes_the_rfc_7634_keymat() {
    let c = esp_proposal(EncrId::ENCR_CHACHA20_POLY1305_IIV, None);
    let mut p = iiv_pair(802, vec![c.clone()], vec![c]);
    p.connect();
    let a = p.installs(Side::A)[0];
    assert_eq!(a.suite.encr.0, 31);
    assert_eq!(a.keys_in.encr.len(), 36);
}

#[test]
fn a_responder_without_iiv_picks_the_explicit_iv_fallback() {
    // RFC 8750 §5: the initiator SHOULD also offer the explicit-IV suite.
    let mut p = iiv_pair(803, vec![gcm_iiv(), gcm()], vec![gcm()]);
    p.connect();
    assert_eq!(p.installs(Side::A)[0].suite.encr, EncrId::ENCR_AES_GCM_16);
    assert!(!p.installs(Side::B)[0].suite.implicit_iv());
    // And the other way round: an IIV-only responder refuses a peer that
    // offers explicit IV only.
    let mut p = iiv_pair(804, vec![gcm()], vec![gcm_iiv()]);
    p.connect();
    assert!(p.installs(Side::A).is_empty());
    assert!(p.count(Side::A, |e| matches!(e, Event::ChildSaFailed { .. })) == 1);
}

#[test]
fn an_iiv_child_sa_rekeys_into_an_iiv_child_sa() {
    let mut p = iiv_pair(805, vec![gcm_iiv()], vec![gcm_iiv()]);
    let ike = p.connect();
    let child = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, crate::Command::RekeyChild { ike_sa: ike, child_sa: child });
    p.drive();
    let a = p.installs(Side::A);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].suite.encr, EncrId::ENCR_AES_GCM_16_IIV);
    assert_eq!(a[1].rekey_of, Some(child));
}

#[test]
fn implicit_iv_is_never_accepted_for_the_ike_sa() {
    // A (mis)configured responder whose only IKE proposal is IIV must not
    // pick it, even if the initiator offers it (RFC 8750 §4).
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    for c in [&mut ca, &mut cb] {
        c.ike_proposals[0].encr = EncrId::ENCR_AES_GCM_16_IIV;
    }
    let mut p = Pair::new(806, endpoint_config(ca), endpoint_config(cb));
    p.initiate(Side::A, "site");
    p.drive();
    assert_eq!(p.ups(Side::A) + p.ups(Side::B), 0);
}

#[test]
fn the_esp_sa_payload_carries_the_iiv_transform_with_its_key_length() {
    // RFC 7296 §3.3.1/§3.3.2/§3.3.5 layout, ENCR 30 (RFC 8750 §5).
    let sa = proposal::esp_sa_payload(&[gcm_iiv()], 0x0102_0304, false);
    assert_eq!(sa.proposals[0].protocol_id, ProtocolId::ESP);
    let msg = Message::new(Header::new(1, 0, ike_wire::ExchangeType::IKE_AUTH, ike_wire::Flags::new(true, false), 1), vec![Payload::Sa(sa)]);
    let bytes = msg.emit().expect("emits");
    let body = &bytes[28..];
    #[rustfmt::skip]
    let want: &[u8] = &[
        0, 0, 0, 36,             // SA payload header: last, length 36
        0, 0, 0, 32,             // proposal: last, reserved, length 32
        1, 3, 4, 2,              // #1, ESP, SPI size 4, 2 transforms
        1, 2, 3, 4,              // SPI
        3, 0, 0, 12, 1, 0, 0, 30, // transform ENCR 30 ...
        0x80, 0x0e, 1, 0,        // ... Key Length 256 (TV)
        0, 0, 0, 8, 5, 0, 0, 0,  // ESN: No ESN
    ];
    assert_eq!(body, want);
    let t = &msg.payloads[0];
    let Payload::Sa(sa) = t else { unreachable!() };
    assert_eq!(sa.proposals[0].transforms[0].transform_type, TransformType::ENCR);
}
