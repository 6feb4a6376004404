#!/usr/bin/env bash
# esprit's per-SA byte counters and volume lifetimes against a strongSwan
# road warrior's (scripts/netns/rw.sh): both count the protected inner IP
# packets, both ways (RFC 4301 §4.4.2.1), so
#
# * after 58 pings of 84 octets, esprit-ctl list-sas shows 4872 bytes in
#   and out, exactly what strongSwan's swanctl --list-sas shows the other way;
# * a Child SA with rekey_bytes 8400 (100 such packets) is not rekeyed after
#   82 pings (6888 octets each way; on the wire, with ESP in UDP, 12136) and
#   is rekeyed by esprit once 110 more have crossed;
# * with life_bytes 8400 instead, esprit deletes the Child SA at the same
#   volume and not before.
name=ike-lifetimes
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rw.sh"

# (esprit's in/out bytes and packets) (strongSwan's out/in bytes and packets)
views() {
  ectl --json list-sas >"$work/sas.json" || ike_fail "esprit-ctl list-sas failed"
  sw_sas >"$work/sw.raw" || ike_fail "swanctl --list-sas failed"
  /usr/bin/python3 - "$work/sas.json" "$work/sw.raw" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
kids = [c for i in d["ike_sas"] for c in i["child_sas"] if c["state"] == "INSTALLED"]
sw = open(sys.argv[2]).read()
val = lambda k: int(re.search(k + r"=(\d+)", sw).group(1)) if re.search(k + r"=(\d+)", sw) else -1
e = kids[0] if kids else {"in_bytes": -1, "in_pkts": -1, "out_bytes": -1, "out_pkts": -1}
print(e["in_bytes"], e["in_pkts"], e["out_bytes"], e["out_pkts"], val("bytes-out"), val("packets-out"), val("bytes-in"), val("packets-in"))
PY
}
pings() { rw_ping -c "$1" -i 0.02 -W 2 -q >"$work/ping.log" 2>&1 || { cat "$work/ping.log"; ike_fail "pings through the tunnel failed"; }; }
child_rekeys() { ike_counter 'esprit_ike_rekeys_total{kind=child}'; }
# A lifetime is checked on esprit-ike's one-second housekeeping tick: two
# ticks without the action mean it was not due.
two_ticks() { sleep 2.2; }

rw_up "        rekey_bytes: 8400"
# Two pings first: the dataplane learns the server's MAC by ARP, and drops
# (uncounted) what arrives before it has; strongSwan counted it as sent.
rw_ping -c 2 -i 0.2 -W 2 >"$work/ping.log" 2>&1 || { cat "$work/ping.log"; ike_fail "no ping through the tunnel"; }
read -r -a before <<<"$(views)"
pings 58
grep -q " 0% packet loss" "$work/ping.log" || ike_fail "pings lost: $(tail -2 "$work/ping.log")"
read -r -a after <<<"$(views)"
d=(); for k in 0 1 2 3 4 5 6 7; do d+=($((after[k] - before[k]))); done
echo "  58 pings of 84 octets: esprit in ${d[0]} (${d[1]} pkts) out ${d[2]} (${d[3]}); strongSwan out ${d[4]} (${d[5]}) in ${d[6]} (${d[7]})"
[[ ${d[0]} == 4872 && ${d[2]} == 4872 ]] || ike_fail "esprit counts in ${d[0]} / out ${d[2]} octets for 58 x 84 (4872 each way)"
[[ ${d[0]} == "${d[4]}" && ${d[2]} == "${d[6]}" && ${d[1]} == "${d[5]}" && ${d[3]} == "${d[7]}" ]] \
  || ike_fail "esprit's counters differ from strongSwan's: esprit in ${d[0]}/${d[1]} out ${d[2]}/${d[3]}, strongSwan out ${d[4]}/${d[5]} in ${d[6]}/${d[7]}"

# Soft lifetime: at most 82 packets each way (6888 octets) are below rekey_bytes.
pings 22
two_ticks
[[ $(child_rekeys) == 0 ]] || ike_fail "esprit rekeyed the Child SA before rekey_bytes (under 6888 of 8400 octets each way)"
pings 30
for _ in $(seq 50); do [[ $(child_rekeys) -ge 1 ]] && break; sleep 0.1; done
[[ $(child_rekeys) == 1 ]] || ike_fail "no rekey from esprit after over 9240 octets each way (rekey_bytes 8400)"
grep -q "volume or sequence lifetime reached: rekey" "$work/ike.log" || ike_fail "the rekey was not esprit's volume lifetime"

# Hard lifetime, on a new IKE SA with the reloaded connection.
sed -i 's/        rekey_bytes: 8400/        life_bytes: 8400/' "$work/dp.yaml"
ectl reload >/dev/null || ike_fail "esprit-ctl reload failed"
"$peer" swanctl rs-rw "$work/sw" --terminate --ike esprit --timeout 10 >"$work/terminate.log" 2>&1 || { cat "$work/terminate.log"; ike_fail "swanctl --terminate failed"; }
rw_initiate
children() { ectl --json list-sas >"$work/sas.json" && /usr/bin/python3 -c 'import json,sys; print(sum(len(i["child_sas"]) for i in json.load(open(sys.argv[1]))["ike_sas"]))' "$work/sas.json"; }
pings 80
two_ticks
[[ $(children) == 1 ]] || ike_fail "esprit deleted the Child SA before life_bytes (6720 of 8400 octets each way): $(cat "$work/sas.json")"
pings 30
for _ in $(seq 50); do [[ $(children) == 0 ]] && break; sleep 0.1; done
[[ $(children) == 0 ]] || ike_fail "esprit did not delete the Child SA after 9240 octets each way (life_bytes 8400)"
sw_sas >"$work/sw.raw"
grep -q "state=INSTALLED" "$work/sw.raw" && ike_fail "strongSwan still has an installed Child SA after esprit's delete: $(cat "$work/sw.raw")"
grep -q "volume or sequence lifetime reached: delete" "$work/ike.log" || ike_fail "the delete was not esprit's volume lifetime"
pass
