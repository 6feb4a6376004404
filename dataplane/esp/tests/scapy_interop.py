#!/usr/bin/python3
"""Second, independent ESP implementation for esprit's interop test.

Reads a job file written by tests/interop.rs, and for every case:
  * opens the packets esprit sealed with scapy.layers.ipsec, checks the
    plaintext against what esprit was given, and checks that the ESP part
    is byte-identical to what scapy produces with the same IV;
  * seals the given inner packets with scapy for esprit to open.
Writes the results as JSON. Exits 2 if scapy is missing, 1 on any mismatch.
Run with Debian's /usr/bin/python3 (python3-scapy).
"""
import json
import sys

try:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.packet import Raw, raw
except ImportError as e:  # pragma: no cover
    print("scapy is not importable from %s: %s" % (sys.executable, e), file=sys.stderr)
    sys.exit(2)


def ip_of(b):
    return IP(b) if b[0] >> 4 == 4 else IPv6(b)


def make_sa(c):
    tunnel = None
    if c["mode"] == "tunnel":
        tunnel = IP(src=c["src"], dst=c["dst"]) if c["outer_v6"] is False else IPv6(src=c["src"], dst=c["dst"])
    nat_t = UDP(sport=4500, dport=4500) if c["udp"] else None
    return SecurityAssociation(
        ESP,
        spi=c["spi"],
        crypt_algo=c["algo"],
        crypt_key=bytes.fromhex(c["keymat"]),
        tunnel_header=tunnel,
        nat_t_header=nat_t,
        esn_en=c["esn"],
        esn=c["esn_high"],
    )


def fix_udp_len(b):
    """scapy 2.5 freezes the IPv4 NAT-T UDP header before the ESP payload is
    attached, so its Length field says 8. Patch it to cover the payload, as
    any real sender does; IPv6 output is already right."""
    pkt = ip_of(b)
    if UDP not in pkt:
        return b
    off = len(b) - len(pkt[UDP])
    b = bytearray(b)
    b[off + 4:off + 6] = (len(b) - off).to_bytes(2, "big")
    return bytes(b)


def esp_part(pkt):
    return raw(pkt[ESP])


def run_case(c):
    errors = []
    sa = make_sa(c)
    opened = 0
    for p in c["to_open"]:
        wire = bytes.fromhex(p["wire"])
        expect = bytes.fromhex(p["inner"])
        pkt = ip_of(wire)
        if ESP not in pkt:
            errors.append("no ESP layer in esprit packet %s" % pkt.summary())
            continue
        esprit_esp = esp_part(pkt)  # decrypt() below rewrites pkt in place
        try:
            got = raw(sa.decrypt(pkt))
        except Exception as e:  # ICV failure raises
            errors.append("scapy could not decrypt esprit packet seq %d: %r" % (p["seq_low"], e))
            continue
        if got != expect:
            errors.append("plaintext mismatch seq %d:\n got    %s\n expect %s" % (p["seq_low"], got.hex(), expect.hex()))
            continue
        # Same IV, same padding rule: the ESP part must be identical.
        again = sa.encrypt(ip_of(expect), seq_num=p["seq_low"], iv=bytes.fromhex(p["iv"]))
        if esp_part(again) != esprit_esp:
            errors.append("ESP bytes differ from scapy's for seq %d:\n scapy  %s\n esprit %s"
                          % (p["seq_low"], esp_part(again).hex(), esprit_esp.hex()))
            continue
        opened += 1
    sealed = []
    for p in c["to_seal"]:
        out = sa.encrypt(ip_of(bytes.fromhex(p["inner"])), seq_num=p["seq_low"])
        sealed.append(fix_udp_len(raw(out)).hex())
    return {"name": c["name"], "opened": opened, "errors": errors, "sealed": sealed}


def main():
    job = json.load(open(sys.argv[1]))
    results = [run_case(c) for c in job["cases"]]
    json.dump({"scapy": __import__("scapy").__version__, "results": results}, open(sys.argv[2], "w"), indent=1)
    bad = sum(len(r["errors"]) for r in results)
    print("scapy interop: %d cases, %d errors" % (len(results), bad))
    for r in results:
        for e in r["errors"]:
            print("%s: %s" % (r["name"], e))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
