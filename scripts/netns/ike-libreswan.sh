#!/usr/bin/env bash
# esprit-ike against libreswan 4.10's pluto (Debian bookworm's, unpacked, run
# by scripts/peers/prepare), at the IKE level: this kernel has
# no ESP, so every Child SA pluto tries to put into XFRM fails ("Function
# not implemented"). What pluto does then decides what can be tested:
#
# * pluto as IKE_AUTH responder: it answers TS_UNACCEPTABLE for the Child SA
#   and keeps the IKE SA. On that IKE SA: IKE SA rekeys both ways
#   (CREATE_CHILD_SA), liveness checks both ways (INFORMATIONAL), deletes
#   both ways (INFORMATIONAL with Delete).
# * pluto as IKE_AUTH initiator, or as CREATE_CHILD_SA initiator of a new
#   Child SA: the exchange completes (esprit installs the Child SA, PFS
#   X25519 for CREATE_CHILD_SA), then pluto treats its failed install as
#   fatal and drops the IKE SA without a Delete ("NOT sending notification")
#   and would revive the connection; esprit's DPD then finds the peer gone.
# * A Child SA rekey needs a Child SA pluto keeps: impossible here. It is
#   covered against libreswan 5.2 with the kernel's ESP in QEMU
#   (ike-libreswan-kernel.sh) and against strongSwan.
#
#   ns lsw-e: esprit-ike 172.16.41.1 ── veth ── ns lsw-p: pluto 172.16.41.2
#             (protects 192.168.141.0/24)       (protects 10.141.0.1/32)
#
# No dataplane: esprit-ike programs its own SA table in /dev/shm.
# CERT=1: ECDSA P-256 certificates from a throwaway CA both ways (RFC 7427
# signatures) instead of the PSK; runs steps 1, 2, 6 and 7 below.
cert=${CERT:-0}
name=ike-libreswan
[[ $cert == 1 ]] && name="ike-libreswan auth=cert"
. "$(dirname "$0")/lib.sh"
need_ike
need_interop
LSR=${LSR:-$interop/libreswan-root}; LX=$LSR/usr/libexec/ipsec
[[ -x $LX/pluto ]] || fail "libreswan 4.10 is not unpacked at $LSR"
command -v certutil >/dev/null || fail "certutil (libnss3-tools) is missing"

ne=lsw-e np=lsw-p
ip netns add $ne; netns+=($ne)
ip netns add $np; netns+=($np)
ip link add lswe0 type veth peer name lswp0
ip link set lswe0 netns $ne; ip link set lswp0 netns $np
ip -n $ne addr add 172.16.41.1/24 dev lswe0; ip -n $np addr add 172.16.41.2/24 dev lswp0
for n in $ne $np; do ip -n $n link set lo up; done
ip -n $ne link set lswe0 up; ip -n $np link set lswp0 up
ip -n $np addr add 10.141.0.1/32 dev lo
psk=esprit-libreswan-psk-$$

# --- pluto ------------------------------------------------------------------
L=$work/pluto; mkdir -p $L/nss $L/run $L/ipsec.d
certutil -N -d sql:$L/nss --empty-password </dev/null
lsw_auth="authby=secret" ike_local_auth="{ psk: \"$psk\" }" ike_remote_auth="{ psk: \"$psk\" }"
if [[ $cert == 1 ]]; then
  make_pki "$work/pki" ecdsa "esprit libreswan CA" test esprit libreswan
  openssl pkcs12 -export -inkey "$work/pki/libreswan.key" -in "$work/pki/libreswan.pem" -name libreswan \
    -out "$work/pki/libreswan.p12" -passout pass:p12 || fail "openssl could not export pluto's key"
  certutil -A -d sql:$L/nss -n esprit-ca -t "CT,," -a -i "$work/pki/ca.pem" || fail "certutil could not add the CA"
  pk12util -i "$work/pki/libreswan.p12" -d sql:$L/nss -W p12 >/dev/null || fail "pk12util could not import pluto's key"
  lsw_auth=$'authby=ecdsa\n\tleftcert=libreswan\n\tleftsendcert=always'
  ike_local_auth="{ cert: $work/pki/esprit.pem, key: $work/pki/esprit.key }" ike_remote_auth="{ cas: [$work/pki/ca.pem] }"
