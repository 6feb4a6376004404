# A strongSwan 5.9.8 road warrior through esprit, for the scenarios that need
# only that (sourced after lib.sh; ike-strongswan.sh keeps its own, with its
# AUTH/NAT/LABEL/PQ variants):
#
#   ns rs-rw: charon, 172.16.19.2, virtual IP 10.99.0.1 from esprit's pool
#        │ veth
#   rs-out [esprit-dataplane af_packet] rs-in ── ns rs-srv: 192.168.119.2
#        punt: net_tap rstap<pid> = 172.16.19.1 in the root namespace,
#              esprit-ike bound there on UDP 500/4500
#
# The dataplane has no static neighbours: it learns both next hops by ARP,
# as it must again after a restart. PSK, AES-256-GCM, X25519.
#
#   rw_up [CHILD_YAML] [DATAPLANE_YAML] [IKE_YAML]   build it all, start both esprit
#                                         processes and strongSwan, bring the
#                                         tunnel up; CHILD_YAML goes into the
#                                         esprit child (lifetimes),
#                                         DATAPLANE_YAML under `dataplane:`
#                                         (rw_dp_pid: the dataplane's pid),
#                                         IKE_YAML under `ike:`; RW_SW_EXTRA
#                                         goes into strongSwan's connection,
#                                         RW_IKE_PROPOSAL is both IKE proposals
#   rw_ping ARGS...                       ping the server from the virtual IP
#   sw_sas                                strongSwan's SAs, swanctl --list-sas --raw
#   ike_counter SERIES                    a counter from esprit-ctl --json stats (0 if absent)
need_ike
need_strongswan
rw_tap=rstap$$
rw_psk=esprit-restart-psk-$$

rw_up() {
  local child=${1:-} dp_extra=${2:-} ike_extra=${3:-}
  add_host rs-rw rw0 rs-out 172.16.19.2/24
  add_host rs-srv srv0 rs-in 192.168.119.2/24 192.168.119.1
  # ESP adds up to 73 bytes and the dataplane does not fragment.
  ip -n rs-srv link set srv0 mtu 1400
  # The root kernel sees the frames on rs-out too and 172.16.19.1 is local to
  # it (on the TAP): strict reverse-path filtering keeps it from delivering
  # IKE a second time beside the punt path.
  local l
  for l in rs-out rs-in; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
  # The dataplane keeps its punt TAP across restarts (persist): cleanup removes it.
  links+=("$rw_tap")
  start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 rs-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 rs-in)", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=$rw_tap" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [172.16.19.1], inside: [192.168.119.1] }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
$dp_extra
metrics: { listen: "127.0.0.1:0" }
ike:
  listen: [172.16.19.1]
  control_socket: $work/ike.sock
  metrics_listen: "127.0.0.1:0"
  orphan_grace_secs: 3
$ike_extra
  pools:
    rw: { v4: 10.99.0.0/24 }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: { psk: "$rw_psk" }
      remote_auth: { psk: "$rw_psk" }
      proposals: [${RW_IKE_PROPOSAL:-aes256gcm16-prfsha256-x25519}]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.119.0/24]
$child
EOT
  rw_dp_pid=${pids[-1]}
  ip link set "$rw_tap" up
  ip addr add 172.16.19.1/24 dev "$rw_tap"
  start_ike "$work/dp.yaml"
  peer_logs=("swanctl-load:$work/sw-load.log" "charon:$work/sw/charon.log")
  rw_swanctl_conf 172.16.19.2 172.16.19.1 192.168.119.0/24 "$rw_psk" "${RW_IKE_PROPOSAL:-}" "${RW_SW_EXTRA:-}"
  start_strongswan rs-rw
  rw_initiate
}

rw_initiate() {
  "$peer" swanctl rs-rw "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
    || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan could not bring the tunnel up"; }
}

rw_ping() { ip netns exec rs-rw ping "$@" 192.168.119.2; }

sw_sas() { "$peer" swanctl rs-rw "$work/sw" --list-sas --raw; }

# Traffic through a kill and a restart: an iperf3 TCP transfer of SECONDS
# from the virtual IP to the server and COUNT pings at 10 ms (-D, one line
# each in $work/flood.log), started once at least MIN replies came back.
# Sets iperf_srv, iperf_cli and pinger (all in pids: a failure stops them,
# and none outlives the test holding the netns lock); replies counts them.
# rw_traffic SECONDS COUNT MIN
replies() { grep -c "bytes from" "$work/flood.log" || true; }
rw_traffic() {
  ip netns exec rs-srv iperf3 -s -1 -B 192.168.119.2 >"$work/iperf-s.log" 2>&1 &
  iperf_srv=$!
  pids+=($iperf_srv)
  for _ in $(seq 50); do ip netns exec rs-srv ss -ltn | grep -q ':5201 ' && break; sleep 0.1; done
  ip netns exec rs-rw iperf3 -c 192.168.119.2 -t "$1" -f m >"$work/iperf.log" 2>&1 &
  iperf_cli=$!
  pids+=($iperf_cli)
  rw_ping -D -n -i 0.01 -c "$2" -W 1 >"$work/flood.log" 2>&1 &
  pinger=$!
  pids+=($pinger)
  for _ in $(seq 100); do [[ $(replies) -ge $3 ]] && break; sleep 0.05; done
  [[ $(replies) -ge $3 ]] || ike_fail "the ping flood does not get through before the kill: $(tail -3 "$work/flood.log")"
}
