#!/usr/bin/env bash
# Client-side CPU per echoed message: lanes' outbound connections (examples/client_load, one
# worker) against tokio-tungstenite's client (benches/peers: a current_thread runtime, written
# as its examples are), the same echo server for both (examples/echo, one worker, pinned to
# core 0), each client pinned to core 1. Rows: 100 connections x 20 B at depth 1 and at depth
# 16 (messages in flight per connection), and 10 x 16 KiB at depth 1. Each round runs both
# clients on every row, in an order that alternates between rounds; the table gives each
# client's median (and range) of microseconds of its own CPU (user + system, /proc/self/stat)
# per message echoed, and the ratio of the medians.
#
# Usage: scripts/client_cost.sh [ROUNDS] [SECONDS]     (default 5 rounds of 5 s runs)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rounds=${1:-5}
seconds=${2:-5}
target=${CARGO_TARGET_DIR:-$repo/target}

cargo build --release --locked -p lanes --example echo --example client_load
bash benches/peers/build.sh tokio-tungstenite >/dev/null
lanes_client=$target/release/examples/client_load
tokio_client=$target/peers/bin/tokio-tungstenite-client

server_core=0
. "$repo/scripts/echo_servers.sh"
trap stop_echo_servers EXIT
port=$(free_port)
echo_pids+=("$(start_echo_server "$port")")
url=ws://127.0.0.1:$port/

rows=("100 20 1" "100 20 16" "10 16384 1")
results=$(mktemp)
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="lanes tokio"; else order="tokio lanes"; fi
  for row in "${rows[@]}"; do
    for client in $order; do
      if [ "$client" = lanes ]; then bin=$lanes_client; else bin=$tokio_client; fi
      # shellcheck disable=SC2086 # the row's three numbers are three arguments
      line=$(taskset -c 1 timeout $((seconds + 30)) "$bin" "$url" $row "$seconds")
      echo "$round|$row|$client|$line" | tee -a "$results"
    done
  done
done
python3 - "$results" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, row, client, out = line.strip().split("|")
    m = re.search(r"messages=(\d+) cpu_s=([\d.]+)", out)
    messages, cpu = int(m.group(1)), float(m.group(2))
    runs.setdefault(row, {}).setdefault(client, []).append(cpu / messages * 1e6)
print()
print("| load (conns, bytes, depth) | lanes µs CPU/msg | tokio-tungstenite µs CPU/msg | × |")
print("|---|---|---|---|")
for row, by in runs.items():
    l, t = by["lanes"], by["tokio"]
    cell = lambda v: f"{statistics.median(v):.2f} [{min(v):.2f} – {max(v):.2f}]"
    print(f"| {row} | {cell(l)} | {cell(t)} | {statistics.median(t) / statistics.median(l):.2f} |")
PY
rm -f "$results"