fi
cat >$L/ipsec.conf <<EOC
config setup
	logfile=$L/pluto.log
	plutodebug=base
	ipsecdir=$L/ipsec.d
	dumpdir=$L/run
conn esprit
	ikev2=insist
	$lsw_auth
	left=172.16.41.2
	leftid=@libreswan.test
	leftsubnet=10.141.0.1/32
	right=172.16.41.1
	rightid=@esprit.test
	rightsubnet=192.168.141.0/24
	ike=aes_gcm128-sha2_256-dh31
	esp=aes_gcm128
	pfs=yes  # with the IKE SA's group, DH31
	auto=add
EOC
echo "@libreswan.test @esprit.test : PSK \"$psk\"" >$L/ipsec.secrets
chmod 600 $L/ipsec.secrets
ip netns exec $np unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /run && mount -t overlay overlay -o lowerdir=$LSR/usr/libexec:/usr/libexec /usr/libexec && exec $LX/pluto --nofork --config $L/ipsec.conf --rundir $L/run --nssdir $L/nss --secretsfile $L/ipsec.secrets --ipsecdir $L/ipsec.d" >$L/pluto.stdout 2>&1 &
pids+=($!)
for _ in $(seq 50); do [[ -S $L/run/pluto.ctl ]] && break; sleep 0.1; done
[[ -S $L/run/pluto.ctl ]] || { cat $L/pluto.stdout; fail "pluto did not start"; }
whack() { ip netns exec $np "$LX/whack" --ctlsocket "$L/run/pluto.ctl" "$@"; }
addconn() { ip netns exec $np "$LX/addconn" --config "$L/ipsec.conf" --ctlsocket "$L/run/pluto.ctl" esprit >>"$work/addconn.log" 2>&1 || { cat "$work/addconn.log"; false; }; }
addconn || fail "pluto did not load the connection"
# pluto's IKE SA serial numbers in STATE_V2_ESTABLISHED_IKE_SA.
pluto_ike() { whack --showstates >"$work/states.txt" 2>&1; sed -n 's/^000 #\([0-9]*\): "esprit".*STATE_V2_ESTABLISHED_IKE_SA.*/\1/p' "$work/states.txt" | tr '\n' ' ' | sed 's/ $//'; }
# pluto's log without the debug lines.
plog() { grep -v '^.\{24\}| ' "$L/pluto.log"; }

# --- esprit-ike ---------------------------------------------------------------
cat >"$work/ike.yaml" <<EOT
ike:
  listen: [172.16.41.1]
  control_socket: $work/ike.sock
  metrics_listen: null
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
  orphan_grace_secs: 0
  limits: { retransmit_timeout_ms: 500, retransmit_base: 1.5, retransmit_tries: 3 }
  connections:
    lsw:
      remote: 172.16.41.2
      local_id: esprit.test
      remote_id: libreswan.test
      local_auth: $ike_local_auth
      remote_auth: $ike_remote_auth
      proposals: [aes128gcm16-prfsha256-x25519]
      dpd_delay_secs: 3
      child:
        esp_proposals: [aes128gcm16-x25519]
        local_ts: [192.168.141.0/24]
        remote_ts: [10.141.0.1/32]
