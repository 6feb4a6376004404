#!/usr/bin/env bash
# esprit as the IKEv2 initiator, site to site, toward a strongSwan 5.9.8
# gateway (Debian's charon, userspace ESP through kernel-libipsec, which
# always sends ESP in UDP 4500), with esprit's own dataplane on our side:
#
#   ns ike-sw: charon at 172.16.9.2 protecting 10.50.0.1 (on its loopback)
#        │ veth
#   ik-out [esprit-dataplane af_packet] ik-in ── ns ike-srv: 192.168.109.2
#        punt: net_tap iketap<pid> = 172.16.9.1, esprit-ike bound there
#
# `esprit-ctl initiate site` starts it (PSK, AES-128-GCM, ECP-256 for IKE),
# after a connection with the wrong PSK failed and was counted by reason.
# Passes when both ends list the SAs, ping from 192.168.109.2 to 10.50.0.1
# goes through esprit's dataplane both ways (the table's SA counters count
# it), a Child SA rekey started by esprit-ctl keeps traffic flowing on new
# SPIs, an IKE SA rekey moves the Child SA to the new IKE SA without loss,
# and esprit-ctl terminate clears both sides and the table.
# PQ=1: esprit's proposal adds ML-KEM-768 as RFC 9370 ADDKE1; strongSwan
# 5.9.8 predates RFC 9370, so everything must run on the classic fallback
# proposal esprit sends after it (and the IKE SA rekey too).
pq=${PQ:-0}
name=ike-strongswan-initiator
[[ $pq == 1 ]] && name="$name pq-fallback"
site_proposal=aes128gcm16-prfsha256-ecp256
[[ $pq == 1 ]] && site_proposal=aes128gcm16-prfsha256-ecp256-ke1_mlkem768
# PQ=2: the gateway is strongSwan 6.1.0 from the sid chroot
# (strongswan-chroot-peer) and both sides run ECP-256 + ML-KEM-768 (RFC
# 9370 ADDKE1 over IKE_INTERMEDIATE; esprit's IKE SA rekey with
# IKE_FOLLOWUP_KE).
sw_proposal=aes128gcm16-prfsha256-ecp256
if [[ $pq == 2 ]]; then
  name="$name pq-mlkem"
  site_proposal=aes128gcm16-prfsha256-ecp256-ke1_mlkem768
  sw_proposal=$site_proposal
  export STRONGSWAN_ROOT=${STRONGSWAN_ROOT:-${INTEROP_DIR:-/var/tmp/esprit-interop}/chroots/sid-root}
  STRONGSWAN_PEER=${STRONGSWAN_PEER:-$(cd "$(dirname "$0")/../peers" && pwd)/strongswan-chroot-peer}
fi
# DIET=1: esprit's Child SA config proposes Diet-ESP header compression
# (N(HCP_PROPOSAL), draft-ietf-ipsecme-ikev2-diet-esp-extension) as between
# two esprits (ike-esprit-pair-diet.sh); strongSwan does not know the
# notify, ignores it (RFC 7296 §3.10.1), and the Child SA comes up
# uncompressed: everything below must pass unchanged, rekeys included.
diet=${DIET:-0}
diet_child=""
if [[ $diet == 1 ]]; then
  name="$name diet-esp-ignored"
  diet_child="compression: { proposals: [ { esp_spi_lsb: [8], esp_sn_lsb: [8], alignment: [8bit] } ] }"
fi
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan

add_host ike-sw sw0 ik-out 172.16.9.2/24
add_host ike-srv srv0 ik-in 192.168.109.2/24 192.168.109.1
ip -n ike-srv link set srv0 mtu 1400
# The protected address lives on the namespace's loopback (no dummy
# interfaces on this kernel).
ip -n ike-sw addr add 10.50.0.1/32 dev lo
# See ike-strongswan.sh: keep the root kernel off the af_packet veths.
for l in ik-out ik-in; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
tap=iketap$$
# The dataplane keeps its punt TAP across restarts (persist): cleanup removes it.
links+=("$tap")
psk=esprit-site-psk-$$

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
    - { ip: 172.16.9.2, mac: "$(ns_mac_of ike-sw sw0)" }
    - { ip: 192.168.109.2, mac: "$(ns_mac_of ike-srv srv0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
metrics: { listen: null }
ike:
  listen: [172.16.9.1]
  control_socket: $work/ike.sock
  metrics_listen: null
  orphan_grace_secs: 0
  connections:
    site:
      remote: 172.16.9.2
      local_id: esprit.site
      remote_id: strongswan.site
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [$site_proposal]
      child:
        esp_proposals: [aes128gcm16]
        local_ts: [192.168.109.0/24]
        remote_ts: [10.50.0.1/32]
        $diet_child
    wrong-key:
      remote: 172.16.9.2
      local_id: esprit.site
      remote_id: strongswan.site
      local_auth: { psk: "not-$psk" }
      remote_auth: { psk: "not-$psk" }
      proposals: [$site_proposal]
      child:
        esp_proposals: [aes128gcm16]
        local_ts: [192.168.109.0/24]
        remote_ts: [10.50.0.1/32]
EOT
ip link set "$tap" up
ip addr add 172.16.9.1/24 dev "$tap"
start_ike "$work/dp.yaml"
peer_logs=("charon:$work/sw/charon.log")

cat >"$work/swanctl.conf" <<EOT
connections {
  esprit {
    local_addrs = 172.16.9.2
    remote_addrs = 172.16.9.1
    proposals = $sw_proposal
    local { auth = psk
            id = strongswan.site }
    remote { auth = psk
             id = esprit.site }
    children {
      site { local_ts = 10.50.0.1/32
             remote_ts = 192.168.109.0/24
             esp_proposals = aes128gcm16 }
    }
  }
}
secrets {
  ike-esprit { id-1 = strongswan.site
               id-2 = esprit.site
               secret = "$psk" }
}
EOT
start_strongswan ike-sw

# A wrong PSK first: strongSwan refuses it, esprit counts the failure.
ectl initiate wrong-key >/dev/null || ike_fail "esprit-ctl initiate wrong-key was refused"
for _ in $(seq 100); do
  ectl --json stats >"$work/stats.json"; grep -q 'handshake_failures_total{reason=auth_failed}": 1' "$work/stats.json" && break; sleep 0.1
done
grep -q 'handshake_failures_total{reason=auth_failed}": 1' "$work/stats.json" \
  || ike_fail "a refused PSK is not counted as an authentication failure: $(cat "$work/stats.json")"
ectl initiate site >/dev/null || ike_fail "esprit-ctl initiate site was refused"
for _ in $(seq 100); do ectl list-sas >"$work/sas.txt" 2>&1; grep -q "INSTALLED" "$work/sas.txt" && break; sleep 0.1; done
ectl list-sas >"$work/sas.txt"
grep -q "ESTABLISHED" "$work/sas.txt" && grep -q "INSTALLED" "$work/sas.txt" || ike_fail "no tunnel after 10 s: $(cat "$work/sas.txt")"
grep -q "(initiator)" "$work/sas.txt" || ike_fail "esprit is not listed as the initiator: $(cat "$work/sas.txt")"
"$peer" swanctl ike-sw "$work/sw" --list-sas >"$work/sw-sas.log" 2>&1
grep -q "ESTABLISHED" "$work/sw-sas.log" && grep -q "INSTALLED" "$work/sw-sas.log" || ike_fail "strongSwan lists no tunnel: $(cat "$work/sw-sas.log")"
if [[ $diet == 1 ]]; then
  # esprit sent the notify (charon logs the unknown type as a number: the
  # default private-use HCP_PROPOSAL), got no answer, and installed an
  # uncompressed Child SA.
  grep -q "IKE_AUTH request 1 \[.* N((53733)) \]" "$work/sw/charon.log" \
    || ike_fail "strongSwan did not receive an unknown notify (HCP_PROPOSAL) in IKE_AUTH: $(grep 'IKE_AUTH request' "$work/sw/charon.log")"
  grep -q "compression" "$work/sas.txt" && ike_fail "esprit lists a compressed Child SA with a peer that cannot compress: $(cat "$work/sas.txt")"
fi
if [[ $pq == 1 ]]; then
  grep -q "ENCR_AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256$" "$work/sas.txt" \
    || ike_fail "esprit did not fall back to its classic proposal: $(cat "$work/sas.txt")"
  grep -q "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256$" "$work/sw-sas.log" \
    || ike_fail "strongSwan does not list the classic proposal: $(cat "$work/sw-sas.log")"
fi
if [[ $pq == 2 ]]; then
  grep -q "ECP_256+ML_KEM_768 (post-quantum)" "$work/sas.txt" || ike_fail "esprit does not list ECP-256+ML-KEM-768: $(cat "$work/sas.txt")"
  grep -q "/ECP_256/KE1_ML_KEM_768" "$work/sw-sas.log" || ike_fail "strongSwan does not list ECP-256+ML-KEM-768: $(cat "$work/sw-sas.log")"
fi

ip netns exec ike-srv ping -c 5 -i 0.2 -W 2 10.50.0.1 >"$work/ping.log" 2>&1 \
  || { cat "$work/ping.log"; ike_fail "no ping from 192.168.109.2 to strongSwan's 10.50.0.1 through esprit"; }
spis() { ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(c["spi_in"]+"/"+c["spi_out"]+"/"+str(c.get("in_pkts",0))+"/"+str(c.get("out_pkts",0))+"/"+str(c["child_sa"]) for i in d["ike_sas"] for c in i["child_sas"] if c["state"]=="INSTALLED"))'; }
read -r before <<<"$(spis)"
IFS=/ read -r in1 out1 inp1 outp1 child1 <<<"$before"
[[ ${inp1:-0} -ge 5 && ${outp1:-0} -ge 5 ]] || ike_fail "esprit's SA counters do not show the ping (in $inp1, out $outp1)"

# Rekey the Child SA from esprit while traffic flows; the ping must not stop.
ip netns exec ike-srv ping -c 30 -i 0.1 -W 2 10.50.0.1 >"$work/ping-rekey.log" 2>&1 &
pinger=$!
sleep 0.5
ectl rekey child "$child1" >/dev/null || ike_fail "esprit-ctl rekey child $child1 was refused"
# iputils ping exits 0 on partial loss (without -w): read its summary.
wait $pinger || true; grep -q " 0% packet loss" "$work/ping-rekey.log" \
  || { tail -3 "$work/ping-rekey.log"; ike_fail "ping lost packets across the Child SA rekey"; }
after=$(spis)
IFS=/ read -r in2 out2 inp2 outp2 child2 <<<"$after"
[[ -n $in2 && $in2 != "$in1" && $out2 != "$out1" ]] || ike_fail "no new SPIs after the rekey: before $before, after $after"
[[ ${inp2:-0} -ge 1 && ${outp2:-0} -ge 1 ]] || ike_fail "no traffic on the rekeyed SAs: $after"

# Rekey the IKE SA from esprit during traffic: a new IKE SA carries on,
# the Child SA moves to it and keeps its SPIs and its slots.
established_ike() { ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(i["ike_sa"]) for i in json.load(sys.stdin)["ike_sas"] if i["state"]=="Established"))'; }
old_ike=$(established_ike)
ip netns exec ike-srv ping -c 20 -i 0.1 -W 2 10.50.0.1 >"$work/ping-ike-rekey.log" 2>&1 &
pinger=$!
sleep 0.3
ectl rekey ike "$old_ike" >/dev/null || ike_fail "esprit-ctl rekey ike $old_ike was refused"
wait $pinger || true
grep -q " 0% packet loss" "$work/ping-ike-rekey.log" || { tail -3 "$work/ping-ike-rekey.log"; ike_fail "ping lost packets across the IKE SA rekey"; }
for _ in $(seq 50); do new_ike=$(established_ike); [[ -n $new_ike && $new_ike != "$old_ike" ]] && break; sleep 0.1; done
[[ -n $new_ike && $new_ike != "$old_ike" ]] || ike_fail "no new IKE SA after the IKE SA rekey (was $old_ike, now '$new_ike')"
[[ $(spis) == "$in2/$out2/"* ]] || ike_fail "the Child SA did not move to the new IKE SA unchanged: $(spis), was $after"
ectl --json stats >"$work/stats.json"
grep -q '"esprit_ike_rekeys_total{kind=ike}": 1' "$work/stats.json" || ike_fail "the IKE SA rekey is not counted: $(cat "$work/stats.json")"
if [[ $pq == 2 ]]; then
  grep -q "IKE_FOLLOWUP_KE request" "$work/sw/charon.log" || ike_fail "esprit's IKE SA rekey ran no IKE_FOLLOWUP_KE"
fi
ike_sa=$new_ike
ectl terminate "$ike_sa" >/dev/null || ike_fail "esprit-ctl terminate failed"
# (Through files, not pipes: grep -q closing a pipe early fails the
# pipeline under pipefail.)
sw_established() { "$peer" swanctl ike-sw "$work/sw" --list-sas >"$work/sw-now.log" 2>&1; grep -q ESTABLISHED "$work/sw-now.log"; }
for _ in $(seq 50); do sw_established || break; sleep 0.1; done
sw_established && ike_fail "strongSwan still has the IKE SA after esprit terminated it"
ectl --json stats >"$work/stats.json"
grep -q '"sa_table_slots": 0' "$work/stats.json" || ike_fail "SA table slots left after terminate: $(cat "$work/stats.json")"
"$peer" stop ike-sw "$work/sw"
pass
