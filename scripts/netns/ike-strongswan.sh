#!/usr/bin/env bash
# esprit as an IKEv2 responder for a strongSwan 5.9.8 road warrior (Debian's
# charon with its userspace ESP, kernel-libipsec, which always sends ESP in
# UDP 4500), with esprit's own dataplane carrying the traffic:
#
#   ns ike-rw: charon, 172.16.9.2, virtual IP from esprit's pool
#        │ veth
#   ik-out [esprit-dataplane af_packet] ik-in ── ns ike-srv: 192.168.109.2
#        punt: net_tap iketap<pid> = 172.16.9.1 in the root namespace,
#              esprit-ike bound there on UDP 500/4500
#
# AES-256-GCM for IKE and ESP, X25519; PSK authentication, or with AUTH=cert
# certificates from a throwaway CA made here with openssl (KEY=ecdsa, ed25519
# or rsa: RFC 7427 signatures both ways). Passes when the
# tunnel comes up, the client got 10.99.0.1, ping and a bulk TCP transfer
# from the virtual IP to the server go through esprit's dataplane (its SA
# counters, read by esprit-ctl list-sas, count them; 200 MB cross the Child
# SA's rekey_bytes, so esprit rekeys it from those counters), strongSwan's
# own Child SA and IKE SA rekeys lose no ping, a terminate from
# esprit-ctl takes the SAs down on both sides and out of the table, and so
# does a delete from strongSwan; esprit-ike restarted under a running
# dataplane leaves traffic flowing and then clears the orphaned SAs after
# its grace period; a vanished peer is found by DPD and its SAs removed.
# NAT=1 puts the client behind a port-rewriting NAT namespace.
# LABEL=<context> gives the Child SA an RFC 9478 security label on both
# sides (strongSwan label_mode=simple): negotiated as TS_SECLABEL, listed
# by esprit-ctl, and the traffic above runs over the labeled SAs. The
# dataplane enforces the label: the server's untagged network is the
# label's segment (dataplane.labels, vlan 0; this kernel has no 802.1Q for
# a VLAN subinterface), so no unlabeled or other-label SA could carry it.
# ESP=aes192gcm16 (or aes128gcm16, chacha20poly1305) makes that the only
# ESP proposal on both sides instead of AES-256-GCM; BACKEND=ipsec-mb (or
# ring, rustcrypto) sets the dataplane's crypto.backend (default auto).
# Throughout, strongSwan logs at level 4 (ike, chd: every key it derives)
# and at the end no key, PSK or SK_* value of the run may appear in
# esprit-ike's or the dataplane's log or esprit-ctl's output
# (secrets-in-logs.py; neither process has a more verbose level).
# DEMO=1 prints esprit-ctl's views and both processes' metrics.
auth=${AUTH:-psk} key=${KEY:-ecdsa}
name="ike-strongswan auth=$auth${AUTH:+ key=$key}"
[[ $auth == psk ]] && name=ike-strongswan
nat=${NAT:-0}
[[ $nat == 1 ]] && name="$name nat"
label=${LABEL:-}
[[ -n $label ]] && name="$name label"
esp=${ESP:-}
[[ -n $esp ]] && name="$name esp=$esp"
backend=${BACKEND:-auto}
[[ $backend != auto ]] && name="$name backend=$backend"
# PQ=1: strongSwan 6.1.0 from the sid chroot (scripts/peers/strongswan-chroot-peer)
# with X25519 + ML-KEM-768 (RFC 9370 ADDKE1, IKE_INTERMEDIATE, IKE_FOLLOWUP_KE
# in its IKE SA rekey), esprit on its default proposal.
pq=${PQ:-0}
if [[ $pq == 1 ]]; then
  name="$name pq"
  export STRONGSWAN_ROOT=${STRONGSWAN_ROOT:-${INTEROP_DIR:-/var/tmp/esprit-interop}/chroots/sid-root}
  STRONGSWAN_PEER=${STRONGSWAN_PEER:-$(cd "$(dirname "$0")/../peers" && pwd)/strongswan-chroot-peer}
fi
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan
demo=${DEMO:-0}
say() { [[ $demo == 1 ]] && echo "$@" || true; }

