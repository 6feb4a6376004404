#!/usr/bin/env bash
# libreswan 5.2 (pluto from the Debian trixie chroot of scripts/peers/prepare)
# against esprit-ike: RFC 9242 IKE_INTERMEDIATE and RFC 8784 PPKs, at the
# IKE level. This kernel has no ESP, so pluto's Child SA install fails
# ("netlink response for Add SA ...: Function not implemented") and pluto
# deletes it; the IKE SA, IKE_INTERMEDIATE and the PPK are what is tested
# (esprit's dataplane is not involved).
#
#   ns lsw5-l: pluto 5.2, 10.78.0.2 ── veth ── ns lsw5-e: esprit-ike, 10.78.0.1
#
# What libreswan 5.2 can do here, and so what is tested:
# * No RFC 9370: 5.2 has no ADDKE transforms (they came in a later
#   release), so its IKE_INTERMEDIATE carries no key exchange: with
#   intermediate=yes it runs one empty IKE_INTERMEDIATE exchange (and, for
#   PPKs, offers draft-ietf-ipsecme-ikev2-qr-alt-04's USE_PPK_INT -- now
#   RFC 9867). esprit's connections here have `ppk.exchange: ike_auth`
#   (RFC 8784 only), so it does not answer USE_PPK_INT and this test keeps
#   covering RFC 8784 next to IKE_INTERMEDIATE; RFC 9867 with pluto 5.2 is
#   ike-libreswan5-ppkint.sh. esprit offers x25519 + ke1_ecp256 and falls
#   back to x25519 alone; list-sas must show no additional key exchange.
# * pluto initiating, intermediate=yes, ppk=propose; esprit responding with
#   the PPK mandatory: the empty IKE_INTERMEDIATE enters both AUTH payloads
#   (RFC 9242 IntAuth), then the RFC 8784 PPK in IKE_AUTH (pluto: "PPK AUTH
#   calculated as initiator"; esprit-ctl list-sas: ", PPK").
# * pluto 5.2 with ppk=insist AND intermediate=yes cannot work with an RFC
#   8784 peer: after the IKE_INTERMEDIATE response it demands the qr-alt
#   PPK_IDENTITY in it even though USE_PPK_INT was not negotiated, and logs
#   "N(PPK_IDENTITY) not received and connection insists on PPK. Abort!"
#   (ikev2_ike_intermediate.c). Checked here so a fixed libreswan shows up.
# * esprit initiating with a classic proposal, pluto responding with
#   ppk=insist, intermediate=yes: esprit announces no IKE_INTERMEDIATE
#   (nothing to exchange), the PPK is used (pluto: "PPK AUTH calculated as
#   responder").
# * esprit initiating with ADDKE offered: both announce
#   INTERMEDIATE_EXCHANGE_SUPPORTED, pluto picks the classic proposal, so no
#   IKE_INTERMEDIATE runs, yet pluto 5.2 still puts IntAuth (empty chain |
#   IKE_AUTH_MID) into its AUTH computation (ikev2_auth.c: "if
#   st_v2_ike_intermediate.enabled"); esprit, with no exchange, puts
#   none (RFC 9242 defines IntAuth over the exchanges that ran). pluto:
#   "authentication failed: computed hash does not match hash received from
#   peer" -- checked as a known limitation. (Every pluto connection here
#   has intermediate=yes: pluto picks one by addresses in IKE_SA_INIT.)
# Trying by hand: LSW_INT=no or LSW_PPK=no (pluto's intermediate=/ppk= of
# the pluto-initiated case) must make the test fail.
name=ike-libreswan5
. "$(dirname "$0")/lib.sh"
need_ike
need_interop
root=$interop/chroots/trixie-root
lp=/opt/libreswan5; lx=$lp/usr/libexec/ipsec
[[ -x $root$lx/pluto && -x $root$lx/whack ]] || fail "no libreswan 5.2 at $root$lp (scripts/peers/prepare)"
[[ -x $root/usr/bin/certutil ]] || fail "no certutil in $root"
# pluto's files live inside the chroot, at the path it sees.
l=/tmp/esprit-lsw5-$$
lh=$root$l
mkdir -p "$lh/nss" "$lh/run" "$lh/ipsec.d"
trap 'rm -rf "$lh"; cleanup' EXIT

