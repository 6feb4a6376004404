#!/usr/bin/env bash
# Worker CPU time per packet of esprit-dataplane on the compare.sh harness
# (net_pcap infinite_rx -> one worker -> net_null, one AES-128-GCM tunnel SA,
# outbound). The VM has no hardware counters (perf stat: instructions <not
# supported>), and wall-clock Mpps moves with whatever else runs on the
# machine; the worker thread's on-CPU time (/proc/.../schedstat) divided by
# the packets it forwarded does not count time the thread was preempted, so
# it is the figure to judge code changes by (A/B, alternating binaries).
#
# The same figure for DPDK's ipsec-secgw (bench/secgw/run.sh's command line, CPU
# time of its one lcore between its per-second statistics prints) with
# BACKEND secgw-lookaside or secgw-cpu-crypto.
#
# DIR=in measures esprit's inbound instead, on compare.sh's inbound harness
# (the same pcap sealed by esprit into an ESP capture, replayed forever
# into the outside port, inside to net_null; anti-replay off, as a replayed
# capture repeats its sequence numbers): CPU time per packet decrypted.
#
# usage: bench/cpu_per_packet.sh SIZE SECONDS [BACKEND]   (env: CPU, default 1; BIN: the
# binary, for A/B runs against a kept copy; SECGW_PCAPS; DIR=out|in; KEEP_OUT=FILE keeps the
# dataplane's summary, drops included)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
size=$1 secs=$2 backend=${3:-ipsec-mb} cpu=${CPU:-1}
bin=${BIN:-$top/target/release/esprit-dataplane}
pcap=$("$here/secgw/pcaps.sh")/in$size.pcap
[[ -f $pcap ]] || { echo "no $pcap (SIZE is 64 or 1420)"; exit 1; }

if [[ $backend == secgw-* ]]; then
  sbin=$("$here/secgw/build.sh" | tail -1)
  cfg=$here/secgw/sa-lookaside.cfg extra=
  [[ $backend == secgw-cpu-crypto ]] && { cfg=$here/secgw/sa-cpu-crypto.cfg; extra=-l; }
  log=$(mktemp /tmp/esprit-cpp-secgw.XXXXXX)
  # Line-buffered, so each statistics print can be paired with a CPU-time sample.
  stdbuf -oL "$sbin" -l "$cpu" --no-huge -m 1024 --no-pci --file-prefix "secgw-cpp-$$" \
    --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev 'net_null0,no-rx=1' \
    --vdev crypto_aesni_gcm0 -- -p 0x3 -P -u 0x2 --config "(0,0,$cpu),(1,0,$cpu)" \
    -f "$cfg" -t 1 $extra >"$log" 2>&1 &
  pid=$!
  samples=() seen=0 end=$((SECONDS + secs))
  while (( SECONDS < end )); do
    c=$(tr -d '\033' <"$log" | grep -ac 'Total packets sent' || true)
    if (( c > seen )); then
      seen=$c
      ns=$(awk '{print $1}' "/proc/$pid/schedstat")
      tot=$(tr -d '\033' <"$log" | grep -a 'Total packets sent' | tail -1 | awk '{print $4}')
      samples+=("$ns $tot")
    fi
    sleep 0.005
  done
  kill -INT "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$log" "/var/run/dpdk/secgw-cpp-$$"
  printf '%s\n' "${samples[@]}" | /usr/bin/python3 -c '
import sys
s = [tuple(map(int, l.split())) for l in sys.stdin if l.strip()]
if len(s) < 4: sys.exit("ipsec-secgw: too few statistics samples")
a, b = s[2], s[-1]
print("size '"$size $backend"': %d packets, lcore %.1f CPU-ns/packet (%.2f Mpps per CPU-second)" % (b[1] - a[1], (b[0] - a[0]) / (b[1] - a[1]), (b[1] - a[1]) * 1e3 / (b[0] - a[0])))'
  exit 0
fi
work=$(mktemp -d /tmp/esprit-cpp.XXXXXX)
tag=cpp-$$
trap 'rm -rf "$work" /var/run/dpdk/esprit-bench-$tag /var/run/dpdk/secgw-cpp-$$; rm -f /dev/shm/esprit-bench-$tag' EXIT
dir=${DIR:-out}
template=outbound-pcap-null counted='tx outside'
if [[ $dir == in ]]; then
  # The ESP capture: the anchor's traffic sealed by this binary (as compare.sh does).
  cat >"$work/seal.yaml" <<EOT
dataplane:
  eal_args: ["-l", "$cpu", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-bench-$tag-seal", "--log-level", "lib.eal:error"]
  ports:
    inside: { device: "net_pcap0,rx_pcap=$pcap" }
    outside: { device: "net_pcap1,rx_pcap=$pcap,tx_pcap=$work/esp.pcap" }
  addresses: { outside: [172.16.1.5], inside: [192.168.5.254] }
  neighbours: [ { ip: 172.16.2.5, mac: "02:00:00:00:00:02" } ]
  sa_table: { path: /dev/shm/esprit-bench-$tag-seal, capacity: 16 }
  static_sas:
    - { spi: 0x1005, direction: out, suite: aes-128-gcm, key: "2b7e151628aed2a6abf7158809cf4f3cdeadbeef",
        src: 172.16.1.5, dst: 172.16.2.5, selectors: ["192.168.105.0/24"] }
metrics: { listen: null }
EOT
  "$bin" --config "$work/seal.yaml" --idle-exit-ms 300 >/dev/null 2>&1
  rm -rf /dev/shm/esprit-bench-$tag-seal /var/run/dpdk/esprit-bench-$tag-seal
  pcap=$work/esp.pcap template=inbound-pcap-null counted='tx outside [0-9]* inside'
fi
sed -e "s|@TXQ@|,tx_pcap=/dev/null|g; s|@CPU@|$cpu|g; s|@EALCPU@|$cpu|g; s|@CPUS@|$cpu|g; s|@TAG@|$tag|g; s|@WORKERS@|1|g; s|@BACKEND@|$backend|g; s|@PCAP@|$pcap|g" \
  "$here/configs/$template.yaml.in" >"$work/c.yaml"
"$bin" --config "$work/c.yaml" --stats-ms 1000 >"$work/out" 2>"$work/err" &
pid=$!
tid=
for _ in $(seq 600); do
  sleep 0.1
  for t in /proc/$pid/task/*; do [[ $(cat "$t/comm" 2>/dev/null) == esprit-w0 ]] && tid=${t##*/}; done
  [[ -n $tid ]] && break
done
[[ -n $tid ]] || { kill "$pid"; cat "$work/err"; echo "no worker thread"; exit 1; }
sleep "$secs"
ns=$(awk '{print $1}' "/proc/$pid/task/$tid/schedstat")
kill -TERM "$pid"; wait "$pid" || true
[[ -n ${KEEP_OUT:-} ]] && cp "$work/out" "$KEEP_OUT"
pkts=$(grep -o "$counted [0-9]*" "$work/out" | awk '{print $NF}')
/usr/bin/python3 -c "print('size $size $backend $dir: %d packets, worker %.1f CPU-ns/packet (%.2f Mpps per CPU-second)' % ($pkts, $ns/$pkts, $pkts*1e3/$ns))"
