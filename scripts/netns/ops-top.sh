#!/usr/bin/env bash
# Operators' views of a running esprit, checked from outside, in a namespace
# of its own (loopback only):
#   * both /metrics endpoints (esprit-dataplane on net_pcap, replaying a
#     plaintext pcap forever; esprit-ike after 20 IKEv2 handshakes from
#     esprit-bench ike-load) pass `promtool check metrics` with nothing
#     found; promtool is shown to fail on a broken exposition first;
#   * `esprit-ctl top` runs in tmux as a person would run it; two captures
#     of the pane a few refreshes apart: the totals move, the rates are
#     non-zero, the packet totals lie between two scrapes of /metrics taken
#     around the capture, drops by reason are shown, and the IKE line shows
#     the 20 IKE SAs and handshakes esprit-ike holds;
#   * `esprit-ctl --json top` saw the handshakes as a rate while they ran;
#   * `q` quits top: typed into the pane, top exits with status 0 within a
#     second, the shell's screen is back (the alternate screen is left) and
#     the terminal's modes (stty -a) are those from before top started.
source "$(dirname "$0")/lib.sh"
name=ops-top
need_ike
bench=${ESPRIT_BENCH:-$top/target/debug/esprit-bench}
[[ -x $bench ]] || fail "$bench not built"
command -v promtool >/dev/null || fail "promtool not found (scripts/setup installs Debian's prometheus)"
command -v tmux >/dev/null || fail "tmux not found (scripts/setup installs it)"
ns=esprit-ops-$$
ip netns add "$ns"; netns+=("$ns")
ip -n "$ns" link set lo up
session=esprit-ops-$$
trap 'tmux kill-session -t "$session" 2>/dev/null; cleanup' EXIT
table=/dev/shm/esprit-netns-$$-ops

# 1. promtool can fail: a counter without _total and a metric without HELP.
printf '# TYPE esprit_bad counter\nesprit_bad 1\n' >"$work/bad.prom"
if promtool check metrics <"$work/bad.prom" >/dev/null 2>&1; then fail "promtool check metrics passed a broken exposition"; fi

# 2. The dataplane: the inside port replays 250 flows forever (destinations
# 192.168.105.1 .. .250); a static SA protects 192.168.105.0/25, the others
# have no SA and are dropped with a reason.
"$bench" gen-pcap "$work/in.pcap" --size 128 --packets 500 --flows 250 || fail "gen-pcap failed"
cat >"$work/dp.yaml" <<EOT
dataplane:
  eal_args: ["-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-ops-$$", "--log-level", "lib.eal:error"]
  ports:
    inside: { device: "net_pcap0,rx_pcap=$work/in.pcap,infinite_rx=1", rx_desc: 512, tx_desc: 512 }
    outside: { device: "net_null0,no-rx=1", rx_desc: 512, tx_desc: 512 }
  workers: { count: 1 }
  addresses: { outside: [172.16.1.5], inside: [192.168.5.254] }
  neighbours: [ { ip: 172.16.2.5, mac: "02:00:00:00:00:02" } ]
  sa_table: { path: $table, capacity: 256 }
  static_sas:
    - { spi: 0x1005, direction: out, suite: aes-128-gcm, key: "2b7e151628aed2a6abf7158809cf4f3cdeadbeef", src: 172.16.1.5, dst: 172.16.2.5, selectors: ["192.168.105.0/25"] }
metrics: { listen: "127.0.0.1:9464" }
EOT
ip netns exec "$ns" "$bin" --config "$work/dp.yaml" >"$work/dp.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "worker(s), crypto" "$work/dp.log" && break; kill -0 "${pids[-1]}" 2>/dev/null || break; sleep 0.1; done
grep -q "worker(s), crypto" "$work/dp.log" || fail "esprit-dataplane did not start"

