#!/usr/bin/env bash
# Diet-ESP (draft-ietf-ipsecme-diet-esp-07) against plain ESP on the
# dataplane benchmark's harness (cpu_per_packet.sh: net_pcap infinite_rx ->
# one worker -> net_null, CPU time of the worker thread per packet, robust
# to the other load on the machine), for four inner shapes: IPv4/UDP and
# IPv6/UDP with 64-octet and 1400-octet payloads, one tunnel SA with IPv4
# outer addresses, AES-128-GCM.
#
# Per shape it prints:
#   * octets on the wire per packet (the outer IP packet, as sealed by this
#     binary into a capture): ESP with an explicit IV, ESP with an implicit
#     IV (RFC 8750), and Diet-ESP over IIV with the profile of
#     scripts/netns/ike-esprit-pair-diet.sh (SPI and SN low octets, DSCP, ECN
#     and Flow Label/Identification from the outer header, 8-bit alignment,
#     optional trailer; inner selectors one prefix per side);
#   * worker CPU-ns per packet outbound (encapsulate + compress + seal) and
#     inbound (open + decompress + deliver), IIV ESP and Diet-ESP.
# Inbound replays a sealed capture forever with anti-replay off; a replay
# repeats its sequence numbers, which a receiver of SN low bits would read
# as new ones further on, so the inbound Diet-ESP SA sends the full SN
# (esp_sn_lsb 32, 3 octets more on the wire than the outbound profile; the
# per-packet work is the same bit reads).
#
# usage: bench/diet_esp.sh [SECONDS] [BACKEND]   (env: CPU, default 1; BIN; BENCH_BIN)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
secs=${1:-5} backend=${2:-ipsec-mb} cpu=${CPU:-1}
[[ $(id -u) -eq 0 ]] || { echo "bench/diet_esp.sh: run as root (DPDK)"; exit 1; }
if [[ -z ${BIN:-} ]]; then
  (cd "$top" && cargo build --release --locked -p esprit-dataplane -p esprit-bench -q)
fi
bin=${BIN:-$top/target/release/esprit-dataplane}
gen=${BENCH_BIN:-$top/target/release/esprit-bench}
work=$(mktemp -d /tmp/esprit-diet-bench.XXXXXX)
tag=diet-$$
trap 'rm -rf "$work" /var/run/dpdk/esprit-bench-$tag*; rm -f /dev/shm/esprit-bench-$tag*' EXIT
key=2b7e151628aed2a6abf7158809cf4f3cdeadbeef

# sa DIR SPI IIV COMPRESSION LOCAL REMOTE [EXTRA]: one static SA line.
sa() {
  local c=""
  [[ -n $4 ]] && c=", compression: $4"
  echo "    - { spi: $2, direction: $1, suite: aes-128-gcm, iiv: $3, key: \"$key\", src: 172.16.1.5, dst: 172.16.2.5, selectors: [\"$6\"], local_selectors: [\"$5\"]$c${7:-} }"
}
# conf NAME INSIDE_DEVICE OUTSIDE_DEVICE SA_LINE: a config; prints its path.
conf() {
  local n=$1
  cat >"$work/$n.yaml" <<EOT
dataplane:
  eal_args: ["-l", "$cpu", "--no-huge", "-m", "1024", "--no-pci", "--file-prefix", "esprit-bench-$tag-$n", "--log-level", "lib.eal:error"]
  ports:
    inside: { device: "$2", rx_desc: 1024, tx_desc: 1024 }
    outside: { device: "$3", rx_desc: 1024, tx_desc: 1024 }
  workers: { count: 1, cpus: [$cpu], burst_pkts: 32 }
  crypto: { backend: $backend }
  addresses: { outside: [172.16.1.5], inside: [192.168.5.254], inside_gateway: 192.168.105.1 }
  neighbours:
    - { ip: 172.16.2.5, mac: "02:00:00:00:00:02" }
    - { ip: 192.168.105.1, mac: "02:00:00:00:00:03" }
  sa_table: { path: /dev/shm/esprit-bench-$tag-$n, capacity: 16 }
  static_sas:
$4
metrics: { listen: null }
EOT
  echo "$work/$n.yaml"
}
# seal NAME PCAP SA_LINE: the capture sealed once into $work/NAME.pcap;
# prints the mean octets per packet on the wire (outer IP packet).
seal() {
  "$bin" --config "$(conf "$1" "net_pcap0,rx_pcap=$2" "net_pcap1,rx_pcap=$work/none.pcap,tx_pcap=$work/$1.pcap" "$3")" --idle-exit-ms 300 >"$work/$1.log" 2>&1 \
    || { cat "$work/$1.log"; exit 1; }
  /usr/bin/python3 - "$work/$1.pcap" <<'EOP'
import struct, sys
b = open(sys.argv[1], 'rb').read()[24:]
n = tot = 0
while b:
    l = struct.unpack('<I', b[8:12])[0]
    tot += l - 14; n += 1; b = b[16 + l:]
if not n: sys.exit("nothing sealed")
print("%.1f" % (tot / n))
EOP
}
# cpu NAME CONFIG COUNTED: worker CPU-ns per packet over SECONDS.
cpu_ns() {
  "$bin" --config "$2" >"$work/$1.out" 2>"$work/$1.err" &
  local pid=$! tid= ns pkts
  for _ in $(seq 600); do
    sleep 0.1
    for t in /proc/$pid/task/*; do [[ $(cat "$t/comm" 2>/dev/null) == esprit-w0 ]] && tid=${t##*/}; done
    [[ -n $tid ]] && break
  done
  [[ -n $tid ]] || { kill "$pid"; cat "$work/$1.err"; echo "no worker thread"; exit 1; }
  sleep "$secs"
  ns=$(awk '{print $1}' "/proc/$pid/task/$tid/schedstat")
  kill -TERM "$pid"; wait "$pid" || true
  pkts=$(grep -o "$3 [0-9]*" "$work/$1.out" | awk '{print $NF}')
  [[ ${pkts:-0} -gt 0 ]] || { cat "$work/$1.out" "$work/$1.err"; echo "$1: nothing forwarded"; exit 1; }
  /usr/bin/python3 -c "print('%.1f' % ($ns / $pkts))"
}

