#!/usr/bin/env bash
# The broker bridge against real servers, all on loopback and started here:
# 1. crates/lanes/tests/bridge.rs with nats-server and redis-server: three nodes of two workers,
#    300 subscribers and three publishers (exactly once, in per-publisher order); interest
#    checked on the broker; the broker killed for 2 s and started again;
# 2. for each broker, three examples/chat nodes behind HAProxy (TCP mode, health check on the
#    WebSocket port's 426 answer): tests/bridge/haproxy_chat.py connects clients to HAProxy's
#    one address, checks that they land on every node and that a room spans them.
# Prints "bridge test: ok" on success.
#
# Usage: scripts/bridge_test.sh     (from anywhere)
#
# Installs what is missing: the Debian packages nats-server, redis-server and haproxy
# (apt-get, as root or with sudo), and the Python websockets package (scripts/peers_install.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/bridge

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "bridge_test.sh: $*" >&2
  echo "FAIL: bridge test: $*"
  exit 1
}

missing=()
for tool in nats-server redis-server haproxy; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  bash "$repo/scripts/apt_install.sh" "${missing[@]}"
fi
echo "$(nats-server --version), $(redis-server --version | cut -d' ' -f1-3), $(haproxy -v | head -1)"

step "cargo test -p lanes --features nats,redis: the unit tests, and tests/bridge.rs (nats-server, redis-server)"
cargo test --locked -p lanes --features nats,redis --lib --test bridge

pylib=$target/tls/pylib
. "$repo/scripts/peers_install.sh"
step "cargo build --release -p lanes --features nats,redis --example chat"
cargo build --release --locked -p lanes --features nats,redis --example chat

# pids, stop_all, free_port, wait_port
. "$repo/scripts/processes.sh"
trap stop_all EXIT

mkdir -p "$out"
for broker in nats redis; do
  step "three chat nodes behind HAProxy, sharing rooms through $broker"
  broker_port=$(free_port)
  if [ "$broker" = nats ]; then
    nats-server -a 127.0.0.1 -p "$broker_port" >"$out/$broker.log" 2>&1 &
  else
    redis-server --bind 127.0.0.1 --port "$broker_port" --save "" --appendonly no \
      >"$out/$broker.log" 2>&1 &
  fi
  pids+=($!)
  wait_port "$broker_port" $! "$broker"
  node_ports=()
  for n in 1 2 3; do
    port=$(free_port)
    target/release/examples/chat --addr "127.0.0.1:$port" --cores 2 --no-pin \
      --metrics-path /metrics --broker "$broker://127.0.0.1:$broker_port" \
      >"$out/chat-$broker-$n.log" 2>&1 &
    pids+=($!)
    wait_port "$port" $! "chat node $n"
    node_ports+=("$port")
  done
  front=$(free_port)
  socket=$out/haproxy-$broker.sock
  rm -f "$socket"
  cat >"$out/haproxy-$broker.cfg" <<CFG
global
  stats socket $socket mode 600 level admin
  maxconn 1000

defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s

frontend ws
  bind 127.0.0.1:$front
  default_backend lanes

backend lanes
  balance roundrobin
  # A node is up while its WebSocket port answers a plain GET /ws with 426 Upgrade Required.
  option httpchk
  http-check send meth GET uri /ws ver HTTP/1.1 hdr Host lanes
  http-check expect status 426
  default-server check inter 500ms fall 2 rise 1
  server node1 127.0.0.1:${node_ports[0]}
  server node2 127.0.0.1:${node_ports[1]}
  server node3 127.0.0.1:${node_ports[2]}
CFG
  haproxy -f "$out/haproxy-$broker.cfg" -db >"$out/haproxy-$broker.log" 2>&1 &
  pids+=($!)
  wait_port "$front" $! haproxy
  python3 tests/bridge/haproxy_chat.py --front "127.0.0.1:$front" \
    --nodes "$(IFS=,; echo "${node_ports[*]}")" --stats-socket "$socket" ||
    die "the chat behind HAProxy over $broker (logs: $out)"
  stop_all
done

echo
echo "bridge test: ok"
