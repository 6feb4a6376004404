#!/usr/bin/env bash
# esprit against the Linux kernel's ESP (XFRM): the host kernel here has no
# ESP, so the peer is Debian's bookworm kernel 6.1 booted in QEMU (TCG) with
# the trixie chroot as its root (scripts/peers/prepare makes them once).
# The guest installs static tunnel SAs with `ip xfrm` and pings, then
# streams 4 MB over TCP, to a server namespace behind esprit.
#
#   guest 192.168.5.2 [kernel ESP] 172.16.1.5 ─ qtap ══raw ESP══ [esprit] es-in ─ ns srv 192.168.105.2
# env: SUITE (aes-128-gcm | aes-256-gcm | chacha20-poly1305), ESN (0|1)
name="kernel-esp ${SUITE:-aes-128-gcm} esn=${ESN:-0}"
. "$(dirname "$0")/lib.sh"
suite=${SUITE:-aes-128-gcm} esn=${ESN:-0}
need_interop
Q=$interop/qemu C=$interop/chroots/trixie-root
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86 is not installed"

key_out=2b7e151628aed2a6abf7158809cf4f3cdeadbeef key_in=0102030405060708090a0b0c0d0e0f10a1a2a3a4
case $suite in
  aes-128-gcm) alg="rfc4106(gcm(aes))" ;;
  aes-256-gcm) alg="rfc4106(gcm(aes))" key_out=${key_out:0:32}$key_out key_in=${key_in:0:32}$key_in ;;
  chacha20-poly1305) alg="rfc7539esp(chacha20,poly1305)" key_out=${key_out:0:32}$key_out key_in=${key_in:0:32}$key_in ;;
  *) fail "unknown SUITE $suite" ;;
esac
xflags="" esn_yaml=false
[[ $esn == 1 ]] && xflags="flag esn replay-window 64" esn_yaml=true

S=$work/scratch; mkdir -p "$S"
cat >"$S/run.sh" <<EOG
ip link set eth0 up
ip addr add 172.16.1.5/16 dev eth0
ip addr add 192.168.5.2/32 dev lo
ip xfrm state add src 172.16.1.5 dst 172.16.2.5 proto esp spi 0x1005 reqid 1 mode tunnel $xflags aead '$alg' 0x$key_out 128
ip xfrm state add src 172.16.2.5 dst 172.16.1.5 proto esp spi 0x2005 reqid 1 mode tunnel $xflags aead '$alg' 0x$key_in 128
ip xfrm policy add src 192.168.5.2/32 dst 192.168.105.0/24 dir out tmpl src 172.16.1.5 dst 172.16.2.5 proto esp reqid 1 mode tunnel
ip xfrm policy add src 192.168.105.0/24 dst 192.168.5.2/32 dir in tmpl src 172.16.2.5 dst 172.16.1.5 proto esp reqid 1 mode tunnel
ip route add 192.168.105.0/24 via 172.16.2.5 dev eth0 src 192.168.5.2
for i in \$(seq 60); do [ -f /scratch/go ] && break; sleep 0.5; done
ping -c 5 -i 0.3 -W 3 192.168.105.2 > /scratch/ping.log 2>&1; echo "ping \$?" > /scratch/ping.rc
bash -c 'head -c 4000000 /dev/zero > /dev/tcp/192.168.105.2/5201' > /scratch/tcp.log 2>&1; echo "tcp \$?" > /scratch/tcp.rc
ip -s xfrm state > /scratch/xfrm.log 2>&1
EOG

add_host srv srv0 es-in 192.168.105.2/24 192.168.105.1
ip tuntap add dev qtap$$ mode tap; links+=(qtap$$)
ip link set qtap$$ up
ethtool -K qtap$$ tx off rx off >/dev/null 2>&1 || true

qemu-system-x86_64 -accel tcg -m 768 -smp 1 -nographic -no-reboot \
  -kernel "$Q/kern/boot/vmlinuz" -initrd "$Q/initrd.gz" -append "console=ttyS0 quiet panic=-1 no_timer_check" \
  -virtfs "local,path=$C,mount_tag=root,security_model=none,readonly=on" \
  -virtfs "local,path=$Q/kern/lib/modules,mount_tag=mods,security_model=none,readonly=on" \
  -virtfs "local,path=$S,mount_tag=scratch,security_model=none" \
  -netdev "tap,id=n0,ifname=qtap$$,script=no,downscript=no" -device virtio-net-pci,netdev=n0,mac=02:00:00:00:05:05 \
  -device virtio-rng-pci >"$work/console.log" 2>&1 &
pids+=($!)

start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 qtap$$)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 es-in)", rx_desc: 512, tx_desc: 512 }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [172.16.2.5], inside: [192.168.105.1] }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
  static_sas:
    - { spi: 0x1005, direction: in, suite: $suite, key: "$key_out", esn: $esn_yaml, replay_window: 64,
        src: 172.16.1.5, dst: 172.16.2.5, selectors: ["192.168.5.2/32"], local_selectors: ["192.168.105.0/24"] }
    - { spi: 0x2005, direction: out, suite: $suite, key: "$key_in", esn: $esn_yaml,
        src: 172.16.2.5, dst: 172.16.1.5, selectors: ["192.168.5.2/32"] }
metrics: { listen: null }
EOT
# The bulk receiver: counts what the guest streams.
ip netns exec srv /usr/bin/python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.168.105.2", 5201)); s.listen(1); s.settimeout(240)
c, _ = s.accept(); c.settimeout(60); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
open(sys.argv[1], "w").write(str(n))' "$work/received" &
pids+=($!)
touch "$S/go"
for _ in $(seq 480); do [[ -f $S/xfrm.log ]] && break; sleep 0.5; done
[[ -f $S/xfrm.log ]] || { tail -20 "$work/console.log"; fail "the guest did not finish (console above)"; }
sleep 1
grep -q "ping 0" "$S/ping.rc" 2>/dev/null || { cat "$S/run.log" "$S/ping.log" 2>/dev/null | head -40; fail "ping from the kernel-ESP guest through esprit failed"; }
[[ $(cat "$work/received" 2>/dev/null) == 4000000 ]] || { cat "$S/tcp.log" 2>/dev/null; fail "TCP stream: $(cat "$work/received" 2>/dev/null || echo 0) of 4000000 bytes arrived"; }
echo "  $(grep -c 'bytes from' "$S/ping.log") ping replies, 4000000 TCP bytes through Linux XFRM ($alg) and esprit"
pass
