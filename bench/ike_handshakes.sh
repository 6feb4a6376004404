#!/usr/bin/env bash
# IKEv2 handshakes per CPU-second of the responder: esprit-ike against
# strongSwan's charon, both tuned as their operators would for a gateway of
# this size, under the same load generator (`esprit-bench ike-load`,
# esprit's own sans-IO initiator) in one network namespace pinned to CPU 0;
# the responder in another, pinned to CPU 1. Each handshake: IKE_SA_INIT
# (X25519, AES-256-GCM, PRF-HMAC-SHA256), IKE_AUTH with a PSK or with
# ECDSA P-256 certificates both ways (RFC 7427 signatures, a CA made here),
# a virtual IP from a pool, one Child SA, and INITIAL_CONTACT as real
# clients send it (RFC 7296 §2.4; IC=no for the old load without it).
#
# The responders:
# * esprit-ike (release build): its Child SAs go into its shared-memory SA
#   table (a file in /dev/shm; its pages count in the memory figure);
#   `ike.log_level: warn` unless LOG=audit (then `info`: two lines per
#   handshake); its rayon pool has one thread (one CPU).
# * charon from Debian's own strongSwan source, rebuilt with the
#   load-tester plugin (scripts/strongswan-load-tester; bookworm's 5.9.8,
#   the version this project tests against), run from a private root, with
#   no kernel cost at all: the plugin's `fake_kernel` installs nothing
#   (https://docs.strongswan.org/docs/5.9/plugins/load-tester.html). Tuned
#   as strongSwan's documentation tells a gateway operator:
#   - IKE SA hash table: "5 to 20 IKE_SAs in each hash table entry is
#     probably a good value", a power of two
#     (https://docs.strongswan.org/docs/5.9/config/lookupTuning.html):
#     `ikesa_table_size` = the next power of two >= SAs held / 8;
#     `ikesa_table_segments` = 4 ("depending on the number of cores").
#   - `threads = 8`: below the default 16 ("make sure you don't set this
#     value too low", strongswan.conf(5)), for one CPU; the value of the
#     outside run the README quotes.
#   - an explicit minimal plugin list (`charon.load`) instead of Debian's
#     every-plugin `load_modular`: what the load needs and nothing else.
#   - logging off (`default = -1` everywhere) unless LOG=audit (level 0:
#     "IKE_SA ... established" per handshake, as esprit's `info`).
#   - `unique = no` (the default): INITIAL_CONTACT replaces an identity's
#     older IKE SAs, as in esprit. Cookies and half-open limits off on
#     both (one load address).
#
# Reported per row: handshakes (all with their Child SA, or the run fails),
# IKE SAs the responder holds afterwards (asserted: the count, or with
# one identity and INITIAL_CONTACT 1 for esprit-ike and at most WINDOW for
# charon, whose threads take concurrent IKE_AUTHs in parallel), wall time, the responder's CPU time
# (user + system, all threads, from /proc), handshakes per CPU-second
# (the figure: independent of the generator's speed and of other load on
# the machine), and memory per IKE SA held (growth of RssAnon, plus for
# esprit-ike the SA-table file's allocated pages). ROUNDS runs per cell,
# responders alternating; the summary gives medians and the ratio.
#
# usage: [AUTH="psk ecdsa"] [SCALES="500 1000 10000 100000"]
#        [RESPONDERS="esprit charon"] [ROUNDS=3] [IDS=many|one] [IC=yes|no]
#        [LOG=quiet|audit] [WINDOW=128] [PERF=DIR] [CROSS=N] [ESPRIT_IKE=BIN] bench/ike_handshakes.sh
#   ESPRIT_IKE: another esprit-ike binary (a before/after comparison).
#   QUICK=1: the smallest real run (AUTH=psk SCALES=500 ROUNDS=1 unless
#   set): both responders, every assertion, ~10 s once strongSwan is built.
#   SCALES: IKE SAs held after each run = handshakes per run (IDS=many:
#   one identity per handshake, load-I@esprit.bench with a PSK,
#   load-I.esprit.bench with its own certificate; IDS=one: a single
#   identity for every handshake). PERF=DIR: one more run per responder at
#   the largest scale under `perf record -g` (cpu-clock; no hardware
#   counters in this VM), its top symbols in DIR/*.txt (not measured).
#   CROSS=N: also N PSK handshakes (distinct identities) from charon's own
#   load-tester as the initiator (on CPU 0, 8 threads, INITIAL_CONTACT as
#   charon sends it) against esprit-ike: the cross-check that esprit's
#   figure does not depend on esprit's own generator.
#   Run as root, under `flock /tmp/esprit-netns.lock`.
#   Exits non-zero when a responder does not start, any run completes fewer
#   handshakes or Child SAs than asked, or a responder holds the wrong
#   number of IKE SAs (the table is printed first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
if [[ -n ${QUICK:-} ]]; then : "${AUTH:=psk}" "${SCALES:=500}" "${ROUNDS:=1}"; fi
auth_modes=${AUTH:-psk ecdsa} scales=${SCALES:-500 1000 10000 100000} responders=${RESPONDERS:-esprit charon}
rounds=${ROUNDS:-3} ids=${IDS:-many} ic=${IC:-yes} logmode=${LOG:-quiet} window=${WINDOW:-128} perf_dir=${PERF:-}
die() { echo "bench/ike_handshakes.sh: FAILED: $*" >&2; exit 1; }
for a in $auth_modes; do [[ $a == psk || $a == ecdsa ]] || die "AUTH: psk and/or ecdsa"; done
for r in $responders; do [[ $r == esprit || $r == charon ]] || die "RESPONDERS: esprit and/or charon"; done
[[ $ids == many || $ids == one ]] || die "IDS: many or one"
[[ $ic == yes || $ic == no ]] || die "IC: yes or no"
[[ $logmode == quiet || $logmode == audit ]] || die "LOG: quiet or audit"
[[ $(id -u) -eq 0 ]] || die "run as root (namespaces)"
max_scale=0
for n in $scales; do (( n > max_scale )) && max_scale=$n; done

