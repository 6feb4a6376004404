#!/usr/bin/env bash
# EAP through RADIUS (RFC 7296 §2.16, RFC 3579): a strongSwan 5.9.8 road
# warrior authenticates with EAP-MSCHAPv2 to esprit, which passes the EAP
# conversation to FreeRADIUS 3.2 (Debian's) and makes its AUTH with the MSK
# from the MS-MPPE keys of the Access-Accept; esprit's dataplane carries
# the traffic.
#
#   ns eap-rw: charon 172.16.19.2 ── [esprit-dataplane] ── ns eap-srv: 192.168.119.2
#   esprit-ike (root ns, punt TAP 172.16.19.1) ── veth ── ns eap-aaa:
#       10.19.0.2 FreeRADIUS (auth 1812, acct 1813), 10.19.0.3 nobody
#
# esprit's RADIUS servers are [10.19.0.3:1812, 10.19.0.2:1812]: the first
# is dead (ICMP port unreachable), so the first Access-Request fails over
# to the second after timeout_ms x (retries + 1) = 1.5 s (more than
# FreeRADIUS's 1 s reject_delay, so a slow Access-Reject is not taken for a
# dead server), and later ones go there directly. Passes when: the tunnel comes up with a virtual IP; strongSwan
# logs EAP-MSCHAPv2 succeeded and the MSK-based AUTH verified; FreeRADIUS
# logged the Access-Accept for alice; ping crosses esprit's dataplane (its
# SA counters count it); esprit counts one failover and the EAP outcomes;
# a second client identity with a wrong password is refused (strongSwan
# sees EAP_FAILURE/AUTHENTICATION_FAILED) and counted as an auth failure;
# then a third identity, carol, authenticates with EAP-TLS (a client
# certificate of a throwaway CA that FreeRADIUS trusts; FreeRADIUS shows the
# gateway's certificate) on a connection with eap_only: esprit leaves its
# AUTH out (RFC 5998, strongSwan sends EAP_ONLY_AUTHENTICATION and allows it
# for the mutual EAP-TLS) and carol's tunnel carries ping too; no RADIUS
# secret or password appears in esprit's logs. Accounting (RFC 2866):
# FreeRADIUS's detail file shows alice's Start with Framed-IP-Address
# 10.99.19.1, an Interim-Update whose packet and octet counts equal
# esprit's SA counters (taken after the traffic stopped, interval 2 s), and
# a Stop with Acct-Terminate-Cause User-Request and the same counts.
name=eap-radius
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan
command -v freeradius >/dev/null || fail "FreeRADIUS is not installed (scripts/setup installs freeradius)"
grep -q eap-mschapv2 <(ls /usr/lib/ipsec/plugins/) || fail "strongSwan's eap-mschapv2 plugin is missing (libcharon-extauth-plugins)"

add_host eap-rw rw0 ea-out 172.16.19.2/24
add_host eap-srv srv0 ea-in 192.168.119.2/24 192.168.119.1
add_host eap-aaa aaa0 ea-aaa 10.19.0.2/24
ip -n eap-aaa addr add 10.19.0.3/24 dev aaa0
ip addr add 10.19.0.1/24 dev ea-aaa
ip -n eap-srv link set srv0 mtu 1400
for l in ea-out ea-in; do sysctl -qw "net.ipv4.conf.$l.rp_filter=1"; done
tap=eaptap$$
links+=("$tap")

# FreeRADIUS: alice with the right password, bob whose client will send a
# wrong one.
cat >"$work/users" <<'EOT'
alice	Cleartext-Password := "alice-pw-9f3c1e"
bob	Cleartext-Password := "bob-pw-77a01d"
EOT
radius_secret=radius-secret-$$-k2
# One throwaway CA: the gateway's IKE certificate (also FreeRADIUS's TLS
# server certificate, so strongSwan's EAP-TLS finds the AAA identity it
# expects, gw.esprit) and carol's client certificate.
make_pki "$work/pki" ecdsa "esprit eap CA" esprit gw carol
mkdir -p "$work/tls"
cp "$work/pki/ca.pem" "$work/tls/ca.pem"; cp "$work/pki/gw.pem" "$work/tls/server.pem"; cp "$work/pki/gw.key" "$work/tls/server.key"
"$(dirname "$0")/freeradius-conf.sh" "$work/raddb" 10.19.0.2 1812 18120 10.19.0.1 "$radius_secret" "$work/users" "$work/tls" \
  || fail "could not write the FreeRADIUS configuration"
