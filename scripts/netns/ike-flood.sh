#!/usr/bin/env bash
# esprit-ike under a spoofed IKE_SA_INIT flood, cookies on (cookie_threshold
# 0), while a strongSwan 5.9.8 road warrior connects (IKE level: the Child
# SAs go into esprit's SA table, no dataplane runs):
#
#   ns fl-sw: charon 172.16.49.2 ── veth ── ns fl-es: esprit-ike 172.16.49.1
#                                               │ veth (172.16.59.0/24; 10.200.0.0/16 routed there)
#   ns fl-fl: esprit-bench ike-flood, sources drawn from 10.200.0.0/16
#
# Two paced floods (FLOOD_RATE datagrams/s for FLOOD_SECS s each): plain
# requests, then requests with forged cookies; each time strongSwan brings
# its tunnel up while the flood runs. Then an unpaced burst (BURST
# datagrams, as fast as the raw socket takes them) that outruns the event
# loop. Passes when, from esprit-ike's /metrics:
#   * exactly one responder key exchange per legitimate handshake
#     (esprit_ike_key_exchanges_total{op="respond"} == 2), none on the pool
#     for the flood, no half-open SA left: every flood request was answered
#     with a cookie (cookie_missing / cookie_invalid) or dropped at a full
#     queue, counted (esprit_ike_datagrams_dropped_total{queue="init"});
#   * the road warrior connected both times before the flood ended;
#   * esprit-ike's resident memory grew by less than 32 MiB.
# Prints esprit-ike's CPU time per flood request (utime+stime from
# /proc/PID/stat over the requests it saw) and its memory (VmRSS, VmHWM).
# ESPRIT_IKE / ESPRIT_BENCH pick the binaries (release for figures).
name=ike-flood
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan
bench=${ESPRIT_BENCH:-$top/target/debug/esprit-bench}
[[ -x $bench ]] || fail "$bench not built (cargo build -p esprit-bench)"
rate=${FLOOD_RATE:-20000} secs=${FLOOD_SECS:-12} burst=${BURST:-200000}

ip netns add fl-es; netns+=(fl-es)
ip netns add fl-sw; netns+=(fl-sw)
ip netns add fl-fl; netns+=(fl-fl)
ip link add fles0 netns fl-es type veth peer name flsw0 netns fl-sw
ip link add fles1 netns fl-es type veth peer name flfl0 netns fl-fl
ip -n fl-es link set lo up; ip -n fl-es link set fles0 up; ip -n fl-es link set fles1 up
ip -n fl-es addr add 172.16.49.1/24 dev fles0; ip -n fl-es addr add 172.16.59.1/24 dev fles1
ip -n fl-sw link set lo up; ip -n fl-sw link set flsw0 up; ip -n fl-sw addr add 172.16.49.2/24 dev flsw0
ip -n fl-fl link set lo up; ip -n fl-fl link set flfl0 up; ip -n fl-fl addr add 172.16.59.2/24 dev flfl0
ip -n fl-fl route add default via 172.16.59.1
# The spoofed sources live behind the flood namespace: esprit's cookie
# answers go there and are dropped (it forwards nothing).
ip -n fl-es route add 10.200.0.0/16 via 172.16.59.2
ip netns exec fl-es sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.fles1.rp_filter=0

psk=esprit-flood-psk-$$
cat >"$work/ike.yaml" <<EOT
ike:
  listen: [172.16.49.1]
  control_socket: $work/ike.sock
  metrics_listen: "127.0.0.1:0"
  sa_table: { path: /dev/shm/esprit-netns-$$-flood, capacity: 64 }
  orphan_grace_secs: 0
  # Cookies on from the first request (RFC 7296 §2.6). A short datagram
  # queue, so that the unpaced burst overruns it on any machine: on a busy
  # one the default (2048) outlasts the kernel's socket buffer, and the
  # bound under test is never reached.
  limits: { cookie_threshold: 0, datagram_queue: 64 }
  pools:
    rw: { v4: 10.99.0.0/24 }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.149.0/24]
EOT
start_ike "$work/ike.yaml" fl-es
peer_logs=("charon:$work/sw/charon.log")
rw_swanctl_conf 172.16.49.2 172.16.49.1 192.168.149.0/24 "$psk"
start_strongswan fl-sw

