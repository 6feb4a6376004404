#!/usr/bin/env bash
# esprit-dataplane SIGKILLed under traffic and restarted while esprit-ike
# runs (DESIGN.md §1: either process restarts while the other runs), with a
# strongSwan road warrior's tunnel up (scripts/netns/rw.sh):
#
# * ping (every 10 ms) and an iperf3 TCP transfer run from the virtual IP to
#   the server; the dataplane is killed with SIGKILL and started again;
# * traffic resumes within 2 s of the restart, on the same SPIs: esprit-ctl
#   list-sas shows the same IKE and Child SAs, strongSwan the same SPIs, no
#   handshake or rekey happened (no IKE renegotiation), and iperf3's TCP
#   connection survives; the outage is reported in ping packets and ms;
# * the restarted dataplane learnt both next hops again by ARP (no static
#   neighbours) and re-opened its punt TAP, which kept the gateway address
#   (net_tap persist), so esprit-ike's sockets work on: a Child SA rekey
#   through them, then traffic on the new SAs.
#
# STATIC=1 adds two static SAs to the dataplane, on the same table as
# esprit-ike's: the restart keeps them (not reinstalled, esprit-ike's SAs
# untouched), and then esprit-ike restarts while the dataplane runs: it
# files only its own slots as orphans and clears them after the grace
# period, the static SAs stay.
static=${STATIC:-0}
name=ike-restart
[[ $static == 1 ]] && name="ike-restart static"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rw.sh"

