//! Diet-ESP negotiated with N(HCP_PROPOSAL)
//! (draft-ietf-ipsecme-ikev2-diet-esp-extension-04): in IKE_AUTH and
//! CREATE_CHILD_SA, in both roles; kept by rekeys; NO_PROPOSAL_CHOSEN when
//! the values disagree; a peer without the extension unaffected (its Child
//! SA uncompressed); the notify's bytes on the wire.
use ike_wire::{ExchangeType, NotifyType};

use super::util::*;
use crate::compression::{Afrg, CompressionConfig, DietProfile, HcpCodePoints, HcpPolicy};

fn policy(pairs: &[(Afrg, &[u8])]) -> CompressionConfig {
    let mut p = HcpPolicy::default();
    for (a, v) in pairs {
        p.values[*a as usize] = v.to_vec();
    }
    CompressionConfig { proposals: vec![p], code_points: HcpCodePoints::default() }
}

/// The IoT profile of the benchmark: everything `lower`, 8-bit alignment,
/// optional trailer, 8 bits each of SPI and SN.
fn iot() -> CompressionConfig {
    policy(&[
        (Afrg::DscpCda, &[1]),
        (Afrg::EcnCda, &[1]),
        (Afrg::FlowLabelCda, &[1]),
        (Afrg::Alignment, &[0]),
        (Afrg::EspTrailer, &[1]),
        (Afrg::EspSpiLsb, &[8]),
        (Afrg::EspSnLsb, &[8]),
    ])
}

fn pair(seed: u64, a: Option<CompressionConfig>, b: Option<CompressionConfig>) -> Pair {
    let mut ca = psk_conn("site", "a.esprit.test", "b.esprit.test", b"k", true);
    let mut cb = psk_conn("site", "b.esprit.test", "a.esprit.test", b"k", false);
    ca.child.compression = a;
    cb.child.compression = b;
    Pair::new(seed, endpoint_config(ca), endpoint_config(cb))
}

const IOT: DietProfile = DietProfile { values: [1, 1, 1, 0, 1, 8, 8] };

#[test]
fn ike_auth_agrees_on_a_profile_in_either_role() {
    for (seed, initiator) in [(960, Side::A), (961, Side::B)] {
        let mut p = pair(seed, Some(iot()), Some(iot()));
        p.initiate(initiator, "site");
        p.drive();
        for side in [Side::A, Side::B] {
            let i = p.installs(side);
            assert_eq!(i.len(), 1, "{initiator:?} initiating");
            assert_eq!(i[0].compression, Some(IOT), "{side:?}");
        }
    }
}

#[test]
fn the_responder_chooses_inside_the_initiators_list() {
    // The initiator allows 8 or 16 SN bits and either trailer mode; the
    // responder prefers 16 and the mandatory trailer.
    let a = policy(&[(Afrg::EspSnLsb, &[8, 16]), (Afrg::EspSpiLsb, &[16])]);
    let b = policy(&[(Afrg::EspSnLsb, &[16, 8]), (Afrg::EspTrailer, &[0])]);
    let mut p = pair(962, Some(a), Some(b));
    p.connect();
    let want = DietProfile { values: [0, 0, 0, 3, 0, 16, 16] };
    assert_eq!(p.installs(Side::A)[0].compression, Some(want));
    assert_eq!(p.installs(Side::B)[0].compression, Some(want));
}

#[test]
fn a_peer_without_the_extension_gets_an_uncompressed_child_sa() {
    for (seed, a, b) in [(963, Some(iot()), None), (964, None, Some(iot()))] {
        let mut p = pair(seed, a, b);
        p.connect();
        for side in [Side::A, Side::B] {
            assert_eq!(p.installs(side).len(), 1, "seed {seed}");
            assert_eq!(p.installs(side)[0].compression, None, "seed {seed}");
        }
        assert!(p.child_failures(Side::A).is_empty() && p.child_failures(Side::B).is_empty());
    }
}

#[test]
fn disagreeing_values_are_no_proposal_chosen_and_the_ike_sa_stays() {
    let a = policy(&[(Afrg::EspSpiLsb, &[0])]);
    let b = policy(&[(Afrg::EspSpiLsb, &[8, 32])]);
    let mut p = pair(965, Some(a), Some(b));
    p.connect();
    assert!(p.installs(Side::A).is_empty() && p.installs(Side::B).is_empty());
    assert_eq!(p.child_failures(Side::A), vec![NotifyType::NO_PROPOSAL_CHOSEN]);
    assert_eq!(p.child_failures(Side::B), vec![NotifyType::NO_PROPOSAL_CHOSEN]);
    assert_eq!((p.ups(Side::A), p.ups(Side::B)), (1, 1));
}

#[test]
fn rekeys_keep_the_profile_in_either_direction() {
    let mut p = pair(966, Some(iot()), Some(iot()));
    let ike = p.connect();
    let child = p.installs(Side::A)[0].child_sa;
    p.command(Side::A, crate::Command::RekeyChild { ike_sa: ike, child_sa: child });
    p.drive();
    let child = p.installs(Side::B)[1].child_sa;
    let ike_b = up_handle(&p, Side::B);
    p.command(Side::B, crate::Command::RekeyChild { ike_sa: ike_b, child_sa: child });
    p.drive();
    for side in [Side::A, Side::B] {
        let i = p.installs(side);
        assert_eq!(i.len(), 3, "{side:?}");
        assert!(i.iter().all(|x| x.compression == Some(IOT)), "{side:?}");
        assert!(i[1].rekey_of.is_some() && i[2].rekey_of.is_some());
    }
    // Each CREATE_CHILD_SA carried the notify both ways.
    assert_eq!(p.sent(Side::A, ExchangeType::CREATE_CHILD_SA, false), 1);
}

#[test]
fn a_new_child_sa_by_create_child_sa_is_compressed_too() {
    let mut p = pair(967, Some(iot()), Some(iot()));
    let ike = p.connect();
    p.command(Side::B, crate::Command::CreateChild { ike_sa: up_handle(&p, Side::B) });
    p.drive();
    let _ = ike;
    for side in [Side::A, Side::B] {
        let i = p.installs(side);
        assert_eq!(i.len(), 2, "{side:?}");
        assert_eq!(i[1].compression, Some(IOT));
        assert!(i[1].rekey_of.is_none());
    }
}
