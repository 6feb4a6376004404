//! The packet path does not allocate: after SAs, AEADs and buffers exist,
//! sealing and opening bursts performs zero heap allocations (STYLE "Hot
//! path"). A counting global allocator proves it, counting only on the
//! test's own thread while the hot path runs.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use esp::{open_burst, seal_burst, Backend, DropReason, PktBuf, Suite};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are the allocator's; the counter and
// the thread-local flag (const-initialised, no destructor) never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's (a valid, non-zero layout).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr`/`layout` come from this allocator, as the caller promises.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn sealing_and_opening_bursts_does_not_allocate() {
    // The counter works: one allocation on this thread is seen.
    ON.with(|on| on.set(true));
    drop(std::hint::black_box(Box::new(7u64)));
    ON.with(|on| on.set(false));
    assert_eq!(
        ALLOCS.swap(0, Ordering::Relaxed),
        1,
        "the counting allocator is not counting"
    );
    for backend in Backend::ALL {
        for suite in Suite::ALL {
            for (mode, udp) in [(Some(false), false), (Some(true), true), (None, true)] {
                let mut p = pair(&params(suite, true, mode, udp), backend);
                let inner = udp_v4(300);
                let mut pkts: Vec<_> = (0..40)
                    .map(|_| PktBuf::from_data(&inner, 128, 128))
                    .collect();
                let mut sv = vec![Err(DropReason::NotEsp); 40];
                let mut ov = vec![Err(DropReason::NotEsp); 40];
                ON.with(|on| on.set(true));
                seal_burst(&p.out, &p.seal, &mut pkts, &mut sv);
                open_burst(&mut p.inb, &p.open, &mut pkts, &mut ov);
                ON.with(|on| on.set(false));
                assert!(
                    sv.iter().all(Result::is_ok) && ov.iter().all(Result::is_ok),
                    "{} {mode:?}",
                    suite.name()
                );
                assert_eq!(
                    ALLOCS.load(Ordering::Relaxed),
                    0,
                    "{} {} {mode:?} udp={udp}",
                    backend.name(),
                    suite.name()
                );
            }
        }
    }
}
