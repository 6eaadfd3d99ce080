#!/usr/bin/env bash
# Fan-out figures: builds examples/ticker and lanes-load (release); for each row of a small
# matrix starts the ticker pinned to core 0 with one worker, publishing RATE timestamped updates
# per second to every connection, and runs lanes-load's fanout mode (--source server) pinned to
# core 1 with N subscribers; then prints a table: deliveries/s against the offered N x RATE,
# delivery latency percentiles (publish call to receipt, across the two processes), missed
# updates, and the CPU each side used. Stops everything it started, also on Ctrl-C or failure.
# Loopback only; each run takes the warm-up and duration (1 + 3 s) plus the time to connect
# the subscribers: well under a second, but up to ~10 s for 10,000 while the server is
# saturated (it accepts at most 64 connections per loop iteration, and its iterations grow
# long), so the whole script takes about a minute.
#
# Usage: scripts/fanout.sh [quick]        (quick: 1 s runs instead of 3 s)
#   LANES_FANOUT_JSON=FILE  also write one JSON object per run to FILE
set -euo pipefail
cd "$(dirname "$0")/.."

duration=3
warmup=1
if [ "${1:-}" = "quick" ]; then
  duration=1
  warmup=0.5
fi
cores=$(nproc)
server_core=0
client_core=$((cores > 1 ? 1 : 0))
# Binaries from cargo's target directory (CARGO_TARGET_DIR if set, else target/).
target_dir=${CARGO_TARGET_DIR:-target}
json_out=${LANES_FANOUT_JSON:-$(mktemp)}
: >"$json_out"
server_log=$(mktemp)
# subscribers, updates per second: 1,000 and 10,000 subscribers at the same publish rate,
# a moderate one and 1,000/s (1M and 10M deliveries/s offered: the server's core saturates
# and delivers in batches, with the latency that costs).
matrix=("1000 100" "10000 100" "1000 1000" "10000 1000")

# 10,000 connections need more descriptors than the usual soft limit, on both sides.
ulimit -n "$(ulimit -Hn)"

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --example ticker
cargo build --release --locked --quiet -p lanes-load

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  rm -f "$server_log"
  if [ -z "${LANES_FANOUT_JSON:-}" ]; then
    rm -f "$json_out"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server PORT RATE: the ticker on 127.0.0.1:PORT, pinned to the server core.
start_server() {
  taskset -c "$server_core" "$target_dir/release/examples/ticker" --addr "127.0.0.1:$1" --cores 1 \
    --no-pin --rate "$2" 2>>"$server_log" &
  server_pid=$!
  for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { echo "the ticker exited:" >&2; cat "$server_log" >&2; exit 1; }
    sleep 0.1
  done
  echo "the ticker did not start listening on port $1" >&2
  exit 1
}

total=${#matrix[@]}
i=0
for row in "${matrix[@]}"; do
  read -r subscribers rate <<<"$row"
  i=$((i + 1))
  port=$(free_port)
  echo "==> [$i/$total] $subscribers subscribers x $rate updates/s (ticker on 127.0.0.1:$port, core $server_core; lanes-load on core $client_core)"
  start_server "$port" "$rate"
  # A run with losses exits 1 but still prints its figures: keep them and go on.
  status=0
  taskset -c "$client_core" "$target_dir/release/lanes-load" --addr "127.0.0.1:$port" --json --quiet \
    --duration "$duration" --warmup "$warmup" --server-pid "$server_pid" \
    fanout --source server -n "$subscribers" >"$json_out.row" || status=$?
  python3 - "$json_out.row" "$rate" <<'PY' >>"$json_out"
import json, sys
row = json.loads(open(sys.argv[1]).read())
row["server_rate"] = int(sys.argv[2])
print(json.dumps(row))
PY
  rm -f "$json_out.row"
  if [ "$status" -ne 0 ]; then
    echo "    (lanes-load exit $status: losses or disconnections, see the table)"
  fi
  stop_server
done

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $cores cores, kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); server: examples/ticker, 1 worker and its producer thread on core $server_core; client: lanes-load fanout --source server, 1 thread on core $client_core; ${duration} s per run after ${warmup} s warm-up; 16-byte updates"
echo
python3 - "$json_out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| subscribers | updates/s | offered deliveries/s | deliveries/s | p50 µs | p99 µs | p99.9 µs | max µs | missed | disconnected | server CPU | client CPU |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    lat = r["latency_us"]
    seconds = r["duration_s"]
    server = r.get("server_cpu_s")
    server = f"{server / seconds:.0%}" if server is not None else "?"
    client = f"{r['client_cpu_s'] / seconds:.0%}"
    print(f"| {r['subscribers']:,} | {r['server_rate']:,} | {r['subscribers'] * r['server_rate']:,} "
          f"| {r['deliveries_per_s']:,.0f} | {lat['p50']:,.0f} | {lat['p99']:,.0f} | {lat['p99_9']:,.0f} "
          f"| {lat['max']:,.0f} | {r['missed']} | {r['disconnected']} | {server} | {client} |")
PY
echo
echo "deliveries/s counts updates published in the window and received by each subscriber; CPU is"
echo "the share of one core each process used over the window (the client's near 100% means it"
echo "measured itself as much as the server)."
