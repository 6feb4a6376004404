#!/usr/bin/env bash
# RFC 9242 IKE_INTERMEDIATE and RFC 9370 additional key exchanges against
# strongSwan from the Debian chroots of scripts/peers/prepare (IKE level, both
# roles): esprit-ike (no dataplane; its SA table in /dev/shm) in namespace
# pqsw-e (172.16.19.1) and charon in pqsw-s (172.16.19.2), PSK.
#
#   PEER=sid    strongSwan 6.1.0: x25519 + ke1_mlkem768, then x25519 +
#               ke1_mlkem1024 (IKE_INTERMEDIATE fragmented both ways)
#   PEER=trixie strongSwan 6.0.1: x25519 + ke1_ecp256 (classic ADDKE)
#
# For each proposal strongSwan initiates to esprit, then esprit to
# strongSwan; both must list one established IKE SA with the same KE
# methods (swanctl --list-sas against esprit-ctl --json list-sas) and an
# installed Child SA. With a PQ method esprit_ike_pq_sas must count it.
# The IKE SA is then rekeyed by strongSwan and by esprit, each with
# IKE_FOLLOWUP_KE for the additional key exchange (RFC 9370 §2.2.4), and
# so is the Child SA (ESP proposal with the same KE and ADDKE methods).
# No traffic: esprit runs without its dataplane here (IKE level only).
# Then a strongSwan without ADDKE (classic proposal only) against esprit's
# ADDKE proposal: esprit falls back to its classic proposal.
#
#   PPK=1       all of the above with an RFC 8784 PPK, mandatory on both
#               sides (strongSwan's ppk_id/ppk_required, esprit's ike.ppks
#               and per-connection ppk), mixed in after the IKE_INTERMEDIATE
#               key updates. Each handshake must show "using PPK for PPK_ID"
#               in strongSwan's log, and esprit-ctl list-sas ", PPK" (also
#               after the IKE_FOLLOWUP_KE rekeys). Checking the check, by
#               hand: PPK_BREAK=secret (strongSwan holds another secret for
#               the PPK_ID: no tunnel) and PPK_BREAK=absent (strongSwan
#               without PPK configuration, esprit's PPK optional: tunnels
#               up without a PPK, caught by the PPK checks) must FAIL.
peer=${PEER:-sid}
ppk_mode=${PPK:-0}
ppk_break=${PPK_BREAK:-}
name="ike-pq-strongswan $peer"
[[ $ppk_mode == 1 ]] && name+=" ppk"
. "$(dirname "$0")/lib.sh"
need_ike
need_interop
root=$interop/chroots/$peer-root
[[ -x $root/usr/lib/ipsec/charon && -x $root/usr/sbin/swanctl ]] \
  || fail "no strongSwan in $root (scripts/peers/prepare makes the chroots)"
case $peer in
  sid) proposals=(aes256gcm16-prfsha384-x25519-ke1_mlkem768 aes256gcm16-prfsha384-x25519-ke1_mlkem1024)
       want_version="6.1" ;;
  trixie) proposals=(aes256gcm16-prfsha256-x25519-ke1_ecp256)
       want_version="6.0" ;;
  *) fail "PEER must be sid or trixie" ;;
esac
# charon's files live inside the chroot, at the same path it sees.
swdir=/tmp/esprit-pq-$$
sw_host=$root$swdir
mkdir -p "$sw_host"
trap 'rm -rf "$sw_host"; cleanup' EXIT

ip netns add pqsw-e; netns+=(pqsw-e)
ip netns add pqsw-s; netns+=(pqsw-s)
ip link add pqsw-e0 netns pqsw-e type veth peer name pqsw-s0 netns pqsw-s
ip -n pqsw-e addr add 172.16.19.1/24 dev pqsw-e0
ip -n pqsw-s addr add 172.16.19.2/24 dev pqsw-s0
for n in pqsw-e pqsw-s; do ip -n $n link set lo up; done
ip -n pqsw-e link set pqsw-e0 up; ip -n pqsw-s link set pqsw-s0 up