EOT
start_ike "$work/ike.yaml" $ne
lfail() {
  sed 's/^/  ike| /' "$work/ike.log" | tail -25
  plog | sed 's/^/  pluto| /' | tail -25
  [[ -z ${KEEP:-} ]] || cp -r "$work" "$KEEP"
  fail "$@"
}
# esprit's IKE SA numbers in state Established.
esprit_ike() { ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(i["ike_sa"]) for i in json.load(sys.stdin)["ike_sas"] if i["state"]=="Established"))'; }
stat() { ectl --json stats | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"].get(sys.argv[1], 0))' "$1"; }
wait_for() { local what=$1; shift; for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done; lfail "timed out: $what"; }

# 1. esprit initiates: IKE_SA_INIT + IKE_AUTH (PSK). pluto refuses the Child
#    SA because its XFRM install fails, and keeps the IKE SA.
ectl initiate lsw >/dev/null || lfail "esprit-ctl initiate lsw was refused"
wait_for "an IKE SA on both sides" eval '[[ -n $(esprit_ike) && -n $(pluto_ike) ]]'
wait_for "esprit to log pluto's Child SA refusal" grep -q "Child SA of IKE SA #[0-9]* failed: TS_UNACCEPTABLE" "$work/ike.log"
grep -q "(initiator)" <(ectl list-sas) || lfail "esprit does not list itself as the initiator"
plog | grep -q "Add SA esp.*Function not implemented" || lfail "pluto's log lacks the expected kernel install failure"
plog | grep -q "responder established IKE SA" || grep -q "Responder: process IKE_AUTH request: responder established IKE SA" "$L/pluto.log" \
  || lfail "pluto does not report the IKE SA as established"
[[ $(stat 'esprit_ike_child_sa_failures_total{reason=ts_unacceptable}') == 1 ]] || lfail "the refused Child SA is not counted"
e1=$(esprit_ike) p1=$(pluto_ike)

# 2. IKE SA rekey started by esprit (CREATE_CHILD_SA, new SPIs and nonces).
ectl rekey ike "$e1" >/dev/null || lfail "esprit-ctl rekey ike $e1 was refused"
wait_for "the IKE SA rekey started by esprit" eval '[[ -n $(esprit_ike) && $(esprit_ike) != "$e1" && -n $(pluto_ike) && $(pluto_ike) != "$p1" ]]'
e2=$(esprit_ike) p2=$(pluto_ike)
[[ $e2 != *" "* && $p2 != *" "* ]] || lfail "more than one IKE SA after the rekey: esprit '$e2', pluto '$p2'"
[[ $(stat 'esprit_ike_rekeys_total{kind=ike}') == 1 ]] || lfail "esprit's IKE SA rekey is not counted"

if [[ $cert == 0 ]]; then
# 3. IKE SA rekey started by pluto.
whack --rekey-ike --name esprit >"$work/whack-rekey.log" 2>&1 || true
wait_for "the IKE SA rekey started by pluto" eval '[[ -n $(esprit_ike) && $(esprit_ike) != "$e2" && -n $(pluto_ike) && $(pluto_ike) != "$p2" ]]'
e3=$(esprit_ike) p3=$(pluto_ike)
[[ $(stat 'esprit_ike_rekeys_total{kind=ike}') == 2 ]] || lfail "the IKE SA rekey pluto started is not counted by esprit"

# 4. Liveness both ways (empty INFORMATIONAL). esprit's DPD fires after 3 s
#    without inbound traffic; pluto's on request (its impair knob).
rx0=$(stat 'esprit_ike_datagrams_total{dir=rx}') tx0=$(stat 'esprit_ike_datagrams_total{dir=tx}')
: >"$work/mark"
sleep 4
rx1=$(stat 'esprit_ike_datagrams_total{dir=rx}') tx1=$(stat 'esprit_ike_datagrams_total{dir=tx}')
[[ $((tx1 - tx0)) -ge 1 && $((rx1 - rx0)) -ge 1 ]] || lfail "no liveness exchange from esprit in 4 s (tx $tx0->$tx1, rx $rx0->$rx1)"
grep -q "received an INFORMATIONAL liveness check request" "$L/pluto.log" \
  || lfail "pluto's log shows no liveness check from esprit"
[[ $(esprit_ike) == "$e3" && $(pluto_ike) == "$p3" ]] || lfail "the IKE SA changed during liveness checks"
rx0=$(stat 'esprit_ike_datagrams_total{dir=rx}') tx0=$(stat 'esprit_ike_datagrams_total{dir=tx}')
whack --impair "initiate-v2-liveness:$p3" >"$work/whack-live.log" 2>&1 || true
wait_for "esprit to answer pluto's liveness check" eval '[[ $(stat "esprit_ike_datagrams_total{dir=rx}") -gt $rx0 && $(stat "esprit_ike_datagrams_total{dir=tx}") -gt $tx0 ]]'
wait_for "pluto to log esprit's liveness answer" grep -q "received an INFORMATIONAL liveness check response" "$L/pluto.log"
[[ $(stat esprit_ike_retransmits_total) == 0 ]] || lfail "retransmissions during the liveness checks: $(ectl --json stats)"

# 5. CREATE_CHILD_SA for a new Child SA, started by pluto on the IKE SA
#    (PFS with X25519): esprit installs it; pluto's install fails, it drops
#    the IKE SA without a Delete and revives the connection at once: a new
#    IKE_SA_INIT + IKE_AUTH with esprit as responder, which ends the same
#    way. esprit's DPD then finds both IKE SAs dead.
timeout 20 ip netns exec $np "$LX/whack" --ctlsocket "$L/run/pluto.ctl" --initiate --name esprit >"$work/whack-child.log" 2>&1 || true
wait_for "esprit to install pluto's new Child SA" grep -q "Child SA #[0-9]* of IKE SA #$e3 installed" "$work/ike.log"
grep -q "sent CREATE_CHILD_SA request for new IPsec SA" "$work/whack-child.log" || lfail "pluto did not start CREATE_CHILD_SA: $(cat "$work/whack-child.log")"
grep -q "NOT sending notification" "$work/whack-child.log" || lfail "pluto did not drop its IKE SA as expected: $(cat "$work/whack-child.log")"
ectl list-sas >"$work/sas.txt"
grep -q "PFS CURVE25519" "$work/sas.txt" || lfail "the new Child SA has no PFS: $(cat "$work/sas.txt")"
# The revival: pluto initiates, esprit responds and installs the Child SA.
wait_for "pluto's revival, esprit as responder" grep -q "lsw up (responder)" "$work/ike.log"
plog | grep -q "initiator established IKE SA; authenticated peer using authby=secret and ID_FQDN '@esprit.test'" \
  || lfail "pluto did not establish the IKE SA as initiator"
wait_for "esprit to install the responder's Child SA" eval 'ectl list-sas >"$work/sas.txt"; grep -q "(responder)" "$work/sas.txt" && [[ $(grep -c INSTALLED "$work/sas.txt") -ge 2 ]]'
# Stop pluto from reviving again.
whack --delete --name esprit >/dev/null 2>&1 || true
# esprit's DPD: 3 s idle, then 4 tries over ~4 s, unanswered.
wait_for_long() { local what=$1; shift; for _ in $(seq 200); do "$@" && return 0; sleep 0.1; done; lfail "timed out: $what"; }
wait_for_long "esprit's DPD to take the orphaned IKE SAs down" eval '[[ -z $(esprit_ike) ]]'
grep -q "IKE SA #$e3 down: Timeout" "$work/ike.log" || lfail "IKE SA #$e3 did not time out"
ectl list-sas >"$work/sas.txt"
grep -q INSTALLED "$work/sas.txt" && lfail "Child SAs left after the IKE SAs timed out: $(cat "$work/sas.txt")"
[[ $(stat esprit_ike_retransmits_total) -ge 3 ]] || lfail "esprit's DPD against the gone peer did not retransmit"
addconn || lfail "pluto did not load the connection again"

fi
if [[ $cert == 1 ]]; then
  # Certificates: pluto verified esprit's ECDSA signature and chain.
  plog | grep -q "responder established IKE SA; authenticated peer 'P-256 ECDSA with SHA2_256' digital signature using peer certificate '@esprit.test' issued by CA 'CN=esprit libreswan CA'" \
    || lfail "pluto does not report esprit's certificate and ECDSA signature as verified"
  ectl terminate "$e2" >/dev/null || lfail "esprit-ctl terminate $e2 failed"
  wait_for "pluto to take esprit's Delete" eval '[[ -z $(pluto_ike) && -z $(esprit_ike) ]]'
  # pluto initiates with its certificate; esprit verifies it (and installs
  # the Child SA, which pluto then cannot).
  timeout 20 ip netns exec $np "$LX/whack" --ctlsocket "$L/run/pluto.ctl" --initiate --name esprit >"$work/whack-init.log" 2>&1 || true
  whack --delete --name esprit >/dev/null 2>&1 || true
  grep -q "initiator established IKE SA; authenticated peer" "$work/whack-init.log" \
    || lfail "pluto did not establish the IKE SA as initiator: $(cat "$work/whack-init.log")"
  wait_for "esprit as responder" grep -q "lsw up (responder)" "$work/ike.log"
  grep -q "'libreswan.test'" "$work/ike.log" || lfail "esprit does not name pluto's certificate identity"
  # (pluto signs its P-256 key with the strongest hash esprit announced.)
  grep -q "digsig:   selected hash algorithm SHA2_512" "$L/pluto.log" || lfail "pluto did not sign with SHA-512 as expected"
  # Every signature and check ran on esprit-ike's rayon pool: per handshake
  # as initiator two jobs (our AUTH, then pluto's), as responder one.
  jobs=$(stat 'esprit_ike_auth_jobs_total{result=done}')
  want=$(( 2 * $(stat 'esprit_ike_handshakes_total{role=initiator}') + $(stat 'esprit_ike_handshakes_total{role=responder}') ))
  [[ $jobs == "$want" && $want -ge 3 ]] || lfail "$jobs IKE_AUTH signature jobs, not $want: $(ectl --json stats)"
  echo "  ECDSA certificates both ways: esprit initiator (IKE SA rekey, delete) and responder; pluto: $(grep -o "authenticated peer '[^']*'" "$work/whack-init.log" | head -1), esprit took pluto's P-256 signature with SHA-512"
  pass
  exit 0
