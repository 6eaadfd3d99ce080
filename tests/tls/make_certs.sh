#!/usr/bin/env bash
# Makes throwaway TLS test certificates with the openssl command line: a CA and a leaf for
# localhost and 127.0.0.1 signed by it (ECDSA P-256, valid for 2 days). Nothing here is ever
# committed: scripts/tls_test.sh and scripts/browser_test.sh call this at test time.
#
# Usage: tests/tls/make_certs.sh DIR
#
# Writes into DIR (created if missing, older files replaced):
#   ca.pem, ca.key      the CA (clients trust ca.pem)
#   leaf.pem, leaf.key  the server's certificate and key (--tls-cert, --tls-key)
#   leaf.spki           base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo, the value
#                       Chromium's --ignore-certificate-errors-spki-list takes
set -euo pipefail

[ $# -eq 1 ] || {
  echo "usage: $0 DIR" >&2
  exit 2
}
dir=$1
command -v openssl >/dev/null || {
  echo "make_certs.sh: the openssl command is needed (apt-get install openssl)" >&2
  exit 1
}
mkdir -p "$dir"
cd "$dir"
rm -f ca.pem ca.key ca.srl leaf.pem leaf.key leaf.csr leaf.ext leaf.spki

# -batch and -subj: no prompts. The CA's key signs only certificates.
openssl req -x509 -batch -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.pem -days 2 -subj "/CN=lanes test CA (throwaway)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -new -batch -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout leaf.key -out leaf.csr -subj "/CN=localhost" 2>/dev/null
cat >leaf.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile leaf.ext -out leaf.pem 2>/dev/null
openssl verify -CAfile ca.pem leaf.pem >/dev/null

openssl x509 -in leaf.pem -noout -pubkey | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64 >leaf.spki
rm -f leaf.csr leaf.ext ca.srl
