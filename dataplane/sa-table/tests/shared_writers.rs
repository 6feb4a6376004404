//! Two writer processes share one table, as esprit-ike and the dataplane's
//! static SAs do: each churns its own SAs (its cookie tag) in short
//! transactions while a reader process verifies every copy it takes. Each
//! writer in turn is SIGKILLed at a random point and restarted, and once
//! while it is stopped halfway through a slot: the other one never stops,
//! never loses an SA, and repairs the dead one's transaction itself.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::roles::{
    reader_role, role, spawn_role, stop_file, writer_role, Kid, ReaderReport, TAG_MASK,
};
use common::{consistent, TablePath};
use sa_table::{TableConfig, Writer};

const TEST: &str = "two_writer_processes_share_the_table_through_kills_of_either";
const TAGS: [u64; 2] = [0x49 << 56, 0x53 << 56];

fn cfg() -> TableConfig {
    TableConfig {
        capacity: 8192,
        journal_len: 1024,
        instance_id: 3,
        ..TableConfig::default()
    }
}

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

/// The latest STATS line a writer printed (waiting for a fresh one).
fn fresh_stats(rx: &Receiver<String>) -> String {
    while rx.try_recv().is_ok() {}
    wait_for(rx, "STATS")
}

fn spawn_writer(path: &Path, tag: u64, stall: bool) -> (Kid, Receiver<String>) {
    let mut env = vec![("SA_TABLE_TAG", format!("{tag:x}"))];
    if stall {
        env.push(("SA_TABLE_STALL", "1".into()));
    }
    let mut k = spawn_role(TEST, "writer", path, &env);
    let rx = lines_of(&mut k);
    wait_for(&rx, "ATTACHED");
    (k, rx)
}

fn kill(child: &mut Kid) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn two_writer_processes_share_the_table_through_kills_of_either() {
    if let Some((role, path)) = role() {
        match role.as_str() {
            "reader" => reader_role(&path, 300_000, 0, 150),
            "writer" => writer_role(&path, &cfg()),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let t = TablePath::new(TEST);
    drop(Writer::create(t.path(), &cfg()).unwrap());
    let mut writers: Vec<(Kid, Receiver<String>)> = TAGS
        .iter()
        .map(|&tag| spawn_writer(t.path(), tag, false))
        .collect();
    for (_, rx) in &writers {
        wait_for(rx, "CHURNING");
    }
    let mut reader = spawn_role(TEST, "reader", t.path(), &[]);
    let rout = lines_of(&mut reader);

    let mut x: u64 = u64::from(std::process::id()) | 1;
    for round in 0..6usize {
        let victim = round % 2;
        let other = 1 - victim;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(20 + x % 100));
        kill(&mut writers[victim].0);
        // The other writer goes on committing while the victim is dead...
        let before = field(&fresh_stats(&writers[other].1), "ops");
        let after = field(&fresh_stats(&writers[other].1), "ops");
        assert!(
            after > before,
            "writer {other} stalled while {victim} was dead"
        );
        writers[victim] = spawn_writer(t.path(), TAGS[victim], false);
        wait_for(&writers[victim].1, "CHURNING");
        assert!(
            writers[other].0.try_wait().unwrap().is_none(),
            "writer {other} died"
        );
    }

    // A kill inside a transaction, certainly: the victim stops halfway through
    // a slot, lock held, and is killed there. The other writer's next
    // transaction finds the mark and repairs.
    let repairs_before = field(&fresh_stats(&writers[1].1), "repairs");
    kill(&mut writers[0].0);
    writers[0] = spawn_writer(t.path(), TAGS[0], true);
    wait_for(&writers[0].1, "STALLED");
    kill(&mut writers[0].0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = fresh_stats(&writers[1].1);
        if field(&s, "repairs") > repairs_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writer 1 never repaired the dead transaction: {s}"
        );
    }
    assert!(writers[1].0.try_wait().unwrap().is_none(), "writer 1 died");
    let last = fresh_stats(&writers[1].1);
    eprintln!("surviving writer: {last}");
    assert!(
        field(&last, "catchups") > 0 && field(&last, "entries") > 0,
        "{last}"
    );

    // Stop: the survivor is killed too, and a fresh writer finds every SA whole,
    // both writers' SAs among them.
    kill(&mut writers[1].0);
    std::fs::write(stop_file(t.path()), b"").unwrap();
    let status = reader.wait().unwrap();
    let _ = std::fs::remove_file(stop_file(t.path()));
    let mut result = None;
    while let Ok(l) = rout.recv_timeout(Duration::from_secs(10)) {
        if let Some(r) = ReaderReport::parse(&l) {
            result = Some(r);
            break;
        }
    }
    let result = result.expect("reader RESULT line");
    eprintln!("reader {result:?}");
    assert!(status.success(), "reader failed: {status}");
    assert_eq!(result.torn, 0, "reader saw a torn slot");
    let (w, report) = Writer::reattach(t.path()).unwrap();
    let live: Vec<_> = w.live().collect();
    assert_eq!(live.len(), report.live);
    assert!(live.iter().all(|(_, p)| consistent(p)));
    for tag in TAGS {
        let n = live
            .iter()
            .filter(|(_, p)| p.cookie & TAG_MASK == tag)
            .count();
        assert!(n >= 64, "writer {tag:#x} has only {n} SAs left");
    }
}
