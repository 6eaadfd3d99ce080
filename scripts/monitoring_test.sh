#!/usr/bin/env bash
# Monitoring integration test against real servers: examples/echo (--metrics-addr, --influx) and
# lanes-load (--influx, --prometheus-port) in a short bounded echo run, scraped by a Prometheus
# and reporting to an InfluxDB 1.x that this script starts by hand in a temporary folder (no
# init system needed). Checks that the server's message counters equal lanes-load's sent_total
# exactly in both, and that the rates in InfluxDB agree with each other and with lanes-load's
# JSON. Details: scripts/monitoring/integration.py.
#
# Installs Debian's prometheus and influxdb packages when `prometheus` or `influxd` is missing
# (and python3, which runs the test, where a bare machine lacks it; as root, apt-get update
# only when the first try fails), builds the two binaries (release), runs the test. Loopback
# only; every wait is bounded (the whole test takes well under 2 minutes); every process it
# started is stopped and the temporary folder deleted, also on failure or Ctrl-C. Exit status
# 0 only when every check passed.
#
# Usage: scripts/monitoring_test.sh [--self-test] [--keep]
#   --self-test   prove the harness with a fake exporter instead of the binaries (no build)
#   --keep        keep the temporary folder (server logs, configs, data) for a look afterwards
#   LANES_MONITORING_NO_BUILD=1   use the binaries already in target/release as they are
set -euo pipefail
cd "$(dirname "$0")/.."

self_test=0
for arg in "$@"; do
  case "$arg" in
    --self-test) self_test=1 ;;
    --keep) ;;
    *) echo "usage: $0 [--self-test] [--keep]" >&2; exit 2 ;;
  esac
done

# ---- the servers: Debian's packages, installed only when missing
install_servers() {
  local pkgs=() policy_added=0
  command -v prometheus >/dev/null || pkgs+=(prometheus)
  command -v influxd >/dev/null || pkgs+=(influxdb)
  command -v python3 >/dev/null || pkgs+=(python3)
  [ ${#pkgs[@]} -eq 0 ] && return 0
  echo "==> apt-get install ${pkgs[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  # the packages' maintainer scripts would start their services where an init system runs;
  # this test starts its own, so keep them from starting (the usual container policy)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}"; then
    echo "==> install failed: apt-get update, then again"
    "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}" || rc=$?
  fi
  [ $policy_added -eq 1 ] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  return $rc
}
install_servers || { echo "FAIL: could not install the servers" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "FAIL: prometheus is not installed" >&2; exit 1; }
command -v influxd >/dev/null || { echo "FAIL: influxd is not installed" >&2; exit 1; }
echo "==> $(prometheus --version 2>&1 | head -1); $(influxd version 2>&1 | head -1)"

# ---- the binaries
if [ $self_test -eq 0 ] && [ "${LANES_MONITORING_NO_BUILD:-0}" != 1 ]; then
  echo "==> build (release): examples/echo, lanes-load"
  cargo build --release --locked --example echo -p lanes
  cargo build --release --locked -p lanes-load
fi

# ---- the test; it stops what it starts itself, this trap only makes sure it is gone
py_pid=""
stop() {
  if [ -n "$py_pid" ] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true
    wait "$py_pid" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 scripts/monitoring/integration.py "$@" &
py_pid=$!
rc=0
wait "$py_pid" || rc=$?
py_pid=""
exit $rc
