#!/usr/bin/env bash
# RFC 8784 post-quantum preshared keys between esprit and strongSwan 5.9.8
# (Debian's charon, userspace ESP through kernel-libipsec: ESP in UDP 4500),
# site to site, with esprit's own dataplane carrying the traffic:
#
#   ns ppk-sw: charon at 172.16.29.2 protecting 10.60.0.1 (on its loopback)
#        │ veth
#   pk-out [esprit-dataplane af_packet] pk-in ── ns ppk-srv: 192.168.129.2
#        punt: net_tap ppktap<pid> = 172.16.29.1, esprit-ike bound there
#
# Both roles, PPK mandatory and optional (strongSwan's ppk_id/ppk_required,
# esprit's ike.ppks and per-connection ppk):
#   esprit initiates, both mandatory          -> PPK used
#   esprit initiates, optional, strongSwan has no PPK for that PPK_ID
#                                              -> NO_PPK_AUTH, no PPK
#   strongSwan initiates, both mandatory       -> PPK used
#   strongSwan initiates, optional, esprit has no PPK for that PPK_ID
#                                              -> NO_PPK_AUTH, no PPK
#   strongSwan initiates without PPK, esprit's PPK mandatory
#                                              -> AUTHENTICATION_FAILED
# Each positive case pings from 192.168.129.2 to 10.60.0.1 through esprit's
# dataplane, and what strongSwan logs proves the outcome from its side
# ("using PPK for PPK_ID", "no PPK available, using NO_PPK_AUTH notify"); esprit-ctl list-sas
# must mark exactly the PPK IKE SAs, and esprit_ike_ppk_handshakes_total
# count them.
name=ike-strongswan-ppk
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan

add_host ppk-sw sw0 pk-out 172.16.29.2/24
add_host ppk-srv srv0 pk-in 192.168.129.2/24 192.168.129.1
ip -n ppk-srv link set srv0 mtu 1400
ip -n ppk-sw addr add 10.60.0.1/32 dev lo
# See ike-strongswan.sh: keep the root kernel off the af_packet veths.
for l in pk-out pk-in; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
tap=ppktap$$
# The dataplane keeps its punt TAP across restarts (persist): cleanup removes it.
links+=("$tap")
psk=esprit-ppk-psk-$$
# Two PPKs of 256 bits, fresh per run; strongSwan knows only pqc-1.
ppk1=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
ppk2=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
head -c 48 /dev/urandom >"$work/esprit-only.ppk"

conn() { # name local_id remote_id [ppk yaml] [remote]
  printf '    %s:\n' "$1"
  [[ -n ${5:-} ]] && printf '      remote: %s\n' "$5"
  cat <<EOT
      local_id: $2
      remote_id: $3
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
${4:+      ppk: $4
}      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.129.0/24]
        remote_ts: [10.60.0.1/32]
