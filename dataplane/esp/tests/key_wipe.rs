//! Keys are wiped when they die: every block the heap gets back is searched
//! for the SA's key while SAs are keyed, used and dropped, on every
//! backend and suite. Neither ring nor aes-gcm wipes its key schedule (the
//! first AES round key is the key itself, ChaCha keeps its key as words),
//! so this fails unless the engine wipes them ([`wipe::WipeBox`]).
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;

use esp::{seal_burst, Backend, DropReason, OutboundSa, PktBuf, SaParams, SoftAead, Suite};

/// The first 16 octets of the key being watched (every suite's key is at
/// least that long; it is the first AES round key).
static NEEDLE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static FOUND: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn contains_needle(block: &[u8]) -> bool {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&NEEDLE[0].load(Ordering::Relaxed).to_ne_bytes());
    n[8..].copy_from_slice(&NEEDLE[1].load(Ordering::Relaxed).to_ne_bytes());
    block.windows(16).any(|w| w == n)
}

struct Searching;

// SAFETY: `alloc` and `dealloc` forward to `System` unchanged; `dealloc`
// first reads the block it is given, which the caller still owns. The
// default `realloc` goes through both, so a moved block's old copy is
// searched too.
unsafe impl GlobalAlloc for Searching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.with(Cell::get) {
            // SAFETY: `ptr` is a live block of `layout.size()` octets.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            FREED.fetch_add(1, Ordering::Relaxed);
            if contains_needle(block) {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Searching = Searching;

/// The needle and counters are global: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn watch(key: &[u8]) {
    NEEDLE[0].store(u64::from_ne_bytes(key[..8].try_into().unwrap()), Ordering::Relaxed);
    NEEDLE[1].store(u64::from_ne_bytes(key[8..16].try_into().unwrap()), Ordering::Relaxed);
}

/// Runs `f` with the search on (this thread only); returns (blocks freed,
/// blocks that still held the key).
fn searched(f: impl FnOnce()) -> (u64, u64) {
    let (freed, found) = (FREED.load(Ordering::Relaxed), FOUND.load(Ordering::Relaxed));
    ON.with(|on| on.set(true));
    f();
    ON.with(|on| on.set(false));
    (FREED.load(Ordering::Relaxed) - freed, FOUND.load(Ordering::Relaxed) - found)
}

/// A key no other allocation of the test holds by chance.
fn key_for(suite: Suite, backend: Backend) -> Vec<u8> {
    (0..suite.keymat_len()).map(|i| (i as u8).wrapping_mul(37) ^ 0x5c ^ (backend as u8) << 6 ^ suite.key_len() as u8).collect()
}

#[test]
fn the_search_finds_a_key_left_in_freed_memory() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = key_for(Suite::AES128_GCM_16, Backend::Ring);
    watch(&key);
    let (freed, found) = searched(|| drop(std::hint::black_box(key.clone())));
    assert_eq!((freed, found), (1, 1));
}

#[test]
fn no_key_schedule_survives_its_aead_on_any_backend_or_suite() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for suite in Suite::ALL {
        for backend in Backend::ALL {
            let keymat = key_for(suite, backend);
            let key = &keymat[..suite.key_len()];
            watch(key);
            let p = SaParams::new(0x1000, suite, &keymat).unwrap();
            let sa = OutboundSa::new(&p).unwrap();
            let (freed, found) = searched(|| {
                let aead = SoftAead::new(backend, suite, key).unwrap();
                let mut pkts = [PktBuf::from_data(&common::udp_v4(64), 64, 64)];
                let mut verdicts = [Err(DropReason::NotEsp)];
                seal_burst(&sa, &aead, &mut pkts, &mut verdicts);
                assert_eq!(verdicts[0], Ok(()));
                drop(aead);
            });
            assert!(freed >= 1, "{suite:?} on {backend:?}: the key schedule was on the heap");
            assert_eq!(found, 0, "{suite:?} on {backend:?}: a freed block still held the key");
        }
    }
}

/// `Keymat` (key | salt in `SaParams`) zeroes itself. Checked on a boxed
/// `Keymat` alone: a larger value moved into a box also carries whatever
/// its padding picked up on the stack (stack residue of the temporaries
/// that built it, which no Rust type can reach; see `wipe`'s docs).
#[test]
fn keymat_is_zeroed_when_dropped() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for suite in Suite::ALL {
        let keymat = key_for(suite, Backend::RustCrypto);
        watch(&keymat);
        let p = SaParams::new(0x1000, suite, &keymat).unwrap();
        let (freed, found) = searched(|| {
            drop(Box::new(p.keymat.clone()));
        });
        assert_eq!(freed, 1);
        assert_eq!(found, 0, "{suite:?}: a freed Keymat still held the key");
    }
}