# 3. esprit-ike on the same table, a PSK responder for ike-load.
cat >"$work/ike.yaml" <<EOT
ike:
  listen: [127.0.0.1]
  control_socket: $work/ike.sock
  metrics_listen: 127.0.0.1:9465
  sa_table: { path: $table, capacity: 256 }
  pools:
    rw: { v4: 10.64.0.0/24 }
  connections:
    rw:
      local_id: gw.esprit.bench
      local_auth: { psk: "ops-top-psk-0123456789" }
      remote_auth: { psk: "ops-top-psk-0123456789" }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.200.0/24]
EOT
start_ike "$work/ike.yaml" "$ns"
inns() { ip netns exec "$ns" "$@"; }
scrape() { inns curl -sf "http://$1/metrics"; }
total() { # the sum of one series name on the dataplane's endpoint, with a label filter
  scrape 127.0.0.1:9464 | awk -v n="$1" -v f="$2" '$1 ~ "^"n"[{ ]" && index($1, f) { s += $NF } END { printf "%d\n", s }'
}

# 4. Handshakes while `top --json` watches (10 refreshes of 300 ms).
inns "$ctl" --socket "$work/ike.sock" --json top --dataplane 127.0.0.1:9464 --interval-ms 300 --count 10 >"$work/top.jsonl" 2>"$work/top.err" &
topjson=$!
sleep 0.7
inns "$bench" ike-load 127.0.0.2 127.0.0.1 --count 20 --window 4 --psk ops-top-psk-0123456789 --timeout-secs 60 >"$work/load.log" 2>&1 \
  || fail "ike-load: $(tail -3 "$work/load.log")"
wait $topjson || fail "esprit-ctl --json top failed: $(cat "$work/top.err")"
/usr/bin/python3 - "$work/top.jsonl" <<'PY' || fail "esprit-ctl --json top did not see the handshakes"
import json, sys
v = [json.loads(l) for l in open(sys.argv[1])]
assert len(v) == 10, len(v)
rates = [x["ike"].get("handshakes_per_sec") or 0 for x in v]
assert max(rates) > 0, rates
assert v[-1]["ike"]["handshakes"] == 20 and v[-1]["ike"]["ike_sas"] == 20, v[-1]["ike"]
tx = [sum(r["tx_packets"] for r in x["dataplane"]["ports"]) for x in v]
assert tx == sorted(tx) and tx[-1] > tx[0], tx
print("  top --json: handshakes/s up to %.1f, IKE SAs %d, tx packets %d -> %d" % (max(rates), v[-1]["ike"]["ike_sas"], tx[0], tx[-1]))
PY

# 5. promtool on both endpoints, with traffic and SAs on them.
for ep in 127.0.0.1:9464 127.0.0.1:9465; do
  scrape $ep >"$work/m.prom" || fail "no /metrics on $ep"
  [[ $(grep -c '^esprit_' "$work/m.prom") -gt 5 ]] || fail "too few series on $ep"
  out=$(promtool check metrics <"$work/m.prom" 2>&1) || fail "promtool check metrics on $ep: $out"
  [[ -z $out ]] || fail "promtool check metrics on $ep found: $out"
  echo "  promtool check metrics $ep: nothing found ($(grep -c '^esprit_' "$work/m.prom") series)"
done

# 6. top in a terminal: tmux, 120x40, one refresh a second, typed into a
# shell as a person would (so that after `q` the pane shows the shell); the
# terminal's modes are saved before and after it.
tmux new-session -d -s "$session" -x 120 -y 40 "ip netns exec $ns env PS1='ops-top\$ ' /bin/sh"
tmux send-keys -t "$session" "stty -a >$work/stty.before; $ctl --socket $work/ike.sock top --dataplane 127.0.0.1:9464 --interval-ms 1000; echo \"top exited with status \$?\"; stty -a >$work/stty.after" Enter
sleep 1.5
# What the pane shows was read at the last refresh: within the second
# before the capture, so after a scrape 1.2 s before it.
b1=$(total esprit_port_packets_total 'dir="rx"')
sleep 1.2
tmux capture-pane -p -t "$session" >"$work/pane1.txt"
sleep 0.2
a1=$(total esprit_port_packets_total 'dir="rx"')
sleep 1.5
tmux capture-pane -p -t "$session" >"$work/pane2.txt"
sed 's/^/  pane| /' "$work/pane2.txt" | grep -v '^  pane| $'
/usr/bin/python3 - "$work/pane1.txt" "$work/pane2.txt" "$b1" "$a1" <<'PY' || fail "the top screen is wrong"
import re, sys
p1, p2 = open(sys.argv[1]).read(), open(sys.argv[2]).read()
lo, hi = int(sys.argv[3]), int(sys.argv[4])
def totals(p):
    m = re.search(r"^total\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s*$", p, re.M)
    assert m, "no total line:\n" + p
    return [float(x) for x in m.groups()]
