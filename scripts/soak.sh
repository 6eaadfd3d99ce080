#!/usr/bin/env bash
# The soak: scripts/soak.py against examples/echo (release), the server on core 0 and the
# clients on core 1 (when there are two cores).
#
#   scripts/soak.sh            an hour (the figures in the README)
#   scripts/soak.sh 60         a minute (part of scripts/test.sh)
#
# soak.py checks that after the churn and the hostile peers the server's descriptors are back
# to their count before, exactly, its RSS within its bound, that nothing panicked, and that the
# steady clients were served with p99 under its bound; it exits 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
cargo build --release --locked -p lanes --example echo
pin=()
if [ "$(nproc)" -ge 2 ]; then
  pin=(taskset -c 1)
fi
"${pin[@]}" python3 scripts/soak.py --echo target/release/examples/echo --duration "$seconds" \
  --server-core 0
