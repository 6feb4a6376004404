//! Worker threads: pinned with `core_affinity`, registered with DPDK
//! (`rte_thread_register`, so mempool caches and per-lcore state work), run
//! until the shared stop flag is raised (SIGTERM/SIGINT in the binary).
//!
//! Workers are scoped threads: they borrow the ports and tables the main
//! thread set up, and `run_workers` returns only after every worker did.
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk::Eal;

/// What a worker knows about itself.
pub struct WorkerCtx<'a> {
    pub id: usize,
    pub cpu: Option<usize>,
    pub lcore: u32,
    pub stop: &'a AtomicBool,
}

impl WorkerCtx<'_> {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs `body` on `cpus.len()` workers (or `count` unpinned ones when `cpus`
/// is empty) and waits for all of them. A worker that fails to pin or
/// register raises `stop` so the others end too; its error is returned.
pub fn run_workers<F>(eal: Eal, count: usize, cpus: &[usize], stop: &AtomicBool, body: F) -> Result<(), String>
where
    F: Fn(WorkerCtx<'_>) -> Result<(), String> + Sync,
{
    // The machine's online CPUs (not this thread's mask: the EAL has pinned
    // the main thread to its own lcores, and workers may go elsewhere).
    let available = online_cpus();
    for c in cpus {
        if !available.is_empty() && !available.contains(c) {
            return Err(format!("dataplane.workers.cpus: CPU {c} is not online (online: {available:?})"));
        }
    }
    let body = &body;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|id| {
                let cpu = cpus.get(id).copied();
                std::thread::Builder::new()
                    .name(format!("esprit-w{id}"))
                    .spawn_scoped(s, move || {
                        let res = (|| {
                            if let Some(c) = cpu {
                                if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                                    return Err(format!("worker {id}: cannot pin to CPU {c}"));
                                }
                            }
                            let reg = dpdk::register_thread(&eal).map_err(|e| format!("worker {id}: {e}"))?;
                            body(WorkerCtx { id, cpu, lcore: reg.lcore(), stop })
                        })();
                        if res.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        res
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    first_err.get_or_insert("a worker panicked".to_string());
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

/// CPUs listed in /sys/devices/system/cpu/online ("0-3,6"); empty if unreadable.
fn online_cpus() -> Vec<usize> {
    let Ok(text) = std::fs::read_to_string("/sys/devices/system/cpu/online") else { return Vec::new() };
    let mut out = Vec::new();
    for part in text.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}
