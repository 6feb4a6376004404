#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus`) scraping both planes every second
# while a strongSwan road warrior sends traffic through esprit, the layout of
# ike-strongswan.sh with ECDSA certificates:
#
#   ns ike-rw: charon 172.16.9.2 ── ik-out [esprit-dataplane] ik-in ── ns ike-srv 192.168.109.2
#                    esprit-ike on the punt TAP 172.16.9.1; Prometheus on 127.0.0.1
#
# Prometheus runs with deploy/prometheus's rule files and a scrape config of
# the two /metrics listeners. Through its HTTP API the test checks that:
# * both targets are up, and before the tunnel no IKE SA, Child SA or SA
#   table entry is counted;
# * after the tunnel and traffic, the series moved as the traffic did: the
#   handshakes, one Child SA, two SAs in the table, the packets strongSwan
#   sent and received counted on the outside port (rx and tx), encrypted
#   and decrypted by the worker, an IKE_AUTH signature job;
# * a refused Child SA (TS_UNACCEPTABLE, in IKE_AUTH, before the tunnel), a
#   Child SA rekey, a refused IKE SA (unknown identity) and dataplane drops
#   each show up;
# * every PromQL expression of deploy/grafana/esprit.json (the dashboard's
#   variables set to match everything, $__rate_interval to 10 s) and every
#   recording rule returns data; those that do not are listed.
name=prometheus
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan
command -v prometheus >/dev/null || fail "prometheus is not installed (scripts/setup installs Debian's prometheus)"
# DASHBOARD: another dashboard JSON (e.g. a broken copy, to see this fail).
dashboard=${DASHBOARD:-$top/deploy/grafana/esprit.json}
[[ -f $dashboard ]] || fail "no dashboard at $dashboard"

add_host ike-rw rw0 ik-out 172.16.9.2/24
add_host ike-srv srv0 ik-in 192.168.109.2/24 192.168.109.1
ip -n ike-srv link set srv0 mtu 1400
for l in ik-out ik-in; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
tap=promtap$$
links+=("$tap")
make_pki "$work/pki" ecdsa "esprit prometheus CA" esprit gw client
mkdir -p "$work/x509" "$work/x509ca" "$work/pkcs8"
cp "$work/pki/client.pem" "$work/x509/"; cp "$work/pki/ca.pem" "$work/x509ca/"
cp "$work/pki/client.key" "$work/pkcs8/"

start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 ik-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 ik-in)", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=$tap" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [172.16.9.1], inside: [192.168.109.1] }
  neighbours:
    - { ip: 172.16.9.2, mac: "$(ns_mac_of ike-rw rw0)" }
    - { ip: 192.168.109.2, mac: "$(ns_mac_of ike-srv srv0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
metrics: { listen: "127.0.0.1:0" }
ike:
  listen: [172.16.9.1]
  control_socket: $work/ike.sock
  metrics_listen: "127.0.0.1:0"
  pools:
    rw: { v4: 10.99.0.0/24 }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client.esprit
      local_auth: { cert: $work/pki/gw.pem, key: $work/pki/gw.key }
      remote_auth: { cas: [$work/pki/ca.pem] }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.109.0/24]
EOT
ip link set "$tap" up
ip addr add 172.16.9.1/24 dev "$tap"
dp_metrics=$(grep -o 'metrics on [0-9.:]*' "$work/dp.log" | head -1 | cut -d' ' -f3)
[[ -n $dp_metrics ]] || fail "esprit-dataplane did not say where its metrics listen"
start_ike "$work/dp.yaml"
[[ -n $ike_metrics ]] || ike_fail "esprit-ike did not say where its metrics listen"
peer_logs=("swanctl-load:$work/sw-load.log" "charon:$work/sw/charon.log")