swroot=""
if [[ " $responders " == *" charon "* ]]; then
  swroot=$("$top/scripts/strongswan-load-tester") || die "no strongSwan with the load-tester plugin"
fi
cargo build --release --locked -q -p esprit-controlplane -p esprit-bench
ike=${ESPRIT_IKE:-$top/target/release/esprit-ike} ctl=$top/target/release/esprit-ctl load=$top/target/release/esprit-bench
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

# --- a throwaway ECDSA P-256 PKI: CA, responder gw.esprit.bench, client
# key; one client certificate per identity load-I.esprit.bench.
n_certs=1
[[ $ids == many ]] && n_certs=$max_scale
if [[ " $auth_modes " == *" ecdsa "* ]]; then
  mkdir -p "$work/pki/clients"
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
  /usr/bin/python3 - "$work/pki" "$n_certs" <<'EOPY' || die "python3-cryptography could not issue the client certificates"
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

# CPU seconds of a process, all its threads, from the scheduler's
# nanosecond run times (/proc/PID/task/*/schedstat; clock ticks would be
# 10 ms steps, too coarse for the 500-SA runs).
cpu_secs() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.4f", s / 1e9 }'; }
rss_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
listening() { ip netns exec ikb-resp ss -Hluna "sport = :500" | grep -q .; }
table=/dev/shm/esprit-ikb-$$
# The process named NAME among PID's descendants (PID itself included):
# the responder under perf and the namespace wrappers.
descendant() {
  local p=$1 c
  [[ $(cat /proc/"$p"/comm 2>/dev/null) == "$2" ]] && { echo "$p"; return; }
  for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
    descendant "$c" "$2" && return
  done
  return 1
}
table_kb() { if [[ -f $table ]]; then du -k "$table" | cut -f1; else echo 0; fi; }

