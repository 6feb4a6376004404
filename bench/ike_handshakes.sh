#!/usr/bin/env bash
# IKEv2 handshakes: esprit-ike against strongSwan's charon (Debian 5.9.8) as
# responders, in one run, on the same load. The load generator
# (`esprit-bench ike-load`, esprit's own sans-IO initiator) runs in one
# network namespace pinned to CPU 0; the responder in another. Each
# handshake: IKE_SA_INIT (X25519, AES-256-GCM, PRF-HMAC-SHA256), IKE_AUTH
# with a PSK or with ECDSA P-256 certificates (RFC 7427 signatures, a CA
# made here with openssl), a virtual IP from a pool and one Child SA (esprit
# programs it into its SA table, charon into kernel-libipsec).
#
# esprit-ike runs once per entry of RESP_CPUS (taskset lists): on CPU 1
# alone, then on CPUs 0,1, where it shares CPU 0 with the generator (its
# rayon pool sizes itself from the CPUs the process may use; the thread
# count is checked). charon runs on CPU 1 once per auth mode, each mode with
# a fresh charon. Reported per row: handshakes completed, wall time, the
# responder's CPU time (user + system, all threads, from /proc), handshakes
# per responder CPU-second (the "per core" figure, independent of the
# generator's speed), handshakes per wall second (bounded by the generator
# on CPU 0, which does the initiator's share of the crypto), and the growth
# of the responder's anonymous memory (RssAnon) per IKE SA held.
#
# usage: [AUTH=psk|ecdsa|both] [RESP_CPUS="1 0,1"] [CHARON_ECDSA_COUNT=N]
#        [PSK_IDENTITIES=N] [ECDSA_IDENTITIES=N]
#        bench/ike_handshakes.sh [COUNT] [ESPRIT_MEM_COUNT] [WINDOW]
#   defaults: AUTH=both, COUNT 10000, ESPRIT_MEM_COUNT 100000 (0: skip; with
#   PSK only), WINDOW 128, CHARON_ECDSA_COUNT = COUNT. Every responder runs
#   COUNT handshakes (the ratio), then esprit-ike alone holds
#   ESPRIT_MEM_COUNT IKE SAs (memory and rate at that scale). The load uses
#   up to 20000 distinct identities, as real clients have: with a PSK
#   load-N@esprit.bench (PSK_IDENTITIES=N: N of them), with certificates
#   load-N.esprit.bench, each with its own client certificate (issued here
#   with python3-cryptography, one key for all; ECDSA_IDENTITIES=1: a single
#   certificate for every handshake). charon's cost grows with the number of
#   distinct identities (PSK, 10k handshakes: about 230 per CPU-second with
#   10k identities, 580 with one), esprit-ike's does not; with one identity
#   charon's pool also gives every IKE SA the same address. Identities
#   repeat only beyond 20000 (the 100k run): charon has `unique = never`
#   and the generator sends no INITIAL_CONTACT, so no responder replaces an
#   older IKE SA with a newer one of the same identity.
#   Exits non-zero when a responder does not start, a run completes no
#   handshake, or any run completes fewer than asked (table printed first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
n_rate=${1:-10000} n_mem=${2:-100000} window=${3:-128}
auth_modes=${AUTH:-both} resp_cpus=${RESP_CPUS:-1 0,1} n_charon_ecdsa=${CHARON_ECDSA_COUNT:-$n_rate}
n_ecdsa_ids=${ECDSA_IDENTITIES:-$(( n_rate > n_charon_ecdsa ? n_rate : n_charon_ecdsa ))}
(( n_ecdsa_ids > 20000 )) && n_ecdsa_ids=20000
[[ $auth_modes == both ]] && auth_modes="psk ecdsa"
for a in $auth_modes; do [[ $a == psk || $a == ecdsa ]] || { echo "bench/ike_handshakes.sh: AUTH must be psk, ecdsa or both"; exit 2; }; done
die() { echo "bench/ike_handshakes.sh: FAILED: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (namespaces)"
[[ -x /usr/lib/ipsec/charon ]] || die "no charon (scripts/setup installs strongSwan)"

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

# --- a throwaway ECDSA P-256 PKI (as scripts/netns/ike-strongswan.sh
# AUTH=cert KEY=ecdsa): CA, responder gw.esprit.bench, client load.esprit.bench.
if [[ " $auth_modes " == *" ecdsa "* ]]; then
  mkdir -p "$work/pki"
  (
    cd "$work/pki"
    newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    openssl req -x509 "${newkey[@]}" -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=esprit bench CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    for h in gw load; do
      openssl req "${newkey[@]}" -nodes -keyout $h.key -out $h.csr -subj "/CN=$h.esprit.bench"
      printf "subjectAltName=DNS:$h.esprit.bench\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" >$h.ext
      openssl x509 -req -in $h.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $h.pem -days 2 -extfile $h.ext
    done
  ) >"$work/pki.log" 2>&1 || { cat "$work/pki.log"; die "openssl could not make the bench PKI"; }
  # One client certificate per identity, load-I.esprit.bench, all for the
  # key of load.pem (an openssl process per certificate would take minutes).
  if [[ $n_ecdsa_ids -gt 1 ]]; then
    mkdir -p "$work/pki/clients"
    /usr/bin/python3 - "$work/pki" "$n_ecdsa_ids" <<'EOPY' || die "python3-cryptography could not issue the client certificates"
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
d, n = sys.argv[1], int(sys.argv[2])
ca = x509.load_pem_x509_certificate(open(d + "/ca.pem", "rb").read())
ca_key = serialization.load_pem_private_key(open(d + "/ca.key", "rb").read(), None)
pub = x509.load_pem_x509_certificate(open(d + "/load.pem", "rb").read()).public_key()
now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
for i in range(n):
    name = "load-%d.esprit.bench" % i
    c = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(ca.subject).public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
         .sign(ca_key, hashes.SHA256()))
    open("%s/clients/load-%d.pem" % (d, i), "wb").write(c.public_bytes(serialization.Encoding.PEM))
