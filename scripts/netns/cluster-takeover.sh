#!/usr/bin/env bash
# Two esprit-ike nodes sharing one etcd (ike.state.backend: etcd, DESIGN.md
# §8): node A dies, node B takes its IKE SA over, and strongSwan's IKE SA
# goes on with B. IKE level (no dataplane: each node programs its own SA
# table file).
#
#   ns cl-cli: strongSwan 172.16.39.2 ─┐
#   ns cl-a:   esprit-ike "a" 172.16.39.11 (+ service address 172.16.39.1)
#   ns cl-b:   esprit-ike "b" 172.16.39.12 (listens on 172.16.39.1 too:
#              net.ipv4.ip_nonlocal_bind)
#   ns cl-lan: bridge 172.16.39.254, etcd 3.4 (Debian's) on :2379
#
# * strongSwan connects to 172.16.39.1 (A); both nodes' `esprit-ctl cluster
#   status` show a and b, a owning the IKE SA; A's and B's SPIs carry their
#   own SPI slot in the top octet.
# * A is SIGKILLed and its link goes down (the box is gone); its lease
#   expires (3 s); B's scan claims the IKE SA (an etcd compare-and-swap),
#   runs on_takeover (adds 172.16.39.1, gratuitous ARP), restores it from
#   the sealed record and installs its Child SA in its own table by
#   rekeying it at once.
# * The IKE SA continues: strongSwan's DPD is answered by B, strongSwan
#   rekeys the IKE SA with B, no new IKE_SA_INIT in strongSwan's log; B's
#   status shows a gone and the IKE SA owned by b.
name=cluster-takeover
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan
etcd_bin=${ESPRIT_ETCD:-/usr/bin/etcd}
[[ -x $etcd_bin ]] || fail "$etcd_bin not found (scripts/setup installs etcd-server)"
command -v arping >/dev/null || fail "arping not found (scripts/setup installs iputils-arping)"

vip=172.16.39.1
ip netns add cl-lan; netns+=(cl-lan)
ip -n cl-lan link set lo up
ip -n cl-lan link add br0 type bridge
ip -n cl-lan link set br0 up
ip -n cl-lan addr add 172.16.39.254/24 dev br0
# host NS IFACE ADDR: a namespace on the bridge.
host() {
  local ns=$1 ifc=$2 addr=$3
  ip netns add "$ns"; netns+=("$ns")
  ip -n cl-lan link add "p-$ifc" type veth peer name "$ifc" netns "$ns"
  ip -n cl-lan link set "p-$ifc" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$ifc" up
  ip -n "$ns" addr add "$addr/24" dev "$ifc"
}
host cl-cli clc0 172.16.39.2
host cl-a cla0 172.16.39.11
host cl-b clb0 172.16.39.12
ip -n cl-a addr add $vip/24 dev cla0
ip netns exec cl-b sysctl -qw net.ipv4.ip_nonlocal_bind=1

ip netns exec cl-lan "$etcd_bin" --name e --data-dir "$work/etcd" \
  --listen-client-urls http://172.16.39.254:2379 --advertise-client-urls http://172.16.39.254:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster e=http://127.0.0.1:2380 >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  ip netns exec cl-lan etcdctl --endpoints http://172.16.39.254:2379 endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
ip netns exec cl-lan etcdctl --endpoints http://172.16.39.254:2379 endpoint health >/dev/null 2>&1 || { tail -20 "$work/etcd.log"; fail "etcd did not start"; }

head -c 32 /dev/urandom >"$work/cluster.key"
psk=esprit-cluster-psk-$$
cat >"$work/takeover.sh" <<EOT
#!/bin/sh
# on_takeover: the service address moves here, as keepalived would move it.
echo "\$ESPRIT_EVENT \$ESPRIT_NODE \$ESPRIT_CLAIMED \$(date +%s.%N)" >>"$work/hook-\$ESPRIT_NODE.out"
ip addr add $vip/24 dev \$1 2>/dev/null || true
arping -q -U -c 2 -w 1 -I \$1 $vip || true
EOT
chmod +x "$work/takeover.sh"
for n in a b; do
  printf '#!/bin/sh\nexec %s cl%s0\n' "$work/takeover.sh" "$n" >"$work/takeover-$n.sh"
  chmod +x "$work/takeover-$n.sh"
  cat >"$work/ike-$n.yaml" <<EOT
ike:
  listen: [$vip]
  control_socket: $work/ike-$n.sock
  metrics_listen: null
  sa_table: { path: /dev/shm/esprit-netns-$$-$n, capacity: 64 }
  orphan_grace_secs: 0
  state:
    backend: etcd
    endpoints: [http://172.16.39.254:2379]
    prefix: /esprit-netns-$$
    node: $n
    key_file: $work/cluster.key
    lease_ttl_secs: 3
    scan_interval_ms: 250
    on_takeover: $work/takeover-$n.sh
  pools:
    rw: { v4: 10.99.0.0/24 }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.119.0/24]
EOT
done
start_ike "$work/ike-a.yaml" cl-a "$work/ike-a.log"
a_pid=$ike_pid
start_ike "$work/ike-b.yaml" cl-b "$work/ike-b.log"
b_pid=$ike_pid
ln -sf "$work/ike-a.log" "$work/ike.log"
ctl_a() { "$ctl" --socket "$work/ike-a.sock" "$@"; }
ctl_b() { "$ctl" --socket "$work/ike-b.sock" "$@"; }
counter_b() {
  ctl_b --json stats >"$work/stats.json" || ike_fail "esprit-ctl stats (b) failed"
  /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"].get(sys.argv[2], 0))' "$work/stats.json" "$1"
}
owned() { # owned STATUS_JSON NODE
  /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(sum(m["owned_ike_sas"] for m in d["members"] if m["node"] == sys.argv[2]), len(d["members"]))' "$1" "$2"
}

