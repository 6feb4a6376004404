//! Text views of the daemon's JSON answers, in the spirit of
//! `swanctl --list-sas`: one block per IKE SA, indented Child SAs with
//! SPIs, algorithms, selectors and the dataplane's counters.
use std::fmt::Write;

use serde_json::Value;

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    v.as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

/// `list-sas` as text.
pub fn list_sas(data: &Value) -> String {
    let mut o = String::new();
    let empty = Vec::new();
    let sas = data["ike_sas"].as_array().unwrap_or(&empty);
    if sas.is_empty() {
        o.push_str("no IKE SAs\n");
    }
    for i in sas {
        let role = if i["initiator"].as_bool() == Some(true) { "initiator" } else { "responder" };
        let _ = writeln!(
            o,
            "{}: #{}, {}, IKEv2, {}_i {}_r ({role})",
            s(&i["connection"]),
            s(&i["ike_sa"]),
            s(&i["state"]).to_uppercase(),
            s(&i["spi_i"]),
            s(&i["spi_r"])
        );
        let _ = writeln!(o, "  local  '{}' @ {}", s(&i["local_id"]), s(&i["local"]));
        let vips = list(&i["virtual_ips"]);
        let _ = writeln!(o, "  remote '{}' @ {}{}", s(&i["remote_id"]), s(&i["remote"]), if vips.is_empty() { String::new() } else { format!(" [{vips}]") });
        if let Some(eap) = i["eap_identity"].as_str() {
            let _ = writeln!(o, "  remote EAP identity '{eap}'");
        }
        if !i["suite"].is_null() {
            // KE methods joined by `+`: IKE_SA_INIT's, then RFC 9370's.
            let pq = if i["pq"].as_bool() == Some(true) { " (post-quantum)" } else { "" };
            let _ = writeln!(o, "  {}{pq}", s(&i["suite"]));
        }
        if !i["established_secs"].is_null() {
            let nat = match (i["nat_local"].as_bool(), i["nat_remote"].as_bool()) {
                (Some(true), _) => ", NAT: local behind NAT",
                (_, Some(true)) => ", NAT: remote behind NAT",
                _ => "",
            };
            let ppk = if i["ppk"].as_bool() == Some(true) { ", PPK" } else { "" };
            let _ = writeln!(o, "  established {}s ago{nat}{ppk}", s(&i["established_secs"]));
        }
        if !i["mobike"].is_null() {
            let m = &i["mobike"];
            let pending = if m["pending"].is_null() { String::new() } else { format!(", checking {}", s(&m["pending"])) };
            let addrs = list(&m["peer_addresses"]);
            let addrs = if addrs.is_empty() { String::new() } else { format!(", peer addresses {addrs}") };
            let _ = writeln!(o, "  MOBIKE, {} move(s){pending}{addrs}", s(&m["moves"]));
        }
        let domains = list(&i["dns_domains"]);
        if !domains.is_empty() {
            let _ = writeln!(o, "  split DNS: {domains}");
        }
        for ta in i["dnssec_tas"].as_array().unwrap_or(&empty) {
            let _ = writeln!(o, "  DNSSEC TA: {}", s(ta));
        }
        if !i["auth_scheme"].is_null() {
            let _ = writeln!(o, "  signed with {}", s(&i["auth_scheme"]));
        }
        if !i["peer_auth_methods"].is_null() {
            let _ = writeln!(o, "  peer accepts: {}", list(&i["peer_auth_methods"]));
        }
        let fams = list(&i["peer_allowed_families"]);
        if !fams.is_empty() {
            let _ = writeln!(o, "  peer assigns: {fams}");
        }
        for c in i["child_sas"].as_array().unwrap_or(&empty) {
            let mode = s(&c["mode"]);
            let encap = if c["udp_encap"].as_bool() == Some(true) { "-in-UDP" } else { "" };
            let _ = writeln!(
                o,
                "  {}: #{}, {}, {mode}{encap}, ESP SPIs: {}_i {}_o",
                s(&i["connection"]),
                s(&c["child_sa"]),
                s(&c["state"]),
                s(&c["spi_in"]),
                s(&c["spi_out"])
            );
            if c["encr"].is_null() {
                continue;
            }
            let esn = if c["esn"].as_bool() == Some(true) { "ESN" } else { "no ESN" };
            let pfs = if c["pfs"].is_null() { String::new() } else { format!(", PFS {}", s(&c["pfs"])) };
            let iiv = if c["iiv"].as_bool() == Some(true) { ", implicit IV" } else { "" };
            let addke = list(&c["additional_ke"]);
            let addke = if addke.is_empty() { String::new() } else { format!(", ADDKE {}", addke.replace(' ', "+")) };
            let _ = writeln!(o, "    {}, {esn}{pfs}{addke}{iiv}", s(&c["encr"]));
            if !c["outer_remote"].is_null() {
                let _ = writeln!(o, "    outer {} <-> {}", s(&c["outer_local"]), s(&c["outer_remote"]));
            }
            if !c["label"].is_null() {
                let _ = writeln!(o, "    label {}", s(&c["label"]));
            }
            if !c["compression"].is_null() {
                let _ = writeln!(o, "    compression {}", s(&c["compression"]));
            }
            let rekey = c["rekey_secs"].as_u64().filter(|r| *r > 0).map(|r| format!(", rekey at {r}s")).unwrap_or_default();
            let _ = writeln!(o, "    installed {}s ago{rekey}", s(&c["installed_secs"]));
            let last = if c["idle_secs"].is_null() { "no traffic seen".to_string() } else { format!("traffic {}s ago", s(&c["idle_secs"])) };
            // "ipsec-mb", "ring+fallback", ...; none until a dataplane built it.
            let crypto = |v: &Value| match list(v) {
                l if l.is_empty() => "not yet in the dataplane".to_string(),
                l => l.replace(' ', "+"),
            };
            let _ = writeln!(
                o,
                "    in  {}, {:>10} bytes, {:>8} packets, {last}, crypto {}",
                s(&c["spi_in"]),
                s(&c["in_bytes"]),
                s(&c["in_pkts"]),
                crypto(&c["in_backend"])
            );
            let _ = writeln!(
                o,
                "    out {}, {:>10} bytes, {:>8} packets, next seq {}, crypto {}",
                s(&c["spi_out"]),
                s(&c["out_bytes"]),
                s(&c["out_pkts"]),
                s(&c["seq_next"]),
                crypto(&c["out_backend"])
            );
            let _ = writeln!(o, "    local  {}", list(&c["ts_local"]));
            let _ = writeln!(o, "    remote {}", list(&c["ts_remote"]));
        }
    }
    let orphans = data["orphans"].as_array().map(Vec::len).unwrap_or(0);
    if orphans > 0 {
        let _ = writeln!(o, "{orphans} SA slot(s) of an earlier esprit-ike awaiting deletion: {}", data["orphans"].as_array().map(|a| a.iter().map(|x| s(&x["spi"])).collect::<Vec<_>>().join(" ")).unwrap_or_default());
    }
    o
}

