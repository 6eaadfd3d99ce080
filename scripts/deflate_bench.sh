#!/usr/bin/env bash
# permessage-deflate side by side with uncompressed: examples/echo pinned to core 0 with one
# worker, lanes-load pinned to core 1, text messages of 1 KiB and 16 KiB, depth 1, 100 and 1,000
# connections. Modes, taking turns in one invocation (a fresh server for every run):
#   off            server --no-deflate, lanes-load --deflate off
#   off/srv-on     server accepts deflate (its default), lanes-load offers nothing
#   takeover       lanes-load --deflate takeover (context takeover both ways)
#   no-takeover    lanes-load --deflate no-takeover (every message compressed on its own)
#   off/baseline   examples/echo built at the last commit before the runtime's deflate
#                  (LANES_DEFLATE_BENCH_BASELINE, default a514a61), lanes-load --deflate off
# Prints a table of medians: messages/s, messages per server (and client) CPU-second, the CPU
# the rest of the machine used in the window (in all, kernel network work included, and in user
# mode, which is other programs), wire bytes per payload byte both ways, the server's RSS idle (fresh server, before connecting), at
# the end of the measured window (connections open), and per connection = (end - idle) /
# connections. The payload is lanes-load's periodic pattern: it compresses far better than real
# traffic, so ratios and compression CPU are a best case.
#
# Writes target/deflate-bench/results.json (one object per run) and results.md (the table).
# Loopback only; each run is bounded (warm-up + measured window, ~3 s); stops everything it
# started, also on Ctrl-C or failure.
#
# Before each run it waits (up to LANES_DEFLATE_BENCH_QUIET_S seconds, polling every 30 s) until
# the machine is quiet: less than 0.15 CPU-seconds busy over one second. A run in which other
# programs used more than 0.1 CPU-second per second in user mode is done again (3 tries; the
# last one counts).
#
# Usage: scripts/deflate_bench.sh [quick]          (quick: 1 run each, 1 s windows)
#   LANES_DEFLATE_BENCH_REPEAT=3          runs per mode and configuration (median reported)
#   LANES_DEFLATE_BENCH_BASELINE=REV      the baseline commit; "none" leaves that mode out
#   LANES_DEFLATE_BENCH_QUIET_S=1800      the longest wait for a quiet machine before a run
set -euo pipefail
cd "$(dirname "$0")/.."

duration=2
warmup=1
repeat=${LANES_DEFLATE_BENCH_REPEAT:-3}
if [ "${1:-}" = "quick" ]; then
  duration=1
  warmup=0.5
  repeat=1
fi
baseline=${LANES_DEFLATE_BENCH_BASELINE:-a514a61}
quiet_s=${LANES_DEFLATE_BENCH_QUIET_S:-1800}
cores=$(nproc)
server_core=0
client_core=$((cores > 1 ? 1 : 0))
out=target/deflate-bench
mkdir -p "$out"
results=$out/results.json
: >"$results"

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load

modes=(off off/srv-on takeover no-takeover)
baseline_echo=""
if [ "$baseline" != "none" ]; then
  if git cat-file -e "$baseline^{commit}" 2>/dev/null; then
    rev=$(git rev-parse --short "$baseline")
    base_dir=$out/baseline-$rev
    echo "==> build examples/echo at $rev (the baseline, in $base_dir)"
    if [ ! -f "$base_dir/src/Cargo.toml" ]; then
      mkdir -p "$base_dir/src"
      git archive "$rev" | tar -x -C "$base_dir/src"
    fi
    cargo build --release --locked --quiet -p lanes --example echo \
      --manifest-path "$base_dir/src/Cargo.toml" --target-dir "$base_dir/target"
    baseline_echo=$base_dir/target/release/examples/echo
    modes+=(off/baseline)
  else
    echo "==> baseline $baseline is not a commit here: its mode is left out" >&2
  fi
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}
# Busy ticks (1/100 s) of the whole machine so far: user nice system irq softirq steal.
busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
# Waits until the machine was busy for less than 0.15 CPU-seconds over one second.
wait_quiet() {
  local waited=0 before after
  while true; do
    before=$(busy_ticks)
    sleep 1
    after=$(busy_ticks)
    [ $((after - before)) -lt 15 ] && return 0
    if [ "$waited" -ge "$quiet_s" ]; then
      echo "    the machine is still busy after ${quiet_s} s: measuring anyway" >&2
      return 0
    fi
    echo "    the machine is busy ($((after - before))% of a core): waiting 30 s" >&2
    sleep 30
    waited=$((waited + 31))
  done
}

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a fresh server for `mode` on a free port; sets server_pid and port.
start_server() {
  local mode=$1 binary=target/release/examples/echo
  local extra=()
  case "$mode" in
    off) extra=(--no-deflate) ;;
    off/baseline) binary=$baseline_echo ;;
  esac
  port=$(free_port)
  taskset -c "$server_core" "$binary" --addr "127.0.0.1:$port" --cores 1 --no-pin "${extra[@]}" \
    2>/dev/null &
  server_pid=$!
  wait_port "$port" || { echo "the echo server ($mode) did not start" >&2; exit 1; }
  # Let the worker settle before its idle memory is read.
  sleep 0.2
}

