//! The packet path allocates nothing: lookups, sequence reservation, counters,
//! and a worker's poll that applies ordinary installs and deletes (STYLE.md "No
//! allocation in steady state", proven with a counting allocator).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::{inbound, outbound, TablePath};
use sa_table::{Reader, SaId, TableConfig, Writer};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: same contract as our caller's: a valid, non-zero-size layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout (via `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Relaxed)
}

#[test]
fn lookups_counters_and_polls_of_ordinary_changes_do_not_allocate() {
    let t = TablePath::new("no_alloc");
    let cfg = TableConfig {
        capacity: 4096,
        journal_len: 4096,
        ..TableConfig::default()
    };
    let mut w = Writer::create(t.path(), &cfg).unwrap();
    let before_attach = allocs();
    let mut r = Reader::attach(t.path()).unwrap();
    assert!(
        allocs() > before_attach,
        "the counting allocator counts (attach builds indexes)"
    );
    let params: Vec<_> = (0..512u32)
        .map(|i| {
            if i % 2 == 0 {
                inbound(0x10_0000 + i, 1)
            } else {
                outbound(
                    0x10_0000 + i,
                    1,
                    &format!("10.{}.{}.0/24", i >> 8, i & 0xff),
                )
            }
        })
        .collect();
    let dsts: Vec<Ipv4Addr> = (0..512u32)
        .map(|i| Ipv4Addr::new(10, (i >> 8) as u8, (i & 0xff) as u8, 1))
        .collect();
    let spi_burst: Vec<u32> = params.iter().step_by(2).take(32).map(|p| p.spi).collect();
    let mut ids: Vec<SaId> = Vec::with_capacity(512);
    let mut out = [None; 32];
    // Warm up: the first poll sizes the reader's scratch space.
    for p in &params {
        ids.push(w.install(p).unwrap());
    }
    r.poll_changes(|_| {});
    for round in 0..3 {
        for id in ids.drain(..) {
            w.delete(id).unwrap();
        }
        let before = allocs();
        r.poll_changes(|_| {});
        assert_eq!(
            allocs() - before,
            0,
            "poll applying deletes allocated (round {round})"
        );
        for p in &params {
            ids.push(w.install(p).unwrap());
        }
        let before = allocs();
        let stats = r.poll_changes(|_| {});
        let mut hits = 0;
        for (i, p) in params.iter().enumerate() {
            if i % 2 == 0 {
                hits += usize::from(
                    r.lookup_inbound(
                        p.spi,
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                    )
                    .is_some(),
                );
            } else if let Some(id) = r.lookup_outbound(IpAddr::V4(dsts[i])) {
                hits += 1;
                let st = r.state(id).unwrap();
                st.reserve_seq(32, false).unwrap();
                st.add_traffic(32, 32 * 1400);
                st.touch(7);
                st.count_drop(2);
            }
        }
        r.lookup_inbound_spi_burst(&spi_burst, &mut out);
        let burst_hits = out.iter().filter(|o| o.is_some()).count();
        r.lookup_outbound_v4_burst(&dsts[..32], &mut out);
        assert_eq!(
            allocs() - before,
            0,
            "poll of installs or the lookups allocated (round {round})"
        );
        assert_eq!(burst_hits, 32);
        assert_eq!(stats.entries, 512);
        assert_eq!(hits, 512);
        assert!(
            out.iter().filter(|o| o.is_some()).count() == 16,
            "every other address is served"
        );
    }
}
