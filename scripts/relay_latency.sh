#!/usr/bin/env bash
# The latency examples/relay adds: examples/ticker publishes RATE timestamped updates per second
# (its stamp: the publish time); lanes-load's fanout mode subscribes N connections and measures
# each delivery's latency from that stamp. Each round runs two configurations back to back:
#   direct   the N subscribers on the ticker itself;
#   relayed  the N subscribers on examples/relay, whose upstream connection is to the ticker
#            (one update crosses one more process: ticker -> relay -> subscribers).
# The ticker and the relay (one worker each) share core 0; lanes-load runs on core 1. Prints
# the p50 and p99 of both per round and the added latency (relayed minus direct) with its
# median over the rounds. Loopback only; about 10 s per round.
#
# Usage: scripts/relay_latency.sh [ROUNDS] [N] [RATE]     (default 5 rounds, 1000, 1000)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rounds=${1:-5}
n=${2:-1000}
rate=${3:-1000}
target=${CARGO_TARGET_DIR:-$repo/target}
ulimit -n "$(ulimit -Hn)"

cargo build --release --locked --quiet -p lanes --example ticker --example relay
cargo build --release --locked --quiet -p lanes-load

# pids, stop_all, free_port, wait_port
. "$repo/scripts/processes.sh"
trap stop_all EXIT
# run PORT: lanes-load fanout against 127.0.0.1:PORT; prints "p50 p99" in microseconds.
run() {
  taskset -c 1 "$target/release/lanes-load" --addr "127.0.0.1:$1" --json --quiet \
    --duration 3 --warmup 1 fanout --source server -n "$n" |
    python3 -c 'import json, sys; r = json.load(sys.stdin); l = r["latency_us"]; print(round(l["p50"]), round(l["p99"]))'
}

results=$(mktemp)
for round in $(seq 1 "$rounds"); do
  ticker_port=$(free_port)
  taskset -c 0 "$target/release/examples/ticker" --addr "127.0.0.1:$ticker_port" --cores 1 \
    --no-pin --rate "$rate" 2>/dev/null &
  pids+=($!)
  wait_port "$ticker_port"
  direct=$(run "$ticker_port")
  relay_port=$(free_port)
  taskset -c 0 "$target/release/examples/relay" --addr "127.0.0.1:$relay_port" --cores 1 \
    --no-pin --upstream "ws://127.0.0.1:$ticker_port/" 2>/dev/null &
  pids+=($!)
  wait_port "$relay_port"
  relayed=$(run "$relay_port")
  stop_all
  echo "round $round: direct p50/p99 $direct µs, relayed $relayed µs" | tee -a "$results"
done
python3 - "$results" "$n" "$rate" <<'PY'
import re, statistics, sys
rows = [
    re.search(r"direct p50/p99 (\d+) (\d+) µs, relayed (\d+) (\d+)", line).groups()
    for line in open(sys.argv[1])
]
rows = [((a, b), (c, d)) for a, b, c, d in rows]
d50 = [int(r[0][0]) for r in rows]; d99 = [int(r[0][1]) for r in rows]
r50 = [int(r[1][0]) for r in rows]; r99 = [int(r[1][1]) for r in rows]
add50 = [b - a for a, b in zip(d50, r50)]; add99 = [b - a for a, b in zip(d99, r99)]
m = statistics.median
print()
print(f"{sys.argv[2]} subscribers, {sys.argv[3]} updates/s, {len(rows)} rounds (median [range], µs)")
print("| | p50 | p99 |")
print("|---|---|---|")
print(f"| direct (ticker) | {m(d50)} [{min(d50)} – {max(d50)}] | {m(d99)} [{min(d99)} – {max(d99)}] |")
print(f"| relayed | {m(r50)} [{min(r50)} – {max(r50)}] | {m(r99)} [{min(r99)} – {max(r99)}] |")
print(f"| added by the relay | {m(add50)} [{min(add50)} – {max(add50)}] | {m(add99)} [{min(add99)} – {max(add99)}] |")
PY
rm -f "$results"
