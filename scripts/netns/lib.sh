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
