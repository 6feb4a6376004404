//! esprit-ike's logs, through `tracing`.
//!
//! * Levels: `ike.log_level` (info | warn) is the default, applied at start
//!   and on every reload; `ESPRIT_LOG` (tracing's EnvFilter directives, e.g.
//!   `warn,esprit_controlplane::daemon=info`) sets levels per module and then
//!   wins over the configuration.
//! * Format: text (default) or JSON, one object per line (`--log-format json`).
//! * Events carry the IKE SA and Child SA numbers and the SPIs as fields
//!   (`ike_sa`, `child_sa`, `spi_in`, `spi_out`), never keys or other secrets.
//! * Writes: info lines are buffered and written once per event-loop turn
//!   ([`flush`]); warnings and errors are written at once, after them.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogLevel;

/// The environment variable with per-module directives.
pub const ENV: &str = "ESPRIT_LOG";

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static FROM_ENV: AtomicBool = AtomicBool::new(false);
/// Lines not yet written (see [`flush`]).
static BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Installs the subscriber for this process (once; later calls fail).
pub fn init(format: Format) -> Result<(), String> {
    let env = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty());
    let filter = match &env {
        Some(d) => EnvFilter::try_new(d).map_err(|e| format!("{ENV}={d:?}: {e}"))?,
        None => EnvFilter::new("info"),
    };
    FROM_ENV.store(env.is_some(), Ordering::Relaxed);
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Buffered);
    let r = match format {
        Format::Text => Registry::default().with(filter).with(fmt).try_init(),
        Format::Json => Registry::default().with(filter).with(fmt.json().flatten_event(true)).try_init(),
    };
    r.map_err(|e| e.to_string())?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// The configured level (`ike.log_level`), unless `ESPRIT_LOG` is set.
pub fn set_level(level: LogLevel) {
    if FROM_ENV.load(Ordering::Relaxed) {
        return;
    }
    if let Some(h) = FILTER.get() {
        // The binary's own lines (where it listens) are kept at warn.
        let _ = h.reload(EnvFilter::new(if level >= LogLevel::Info { "info" } else { "warn,esprit_ike=info" }));
    }
}

/// Writes the buffered lines (the event loop calls it once per turn).
pub fn flush() {
    let mut buf = BUF.lock().unwrap_or_else(PoisonError::into_inner);
    if !buf.is_empty() {
        write_out(&mut buf);
    }
}

fn write_out(buf: &mut Vec<u8>) {
    let _ = std::io::stderr().lock().write_all(buf);
    buf.clear();
}

struct Buffered;

/// One event's line: appended to the buffer, written out when dropped if
/// it is a warning or an error, or the buffer is large.
pub struct Line {
    now: bool,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        BUF.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let mut buf = BUF.lock().unwrap_or_else(PoisonError::into_inner);
        if self.now || buf.len() >= 64 * 1024 {
            write_out(&mut buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Buffered {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { now: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line { now: *meta.level() <= tracing::Level::WARN }
    }
}
