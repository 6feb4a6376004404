#!/usr/bin/env bash
# End to end against libreswan 5.2 with the Linux kernel's ESP: pluto runs
# in the QEMU guest of scripts/peers/prepare (Debian bookworm's kernel
# 6.1 with ESP, trixie chroot as root, /opt/libreswan5 unpacked there) and
# installs real XFRM SAs; esprit-ike + esprit's dataplane are the host side.
# No NAT, so IKE stays on UDP 500 and ESP travels raw (IP protocol 50).
#
#   guest: pluto 172.16.52.2, protects 10.152.0.1 (lo), kernel ESP (V6=1: see below)
#     │ qtap<pid> (root namespace)
#   [esprit-dataplane af_packet] es5-in ── ns lsk-srv: 192.168.152.2
#     punt: net_tap lsktap<pid> = 172.16.52.1, esprit-ike bound there
#
# PSK, AES-256-GCM, X25519 (and X25519 PFS for the Child SA rekeys).
# Phase 1, pluto initiates: the tunnel comes up on both sides, ping and a
# 4 MB TCP stream from the guest go through the kernel's XFRM and esprit's
# dataplane (both sides' SA counters count them); a Child SA rekey from
# esprit, one from pluto and an IKE SA rekey from pluto each leave traffic
# flowing on the SAs both sides list; pluto's delete clears esprit and its
# SA table. Phase 2, esprit initiates (esprit-ctl): ping again, then
# esprit-ctl terminate clears pluto's states and the kernel's SAs.
# V6=1: the same over IPv6 (outer fd00:52::/64, guest fd00:a152::1, server
# net fd00:b152::/64): IKE and raw ESP over IPv6 to the kernel's XFRM.
v6=${V6:-0}
name=ike-libreswan-kernel
[[ $v6 == 1 ]] && name="ike-libreswan-kernel v6"
. "$(dirname "$0")/lib.sh"
if [[ $v6 == 1 ]]; then
  OG=fd00:52::2 OE=fd00:52::1 OL=64 PG=fd00:a152::1 PGL=128 SN=fd00:b152:: SNL=64 SRV=fd00:b152::2 SGW=fd00:b152::1
  ip_=(ip -6) nodad=nodad ping6=-6 pyfam=AF_INET6
else
  OG=172.16.52.2 OE=172.16.52.1 OL=24 PG=10.152.0.1 PGL=32 SN=192.168.152.0 SNL=24 SRV=192.168.152.2 SGW=192.168.152.1
  ip_=(ip) nodad= ping6= pyfam=AF_INET
fi
q() { [[ $v6 == 1 ]] && echo "\"$1\"" || echo "$1"; }
need_ike
need_interop
Q=$interop/qemu C=$interop/chroots/trixie-root
[[ -x $C/opt/libreswan5/usr/libexec/ipsec/pluto ]] || fail "libreswan 5.2 is not unpacked in $C/opt/libreswan5"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86 is not installed"
psk=esprit-libreswan5-psk-$$

S=$work/scratch; mkdir -p "$S"
cat >"$S/run.sh" <<EOG
ip link set eth0 up
ip addr add $OG/$OL dev eth0 $nodad
ip addr add $PG/$PGL dev lo $nodad
${ip_[*]} route add $SN/$SNL via $OE dev eth0 src $PG
mount -t overlay overlay -o lowerdir=/opt/libreswan5/usr/libexec:/usr/libexec /usr/libexec
mkdir -p /tmp/nss /tmp/ipsec.d /run/pluto; certutil -N -d sql:/tmp/nss --empty-password
cat > /tmp/ipsec.conf <<EOC
config setup
	logfile=/scratch/pluto.log
	ipsecdir=/tmp/ipsec.d
conn esprit
	keyexchange=ikev2
	authby=secret
	left=$OG
	leftid=@libreswan.test
	leftsubnet=$PG/$PGL
	right=$OE
	rightid=@esprit.test
	rightsubnet=$SN/$SNL
	ike=aes_gcm256-sha2_256-dh31
	esp=aes_gcm256
	pfs=yes
	leftupdown=/usr/libexec/ipsec/_updown
	auto=add
EOC
echo '@libreswan.test @esprit.test : PSK "$psk"' > /tmp/ipsec.secrets
chmod 600 /tmp/ipsec.secrets
X=/opt/libreswan5/usr/libexec/ipsec
\$X/pluto --config /tmp/ipsec.conf --rundir /run/pluto --nssdir /tmp/nss --secretsfile /tmp/ipsec.secrets --ipsecdir /tmp/ipsec.d
for i in \$(seq 100); do [ -S /run/pluto/pluto.ctl ] && break; sleep 0.2; done
\$X/addconn --config /tmp/ipsec.conf --ctlsocket /run/pluto/pluto.ctl --autoall
touch /scratch/ready
# Commands from the host, one file each, run in order.
n=1
while [ ! -f /scratch/stop ]; do
  if [ -f /scratch/cmd.\$n ]; then
    sh /scratch/cmd.\$n > /scratch/out.\$n 2>&1; echo \$? > /scratch/rc.\$n.tmp; mv /scratch/rc.\$n.tmp /scratch/rc.\$n
    n=\$((n+1))
  else
    sleep 0.2
  fi