EOPY
  fi
fi

# CPU seconds of a process's threads: event loop (the main thread), rayon
# pool (ike-pool-N), the rest.
thread_split() {
  local hz t l=0 p=0 o=0 v
  hz=$(getconf CLK_TCK)
  for t in /proc/"$1"/task/*; do
    v=$(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null) || continue
    if [[ ${t##*/} == "$1" ]]; then l=$((l + v))
    elif grep -qs '^ike-pool-' "$t/comm"; then p=$((p + v))
    else o=$((o + v)); fi
  done
  awk -v l=$l -v p=$p -v o=$o -v hz="$hz" 'BEGIN { printf "%.3f %.3f %.3f", l / hz, p / hz, o / hz }'
}
declare -A SPLIT
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
rss_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
# RcvbufErrors of UDP in the generator's and the responder's namespace.
udp_drops() {
  local ns
  for ns in ikb-gen ikb-resp; do
    ip netns exec $ns awk '/^Udp:/ { if (h) print $6; else h = 1 }' /proc/net/snmp
  done | paste -sd' '
}
listening() { ip netns exec ikb-resp ss -Hluna "sport = :500" | grep -q .; }
# CPUs in a taskset list ("1", "0,1", "0-3").
ncpus() { /usr/bin/python3 -c "
n = 0
for p in '$1'.split(','):
    a, _, b = p.partition('-')
    n += int(b or a) - int(a) + 1
print(n)"; }

declare -A ROW
order=() incomplete=()
measure() { # row-name pid count auth
  local name=$1 pid=$2 n=$3 auth=$4 c0 r0 c1 r1 out rc=0 args
  if [[ $auth == psk ]]; then args=(--psk "$psk" ${PSK_IDENTITIES:+--identities "$PSK_IDENTITIES"})
  elif [[ $n_ecdsa_ids -gt 1 ]]; then
    args=(--cert "$work/pki/clients/load-{i}.pem" --key "$work/pki/load.key" --ca "$work/pki/ca.pem" --id "load-{i}.esprit.bench" --identities "$n_ecdsa_ids")
  else args=(--cert "$work/pki/load.pem" --key "$work/pki/load.key" --ca "$work/pki/ca.pem" --id load.esprit.bench); fi
  sleep 0.5
  local d0 d1
  d0=$(udp_drops)
  c0=$(cpu_secs "$pid") r0=$(rss_kb "$pid")
  local s0 s1
  s0=$(thread_split "$pid")
  out=$(ip netns exec ikb-gen taskset -c 0 "$load" ike-load 10.77.0.1 10.77.0.2 --count "$n" --window "$window" "${args[@]}") || rc=$?
  sleep 1 # the last IKE_AUTH responses are out; let the responder settle
  kill -0 "$pid" 2>/dev/null || die "$name: the responder exited during the run"
  c1=$(cpu_secs "$pid") r1=$(rss_kb "$pid")
  s1=$(thread_split "$pid")
  if grep -qs '^ike-pool-' /proc/"$pid"/task/*/comm; then
    SPLIT[$name]=$(awk -v a="$s0" -v b="$s1" -v n="$name" 'BEGIN { split(a, x); split(b, y)
      l = y[1] - x[1]; p = y[2] - x[2]; o = y[3] - x[3]; t = l + p + o
      printf "%-22s event loop %6.2f s, rayon pool %6.2f s (%.0f%%), socket and other threads %5.2f s", n, l, p, (t > 0 ? 100 * p / t : 0), o }')
  fi
  d1=$(udp_drops)
  echo "  $name: ${out:-no output} (exit $rc); UDP receive-buffer drops generator/responder: $(awk -v a="$d0" -v b="$d1" 'BEGIN { split(a, x); split(b, y); print y[1] - x[1] "/" y[2] - x[2] }')" >&2
  local est secs
  est=$(awk '{ print $2 }' <<<"$out") secs=$(awk '{ print $8 }' <<<"$out")
  [[ ${est:-0} -gt 0 ]] || die "$name: no handshake completed (responder not answering or refusing; logs: KEEP=1, $work)"
  [[ $est -eq $n ]] || incomplete+=("$name: $est of $n")
  order+=("$name")
  ROW[$name]=$(/usr/bin/python3 -c "
est, n, secs, cpu, kb = $est, $n, float('$secs'), $c1 - $c0, $r1 - $r0
note = '' if est == n else '  INCOMPLETE (%d asked)' % n
print('%-22s %10d %8.1f %8.2f %11.0f %12.0f %12.0f%s' % ('$name', est, secs, cpu,
      est / cpu if cpu > 0 else 0, est / secs if secs > 0 else 0, kb * 1024 / est, note))")
}

# --- esprit-ike
run_esprit() { # row-name count auth cpus
local n=$2 auth=$3 cpus=$4 local_auth remote_auth
if [[ $auth == psk ]]; then local_auth="{ psk: \"$psk\" }" remote_auth="{ psk: \"$psk\" }"
else local_auth="{ cert: $work/pki/gw.pem, key: $work/pki/gw.key }" remote_auth="{ cas: [$work/pki/ca.pem] }"; fi
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
      local_auth: $local_auth
      remote_auth: $remote_auth
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.200.0/24]
EOT
ip netns exec ikb-resp taskset -c "$cpus" ${PERF_OUT:+perf record -q -g -o "$PERF_OUT"} "$ike" --config "$work/esprit.yaml" >"$work/esprit.log" 2>&1 &
pids+=($!); local epid=$!
for _ in $(seq 100); do listening && break; sleep 0.1; done
listening || { tail "$work/esprit.log"; die "esprit-ike did not start"; }
measure "$1" "$epid" "$n" "$auth"
# rayon's pool (IKE_SA_INIT key exchanges, IKE_AUTH signatures) takes its
# size from the CPUs the process may use; its workers are named ike-pool-N.
if [[ -z ${PERF_OUT:-} ]]; then
  local want workers
  want=$(ncpus "$cpus")
  workers=$(grep -l '^ike-pool-' /proc/"$epid"/task/*/comm | wc -l)
  echo "  $1: rayon workers $workers, CPUs allowed $want ($(grep Cpus_allowed_list /proc/"$epid"/status | cut -f2))" >&2
  [[ $workers -eq $want ]] || die "$1: $workers rayon workers for $want CPUs"
fi
kill "$epid"; wait "$epid" 2>/dev/null || true
}