if [[ $nat == 1 ]]; then
  # NAT=1: the client sits behind a masquerading router namespace that also
  # rewrites UDP source ports, so esprit must detect the NAT (RFC 7296
  # §2.23), follow the peer to 4500 and send ESP to the mapped port.
  add_host ike-nat nat0 ik-out 172.16.9.2/24
  ip netns add ike-rw; netns+=(ike-rw)
  ip -n ike-nat link add natin type veth peer name rw0 netns ike-rw
  ip -n ike-nat addr add 10.0.5.1/24 dev natin; ip -n ike-nat link set natin up
  ip -n ike-rw link set lo up; ip -n ike-rw addr add 10.0.5.2/24 dev rw0; ip -n ike-rw link set rw0 up
  ip -n ike-rw route add default via 10.0.5.1
  ip netns exec ike-nat sysctl -qw net.ipv4.ip_forward=1
  ip netns exec ike-nat iptables -t nat -A POSTROUTING -o nat0 -p udp -j MASQUERADE --to-ports 20000-29999
  ip netns exec ike-nat iptables -t nat -A POSTROUTING -o nat0 -j MASQUERADE
  client_ns=ike-nat client_if=nat0 client_addr=10.0.5.2
else
  add_host ike-rw rw0 ik-out 172.16.9.2/24
  client_ns=ike-rw client_if=rw0 client_addr=172.16.9.2
fi
add_host ike-srv srv0 ik-in 192.168.109.2/24 192.168.109.1
# ESP adds up to 73 bytes and the dataplane does not fragment: leave room
# on the server side (the client's TUN device has its own smaller MTU).
ip -n ike-srv link set srv0 mtu 1400
# The root namespace's kernel sees the frames on ik-out too (af_packet does
# not steal them), and 172.16.9.1 is local to it (on the TAP): strict
# reverse-path filtering makes it drop what arrives there instead of
# delivering every IKE and ESP datagram a second time, beside the punt path.
for l in ik-out ik-in; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
tap=iketap$$
# The dataplane keeps its punt TAP across restarts (persist): cleanup removes it.
links+=("$tap")
psk=esprit-interop-psk-$$
client_id=client@esprit
if [[ $auth == psk ]]; then
  ike_local_auth="{ psk: \"$psk\" }" ike_remote_auth="{ psk: \"$psk\" }"
  sw_local="auth = psk" sw_remote="auth = psk"
  sw_secrets="ike-esprit { id-1 = $client_id
               id-2 = gw.esprit
               secret = \"$psk\" }"
elif [[ $auth == cert ]]; then
  client_id=client.esprit
  make_pki "$work/pki" "$key" "esprit interop CA" esprit gw client
  ike_local_auth="{ cert: $work/pki/gw.pem, key: $work/pki/gw.key }" ike_remote_auth="{ cas: [$work/pki/ca.pem] }"
  # swanctl loads private keys only from its credential directories, which
  # sit beside the swanctl.conf it is given ($work).
  mkdir -p "$work/x509" "$work/x509ca" "$work/pkcs8"
  cp "$work/pki/client.pem" "$work/x509/"; cp "$work/pki/ca.pem" "$work/x509ca/"
  cp "$work/pki/client.key" "$work/pkcs8/"
  sw_local="auth = pubkey
            certs = client.pem" sw_remote="auth = pubkey"
  sw_secrets=""
else
  fail "AUTH must be psk or cert"
fi
metrics_port=${METRICS_PORT:-0}
ike_metrics_port=${IKE_METRICS_PORT:-0}

