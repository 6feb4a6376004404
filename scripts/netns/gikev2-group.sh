#!/usr/bin/env bash
# G-IKEv2 (RFC 9838): one esprit GCKS and three esprit GMs, each GM with its
# own esprit-dataplane in its own namespace, all on one bridge (a WAN that
# routes the site prefixes, as a GETVPN core does):
#
#   ns gk-site1 10.70.1.2 ── [gk-gm1: dataplane + esprit-ike 10.77.0.11] ─┐
#   ns gk-site2 10.70.2.2 ── [gk-gm2: dataplane + esprit-ike 10.77.0.12] ─┼─ bridge ── ns gk-ks: GCKS 10.77.0.10
#   ns gk-site3 10.70.3.2 ── [gk-gm3: dataplane + esprit-ike 10.77.0.13] ─┘      └──── ns gk-rt: router 10.77.0.1
#
# Each GM registers (GSA_AUTH) and installs the group's one TEK (mesh
# 10.70.0.0/16 <-> 10.70.0.0/16, AES-256-GCM, tunnel mode with address
# preservation, RFC 5374) into its dataplane. Passes when:
# * ping crosses between every pair of sites, through the ONE group SA: one
#   SPI on the wire (tshark), outer addresses = the inner ones, the IVs'
#   top 16 bits the senders' distinct Sender-IDs (RFC 6054);
# * a GSA_REKEY (multicast to 239.77.0.1:848, signed with GCAUTH Ed25519)
#   while a ping runs loses no ping, and the traffic moves to the new SPI;
# * a forged GSA_REKEY (the Rekey SA's SPI, garbage inside) is rejected and
#   counted (esprit_ike_group_rekeys_total{direction="received",...});
# * a GM that misses rekeys (its multicast dropped by iptables during an
#   exclusion's KEK and TEK rekeys) sees the next rekey on the GSA_NEXT_SPI
#   Rekey SA, registers again and its traffic resumes;
# * the excluded GM (group exclude) can no longer decrypt: pings between
#   its site and the others fail after the rekey, and it is refused when it
#   tries to register again.
# Debug builds log TEKs only with ESPRIT_IKE_LOG_TEKS=1 (not set here).
name=gikev2-group
. "$(dirname "$0")/lib.sh"
need_ike
command -v tshark >/dev/null || fail "tshark is not installed"

br=gkbr$$
ip link add "$br" type bridge; links+=("$br")
# Unknown multicast is flooded (no IGMP snooping state to wait for).
ip link set "$br" type bridge mcast_snooping 0
ip link set "$br" up
# on_bridge NS IF ADDR: a veth with one end on the bridge, the other in NS.
on_bridge() {
  local ns=$1 ifn=$2 addr=${3:-} peer="b$2"
  ip link add "$peer" type veth peer name "$ifn"; links+=("$peer")
  ip link set "$peer" master "$br"; ip link set "$peer" up
  ethtool -K "$peer" tx off rx off >/dev/null 2>&1 || true
  ip link set "$ifn" netns "$ns"
  ip -n "$ns" link set lo up; ip -n "$ns" link set "$ifn" up
  ip netns exec "$ns" ethtool -K "$ifn" tx off rx off >/dev/null 2>&1 || true
  [[ -z $addr ]] || ip -n "$ns" addr add "$addr" dev "$ifn"
}
ip netns add gk-rt; netns+=(gk-rt)
on_bridge gk-rt rt0 10.77.0.1/24
ip netns exec gk-rt sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.rt0.send_redirects=0 \
  net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.rt0.rp_filter=0
ip netns add gk-ks; netns+=(gk-ks)
on_bridge gk-ks ks0 10.77.0.10/24
openssl genpkey -algorithm ed25519 -out "$work/gcauth.key" 2>/dev/null || fail "openssl cannot make an Ed25519 key"
psk=gikev2-psk-$$

