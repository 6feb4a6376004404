#!/usr/bin/env bash
# Two esprit gateways, each esprit-ike programming its own esprit-dataplane,
# site to site with the ipsecme extensions no real peer here has: an RFC
# 8750 implicit-IV Child SA (ENCR_AES_GCM_16_IIV) carrying a security label
# (RFC 9478), traffic through both dataplanes:
#
#   ns iiv-cl 192.168.61.2 ── [dataplane A] ══ iiva/iivb ══ [dataplane B] ── ns iiv-sv 192.168.62.2
#                              172.16.61.1                    172.16.61.2
#   esprit-ike A/B on the punt TAPs' addresses (IKE goes host-internal between them)
#
# Passes when ping crosses both dataplanes over the IIV SAs (the SA counters
# move on both sides), ESP on the link is 8 octets shorter than with an
# explicit IV (the IV is not sent), both list the SA as implicit IV with the
# label, and a Child SA rekey keeps IIV and the label with traffic flowing.
# Each dataplane enforces the label: each host's untagged network is the
# label's segment (dataplane.labels, vlan 0; this kernel has no 802.1Q for
# VLAN subinterfaces: two labels on VLANs are tests/spd_e2e.rs's).
# Both dataplanes busy-poll the same core here (two cores, shared with
# builds), so some loss is tolerated: loss-free rekeys are the strongSwan
# scripts' business; this one is about IIV and labels between two esprits.
name=ike-esprit-pair-ext
. "$(dirname "$0")/lib.sh"
need_ike
command -v tcpdump >/dev/null || fail "tcpdump is not installed"

add_host iiv-cl cl0 iivcl 192.168.61.2/24 192.168.61.1
add_host iiv-sv sv0 iivsv 192.168.62.2/24 192.168.62.1
ip link add iiva type veth peer name iivb; links+=(iiva)
for l in iiva iivb; do ip link set "$l" up; ethtool -K "$l" tx off rx off >/dev/null 2>&1 || true; done
for l in iivcl iivsv iiva iivb; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
label=system_u:object_r:ipsec_spd_t:s0
psk=esprit-pair-psk-$$

# start_dp NAME YAML: like lib.sh's start_dataplane, for two instances.
start_dp() {
  local n=$1 attempt
  cat >"$work/$n.yaml"
  for attempt in 1 2 3; do
    "$bin" --config "$work/$n.yaml" >"$work/$n-dp.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do
      grep -qs "worker(s), crypto" "$work/$n-dp.log" && { sleep 0.5; return 0; }
      kill -0 "${pids[-1]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "${pids[-1]}" 2>/dev/null && { sed "s/^/  dp-$n| /" "$work/$n-dp.log" | tail -25; fail "dataplane $n did not start"; }
    wait "${pids[-1]}" || true; unset 'pids[-1]'
    if grep -q "PACKET_FANOUT" "$work/$n-dp.log" && [[ $attempt -lt 3 ]]; then
      echo "  (af_packet fanout clash at start of $n, retrying)"; continue
    fi
    tail -20 "$work/$n-dp.log"; fail "dataplane $n exited before its workers started"
  done
}

# gw NAME OUT_IF IN_IF OUT_ADDR PEER_ADDR PEER_MAC IN_ADDR HOST HOST_MAC LOCAL_NET REMOTE_NET ROLE
gw() {
  local n=$1 out_if=$2 in_if=$3 out=$4 peer=$5 peer_mac=$6 in=$7 host=$8 host_mac=$9 lnet=${10} rnet=${11} role=${12}
  local remote_line="" ids
  [[ $role == initiator ]] && remote_line="remote: $peer"
  if [[ $n == a ]]; then ids="local_id: a.esprit
      remote_id: b.esprit"; else ids="local_id: b.esprit
      remote_id: a.esprit"; fi
  start_dp "$n" <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-iiv-$n-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 "$out_if")", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 "$in_if")", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=iivtap$n$$" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [$out], inside: [$in] }
  neighbours:
    - { ip: $peer, mac: "$peer_mac" }
    - { ip: $host, mac: "$host_mac" }
  sa_table: { path: /dev/shm/esprit-netns-$$-$n, capacity: 64 }
  labels: [{ label: "$label", vlan: 0 }]
metrics: { listen: null }
ike:
  listen: [$out]
  control_socket: $work/$n.sock
  metrics_listen: null
  orphan_grace_secs: 0
  connections:
    site:
      $remote_line
      $ids
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16iiv, aes256gcm16]
        local_ts: [$lnet]
        remote_ts: [$rnet]
        sec_label: "$label"