ip netns exec eap-aaa freeradius -X -d "$work/raddb" >"$work/radius.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "Ready to process requests" "$work/radius.log" && break; sleep 0.1; done
grep -q "Ready to process requests" "$work/radius.log" || { tail -20 "$work/radius.log"; fail "FreeRADIUS did not start"; }
printf '%s\n' "$radius_secret" >"$work/radius.secret"

start_dataplane <<EOT
dataplane:
  eal_args: ["-l", "1", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "esprit-netns-$$", "--log-level", "lib.eal:error"]
  ports:
    outside: { device: "$(af_packet 0 ea-out)", rx_desc: 512, tx_desc: 512 }
    inside: { device: "$(af_packet 1 ea-in)", rx_desc: 512, tx_desc: 512 }
    punt: { device: "net_tap0,iface=$tap" }
  workers: { count: 1, cpus: [1] }
  addresses: { outside: [172.16.19.1], inside: [192.168.119.1] }
  neighbours:
    - { ip: 172.16.19.2, mac: "$(ns_mac_of eap-rw rw0)" }
    - { ip: 192.168.119.2, mac: "$(ns_mac_of eap-srv srv0)" }
  sa_table: { path: /dev/shm/esprit-netns-$$, capacity: 64 }
metrics: { listen: "127.0.0.1:0" }
ike:
  listen: [172.16.19.1]
  control_socket: $work/ike.sock
  metrics_listen: "127.0.0.1:0"
  limits: { retransmit_timeout_ms: 1000, retransmit_tries: 3 }
  radius:
    servers:
      - { address: "10.19.0.3:1812", secret_file: $work/radius.secret }
      - { address: "10.19.0.2:1812", secret_file: $work/radius.secret }
    timeout_ms: 500
    retries: 2
    nas_identifier: esprit-test
    accounting: { interim_interval_secs: 2 }
  pools:
    rw: { v4: 10.99.19.0/24, dns: [192.168.119.53] }
  connections:
    # Chosen by identity, in name order: carol's first.
    eaptls:
      local_id: gw.esprit
      remote_id: carol.esprit
      local_auth: { cert: $work/pki/gw.pem, key: $work/pki/gw.key }
      remote_auth: { eap: radius, eap_only: true }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.119.0/24]
    rw:
      local_id: gw.esprit
      local_auth: { cert: $work/pki/gw.pem, key: $work/pki/gw.key }
      remote_auth: { eap: radius }
      proposals: [aes256gcm16-prfsha256-x25519]
      pool: rw
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.119.0/24]
EOT
ip link set "$tap" up
ip addr add 172.16.19.1/24 dev "$tap"
# A bad RADIUS configuration exits 2 naming the field path.
yaml=$(cat "$work/dp.yaml"); printf '%s\n' "${yaml/radius.secret/missing.secret}" >"$work/bad.yaml"
rc=0; "$ike" --config "$work/bad.yaml" --check >"$work/bad.log" 2>&1 || rc=$?
[[ $rc == 2 ]] && grep -q "ike.radius.servers\[0\].secret_file" "$work/bad.log" \
  || fail "a missing RADIUS secret file did not exit 2 naming ike.radius.servers[0].secret_file (rc $rc: $(cat "$work/bad.log"))"
start_ike "$work/dp.yaml"
peer_logs=("swanctl-load:$work/sw-load.log" "charon:$work/sw/charon.log" "radius:$work/radius.log")

