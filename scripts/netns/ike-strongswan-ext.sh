#!/usr/bin/env bash
# esprit-ike against strongSwan 5.9.8 (Debian's charon, kernel-libipsec) for
# the ipsecme extensions a real peer here implements, at the IKE level (the
# Child SAs go into esprit's SA table; no dataplane runs):
#
#   ns ext-es: esprit-ike 172.16.19.1  ── veth ──  ns ext-sw: charon 172.16.19.2
#
# * Split DNS (RFC 8598), esprit as initiator: strongSwan pushes
#   INTERNAL_DNS_DOMAIN (25) and INTERNAL_DNSSEC_TA (26) as numeric pool
#   attributes. esprit must accept corp.example.test with its trust anchor
#   (on the TA allow-list), refuse the public suffix "com", list the
#   domain, run the hook with it on up and on down.
# * Labeled IPsec (RFC 9478, label_mode=simple), both roles: strongSwan
#   initiates a labeled Child SA to esprit and esprit one to strongSwan;
#   both list it with the label and esprit counts it. A Child SA with a
#   different label is refused by esprit (TS_UNACCEPTABLE). (That both SA
#   table slots carry the label is checked in tests/table_programming.rs.)
name=ike-strongswan-ext
. "$(dirname "$0")/lib.sh"
need_ike
need_strongswan

ip netns add ext-es; netns+=(ext-es)
ip netns add ext-sw; netns+=(ext-sw)
ip link add extes0 netns ext-es type veth peer name extsw0 netns ext-sw
ip -n ext-es link set lo up; ip -n ext-es link set extes0 up; ip -n ext-es addr add 172.16.19.1/24 dev extes0
ip -n ext-sw link set lo up; ip -n ext-sw link set extsw0 up; ip -n ext-sw addr add 172.16.19.2/24 dev extsw0
ip -n ext-sw addr add 10.50.0.1/32 dev lo

psk=esprit-ext-psk-$$
label=system_u:object_r:ipsec_spd_t:s0
# The TA as strongSwan can carry it in a string-valued numeric attribute:
# key tag "AB" (16706), algorithm "C" (67), digest type "D" (68, no fixed
# digest length), digest "0123456789abcdef".
ta_text=ABCD0123456789abcdef
cat >"$work/hook.sh" <<EOT
#!/bin/sh
echo "\$ESPRIT_EVENT|\$ESPRIT_CONNECTION|\$ESPRIT_DNS_DOMAINS|\$ESPRIT_DNS_SERVERS|\$ESPRIT_DNSSEC_TAS" >>"$work/hook.out"
EOT
chmod +x "$work/hook.sh"
cat >"$work/ike.yaml" <<EOT
ike:
  listen: [172.16.19.1]
  control_socket: $work/ike.sock
  metrics_listen: null
  sa_table: { path: /dev/shm/esprit-netns-$$-ext, capacity: 64 }
  orphan_grace_secs: 0
  connections:
    dns:
      remote: 172.16.19.2
      local_id: dns.esprit
      remote_id: gw.strongswan
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      request_vip: [v4]
      split_dns: { dnssec_ta_domains: [example.test], hook: $work/hook.sh }
      child:
        esp_proposals: [aes256gcm16]
        remote_ts: [10.50.0.0/24]
    lab-in:
      local_id: esprit.lab
      remote_id: sw.lab
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.19.0/24]
        remote_ts: [10.50.0.1/32]
        sec_label: "$label"
    lab-out:
      remote: 172.16.19.2
      local_id: esprit.out
      remote_id: sw.out
      local_auth: { psk: "$psk" }
      remote_auth: { psk: "$psk" }
      proposals: [aes256gcm16-prfsha256-x25519]
      child:
        esp_proposals: [aes256gcm16]
        local_ts: [192.168.29.0/24]
        remote_ts: [10.50.0.1/32]
        sec_label: "$label"
EOT
start_ike "$work/ike.yaml" ext-es
peer_logs=("charon:$work/sw/charon.log")

cat >"$work/swanctl.conf" <<EOT
connections {
  dns {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    proposals = aes256gcm16-prfsha256-x25519
    pools = rw
    local { auth = psk
            id = gw.strongswan }
    remote { auth = psk
             id = dns.esprit }
    children {
      dns { local_ts = 10.50.0.0/24
            esp_proposals = aes256gcm16 }
    }
  }
  lab {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = psk
            id = sw.lab }
    remote { auth = psk
             id = esprit.lab }
    children {
      lab { local_ts = 10.50.0.1/32
            remote_ts = 192.168.19.0/24
            esp_proposals = aes256gcm16
            label = $label
            label_mode = simple }
      badlab { local_ts = 10.50.0.1/32
               remote_ts = 192.168.19.0/24
               esp_proposals = aes256gcm16
               label = user_u:object_r:other_t:s0
               label_mode = simple }
    }
  }
  out {
    local_addrs = 172.16.19.2
    remote_addrs = 172.16.19.1
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = psk
            id = sw.out }
    remote { auth = psk
             id = esprit.out }
    children {
      out { local_ts = 10.50.0.1/32
            remote_ts = 192.168.29.0/24
            esp_proposals = aes256gcm16
            label = $label
            label_mode = simple }
    }
  }
}
pools {
  rw {
    addrs = 10.99.0.0/24
    dns = 10.99.0.53
    25 = com, corp.example.test
    26 = $ta_text
  }
}
secrets {
  ike-dns { id-1 = gw.strongswan
            id-2 = dns.esprit
            secret = "$psk" }
  ike-lab { id-1 = sw.lab
            id-2 = esprit.lab
            secret = "$psk" }
  ike-out { id-1 = sw.out
            id-2 = esprit.out
            secret = "$psk" }
}
EOT
start_strongswan ext-sw
grep -qi "loaded pool 'rw'\|loaded 1 of 1 pool" "$work/sw-load.log" || { cat "$work/sw-load.log"; ike_fail "strongSwan did not load the pool with attributes 25/26"; }
swsas() { "$peer" swanctl ext-sw "$work/sw" --list-sas >"$work/sw-sas.log" 2>&1; }
json() { ectl --json list-sas >"$work/sas.json"; /usr/bin/python3 -c "import json,sys; d=json.load(open('$work/sas.json')); $1"; }

