#!/usr/bin/python3
"""Fails when a key, PSK or SK_* value appears in esprit's logs.

usage: secrets-in-logs.py CHARON_LOG [--psk TEXT] [--pem KEYFILE] [--min N] FILE...

The secrets come from the peer: strongSwan's charon, logging at level 4
(ike = 4, chd = 4: "private"), dumps every key it derives (SK_d, SK_ai/ar,
SK_ei/er, SK_pi/pr, SKEYSEED, the Diffie-Hellman shared secret, each Child
SA's encryption keys with their salt), which are the same octets esprit
holds. Add the PSK (--psk) and esprit's own private key (--pem) when there
are. Each FILE (esprit-ike's and esprit-dataplane's logs, esprit-ctl's
output) is searched, as octets, for every 12-octet window of every secret
in every form a program might print it: raw, hex in either case (plain, or
separated by ':' or ' '), and as a Rust byte list (`171, 205, ...`, 8
octets). Fewer than --min secrets found in the charon log (default 8) is a
failure too: without material the search proves nothing.
"""
import argparse
import base64
import re
import sys

DUMP = re.compile(r"\] (?P<label>[^\]]*?) => (?P<n>\d+) bytes @")
ROW = re.compile(r"\]\s+\d+: ((?:[0-9A-F]{2} ){1,16})")
SECRET_LABEL = re.compile(r"secret|SKEYSEED|Sk_|\bkey\b|keypad|Key Pad", re.I)
PUBLIC_LABEL = re.compile(r"nonce|public|octets|AUTH =|hash|packet|message", re.I)
WINDOW = 12


def charon_secrets(path):
    lines = open(path, errors="replace").read().splitlines()
    found = []
    for i, line in enumerate(lines):
        m = DUMP.search(line)
        if not m or not SECRET_LABEL.search(m["label"]) or PUBLIC_LABEL.search(m["label"]):
            continue
        n, hexs, j = int(m["n"]), "", i + 1
        while len(hexs) < 2 * n and j < len(lines):
            r = ROW.search(lines[j] + " ")
            if not r:
                break
            hexs += r.group(1).replace(" ", "")
            j += 1
        value = bytes.fromhex(hexs[: 2 * n])
        if len(value) >= WINDOW:
            found.append((m["label"].strip(), value))
    return found


def forms(window):
    """Every way a program might print these octets."""
    h = window.hex()
    out = {
        "raw": window,
        "hex": h.encode(),
        "HEX": h.upper().encode(),
    }
    for sep, name in ((":", "colon"), (" ", "spaced")):
        pairs = [h[k : k + 2] for k in range(0, len(h), 2)]
        out[f"{name} hex"] = sep.join(pairs).encode()
        out[f"{name} HEX"] = sep.join(pairs).upper().encode()
    out["byte list"] = ", ".join(str(b) for b in window[:8]).encode()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("charon_log")
    ap.add_argument("--psk", default="")
    ap.add_argument("--pem")
    ap.add_argument("--min", type=int, default=8)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    secrets = charon_secrets(a.charon_log)
    from_charon = len(secrets)
    if a.psk:
        secrets.append(("PSK", a.psk.encode()))
    if a.pem:
        body = "".join(l for l in open(a.pem).read().splitlines() if l and not l.startswith("-----"))
        secrets.append(("esprit's private key (DER)", base64.b64decode(body)))
        secrets.append(("esprit's private key (PEM text)", body.encode()))
    if from_charon < a.min:
        print(f"only {from_charon} secrets in {a.charon_log} (want {a.min}): is charon logging at level 4?")
        return 1
    texts = {}
    for f in a.files:
        try:
            texts[f] = open(f, "rb").read()
        except FileNotFoundError:
            print(f"{f}: missing")
            return 1
    leaks = []
    for label, value in secrets:
        windows = [value] if len(value) <= WINDOW else [value[k : k + WINDOW] for k in range(len(value) - WINDOW + 1)]
        hit = None
        for w in windows:
            for form, needle in forms(w).items():
                for f, t in texts.items():
                    if needle in t:
                        hit = (form, f)
                        break
                if hit:
                    break
            if hit:
                break
        if hit:
            leaks.append(f"{label} ({len(value)} octets) in {hit[1]} as {hit[0]}")
    labels = sorted({l.split(" => ")[0] for l, _ in secrets})
    print(f"{len(secrets)} secrets ({from_charon} from charon: {', '.join(labels)}) searched in {len(texts)} files, "
          f"{sum(len(t) for t in texts.values())} octets")
    for l in leaks:
        print(f"LEAK: {l}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
