#!/usr/bin/env bash
# esprit-dataplane against DPDK's ipsec-secgw on the same harness, in one run:
# bench/secgw's pcaps (in64/in1420, 1024 IPv4/UDP flows), the same vdevs
# (net_pcap infinite_rx in, net_null out), the same CPU, one AES-128-GCM
# tunnel SA, runs alternating. Prints the median per-second Mpps of each,
# the ratio to the best ipsec-secgw mode, then esprit's inbound rate with
# one worker and with two (worker 0 polls and hands off, worker 1 decrypts).
#
# usage: bench/compare.sh [SECONDS_PER_RUN] [ROUNDS] [SIZES]   (defaults 10 3 "64 1420")
# env: CPU (default 1), SECGW_PCAPS; ipsec-secgw is built by bench/secgw/build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
secs=${1:-10} rounds=${2:-3} sizes=${3:-"64 1420"}
cpu=${CPU:-1}
secgw=$here/secgw
[[ $(id -u) -eq 0 ]] || { echo "bench/compare.sh: run as root (DPDK)"; exit 1; }

cargo build --release --locked -p esprit-dataplane -q
bin=$top/target/release/esprit-dataplane
"$secgw/build.sh" >/dev/null
pcaps=$("$secgw/pcaps.sh")
work=$(mktemp -d /tmp/esprit-bench.XXXXXX)
trap 'rm -rf "$work"; rm -f /dev/shm/esprit-bench-$$-*' EXIT

median() { /usr/bin/python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print("%.3f" % statistics.median(v) if v else "NA")'; }

cfg() { # template tag backend pcap workers cpus ealcpu
  # net_pcap has one TX queue per tx_pcap; every worker needs one.
  local txq="" ; for _ in $(seq "$5"); do txq+=",tx_pcap=/dev/null"; done
  sed -e "s|@TXQ@|$txq|g; s|@CPU@|$7|g; s|@EALCPU@|$7|g; s|@CPUS@|$6|g; s|@TAG@|$$-$2|g; s|@WORKERS@|$5|g; s|@BACKEND@|$3|g; s|@PCAP@|$4|g" \
    "$here/configs/$1.yaml.in" >"$work/$2.yaml"
  rm -f "/dev/shm/esprit-bench-$$-$2"
  echo "$work/$2.yaml"
}
rate() { # config -> median Mpps over per-second samples (first 2 dropped)
  "$bin" --config "$1" --stats-ms 1000 --max-secs "$secs" 2>/dev/null \
    | awk '/total/ { for (i = 1; i <= NF; i++) if ($i == "total") print $(i+1) }' | tail -n +3 | median
}

# ESP captures for the inbound runs: the same traffic sealed by esprit.
for size in $sizes; do
  cat >"$work/seal$size.yaml" <<EOT
dataplane:
  eal_args: ["-l", "$cpu", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-bench-$$-seal", "--log-level", "lib.eal:error"]
  ports:
    inside: { device: "net_pcap0,rx_pcap=$pcaps/in$size.pcap" }
    outside: { device: "net_pcap1,rx_pcap=$pcaps/in$size.pcap,tx_pcap=$work/esp$size.pcap" }
  addresses: { outside: [172.16.1.5], inside: [192.168.5.254] }
  neighbours: [ { ip: 172.16.2.5, mac: "02:00:00:00:00:02" } ]
  sa_table: { path: /dev/shm/esprit-bench-$$-seal$size, capacity: 16 }
  static_sas:
    - { spi: 0x1005, direction: out, suite: aes-128-gcm, key: "2b7e151628aed2a6abf7158809cf4f3cdeadbeef",
        src: 172.16.1.5, dst: 172.16.2.5, selectors: ["192.168.105.0/24"] }
metrics: { listen: null }
EOT
  "$bin" --config "$work/seal$size.yaml" --idle-exit-ms 300 >/dev/null 2>&1
done

declare -A EM ER S L I1 I2
for size in $sizes; do
  em=() er=() ss=() ls=() i1=() i2=()
  for r in $(seq "$rounds"); do
    em+=("$(rate "$(cfg outbound-pcap-null mb$size ipsec-mb "$pcaps/in$size.pcap" 1 "$cpu" "$cpu")")")
    ss+=("$({ CPU=$cpu "$secgw/run.sh" "$size" cpu-crypto "$secs" || true; } | awk '{print $4}')")
    er+=("$(rate "$(cfg outbound-pcap-null ring$size ring "$pcaps/in$size.pcap" 1 "$cpu" "$cpu")")")
    ls+=("$({ CPU=$cpu "$secgw/run.sh" "$size" lookaside "$secs" || true; } | awk '{print $4}')")
    i1+=("$(rate "$(cfg inbound-pcap-null in1w$size ipsec-mb "$work/esp$size.pcap" 1 "$cpu" "$cpu")")")
    i2+=("$(rate "$(cfg inbound-pcap-null in2w$size ipsec-mb "$work/esp$size.pcap" 2 "0, 1" 0)")")
  done
  EM[$size]=$(printf '%s\n' "${em[@]}" | median)
  ER[$size]=$(printf '%s\n' "${er[@]}" | median)
  S[$size]=$(printf '%s\n' "${ss[@]}" | median)
  L[$size]=$(printf '%s\n' "${ls[@]}" | median)
  I1[$size]=$(printf '%s\n' "${i1[@]}" | median)
  I2[$size]=$(printf '%s\n' "${i2[@]}" | median)
done
echo
echo "outbound, 1 worker on CPU $cpu, AES-128-GCM tunnel, median Mpps of ${secs}s runs x $rounds alternating rounds"
printf '%-6s %-18s %-14s %-18s %-18s %-8s\n' size esprit_ipsec-mb esprit_ring secgw_cpu-crypto secgw_lookaside ratio
for size in $sizes; do
  best=$(/usr/bin/python3 -c "print(max(${S[$size]/NA/0}, ${L[$size]/NA/0}))")
  ratio=$(/usr/bin/python3 -c "b=$best; print('%.2f' % (max(${EM[$size]/NA/0}, ${ER[$size]/NA/0})/b) if b else 'NA')")
  printf '%-6s %-18s %-14s %-18s %-18s %-8s\n' "$size" "${EM[$size]}" "${ER[$size]}" "${S[$size]}" "${L[$size]}" "${ratio}x"
done
echo "(ratio = best esprit / best ipsec-secgw)"
echo
echo "inbound, esprit only (ipsec-mb, anti-replay off for the replayed capture), median Mpps"
printf '%-6s %-22s %-28s\n' size "1 worker (CPU $cpu)" "2 workers (CPU 0 rx, CPU 1)"
for size in $sizes; do
  printf '%-6s %-22s %-28s\n' "$size" "${I1[$size]}" "${I2[$size]}"
done
