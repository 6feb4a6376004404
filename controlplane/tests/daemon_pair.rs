//! Two esprit-ike daemons over loopback UDP, each with its own SA table in
//! /dev/shm: an initiator (127.0.0.1, asks for a virtual IP) and a
//! responder (127.0.0.2, hands one out of a pool). Driven through the
//! control socket, checked through the tables, the listings and /metrics.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use esprit_controlplane::config::DaemonConfig;
use esprit_controlplane::control::{call, Request, Response};
use esprit_controlplane::daemon::Daemon;
use esprit_controlplane::table::COOKIE_TAG;
use sa_table::{Direction, Reader, SaParams};
use serde_json::Value;

struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
    table: PathBuf,
    metrics: Option<SocketAddr>,
}

impl Running {
    fn call(&self, r: Request) -> Response {
        call(&self.socket, &r).expect("control socket answers")
    }

    fn ok(&self, r: Request) -> Value {
        let resp = self.call(r.clone());
        assert!(resp.ok, "{r:?} failed: {:?}", resp.error);
        resp.data.unwrap_or_default()
    }

    /// Our slots in the table, read as a dataplane worker would.
    fn slots(&self) -> Vec<SaParams> {
        let mut r = Reader::attach(&self.table).expect("reader attaches");
        r.poll_changes(|_| {});
        let ids: Vec<_> = r.known_ids().collect();
        ids.into_iter().filter_map(|id| r.read(id).ok()).filter(|p| p.cookie & (0xffff << 48) == COOKIE_TAG).collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.table);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn start(dir: &Path, name: &str, yaml: &str) -> Running {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let cfg = DaemonConfig::load(&path).expect("config loads");
    let socket = cfg.control_socket.clone();
    let table = cfg.sa_table_path.clone();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let (mut d, m) = Daemon::start(cfg, Some(path)).expect("daemon starts");
        tx.send((d.stop_flag(), m.as_ref().map(|m| m.local_addr()))).unwrap();
        d.run();
        drop(m);
    });
    let (stop, metrics) = rx.recv_timeout(Duration::from_secs(10)).expect("daemon reports its start");
    Running { stop, thread: Some(thread), socket, table, metrics }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn established_children(r: &Running) -> Vec<Value> {
    let v = r.ok(Request::ListSas);
    v["ike_sas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "Established")
        .flat_map(|i| i["child_sas"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["state"] == "INSTALLED")
        .collect()
}

struct Setup {
    dir: PathBuf,
    tag: &'static str,
    port: u16,
}

impl Setup {
    fn new(tag: &'static str) -> Self {
        let dir = std::env::temp_dir().join(format!("esprit-ike-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Distinct per process and test so parallel runs do not collide.
        let base = 20000 + (std::process::id() % 2000) as u16 * 20;
        let port = base
            + match tag {
                "pair" => 0,
                "restart" => 4,
                "ppk" => 8,
                "ppk8784" => 10,
                "aes192" => 16,
                _ => 12,
            };
        Self { dir, tag, port }
    }

    fn table(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/dev/shm/esprit-ike-test-{}-{}-{name}", std::process::id(), self.tag))
    }

    fn responder(&self, grace: u64) -> String {
        format!(
            r#"
ike:
  listen: [127.0.0.2]
  port: {p}
  natt_port: {n}
  control_socket: {dir}/resp.sock
  metrics_listen: 127.0.0.1:0
  sa_table: {{ path: {table}, capacity: 64 }}
  orphan_grace_secs: {grace}
  pools:
    rw: {{ v4: 10.99.0.0/24, dns: [192.168.109.53] }}
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: {{ psk: "interop-psk-0123456789" }}
      remote_auth: {{ psk: "interop-psk-0123456789" }}
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.109.0/24]
"#,
            p = self.port,
            n = self.port + 1,
            dir = self.dir.display(),
            table = self.table("resp").display(),
        )
    }

    fn initiator(&self) -> String {
        format!(
            r#"
ike:
  listen: [127.0.0.1]
  port: {p}
  natt_port: {n}
  control_socket: {dir}/init.sock
  metrics_listen: null
  sa_table: {{ path: {table}, capacity: 64 }}
  connections:
    home:
      remote: 127.0.0.2
      local_id: client@esprit
      remote_id: gw.esprit
      local_auth: {{ psk: "interop-psk-0123456789" }}
      remote_auth: {{ psk: "interop-psk-0123456789" }}
      request_vip: [v4]
      child:
        esp_proposals: [aes256gcm16]
        remote_ts: [192.168.109.0/24]
"#,
            p = self.port,
            n = self.port + 1,
            dir = self.dir.display(),
            table = self.table("init").display(),
        )
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn two_daemons_establish_program_the_tables_rekey_and_terminate() {
    let s = Setup::new("pair");
    let resp = start(&s.dir, "resp", &s.responder(30));
    let init = start(&s.dir, "init", &s.initiator());

    let data = init.ok(Request::Initiate { conn: "home".into() });
    assert!(data["ike_sa"].is_u64());
    wait_for("a Child SA on both sides", || established_children(&init).len() == 1 && established_children(&resp).len() == 1);

    // The responder's listing: virtual IP handed out, selectors narrowed.
    let list = resp.ok(Request::ListSas);
    let ike = &list["ike_sas"][0];
    assert_eq!(ike["remote_id"], "client@esprit");
    assert_eq!(ike["virtual_ips"][0], "10.99.0.1");
    let child = &ike["child_sas"][0];
    assert_eq!(child["ts_remote"][0], "10.99.0.1/32");
    assert_eq!(child["ts_local"][0], "192.168.109.0/24");
    assert_eq!(child["encr"], "ENCR_AES_GCM_16-256");
    let text = esprit_controlplane::show::list_sas(&list);
    assert!(text.contains("rw: #"), "{text}");
    // No `proposals`: the default, X25519 then ML-KEM-768 (RFC 9370 ADDKE1
    // over IKE_INTERMEDIATE), shown and counted as post-quantum.
    assert_eq!(ike["key_exchanges"], serde_json::json!(["CURVE25519", "ML_KEM_768"]));
    assert!(text.contains("CURVE25519+ML_KEM_768 (post-quantum)"), "{text}");
    wait_for("esprit_ike_pq_sas 1", || resp.ok(Request::Stats)["counters"]["esprit_ike_pq_sas"] == 1);

    // The tables: each side one inbound and one outbound slot; the
    // initiator's outbound is the responder's inbound, same SPI, same key.
    let (a, b) = (init.slots(), resp.slots());
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(b.len(), 2, "{b:?}");
    let a_out = a.iter().find(|p| p.direction == Direction::OUTBOUND).unwrap();
    let b_in = b.iter().find(|p| p.direction == Direction::INBOUND && p.spi == a_out.spi).expect("matching inbound SA");
    assert_eq!(a_out.key(), b_in.key());
    assert_eq!(a_out.salt, b_in.salt);
    assert_eq!(a_out.key().len(), 32);
    assert_eq!(a_out.initial_seq, 1);
    assert!(b_in.replay_window_pkts > 0);
    let b_out = b.iter().find(|p| p.direction == Direction::OUTBOUND).unwrap();
    assert_eq!(b_out.served().len(), 1);
    assert_eq!(b_out.served()[0].len, 32);
    assert_eq!(b_out.outer_src_addr(), Some("127.0.0.2".parse().unwrap()));
    assert_eq!(b_out.outer_dst_addr(), Some("127.0.0.1".parse().unwrap()));
    assert_eq!(b_in.outer_src_addr(), Some("127.0.0.1".parse().unwrap()));
    // Without a NAT and on port 500, ESP is not UDP-encapsulated.
    assert!(!b_out.flags.contains(sa_table::SaFlags::UDP_ENCAP));
    assert!(b_in.selectors_match("192.168.109.7".parse().unwrap(), "10.99.0.1".parse().unwrap(), 1, 0, 0));

    // Rekey the Child SA from the initiator: new SPIs, the old slots gone
    // once the old Child SA is deleted.
    let old_spi = a_out.spi;
    let child_id = established_children(&init)[0]["child_sa"].as_u64().unwrap();
    init.ok(Request::RekeyChild { child_sa: child_id });
    wait_for("the rekeyed Child SA", || {
        let a = init.slots();
        a.len() == 2 && a.iter().all(|p| p.spi != old_spi) && resp.slots().len() == 2
    });
    let a = init.slots();
    let a_out = a.iter().find(|p| p.direction == Direction::OUTBOUND).unwrap();
    let b = resp.slots();
    let b_in = b.iter().find(|p| p.direction == Direction::INBOUND && p.spi == a_out.spi).expect("rekeyed inbound SA");
    assert_eq!(a_out.key(), b_in.key());

    let addr = resp.metrics.expect("responder serves metrics");
    // Gauges follow the one-second housekeeping tick.
    wait_for("the gauges", || scrape(addr).contains("esprit_ike_child_sas 1"));
    let m = scrape(addr);
    assert!(m.contains("esprit_ike_handshakes_total{role=\"responder\"} 1"), "{m}");
    assert!(m.contains("esprit_ike_rekeys_total{kind=\"child\"} 1"), "{m}");
    assert!(m.contains("esprit_ike_sas{state=\"Established\"} 1"), "{m}");

    let stats = init.ok(Request::Stats);
    assert_eq!(stats["ike_sas_established"], 1);
    assert_eq!(stats["counters"]["esprit_ike_handshakes_total{role=initiator}"], 1);

    // Terminate from the initiator: both tables empty again.
    let ike_id = init.ok(Request::ListSas)["ike_sas"][0]["ike_sa"].as_u64().unwrap();
    init.ok(Request::Terminate { ike_sa: ike_id });
    wait_for("both tables empty", || init.slots().is_empty() && resp.slots().is_empty());

    // Errors come back as errors, the socket stays usable.
    assert!(!init.call(Request::Initiate { conn: "nope".into() }).ok);
    assert!(!resp.call(Request::Initiate { conn: "rw".into() }).ok, "a responder-only connection cannot initiate");
    assert!(!init.call(Request::Terminate { ike_sa: 999 }).ok);
    assert!(init.ok(Request::Reload)["connections"][0] == "home");
}

#[test]
fn a_restarted_daemon_keeps_orphaned_sas_for_the_grace_period_then_deletes_them() {
    let s = Setup::new("restart");
    let resp = start(&s.dir, "resp", &s.responder(1));
    let init = start(&s.dir, "init", &s.initiator());
    init.ok(Request::Initiate { conn: "home".into() });
    wait_for("a Child SA on the responder", || established_children(&resp).len() == 1);
    let before = resp.slots();
    assert_eq!(before.len(), 2);

    // The responder dies (its table stays) and comes back.
    let table = resp.table.clone();
    let mut resp = resp;
    resp.stop.store(true, Ordering::Relaxed);
    if let Some(t) = resp.thread.take() {
        t.join().unwrap();
    }
    std::mem::forget(resp); // keep the table file for the restart
    let again = start(&s.dir, "resp", &s.responder(1));
    assert_eq!(again.table, table);
    let list = again.ok(Request::ListSas);
    assert_eq!(list["ike_sas"].as_array().unwrap().len(), 0, "IKE SAs are not persisted");
    assert_eq!(list["orphans"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(again.slots().len(), 2, "kept during the grace period");
    wait_for("orphans deleted after the grace period", || again.slots().is_empty());
    assert_eq!(again.ok(Request::Stats)["orphan_slots"], 0);
}

/// Adds `ike.ppks` and a connection `ppk:` (negotiated in `exchange`) to a
/// YAML of [`Setup`].
fn with_ppk(yaml: &str, conn: &str, required: bool, exchange: &str) -> String {
    const PPK: &str = "8f3c6a0e2b7d41c59a1e0f6b3d2c7a48e5b9061f2d3c4b5a69788796a5b4c3d2";
    yaml.replace("  connections:\n", &format!("  ppks:\n    - {{ id: pqc-1, secret_hex: \"{PPK}\" }}\n  connections:\n"))
        .replace(&format!("    {conn}:\n"), &format!("    {conn}:\n      ppk: {{ id: pqc-1, required: {required}, exchange: {exchange} }}\n"))
}

/// Turns a YAML of [`Setup`] into the ipsecme one: RFC 8598 domains in the
/// pool, a classic IKE proposal, an RFC 8750 implicit-IV ESP proposal first
/// and an RFC 9478 label on the Child SA.
fn with_ext(yaml: &str) -> String {
    let ext_child = "      proposals: [aes256gcm16-prfsha256-x25519]\n      child:\n        esp_proposals: [aes256gcm16iiv, aes256gcm16]\n        sec_label: \"system_u:object_r:ipsec_spd_t:s0\"\n";
    yaml.replace("dns: [192.168.109.53] }", "dns: [192.168.109.53], dns_domains: [corp.example.test, com] }")
        .replace("      child:\n        esp_proposals: [aes256gcm16]\n", ext_child)
}

/// Two daemons with a PPK, negotiated per RFC 9867 in IKE_INTERMEDIATE
/// (`intermediate` on the responder, the default `either` on the
/// initiator); [`two_daemons_with_an_rfc8784_ppk_show_and_count_it`] does
/// the same in IKE_AUTH.
#[test]
fn two_daemons_with_a_ppk_show_and_count_it() {
    ppk_pair("intermediate", "either");
}

#[test]
fn two_daemons_with_an_rfc8784_ppk_show_and_count_it() {
    ppk_pair("ike_auth", "either");
}

fn ppk_pair(resp_exchange: &str, init_exchange: &str) {
    let s = Setup::new(if resp_exchange == "ike_auth" { "ppk8784" } else { "ppk" });
    let resp = start(&s.dir, "resp", &with_ppk(&s.responder(30), "rw", true, resp_exchange));
    let init = start(&s.dir, "init", &with_ppk(&s.initiator(), "home", false, init_exchange));
    init.ok(Request::Initiate { conn: "home".into() });
    wait_for("a Child SA on both sides", || established_children(&init).len() == 1 && established_children(&resp).len() == 1);
    for r in [&init, &resp] {
        let list = r.ok(Request::ListSas);
        assert_eq!(list["ike_sas"][0]["ppk"], true, "{list}");
        let text = esprit_controlplane::show::list_sas(&list);
        assert!(text.contains(", PPK"), "{text}");
    }
    let stats = init.ok(Request::Stats);
    assert_eq!(stats["counters"]["esprit_ike_ppk_handshakes_total{role=initiator}"], 1, "{stats}");
    let addr = resp.metrics.expect("responder serves metrics");
    let m = scrape(addr);
    assert!(m.contains("esprit_ike_ppk_handshakes_total{role=\"responder\"} 1"), "{m}");
}

/// The ipsecme extensions between two daemons: an implicit-IV Child SA
/// with a security label in both tables, split-DNS domains pushed and
/// accepted, RFC 8983 and RFC 9593 state, all in the listings and metrics.
#[test]
fn two_daemons_negotiate_iiv_labels_and_split_dns_into_the_tables() {
    let s = Setup::new("ext");
    let resp_yaml = with_ext(&s.responder(30));
    let init_yaml = with_ext(&s.initiator());
    let resp = start(&s.dir, "resp", &resp_yaml);
    let init = start(&s.dir, "init", &init_yaml);
    init.ok(Request::Initiate { conn: "home".into() });
    wait_for("a Child SA on both sides", || established_children(&init).len() == 1 && established_children(&resp).len() == 1);

    // Both tables: IIV transform and the label (with its NUL) in every slot.
    for r in [&init, &resp] {
        let slots = r.slots();
        assert_eq!(slots.len(), 2);
        for p in &slots {
            assert_eq!(p.transform, sa_table::TransformId::AES_GCM_16_IIV);
            assert_eq!(p.sec_label(), b"system_u:object_r:ipsec_spd_t:s0\0");
        }
    }
    // Traffic over the installed IIV SA through the dataplane's ESP engine
    // (the code its workers run): sealed with the initiator's outbound slot,
    // opened with the responder's inbound slot.
    let a_out = init.slots().into_iter().find(|p| p.direction == Direction::OUTBOUND).unwrap();
    let b_in = resp.slots().into_iter().find(|p| p.direction == Direction::INBOUND && p.spi == a_out.spi).unwrap();
    let (inner, wire) = seal_one(&a_out);
    // RFC 8750: no IV on the wire. Outer IPv4 20 + SPI/SN 8 + payload and
    // trailer padded to 4 + ICV 16 (an explicit IV would add 8).
    assert_eq!(wire.len(), 20 + 8 + (inner.len() + 2).div_ceil(4) * 4 + 16);
    assert_eq!(open_one(&b_in, wire), inner);

    let list = init.ok(Request::ListSas);
    let ike = &list["ike_sas"][0];
    assert_eq!(ike["dns_domains"], serde_json::json!(["corp.example.test"]), "com is a public suffix");
    assert_eq!(ike["peer_allowed_families"], serde_json::json!(["v4"]));
    assert_eq!(ike["peer_auth_methods"], serde_json::json!(["method 2"]));
    let child = &ike["child_sas"][0];
    assert_eq!(child["iiv"], true);
    assert_eq!(child["label"], "system_u:object_r:ipsec_spd_t:s0");
    let text = esprit_controlplane::show::list_sas(&list);
    assert!(text.contains("split DNS: corp.example.test"), "{text}");
    assert!(text.contains("implicit IV"), "{text}");
    assert!(text.contains("label system_u:object_r:ipsec_spd_t:s0"), "{text}");
    let rlist = resp.ok(Request::ListSas);
    assert_eq!(rlist["ike_sas"][0]["dns_domains"], serde_json::json!(["corp.example.test", "com"]), "what the gateway pushed");

    let stats = init.ok(Request::Stats);
    assert_eq!(stats["counters"]["esprit_ike_child_sa_features_total{feature=iiv}"], 1, "{stats}");
    assert_eq!(stats["counters"]["esprit_ike_child_sa_features_total{feature=label}"], 1);
    assert_eq!(stats["counters"]["esprit_ike_split_dns_domains_total{result=accepted}"], 1);
    assert_eq!(stats["counters"]["esprit_ike_split_dns_domains_total{result=refused}"], 1);
    let m = scrape(resp.metrics.expect("responder serves metrics"));
    assert!(m.contains("esprit_ike_split_dns_domains_total{result=\"pushed\"} 2"), "{m}");
}

/// RFC 4106 with a 192-bit key (strongSwan's `aes192gcm16`): negotiated as
/// ENCR_AES_GCM_16 with Key Length 192, programmed as a 24-octet key and
/// its salt, and carried by the ESP engine.
#[test]
fn two_daemons_negotiate_aes_gcm_192_into_the_tables_and_carry_traffic() {
    let s = Setup::new("aes192");
    let esp192 = |y: String| y.replace("esp_proposals: [aes256gcm16]", "esp_proposals: [aes192gcm16]");
    let resp = start(&s.dir, "resp", &esp192(s.responder(30)));
    let init = start(&s.dir, "init", &esp192(s.initiator()));
    init.ok(Request::Initiate { conn: "home".into() });
    wait_for("a Child SA on both sides", || established_children(&init).len() == 1 && established_children(&resp).len() == 1);
    for r in [&init, &resp] {
        let slots = r.slots();
        assert_eq!(slots.len(), 2);
        for p in &slots {
            assert_eq!((p.transform, p.key_len), (sa_table::TransformId::AES_GCM_16, 24));
            assert_eq!(esp_params(p).suite, esp::Suite::AES192_GCM_16);
        }
    }
    let a_out = init.slots().into_iter().find(|p| p.direction == Direction::OUTBOUND).unwrap();
    let b_in = resp.slots().into_iter().find(|p| p.direction == Direction::INBOUND && p.spi == a_out.spi).unwrap();
    let (inner, wire) = seal_one(&a_out);
    assert_eq!(open_one(&b_in, wire), inner);
    let child = &init.ok(Request::ListSas)["ike_sas"][0]["child_sas"][0];
    assert!(child["encr"].as_str().unwrap_or("").ends_with("-192"), "{child}");
}

/// The ESP engine's parameters for a table slot, as the dataplane maps them.
fn esp_params(p: &SaParams) -> esp::SaParams {
    let suite = esp::Suite::from_transform(esp::TransformId(p.transform.0), Some(u16::from(p.key_len) * 8)).expect("suite");
    let mut keymat = p.key().to_vec();
    keymat.extend_from_slice(&p.salt);
    let mut e = esp::SaParams::new(p.spi, suite, &keymat).expect("keymat");
    e.mode = esp::Mode::Tunnel { src: p.outer_src_addr().unwrap(), dst: p.outer_dst_addr().unwrap() };
    e.replay_window = p.replay_window_pkts;
    e
}

/// An IPv4/UDP packet from the virtual IP to the protected network, and
/// its ESP form sealed with `out`.
fn seal_one(out: &SaParams) -> (Vec<u8>, Vec<u8>) {
    use esp_wire::{IpProtocol, Ipv4Packet, Ipv4Repr};
    let mut inner = vec![0u8; 20 + 37];
    Ipv4Repr {
        src_addr: "10.99.0.1".parse().unwrap(),
        dst_addr: "192.168.109.7".parse().unwrap(),
        protocol: IpProtocol::UDP,
        payload_len: 37,
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut inner[..]));
    let params = esp_params(out);
    let sa = esp::OutboundSa::new(&params).unwrap();
    let aead = esp::soft_aead(esp::Backend::FASTEST, &params).unwrap();
    let mut pkts = [esp::PktBuf::from_data(&inner, 128, 1024)];
    let mut v = [Err(esp::DropReason::NotEsp)];
    esp::seal_burst(&sa, &aead, &mut pkts, &mut v);
    v[0].expect("sealed");
    (inner, pkts[0].data().to_vec())
}

fn open_one(inb: &SaParams, wire: Vec<u8>) -> Vec<u8> {
    let params = esp_params(inb);
    let mut sa = esp::InboundSa::new(&params).unwrap();
    let aead = esp::soft_aead(esp::Backend::FASTEST, &params).unwrap();
    let mut pkts = [esp::PktBuf::from_data(&wire, 0, 0)];
    let mut v = [Err(esp::DropReason::NotEsp)];
    esp::open_burst(&mut sa, &aead, &mut pkts, &mut v);
    v[0].expect("opened");
    pkts[0].data().to_vec()
}
