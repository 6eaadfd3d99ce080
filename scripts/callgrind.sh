#!/usr/bin/env bash
# Instructions per echoed message, counted by valgrind --tool=callgrind: a repeatable view of
# the server's cost that does not depend on what else the machine is doing. The server runs
# under callgrind (one worker); lanes-load drives it for a few seconds; the server's total
# instruction count (start-up and handshakes included) is divided by the messages echoed.
#
# Usage: scripts/callgrind.sh [SERVER...]    servers: lanes (default), peers built by
#        benches/peers/build.sh (tokio-tungstenite, fastwebsockets), or the path of another
#        build of examples/echo (to compare two commits side by side). Loopback only.
#   LANES_CALLGRIND_LOAD="-c 10 -d 16 -s 20"  the echo load (lanes-load echo options)
#   LANES_CALLGRIND_MODE=connect              count per handshake instead: lanes-load connect
#                                             (connect, upgrade, close, one at a time)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "installing valgrind" >&2; apt-get install -y -q valgrind >/dev/null; }
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load
read -r -a load_opts <<<"${LANES_CALLGRIND_LOAD:--c 10 -d 16 -s 20}"
mode=${LANES_CALLGRIND_MODE:-echo}
case "$mode" in
  echo) unit=messages what="echoed messages" ;;
  connect) unit=handshakes what="handshakes" load_opts=() ;;
  *) echo "LANES_CALLGRIND_MODE: echo or connect" >&2; exit 2 ;;
esac
out=target/callgrind
mkdir -p "$out"
servers=("$@")
[ ${#servers[@]} -eq 0 ] && servers=(lanes)

server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; true' EXIT

for name in "${servers[@]}"; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  case "$name" in
    lanes) cmd=(target/release/examples/echo --addr "127.0.0.1:$port" --cores 1 --no-pin) ;;
    */*) cmd=("$name" --addr "127.0.0.1:$port" --cores 1 --no-pin) ;; # another build of echo
    *) cmd=("target/peers/bin/$name" "$port") ;;
  esac
  label=$(echo "$name" | tr -c 'A-Za-z0-9_.\n-' '_')
  valgrind --tool=callgrind --callgrind-out-file="$out/$label.out" "${cmd[@]}" >"$out/$label.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null && break
    sleep 0.1
  done
  messages=$(target/release/lanes-load --addr "127.0.0.1:$port" --duration 3 --warmup 0 --quiet --json \
    "$mode" "${load_opts[@]}" | python3 -c "import json, sys; print(json.load(sys.stdin)['$unit'])")
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  total=$(awk '/^totals:/ {print $2}' "$out/$label.out")
  echo "$name: $total instructions for $messages $what = $((total / (messages > 0 ? messages : 1))) per ${unit%s} (load: $mode ${load_opts[*]})"
done
