//! The embedded state store (src/store.rs): sealed records that survive a
//! reopen, and no key material in the file.
use std::time::SystemTime;

use esprit_controlplane::store::{NodeKey, Persister, RedbStore};
use ike_proto::snapshot::{Changes, IkeSaSnapshot};

mod common;

fn snapshot(spi: u64) -> IkeSaSnapshot {
    common::snapshot_with_handle(spi, spi)
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
