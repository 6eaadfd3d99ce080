#!/usr/bin/env bash
# The echo server's resident memory per idle connection, ws against wss, at N connections
# (default 10,000): examples/echo with one worker pinned to core 0, lanes-load's idle mode pinned
# to core 1 holding N connections (over TLS: full handshakes first, then resumed ones), and the
# server's VmRSS read from /proc before the connections and once all N are open and idle.
# A throwaway certificate is made by openssl for the run. Loopback only; bounded in time.
#
# Usage: scripts/idle_memory_tls.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
bash tests/tls/make_certs.sh "$dir" >/dev/null
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
for scheme in ws wss; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  server_tls=() load_tls=()
  if [ "$scheme" = wss ]; then
    server_tls=(--tls-cert "$dir/leaf.pem" --tls-key "$dir/leaf.key")
    load_tls=(--ca "$dir/ca.pem")
  fi
  taskset -c 0 target/release/examples/echo --addr "127.0.0.1:$port" --cores 1 --no-pin \
    "${server_tls[@]}" 2>/dev/null &
  server=$!
  pids+=("$server")
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" \
      2>/dev/null && break
    sleep 0.1
  done
  sleep 0.5
  before=$(rss_kib "$server")
  fds_before=$(ls "/proc/$server/fd" | wc -l)
  taskset -c 1 target/release/lanes-load --addr "127.0.0.1:$port" "${load_tls[@]}" \
    --duration 120 --warmup 0 --quiet idle -n "$n" >/dev/null &
  load=$!
  pids+=("$load")
  open=0
  for _ in $(seq 1200); do
    open=$(($(ls "/proc/$server/fd" | wc -l) - fds_before))
    [ "$open" -ge "$n" ] && break
    sleep 0.1
  done
  sleep 2
  after=$(rss_kib "$server")
  kill "$load" "$server" 2>/dev/null || true
  wait "$load" "$server" 2>/dev/null || true
  [ "$open" -ge "$n" ] || { echo "$scheme: only $open of $n connections opened" >&2; exit 1; }
  echo "$scheme: VmRSS ${before} KiB before, ${after} KiB with $open idle connections:" \
    "$(((after - before) * 1024 / open)) bytes per idle connection"
done
