//! Prometheus metrics of the dataplane and the `/metrics` HTTP endpoint.
//!
//! Workers never touch the registry in the packet loop: each keeps plain
//! `u64` counters ([`WorkerStats`]) and calls [`WorkerMetrics::flush`] now and
//! then (every few hundred loop turns or when idle), which adds the deltas to
//! its own labelled series (`worker="N"`). Scrapes therefore see values at
//! most one flush old, and the loop pays no atomic per packet.
//!
//! Series (all `esprit_*`, documented in the README):
//! * `esprit_port_packets_total{port,dir,worker}`, `esprit_port_bytes_total{...}`
//! * `esprit_esp_packets_total{op,worker}` (op = encrypt | decrypt)
//! * `esprit_drops_total{reason,worker}`
//! * `esprit_handoff_queue_depth{worker}`, `esprit_handoff_drops_total{worker}`
//! * `esprit_punted_packets_total{dir,worker}` (dir = to_kernel | from_kernel)
//! * `esprit_worker_flushes_total{worker}`: times a worker published its
//!   counters (every 1024 loop turns, busy or idle): the worker's heartbeat,
//!   it stops moving only when the worker stops turning (the dead-worker alert).
//! * `esprit_active_sas{dir}`, `esprit_crypto_backend_info{backend}`
//! * `esprit_sa_table_capacity`: slots of the SA table (both directions share
//!   them), beside `esprit_active_sas` for the near-capacity alert.
//! * `esprit_sa_install_failures_total{reason}`: SAs whose crypto context
//!   could not be built as configured, once per SA: fell back to `ring`
//!   (`ipsec_mb_no_session`, `ipsec_mb_no_suite`) or refused, their packets
//!   dropped (`params_refused`, `key_rejected`)
//! * `esprit_sa_packets_total{spi,dir}`, `esprit_sa_bytes_total{spi,dir}`
//!   only when `metrics.per_sa` is on (label cardinality at 100k tunnels).
//!
//! `esprit_active_sas` and the per-SA series come from the SA table (its
//! per-SA counters), read once a second off the packet path.

use std::net::SocketAddr;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The `reason` labels of `esprit_sa_install_failures_total`.
pub const INSTALL_FAILURE_REASONS: [&str; 4] = ["ipsec_mb_no_session", "ipsec_mb_no_suite", "params_refused", "key_rejected"];

/// Ports by index in [`WorkerStats`].
pub const PORT_NAMES: [&str; 3] = ["outside", "inside", "punt"];

/// The registry and the metric families of one dataplane process.
#[derive(Clone)]
pub struct DataplaneMetrics {
    pub registry: Registry,
    port_packets: IntCounterVec,
    port_bytes: IntCounterVec,
    esp_packets: IntCounterVec,
    drops: IntCounterVec,
    handoff_depth: IntGaugeVec,
    handoff_drops: IntCounterVec,
    diet_lookups: IntCounterVec,
    punted: IntCounterVec,
    bypassed: IntCounterVec,
    flushes: IntCounterVec,
    pub active_sas: IntGaugeVec,
    pub sa_table_capacity: IntGauge,
    crypto_backend: IntGaugeVec,
    install_failures: IntCounterVec,
    sa_packets: Option<IntCounterVec>,
    sa_bytes: Option<IntCounterVec>,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(v.clone())).expect("metric registered once");
    v
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(v.clone())).expect("metric registered once");
    v
}

