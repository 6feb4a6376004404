//! Child-process roles for the multi-process tests. A test re-executes its own
//! binary (`std::env::current_exe()`) with `SA_TABLE_ROLE` set; the test function
//! sees the variable, plays the role and exits instead of running the parent side.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use sa_table::{Change, ReadError, Reader, SaId, TableConfig, WriteError, Writer};

use super::{consistent, inbound, outbound};

pub const ROLE_VAR: &str = "SA_TABLE_ROLE";
/// The bits of a cookie that name the writer that owns it.
pub const TAG_MASK: u64 = 0xff << 56;
pub const PATH_VAR: &str = "SA_TABLE_PATH";

/// Start this test binary again as `role` on the table at `path`, running only
/// `test_name` (which dispatches on the role).
/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing
/// parent never leaves a churning writer behind.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Kid {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Kid {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

pub fn spawn_role(test_name: &str, role: &str, path: &Path, extra: &[(&str, String)]) -> Kid {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .env(PATH_VAR, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Kid(cmd.spawn().expect("spawn child role"))
}

pub fn role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE_VAR).ok()?;
    let path = PathBuf::from(std::env::var(PATH_VAR).expect("role without a path"));
    Some((role, path))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The harness has already printed "test <name> ... " without a newline.
    let _ = writeln!(out, "\n{line}");
    let _ = out.flush();
}

/// What a reader child reports on its last line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReaderReport {
    pub reads: u64,
    pub torn: u64,
    pub gone: u64,
    pub busy: u64,
    pub rebuilds: u64,
    pub upserts: u64,
    pub lookups_hit: u64,
    /// Journal entries applied incrementally (not by rebuild).
    pub entries: u64,
}

impl ReaderReport {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("RESULT ")?;
        let mut r = Self::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "reads" => r.reads = v,
                "torn" => r.torn = v,
                "gone" => r.gone = v,
                "busy" => r.busy = v,
                "rebuilds" => r.rebuilds = v,
                "upserts" => r.upserts = v,
                "hits" => r.lookups_hit = v,
                "entries" => r.entries = v,
                _ => return None,
            }
        }
        Some(r)
    }
}

/// Reader role: follow the table, look SAs up and copy them, check every copy.
///
/// Runs until it has done `min_reads` verified copies and `min_rebuilds` rebuilds
/// and the file `<path>.stop` exists (or `deadline_secs` pass). It sleeps now and
/// then on purpose so the writer laps its journal. Prints `PROGRESS <reads>` lines
/// and a final `RESULT …` line.
pub fn reader_role(path: &Path, min_reads: u64, min_rebuilds: u64, deadline_secs: u64) {
    let stop = stop_file(path);
    let mut r = Reader::attach(path).expect("reader attach");
    let mut rep = ReaderReport::default();
    let mut spis: Vec<u32> = Vec::with_capacity(4096);
    let mut prefixes: Vec<u32> = Vec::with_capacity(4096);
    let mut x: u64 = u64::from(std::process::id()) | 1;
    let start = Instant::now();
    let mut next_progress = 100_000;
    let mut iter: u64 = 0;
    loop {
        iter += 1;
        let poll = r.poll_changes(|c| {
            if let Change::Upsert { params, .. } = c {
                // The change callback hands out a slot copy too: check it.
                rep.upserts += 1;
                if !consistent(params) {
                    rep.torn += 1;
                }
                if params.direction == sa_table::Direction::INBOUND {
                    if spis.len() < 4096 {
                        spis.push(params.spi);
                    } else {
                        spis[(params.spi as usize) % 4096] = params.spi;
                    }
                } else if let Some(p) = params.served().first() {
                    let a = u32::from_be_bytes([p.addr[0], p.addr[1], p.addr[2], p.addr[3]]);
                    if prefixes.len() < 4096 {
                        prefixes.push(a);
                    } else {
                        prefixes[(a as usize) % 4096] = a;
                    }
                }
            }
        });
        if poll.rebuilt {
            rep.rebuilds += 1;
        }
        for _ in 0..256 {
            if spis.is_empty() {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id: Option<SaId> = if x & 1 == 0 || prefixes.is_empty() {
                let spi = spis[(x >> 8) as usize % spis.len()];
                r.lookup_inbound_spi(spi)
            } else {
                let a = prefixes[(x >> 8) as usize % prefixes.len()];
                r.lookup_outbound_v4(std::net::Ipv4Addr::from(a | 7))
            };
            let Some(id) = id else { continue };
            rep.lookups_hit += 1;
            check_copy(&r, id, &mut rep);
        }
        // Now and then copy every SA the indexes know, so a slot left torn by a
        // dead writer is certainly met (and must come back busy, not garbled).
        if iter & 63 == 0 {
            let ids: Vec<SaId> = r.known_ids().collect();
            for id in ids {
                check_copy(&r, id, &mut rep);
            }
        }
        if rep.reads >= next_progress {
            say(&format!("PROGRESS {}", rep.reads));
            next_progress += 100_000;
        }
        // Fall behind on purpose now and then: the writer laps the journal.
        if iter & 511 == 0 && rep.rebuilds < min_rebuilds + 2 {
            std::thread::sleep(Duration::from_millis(30));
        }
        let done = rep.reads >= min_reads && rep.rebuilds >= min_rebuilds && stop.exists();
        if done || start.elapsed() > Duration::from_secs(deadline_secs) {
            break;
        }
    }
    rep.entries = r.stats().entries;
    say(&format!(
        "RESULT reads={} torn={} gone={} busy={} rebuilds={} upserts={} hits={} entries={}",
        rep.reads,
        rep.torn,
        rep.gone,
        rep.busy,
        rep.rebuilds,
        rep.upserts,
        rep.lookups_hit,
        rep.entries
    ));
}

fn check_copy(r: &Reader, id: SaId, rep: &mut ReaderReport) {
    match r.read(id) {
        Ok(p) => {
            rep.reads += 1;
            if !consistent(&p) {
                rep.torn += 1;
            }
        }
        Err(ReadError::Gone) => rep.gone += 1,
        Err(ReadError::Busy) => rep.busy += 1,
        Err(ReadError::Corrupt) => rep.torn += 1,
    }
}

pub fn stop_file(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".stop");
    PathBuf::from(s)
}