mkdir -p "$work/x509ca" "$work/x509" "$work/pkcs8"
cp "$work/pki/ca.pem" "$work/x509ca/"; cp "$work/pki/carol.pem" "$work/x509/"; cp "$work/pki/carol.key" "$work/pkcs8/"
sw_remote="auth = pubkey"
cat >"$work/swanctl.conf" <<EOT
connections {
  alice {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    vips = 0.0.0.0
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = eap-mschapv2
            id = alice
            eap_id = alice }
    remote { $sw_remote
             id = gw.esprit }
    children { net { remote_ts = 192.168.119.0/24
                     esp_proposals = aes256gcm16 } }
  }
  bob {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    vips = 0.0.0.0
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = eap-mschapv2
            id = bob
            eap_id = bob }
    remote { $sw_remote
             id = gw.esprit }
    children { bobnet { remote_ts = 192.168.119.0/24
                        esp_proposals = aes256gcm16 } }
  }
  carol {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    vips = 0.0.0.0
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = eap-tls
            id = carol.esprit
            certs = carol.pem }
    remote { auth = eap-tls
             id = gw.esprit }
    children { carolnet { remote_ts = 192.168.119.0/24
                          esp_proposals = aes256gcm16 } }
  }
}
secrets {
  eap-alice { id = alice
              secret = "alice-pw-9f3c1e" }
  eap-bob { id = bob
            secret = "not-bobs-password" }
}
EOT
start_strongswan eap-rw
sed -i 's/^\( *\)ike = 2$/\1ike = 2\n\1cfg = 2/' "$work/sw/strongswan.conf"

"$peer" swanctl eap-rw "$work/sw" --initiate --child net --timeout 30 >"$work/initiate.log" 2>&1 \
  || { sed 's/^/  swanctl| /' "$work/initiate.log" | tail -15; ike_fail "strongSwan (alice, EAP-MSCHAPv2) could not bring the tunnel up"; }
"$peer" swanctl eap-rw "$work/sw" --list-sas >"$work/sw-sas.log" 2>&1
grep -q "ESTABLISHED" "$work/sw-sas.log" || ike_fail "strongSwan lists no established IKE SA"
grep -q "INSTALLED" "$work/sw-sas.log" || ike_fail "strongSwan lists no installed Child SA"
grep -q "10.99.19.1" "$work/sw-sas.log" || ike_fail "alice did not get 10.99.19.1 from esprit's pool: $(cat "$work/sw-sas.log")"
grep -q "EAP method EAP_MSCHAPV2 succeeded, MSK established" "$work/sw/charon.log" \
  || ike_fail "strongSwan did not finish EAP-MSCHAPv2 with an MSK"
grep -q "authentication of 'gw.esprit' with EAP successful" "$work/sw/charon.log" \
  || ike_fail "strongSwan did not verify esprit's MSK-based AUTH"
grep -q "authentication of 'gw.esprit' with ECDSA.* successful" "$work/sw/charon.log" \
  || ike_fail "strongSwan did not verify esprit's certificate signature"
grep -q "Sent Access-Accept" "$work/radius.log" || ike_fail "FreeRADIUS sent no Access-Accept"
grep -q 'User-Name = "alice"' "$work/radius.log" || ike_fail "FreeRADIUS did not see User-Name alice"
grep -q 'NAS-Identifier = "esprit-test"' "$work/radius.log" || ike_fail "FreeRADIUS did not see our NAS-Identifier"
grep -q "EAP identity 'alice' authenticated" "$work/ike.log" || ike_fail "esprit-ike did not log alice's EAP identity"
ectl list-sas >"$work/sas.txt" || ike_fail "esprit-ctl list-sas failed"
grep -q "remote EAP identity 'alice'" "$work/sas.txt" || ike_fail "esprit-ctl list-sas does not show alice's EAP identity: $(cat "$work/sas.txt")"

ip netns exec eap-rw ping -c 5 -i 0.2 -W 2 192.168.119.2 >"$work/ping.log" 2>&1 \
  || { cat "$work/ping.log"; ike_fail "no ping from alice's virtual IP to the server through esprit"; }
