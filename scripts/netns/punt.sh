#!/usr/bin/env bash
# The punt path through a real kernel: a host on the outside link ARPs for
# the gateway (esprit answers), pings it (ICMP goes to the kernel over the
# TAP, the reply comes back out), and sends a UDP datagram to port 500,
# which a socket bound to the TAP's address receives; after a SIGKILL and
# restart of the dataplane the TAP is still there with its address, and the
# same socket answers again.
name=punt
. "$(dirname "$0")/lib.sh"
add_host ext ext0 ep-out 172.16.2.9/24
start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 ep-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "net_null0,no-rx=1" }
    punt: { device: "net_tap0,iface=esprit-tap$$" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [172.16.2.5], inside: [192.168.105.1] }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
metrics: { listen: null }
EOT
tap=esprit-tap$$
# The dataplane keeps its punt TAP across restarts (persist): cleanup removes it.
links+=("$tap")
ip link set "$tap" up
ip addr add 172.16.2.5/24 dev "$tap"
[[ $(mac_of "$tap") == $(ip -br link show | awk '$1=="ep-out"{print $3}' >/dev/null; grep -o 'mac [0-9a-f:]*' "$work/dp.log" | head -1 | cut -d' ' -f2) ]] \
  || fail "the TAP does not carry the outside port's MAC ($(mac_of "$tap"))"

ip netns exec ext ping -c 3 -i 0.2 -W 2 172.16.2.5 >"$work/ping.log" 2>&1 || { cat "$work/ping.log"; fail "no ping reply from the gateway's kernel through the TAP"; }
ip -n ext neigh show 172.16.2.5 | grep -q lladdr || fail "ext did not resolve the gateway by ARP"

# UDP 500 to a socket on the TAP's address (esprit-ike will sit there),
# bound once and kept through a SIGKILL and restart of the dataplane: the
# TAP persists with its address, so the socket serves on (as esprit-ike's do).
/usr/bin/python3 - "$work" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("172.16.2.5", 500)); s.settimeout(30)
# The root kernel also sees the frames on ep-out (af_packet does not steal
# them): a datagram can arrive twice. Answer all, until the last one.
while True:
    data, peer = s.recvfrom(2048)
    open(sys.argv[1] + "/udp500-" + data.decode(), "wb").write(data)
    s.sendto(b"pong:" + data, peer)
    if data == b"after-restart":
        break
PY
listener=$!
pids+=($listener)
for _ in $(seq 50); do ss -lun | grep -q '172.16.2.5:500 ' && break; sleep 0.1; done
ike_ping() {
  ip netns exec ext /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.bind(("172.16.2.9", 500)); s.sendto(sys.argv[1].encode(), ("172.16.2.5", 500))
print(s.recvfrom(2048)[0].decode())' "$1"
}
reply=$(ike_ping ike-sa-init) || fail "no UDP reply from the socket behind the TAP"
[[ -f $work/udp500-ike-sa-init && $reply == pong:ike-sa-init ]] || fail "UDP 500 payload wrong: '$reply'"

kill -KILL "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=("${pids[@]:1}")
ip -br addr show dev "$tap" | grep -q "172.16.2.5/24" || fail "the TAP or its address went with the dataplane: $(ip -br addr show dev "$tap" 2>&1)"
cp "$work/dp.yaml" "$work/dp-restart.yaml"
start_dataplane <"$work/dp-restart.yaml"
dp=${pids[-1]}
reply=$(ike_ping after-restart) || fail "the socket bound before the dataplane's restart gets nothing after it"
wait $listener || fail "the socket on the TAP address got nothing"
[[ -f $work/udp500-after-restart && $reply == pong:after-restart ]] || fail "UDP 500 payload wrong after the restart: '$reply'"
kill -TERM "$dp"; wait "$dp" || fail "esprit-dataplane did not exit 0 on SIGTERM"
grep -q "punt" "$work/dp.log" || true
pass