done
EOG

add_host lsk-srv srv0 es5-in $SRV/$SNL $SGW
ip -n lsk-srv link set srv0 mtu 1400
qtap=qtap$$ tap=lsktap$$
# The dataplane keeps its punt TAP across restarts (persist): cleanup removes it.
links+=("$tap")
ip tuntap add dev $qtap mode tap; links+=($qtap)
ip link set $qtap up
ethtool -K $qtap tx off rx off >/dev/null 2>&1 || true
# The root kernel sees the guest's frames on the TAP too and 172.16.52.1 is
# local to it (on the punt TAP): no ARP answers from it there, and strict
# reverse-path filtering drops what it would otherwise deliver a second time.
sysctl -qw "net.ipv4.conf.$qtap.rp_filter=1" "net.ipv4.conf.$qtap.arp_ignore=1"
# (IPv6 has no reverse-path filter: no IPv6 on the TAP at all.)
sysctl -qw "net.ipv6.conf.$qtap.disable_ipv6=1" "net.ipv6.conf.es5-in.disable_ipv6=1"
sysctl -qw "net.ipv4.conf.es5-in.rp_filter=1"

qemu-system-x86_64 -accel tcg -m 768 -smp 1 -nographic -no-reboot \
  -kernel "$Q/kern/boot/vmlinuz" -initrd "$Q/initrd.gz" -append "console=ttyS0 quiet panic=-1 no_timer_check" \
  -virtfs "local,path=$C,mount_tag=root,security_model=none,readonly=on" \
  -virtfs "local,path=$Q/kern/lib/modules,mount_tag=mods,security_model=none,readonly=on" \
  -virtfs "local,path=$S,mount_tag=scratch,security_model=none" \
  -netdev "tap,id=n0,ifname=$qtap,script=no,downscript=no" -device virtio-net-pci,netdev=n0,mac=02:00:00:00:52:02,csum=off,guest_csum=off \
  -device virtio-rng-pci >"$work/console.log" 2>&1 &
pids+=($!)

start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 $qtap)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 es5-in)", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=$tap" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [$(q $OE)], inside: [$(q $SGW)] }
  neighbours:
    - { ip: $(q $OG), mac: "02:00:00:00:52:02" }
    - { ip: $(q $SRV), mac: "$(ns_mac_of lsk-srv srv0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
metrics: { listen: null }
ike:
  listen: [$(q $OE)]
  control_socket: $work/ike.sock
  metrics_listen: null
  orphan_grace_secs: 0
  connections:
    lsw:
      remote: $(q $OG)
      local_id: esprit.test
      remote_id: libreswan.test
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16-x25519]
        local_ts: [$(q $SN/$SNL)]
        remote_ts: [$(q $PG/$PGL)]
EOT
ip link set "$tap" up
ip addr add $OE/$OL dev "$tap" $nodad
start_ike "$work/dp.yaml"
kfail() {
  sed 's/^/  ike| /' "$work/ike.log" | tail -25
  [[ -f $S/pluto.log ]] && sed 's/^/  pluto| /' "$S/pluto.log" | tail -25
  [[ -f $S/run.log ]] && sed 's/^/  guest| /' "$S/run.log" | tail -10
  [[ -z ${KEEP:-} ]] || cp -r "$work" "$KEEP"
  touch "$S/stop"
  fail "$@"
}

