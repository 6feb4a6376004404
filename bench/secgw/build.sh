#!/usr/bin/env bash
# Builds DPDK's IPsec gateway example, ipsec-secgw, from the source Debian's
# dpdk-doc package ships (/usr/share/dpdk/examples), against the system DPDK:
# the reference ESP gateway (librte_ipsec + intel-ipsec-mb) that the
# benchmarks compare esprit with and that scripts/netns/secgw.sh runs
# traffic through. Built outside the repository, in $SECGW_BUILD (default
# /var/tmp/esprit-secgw/ipsec-secgw); rebuilt only when the DPDK version or
# this script changed. Prints the binary's path on its last line.
# Packages (scripts/setup): dpdk-doc libdpdk-dev libbsd-dev pkg-config make.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${SECGW_BUILD:-/var/tmp/esprit-secgw/ipsec-secgw}
src=/usr/share/dpdk/examples
[[ -f $src/ipsec-secgw/ipsec-secgw.c ]] \
  || { echo "bench/secgw/build.sh: no $src/ipsec-secgw (install dpdk-doc: scripts/setup)" >&2; exit 1; }
stamp="dpdk-doc $(dpkg-query -W -f='${Version}' dpdk-doc) libdpdk $(pkg-config --modversion libdpdk) $(sha256sum "$0" | cut -c1-16)"
if [[ -x $out/build/ipsec-secgw && -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" ]]; then
  echo "$out/build/ipsec-secgw"
  exit 0
fi
parent=$(dirname "$out")
mkdir -p "$parent"
rm -rf "$out" "$parent/common"
cp -r "$src/ipsec-secgw" "$out"
# The example's Makefile includes ../common.
cp -r "$src/common" "$parent/common"
# The example asks every port for RX checksum offload and exits when a port
# lacks it; the software devices of the benchmarks and tests (net_pcap,
# net_null, net_af_packet) have none. Ask only for what the port offers.
/usr/bin/python3 - "$out/ipsec-secgw.c" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
anchor = "\tlocal_port_conf.txmode.offloads |= req_tx_offloads;\n"
assert src.count(anchor) == 1, "ipsec-secgw.c changed: the offload line to patch after is not there once"
fix = ("\t/* esprit bench/secgw: software ports have no RX checksum offload */\n"
       "\tlocal_port_conf.rxmode.offloads &= ~(RTE_ETH_RX_OFFLOAD_CHECKSUM &\n"
       "\t\t\t\t\t     ~dev_info.rx_offload_capa);\n")
open(path, "w").write(src.replace(anchor, anchor + fix))
PY
make -s -C "$out" >"$out/make.log" 2>&1 || { tail -20 "$out/make.log" >&2; echo "bench/secgw/build.sh: make failed" >&2; exit 1; }
[[ -x $out/build/ipsec-secgw ]] || { echo "bench/secgw/build.sh: no binary after make" >&2; exit 1; }
echo "$stamp" >"$out/.stamp"
echo "$out/build/ipsec-secgw"