# --- Split DNS: esprit initiates, strongSwan pushes 25/26 ---------------------
ectl initiate dns >/dev/null || ike_fail "esprit-ctl initiate dns was refused"
for _ in $(seq 100); do ectl list-sas >"$work/sas.txt" 2>&1; grep -q "split DNS" "$work/sas.txt" && break; sleep 0.1; done
grep -q "split DNS: corp.example.test$" "$work/sas.txt" || ike_fail "esprit does not list corp.example.test alone as its split-DNS domain: $(cat "$work/sas.txt")"
grep -q 'split-DNS "com" refused (PublicSuffix)' "$work/ike.log" || ike_fail "the public suffix com was not refused"
ta_hex=$(printf %s "0123456789abcdef" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
grep -q "DNSSEC TA: corp.example.test 16706 67 68 $ta_hex" "$work/sas.txt" || ike_fail "the trust anchor after corp.example.test was not accepted: $(cat "$work/sas.txt")"
grep -q "10.99.0.1" "$work/sas.txt" || ike_fail "no virtual IP from strongSwan's pool: $(cat "$work/sas.txt")"
for _ in $(seq 50); do [[ -s $work/hook.out ]] && break; sleep 0.1; done
grep -q "^up|dns|corp.example.test|10.99.0.53|corp.example.test 16706 67 68 $ta_hex$" "$work/hook.out" \
  || ike_fail "the hook did not get the accepted domain: $(cat "$work/hook.out" 2>/dev/null)"
dns_ike=$(json 'print([i["ike_sa"] for i in d["ike_sas"] if i["connection"]=="dns"][0])')
ectl terminate "$dns_ike" >/dev/null || ike_fail "esprit-ctl terminate $dns_ike failed"
for _ in $(seq 50); do grep -q "^down|dns|corp.example.test|" "$work/hook.out" && break; sleep 0.1; done
grep -q "^down|dns|corp.example.test|" "$work/hook.out" || ike_fail "the hook was not run on down: $(cat "$work/hook.out")"

# --- Labels: strongSwan initiates a labeled Child SA to esprit ---------------
"$peer" swanctl ext-sw "$work/sw" --initiate --child lab >"$work/sw-init.log" 2>&1 || { cat "$work/sw-init.log"; ike_fail "strongSwan could not set up the labeled Child SA with esprit"; }
swsas
grep -A4 "lab:" "$work/sw-sas.log" | grep -q INSTALLED || ike_fail "strongSwan lists no labeled Child SA: $(cat "$work/sw-sas.log")"
ectl list-sas >"$work/sas.txt"
grep -q "label $label" "$work/sas.txt" || ike_fail "esprit does not list the label: $(cat "$work/sas.txt")"
# Both table slots carry it (read as a dataplane worker would).
ectl --json stats >"$work/stats.json"
grep -q '"esprit_ike_child_sa_features_total{feature=label}": 1' "$work/stats.json" || ike_fail "the labeled Child SA is not counted: $(cat "$work/stats.json")"
# A different label on the same IKE SA is refused.
"$peer" swanctl ext-sw "$work/sw" --initiate --child badlab >"$work/sw-bad.log" 2>&1 && ike_fail "strongSwan got a Child SA with a label esprit does not have"
grep -q "TS_UNACCEPTABLE" "$work/sw-bad.log" "$work/sw/charon.log" || ike_fail "the wrong label was not answered with TS_UNACCEPTABLE: $(tail -5 "$work/sw-bad.log")"

# --- Labels: esprit initiates a labeled Child SA to strongSwan ---------------
ectl initiate lab-out >/dev/null || ike_fail "esprit-ctl initiate lab-out was refused"
for _ in $(seq 100); do ectl list-sas >"$work/sas.txt" 2>&1; [[ $(grep -c "label $label" "$work/sas.txt") -ge 2 ]] && break; sleep 0.1; done
[[ $(grep -c "label $label" "$work/sas.txt") -ge 2 ]] || ike_fail "esprit has no labeled Child SA as initiator: $(cat "$work/sas.txt")"
swsas
grep -A4 "out:" "$work/sw-sas.log" | grep -q INSTALLED || ike_fail "strongSwan lists no labeled Child SA from esprit: $(cat "$work/sw-sas.log")"
"$peer" stop ext-sw "$work/sw"
pass
