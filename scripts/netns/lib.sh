# Shared by the network-namespace tests: build once, helpers, cleanup.
# Every test prints "PASS name" or "FAIL name: why" and exits non-zero on failure.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${ESPRIT_DATAPLANE:-$top/target/debug/esprit-dataplane}
[[ $(id -u) -eq 0 ]] || { echo "FAIL $(basename "$0"): needs root (network namespaces, DPDK)"; exit 1; }
[[ -x $bin ]] || { echo "FAIL $(basename "$0"): $bin not built (scripts/test builds it)"; exit 1; }
work=$(mktemp -d /tmp/esprit-netns.XXXXXX)
pids=()
netns=()
links=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for n in "${netns[@]}"; do ip netns del "$n" 2>/dev/null; done
  for l in "${links[@]}"; do ip link del "$l" 2>/dev/null; done
  rm -rf "$work" /dev/shm/esprit-netns-$$*
}
trap cleanup EXIT
fail() {
  echo "FAIL $name: $*"
  # Stop everything first so the dataplane prints its counters and drops.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  pids=()
  [[ -f $work/dp.log ]] && sed 's/^/  dp| /' "$work/dp.log" | tail -30
  exit 1
}
pass() { echo "PASS $name"; }

# veth pair with one end in a namespace: add_host NS IFACE_IN_NS ROOT_IFACE ADDR/LEN [GW]
add_host() {
  local ns=$1 inner=$2 outer=$3 addr=$4 gw=${5:-}
  ip netns add "$ns"; netns+=("$ns")
  ip link add "$outer" type veth peer name "$inner"; links+=("$outer")
  ip link set "$inner" netns "$ns"
  ip link set "$outer" up
  # af_packet sees what the kernel hands it: no checksum offload, so
  # checksums are real on the wire.
  ethtool -K "$outer" tx off rx off >/dev/null 2>&1 || true
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$inner" up
  ip netns exec "$ns" ethtool -K "$inner" tx off rx off >/dev/null 2>&1 || true
  ip -n "$ns" addr add "$addr" dev "$inner"
  [[ -z $gw ]] || ip -n "$ns" route add default via "$gw"
}

mac_of() { cat "/sys/class/net/$1/address"; }
ns_mac_of() { ip netns exec "$1" cat "/sys/class/net/$2/address"; }

# Starts esprit-dataplane with the YAML on stdin; waits until its ports are up.
# DPDK's af_packet PMD joins a PACKET_FANOUT group whose id it derives from
# the pid and ifindex; a clash with another group in the namespace makes the
# probe fail with EINVAL. That is the harness's luck, not the code under
# test, so a start that dies on it is retried (twice, said out loud).
start_dataplane() {
  cat >"$work/dp.yaml"
  local attempt
  for attempt in 1 2 3; do
    "$bin" --config "$work/dp.yaml" >"$work/dp.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
      grep -q "worker(s), crypto" "$work/dp.log" 2>/dev/null && { sleep 0.5; return 0; }
      kill -0 "${pids[-1]}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pids[-1]}" 2>/dev/null; then
      fail "esprit-dataplane did not start"
    fi
    local rc=0; wait "${pids[-1]}" || rc=$?
    unset 'pids[-1]'
    if grep -q "PACKET_FANOUT" "$work/dp.log" && [[ $attempt -lt 3 ]]; then
      echo "  (af_packet fanout clash at start, retrying: $(grep -m1 PACKET_FANOUT "$work/dp.log"))"
      continue
    fi
    fail "esprit-dataplane exited with status $rc before its workers started ($(wc -c <"$work/dp.log") bytes of log)"
  done
}

af_packet() { echo "net_af_packet$1,iface=$2,qpairs=1,blocksz=4096,framesz=2048,framecnt=512"; }

# esprit-ike and esprit-ctl of this build; `need_ike` fails the test when
# they are missing.
ike=${ESPRIT_IKE:-$top/target/debug/esprit-ike}
ctl=${ESPRIT_CTL:-$top/target/debug/esprit-ctl}
need_ike() { [[ -x $ike && -x $ctl ]] || fail "$ike or $ctl not built (cargo build -p esprit-controlplane)"; }
ectl() { "$ctl" --socket "$work/ike.sock" "$@"; }