for n in lsw5-e lsw5-l; do ip netns add $n; netns+=($n); ip -n $n link set lo up; done
ip link add lsw5e0 netns lsw5-e type veth peer name lsw5l0 netns lsw5-l
ip -n lsw5-e addr add 10.78.0.1/24 dev lsw5e0; ip -n lsw5-e link set lsw5e0 up
ip -n lsw5-l addr add 10.78.0.2/24 dev lsw5l0; ip -n lsw5-l link set lsw5l0 up
ip -n lsw5-l addr add 10.62.0.1/32 dev lo

psk=esprit-lsw5-psk-$$
ppk=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
# esprit's IKE proposal: PROP overrides (for trying by hand).
prop=${PROP:-aes256gcm16-prfsha256-x25519-ke1_ecp256}
cat >"$work/ike.yaml" <<EOT
ike:
  listen: [10.78.0.1]
  control_socket: $work/ike.sock
  metrics_listen: null
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
  ppks:
    - { id: pqc-5, secret_hex: "$ppk" }
  connections:
$(for c in "resp esprit.lsw5 lsw5-i $prop" "resp-x esprit.lsw5 lsw5-x $prop" \
         "init esprit-i.lsw5 lsw5-r aes256gcm16-prfsha256-x25519" "init-addke esprit-a.lsw5 lsw5-a $prop"; do
  read -r cn lid rid p <<<"$c"
  cat <<EOC
    $cn:
$([[ $cn == init* ]] && echo "      remote: 10.78.0.2")
      local_id: $lid
      remote_id: $rid
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [$p]
      ppk: { id: pqc-5, required: true, exchange: ike_auth }
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.140.0/24]
        remote_ts: [10.62.0.1/32]
EOC
done)
EOT
start_ike "$work/ike.yaml" lsw5-e

chroot "$root" certutil -N -d "sql:$l/nss" --empty-password </dev/null >/dev/null
# LSW_INT / LSW_PPK override pluto's intermediate= and ppk= (by hand).
lconn() { # name our-id peer-id intermediate ppk
  cat <<EOC
conn $1
	ikev2=insist
	authby=secret
	left=10.78.0.2
	leftid=@$2
	leftsubnet=10.62.0.1/32
	right=10.78.0.1
	rightid=@$3
	rightsubnet=192.168.140.0/24
	ike=${LSW_IKE:-aes_gcm256-sha2_256-dh31}
	esp=aes_gcm256
	intermediate=$4
	ppk=$5
	auto=add
EOC
}
cat >"$lh/ipsec.conf" <<EOC
config setup
	logfile=$l/pluto.log
	plutodebug=${LSW_DEBUG:-base}
	ipsecdir=$l/ipsec.d
	dumpdir=$l/run
$(lconn to-esprit lsw5-i esprit.lsw5 "${LSW_INT:-yes}" "${LSW_PPK:-propose}")
$(lconn insist lsw5-x esprit.lsw5 yes insist)
$(lconn from-esprit lsw5-r esprit-i.lsw5 yes insist)
$(lconn from-addke lsw5-a esprit-a.lsw5 yes insist)
EOC
cat >"$lh/ipsec.secrets" <<EOC
@lsw5-i @esprit.lsw5 : PSK "$psk"
@lsw5-r @esprit-i.lsw5 : PSK "$psk"
@lsw5-x @esprit.lsw5 : PSK "$psk"
@lsw5-a @esprit-a.lsw5 : PSK "$psk"
@lsw5-x : PPKS "pqc-5" 0x$ppk
@lsw5-a : PPKS "pqc-5" 0x$ppk
@lsw5-i : PPKS "pqc-5" 0x$ppk
@lsw5-r : PPKS "pqc-5" 0x$ppk
EOC
chmod 600 "$lh/ipsec.secrets"
ip netns exec lsw5-l unshare -m --propagation private sh -c \
  "mount -t tmpfs tmpfs $root/run && mount --rbind /dev $root/dev && mount -t proc proc $root/proc && mount -t sysfs sysfs $root/sys && mount -t overlay overlay -o lowerdir=$root$lp/usr/libexec:$root/usr/libexec $root/usr/libexec && exec chroot $root $lx/pluto --nofork --config $l/ipsec.conf --rundir $l/run --nssdir $l/nss --secretsfile $l/ipsec.secrets --ipsecdir $l/ipsec.d" \
  >"$lh/pluto.stdout" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -S $lh/run/pluto.ctl ]] && break; sleep 0.1; done
