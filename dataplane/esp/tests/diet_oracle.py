#!/usr/bin/env python3
"""Independent oracle for esprit's Diet-ESP IIPC residue: microSCHC
(RFC 8724, PyPI `microschc`, pinned by scripts/setup) compresses the same
inner IPv4/IPv6 + UDP headers with the SCHC rule the draft
(draft-ietf-ipsecme-diet-esp-07 §5.1) derives from the same attributes, and
the two Compression Residues must be equal bit for bit.

Input: a JSON file of cases written by tests/diet_oracle.rs. Each case has
the packet, the selectors and CDAs, and esprit's residue. The Rule ID is
empty (Diet-ESP elides it, §4.1); the payload is left out so the residue is
compared alone; both pad the residue with zero bits to an octet.

What microSCHC cannot say and the cases therefore avoid (docs/diet-esp.md):
it keeps IPv6 Traffic Class and IPv4 Type of Service as one 8-bit field,
so the draft's separate DSCP and ECN CDAs are only comparable when both
are `not_compressed` (value-sent) or both `lower` (not in the residue); it
has no TCP parser, and its SCTP parser takes the chunks as fields.
"""
import json
import sys

from microschc.binary.buffer import Buffer, Padding
from microschc.compressor.compressor import compress
from microschc.parser.parser import PacketParser
from microschc.protocol.ipv4 import IPv4Parser
from microschc.protocol.ipv6 import IPv6Parser
from microschc.protocol.udp import UDPParser
from microschc.rfc8724 import CompressionDecompressionAction as CDA
from microschc.rfc8724 import MatchingOperator as MO
from microschc.rfc8724 import RuleDescriptor, RuleFieldDescriptor


def msb_len(start: int, end: int, width: int) -> int:
    """Bits shared by every value of [start, end]: diet-esp-07 §4.2 msb()."""
    diff = start ^ end
    return width - diff.bit_length()


def tv(value: int, width: int, keep: int) -> Buffer:
    prefix = value >> (width - keep) if keep else 0
    return Buffer(content=prefix.to_bytes((keep + 7) // 8 or 1, "big") if keep else b"", length=keep)


def field(fid, length, mo, cda, target=None):
    return RuleFieldDescriptor(id=fid, length=length, matching_operator=mo,
                               compression_decompression_action=cda, target_value=target)


def rule_for(case, fields):
    v6 = case["v6"]
    width = 128 if v6 else 32
    rf = []
    for f in fields:
        fid, n = f.id, f.value.length
        name = fid.split(":", 1)[1]
        if name == "Version":
            rf.append(field(fid, n, MO.EQUAL, CDA.NOT_SENT, f.value))
        elif name == "Header Length":
            rf.append(field(fid, n, MO.IGNORE, CDA.VALUE_SENT))  # §5.1.3: IHL value-sent
        elif name in ("Traffic Class", "Type of Service"):
            if case["dscp"] == "not_compressed":
                rf.append(field(fid, n, MO.IGNORE, CDA.VALUE_SENT))
            else:  # both lower: from the outer header
                rf.append(field(fid, n, MO.IGNORE, CDA.COMPUTE))
        elif name in ("Flow Label", "Identification"):
            cda = case["flow"]
            if cda == "not_compressed":
                rf.append(field(fid, n, MO.IGNORE, CDA.VALUE_SENT))
            elif cda == "zero":
                rf.append(field(fid, n, MO.EQUAL, CDA.NOT_SENT, Buffer(content=b"\x00", length=n)))
            else:
                rf.append(field(fid, n, MO.IGNORE, CDA.COMPUTE))
        elif name == "Flags":
            rf.append(field(fid, n, MO.IGNORE, CDA.VALUE_SENT))
        elif name == "Fragment Offset":
            rf.append(field(fid, n, MO.EQUAL, CDA.NOT_SENT, Buffer(content=b"\x00", length=n)))
        elif name in ("Payload Length", "Total Length", "Hop Limit", "Time To Live",
                      "Header Checksum", "Length", "Checksum"):
            rf.append(field(fid, n, MO.IGNORE, CDA.COMPUTE))
        elif name in ("Next Header", "Protocol"):
            if case["proto"]:
                rf.append(field(fid, n, MO.EQUAL, CDA.NOT_SENT, f.value))
            else:
                rf.append(field(fid, n, MO.IGNORE, CDA.VALUE_SENT))
        elif name in ("Source Address", "Destination Address"):
            s, e = (case["src"] if name.startswith("Source") else case["dst"])
            s, e = int(s, 16), int(e, 16)
            keep = msb_len(s, e, width)
            rf.append(field(fid, n, MO.MSB, CDA.LSB, tv(s, width, keep)))
        elif name in ("Source Port", "Destination Port"):
            s, e = case["sports"] if name.startswith("Source") else case["dports"]
            keep = msb_len(s, e, 16)
            rf.append(field(fid, n, MO.MSB, CDA.LSB, tv(s, 16, keep)))
        else:
            raise SystemExit(f"no rule for field {fid}")
    return RuleDescriptor(id=Buffer(content=b"", length=0), field_descriptors=rf)


def main():
    cases = json.load(open(sys.argv[1]))
    bad = 0
    for i, case in enumerate(cases):
        pkt = bytes.fromhex(case["packet"])
        parser = PacketParser("diet", [IPv6Parser() if case["v6"] else IPv4Parser(), UDPParser()])
        pd = parser.parse(Buffer(content=pkt, length=len(pkt) * 8))
        pd.payload = Buffer(content=b"", length=0)
        residue = compress(pd, rule_for(case, pd.fields))
        bits = residue.length
        got = residue.pad(Padding.RIGHT).content if bits % 8 else residue.content
        if bits == 0:
            got = b""
        ours = bytes.fromhex(case["residue"])
        if got != ours or len(ours) != (bits + 7) // 8:
            bad += 1
            print(f"case {i}: microschc {got.hex()} ({bits} bits) != esprit {ours.hex()}: {case}")
    print(f"diet oracle: {len(cases) - bad} passed, {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
