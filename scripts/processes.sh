# Sourced by the scripts that start several local processes (servers, brokers, load
# generators): a free loopback port, waiting for a port to listen, and stopping every process
# the caller added to `pids`.

pids=()
# Stops every process in `pids` (and forgets them).
stop_all() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}

# A TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT [PID NAME]: waits up to 10 s until 127.0.0.1:PORT accepts connections; exits
# the script when it does not, or when process PID (named NAME) ends meanwhile.
wait_port() {
  local port=$1 pid=${2:-} name=${3:-the server}
  for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before it listened on $port" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not listen on $port" >&2
  exit 1
}
