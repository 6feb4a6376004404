//! esprit-ike's timers run on the monotonic clock: two daemons over
//! loopback whose wall clocks are stepped back and forth by hours (and a
//! day) every quarter second; the initiator's Child SA is still rekeyed at
//! its lifetime (4 s, up to 10% early), not at the first forward step and
//! not never, DPD (every second) neither declares the peer dead nor stops,
//! and the IKE SA stays up.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use esprit_controlplane::config::DaemonConfig;
use esprit_controlplane::control::{call, Request, Response};
use esprit_controlplane::daemon::{Clocks, Daemon};
use serde_json::Value;

struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
    table: PathBuf,
}

impl Running {
    fn ok(&self, r: Request) -> Value {
        let resp: Response = call(&self.socket, &r).expect("control socket answers");
        assert!(resp.ok, "{r:?} failed: {:?}", resp.error);
        resp.data.unwrap_or_default()
    }

    fn counter(&self, key: &str) -> i64 {
        self.ok(Request::Stats)["counters"][key].as_i64().unwrap_or(0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.table);
    }
}

/// A daemon whose wall clock is the system's plus `offset` seconds.
fn start(dir: &Path, name: &str, yaml: &str, offset: Arc<AtomicI64>) -> Running {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let cfg = DaemonConfig::load(&path).expect("config loads");
    let (socket, table) = (cfg.control_socket.clone(), cfg.sa_table_path.clone());
    let wall = move || {
        let o = offset.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if o >= 0 {
            now + Duration::from_secs(o.unsigned_abs())
        } else {
            now - Duration::from_secs(o.unsigned_abs())
        }
    };
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let (mut d, _m) = Daemon::start_with_clocks(cfg, Some(path), Clocks::with_wall(wall)).expect("daemon starts");
        tx.send(d.stop_flag()).unwrap();
        d.run();
    });
    let stop = rx.recv_timeout(Duration::from_secs(10)).expect("daemon reports its start");
    Running { stop, thread: Some(thread), socket, table }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn yaml(dir: &Path, name: &str, ip: &str, port: u16, conn: &str) -> String {
    format!(
        r#"
ike:
  listen: [{ip}]
  port: {port}
  natt_port: {natt}
  control_socket: {dir}/{name}.sock
  metrics_listen: null
  sa_table: {{ path: /dev/shm/esprit-clocks-{pid}-{name}, capacity: 64 }}
  connections:
{conn}"#,
        natt = port + 1,
        dir = dir.display(),
        pid = std::process::id(),
    )
}

#[test]
fn a_stepped_wall_clock_moves_no_rekey_dpd_or_lifetime() {
    let dir = std::env::temp_dir().join(format!("esprit-clocks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = 26000 + (std::process::id() % 1000) as u16 * 2;
    let offset = Arc::new(AtomicI64::new(0));
    let resp = start(
        &dir,
        "resp",
        &yaml(
            &dir,
            "resp",
            "127.0.0.2",
            port,
            r#"    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: { psk: "interop-psk-0123456789" }
      remote_auth: { psk: "interop-psk-0123456789" }
      dpd_delay_secs: 1
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.109.0/24]
        remote_ts: [10.0.0.0/8]
"#,
        ),
        offset.clone(),
    );
    let init = start(
        &dir,
        "init",
        &yaml(
            &dir,
            "init",
            "127.0.0.1",
            port,
            r#"    home:
      remote: 127.0.0.2
      local_id: client@esprit
      remote_id: gw.esprit
      local_auth: { psk: "interop-psk-0123456789" }
      remote_auth: { psk: "interop-psk-0123456789" }
      dpd_delay_secs: 1
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [10.0.0.0/8]
        remote_ts: [192.168.109.0/24]
        rekey_secs: 4
        life_secs: 8
"#,
        ),
        offset.clone(),
    );
    init.ok(Request::Initiate { conn: "home".into() });
    let established = |r: &Running| r.ok(Request::ListSas)["ike_sas"].as_array().is_some_and(|a| a.iter().any(|i| i["state"] == "Established"));
    wait_for("the IKE SA", Duration::from_secs(10), || established(&init) && established(&resp));
    let up = Instant::now();
    // Step both wall clocks every 250 ms: forward and back by hours, a day.
    let stepping = Arc::new(AtomicBool::new(true));
    let stepper = {
        let (offset, stepping) = (offset.clone(), stepping.clone());
        std::thread::spawn(move || {
            const H: i64 = 3600;
            for o in [3 * H, -3 * H, 24 * H, -24 * H, 5 * H, -7 * H].iter().cycle() {
                if !stepping.load(Ordering::Relaxed) {
                    break;
                }
                offset.store(*o, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let rekeyed = || init.counter("esprit_ike_rekeys_total{kind=child}") >= 1;
    wait_for("the Child SA rekey", Duration::from_secs(10), rekeyed);
    let at = up.elapsed();
    // rekey_secs 4 minus at most 10% (the jitter), plus the loop's tick and
    // a loaded machine's scheduling.
    assert!(at >= Duration::from_millis(3500), "the Child SA was rekeyed early, {at:?} after it came up");
    assert!(at <= Duration::from_millis(6500), "the Child SA was rekeyed late, {at:?} after it came up");
    // DPD kept running (every second of silence) and never found the peer dead.
    std::thread::sleep(Duration::from_secs(3));
    stepping.store(false, Ordering::Relaxed);
    stepper.join().unwrap();
    assert!(established(&init) && established(&resp), "the IKE SA went down while the wall clock was stepped");
    for r in [&init, &resp] {
        assert_eq!(r.counter("esprit_ike_handshake_failures_total{reason=timeout}"), 0);
    }
    // Hard lifetime 8 s: the rekeys replaced each Child SA before it, so
    // one is installed on each side (two during a make-before-break), not
    // zero as after a hard expiry brought forward.
    let children = |r: &Running| r.ok(Request::Stats)["child_sas"].as_i64().unwrap_or(-1);
    for (side, n) in [("initiator", children(&init)), ("responder", children(&resp))] {
        assert!((1..=2).contains(&n), "{side}: {n} Child SAs installed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
