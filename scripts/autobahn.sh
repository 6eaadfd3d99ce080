#!/usr/bin/env bash
# Runs the Autobahn|Testsuite conformance cases (wstest -m fuzzingclient) against a lanes WebSocket
# server on loopback, prints a summary and fails on any FAILED or NON-STRICT case.
#
# Usage: scripts/autobahn.sh      (from anywhere; installs wstest on first use, see below)
#
# wstest is single-threaded Python and the bottleneck (the permessage-deflate cases 12.* and 13.*
# alone keep one busy for over 20 minutes), so the cases are shared out among several wstest
# processes, "shards", that run at once against the one server: scripts/autobahn/shard.py splits
# them by estimated running time. Each shard has its own spec, reports and log; the summary
# merges their reports.
#
# Environment:
#   LANES_AUTOBAHN_CASES    comma-separated case patterns or ids, e.g. "1.*,2.*,12.1.10" (default:
#                           the spec's, scripts/autobahn/fuzzingclient.json)
#   LANES_AUTOBAHN_EXCLUDE  comma-separated case patterns or ids to skip (default: the spec's)
#   LANES_AUTOBAHN_JOBS     how many wstest shards run at once (default: the number of cores)
#   LANES_AUTOBAHN_SERVER   command line of the server under test; it must listen on
#                           127.0.0.1:$LANES_AUTOBAHN_PORT (default: build and run the echo example)
#   LANES_AUTOBAHN_PORT     port of the server under test (default: a free port)
#   LANES_AUTOBAHN_TIMEOUT  seconds each shard may run (default: 5 times the estimated time of
#                           the longest shard, at least 3000)
#   LANES_AUTOBAHN_OUT      where the specs, logs and reports go (default target/autobahn):
#                           fuzzingclient.json (the run's spec), cases.txt (its case ids),
#                           fuzzingclient-K.json, wstest-K.log and reports-K/ (shard K),
#                           reports/index.json (the merged index), server.log
#   LANES_AUTOBAHN_HOME     install cache of wstest (default ~/.cache/lanes-autobahn)
#   LANES_AUTOBAHN_MIRROR   Debian mirror for the Python 2.7 packages (default: the one of
#                           /etc/apt/sources.list.d/debian.sources)
#
# wstest needs Python 2.7, which Debian 12 lacks: the script takes python2.7 from Debian 11
# (bullseye) with `apt-get download` + `dpkg -x` (using its own apt state, not the system's), then
# pip 20.3.4 from PyPI installs autobahntestsuite and its pinned dependencies (all binary wheels
# or pure-Python sdists: no compiler needed). Everything lands in $LANES_AUTOBAHN_HOME; a complete
# install is reused. Delete that folder to reinstall.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

home=${LANES_AUTOBAHN_HOME:-$HOME/.cache/lanes-autobahn}
# Without LANES_AUTOBAHN_PORT, a port that is free right now (so a busy 9001 does not fail CI).
port=${LANES_AUTOBAHN_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
jobs=${LANES_AUTOBAHN_JOBS:-$(nproc)}
out=${LANES_AUTOBAHN_OUT:-${CARGO_TARGET_DIR:-$repo/target}/autobahn}
spec_template=$repo/scripts/autobahn/fuzzingclient.json

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "autobahn.sh: $*" >&2
  exit 1
}