t1, t2 = totals(p1), totals(p2)
assert "esprit-ctl top: dataplane 127.0.0.1:9464" in p1, p1
assert t1[0] > 0 and t1[3] > 0, ("rx and tx Mpps are shown non-zero", t1)
assert t1[1] > 0 and t1[4] > 0, ("rx and tx Gbps are shown non-zero", t1)
assert t2[2] > t1[2] and t2[5] > t1[5], ("the packet totals move", t1, t2)
assert lo <= t1[2] <= hi, ("rx packets shown lie between the scrapes around the capture", lo, t1[2], hi)
m = re.search(r"^0\s+([a-z_]+)\s+([\d.]+)\s+(\d+)\s*$", p2, re.M)
assert m and float(m.group(2)) > 0, "drops by reason, with a rate:\n" + p2
assert re.search(r"^0\s+inside\s+[\d.]+\s+[\d.]+\s+\d+", p2, re.M), "a row per worker and port:\n" + p2
assert "IKE SAs 20 (established 20, half-open 0)" in p2 and "handshakes 20 (" in p2, p2
assert "(q quits)" in p1, ("the header names the key", p1)
print("  top: rx %.3f Mpps %.3f Gbps, tx %.3f Mpps, rx packets %d within [%d, %d], then %d" % (t1[0], t1[1], t1[3], t1[2], lo, hi, t2[2]))
PY

# 7. q quits: top exits 0 at once (not at its next refresh or never), the
# shell's screen comes back, and the terminal is as it was.
tmux send-keys -t "$session" q
quit_at=$(date +%s%N)
for _ in $(seq 50); do
  tmux capture-pane -p -J -t "$session" >"$work/pane3.txt"
  grep -q '^top exited with status' "$work/pane3.txt" && break
  sleep 0.1
done
quit_ms=$(( ($(date +%s%N) - quit_at) / 1000000 ))
sed 's/^/  pane| /' "$work/pane3.txt" | grep -v '^  pane| $'
grep -q '^top exited with status 0$' "$work/pane3.txt" || fail "top did not quit on q with status 0 within 5 s: $(cat "$work/pane3.txt")"
[[ $quit_ms -lt 1000 ]] || fail "top took $quit_ms ms to quit on q (a key must not wait for the next refresh)"
grep -q "stty -a >$work/stty.before; " "$work/pane3.txt" || fail "after q the pane does not show the shell's screen (the command line typed before top)"
! grep -q '^esprit-ctl top:' "$work/pane3.txt" || fail "after q the pane still shows top's screen (the alternate screen was not left)"
for _ in $(seq 20); do [[ -s $work/stty.after ]] && break; sleep 0.1; done
[[ -s $work/stty.before && -s $work/stty.after ]] || fail "no stty -a before or after top"
cmp -s "$work/stty.before" "$work/stty.after" || fail "top left the terminal changed: $(diff "$work/stty.before" "$work/stty.after")"
grep -qw icanon "$work/stty.after" && grep -qw echo "$work/stty.after" && grep -qw isig "$work/stty.after" \
  || fail "the terminal after top lacks icanon/echo/isig: $(cat "$work/stty.after")"
echo "  q: top exited with status 0 after $quit_ms ms; the shell's screen is back; stty -a as before (icanon echo isig)"
pass
