#!/usr/bin/env bash
# esprit-ike + esprit's dataplane as the responder for a strongSwan 5.9.8
# road warrior over IPv6 outer addresses (IKE and ESP over IPv6; strongSwan's
# kernel-libipsec puts ESP in UDP 4500, here over IPv6), with virtual IPv4
# and IPv6 addresses from esprit's pool and IPv4 and IPv6 traffic inside:
#
#   ns ike6-rw: charon fd00:96::2 ── veth ── i6-out [esprit-dataplane af_packet] i6-in ── ns ike6-srv
#        punt: net_tap ike6tap<pid> = fd00:96::1, esprit-ike bound there    192.168.196.2, fd00:196::2
#
# Passes when the tunnel comes up on both sides with both virtual IPs,
# ping (v4 and v6) and a TCP transfer cross esprit's dataplane on the SAs
# both list, strongSwan's Child SA and IKE SA rekeys lose no ping, and
# esprit-ctl terminate clears both sides and the table.
name=ike-strongswan-v6
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan

add_host ike6-rw rw0 i6-out fd00:96::2/64
add_host ike6-srv srv0 i6-in 192.168.196.2/24 192.168.196.1
ip -n ike6-rw addr change fd00:96::2/64 dev rw0 nodad 2>/dev/null || true
ip -n ike6-srv addr add fd00:196::2/64 dev srv0 nodad
ip -n ike6-srv route add default via fd00:196::1
ip -n ike6-srv link set srv0 mtu 1400
# The root kernel sees the frames on the af_packet veths too, and
# fd00:96::1 is local to it (on the punt TAP): without IPv6 on the veths it
# cannot deliver IKE (or ESP in UDP) a second time beside the punt path.
for l in i6-out i6-in; do sysctl -qw "net.ipv6.conf.$l.disable_ipv6=1"; done
tap=ike6tap$$
# The dataplane keeps its punt TAP across restarts (persist): cleanup removes it.
links+=("$tap")
psk=esprit-v6-psk-$$
# DAD would hold the address back for a second or more.
ip netns exec ike6-rw sysctl -qw net.ipv6.conf.rw0.accept_dad=0
for _ in $(seq 30); do ip -n ike6-rw -6 addr show dev rw0 | grep -q tentative || break; sleep 0.1; done

start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 i6-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 i6-in)", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=$tap" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: ["fd00:96::1"], inside: [192.168.196.1, "fd00:196::1"] }
  neighbours:
    - { ip: "fd00:96::2", mac: "$(ns_mac_of ike6-rw rw0)" }
    - { ip: 192.168.196.2, mac: "$(ns_mac_of ike6-srv srv0)" }
    - { ip: "fd00:196::2", mac: "$(ns_mac_of ike6-srv srv0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
metrics: { listen: null }
ike:
  listen: ["fd00:96::1"]
  control_socket: $work/ike.sock
  metrics_listen: null
  orphan_grace_secs: 0
  pools:
    rw: { v4: 10.96.0.0/24, v6: "fd00:9600::10-fd00:9600::20" }
  connections:
    rw:
      local_id: gw6.esprit
      remote_id: client6@esprit
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.196.0/24, "fd00:196::/64"]
EOT
ip link set "$tap" up
ip addr add fd00:96::1/64 dev "$tap" nodad
start_ike "$work/dp.yaml"
peer_logs=("charon:$work/sw/charon.log")

cat >"$work/swanctl.conf" <<EOT
connections {
  esprit {
    local_addrs = fd00:96::2
    remote_addrs = fd00:96::1
    vips = 0.0.0.0, ::
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = psk
            id = client6@esprit }
    remote { auth = psk
             id = gw6.esprit }
    children {
      net { remote_ts = 192.168.196.0/24, fd00:196::/64
            esp_proposals = aes256gcm16 }
    }
  }
}
secrets {
  ike-esprit { id-1 = client6@esprit
               id-2 = gw6.esprit
               secret = "$psk" }
}
EOT
start_strongswan ike6-rw
"$peer" swanctl ike6-rw "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
  || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan could not bring the tunnel up over IPv6"; }
