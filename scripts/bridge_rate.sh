#!/usr/bin/env bash
# The bridge's highest publish rate per node without drops, and the server CPU it costs per
# message. Node A (examples/ticker, one worker) publishes RATE updates/s; node B (ticker --rate
# 0) has one subscriber (lanes-load fanout, which counts what it misses) and gets them through
# the broker. For each rate and broker, over a 5 s window: what A sent to the broker, what it
# dropped, what B handed over, what the subscriber missed, and the CPU of A, B and the broker
# per message (a node's figure is the whole process, its producer thread included); the bridge
# threads' own CPU per message (read from /proc/PID/task) is the bridge's cost on each side. The
# row "none" is node A alone at the same rate with the subscriber on it (no broker): how fast the
# producer goes by itself.
# Servers and the broker on core 1, lanes-load on core 0.
#
# Usage: scripts/bridge_rate.sh [RATE...]      (default: 5000 20000 50000 100000 200000)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(5000 20000 50000 100000 200000)
target=${CARGO_TARGET_DIR:-target}
server_core=1
client_core=0
window=5
logs=$(mktemp -d)
rows=$logs/rows.jsonl

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --features nats,redis --example ticker
cargo build --release --locked --quiet -p lanes-load

# pids, stop_all, free_port, wait_port; start_brokers
. scripts/processes.sh
. scripts/brokers.sh
trap 'stop_all; kill "${broker_pids[@]}" 2>/dev/null || true; rm -rf "$logs"' EXIT
start_brokers $server_core "$logs"

ticker() {
  local port=$1 rate=$2
  shift 2
  taskset -c $server_core "$target/release/examples/ticker" --addr "127.0.0.1:$port" --cores 1 \
    --no-pin --rate "$rate" --metrics-path /metrics "$@" >>"$logs/ticker.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
}

# snapshot NAME PORT PID: the node's bridge counters and the CPU seconds of PID, as JSON.
snapshot() {
  python3 - "$2" "$3" "${4:-}" <<'PY'
import json, os, sys, time, urllib.request
port, pid, broker = sys.argv[1], sys.argv[2], sys.argv[3]
def cpu(stat):
    fields = open(stat).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
def bridge_thread(p):
    for tid in os.listdir(f"/proc/{p}/task"):
        if open(f"/proc/{p}/task/{tid}/comm").read().strip() == "lanes-bridge":
            return cpu(f"/proc/{p}/task/{tid}/stat")
    return 0.0
out = {"t": time.time(), "cpu": cpu(f"/proc/{pid}/stat"), "bridge_cpu": bridge_thread(pid),
       "broker_cpu": cpu(f"/proc/{broker}/stat") if broker else 0.0}
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
for line in text.splitlines():
    for name, key in [("lanes_bridge_messages_out_total", "out"), ("lanes_bridge_messages_in_total", "in"),
                      ('lanes_bridge_dropped_total{reason="queue_full"}', "dropped_queue"),
                      ('lanes_bridge_dropped_total{reason="send_failed"}', "dropped_send"),
                      ('lanes_bridge_dropped_total{reason="delivery"}', "dropped_delivery"),
                      ('lanes_published_total{core="all"}', "published")]:
        if line.split(" ")[0] == name:
            out[key] = float(line.split()[-1])
print(json.dumps(out))
PY
}

for rate in "${rates[@]}"; do
  for broker in none nats redis; do
    echo "==> $rate updates/s, broker: $broker"
    a=$(free_port)
    b=$(free_port)
    broker_pid=""
    if [ "$broker" = none ]; then
      ticker "$a" "$rate"
      sub_port=$a
    else
      if [ "$broker" = nats ]; then url=nats://127.0.0.1:$nats_port; broker_pid=$nats_pid; else url=redis://127.0.0.1:$redis_port; broker_pid=$redis_pid; fi
      ticker "$a" "$rate" --broker "$url"
      ticker "$b" 0 --broker "$url"
      sub_port=$b
    fi
    a_pid=${pids[0]}
    b_pid=${pids[1]:-}
    load_json=$logs/load.json
    (taskset -c $client_core "$target/release/lanes-load" --addr "127.0.0.1:$sub_port" --json --quiet \
      --warmup 2 --duration $((window + 1)) fanout --source server -n 1 >"$load_json" 2>/dev/null || true) &
    load_pid=$!
    sleep 2.5
    a0=$(snapshot a "$a" "$a_pid" "$broker_pid")
    b0=$([ "$broker" = none ] && echo '{}' || snapshot b "$b" "$b_pid")
    sleep $window
    a1=$(snapshot a "$a" "$a_pid" "$broker_pid")
    b1=$([ "$broker" = none ] && echo '{}' || snapshot b "$b" "$b_pid")
    wait $load_pid || true
    python3 - "$rate" "$broker" "$window" "$a0" "$a1" "$b0" "$b1" "$load_json" >>"$rows" <<'PY'
import json, sys
rate, broker, window = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
a0, a1, b0, b1 = (json.loads(x) for x in sys.argv[4:8])
text = open(sys.argv[8]).read().strip()
load = json.loads(text) if text else {}
d = lambda x, y, k: y.get(k, 0) - x.get(k, 0)
window = a1["t"] - a0["t"]
print(json.dumps({"rate": rate, "broker": broker, "window": window,
    "published": d(a0, a1, "published"), "out": d(a0, a1, "out"),
    "dropped": d(a0, a1, "dropped_queue") + d(a0, a1, "dropped_send"),
    "in": d(b0, b1, "in"), "dropped_delivery": d(b0, b1, "dropped_delivery"),
    "a_cpu": d(a0, a1, "cpu"), "b_cpu": d(b0, b1, "cpu"), "broker_cpu": d(a0, a1, "broker_cpu"),
    "a_bridge_cpu": d(a0, a1, "bridge_cpu"), "b_bridge_cpu": d(b0, b1, "bridge_cpu"),
    "missed": load.get("missed"), "deliveries_per_s": load.get("deliveries_per_s")}))
PY
    stop_all
  done
done

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; commit $(git rev-parse --short HEAD)"
echo "$(nats-server --version), redis-server $(redis-server --version | cut -d' ' -f3 | cut -d= -f2); nodes of 1 worker and the broker on core $server_core, lanes-load (1 subscriber on node B) on core $client_core; ${window} s window; 16-byte updates"
echo
python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| updates/s asked | broker | published/s on A | sent to broker/s | dropped | handed over on B/s | subscriber missed | A's bridge thread µs/msg | B's bridge thread µs/msg | node A µs/msg | node B µs/msg | broker µs/msg |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    w = r["window"]
    pub = r["published"] / w
    per = lambda cpu, n: f"{cpu / n * 1e6:.2f}" if n else "?"
    if r["broker"] == "none":
        print(f"| {r['rate']:,} | none | {pub:,.0f} | | | | {r['missed']} | | | {per(r['a_cpu'], r['published'])} | | |")
        continue
    print(f"| {r['rate']:,} | {r['broker']} | {pub:,.0f} | {r['out'] / w:,.0f} | {r['dropped']:,.0f} "
          f"| {r['in'] / w:,.0f} | {r['missed']} | {per(r['a_bridge_cpu'], r['out'])} | {per(r['b_bridge_cpu'], r['in'])} "
          f"| {per(r['a_cpu'], r['published'])} | {per(r['b_cpu'], r['in'])} | {per(r['broker_cpu'], r['out'])} |")
PY