# --- esprit-ike
start_esprit() { # auth count
  local auth=$1 n=$2 local_auth remote_auth level=warn
  [[ $logmode == audit ]] && level=info
  if [[ $auth == psk ]]; then local_auth="{ psk: \"$psk\" }" remote_auth="{ psk: \"$psk\" }"
  else local_auth="{ cert: $work/pki/gw.pem, key: $work/pki/gw.key }" remote_auth="{ cas: [$work/pki/ca.pem] }"; fi
  rm -f "$table"
  cat >"$work/esprit.yaml" <<EOT
ike:
  listen: [10.77.0.2]
  control_socket: $work/ike.sock
  metrics_listen: null
  log_level: $level
  sa_table: { path: $table, capacity: $((2 * n + 64)) }
  limits: { cookie_threshold: 10000000, half_open_limit: 10000000, half_open_per_peer_limit: 10000000, datagram_queue: 4096 }
  pools:
    rw: { v4: 10.64.0.0/12 }
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
  ip netns exec ikb-resp taskset -c 1 ${PERF_OUT:+perf record -q -e cpu-clock -g -o "$PERF_OUT"} "$ike" --config "$work/esprit.yaml" >"$work/esprit.log" 2>&1 &
  pids+=($!); RPID=$!
  for _ in $(seq 100); do listening && break; sleep 0.1; done
  listening || { tail "$work/esprit.log"; die "esprit-ike did not start"; }
  # comm is the binary's name cut to 15 characters (ESPRIT_IKE may rename it).
  if [[ -n ${PERF_OUT:-} ]]; then PERF_PID=$RPID RPID=$(descendant "$RPID" "$(basename "$ike" | cut -c1-15)"); fi
}
held_esprit() { "$ctl" --socket "$work/ike.sock" stats | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["ike_sas_established"])'; }

# --- charon (the rebuilt one, from its private root: /usr/lib/ipsec is
# bind-mounted from it in charon's own mount namespace).
swanctl_() { ip netns exec ikb-resp unshare --mount --propagation private sh -c \
  "mount --bind $swroot/usr/lib/ipsec /usr/lib/ipsec && STRONGSWAN_CONF=$work/sw/strongswan.conf exec /usr/sbin/swanctl $* --uri unix://$work/sw/charon.vici"; }
start_charon() { # auth count
  local auth=$1 n=$2 sw_local sw_remote sw_secrets="" level=-1 size=1
  [[ $logmode == audit ]] && level=0
  while (( size * 8 < n )); do size=$((size * 2)); done
  CHARON_TABLE=$size
  rm -rf "$work/sw"; mkdir -p "$work/sw"
  if [[ $auth == psk ]]; then
    sw_local="auth = psk" sw_remote="auth = psk" sw_secrets="ike-1 { secret = \"$psk\" }"
  else
    mkdir -p "$work/sw/x509" "$work/sw/x509ca" "$work/sw/pkcs8"
    cp "$work/pki/gw.pem" "$work/sw/x509/"; cp "$work/pki/ca.pem" "$work/sw/x509ca/"; cp "$work/pki/gw.key" "$work/sw/pkcs8/"
    sw_local="auth = pubkey
            certs = gw.pem" sw_remote="auth = pubkey"
  fi
  # load-tester first: its fake kernel-ipsec registers before
  # kernel-netlink's (the first one registered is used); kernel-netlink
  # stays for addresses (the plugin depends on a kernel-net). The plugin's
  # own test credentials get the same PSK, in case charon asks them.
  cat >"$work/sw/strongswan.conf" <<EOT
charon {
  load = load-tester random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints curve25519 sha2 hmac kdf kernel-netlink socket-default vici
  threads = 8
  ikesa_table_size = $size
  ikesa_table_segments = 4
  install_routes = no
  install_virtual_ip = no
  cookie_threshold = 10000000
  block_threshold = 10000000
  init_limit_half_open = 0
  plugins {
    load-tester {
      enable = yes
      fake_kernel = yes
      initiators = 0
      preshared_key = $psk
    }
    vici { socket = unix://$work/sw/charon.vici }
  }
  filelog {
    stderr { default = $level }
    log { path = $work/sw/charon.log
          default = $level }
  }
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
    unique = no
    local { $sw_local
            id = gw.esprit.bench }
    remote { $sw_remote }
    children { c { local_ts = 192.168.200.0/24
                   esp_proposals = aes256gcm16 } }
  }
}
pools { rw { addrs = 10.64.0.0/12 } }
secrets { $sw_secrets }
EOT
  local perf=""
  [[ -n ${PERF_OUT:-} ]] && perf="perf record -q -e cpu-clock -g -o $PERF_OUT"
  ip netns exec ikb-resp unshare --mount --propagation private sh -c \
    "mount -t tmpfs tmpfs /run && mkdir -p /run/netns && mount --bind $swroot/usr/lib/ipsec /usr/lib/ipsec && STRONGSWAN_CONF=$work/sw/strongswan.conf exec taskset -c 1 $perf /usr/lib/ipsec/charon" \
    >"$work/sw/charon.out" 2>&1 &
  pids+=($!); RPID=$!
  for _ in $(seq 100); do [[ -S $work/sw/charon.vici ]] && swanctl_ --stats >/dev/null 2>&1 && break; sleep 0.1; done
  swanctl_ --load-all --file "$work/sw/swanctl.conf" >"$work/sw/load.log" 2>&1 || { cat "$work/sw/load.log" "$work/sw/charon.out"; die "swanctl could not load the configuration"; }
  listening || { tail "$work/sw/charon.out"; die "charon did not start"; }
  if [[ -n ${PERF_OUT:-} ]]; then PERF_PID=$RPID RPID=$(descendant "$RPID" charon); fi

}
held_charon() { swanctl_ --stats | awk '/^IKE_SAs:/ { print $2 }'; }

