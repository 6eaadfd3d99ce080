#!/usr/bin/env bash
# The main job: builds the echo server and the load generator (release), starts examples/echo
# pinned to core 0 with one worker, drives it with lanes-load pinned to core 1 over a small
# matrix, and prints a table: messages/s, messages per server CPU-second, round-trip latency
# percentiles, and handshakes/s. Then the same server over TLS (wss://, with a throwaway
# certificate made by openssl for the run) under the rows the TLS cost is judged on, and TLS
# handshakes/s, full and resumed; a last table gives server CPU per message over wss against
# ws, same build, same run. Stops everything it started, also on Ctrl-C or failure.
# Loopback only; each run is bounded in time.
#
# Usage: scripts/bench.sh [quick]        (quick: 1 s runs instead of 5 s)
#   LANES_BENCH_JSON=FILE  also write one JSON object per run to FILE
set -euo pipefail
cd "$(dirname "$0")/.."

duration=5
warmup=1
if [ "${1:-}" = "quick" ]; then
  duration=1
  warmup=0.5
fi
cores=$(nproc)
server_core=0
client_core=$((cores > 1 ? 1 : 0))
json_out=${LANES_BENCH_JSON:-$(mktemp)}
: >"$json_out"

echo "==> build (release)"
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server_pid=""
tls_dir=$(mktemp -d)
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tls_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts examples/echo pinned to the server core with the extra options given; sets server_pid.
start_server() {
  taskset -c "$server_core" target/release/examples/echo --addr "127.0.0.1:$port" --cores 1 --no-pin \
    "$@" 2>/dev/null &
  server_pid=$!
  for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
      return
    fi
    kill -0 "$server_pid" 2>/dev/null || { echo "the echo server exited" >&2; exit 1; }
    sleep 0.1
  done
}

echo "==> start examples/echo on 127.0.0.1:$port, pinned to core $server_core"
start_server

load=(taskset -c "$client_core" target/release/lanes-load --addr "127.0.0.1:$port" --json --quiet
  --duration "$duration" --warmup "$warmup" --server-pid "$server_pid")
# connections depth size
matrix=("1 1 20" "100 1 20" "100 16 20" "10 1 16384" "1000 1 1024")
total=$((${#matrix[@]} + 1))
i=0
for row in "${matrix[@]}"; do
  read -r c d s <<<"$row"
  i=$((i + 1))
  echo "==> [$i/$total] echo: $c connections x depth $d x $s B"
  "${load[@]}" echo -c "$c" -d "$d" -s "$s" >>"$json_out"
done
i=$((i + 1))
echo "==> [$i/$total] connect: handshakes/s"
"${load[@]}" connect -c 1 >>"$json_out"

echo "==> a throwaway CA and certificate for localhost (openssl), and examples/echo over TLS"
bash tests/tls/make_certs.sh "$tls_dir" >/dev/null
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
start_server --tls-cert "$tls_dir/leaf.pem" --tls-key "$tls_dir/leaf.key"
load=(taskset -c "$client_core" target/release/lanes-load --addr "127.0.0.1:$port" --json --quiet
  --duration "$duration" --warmup "$warmup" --server-pid "$server_pid" --ca "$tls_dir/ca.pem")
tls_matrix=("100 1 20" "100 16 20" "10 1 16384")
for row in "${tls_matrix[@]}"; do
  read -r c d s <<<"$row"
  echo "==> wss echo: $c connections x depth $d x $s B"
  "${load[@]}" echo -c "$c" -d "$d" -s "$s" >>"$json_out"
done
echo "==> wss connect: TLS handshakes/s, resumed (session tickets), then full"
"${load[@]}" connect -c 1 >>"$json_out"
"${load[@]}" --no-tls-resume connect -c 1 >>"$json_out"

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $cores cores, kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); server: examples/echo, 1 worker on core $server_core; client: lanes-load on core $client_core; ${duration} s per run after ${warmup} s warm-up"
echo
python3 - "$json_out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| load | messages/s | msgs per server CPU-s | msgs per client CPU-s | p50 µs | p99 µs | p99.9 µs | errors |")
print("|---|---|---|---|---|---|---|---|")
def scheme(r):
    return "wss" if r.get("tls") else "ws"
for r in rows:
    if r["mode"] == "echo":
        per = r.get("messages_per_server_cpu_s")
        lat = r["latency_us"]
        client = r.get("messages_per_client_cpu_s") or 0
        print(f"| {scheme(r)} echo {r['connections']} conns × depth {r['depth']} × {r['size']} B "
              f"| {r['messages_per_s']:,.0f} | {per or 0:,.0f} | {client:,.0f} | {lat['p50']:.0f} "
              f"| {lat['p99']:.0f} | {lat['p99_9']:.0f} | {r['errors']} |")
    elif r["mode"] == "connect":
        kind = ""
        if r.get("tls"):
            kind = ", resumed" if r["tls"].get("resume") else ", full TLS"
        per = r.get("handshakes_per_server_cpu_s")
        per = f"{per:,.0f} per server CPU-s" if per else ""
        print(f"| {scheme(r)} connect (1 at a time{kind}) | {r['handshakes_per_s']:,.0f} handshakes/s "
              f"| {per} | | | | | {r['errors']} |")
print()
print("Server CPU per message, wss against ws (same build, same run; the issue's targets: <= 1.2 at 20 B, <= 1.8 at 16 KiB):")
print()
print("| load | ws msgs per server CPU-s | wss msgs per server CPU-s | CPU per message, wss / ws |")
print("|---|---|---|---|")
plain = {(r["connections"], r["depth"], r["size"]): r for r in rows if r["mode"] == "echo" and not r.get("tls")}
for r in rows:
    if r["mode"] != "echo" or not r.get("tls"):
        continue
    p = plain.get((r["connections"], r["depth"], r["size"]))
    a, b = (p or {}).get("messages_per_server_cpu_s"), r.get("messages_per_server_cpu_s")
    if a and b:
        print(f"| {r['connections']} conns × depth {r['depth']} × {r['size']} B | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
PY
