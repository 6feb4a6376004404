#!/usr/bin/env bash
# ipsec-secgw on the benchmark harness: one worker on CPU $CPU (default 1),
# one outbound AES-128-GCM tunnel SA (sa-*.cfg); port 0 is net_pcap replaying
# inSIZE.pcap forever, port 1 is net_null. Prints
#   ipsec-secgw SIZE MODE MEDIAN_MPPS MIN MAX SAMPLES
# from its per-second "Total packets sent" (the first two seconds dropped).
#
# usage: bench/secgw/run.sh SIZE MODE [SECONDS]
#   SIZE 64 | 1420
#   MODE lookaside (cryptodev crypto_aesni_gcm) | cpu-crypto (librte_ipsec's
#        synchronous CPU crypto) | bypass (no crypto: the harness's cost)
# env: SECGW_PCAPS (default /var/tmp/esprit-secgw/pcap), CPU. Root (DPDK).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 2 ]] || { echo "usage: $0 64|1420 lookaside|cpu-crypto|bypass [SECONDS]" >&2; exit 2; }
size=$1 mode=$2 secs=${3:-12} cpu=${CPU:-1}
bin=$("$here/build.sh" | tail -1)
pcaps=$("$here/pcaps.sh")
cfg=$here/sa-lookaside.cfg pcap=$pcaps/in$size.pcap extra=()
case $mode in
  lookaside) ;;
  cpu-crypto) cfg=$here/sa-cpu-crypto.cfg extra=(-l) ;;
  bypass) pcap=$pcaps/byp$size.pcap ;;
  *) echo "$0: unknown MODE $mode" >&2; exit 2 ;;
esac
[[ -f $pcap ]] || { echo "$0: no $pcap (SIZE is 64 or 1420)" >&2; exit 2; }
log=$(mktemp /tmp/esprit-secgw-run.XXXXXX)
trap 'rm -f "$log"; rm -rf "/var/run/dpdk/secgw-run-$$"' EXIT
timeout -s INT "$secs" "$bin" -l "$cpu" --no-huge -m 1024 --no-pci --file-prefix "secgw-run-$$" \
  --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev 'net_null0,no-rx=1' \
  --vdev crypto_aesni_gcm0 -- -p 0x3 -P -u 0x2 --config "(0,0,$cpu),(1,0,$cpu)" \
  -f "$cfg" -t 1 "${extra[@]}" >"$log" 2>&1 || true
tr -d '\033' <"$log" | grep -a 'Total packets sent' | awk '{print $4}' \
  | /usr/bin/python3 -c '
import statistics, sys
totals = [int(x) for x in sys.stdin.read().split()]
rates = [b - a for a, b in zip(totals, totals[1:])][2:]
what = "ipsec-secgw " + sys.argv[1] + " " + sys.argv[2]
if not rates:
    print(what, "NA")
    sys.exit(1)
print("%s %.3f %.3f %.3f %d" % (what, statistics.median(rates) / 1e6, min(rates) / 1e6, max(rates) / 1e6, len(rates)))
' "$size" "$mode"
