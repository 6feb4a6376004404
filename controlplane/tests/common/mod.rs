//! Test data shared by the state-store tests (redb and etcd).
use std::net::SocketAddr;
use std::time::Duration;

use ike_proto::snapshot::{ChildSnapshot, IkeSaSnapshot};
use ike_proto::{EspSuite, Identity, IkeSuite, Mode, TrafficSelector};
use ike_wire::{EncrId, IntegId, KeId, PrfId};

pub fn key(tag: u8) -> ike_crypto::Secret {
    // Distinct, recognisable 32-octet keys.
    ike_crypto::Secret::new((0..32).map(|i| tag ^ (i as u8).wrapping_mul(37)).collect())
}

/// An established responder IKE SA with one Child SA, its keys distinct
/// and recognisable (`key`), its identity and lease searchable in a dump.
pub fn snapshot_with_handle(spi: u64, handle: u64) -> IkeSaSnapshot {
    let ts = TrafficSelector::prefix("10.9.0.0".parse().unwrap(), 16).unwrap();
    IkeSaSnapshot {
        handle,
        connection: "rw".into(),
        initiator: false,
        spi_i: 0x1111_2222_3333_4444,
        spi_r: spi,
        local: "192.0.2.1:4500".parse::<SocketAddr>().unwrap(),
        remote: "198.51.100.7:4500".parse().unwrap(),
        nat_local: false,
        nat_remote: true,
        suite: IkeSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), prf: PrfId::PRF_HMAC_SHA2_256, integ: IntegId::NONE, ke: KeId::CURVE25519, additional_ke: vec![], kwa: None },
        sk_d: key(0x11),
        sk_ei: key(0x22),
        sk_ai: key(0x33),
        sk_er: key(0x44),
        sk_ar: key(0x55),
        sk_pi: key(0x66),
        sk_pr: key(0x77),
        next_request_id: 5,
        next_expected_id: 9,
        pending_request: None,
        mid_sync: true,
        remote_id: Some(Identity::Fqdn("carol.secret-identity.test".into())),
        peer_hashes: vec![2, 3, 4],
        leases: vec!["10.99.0.7".parse().unwrap()],
        ppk_used: false,
        fragment_len: Some(1280),
        rekey_in: Some(Duration::from_secs(3000)),
        children: vec![ChildSnapshot {
            handle: 7,
            spi_in: 0xc0ffee01,
            spi_out: 0xc0ffee02,
            suite: EspSuite { encr: EncrId::ENCR_AES_GCM_16, key_bits: Some(256), integ: IntegId::NONE, esn: false, ke: None, additional_ke: [KeId::NONE; 7] },
            mode: Mode::Tunnel,
            ts_local: vec![ts],
            ts_remote: vec![ts],
            sec_label: None,
            compression: None,
            age: Duration::from_secs(10),
            rekey_in: None,
        }],
    }
}