impl DataplaneMetrics {
    pub fn new(per_sa: bool) -> DataplaneMetrics {
        let r = Registry::new();
        DataplaneMetrics {
            port_packets: counter_vec(&r, "esprit_port_packets_total", "Packets received (dir=rx) or sent (dir=tx) per port and worker", &["port", "dir", "worker"]),
            port_bytes: counter_vec(&r, "esprit_port_bytes_total", "Bytes received or sent per port and worker", &["port", "dir", "worker"]),
            esp_packets: counter_vec(&r, "esprit_esp_packets_total", "Packets ESP-encrypted or decrypted (ICV verified) per worker", &["op", "worker"]),
            drops: counter_vec(&r, "esprit_drops_total", "Packets dropped, by reason and worker", &["reason", "worker"]),
            handoff_depth: gauge_vec(&r, "esprit_handoff_queue_depth", "Batches (of up to one receive burst) waiting in the handoff queue into a worker", &["worker"]),
            handoff_drops: counter_vec(&r, "esprit_handoff_drops_total", "Packets dropped because a worker's handoff queue was full", &["worker"]),
            diet_lookups: counter_vec(&r, "esprit_diet_esp_lookups_total", "Diet-ESP packets found by their SPI's low bits: one candidate SA (unique) or several, the newest taken (ambiguous)", &["result", "worker"]),
            punted: counter_vec(&r, "esprit_punted_packets_total", "Packets passed to (to_kernel) or from (from_kernel) the exception TAP", &["dir", "worker"]),
            bypassed: counter_vec(&r, "esprit_spd_bypass_packets_total", "Packets an SPD BYPASS entry passed in clear, out (inside to outside) or in", &["dir", "worker"]),
            flushes: counter_vec(&r, "esprit_worker_flushes_total", "Times a worker published its counters (every 1024 loop turns, busy or idle): its heartbeat", &["worker"]),
            active_sas: gauge_vec(&r, "esprit_active_sas", "SAs installed in the SA table, by direction", &["dir"]),
            sa_table_capacity: {
                let g = IntGauge::new("esprit_sa_table_capacity", "Slots of the SA table, shared by both directions").expect("valid metric definition");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            crypto_backend: gauge_vec(&r, "esprit_crypto_backend_info", "The AEAD backend in use (value 1)", &["backend"]),
            install_failures: counter_vec(
                &r,
                "esprit_sa_install_failures_total",
                "SAs whose crypto could not be set up as configured (fell back to ring, or refused), once per SA",
                &["reason"],
            ),
            sa_packets: per_sa.then(|| counter_vec(&r, "esprit_sa_packets_total", "Packets per SA (only with metrics.per_sa)", &["spi", "dir"])),
            sa_bytes: per_sa.then(|| counter_vec(&r, "esprit_sa_bytes_total", "Bytes per SA (only with metrics.per_sa)", &["spi", "dir"])),
            registry: r,
        }
    }

    pub fn set_crypto_backend(&self, name: &str) {
        self.crypto_backend.reset();
        self.crypto_backend.with_label_values(&[name]).set(1);
    }

    /// The per-SA packet and byte families, when enabled.
    pub fn per_sa(&self) -> Option<(&IntCounterVec, &IntCounterVec)> {
        self.sa_packets.as_ref().zip(self.sa_bytes.as_ref())
    }

    /// The handles of worker `id`; `drop_reasons` names the drop counters by
    /// index (the dataplane's `DropReason` table).
    pub fn worker(&self, id: usize, drop_reasons: &'static [&'static str]) -> WorkerMetrics {
        let w = id.to_string();
        let port = |v: &IntCounterVec, dir: &str| -> Vec<IntCounter> {
            PORT_NAMES.iter().map(|p| v.with_label_values(&[p, dir, &w])).collect()
        };
        WorkerMetrics {
            rx_pkts: port(&self.port_packets, "rx"),
            tx_pkts: port(&self.port_packets, "tx"),
            rx_bytes: port(&self.port_bytes, "rx"),
            tx_bytes: port(&self.port_bytes, "tx"),
            encrypted: self.esp_packets.with_label_values(&["encrypt", &w]),
            decrypted: self.esp_packets.with_label_values(&["decrypt", &w]),
            drops: drop_reasons.iter().map(|r| self.drops.with_label_values(&[*r, w.as_str()])).collect(),
            handoff_depth: self.handoff_depth.with_label_values(&[&w]),
            handoff_drops: self.handoff_drops.with_label_values(&[&w]),
            diet_lookups: [self.diet_lookups.with_label_values(&["unique", &w]), self.diet_lookups.with_label_values(&["ambiguous", &w])],
            punted_to_kernel: self.punted.with_label_values(&["to_kernel", &w]),
            punted_from_kernel: self.punted.with_label_values(&["from_kernel", &w]),
            bypassed_out: self.bypassed.with_label_values(&["out", &w]),
            bypassed_in: self.bypassed.with_label_values(&["in", &w]),
            flushes: self.flushes.with_label_values(&[&w]),
            install_failures: INSTALL_FAILURE_REASONS.iter().map(|r| self.install_failures.with_label_values(&[*r])).collect(),
            local: WorkerStats::new(drop_reasons.len()),
            flushed: WorkerStats::new(drop_reasons.len()),
        }
    }