declare -A HS CPU MEM WALL HELD
incomplete=()
run() { # responder auth scale round
  local r=$1 auth=$2 n=$3 k=$4 c0 r0 t0 c1 r1 t1 out rc=0 args nid=$3 want
  [[ $ids == one ]] && nid=1
  if [[ $auth == psk ]]; then args=(--psk "$psk" --identities "$nid")
  else args=(--cert "$work/pki/clients/load-{i}.pem" --key "$work/pki/load.key" --ca "$work/pki/ca.pem" --id "load-{i}.esprit.bench" --identities "$nid"); fi
  "start_$r" "$auth" "$n"
  local pid=$RPID
  sleep 0.5
  c0=$(cpu_secs "$pid") r0=$(rss_kb "$pid") t0=$(table_kb)
  out=$(ip netns exec ikb-gen taskset -c 0 "$load" ike-load 10.77.0.1 10.77.0.2 --count "$n" --window "$window" \
        --initial-contact "$ic" --timeout-secs 1800 "${args[@]}") || rc=$?
  sleep 1 # the last responses are out, replaced SAs deleted; let the responder settle
  kill -0 "$pid" 2>/dev/null || die "$r: the responder exited during the run"
  c1=$(cpu_secs "$pid") r1=$(rss_kb "$pid") t1=$(table_kb)
  local held
  held=$("held_$r" 2>/dev/null || echo "?")
  # charon's fake kernel is the one in use: no SA reached the kernel's XFRM.
  if [[ $r == charon && $(ip netns exec ikb-resp ip xfrm state | wc -l) -ne 0 ]]; then
    incomplete+=("charon installed kernel SAs: fake_kernel not in use")
  fi
  kill "$pid" 2>/dev/null; wait "$RPID" 2>/dev/null || true
  local est ch secs
  est=$(awk '{ print $2 }' <<<"$out") ch=$(awk '{ print $4 }' <<<"$out") secs=$(awk '{ print $8 }' <<<"$out")
  want=$n; [[ $ids == one && $ic == yes ]] && want=1
  local key="$r $auth $n"
  echo "  $key round $k: ${out:-no output} (exit $rc); IKE SAs held $held (want $want)" >&2
  [[ ${est:-0} -gt 0 ]] || die "$key: no handshake completed (logs: KEEP=1, $work)"
  [[ $est -eq $n && $ch -eq $n ]] || incomplete+=("$key: $est IKE SAs and $ch Child SAs of $n")
  # One identity with INITIAL_CONTACT: esprit's endpoint takes IKE_AUTHs
  # one at a time, so exactly the last IKE SA is left. charon's worker
  # threads handle concurrent IKE_AUTHs of the identity in parallel, each
  # deleting only the SAs it sees: a few of the last window may remain.
  if [[ $r == charon && $want == 1 && $held =~ ^[0-9]+$ ]] && (( held >= 1 && held <= window )); then
    :
  else
    [[ $held == "$want" ]] || incomplete+=("$key: the responder holds $held IKE SAs, not $want")
  fi
  local mem_kb=$(( r1 - r0 ))
  [[ $r == esprit ]] && mem_kb=$(( mem_kb + t1 - t0 ))
  HS[$key]+="$(awk -v e="$est" -v c="$c0" -v d="$c1" 'BEGIN { printf "%.0f ", e / (d - c) }')"
  CPU[$key]+="$(awk -v c="$c0" -v d="$c1" 'BEGIN { printf "%.3f ", d - c }')"
  WALL[$key]+="$secs "
  MEM[$key]+="$(awk -v k="$mem_kb" -v h="$want" 'BEGIN { printf "%.0f ", k * 1024 / h }') "
  HELD[$key]=$held
}

