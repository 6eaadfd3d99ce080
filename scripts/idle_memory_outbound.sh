#!/usr/bin/env bash
# Memory per idle outbound connection beside inbound: examples/echo pinned to core 0 accepts N
# connections that examples/outbound_idle (pinned to core 1, one worker) opens to it; prints the
# growth of each process's resident memory per connection (outbound: the client's, inbound: the
# server's). Loopback only; bounded in time.
#
# Usage: scripts/idle_memory_outbound.sh [N]     (default 1000)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
n=${1:-1000}
target=${CARGO_TARGET_DIR:-$repo/target}

cargo build --release --locked -p lanes --example echo --example outbound_idle
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((n + 100)) ] || { echo "need $((n + 100)) descriptors" >&2; exit 1; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
taskset -c 0 "$target/release/examples/echo" --addr "127.0.0.1:$port" --cores 1 --no-pin 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.1
done
taskset -c 1 timeout 120 "$target/release/examples/outbound_idle" "ws://127.0.0.1:$port/" "$n" \
  --server-pid "$server"