psk=esprit-pq-interop-$$
# A fresh 256-bit PPK per run (esprit must never log it: checked at each stop).
ppk=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
[[ $ppk_mode == 1 || -z $ppk_break ]] || fail "PPK_BREAK needs PPK=1"
sw_ppk=$ppk
[[ $ppk_break == secret ]] && sw_ppk=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
ppk_required=yes
[[ $ppk_break == absent ]] && ppk_required=no
sw_ppk_conf=1
[[ $ppk_break == absent ]] && sw_ppk_conf=0
# Whether esprit-ctl's output ($1: command words) contains $2. Through a
# file: grep -q closing a pipe early would fail the pipeline (pipefail).
ectl_has() { ectl $1 >"$work/ectl.out" 2>/dev/null && grep -q "$2" "$work/ectl.out"; }
sw() { chroot "$root" env STRONGSWAN_CONF=$swdir/strongswan.conf /usr/sbin/swanctl "$@" --uri "unix://$swdir/charon.vici"; }
sw_fail() {
  [[ -f $work/ike.log ]] && sed 's/^/  ike| /' "$work/ike.log" | tail -20
  [[ -f $sw_host/charon.log ]] && grep -v "sending packet\|received packet" "$sw_host/charon.log" | sed 's/^/  charon| /' | tail -40
  fail "$@"
}

