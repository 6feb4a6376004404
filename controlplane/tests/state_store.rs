//! The embedded state store (src/store.rs): sealed records that survive a
//! reopen, and no key material in the file.
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use esprit_controlplane::store::{NodeKey, Persister, RedbStore};
use ike_proto::snapshot::{Changes, ChildSnapshot, IkeSaSnapshot};
use ike_proto::{EspSuite, Identity, IkeSuite, Mode, TrafficSelector};
use ike_wire::{EncrId, IntegId, KeId, PrfId};

fn key(tag: u8) -> ike_crypto::Secret {
    // Distinct, recognisable 32-octet keys.
    ike_crypto::Secret::new((0..32).map(|i| tag ^ (i as u8).wrapping_mul(37)).collect())
}

fn snapshot(spi: u64) -> IkeSaSnapshot {
    let ts = TrafficSelector::prefix("10.9.0.0".parse().unwrap(), 16).unwrap();
    IkeSaSnapshot {
        handle: spi,
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

#[test]
fn records_survive_a_reopen_and_the_file_holds_no_key_or_identity_in_the_clear() {
    let dir = std::env::temp_dir().join(format!("esprit-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("state.redb");
    let node_key = NodeKey::from_bytes([0x5a; 32]);
    let snaps: Vec<IkeSaSnapshot> = (1..=50u64).map(|i| snapshot(0xabcd_0000_0000_0000 | i)).collect();
    {
        let mut p = Persister::new(Box::new(RedbStore::open(&path).unwrap()), &node_key);
        p.write(&Changes { put: snaps.clone(), delete: vec![] }, SystemTime::now()).unwrap();
        // One deleted again, in a later batch.
        p.write(&Changes { put: vec![], delete: vec![snaps[0].key()] }, SystemTime::now()).unwrap();
    }
    let file = std::fs::read(&path).unwrap();
    let s = &snaps[1];
    for (name, k) in [("SK_d", &s.sk_d), ("SK_ei", &s.sk_ei), ("SK_ai", &s.sk_ai), ("SK_er", &s.sk_er), ("SK_ar", &s.sk_ar), ("SK_pi", &s.sk_pi), ("SK_pr", &s.sk_pr)] {
        // Any 8 consecutive octets of a key would do to spot it.
        assert!(!file.windows(8).any(|w| k.windows(8).any(|kw| kw == w)), "{name} found in the store file");
    }
    assert!(!file.windows(12).any(|w| w == b"carol.secret"), "the peer's identity is in the clear");
    assert!(!file.windows(8).any(|w| w == 0x1111_2222_3333_4444u64.to_be_bytes()), "SPIi in the clear");

    let mut p = Persister::new(Box::new(RedbStore::open(&path).unwrap()), &node_key);
    let (loaded, bad) = p.load(SystemTime::now()).unwrap();
    assert_eq!(bad, 0);
    let mut got: Vec<IkeSaSnapshot> = loaded.into_iter().map(|l| l.snapshot).collect();
    got.sort_by_key(|s| s.spi_r);
    assert_eq!(got, snaps[1..].to_vec());
    // Under another node key nothing opens, and nothing is half-read.
    drop(p);
    let mut other = Persister::new(Box::new(RedbStore::open(&path).unwrap()), &NodeKey::from_bytes([0x5b; 32]));
    let (loaded, bad) = other.load(SystemTime::now()).unwrap();
    assert_eq!((loaded.len(), bad), (0, 49));
    let _ = std::fs::remove_dir_all(&dir);
}
