//! Prometheus metrics of the control plane and its `/metrics` listener (the
//! dataplane's pattern: one registry, served by the `metrics-http` crate).
//!
//! Series (all `esprit_ike_*`):
//! * `esprit_ike_handshakes_total{role}`: IKE SAs established (role =
//!   initiator | responder).
//! * `esprit_ike_ppk_handshakes_total{role}`: of those, IKE SAs whose keys
//!   have an RFC 8784 post-quantum preshared key mixed in.
//! * `esprit_ike_handshake_failures_total{reason}`: IKE SAs that went down
//!   before they were established (reason = timeout | auth_failed | the
//!   refusing Notify's name | deleted).
//! * `esprit_ike_child_sa_failures_total{reason}`: Child SAs refused (the
//!   Notify) or not programmable into the SA table (reason = table).
//! * `esprit_ike_rekeys_total{kind}`: kind = child | ike.
//! * `esprit_ike_sas{state}`: IKE SAs held, by the endpoint's state name.
//! * `esprit_ike_child_sas`: Child SAs programmed in the table.
//! * `esprit_ike_half_open`: responder IKE SAs waiting for IKE_AUTH.
//! * `esprit_ike_retransmits_total`: datagrams sent bit-identical to the
//!   previous one to the same peer (retransmitted requests and cached
//!   responses to retransmitted requests; RFC 7296 §2.1).
//! * `esprit_ike_datagrams_total{dir}`: IKE datagrams received / sent.
//! * `esprit_ike_orphan_sas`: SAs of an earlier esprit-ike awaiting deletion.
//! * `esprit_ike_parallel_key_exchanges_total{result}`: responder key
//!   exchanges of IKE_SA_INIT bursts computed on the rayon pool (result =
//!   used | discarded: the request was refused or answered with a cookie).
//! * `esprit_ike_auth_jobs_total{result}`: IKE_AUTH signature jobs (our
//!   signature and/or the check of the peer's) run on the rayon pool, by
//!   result (done | refused: the peer's signature or chain did not verify).
//! * `esprit_ike_auth_jobs_in_flight`: such jobs spawned and not yet back.
//! * `esprit_ike_pq_sas`: established IKE SAs whose keys include ML-KEM (in
//!   IKE_SA_INIT or as an RFC 9370 additional key exchange).
//! * `esprit_ike_init_requests_total{result}`: IKE_SA_INIT requests by the
//!   check that decided them (RFC 7296 §2.6, in the endpoint's order):
//!   retransmit, half_open_limit, peer_limit, cookie_missing (answered
//!   with a COOKIE), cookie_invalid (a forged or expired cookie, answered
//!   with a fresh one), refused (proposal, KE group, syntax), admitted
//!   (the only ones that cost a key exchange).
//! * `esprit_ike_key_exchanges_total{op}`: key exchanges computed by the
//!   crypto provider, on the pool or inline (op = respond: answering a
//!   peer's KE payload, in IKE_SA_INIT or a rekey; initiate: our own).
//! * `esprit_ike_datagrams_dropped_total{queue,reason}`: datagrams a socket
//!   reader dropped (reason = queue_full: the loop's queue, `init` for
//!   IKE_SA_INIT requests or `sa` for the rest, was full).
//! * `esprit_ike_queue_depth{queue}`: inputs waiting for the event loop
//!   (init, sa, control, auth).
use std::net::SocketAddr;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The control plane's metric families.
#[derive(Clone)]
pub struct IkeMetrics {
    pub registry: Registry,
    pub handshakes: IntCounterVec,
    pub ppk_handshakes: IntCounterVec,
    pub handshake_failures: IntCounterVec,
    pub child_failures: IntCounterVec,
    pub rekeys: IntCounterVec,
    pub ike_sas: IntGaugeVec,
    pub child_sas: IntGauge,
    pub half_open: IntGauge,
    pub retransmits: IntCounter,
    pub datagrams: IntCounterVec,
    pub orphans: IntGauge,
    pub parallel_ke: IntCounterVec,
    pub auth_jobs: IntCounterVec,
    pub auth_jobs_in_flight: IntGauge,
    /// RFC 8598 domains accepted / refused (initiator) or pushed (responder).
    pub split_dns: IntCounterVec,
    /// Child SAs installed with an ipsecme feature (iiv, label).
    pub child_features: IntCounterVec,
    pub pq_ike_sas: IntGauge,
    pub init_requests: IntCounterVec,
    pub key_exchanges: IntCounterVec,
    pub datagrams_dropped: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    /// State store (`crate::store`): batches written, records by op
    /// (put, delete), failed batches, seconds spent writing, IKE SAs
    /// restored and Child SAs adopted at start.
    pub store_batches: IntCounter,
    pub store_records: IntCounterVec,
    pub store_errors: IntCounter,
    pub store_seconds: prometheus::Counter,
    pub store_restored: IntCounter,
    pub store_adopted: IntCounter,
    pub cluster_takeovers: IntCounter,
    pub cluster_claimed: IntCounter,
    /// EAP through RADIUS (`crate::aaa`): AAA outcomes (accept, reject,
    /// challenge, unreachable) and the RADIUS client's own counters.
    pub eap: IntCounterVec,
    pub radius: IntCounterVec,
    /// RFC 9838: members per group (GCKS), registrations by result,
    /// GSA_REKEYs sent and received by result or rejection reason.
    pub group_members: IntGaugeVec,
    pub group_registrations: IntCounterVec,
    pub group_rekeys: IntCounterVec,
    /// RFC 4555 MOBIKE: address updates by outcome (moved, check_started,
    /// unchanged) or refusal (not_negotiated, malformed, unexpected_nat,
    /// cookie_mismatch, table_error).
    pub mobike: IntCounterVec,
}

