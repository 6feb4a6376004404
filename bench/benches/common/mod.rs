//! What the micro-benchmarks share: criterion's settings for short,
//! many-row runs, one "iteration" made to mean one packet or one lookup
//! when the code under test works on bursts, and the estimates of this run
//! read back from criterion's output for the summary tables (criterion has
//! no API that returns them; it writes them to
//! `<target>/criterion/<id>/new/estimates.json`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::Criterion;

/// Criterion with these warm-up and measurement times and samples;
/// `criterion_group!` then applies the command line over them
/// (`-- --measurement-time 5`, `--sample-size`, a filter, `--test`).
pub fn criterion(warm_up: Duration, measure: Duration, samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .sample_size(samples)
}

/// Times `iters` items of work done in bursts of `burst` (the last burst
/// rounded up), and scales the time to exactly `iters` items, so that
/// criterion's time per iteration is the time per item. `run` runs bursts.
pub fn per_item(iters: u64, burst: u64, mut run: impl FnMut(u64)) -> Duration {
    let bursts = iters.div_ceil(burst).max(1);
    let t = std::time::Instant::now();
    run(bursts);
    let ns = t.elapsed().as_nanos() * u128::from(iters) / u128::from(bursts * burst);
    Duration::from_nanos(ns as u64)
}

/// Where criterion writes its results, found the way criterion finds it:
/// $CRITERION_HOME, else $CARGO_TARGET_DIR/criterion, else the target
/// directory this benchmark runs from (`<target>/release/deps/<bench>`).
fn criterion_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return Some(h.into());
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(t).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The ns per iteration criterion reported for `id` ("group/function") in
/// this run (the slope with linear sampling, else the mean): None when
/// the benchmark did not run now (filtered out, `--test`, `--list`).
pub fn estimate_ns(id: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_home()?.join(id).join("new/estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let pick = |k: &str| v.get(k)?.get("point_estimate")?.as_f64();
    pick("slope").or_else(|| pick("mean"))
}

/// A cell of a summary table: the figure, or "-" when it was not measured.
pub fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.decimals$}"))
}
