#!/usr/bin/env bash
# Split DNS (RFC 8598) against libreswan 5.2: esprit-ike initiates to a
# libreswan responder in a QEMU guest (Debian's bookworm kernel with ESP,
# the trixie chroot as its root, both from scripts/peers/prepare),
# which hands out an address, a DNS server and `modecfgdomains`:
#
#   ns lsx-a: esprit-ike 192.0.2.1 ── veth ── ns lsx-b: br0 ── tap ── guest 192.0.2.2 (pluto)
#
# Passes when esprit accepts corp.example.test, refuses the public suffix
# "com", lists the domain with its virtual IP, and the guest's kernel holds
# the ESP SAs of the Child SA (ip xfrm state). IKE level on our side (no
# dataplane).
name=ike-libreswan-splitdns
. "$(dirname "$0")/lib.sh"
need_ike
need_interop
Q=$interop/qemu C=$interop/chroots/trixie-root
[[ -f $Q/kern/boot/vmlinuz && -f $Q/initrd.gz && -x $C/opt/libreswan5/usr/libexec/ipsec/pluto ]] \
  || fail "no QEMU guest kernel/initrd or libreswan 5.2 under $interop (scripts/peers/prepare)"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is not installed"

ip netns add lsx-a; netns+=(lsx-a)
ip netns add lsx-b; netns+=(lsx-b)
ip link add lsxva netns lsx-a type veth peer name lsxvb netns lsx-b
ip -n lsx-a link set lo up; ip -n lsx-a link set lsxva up; ip -n lsx-a addr add 192.0.2.1/24 dev lsxva
ip -n lsx-b link set lo up; ip -n lsx-b link add br0 type bridge
ip -n lsx-b link set lsxvb master br0; ip -n lsx-b link set lsxvb up; ip -n lsx-b link set br0 up
ip netns exec lsx-b ip tuntap add dev qtap0 mode tap
ip -n lsx-b link set qtap0 master br0; ip -n lsx-b link set qtap0 up

psk=esprit-lsw-psk-$$
S=$work/scratch; mkdir -p "$S"
cat >"$S/run.sh" <<EOG
set -x
ip link set eth0 up; ip addr add 192.0.2.2/24 dev eth0; ip addr add 203.0.113.1/32 dev lo
mount -t overlay overlay -o lowerdir=/opt/libreswan5/usr/libexec:/usr/libexec /usr/libexec
mkdir -p /tmp/nss /tmp/ipsec.d /run/pluto; certutil -N -d sql:/tmp/nss --empty-password
cat > /tmp/ipsec.conf <<EOC
config setup
	logfile=/scratch/pluto.log
	ipsecdir=/tmp/ipsec.d
conn rw
	keyexchange=ikev2
	authby=secret
	left=192.0.2.2
	leftid=@gw.libreswan
	leftsubnet=203.0.113.0/24
	right=%any
	rightid=@client.esprit
	rightaddresspool=10.77.0.10-10.77.0.20
	modecfgdns=203.0.113.53
	modecfgdomains="corp.example.test, com"
	ike=aes_gcm256-sha2_256-dh31
	esp=aes_gcm256
	leftupdown=/usr/libexec/ipsec/_updown
	auto=add