# --- charon
run_charon() { # row-name count auth
local n=$2 auth=$3 sw_local sw_remote sw_secrets=""
rm -rf "$work/sw"; mkdir -p "$work/sw"
if [[ $auth == psk ]]; then
  sw_local="auth = psk" sw_remote="auth = psk" sw_secrets="ike-1 { secret = \"$psk\" }"
else
  # swanctl loads credentials from the directories beside its swanctl.conf.
  mkdir -p "$work/sw/x509" "$work/sw/x509ca" "$work/sw/pkcs8"
  cp "$work/pki/gw.pem" "$work/sw/x509/"; cp "$work/pki/ca.pem" "$work/sw/x509ca/"; cp "$work/pki/gw.key" "$work/sw/pkcs8/"
  sw_local="auth = pubkey
            certs = gw.pem" sw_remote="auth = pubkey"
fi
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
    local { $sw_local
            id = gw.esprit.bench }
    remote { $sw_remote }
    children { c { local_ts = 192.168.200.0/24
                   esp_proposals = aes256gcm16 } }
  }
}
pools { rw { addrs = 10.64.0.0/14 } }
secrets { $sw_secrets }
EOT
ip netns exec ikb-resp unshare --mount --propagation private sh -c \
  "mount -t tmpfs tmpfs /run && mkdir -p /run/netns && STRONGSWAN_CONF=$work/sw/strongswan.conf exec taskset -c 1 /usr/lib/ipsec/charon" \
  >"$work/sw/charon.out" 2>&1 &
