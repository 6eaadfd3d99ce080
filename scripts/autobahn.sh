#!/usr/bin/env bash
# Runs the Autobahn|Testsuite conformance cases (wstest -m fuzzingclient) against lanes WebSocket
# servers on loopback, over ws:// and over wss:// (TLS), prints a summary and fails on any FAILED
# or NON-STRICT case.
#
# Usage: scripts/autobahn.sh      (from anywhere; installs wstest on first use, see below)
#
# Every case runs twice: against examples/echo over ws:// (agent "lanes") and against a second
# examples/echo started with --tls-cert/--tls-key over wss:// (agent "lanes-wss"), with a
# certificate made for the run by the openssl CLI (installed with apt-get when missing) and
# never kept. wstest does not verify the server's certificate (a spec server without "hostname"
# gets Twisted's ClientContextFactory, which checks nothing): enough for a conformance run.
#
# wstest is single-threaded Python and the bottleneck (the permessage-deflate cases 12.* and 13.*
# are nearly all of its time), so the cases are shared out among several wstest processes,
# "shards", that run at once against the servers: scripts/autobahn/shard.py splits them by
# estimated running time, and each shard runs its cases against both servers, one after the
# other. Each shard has its own spec, reports and log; the summary merges their reports.
#
# Environment:
#   LANES_AUTOBAHN_CASES    comma-separated case patterns or ids, e.g. "1.*,2.*,12.1.10" (default:
#                           the spec's, scripts/autobahn/fuzzingclient.json)
#   LANES_AUTOBAHN_EXCLUDE  comma-separated case patterns or ids to skip (default: the spec's)
#   LANES_AUTOBAHN_SCHEMES  which servers to test: "ws,wss" (default), "ws" or "wss"
#   LANES_AUTOBAHN_JOBS     how many wstest shards run at once (default: the number of cores)
#   LANES_AUTOBAHN_SERVER   command line of the ws:// server under test; it must listen on
#                           127.0.0.1:$LANES_AUTOBAHN_PORT (default: build and run the echo example)
#   LANES_AUTOBAHN_PORT     port of the ws:// server under test (default: a free port)
#   LANES_AUTOBAHN_TLS_SERVER  command line of the wss:// server under test; it must listen on
#                           127.0.0.1:$LANES_AUTOBAHN_TLS_PORT with the certificate chain
#                           $LANES_AUTOBAHN_TLS_CERT and key $LANES_AUTOBAHN_TLS_KEY (PEM files
#                           this script makes) (default: the echo example with --tls-cert/--tls-key)
#   LANES_AUTOBAHN_TLS_PORT port of the wss:// server under test (default: a free port)
#   LANES_AUTOBAHN_TIMEOUT  seconds each shard may run (default: 2.5 times the estimated time of
#                           the longest shard, at least 1200)
#   LANES_AUTOBAHN_OUT      where the specs, logs and reports go (default target/autobahn):
#                           fuzzingclient.json (the run's spec), cases.txt (its case ids),
#                           fuzzingclient-K.json, wstest-K.log and reports-K/ (shard K),
#                           reports/index.json (the merged index), server.log (ws://),
#                           server-wss.log (wss://), tls/ (the run's certificate and key)
#   LANES_AUTOBAHN_HOME     install cache of wstest (default ~/.cache/lanes-autobahn)
#   LANES_AUTOBAHN_MIRROR   Debian mirror for the Python 2.7 packages (default: the one of
#                           /etc/apt/sources.list.d/debian.sources)
#
# wstest needs Python 2.7, which Debian 12 lacks: the script takes python2.7 from Debian 11
# (bullseye) with `apt-get download` + `dpkg -x` (using its own apt state, not the system's), then
# pip 20.3.4 from PyPI installs autobahntestsuite and its pinned dependencies (all binary wheels
# or pure-Python sdists: no compiler needed), and wsaccel, the C UTF-8 validator and XOR masker
# that autobahn uses when it can import them, is compiled with `cc` (the one cargo links with)
# from its sdist's C files against bullseye's Python 2.7 headers (libpython2.7-dev). Without
# wsaccel, wstest validates UTF-8 and masks frames in pure Python: three quarters of its time in
# the 12.* and 13.* cases, and a run of ws:// alone took 29 minutes on 2 cores. Everything lands
# in $LANES_AUTOBAHN_HOME; a complete install is reused. Delete that folder to reinstall.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