start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 ik-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 ik-in)", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=$tap" }
  workers: { count: 1, cpus: [1] }
  crypto: { backend: $backend }
  addresses: { outside: [172.16.9.1], inside: [192.168.109.1] }
  neighbours:
    - { ip: 172.16.9.2, mac: "$(ns_mac_of $client_ns $client_if)" }
    - { ip: 192.168.109.2, mac: "$(ns_mac_of ike-srv srv0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
$( [[ -n $label ]] && printf '  labels: [{ label: "%s", vlan: 0 }]' "$label" )
metrics: { listen: "127.0.0.1:$metrics_port" }
ike:
  listen: [172.16.9.1]
  control_socket: $work/ike.sock
  metrics_listen: "127.0.0.1:$ike_metrics_port"
  orphan_grace_secs: 3
  limits: { retransmit_timeout_ms: 500, retransmit_base: 1.5, retransmit_tries: 2 }
  pools:
    rw: { v4: 10.99.0.0/24, dns: [192.168.109.53] }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: $client_id
      local_auth: $ike_local_auth
      remote_auth: $ike_remote_auth
      proposals: $( [[ $pq == 1 ]] && echo "[aes256gcm16-prfsha384-x25519-ke1_mlkem768]" || echo "[aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-ecp256]" )
      pool: rw
      dpd_delay_secs: 2
      child:
        esp_proposals: [${esp:-aes256gcm16, aes128gcm16}]
        local_ts: [192.168.109.0/24]
$( [[ -n $label ]] && printf '        sec_label: "%s"\n' "$label" )
        # Volume lifetime, read from the dataplane's counters: the 200 MB
        # transfer below crosses it.
        rekey_bytes: 50000000
EOT
ip link set "$tap" up
ip addr add 172.16.9.1/24 dev "$tap"

start_ike "$work/dp.yaml"
peer_logs=("swanctl-load:$work/sw-load.log" "charon:$work/sw/charon.log")

cat >"$work/swanctl.conf" <<EOT
connections {
  esprit {
    local_addrs = $client_addr
    remote_addrs = 172.16.9.1
    vips = 0.0.0.0
    proposals = $( [[ $pq == 1 ]] && echo aes256gcm16-prfsha384-x25519-ke1_mlkem768 || echo aes256gcm16-prfsha256-x25519 )
    local { $sw_local
            id = $client_id }
    remote { $sw_remote
             id = gw.esprit }
    children {
      net { remote_ts = 192.168.109.0/24
$( [[ -n $label ]] && printf '            label = %s\n            label_mode = simple\n' "$label" )
            esp_proposals = ${esp:-aes256gcm16} }
    }
  }
}
secrets {
  $sw_secrets
}
EOT
start_strongswan ike-rw
# Level 4 ("private": every derived key) for IKE and Child SAs, the
# material the log check at the end searches esprit's logs for.
sed -i 's/^\( *\)ike = 2$/\1ike = 4\n\1chd = 4/' "$work/sw/strongswan.conf"
grep -q "chd = 4" "$work/sw/strongswan.conf" || ike_fail "could not raise charon's log level in $work/sw/strongswan.conf"
"$peer" swanctl ike-rw "$work/sw" --reload-settings >"$work/sw-reload.log" 2>&1 \
  || { cat "$work/sw-reload.log"; ike_fail "swanctl --reload-settings failed"; }
"$peer" swanctl ike-rw "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
  || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan could not bring the tunnel up"; }
say "--- strongSwan: swanctl --list-sas"
"$peer" swanctl ike-rw "$work/sw" --list-sas >"$work/sw-sas.log" 2>&1
[[ $demo == 1 ]] && cat "$work/sw-sas.log"
grep -q "ESTABLISHED" "$work/sw-sas.log" || ike_fail "strongSwan lists no established IKE SA"
grep -q "INSTALLED" "$work/sw-sas.log" || ike_fail "strongSwan lists no installed Child SA"
grep -q "Sk_ei secret =>" "$work/sw/charon.log" || ike_fail "charon does not log its keys at level 4 (the log check needs them)"
if [[ -n $esp ]]; then
  case $esp in
    aes128gcm16) sw_esp=AES_GCM_16-128 ;; aes192gcm16) sw_esp=AES_GCM_16-192 ;;
    aes256gcm16) sw_esp=AES_GCM_16-256 ;; chacha20poly1305) sw_esp=CHACHA20_POLY1305 ;;
    *) ike_fail "ESP=$esp: not one this scenario knows" ;;
  esac
  grep -q "ESP:$sw_esp" "$work/sw-sas.log" || ike_fail "strongSwan did not negotiate ESP $sw_esp: $(cat "$work/sw-sas.log")"
fi
grep -q "10.99.0.1" "$work/sw-sas.log" || ike_fail "the client did not get 10.99.0.1 from esprit's pool"
grep -q "nameserver 192.168.109.53" "$work/resolv.conf" || ike_fail "the client did not get the pool's DNS server (INTERNAL_IP4_DNS): $(cat "$work/resolv.conf")"

