# Sourced by the benchmark scripts that run examples/echo servers side by side on one core:
# a free loopback port, an echo server started on it, and the servers stopped. The caller sets
# `server_core` (the core the servers run on), adds each PID to `echo_pids`, and calls
# `stop_echo_servers` on exit.

echo_pids=()
# Stops every server in `echo_pids`.
stop_echo_servers() {
  for pid in "${echo_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# free_port
. "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

# Starts target/release/examples/echo on port $1, on core $server_core, with the options after
# the port (default: one unpinned worker); prints its PID once it listens.
start_echo_server() {
  local port=$1
  shift
  local options=("$@")
  [ ${#options[@]} -gt 0 ] || options=(--cores 1 --no-pin)
  taskset -c "$server_core" target/release/examples/echo --addr "127.0.0.1:$port" \
    "${options[@]}" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
      echo "$pid"
      return
    fi
    kill -0 "$pid" 2>/dev/null || { echo "the echo server exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "the echo server did not listen on $port" >&2
  exit 1
}