/// Registration of a fixed, valid definition cannot fail.
#[derive(Debug, thiserror::Error)]
#[error("metric registration: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl IkeMetrics {
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
            let v = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let handshakes = cv("esprit_ike_handshakes_total", "IKE SAs established, by our role", &["role"])?;
        let ppk_handshakes = cv("esprit_ike_ppk_handshakes_total", "IKE SAs established with an RFC 8784 PPK, by our role", &["role"])?;
        let handshake_failures =
            cv("esprit_ike_handshake_failures_total", "IKE SAs that went down before they were established, by reason", &["reason"])?;
        let child_failures = cv("esprit_ike_child_sa_failures_total", "Child SAs refused or not programmable, by reason", &["reason"])?;
        let rekeys = cv("esprit_ike_rekeys_total", "Completed rekeys, by kind (child, ike)", &["kind"])?;
        let split_dns = cv("esprit_ike_split_dns_domains_total", "RFC 8598 domains: accepted, refused (initiator) or pushed (responder)", &["result"])?;
        let child_features = cv("esprit_ike_child_sa_features_total", "Child SAs installed with an extension: iiv (RFC 8750), label (RFC 9478)", &["feature"])?;
        let datagrams = cv("esprit_ike_datagrams_total", "IKE datagrams received (dir=rx) and sent (dir=tx)", &["dir"])?;
        let parallel_ke = cv(
            "esprit_ike_parallel_key_exchanges_total",
            "Responder key exchanges of IKE_SA_INIT bursts computed in parallel, by result (used, discarded)",
            &["result"],
        )?;
        let auth_jobs = cv(
            "esprit_ike_auth_jobs_total",
            "IKE_AUTH signature jobs run on the rayon pool, by result (done, refused: the peer's signature did not verify)",
            &["result"],
        )?;
        let init_requests = cv(
            "esprit_ike_init_requests_total",
            "IKE_SA_INIT requests by the check that decided them (admitted ones cost a key exchange)",
            &["result"],
        )?;
        let key_exchanges = cv("esprit_ike_key_exchanges_total", "Key exchanges computed, by op (respond, initiate)", &["op"])?;
        let datagrams_dropped = cv(
            "esprit_ike_datagrams_dropped_total",
            "Datagrams dropped before the event loop saw them, by queue (init, sa) and reason (queue_full)",
            &["queue", "reason"],
        )?;
        let group_registrations = cv(
            "esprit_ike_group_registrations_total",
            "G-IKEv2 registrations: GCKS ok or the refusal's notify; GM joined",
            &["result"],
        )?;
        let group_rekeys = cv(
            "esprit_ike_group_rekeys_total",
            "G-IKEv2 GSA_REKEY datagrams sent (direction=sent) and received (accepted, or the rejection reason), by group",
            &["direction", "result"],
        )?;
        let group_members = IntGaugeVec::new(Opts::new("esprit_ike_group_members", "G-IKEv2 members registered, by group (GCKS)"), &["group"])?;
        r.register(Box::new(group_members.clone()))?;
        let ike_sas = IntGaugeVec::new(Opts::new("esprit_ike_sas", "IKE SAs held, by state"), &["state"])?;
        r.register(Box::new(ike_sas.clone()))?;
        let queue_depth = IntGaugeVec::new(Opts::new("esprit_ike_queue_depth", "Inputs waiting for the event loop, by queue (init, sa, control, auth)"), &["queue"])?;
        r.register(Box::new(queue_depth.clone()))?;
        let gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let child_sas = gauge("esprit_ike_child_sas", "Child SAs programmed into the SA table")?;
        let auth_jobs_in_flight = gauge("esprit_ike_auth_jobs_in_flight", "IKE_AUTH signature jobs spawned on the rayon pool and not yet back")?;
        let half_open = gauge("esprit_ike_half_open", "Responder IKE SAs waiting for IKE_AUTH")?;
        let orphans = gauge("esprit_ike_orphan_sas", "SA table slots of an earlier esprit-ike awaiting deletion")?;
        let pq_ike_sas = gauge("esprit_ike_pq_sas", "Established IKE SAs with an ML-KEM key exchange")?;
        let retransmits = IntCounter::new("esprit_ike_retransmits_total", "IKE datagrams sent again, bit-identical")?;
        r.register(Box::new(retransmits.clone()))?;
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let store_batches = counter("esprit_ike_store_batches_total", "State store batches written (one per event-loop turn with changes)")?;
        let store_errors = counter("esprit_ike_store_errors_total", "State store batches that failed")?;
        let store_restored = counter("esprit_ike_store_restored_total", "IKE SAs restored from the state store at start")?;
        let store_adopted = counter("esprit_ike_store_adopted_total", "Child SAs adopted from the SA table at start")?;
        let cluster_takeovers = counter("esprit_ike_cluster_takeovers_total", "Scans that claimed IKE SAs of a dead or drained cluster node")?;
        let cluster_claimed = counter("esprit_ike_cluster_claimed_total", "IKE SAs claimed from dead or drained cluster nodes")?;
        let store_records = cv("esprit_ike_store_records_total", "State store records written, by op (put, delete)", &["op"])?;
        let store_seconds = prometheus::Counter::new("esprit_ike_store_write_seconds_total", "Time spent writing state store batches")?;
        r.register(Box::new(store_seconds.clone()))?;
        let eap = cv("esprit_ike_eap_total", "EAP round trips through the AAA server, by outcome (challenge, accept, reject, unreachable)", &["result"])?;
        let mobike = cv(
            "esprit_ike_mobike_updates_total",
            "RFC 4555 MOBIKE address updates, by result: moved, check_started, unchanged, or why refused (not_negotiated, malformed, unexpected_nat, cookie_mismatch, table_error)",
            &["result"],
        )?;
        let radius = cv(
            "esprit_ike_radius_total",
            "RADIUS client events: requests, retransmits, failovers (to the next server), timeouts (no server answered), bad_replies (dropped)",
            &["event"],
        )?;
        Ok(Self {
            registry: r,
            mobike,
            eap,
            radius,
            handshakes,
            ppk_handshakes,
            handshake_failures,
            parallel_ke,
            auth_jobs,
            auth_jobs_in_flight,
            child_failures,
            rekeys,
            ike_sas,
            child_sas,
            half_open,
            retransmits,
            datagrams,
            orphans,
            split_dns,
            child_features,
            group_members,
            group_registrations,
            group_rekeys,
            pq_ike_sas,
            init_requests,
            key_exchanges,
            datagrams_dropped,
            queue_depth,
            store_batches,
            store_records,
            store_errors,
            store_seconds,
            store_restored,
            store_adopted,
            cluster_takeovers,
            cluster_claimed,
        })
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail; an empty
        // answer would show it.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

pub use metrics_http::MetricsServer;

impl IkeMetrics {
    /// Serves `GET /metrics` on `addr` (port 0 picks a free one) from the
    /// `ike-metrics` thread, until the server is dropped.
    pub fn serve(&self, addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let m = self.clone();
        MetricsServer::start(addr, "ike-metrics", move || m.render())
    }
}