# charon's load-tester as the initiator against esprit-ike (PSK).
cross_check() { # count
  local n=$1 pid c0 c1 t0 t1 held
  start_esprit psk "$n"
  pid=$RPID
  mkdir -p "$work/lt"
  cat >"$work/lt/strongswan.conf" <<EOT
charon {
  load = load-tester random nonce openssl pem pkcs1 x509 pubkey curve25519 sha2 hmac kdf kernel-netlink socket-default
  threads = 8
  ikesa_table_size = 16384
  ikesa_table_segments = 4
  install_routes = no
  install_virtual_ip = no
  plugins {
    load-tester {
      enable = yes
      fake_kernel = yes
      initiators = 4
      iterations = $((n / 4))
      init_limit = $window
      version = 2
      initiator = 10.77.0.1
      responder = 10.77.0.2
      proposal = aes256gcm16-prfsha256-x25519
      esp = aes256gcm16
      initiator_auth = psk
      responder_auth = psk
      preshared_key = $psk
      initiator_id = load-%d@esprit.bench
      responder_id = gw.esprit.bench
      request_virtual_ip = yes
      initiator_tsr = 192.168.200.0/24
      child_rekey = 0
      shutdown_when_complete = yes
    }
  }
  filelog { stderr { default = -1 } }
  syslog { daemon { default = -1 } }
}
EOT
  c0=$(cpu_secs "$pid"); t0=$(date +%s.%N)
  ip netns exec ikb-gen unshare --mount --propagation private sh -c \
    "mount -t tmpfs tmpfs /run && mount --bind $swroot/usr/lib/ipsec /usr/lib/ipsec && STRONGSWAN_CONF=$work/lt/strongswan.conf exec taskset -c 0 timeout 1800 /usr/lib/ipsec/charon" \
    >"$work/lt/charon.out" 2>&1 || true
  t1=$(date +%s.%N); c1=$(cpu_secs "$pid")
  held=$(held_esprit)
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  echo "  load-tester -> esprit-ike psk: $held of $((n / 4 * 4)) IKE SAs held" >&2
  [[ $held -eq $((n / 4 * 4)) ]] || incomplete+=("load-tester cross-check: esprit-ike holds $held IKE SAs of $((n / 4 * 4))")
  CROSS_ROW=$(awk -v h="$held" -v c="$c0" -v d="$c1" -v a="$t0" -v b="$t1" \
    'BEGIN { printf "esprit-ike as responder to charon'"'"'s load-tester (PSK, INITIAL_CONTACT): %d IKE SAs held, %.2f CPU-s, %.0f handshakes per CPU-second, %.1f s wall", h, d - c, h / (d - c), b - a }')
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
CROSS_ROW=""
if [[ ${CROSS:-0} -gt 0 ]]; then
  [[ -n $swroot ]] || swroot=$("$top/scripts/strongswan-load-tester") || die "no strongSwan with the load-tester plugin"
  cross_check "$CROSS"
fi
for auth in $auth_modes; do
  for n in $scales; do
    for k in $(seq "$rounds"); do
      # Alternate which responder goes first.
      order=$responders
      (( k % 2 == 0 )) && order=$(tr ' ' '\n' <<<"$responders" | tac | paste -sd' ')
      for r in $order; do run "$r" "$auth" "$n" "$k"; done
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ -n $perf_dir ]]; then
  mkdir -p "$perf_dir"
  for auth in $auth_modes; do
    for r in $responders; do
      PERF_OUT=$work/perf-$r-$auth.data
      export PERF_OUT
      "start_$r" "$auth" "$max_scale"
      local_pid=$RPID
      nid=$max_scale; [[ $ids == one ]] && nid=1
      if [[ $auth == psk ]]; then a=(--psk "$psk" --identities "$nid")
      else a=(--cert "$work/pki/clients/load-{i}.pem" --key "$work/pki/load.key" --ca "$work/pki/ca.pem" --id "load-{i}.esprit.bench" --identities "$nid"); fi
      ip netns exec ikb-gen taskset -c 0 "$load" ike-load 10.77.0.1 10.77.0.2 --count "$max_scale" --window "$window" \
        --initial-contact "$ic" --timeout-secs 1800 "${a[@]}" >/dev/null || echo "  perf run $r $auth incomplete" >&2
      # perf writes its file when the profiled process ends.
      kill "$local_pid" 2>/dev/null || true
      wait "$PERF_PID" 2>/dev/null || true
      txt=$perf_dir/$r-$auth-$max_scale.txt
      {
        echo "# perf record -e cpu-clock -g, $r as responder, $auth, $max_scale handshakes, IDS=$ids IC=$ic LOG=$logmode"
        echo "# top symbols by self time (perf report --no-children --sort dso,symbol)"
        if [[ $r == charon ]]; then
          unshare --mount --propagation private sh -c "mount --bind $swroot/usr/lib/ipsec /usr/lib/ipsec && mkdir -p /usr/lib/debug && mount --bind $swroot/usr/lib/debug /usr/lib/debug && perf report -i $PERF_OUT --no-children --sort dso,symbol --stdio -g none --percent-limit 0.7 2>/dev/null"
        else
          perf report -i "$PERF_OUT" --no-children --sort dso,symbol --stdio -g none --percent-limit 0.7 2>/dev/null
        fi
      } | grep -v '^$' >"$txt" || true
      echo "  profile: $txt" >&2
      unset PERF_OUT
    done
  done