ectl list-sas >"$work/sas.txt" || ike_fail "esprit-ctl list-sas failed"
say "--- esprit-ctl list-sas"; [[ $demo == 1 ]] && cat "$work/sas.txt"
grep -q "ESTABLISHED" "$work/sas.txt" || ike_fail "esprit-ctl lists no established IKE SA: $(cat "$work/sas.txt")"
grep -q "INSTALLED, TUNNEL-in-UDP" "$work/sas.txt" || ike_fail "esprit-ctl lists no installed UDP-encapsulated Child SA: $(cat "$work/sas.txt")"
if [[ -n $label ]]; then
  grep -q "label $label" "$work/sas.txt" || ike_fail "esprit-ctl lists no security label: $(cat "$work/sas.txt")"
  grep -q "selected security label: $label" "$work/sw/charon.log" || ike_fail "strongSwan did not select the label"
fi
if [[ $pq == 1 ]]; then
  grep -q "CURVE25519+ML_KEM_768 (post-quantum)" "$work/sas.txt" || ike_fail "esprit-ctl does not list X25519+ML-KEM-768: $(cat "$work/sas.txt")"
  grep -q "/CURVE_25519/KE1_ML_KEM_768" "$work/sw-sas.log" || ike_fail "strongSwan does not list X25519+ML-KEM-768: $(cat "$work/sw-sas.log")"
  grep -q "strongSwan 6\.1" "$work/sw/charon.log" || ike_fail "not strongSwan 6.1 from the chroot: $(head -3 "$work/sw/charon.log")"
fi
if [[ $nat == 1 ]]; then
  grep -q "NAT: remote behind NAT" "$work/sas.txt" || ike_fail "esprit did not detect the NAT: $(cat "$work/sas.txt")"
  grep -Eq "remote 'client@esprit' @ 172\.16\.9\.2:2[0-9]{4}" "$work/sas.txt" \
    || ike_fail "esprit does not follow the NAT-mapped port of the peer's 4500: $(cat "$work/sas.txt")"
fi

ip netns exec ike-rw ping -c 5 -i 0.2 -W 2 192.168.109.2 >"$work/ping.log" 2>&1 \
  || { cat "$work/ping.log"; ike_fail "no ping from the road warrior's virtual IP to the server through esprit"; }
say "--- ping from the road warrior (10.99.0.1) to 192.168.109.2"; [[ $demo == 1 ]] && cat "$work/ping.log"

ip netns exec ike-srv iperf3 -s -1 -B 192.168.109.2 >"$work/iperf-s.log" 2>&1 &
iperf_srv=$!
sleep 0.5
ip netns exec ike-rw timeout 90 iperf3 -c 192.168.109.2 -n 200M -f m >"$work/iperf.log" 2>&1 \
  || { cat "$work/iperf.log"; ike_fail "bulk TCP transfer (iperf3) through the tunnel failed"; }
wait $iperf_srv 2>/dev/null || true
mbits=$(awk '/receiver/ {print $7}' "$work/iperf.log")
say "--- iperf3, road warrior to server through esprit: ${mbits} Mbit/s"

ectl --json list-sas >"$work/sas.json" || ike_fail "esprit-ctl --json list-sas failed"
ectl --json stats >"$work/stats.json"
# The volume rekey (rekey_bytes 50 MB) can land right at the end of the
# transfer: then the newest Child SA is seconds old and has carried nothing,
# and its predecessor is gone. A rekey by volume was itself driven by the
# dataplane's byte counters, so it shows the traffic as well.
/usr/bin/python3 - "$work/sas.json" "$work/stats.json" <<'PY' || ike_fail "esprit's SA counters do not show the traffic: $(cat "$work/sas.json")"
import json, sys
d = json.load(open(sys.argv[1]))
stats = json.load(open(sys.argv[2]))
kids = [c for c in d["ike_sas"][0]["child_sas"] if c["state"] == "INSTALLED"]
c = kids[-1]
busiest = max(kids, key=lambda k: k["in_pkts"])
rekeyed = stats["counters"].get("esprit_ike_rekeys_total{kind=child}", 0) >= 1
fresh = (c["installed_secs"] or 0) <= 5
assert (busiest["in_pkts"] >= 1000 and busiest["out_pkts"] >= 5) or (rekeyed and fresh), (c, busiest)
assert c["ts_remote"] == ["10.99.0.1/32"], c
PY
if [[ $demo == 1 ]]; then echo "--- esprit-ctl list-sas after the transfer (200 MB, rekey_bytes 50 MB)"; ectl list-sas; fi
grep -q '"esprit_ike_rekeys_total{kind=child}": [1-9]' "$work/stats.json" \
  || ike_fail "200 MB through a Child SA with rekey_bytes 50 MB did not rekey it: $(cat "$work/stats.json")"