EOT
  links+=("iivtap$n$$")  # kept across dataplane restarts (persist): cleanup removes it
  ip link set "iivtap$n$$" up
  ip addr add "$out/32" dev "iivtap$n$$"
  start_ike "$work/$n.yaml" "" "$work/$n-ike.log"
}
pair_fail() {
  for n in a b; do sed "s/^/  ike-$n| /" "$work/$n-ike.log" | tail -15; sed "s/^/  dp-$n| /" "$work/$n-dp.log" | tail -8; done
  fail "$@"
}
gw a iiva iivcl 172.16.61.1 172.16.61.2 "$(mac_of iivb)" 192.168.61.1 192.168.61.2 "$(ns_mac_of iiv-cl cl0)" 192.168.61.0/24 192.168.62.0/24 initiator
gw b iivb iivsv 172.16.61.2 172.16.61.1 "$(mac_of iiva)" 192.168.62.1 192.168.62.2 "$(ns_mac_of iiv-sv sv0)" 192.168.62.0/24 192.168.61.0/24 responder
actl() { "$ctl" --socket "$work/a.sock" "$@"; }
bctl() { "$ctl" --socket "$work/b.sock" "$@"; }

actl initiate site >/dev/null || pair_fail "esprit-ctl initiate site was refused"
for _ in $(seq 100); do actl list-sas >"$work/a.txt" 2>&1; bctl list-sas >"$work/b.txt" 2>&1
  grep -q INSTALLED "$work/a.txt" && grep -q INSTALLED "$work/b.txt" && break; sleep 0.1; done
for n in a b; do
  grep -q "ENCR_AES_GCM_16_IIV-256, no ESN, implicit IV" "$work/$n.txt" || pair_fail "$n does not list an IIV Child SA: $(cat "$work/$n.txt")"
  grep -q "label $label" "$work/$n.txt" || pair_fail "$n does not list the label: $(cat "$work/$n.txt")"
done

# ESP on the link between the dataplanes: 84-octet ICMP echo inside, so
# IP 20 + SPI/SN 8 + (84 + 2 -> 88) + ICV 16 = 132 octets, no IV.
# Neighbour resolution and the workers' first look at the new SAs take a
# moment on a busy machine: wait for the path before measuring.
for _ in $(seq 10); do ip netns exec iiv-cl ping -c 1 -W 1 192.168.62.2 >/dev/null 2>&1 && break; done
timeout 20 tcpdump -i iiva -n -v -c 4 -l esp >"$work/esp.txt" 2>/dev/null &
dumper=$!
sleep 1
ip netns exec iiv-cl ping -c 8 -i 0.2 -W 2 192.168.62.2 >"$work/ping.log" 2>&1 \
  || { cat "$work/ping.log"; pair_fail "no ping from 192.168.61.2 to 192.168.62.2 through both dataplanes"; }
wait $dumper || true
grep -q "ESP" "$work/esp.txt" || pair_fail "no ESP seen between the dataplanes: $(cat "$work/esp.txt")"
grep -q "proto ESP (50), length 132" "$work/esp.txt" || pair_fail "ESP packets are not 132 octets (an explicit IV would make 140): $(cat "$work/esp.txt")"
grep -q "proto ESP (50), length 140" "$work/esp.txt" && pair_fail "an 8-octet IV went on the wire: $(cat "$work/esp.txt")"
counters() { "$ctl" --socket "$work/$1.sock" --json list-sas | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(str(c.get("in_pkts",0))+"/"+str(c.get("out_pkts",0))+"/"+str(c["child_sa"]) for i in d["ike_sas"] for c in i["child_sas"] if c["state"]=="INSTALLED"))'; }
for n in a b; do
  IFS=/ read -r inp outp child <<<"$(counters $n)"
  [[ ${inp:-0} -ge 1 && ${outp:-0} -ge 1 ]] || pair_fail "$n's SA counters do not show the ping (in $inp, out $outp)"
done

# A Child SA rekey keeps IIV and the label, traffic flows on the new SAs.
IFS=/ read -r _ _ child <<<"$(counters a)"
actl rekey child "$child" >/dev/null || pair_fail "esprit-ctl rekey child $child was refused"
for _ in $(seq 100); do IFS=/ read -r _ _ c2 <<<"$(counters a)"; [[ -n $c2 && $c2 != "$child" ]] && break; sleep 0.1; done
[[ -n $c2 && $c2 != "$child" ]] || pair_fail "no new Child SA after the rekey"
ok=0
for _ in $(seq 10); do ip netns exec iiv-cl ping -c 1 -W 2 192.168.62.2 >"$work/ping2.log" 2>&1 && { ok=1; break; }; done
[[ $ok == 1 ]] || pair_fail "no ping after the rekey"
actl list-sas >"$work/a.txt"
grep -q "implicit IV" "$work/a.txt" && grep -q "label $label" "$work/a.txt" || pair_fail "the rekeyed SA lost IIV or the label: $(cat "$work/a.txt")"
IFS=/ read -r inp outp _ <<<"$(counters a)"
[[ ${inp:-0} -ge 1 && ${outp:-0} -ge 1 ]] || pair_fail "no traffic on the rekeyed SAs (in $inp, out $outp)"
pass