fi

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "IKEv2 handshakes as responder, one CPU (X25519, AES-256-GCM, virtual IP, one Child SA each; identities: $ids;"
echo "INITIAL_CONTACT: $ic; logging: $logmode); generator on CPU 0, window $window; $rounds round(s), medians;"
echo "charon: strongSwan $(cat "${swroot:-/nonexistent}/.esprit-built" 2>/dev/null || echo -) with load-tester fake_kernel; load average before/after: $load_before / $load_after"
printf '%-8s %-6s %8s %8s %10s %12s %9s %12s   %s\n' responder auth SAs held cpu_s hs/cpu_s wall_s bytes/IKE_SA "hs/cpu_s per round"
for auth in $auth_modes; do
  for n in $scales; do
    for r in $responders; do
      key="$r $auth $n"
      [[ -n ${HS[$key]:-} ]] || continue
      printf '%-8s %-6s %8s %8s %10s %12s %9s %12s   %s\n' "$r" "$auth" "$n" "${HELD[$key]}" "$(median <<<"${CPU[$key]}")" \
        "$(median <<<"${HS[$key]}")" "$(median <<<"${WALL[$key]}")" "$(median <<<"${MEM[$key]}")" "${HS[$key]}"
    done
    e=${HS["esprit $auth $n"]:-} c=${HS["charon $auth $n"]:-}
    if [[ -n $e && -n $c ]]; then
      awk -v e="$(median <<<"$e")" -v c="$(median <<<"$c")" -v a="$auth" -v n="$n" \
        'BEGIN { printf "ratio esprit-ike / charon, %s, %s SAs: %.2fx handshakes per CPU-second\n", a, n, e / c }'
    fi
  done
done
[[ -z $CROSS_ROW ]] || echo "$CROSS_ROW"
if [[ ${#incomplete[@]} -gt 0 ]]; then
  printf 'bench/ike_handshakes.sh: FAILED: %s\n' "${incomplete[@]}" >&2
  exit 1
fi
