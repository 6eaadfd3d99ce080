#!/usr/bin/env bash
# What TLS costs the server: server CPU per echoed message over wss against ws, same build,
# measured in alternating rounds (a shared 2-core machine drifts by more than the difference
# one run can show). Two examples/echo servers, one plain and one TLS, both pinned to core 0
# with one worker; lanes-load pinned to core 1 drives each row on one and then the other (the
# order swapped every round), and each round gives a ratio per row. Prints every round's
# ratios and, per row, the median and the range, beside the issue's targets.
# Loopback only; every run is bounded in time.
#
# Usage: scripts/tls_cost.sh [ROUNDS]       (default 7; each round takes about 30 s)
#   LANES_TLS_COST_SECONDS=S   seconds per run after 1 s of warm-up (default 3)
#   LANES_TLS_COST_JSON=FILE   also write every run's JSON line to FILE
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-7}
duration=${LANES_TLS_COST_SECONDS:-3}
cores=$(nproc)
server_core=0
client_core=$((cores > 1 ? 1 : 0))
json_out=${LANES_TLS_COST_JSON:-$(mktemp)}
: >"$json_out"

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load

. scripts/echo_servers.sh
tls_dir=$(mktemp -d)
cleanup() {
  stop_echo_servers
  rm -rf "$tls_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash tests/tls/make_certs.sh "$tls_dir" >/dev/null

ws_port=$(free_port)
ws_pid=$(start_echo_server "$ws_port")
echo_pids+=("$ws_pid")
wss_port=$(free_port)
wss_pid=$(start_echo_server "$wss_port" --cores 1 --no-pin --tls-cert "$tls_dir/leaf.pem" \
  --tls-key "$tls_dir/leaf.key")
echo_pids+=("$wss_pid")

# Runs one row ($1 = ws or wss, then connections, depth, size) and appends its JSON line, tagged
# with the round.
run() {
  local scheme=$1 c=$2 d=$3 s=$4 round=$5
  local args=(--addr "127.0.0.1:$ws_port" --server-pid "$ws_pid")
  if [ "$scheme" = wss ]; then
    args=(--addr "127.0.0.1:$wss_port" --server-pid "$wss_pid" --ca "$tls_dir/ca.pem")
  fi
  taskset -c "$client_core" target/release/lanes-load "${args[@]}" --json --quiet \
    --duration "$duration" --warmup 1 echo -c "$c" -d "$d" -s "$s" |
    python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); r["round"] = int(sys.argv[1]); print(json.dumps(r))' "$round" \
      >>"$json_out"
}

matrix=("100 1 20" "100 16 20" "10 1 16384")
for round in $(seq "$rounds"); do
  echo "==> round $round of $rounds"
  for row in "${matrix[@]}"; do
    read -r c d s <<<"$row"
    if [ $((round % 2)) -eq 1 ]; then
      run ws "$c" "$d" "$s" "$round"
      run wss "$c" "$d" "$s" "$round"
    else
      run wss "$c" "$d" "$s" "$round"
      run ws "$c" "$d" "$s" "$round"
    fi
  done
done

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $cores cores, kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); servers: examples/echo, 1 worker on core $server_core; client: lanes-load on core $client_core; ${duration} s per run after 1 s warm-up; $rounds rounds"
echo
python3 - "$json_out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
targets = {20: 1.2, 16384: 1.8}
by_row = {}
for r in rows:
    key = (r["connections"], r["depth"], r["size"])
    scheme = "wss" if r.get("tls") else "ws"
    by_row.setdefault(key, {}).setdefault(r["round"], {})[scheme] = r.get("messages_per_server_cpu_s")
print("Server CPU per message, wss / ws (per round; ratio = ws msgs per server CPU-s / wss msgs per server CPU-s):")
print()
print("| load | median | range | target | every round |")
print("|---|---|---|---|---|")
for (c, d, s), per_round in by_row.items():
    ratios = [v["ws"] / v["wss"] for _, v in sorted(per_round.items()) if v.get("ws") and v.get("wss")]
    if not ratios:
        continue
    target = targets.get(s)
    met = "" if target is None else (f"<= {target}" + (" (met)" if statistics.median(ratios) <= target else " (missed)"))
    print(f"| {c} conns × depth {d} × {s} B | {statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} "
          f"| {met} | {', '.join(f'{x:.2f}' for x in ratios)} |")
PY