"$peer" swanctl ike6-rw "$work/sw" --list-sas >"$work/sw-sas.log" 2>&1
grep -q "ESTABLISHED" "$work/sw-sas.log" && grep -q "INSTALLED" "$work/sw-sas.log" || ike_fail "strongSwan lists no tunnel: $(cat "$work/sw-sas.log")"
grep -q "fd00:96::2\[4500\]" "$work/sw-sas.log" || ike_fail "strongSwan's IKE SA is not on IPv6 port 4500: $(cat "$work/sw-sas.log")"
grep -q "10.96.0.1" "$work/sw-sas.log" && grep -q "fd00:9600::10" "$work/sw-sas.log" \
  || ike_fail "the client did not get both virtual IPs from esprit's pool: $(cat "$work/sw-sas.log")"
ectl list-sas >"$work/sas.txt"
grep -q "fd00:96::1" "$work/sas.txt" && grep -q "INSTALLED, TUNNEL-in-UDP" "$work/sas.txt" || ike_fail "esprit's listing: $(cat "$work/sas.txt")"

ip netns exec ike6-rw ping -c 5 -i 0.2 -W 2 192.168.196.2 >"$work/ping.log" 2>&1 \
  || { cat "$work/ping.log"; ike_fail "no IPv4 ping through esprit over the IPv6 outer tunnel"; }
ip netns exec ike6-rw ping -6 -c 5 -i 0.2 -W 2 fd00:196::2 >"$work/ping6.log" 2>&1 \
  || { cat "$work/ping6.log"; ike_fail "no IPv6 ping through esprit over the IPv6 outer tunnel"; }
ip netns exec ike6-srv iperf3 -s -1 -B 192.168.196.2 >"$work/iperf-s.log" 2>&1 &
iperf_srv=$!
sleep 0.5
ip netns exec ike6-rw timeout 60 iperf3 -c 192.168.196.2 -n 20M -f m >"$work/iperf.log" 2>&1 \
  || { cat "$work/iperf.log"; ike_fail "bulk TCP through the IPv6 outer tunnel failed"; }
wait $iperf_srv 2>/dev/null || true
ectl --json list-sas >"$work/sas.json"
/usr/bin/python3 - "$work/sas.json" <<'PY' || ike_fail "esprit's SA counters do not show the traffic: $(cat "$work/sas.json")"
import json, sys
d = json.load(open(sys.argv[1]))
c = [c for c in d["ike_sas"][0]["child_sas"] if c["state"] == "INSTALLED"][-1]
assert c["in_pkts"] >= 10000 and c["out_pkts"] >= 10, c
assert sorted(c["ts_remote"]) == ["10.96.0.1/32", "fd00:9600::10/128"], c
PY

for what in "--child net" "--ike esprit"; do
  ip netns exec ike6-rw ping -c 20 -i 0.1 -W 2 192.168.196.2 >"$work/ping-rekey.log" 2>&1 &
  pinger=$!
  sleep 0.3
  "$peer" swanctl ike6-rw "$work/sw" --rekey $what >"$work/rekey.log" 2>&1 || { cat "$work/rekey.log"; ike_fail "swanctl --rekey $what failed"; }
  wait $pinger || true
  grep -q " 0% packet loss" "$work/ping-rekey.log" || { tail -3 "$work/ping-rekey.log"; ike_fail "ping lost packets across the peer's rekey ($what)"; }
done
ectl --json stats >"$work/stats.json"
grep -q '"esprit_ike_rekeys_total{kind=ike}": 1' "$work/stats.json" && grep -q '"esprit_ike_rekeys_total{kind=child}": 1' "$work/stats.json" \
  || ike_fail "the peer's rekeys are not counted: $(cat "$work/stats.json")"
ike_sa=$(ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; print([i for i in json.load(sys.stdin)["ike_sas"] if i["state"]=="Established"][0]["ike_sa"])')
ectl terminate "$ike_sa" >/dev/null || ike_fail "esprit-ctl terminate failed"
sw_established() { "$peer" swanctl ike6-rw "$work/sw" --list-sas >"$work/sw-now.log" 2>&1; grep -q ESTABLISHED "$work/sw-now.log"; }
for _ in $(seq 50); do sw_established || break; sleep 0.1; done
sw_established && ike_fail "strongSwan still has the IKE SA after esprit terminated it"
ectl --json stats >"$work/stats.json"
grep -q '"sa_table_slots": 0' "$work/stats.json" || ike_fail "SA table slots left after terminate: $(cat "$work/stats.json")"
mbits=$(awk '/receiver/ {print $7}' "$work/iperf.log")
echo "  IKE and ESP-in-UDP over IPv6; inner IPv4 and IPv6 pings, 20 MB TCP (${mbits} Mbit/s), peer rekeys, terminate"
"$peer" stop ike6-rw "$work/sw"
pass
