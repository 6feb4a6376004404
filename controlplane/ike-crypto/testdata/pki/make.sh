#!/bin/sh
# Regenerates the keys, signatures and certificates in this directory with
# the system OpenSSL (3.0 here), an implementation independent of
# ike-crypto. The tests in tests/signatures.rs and tests/certificates.rs
# read the results; nothing is regenerated at test time.
#
# Chain: root (RSA-2048, self-signed, sha256WithRSAEncryption)
#        -> intermediate (ECDSA P-384, signed by root with sha256WithRSA)
#        -> leaf (ECDSA P-256, signed by the intermediate with ecdsa-with-SHA384)
# plus, for rejection tests:
#   other-root / wrong-issuer-leaf: a leaf whose issuer is another CA with
#     the same subject name as our intermediate (so only the signature can
#     tell them apart);
#   leaf-bad-signature: the leaf with one octet of its signature flipped;
#   not-ca-leaf: a certificate issued by the leaf (basicConstraints CA:FALSE);
#   short-leaf: a leaf valid for one day (expiry is checked with an
#     injected "now", see the tests).
set -eu
cd "$(dirname "$0")"
DAYS=7300
subj() { printf '/O=esprit test/CN=%s' "$1"; }

cat > ca.ext <<'X'
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
X
cat > leaf.ext <<'X'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectAltName=DNS:gw.esprit.test
X

# Keys (PKCS#8 PEM).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out root.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out intermediate.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other-root.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out not-ca-leaf.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
openssl genpkey -algorithm ED25519 -out ed25519.key
openssl pkcs8 -topk8 -nocrypt -in rsa.key -outform DER -out rsa.key.der

# Certificates.
openssl req -new -x509 -key root.key -sha256 -days $DAYS -subj "$(subj 'Test Root CA')" \
  -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' -out root.pem
openssl req -new -x509 -key other-root.key -sha256 -days $DAYS -subj "$(subj 'Test Intermediate CA')" \
  -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' -out other-root.pem

openssl req -new -key intermediate.key -subj "$(subj 'Test Intermediate CA')" -out intermediate.csr
openssl x509 -req -in intermediate.csr -CA root.pem -CAkey root.key -set_serial 2 -sha256 -days $DAYS \
  -extfile ca.ext -out intermediate.pem

openssl req -new -key leaf.key -subj "$(subj 'gw.esprit.test')" -out leaf.csr
openssl x509 -req -in leaf.csr -CA intermediate.pem -CAkey intermediate.key -set_serial 3 -sha384 -days $DAYS \
  -extfile leaf.ext -out leaf.pem
openssl x509 -req -in leaf.csr -CA intermediate.pem -CAkey intermediate.key -set_serial 4 -sha384 -days 1 \
  -extfile leaf.ext -out short-leaf.pem
openssl x509 -req -in leaf.csr -CA other-root.pem -CAkey other-root.key -set_serial 5 -sha256 -days $DAYS \
  -extfile leaf.ext -out wrong-issuer-leaf.pem

openssl req -new -key not-ca-leaf.key -subj "$(subj 'issued by a leaf')" -out not-ca-leaf.csr
openssl x509 -req -in not-ca-leaf.csr -CA leaf.pem -CAkey leaf.key -set_serial 6 -sha256 -days $DAYS \
  -extfile leaf.ext -out not-ca-leaf.pem

# The leaf with the last octet of its signature flipped.
openssl x509 -in leaf.pem -outform DER -out leaf.der
python3 - <<'P'
d = bytearray(open("leaf.der", "rb").read())
d[-1] ^= 0x01
open("leaf-bad-signature.der", "wb").write(bytes(d))
P
openssl x509 -inform DER -in leaf-bad-signature.der -out leaf-bad-signature.pem
rm -f leaf-bad-signature.der leaf.der ./*.csr ./*.srl ca.ext leaf.ext

# Signatures over a fixed message, made by OpenSSL.
printf 'IKEv2 InitiatorSignedOctets stand-in: RealMessage1 | NonceRData | MACedIDForI\n' > message.bin
openssl dgst -sha256 -sign rsa.key -out rsa-pkcs1-sha256.sig message.bin
openssl dgst -sha384 -sign rsa.key -out rsa-pkcs1-sha384.sig message.bin
openssl dgst -sha256 -sign rsa.key -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
  -sigopt rsa_mgf1_md:sha256 -out rsa-pss-sha256.sig message.bin
openssl dgst -sha512 -sign rsa.key -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
  -sigopt rsa_mgf1_md:sha512 -out rsa-pss-sha512.sig message.bin
openssl dgst -sha256 -sign leaf.key -out ecdsa-p256-sha256.sig message.bin
openssl dgst -sha384 -sign intermediate.key -out ecdsa-p384-sha384.sig message.bin
# RFC 7427 names the hash, not the curve: P-256 signed with SHA-512 (as
# libreswan does) and with SHA-384.
openssl dgst -sha512 -sign leaf.key -out ecdsa-p256-sha512.sig message.bin
openssl dgst -sha384 -sign leaf.key -out ecdsa-p256-sha384.sig message.bin
openssl pkeyutl -sign -rawin -inkey ed25519.key -in message.bin -out ed25519.sig
openssl version > openssl-version.txt
echo "notBefore of leaf.pem: $(openssl x509 -in leaf.pem -noout -startdate)" >> openssl-version.txt
echo "notAfter of short-leaf.pem: $(openssl x509 -in short-leaf.pem -noout -enddate)" >> openssl-version.txt
