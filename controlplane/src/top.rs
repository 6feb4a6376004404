//! `esprit-ctl top`: a live, testpmd-like view of both planes.
//!
//! Sources, read once per refresh: the dataplane's `/metrics` (per worker
//! and port packets and bytes, drops by reason, ESP operations) and
//! esprit-ike's `stats` over the control socket (IKE SAs, half-open, Child
//! SAs, the handshake and failure counters). Rates are the difference of two
//! refreshes over the time between them; the first screen shows totals only.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde_json::{json, Value};

/// One sample of a Prometheus text exposition: `name{labels}` → value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples(pub BTreeMap<(String, Vec<(String, String)>), f64>);

impl Samples {
    /// Parses the text format (0.0.4) as our endpoints write it: comment
    /// lines, then `name{a="x",b="y"} value` or `name value`.
    pub fn parse(text: &str) -> Samples {
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(v) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            out.insert((name.to_string(), labels), v);
        }
        Samples(out)
    }

    /// Sum of `name`'s series whose labels include every `(k, v)` of `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, l), _)| n == name && want.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v)))
            .map(|(_, v)| v)
            .sum()
    }

    /// The values label `key` takes on `name`'s series.
    pub fn label_values(&self, name: &str, key: &str) -> Vec<String> {
        let mut v: Vec<String> =
            self.0.keys().filter(|(n, _)| n == name).filter_map(|(_, l)| l.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())).collect();
        v.sort_by(|a, b| a.parse::<u64>().ok().cmp(&b.parse::<u64>().ok()).then(a.cmp(b)));
        v.dedup();
        v
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    // Our label values never hold `",` (reasons, port and worker names).
    let mut out = Vec::new();
    for part in s.split("\",") {
        if let Some((k, v)) = part.split_once("=\"") {
            out.push((k.trim_matches(',').to_string(), v.trim_end_matches('"').replace("\\\"", "\"").replace("\\\\", "\\")));
        }
    }
    out.sort();
    out
}

/// What one refresh read.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The dataplane's scrape, or why there is none.
    pub dataplane: Result<Samples, String>,
    /// esprit-ike's `stats` answer, or why there is none.
    pub ike: Result<Value, String>,
}

/// The rows and totals of one screen, as numbers (the JSON form of `top`).
pub fn view(now: &Snapshot, before: Option<(&Snapshot, Duration)>) -> Value {
    let rate = |cur: f64, old: Option<f64>, dt: f64| old.map(|o| ((cur - o) / dt).max(0.0));
    let mut out = json!({});
    match &now.dataplane {
        Ok(s) => {
            let old = before.and_then(|(b, dt)| b.dataplane.as_ref().ok().map(|o| (o, dt.as_secs_f64().max(1e-3))));
            let mut rows = Vec::new();
            for w in s.label_values("esprit_port_packets_total", "worker") {
                for port in s.label_values("esprit_port_packets_total", "port") {
                    let mut row = json!({ "worker": w.parse::<u64>().unwrap_or(0), "port": port });
                    for dir in ["rx", "tx"] {
                        let want = [("worker", w.as_str()), ("port", port.as_str()), ("dir", dir)];
                        let p = s.sum("esprit_port_packets_total", &want);
                        let b = s.sum("esprit_port_bytes_total", &want);
                        row[format!("{dir}_packets")] = json!(p as u64);
                        if let Some((o, dt)) = old {
                            let pr = rate(p, Some(o.sum("esprit_port_packets_total", &want)), dt).unwrap_or(0.0);
                            let br = rate(b, Some(o.sum("esprit_port_bytes_total", &want)), dt).unwrap_or(0.0);
                            row[format!("{dir}_mpps")] = json!(pr / 1e6);
                            row[format!("{dir}_gbps")] = json!(br * 8.0 / 1e9);
                        }
                    }
                    rows.push(row);
                }
            }
            let mut drops = Vec::new();
            for w in s.label_values("esprit_drops_total", "worker") {
                for reason in s.label_values("esprit_drops_total", "reason") {
                    let want = [("worker", w.as_str()), ("reason", reason.as_str())];
                    let n = s.sum("esprit_drops_total", &want);
                    let per_s = old.and_then(|(o, dt)| rate(n, Some(o.sum("esprit_drops_total", &want)), dt));
                    if n > 0.0 {
                        drops.push(json!({ "worker": w.parse::<u64>().unwrap_or(0), "reason": reason, "packets": n as u64, "per_sec": per_s }));
                    }
                }
            }
            for w in s.label_values("esprit_handoff_drops_total", "worker") {
                let want = [("worker", w.as_str())];
                let n = s.sum("esprit_handoff_drops_total", &want);
                let per_s = old.and_then(|(o, dt)| rate(n, Some(o.sum("esprit_handoff_drops_total", &want)), dt));
                if n > 0.0 {
                    drops.push(json!({ "worker": w.parse::<u64>().unwrap_or(0), "reason": "handoff_full", "packets": n as u64, "per_sec": per_s }));
                }
            }
            out["dataplane"] = json!({ "ports": rows, "drops": drops });
        }
        Err(e) => out["dataplane"] = json!({ "error": e }),
    }
    match &now.ike {
        Ok(st) => {
            let handshakes = counter_sum(st, "esprit_ike_handshakes_total");
            let failures = counter_sum(st, "esprit_ike_handshake_failures_total");
            let old = before.and_then(|(b, dt)| b.ike.as_ref().ok().map(|o| (o, dt.as_secs_f64().max(1e-3))));
            out["ike"] = json!({
                "ike_sas": st["ike_sas"],
                "ike_sas_established": st["ike_sas_established"],
                "half_open": st["half_open"],
                "child_sas": st["child_sas"],
                "handshakes": handshakes,
                "handshake_failures": failures,
                "handshakes_per_sec": old.map(|(o, dt)| ((handshakes - counter_sum(o, "esprit_ike_handshakes_total")) as f64 / dt).max(0.0)),
                "failures_per_sec": old.map(|(o, dt)| ((failures - counter_sum(o, "esprit_ike_handshake_failures_total")) as f64 / dt).max(0.0)),
            });
        }
        Err(e) => out["ike"] = json!({ "error": e }),
    }
    out
}

