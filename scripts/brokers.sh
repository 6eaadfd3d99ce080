# Sourced by the bridge benchmarks: installs nats-server and redis-server when missing, and
# starts one of each on free loopback ports, pinned to core $1, logging into directory $2.
# Sets nats_port, redis_port, nats_pid, redis_pid and broker_pids (for the caller's exit trap);
# needs scripts/processes.sh (free_port, wait_port) sourced first.

for tool in nats-server redis-server; do
  command -v "$tool" >/dev/null || bash scripts/apt_install.sh "$tool"
done

broker_pids=()
start_brokers() {
  local core=$1 logs=$2
  nats_port=$(free_port)
  redis_port=$(free_port)
  taskset -c "$core" nats-server -a 127.0.0.1 -p "$nats_port" >"$logs/nats.log" 2>&1 &
  nats_pid=$!
  taskset -c "$core" redis-server --bind 127.0.0.1 --port "$redis_port" --save "" \
    --appendonly no >"$logs/redis.log" 2>&1 &
  redis_pid=$!
  broker_pids=("$nats_pid" "$redis_pid")
  wait_port "$nats_port" "$nats_pid" nats-server
  wait_port "$redis_port" "$redis_pid" redis-server
}