ectl --json list-sas >"$work/sas.json" || ike_fail "esprit-ctl list-sas failed"
/usr/bin/python3 - "$work/sas.json" <<'PY' || ike_fail "esprit's SA counters do not show the ping: $(cat "$work/sas.json")"
import json, sys
d = json.load(open(sys.argv[1]))
kids = [c for i in d["ike_sas"] for c in i["child_sas"] if c["state"] == "INSTALLED"]
assert kids and kids[0]["in_pkts"] >= 5 and kids[0]["out_pkts"] >= 5, kids
assert kids[0]["ts_remote"] == ["10.99.19.1/32"], kids
PY

# bob's client has the wrong password: FreeRADIUS rejects, esprit sends
# EAP Failure and AUTHENTICATION_FAILED, the IKE SA is gone and counted.
if "$peer" swanctl eap-rw "$work/sw" --initiate --child bobnet --timeout 20 >"$work/initiate-bob.log" 2>&1; then
  ike_fail "bob came up with a wrong password"
fi
grep -q "Sent Access-Reject" "$work/radius.log" || ike_fail "FreeRADIUS sent no Access-Reject for bob"
grep -Eq "received EAP_FAILURE|received AUTHENTICATION_FAILED" "$work/sw/charon.log" \
  || ike_fail "strongSwan did not see the EAP failure"
ectl --json stats >"$work/stats.json" || ike_fail "esprit-ctl stats failed"
/usr/bin/python3 - "$work/stats.json" <<'PY' || ike_fail "esprit's counters are wrong: $(cat "$work/stats.json")"
import json, sys
c = json.load(open(sys.argv[1]))["counters"]
assert c.get("esprit_ike_eap_total{result=accept}") == 1, "one accept"
assert c.get("esprit_ike_eap_total{result=reject}") == 1, "one reject"
assert c.get("esprit_ike_eap_total{result=challenge}", 0) >= 4, "challenges"
assert c.get("esprit_ike_handshake_failures_total{reason=auth_failed}") == 1, "bob counted as an auth failure"
assert c.get("esprit_ike_radius_total{event=failovers}") == 1, "one failover from the dead server"
assert c.get("esprit_ike_radius_total{event=retransmits}", 0) >= 1, "a retransmit to the dead server"
assert c.get("esprit_ike_radius_total{event=timeouts}", 0) == 0, "no request went unanswered"
PY
grep -q "RADIUS: failed over; requests now go to 10.19.0.2:1812" "$work/ike.log" || ike_fail "esprit-ike did not log the failover"
# alice's tunnel is still up and carrying traffic.
ip netns exec eap-rw ping -c 2 -i 0.2 -W 2 192.168.119.2 >"$work/ping2.log" 2>&1 \
  || { cat "$work/ping2.log"; ike_fail "alice's tunnel stopped after bob's failure"; }

