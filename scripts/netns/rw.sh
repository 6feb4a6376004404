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
#   rw_up [CHILD_YAML] [DATAPLANE_YAML]   build it all, start both esprit
#                                         processes and strongSwan, bring the
#                                         tunnel up; CHILD_YAML goes into the
#                                         esprit child (lifetimes),
#                                         DATAPLANE_YAML under `dataplane:`
#                                         (rw_dp_pid: the dataplane's pid)
#   rw_ping ARGS...                       ping the server from the virtual IP
#   sw_sas                                strongSwan's SAs, swanctl --list-sas --raw
#   ike_counter SERIES                    a counter from esprit-ctl --json stats (0 if absent)
need_ike
need_strongswan
rw_tap=rstap$$
rw_psk=esprit-restart-psk-$$

rw_up() {
  local child=${1:-} dp_extra=${2:-}
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
  pools:
    rw: { v4: 10.99.0.0/24 }
  connections:
    rw:
      local_id: gw.esprit
      remote_id: client@esprit
      local_auth: { psk: "$rw_psk" }
      remote_auth: { psk: "$rw_psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
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
  cat >"$work/swanctl.conf" <<EOT
connections {
  esprit {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    vips = 0.0.0.0
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = psk
            id = client@esprit }
    remote { auth = psk
             id = gw.esprit }
    children {
      net { remote_ts = 192.168.119.0/24
            esp_proposals = aes256gcm16 }
    }
  }
}
secrets {
  ike-esprit { id-1 = client@esprit
               id-2 = gw.esprit
               secret = "$rw_psk" }
}
EOT
  start_strongswan rs-rw
  rw_initiate
}

rw_initiate() {
  "$peer" swanctl rs-rw "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
    || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan could not bring the tunnel up"; }
}

rw_ping() { ip netns exec rs-rw ping "$@" 192.168.119.2; }

sw_sas() { "$peer" swanctl rs-rw "$work/sw" --list-sas --raw; }

ike_counter() {
  ectl --json stats >"$work/stats.json" || ike_fail "esprit-ctl stats failed"
  /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"].get(sys.argv[2], 0))' "$work/stats.json" "$1"
}
