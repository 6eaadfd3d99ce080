#!/usr/bin/env bash
# The broker hop's added latency: 1,000 updates/s from examples/ticker to 3,000 subscribers,
# on one node, then over three nodes sharing the topic through nats-server, then through
# redis-server. Over three nodes the ticker on node A produces and nodes B and C (--rate 0)
# get the updates through the broker; one lanes-load holds 2,000 subscribers on B and C (the
# cross-node deliveries) while another holds 1,000 on A (same-node, so that every node's load
# is as on one node). Latency is from the producer's publish call to the receipt, across
# processes (the update's wall-clock stamp). Every server, the broker included, is pinned to
# core 1 and the load generators to core 0; the configurations take turns, ROUNDS times, and
# the table gives each figure's median and range over the rounds.
#
# The bridge's own histogram on node B (lanes_bridge_latency_seconds: from the publish on node A
# to the hand-over to B's workers, so without the load generators' share of the time) is
# printed too, as the power-of-two bucket bounds that hold its quantiles.
#
# Usage: scripts/bridge_latency.sh [ROUNDS]     (default 3; about 40 s per round)
#   LANES_BRIDGE_RATE=N     updates per second (default 1000)
#   LANES_BRIDGE_SUBSCRIBERS=N  subscribers in all (default 3000, a multiple of 3); 3 measures
#                           the hop itself, with one subscriber per node and nothing queueing
#   LANES_BRIDGE_JSON=FILE  also write one JSON object per lanes-load run to FILE
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rounds=${1:-3}
rate=${LANES_BRIDGE_RATE:-1000}
subscribers=${LANES_BRIDGE_SUBSCRIBERS:-3000}
third=$((subscribers / 3))
target=${CARGO_TARGET_DIR:-target}
server_core=1
client_core=0
warmup=2
duration=8
json_out=${LANES_BRIDGE_JSON:-$(mktemp)}
: >"$json_out"
logs=$(mktemp -d)

ulimit -n "$(ulimit -Hn)"
echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --features nats,redis --example ticker
cargo build --release --locked --quiet -p lanes-load

# pids, stop_all, free_port, wait_port; start_brokers
. scripts/processes.sh
. scripts/brokers.sh
trap 'stop_all; kill "${broker_pids[@]}" 2>/dev/null; rm -rf "$logs"; [ -n "${LANES_BRIDGE_JSON:-}" ] || rm -f "$json_out"' EXIT
start_brokers $server_core "$logs"

# ticker PORT RATE [--broker URL]: a one-worker ticker node on core $server_core.
ticker() {
  local port=$1 rate=$2
  shift 2
  taskset -c $server_core "$target/release/examples/ticker" --addr "127.0.0.1:$port" --cores 1 \
    --no-pin --rate "$rate" --metrics-path /metrics "$@" >>"$logs/ticker.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
}

# load LABEL N ADDR [SPREAD]: lanes-load with N subscribers, in the background.
load_pids=()
load() {
  local label=$1 n=$2 addr=$3 spread=${4:-}
  local extra=()
  [ -z "$spread" ] || extra=(--spread "$spread")
  (
    taskset -c $client_core "$target/release/lanes-load" --addr "$addr" --json --quiet \
      --warmup $warmup --duration $duration fanout --source server -n "$n" "${extra[@]}" \
      >"$logs/$label.json" 2>>"$logs/load.log" || true
  ) &
  load_pids+=($!)
}

for round in $(seq "$rounds"); do
  for config in one nats redis; do
    echo "==> round $round/$rounds: $config"
    a=$(free_port)
    if [ "$config" = one ]; then
      ticker "$a" "$rate"
      load_pids=()
      load "one" "$subscribers" "127.0.0.1:$a"
    else
      if [ "$config" = nats ]; then url=nats://127.0.0.1:$nats_port; else url=redis://127.0.0.1:$redis_port; fi
      b=$(free_port)
      c=$(free_port)
      ticker "$a" "$rate" --broker "$url"
      ticker "$b" 0 --broker "$url"
      ticker "$c" 0 --broker "$url"
      load_pids=()
      load "$config-cross" $((2 * third)) "127.0.0.1:$b" "127.0.0.1:$c"
      load "$config-same" "$third" "127.0.0.1:$a"
    fi
    wait "${load_pids[@]}"
    if [ "$config" != one ]; then
      curl -s "http://127.0.0.1:$b/metrics" >"$logs/metrics-b.txt" || true
      python3 - "$logs/metrics-b.txt" "$config" "$round" >>"$json_out" <<'PY'