cat >"$work/ks.yaml" <<EOT
ike:
  listen: [10.77.0.10]
  control_socket: $work/ks.sock
  metrics_listen: 127.0.0.1:0
  sa_table: { path: /dev/shm/esprit-netns-$$-ks, capacity: 64 }
  groups:
    - name: mesh
      id: mesh-1
      members:
        - { id: gm1.esprit, role: sender }
        - { id: gm2.esprit, role: sender }
        - { id: gm3.esprit, role: sender }
      policies:
        - { src: 10.70.0.0/16, dst: 10.70.0.0/16, esp: aes256gcm16, lifetime_secs: 600 }
      rekey:
        delivery: multicast
        kek: aes256gcm16-kw256
        signature_key: $work/gcauth.key
        destination: 239.77.0.1:848
        source: 10.77.0.10:848
        margin_secs: 60
        retransmits: 1
        retransmit_interval_ms: 500
      sender_id_bits: 16
      activation_delay_secs: 1
      deactivation_delay_secs: 3
  connections:
    members:
      local_id: gcks.esprit
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519-kw256]
      child: { esp_proposals: [aes256gcm16] }
      groups: [{ id: mesh-1 }]
EOT
start_ike "$work/ks.yaml" gk-ks "$work/ks-ike.log"
ks_metrics=$ike_metrics

# gm N: site namespace, GM namespace with its dataplane and esprit-ike.
gm() {
  local n=$1 out=10.77.0.1$1 site=10.70.$1
  ip netns add "gk-gm$n"; netns+=("gk-gm$n")
  on_bridge "gk-gm$n" "gmo$n"
  add_host "gk-site$n" s0 "gmi$n$$" "$site.2/24" "$site.1"
  ip link set "gmi$n$$" netns "gk-gm$n"; ip -n "gk-gm$n" link set "gmi$n$$" up
  ip netns exec "gk-gm$n" ethtool -K "gmi$n$$" tx off rx off >/dev/null 2>&1 || true
  cat >"$work/gm$n.yaml" <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-gk$n-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 "gmo$n")", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 "gmi$n$$")", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=gkt$n$$" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [$out], inside: [$site.1], outside_gateway: 10.77.0.1 }
  neighbours:
    - { ip: 10.77.0.1, mac: "$(ip netns exec gk-rt cat /sys/class/net/rt0/address)" }
    - { ip: $site.2, mac: "$(ns_mac_of "gk-site$n" s0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$-gm$n, capacity: 64 }
metrics: { listen: null }
ike:
  listen: [$out]
  control_socket: $work/gm$n.sock
  metrics_listen: 127.0.0.1:0
  orphan_grace_secs: 0
  connections:
    gcks:
      remote: 10.77.0.10
      local_id: gm$n.esprit
      remote_id: gcks.esprit
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519-kw256]
      child: { esp_proposals: [aes256gcm16] }
      groups: [{ id: mesh-1, sender_ids: 1 }]
