#!/usr/bin/env bash
# Two esprit gateways, each esprit-ike programming its own esprit-dataplane,
# negotiate Diet-ESP header compression (draft-ietf-ipsecme-diet-esp-07,
# N(HCP_PROPOSAL) of draft-ietf-ipsecme-ikev2-diet-esp-extension) in
# IKE_AUTH, then carry ping and UDP through both dataplanes compressed:
#
#   ns dt-cl 192.168.71.2 ── [dataplane A] ══ dta/dtb ══ [dataplane B] ── ns dt-sv 192.168.72.2
#                             172.16.71.1                   172.16.71.2
#   esprit-ike A/B on the punt TAPs' addresses (IKE goes host-internal between them)
#
# Passes when both list the same compression profile; ping and 64-octet UDP
# datagrams arrive through both dataplanes; tcpdump on the link between them
# sees ESP of exactly the compressed lengths (computed below, printed with
# the octets saved per packet); a Child SA rekey keeps the profile (the
# rekey proposes it again, ext §4) and traffic flows compressed on the new
# SAs. Both dataplanes busy-poll one core here, so single pings are retried
# a bounded number of times; the UDP count is what must arrive.
name=ike-esprit-pair-diet
. "$(dirname "$0")/lib.sh"
need_ike
command -v tcpdump >/dev/null || fail "tcpdump is not installed"
[[ -x /usr/bin/python3 ]] || fail "/usr/bin/python3 is missing (the UDP sender and receiver)"

add_host dt-cl cl0 dtcl 192.168.71.2/24 192.168.71.1
add_host dt-sv sv0 dtsv 192.168.72.2/24 192.168.72.1
ip link add dta type veth peer name dtb; links+=(dta)
for l in dta dtb; do ip link set "$l" up; ethtool -K "$l" tx off rx off >/dev/null 2>&1 || true; done
for l in dtcl dtsv dta dtb; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
psk=esprit-diet-psk-$$

# start_dp NAME YAML: like lib.sh's start_dataplane, for two instances.
start_dp() {
  local n=$1 attempt
  cat >"$work/$n.yaml"
  for attempt in 1 2 3; do
    "$bin" --config "$work/$n.yaml" >"$work/$n-dp.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do
      grep -qs "worker(s), crypto" "$work/$n-dp.log" && return 0
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
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-diet-$n-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 "$out_if")", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 "$in_if")", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=dttap$n$$" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [$out], inside: [$in] }
  neighbours:
    - { ip: $peer, mac: "$peer_mac" }
    - { ip: $host, mac: "$host_mac" }
  sa_table: { path: /dev/shm/esprit-netns-$$-$n, capacity: 64 }
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
        esp_proposals: [aes256gcm16iiv]
        local_ts: [$lnet]
        remote_ts: [$rnet]
        compression:
          proposals:
            - { dscp_cda: [lower], ecn_cda: [lower], flow_label_cda: [lower], alignment: [8bit], esp_trailer: [optional], esp_spi_lsb: [8], esp_sn_lsb: [8] }
EOT
  ip link set "dttap$n$$" up
  ip addr add "$out/32" dev "dttap$n$$"
  start_ike "$work/$n.yaml" "" "$work/$n-ike.log"
}
pair_fail() {
  for n in a b; do sed "s/^/  ike-$n| /" "$work/$n-ike.log" | tail -15; sed "s/^/  dp-$n| /" "$work/$n-dp.log" | tail -8; done
  fail "$@"
}
gw a dta dtcl 172.16.71.1 172.16.71.2 "$(mac_of dtb)" 192.168.71.1 192.168.71.2 "$(ns_mac_of dt-cl cl0)" 192.168.71.0/24 192.168.72.0/24 initiator
gw b dtb dtsv 172.16.71.2 172.16.71.1 "$(mac_of dta)" 192.168.72.1 192.168.72.2 "$(ns_mac_of dt-sv sv0)" 192.168.72.0/24 192.168.71.0/24 responder
actl() { "$ctl" --socket "$work/a.sock" "$@"; }
bctl() { "$ctl" --socket "$work/b.sock" "$@"; }

