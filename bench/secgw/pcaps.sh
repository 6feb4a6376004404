#!/usr/bin/env bash
# Makes the benchmark's plaintext pcaps once (gen_pcaps.py, scapy) in
# $SECGW_PCAPS (default /var/tmp/esprit-secgw/pcap) and prints that folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${SECGW_PCAPS:-/var/tmp/esprit-secgw/pcap}
if [[ ! -f $dir/in64.pcap || ! -f $dir/byp1420.pcap ]]; then
  mkdir -p "$dir"
  /usr/bin/python3 "$here/gen_pcaps.py" "$dir" >/dev/null
fi
echo "$dir"