# size connections
configs=("1024 100" "16384 100" "1024 1000" "16384 1000")
total=$((${#configs[@]} * repeat * ${#modes[@]}))
i=0
echo "==> load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for config in "${configs[@]}"; do
  read -r size conns <<<"$config"
  for r in $(seq "$repeat"); do
    # Take turns, starting each repetition with the next mode, so no mode always goes first.
    for k in $(seq 0 $((${#modes[@]} - 1))); do
      mode=${modes[$(((k + r - 1) % ${#modes[@]}))]}
      i=$((i + 1))
      deflate=off
      case "$mode" in takeover | no-takeover) deflate=$mode ;; esac
      echo "==> [$i/$total] $size B text x $conns connections, $mode (run $r)"
      for try in 1 2 3; do
        wait_quiet
        start_server "$mode"
        idle=$(rss_kib "$server_pid")
        run=$(taskset -c "$client_core" target/release/lanes-load --addr "127.0.0.1:$port" --json \
          --quiet --duration "$duration" --warmup "$warmup" --server-pid "$server_pid" \
          echo -c "$conns" -d 1 -s "$size" --kind text --deflate "$deflate" |
          python3 -c 'import json, sys
run = json.loads(sys.stdin.read())
run.update(label=sys.argv[1], server_rss_idle_kib=int(sys.argv[2]), tries=int(sys.argv[3]))
print(json.dumps(run))' "$mode" "$idle" "$try")
        stop_server
        disturbed=$(python3 -c 'import json, sys
run = json.loads(sys.argv[1])
print(int(run["other_user_cpu_s"] > 0.1 * run["duration_s"]))' "$run")
        [ "$disturbed" = 0 ] && break
        echo "    other programs ran during the window: again" >&2
      done
      echo "$run" >>"$results"
    done
  done
done
echo "==> load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

{
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $cores cores, kernel $(uname -r)"
  echo
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); server: examples/echo, 1 worker on core $server_core (level 1, memLevel 8, 15-bit windows); client: lanes-load on core $client_core, depth 1, text; ${duration} s per run after ${warmup} s warm-up; median of $repeat run(s), modes taking turns, a fresh server per run"
  echo
  python3 - "$results" <<'PY'
import json, statistics, sys
from collections import defaultdict

runs = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    r = json.loads(line)
    key = (r["size"], r["connections"], r["label"])
    if key not in runs:
        order.append(key)
    runs[key].append(r)

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def num(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"

print("| payload × conns | mode | messages/s | vs off | msgs per server CPU-s | msgs per client CPU-s "
      "| others CPU-s (user) | wire/payload sent, received | RSS idle KiB | RSS end KiB "
      "| RSS per conn KiB | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for size, conns, label in sorted(order, key=lambda k: (k[1], k[0], order.index(k))):
    rs = runs[(size, conns, label)]
    rate = med(r["messages_per_s"] for r in rs)
    off = med(r["messages_per_s"] for r in runs.get((size, conns, "off"), []))
    vs = f"{rate / off:.0%}" if rate and off else "-"
    per_conn = med((r["server_rss_kib"] - r["server_rss_idle_kib"]) / conns for r in rs
                   if r.get("server_rss_kib") is not None)
    sent = med(r.get("wire_ratio_sent") for r in rs)
    received = med(r.get("wire_ratio_received") for r in rs)
    ratio = "-" if sent is None else f"{sent:.3f}, {received:.3f}"
    print(f"| {size // 1024} KiB × {conns:,} | {label} | {num(rate)} | {vs} "
          f"| {num(med(r.get('messages_per_server_cpu_s') for r in rs))} "
          f"| {num(med(r.get('messages_per_client_cpu_s') for r in rs))} "
          f"| {num(med(r.get('other_cpu_s') for r in rs), 2)} "
          f"({num(med(r.get('other_user_cpu_s') for r in rs), 2)}) | {ratio} "
          f"| {num(med(r['server_rss_idle_kib'] for r in rs))} "
          f"| {num(med(r.get('server_rss_kib') for r in rs))} | {num(per_conn, 1)} "
          f"| {sum(r['errors'] for r in rs)} |")
PY
} | tee "$out/results.md"