[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "LANES_AUTOBAHN_JOBS must be a positive number, not '$jobs'"
command -v python3 >/dev/null || die "python3 is needed (apt-get install python3)"

# --- 1. wstest ---------------------------------------------------------------------------------

suite_version=25.10.1
root=$home/wstest-$suite_version # the install; complete once root/.complete exists
wstest=$home/bin/wstest

# What pip installs with Python 2.7: autobahntestsuite's dependencies, pinned, transitive ones
# included (their last Python 2 releases), so that a fresh install gets what was tested.
# Not autobahn's `accelerate` extra: wsaccel does not build.
py2_requirements=(
  txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2 Twisted==19.10.0
  zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0
  service_identity==18.1.0 unittest2==1.1.0 six==1.16.0 "autobahn[twisted]==0.10.9"
  setuptools==44.0.0 Automat==22.10.0 PyHamcrest==1.10.1 attrs==21.4.0 cffi==1.15.1
  constantly==15.1.0 enum34==1.1.10 hyperlink==21.0.0 idna==2.10 ipaddress==1.0.23
  pyasn1==0.5.1 pyasn1-modules==0.3.0 pycparser==2.21 typing==3.10.0.0 argparse==1.4.0
  linecache2==1.0.0 traceback2==1.4.0
)

# Prints the URI of the main Debian archive from the system's apt sources.
debian_mirror() {
  if [ -n "${LANES_AUTOBAHN_MIRROR:-}" ]; then
    echo "$LANES_AUTOBAHN_MIRROR"
    return
  fi
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: the first URIs field that is not the security archive.
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    # One-line format: "deb [options] URI suite components".
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {
      if ($i !~ /security/) { print $i; exit } break } }' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

install_wstest() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || die "$keyring is missing (apt-get install debian-archive-keyring)"
  if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    die "apt-get and dpkg are needed"
  fi

  # Build in a scratch folder next to the install and move it into place only when complete.
  local work=$home/build
  rm -rf "$work" "$root"
  mkdir -p "$work"/apt/lists/partial "$work"/apt/cache/archives/partial "$work"/apt/parts \
    "$work"/debs "$work"/wheels "$work"/tools "$work"/root/site

  step "download Python 2.7 from Debian bullseye ($(debian_mirror))"
  echo "deb [signed-by=$keyring] $(debian_mirror) bullseye main" >"$work"/apt/sources.list
  # apt with its own sources, lists, cache and preferences: the system's apt state is untouched.
  local apt_opts=(
    -o Dir::Etc::SourceList="$work"/apt/sources.list -o Dir::Etc::SourceParts="$work"/apt/parts
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$work"/apt/parts
    -o Dir::State::Lists="$work"/apt/lists -o Dir::Cache="$work"/apt/cache
    -o Dir::State::status=/dev/null -o Acquire::Languages=none -o APT::Sandbox::User="$(id -un)"
  )
  apt-get "${apt_opts[@]}" -qq update
  (cd "$work"/debs && apt-get "${apt_opts[@]}" -q download python2.7 python2.7-minimal \
    libpython2.7-stdlib libpython2.7-minimal libpython2.7 libssl1.1 libffi7)
  local deb
  for deb in "$work"/debs/*.deb; do
    dpkg -x "$deb" "$work"/root/py27
  done
  local libdir
  libdir=$(echo "$work"/root/py27/usr/lib/*-linux-gnu)
  [ -e "$libdir/libpython2.7.so.1.0" ] || die "libpython2.7 not found in $work/root/py27"
  libdir=${libdir#"$work"/root/}

  # Runs the unpacked python2.7 from the build folder.
  py2() {
    LD_LIBRARY_PATH="$work/root/$libdir" PYTHONHOME="$work"/root/py27/usr PYTHONNOUSERSITE=1 \
      PYTHONPATH="$work"/tools "$work"/root/py27/usr/bin/python2.7 "$@"
  }
  py2 -c 'import ssl, ctypes, zlib' || die "the unpacked python2.7 does not run"

  step "install pip 20.3.4 and autobahntestsuite $suite_version"
  # The last pip for Python 2, as a wheel: with the machine's pip from PyPI, or where python3
  # has no pip, bullseye's python-pip-whl (unpacked into the Python prefix: that pip looks for the
  # wheels of its unbundled dependencies in <sys.prefix>/share/python-wheels). It only installs
  # pip 20.3.4 from PyPI into tools/.
  local pip_whl
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 2.7 \
      -d "$work"/wheels pip==20.3.4
    pip_whl=$(echo "$work"/wheels/pip-*.whl)
  else
    (cd "$work"/debs && apt-get "${apt_opts[@]}" -q download python-pip-whl)
    dpkg -x "$work"/debs/python-pip-whl_*.deb "$work"/root/py27
    pip_whl=$(echo "$work"/root/py27/usr/share/python-wheels/pip-*.whl)
  fi
  local pip_opts=(--disable-pip-version-check --no-python-version-warning --no-warn-script-location
    --no-cache-dir -q)
  # pip, setuptools and wheel go to tools/ (used only to install); the rest to root/site.
  py2 "$pip_whl"/pip install "${pip_opts[@]}" --target "$work"/tools \
    pip==20.3.4 setuptools==44.0.0 wheel==0.37.1
  rm -rf "$work"/root/py27/usr/share/python-wheels
  py2 -m pip install "${pip_opts[@]}" --target "$work"/root/site --no-build-isolation \
    --prefer-binary "${py2_requirements[@]}"
  rm -rf "$work"/root/site/bin
  py2 -m pip install "${pip_opts[@]}" --target "$work"/root/site --no-build-isolation \
    --no-deps "autobahntestsuite==$suite_version"
  # Console scripts (unused: the wrapper below runs the module).
  rm -rf "$work"/root/site/bin
  # zope is a namespace package, declared by a .pth file that --target does not honour.
  touch "$work"/root/site/zope/__init__.py

  # The wrapper that runs wstest with the unpacked Python and the installed packages.
  mkdir -p "$home"/bin
  mv "$work"/root "$root"
  cat >"$wstest" <<EOF
#!/bin/sh
# wstest from Autobahn|Testsuite $suite_version, installed by scripts/autobahn.sh of lanes.
root='$root'
export LD_LIBRARY_PATH="\$root/$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PYTHONHOME="\$root/py27/usr" PYTHONPATH="\$root/site" PYTHONNOUSERSITE=1
exec "\$root/py27/usr/bin/python2.7" -m autobahntestsuite.wstest "\$@"
EOF
  chmod +x "$wstest"
  "$wstest" --autobahnversion >/dev/null || die "the installed wstest does not run"
  touch "$root"/.complete
  rm -rf "$work"
}

if [ -e "$root/.complete" ] && [ -x "$wstest" ]; then
  echo "wstest: $wstest (cached)"
else
  started=$SECONDS
  install_wstest
  echo "wstest installed in $((SECONDS - started)) s: $wstest"
fi
"$wstest" --autobahnversion | tr '\n' ' '
echo

# --- 2. the cases and their shards -------------------------------------------------------------

# Only what this script writes there is removed, LANES_AUTOBAHN_OUT may be any folder.
mkdir -p "$out"
rm -rf "$out/reports" "$out"/reports-[0-9]* "$out"/fuzzingclient*.json "$out/server.log" \
  "$out"/wstest*.log "$out/cases.txt" "$out/probe"

# Test server checks and shutdown: port_open, stop_server.
. "$repo/scripts/server_process.sh"

wstest_s="" # how long the shards ran, once they have
wstest_pids=() # of the shards still running (their `timeout`, which passes TERM on to wstest)
on_exit() {
  local rc=$? pid
  for pid in "${wstest_pids[@]}"; do
    if [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  stop_server
  if [ "$rc" -ne 0 ] && [ -s "$out/server.log" ]; then
    echo "--- last lines of $out/server.log" >&2
    tail -n 20 "$out/server.log" >&2
  fi
  if [ -n "$wstest_s" ]; then
    echo "wall time: $SECONDS s in all, wstest $wstest_s s ($shards shards, $(nproc) cores)"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if port_open; then
  die "127.0.0.1:$port already accepts connections; stop that server or set LANES_AUTOBAHN_PORT"
fi

# The run's spec: the template with the port and the case lists set.
spec=$out/fuzzingclient.json
mkdir -p "$out/probe"
python3 - "$spec_template" "$spec" "$port" "$out/probe" <<'EOF'
import json, os, sys
template, spec, port, probe = sys.argv[1:]
with open(template) as f:
    s = json.load(f)
s.pop("outdir", None)  # each shard has its own
for server in s["servers"]:
    server["url"] = "ws://127.0.0.1:%s" % port
for key, env in (("cases", "LANES_AUTOBAHN_CASES"), ("exclude-cases", "LANES_AUTOBAHN_EXCLUDE")):
    if os.environ.get(env, "").strip():
        s[key] = [c.strip() for c in os.environ[env].split(",") if c.strip()]
with open(spec, "w") as f:
    json.dump(s, f, indent=2)
# The probe's spec (below): all cases.
with open(os.path.join(probe, "fuzzingclient.json"), "w") as f:
    json.dump(dict(s, cases=["*"], **{"exclude-cases": [], "outdir": probe}), f, indent=2)
print("cases: %s; excluded: %s" % (" ".join(s["cases"]), " ".join(s["exclude-cases"]) or "none"))
EOF

# The ids of all cases, from wstest: run with the cases ["*"], it prints "Cases = [...]", then
# "Servers = [...]", and is stopped there (before it connects; nothing listens on the port yet
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
echo "$(wc -l <"$out/cases.txt") cases in $shards shards (LANES_AUTOBAHN_JOBS=$jobs)"
# By default each shard may run 5 times the estimate, at least 3000 s. The estimates are from a
# quiet 2-core machine where 2 shards took about 600 s; on the machine of 2026-12-03 wstest ran
# about 3 times slower for the build before the session refactor and after it alike (case
# 13.7.10: 42 s and 40 s, estimated 14 s), and 2 shards had not finished in 1457 s.
timeout_s=${LANES_AUTOBAHN_TIMEOUT:-$((estimate_s * 5 > 3000 ? estimate_s * 5 : 3000))}

# --- 3. the server under test ------------------------------------------------------------------

if [ -n "${LANES_AUTOBAHN_SERVER:-}" ]; then
  server_cmd=$LANES_AUTOBAHN_SERVER
else
  step "cargo build --release --example echo"
  cargo build --release --locked --example echo
  server_cmd="${CARGO_TARGET_DIR:-$repo/target}/release/examples/echo --addr 127.0.0.1:$port"
fi

step "start the server: $server_cmd"
# setsid: a process group of its own, so that stopping it also stops what it started.
LANES_AUTOBAHN_PORT=$port setsid bash -c "$server_cmd" >"$out/server.log" 2>&1 </dev/null &
server_pid=$!
for _ in $(seq 300); do # 30 s
  port_open && break
  kill -0 "$server_pid" 2>/dev/null || die "the server exited before listening on 127.0.0.1:$port"
  sleep 0.1
done
port_open || die "the server does not accept connections on 127.0.0.1:$port after 30 s"
echo "listening on 127.0.0.1:$port (pid $server_pid)"

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
  kill -0 "$server_pid" 2>/dev/null || die "the server died during the run"
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
python3 "$repo/scripts/autobahn/summary.py" --expect "$out/cases.txt" \
  --merge-to "$out/reports/index.json" "${indexes[@]}"
