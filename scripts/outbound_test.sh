#!/usr/bin/env bash
# lanes' outbound connections against third-party servers: Python `websockets` and Node `ws`
# (tests/outbound/peer_server.py, peer_server.mjs), over ws:// and wss:// (a throwaway test CA
# made by tests/tls/make_certs.sh), and raw sockets that answer an upgrade wrong. The checks are
# examples/outbound_peers (see its header): echo of 0 B to 1 MiB, subprotocol and header
# negotiation, permessage-deflate with and without context takeover, a 403, a server that never
# answers, one that drops mid-handshake, an invalid accept value, and nothing left behind.
#
# Usage: scripts/outbound_test.sh      (from anywhere; installs openssl, the Python packages and
#                                       the Node modules when missing, as scripts/tls_test.sh)
#
# Environment:
#   LANES_OUTBOUND_OUT  where the servers' logs and the certificates go (default
#                       target/outbound); the Python packages are shared with tls_test.sh
#                       (target/tls/pylib)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

target=${CARGO_TARGET_DIR:-$repo/target}
out=${LANES_OUTBOUND_OUT:-$target/outbound}

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "outbound_test.sh: $*" >&2
  echo "FAIL: outbound test: $*"
  exit 1
}

step "outbound connections against Python websockets and Node ws servers"
if ! command -v openssl >/dev/null; then
  step "apt-get install openssl"
  bash "$repo/scripts/apt_install.sh" openssl
fi
pylib=$target/tls/pylib
. "$repo/scripts/peers_install.sh"

step "cargo build --release -p lanes --example outbound_peers"
cargo build --release --locked -p lanes --example outbound_peers

mkdir -p "$out"
rm -rf "$out/certs" "$out"/*.log
bash "$repo/tests/tls/make_certs.sh" "$out/certs" >/dev/null

pids=()
on_exit() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  rm -rf "$out/certs"
  exit "$rc"
}
trap on_exit EXIT

# Starts a peer server in the background; waits for its line of ports (at most 30 s).
start_peer() {
  local name=$1
  shift
  "$@" "$out/certs/leaf.pem" "$out/certs/leaf.key" >"$out/$name.ports" 2>"$out/$name.log" &
  pids+=($!)
  for _ in $(seq 1 120); do
    [ -s "$out/$name.ports" ] && return 0
    sleep 0.25
  done
  cat "$out/$name.log" >&2
  die "the $name peer server did not start"
}
start_peer python python3 "$repo/tests/outbound/peer_server.py"
start_peer node node "$repo/tests/outbound/peer_server.mjs"
port() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$out/$1.ports" "$2"; }
peer() { echo "$1:$(port "$1" ws):$(port "$1" ws_nct):$(port "$1" wss)"; }

timeout 300 "$target/release/examples/outbound_peers" --ca "$out/certs/ca.pem" \
  --peer "$(peer python)" --peer "$(peer node)" \
  --silent "$(port python silent)" --drop "$(port python drop)" \
  --bad-accept "$(port python bad_accept)"