fn counter_sum(stats: &Value, name: &str) -> i64 {
    stats["counters"]
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{"))).filter_map(|(_, v)| v.as_i64()).sum())
        .unwrap_or(0)
}

/// A JSON value as text (serde_json's Display ignores widths).
fn t(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn f(v: &Value, width: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:>width$.3}"),
        None => format!("{:>width$}", "-"),
    }
}

/// The screen for a [`view`], like testpmd's `show port stats`.
pub fn render(v: &Value, header: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{header}");
    let _ = writeln!(o);
    let dp = &v["dataplane"];
    if let Some(e) = dp["error"].as_str() {
        let _ = writeln!(o, "dataplane: not reachable ({e})");
    } else {
        let _ = writeln!(o, "{:<6} {:<8} {:>9} {:>9} {:>14} {:>9} {:>9} {:>14}", "worker", "port", "rx Mpps", "rx Gbps", "rx packets", "tx Mpps", "tx Gbps", "tx packets");
        let (mut trp, mut trg, mut ttp, mut ttg, mut trn, mut ttn) = (0.0, 0.0, 0.0, 0.0, 0u64, 0u64);
        for r in dp["ports"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "{:<6} {:<8} {} {} {:>14} {} {} {:>14}",
                t(&r["worker"]),
                t(&r["port"]),
                f(&r["rx_mpps"], 9),
                f(&r["rx_gbps"], 9),
                t(&r["rx_packets"]),
                f(&r["tx_mpps"], 9),
                f(&r["tx_gbps"], 9),
                t(&r["tx_packets"])
            );
            trp += r["rx_mpps"].as_f64().unwrap_or(0.0);
            trg += r["rx_gbps"].as_f64().unwrap_or(0.0);
            ttp += r["tx_mpps"].as_f64().unwrap_or(0.0);
            ttg += r["tx_gbps"].as_f64().unwrap_or(0.0);
            trn += r["rx_packets"].as_u64().unwrap_or(0);
            ttn += r["tx_packets"].as_u64().unwrap_or(0);
        }
        let _ = writeln!(o, "{:<15} {trp:>9.3} {trg:>9.3} {trn:>14} {ttp:>9.3} {ttg:>9.3} {ttn:>14}", "total");
        let _ = writeln!(o);
        let drops = dp["drops"].as_array().cloned().unwrap_or_default();
        if drops.is_empty() {
            let _ = writeln!(o, "drops: none");
        } else {
            let _ = writeln!(o, "{:<6} {:<24} {:>12} {:>14}", "worker", "drop reason", "per second", "packets");
            for d in &drops {
                let _ = writeln!(o, "{:<6} {:<24} {} {:>14}", t(&d["worker"]), t(&d["reason"]), f(&d["per_sec"], 12), t(&d["packets"]));
            }
        }
    }
    let _ = writeln!(o);
    let ike = &v["ike"];
    if let Some(e) = ike["error"].as_str() {
        let _ = writeln!(o, "esprit-ike: not reachable ({e})");
    } else {
        let _ = writeln!(
            o,
            "IKE SAs {} (established {}, half-open {})  Child SAs {}  handshakes {} ({}/s)  failures {} ({}/s)",
            t(&ike["ike_sas"]),
            t(&ike["ike_sas_established"]),
            t(&ike["half_open"]),
            t(&ike["child_sas"]),
            t(&ike["handshakes"]),
            f(&ike["handshakes_per_sec"], 0),
            t(&ike["handshake_failures"]),
            f(&ike["failures_per_sec"], 0)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "# HELP esprit_port_packets_total x\n# TYPE esprit_port_packets_total counter\n\
esprit_port_packets_total{dir=\"rx\",port=\"inside\",worker=\"0\"} 1000\n\
esprit_port_packets_total{dir=\"tx\",port=\"outside\",worker=\"0\"} 900\n\
esprit_port_bytes_total{dir=\"rx\",port=\"inside\",worker=\"0\"} 100000\n\
esprit_port_bytes_total{dir=\"tx\",port=\"outside\",worker=\"0\"} 120000\n\
esprit_drops_total{reason=\"no_sa\",worker=\"0\"} 100\n\
esprit_drops_total{reason=\"replayed\",worker=\"0\"} 0\n";

    fn later() -> String {
        A.replace("} 1000\n", "} 3001000\n").replace("} 900\n", "} 2000900\n").replace("} 120000\n", "} 250120000\n").replace("} 100\n", "} 1000100\n")
    }

    fn ike(handshakes: i64) -> Value {
        json!({ "ike_sas": 3, "ike_sas_established": 2, "half_open": 1, "child_sas": 2,
                "counters": { "esprit_ike_handshakes_total{role=initiator}": 1, "esprit_ike_handshakes_total{role=responder}": handshakes - 1 } })
    }

    #[test]
    fn parses_the_text_format_and_sums_by_labels() {
        let s = Samples::parse(A);
        assert_eq!(s.sum("esprit_port_packets_total", &[("worker", "0")]), 1900.0);
        assert_eq!(s.sum("esprit_port_packets_total", &[("dir", "rx"), ("port", "inside")]), 1000.0);
        assert_eq!(s.label_values("esprit_port_packets_total", "port"), vec!["inside", "outside"]);
        assert_eq!(Samples::parse("up 1\n").sum("up", &[]), 1.0);
    }

    #[test]
    fn rates_are_differences_over_the_interval_and_only_nonzero_drops_show() {
        let a = Snapshot { dataplane: Ok(Samples::parse(A)), ike: Ok(ike(10)) };
        let b = Snapshot { dataplane: Ok(Samples::parse(&later())), ike: Ok(ike(30)) };
        let first = view(&a, None);
        assert!(first["dataplane"]["ports"][0]["rx_mpps"].is_null(), "no rate before two samples");
        let v = view(&b, Some((&a, Duration::from_secs(2))));
        let rows = v["dataplane"]["ports"].as_array().unwrap();
        let inside = rows.iter().find(|r| r["port"] == "inside").unwrap();
        let outside = rows.iter().find(|r| r["port"] == "outside").unwrap();
        assert_eq!(inside["rx_mpps"].as_f64().unwrap(), 1.5);
        assert_eq!(outside["tx_mpps"].as_f64().unwrap(), 1.0);
        assert_eq!(outside["tx_gbps"].as_f64().unwrap(), 1.0);
        let drops = v["dataplane"]["drops"].as_array().unwrap();
        assert_eq!(drops.len(), 1, "{drops:?}");
        assert_eq!(drops[0]["reason"], "no_sa");
        assert_eq!(drops[0]["per_sec"].as_f64().unwrap(), 500000.0);
        assert_eq!(v["ike"]["handshakes_per_sec"].as_f64().unwrap(), 10.0);
        let screen = render(&v, "esprit-ctl top");
        assert!(screen.contains("total               1.500     0.000        3001000     1.000     1.000        2000900"), "{screen}");
        assert!(screen.contains("0      inside       1.500"), "{screen}");
        assert!(screen.contains("no_sa"), "{screen}");
        assert!(screen.contains("IKE SAs 3 (established 2, half-open 1)  Child SAs 2  handshakes 30 (10.000/s)"), "{screen}");
    }

    #[test]
    fn an_unreachable_source_is_named_not_fatal() {
        let s = Snapshot { dataplane: Err("connection refused".into()), ike: Err("no socket".into()) };
        let screen = render(&view(&s, None), "h");
        assert!(screen.contains("dataplane: not reachable (connection refused)"), "{screen}");
        assert!(screen.contains("esprit-ike: not reachable (no socket)"), "{screen}");
    }
}