cat >"$sw_host/strongswan.conf" <<EOT
charon {
  load_modular = no
  load = random nonce openssl aes sha1 sha2 hmac gcm curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
  install_routes = no
  fragment_size = 1280
  plugins { vici { socket = unix://$swdir/charon.vici } }
  filelog { main { path = $swdir/charon.log
                   time_format = %H:%M:%S
                   flush_line = yes
                   default = 1
                   ike = 2
                   enc = 1 } }
}
swanctl { socket = unix://$swdir/charon.vici }
EOT
ip netns exec pqsw-s unshare -m --propagation private sh -c \
  "mount -t tmpfs tmpfs $root/run && mount --rbind /dev $root/dev && mount -t proc proc $root/proc && mount -t sysfs sysfs $root/sys && STRONGSWAN_CONF=$swdir/strongswan.conf exec chroot $root /usr/lib/ipsec/charon" \
  >"$work/charon.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -S $sw_host/charon.vici ]] && break; sleep 0.1; done
[[ -S $sw_host/charon.vici ]] || { cat "$work/charon.out"; sw_fail "charon did not start"; }
version=$(grep -o 'strongSwan [0-9][0-9.]*' "$sw_host/charon.log" | head -1)
[[ $version == "strongSwan $want_version"* ]] || sw_fail "expected strongSwan $want_version, got '$version'"

# $1: strongSwan's IKE proposal; $2: esprit's proposal list (YAML flow
# list); $3: the ESP proposal of both (default aes256gcm16)
configure() {
  mkdir -p "$sw_host/swanctl"
  cat >"$sw_host/swanctl/swanctl.conf" <<EOT
connections {
  esprit {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    proposals = $1
$( [[ $ppk_mode == 1 && $sw_ppk_conf == 1 ]] && printf '    ppk_id = pqc-1\n    ppk_required = yes\n' )
    local { auth = psk
            id = sw.esprit }
    remote { auth = psk
             id = gw.esprit }
    children {
      net { local_ts = 10.2.0.0/16
            remote_ts = 10.1.0.0/16
            esp_proposals = ${3:-aes256gcm16} }
    }
  }
}
secrets {
  ike-esprit { id-1 = sw.esprit
               id-2 = gw.esprit
               secret = "$psk" }
$( [[ $ppk_mode == 1 && $sw_ppk_conf == 1 ]] && printf '  ppk-1 { id = pqc-1\n          secret = 0x%s }\n' "$sw_ppk" )
}
EOT
  sw --load-all --file "$swdir/swanctl/swanctl.conf" >"$work/sw-load.log" 2>&1 || { cat "$work/sw-load.log"; sw_fail "swanctl --load-all failed"; }
  if [[ $ppk_mode == 1 && $sw_ppk_conf == 1 ]]; then
    grep -q "loaded ppk secret 'ppk-1'" "$work/sw-load.log" || { cat "$work/sw-load.log"; sw_fail "strongSwan did not load the PPK"; }
  fi
  cat >"$work/ike.yaml" <<EOT
dataplane:
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
ike:
  listen: [172.16.19.1]
  control_socket: $work/ike.sock
  metrics_listen: "127.0.0.1:0"
$( [[ $ppk_mode == 1 ]] && printf '  ppks:\n    - { id: pqc-1, secret_hex: "%s" }\n' "$ppk" )
  connections:
    site:
      remote: 172.16.19.2
      local_id: gw.esprit
      remote_id: sw.esprit
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: $2
$( [[ $ppk_mode == 1 ]] && printf '      ppk: { id: pqc-1, required: %s }\n' "$([[ $ppk_required == yes ]] && echo true || echo false)" )
      child:
        esp_proposals: [${3:-aes256gcm16}]
        local_ts: [10.1.0.0/16]
        remote_ts: [10.2.0.0/16]
EOT
}

stop_ike() {
  kill -TERM $ike_pid 2>/dev/null; wait $ike_pid 2>/dev/null || true
  if [[ $ppk_mode == 1 ]] && grep -qi "$ppk" "$work/ike.log"; then sw_fail "esprit-ike logged the PPK"; fi
  sw --terminate --ike esprit --force --timeout 5 >/dev/null 2>&1 || true
}

# $1: the KE methods both sides must show, esprit's names joined by '+'
# (CURVE25519+ML_KEM_768); $2: what happened (for messages)
check_sas() {
  local want=$1 what=$2
  sw --list-sas >"$work/sw-sas.log" 2>&1
  grep -q ESTABLISHED "$work/sw-sas.log" || sw_fail "$what: strongSwan lists no established IKE SA: $(cat "$work/sw-sas.log")"
  grep -q INSTALLED "$work/sw-sas.log" || sw_fail "$what: strongSwan lists no installed Child SA: $(cat "$work/sw-sas.log")"
  ectl --json list-sas >"$work/sas.json" || sw_fail "$what: esprit-ctl list-sas failed"
  # strongSwan's algorithm line, e.g. AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519/KE1_ML_KEM_768
  local sw_alg; sw_alg=$(grep -Eo '[A-Z0-9_]+-[0-9]+/PRF_[A-Z0-9_]+/[A-Z0-9_/]+' "$work/sw-sas.log" | head -1)
  /usr/bin/python3 - "$work/sas.json" "$want" "$sw_alg" "$ppk_mode" <<'PY' || sw_fail "$what: the sides disagree: $(cat "$work/sas.json") / strongSwan $sw_alg"
import json, sys
d = json.load(open(sys.argv[1])); want = sys.argv[2].split("+"); sw = sys.argv[3].split("/")
# strongSwan 6 ends the line with /PPK when a PPK was used.
assert (sw[-1] == "PPK") == (sys.argv[4] == "1"), sw
sw = [a for a in sw if a != "PPK"]
up = [i for i in d["ike_sas"] if i["state"] == "Established"]
assert len(up) == 1, d
assert up[0]["key_exchanges"] == want, (up[0]["key_exchanges"], want)
assert [c["state"] for c in up[0]["child_sas"]] == ["INSTALLED"], up[0]
# strongSwan names: CURVE_25519, ECP_256, KE1_ML_KEM_768 ...
names = {"CURVE25519": "CURVE_25519", "ECP_256": "ECP_256", "ML_KEM_768": "ML_KEM_768", "ML_KEM_1024": "ML_KEM_1024"}
sw_kes = sw[2:]
expect = [names[want[0]]] + ["KE%d_%s" % (i + 1, names[k]) for i, k in enumerate(want[1:])]
assert sw_kes == expect, (sw_kes, expect)
pq = any(k.startswith("ML_KEM") for k in want)
assert up[0]["pq"] == pq, up[0]
PY
  if [[ $ppk_mode == 1 ]]; then
    ectl list-sas >"$work/sas.txt" || sw_fail "$what: esprit-ctl list-sas failed"
    grep -q "established .*, PPK" "$work/sas.txt" || sw_fail "$what: esprit-ctl list-sas does not show the PPK: $(cat "$work/sas.txt")"
    grep -q '"ppk": true' "$work/sas.json" || sw_fail "$what: esprit-ctl --json list-sas says ppk is not true"
  fi
  if [[ $want == *ML_KEM* ]]; then
    # (The gauges follow esprit-ike's 1 s housekeeping tick.)
    for _ in $(seq 30); do ectl --json stats >"$work/stats.json"; grep -q '"esprit_ike_pq_sas": 1' "$work/stats.json" && break; sleep 0.1; done
    grep -q '"esprit_ike_pq_sas": 1' "$work/stats.json" || sw_fail "$what: esprit_ike_pq_sas is not 1: $(cat "$work/stats.json")"
  fi
}

# IKE SA rekeys with RFC 9370 §2.2.4 IKE_FOLLOWUP_KE, first by strongSwan,
# then by esprit; after each both sides keep one IKE SA with the same KE
# methods, and the follow-up exchange is in strongSwan's log.
rekey_both() {
  local want=$1 what=$2 n_before n_after id
  n_before=$(grep -c "IKE_FOLLOWUP_KE" "$sw_host/charon.log" || true)
  sw --rekey --ike esprit >"$work/rekey.log" 2>&1 || { cat "$work/rekey.log"; sw_fail "$what: swanctl --rekey --ike failed"; }
  for _ in $(seq 50); do ectl_has "--json stats" '"esprit_ike_rekeys_total{kind=ike}": 1' && break; sleep 0.1; done
  ectl_has "--json stats" '"esprit_ike_rekeys_total{kind=ike}": 1' || sw_fail "$what: esprit did not complete strongSwan's IKE SA rekey"
  sleep 0.5
  check_sas "$want" "$what, rekeyed by strongSwan"
  id=$(ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; print([i for i in json.load(sys.stdin)["ike_sas"] if i["state"] == "Established"][0]["ike_sa"])')
  ectl rekey ike "$id" >/dev/null || sw_fail "$what: esprit-ctl rekey ike refused"
  for _ in $(seq 50); do ectl_has "--json stats" '"esprit_ike_rekeys_total{kind=ike}": 2' && break; sleep 0.1; done
  ectl_has "--json stats" '"esprit_ike_rekeys_total{kind=ike}": 2' || sw_fail "$what: esprit's own IKE SA rekey did not complete"
  sleep 0.5
  check_sas "$want" "$what, rekeyed by esprit"
  n_after=$(grep -c "IKE_FOLLOWUP_KE" "$sw_host/charon.log" || true)
  # Two rekeys, each at least one follow-up request and response.
  (( n_after - n_before >= 4 )) || sw_fail "$what: strongSwan logged no IKE_FOLLOWUP_KE exchanges ($n_before -> $n_after)"
}

# Child SA rekeys with PFS and RFC 9370 additional key exchanges
# (CREATE_CHILD_SA + IKE_FOLLOWUP_KE), by strongSwan then by esprit; the new
# Child SA must carry the same methods on both sides (strongSwan's child
# algorithm line, e.g. AES_GCM_16-256/CURVE_25519/KE1_ML_KEM_768).
rekey_child_both() {
  local esp=$1 want=$2 what=$3 id child
  for who in strongswan esprit; do
    if [[ $who == strongswan ]]; then
      sw --rekey --child net >"$work/rekey.log" 2>&1 || { cat "$work/rekey.log"; sw_fail "$what: swanctl --rekey --child failed"; }
    else
      read -r id child < <(ectl --json list-sas | /usr/bin/python3 -c '
import json, sys
i = [i for i in json.load(sys.stdin)["ike_sas"] if i["state"] == "Established"][0]
print(i["ike_sa"], [c for c in i["child_sas"] if c["state"] == "INSTALLED"][0]["child_sa"])')
      ectl rekey child "$child" >/dev/null || sw_fail "$what: esprit-ctl rekey child refused"
    fi
    sleep 1.5
    sw --list-sas >"$work/sw-sas.log" 2>&1
    ectl --json list-sas >"$work/sas.json"
    /usr/bin/python3 - "$work/sas.json" "$want" "$work/sw-sas.log" <<'PY' || sw_fail "$what: Child SA rekeyed by $who: the sides disagree: $(cat "$work/sas.json") / $(grep -A3 INSTALLED "$work/sw-sas.log")"
import json, re, sys
d = json.load(open(sys.argv[1])); want = sys.argv[2].split("+"); sw = open(sys.argv[3]).read()
up = [i for i in d["ike_sas"] if i["state"] == "Established"]
assert len(up) == 1, d
kids = [c for c in up[0]["child_sas"] if c["state"] == "INSTALLED"]
assert len(kids) == 1, up[0]["child_sas"]
c = kids[0]
assert [c["pfs"]] + c["additional_ke"] == want, (c, want)
names = {"CURVE25519": "CURVE_25519", "ECP_256": "ECP_256", "ML_KEM_768": "ML_KEM_768", "ML_KEM_1024": "ML_KEM_1024"}
expect = "/".join([names[want[0]]] + ["KE%d_%s" % (i + 1, names[k]) for i, k in enumerate(want[1:])])
algs = re.findall(r"AES_GCM_16-256/([A-Z0-9_/]+)", sw)
assert any(a == expect for a in algs), (algs, expect)
ins = re.findall(r"INSTALLED", sw)
assert len(ins) == 1, sw
PY
  done
  n=$(grep -c "IKE_FOLLOWUP_KE" "$sw_host/charon.log" || true)
  (( n > 0 )) || sw_fail "$what: no IKE_FOLLOWUP_KE in strongSwan's log"
}

# With PPK=1: one more "using PPK for PPK_ID 'pqc-1'" in strongSwan's log
# than before the handshake (strongSwan says it in IKE_AUTH, either role).
ppk_seen=0
ppk_used() {
  [[ $ppk_mode == 1 ]] || return 0
  local n; n=$(grep -c "using PPK for PPK_ID 'pqc-1'" "$sw_host/charon.log" || true)
  (( n == ppk_seen + 1 )) || sw_fail "$1: strongSwan did not use the PPK ($ppk_seen -> $n \"using PPK for PPK_ID 'pqc-1'\")"
  ppk_seen=$n
}

for prop in "${proposals[@]}"; do
  esprit_names=$(/usr/bin/python3 -c '
import sys
n = {"x25519": "CURVE25519", "ecp256": "ECP_256", "mlkem768": "ML_KEM_768", "mlkem1024": "ML_KEM_1024"}
p = sys.argv[1].split("-")
print("+".join([n[p[2]]] + [n[t.split("_", 1)[1]] for t in p[3:]]))' "$prop")
  # The Child SA's PFS and additional key exchanges: the IKE SA's methods.
  esp=aes256gcm16-${prop#*-*-}
  configure "$prop" "[$prop]" "$esp"
  # strongSwan initiates, esprit responds.
  start_ike "$work/ike.yaml" pqsw-e
  sw --initiate --child net --timeout 20 >"$work/initiate.log" 2>&1 \
    || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -10; sw_fail "$prop: strongSwan could not bring the tunnel up to esprit"; }
  check_sas "$esprit_names" "$prop, esprit responder"
  ppk_used "$prop, esprit responder"
  rekey_both "$esprit_names" "$prop"
  rekey_child_both "$esp" "$esprit_names" "$prop"
  if [[ $prop == *mlkem1024* ]]; then
    # 1568-octet keys and ciphertexts cannot fit 1280-octet datagrams: both
    # sides must have fragmented their IKE_INTERMEDIATE message.
    grep -q "IKE_INTERMEDIATE request 1 \[ EF(1/2) \]" "$sw_host/charon.log" \
      || sw_fail "$prop: strongSwan did not fragment its IKE_INTERMEDIATE request"
    grep -Eq "received fragment #2 of 2, reassembled fragmented IKE message|parsed IKE_INTERMEDIATE response 1 \[ KE \]" "$sw_host/charon.log" \
      || sw_fail "$prop: no IKE_INTERMEDIATE response from esprit parsed"
  fi
  stop_ike
  # esprit initiates, strongSwan responds.
  start_ike "$work/ike.yaml" pqsw-e
  ectl initiate site >/dev/null || sw_fail "$prop: esprit-ctl initiate site was refused"
  for _ in $(seq 100); do ectl_has "--json list-sas" '"Established"' && break; sleep 0.1; done
  check_sas "$esprit_names" "$prop, esprit initiator"
  ppk_used "$prop, esprit initiator"
  stop_ike
done

# Fallback: strongSwan without ADDKE initiates to esprit offering ADDKE
# (esprit as responder picks its classic fallback), and esprit initiates to
# it (strongSwan picks the classic proposal esprit sends after the ADDKE one).
classic=${proposals[0]%%-ke1_*}
configure "$classic" "[${proposals[0]}]"
start_ike "$work/ike.yaml" pqsw-e
sw --initiate --child net --timeout 20 >"$work/initiate.log" 2>&1 || sw_fail "fallback: strongSwan could not bring the tunnel up to esprit"
check_sas CURVE25519 "fallback, esprit responder"
ppk_used "fallback, esprit responder"
stop_ike
start_ike "$work/ike.yaml" pqsw-e
ectl initiate site >/dev/null || sw_fail "fallback: esprit-ctl initiate site was refused"
for _ in $(seq 100); do ectl_has "--json list-sas" '"Established"' && break; sleep 0.1; done
check_sas CURVE25519 "fallback, esprit initiator"
ppk_used "fallback, esprit initiator"
stop_ike
if [[ $ppk_mode == 1 ]]; then
  echo "  PPK used in $ppk_seen handshakes; strongSwan: $(grep -o "using PPK for PPK_ID.*" "$sw_host/charon.log" | head -1)"
fi
pass