EOT
  local attempt
  for attempt in 1 2 3; do
    ip netns exec "gk-gm$n" "$bin" --config "$work/gm$n.yaml" >"$work/gm$n-dp.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do
      grep -qs "worker(s), crypto" "$work/gm$n-dp.log" && break
      kill -0 "${pids[-1]}" 2>/dev/null || break
      sleep 0.1
    done
    grep -qs "worker(s), crypto" "$work/gm$n-dp.log" && break
    kill -0 "${pids[-1]}" 2>/dev/null && { tail -20 "$work/gm$n-dp.log"; fail "dataplane gm$n did not start"; }
    wait "${pids[-1]}" || true; unset 'pids[-1]'
    grep -q PACKET_FANOUT "$work/gm$n-dp.log" && [[ $attempt -lt 3 ]] && continue
    tail -20 "$work/gm$n-dp.log"; fail "dataplane gm$n exited before its workers started"
  done
  ip -n "gk-gm$n" link set "gkt$n$$" up
  ip -n "gk-gm$n" addr add "$out/24" dev "gkt$n$$"
  ip netns exec "gk-gm$n" sysctl -qw "net.ipv4.conf.all.rp_filter=0" "net.ipv4.conf.gkt$n$$.rp_filter=0"
  ip -n gk-rt route add "$site.0/24" via "$out"
  start_ike "$work/gm$n.yaml" "gk-gm$n" "$work/gm$n-ike.log"
  eval "gm${n}_metrics=$ike_metrics"
}
gk_fail() {
  for f in ks-ike gm1-ike gm2-ike gm3-ike; do [[ -f $work/$f.log ]] && sed "s/^/  $f| /" "$work/$f.log" | tail -14; done
  for n in 1 2 3; do [[ -f $work/gm$n-dp.log ]] && sed "s/^/  dp$n| /" "$work/gm$n-dp.log" | tail -6; done
  fail "$@"
}
for n in 1 2 3; do gm $n; done
kctl() { "$ctl" --socket "$work/ks.sock" "$@"; }
gctl() { local n=$1; shift; "$ctl" --socket "$work/gm$n.sock" "$@"; }
# poll SECONDS CMD...: until CMD succeeds (0.2 s steps).
poll() { local s=$1; shift; for _ in $(seq $((s * 5))); do "$@" && return 0; sleep 0.2; done; return 1; }
registered() { gctl "$1" --json list-groups 2>/dev/null | grep -q '"registered": true'; }
tek_of() { gctl "$1" --json list-groups | python3 -c 'import json,sys; d=json.load(sys.stdin)["joined"]; print(" ".join(t["spi"] for g in d for t in g["sas"] if t["outbound"]))'; }
sends() { [[ -n $(tek_of "$1") ]]; }

for n in 1 2 3; do gctl $n initiate gcks >/dev/null || gk_fail "gm$n: initiate refused"; done
for n in 1 2 3; do poll 20 registered $n || gk_fail "gm$n did not register"; done
for n in 1 2 3; do poll 10 sends $n || gk_fail "gm$n has no outbound TEK"; done
kctl list-groups >"$work/groups.txt"
grep -q "3 member(s)" "$work/groups.txt" || gk_fail "the GCKS does not list 3 members: $(cat "$work/groups.txt")"
spi=$(tek_of 1)
for n in 2 3; do [[ $(tek_of $n) == "$spi" ]] || gk_fail "gm$n sends on $(tek_of $n), gm1 on $spi: not one group SA"; done

ping_ok() { ip netns exec "gk-site$1" ping -c 1 -W 1 "10.70.$2.2" >/dev/null 2>&1; }
# The path needs the neighbours resolved once.
for a in 1 2 3; do for b in 1 2 3; do [[ $a == "$b" ]] && continue; poll 10 ping_ok $a $b || gk_fail "no ping from site $a to site $b"; done; done

# On the wire (the router's port sees every ESP packet, in and out): one
# SPI, outer = inner addresses, three distinct SIDs in the IVs' top bits.
timeout 20 tshark -i "brt0" -f esp -F pcap -a packets:48 -w "$work/esp.pcap" >/dev/null 2>&1 &
dumper=$!
# tshark writes the file's header once it captures.
poll 10 test -s "$work/esp.pcap" || gk_fail "tshark did not start capturing"
for a in 1 2 3; do for b in 1 2 3; do [[ $a == "$b" ]] && continue
  ip netns exec "gk-site$a" ping -c 2 -i 0.2 -W 1 "10.70.$b.2" >/dev/null 2>&1 || gk_fail "ping $a -> $b lost packets"; done; done
