#!/usr/bin/env bash
# Browser end-to-end tests: builds and starts the chat server on loopback, then
# tests/browser/chat.mjs drives headless Chromium (Debian's package, through the npm package
# playwright-core: no browser is downloaded) through two users chatting in a room, a third in
# another room, join and leave notices; then tests/browser/echo_deflate.mjs checks that Chromium
# negotiates permessage-deflate with examples/echo and round-trips text and binary messages
# through it; then tests/browser/wss.mjs does it over TLS: the chat page from examples/chat
# started with --tls-cert/--tls-key (https:// and wss://, two users in a room) and a text and a
# binary message through examples/echo over wss://. The certificate is made at test time
# (tests/tls/make_certs.sh, openssl) and trusted through Chromium's
# --ignore-certificate-errors-spki-list. Prints "browser test: ok" on success.
#
# Usage: scripts/browser_test.sh      (from anywhere)
#
# Installs what is missing: the Debian packages chromium and openssl (apt-get, as root or with
# sudo) and
# tests/browser/node_modules (npm ci, from tests/browser/package-lock.json; redone when the lock
# file changes). Needs Node.js 20 or later and npm.
#
# Environment:
#   LANES_CHAT_SERVER_CMD  command line of the server under test, run by bash with $PORT set; it
#                          must serve the chat on 127.0.0.1:$PORT (default: build the chat example
#                          and run it with --addr 127.0.0.1:$PORT --cores 2); when set, only
#                          chat.mjs runs (the echo and TLS tests need the examples)
#   LANES_BROWSER_PORT     port of the server under test (default: a free port)
#   LANES_BROWSER_OUT      where the server's log goes (default target/browser)
#   LANES_CHROMIUM         the Chromium binary (default /usr/bin/chromium)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

chromium=${LANES_CHROMIUM:-/usr/bin/chromium}
out=${LANES_BROWSER_OUT:-${CARGO_TARGET_DIR:-$repo/target}/browser}
tests=$repo/tests/browser

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "browser_test.sh: $*" >&2
  exit 1
}

# --- 1. Chromium, Node.js, playwright-core ---------------------------------------------------------

if [ ! -x "$chromium" ]; then
  [ "$chromium" = /usr/bin/chromium ] || die "LANES_CHROMIUM=$chromium is not an executable"
  step "apt-get install chromium"
  bash "$repo/scripts/apt_install.sh" chromium
  [ -x "$chromium" ] || die "apt-get installed chromium but $chromium is missing"
fi
if [ -z "${LANES_CHAT_SERVER_CMD:-}" ] && ! command -v openssl >/dev/null; then
  step "apt-get install openssl"
  bash "$repo/scripts/apt_install.sh" openssl
fi
# The Debian launcher script may print shell noise on stderr; keep only the version line.
echo "chromium: $("$chromium" --version 2>/dev/null)"

command -v node >/dev/null || die "node is needed (Node.js 20 or later)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js 20 or later is needed, found $(node --version)"

# node_modules matches the lock file when the lock file's hash is the one of the last npm ci.
stamp=$tests/node_modules/.lanes-lock-sha256
lock_hash=$(sha256sum "$tests/package-lock.json" | cut -d' ' -f1)
if [ ! -d "$tests/node_modules/playwright-core" ] || [ ! -f "$stamp" ] ||
  [ "$(cat "$stamp")" != "$lock_hash" ]; then
  command -v npm >/dev/null || die "npm is needed"
  step "npm ci in tests/browser"
  (cd "$tests" && npm ci --no-audit --no-fund)
  echo "$lock_hash" >"$stamp"
fi
echo "playwright-core: $(node -p 'require(process.argv[1]).version' \
  "$tests/node_modules/playwright-core/package.json")"

# --- 2. the chat server ------------------------------------------------------------------------

