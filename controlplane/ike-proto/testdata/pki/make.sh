#!/bin/sh
# Regenerates the end-entity certificates the certificate-auth tests use,
# with the system OpenSSL, under ike-crypto's test intermediate CA
# (../../../ike-crypto/testdata/pki: root RSA-2048 -> intermediate P-384).
# Nothing is regenerated at test time.
#
#   ed25519-client: Ed25519 key, CN=client.esprit.test (RFC 8420 in AUTH)
#   rsa-client:     RSA-2048 key, CN=rsa.esprit.test (RSASSA-PSS in AUTH)
# The gateway uses ike-crypto's leaf (ECDSA P-256, CN=gw.esprit.test).
set -eu
cd "$(dirname "$0")"
CA=../../../ike-crypto/testdata/pki
cat > leaf.ext <<'X'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
X
openssl genpkey -algorithm ED25519 -out ed25519-client.key
openssl req -new -key ed25519-client.key -subj '/O=esprit test/CN=client.esprit.test' -out ed25519-client.csr
openssl x509 -req -in ed25519-client.csr -CA $CA/intermediate.pem -CAkey $CA/intermediate.key -set_serial 10 \
  -sha384 -days 7300 -extfile leaf.ext -out ed25519-client.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-client.key
openssl req -new -key rsa-client.key -subj '/O=esprit test/CN=rsa.esprit.test' -out rsa-client.csr
openssl x509 -req -in rsa-client.csr -CA $CA/intermediate.pem -CAkey $CA/intermediate.key -set_serial 11 \
  -sha384 -days 7300 -extfile leaf.ext -out rsa-client.pem
rm -f ./*.csr leaf.ext
openssl version > openssl-version.txt