/// Writer churn: keeps about `target_live` SA pairs, and on every step installs a
/// pair, rekeys one (make-before-break, then retires the old inbound) or updates
/// or deletes one. Every SA's key is derived from (SPI, cookie), so readers can
/// verify any copy. `spi_base` keeps restarted writers' SPIs apart.
pub struct Churn {
    pairs: Vec<(SaId, SaId, u32)>,
    next_spi: u32,
    cookie: u64,
    /// High bits every cookie carries (a writer's tag, when several share the table).
    tag: u64,
    x: u64,
    target_live: usize,
    pub ops: u64,
    pub full: u64,
    /// Steps refused because another writer held the table too long.
    pub busy: u64,
}

impl Churn {
    pub fn new(spi_base: u32, target_live: usize) -> Self {
        Self::tagged(spi_base, target_live, 0)
    }

    /// A churn whose cookies all carry `tag` (in bits the counter never reaches).
    pub fn tagged(spi_base: u32, target_live: usize, tag: u64) -> Self {
        Self {
            pairs: Vec::new(),
            next_spi: spi_base,
            cookie: 1,
            tag,
            x: u64::from(spi_base) | 1,
            target_live,
            ops: 0,
            full: 0,
            busy: 0,
        }
    }

    /// Adopt the SAs a reattached writer found (reconciliation by enumeration).
    pub fn adopt(&mut self, w: &Writer) {
        let tag = self.tag;
        let live: Vec<_> = w
            .live()
            .filter(|(_, p)| tag == 0 || p.cookie & TAG_MASK == tag)
            .collect();
        let inbound_by_spi: std::collections::HashMap<u32, SaId> = live
            .iter()
            .filter(|(_, p)| p.direction == sa_table::Direction::INBOUND)
            .map(|(id, p)| (p.spi, *id))
            .collect();
        for (id, p) in &live {
            // Pairs are (inbound SPI n, outbound SPI n + 1).
            if p.direction == sa_table::Direction::OUTBOUND {
                if let Some(iid) = inbound_by_spi.get(&p.spi.wrapping_sub(1)) {
                    self.pairs.push((*iid, *id, p.spi));
                }
            }
        }
    }

    fn pair(&mut self) -> (sa_table::SaParams, sa_table::SaParams) {
        let spi = self.next_spi;
        self.next_spi = self.next_spi.wrapping_add(2);
        self.cookie += 1;
        let prefix = format!("10.{}.{}.0/24", (spi >> 9) & 0xff, (spi >> 1) & 0xff);
        (
            inbound(spi, self.tag | self.cookie),
            outbound(spi + 1, self.tag | self.cookie, &prefix),
        )
    }

