#!/usr/bin/env bash
# What placing an upgrade on a worker costs: server CPU per WebSocket handshake (connect,
# upgrade, close) with no placement, placed on the worker that accepted it (nothing moves), and
# placed on the other worker (every connection moves before its 101). Three examples/echo
# servers with two workers each (--placement kernel, own, next), all on core 0; lanes-load on
# core 1 runs `connect` against each in turn, the order rotated every round. Prints every
# round's figures and, per row, the median and range of server µs per handshake and the
# difference to no placement. Loopback only; every run is bounded in time.
#
# Usage: scripts/placement_cost.sh [ROUNDS]      (default 5; each round takes about 25 s)
#   LANES_PLACEMENT_COST_SECONDS=S   seconds per run after 1 s of warm-up (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
duration=${LANES_PLACEMENT_COST_SECONDS:-3}
cores=$(nproc)
server_core=0
client_core=$((cores > 1 ? 1 : 0))
json_out=$(mktemp)

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load

. scripts/echo_servers.sh
cleanup() {
  stop_echo_servers
  rm -f "$json_out"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

placements=(kernel own next)
declare -A port pid
for placement in "${placements[@]}"; do
  port[$placement]=$(free_port)
  pid[$placement]=$(start_echo_server "${port[$placement]}" --cores 2 --no-pin --no-deflate \
    --placement "$placement")
  echo_pids+=("${pid[$placement]}")
done

for round in $(seq "$rounds"); do
  echo "==> round $round of $rounds"
  for i in 0 1 2; do
    placement=${placements[$(((i + round) % 3))]}
    for concurrency in 1 20; do
      taskset -c "$client_core" target/release/lanes-load --addr "127.0.0.1:${port[$placement]}" \
        --server-pid "${pid[$placement]}" --json --quiet --duration "$duration" --warmup 1 \
        connect -c "$concurrency" |
        python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); r["placement"] = sys.argv[1]; r["round"] = int(sys.argv[2]); print(json.dumps(r))' \
          "$placement" "$round" >>"$json_out"
    done
  done
done

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $cores cores, kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); servers: examples/echo, 2 workers on core $server_core; client: lanes-load connect on core $client_core; ${duration} s per run after 1 s warm-up; $rounds rounds"
echo
python3 - "$json_out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("Server CPU per handshake (µs): median [lowest - highest]; every round; the median's difference to no placement")
print()
print("| handshakes in flight | placement | µs per handshake | every round | vs kernel |")
print("|---|---|---|---|---|")
for concurrency in (1, 20):
    medians = {}
    for placement in ("kernel", "own", "next"):
        runs = sorted((r for r in rows if r["placement"] == placement and r["concurrency"] == concurrency), key=lambda r: r["round"])
        us = [1e6 * r["server_cpu_s"] / r["handshakes"] for r in runs if r["handshakes"]]
        if not us:
            continue
        medians[placement] = statistics.median(us)
        diff = "" if placement == "kernel" else f"{medians[placement] - medians['kernel']:+.1f} µs ({medians[placement] / medians['kernel']:.2f}×)"
        label = {"kernel": "none (the kernel's worker)", "own": "placed on its own worker", "next": "moved to the other worker"}[placement]
        print(f"| {concurrency} | {label} | {medians[placement]:.1f} [{min(us):.1f} - {max(us):.1f}] | {', '.join(f'{u:.1f}' for u in us)} | {diff} |")
PY