pids+=($!); local cpid=$!
for _ in $(seq 100); do
  STRONGSWAN_CONF=$work/sw/strongswan.conf ip netns exec ikb-resp swanctl --stats --uri "unix://$work/sw/charon.vici" >/dev/null 2>&1 && break
  sleep 0.1
done
STRONGSWAN_CONF=$work/sw/strongswan.conf ip netns exec ikb-resp swanctl --load-all --file "$work/sw/swanctl.conf" \
  --uri "unix://$work/sw/charon.vici" >"$work/sw/load.log" 2>&1 || { cat "$work/sw/load.log"; die "swanctl could not load the configuration"; }
listening || { tail "$work/sw/charon.out"; die "charon did not start"; }
measure "$1" "$cpid" "$n" "$auth"
kill "$cpid"; wait "$cpid" 2>/dev/null || true
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for auth in $auth_modes; do
  for cpus in $resp_cpus; do run_esprit "esprit-ike $auth $(ncpus "$cpus")cpu" "$n_rate" "$auth" "$cpus"; done
  n=$n_rate; [[ $auth == ecdsa ]] && n=$n_charon_ecdsa
  run_charon "charon $auth" "$n" "$auth"
done
if [[ $n_mem -gt 0 && " $auth_modes " == *" psk "* ]]; then
  run_esprit "esprit-100k psk" "$n_mem" psk 1
fi

echo
echo "IKEv2 handshakes as responder (X25519, AES-256-GCM, virtual IP, one Child SA; psk, or ecdsa = P-256 certificates"
echo "both ways; distinct client identities: psk ${PSK_IDENTITIES:-min(N, 20000)}, ecdsa $n_ecdsa_ids), load generator on CPU 0, window $window;"
echo "esprit-ike Ncpu = taskset over RESP_CPUS ($resp_cpus; a 2cpu responder shares CPU 0 with the generator),"
echo "charon and esprit-100k on CPU 1; load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %10s %8s %8s %11s %12s %12s\n' responder handshakes wall_s cpu_s hs/cpu_s hs/wall_s bytes/IKE_SA
for r in "${order[@]}"; do echo "${ROW[$r]}"; done
echo "esprit-ike's CPU time by thread:"
for r in "${order[@]}"; do if [[ -n ${SPLIT[$r]:-} ]]; then echo "  ${SPLIT[$r]}"; fi; done
for auth in $auth_modes; do
  c=${ROW["charon $auth"]:-}
  for cpus in $resp_cpus; do
    e=${ROW["esprit-ike $auth $(ncpus "$cpus")cpu"]:-}
    [[ -n $c && -n $e ]] || continue
    /usr/bin/python3 -c "
e, c = '''$e'''.split(), '''$c'''.split()
print('ratio esprit-ike %s %s / charon %s, handshakes per CPU-second: %.1fx (%s vs %s handshakes)' % (e[1], e[2], c[1], float(e[6]) / float(c[5]), e[3], c[2]))"
  done
done
if [[ ${#incomplete[@]} -gt 0 ]]; then
  printf 'bench/ike_handshakes.sh: FAILED: incomplete runs: %s\n' "${incomplete[*]}" >&2
  exit 1
fi
