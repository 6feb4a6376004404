#!/usr/bin/env python3
"""Turns a tcpdump capture of a strongSwan IKEv2 exchange and the initiator's
charon log (ike=4) into the strongswan_*.txt test data next to this script.
Usage: strongswan_capture_to_testdata.py CAPTURE.pcap CHARON_A.log > OUT.txt
Only IKE datagrams are kept (UDP 500, and UDP 4500 with the non-ESP marker);
ESP-in-UDP packets are dropped."""
import re, struct, sys

pcap, log = sys.argv[1], sys.argv[2]
data = open(pcap, 'rb').read()
assert struct.unpack('<I', data[:4])[0] == 0xa1b2c3d4, 'little-endian microsecond pcap'
at, n = 24, 0
out = []
while at < len(data):
    _, _, incl, _ = struct.unpack('<IIII', data[at:at + 16])
    frame = data[at + 16:at + 16 + incl]
    at += 16 + incl
    ip = frame[14:]
    if ip[9] != 17:
        continue
    udp = ip[(ip[0] & 15) * 4:]
    sport, dport, ulen = struct.unpack('>HHH', udp[:6])
    payload = udp[8:ulen]
    if dport == 4500 and payload[:4] != b'\0\0\0\0':
        continue  # ESP in UDP
    n += 1
    out.append(f'packet{n} = {sport} {dport} {payload.hex()}')

lines = open(log).read().splitlines()
# One generation of IKE SA keys per key derivation (IKE_SA_INIT, then each
# RFC 9370 additional key exchange); the first is printed as sk_*, later ones
# as sk_*_genN.
gens = []
for i, l in enumerate(lines):
    m = re.search(r'\] (Sk_(?:ei|er|ai|ar|pi|pr)) secret => (\d+) bytes', l)
    if m:
        if not gens or m.group(1).lower() in gens[-1]:
            gens.append({})
        hx, j = '', i + 1
        while len(hx) < 2 * int(m.group(2)):
            hx += re.match(r'.*\]\s+\d+: ((?:[0-9A-F]{2} ){1,16})', lines[j] + ' ').group(1).replace(' ', '')
            j += 1
        gens[-1][m.group(1).lower()] = hx.lower()
print('\n'.join(out))
for n, keys in enumerate(gens, 1):
    for k in ('sk_ei', 'sk_er', 'sk_ai', 'sk_ar', 'sk_pi', 'sk_pr'):
        if k in keys:
            print(f'{k}{"" if n == 1 else f"_gen{n}"} = {keys[k]}')
