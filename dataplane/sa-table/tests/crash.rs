//! SIGKILL the writer process in the middle of its writes, again and again: a
//! reader process keeps working and never sees a half-written slot, and each
//! restarted writer reattaches, repairs and carries on.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::roles::{reader_role, role, spawn_role, stop_file, writer_role, Kid, ReaderReport};
use common::{consistent, TablePath};
use sa_table::{Reader, TableConfig, Writer};

const TEST: &str =
    "killing_the_writer_mid_write_leaves_readers_working_and_a_restarted_writer_repairs";

fn cfg() -> TableConfig {
    TableConfig {
        capacity: 8192,
        journal_len: 1024,
        instance_id: 2,
        ..TableConfig::default()
    }
}

/// Forward a child's stdout lines into a channel.
fn lines_of(child: &mut Kid) -> Receiver<String> {
    let (tx, rx) = channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(l) if l.contains(prefix) => panic!("{prefix} not at the start of a line: {l}"),
            Ok(_) => {}
            Err(e) => panic!("child never said {prefix}: {e}"),
        }
    }
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// Latest PROGRESS count of the reader, draining what it said so far.
fn progress(rx: &Receiver<String>, last: &mut u64, result: &mut Option<ReaderReport>) {
    while let Ok(l) = rx.try_recv() {
        if let Some(n) = l.strip_prefix("PROGRESS ") {
            *last = n.parse().unwrap();
        } else if let Some(r) = ReaderReport::parse(&l) {
            *result = Some(r);
        }
    }
}

fn kill(child: &mut Kid) {
    // Child::kill sends SIGKILL on Unix: no destructor, no flush, no unlock by us.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn killing_the_writer_mid_write_leaves_readers_working_and_a_restarted_writer_repairs() {
    if let Some((role, path)) = role() {
        match role.as_str() {
            "reader" => reader_role(&path, 200_000, 0, 150),
            "writer" => writer_role(&path, &cfg()),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let t = TablePath::new(TEST);
    let mut writer = spawn_role(TEST, "writer", t.path(), &[]);
    let mut wout = lines_of(&mut writer);
    assert_eq!(field(&wait_for(&wout, "ATTACHED"), "epoch"), 1);
    wait_for(&wout, "CHURNING");
    let mut reader = spawn_role(TEST, "reader", t.path(), &[]);
    let rout = lines_of(&mut reader);
    let (mut reads, mut result) = (0, None);

    // Random-time kills: each lands somewhere in a tight install/rekey/delete loop.
    let mut x: u64 = u64::from(std::process::id());
    let mut random_torn = 0;
    for round in 2..=5u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(20 + x % 120));
        kill(&mut writer);
        writer = spawn_role(TEST, "writer", t.path(), &[]);
        wout = lines_of(&mut writer);
        let attached = wait_for(&wout, "ATTACHED");
        assert_eq!(field(&attached, "epoch"), round, "{attached}");
        random_torn += field(&attached, "torn");
        wait_for(&wout, "CHURNING");
    }

    // A kill that certainly lands mid-write: the writer leaves a slot half-written
    // and says so before we kill it.
    kill(&mut writer);
    writer = spawn_role(TEST, "writer", t.path(), &[("SA_TABLE_STALL", "1".into())]);
    wout = lines_of(&mut writer);
    wait_for(&wout, "ATTACHED");
    let stalled = wait_for(&wout, "STALLED");
    let torn_slot = field(&stalled, "slot") as u32;
    kill(&mut writer);

    // No writer, one torn slot: the reader process keeps making verified copies.
    progress(&rout, &mut reads, &mut result);
    let before = reads;
    let deadline = Instant::now() + Duration::from_secs(60);
    while reads < before + 200_000 {
        assert!(
            Instant::now() < deadline,
            "reader stalled without a writer ({reads} reads)"
        );
        assert!(result.is_none(), "reader exited early: {result:?}");
        std::thread::sleep(Duration::from_millis(20));
        progress(&rout, &mut reads, &mut result);
    }
    // A reader attaching now skips the torn slot and indexes only whole records.
    let fresh = Reader::attach(t.path()).unwrap();
    assert!(
        fresh.stats().busy_slots >= 1,
        "the torn slot was not seen as busy"
    );
    assert!(fresh.known_ids().all(|id| id.slot() != torn_slot));
    for id in fresh.known_ids() {
        match fresh.read(id) {
            Ok(p) => assert!(consistent(&p), "slot {} inconsistent", id.slot()),
            Err(e) => panic!("slot {}: {e}", id.slot()),
        }
    }
    drop(fresh);

    // The next writer repairs the torn slot and finds every live SA whole.
    let (mut w, report) = Writer::reattach(t.path()).unwrap();
    assert!(report.torn_slots.contains(&torn_slot), "{report:?}");
    assert_eq!(report.writer_epoch, 7);
    let live: Vec<_> = w.live().collect();
    assert_eq!(live.len(), report.live);
    assert!(
        live.len() >= 128,
        "SAs lost across restarts: {}",
        live.len()
    );
    assert!(live.iter().all(|(_, p)| consistent(p)));
    // And the table works on: delete everything that is live.
    for (id, _) in live {
        w.delete(id).unwrap();
    }
    assert_eq!(w.live_count(), 0);

    std::fs::write(stop_file(t.path()), b"").unwrap();
    let status = reader.wait().unwrap();
    let _ = std::fs::remove_file(stop_file(t.path()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while result.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        progress(&rout, &mut reads, &mut result);
    }
    let result = result.expect("reader RESULT line");
    eprintln!("reader {result:?}; torn slots repaired after random kills: {random_torn}");
    assert!(status.success(), "reader failed: {status}");
    assert_eq!(result.torn, 0, "reader saw a torn slot");
    assert!(result.reads >= before + 200_000);
    assert!(
        result.busy > 0,
        "the reader never met the torn slot: the test exercised nothing"
    );
}