T0=$(date +%s)
for _ in $(seq 480); do [[ -f $S/ready ]] && break; kill -0 "${pids[0]}" 2>/dev/null || break; sleep 0.5; done
[[ -f $S/ready ]] || { tail -20 "$work/console.log"; kfail "the guest did not come up (console above)"; }
echo "  (guest up after $(( $(date +%s) - T0 )) s)"
# guest 'shell commands' [timeout]: runs them in the guest, prints their output.
exec 3>&1
guest() {
  # The number lives in a file: callers run in $(...) subshells too.
  local cmdn=$(( $(cat "$S/cmd.n" 2>/dev/null || echo 0) + 1 ))
  echo "$cmdn" >"$S/cmd.n"
  printf '%s\n' "$1" >"$S/cmd.$cmdn.tmp"; mv "$S/cmd.$cmdn.tmp" "$S/cmd.$cmdn"
  local i
  for i in $(seq $((${2:-60} * 5))); do [[ -f $S/rc.$cmdn ]] && break; sleep 0.2; done
  # (The caller may have redirected stdout: say it where the test speaks.)
  [[ -f $S/rc.$cmdn ]] || kfail "guest command timed out: $1" >&3 2>&3
  cat "$S/out.$cmdn"
  return "$(cat "$S/rc.$cmdn")"
}
W=/opt/libreswan5/usr/libexec/ipsec/whack
whack() { guest "$W --ctlsocket /run/pluto/pluto.ctl $*" "${WHACK_TIMEOUT:-60}"; }
# SA lists: esprit's installed Child SAs as "in/out/in_pkts/out_pkts/id", its
# established IKE SAs, the guest kernel's ESP SPIs.
children() { ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(c["spi_in"]+"/"+c["spi_out"]+"/"+str(c.get("in_pkts",0))+"/"+str(c.get("out_pkts",0))+"/"+str(c["child_sa"]) for i in d["ike_sas"] if i["state"]=="Established" for c in i["child_sas"] if c["state"]=="INSTALLED"))'; }
esprit_ike() { ectl --json list-sas | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(i["ike_sa"]) for i in json.load(sys.stdin)["ike_sas"] if i["state"]=="Established"))'; }
kernel_spis() { guest "ip xfrm state" | sed -n 's/.*proto esp spi 0x\([0-9a-f]*\).*/\1/p' | sort | tr '\n' ' '; }
wait_for() { local what=$1; shift; for _ in $(seq 150); do "$@" && return 0; sleep 0.2; done; kfail "timed out: $what"; }
ping_through() {
  guest "ping $ping6 -c ${1:-5} -i 0.3 -W 3 -I $PG $SRV" >"$work/ping.log" 2>&1 || true
  grep -q " 0% packet loss" "$work/ping.log" || { cat "$work/ping.log"; kfail "${2:-ping} from the guest through esprit lost packets"; }
}
# The kernel's SAs are the ones esprit lists (its inbound = the kernel's
# outbound and the other way round).
check_pair() {
  local k e; k=$(kernel_spis)
  for e in $(children); do
    IFS=/ read -r i o _ _ _ <<<"$e"
    [[ " $k " == *" $i "* && " $k " == *" $o "* ]] || kfail "$1: esprit's SAs $i/$o are not the guest kernel's ($k)"
  done
}