actl initiate site >/dev/null || pair_fail "esprit-ctl initiate site was refused"
for _ in $(seq 100); do actl list-sas >"$work/a.txt" 2>&1; bctl list-sas >"$work/b.txt" 2>&1
  grep -q INSTALLED "$work/a.txt" && grep -q INSTALLED "$work/b.txt" && break; sleep 0.1; done
profile="compression Diet-ESP (draft-ietf-ipsecme-diet-esp-07) dscp_cda=lower,ecn_cda=lower,flow_label_cda=lower,alignment=8bit,esp_trailer=optional,esp_spi_lsb=8,esp_sn_lsb=8"
for n in a b; do
  grep -qF "$profile" "$work/$n.txt" || pair_fail "$n does not list the negotiated profile: $(cat "$work/$n.txt")"
done

# The expected lengths on the link (outer IPv4 20, IIV AES-GCM, ICV 16):
#   ping, 84-octet inner (IPv4 20 + ICMP 64): uncompressed 20 + SPI/SN 8 +
#     (84 + Pad Length, Next Header 2 -> 88, 4-aligned) + 16 = 132; Diet-ESP:
#     20 + EEC 2 + IIPC residue 4 (IHL 4 + Flags 3 + protocol 8 + the two
#     addresses' low octets 16 = 31 bits; ICMP is not compressed) + 64 + no
#     trailer + 16 = 106: 26 octets saved.
#   UDP, 64-octet payload (IPv4 20 + UDP 8 + 64 = 92): uncompressed 20 + 8 +
#     (92 + 2 -> 96) + 16 = 140; Diet-ESP: 20 + 2 + residue 8 (31 bits + both
#     ports 32 = 63 bits) + 64 + 16 = 110: 30 octets saved.
ping_plain=132 ping_diet=106 udp_plain=140 udp_diet=110

for _ in $(seq 10); do ip netns exec dt-cl ping -c 1 -W 1 192.168.72.2 >/dev/null 2>&1 && break; done
# The UDP receiver: counts 64-octet datagrams, writes the count on each.
ip netns exec dt-sv /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("192.168.72.2", 5001))
n = 0
while True:
    d, _ = s.recvfrom(2048)
    if len(d) == 64: n += 1
    open(sys.argv[1] + ".tmp", "w").write(str(n)); __import__("os").replace(sys.argv[1] + ".tmp", sys.argv[1])
' "$work/udp-count" &
pids+=($!)
# udp_send COUNT: COUNT 64-octet datagrams, 2 ms apart (the shared core).
udp_send() {
  ip netns exec dt-cl /usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(bytes([i & 0xff]) * 64, ("192.168.72.2", 5001)); time.sleep(0.002)
' "$1"
}
udp_count() { cat "$work/udp-count" 2>/dev/null || echo 0; }
# wait_udp N: until N datagrams have arrived, 10 s at most.
wait_udp() { for _ in $(seq 100); do [[ $(udp_count) -ge $1 ]] && return 0; sleep 0.1; done; return 1; }