EOC
cat > /tmp/ipsec.secrets <<EOC
@gw.libreswan @client.esprit : PSK "$psk"
EOC
chmod 600 /tmp/ipsec.secrets
X=/opt/libreswan5/usr/libexec/ipsec
\$X/pluto --config /tmp/ipsec.conf --rundir /run/pluto --nssdir /tmp/nss --secretsfile /tmp/ipsec.secrets --ipsecdir /tmp/ipsec.d
for i in \$(seq 100); do [ -S /run/pluto/pluto.ctl ] && break; sleep 0.2; done
\$X/addconn --config /tmp/ipsec.conf --ctlsocket /run/pluto/pluto.ctl --autoall
touch /scratch/ready
for i in \$(seq 300); do [ -f /scratch/stop ] && break; sleep 0.5; done
\$X/whack --ctlsocket /run/pluto/pluto.ctl --trafficstatus
ip xfrm state > /scratch/xfrm.txt
EOG
ip netns exec lsx-b qemu-system-x86_64 -accel tcg -m 768 -smp 2 -nographic -no-reboot \
  -kernel "$Q/kern/boot/vmlinuz" -initrd "$Q/initrd.gz" -append "console=ttyS0 quiet panic=-1 no_timer_check" \
  -virtfs "local,path=$C,mount_tag=root,security_model=none,readonly=on" \
  -virtfs "local,path=$Q/kern/lib/modules,mount_tag=mods,security_model=none,readonly=on" \
  -virtfs "local,path=$S,mount_tag=scratch,security_model=none" \
  -netdev tap,id=n0,ifname=qtap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=02:00:00:00:02:02 \
  -device virtio-rng-pci >"$work/console.log" 2>&1 &
pids+=($!)
qemu=$!

cat >"$work/ike.yaml" <<EOT
ike:
  listen: [192.0.2.1]
  control_socket: $work/ike.sock
  metrics_listen: null
  sa_table: { path: /dev/shm/esprit-netns-$$-lsw, capacity: 64 }
  orphan_grace_secs: 0
  limits: { retransmit_timeout_ms: 2000 }
  connections:
    lsw:
      remote: 192.0.2.2
      local_id: client.esprit
      remote_id: gw.libreswan
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      request_vip: [v4]
      child:
        esp_proposals: [aes256gcm16]
        remote_ts: [203.0.113.0/24]
EOT
start_ike "$work/ike.yaml" lsx-a
lsw_fail() {
  sed 's/^/  ike| /' "$work/ike.log" | tail -20
  [[ -f $S/pluto.log ]] && grep -v ': | ' "$S/pluto.log" | sed 's/^/  pluto| /' | tail -25
  fail "$@"
}
for _ in $(seq 480); do [[ -f $S/ready ]] && break; kill -0 $qemu 2>/dev/null || break; sleep 0.5; done
[[ -f $S/ready ]] || { tail -20 "$work/console.log"; lsw_fail "the libreswan guest did not come up in 4 minutes"; }

ectl initiate lsw >/dev/null || lsw_fail "esprit-ctl initiate lsw was refused"
for _ in $(seq 150); do ectl list-sas >"$work/sas.txt" 2>&1; grep -q "INSTALLED" "$work/sas.txt" && break; sleep 0.2; done
grep -q "INSTALLED" "$work/sas.txt" || lsw_fail "no Child SA with libreswan: $(cat "$work/sas.txt")"
grep -q "split DNS: corp.example.test$" "$work/sas.txt" || lsw_fail "esprit does not list corp.example.test alone: $(cat "$work/sas.txt")"
grep -q 'split-DNS "com" refused (PublicSuffix)' "$work/ike.log" || lsw_fail "the public suffix com was not refused"
grep -q "\[10.77.0.10\]" "$work/sas.txt" || lsw_fail "no virtual IP from libreswan's pool: $(cat "$work/sas.txt")"
touch "$S/stop"
for _ in $(seq 60); do [[ -s $S/xfrm.txt ]] && break; sleep 0.5; done
grep -q "proto esp" "$S/xfrm.txt" || lsw_fail "the guest kernel holds no ESP SA: $(cat "$S/xfrm.txt" 2>/dev/null)"
# The kernel's two SAs are the ones esprit negotiated (its SPIs).
read -r spi_in spi_out <<<"$(sed -n 's/.*ESP SPIs: \([0-9a-f]*\)_i \([0-9a-f]*\)_o.*/\1 \2/p' "$work/sas.txt" | head -1)"
for spi in "$spi_in" "$spi_out"; do
  grep -q "spi 0x$spi " "$S/xfrm.txt" || lsw_fail "SPI $spi of esprit's Child SA is not in the guest kernel: $(cat "$S/xfrm.txt")"
done
pass
