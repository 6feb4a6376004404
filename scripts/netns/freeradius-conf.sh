#!/usr/bin/env bash
# Writes a FreeRADIUS 3.2 configuration for the EAP scenarios from Debian's
# /etc/freeradius/3.0: DIR gets a copy whose paths point into DIR, one
# virtual server listening on ADDR (auth PORT, accounting PORT+1), the
# inner tunnel on 127.0.0.1:INNER, a client NAS with SECRET, the users
# file USERS (copied), and accounting detail files under DIR/radacct.
# Usage: freeradius-conf.sh DIR ADDR PORT INNER NAS_ADDR SECRET USERS [TLS]
# With TLS (a directory holding ca.pem, server.pem, server.key), EAP-TLS
# uses that server certificate and trusts client certificates of that CA.
# Then: freeradius -X -d DIR (foreground; runs as the invoking user).
set -euo pipefail
dir=$1 addr=$2 port=$3 inner=$4 nas=$5 secret=$6 users=$7 tls=${8:-}
rm -rf "$dir"
cp -a /etc/freeradius/3.0 "$dir"
mkdir -p "$dir/log" "$dir/run" "$dir/radacct"
sed -i -e "s|^raddbdir = .*|raddbdir = $dir|" -e "s|^logdir = .*|logdir = $dir/log|" \
  -e "s|^run_dir = .*|run_dir = $dir/run|" -e "s|^radacctdir = .*|radacctdir = $dir/radacct|" \
  -e 's|^\(\s*\)user = freerad|\1#user = freerad|' -e 's|^\(\s*\)group = freerad|\1#group = freerad|' \
  "$dir/radiusd.conf"
rm -f "$dir"/sites-enabled/*
sed -e "s|port = 18120|port = $inner|" /etc/freeradius/3.0/sites-available/inner-tunnel > "$dir/sites-enabled/inner-tunnel"
cat > "$dir/sites-enabled/esprit" <<CONF
server esprit {
listen {
	type = auth
	ipaddr = $addr
	port = $port
}
listen {
	type = acct
	ipaddr = $addr
	port = $((port + 1))
}
authorize {
	preprocess
	files
	eap {
		ok = return
	}
	mschap
	pap
}
authenticate {
	Auth-Type PAP {
		pap
	}
	Auth-Type MS-CHAP {
		mschap
	}
	# EAP-MSCHAPv2 calls the mschap module by name.
	mschap
	eap
}
preacct {
	preprocess
	acct_unique
}
accounting {
	detail
}
post-auth {
	Post-Auth-Type REJECT {
		attr_filter.access_reject
		eap
		remove_reply_message_if_eap
	}
}
}
CONF
cat > "$dir/clients.conf" <<CONF
client nas {
	ipaddr = $nas
	secret = $secret
	require_message_authenticator = yes
}
CONF
cp "$users" "$dir/mods-config/files/authorize"
if [[ -n $tls ]]; then
  sed -i -e "s|^\(\s*\)private_key_file = .*|\1private_key_file = $tls/server.key|" \
    -e "s|^\(\s*\)certificate_file = .*|\1certificate_file = $tls/server.pem|" \
    -e "s|^\(\s*\)ca_file = .*|\1ca_file = $tls/ca.pem|" "$dir/mods-available/eap"
fi
# The certificates Debian made at install (snakeoil) may be unreadable to
# a non-root user; we run as root in a namespace, so they are.