statics=""
if [[ $static == 1 ]]; then
  key=000102030405060708090a0b0c0d0e0f10111213
  statics="  static_sas:
    - { spi: 0x5005, direction: out, suite: aes-128-gcm, key: \"$key\", src: 172.16.19.1, dst: 172.16.19.50, selectors: [\"192.168.200.0/24\"] }
    - { spi: 0x5006, direction: in, suite: aes-128-gcm, key: \"$key\", src: 172.16.19.50, dst: 172.16.19.1, selectors: [\"192.168.200.0/24\"], local_selectors: [\"192.168.119.0/24\"] }"
fi
rw_up "" "$statics"
if [[ $static == 1 ]]; then
  grep -q "static SAs: 0 kept, 2 installed" "$work/dp.log" || ike_fail "the dataplane did not install its static SAs: $(grep static "$work/dp.log")"
fi
rw_ping -c 3 -i 0.2 -W 2 >"$work/ping.log" 2>&1 || { cat "$work/ping.log"; ike_fail "no ping through the tunnel"; }

# What must not change across the restart: the SAs on both sides.
sas_view() {
  ectl --json list-sas >"$work/sas.json" || ike_fail "esprit-ctl list-sas failed"
  /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for i in d["ike_sas"]:
    print(i["ike_sa"], i["state"], i["spi_i"], i["spi_r"], i["remote"],
          [(c["child_sa"], c["state"], c["spi_in"], c["spi_out"]) for c in i["child_sas"]])
print("orphans", len(d["orphans"]))' "$work/sas.json"
}
sw_spis() { sw_sas | grep -o '\(spi-in\|spi-out\|initiator-spi\|responder-spi\)=[0-9a-f]*' | sort; }
counters() {
  echo "hs $(ike_counter 'esprit_ike_handshakes_total{role=responder}') child $(ike_counter 'esprit_ike_rekeys_total{kind=child}') ike $(ike_counter 'esprit_ike_rekeys_total{kind=ike}')"
}
sas_view >"$work/view-before.txt"
sw_spis >"$work/sw-before.txt"
counters >"$work/counters-before.txt"
grep -q "Established" "$work/view-before.txt" && [[ -s $work/sw-before.txt ]] || ike_fail "no SAs to compare: $(cat "$work/view-before.txt")"

# Traffic through the kill and the restart (in pids: a failure stops them
# too, and none outlives the test holding the netns lock).
rw_traffic 10 1000 150

t_kill=$(date +%s.%N)
kill -KILL "$rw_dp_pid"
wait "$rw_dp_pid" 2>/dev/null || true
pids=("${pids[@]/$rw_dp_pid}")
mv "$work/dp.log" "$work/dp-before.log"
ip -br addr show dev "$rw_tap" | grep -q "172.16.19.1/24" || ike_fail "the punt TAP or its address went with the dataplane: $(ip -br addr show dev "$rw_tap" 2>&1)"
cp "$work/dp.yaml" "$work/dp-restart.yaml"
t_start=$(date +%s.%N)
start_dataplane <"$work/dp-restart.yaml"
rw_dp_pid=${pids[-1]}
wait $pinger || true
wait $iperf_cli || { cat "$work/iperf.log"; ike_fail "iperf3's TCP connection did not survive the dataplane's restart"; }
wait $iperf_srv 2>/dev/null || true

# The outage, from ping's timestamps: the longest silence, the packets
# lost (iperf3's load drops a few too), and when replies came back after
# the restart began.
read -r gap_ms lost resume_ms <<<"$(/usr/bin/python3 - "$work/flood.log" "$t_kill" "$t_start" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
t_kill, t_start = float(sys.argv[2]), float(sys.argv[3])
ts = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", text, re.M)]
sent = int(re.search(r"(\d+) packets transmitted", text).group(1))
gap = max((b - a for a, b in zip(ts, ts[1:])), default=0)
# (A reply or two in flight at the kill still arrives before the restart.)
after = [t for t in ts if t > t_start]
resume = (after[0] - t_start) if after else float("inf")
print(int(gap * 1000), sent - len(ts), int(resume * 1000) if after else -1)
PY
)"
echo "  dataplane restart under traffic: $lost ping packets lost (of 1000 at 10 ms), longest silence $gap_ms ms, replies back $resume_ms ms after the restart began; iperf3 $(awk '/receiver/ {print $7, $8}' "$work/iperf.log")"
[[ $resume_ms -ge 0 ]] || ike_fail "no ping reply after the restart (started at $t_start): $(grep "bytes from" "$work/flood.log" | tail -2)"
[[ $resume_ms -le 2000 ]] || ike_fail "traffic resumed only $resume_ms ms after the restart began (more than 2 s)"

sas_view >"$work/view-after.txt"
sw_spis >"$work/sw-after.txt"
counters >"$work/counters-after.txt"
diff "$work/view-before.txt" "$work/view-after.txt" >/dev/null || ike_fail "esprit-ctl list-sas changed across the restart: $(diff "$work/view-before.txt" "$work/view-after.txt")"
diff "$work/sw-before.txt" "$work/sw-after.txt" >/dev/null || ike_fail "strongSwan's SPIs changed across the restart: $(diff "$work/sw-before.txt" "$work/sw-after.txt")"
diff "$work/counters-before.txt" "$work/counters-after.txt" >/dev/null || ike_fail "IKE renegotiated across the restart: $(cat "$work/counters-before.txt") -> $(cat "$work/counters-after.txt")"
# (The restarted dataplane has no static neighbours: traffic flowing again
# means it learnt both next hops by ARP.)
if [[ $static == 1 ]]; then
  grep -q "static SAs: 2 kept, 0 installed, 0 removed" "$work/dp.log" || ike_fail "the restart did not keep the static SAs as they were: $(grep static "$work/dp.log")"
fi

# esprit-ike's sockets on the TAP's address work through the restarted
# dataplane: a Child SA rekey (an IKE exchange both ways), then traffic.
child=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ike_sas"][0]["child_sas"][0]["child_sa"])' "$work/sas.json")
ectl rekey child "$child" >/dev/null || ike_fail "esprit-ctl rekey child failed"
for _ in $(seq 100); do [[ $(ike_counter 'esprit_ike_rekeys_total{kind=child}') -ge 1 ]] && break; sleep 0.1; done
[[ $(ike_counter 'esprit_ike_rekeys_total{kind=child}') -ge 1 ]] || ike_fail "no Child SA rekey through the restarted dataplane's punt TAP"
rw_ping -c 3 -i 0.2 -W 2 >"$work/ping.log" 2>&1 || { cat "$work/ping.log"; ike_fail "no ping on the rekeyed SAs"; }

if [[ $static == 1 ]]; then
  # esprit-ike restarts while the dataplane runs, on the shared table.
  slots() { ectl --json stats >"$work/stats.json" && /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sa_table_slots"])' "$work/stats.json"; }
  kill -TERM "$ike_pid"; wait "$ike_pid" 2>/dev/null || true
  start_ike "$work/dp.yaml" "" "+$work/ike.log"
  ectl --json list-sas >"$work/sas.json" || ike_fail "the restarted esprit-ike does not answer"
  /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["orphans"]) == 2, d' "$work/sas.json" \
    || ike_fail "the restarted esprit-ike should file exactly its own 2 slots as orphans: $(cat "$work/sas.json")"
  [[ $(slots) == 4 ]] || ike_fail "expected 4 slots (2 orphans, 2 static): $(cat "$work/stats.json")"
  for _ in $(seq 100); do [[ $(slots) == 2 ]] && break; sleep 0.1; done
  [[ $(slots) == 2 ]] || ike_fail "after the orphans' grace the 2 static SAs alone should be left: $(cat "$work/stats.json")"
fi
pass