# Rekeys started by the peer, during traffic: Child SA, then IKE SA.
for what in "--child net" "--ike esprit"; do
  ip netns exec ike-rw ping -c 20 -i 0.1 -W 2 192.168.109.2 >"$work/ping-rekey.log" 2>&1 &
  pinger=$!
  sleep 0.3
  "$peer" swanctl ike-rw "$work/sw" --rekey $what >"$work/rekey.log" 2>&1 || { cat "$work/rekey.log"; ike_fail "swanctl --rekey $what failed"; }
  wait $pinger || true
  grep -q " 0% packet loss" "$work/ping-rekey.log" || { tail -3 "$work/ping-rekey.log"; ike_fail "ping lost packets across the peer's rekey ($what)"; }
done
ectl --json stats >"$work/stats.json"
grep -q '"esprit_ike_rekeys_total{kind=ike}": 1' "$work/stats.json" || ike_fail "the peer's IKE SA rekey is not counted: $(cat "$work/stats.json")"
# The IKE_AUTH signatures (ours and the check of strongSwan's) ran as one
# job on esprit-ike's rayon pool; a PSK handshake makes none.
if [[ $auth == cert ]]; then
  grep -Eq '"esprit_ike_auth_jobs_total\{result=done\}": 1,?$' "$work/stats.json" || ike_fail "the IKE_AUTH signatures did not run as one pool job: $(cat "$work/stats.json")"
elif grep -q '"esprit_ike_auth_jobs_total' "$work/stats.json"; then
  ike_fail "a PSK handshake made signature jobs: $(cat "$work/stats.json")"
fi
if [[ $pq == 1 ]]; then
  grep -q "IKE_FOLLOWUP_KE response" "$work/sw/charon.log" || ike_fail "strongSwan's IKE SA rekey ran no IKE_FOLLOWUP_KE"
fi
ectl --json list-sas >"$work/sas.json"
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
up = [i for i in d["ike_sas"] if i["state"] == "Established"]
assert len(up) == 1 and [c["state"] for c in up[0]["child_sas"]] == ["INSTALLED"], d' "$work/sas.json" \
  || ike_fail "not exactly one IKE SA with one installed Child SA after the rekeys: $(cat "$work/sas.json")"
ectl list-sas >"$work/sas.txt"
say "--- esprit-ctl list-sas after strongSwan rekeyed the Child SA and the IKE SA"; [[ $demo == 1 ]] && cat "$work/sas.txt"
if [[ $demo == 1 ]]; then
  echo "--- esprit-ctl stats"; ectl stats
  echo "--- esprit-ike metrics (http://$ike_metrics/metrics)"
  curl -sf "http://$ike_metrics/metrics" | grep -v '^#' || echo "(esprit-ike /metrics did not answer)"
  if [[ $metrics_port != 0 ]]; then
    echo "--- esprit-dataplane metrics (http://127.0.0.1:$metrics_port/metrics), nonzero series"
    curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -v '^#' | grep -v ' 0$' || echo "(esprit-dataplane /metrics did not answer)"
  fi
fi

ike_sa=$(/usr/bin/python3 -c 'import json,sys; print([i for i in json.load(open(sys.argv[1]))["ike_sas"] if i["state"] == "Established"][0]["ike_sa"])' "$work/sas.json")
ectl terminate "$ike_sa" >/dev/null || ike_fail "esprit-ctl terminate failed"
# (Through files, not pipes: grep -q closing a pipe early fails the
# pipeline under pipefail.)
sw_established() { "$peer" swanctl ike-rw "$work/sw" --list-sas >"$work/sw-now.log" 2>&1; grep -q ESTABLISHED "$work/sw-now.log"; }
for _ in $(seq 50); do sw_established || break; sleep 0.1; done
sw_established && ike_fail "strongSwan still has the IKE SA after esprit terminated it"
ectl --json stats >"$work/stats.json"
grep -q '"child_sas": 0' "$work/stats.json" || ike_fail "Child SAs left after terminate: $(cat "$work/stats.json")"
grep -q '"sa_table_slots": 0' "$work/stats.json" || ike_fail "SA table slots left after terminate: $(cat "$work/stats.json")"

