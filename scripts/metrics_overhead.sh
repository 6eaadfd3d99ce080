#!/usr/bin/env bash
# What the metrics cost the echo hot path: the current build of examples/echo against a build
# of the commit before metrics (BASE, default e8d9173), side by side.
#   1. instructions per echoed message under callgrind (repeatable whatever the machine does),
#      at depth 1 and depth 16;
#   2. messages/s and messages per server CPU-second, runs alternating between the two builds,
#      server pinned to core 0 and lanes-load to core 1, medians and the ratio current/base.
#
# Usage: scripts/metrics_overhead.sh [BASE]
#   LANES_OVERHEAD_REPEAT=5   runs per build and load
#   LANES_OVERHEAD_SECONDS=2  length of each run
#   LANES_OVERHEAD_LOADS="-c 100 -d 1 -s 20;-c 100 -d 16 -s 20;-c 10 -d 1 -s 16384"
#                             the echo loads, separated by ';'
#   LANES_OVERHEAD_SKIP_CALLGRIND=1  throughput only
# Loopback only; everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:-e8d9173}
repeat=${LANES_OVERHEAD_REPEAT:-5}
seconds=${LANES_OVERHEAD_SECONDS:-2}
work=target/overhead
mkdir -p "$work"

# The base build, in a worktree of its own (kept between runs).
if [ ! -x "$work/base-target/release/examples/echo" ] || [ "$(cat "$work/base-rev" 2>/dev/null)" != "$base" ]; then
  rm -rf "$work/base-src"
  git worktree prune
  git worktree add --detach "$work/base-src" "$base" >/dev/null
  (cd "$work/base-src" && CARGO_TARGET_DIR="$PWD/../base-target" cargo build --release --locked --quiet -p lanes --example echo)
  echo "$base" >"$work/base-rev"
fi
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load
current=target/release/examples/echo
baseline=$work/base-target/release/examples/echo

if [ -z "${LANES_OVERHEAD_SKIP_CALLGRIND:-}" ]; then
  echo "== callgrind: instructions per echoed message (current = $(git rev-parse --short HEAD), base = $base)"
  for load in "-c 100 -d 1 -s 20" "-c 10 -d 16 -s 20"; do
    LANES_CALLGRIND_LOAD="$load" scripts/callgrind.sh "$PWD/$current" "$PWD/$baseline" 2>/dev/null \
      | sed -e "s|$PWD/$current|current|" -e "s|$PWD/$baseline|base|"
  done
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# One run: prints "messages_per_s messages_per_server_cpu_s".
run_once() {
  local server=$1 load=$2 port pid
  port=$(free_port)
  taskset -c 0 "$server" --addr "127.0.0.1:$port" --cores 1 --no-pin >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null && break
    sleep 0.05
  done
  # shellcheck disable=SC2086
  taskset -c 1 target/release/lanes-load --addr "127.0.0.1:$port" --duration "$seconds" --warmup 0.5 \
    --server-pid "$pid" --quiet --json echo $load \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["messages_per_s"], r["messages_per_server_cpu_s"] or 0)'
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

echo "== throughput: $repeat alternating runs of ${seconds}s per build (server core 0, lanes-load core 1)"
IFS=';' read -r -a loads <<<"${LANES_OVERHEAD_LOADS:--c 100 -d 1 -s 20;-c 100 -d 16 -s 20;-c 10 -d 1 -s 16384}"
for load in "${loads[@]}"; do
  : >"$work/current.txt"
  : >"$work/base.txt"
  for _ in $(seq "$repeat"); do
    run_once "$current" "$load" >>"$work/current.txt"
    run_once "$baseline" "$load" >>"$work/base.txt"
  done
  python3 - "$load" "$work/current.txt" "$work/base.txt" <<'PY'
import statistics, sys
load, cur_path, base_path = sys.argv[1:]
def cols(path):
    rows = [list(map(float, l.split())) for l in open(path) if l.strip()]
    return [r[0] for r in rows], [r[1] for r in rows]
cur_rate, cur_cpu = cols(cur_path)
base_rate, base_cpu = cols(base_path)
m = statistics.median
print(f"echo {load}: msg/s current {m(cur_rate):,.0f} base {m(base_rate):,.0f} ratio {m(cur_rate)/m(base_rate):.3f}; "
      f"msg per server CPU-s current {m(cur_cpu):,.0f} base {m(base_cpu):,.0f} ratio {m(cur_cpu)/m(base_cpu):.3f}")
PY
done
