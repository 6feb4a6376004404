//! Exhaustive interleaving checks of the table's two protocols, written as small
//! state machines that mirror the code step for step (one shared-memory access per
//! step) and explored over every interleaving, writer crashes included.
//!
//! * Slot seqlock (`shm.rs` `write_slot` / `read_slot`, `writer.rs` repair): a reader
//!   never accepts a copy mixing two versions, whatever the interleaving, and whether
//!   or not the writer dies at any step and a new writer repairs the slot.
//! * Journal (`shm.rs` `journal_write` / `journal_read`, `reader.rs` `poll_changes` /
//!   `rebuild`): a reader that follows, falls behind, gets lapped and rebuilds ends
//!   with exactly the slots' contents once it polls after the writer stops.
//! * Writers taking turns (`writer.rs` `enter` / `catch_up` / `rescan` / `leave`):
//!   two writers (esprit-ike and the dataplane's static SAs) each install and
//!   delete their own SAs in transactions under the table lock, catching up with
//!   the other's changes through the journal (lapped: by a rescan) and repairing
//!   after a writer that died inside its transaction. Neither ever writes over a
//!   slot that is not free, generations go up by one per publish, and after any
//!   interleaving (with a crash anywhere inside a transaction) the next
//!   transaction leaves every writer's view equal to the slots.
//!
//! The model is sequentially consistent; the orderings the real code needs on top
//! (release/acquire fences around the seqlock, release on the journal's generation
//! word and on publish) are argued where they occur. Each check is also run against
//! a deliberately broken variant of the protocol and must find the bug there, so the
//! checker is known to be able to fail.

use std::collections::HashSet;
use std::hash::Hash;

/// Depth-first search over all reachable states; returns the first violation.
fn explore<S: Clone + Eq + Hash>(
    init: S,
    succ: impl Fn(&S) -> Vec<S>,
    check: impl Fn(&S) -> Result<(), String>,
) -> Result<usize, String> {
    let mut seen = HashSet::new();
    let mut stack = vec![init];
    while let Some(s) = stack.pop() {
        if !seen.insert(s.clone()) {
            continue;
        }
        check(&s)?;
        stack.extend(succ(&s));
    }
    Ok(seen.len())
}

// ---------------------------------------------------------------------------
// Slot seqlock
// ---------------------------------------------------------------------------

