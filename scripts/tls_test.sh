#!/usr/bin/env bash
# wss:// (TLS) end-to-end tests of examples/echo: real clients with certificate verification on,
# hostile clients, and the TLS counters of /metrics.
#
# Makes a throwaway CA and a leaf for localhost/127.0.0.1 with openssl (tests/tls/make_certs.sh,
# into a temporary folder under target/tls that is removed at the end), builds examples/echo
# (release), starts it pinned to core 0 (taskset -c 0, --core-list 0) with --tls-cert, --tls-key
# and --metrics-addr, and runs, pinned to core 1:
#   1. tests/tls/echo_client.py: Python `websockets` over wss:// (verified against the test CA),
#      text and binary messages of 0 B, 125 B, 64 KiB and 1 MiB echoed byte for byte; a client
#      without the test CA must be refused;
#   2. tests/tls/echo_client.mjs: Node `ws` over wss:// (verified, permessage-deflate), the same;
#   3. tests/tls/hostile.py: TLS 1.1 only, 300 random bytes, a stalled handshake, plain HTTP, a
#      client that rejects the certificate, half a ClientHello: each dropped within the
#      handshake timeout (the stalled one at it) and counted under its reason in
#      lanes_tls_handshake_failures_total, while a bystander wss:// client keeps echoing.
# Then the server must still run and its log must hold no panic. Prints PASS/FAIL lines, NOTE
# lines for known deviations of the server that the checks accept (repeated at the end), and
# "tls test: N passed, M failed"; exits non-zero on any failure. About 25 s after the build.
#
# Usage: scripts/tls_test.sh      (from anywhere)
#
# Installs what is missing: openssl (apt-get), the Python packages of tests/tls/requirements.txt
# (pip --target into target/tls/pylib) and tests/tls/node_modules (npm ci from
# tests/tls/package-lock.json); each redone when its pin file changes. Needs Python 3.10 or
# later with pip, Node.js 20 or later and npm.
#
# Environment:
#   LANES_TLS_OUT  where the server's log, the Python packages and the certificates go
#                  (default target/tls)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

target=${CARGO_TARGET_DIR:-$repo/target}
out=${LANES_TLS_OUT:-$target/tls}
tests=$repo/tests/tls
# examples/echo has no option for it: lanes' default, Timeouts::handshake (10 s).
handshake_timeout_s=10

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "tls_test.sh: $*" >&2
  echo "FAIL: tls test: $*"
  exit 1
}

# --- 1. openssl, the Python and Node clients -----------------------------------------------------

step "TLS (wss://) tests of examples/echo"

if ! command -v openssl >/dev/null; then
  step "apt-get install openssl"
  bash "$repo/scripts/apt_install.sh" openssl
fi
echo "openssl: $(openssl version)"

pylib=$out/pylib
. "$repo/scripts/peers_install.sh"

# --- 2. certificates, the server -----------------------------------------------------------------

step "cargo build --release -p lanes --example echo"
cargo build --release --locked -p lanes --example echo

mkdir -p "$out"
certs=$(mktemp -d "$out/certs.XXXXXX")
rm -f "$out/server.log"
log=$out/server.log

# Test server checks and shutdown: port_open, stop_server.
. "$repo/scripts/server_process.sh"

on_exit() {
  local rc=$?
  stop_server
  rm -rf "$certs"
  if [ "$rc" -ne 0 ] && [ -s "$log" ]; then
    echo "--- last lines of $log" >&2
    tail -n 20 "$log" >&2
  fi
  echo "wall time: $SECONDS s"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "test certificates (openssl): a throwaway CA and a leaf for localhost, 127.0.0.1"
"$tests/make_certs.sh" "$certs"
openssl x509 -in "$certs/leaf.pem" -noout -subject -ext subjectAltName | tr '\n' ' '
echo

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
metrics_port=$(free_port)
[ "$metrics_port" != "$port" ] || metrics_port=$(free_port)

# Core 0 for the server; the clients on core 1 when there is one.
client_pin=()
[ "$(nproc)" -ge 2 ] && client_pin=(taskset -c 1)

step "start examples/echo with TLS on 127.0.0.1:$port, metrics on 127.0.0.1:$metrics_port (core 0)"
setsid taskset -c 0 "$target/release/examples/echo" --addr "127.0.0.1:$port" --core-list 0 \
  --tls-cert "$certs/leaf.pem" --tls-key "$certs/leaf.key" \
  --metrics-addr "127.0.0.1:$metrics_port" >"$log" 2>&1 </dev/null &
server_pid=$!
for _ in $(seq 100); do # 10 s
  (exec 3<>"/dev/tcp/127.0.0.1/$metrics_port") 2>/dev/null && port_open && break
  kill -0 "$server_pid" 2>/dev/null || die "the server exited before listening (log: $log)"
  sleep 0.1
done
port_open || die "the server does not accept connections on 127.0.0.1:$port after 10 s"

# --- 3. the clients ------------------------------------------------------------------------------

results=$out/results.txt
: >"$results"
# Runs a client (bounded by timeout), its output also kept in $results; a non-zero exit with no
# FAIL line of its own becomes one.
run_client() {
  local name=$1 limit=$2
  shift 2
  step "$name"
  local rc=0
  timeout --kill-after=5 "$limit" "${client_pin[@]}" "$@" 2>&1 | tee -a "$results" || rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && ! tail -n 100 "$results" | grep -q '^FAIL'; then
    echo "FAIL: $name: exit status $rc" | tee -a "$results"
  fi
}

run_client "python websockets over wss://" 60 \
  python3 "$tests/echo_client.py" "wss://127.0.0.1:$port" "$certs/ca.pem"
run_client "node ws over wss://" 70 \
  node "$tests/echo_client.mjs" "wss://127.0.0.1:$port" "$certs/ca.pem"
run_client "hostile clients beside a bystander (about ${handshake_timeout_s} s)" $((handshake_timeout_s + 50)) \
  python3 "$tests/hostile.py" --url "wss://127.0.0.1:$port" --ca "$certs/ca.pem" \
  --metrics "http://127.0.0.1:$metrics_port/metrics" --handshake-timeout "$handshake_timeout_s"

step "the server after the tests"
if kill -0 "$server_pid" 2>/dev/null; then
  echo "PASS: server: still running" | tee -a "$results"
else
  echo "FAIL: server: exited during the tests (log: $log)" | tee -a "$results"
fi
if grep -q 'panicked' "$log"; then
  echo "FAIL: server: its log holds a panic: $(grep -m1 'panicked' "$log")" | tee -a "$results"
else
  echo "PASS: server: no panic in its log" | tee -a "$results"
fi

passed=$(grep -c '^PASS' "$results" || true)
failed=$(grep -c '^FAIL' "$results" || true)
echo
# Known deviations of the server, accepted by the checks but worth fixing.
grep '^NOTE' "$results" || true
echo "tls test: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
