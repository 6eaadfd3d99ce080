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
server_core=0
. "$repo/scripts/echo_servers.sh"
trap stop_echo_servers EXIT
port=$(free_port)
server=$(start_echo_server "$port")
echo_pids+=("$server")
taskset -c 1 timeout 120 "$target/release/examples/outbound_idle" "ws://127.0.0.1:$port/" "$n" \
  --server-pid "$server"
