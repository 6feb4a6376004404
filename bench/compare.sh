#!/usr/bin/env bash
# esprit-dataplane against DPDK's ipsec-secgw on the same harness, in one run:
# same pcaps (the anchor's in64/in1420), same vdevs (net_pcap infinite_rx in,
# net_null out), same CPU, one AES-128-GCM tunnel SA, outbound, alternating
# runs. Prints the median per-second Mpps of each and the ratio.
#
# usage: bench/compare.sh [SECONDS_PER_RUN] [ROUNDS] [SIZES]   (defaults 10 3 "64 1420")
# env: CPU (default 1), BACKEND (default auto), ANCHOR (default ../shared/anchors/ipsec-secgw)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
secs=${1:-10} rounds=${2:-3} sizes=${3:-"64 1420"}
cpu=${CPU:-1} backend=${BACKEND:-auto}
anchor=${ANCHOR:-$top/../shared/anchors/ipsec-secgw}
[[ $(id -u) -eq 0 ]] || { echo "bench/compare.sh: run as root (DPDK)"; exit 1; }
[[ -x $anchor/run.sh ]] || { echo "bench/compare.sh: no anchor at $anchor"; exit 1; }

cargo build --release --locked -p esprit-dataplane -q
bin=$top/target/release/esprit-dataplane
pcaps=${SECGW_PCAPS:-/var/tmp/esprit-anchors/pcap}
# The anchor's script builds ipsec-secgw and its pcaps on first use.
"$anchor/build.sh" >/dev/null
if [[ ! -f $pcaps/in64.pcap ]]; then
  mkdir -p "$pcaps" && /usr/bin/python3 "$anchor/gen_pcap.py" "$pcaps" >/dev/null
fi

median() { /usr/bin/python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print("%.3f" % statistics.median(v) if v else "NA")'; }

run_esprit() { # size -> median Mpps over per-second samples (first 2 dropped)
  local size=$1 tag=$$-$1 cfg
  cfg=$(mktemp /tmp/esprit-bench.XXXXXX.yaml)
  sed -e "s|@CPU@|$cpu|g; s|@CPUS@|$cpu|g; s|@TAG@|$tag|g; s|@WORKERS@|1|g; s|@BACKEND@|$backend|g; s|@PCAP@|$pcaps/in$size.pcap|g" \
    "$here/configs/outbound-pcap-null.yaml.in" >"$cfg"
  "$bin" --config "$cfg" --stats-ms 1000 --max-secs "$secs" 2>/dev/null \
    | awk '/total/ { for (i = 1; i <= NF; i++) if ($i == "total") print $(i+1) }' | tail -n +3 | median
  rm -f "$cfg" "/dev/shm/esprit-bench-$tag"
}

declare -A E S L
for size in $sizes; do
  es=() ss=() ls=()
  for r in $(seq "$rounds"); do
    es+=("$(run_esprit "$size")")
    ss+=("$("$anchor/run.sh" "$size" cpu-crypto "$secs" | awk '{print $4}')")
    ls+=("$("$anchor/run.sh" "$size" lookaside "$secs" | awk '{print $4}')")
  done
  E[$size]=$(printf '%s\n' "${es[@]}" | median)
  S[$size]=$(printf '%s\n' "${ss[@]}" | median)
  L[$size]=$(printf '%s\n' "${ls[@]}" | median)
done
printf '\n%-6s %-14s %-22s %-22s %-8s\n' size esprit_Mpps secgw_cpu-crypto_Mpps secgw_lookaside_Mpps ratio
for size in $sizes; do
  best=$(/usr/bin/python3 -c "print(max(${S[$size]/NA/0}, ${L[$size]/NA/0}))")
  ratio=$(/usr/bin/python3 -c "b=$best; print('%.2f' % (${E[$size]/NA/0}/b) if b else 'NA')")
  printf '%-6s %-14s %-22s %-22s %-8s\n' "$size" "${E[$size]}" "${S[$size]}" "${L[$size]}" "${ratio}x"
done
echo "(1 worker on CPU $cpu, outbound, AES-128-GCM tunnel, ${secs}s x $rounds alternating rounds; ratio = esprit / best ipsec-secgw mode)"