    /// Current value of `esprit_port_packets_total` / `_bytes_total` for one
    /// port, direction and worker (for the live stats line).
    pub fn port_counters(&self, port: &str, dir: &str, worker: usize) -> (u64, u64) {
        let w = worker.to_string();
        (
            self.port_packets.with_label_values(&[port, dir, w.as_str()]).get(),
            self.port_bytes.with_label_values(&[port, dir, w.as_str()]).get(),
        )
    }

    /// Sum of `esprit_drops_total` for one worker.
    pub fn drops_of(&self, worker: usize, reasons: &[&str]) -> u64 {
        let w = worker.to_string();
        reasons.iter().map(|r| self.drops.with_label_values(&[*r, w.as_str()]).get()).sum()
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }
}

/// What a worker counts in its loop: plain integers, no atomics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub rx_pkts: [u64; 3],
    pub tx_pkts: [u64; 3],
    pub rx_bytes: [u64; 3],
    pub tx_bytes: [u64; 3],
    pub encrypted: u64,
    pub decrypted: u64,
    pub drops: Vec<u64>,
    pub handoff_drops: u64,
    /// Diet-ESP lookups by SPI bits: [unique, ambiguous].
    pub diet_lookups: [u64; 2],
    pub punted_to_kernel: u64,
    pub punted_from_kernel: u64,
    /// Packets an SPD BYPASS entry passed in clear, outbound and inbound.
    pub bypassed_out: u64,
    pub bypassed_in: u64,
    /// A gauge, not a counter: the current depth of this worker's inbox.
    pub handoff_depth: u64,
}

impl WorkerStats {
    pub fn new(reasons: usize) -> WorkerStats {
        WorkerStats { drops: vec![0; reasons], ..Default::default() }
    }
}

/// A worker's metric handles plus its local counters.
pub struct WorkerMetrics {
    rx_pkts: Vec<IntCounter>,
    tx_pkts: Vec<IntCounter>,
    rx_bytes: Vec<IntCounter>,
    tx_bytes: Vec<IntCounter>,
    encrypted: IntCounter,
    decrypted: IntCounter,
    drops: Vec<IntCounter>,
    handoff_depth: IntGauge,
    handoff_drops: IntCounter,
    diet_lookups: [IntCounter; 2],
    punted_to_kernel: IntCounter,
    punted_from_kernel: IntCounter,
    bypassed_out: IntCounter,
    bypassed_in: IntCounter,
    flushes: IntCounter,
    /// By [`INSTALL_FAILURE_REASONS`] (created up front: counting allocates nothing).
    install_failures: Vec<IntCounter>,
    /// Counted by the worker's loop.
    pub local: WorkerStats,
    flushed: WorkerStats,
}

impl WorkerMetrics {
    /// One SA whose crypto could not be set up as configured (an SA install
    /// event, off the packet path: counted at once, not at the next flush).
    pub fn count_install_failure(&self, reason: &str) {
        if let Some(i) = INSTALL_FAILURE_REASONS.iter().position(|r| *r == reason) {
            self.install_failures[i].inc();
        }
    }

