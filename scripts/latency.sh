#!/usr/bin/env bash
# The latency tail at fixed offered rates, with busy polling off and on: examples/echo (one
# worker) pinned to core 1, `lanes-load echo --rate R` (open loop: a fixed schedule whatever the
# echoes, each round trip measured from when its message was due) pinned to core 0, 100
# connections x 20 B. For each rate (default 10,000, 50,000 and 100,000 messages/s in total)
# the servers take turns, round after round: lanes without busy polling, lanes with
# `--busy-poll-us W` (default 200), and optionally a baseline echo binary. Prints a table of
# medians [min - max] over the rounds: p50 ... p99.99 and max round trip, the rate sent against
# the rate asked, the server's CPU (share of its core, and microseconds per message) and
# whether the client kept its schedule in every round (a run that did not is flagged "no": its
# figures are the client's, not the server's). Loopback only; every run is bounded in time.
#
# Usage: scripts/latency.sh [ROUNDS]        (default 3; each round is 6 s per rate and server)
#   LANES_LATENCY_RATES="10000 50000"       the rates (messages/s, all connections together)
#   LANES_LATENCY_BUSY_POLL_US=200          the busy-poll window of the "on" rows
#   LANES_LATENCY_BASELINE=PATH             also run this echo server binary (same options as
#                                           examples/echo), labelled LANES_LATENCY_BASELINE_NAME
#   LANES_LATENCY_DURATION=5                seconds measured per run (after 1 s of warm-up)
#   LANES_LATENCY_JSON=FILE                 also keep lanes-load's JSON, one object per run
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rounds=${1:-3}
read -r -a rates <<<"${LANES_LATENCY_RATES:-10000 50000 100000}"
busy_us=${LANES_LATENCY_BUSY_POLL_US:-200}
duration=${LANES_LATENCY_DURATION:-5}
baseline=${LANES_LATENCY_BASELINE:-}
baseline_name=${LANES_LATENCY_BASELINE_NAME:-baseline}
target=${CARGO_TARGET_DIR:-target}
server_core=1
client_core=0
logs=$(mktemp -d)
rows=${LANES_LATENCY_JSON:-$logs/rows.jsonl}
: >"$rows"

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load

# pids, stop_all, free_port, wait_port
source scripts/processes.sh
cleanup() {
  stop_all
  rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The servers, as "label|command".
servers=("off|$target/release/examples/echo" "${busy_us} µs|$target/release/examples/echo --busy-poll-us $busy_us")
if [ -n "$baseline" ]; then
  servers+=("$baseline_name|$baseline")
fi

# run ROUND RATE LABEL COMMAND...: one measured run, its JSON appended to $rows.
run() {
  local round=$1 rate=$2 label=$3
  shift 3
  local port
  port=$(free_port)
  taskset -c "$server_core" "$@" --addr "127.0.0.1:$port" --core-list "$server_core" \
    2>>"$logs/server.log" &
  local server=$!
  pids+=("$server")
  wait_port "$port" "$server" "the echo server"
  local out=$logs/run.json status=0
  taskset -c "$client_core" "$target/release/lanes-load" --addr "127.0.0.1:$port" --threads 1 \
    --duration "$duration" --warmup 1 --server-pid "$server" --json --quiet \
    echo --connections 100 --size 20 --rate "$rate" >"$out" || status=$?
  stop_all
  # Exit 1 is a run whose client did not keep the schedule: kept, and flagged in the table.
  if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
    echo "lanes-load failed ($status) at $rate/s against $label" >&2
    exit 1
  fi
  python3 - "$out" "$round" "$label" >>"$rows" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
run["round"] = int(sys.argv[2])
run["server"] = sys.argv[3]
print(json.dumps(run))
EOF
}

for round in $(seq "$rounds"); do
  for rate in "${rates[@]}"; do
    for server in "${servers[@]}"; do
      label=${server%%|*}
      read -r -a command <<<"${server#*|}"
      echo "==> round $round/$rounds: $rate msg/s, busy poll: $label"
      run "$round" "$rate" "$label" "${command[@]}"
    done
  done
done

python3 - "$rows" "$busy_us" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def spread(values, fmt="{:,.0f}"):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))} – {fmt.format(max(values))}]"
order = []
for r in runs:
    key = (r["open_loop"]["offered_per_s"], r["server"])
    if key not in order:
        order.append(key)
order.sort(key=lambda k: k[0])
print()
print("100 connections x 20 B, open loop; round trip in µs from each message's due time;")
print(f"medians [min – max] of {max(r['round'] for r in runs)} rounds; server on core 1, lanes-load on core 0")
print()
print("| msg/s | busy poll | p50 | p90 | p99 | p99.9 | p99.99 | max | sent/s | server CPU % | server µs/msg | schedule kept |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for rate, server in order:
    rs = [r for r in runs if r["open_loop"]["offered_per_s"] == rate and r["server"] == server]
    lat = lambda k: spread([r["latency_us"][k] for r in rs])
    cpu_share = [100 * r["server_cpu_s"] / r["duration_s"] for r in rs]
    cpu_per_msg = [1e6 * r["server_cpu_s"] / max(r["messages"], 1) for r in rs]
    kept = sum(1 for r in rs if r["open_loop"]["schedule_kept"])
    print(f"| {rate:,} | {server} | {lat('p50')} | {lat('p90')} | {lat('p99')} | {lat('p99_9')} | "
          f"{lat('p99_99')} | {lat('max')} | {spread([r['open_loop']['sent_per_s'] for r in rs])} | "
          f"{spread(cpu_share)} | {spread(cpu_per_msg, '{:.2f}')} | "
          f"{'yes' if kept == len(rs) else f'no ({len(rs) - kept} of {len(rs)})'} |")
EOF
