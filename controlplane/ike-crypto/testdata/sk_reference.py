#!/usr/bin/python3
"""Independent SK payload bodies (RFC 7296 §3.14) made with Python's
`cryptography` (OpenSSL) and hmac, for cross-checking ike-crypto's sk module:
AES-GCM-16 (RFC 5282: nonce = salt | IV, AAD = IKE header | SK header) and
AES-CBC + HMAC-SHA2 (ICV over IKE header | SK header | IV | ciphertext).
Also copies two AES-GCM vectors of draft-mcgrew-gcm-test-01 from the
repository's testdata/esp-aead.json (case 2: 128-bit key, case 3: 256-bit).
Run: /usr/bin/python3 sk_reference.py > sk_reference.json
"""
import hashlib
import hmac
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def fill(tag, n):
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(tag.encode() + bytes([i])).digest()
        i += 1
    return out[:n]


def ike_aad(body_len, inner_first_payload=41):
    # IKE header (28) + SK generic header (4), lengths final.
    msg_len = 28 + 4 + body_len
    hdr = fill("spis", 16) + bytes([46, 0x20, 37, 0x08]) + (7).to_bytes(4, "big") + msg_len.to_bytes(4, "big")
    return hdr + bytes([inner_first_payload, 0]) + (4 + body_len).to_bytes(2, "big")


cases = []
inner = fill("inner payloads", 45)
for bits in (128, 256):
    key, salt, iv = fill("gcm key %d" % bits, bits // 8), fill("salt", 4), fill("iv", 8)
    plain = inner + bytes([0])  # no padding, Pad Length 0
    aad = ike_aad(8 + len(plain) + 16)
    ct = AESGCM(key).encrypt(salt + iv, plain, aad)
    cases.append({"encr": 20, "key_bits": bits, "integ": 0, "sk_e": (key + salt).hex(), "sk_a": "",
                  "aad": aad.hex(), "inner": inner.hex(), "iv": iv.hex(), "pad_len": 0, "body": (iv + ct).hex()})
for bits, integ, h, icv_len in ((128, 12, hashlib.sha256, 16), (256, 14, hashlib.sha512, 32), (192, 13, hashlib.sha384, 24)):
    key, ak, iv = fill("cbc key %d" % bits, bits // 8), fill("integ key %d" % integ, h().digest_size), fill("cbc iv", 16)
    pad_len = (16 - (len(inner) + 1) % 16) % 16
    plain = inner + bytes(range(1, pad_len + 1)) + bytes([pad_len])  # padding of any value (here 1, 2, ...)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = enc.update(plain) + enc.finalize()
    aad = ike_aad(16 + len(ct) + icv_len)
    icv = hmac.new(ak, aad + iv + ct, h).digest()[:icv_len]
    cases.append({"encr": 12, "key_bits": bits, "integ": integ, "sk_e": key.hex(), "sk_a": ak.hex(),
                  "aad": aad.hex(), "inner": inner.hex(), "iv": iv.hex(), "pad_len": pad_len, "body": (iv + ct + icv).hex()})

mcgrew = []
vectors = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../testdata/esp-aead.json")
if len(sys.argv) > 1:
    vectors = sys.argv[1]
for x in json.load(open(vectors))["vectors"]:
    if x["name"] in ("mcgrew-gcm-test-01-case-2", "mcgrew-gcm-test-01-case-3"):
        pkt = bytes.fromhex(x["esp_packet"])
        mcgrew.append({"name": x["name"], "key": x["key"], "salt": x["salt"],
                       "aad": pkt[:8].hex(), "body": pkt[8:].hex(), "plaintext": x["esp_payload_plaintext"]})

print(json.dumps({
    "provenance": "cases: computed by testdata/sk_reference.py with Python cryptography (OpenSSL) AESGCM / AES-CBC and hmac, independent of the Rust code. mcgrew: draft-mcgrew-gcm-test-01 cases 2 and 3 (ESP packets without ESN: AAD = SPI | SN, body = IV | ciphertext | ICV) via the repository's testdata/esp-aead.json",
    "cases": cases, "mcgrew": mcgrew}, indent=1))