# --- phase 1: pluto initiates ------------------------------------------------
whack --initiate --name esprit >"$work/whack-init.log" 2>&1 || { cat "$work/whack-init.log"; kfail "pluto could not bring the tunnel up"; }
grep -q "established Child SA" "$work/whack-init.log" || { cat "$work/whack-init.log"; kfail "pluto reports no Child SA"; }
wait_for "esprit's Child SA" eval '[[ -n $(children) ]]'
ectl list-sas >"$work/sas.txt"
grep -q "(responder)" "$work/sas.txt" && grep -q "ENCR_AES_GCM_16-256" "$work/sas.txt" || kfail "esprit's listing: $(cat "$work/sas.txt")"
guest "ip xfrm state" >"$work/xfrm.txt"
grep -q "rfc4106(gcm(aes))" "$work/xfrm.txt" || kfail "no kernel AES-GCM SA in the guest: $(cat "$work/xfrm.txt")"
grep -q "encap" "$work/xfrm.txt" && kfail "the guest's SAs are UDP-encapsulated, expected raw ESP: $(cat "$work/xfrm.txt")"
check_pair "after IKE_AUTH"
ping_through 5 "ping"
IFS=/ read -r in1 out1 inp1 outp1 child1 <<<"$(children)"
[[ $inp1 -ge 5 && $outp1 -ge 5 ]] || kfail "esprit's SA counters do not show the ping (in $inp1, out $outp1)"
# Bulk: 4 MB over TCP from the guest to the server behind esprit.
ip netns exec lsk-srv /usr/bin/python3 -c '
import socket, sys
s = socket.socket(getattr(socket, sys.argv[2])); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[3], 5201)); s.listen(1); s.settimeout(120)
c, _ = s.accept(); c.settimeout(60); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
open(sys.argv[1], "w").write(str(n))' "$work/received" $pyfam $SRV &
pids+=($!)
sleep 0.3
guest "head -c 4000000 /dev/zero | bash -c 'cat > /dev/tcp/$SRV/5201'" 120 >"$work/tcp.log" 2>&1 || { cat "$work/tcp.log"; kfail "the TCP stream from the guest failed"; }
wait_for "the server to count the stream" test -s "$work/received"
[[ $(cat "$work/received") == 4000000 ]] || kfail "TCP stream: $(cat "$work/received") of 4000000 bytes arrived"
guest "ip -s xfrm state" >"$work/xfrm-s.txt"
# The guest kernel's own counters: its outbound SA (esprit's inbound) carried the stream.
kbytes=$(/usr/bin/python3 -c '
import re, sys
t = open(sys.argv[1]).read()
for sa in re.split(r"(?m)^src ", t)[1:]:
    if re.search(r"spi 0x%s\b" % sys.argv[2], sa):
        print(re.search(r"(\d+)\(bytes\)", sa).group(1))' "$work/xfrm-s.txt" "$in1")
[[ ${kbytes:-0} -ge 4000000 ]] || kfail "the guest kernel's SA $in1 counted ${kbytes:-no} bytes, expected the 4 MB stream: $(cat "$work/xfrm-s.txt")"
IFS=/ read -r _ _ inp1b _ _ <<<"$(children)"
[[ $inp1b -ge 2500 ]] || kfail "esprit's inbound SA counted $inp1b packets for a 4 MB stream"

# Child SA rekey from esprit (CREATE_CHILD_SA with PFS), traffic on the new SAs.
ectl rekey child "$child1" >/dev/null || kfail "esprit-ctl rekey child $child1 was refused"
wait_for "the Child SA rekey from esprit" eval '[[ -n $(children) && $(children) != "$in1/"* ]]'
wait_for "the old Child SA to go" eval '[[ $(children) != *" "* ]]'
IFS=/ read -r in2 out2 _ _ child2 <<<"$(children)"
ping_through 3 "ping after esprit's Child SA rekey"
check_pair "after esprit's Child SA rekey"
grep -q "PFS CURVE25519" <(ectl list-sas) || kfail "the rekeyed Child SA has no PFS"

# Child SA rekey from pluto.
whack --rekey-child --name esprit >"$work/whack-rekey-child.log" 2>&1 || true
wait_for "the Child SA rekey from pluto" eval '[[ -n $(children) && $(children) != "$in2/"* && $(children) != *" "* ]]'
IFS=/ read -r in3 out3 _ _ child3 <<<"$(children)"
ping_through 3 "ping after pluto's Child SA rekey"
check_pair "after pluto's Child SA rekey"

# IKE SA rekey from pluto: the Child SA moves to the new IKE SA unchanged.
ike1=$(esprit_ike)
whack --rekey-ike --name esprit >"$work/whack-rekey-ike.log" 2>&1 || true
wait_for "the IKE SA rekey from pluto" eval '[[ -n $(esprit_ike) && $(esprit_ike) != "$ike1" ]]'
[[ $(children) == "$in3/$out3/"* ]] || kfail "the Child SA did not move to the new IKE SA unchanged: $(children)"
ping_through 3 "ping after pluto's IKE SA rekey"
ectl --json stats >"$work/stats.json"
grep -q '"esprit_ike_rekeys_total{kind=ike}": 1' "$work/stats.json" && grep -q '"esprit_ike_rekeys_total{kind=child}": 2' "$work/stats.json" \
  || kfail "rekeys not counted: $(cat "$work/stats.json")"

# pluto takes the connection down: esprit follows, the table empties.
whack --terminate --name esprit >"$work/whack-down.log" 2>&1 || true
wait_for "esprit to take pluto's Delete" eval '[[ -z $(esprit_ike) ]]'
grep -q "down: Deleted" "$work/ike.log" || kfail "esprit does not log pluto's delete"
ectl --json stats >"$work/stats.json"
grep -q '"sa_table_slots": 0' "$work/stats.json" || kfail "SA table slots left after pluto's delete: $(cat "$work/stats.json")"

# --- phase 2: esprit initiates -----------------------------------------------
ectl initiate lsw >/dev/null || kfail "esprit-ctl initiate lsw was refused"
wait_for "esprit's Child SA as initiator" eval '[[ -n $(children) ]]'
grep -q "(initiator)" <(ectl list-sas) || kfail "esprit is not listed as the initiator"
check_pair "esprit as initiator"
ping_through 5 "ping (esprit initiator)"
ike2=$(esprit_ike)
ectl terminate "$ike2" >/dev/null || kfail "esprit-ctl terminate failed"
wait_for "the guest kernel's SAs to go" eval '[[ -z $(kernel_spis | tr -d " ") ]]'
guest "$W --ctlsocket /run/pluto/pluto.ctl --showstates" >"$work/states.txt" 2>&1 || true
grep -q "ESTABLISHED" "$work/states.txt" && kfail "pluto still has states after esprit's delete: $(cat "$work/states.txt")"
touch "$S/stop"
echo "  pluto 5.2 + kernel XFRM over IPv$([[ $v6 == 1 ]] && echo 6 || echo 4): ping, 4000000 TCP bytes, Child SA rekeys both ways, IKE SA rekey, deletes both ways; esprit responder and initiator, raw ESP"
pass
