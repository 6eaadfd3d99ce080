# Sourced by scripts that start a test server on loopback: checks on it and its shutdown.
# The caller sets `port` (the server's TCP port) and `server_pid` (the leader of the process
# group the server runs in, started with setsid; empty when none runs).

# Succeeds when something accepts TCP connections on 127.0.0.1:$port.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

server_pid=""
# Stops the server's whole process group: TERM, up to 5 s to go, then KILL.
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
