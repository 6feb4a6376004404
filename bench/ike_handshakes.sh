#!/usr/bin/env bash
# IKEv2 handshakes: esprit-ike against strongSwan's charon (Debian 5.9.8) as
# responders, in one run, on the same load. The load generator
# (`esprit-bench ike-load`, esprit's own sans-IO initiator) runs in one
# network namespace pinned to CPU 0; the responder in another, pinned to
# CPU 1. Each handshake: IKE_SA_INIT (X25519, AES-256-GCM, PRF-HMAC-SHA256),
# IKE_AUTH with PSK, a virtual IP from a pool and one Child SA (esprit
# programs it into its SA table, charon into kernel-libipsec). Reported per
# responder: handshakes completed, wall time, the responder's CPU time
# (user + system, all threads, from /proc), handshakes per CPU-second (the
# "per core" figure, independent of the generator's own speed), and the
# growth of its anonymous memory (RssAnon) per IKE SA held.
#
# usage: bench/ike_handshakes.sh [COUNT] [ESPRIT_MEM_COUNT] [WINDOW]
#   defaults 10000 100000 128: both responders run COUNT handshakes (the
#   ratio), then esprit-ike alone holds ESPRIT_MEM_COUNT IKE SAs (the memory
#   and the rate at that scale). The load uses up to 20000 distinct
#   identities (load-N@esprit.bench): a strongSwan pool gives one identity
#   one address, and identical Child SAs make kernel-libipsec slow for
#   reasons no real deployment has.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
n_rate=${1:-10000} n_mem=${2:-100000} window=${3:-128}
[[ $(id -u) -eq 0 ]] || { echo "bench/ike_handshakes.sh: run as root (namespaces)"; exit 1; }
[[ -x /usr/lib/ipsec/charon ]] || { echo "bench/ike_handshakes.sh: no charon (scripts/setup installs strongSwan)"; exit 1; }