peer_logs=("charon:$work/sw/charon.log" "ike-b:$work/ike-b.log")
rw_swanctl_conf 172.16.39.2 "$vip" 192.168.119.0/24 "$psk" "" "dpd_delay = 2s"
start_strongswan cl-cli
"$peer" swanctl cl-cli "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
  || { tail -15 "$work/initiate.log"; ike_fail "strongSwan could not bring the tunnel up with node a"; }
sw_ike_spis() { "$peer" swanctl cl-cli "$work/sw" --list-sas --raw | grep -o '\(initiator-spi\|responder-spi\)=[0-9a-f]*' | sort; }
sw_inits() { grep -c "generating IKE_SA_INIT request" "$work/sw/charon.log" || true; }
sw_ike_spis >"$work/sw-before.txt"
grep -q "responder-spi=" "$work/sw-before.txt" || ike_fail "strongSwan shows no IKE SA"

# Both nodes see the cluster; a owns the IKE SA, written to etcd sealed.
for _ in $(seq 40); do
  ctl_b --json cluster status >"$work/status-b0.json" || ike_fail "esprit-ctl cluster status (b) failed"
  [[ $(owned "$work/status-b0.json" a) == "1 2" ]] && break
  sleep 0.1
done
[[ $(owned "$work/status-b0.json" a) == "1 2" ]] || ike_fail "b's cluster status does not show a owning one IKE SA: $(cat "$work/status-b0.json")"
ctl_a cluster status >"$work/status-a0.txt" || ike_fail "esprit-ctl cluster status (a) failed"
slot_a=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["members"][0]["slot"])' "$work/status-b0.json")
rspi=$(grep -o 'responder-spi=[0-9a-f]*' "$work/sw-before.txt" | cut -d= -f2)
[[ $((16#${rspi:0:2})) -eq $slot_a ]] || ike_fail "a's IKE SPI $rspi does not carry its SPI slot $slot_a"
ip netns exec cl-lan etcdctl --endpoints http://172.16.39.254:2379 get --prefix /esprit-netns-$$/ >"$work/etcd-dump.bin"
! grep -aq "client@esprit\|$psk" "$work/etcd-dump.bin" || ike_fail "an identity or the PSK is in etcd in the clear"
inits_before=$(sw_inits)
[[ $inits_before -eq 1 ]] || ike_fail "expected one IKE_SA_INIT from strongSwan so far, saw $inits_before"

# Node a dies: its process and its link.
t_kill=$(date +%s.%N)
kill -KILL "$a_pid"
wait "$a_pid" 2>/dev/null || true
pids=("${pids[@]/$a_pid}")
ip -n cl-a link set cla0 down
for _ in $(seq 100); do grep -q "cluster: took over" "$work/ike-b.log" && break; sleep 0.1; done
grep -q "cluster: took over 1 IKE SA(s)" "$work/ike-b.log" || ike_fail "b did not take a's IKE SA over"
t_hook=$(cut -d' ' -f4 "$work/hook-b.out" | head -1)
took=$(/usr/bin/python3 -c "print(round($t_hook - $t_kill, 2))")

# The IKE SA goes on with b: its Child SA rekeyed into b's table, DPD
# answered, an IKE SA rekey by strongSwan, no new IKE_SA_INIT.
for _ in $(seq 100); do [[ $(counter_b 'esprit_ike_rekeys_total{kind=child}') -ge 1 ]] && break; sleep 0.1; done
[[ $(counter_b 'esprit_ike_rekeys_total{kind=child}') -ge 1 ]] || ike_fail "b did not rekey the Child SA it took over"
dpds() { grep -c "parsed INFORMATIONAL response" "$work/sw/charon.log" || true; }
d0=$(dpds)
for _ in $(seq 100); do [[ $(dpds) -gt $d0 ]] && break; sleep 0.1; done
[[ $(dpds) -gt $d0 ]] || ike_fail "strongSwan's DPD got no answer from b"
sw_ike_spis >"$work/sw-after.txt"
diff "$work/sw-before.txt" "$work/sw-after.txt" >/dev/null || ike_fail "strongSwan's IKE SA changed: $(diff "$work/sw-before.txt" "$work/sw-after.txt")"
"$peer" swanctl cl-cli "$work/sw" --rekey --ike esprit >"$work/rekey.log" 2>&1 || true
for _ in $(seq 100); do [[ $(counter_b 'esprit_ike_rekeys_total{kind=ike}') -ge 1 ]] && break; sleep 0.1; done
[[ $(counter_b 'esprit_ike_rekeys_total{kind=ike}') -ge 1 ]] || ike_fail "strongSwan's IKE SA rekey with b failed: $(tail -5 "$work/rekey.log")"
[[ $(sw_inits) -eq $inits_before ]] || ike_fail "strongSwan sent a new IKE_SA_INIT ($(sw_inits) in all)"
for _ in $(seq 40); do
  ctl_b --json cluster status >"$work/status-b1.json" || ike_fail "esprit-ctl cluster status (b) failed"
  [[ $(owned "$work/status-b1.json" b) == "1 1" ]] && break
  sleep 0.1
done
[[ $(owned "$work/status-b1.json" b) == "1 1" ]] || ike_fail "b's status after the takeover: $(cat "$work/status-b1.json")"
ctl_b cluster status | sed 's/^/  /'
echo "  node a SIGKILLed: b claimed its IKE SA and held the service address $took s later (lease 3 s, scans every 250 ms); DPD and an IKE SA rekey answered by b, no new IKE_SA_INIT"
pass