"$gen" gen-pcap "$work/none.pcap" --packets 0
echo "Diet-ESP vs ESP, AES-128-GCM tunnel, IPv4 outer, backend $backend, 1 worker on CPU $cpu, ${secs}s per CPU figure; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %9s %9s %9s %7s | %9s %9s | %9s %9s\n' shape "ESP+IV" "ESP-IIV" "Diet-ESP" saved "out IIV" "out Diet" "in IIV" "in Diet"
printf '%-14s %9s %9s %9s %7s | %9s %9s | %9s %9s\n' "" "octets" "octets" "octets" "vs IIV" "ns/pkt" "ns/pkt" "ns/pkt" "ns/pkt"
for shape in "IPv4/UDP-64 106 192.168.5.1 192.168.105.1 192.168.5.0/24 192.168.105.0/24 lower" \
             "IPv6/UDP-64 126 2001:db8:5::1 2001:db8:105::1 2001:db8:5::/64 2001:db8:105::/64 not_compressed" \
             "IPv4/UDP-1400 1442 192.168.5.1 192.168.105.1 192.168.5.0/24 192.168.105.0/24 lower" \
             "IPv6/UDP-1400 1462 2001:db8:5::1 2001:db8:105::1 2001:db8:5::/64 2001:db8:105::/64 not_compressed"; do
  set -- $shape
  name=$1 size=$2 src=$3 dst=$4 lnet=$5 rnet=$6 flow=$7
  pcap=$work/in-$size.pcap
  "$gen" gen-pcap "$pcap" --size "$size" --src "$src" --dst "$dst" --packets 1024 --flows 250
  prof="{ dscp_cda: lower, ecn_cda: lower, flow_label_cda: $flow, alignment: 8bit, esp_trailer: optional, esp_spi_lsb: 8, esp_sn_lsb: 8 }"
  prof_in="{ dscp_cda: lower, ecn_cda: lower, flow_label_cda: $flow, alignment: 8bit, esp_trailer: optional, esp_spi_lsb: 8, esp_sn_lsb: 32 }"
  o_iv=$(seal iv "$pcap" "$(sa out 0x1005 false "" "$lnet" "$rnet")")
  o_iiv=$(seal iiv "$pcap" "$(sa out 0x1005 true "" "$lnet" "$rnet")")
  o_diet=$(seal diet "$pcap" "$(sa out 0x1005 true "$prof" "$lnet" "$rnet")")
  # Captures for the inbound runs.
  seal iiv-in "$pcap" "$(sa out 0x1005 true "" "$lnet" "$rnet")" >/dev/null
  seal diet-in "$pcap" "$(sa out 0x1005 true "$prof_in" "$lnet" "$rnet")" >/dev/null
  c_out_iiv=$(cpu_ns oiiv "$(conf oiiv "net_pcap0,rx_pcap=$pcap,infinite_rx=1" "net_null0,no-rx=1" "$(sa out 0x1005 true "" "$lnet" "$rnet")")" "tx outside")
  c_out_diet=$(cpu_ns odiet "$(conf odiet "net_pcap0,rx_pcap=$pcap,infinite_rx=1" "net_null0,no-rx=1" "$(sa out 0x1005 true "$prof" "$lnet" "$rnet")")" "tx outside")
  c_in_iiv=$(cpu_ns iiiv "$(conf iiiv "net_null0,no-rx=1" "net_pcap0,rx_pcap=$work/iiv-in.pcap,infinite_rx=1,tx_pcap=/dev/null" "$(sa in 0x1005 true "" "$rnet" "$lnet" ", replay_window: 0")")" "tx outside [0-9]* inside")
  c_in_diet=$(cpu_ns idiet "$(conf idiet "net_null0,no-rx=1" "net_pcap0,rx_pcap=$work/diet-in.pcap,infinite_rx=1,tx_pcap=/dev/null" "$(sa in 0x1005 true "$prof_in" "$rnet" "$lnet" ", replay_window: 0")")" "tx outside [0-9]* inside")
  saved=$(/usr/bin/python3 -c "print('%.1f' % ($o_iiv - $o_diet))")
  printf '%-14s %9s %9s %9s %7s | %9s %9s | %9s %9s\n' "$name" "$o_iv" "$o_iiv" "$o_diet" "$saved" "$c_out_iiv" "$c_out_diet" "$c_in_iiv" "$c_in_diet"
done