EOT
}
start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 pk-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 pk-in)", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=$tap" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [172.16.29.1], inside: [192.168.129.1] }
  neighbours:
    - { ip: 172.16.29.2, mac: "$(ns_mac_of ppk-sw sw0)" }
    - { ip: 192.168.129.2, mac: "$(ns_mac_of ppk-srv srv0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
metrics: { listen: null }
ike:
  listen: [172.16.29.1]
  control_socket: $work/ike.sock
  metrics_listen: null
  orphan_grace_secs: 0
  ppks:
    - { id: pqc-1, secret_hex: "$ppk1" }
    - { id: pqc-esprit-only, secret_file: $work/esprit-only.ppk }
  connections:
$(conn must must.esprit strongswan.site "{ id: pqc-1, required: true }" 172.16.29.2)
$(conn opt opt.esprit strongswan.site "{ id: pqc-esprit-only }" 172.16.29.2)
$(conn from-must esprit.site sw-must.site "{ id: pqc-1, required: true }")
$(conn from-opt esprit.site sw-opt.site "{ id: pqc-esprit-only }")
$(conn from-noppk esprit.site sw-noppk.site "{ id: pqc-1, required: true }")
EOT
ip link set "$tap" up
ip addr add 172.16.29.1/24 dev "$tap"
start_ike "$work/dp.yaml"
grep -q "$ppk1" "$work/ike.log" && fail "esprit-ike logged a PPK"
peer_logs=("charon:$work/sw/charon.log")

swconn() { # name local_id remote_id [ppk lines]
  cat <<EOT
  $1 {
    local_addrs = 172.16.29.2
    remote_addrs = 172.16.29.1
    proposals = aes256gcm16-prfsha256-x25519
    ${4:-}
    local { auth = psk
            id = $2 }
    remote { auth = psk
             id = $3 }
    children {
      $1-net { local_ts = 10.60.0.1/32
               remote_ts = 192.168.129.0/24
               esp_proposals = aes256gcm16 }
    }
  }
EOT
}
cat >"$work/swanctl.conf" <<EOT
connections {
$(swconn for-must strongswan.site must.esprit "ppk_id = pqc-1
    ppk_required = yes")
$(swconn for-opt strongswan.site opt.esprit)
$(swconn to-must sw-must.site esprit.site "ppk_id = pqc-1
    ppk_required = yes")
$(swconn to-opt sw-opt.site esprit.site "ppk_id = pqc-1
    ppk_required = no")
$(swconn to-noppk sw-noppk.site esprit.site)
}
secrets {
  ike-esprit { id-1 = strongswan.site
               id-2 = must.esprit
               id-3 = opt.esprit
               id-4 = esprit.site
               id-5 = sw-must.site
               id-6 = sw-opt.site
               id-7 = sw-noppk.site
               secret = "$psk" }
  ppk-1 { id = pqc-1
          secret = 0x$ppk1 }
}
EOT
start_strongswan ppk-sw
grep -q "loaded ike secret 'ike-esprit'" "$work/sw-load.log" && grep -q "loaded ppk secret 'ppk-1'" "$work/sw-load.log" \
  || { cat "$work/sw-load.log"; ike_fail "strongSwan did not load the PSK and the PPK"; }

established_ike() { ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(i["ike_sa"]) for i in json.load(sys.stdin)["ike_sas"] if i["state"]=="Established"))'; }
ppk_of() { ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(i["ppk"]).lower() for i in json.load(sys.stdin)["ike_sas"] if i["state"]=="Established"))'; }
table_slots() { ectl --json stats | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["sa_table_slots"])'; }
sw_established() { "$peer" swanctl ppk-sw "$work/sw" --list-sas >"$work/sw-now.log" 2>&1; grep -q ESTABLISHED "$work/sw-now.log"; }
new_charon_lines() { tail -n +"$((mark + 1))" "$work/sw/charon.log"; }

# One case: $1 label, $2 "esprit CONN" or "sw CONN", $3 PPK expected
# (true/false), $4 regex strongSwan must log for it.
case_up() {
  local label=$1 who=$2 expect=$3 proof=$4
  mark=$(wc -l <"$work/sw/charon.log")
  set -- $who
  if [[ $1 == esprit ]]; then
    ectl initiate "$2" >/dev/null || ike_fail "$label: esprit-ctl initiate $2 was refused"
  else
    "$peer" swanctl ppk-sw "$work/sw" --initiate --ike "$2" --child "$2-net" --timeout 30 >"$work/initiate.log" 2>&1 \
      || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "$label: strongSwan could not bring the tunnel up"; }
  fi
  for _ in $(seq 100); do ectl list-sas >"$work/sas.txt" 2>&1; grep -q "INSTALLED" "$work/sas.txt" && break; sleep 0.1; done
  grep -q "ESTABLISHED" "$work/sas.txt" && grep -q "INSTALLED" "$work/sas.txt" || ike_fail "$label: no tunnel after 10 s: $(cat "$work/sas.txt")"
  [[ $(ppk_of) == "$expect" ]] || ike_fail "$label: esprit lists PPK=$(ppk_of), expected $expect: $(cat "$work/sas.txt")"
  if [[ $expect == true ]]; then grep -q ", PPK" "$work/sas.txt" || ike_fail "$label: list-sas does not show the PPK: $(cat "$work/sas.txt")"; fi
  new_charon_lines >"$work/case.log"
  grep -Eq "$proof" "$work/case.log" || ike_fail "$label: strongSwan did not log /$proof/"
  if [[ $expect == false ]] && grep -q "using PPK for PPK_ID" "$work/case.log"; then ike_fail "$label: strongSwan used a PPK"; fi
  ip netns exec ppk-srv ping -c 5 -i 0.2 -W 2 10.60.0.1 >"$work/ping.log" 2>&1 \
    || { cat "$work/ping.log"; ike_fail "$label: no ping from 192.168.129.2 to strongSwan's 10.60.0.1 through esprit"; }
  echo "  $label: up, PPK=$expect, ping ok; strongSwan: $(grep -Eo "$proof.*" "$work/case.log" | head -1)"
  for i in $(established_ike); do ectl terminate "$i" >/dev/null || ike_fail "$label: esprit-ctl terminate $i failed"; done
  for _ in $(seq 50); do sw_established || break; sleep 0.1; done
  sw_established && ike_fail "$label: strongSwan still has the IKE SA after esprit terminated it"
  for _ in $(seq 50); do [[ $(table_slots) == 0 ]] && break; sleep 0.1; done
  [[ $(table_slots) == 0 ]] || ike_fail "$label: SA table slots left after terminate"
}

case_up "esprit initiates, PPK mandatory" "esprit must" true "using PPK for PPK_ID 'pqc-1'"
case_up "esprit initiates, PPK optional, strongSwan lacks it" "esprit opt" false "no PPK available, using NO_PPK_AUTH notify"
case_up "strongSwan initiates, PPK mandatory" "sw to-must" true "using PPK for PPK_ID 'pqc-1'"
case_up "strongSwan initiates, PPK optional, esprit lacks it" "sw to-opt" false "peer didn't use PPK for PPK_ID 'pqc-1'"

# strongSwan without a PPK against esprit's mandatory PPK: refused with
# AUTHENTICATION_FAILED, counted by esprit, nothing installed.
mark=$(wc -l <"$work/sw/charon.log")
"$peer" swanctl ppk-sw "$work/sw" --initiate --ike to-noppk --child to-noppk-net --timeout 15 >"$work/initiate.log" 2>&1 \
  && ike_fail "strongSwan without a PPK got a tunnel from a connection whose PPK is mandatory"
new_charon_lines >"$work/case.log"
grep -q "AUTHENTICATION_FAILED" "$work/case.log" || ike_fail "strongSwan was not told AUTHENTICATION_FAILED"
[[ $(table_slots) == 0 ]] || ike_fail "SAs in the table after a refused PPK-less peer"
echo "  strongSwan without PPK vs mandatory: refused; strongSwan: $(grep -o "received AUTHENTICATION_FAILED.*" "$work/case.log" | head -1)"

ectl --json stats >"$work/stats.json"
grep -q '"esprit_ike_ppk_handshakes_total{role=initiator}": 1' "$work/stats.json" \
  && grep -q '"esprit_ike_ppk_handshakes_total{role=responder}": 1' "$work/stats.json" \
  || ike_fail "the PPK IKE SAs are not counted one per role: $(cat "$work/stats.json")"
grep -q 'handshake_failures_total{reason=auth_failed}": 1' "$work/stats.json" \
  || ike_fail "the refused PPK-less peer is not counted as an authentication failure: $(cat "$work/stats.json")"
grep -q "$ppk1" "$work/ike.log" && ike_fail "esprit-ike logged a PPK"
"$peer" stop ppk-sw "$work/sw"
pass