home=${LANES_AUTOBAHN_HOME:-$HOME/.cache/lanes-autobahn}
schemes=${LANES_AUTOBAHN_SCHEMES:-ws,wss}
jobs=${LANES_AUTOBAHN_JOBS:-$(nproc)}
out=${LANES_AUTOBAHN_OUT:-${CARGO_TARGET_DIR:-$repo/target}/autobahn}
spec_template=$repo/scripts/autobahn/fuzzingclient.json

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "autobahn.sh: $*" >&2
  exit 1
}

[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "LANES_AUTOBAHN_JOBS must be a positive number, not '$jobs'"
[[ $schemes =~ ^(ws|wss|ws,wss|wss,ws)$ ]] ||
  die "LANES_AUTOBAHN_SCHEMES must be ws,wss, ws or wss, not '$schemes'"
command -v python3 >/dev/null || die "python3 is needed (apt-get install python3)"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Without LANES_AUTOBAHN_PORT / _TLS_PORT, ports that are free right now (so a busy 9001 does not
# fail CI).
port=${LANES_AUTOBAHN_PORT:-$(free_port)}
tls_port=${LANES_AUTOBAHN_TLS_PORT:-$(free_port)}
[ "$port" != "$tls_port" ] || die "LANES_AUTOBAHN_PORT and LANES_AUTOBAHN_TLS_PORT are both $port"

# --- 1. wstest ---------------------------------------------------------------------------------

. "$repo/scripts/autobahn/wstest.sh"

# --- 2. the cases and their shards -------------------------------------------------------------

# Only what this script writes there is removed, LANES_AUTOBAHN_OUT may be any folder.
mkdir -p "$out"
rm -rf "$out/reports" "$out"/reports-[0-9]* "$out"/fuzzingclient*.json "$out"/server*.log \
  "$out"/wstest*.log "$out/cases.txt" "$out/probe" "$out/tls"

# Test server checks and shutdown: port_open, stop_server (on the globals port and server_pid).
. "$repo/scripts/server_process.sh"

# The servers under test, by scheme: their ports, process groups and logs.
IFS=, read -r -a scheme_list <<<"$schemes"
declare -A server_port=([ws]=$port [wss]=$tls_port) server_pids=()
declare -A server_log=([ws]=$out/server.log [wss]=$out/server-wss.log)
# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
listening() { port=$1 port_open; }

wstest_s="" # how long the shards ran, once they have
wstest_pids=() # of the shards still running (their `timeout`, which passes TERM on to wstest)
on_exit() {
  local rc=$? pid scheme
  for pid in "${wstest_pids[@]}"; do
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  for scheme in "${!server_pids[@]}"; do
    server_pid=${server_pids[$scheme]}
    stop_server
  done
  for scheme in "${scheme_list[@]}"; do
    if [ "$rc" -ne 0 ] && [ -s "${server_log[$scheme]}" ]; then
      echo "--- last lines of ${server_log[$scheme]}" >&2
      tail -n 20 "${server_log[$scheme]}" >&2
    fi
  done
  if [ -n "$wstest_s" ]; then
    echo "wall time: $SECONDS s in all, wstest $wstest_s s ($shards shards, $(nproc) cores)"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for scheme in "${scheme_list[@]}"; do
  if listening "${server_port[$scheme]}"; then
    die "127.0.0.1:${server_port[$scheme]} already accepts connections; stop that server or set" \
      "LANES_AUTOBAHN_$([ "$scheme" = ws ] || echo TLS_)PORT"
  fi
done

# The run's spec: the template's servers of the schemes asked for, with their ports, and the case
# lists set.
spec=$out/fuzzingclient.json
mkdir -p "$out/probe"
python3 - "$spec_template" "$spec" "$schemes" "$port" "$tls_port" "$out/probe" <<'EOF'
import json, os, sys
template, spec, schemes, port, tls_port, probe = sys.argv[1:]
with open(template) as f:
    s = json.load(f)
s.pop("outdir", None)  # each shard has its own
ports = {"ws": port, "wss": tls_port}
s["servers"] = [dict(server, url="%s://127.0.0.1:%s" % (scheme, ports[scheme]))
                for server in s["servers"]
                for scheme in [server["url"].split("://")[0]] if scheme in schemes.split(",")]
for key, env in (("cases", "LANES_AUTOBAHN_CASES"), ("exclude-cases", "LANES_AUTOBAHN_EXCLUDE")):
    if os.environ.get(env, "").strip():
        s[key] = [c.strip() for c in os.environ[env].split(",") if c.strip()]
with open(spec, "w") as f:
    json.dump(s, f, indent=2)
# The probe's spec (below): all cases.
with open(os.path.join(probe, "fuzzingclient.json"), "w") as f:
    json.dump(dict(s, cases=["*"], **{"exclude-cases": [], "outdir": probe}), f, indent=2)
print("servers: %s" % ", ".join("%s (agent %s)" % (v["url"], v["agent"]) for v in s["servers"]))
print("cases: %s; excluded: %s" % (" ".join(s["cases"]), " ".join(s["exclude-cases"]) or "none"))
EOF
agents=$(python3 -c 'import json, sys
print(",".join(s["agent"] for s in json.load(open(sys.argv[1]))["servers"]))' "$spec")

# The ids of all cases, from wstest: run with the cases ["*"], it prints "Cases = [...]", then
# "Servers = [...]", and is stopped there (before it connects; nothing listens on the ports yet
# anyway). shard.py resolves the spec's patterns against them.
PYTHONUNBUFFERED=1 timeout 60 "$wstest" -m fuzzingclient -s "$out/probe/fuzzingclient.json" \
  >"$out/probe/wstest.log" 2>&1 &
wstest_pids=("$!")
until grep -qs '^Servers = ' "$out/probe/wstest.log"; do
  kill -0 "${wstest_pids[0]}" 2>/dev/null || break
  sleep 0.1
done
kill -TERM "${wstest_pids[0]}" 2>/dev/null || true
wait "${wstest_pids[0]}" 2>/dev/null || true
wstest_pids=()
grep -q '^Servers = ' "$out/probe/wstest.log" ||
  die "wstest could not list the cases (see $out/probe/wstest.log)"
plan=$(python3 "$repo/scripts/autobahn/shard.py" "$spec" "$out/probe/wstest.log" "$jobs" "$out")
read -r shards estimate_s <<<"$plan"
[ "$shards" -gt 0 ] || die "no case matches the spec's cases (LANES_AUTOBAHN_CASES) minus its exclusions"
echo "$(wc -l <"$out/cases.txt") cases x ${#scheme_list[@]} servers in $shards shards" \
  "(LANES_AUTOBAHN_JOBS=$jobs)"
# By default each shard may run 2.5 times the estimate, at least 1200 s: the estimates are from a
# busy machine already (see shard.py), and 2 shards x 2 servers are estimated at about 1200 s, so
# a stuck run still ends within CI's time.
timeout_s=${LANES_AUTOBAHN_TIMEOUT:-$((estimate_s * 5 / 2 > 1200 ? estimate_s * 5 / 2 : 1200))}

# --- 3. the servers under test ------------------------------------------------------------------

echo=${CARGO_TARGET_DIR:-$repo/target}/release/examples/echo
tls_cert=$out/tls/cert.pem tls_key=$out/tls/key.pem
if [[ $schemes == *wss* ]]; then
  # A self-signed certificate for 127.0.0.1, made for this run (wstest checks none).
  if ! command -v openssl >/dev/null; then
    step "apt-get install openssl (to make the run's test certificate)"
    command -v apt-get >/dev/null || die "the openssl CLI is needed (apt-get install openssl)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq openssl >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; } ||
      die "could not install openssl"
  fi
  mkdir -p "$out/tls"
  export LANES_AUTOBAHN_TLS_CERT=$tls_cert LANES_AUTOBAHN_TLS_KEY=$tls_key
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$tls_key" -out "$tls_cert" 2>"$out/tls/openssl.log" ||
    die "openssl could not make the test certificate (see $out/tls/openssl.log)"
fi
declare -A server_cmd=(
  [ws]=${LANES_AUTOBAHN_SERVER:-$echo --addr 127.0.0.1:$port}
  [wss]=${LANES_AUTOBAHN_TLS_SERVER:-$echo --addr 127.0.0.1:$tls_port --tls-cert $tls_cert \
--tls-key $tls_key}
)
if [[ ( ,$schemes, == *,ws,* && -z ${LANES_AUTOBAHN_SERVER:-} ) ||
  ( ,$schemes, == *,wss,* && -z ${LANES_AUTOBAHN_TLS_SERVER:-} ) ]]; then
  step "cargo build --release --example echo"
  cargo build --release --locked --example echo
fi

for scheme in "${scheme_list[@]}"; do
  step "start the $scheme:// server: ${server_cmd[$scheme]}"
  # setsid: a process group of its own, so that stopping it also stops what it started.
  LANES_AUTOBAHN_PORT=$port LANES_AUTOBAHN_TLS_PORT=$tls_port \
    setsid bash -c "${server_cmd[$scheme]}" >"${server_log[$scheme]}" 2>&1 </dev/null &
  server_pids[$scheme]=$!
done
for scheme in "${scheme_list[@]}"; do
  p=${server_port[$scheme]}
  for _ in $(seq 300); do # 30 s
    listening "$p" && break
    kill -0 "${server_pids[$scheme]}" 2>/dev/null ||
      die "the $scheme:// server exited before listening on 127.0.0.1:$p"
    sleep 0.1
  done
  listening "$p" ||
    die "the $scheme:// server does not accept connections on 127.0.0.1:$p after 30 s"
  echo "$scheme:// server listening on 127.0.0.1:$p (pid ${server_pids[$scheme]})"
done

# --- 4. wstest -m fuzzingclient, one per shard ---------------------------------------------------

step "$shards x wstest -m fuzzingclient (each at most ${timeout_s} s; logs: $out/wstest-K.log)"
started=$SECONDS
# In the background, so that INT/TERM are handled at once (the trap stops them too).
for k in $(seq "$shards"); do
  timeout --kill-after=10 "$timeout_s" "$wstest" -m fuzzingclient -s "$out/fuzzingclient-$k.json" \
    >"$out/wstest-$k.log" 2>&1 &
  wstest_pids[k - 1]=$!
done
failed=()
running=$shards
while [ "$running" -gt 0 ]; do
  sleep 1
  for k in $(seq "$shards"); do
    pid=${wstest_pids[k - 1]}
    if [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null; then
      continue
    fi
    rc=0
    wait "$pid" || rc=$?
    wstest_pids[k - 1]=""
    running=$((running - 1))
    echo "shard $k finished after $((SECONDS - started)) s, exit status $rc"
    if [ "$rc" -ne 0 ] || [ ! -s "$out/reports-$k/index.json" ]; then
      echo "--- last lines of $out/wstest-$k.log" >&2
      tail -n 30 "$out/wstest-$k.log" >&2
      if [ "$rc" -eq 124 ]; then
        failed+=("shard $k did not finish within $timeout_s s (LANES_AUTOBAHN_TIMEOUT)")
      else
        failed+=("shard $k failed or wrote no $out/reports-$k/index.json")
      fi
    fi
  done
  # The shards left would only fail case after case.
  for scheme in "${scheme_list[@]}"; do
    kill -0 "${server_pids[$scheme]}" 2>/dev/null || die "the $scheme:// server died during the run"
  done
done
wstest_s=$((SECONDS - started))
echo "wstest ran $wstest_s s"
[ "${#failed[@]}" -eq 0 ] || die "${failed[0]}$(printf '; %s' "${failed[@]:1}")"

# --- 5. summary ------------------------------------------------------------------------------------

step "summary (reports: $out/reports-{1..$shards}/index.html; merged: $out/reports/index.json)"
indexes=()
for k in $(seq "$shards"); do
  indexes+=("$out/reports-$k/index.json")
done
python3 "$repo/scripts/autobahn/summary.py" --expect "$out/cases.txt" --agents "$agents" \
  --merge-to "$out/reports/index.json" "${indexes[@]}"