    /// Publishes what was counted since the last flush.
    pub fn flush(&mut self) {
        fn add(c: &IntCounter, now: u64, then: &mut u64) {
            if now > *then {
                c.inc_by(now - *then);
                *then = now;
            }
        }
        let (l, f) = (&self.local, &mut self.flushed);
        for i in 0..3 {
            add(&self.rx_pkts[i], l.rx_pkts[i], &mut f.rx_pkts[i]);
            add(&self.tx_pkts[i], l.tx_pkts[i], &mut f.tx_pkts[i]);
            add(&self.rx_bytes[i], l.rx_bytes[i], &mut f.rx_bytes[i]);
            add(&self.tx_bytes[i], l.tx_bytes[i], &mut f.tx_bytes[i]);
        }
        add(&self.encrypted, l.encrypted, &mut f.encrypted);
        add(&self.decrypted, l.decrypted, &mut f.decrypted);
        for (i, c) in self.drops.iter().enumerate() {
            add(c, l.drops[i], &mut f.drops[i]);
        }
        add(&self.handoff_drops, l.handoff_drops, &mut f.handoff_drops);
        for i in 0..2 {
            add(&self.diet_lookups[i], l.diet_lookups[i], &mut f.diet_lookups[i]);
        }
        add(&self.punted_to_kernel, l.punted_to_kernel, &mut f.punted_to_kernel);
        add(&self.punted_from_kernel, l.punted_from_kernel, &mut f.punted_from_kernel);
        add(&self.bypassed_out, l.bypassed_out, &mut f.bypassed_out);
        add(&self.bypassed_in, l.bypassed_in, &mut f.bypassed_in);
        self.handoff_depth.set(l.handoff_depth as i64);
        self.flushes.inc();
    }
}

pub use metrics_http::MetricsServer;

impl DataplaneMetrics {
    /// Serves `GET /metrics` on `addr` (port 0 picks a free one) from the
    /// `esprit-metrics` thread, until the server is dropped.
    pub fn serve(&self, addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let m = self.clone();
        MetricsServer::start(addr, "esprit-metrics", move || m.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    static REASONS: &[&str] = &["no_sa", "replayed"];

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn flushed_worker_counters_appear_on_scrape() {
        let m = DataplaneMetrics::new(false);
        m.set_crypto_backend("aes-gcm");
        let mut w = m.worker(0, REASONS);
        w.local.rx_pkts[0] = 10;
        w.local.drops[1] = 3;
        assert!(!m.render().contains("esprit_port_packets_total{dir=\"rx\",port=\"outside\",worker=\"0\"} 10"), "not before flush");
        w.flush();
        w.local.rx_pkts[0] = 15;
        w.flush();
        w.flush();
        let text = m.render();
        assert!(text.contains("esprit_port_packets_total{dir=\"rx\",port=\"outside\",worker=\"0\"} 15"), "{text}");
        assert!(text.contains("esprit_drops_total{reason=\"replayed\",worker=\"0\"} 3"), "{text}");
        assert!(text.contains("esprit_crypto_backend_info{backend=\"aes-gcm\"} 1"), "{text}");
        // The heartbeat moves on every flush, counted or not (a worker
        // with no traffic is alive; one that stops flushing is not).
        assert!(text.contains("esprit_worker_flushes_total{worker=\"0\"} 3"), "{text}");
        assert!(!text.contains("esprit_sa_packets_total"), "per-SA series only on request");
        m.sa_table_capacity.set(65536);
        assert!(m.render().contains("esprit_sa_table_capacity 65536"), "the capacity gauge is exposed");
    }

    #[test]
    fn serves_metrics_over_http_and_404_elsewhere() {
        let m = DataplaneMetrics::new(true);
        let mut w = m.worker(1, REASONS);
        w.local.encrypted = 42;
        w.flush();
        let srv = m.serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let r = get(srv.local_addr(), "/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.contains("esprit_esp_packets_total{op=\"encrypt\",worker=\"1\"} 42"), "{r}");
        assert!(get(srv.local_addr(), "/").starts_with("HTTP/1.1 404"));
    }
}
