//! A writer process churns SAs (install, rekey, update, delete) while a separate
//! reader process looks them up and verifies every slot copy it takes: zero torn
//! reads over at least a million copies, with the journal overflowing on purpose.

mod common;

use std::io::{BufRead, BufReader};

use common::roles::{reader_role, role, spawn_role, stop_file, Churn, ReaderReport};
use common::TablePath;
use sa_table::{TableConfig, Writer};

const TEST: &str = "a_reader_process_never_sees_a_torn_slot_while_a_writer_process_churns";

#[test]
fn a_reader_process_never_sees_a_torn_slot_while_a_writer_process_churns() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "reader");
        reader_role(&path, 1_000_000, 1, 120);
        return;
    }
    let t = TablePath::new(TEST);
    // A small journal so the reader's naps lap it; capacity leaves room for slots
    // quarantined while the reader sleeps.
    let cfg = TableConfig {
        capacity: 8192,
        journal_len: 1024,
        instance_id: 1,
        ..TableConfig::default()
    };
    let mut w = Writer::create(t.path(), &cfg).unwrap();
    let mut churn = Churn::new(0x2000_0000, 256);
    for _ in 0..512 {
        churn.step(&mut w);
    }
    let mut child = spawn_role(TEST, "reader", t.path(), &[]);
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let stop = stop_file(t.path());
    let start = std::time::Instant::now();
    let mut stop_set = false;
    // Churn until the reader is done; signal it once it could be (it also needs
    // its own minimum of reads and rebuilds before it stops).
    while child.try_wait().unwrap().is_none() {
        for _ in 0..64 {
            churn.step(&mut w);
        }
        if !stop_set && churn.ops > 50_000 {
            std::fs::write(&stop, b"").unwrap();
            stop_set = true;
        }
        assert!(
            start.elapsed().as_secs() < 180,
            "reader child did not finish"
        );
    }
    let status = child.wait().unwrap();
    let _ = std::fs::remove_file(&stop);
    let lines = lines.join().unwrap();
    let report = lines
        .iter()
        .find_map(|l| ReaderReport::parse(l))
        .unwrap_or_else(|| panic!("no RESULT from reader: {lines:?}"));
    eprintln!(
        "writer ops={} table-full waits={}; reader {report:?}",
        churn.ops, churn.full
    );
    assert!(status.success(), "reader process failed: {status}");
    assert_eq!(report.torn, 0, "torn reads");
    assert!(
        report.reads >= 1_000_000,
        "only {} verified copies",
        report.reads
    );
    assert!(
        report.rebuilds >= 1,
        "the journal never overflowed under the reader"
    );
    assert!(
        report.entries > 0,
        "the reader never followed the journal incrementally"
    );
    assert!(
        churn.ops >= 50_000,
        "writer churned only {} operations",
        churn.ops
    );
    assert!(
        report.gone > 0,
        "no lookup raced a delete: the test exercised nothing"
    );
}