const WORDS: usize = 3;
const VERSIONS: u8 = 2;
const READ_ATTEMPTS: u8 = 3;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum SlotBug {
    None,
    /// The reader does not re-check the sequence word after copying.
    NoRecheck,
    /// The writer stores the data before making the sequence word odd.
    DataBeforeOdd,
    /// The repairing writer trusts an odd slot and only bumps it even.
    RepairWithoutRewrite,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct SlotState {
    seq: u8,
    words: [u8; WORDS],
    /// Writer: index of the next step over all versions; `u8::MAX` = done.
    wpc: u8,
    /// The sequence value the writer captured for the version in progress.
    ws: u8,
    crashed: bool,
    /// Repairing writer (runs only after a crash): next step.
    rpc: u8,
    rs: u8,
    /// Reader: step within an attempt, registers, attempts made.
    pc: u8,
    s1: u8,
    copy: [u8; WORDS],
    attempts: u8,
    accepted: Option<[u8; WORDS]>,
}

/// Writer steps per version: odd, each word, even.
const STEPS_PER_VERSION: u8 = WORDS as u8 + 2;

fn slot_succ(s: &SlotState, bug: SlotBug, crashes: bool) -> Vec<SlotState> {
    let mut out = Vec::new();
    // The writer, one access per step (write_slot).
    if !s.crashed && s.wpc != u8::MAX {
        let version = s.wpc / STEPS_PER_VERSION + 1;
        let step = s.wpc % STEPS_PER_VERSION;
        let mut n = s.clone();
        let data_step = |n: &mut SlotState, i: usize| n.words[i] = version;
        match (bug, step) {
            (SlotBug::DataBeforeOdd, 0..=2) => data_step(&mut n, step as usize),
            (SlotBug::DataBeforeOdd, 3) => {
                n.ws = n.seq & !1;
                n.seq = n.ws + 1;
            }
            (_, 0) => {
                // s = seq & !1; seq = s + 1 (the writer is the only one storing seq).
                n.ws = n.seq & !1;
                n.seq = n.ws + 1;
            }
            (_, st) if st <= WORDS as u8 => data_step(&mut n, st as usize - 1),
            _ => n.seq = n.ws + 2,
        }
        n.wpc = if s.wpc + 1 == VERSIONS * STEPS_PER_VERSION {
            u8::MAX
        } else {
            s.wpc + 1
        };
        out.push(n);
        // ...or it dies before taking this step (SIGKILL lands anywhere).
        if crashes {
            let mut c = s.clone();
            c.crashed = true;
            out.push(c);
        }
    }
    // The next writer repairs a torn slot (reattach: zeroed record via write_slot).
    if s.crashed && s.rpc != u8::MAX {
        let mut n = s.clone();
        match s.rpc {
            0 if s.seq & 1 == 0 => n.rpc = u8::MAX,
            0 if bug == SlotBug::RepairWithoutRewrite => {
                n.seq += 1;
                n.rpc = u8::MAX;
            }
            0 => {
                n.rs = n.seq & !1;
                n.seq = n.rs + 1;
                n.rpc = 1;
            }
            st if st <= WORDS as u8 => {
                n.words[st as usize - 1] = 0;
                n.rpc += 1;
            }
            _ => {
                n.seq = n.rs + 2;
                n.rpc = u8::MAX;
            }
        }
        out.push(n);
    }
    // The reader (read_slot): load seq, copy words, re-check seq.
    if s.attempts < READ_ATTEMPTS && s.accepted.is_none() {
        let mut n = s.clone();
        match s.pc {
            0 => {
                n.s1 = s.seq;
                n.pc = if s.seq & 1 == 1 { 0 } else { 1 };
                if s.seq & 1 == 1 {
                    n.attempts += 1;
                }
            }
            p if p <= WORDS as u8 => {
                n.copy[p as usize - 1] = s.words[p as usize - 1];
                n.pc += 1;
                if bug == SlotBug::NoRecheck && p == WORDS as u8 {
                    n.accepted = Some(n.copy);
                }
            }
            _ => {
                if s.seq == s.s1 {
                    n.accepted = Some(s.copy);
                }
                n.attempts += 1;
                n.pc = 0;
            }
        }
        out.push(n);
    }
    out
}

fn slot_check(s: &SlotState) -> Result<(), String> {
    if let Some(c) = s.accepted {
        if c.iter().any(|&w| w != c[0]) {
            return Err(format!("reader accepted a torn copy {c:?} in {s:?}"));
        }
    }
    // Once the repair finished, the slot is stable and whole again.
    if s.crashed && s.rpc == u8::MAX && (s.seq & 1 == 1 || s.words.iter().any(|&w| w != s.words[0]))
    {
        return Err(format!("repair left the slot torn: {s:?}"));
    }
    Ok(())
}

fn run_slot_model(bug: SlotBug, crashes: bool) -> Result<usize, String> {
    let init = SlotState {
        seq: 0,
        words: [0; WORDS],
        wpc: 0,
        ws: 0,
        crashed: false,
        rpc: 0,
        rs: 0,
        pc: 0,
        s1: 0,
        copy: [0; WORDS],
        attempts: 0,
        accepted: None,
    };
    explore(init, |s| slot_succ(s, bug, crashes), slot_check)
}

#[test]
fn seqlock_reader_never_accepts_a_torn_copy_in_any_interleaving_with_crashes() {
    let states = run_slot_model(SlotBug::None, true).unwrap();
    eprintln!("seqlock model: {states} states");
    assert!(states > 1000, "explored only {states} states");
}

#[test]
fn seqlock_model_finds_the_torn_copy_of_a_reader_that_skips_the_recheck() {
    assert!(run_slot_model(SlotBug::NoRecheck, false)
        .unwrap_err()
        .contains("torn copy"));
}

#[test]
fn seqlock_model_finds_the_torn_copy_of_a_writer_that_stores_data_before_going_odd() {
    assert!(run_slot_model(SlotBug::DataBeforeOdd, false)
        .unwrap_err()
        .contains("torn copy"));
}

#[test]
fn seqlock_model_finds_a_repair_that_only_flips_the_sequence_word() {
    assert!(run_slot_model(SlotBug::RepairWithoutRewrite, true)
        .unwrap_err()
        .contains("repair left the slot torn"));
}

// ---------------------------------------------------------------------------
// Journal
// ---------------------------------------------------------------------------

const SLOTS: usize = 3;
const RING: u8 = 2;
/// The writer's changes: (slot, new content); content 0 = free.
const CHANGES: [(u8, u8); 6] = [(0, 1), (1, 2), (2, 3), (0, 0), (1, 4), (0, 5)];
const POLLS: u8 = 3;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum JournalBug {
    None,
    /// Rebuild records the generation *after* scanning the slots.
    RebuildReadsGenerationLate,
    /// The reader trusts an entry's slot word without its generation check.
    NoEntryCheck,
    /// The writer publishes (and journals) a change before writing the slot.
    SlotAfterPublish,
    /// A restarted writer does not republish what its predecessor wrote unpublished.
    NoRepublish,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum RPc {
    Idle,
    /// Loaded the published generation, deciding.
    Start,
    /// Following: about to load entry `g` generation word.
    EntryGen,
    /// Loaded it; about to load the entry's check word.
    EntryCheck,
    /// About to copy the slot named by the entry.
    Apply(u8),
    /// Rebuilding: next slot to copy.
    Scan(u8),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct JState {
    /// Slot records: (generation stamped, content).
    slots: [(u8, u8); SLOTS],
    /// Ring entries: (gen word, check word = (gen, slot)).
    ring: [(u8, (u8, u8)); RING as usize],
    published: u8,
    /// Writer: change index, step within it, last generation used.
    wc: u8,
    wstep: u8,
    wgen: u8,
    crashes_left: u8,
    /// Restarted writer's repair scan (`Writer::reattach`): next slot (SLOTS = not
    /// repairing), step of its republish, and the generation published at attach.
    repair_i: u8,
    repair_step: u8,
    attach_pub: u8,
    // Reader.
    pc: RPc,
    polls: u8,
    applied: u8,
    target: u8,
    next: u8,
    rebuild_start: u8,
    index: [u8; SLOTS],
}

/// One step of "write slot, journal check word, journal gen word, publish" for
/// generation `g` on `slot`.
fn change_step(n: &mut JState, step: u8, g: u8, slot: u8, val: u8) {
    let e = (g % RING) as usize;
    match step {
        // Slot write (atomic here: the seqlock model covers its inside).
        0 => n.slots[slot as usize] = (g, val),
        // journal_write: check word first, generation word last.
        1 => n.ring[e].1 = (g, slot),
        2 => n.ring[e].0 = g,
        // publish.
        _ => n.published = g,
    }
}

fn j_writer(s: &JState, bug: JournalBug) -> Vec<JState> {
    let mut out = Vec::new();
    if (s.repair_i as usize) < SLOTS {
        let i = s.repair_i;
        let mut n = s.clone();
        let (gen, val) = s.slots[i as usize];
        if s.repair_step == 0 && (gen <= s.attach_pub || bug == JournalBug::NoRepublish) {
            n.repair_i += 1;
        } else {
            // Written but never published by the dead writer: publish it now.
            change_step(&mut n, s.repair_step, s.wgen + 1, i, val);
            if s.repair_step == 3 {
                n.wgen += 1;
                n.repair_i += 1;
                n.repair_step = 0;
            } else {
                n.repair_step += 1;
            }
        }
        out.push(n);
        return out;
    }
    if s.wc as usize == CHANGES.len() {
        return out;
    }
    let (slot, val) = CHANGES[s.wc as usize];
    let mut n = s.clone();
    let order: [u8; 4] = if bug == JournalBug::SlotAfterPublish {
        [1, 2, 3, 0]
    } else {
        [0, 1, 2, 3]
    };
    change_step(&mut n, order[s.wstep as usize], s.wgen + 1, slot, val);
    if s.wstep == 3 {
        n.wc += 1;
        n.wstep = 0;
        n.wgen += 1;
    } else {
        n.wstep += 1;
    }
    out.push(n);
    if s.crashes_left > 0 {
        // SIGKILL before this step; the change in progress is abandoned and a new
        // writer reattaches: its generation restarts from the published one.
        let mut c = s.clone();
        c.crashes_left -= 1;
        c.wc += 1;
        c.wstep = 0;
        c.wgen = s.published;
        c.attach_pub = s.published;
        c.repair_i = 0;
        c.repair_step = 0;
        out.push(c);
    }
    out
}

fn j_reader(s: &JState, bug: JournalBug) -> Option<JState> {
    let mut n = s.clone();
    match s.pc {
        RPc::Idle if s.polls < POLLS => {
            n.target = s.published;
            n.pc = RPc::Start;
        }
        RPc::Idle => return None,
        RPc::Start => {
            if s.target == s.applied {
                n.pc = RPc::Idle;
                n.polls += 1;
            } else if s.target - s.applied > RING {
                n.pc = RPc::Scan(0);
                n.rebuild_start = s.published;
            } else {
                n.next = s.applied + 1;
                n.pc = RPc::EntryGen;
            }
        }
        RPc::EntryGen => {
            let e = s.ring[(s.next % RING) as usize];
            if e.0 != s.next && bug != JournalBug::NoEntryCheck {
                n.pc = RPc::Scan(0);
                n.rebuild_start = s.published;
            } else {
                n.pc = RPc::EntryCheck;
            }
        }
        RPc::EntryCheck => {
            let (g, slot) = s.ring[(s.next % RING) as usize].1;
            if g != s.next && bug != JournalBug::NoEntryCheck {
                n.pc = RPc::Scan(0);
                n.rebuild_start = s.published;
            } else {
                n.pc = RPc::Apply(slot);
            }
        }
        RPc::Apply(slot) => {
            n.index[slot as usize] = s.slots[slot as usize].1;
            n.applied = s.next;
            if s.next == s.target {
                n.pc = RPc::Idle;
                n.polls += 1;
            } else {
                n.next += 1;
                n.pc = RPc::EntryGen;
            }
        }
        RPc::Scan(i) => {
            n.index[i as usize] = s.slots[i as usize].1;
            if i as usize + 1 == SLOTS {
                n.applied = if bug == JournalBug::RebuildReadsGenerationLate {
                    s.published
                } else {
                    s.rebuild_start
                };
                n.pc = RPc::Idle;
                n.polls += 1;
            } else {
                n.pc = RPc::Scan(i + 1);
            }
        }
    }
    Some(n)
}

/// The reader's final poll after the writer stopped, run to completion.
fn final_poll(s: &JState, bug: JournalBug) -> JState {
    let mut n = s.clone();
    // Finish the poll in progress, then one more from idle.
    n.polls = 0;
    let mut guard = 0;
    while !(n.pc == RPc::Idle && n.polls >= 1) {
        n = j_reader(&n, bug).expect("reader can always step while polling");
        guard += 1;
        assert!(guard < 100, "reader does not terminate");
    }
    if n.applied != n.published {
        n.polls = 0;
        while !(n.pc == RPc::Idle && n.polls >= 1) {
            n = j_reader(&n, bug).expect("reader step");
        }
    }
    n
}

fn run_journal_model(bug: JournalBug, crashes: u8) -> Result<usize, String> {
    let init = JState {
        slots: [(0, 0); SLOTS],
        ring: [(0, (0, 0)); RING as usize],
        published: 0,
        wc: 0,
        wstep: 0,
        wgen: 0,
        crashes_left: crashes,
        repair_i: SLOTS as u8,
        repair_step: 0,
        attach_pub: 0,
        pc: RPc::Idle,
        polls: 0,
        applied: 0,
        target: 0,
        next: 0,
        rebuild_start: 0,
        index: [0; SLOTS],
    };
    explore(
        init,
        |s| {
            j_writer(s, bug)
                .into_iter()
                .chain(j_reader(s, bug))
                .collect()
        },
        |s| {
            if s.applied > s.published {
                return Err(format!(
                    "reader claims generation {} beyond published {}: {s:?}",
                    s.applied, s.published
                ));
            }
            if s.wc as usize == CHANGES.len() && s.repair_i as usize >= SLOTS {
                let f = final_poll(s, bug);
                if f.index != f.slots.map(|(_, v)| v) {
                    return Err(format!(
                        "reader ended with {:?}, slots hold {:?}, from {s:?}",
                        f.index, f.slots
                    ));
                }
            }
            Ok(())
        },
    )
}

#[test]
fn a_reader_following_or_lapped_by_the_journal_converges_to_the_slots_in_every_interleaving() {
    let states = run_journal_model(JournalBug::None, 1).unwrap();
    eprintln!("journal model: {states} states");
    assert!(states > 1000, "explored only {states} states");
}

#[test]
fn journal_model_finds_a_rebuild_that_reads_the_generation_after_scanning() {
    assert!(run_journal_model(JournalBug::RebuildReadsGenerationLate, 0)
        .unwrap_err()
        .contains("reader ended with"));
}

#[test]
fn journal_model_finds_a_reader_that_trusts_an_overwritten_entry() {
    assert!(run_journal_model(JournalBug::NoEntryCheck, 0)
        .unwrap_err()
        .contains("reader ended with"));
}

#[test]
fn journal_model_finds_a_writer_that_publishes_before_writing_the_slot() {
    assert!(run_journal_model(JournalBug::SlotAfterPublish, 0)
        .unwrap_err()
        .contains("reader ended with"));
}

#[test]
fn journal_model_finds_a_restarted_writer_that_does_not_republish() {
    assert!(run_journal_model(JournalBug::NoRepublish, 1)
        .unwrap_err()
        .contains("reader ended with"));
}

// ---------------------------------------------------------------------------
// Writers taking turns
// ---------------------------------------------------------------------------

const WSLOTS: usize = 3;
const WRING: u8 = 2;
/// A slot's content while a write is in progress (odd seqlock, half the words).
const TORN: u8 = 255;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum WOp {
    Install(u8),
    Delete(u8),
}

/// Each writer installs and deletes only its own SAs (values 1-9 and 11-19:
/// the cookie tags). Two installs each, so the lapped journal (2 entries) and
/// the full table (3 slots) both come up; the first writer's last two changes
/// name one slot, so a catch-up lapped by all three misses the first.
const SCRIPTS: [[WOp; 3]; 2] = [
    [WOp::Install(1), WOp::Install(2), WOp::Delete(2)],
    [WOp::Install(11), WOp::Delete(11), WOp::Install(12)],
];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum WriterBug {
    None,
    /// A writer trusts its bookkeeping without replaying the other's changes.
    NoCatchUp,
    /// A writer ignores the transaction mark a dead writer left.
    IgnoreDeadMark,
    /// Catch-up follows journal entries without checking their generation.
    NoLapCheck,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum WPc {
    /// Between transactions (or about to attach, when not attached).
    Idle,
    /// Rescanning: next slot.
    Scan(u8),
    /// Catching up: next generation to replay.
    CatchUp(u8),
    /// The operation: step of write-slot (torn, whole), journal, publish.
    Op(u8),
    /// Clear the mark and unlock.
    Leave,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct WState {
    pc: WPc,
    attached: bool,
    /// Last generation this writer published or saw.
    gen: u8,
    /// What it believes each slot holds.
    view: [u8; WSLOTS],
    /// Next operation of its script.
    op: u8,
    /// The slot the operation in progress writes, and the value.
    target: Option<(u8, u8)>,
    /// The generation published when the rescan started (`rescan`'s `published`).
    scan_pub: u8,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct TState {
    /// (content, generation stamped).
    slots: [(u8, u8); WSLOTS],
    ring: [(u8, u8); WRING as usize],
    published: u8,
    lock: Option<u8>,
    /// The header's transaction mark.
    mark: bool,
    crashes_left: u8,
    w: [WState; 2],
}

/// One step of writer `me` (one shared-memory access, as in the code; the
/// slot write in two steps, so that a crash can leave it torn).
fn t_writer(s: &TState, me: usize, bug: WriterBug) -> Result<Vec<TState>, String> {
    let w = &s.w[me];
    let mut out = Vec::new();
    if w.op as usize == SCRIPTS[me].len() && w.pc == WPc::Idle {
        return Ok(out);
    }
    let mut n = s.clone();
    match w.pc {
        WPc::Idle => {
            if s.lock.is_some() {
                return Ok(out);
            }
            // flock, then swap the mark (one step: nobody else can look).
            n.lock = Some(me as u8);
            let dead = s.mark;
            n.mark = true;
            let nw = &mut n.w[me];
            if !w.attached || (dead && bug != WriterBug::IgnoreDeadMark) {
                nw.attached = true;
                nw.gen = s.published;
                nw.scan_pub = s.published;
                nw.view = [0; WSLOTS];
                nw.pc = WPc::Scan(0);
            } else if s.published != w.gen && bug != WriterBug::NoCatchUp {
                nw.pc = WPc::CatchUp(w.gen + 1);
            } else {
                nw.pc = WPc::Op(0);
            }
        }
        WPc::Scan(i) => {
            let (content, g) = s.slots[i as usize];
            if content == TORN {
                // Repair: a zeroed record under a fresh generation, published.
                let ng = n.w[me].gen + 1;
                publish_change(&mut n, i, 0, ng)?;
                n.w[me].gen = ng;
                n.w[me].view[i as usize] = 0;
            } else if g > s.w[me].scan_pub {
                // Written, never published: publish it under a fresh generation.
                let ng = n.w[me].gen + 1;
                publish_change(&mut n, i, content, ng)?;
                n.w[me].gen = ng;
                n.w[me].view[i as usize] = content;
            } else {
                n.w[me].view[i as usize] = content;
            }
            n.w[me].pc = if i as usize + 1 == WSLOTS {
                WPc::Op(0)
            } else {
                WPc::Scan(i + 1)
            };
        }
        WPc::CatchUp(g) => {
            let (eg, slot) = s.ring[(g % WRING) as usize];
            if eg != g && bug != WriterBug::NoLapCheck {
                n.w[me].gen = s.published;
                n.w[me].scan_pub = s.published;
                n.w[me].view = [0; WSLOTS];
                n.w[me].pc = WPc::Scan(0);
            } else {
                let content = s.slots[slot as usize].0;
                if content == TORN {
                    return Err(format!(
                        "catch-up met a torn slot with no dead writer: {s:?}"
                    ));
                }
                n.w[me].view[slot as usize] = content;
                if g >= s.published {
                    n.w[me].gen = s.published;
                    n.w[me].pc = WPc::Op(0);
                } else {
                    n.w[me].pc = WPc::CatchUp(g + 1);
                }
            }
        }
        WPc::Op(step) => {
            let g = w.gen + 1;
            match step {
                0 => {
                    let target = match SCRIPTS[me][w.op as usize] {
                        WOp::Install(v) => {
                            w.view.iter().position(|&c| c == 0).map(|i| (i as u8, v))
                        }
                        WOp::Delete(v) => w.view.iter().position(|&c| c == v).map(|i| (i as u8, 0)),
                    };
                    match target {
                        // Table full in this writer's view, or its SA lost with
                        // a crash: nothing to write.
                        None => n.w[me].pc = WPc::Leave,
                        Some((slot, v)) => {
                            let now = s.slots[slot as usize].0;
                            if v != 0 && now != 0 {
                                return Err(format!(
                                    "writer {me} installs over slot {slot} holding {now}: {s:?}"
                                ));
                            }
                            if v == 0 && now != w.view[slot as usize] {
                                return Err(format!(
                                    "writer {me} deletes slot {slot} holding {now}: {s:?}"
                                ));
                            }
                            n.slots[slot as usize].0 = TORN;
                            n.w[me].target = Some((slot, v));
                            n.w[me].pc = WPc::Op(1);
                        }
                    }
                }
                1 => {
                    let (slot, v) = w.target.expect("target set");
                    n.slots[slot as usize] = (v, g);
                    n.w[me].pc = WPc::Op(2);
                }
                2 => {
                    let (slot, _) = w.target.expect("target set");
                    n.ring[(g % WRING) as usize] = (g, slot);
                    n.w[me].pc = WPc::Op(3);
                }
                _ => {
                    let (slot, v) = w.target.expect("target set");
                    if g != s.published + 1 {
                        return Err(format!(
                            "writer {me} publishes generation {g} after {}: {s:?}",
                            s.published
                        ));
                    }
                    n.published = g;
                    n.w[me].gen = g;
                    n.w[me].view[slot as usize] = v;
                    n.w[me].target = None;
                    n.w[me].pc = WPc::Leave;
                }
            }
        }
        WPc::Leave => {
            n.mark = false;
            n.lock = None;
            n.w[me].op += 1;
            n.w[me].pc = WPc::Idle;
        }
    }
    out.push(n);
    // SIGKILL anywhere inside the transaction: the kernel drops the lock, the
    // mark stays; the process restarts unattached, its operation abandoned.
    if s.lock == Some(me as u8) && s.crashes_left > 0 {
        let mut c = s.clone();
        c.crashes_left -= 1;
        c.lock = None;
        let cw = &mut c.w[me];
        cw.attached = false;
        cw.pc = WPc::Idle;
        cw.target = None;
        cw.op = (cw.op + 1).min(SCRIPTS[me].len() as u8);
        out.push(c);
    }
    Ok(out)
}

/// A repair or republish step: slot, journal entry and publish at once (the
/// journal model covers their order).
fn publish_change(n: &mut TState, slot: u8, content: u8, g: u8) -> Result<(), String> {
    if g != n.published + 1 {
        return Err(format!(
            "repair publishes generation {g} after {}: {n:?}",
            n.published
        ));
    }
    n.slots[slot as usize] = (content, g);
    n.ring[(g % WRING) as usize] = (g, slot);
    n.published = g;
    Ok(())
}

/// What the next transaction of writer `me` leaves (run to its Op step).
fn next_transaction(s: &TState, me: usize, bug: WriterBug) -> Result<TState, String> {
    let mut n = s.clone();
    n.crashes_left = 0;
    // A finished writer takes one more turn with nothing to do.
    n.w[me].op = 0;
    n.w[me].pc = WPc::Idle;
    let mut guard = 0;
    while !matches!(n.w[me].pc, WPc::Op(_)) {
        n = t_writer(&n, me, bug)?
            .into_iter()
            .next()
            .expect("writer can step");
        guard += 1;
        assert!(guard < 100, "writer does not reach its operation");
    }
    Ok(n)
}

fn run_writers_model(bug: WriterBug, crashes: u8) -> Result<usize, String> {
    let idle = WState {
        pc: WPc::Idle,
        attached: false,
        gen: 0,
        view: [0; WSLOTS],
        op: 0,
        target: None,
        scan_pub: 0,
    };
    let init = TState {
        slots: [(0, 0); WSLOTS],
        ring: [(0, 0); WRING as usize],
        published: 0,
        lock: None,
        mark: false,
        crashes_left: crashes,
        w: [idle.clone(), idle],
    };
    // Errors found while stepping are carried to the check as a sentinel state.
    let failure = std::cell::RefCell::new(None::<String>);
    let r = explore(
        init,
        |s| {
            let mut v = Vec::new();
            for me in 0..2 {
                match t_writer(s, me, bug) {
                    Ok(ns) => v.extend(ns),
                    Err(e) => {
                        failure.borrow_mut().get_or_insert(e);
                    }
                }
            }
            v
        },
        |s| {
            if let Some(e) = failure.borrow().clone() {
                return Err(e);
            }
            let done = s.lock.is_none()
                && (0..2)
                    .all(|me| s.w[me].pc == WPc::Idle && s.w[me].op as usize == SCRIPTS[me].len());
            if done {
                // Whichever writer goes next, its view is the table, and the
                // table holds no torn or unpublished slot.
                for me in 0..2 {
                    let n = next_transaction(s, me, bug)?;
                    let truth = n.slots.map(|(c, _)| c);
                    if n.w[me].view != truth {
                        return Err(format!(
                            "writer {me} sees {:?}, slots hold {truth:?}, from {s:?}",
                            n.w[me].view
                        ));
                    }
                    if let Some(i) = n
                        .slots
                        .iter()
                        .position(|&(c, g)| c == TORN || g > n.published)
                    {
                        return Err(format!(
                            "slot {i} left torn or unpublished after a transaction: {n:?}"
                        ));
                    }
                }
            }
            Ok(())
        },
    );
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    r
}

#[test]
fn two_writers_taking_turns_never_write_over_each_other_and_repair_after_a_crash_in_every_interleaving(
) {
    let states = run_writers_model(WriterBug::None, 1).unwrap();
    eprintln!("writers model: {states} states");
    assert!(states > 1000, "explored only {states} states");
}

#[test]
fn writers_model_finds_a_writer_that_does_not_catch_up() {
    let e = run_writers_model(WriterBug::NoCatchUp, 0).unwrap_err();
    assert!(
        e.contains("installs over") || e.contains("publishes generation") || e.contains(" sees "),
        "{e}"
    );
}

#[test]
fn writers_model_finds_a_writer_that_ignores_a_dead_writers_transaction() {
    let e = run_writers_model(WriterBug::IgnoreDeadMark, 1).unwrap_err();
    assert!(
        e.contains("installs over")
            || e.contains("torn or unpublished")
            || e.contains("met a torn slot")
            || e.contains(" sees "),
        "{e}"
    );
}

#[test]
fn writers_model_finds_a_catch_up_that_trusts_a_lapped_journal() {
    let e = run_writers_model(WriterBug::NoLapCheck, 0).unwrap_err();
    assert!(e.contains("installs over") || e.contains(" sees "), "{e}");
}
