#!/usr/bin/env bash
# examples/game under load: 2,000 players in 200 rooms, 10 inputs a second each, 20 Hz room
# states. The game server runs two workers on core 0 (rooms placed on them by key, logins
# answered by its login thread); `lanes-load game` runs on core 1 and measures the interval
# between two states each player receives, and the server's CPU. Repeated RUNS times with a
# fresh server each; prints each run's line and the JSON lines. Loopback only; bounded in time.
#
# Usage: scripts/game_load.sh [RUNS]        (default 3; each run takes about 20 s)
#   LANES_GAME_PLAYERS=2000 LANES_GAME_ROOMS=200 LANES_GAME_INPUTS=10 LANES_GAME_SECONDS=10
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
players=${LANES_GAME_PLAYERS:-2000}
rooms=${LANES_GAME_ROOMS:-200}
inputs=${LANES_GAME_INPUTS:-10}
seconds=${LANES_GAME_SECONDS:-10}
cores=$(nproc)
server_core=0
client_core=$((cores > 1 ? 1 : 0))

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --example game
cargo build --release --locked --quiet -p lanes-load

. scripts/echo_servers.sh # free_port
server_pid=""
json_out=$(mktemp)
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap 'cleanup; rm -f "$json_out"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n 65536 2>/dev/null || true

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $cores cores, kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); examples/game: 2 workers on core $server_core; lanes-load game on core $client_core; $players players, $rooms rooms, $inputs inputs/s each; $seconds s measured after 2 s"
for run in $(seq "$runs"); do
  port=$(free_port)
  taskset -c "$server_core" target/release/examples/game --addr "127.0.0.1:$port" --cores 2 \
    --no-pin --login-latency-ms 1 >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null && break
    sleep 0.1
  done
  echo "==> run $run of $runs"
  taskset -c "$client_core" target/release/lanes-load --addr "127.0.0.1:$port" \
    --server-pid "$server_pid" --warmup 2 --duration "$seconds" --json --quiet game \
    -n "$players" --rooms "$rooms" --inputs-per-s "$inputs" >"$json_out" || true
  python3 - "$json_out" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read())
i = r["state_interval_us"]
cores = r["server_cores"]
print(f"  states/s {r['states_per_s']:,.0f}, inputs/s {r['inputs_per_s_sent']:,.0f}; "
      f"state interval ms p50 {i['p50'] / 1000:.1f} p99 {i['p99'] / 1000:.1f} max {i['max'] / 1000:.1f}; "
      f"server CPU {100 * cores:.1f}% of a core" if cores is not None else "server CPU unknown")
print(f"  connected in {r['connect_s']:.1f} s; disconnected {r['disconnected']}, players without a state {r['silent']}")
print("  " + json.dumps(r))
PY
  cleanup
  server_pid=""
done
