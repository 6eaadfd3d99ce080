#!/usr/bin/env bash
# Side-by-side comparison of lanes with peer WebSocket echo servers under the same load:
# every server pinned to core 0 (one thread), lanes-load pinned to core 1, servers taking
# turns configuration by configuration in one invocation. Peers are built on this machine from
# the registries (benches/peers/build.sh): tokio-tungstenite, fastwebsockets (crates.io),
# gorilla/websocket (Debian's golang), Node's ws (npm).
#
# Two sections. ws: the echo matrix over plain TCP, handshakes/s, and RSS per idle connection.
# wss: every server again in its TLS mode, with its usual TLS stack (lanes and the two Rust
# peers: rustls 0.23 with ring, the peers through tokio-rustls; gorilla: Go's crypto/tls; Node
# ws: https.createServer, OpenSSL), a throwaway CA and localhost certificate made by openssl for
# the run (tests/tls/make_certs.sh; no key is committed), lanes-load trusting that CA (--ca):
# server CPU per message at 100 conns x 20 B x depth 1 and 16, and 10 conns x 16 KiB x depth 1;
# TLS handshakes per server CPU-second one at a time, resumed (session tickets) and full
# (--no-tls-resume).
#
# Writes target/compare/results.json (one object per run, "scheme": "ws" or "wss"), results.md
# (the tables) and chart.svg (ws messages/s per configuration), and prints the tables. Loopback
# only; every run is bounded in time.
#
# Usage: scripts/compare.sh [quick]     (quick: a few configurations, 1 s runs)
#   LANES_COMPARE_SECTIONS="wss"            only these sections (default: "ws wss")
#   LANES_COMPARE_SERVERS="lanes gorilla"   only these servers
#   LANES_COMPARE_NO_PEER_BUILD=1           use the peers already built
#   LANES_COMPARE_REPEAT=3                  runs per server and configuration (median reported)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=2
warmup=0.5
mode=${1:-full}
if [ "$mode" = "quick" ]; then
  duration=1
  warmup=0.3
fi
read -r -a sections <<<"${LANES_COMPARE_SECTIONS:-ws wss}"
for section in "${sections[@]}"; do
  case "$section" in
    ws | wss) ;;
    *)
      echo "compare.sh: unknown section '$section' (ws, wss)" >&2
      exit 2
      ;;
  esac
done
has_section() {
  [[ " ${sections[*]} " == *" $1 "* ]]
}
out=target/compare
mkdir -p "$out"
results=$out/results.json
: >"$results"

# The machine may be shared: its load average at the start and the end goes into the report.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# The commit measured: taken before building, so that later commits during a long run do not
# relabel it; "+dirty" when the working tree differs from it.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- crates examples Cargo.toml Cargo.lock 2>/dev/null || commit="$commit+dirty"

echo "==> build lanes (release) and the peers"
cargo build --release --locked --quiet -p lanes --example echo
cargo build --release --locked --quiet -p lanes-load
if [ -z "${LANES_COMPARE_NO_PEER_BUILD:-}" ]; then
  bash benches/peers/build.sh
fi

all_servers=(lanes tokio-tungstenite fastwebsockets gorilla node-ws)
read -r -a servers <<<"${LANES_COMPARE_SERVERS:-${all_servers[*]}}"
# The command line that starts server $1 on port $2; with $3 = wss, in its TLS mode with the
# run's certificate (every peer takes CERT KEY after the port, see benches/peers/build.sh).
launcher() {
  local tls=""
  if [ "${3:-ws}" = wss ]; then
    case "$1" in
      lanes) tls="--tls-cert $tls_dir/leaf.pem --tls-key $tls_dir/leaf.key" ;;
      *) tls="$tls_dir/leaf.pem $tls_dir/leaf.key" ;;
    esac
  fi
  case "$1" in
    lanes) echo "target/release/examples/echo --cores 1 --no-pin --addr 127.0.0.1:$2 $tls" ;;
    *) echo "target/peers/bin/$1 $2 $tls" ;;
  esac
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

