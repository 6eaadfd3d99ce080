#!/usr/bin/env bash
# Runs every test of lanes: formatting, clippy, the workspace's unit, integration and doc tests,
# rustdoc with warnings as errors (every feature on), the packaging dry run of the published
# crates, the check that the runtime's modules import each other in no cycle,
# the check that lanes-proto stays free of I/O crates, the fuzz targets (built, replayed on
# their committed corpus, and fuzzed briefly), a minute's soak of examples/echo under churn and
# hostile peers (scripts/soak.sh), the Autobahn TestSuite (cases 1.*-10.*, 12.*, 13.*, over ws://
# and wss://) against examples/echo, its client cases against lanes' outbound connections
# (scripts/autobahn_client.sh), the chat example end to end in headless Chromium (over ws
# and wss), the wss:// tests of scripts/tls_test.sh (Python websockets, Node ws, hostile
# TLS clients), outbound connections against Python websockets and Node ws servers
# (scripts/outbound_test.sh), and the broker bridge with real nats-server, redis-server and
# HAProxy (scripts/bridge_test.sh).
#
# Usage: scripts/test.sh            (from anywhere; installs cargo-fuzz, wstest, chromium,
#                                    playwright-core, nats-server, redis-server and haproxy
#                                    if missing)
#        LANES_FUZZ_SECONDS=60 scripts/test.sh   (fuzz each target longer; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace"
cargo test --workspace --locked

step "lanes with the broker bridge (features nats, redis): clippy"
cargo clippy -p lanes --all-features --all-targets --locked -- -D warnings

step "lanes without its default features (deflate, metrics): clippy and tests"
cargo clippy -p lanes --no-default-features --all-targets --locked -- -D warnings
cargo test -p lanes --no-default-features --locked

step "cargo doc, every feature (warnings are errors: broken links, missing docs)"
# lanes-benches apart: its features pick one deflate backend each (zlib-ng needs cmake).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --exclude lanes-benches --no-deps --all-features --locked
RUSTDOCFLAGS="-D warnings" cargo doc -p lanes-benches --no-deps --locked

step "cargo publish --workspace --dry-run (package and build each published crate)"
# Stages the unpublished workspace dependencies in a local registry and builds every package from
# its .crate in the shared target dir (about 30 s after the steps above). --allow-dirty: this
# checks the packages, not whether the work tree is committed. Expected warnings: the examples
# (../../examples) and tests/dashboard.rs are not packaged with crates/lanes, and the name
# `lanes` is already taken on crates.io (by another project: a real publish needs a new name).
# Cargo unpacks the staged crates under $CARGO_HOME/registry/src/-<hash of the staging path>/ and
# reuses an unpacked copy whose version matches, so a checkout that ran this step before at the
# same path (same 0.1.0 versions) would verify against its old sources. Remove those copies (of
# this workspace's crates only, in local registries only) and the old staging dir first.
rm -rf target/package "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/lanes-proto-* \
  "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/lanes-metrics-*
cargo publish --workspace --dry-run --locked --allow-dirty

step "module cycles: no crate imports its modules in a cycle"
python3 scripts/check_cycles.py crates/lanes crates/lanes-proto crates/lanes-metrics crates/lanes-load

step "lanes-proto depends on no I/O crate"
io_deps=$(cargo tree -p lanes-proto -e normal --prefix none --locked | awk '{print $1}' \
  | grep -E '^(mio|socket2|libc|tokio|crossbeam.*|core_affinity)$' || true)
if [ -n "$io_deps" ]; then
  echo "lanes-proto must not depend on: $io_deps" >&2
  exit 1
fi
echo "ok: $(cargo tree -p lanes-proto -e normal --prefix none --locked | awk '{print $1}' | sort -u | tr '\n' ' ')"

step "fuzz targets: build, replay the corpus, fuzz briefly"
scripts/fuzz.sh smoke "${LANES_FUZZ_SECONDS:-10}"

step "soak: a minute of churn and hostile peers against examples/echo"
scripts/soak.sh 60

step "Autobahn TestSuite against examples/echo"
scripts/autobahn.sh

step "Autobahn TestSuite's client cases: lanes' outbound connections against wstest -m fuzzingserver"
scripts/autobahn_client.sh

step "browser test: examples/chat in headless Chromium (installs chromium and playwright-core)"
scripts/browser_test.sh
scripts/tls_test.sh # wss:// with Python and Node clients, hostile TLS clients, their counters
scripts/outbound_test.sh # outbound ws:// and wss:// against Python and Node servers

step "broker bridge: nats-server, redis-server, HAProxy (installs them)"
scripts/bridge_test.sh

step "monitoring: Prometheus and InfluxDB against examples/echo and lanes-load (installs prometheus and influxdb)"
scripts/monitoring_test.sh

echo
echo "all tests passed"