wait $dumper || true
tshark -r "$work/esp.pcap" -Y esp -T fields -e esp.spi 2>/dev/null | sort -u >"$work/spis.txt"
[[ $(wc -l <"$work/spis.txt") == 1 && $(( $(cat "$work/spis.txt") )) == $(( 0x$spi )) ]] || gk_fail "tshark shows SPIs $(tr '\n' ' ' <"$work/spis.txt"), not the one group SA $spi"
python3 - "$work/esp.pcap" "$spi" <<'PY' || gk_fail "the wire does not show preserved addresses and distinct SIDs"
import struct, sys, ipaddress
b = open(sys.argv[1], "rb").read()
assert struct.unpack("<I", b[:4])[0] == 0xa1b2c3d4, "not a pcap"
off, sids, n = 24, {}, 0
while off + 16 <= len(b):
    incl = struct.unpack("<IIII", b[off:off + 16])[2]
    f = b[off + 16:off + 16 + incl]
    off += 16 + incl
    if f[12:14] != b"\x08\x00" or f[23] != 50:
        continue
    ip = f[14:]
    hl = (ip[0] & 15) * 4
    src, dst = ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])
    spi, iv = ip[hl:hl + 4].hex(), ip[hl + 8:hl + 16]
    assert int(spi, 16) == int(sys.argv[2], 16), spi
    # Address preservation: the outer addresses are the sites' hosts.
    assert src in ipaddress.ip_network("10.70.0.0/16") and dst in ipaddress.ip_network("10.70.0.0/16"), (src, dst)
    assert not str(src).startswith("10.77") and not str(dst).startswith("10.77"), (src, dst)
    sids.setdefault(str(src), set()).add(int.from_bytes(iv[:2], "big"))
    n += 1
assert len(sids) == 3 and all(len(v) == 1 for v in sids.values()), f"SIDs per sender {sids}"
assert len({next(iter(v)) for v in sids.values()}) == 3, f"SIDs not distinct {sids}"
print("  %d ESP packets, one SPI %s, outer = inner addresses, SID per sender %s" % (n, sys.argv[2], {k: next(iter(v)) for k, v in sorted(sids.items())}))
PY

# A rekey under traffic loses no ping; traffic moves to the new TEK.
out_pkts() { gctl 1 --json list-groups | python3 -c 'import json,sys; print(sum(t["out_pkts"] for g in json.load(sys.stdin)["joined"] for t in g["sas"] if t["outbound"]))'; }
sent_before=$(out_pkts)
ip netns exec gk-site1 ping -c 40 -i 0.1 -W 1 10.70.2.2 >"$work/ping-rekey.log" 2>&1 &
pinger=$!
# The rekey comes once the ping's packets flow through the TEK.
flowing() { [[ $(out_pkts) -ge $((sent_before + 3)) ]]; }
poll 10 flowing || gk_fail "the ping before the rekey does not go out on the TEK"
kctl group rekey mesh >/dev/null || gk_fail "group rekey refused"
new_spi() { local s; s=$(tek_of 1); [[ -n $s && $s != "$spi" ]]; }
poll 10 new_spi || gk_fail "gm1 did not move to a new TEK after the rekey"
wait $pinger || true
grep -q " 0% packet loss" "$work/ping-rekey.log" || gk_fail "pings lost during the rekey: $(tail -2 "$work/ping-rekey.log")"
spi=$(tek_of 1)
echo "  rekey under ping: 40/40 answered, new SPI $spi"

