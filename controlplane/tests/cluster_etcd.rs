//! The cluster store against a real etcd (Debian's etcd-server, started
//! here on loopback ports): records sealed under the cluster key (nothing
//! in the clear in etcd), and the ownership protocol's takeover with
//! nodes claiming at once, each IKE SA claimed exactly once, a node whose
//! lease expired fenced out.
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use esprit_controlplane::cluster::{ClusterNode, Kv};
use esprit_controlplane::etcd::EtcdKv;
use esprit_controlplane::store::{NodeKey, Persister};
use ike_proto::snapshot::{Changes, IkeSaSnapshot};

mod common;

/// One etcd member on two free loopback ports, removed on drop.
struct Etcd {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    fn start(tag: &str) -> Self {
        let bin = std::env::var("ESPRIT_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
        assert!(std::path::Path::new(&bin).exists(), "{bin} not found: install etcd-server (scripts/setup)");
        let dir = std::env::temp_dir().join(format!("esprit-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (c, p) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{c}");
        let peer = format!("http://127.0.0.1:{p}");
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new(&bin)
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let e = Self { child, dir, url };
        let t0 = Instant::now();
        while EtcdKv::connect(std::slice::from_ref(&e.url), Duration::from_millis(500)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "etcd did not come up: {}", std::fs::read_to_string(e.dir.join("etcd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    fn kv(&self) -> EtcdKv {
        EtcdKv::connect(std::slice::from_ref(&self.url), Duration::from_secs(5)).unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn snapshot(spi: u64) -> IkeSaSnapshot {
    common::snapshot_with_handle(spi, spi & 0xffff)
}

#[test]
fn records_in_etcd_are_sealed_under_the_cluster_key_and_hold_no_key_in_the_clear() {
    let etcd = Etcd::start("seal");
    let cluster_key = NodeKey::from_bytes([0x5a; 32]);
    let snaps: Vec<IkeSaSnapshot> = (1..=50u64).map(|i| snapshot(0x0100_0000_0000_0000 | i)).collect();
    let mut p = Persister::new(Box::new(ClusterNode::join(etcd.kv(), "/seal", "a", 10).unwrap()), &cluster_key);
    p.write(&Changes { put: snaps.clone(), delete: vec![] }, SystemTime::now()).unwrap();
    p.write(&Changes { put: vec![], delete: vec![snaps[0].key()] }, SystemTime::now()).unwrap();

    // What etcd holds, read directly: every key and value under the prefix.
    let raw = etcd.kv().range(b"/seal/", false).unwrap();
    assert_eq!(raw.iter().filter(|e| e.key.starts_with(b"/seal/sa/")).count(), 49);
    let bytes: Vec<u8> = raw.iter().flat_map(|e| [e.key.clone(), e.value.clone()].concat()).collect();
    let s = &snaps[1];
    for (name, k) in [("SK_d", &s.sk_d), ("SK_ei", &s.sk_ei), ("SK_ai", &s.sk_ai), ("SK_er", &s.sk_er), ("SK_ar", &s.sk_ar), ("SK_pi", &s.sk_pi), ("SK_pr", &s.sk_pr)] {
        assert!(!bytes.windows(8).any(|w| k.windows(8).any(|kw| kw == w)), "{name} found in etcd");
    }
    for clear in [&b"carol.secret-identity"[..], &0xc0ffee01u32.to_be_bytes(), &[10, 99, 0, 7]] {
        assert!(!bytes.windows(clear.len()).any(|w| w == clear), "{clear:?} found in etcd in the clear");
    }

    // The same node reads them back; under another key none opens.
    let (loaded, bad) = p.load(SystemTime::now()).unwrap();
    assert_eq!((loaded.len(), bad), (49, 0));
    let mut keys: Vec<[u8; 8]> = loaded.iter().map(|l| l.snapshot.key()).collect();
    keys.sort();
    assert_eq!(keys, snaps[1..].iter().map(|s| s.key()).collect::<Vec<_>>());
    assert_eq!(&loaded[0].snapshot.sk_ei[..], &snaps[1].sk_ei[..]);
    drop(p);
    let mut other = Persister::new(Box::new(ClusterNode::join(etcd.kv(), "/seal", "a", 10).unwrap()), &NodeKey::from_bytes([0x5b; 32]));
    let (loaded, bad) = other.load(SystemTime::now()).unwrap();
    assert_eq!((loaded.len(), bad), (0, 49));
}

#[test]
fn a_dead_nodes_ike_sas_are_claimed_exactly_once_by_the_survivors() {
    let etcd = Etcd::start("takeover");
    let ttl = 2;
    let mut a = ClusterNode::join(etcd.kv(), "/t", "a", ttl).unwrap();
    let b = ClusterNode::join(etcd.kv(), "/t", "b", ttl).unwrap();
    let c = ClusterNode::join(etcd.kv(), "/t", "c", ttl).unwrap();
    let slots: BTreeSet<u8> = [a.slot(), b.slot(), c.slot()].into();
    assert_eq!(slots.len(), 3, "disjoint SPI slots");
    let n = 600u64;
    let puts: Vec<([u8; 8], Vec<u8>)> = (0..n).map(|i| (((u64::from(a.slot()) << 56) | i).to_be_bytes(), vec![b'a'; 100])).collect();
    assert!(a.write(&puts, &[]).unwrap().is_empty());
    assert_eq!(a.owners().unwrap().len(), n as usize);

    // a dies: no keep-alive from now on; b and c keep theirs and scan, in
    // two threads at once, so their claims race in etcd.
    let a_lease = a.lease();
    let t_dead = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for mut node in [b, c] {
        let tx = tx.clone();
        handles.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(ttl as u64 * 3 + 2) {
                assert!(node.keep_alive().unwrap());
                got.extend(node.scan().unwrap());
                // Done when every IKE SA has a live owner again.
                if node.owners().unwrap().values().all(|o| o != "a") && node.owners().unwrap().len() as u64 == n {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            tx.send((node.node().to_string(), got, t_dead.elapsed())).unwrap();
            node
        }));
    }
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    let mut nodes: Vec<ClusterNode<EtcdKv>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all = BTreeSet::new();
    let mut total = 0;
    for (name, got, took) in &results {
        eprintln!("{name} claimed {} IKE SA(s), last after {:.1} s", got.len(), took.as_secs_f64());
        total += got.len();
        all.extend(got.iter().copied());
    }
    assert_eq!(total as u64, n, "each IKE SA claimed exactly once");
    assert_eq!(all.len() as u64, n);
    assert!(etcd.kv().ttl(a_lease).unwrap().is_none(), "a's lease expired");
    // The split: each survivor took a share.
    assert!(results.iter().all(|(_, got, _)| got.len() as u64 > n / 4), "survivors split the SAs");

    // a wakes up and writes: fenced out, nothing overwritten.
    let refused = a.write(&puts[..10], &[]).unwrap();
    assert_eq!(refused.len(), 10);
    let owners = nodes[0].owners().unwrap();
    assert!(owners.values().all(|o| o == "b" || o == "c"));
    assert!(nodes.iter().all(|nd| nd.owned().iter().all(|k| owners[k] == nd.node())));

    // Then b leaves by lease expiry too: c takes b's share.
    let c = nodes.pop().unwrap();
    let b = nodes.pop().unwrap();
    let (mut c, b_owned) = (c, b.owned().len());
    drop(b);
    let t0 = Instant::now();
    let mut got = 0;
    while got < b_owned && t0.elapsed() < Duration::from_secs(ttl as u64 * 3 + 2) {
        assert!(c.keep_alive().unwrap());
        got += c.scan().unwrap().len();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(got, b_owned);
    assert_eq!(c.owned().len() as u64, n);
    let members = c.members().unwrap();
    assert_eq!(members.keys().collect::<Vec<_>>(), vec!["c"], "only c is a member now");
}
