#!/usr/bin/env bash
# RFC 8784 PPKs with libreswan 4.10 (pluto) and esprit-ike, both roles, at
# the IKE level: this kernel has no ESP, so pluto's
# Child SA cannot be installed on its side (the IKE SA and the PPK are
# what is tested; esprit's dataplane is not involved).
#
#   ns lsp-l: pluto, 10.77.0.2 ── veth ── ns lsp-e: esprit-ike, 10.77.0.1
#
# libreswan is unpacked, not installed (it conflicts with strongSwan's
# packages) by scripts/peers/prepare; LSR names another unpacked root.
#   ppk=insist, esprit mandatory   -> PPK used (pluto establishes the IKE SA
#                                     only with esprit's PPK_IDENTITY under
#                                     insist, and does not log "switching to
#                                     NO_PPK")
#   ppk=propose, esprit without that PPK_ID (optional)
#                                  -> NO_PPK_AUTH, no PPK (pluto: "peer wants
#                                     to continue without PPK - switching to
#                                     NO_PPK")
#   ppk=insist with a different PPK secret -> AUTHENTICATION_FAILED
# and the other way round, esprit initiating to pluto (ppk=insist: "PPK AUTH
# calculated as responder"; ppk=permit without esprit's PPK_ID: "ignored
# received PPK_IDENTITY", so NO_PPK_AUTH).
# pluto revives a connection whose Child SA failed, so each case ends with
# whack --delete.
name=ike-libreswan-ppk
. "$(dirname "$0")/lib.sh"
need_ike
need_interop
lsr=${LSR:-$interop/libreswan-root}
lx=$lsr/usr/libexec/ipsec
[[ -x $lx/pluto && -x $lx/whack ]] || fail "no unpacked libreswan at $lsr (scripts/peers/prepare)"
command -v certutil >/dev/null || fail "certutil missing (libnss3-tools)"

for n in lsp-e lsp-l; do ip netns add $n; netns+=($n); ip -n $n link set lo up; done
ip link add lspe0 netns lsp-e type veth peer name lspl0 netns lsp-l
ip -n lsp-e addr add 10.77.0.1/24 dev lspe0; ip -n lsp-e link set lspe0 up
ip -n lsp-l addr add 10.77.0.2/24 dev lspl0; ip -n lsp-l link set lspl0 up
ip -n lsp-l addr add 10.61.0.1/32 dev lo

psk=esprit-lsw-psk-$$
ppk=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
other=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
cat >"$work/ike.yaml" <<EOT
ike:
  listen: [10.77.0.1]
  control_socket: $work/ike.sock
  metrics_listen: null
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
  ppks:
    - { id: pqc-1, secret_hex: "$ppk" }
    - { id: pqc-esprit-only, secret_hex: "$other" }
  connections:
$(for c in "must esprit.ppk lsw-must.ppk { id: pqc-1, required: true }" "opt esprit.ppk lsw-opt.ppk { id: pqc-esprit-only }" \
         "wrong esprit.ppk lsw-wrong.ppk { id: pqc-1, required: true }" \
         "to-must esprit-i.ppk lsw-r.ppk { id: pqc-1, required: true }" "to-opt esprit-o.ppk lsw-r2.ppk { id: pqc-esprit-only }"; do
  read -r cn lid rid p <<<"$c"
  cat <<EOC
    $cn:
$([[ $cn == to-* ]] && echo "      remote: 10.77.0.2")
      local_id: $lid
      remote_id: $rid
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      ppk: $p
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.139.0/24]
        remote_ts: [10.61.0.1/32]
EOC
done)
EOT
start_ike "$work/ike.yaml" lsp-e

l=$work/lsw
mkdir -p "$l/nss" "$l/run" "$l/ipsec.d"
certutil -N -d "sql:$l/nss" --empty-password </dev/null >/dev/null
lconn() { # name id ppk-mode [peer id]
  cat <<EOC
conn $1
	ikev2=insist
	authby=secret
	left=10.77.0.2
	leftid=@$2
	leftsubnet=10.61.0.1/32
	right=10.77.0.1
	rightid=@${4:-esprit.ppk}
	rightsubnet=192.168.139.0/24
	ike=aes_gcm256-sha2_256-dh31
	esp=aes_gcm256
	ppk=$3
	auto=add
EOC
}
cat >"$l/ipsec.conf" <<EOC
config setup
	logfile=$l/pluto.log
	plutodebug=base
	ipsecdir=$l/ipsec.d
	dumpdir=$l/run
