#!/usr/bin/env bash
# One-shot setup of the TLS material and the data key for a Portcullis cluster, with
# openssl only (no nodes are started):
#
#   bash deploy/compose/gen-certs.sh [OUT_DIR] [NODES] [EXTRA_SANS]
#
#   OUT_DIR     default deploy/compose/secrets (what docker-compose.yml mounts)
#   NODES       default 3: writes node1..nodeN certificates
#   EXTRA_SANS  comma-separated openssl SAN entries added to every node certificate,
#               e.g. "DNS:portcullis.example.net,IP:10.0.0.5"
#
# Writes: ca.pem, ca.key (keep it offline: it signs new node certificates),
# node<N>.pem / node<N>.key for each node, and data.key (32 random bytes, base64; the
# same on every node, it seals backend secrets: losing it loses them).
#
# Each node certificate names nodeN, localhost and 127.0.0.1, is valid for server and
# client authentication (node-to-node traffic is mutual TLS), and must name "localhost":
# nodes verify each other under that name. Existing files are kept, so the script can
# be run again after adding a node (NODES=4) without replacing the CA.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/secrets}"
nodes="${2:-3}"
extra="${3:-}"
days="${CERT_DAYS:-825}"
# The container image runs as this uid (deploy/Dockerfile).
runtime_uid="${PORTCULLIS_UID:-10001}"

command -v openssl >/dev/null || { echo "gen-certs: openssl is missing (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
cd "$out"
umask 077

if [ ! -f ca.pem ] || [ ! -f ca.key ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
  openssl req -x509 -new -key ca.key -sha256 -days "$((days * 4))" -subj "/CN=Portcullis cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out ca.pem
  echo "wrote $out/ca.pem (CA certificate) and ca.key (CA key: keep it offline)"
fi

for i in $(seq 1 "$nodes"); do
  [ -f "node$i.pem" ] && [ -f "node$i.key" ] && continue
  sans="DNS:node$i,DNS:localhost,IP:127.0.0.1${extra:+,$extra}"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "node$i.key"
  openssl req -new -key "node$i.key" -subj "/CN=portcullis node $i" -out "node$i.csr"
  cat > "node$i.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $sans
EXT
  openssl x509 -req -in "node$i.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
    -extfile "node$i.ext" -out "node$i.pem" 2>/dev/null
  rm -f "node$i.csr" "node$i.ext"
  openssl verify -CAfile ca.pem "node$i.pem" >/dev/null
  echo "wrote $out/node$i.pem and node$i.key ($sans)"
done
rm -f ca.srl

if [ ! -f data.key ]; then
  openssl rand -base64 32 > data.key
  echo "wrote $out/data.key (cluster data key: back it up; every node needs the same file)"
fi

# The containers run as uid $runtime_uid and must read the node keys and the data key.
if [ "$(id -u)" = 0 ]; then
  chown "$runtime_uid:$runtime_uid" node*.key node*.pem data.key ca.pem
  chmod 0400 node*.key data.key
  chmod 0444 node*.pem ca.pem
else
  # Without root we cannot hand the files to uid $runtime_uid: make them readable.
  # Acceptable for this single-host demo only; use Docker/Kubernetes secrets in production.
  chmod 0444 node*.key node*.pem data.key ca.pem
  echo "note: keys made world-readable so the containers (uid $runtime_uid) can read them; demo only" >&2
fi
chmod 0400 ca.key 2>/dev/null || true