# --- Prometheus -------------------------------------------------------------
prom_port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/prom/rules"
cp "$top"/deploy/prometheus/rules/*.yml "$work/prom/rules/"
cat >"$work/prom/prometheus.yml" <<EOT
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - rules/*.yml
scrape_configs:
  - job_name: esprit-dataplane
    static_configs: [{ targets: ["$dp_metrics"] }]
  - job_name: esprit-ike
    static_configs: [{ targets: ["$ike_metrics"] }]
EOT
prometheus --config.file="$work/prom/prometheus.yml" --storage.tsdb.path="$work/prom/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prom.log" 2>&1 &
pids+=($!)
api=http://127.0.0.1:$prom_port/api/v1
# promq EXPR: the instant vector's values, one "labels value" line per series.
promq() {
  /usr/bin/python3 - "$api" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
api, expr = sys.argv[1:]
url = api + "/query?" + urllib.parse.urlencode({"query": expr})
d = json.load(urllib.request.urlopen(url, timeout=5))
if d.get("status") != "success":
    sys.exit("query failed: %s" % d)
for s in d["data"]["result"]:
    print(json.dumps(s["metric"], sort_keys=True), s["value"][1])
PY
}
# scalar EXPR: the value of a one-series expression, "none" when empty.
scalar() { local v; v=$(promq "$1" | awk '{ print $NF }' | head -1); echo "${v:-none}"; }
# await DESCRIPTION EXPR: until the expression (a comparison) returns a
# series; each new scrape is a second apart, 20 s at most.
await() {
  local i
  for i in $(seq 100); do
    [[ -n $(promq "$2" 2>/dev/null) ]] && return 0
    sleep 0.2
  done
  [[ -s $work/prom.log ]] && tail -5 "$work/prom.log" | sed 's/^/  prometheus| /'
  ike_fail "Prometheus never saw $1 ($2 is empty)"
}
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null || ike_fail "Prometheus did not become ready"
await "both planes scraped" 'count(up{job=~"esprit-dataplane|esprit-ike"} == 1) == 2'
await "the dataplane's metrics" 'esprit_sa_table_capacity == 64'
[[ $(scalar 'sum(esprit_ike_handshakes_total) or vector(0)') == 0 ]] || ike_fail "handshakes counted before any peer came"
[[ $(scalar 'sum(esprit_active_sas) or vector(0)') == 0 ]] || ike_fail "SAs in the table before the tunnel: $(promq esprit_active_sas)"
[[ $(scalar 'sum(esprit_ike_child_sas) or vector(0)') == 0 ]] || ike_fail "Child SAs counted before the tunnel"
rx0=$(scalar 'sum(esprit_port_packets_total{port="outside",dir="rx"}) or vector(0)')
tx0=$(scalar 'sum(esprit_port_packets_total{port="outside",dir="tx"}) or vector(0)')

# --- strongSwan: a tunnel, then traffic ---------------------------------------
cat >"$work/swanctl.conf" <<EOT
connections {
  esprit {
    local_addrs = 172.16.9.2
    remote_addrs = 172.16.9.1
    vips = 0.0.0.0
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = pubkey
            certs = client.pem
            id = client.esprit }
    remote { auth = pubkey
             id = gw.esprit }
    children {
      net { remote_ts = 192.168.109.0/24
            esp_proposals = aes256gcm16 }
    }
  }
  # The same identity asking for a Child SA outside what esprit's connection
  # protects: the IKE SA comes up, the Child SA is refused (TS_UNACCEPTABLE).
  narrow {
    local_addrs = 172.16.9.2
    remote_addrs = 172.16.9.1
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = pubkey
            certs = client.pem
            id = client.esprit }
    remote { auth = pubkey
             id = gw.esprit }
    children { elsewhere { remote_ts = 10.200.0.0/24
                           esp_proposals = aes256gcm16 } }
  }
  # An identity esprit has no connection for: its IKE_AUTH fails.
  stranger {
    local_addrs = 172.16.9.2
    remote_addrs = 172.16.9.1
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = psk
            id = stranger@esprit }
    remote { auth = psk
             id = gw.esprit }
    children { net { remote_ts = 192.168.109.0/24 } }
  }
}
secrets {
  ike-stranger { id-1 = stranger@esprit
                 id-2 = gw.esprit
                 secret = "not-esprits-psk-$$" }
}
EOT
start_strongswan ike-rw
if "$peer" swanctl ike-rw "$work/sw" --initiate --ike narrow --child elsewhere --timeout 20 >"$work/narrow.log" 2>&1; then
  ike_fail "esprit accepted a Child SA outside its traffic selectors"
fi
"$peer" swanctl ike-rw "$work/sw" --terminate --ike narrow --timeout 10 >"$work/narrow-down.log" 2>&1 \
  || { cat "$work/narrow-down.log"; ike_fail "strongSwan kept no IKE SA for the refused Child SA (or could not delete it)"; }
"$peer" swanctl ike-rw "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
  || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan could not bring the tunnel up"; }
ip netns exec ike-rw ping -c 50 -i 0.01 -W 2 192.168.109.2 >"$work/ping.log" 2>&1 \
  || { cat "$work/ping.log"; ike_fail "no ping through the tunnel"; }
# Traffic that goes on while Prometheus scrapes (the dashboard's rates need it).
ip netns exec ike-rw ping -i 0.05 -W 1 192.168.109.2 >"$work/ping-bg.log" 2>&1 &
pids+=($!)

await "both handshakes" 'sum(esprit_ike_handshakes_total{role="responder"}) == 2'
await "the IKE_AUTH signature job" 'sum(esprit_ike_auth_jobs_total{result="done"}) >= 1'
await "the Child SA" 'esprit_ike_child_sas == 1'
await "both SAs in the SA table" 'sum(esprit_active_sas) == 2'
await "the IKE SA" 'sum(esprit_ike_sas{state="Established"}) == 1'
# The 50 pings and their replies, each once through the outside port both
# ways (plus IKE and ARP), sealed and opened by the worker.
await "packets received on the outside port" "sum(esprit_port_packets_total{port=\"outside\",dir=\"rx\"}) >= $rx0 + 50"
await "packets sent on the outside port" "sum(esprit_port_packets_total{port=\"outside\",dir=\"tx\"}) >= $tx0 + 50"
await "decrypted packets" 'sum(esprit_esp_packets_total{op="decrypt"}) >= 50'
await "encrypted packets" 'sum(esprit_esp_packets_total{op="encrypt"}) >= 50'
await "a rate of received packets" 'sum(rate(esprit_port_packets_total{port="outside",dir="rx"}[5s])) > 0'

# --- events the dashboard has panels for ---------------------------------------
"$peer" swanctl ike-rw "$work/sw" --rekey --child net >"$work/rekey.log" 2>&1 \
  || { cat "$work/rekey.log"; ike_fail "swanctl --rekey --child net failed"; }
if "$peer" swanctl ike-rw "$work/sw" --initiate --ike stranger --child net --timeout 10 >"$work/stranger.log" 2>&1; then
  ike_fail "esprit accepted an identity it has no connection for"
fi
# Packets to a pool address with no SA: the dataplane drops them, by reason.
ip netns exec ike-srv ping -i 0.05 -W 1 10.99.0.200 >/dev/null 2>&1 &
pids+=($!)
await "the Child SA rekey" 'sum(esprit_ike_rekeys_total{kind="child"}) >= 1'
await "the refused Child SA" 'sum(esprit_ike_child_sa_failures_total) >= 1'
await "the refused IKE SA" 'sum(esprit_ike_handshake_failures_total) >= 1'
await "dropped packets" 'sum(rate(esprit_drops_total[5s])) > 0'
# A counter that appeared with the event has one sample until the next
# scrape, and rate() wants two: wait for the rates the dashboard and the
# recording rules take of the new series (a loaded machine scrapes late).
await "a rate of Child SA rekeys" 'sum(rate(esprit_ike_rekeys_total[10s])) >= 0'
await "a rate of handshake failures" 'sum(rate(esprit_ike_handshake_failures_total[10s])) >= 0'
await "the failure recording rules" 'count(instance:esprit_ike_handshake_failures:ratio5m) >= 1'

# --- every dashboard expression and recording rule returns data ----------------
/usr/bin/python3 - "$api" "$dashboard" "$work"/prom/rules/*.yml >"$work/dashboard.log" 2>&1 <<'PY' || { cat "$work/dashboard.log"; ike_fail "dashboard expressions or recording rules without data in Prometheus"; }
import json, re, sys, urllib.parse, urllib.request
import yaml

api, dashboard, rule_files = sys.argv[1], sys.argv[2], sys.argv[3:]

def query(expr):
    url = api + "/query?" + urllib.parse.urlencode({"query": expr})
    try:
        d = json.load(urllib.request.urlopen(url, timeout=5))
    except Exception as e:  # a 400 carries the parse error
        body = getattr(e, "read", lambda: b"")().decode(errors="replace")
        return None, "%s %s" % (e, body)
    return d["data"]["result"], None

def substitute(expr):
    # The dashboard's variables, each set to "All" (allValue .+), and
    # Grafana's rate interval: at least four scrapes of 1 s.
    expr = re.sub(r"\$\{?__rate_interval\}?", "10s", expr)
    return re.sub(r"\$\{?(dataplane|worker|ike)\}?", ".+", expr)

def panels(p):
    for x in p.get("panels", []):
        yield x
        yield from panels(x)

exprs = []
d = json.load(open(dashboard))
for p in panels(d):
    for t in p.get("targets", []):
        if t.get("expr"):
            exprs.append(("panel %r" % p.get("title"), t["expr"]))
# Template variables: label_values(METRIC_SELECTOR, LABEL) is Grafana's
# series lookup; the same question in PromQL is count by (LABEL) (SELECTOR).
for v in d.get("templating", {}).get("list", []):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if v.get("type") != "query" or not q:
        continue
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.strip())
    if not m:
        exprs.append(("variable %r" % v["name"], q))
        continue
    exprs.append(("variable %r" % v["name"], "count by (%s) (%s)" % (m.group(2), m.group(1))))
for f in rule_files:
    for g in yaml.safe_load(open(f)).get("groups", []):
        for r in g.get("rules", []):
            if "record" in r:
                exprs.append(("recording rule", r["record"]))

missing = []
for where, expr in exprs:
    result, err = query(substitute(expr))
    if err:
        missing.append("%s: %s: query error: %s" % (where, expr, err))
    elif not result:
        missing.append("%s: %s: no data" % (where, expr))
print("%d dashboard expressions and recording rules queried, %d without data" % (len(exprs), len(missing)))
for m in missing:
    print("  " + m)
sys.exit(1 if missing else 0)
PY
echo "  $(head -1 "$work/dashboard.log")"
pass
