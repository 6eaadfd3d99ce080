#!/usr/bin/env bash
# Runs the Autobahn|Testsuite's client cases (wstest -m fuzzingserver) with lanes' outbound
# connections as the client under test (examples/autobahn_client), on loopback; prints a summary
# and fails on any case that is not OK or INFORMATIONAL, or when a case is missing.
#
# Usage: scripts/autobahn_client.sh      (from anywhere; installs wstest on first use, as
#                                         scripts/autobahn.sh does)
#
# The cases (1.* to 10.*, 12.* and 13.*: the same as the server run's) are shared out between two
# fuzzingservers that run at once, each with its own port, spec, log and report: 1.* to 10.* with
# 12.* on one, 13.* on the other (the permessage-deflate cases are nearly all of wstest's time).
# A client process runs each server's cases one connection after the other, as agent
# "lanes-client".
#
# Environment:
#   LANES_AUTOBAHN_CLIENT_OUT  where specs, logs and reports go (default target/autobahn-client)
#   LANES_AUTOBAHN_HOME        install cache of wstest (default ~/.cache/lanes-autobahn)
#   LANES_AUTOBAHN_TIMEOUT     seconds each half may run (default 1500)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

home=${LANES_AUTOBAHN_HOME:-$HOME/.cache/lanes-autobahn}
out=${LANES_AUTOBAHN_CLIENT_OUT:-${CARGO_TARGET_DIR:-$repo/target}/autobahn-client}
limit=${LANES_AUTOBAHN_TIMEOUT:-1500}
agent=lanes-client

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "autobahn_client.sh: $*" >&2
  exit 1
}
command -v python3 >/dev/null || die "python3 is needed (apt-get install python3)"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

. "$repo/scripts/autobahn/wstest.sh"

step "build examples/autobahn_client (release)"
cargo build --release --locked -p lanes --example autobahn_client
client=${CARGO_TARGET_DIR:-$repo/target}/release/examples/autobahn_client

mkdir -p "$out"
rm -rf "$out"/half-* "$out"/summary.json

halves=('"1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*", "12.*"' '"13.*"')
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

step "2 x wstest -m fuzzingserver, each driven by the lanes client (each at most $limit s)"
for k in 0 1; do
  dir=$out/half-$k
  mkdir -p "$dir"
  port=$(free_port)
  cat >"$dir/fuzzingserver.json" <<SPEC
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$dir/reports",
  "cases": [${halves[$k]}],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
SPEC
  # Each half in its own process group: the fuzzingserver (no web page: -u 0) and its client.
  setsid bash -c "
    '$wstest' -m fuzzingserver -u 0 -s '$dir/fuzzingserver.json' >'$dir/wstest.log' 2>&1 &
    server=\$!
    for _ in \$(seq 1 240); do
      python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $port), 1)' 2>/dev/null && break
      sleep 0.25
    done
    timeout $limit '$client' ws://127.0.0.1:$port $agent >'$dir/client.log' 2>&1
    status=\$?
    kill \$server 2>/dev/null
    exit \$status
  " &
  pids+=($!)
done
failed=0
for k in 0 1; do
  if ! wait "${pids[$k]}"; then
    echo "half $k: the client failed:" >&2
    tail -5 "$out/half-$k/client.log" >&2
    tail -5 "$out/half-$k/wstest.log" >&2
    failed=1
  fi
done
pids=()
[ "$failed" = 0 ] || die "a client run failed (logs in $out/half-*)"
cat "$out"/half-*/client.log

step "summary"
# Every case the fuzzingservers counted must be in their reports.
python3 - "$out" "$agent" <<'PY'
import json, re, sys
out, agent = sys.argv[1], sys.argv[2]
for k in (0, 1):
    log = open(f"{out}/half-{k}/client.log").read()
    ran = int(re.search(r"(\d+) cases run", log).group(1))
    index = json.load(open(f"{out}/half-{k}/reports/index.json"))
    reported = len(index.get(agent, {}))
    if reported != ran:
        sys.exit(f"half {k}: the client ran {ran} cases, the report has {reported}")
PY
python3 "$repo/scripts/autobahn/summary.py" --agents "$agent" \
  --merge-to "$out/summary.json" "$out"/half-0/reports/index.json "$out"/half-1/reports/index.json