[[ -S $lh/run/pluto.ctl ]] || { cat "$lh/pluto.stdout"; fail "pluto did not start"; }
ip netns exec lsw5-l chroot "$root" "$lx/addconn" --config "$l/ipsec.conf" --ctlsocket "$l/run/pluto.ctl" --autoall >"$work/addconn.log" 2>&1 \
  || { cat "$work/addconn.log"; fail "addconn failed"; }
whack() { ip netns exec lsw5-l chroot "$root" "$lx/whack" --ctlsocket "$l/run/pluto.ctl" "$@"; }
lsw_fail() {
  sed 's/^/  ike| /' "$work/ike.log" | tail -20
  grep -v ": | " "$lh/pluto.log" | sed 's/^/  pluto| /' | tail -40
  [[ -z ${SAVE_LOG:-} ]] || cp "$lh/pluto.log" "$SAVE_LOG"
  fail "$@"
}
version=$(grep -o 'Starting Pluto (Libreswan Version [^ ]*' "$lh/pluto.log" | head -1)
[[ $version == *"Version 5.2"* ]] || lsw_fail "expected libreswan 5.2, pluto says '$version'"

# The pluto log from line $1 on, into $work/case.log.
since() { tail -n +"$(($1 + 1))" "$lh/pluto.log" >"$work/case.log"; }
must_log() { grep -Eq "$1" "$work/case.log" || lsw_fail "$2: pluto did not log /$1/"; }
# esprit-ctl list-sas must show connection $1 established with the PPK and
# IKE_SA_INIT's x25519 alone (libreswan 5.2 has no RFC 9370 ADDKE).
check_list() {
  ectl list-sas >"$work/sas.txt" || lsw_fail "esprit-ctl list-sas failed"
  grep -A6 "^$1: #[0-9]*, ESTABLISHED" "$work/sas.txt" >"$work/sa.txt" || lsw_fail "$1: no established IKE SA in list-sas: $(cat "$work/sas.txt")"
  grep -q "established .*, PPK$" "$work/sa.txt" || lsw_fail "$1: list-sas shows no PPK: $(cat "$work/sa.txt")"
  grep -Eq "^  ENCR_AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE25519$" "$work/sa.txt" \
    || lsw_fail "$1: list-sas shows other key exchanges than x25519 alone: $(cat "$work/sa.txt")"
}

# 1. pluto initiates: IKE_SA_INIT, one empty IKE_INTERMEDIATE, IKE_AUTH with the PPK.
mark=$(wc -l <"$lh/pluto.log")
timeout 20 ip netns exec lsw5-l chroot "$root" "$lx/whack" --ctlsocket "$l/run/pluto.ctl" --name to-esprit --initiate >"$work/whack.log" 2>&1 || true
for _ in $(seq 100); do grep -q "IKE SA #[0-9]* resp up" "$work/ike.log" && break; sleep 0.1; done
since "$mark"
what="libreswan -> esprit"
must_log '"to-esprit" #[0-9]*: sent IKE_INTERMEDIATE request' "$what"
must_log '"to-esprit" #[0-9]*: initiator processed IKE_INTERMEDIATE' "$what"
must_log '"to-esprit" #[0-9]*: PPK AUTH calculated as initiator' "$what"
must_log '"to-esprit" #[0-9]*: initiator established IKE SA' "$what"
grep -Eq "switching to NO_PPK|insists on PPK" "$work/case.log" && lsw_fail "$what: pluto went without the PPK"
grep -q "IKE SA #[0-9]* resp up (responder).* ppk=true" "$work/ike.log" || lsw_fail "$what: esprit did not bring up resp with the PPK"
check_list resp
echo "  $what: IKE_SA_INIT, IKE_INTERMEDIATE (empty: no ADDKE in 5.2), IKE_AUTH with the PPK; pluto: $(grep -Eo 'PPK AUTH calculated as initiator' "$work/case.log" | head -1)"
# (The Child SA fails on pluto's side: no ESP in this kernel.)
grep -q "Function not implemented" "$work/case.log" && echo "  (pluto: Child SA install failed, no kernel ESP, as expected)"
whack --name to-esprit --delete >/dev/null 2>&1 || true

