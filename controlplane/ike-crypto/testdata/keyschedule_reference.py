#!/usr/bin/python3
"""Independent reference for the IKEv2 key schedule (RFC 7296 §2.13-2.18,
RFC 9370 §2.2.2/§2.2.4, RFC 8784 §3), written from the RFC text with Python's
hmac/hashlib only. It writes keyschedule_reference.json, which
tests/key_schedule.rs compares with the Rust implementation.

Run: /usr/bin/python3 keyschedule_reference.py > keyschedule_reference.json
"""
import hashlib
import hmac
import json

HASHES = {5: hashlib.sha256, 6: hashlib.sha384, 7: hashlib.sha512}


def prf(h, key, data):
    return hmac.new(key, data, h).digest()


def prf_plus(h, key, seed, length):
    out, t, n = b"", b"", 1
    while len(out) < length:
        t = prf(h, key, t + seed + bytes([n]))
        out += t
        n += 1
    return out[:length]


def derive(h, skeyseed, ni, nr, spii, spir, a_len, e_len):
    d = h().digest_size
    s = prf_plus(h, skeyseed, ni + nr + spii + spir, 3 * d + 2 * a_len + 2 * e_len)
    names, lens = ["sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"], [d, a_len, a_len, e_len, e_len, d, d]
    out, at = {}, 0
    for name, n in zip(names, lens):
        out[name] = s[at:at + n].hex()
        at += n
    return out


def fill(tag, n):
    """Deterministic test inputs: SHA-512 counter stream of a label."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha512(tag.encode() + bytes([i])).digest()
        i += 1
    return out[:n]


cases = []
for prf_id, (a_len, e_len) in ((5, (32, 16)), (6, (48, 36)), (7, (0, 36))):
    h = HASHES[prf_id]
    ni, nr = fill("Ni", 32), fill("Nr", 48)
    spii, spir = fill("SPIi", 8), fill("SPIr", 8)
    g_ir = fill("g^ir", 256)
    skeyseed = prf(h, ni + nr, g_ir)
    keys0 = derive(h, skeyseed, ni, nr, spii, spir, a_len, e_len)
    # RFC 9370 §2.2.2: two additional key exchanges in IKE_INTERMEDIATE.
    sk1, sk2 = fill("SK(1)", 32), fill("SK(2)", 32)
    skeyseed1 = prf(h, bytes.fromhex(keys0["sk_d"]), sk1 + ni + nr)
    keys1 = derive(h, skeyseed1, ni, nr, spii, spir, a_len, e_len)
    skeyseed2 = prf(h, bytes.fromhex(keys1["sk_d"]), sk2 + ni + nr)
    keys2 = derive(h, skeyseed2, ni, nr, spii, spir, a_len, e_len)
    # RFC 7296 §2.17: Child SA KEYMAT without and with PFS; RFC 9370 §2.2.4 with ADDKE.
    sk_d = bytes.fromhex(keys2["sk_d"])
    cni, cnr, g_new = fill("child Ni", 32), fill("child Nr", 32), fill("new g^ir", 97)
    keymat = prf_plus(h, sk_d, ni + nr, 2 * (e_len + a_len))
    keymat_pfs = prf_plus(h, sk_d, g_new + cni + cnr, 2 * (e_len + a_len))
    keymat_addke = prf_plus(h, sk_d, g_new + cni + cnr + sk1 + sk2, 2 * (e_len + a_len))
    # RFC 7296 §2.18 rekey, and RFC 9370 §2.2.4 rekey with one IKE_FOLLOWUP_KE.
    rekey = prf(h, sk_d, g_new + cni + cnr)
    rekey_addke = prf(h, sk_d, g_new + cni + cnr + sk1)
    # RFC 7296 §2.15 PSK AUTH.
    psk, octets = b"a shared secret of some length", fill("signed octets", 300)
    auth = prf(h, prf(h, psk, b"Key Pad for IKEv2"), octets)
    # RFC 8784 §3 PPK mix into SK_d, SK_pi, SK_pr of generation 0.
    ppk = fill("PPK", 64)
    ppk_mixed = {k: prf_plus(h, ppk, bytes.fromhex(keys0[k]), len(bytes.fromhex(keys0[k]))).hex() for k in ("sk_d", "sk_pi", "sk_pr")}
    cases.append({
        "prf": prf_id, "sk_a_len": a_len, "sk_e_len": e_len,
        "ni": ni.hex(), "nr": nr.hex(), "spi_i": spii.hex(), "spi_r": spir.hex(), "g_ir": g_ir.hex(),
        "skeyseed": skeyseed.hex(), "keys0": keys0,
        "sk1": sk1.hex(), "sk2": sk2.hex(),
        "skeyseed1": skeyseed1.hex(), "keys1": keys1, "skeyseed2": skeyseed2.hex(), "keys2": keys2,
        "child_ni": cni.hex(), "child_nr": cnr.hex(), "g_ir_new": g_new.hex(),
        "keymat": keymat.hex(), "keymat_pfs": keymat_pfs.hex(), "keymat_addke": keymat_addke.hex(),
        "skeyseed_rekey": rekey.hex(), "skeyseed_rekey_addke": rekey_addke.hex(),
        "psk": psk.hex(), "signed_octets": octets.hex(), "psk_auth": auth.hex(),
        "ppk": ppk.hex(), "ppk_mixed": ppk_mixed,
    })

print(json.dumps({
    "provenance": "computed by testdata/keyschedule_reference.py (Python hmac/hashlib, written from RFC 7296 §2.13-2.18, RFC 9370 §2.2.2/2.2.4, RFC 8784 §3), independent of the Rust code",
    "cases": cases,
}, indent=1))