cargo build --release --locked -q -p esprit-controlplane -p esprit-bench
ike=$top/target/release/esprit-ike load=$top/target/release/esprit-bench
psk=bench-psk-0123456789abcdef
work=$(mktemp -d /tmp/esprit-ikb.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del ikb-gen 2>/dev/null; ip netns del ikb-resp 2>/dev/null
  rm -f /dev/shm/esprit-ikb-$$
  if [[ -n ${KEEP:-} ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

ip netns add ikb-gen; ip netns add ikb-resp
ip link add ikb0 netns ikb-gen type veth peer name ikb1 netns ikb-resp
ip -n ikb-gen addr add 10.77.0.1/24 dev ikb0; ip -n ikb-gen link set ikb0 up; ip -n ikb-gen link set lo up
ip -n ikb-resp addr add 10.77.0.2/24 dev ikb1; ip -n ikb-resp addr add 192.168.200.1/24 dev lo; ip -n ikb-resp link set ikb1 up; ip -n ikb-resp link set lo up

cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
rss_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
listening() { ip netns exec ikb-resp ss -Hluna "sport = :500" | grep -q .; }

declare -A ROW
measure() { # name pid count
  local name=$1 pid=$2 n=$3 c0 r0 c1 r1 out
  sleep 0.5
  c0=$(cpu_secs "$pid") r0=$(rss_kb "$pid")
  out=$(ip netns exec ikb-gen taskset -c 0 "$load" ike-load 10.77.0.1 10.77.0.2 --count "$n" --window "$window" --psk "$psk" || true)
  sleep 1 # the last IKE_AUTH responses are out; let the responder settle
  c1=$(cpu_secs "$pid") r1=$(rss_kb "$pid")
  echo "  $name: $out" >&2
  local est secs
  est=$(awk '{ print $2 }' <<<"$out") secs=$(awk '{ print $8 }' <<<"$out")
  ROW[$name]=$(/usr/bin/python3 -c "
est, secs, cpu, kb = int('${est:-0}'), float('${secs:-0}'), $c1 - $c0, $r1 - $r0
rate = est / cpu if cpu > 0 else 0
print('%-10s %10d %9.1f %10.2f %16.0f %14.0f' % ('$name', est, secs, cpu, rate, kb * 1024 / est if est else 0))")
}

# --- esprit-ike
run_esprit() { # row-name count
local n=$2
rm -f /dev/shm/esprit-ikb-$$
cat >"$work/esprit.yaml" <<EOT
ike:
  listen: [10.77.0.2]
  control_socket: $work/ike.sock
  metrics_listen: null
  sa_table: { path: /dev/shm/esprit-ikb-$$, capacity: $((2 * n + 64)) }
  limits: { cookie_threshold: 1000000, half_open_limit: 1000000, half_open_per_peer_limit: 1000000 }
  pools:
    rw: { v4: 10.64.0.0/14 }
  connections:
    rw:
      local_id: gw.esprit.bench
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.200.0/24]
EOT
ip netns exec ikb-resp taskset -c 1 ${PERF_OUT:+perf record -q -g -o "$PERF_OUT"} "$ike" --config "$work/esprit.yaml" >"$work/esprit.log" 2>&1 &
pids+=($!); local epid=$!
for _ in $(seq 100); do listening && break; sleep 0.1; done
listening || { echo "esprit-ike did not start:"; tail "$work/esprit.log"; exit 1; }
measure "$1" "$epid" "$n"
kill "$epid"; wait "$epid" 2>/dev/null || true
}
run_esprit esprit-ike "$n_rate"

# --- charon
mkdir -p "$work/sw"
cat >"$work/sw/strongswan.conf" <<EOT
charon {
  load_modular = yes
  install_routes = no
  cookie_threshold = 1000000
  block_threshold = 1000000
  init_limit_half_open = 0
  plugins {
    include /etc/strongswan.d/charon/*.conf
    kernel-libipsec { load = yes }
    vici { socket = unix://$work/sw/charon.vici }
  }
  filelog { log { path = $work/sw/charon.log
                  default = ${CHARON_LOG:-0} } }
  syslog { daemon { default = -1 } }
}
swanctl { socket = unix://$work/sw/charon.vici }
EOT
cat >"$work/sw/swanctl.conf" <<EOT
connections {
  rw {
    version = 2
    local_addrs = 10.77.0.2
    proposals = aes256gcm16-prfsha256-x25519
    pools = rw
    unique = never
    local { auth = psk
            id = gw.esprit.bench }
    remote { auth = psk }
    children { c { local_ts = 192.168.200.0/24
                   esp_proposals = aes256gcm16 } }
  }
}
pools { rw { addrs = 10.64.0.0/14 } }
secrets { ike-1 { secret = "$psk" } }
EOT
ip netns exec ikb-resp unshare --mount --propagation private sh -c \
  "mount -t tmpfs tmpfs /run && mkdir -p /run/netns && STRONGSWAN_CONF=$work/sw/strongswan.conf exec taskset -c 1 /usr/lib/ipsec/charon" \
  >"$work/sw/charon.out" 2>&1 &
pids+=($!); cpid=$!
for _ in $(seq 100); do
  STRONGSWAN_CONF=$work/sw/strongswan.conf ip netns exec ikb-resp swanctl --stats --uri "unix://$work/sw/charon.vici" >/dev/null 2>&1 && break
  sleep 0.1
done
STRONGSWAN_CONF=$work/sw/strongswan.conf ip netns exec ikb-resp swanctl --load-all --file "$work/sw/swanctl.conf" \
  --uri "unix://$work/sw/charon.vici" 2>&1 | grep -v "^opening directory" >&2
listening || { echo "charon did not start:"; tail "$work/sw/charon.out"; exit 1; }
measure charon "$cpid" "$n_rate"
kill "$cpid"; wait "$cpid" 2>/dev/null || true
run_esprit esprit-100k "$n_mem"

echo
echo "IKEv2 handshakes as responder (PSK, X25519, AES-256-GCM, virtual IP, one Child SA), responder on CPU 1, load on CPU 0, window $window"
printf '%-10s %10s %9s %10s %16s %14s\n' responder handshakes wall_s cpu_s handshakes/cpu_s bytes/IKE_SA
echo "${ROW[esprit-ike]}"
echo "${ROW[charon]}"
echo "${ROW[esprit-100k]}"
/usr/bin/python3 -c "
a, b = '${ROW[esprit-ike]}'.split(), '${ROW[charon]}'.split()
print('ratio (esprit / charon) handshakes per CPU-second: %.2fx' % (float(a[4]) / float(b[4])) if float(b[4]) > 0 else 'ratio: charon completed none')"