# 2. pluto 5.2 with ppk=insist and intermediate=yes: aborts on its side.
mark=$(wc -l <"$lh/pluto.log")
timeout 20 ip netns exec lsw5-l chroot "$root" "$lx/whack" --ctlsocket "$l/run/pluto.ctl" --name insist --initiate >/dev/null 2>&1 || true
for _ in $(seq 50); do since "$mark"; grep -q "insists on PPK. Abort" "$work/case.log" && break; sleep 0.1; done
whack --name insist --delete >/dev/null 2>&1 || true
since "$mark"
must_log '"insist" #[0-9]*: N\(PPK_IDENTITY\) not received and connection[[:space:]]+insists on PPK. Abort!' "libreswan ppk=insist+intermediate=yes (known 5.2 limitation)"
grep -q "resp-x up" "$work/ike.log" && lsw_fail "esprit brought up resp-x, which pluto 5.2 aborts"
echo "  libreswan ppk=insist + intermediate=yes -> esprit: pluto aborts after IKE_INTERMEDIATE (libreswan 5.2 wants qr-alt PPK_IDENTITY there), as known"

# 3. esprit initiates to pluto (ppk=insist, intermediate=yes) with a classic proposal.
mark=$(wc -l <"$lh/pluto.log")
ectl initiate init >/dev/null || lsw_fail "esprit-ctl initiate init was refused"
for _ in $(seq 100); do grep -q "IKE SA #[0-9]* init up" "$work/ike.log" && break; sleep 0.1; done
since "$mark"
what="esprit -> libreswan"
grep -q "IKE SA #[0-9]* init up (initiator).* ppk=true" "$work/ike.log" || lsw_fail "$what: esprit did not bring up init with the PPK"
must_log '"from-esprit"[^:]*: PPK AUTH calculated as responder' "$what"
must_log '"from-esprit"[^:]*: responder established IKE SA' "$what"
check_list init
echo "  $what: IKE SA up with the PPK; pluto: $(grep -Eo 'PPK AUTH calculated as responder' "$work/case.log" | head -1)"

# 4. esprit with ADDKE offered to pluto with intermediate=yes: both announce
# IKE_INTERMEDIATE, none runs, pluto 5.2 refuses esprit's AUTH.
mark=$(wc -l <"$lh/pluto.log")
ectl initiate init-addke >/dev/null || lsw_fail "esprit-ctl initiate init-addke was refused"
for _ in $(seq 50); do since "$mark"; grep -q "authentication failed" "$work/case.log" && break; sleep 0.1; done
since "$mark"
must_log '"from-addke"[^:]*: authentication failed: computed hash does not match hash received from peer' "esprit ADDKE -> libreswan intermediate=yes (known 5.2 limitation)"
echo "  esprit (ADDKE offered) -> libreswan intermediate=yes: no IKE_INTERMEDIATE to run, pluto refuses the AUTH, as known"

grep -q "$ppk" "$work/ike.log" && fail "esprit-ike logged a PPK"
[[ -z ${SAVE_LOG:-} ]] || cp "$lh/pluto.log" "$SAVE_LOG"
pass