# Starts esprit-ike: start_ike CONFIG [NAMESPACE] [LOG] (LOG defaults to
# $work/ike.log; a LOG starting with '+' is appended to, for a restart).
# Waits up to 20 s (the machine is shared with builds) for it to listen;
# sets ike_pid and ike_metrics (the address its /metrics answers on).
start_ike() {
  local config=$1 ns=${2:-} log=${3:-$work/ike.log} append=0
  [[ $log == +* ]] && { log=${log#+}; append=1; }
  local lines=0
  [[ $append == 1 && -f $log ]] && lines=$(wc -l <"$log")
  local cmd=("$ike" --config "$config")
  [[ -n $ns ]] && cmd=(ip netns exec "$ns" "${cmd[@]}")
  if [[ $append == 1 ]]; then "${cmd[@]}" >>"$log" 2>&1 & else "${cmd[@]}" >"$log" 2>&1 & fi
  ike_pid=$!
  pids+=($ike_pid)
  # Only what this instance wrote counts (a restart appends to the log).
  started() { tail -n +$((lines + 1)) "$log" 2>/dev/null | grep -q "listening on"; }
  for _ in $(seq 200); do started && break; kill -0 $ike_pid 2>/dev/null || break; sleep 0.1; done
  if ! started; then
    tail -n +$((lines + 1)) "$log" 2>/dev/null | sed 's/^/  ike| /' | tail -30
    # Where a silent one waits: each thread's name, state and kernel wait
    # channel (an intermittent hang at start was once seen under load).
    local t
    for t in /proc/$ike_pid/task/*; do
      [[ -d $t ]] && echo "  ike thread $(cat "$t/comm" 2>/dev/null): $(awk '{print $3}' "$t/stat" 2>/dev/null) $(cat "$t/wchan" 2>/dev/null)"
    done
    fail "esprit-ike did not start ($(kill -0 $ike_pid 2>/dev/null && echo "running, silent for 20 s" || echo "it exited"))"
  fi
  ike_metrics=$(tail -n +$((lines + 1)) "$log" | grep -o 'metrics on [0-9.:]*' | cut -d' ' -f3)
}

# The peers that Debian 12 cannot run from its own packages (libreswan 4.10
# and 5.2, strongSwan 6.0.1 and 6.1.0 in trixie and sid chroots, the QEMU
# guest with a kernel that has ESP), kept under $interop by
# scripts/peers/prepare (scripts/setup runs it; it is idempotent and takes
# under a second when everything is there, so tests call it too).
interop=${INTEROP_DIR:-/var/tmp/esprit-interop}
need_interop() {
  INTEROP_DIR=$interop "$top/scripts/peers/prepare" >"$work/prepare.log" 2>&1 \
    || { tail -20 "$work/prepare.log"; fail "scripts/peers/prepare could not make the peers under $interop"; }
}

# strongSwan for the strongswan-peer scripts (scripts/peers/): the host's
# 5.9.8 (charon, swanctl, kernel-libipsec), or the chroot peer named in
# STRONGSWAN_PEER (with STRONGSWAN_ROOT, made by need_interop); sets peer.
need_strongswan() {
  peer=${STRONGSWAN_PEER:-$top/scripts/peers/strongswan-peer}
  [[ -x $peer ]] || fail "no strongswan-peer script at $peer"
  [[ -z ${STRONGSWAN_ROOT:-} ]] || need_interop
  [[ -x /usr/lib/ipsec/charon ]] && command -v swanctl >/dev/null \
    || fail "strongSwan is not installed (scripts/setup installs strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins)"
  [[ -f /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ]] || fail "strongSwan's kernel-libipsec plugin is missing (libcharon-extra-plugins)"
}

# esprit-ike's counter NAME from `esprit-ctl --json stats` (0 if absent).
ike_counter() {
  ectl --json stats >"$work/stats.json" || ike_fail "esprit-ctl stats failed"
  /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counters"].get(sys.argv[2], 0))' "$work/stats.json" "$1"
}

# A throwaway PKI made with openssl in DIR: make_pki DIR KEY CA_NAME DOMAIN
# HOST... (KEY ecdsa | ed25519 | rsa): DIR/ca.pem, and DIR/HOST.pem +
# DIR/HOST.key for each HOST, named (CN and subjectAltName DNS) HOST.DOMAIN,
# valid for two days.
make_pki() {
  local dir=$1 key=$2 ca_name=$3 domain=$4; shift 4
  local newkey
  case $key in
    ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    ed25519) newkey=(-newkey ed25519) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
    *) fail "KEY must be ecdsa, ed25519 or rsa" ;;
  esac
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 "${newkey[@]}" -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=$ca_name" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    for h in "$@"; do
      openssl req "${newkey[@]}" -nodes -keyout "$h.key" -out "$h.csr" -subj "/CN=$h.$domain"
      printf "subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" "$h.$domain" >"$h.ext"
      openssl x509 -req -in "$h.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$h.pem" -days 2 -extfile "$h.ext"
    done
  ) >"$dir.log" 2>&1 || { cat "$dir.log"; fail "openssl could not make the test PKI"; }
}

# Fails the test after the tails of esprit-ike's log and of the peer logs
# listed in peer_logs ("label:path"), their per-packet chatter left out.
peer_logs=()
ike_fail() {
  [[ -f $work/ike.log ]] && sed 's/^/  ike| /' "$work/ike.log" | tail -30
  local e
  for e in "${peer_logs[@]}"; do
    [[ -f ${e#*:} ]] || continue
    grep -v "plugin '\|sending packet\|received packet\|activating\|queueing" "${e#*:}" | tail -40 | sed "s/^/  ${e%%:*}| /"
  done
  fail "$@"
}

# Writes $work/swanctl.conf for the PSK road warrior the scenarios share:
# client@esprit at LOCAL asks gw.esprit at REMOTE for a virtual IP and one
# Child SA to REMOTE_TS, AES-GCM-256 both ways.
# rw_swanctl_conf LOCAL REMOTE REMOTE_TS PSK [IKE_PROPOSAL] [EXTRA_LINE]
rw_swanctl_conf() {
  cat >"$work/swanctl.conf" <<EOT
connections {
  esprit {
    local_addrs = $1
    remote_addrs = $2
    vips = 0.0.0.0
    proposals = ${5:-aes256gcm16-prfsha256-x25519}
    ${6:-}
    local { auth = psk
            id = client@esprit }
    remote { auth = psk
             id = gw.esprit }
    children {
      net { remote_ts = $3
            esp_proposals = aes256gcm16 }
    }
  }
}
secrets {
  ike-esprit { id-1 = client@esprit
               id-2 = gw.esprit
               secret = "$4" }
}
EOT
}

# Starts charon in namespace NS (start_strongswan NS) with
# $work/swanctl.conf, its state in $work/sw and swanctl's output in
# $work/sw-load.log; charon's plugin settings are copied so that the resolve
# plugin writes the DNS servers of CP payloads to $work/resolv.conf, never
# to the host's /etc/resolv.conf. Needs need_strongswan first.
start_strongswan() {
  local ns=$1
  mkdir -p "$work/swplugins"; cp /etc/strongswan.d/charon/*.conf "$work/swplugins/"
  : >"$work/resolv.conf"
  printf 'resolve {\n  load = yes\n  file = %s\n}\n' "$work/resolv.conf" >"$work/swplugins/resolve.conf"
  export SWAN_PLUGIN_CONFS="$work/swplugins/*.conf"
  "$peer" start "$ns" "$work/sw" "$work/swanctl.conf" >"$work/sw-load.log" 2>&1 || { cat "$work/sw-load.log"; ike_fail "strongSwan did not start"; }
  if [[ -f $work/sw/pid ]]; then pids+=("$(cat "$work/sw/pid")"); fi
}
