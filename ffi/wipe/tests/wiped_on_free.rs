//! A global allocator that looks at every block being freed: the bytes a
//! `WipeBox` owned must all be zero by then, and its value's `Drop` must
//! have run first (and still seen its data).
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use wipe::WipeBox;

/// Blocks of this size are inspected on free (no other allocation in the
/// test has it).
const SIZE: usize = 4099;
static WATCH: AtomicBool = AtomicBool::new(false);
static FREED: AtomicUsize = AtomicUsize::new(0);
static NONZERO_AT_FREE: AtomicUsize = AtomicUsize::new(0);

struct Inspecting;

// SAFETY: forwards every call to the system allocator unchanged; `dealloc`
// only reads the block it is handed, which is still allocated then.
unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if l.size() == SIZE && WATCH.load(Ordering::Relaxed) {
            // SAFETY: `p` points to `l.size()` bytes still owned by the caller.
            let block = unsafe { std::slice::from_raw_parts(p, l.size()) };
            FREED.fetch_add(1, Ordering::Relaxed);
            NONZERO_AT_FREE.fetch_add(block.iter().filter(|&&b| b != 0).count(), Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Inspecting = Inspecting;

/// One test at a time: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

struct Secret {
    bytes: [u8; SIZE],
}

static DROP_SAW: AtomicUsize = AtomicUsize::new(0);

impl Drop for Secret {
    fn drop(&mut self) {
        DROP_SAW.store(self.bytes.iter().filter(|&&b| b == 0xa5).count(), Ordering::Relaxed);
    }
}

#[test]
fn every_octet_is_zero_when_the_block_is_freed_after_the_value_dropped() {
    let _g = SERIAL.lock().unwrap();
    let (freed, nonzero) = (FREED.load(Ordering::Relaxed), NONZERO_AT_FREE.load(Ordering::Relaxed));
    WATCH.store(true, Ordering::Relaxed);
    let b = WipeBox::new(Secret { bytes: [0xa5; SIZE] });
    assert_eq!(b.bytes[SIZE - 1], 0xa5);
    drop(b);
    WATCH.store(false, Ordering::Relaxed);
    assert_eq!(FREED.load(Ordering::Relaxed) - freed, 1, "the box's block was freed");
    assert_eq!(NONZERO_AT_FREE.load(Ordering::Relaxed) - nonzero, 0, "every octet zero at free");
    assert_eq!(DROP_SAW.load(Ordering::Relaxed), SIZE, "the value's Drop ran first, on intact data");
}

/// The same check on a plain `Box`: the allocator does see what is left,
/// so the test above can fail.
#[test]
fn a_plain_box_leaves_its_octets_behind() {
    let _g = SERIAL.lock().unwrap();
    let (freed, nonzero) = (FREED.load(Ordering::Relaxed), NONZERO_AT_FREE.load(Ordering::Relaxed));
    WATCH.store(true, Ordering::Relaxed);
    let b = Box::new(Secret { bytes: [0xa5; SIZE] });
    drop(std::hint::black_box(b));
    WATCH.store(false, Ordering::Relaxed);
    assert_eq!(FREED.load(Ordering::Relaxed) - freed, 1);
    assert!(NONZERO_AT_FREE.load(Ordering::Relaxed) - nonzero > SIZE / 2);
}