    pub fn step(&mut self, w: &mut Writer) {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        let x = self.x;
        let r = match x % 8 {
            _ if self.pairs.len() < self.target_live / 2 => self.install(w),
            0..=2 => self.rekey(w, x),
            3 | 4 => self.update(w, x),
            5..=7 if self.pairs.len() > self.target_live => self.delete(w, x),
            _ => self.install(w),
        };
        match r {
            Ok(()) => self.ops += 1,
            Err(WriteError::TableFull { .. }) => {
                // Readers still hold freed slots (one sleeps on purpose): wait.
                self.full += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            // Another writer held the lock past our wait (a loaded machine, or
            // a writer stopped mid-transaction before its kill): try again.
            Err(WriteError::Busy { .. }) => self.busy += 1,
            Err(e) => panic!("writer churn: {e}"),
        }
    }

    fn install(&mut self, w: &mut Writer) -> Result<(), WriteError> {
        let (i, o) = self.pair();
        let iid = w.install(&i)?;
        match w.install(&o) {
            Ok(oid) => {
                self.pairs.push((iid, oid, o.spi));
                Ok(())
            }
            Err(e) => {
                w.delete(iid)?;
                Err(e)
            }
        }
    }

    fn rekey(&mut self, w: &mut Writer, x: u64) -> Result<(), WriteError> {
        if self.pairs.is_empty() {
            return self.install(w);
        }
        let k = (x >> 8) as usize % self.pairs.len();
        let (old_in, old_out, _) = self.pairs[k];
        let (i, o) = self.pair();
        let new = w.rekey(old_out, &i, &o)?;
        // The peer switched: retire the old inbound SA.
        w.delete(old_in)?;
        self.pairs[k] = (new.inbound, new.outbound, o.spi);
        Ok(())
    }

    fn update(&mut self, w: &mut Writer, x: u64) -> Result<(), WriteError> {
        if self.pairs.is_empty() {
            return self.install(w);
        }
        let k = (x >> 8) as usize % self.pairs.len();
        let (iid, _, _) = self.pairs[k];
        let mut p = w.get(iid)?;
        // A new cookie re-derives the key: a copy mixing old and new bytes fails.
        self.cookie += 1;
        let fresh = inbound(p.spi, self.tag | self.cookie);
        p.cookie = fresh.cookie;
        p.key = fresh.key;
        p.salt = fresh.salt;
        p.sec_label = fresh.sec_label;
        p.lifetime.soft_bytes = x;
        w.update(iid, &p)
    }

    fn delete(&mut self, w: &mut Writer, x: u64) -> Result<(), WriteError> {
        let k = (x >> 8) as usize % self.pairs.len();
        let (iid, oid, _) = self.pairs.swap_remove(k);
        w.delete(oid)?;
        w.delete(iid)
    }
}

/// Writer role for crash tests: open (create or reattach + repair), report, churn
/// until killed. With `SA_TABLE_STALL=1`, after some churn it leaves a slot
/// half-written, says `STALLED` and waits to be killed.
/// With `SA_TABLE_TAG=<hex>` the writer shares the table with others: it touches
/// only SAs whose cookie carries the tag, and says `STATS ...` now and then.
pub fn writer_role(path: &Path, cfg: &TableConfig) {
    let tag = std::env::var("SA_TABLE_TAG")
        .ok()
        .map(|t| u64::from_str_radix(&t, 16).expect("SA_TABLE_TAG is hex"))
        .unwrap_or(0);
    let (mut w, report) = Writer::open(path, cfg).expect("writer open");
    if tag != 0 {
        w.restrict_to_cookies(TAG_MASK, tag);
    }
    say(&format!(
        "ATTACHED epoch={} torn={} republished={} live={}",
        report.writer_epoch,
        report.torn_slots.len(),
        report.republished.len(),
        report.live
    ));
    // Writers sharing the table keep their SPIs apart by tag.
    let first = if tag == 0 {
        0x1000_0000u32
    } else {
        0x1000_0000 + ((tag >> 56) as u32 & 0x3) * 0x1000_0000
    };
    let base = first.wrapping_add(((report.writer_epoch as u32) & 0xff) << 20);
    let mut churn = Churn::tagged(base, 128, tag);
    churn.adopt(&w);
    let stall = std::env::var("SA_TABLE_STALL").is_ok();
    let mut n: u64 = 0;
    loop {
        churn.step(&mut w);
        n += 1;
        if n == 20_000 {
            say("CHURNING");
        }
        if tag != 0 && n.is_multiple_of(5_000) {
            let s = w.stats();
            say(&format!(
                "STATS ops={} txns={} catchups={} entries={} rescans={} repairs={} busy={}",
                churn.ops,
                s.transactions,
                s.catch_ups,
                s.caught_up_entries,
                s.rescans,
                s.dead_writer_repairs,
                churn.busy
            ));
        }
        if stall && n == 30_000 {
            // Let readers catch up first, so the slot about to be torn is one they
            // have indexed and will certainly try to copy.
            std::thread::sleep(Duration::from_millis(300));
            // The oldest SA: every reader has indexed it by now.
            let first = w
                .live()
                .filter(|(_, p)| tag == 0 || p.cookie & TAG_MASK == tag)
                .map(|(id, _)| id)
                .min_by_key(|id| id.install_gen());
            if let Some(id) = first {
                w.abandon_write_midway(id, 0x5a5a_5a5a_5a5a_5a5a);
                say(&format!("STALLED slot={}", id.slot()));
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}