$(lconn must lsw-must.ppk insist)
$(lconn opt lsw-opt.ppk propose)
$(lconn wrong lsw-wrong.ppk insist)
$(lconn from-must lsw-r.ppk insist esprit-i.ppk)
$(lconn from-opt lsw-r2.ppk permit esprit-o.ppk)
EOC
cat >"$l/ipsec.secrets" <<EOC
@lsw-must.ppk @esprit.ppk : PSK "$psk"
@lsw-opt.ppk @esprit.ppk : PSK "$psk"
@lsw-wrong.ppk @esprit.ppk : PSK "$psk"
@lsw-must.ppk : PPKS "pqc-1" 0x$ppk
@lsw-opt.ppk : PPKS "pqc-1" 0x$ppk
@lsw-wrong.ppk : PPKS "pqc-1" 0x$other
@lsw-r.ppk @esprit-i.ppk : PSK "$psk"
@lsw-r2.ppk @esprit-o.ppk : PSK "$psk"
@lsw-r.ppk : PPKS "pqc-1" 0x$ppk
@lsw-r2.ppk : PPKS "pqc-1" 0x$ppk
EOC
chmod 600 "$l/ipsec.secrets"
ip netns exec lsp-l unshare -m --propagation private sh -c \
  "mount -t tmpfs tmpfs /run && mount -t overlay overlay -o lowerdir=$lsr/usr/libexec:/usr/libexec /usr/libexec && exec $lx/pluto --nofork --config $l/ipsec.conf --rundir $l/run --nssdir $l/nss --secretsfile $l/ipsec.secrets --ipsecdir $l/ipsec.d" \
  >"$l/pluto.stdout" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [[ -S $l/run/pluto.ctl ]] && break; sleep 0.1; done
[[ -S $l/run/pluto.ctl ]] || { cat "$l/pluto.stdout"; fail "pluto did not start"; }
ip netns exec lsp-l "$lx/addconn" --config "$l/ipsec.conf" --ctlsocket "$l/run/pluto.ctl" --autoall >"$work/addconn.log" 2>&1 \
  || { cat "$work/addconn.log"; fail "addconn failed"; }
whack() { ip netns exec lsp-l "$lx/whack" --ctlsocket "$l/run/pluto.ctl" "$@"; }
lsw_fail() {
  sed 's/^/  ike| /' "$work/ike.log" | tail -20
  grep -v ": | " "$l/pluto.log" | sed 's/^/  pluto| /' | tail -30
  [[ -z ${SAVE_LOG:-} ]] || cp "$l/pluto.log" "$SAVE_LOG"
  fail "$@"
}

# One case: $1 libreswan conn, $2 esprit connection, $3 PPK expected
# (true/false), $4 regex pluto must log, $5 one it must not.
case_up() {
  local c=$1 conn=$2 expect=$3 proof=$4 forbid=$5 mark
  mark=$(wc -l <"$l/pluto.log")
  timeout 20 ip netns exec lsp-l "$lx/whack" --ctlsocket "$l/run/pluto.ctl" --name "$c" --initiate >"$work/whack-$c.log" 2>&1 || true
  for _ in $(seq 100); do grep -q "IKE SA #[0-9]* $conn up" "$work/ike.log" && break; sleep 0.1; done
  grep -q "IKE SA #[0-9]* $conn up (responder).* ppk=$expect" "$work/ike.log" \
    || { sed 's/^/  whack| /' "$work/whack-$c.log" | tail -10; lsw_fail "$c: esprit did not bring up $conn with ppk=$expect"; }
  tail -n +"$((mark + 1))" "$l/pluto.log" >"$work/case.log"
  grep -Eq "$proof" "$work/case.log" || lsw_fail "$c: pluto did not log /$proof/"
  [[ -n $forbid ]] && grep -Eq "$forbid" "$work/case.log" && lsw_fail "$c: pluto logged /$forbid/"
  grep -q "\"$c\" #[0-9]*: initiator established IKE SA" "$work/case.log" || lsw_fail "$c: pluto did not establish the IKE SA"
  echo "  libreswan $c -> esprit $conn: IKE SA up, PPK=$expect; pluto: $(grep -Eo "$proof" "$work/case.log" | head -1)"
  whack --name "$c" --delete >/dev/null 2>&1 || true
}
case_up must must true "\"must\" #[0-9]*: PPK AUTH calculated as initiator" "switching to NO_PPK|failed to receive PPK confirmation"
case_up opt opt false "\"opt\" #[0-9]*: peer wants to continue without PPK - switching to NO_PPK" ""
grep -q "opt up (responder).* ppk=true" "$work/ike.log" && lsw_fail "esprit used a PPK it does not have"