# Accounting: wait for an Interim-Update after the traffic (interval 2 s),
# compare it with esprit's counters, then alice's Stop.
detail() { cat "$work"/raddb/radacct/*/detail-* 2>/dev/null; }
ectl --json list-sas >"$work/sas-acct.json"
sleep 2.5
detail >"$work/detail-1.txt"
"$peer" swanctl eap-rw "$work/sw" --terminate --ike alice --timeout 10 >"$work/terminate.log" 2>&1 \
  || { cat "$work/terminate.log"; ike_fail "swanctl --terminate alice failed"; }
for _ in $(seq 40); do detail | grep -q "Acct-Status-Type = Stop" && break; sleep 0.1; done
detail >"$work/detail.txt"
/usr/bin/python3 - "$work/detail-1.txt" "$work/detail.txt" "$work/sas-acct.json" <<'PY' || { cat "$work/detail.txt"; ike_fail "FreeRADIUS's accounting detail does not match esprit's counters"; }
import json, sys
def records(path):
    out, cur = [], None
    for line in open(path):
        if not line.strip():
            cur = None
            continue
        if not line.startswith("\t"):
            cur = {}
            out.append(cur)
            continue
        k, _, v = line.strip().partition(" = ")
        cur[k] = v.strip('"')
    return [r for r in out if r.get("User-Name") == "alice"]
sas = json.load(open(sys.argv[3]))
kid = [c for i in sas["ike_sas"] for c in i["child_sas"] if c["state"] == "INSTALLED"][0]
before = records(sys.argv[1])
start = [r for r in before if r["Acct-Status-Type"] == "Start"]
assert len(start) == 1 and start[0]["Framed-IP-Address"] == "10.99.19.1", start
assert start[0]["NAS-Identifier"] == "esprit-test", start
interims = [r for r in before if r["Acct-Status-Type"] == "Interim-Update"]
assert interims, "no Interim-Update"
last = interims[-1]
want = {"Acct-Input-Packets": kid["in_pkts"], "Acct-Output-Packets": kid["out_pkts"], "Acct-Input-Octets": kid["in_bytes"], "Acct-Output-Octets": kid["out_bytes"]}
got = {k: int(last[k]) for k in want}
assert got == want and got["Acct-Input-Packets"] >= 5, (got, want)
stop = [r for r in records(sys.argv[2]) if r["Acct-Status-Type"] == "Stop"]
assert len(stop) == 1 and stop[0]["Acct-Terminate-Cause"] == "User-Request", stop
assert {k: int(stop[0][k]) for k in want} == want, (stop, want)
assert stop[0]["Acct-Session-Id"] == start[0]["Acct-Session-Id"]
print(f"accounting: Start, {len(interims)} Interim-Update(s), Stop; {got}")
PY

# carol: EAP-TLS, EAP-only (no AUTH of ours before EAP; the MSK-based AUTH
# after it authenticates us), after alice's tunnel is gone (one virtual IP
# route at a time in the client namespace).
sw_lines=$(wc -l <"$work/sw/charon.log")
"$peer" swanctl eap-rw "$work/sw" --initiate --child carolnet --timeout 30 >"$work/initiate-carol.log" 2>&1 \
  || { sed 's/^/  swanctl| /' "$work/initiate-carol.log" | tail -15; ike_fail "strongSwan (carol, EAP-TLS) could not bring the tunnel up"; }
tail -n +$((sw_lines + 1)) "$work/sw/charon.log" >"$work/charon-carol.log"
grep -q "EAP method EAP_TLS succeeded, MSK established" "$work/charon-carol.log" || ike_fail "strongSwan did not finish EAP-TLS with an MSK"
grep -q "allow mutual EAP-only authentication" "$work/charon-carol.log" || ike_fail "strongSwan did not take EAP-only authentication"
grep -q "authentication of 'gw.esprit' with ECDSA" "$work/charon-carol.log" && ike_fail "esprit signed with its certificate despite EAP-only"
grep -q "authentication of 'gw.esprit' with EAP successful" "$work/charon-carol.log" || ike_fail "strongSwan did not verify esprit's MSK-based AUTH (EAP-TLS)"
grep -q "EAP identity 'carol.esprit' authenticated" "$work/ike.log" || ike_fail "esprit-ike did not log carol's EAP identity"
grep -q "IKE SA #[0-9]* eaptls up" "$work/ike.log" || ike_fail "carol did not land on the eaptls connection"
ip netns exec eap-rw ping -c 3 -i 0.2 -W 2 192.168.119.2 >"$work/ping3.log" 2>&1 \
  || { cat "$work/ping3.log"; ike_fail "no ping through carol's EAP-TLS tunnel"; }
ectl --json stats >"$work/stats.json"
grep -q '"esprit_ike_eap_total{result=accept}": 2' "$work/stats.json" || ike_fail "carol's accept is not counted: $(cat "$work/stats.json")"

# No RADIUS secret, password or MSK (strongSwan logs none at this level;
# the MSK is derived from the password) in what esprit wrote.
for s in "$radius_secret" alice-pw-9f3c1e not-bobs-password; do
  grep -qF -- "$s" "$work/ike.log" "$work/dp.log" "$work/sas.json" "$work/stats.json" && ike_fail "a secret ($s) in esprit's logs"
done
pass
