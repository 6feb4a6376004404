#!/usr/bin/env bash
# Real traffic through two independent ESP gateways: DPDK's ipsec-secgw
# (librte_ipsec + intel-ipsec-mb, built by bench/secgw/build.sh) on the
# client side and esprit-dataplane on the server side, raw ESP between them,
# AES-128-GCM tunnel SAs both ways. Ping and a bulk TCP transfer (iperf3)
# from the client namespace to the server namespace must pass.
#
#   ns cl 192.168.5.2 ─ sg-in [ipsec-secgw] sg-out ══ESP══ es-out [esprit] es-in ─ ns srv 192.168.105.2
name="secgw-interop ${SUITE:-aes-128-gcm} esn=${ESN:-0}"
. "$(dirname "$0")/lib.sh"
secgw=$("$top/bench/secgw/build.sh" | tail -1) || fail "could not build DPDK's ipsec-secgw (bench/secgw/build.sh)"
[[ -x $secgw ]] || fail "no ipsec-secgw binary"
suite=${SUITE:-aes-128-gcm}
esn=${ESN:-0}
esn_flag=() esn_yaml=false
[[ $esn == 1 ]] && esn_flag=(-e) esn_yaml=true
key=2b7e151628aed2a6abf7158809cf4f3cdeadbeef
[[ $suite != aes-128-gcm ]] && key=2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3cdeadbeef
# ipsec-secgw's CPU-crypto path comes from crypto_aesni_gcm; ChaCha20-Poly1305
# goes through the intel-ipsec-mb chacha PMD, as a lookaside device.
crypto_vdev=crypto_aesni_gcm0 sa_type=cpu-crypto
[[ $suite == chacha20-poly1305 ]] && crypto_vdev=crypto_chacha20_poly1305 sa_type=no-offload
colon() { echo "$1" | sed 's/../&:/g; s/:$//'; }

add_host cl cl0 sg-in 192.168.5.2/24 192.168.5.1
add_host srv srv0 es-in 192.168.105.2/24 192.168.105.1
ip link add sg-out type veth peer name es-out; links+=(sg-out)
for l in sg-out es-out; do ip link set "$l" up; ethtool -K "$l" tx off rx off >/dev/null 2>&1 || true; done
# ESP adds up to 73 bytes and neither gateway fragments: the hosts' MTU
# leaves room for it (as MSS clamping would on a real deployment).
ip -n cl link set cl0 mtu 1400
ip -n srv link set srv0 mtu 1400
# ipsec-secgw answers no ARP: the client knows its gateway's MAC.
ip -n cl neigh add 192.168.5.1 lladdr "$(mac_of sg-in)" dev cl0 nud permanent

cat >"$work/secgw.cfg" <<EOT
sp ipv4 out esp protect 4101 pri 1 dst 192.168.105.0/24 sport 0:65535 dport 0:65535
sp ipv4 in esp protect 8197 pri 1 dst 192.168.5.0/24 sport 0:65535 dport 0:65535
sa out 4101 aead_algo $suite aead_key $(colon $key) mode ipv4-tunnel src 172.16.1.5 dst 172.16.2.5 type $sa_type
sa in 8197 aead_algo $suite aead_key $(colon $key) mode ipv4-tunnel src 172.16.2.5 dst 172.16.1.5 type $sa_type
rt ipv4 dst 172.16.2.5/32 port 1
rt ipv4 dst 192.168.5.0/24 port 0
neigh port 0 $(ns_mac_of cl cl0)
neigh port 1 $(mac_of es-out)
EOT
start_secgw() {
  "$secgw" -l 0 --no-huge -m 1024 --no-pci --file-prefix "secgw-netns-$$" \
    --vdev "$(af_packet 0 sg-in)" --vdev "$(af_packet 1 sg-out)" --vdev "$crypto_vdev" \
    -- -p 0x3 -P -u 0x2 --config '(0,0,0),(1,0,0)' -f "$work/secgw.cfg" -l "${esn_flag[@]}" \
    >"$work/secgw.log" 2>&1 &
  pids+=($!)
}
start_secgw
start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 es-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 es-in)", rx_desc: 512, tx_desc: 512 }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [172.16.2.5], inside: [192.168.105.1] }
  neighbours: [ { ip: 172.16.1.5, mac: "$(mac_of sg-out)" } ]
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
  static_sas:
    - { spi: 4101, direction: in, suite: $suite, key: "$key", esn: $esn_yaml, src: 172.16.1.5, dst: 172.16.2.5,
        selectors: ["192.168.5.0/24"], local_selectors: ["192.168.105.0/24"] }
    - { spi: 8197, direction: out, suite: $suite, key: "$key", esn: $esn_yaml, src: 172.16.2.5, dst: 172.16.1.5,
        selectors: ["192.168.5.0/24"] }
