#!/usr/bin/env bash
# The protocol-core microbenchmarks. It runs the
# criterion benchmarks, pinned to one core, and prints a table:
# unmasking (bytewise reference, kernel, kernel without AVX2 dispatch, memcpy) with each
# kernel's throughput as a ratio to memcpy from the same run; frame header decoding; UTF-8
# validation against std; the server handshake.
#
# Usage: scripts/microbench.sh [quick]     (quick: shorter measurement, for a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."

# 1 s warm-up and 2 s of measurement per benchmark: about 4 minutes in all.
criterion_args=(--warm-up-time 1 --measurement-time 2)
if [ "${1:-}" = "quick" ]; then
  criterion_args=(--warm-up-time 0.3 --measurement-time 0.5)
fi

# Pin to the last core when taskset is there (the machine is shared; one core keeps the
# numbers steadier). Nothing else is started, so nothing needs stopping afterwards.
pin=()
if command -v taskset >/dev/null 2>&1; then
  pin=(taskset -c "$(( $(nproc) - 1 ))")
fi

cargo bench -p lanes-benches --no-run --locked

# Each benchmark's full criterion output goes to a log; its name is printed as it finishes.
run_bench() {
  local name="$1" log="target/bench-$1.log" status
  echo "== $name (criterion output: $log)"
  set +e
  "${pin[@]}" cargo bench -p lanes-benches --locked --bench "$name" -- "${criterion_args[@]}" 2>&1 \
    | tee "$log" | grep --line-buffered -oE '^[a-z_]+/[^ ]+( (B|KiB|MiB))?'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "benchmark $name failed (exit $status), see $log" >&2
    exit "$status"
  fi
}
run_bench unmask
run_bench proto

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
python3 scripts/criterion_table.py target unmask frame_header_decode utf8 handshake