/// `esprit-ctl cluster status` as text: one line per member.
pub fn cluster_status(d: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} (slot {}, lease {}{}), {} IKE SA(s) stored, {} without an owner, {} fenced write(s)",
        d["node"].as_str().unwrap_or("?"),
        d["slot"],
        d["lease"].as_str().unwrap_or("?"),
        if d["draining"].as_bool() == Some(true) { ", draining" } else { "" },
        d["stored_ike_sas"],
        d["unowned_ike_sas"],
        d["fenced_writes"],
    );
    for m in d["members"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<16} slot {:>3}  lease {} ttl {:>4}s  {:>7} IKE SA(s){}",
            m["node"].as_str().unwrap_or("?"),
            m["slot"],
            m["lease"].as_str().unwrap_or("?"),
            m["lease_ttl_secs"],
            m["owned_ike_sas"],
            if m["draining"].as_bool() == Some(true) { "  draining" } else { "" },
        );
    }
    if let Some(t) = d["last_takeover"].as_object() {
        let _ = writeln!(out, "  last takeover: {} IKE SA(s) claimed in {} ms at {}", t["claimed"], t["took_ms"], t["at_unix"]);
    }
    out
}

/// `list-groups` as text: the groups served (GCKS) with their members and
/// Sender-IDs, and the groups joined (GM), with KEK/TEK generations and
/// the group SAs in the table.
pub fn list_groups(data: &Value) -> String {
    let mut o = String::new();
    let empty = Vec::new();
    let served = data["served"].as_array().unwrap_or(&empty);
    let joined = data["joined"].as_array().unwrap_or(&empty);
    if served.is_empty() && joined.is_empty() {
        o.push_str("no groups\n");
    }
    for g in served {
        let _ = writeln!(
            o,
            "{} (id {}): GCKS, KEK gen {} spi {} next msgid {}, TEK gen {} spis {}, {} member(s), {} SID(s) allocated",
            s(&g["name"]),
            s(&g["id"]),
            s(&g["kek_generation"]),
            s(&g["kek_spi"]),
            s(&g["next_message_id"]),
            s(&g["tek_generation"]),
            list(&g["tek_spis"]),
            g["members"].as_array().map_or(0, Vec::len),
            s(&g["sids_allocated"])
        );
        for m in g["members"].as_array().unwrap_or(&empty) {
            let _ = writeln!(o, "  member '{}' {} SIDs [{}]", s(&m["id"]), if m["sender"].as_bool() == Some(true) { "sender" } else { "receiver" }, list(&m["sender_ids"]));
        }
        let _ = writeln!(o, "  registrations ok {} refused {}, rekeys sent {}, exclusions {}", s(&g["registrations_ok"]), s(&g["registrations_refused"]), s(&g["rekeys_sent"]), s(&g["exclusions"]));
    }
    for g in joined {
        let _ = writeln!(
            o,
            "{}: GM, {}, KEK spi {} last msgid {}, TEK gen {}, SIDs [{}], rekeys accepted {} rejected {}, re-registrations {}",
            s(&g["id"]),
            if g["registered"].as_bool() == Some(true) { "REGISTERED" } else { "NOT REGISTERED" },
            s(&g["kek_spi"]),
            s(&g["last_message_id"]),
            s(&g["tek_generation"]),
            list(&g["sender_ids"]),
            s(&g["rekeys_accepted"]),
            s(&g["rekeys_rejected"]),
            s(&g["reregistrations"])
        );
        for t in g["sas"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                o,
                "  TEK {} gen {}: {} -> {}, in {} pkts, out {} pkts{}",
                s(&t["spi"]),
                s(&t["generation"]),
                s(&t["src"]),
                s(&t["dst"]),
                s(&t["in_pkts"]),
                s(&t["out_pkts"]),
                match (&t["sender_id"], &t["outbound"]) {
                    (Value::Number(n), Value::Bool(true)) => format!(", sending as SID {n}"),
                    _ => String::new(),
                }
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_an_ike_sa_with_its_child_sa_and_counters() {
        let v = serde_json::json!({ "ike_sas": [{
            "ike_sa": 1, "connection": "rw", "state": "Established", "initiator": false,
            "spi_i": "0011223344556677", "spi_r": "8899aabbccddeeff",
            "local": "172.16.9.1:4500", "remote": "172.16.9.2:4500", "local_id": "gw.esprit",
            "remote_id": "client@esprit", "suite": "ENCR_AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE25519",
            "established_secs": 3, "virtual_ips": ["10.99.0.1"], "nat_local": false, "nat_remote": true, "ppk": true,
            "mobike": { "moves": 1, "pending": "172.16.9.7:4500", "peer_addresses": ["172.16.9.2", "10.1.1.1"] },
            "dns_domains": ["corp.example.test"], "dnssec_tas": ["corp.example.test 20326 8 2 E0"],
            "peer_allowed_families": ["v4"], "auth_scheme": "RsaPkcs1Sha256", "peer_auth_methods": ["RsaPkcs1Sha256", "method 2"],
            "child_sas": [{ "child_sa": 2, "state": "INSTALLED", "spi_in": "c0000001", "spi_out": "c0000002",
              "encr": "ENCR_AES_GCM_16_IIV-256", "esn": false, "pfs": null, "iiv": true,
              "label": "system_u:object_r:ipsec_spd_t:s0", "mode": "TUNNEL", "udp_encap": true,
              "outer_local": "172.16.9.1:4500", "outer_remote": "172.16.9.2:4500",
              "compression": "Diet-ESP (draft-ietf-ipsecme-diet-esp-07) dscp_cda=lower,esp_spi_lsb=8",
              "installed_secs": 3, "rekey_secs": 0, "ts_local": ["192.168.109.0/24"], "ts_remote": ["10.99.0.1/32"],
              "in_bytes": 840, "in_pkts": 10, "out_bytes": 840, "out_pkts": 10, "seq_next": 11, "idle_secs": 1,
              "in_backend": ["ipsec-mb"], "out_backend": ["ring", "fallback"] }]
        }], "orphans": [] });
        let t = list_sas(&v);
        assert!(t.contains("rw: #1, ESTABLISHED, IKEv2, 0011223344556677_i 8899aabbccddeeff_r (responder)"), "{t}");
        assert!(t.contains("remote 'client@esprit' @ 172.16.9.2:4500 [10.99.0.1]"), "{t}");
        assert!(t.contains("rw: #2, INSTALLED, TUNNEL-in-UDP, ESP SPIs: c0000001_i c0000002_o"), "{t}");
        assert!(t.contains("840 bytes"), "{t}");
        assert!(t.contains("  MOBIKE, 1 move(s), checking 172.16.9.7:4500, peer addresses 172.16.9.2 10.1.1.1"), "{t}");
        assert!(t.contains("    outer 172.16.9.1:4500 <-> 172.16.9.2:4500"), "{t}");
        assert!(t.contains("    compression Diet-ESP (draft-ietf-ipsecme-diet-esp-07) dscp_cda=lower,esp_spi_lsb=8"), "{t}");
        assert!(t.contains("traffic 1s ago, crypto ipsec-mb"), "{t}");
        assert!(t.contains("next seq 11, crypto ring+fallback"), "{t}");
        assert!(t.contains("remote 10.99.0.1/32"), "{t}");
        assert!(t.contains("established 3s ago, NAT: remote behind NAT, PPK"), "{t}");
        assert!(t.contains("split DNS: corp.example.test"), "{t}");
        assert!(t.contains("signed with RsaPkcs1Sha256"), "{t}");
        assert!(t.contains("peer accepts: RsaPkcs1Sha256 method 2"), "{t}");
        assert!(t.contains("DNSSEC TA: corp.example.test 20326 8 2 E0"), "{t}");
        assert!(t.contains("ENCR_AES_GCM_16_IIV-256, no ESN, implicit IV"), "{t}");
        assert!(t.contains("label system_u:object_r:ipsec_spd_t:s0"), "{t}");
    }

    #[test]
    fn shows_post_quantum_key_exchanges_of_ike_and_child_sas() {
        let v = serde_json::json!({ "ike_sas": [{
            "ike_sa": 1, "connection": "rw", "state": "Established", "initiator": true,
            "spi_i": "0011223344556677", "spi_r": "8899aabbccddeeff",
            "local": "172.16.9.1:4500", "remote": "172.16.9.2:4500", "local_id": "gw.esprit",
            "remote_id": "sw.esprit", "suite": "ENCR_AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE25519+ML_KEM_768",
            "key_exchanges": ["CURVE25519", "ML_KEM_768"], "pq": true,
            "child_sas": [{ "child_sa": 2, "state": "INSTALLED", "spi_in": "c0000001", "spi_out": "c0000002",
              "encr": "ENCR_AES_GCM_16-256", "esn": false, "pfs": "CURVE25519", "additional_ke": ["ECP_256", "ML_KEM_768"],
              "mode": "TUNNEL", "udp_encap": false, "ts_local": [], "ts_remote": [] }]
        }], "orphans": [] });
        let t = list_sas(&v);
        assert!(t.contains("PRF_HMAC_SHA2_384/CURVE25519+ML_KEM_768 (post-quantum)"), "{t}");
        assert!(t.contains("ENCR_AES_GCM_16-256, no ESN, PFS CURVE25519, ADDKE ECP_256+ML_KEM_768"), "{t}");
    }
}
