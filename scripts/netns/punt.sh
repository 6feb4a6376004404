#!/usr/bin/env bash
# The punt path through a real kernel: a host on the outside link ARPs for
# the gateway (esprit answers), pings it (ICMP goes to the kernel over the
# TAP, the reply comes back out), and sends a UDP datagram to port 500,
# which a socket bound to the TAP's address receives.
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
ip link set "$tap" up
ip addr add 172.16.2.5/24 dev "$tap"
[[ $(mac_of "$tap") == $(ip -br link show | awk '$1=="ep-out"{print $3}' >/dev/null; grep -o 'mac [0-9a-f:]*' "$work/dp.log" | head -1 | cut -d' ' -f2) ]] \
  || fail "the TAP does not carry the outside port's MAC ($(mac_of "$tap"))"

ip netns exec ext ping -c 3 -i 0.2 -W 2 172.16.2.5 >"$work/ping.log" 2>&1 || { cat "$work/ping.log"; fail "no ping reply from the gateway's kernel through the TAP"; }
ip -n ext neigh show 172.16.2.5 | grep -q lladdr || fail "ext did not resolve the gateway by ARP"

# UDP 500 to a socket on the TAP's address (esprit-ike will sit there).
/usr/bin/python3 - "$work" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("172.16.2.5", 500)); s.settimeout(10)
data, peer = s.recvfrom(2048)
open(sys.argv[1] + "/udp500", "wb").write(data)
s.sendto(b"pong:" + data, peer)
PY
listener=$!
sleep 0.5
reply=$(ip netns exec ext /usr/bin/python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.bind(("172.16.2.9", 500)); s.sendto(b"ike-sa-init", ("172.16.2.5", 500))
print(s.recvfrom(2048)[0].decode())') || fail "no UDP reply from the socket behind the TAP"
wait $listener || fail "the socket on the TAP address got nothing"
[[ $(cat "$work/udp500") == ike-sa-init && $reply == pong:ike-sa-init ]] || fail "UDP 500 payloads wrong: '$(cat "$work/udp500")' '$reply'"
kill -TERM "${pids[0]}"; wait "${pids[0]}" || fail "esprit-dataplane did not exit 0 on SIGTERM"
grep -q "punt" "$work/dp.log" || true
pass