scrape() { ip netns exec fl-es curl -sf "http://$ike_metrics/metrics" >"$work/metrics.txt" || ike_fail "esprit-ike's /metrics did not answer"; }
# metric 'series{labels}' -> its value from the last scrape (0 if absent)
metric() { awk -v k="$1" '$1 == k { v = $2 } END { printf "%d\n", v + 0 }' "$work/metrics.txt"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$ike_pid/stat"; }
mem_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$ike_pid/status"; }
init_seen() {
  scrape
  local n=0 r
  for r in admitted retransmit cookie_missing cookie_invalid half_open_limit peer_limit refused; do
    n=$((n + $(metric "esprit_ike_init_requests_total{result=\"$r\"}")))
  done
  echo $((n + $(metric 'esprit_ike_datagrams_dropped_total{queue="init",reason="queue_full"}')))
}
# UDP datagrams the kernel dropped at a full socket receive buffer in
# esprit's namespace (before esprit-ike could see them).
rcvbuf_errors() { ip netns exec fl-es awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp; }
tick=$(getconf CLK_TCK)
rss0=$(mem_kb VmRSS)

# Runs one flood (cookie mode $1, count $2, rate $3) and, if $4 is "connect",
# brings the tunnel up while it runs. Sets flood_sent and flood_cpu_ticks.
flood() {
  local mode=$1 count=$2 pps=$3 connect=$4 seen0 ticks0 t0 kdrop0
  seen0=$(init_seen) ticks0=$(cpu_ticks) kdrop0=$(rcvbuf_errors)
  ip netns exec fl-fl "$bench" ike-flood 172.16.49.1:500 --src-net 10.200.0.0/16 --cookie "$mode" \
    --count "$count" --rate "$pps" --secs $((secs * 3)) >"$work/flood-$mode.log" 2>&1 &
  local fpid=$!
  pids+=($fpid)
  # The flood has reached esprit-ike (no idle sleep: poll, with a deadline).
  for _ in $(seq 100); do [[ $(init_seen) -gt $((seen0 + 100)) ]] && break; sleep 0.05; done
  [[ $(init_seen) -gt $((seen0 + 100)) ]] || { cat "$work/flood-$mode.log"; ike_fail "the $mode flood does not reach esprit-ike"; }
  if [[ $connect == connect ]]; then
    t0=$(date +%s.%N)
    "$peer" swanctl fl-sw "$work/sw" --initiate --child net --timeout 90 >"$work/initiate.log" 2>&1 \
      || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan could not connect during the $mode flood"; }
    kill -0 $fpid 2>/dev/null || ike_fail "the $mode flood ended before strongSwan connected (raise FLOOD_SECS)"
    echo "  strongSwan connected $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s into the $mode flood"
  fi
  wait $fpid || { cat "$work/flood-$mode.log"; ike_fail "esprit-bench ike-flood failed"; }
  flood_sent=$(awk '/^sent/ { print $2 }' "$work/flood-$mode.log")
  # esprit-ike's CPU over the requests it took in: wait until every one is
  # accounted for (answered, dropped at the queue or by the kernel), or 10 s.
  for _ in $(seq 200); do [[ $(($(init_seen) - seen0 + $(rcvbuf_errors) - kdrop0)) -ge $flood_sent ]] && break; sleep 0.05; done
  flood_cpu_ticks=$(($(cpu_ticks) - ticks0))
  local seen=$(($(init_seen) - seen0)) kdrop=$(($(rcvbuf_errors) - kdrop0))
  # Every flood datagram was taken in by esprit-ike (answered, or dropped
  # and counted at a full queue) or dropped by the kernel at the socket.
  [[ $((seen + kdrop)) -ge $flood_sent ]] || ike_fail "$mode flood: $flood_sent sent, $seen seen by esprit-ike, $kdrop dropped by the kernel: some went unaccounted"
  echo "  $mode: $(cat "$work/flood-$mode.log"); esprit-ike took in $seen, the kernel dropped $kdrop at the socket buffer; CPU $(awk -v t="$flood_cpu_ticks" -v hz="$tick" -v n="$seen" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }') us per request taken in"
}

flood none $((rate * secs)) "$rate" connect
"$peer" swanctl fl-sw "$work/sw" --terminate --ike esprit --timeout 10 >/dev/null 2>&1 || ike_fail "swanctl --terminate failed"
flood forged $((rate * secs)) "$rate" connect
flood forged "$burst" 0 no
scrape
rss1=$(mem_kb VmRSS) hwm=$(mem_kb VmHWM)
cp "$work/metrics.txt" "$work/metrics-final.txt"
grep '^esprit_ike_\(init_requests\|key_exchanges\|parallel_key\|datagrams_dropped\|queue_depth\|half_open\|handshakes\)' "$work/metrics.txt" | sed 's/^/  /'
echo "  esprit-ike memory: VmRSS $rss0 kB before, $rss1 kB after (VmHWM $hwm kB)"

respond=$(metric 'esprit_ike_key_exchanges_total{op="respond"}')
[[ $respond -eq 2 ]] || ike_fail "$respond responder key exchanges for 2 legitimate handshakes (the flood cost key exchanges)"
[[ $(metric 'esprit_ike_init_requests_total{result="admitted"}') -eq 2 ]] || ike_fail "not exactly the 2 legitimate requests admitted"
[[ $(metric 'esprit_ike_parallel_key_exchanges_total{result="discarded"}') -eq 0 ]] || ike_fail "the pool computed key exchanges for flood requests"
[[ $(metric 'esprit_ike_handshakes_total{role="responder"}') -eq 2 ]] || ike_fail "strongSwan's two IKE SAs are not both counted as established"
[[ $(metric 'esprit_ike_init_requests_total{result="cookie_missing"}') -gt 1000 ]] || ike_fail "plain flood requests were not answered with cookies"
[[ $(metric 'esprit_ike_init_requests_total{result="cookie_invalid"}') -gt 1000 ]] || ike_fail "forged cookies were not counted as invalid"
[[ $(metric 'esprit_ike_datagrams_dropped_total{queue="init",reason="queue_full"}') -gt 0 ]] \
  || ike_fail "the unpaced burst of $burst never filled the init queue: no drop counted"
[[ $(metric 'esprit_ike_half_open') -eq 0 ]] || ike_fail "the flood left half-open IKE SAs"
[[ $((rss1 - rss0)) -lt 32768 ]] || ike_fail "esprit-ike's memory grew by $((rss1 - rss0)) kB under the flood"
ectl --json list-sas >"$work/sas.json" || ike_fail "esprit-ctl list-sas failed"
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert [i["state"] for i in d["ike_sas"] if i["state"] == "Established"] == ["Established"], d' "$work/sas.json" \
  || ike_fail "esprit-ike does not hold exactly one established IKE SA (strongSwan's): $(cat "$work/sas.json")"
pass