declare -A pid port
started=()
tls_dir=""
cleanup() {
  for name in "${started[@]}"; do
    kill "${pid[$name]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [ -z "$tls_dir" ] || rm -rf "$tls_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ulimit for 10,000 connections on each side.
ulimit -n "$(ulimit -Hn)"

# Starts server $1 pinned to core 0, plain or, with $2 = wss, in its TLS mode.
start_server() {
  local name=$1 scheme=${2:-ws} p log
  p=$(free_port)
  log=$out/$name.log
  [ "$scheme" = ws ] || log=$out/$name-$scheme.log
  # shellcheck disable=SC2046 # the launcher line is split into words on purpose
  taskset -c 0 $(launcher "$name" "$p" "$scheme") >"$log" 2>&1 &
  pid[$name]=$!
  port[$name]=$p
  started+=("$name")
  wait_port "$p" || { echo "$name did not start ($scheme), see $log" >&2; return 1; }
}
stop_server() {
  kill "${pid[$1]}" 2>/dev/null || true
  wait "${pid[$1]}" 2>/dev/null || true
}

available=()
for name in "${servers[@]}"; do
  if [ "$name" != lanes ] && [ ! -x "target/peers/bin/$name" ]; then
    echo "skip $name: target/peers/bin/$name was not built" >&2
    continue
  fi
  available+=("$name")
done

# lanes-load's global flags for the section running (the wss section adds --ca).
load_tls=()
load() {
  local name=$1
  shift
  taskset -c 1 target/release/lanes-load --addr "127.0.0.1:${port[$name]}" --json --quiet \
    --duration "$duration" --warmup "$warmup" --server-pid "${pid[$name]}" "${load_tls[@]}" "$@"
}
# Each configuration runs LANES_COMPARE_REPEAT times per server (default 3), servers taking
# turns; the report gives the median, so one noisy run cannot decide a comparison.
repeat=${LANES_COMPARE_REPEAT:-3}

if has_section ws; then
  active=()
  for name in "${available[@]}"; do
    start_server "$name" && active+=("$name")
  done

  # Configurations: connections x payload x depth. Skipped (too long or too much memory in
  # flight here): any with more than 256 MiB in flight (connections x depth x payload).
  configs=()
  if [ "$mode" = quick ]; then
    configs=("100 20 1" "100 20 16" "10 16384 1")
  else
    # 10 connections x 16 KiB x depth 1 as well: the large-message point of the reference table.
    configs+=("10 16384 1")
    for c in 1 100 1000 10000; do
      for s in 20 1024 16384 1048576; do
        for d in 1 16; do
          if [ $((c * d * s)) -le $((256 << 20)) ]; then
            configs+=("$c $s $d")
          else
            echo "skip: $c connections x $s B x depth $d ($(((c * d * s) >> 20)) MiB in flight)"
          fi
        done
      done
    done
  fi

  total=$(( ${#configs[@]} * ${#active[@]} * repeat ))
  i=0
  for config in "${configs[@]}"; do
    read -r c s d <<<"$config"
    for rep in $(seq "$repeat"); do
    for name in "${active[@]}"; do
      i=$((i + 1))
      echo "==> [$i/$total] $name: echo $c conns x $s B x depth $d (run $rep of $repeat)"
      if row=$(load "$name" echo -c "$c" -s "$s" -d "$d"); then
        echo "{\"server\": \"$name\", \"scheme\": \"ws\", \"run\": $row}" >>"$results"
      else
        echo "{\"server\": \"$name\", \"scheme\": \"ws\", \"run\": {\"mode\": \"echo\", \"connections\": $c, \"size\": $s, \"depth\": $d, \"failed\": true}}" >>"$results"
        echo "    failed" >&2
      fi
    done
    done
  done

  for name in "${active[@]}"; do
    echo "==> $name: handshakes/s"
    row=$(load "$name" connect -c 1) || row='{"mode": "connect", "failed": true}'
    echo "{\"server\": \"$name\", \"scheme\": \"ws\", \"run\": $row}" >>"$results"
  done

  # RSS per idle connection: a fresh server each, 10,000 connections held.
  idle_n=10000
  [ "$mode" = quick ] && idle_n=1000
  for name in "${active[@]}"; do
    stop_server "$name"
    if ! start_server "$name"; then
      echo "{\"server\": \"$name\", \"scheme\": \"ws\", \"run\": {\"mode\": \"idle\", \"connections\": $idle_n, \"ok\": false}}" >>"$results"
      continue
    fi
    sleep 0.3
    before=$(awk '/^VmRSS/ {print $2}' "/proc/${pid[$name]}/status")
    marker=$out/idle-$name.err
    taskset -c 1 target/release/lanes-load --addr "127.0.0.1:${port[$name]}" --quiet --duration 3 \
      idle -n "$idle_n" >/dev/null 2>"$marker" &
    idle_pid=$!
    for _ in $(seq 600); do
      grep -q "connections open" "$marker" 2>/dev/null && break
      kill -0 "$idle_pid" 2>/dev/null || break
      sleep 0.1
    done
    sleep 1
    after=$(awk '/^VmRSS/ {print $2}' "/proc/${pid[$name]}/status")
    wait "$idle_pid" || true
    ok=false
    grep -q "connections open" "$marker" && ok=true
    echo "==> $name: RSS ${before} KiB -> ${after} KiB with $idle_n idle connections (opened: $ok)"
    echo "{\"server\": \"$name\", \"scheme\": \"ws\", \"run\": {\"mode\": \"idle\", \"connections\": $idle_n, \"ok\": $ok, \"rss_before_kib\": $before, \"rss_after_kib\": $after}}" >>"$results"
  done
  for name in "${active[@]}"; do
    stop_server "$name"
  done
fi

# wss: every server in its TLS mode (the plain ones stopped), the rows TLS is judged on.
if has_section wss; then
  echo "==> wss: a throwaway CA and certificate for localhost (openssl)"
  tls_dir=$(mktemp -d)
  bash tests/tls/make_certs.sh "$tls_dir" >/dev/null
  load_tls=(--ca "$tls_dir/ca.pem")
  active=()
  for name in "${available[@]}"; do
    if start_server "$name" wss; then
      active+=("$name")
    else
      echo "{\"server\": \"$name\", \"scheme\": \"wss\", \"run\": {\"mode\": \"start\", \"failed\": true}}" >>"$results"
    fi
  done
  wss_configs=("100 20 1" "100 20 16" "10 16384 1")
  # Connect rows: "resumed" (session tickets, lanes-load's default) and "full" (--no-tls-resume).
  wss_connects=(resumed full)
  total=$(( (${#wss_configs[@]} + ${#wss_connects[@]}) * ${#active[@]} * repeat ))
  i=0
  for config in "${wss_configs[@]}"; do
    read -r c s d <<<"$config"
    for rep in $(seq "$repeat"); do
    for name in "${active[@]}"; do
      i=$((i + 1))
      echo "==> [$i/$total] $name: wss echo $c conns x $s B x depth $d (run $rep of $repeat)"
      if row=$(load "$name" echo -c "$c" -s "$s" -d "$d"); then
        echo "{\"server\": \"$name\", \"scheme\": \"wss\", \"run\": $row}" >>"$results"
      else
        echo "{\"server\": \"$name\", \"scheme\": \"wss\", \"run\": {\"mode\": \"echo\", \"connections\": $c, \"size\": $s, \"depth\": $d, \"failed\": true}}" >>"$results"
        echo "    failed" >&2
      fi
    done
    done
  done
  for kind in "${wss_connects[@]}"; do
    flags=()
    resume=true
    if [ "$kind" = full ]; then
      flags=(--no-tls-resume)
      resume=false
    fi
    for rep in $(seq "$repeat"); do
    for name in "${active[@]}"; do
      i=$((i + 1))
      echo "==> [$i/$total] $name: wss handshakes, one at a time, $kind (run $rep of $repeat)"
      if row=$(load "$name" "${flags[@]}" connect -c 1); then
        echo "{\"server\": \"$name\", \"scheme\": \"wss\", \"run\": $row}" >>"$results"
      else
        echo "{\"server\": \"$name\", \"scheme\": \"wss\", \"run\": {\"mode\": \"connect\", \"tls\": {\"resume\": $resume}, \"failed\": true}}" >>"$results"
        echo "    failed" >&2
      fi
    done
    done
  done
  for name in "${active[@]}"; do
    stop_server "$name"
  done
fi

machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)"
machine="$machine, load average (1, 5, 15 min) $load_start at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end"
python3 scripts/compare_report.py "$results" "$out" "$machine" "$commit" "$duration" "$warmup"
cat "$out/results.md"