table_slots() { ectl --json stats >"$work/stats.json" && /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sa_table_slots"])' "$work/stats.json"; }
up_again() {
  "$peer" swanctl ike-rw "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
    || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan could not bring the tunnel up again ($1)"; }
  [[ $(table_slots) == 2 ]] || ike_fail "no SAs in the table after the tunnel came up again ($1)"
}

# A delete from the peer (swanctl --terminate) empties esprit's table.
up_again "before the peer's delete"
"$peer" swanctl ike-rw "$work/sw" --terminate --ike esprit --timeout 10 >"$work/terminate.log" 2>&1 \
  || { cat "$work/terminate.log"; ike_fail "swanctl --terminate failed"; }
for _ in $(seq 50); do [[ $(table_slots) == 0 ]] && break; sleep 0.1; done
[[ $(table_slots) == 0 ]] || ike_fail "SAs left in esprit's table after the peer deleted the IKE SA"

# esprit-ike restarts while the dataplane runs (DESIGN.md §1): traffic goes
# on over the SAs in the table; the new esprit-ike finds them orphaned (it
# keeps no IKE state across restarts), keeps them orphan_grace_secs (3),
# then deletes them.
up_again "before the restart"
kill -TERM "$ike_pid"; wait "$ike_pid" 2>/dev/null || true
ip netns exec ike-rw ping -c 3 -i 0.2 -W 2 192.168.109.2 >"$work/ping-norestart.log" 2>&1 \
  || { cat "$work/ping-norestart.log"; ike_fail "traffic stopped while esprit-ike was down (the table's SAs should carry it)"; }
start_ike "$work/dp.yaml" "" "+$work/ike.log"
ectl --json list-sas >"$work/sas.json" || ike_fail "the restarted esprit-ike does not answer"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["orphans"]) == 2 and not d["ike_sas"], d' "$work/sas.json" \
  || ike_fail "the restarted esprit-ike does not list the 2 orphaned SAs: $(cat "$work/sas.json")"
for _ in $(seq 60); do [[ $(table_slots) == 0 ]] && break; sleep 0.1; done
[[ $(table_slots) == 0 ]] || ike_fail "orphaned SAs still in the table after the grace period"
"$peer" swanctl ike-rw "$work/sw" --terminate --ike esprit --force --timeout 5 >/dev/null 2>&1 || true

# Dead peer detection (dpd_delay_secs 2, retransmits 0.5 s x1.5, 2 tries):
# strongSwan vanishes, esprit-ike notices and removes the SAs.
up_again "before DPD"
kill -KILL "$(cat "$work/sw/pid")"  # no DELETE: the peer just vanishes
for _ in $(seq 150); do [[ $(table_slots) == 0 ]] && break; sleep 0.1; done
[[ $(table_slots) == 0 ]] || ike_fail "esprit-ike did not notice the dead peer within 15 s"
grep -q "down: Timeout" "$work/ike.log" || ike_fail "the IKE SA did not go down by timeout after the peer died"

# Every key of the run (three IKE SAs and their rekeys, the Child SAs and
# their rekeys), the PSK and our private key: none in what esprit wrote.
ectl list-sas >>"$work/sas.txt" 2>&1 || true
secrets_args=(--min 8)
[[ $auth == psk ]] && secrets_args+=(--psk "$psk")
[[ $auth == cert ]] && secrets_args+=(--pem "$work/pki/gw.key")
/usr/bin/python3 "$(dirname "$0")/secrets-in-logs.py" "$work/sw/charon.log" "${secrets_args[@]}" \
  "$work/ike.log" "$work/dp.log" "$work/sas.txt" "$work/sas.json" "$work/stats.json" >"$work/secrets.log" 2>&1 \
  || { cat "$work/secrets.log"; ike_fail "key material in esprit's logs"; }
say "--- $(head -1 "$work/secrets.log")"
# Every SA ran on the backend asked for (ipsec-mb says when it cannot).
grep -E "crypto ipsec-mb (refuses|cannot key)" "$work/dp.log" && ike_fail "SAs fell back from the dataplane's $backend backend"
pass