# capture FILE: tcpdump on the link (30 s at most); waits until it listens.
# On both ends, as received: DPDK's af_packet sends past the qdisc layer
# (qdisc_bypass), where the kernel's taps do not see what it sends.
capture() {
  timeout 30 tcpdump -i any -n -v -l esp >"$1" 2>"$1.err" &
  dumper=$!
  for _ in $(seq 50); do grep -q "listening on" "$1.err" 2>/dev/null && return 0; sleep 0.1; done
  pair_fail "tcpdump did not start: $(cat "$1.err")"
}
# stop_capture FILE N: once N ESP packets are in FILE (5 s at most), stops tcpdump.
stop_capture() {
  for _ in $(seq 50); do [[ $(grep -c "proto ESP" "$1") -ge $2 ]] && break; sleep 0.1; done
  kill -INT "$dumper" 2>/dev/null; wait "$dumper" || true
}
# Sends 8 pings and 40 datagrams, captures the ESP, checks the lengths.
# The first argument names the phase.
traffic() {
  local phase=$1 before
  capture "$work/esp-$phase.txt"
  ip netns exec dt-cl ping -c 8 -i 0.2 -W 2 192.168.72.2 >"$work/ping-$phase.log" 2>&1 \
    || { cat "$work/ping-$phase.log"; pair_fail "$phase: no ping from 192.168.71.2 to 192.168.72.2 through both dataplanes"; }
  before=$(udp_count)
  udp_send 40
  wait_udp $((before + 36)) || pair_fail "$phase: $(( $(udp_count) - before )) of 40 UDP datagrams arrived"
  local f="$work/esp-$phase.txt"
  # 8 echo requests and replies, 36 datagrams or more.
  stop_capture "$f" 52
  local seen
  seen=$(grep -o "proto ESP (50), length [0-9]*\|^ *[0-9.]* > [0-9.]*" "$f" | paste - - | awk '{print $6, $7, $9}' | sort | uniq -c | tr '\n' ';')
  grep -q "proto ESP (50), length $ping_diet" "$f" || pair_fail "$phase: no ping ESP of $ping_diet octets (count length from > to: $seen)"
  grep -q "proto ESP (50), length $udp_diet" "$f" || pair_fail "$phase: no UDP ESP of $udp_diet octets (count length from > to: $seen)"
  grep -Eq "proto ESP \(50\), length ($ping_plain|$udp_plain)" "$f" && pair_fail "$phase: uncompressed ESP on the link: $(grep -E "length ($ping_plain|$udp_plain)" "$f" | head -3)"
  echo "  $phase: ping ESP $ping_diet octets (uncompressed $ping_plain, $((ping_plain - ping_diet)) saved), UDP/64 ESP $udp_diet octets (uncompressed $udp_plain, $((udp_plain - udp_diet)) saved); $(grep -c "proto ESP" "$f") ESP packets captured"
}
traffic initial

counters() { "$ctl" --socket "$work/$1.sock" --json list-sas | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(str(c.get("in_pkts",0))+"/"+str(c.get("out_pkts",0))+"/"+str(c["child_sa"]) for i in d["ike_sas"] for c in i["child_sas"] if c["state"]=="INSTALLED"))'; }
# 8 echo requests and 36 datagrams or more one way, 8 replies the other.
for n in a b; do
  IFS=/ read -r inp outp child <<<"$(counters $n)"
  [[ $((${inp:-0} + ${outp:-0})) -ge 52 && ${inp:-0} -ge 8 && ${outp:-0} -ge 8 ]] || pair_fail "$n's SA counters do not show the traffic (in $inp, out $outp)"
done

# A Child SA rekey keeps the profile; traffic goes on compressed on the new SAs.
IFS=/ read -r _ _ child <<<"$(counters a)"
actl rekey child "$child" >/dev/null || pair_fail "esprit-ctl rekey child $child was refused"
for _ in $(seq 100); do IFS=/ read -r _ _ c2 <<<"$(counters a)"; [[ -n $c2 && $c2 != "$child" ]] && break; sleep 0.1; done
[[ -n $c2 && $c2 != "$child" ]] || pair_fail "no new Child SA after the rekey"
for _ in $(seq 10); do ip netns exec dt-cl ping -c 1 -W 1 192.168.72.2 >/dev/null 2>&1 && break; done
for n in a b; do
  "$ctl" --socket "$work/$n.sock" list-sas >"$work/$n.txt"
  grep -qF "$profile" "$work/$n.txt" || pair_fail "$n: the rekeyed SA lost the profile: $(cat "$work/$n.txt")"
done
traffic rekeyed
IFS=/ read -r inp outp _ <<<"$(counters a)"
[[ ${inp:-0} -ge 8 && ${outp:-0} -ge 44 ]] || pair_fail "no traffic on the rekeyed SAs (in $inp, out $outp)"
pass