fi

# 6. Deletes: by pluto (whack --deletestate), then by esprit (terminate).
ectl initiate lsw >/dev/null || lfail "second initiate refused"
wait_for "the second IKE SA" eval '[[ -n $(esprit_ike) && -n $(pluto_ike) ]]'
e6=$(esprit_ike)
whack --deletestate "$(pluto_ike)" >/dev/null 2>&1 || true
wait_for "esprit to take pluto's Delete" eval '[[ -z $(esprit_ike) ]]'
grep -q "IKE SA #$e6 down: Deleted" "$work/ike.log" || lfail "esprit does not log the peer's delete"
ectl initiate lsw >/dev/null || lfail "third initiate refused"
wait_for "the third IKE SA" eval '[[ -n $(esprit_ike) && -n $(pluto_ike) ]]'
e7=$(esprit_ike)
ectl terminate "$e7" >/dev/null || lfail "esprit-ctl terminate $e7 failed"
wait_for "pluto to take esprit's Delete" eval '[[ -z $(pluto_ike) && -z $(esprit_ike) ]]'
# (pluto's log file is written through a buffer that can hold the
# deleting-state line until pluto exits: its state table, checked above, is
# what counts.)
[[ $(stat 'esprit_ike_handshakes_total{role=initiator}') == 3 && $(stat 'esprit_ike_handshakes_total{role=responder}') -ge 1 ]] \
  || lfail "handshake counters: $(ectl --json stats)"
ectl --json stats >"$work/stats.json"
grep -q '"sa_table_slots": 0' "$work/stats.json" || lfail "SA table slots left: $(cat "$work/stats.json")"
echo "  esprit initiator (x3) and responder: 2 IKE SA rekeys, liveness both ways, deletes both ways, CREATE_CHILD_SA with PFS from pluto; pluto installs no Child SA here (no ESP in this kernel)"
pass