import json, sys
buckets = []
for line in open(sys.argv[1]):
    if line.startswith('lanes_bridge_latency_seconds_bucket{le="'):
        le = line.split('"')[1]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
total = buckets[-1][1] if buckets else 0
def q(p):
    for le, n in buckets:
        if total and n >= p * total:
            return le * 1e6
    return None
print(json.dumps({"group": sys.argv[2] + "-bridge", "config": sys.argv[2], "round": int(sys.argv[3]),
                  "count": total, "p50_le_us": q(0.5), "p99_le_us": q(0.99), "p99_9_le_us": q(0.999)}))
PY
    fi
    for f in "$logs"/*.json; do
      python3 - "$f" "$config" "$round" "$(basename "$f" .json)" >>"$json_out" <<'PY'
import json, sys
text = open(sys.argv[1]).read().strip()
row = json.loads(text) if text else {"error": "no output"}
row.update(config=sys.argv[2], round=int(sys.argv[3]), group=sys.argv[4])
print(json.dumps(row))
PY
      rm -f "$f"
    done
    stop_all
  done
done

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; commit $(git rev-parse --short HEAD)"
echo "$(nats-server --version), redis-server $(redis-server --version | cut -d' ' -f3 | cut -d= -f2)"
echo "servers (tickers of 1 worker, broker) on core $server_core; lanes-load on core $client_core; $duration s after $warmup s warm-up; $rate updates/s of 16 bytes to $subscribers subscribers"
echo
python3 - "$json_out" "$subscribers" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault(r["group"], []).append(r)
n = int(sys.argv[2])
names = {"one": f"one node, {n:,} subscribers",
         "nats-cross": f"NATS, {2 * n // 3:,} subscribers on nodes B, C (cross-node)",
         "nats-same": f"NATS, {n // 3:,} subscribers on node A (same node)",
         "redis-cross": f"Redis, {2 * n // 3:,} subscribers on nodes B, C (cross-node)",
         "redis-same": f"Redis, {n // 3:,} subscribers on node A (same node)"}
def cell(values):
    values = sorted(values)
    return f"{statistics.median(values):,.0f} [{values[0]:,.0f} – {values[-1]:,.0f}]"
print("| load | p50 µs | p99 µs | p99.9 µs | deliveries/s | missed |")
print("|---|---|---|---|---|---|")
for key in ["one", "nats-cross", "nats-same", "redis-cross", "redis-same"]:
    runs = [r for r in groups.get(key, []) if "latency_us" in r]
    if not runs:
        print(f"| {names[key]} | no run | | | | |")
        continue
    lat = lambda q: [r["latency_us"][q] for r in runs]
    print(f"| {names[key]} | {cell(lat('p50'))} | {cell(lat('p99'))} | {cell(lat('p99_9'))} "
          f"| {cell([r['deliveries_per_s'] for r in runs])} | {sum(r['missed'] for r in runs)} |")
print()
print("The bridge's own histogram on node B (publish on A to hand-over to B's workers), bucket bounds:")
print()
print("| broker | messages | p50 ≤ µs | p99 ≤ µs | p99.9 ≤ µs |")
print("|---|---|---|---|---|")
for key, name in [("nats-bridge", "NATS"), ("redis-bridge", "Redis")]:
    for r in groups.get(key, []):
        print(f"| {name} (round {r['round']}) | {r['count']:,.0f} | {r['p50_le_us']:,.0f} | {r['p99_le_us']:,.0f} | {r['p99_9_le_us']:,.0f} |")
PY