mark=$(wc -l <"$l/pluto.log")
timeout 20 ip netns exec lsp-l "$lx/whack" --ctlsocket "$l/run/pluto.ctl" --name wrong --initiate >"$work/whack-wrong.log" 2>&1 || true
for _ in $(seq 100); do
  tail -n +"$((mark + 1))" "$l/pluto.log" >"$work/case.log"
  grep -q "rejected by peer: AUTHENTICATION_FAILED" "$work/case.log" && break; sleep 0.1
done
tail -n +"$((mark + 1))" "$l/pluto.log" >"$work/case.log"
whack --name wrong --delete >/dev/null 2>&1 || true
grep -q '"wrong" #[0-9]*: IKE SA authentication request rejected by peer: AUTHENTICATION_FAILED' "$work/case.log" \
  || lsw_fail "wrong PPK: pluto was not told AUTHENTICATION_FAILED"
grep -q "wrong up" "$work/ike.log" && lsw_fail "wrong PPK: esprit brought the IKE SA up"
echo "  libreswan with a different PPK secret -> esprit: refused; pluto: $(grep -o "IKE SA authentication request rejected by peer: AUTHENTICATION_FAILED" "$work/case.log" | head -1)"

# esprit initiating, pluto responding. ppk=insist: pluto must use the PPK.
# ppk=permit, and esprit names a PPK_ID pluto does not have: NO_PPK_AUTH.
case_i() { # $1 esprit connection, $2 PPK expected, $3 regex pluto must log
  local conn=$1 expect=$2 proof=$3 mark
  mark=$(wc -l <"$l/pluto.log")
  ectl initiate "$conn" >/dev/null || lsw_fail "esprit-ctl initiate $conn was refused"
  for _ in $(seq 100); do grep -q "IKE SA #[0-9]* $conn up" "$work/ike.log" && break; sleep 0.1; done
  grep -q "IKE SA #[0-9]* $conn up (initiator).* ppk=$expect" "$work/ike.log" || lsw_fail "$conn: esprit did not bring up $conn with ppk=$expect"
  tail -n +"$((mark + 1))" "$l/pluto.log" >"$work/case.log"
  grep -Eq "$proof" "$work/case.log" || lsw_fail "$conn: pluto did not log /$proof/"
  grep -q "responder established IKE SA" "$work/case.log" || lsw_fail "$conn: pluto did not establish the IKE SA"
  echo "  esprit $conn -> libreswan: IKE SA up, PPK=$expect; pluto: $(grep -Eo "$proof" "$work/case.log" | head -1)"
}
case_i to-must true '"from-must"[^:]*: PPK AUTH calculated as responder'
# (pluto then takes the initiator's NO_PPK_AUTH: esprit's AUTH was made
# with the PPK-mixed SK_pi.)
case_i to-opt false '"from-opt"[^:]*: ignored received PPK_IDENTITY - connection does not require PPK or PPKID not found'
grep -q "$ppk" "$work/ike.log" && fail "esprit-ike logged a PPK"
# SAVE_LOG=FILE keeps pluto's log for a look afterwards.
[[ -z ${SAVE_LOG:-} ]] || cp "$l/pluto.log" "$SAVE_LOG"
pass
