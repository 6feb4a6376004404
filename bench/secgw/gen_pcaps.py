#!/usr/bin/python3
"""Plaintext traffic for the ipsec-secgw comparison (bench/compare.sh,
bench/cpu_per_packet.sh, bench/secgw/run.sh), written with scapy so that it
does not come from esprit's own code.

usage: gen_pcaps.py DIR

Writes to DIR, for SIZE 64 and 1420:
  inSIZE.pcap   1024 IPv4/UDP packets from 192.168.5.1-250 to
                192.168.105.1-5 (the protected range of sa-*.cfg), UDP
                ports 1024+i -> 5001; "64" is a minimum Ethernet frame
                (60 octets without the FCS, an IP packet of 46), "1420" an
                IP packet of 1420 octets
  bypSIZE.pcap  the same packets sent to 192.168.240.x, a range ipsec-secgw
                forwards without crypto: the harness's own cost
"""
import sys
from scapy.all import IP, UDP, Ether, Raw, wrpcap

COUNT = 1024


def packets(ip_len, dst_net):
    out = []
    for i in range(COUNT):
        src = "192.168.5.%d" % (1 + i % 250)
        dst = "%s.%d" % (dst_net, 1 + (i // 250) % 250)
        pkt = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
               / IP(src=src, dst=dst, ttl=64)
               / UDP(sport=1024 + i, dport=5001)
               / Raw(b"\xab" * (ip_len - 28)))
        assert len(pkt[IP]) == ip_len
        out.append(pkt)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for size, ip_len in (("64", 46), ("1420", 1420)):
        wrpcap("%s/in%s.pcap" % (sys.argv[1], size), packets(ip_len, "192.168.105"))
        wrpcap("%s/byp%s.pcap" % (sys.argv[1], size), packets(ip_len, "192.168.240"))


if __name__ == "__main__":
    main()