port=${LANES_BROWSER_PORT:-$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')}

mkdir -p "$out"
rm -f "$out/server.log"

# Test server checks and shutdown: port_open, stop_server.
. "$repo/scripts/server_process.sh"

# Chromium's profiles and anything else the test leaves in TMPDIR go when the script ends.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/lanes-browser-test.XXXXXX")
certs="" # the TLS test's certificates (section 5)

on_exit() {
  local rc=$?
  stop_server
  rm -rf "$scratch" "$certs"
  if [ "$rc" -ne 0 ] && [ -s "$out/server.log" ]; then
    echo "--- last lines of $out/server.log" >&2
    tail -n 20 "$out/server.log" >&2
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if port_open; then
  die "127.0.0.1:$port already accepts connections; stop that server or set LANES_BROWSER_PORT"
fi

if [ -n "${LANES_CHAT_SERVER_CMD:-}" ]; then
  server_cmd=$LANES_CHAT_SERVER_CMD
else
  step "cargo build --release -p lanes --example chat"
  cargo build --release --locked -p lanes --example chat
  server_cmd="'${CARGO_TARGET_DIR:-$repo/target}/release/examples/chat' --addr 127.0.0.1:\$PORT --cores 2"
fi

# Starts `bash -c "$1"` with PORT set, in a process group of its own (setsid, so that stopping
# it also stops what it started), and waits until it listens.
start_server() {
  step "start the server: $1 (PORT=$port)"
  PORT=$port setsid bash -c "$1" >"$out/server.log" 2>&1 </dev/null &
  server_pid=$!
  for _ in $(seq 100); do # 10 s
    port_open && return 0
    kill -0 "$server_pid" 2>/dev/null || die "the server exited before listening on 127.0.0.1:$port"
    sleep 0.1
  done
  die "the server does not accept connections on 127.0.0.1:$port after 10 s"
}

start_server "$server_cmd"

# --- 3. the browser test -------------------------------------------------------------------------

step "node tests/browser/chat.mjs http://127.0.0.1:$port"
# chat.mjs stops itself after 30 s; timeout is the backstop. --foreground: node stays in this
# process group, so that Ctrl-C reaches it (it then closes the browsers and exits).
TMPDIR=$scratch timeout --foreground --kill-after=5 60 node "$tests/chat.mjs" "http://127.0.0.1:$port" ||
  die "the chat test failed (exit status $?); server log: $out/server.log"
kill -0 "$server_pid" 2>/dev/null || die "the server died during the test"
stop_server

# --- 4. permessage-deflate in the browser, against examples/echo -------------------------------

if [ -z "${LANES_CHAT_SERVER_CMD:-}" ]; then
  step "cargo build --release -p lanes --example echo"
  cargo build --release --locked -p lanes --example echo
  echo_cmd="'${CARGO_TARGET_DIR:-$repo/target}/release/examples/echo' --addr 127.0.0.1:\$PORT --cores 2"
  start_server "$echo_cmd"
  step "node tests/browser/echo_deflate.mjs ws://127.0.0.1:$port"
  TMPDIR=$scratch timeout --foreground --kill-after=5 60 node "$tests/echo_deflate.mjs" "ws://127.0.0.1:$port" ||
    die "the permessage-deflate test failed (exit status $?); server log: $out/server.log"
  kill -0 "$server_pid" 2>/dev/null || die "the echo server died during the test"
  stop_server

  # --- 5. TLS: the chat over https:// and wss://, the echo over wss:// -------------------------

  step "test certificate (openssl, tests/tls/make_certs.sh) and Chromium's SPKI flag"
  # Under target/ (not TMPDIR): removed when the script ends, with $scratch.
  certs=$(mktemp -d "$out/certs.XXXXXX")
  "$repo/tests/tls/make_certs.sh" "$certs"
  spki=$(cat "$certs/leaf.spki")
  echo "leaf SPKI sha256 (base64): $spki"
  tls_args="--tls-cert '$certs/leaf.pem' --tls-key '$certs/leaf.key'"

  start_server "$server_cmd $tls_args"
  step "node tests/browser/wss.mjs --spki $spki https://127.0.0.1:$port"
  TMPDIR=$scratch timeout --foreground --kill-after=5 70 \
    node "$tests/wss.mjs" --spki "$spki" "https://127.0.0.1:$port" ||
    die "the chat over TLS test failed (exit status $?); server log: $out/server.log"
  kill -0 "$server_pid" 2>/dev/null || die "the chat server (TLS) died during the test"
  stop_server

  start_server "$echo_cmd $tls_args"
  step "node tests/browser/wss.mjs --spki $spki wss://127.0.0.1:$port"
  TMPDIR=$scratch timeout --foreground --kill-after=5 70 \
    node "$tests/wss.mjs" --spki "$spki" "wss://127.0.0.1:$port" ||
    die "the echo over wss:// test failed (exit status $?); server log: $out/server.log"
  kill -0 "$server_pid" 2>/dev/null || die "the echo server (TLS) died during the test"
fi

echo
echo "browser test: ok"