# A forged GSA_REKEY on the real Rekey SA: rejected and counted.
kek=$(kctl --json list-groups | python3 -c 'import json,sys; print(json.load(sys.stdin)["served"][0]["kek_spi"])')
ip netns exec gk-ks python3 - "$kek" <<'PY'
import socket, struct, sys, os
spi = bytes.fromhex(sys.argv[1])
# IKE header: SPIs, Next Payload SK (46), version 2.0, GSA_REKEY (41), flags 0, MsgID 1000
body = os.urandom(64)
inner = struct.pack("!BBH", 0, 0, 4 + len(body)) + body
hdr = spi + struct.pack("!BBBBII", 46, 0x20, 41, 0, 1000, 28 + len(inner))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.77.0.10"))
s.bind(("10.77.0.10", 0))
s.sendto(hdr + inner, ("239.77.0.1", 848))
PY
metrics_of() { ip netns exec "$1" curl -s "http://$2/metrics"; }
rejected() { metrics_of gk-gm2 "$gm2_metrics" | grep 'esprit_ike_group_rekeys_total{direction="received"' | grep -v accepted | awk '{s+=$2} END {exit !(s>=1)}'; }
poll 5 rejected || gk_fail "gm2 did not count the forged GSA_REKEY as rejected: $(metrics_of gk-gm2 "$gm2_metrics" | grep group_rekeys)"
echo "  forged GSA_REKEY rejected: $(metrics_of gk-gm2 "$gm2_metrics" | grep 'esprit_ike_group_rekeys_total{direction="received"' | grep -v accepted | tr '\n' ' ')"
ping_ok 1 2 || gk_fail "traffic broke after the forged GSA_REKEY"

# gm2 misses the exclusion of gm3 (a KEK rekey, then TEKs under the new KEK).
ip netns exec gk-gm2 iptables -I INPUT -d 239.77.0.1 -j DROP
kctl group exclude mesh gm3.esprit >/dev/null || gk_fail "group exclude refused"
# The exclusion's GSA_REKEYs: the KEK rekey and the TEKs under the new KEK,
# each sent twice (retransmits: 1, 0.5 s apart); gm2 drops all four.
dropped() { ip netns exec gk-gm2 iptables -L INPUT -v -x -n | awk '$3 == "DROP" && $NF == "239.77.0.1" {exit !($1 >= 4)}'; }
poll 10 dropped || gk_fail "gm2 did not see (and drop) the exclusion's four GSA_REKEY datagrams: $(ip netns exec gk-gm2 iptables -L INPUT -v -x -n | grep DROP)"
ip netns exec gk-gm2 iptables -D INPUT -d 239.77.0.1 -j DROP
regs_before=$(gctl 2 --json list-groups | python3 -c 'import json,sys; print(json.load(sys.stdin)["joined"][0]["registrations"])')
kctl group rekey mesh >/dev/null || gk_fail "group rekey refused"
reregistered() { [[ $(gctl 2 --json list-groups | python3 -c 'import json,sys; print(json.load(sys.stdin)["joined"][0]["registrations"])') -gt $regs_before ]]; }
poll 15 reregistered || gk_fail "gm2 did not register again after missing a rekey"
poll 15 ping_ok 1 2 || gk_fail "traffic between sites 1 and 2 did not resume after gm2 registered again"
poll 10 ping_ok 2 1 || gk_fail "traffic from site 2 to site 1 did not resume"
echo "  gm2 missed the exclusion rekeys, registered again, traffic resumed"

# gm3 is out: no traffic to or from its site, and it is refused on return.
ip netns exec gk-site1 ping -c 3 -i 0.3 -W 1 10.70.3.2 >/dev/null 2>&1 && gk_fail "site 1 still reaches site 3 after gm3's exclusion"
ip netns exec gk-site3 ping -c 3 -i 0.3 -W 1 10.70.1.2 >/dev/null 2>&1 && gk_fail "site 3 still reaches site 1 after gm3's exclusion"
refused() { metrics_of gk-ks "$ks_metrics" | grep -q 'esprit_ike_group_registrations_total{result="authorization_failed"}'; }
poll 10 refused || gk_fail "the GCKS did not refuse gm3's new registration"
kctl list-groups | grep -q "2 member(s)" || gk_fail "the GCKS does not list 2 members: $(kctl list-groups)"
ping_ok 2 1 || gk_fail "sites 1 and 2 lost each other after the exclusion"
echo "  gm3 excluded: no traffic with site 3, re-registration refused"
pass
