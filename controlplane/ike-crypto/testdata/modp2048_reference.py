#!/usr/bin/python3
"""Independent MODP-2048 (RFC 3526 §3, IKEv2 group 14) reference values with
Python integers: the prime as printed in RFC 3526 §3, checked to be a safe
prime (Miller-Rabin on p and (p-1)/2), and g^x, g^y, g^xy for two fixed
256-bit exponents. Output: modp2048_reference.json (committed; the test reads it).
"""
import json
import random

P_RFC3526 = """
FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
15728E5A 8AACAA68 FFFFFFFF FFFFFFFF
"""
p = int("".join(P_RFC3526.split()), 16)


def probable_prime(n, rounds=40):
    rng = random.Random(1)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


assert p.bit_length() == 2048 and probable_prime(p) and probable_prime((p - 1) // 2)
x = int.from_bytes(bytes(range(1, 33)), "big")
y = int.from_bytes(bytes(range(0xe0, 0x100)), "big")
enc = lambda v: v.to_bytes(256, "big").hex()
print(json.dumps({
    "provenance": "computed by testdata/modp2048_reference.py (Python pow over the RFC 3526 section 3 prime, which the script checks is a safe prime), independent of the Rust code",
    "p": enc(p), "x": x.to_bytes(32, "big").hex(), "y": y.to_bytes(32, "big").hex(),
    "g_x": enc(pow(2, x, p)), "g_y": enc(pow(2, y, p)), "g_xy": enc(pow(2, x * y, p)),
}, indent=1))