metrics: { listen: "127.0.0.1:${METRICS_PORT:-0}" }
EOT
for attempt in 1 2 3; do
  for _ in $(seq 50); do grep -q "entering main loop" "$work/secgw.log" && break; kill -0 "${pids[0]}" 2>/dev/null || break; sleep 0.2; done
  kill -0 "${pids[0]}" 2>/dev/null && break
  # The same af_packet fanout clash as in start_dataplane: retry, out loud.
  grep -q PACKET_FANOUT "$work/secgw.log" && [[ $attempt -lt 3 ]] || break
  echo "  (ipsec-secgw: af_packet fanout clash at start, retrying)"
  pids=("${pids[@]:1}")
  start_secgw
  pids=("${pids[-1]}" "${pids[@]:0:${#pids[@]}-1}")
done
kill -0 "${pids[0]}" 2>/dev/null || { grep -v "^EAL: \(Detected|Multi|Physical|Selected\)" "$work/secgw.log" | tail -25; fail "ipsec-secgw did not start"; }

ip netns exec cl ping -c 5 -i 0.2 -W 2 192.168.105.2 >"$work/ping.log" 2>&1 \
  || { cat "$work/ping.log"; tail -20 "$work/secgw.log"; fail "ping through ipsec-secgw and esprit failed"; }
ip -n srv neigh show 192.168.105.1 | grep -q lladdr || fail "the server did not resolve esprit's inside address by ARP"

ip netns exec srv iperf3 -s -1 -D -p 5201 --logfile "$work/iperf-s.log"
sleep 0.5
ip netns exec cl timeout 30 iperf3 -c 192.168.105.2 -p 5201 -t 3 -J >"$work/iperf.json" 2>&1 \
  || { tail -5 "$work/iperf.json"; fail "iperf3 (bulk TCP) through both gateways failed"; }
rate=$(/usr/bin/python3 -c "import json,sys; d=json.load(open('$work/iperf.json')); print('%.1f' % (d['end']['sum_received']['bits_per_second']/1e6))")
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$rate') > 0 else 1)" || fail "iperf3 moved no data"
echo "  iperf3 TCP through ipsec-secgw + esprit ($suite, ESN $esn): $rate Mbit/s"
if [[ ${DEMO:-0} == 1 ]]; then
  echo "== ping from the client (192.168.5.2) to the server (192.168.105.2), through ipsec-secgw and esprit"
  sed 's/^/  /' "$work/ping.log"
  echo "== esprit's /metrics (non-zero series)"
  /usr/bin/python3 -c "
import urllib.request
for l in urllib.request.urlopen('http://127.0.0.1:${METRICS_PORT}/metrics').read().decode().splitlines():
    if l.startswith('esprit_') and not l.endswith(' 0'): print('  ' + l)"
fi
kill -TERM "${pids[1]}"; wait "${pids[1]}" || fail "esprit-dataplane did not exit 0 on SIGTERM"
grep -E "^worker 0" "$work/dp.log" | sed 's/^/  /'
pass
