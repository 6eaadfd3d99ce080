#!/usr/bin/env bash
# The main benchmark job. For now (before the runtime and the load generator exist) it runs the
# protocol-core benchmarks with criterion, pinned to one core, and prints a table:
# unmasking (bytewise reference, kernel, kernel without AVX2 dispatch, memcpy) with each
# kernel's throughput as a ratio to memcpy from the same run; frame header decoding; UTF-8
# validation against std; the server handshake.
#
# Usage: scripts/bench.sh [quick]     (quick: shorter measurement, for a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."

criterion_args=()
if [ "${1:-}" = "quick" ]; then
  criterion_args=(--warm-up-time 0.3 --measurement-time 1)
fi

# Pin to the last core when taskset is there (the machine is shared; one core keeps the
# numbers steadier). Nothing else is started, so nothing needs stopping afterwards.
pin=()
if command -v taskset >/dev/null 2>&1; then
  pin=(taskset -c "$(( $(nproc) - 1 ))")
fi

cargo bench -p lanes-benches --no-run --locked
"${pin[@]}" cargo bench -p lanes-benches --locked --bench unmask -- "${criterion_args[@]}" | grep -E '^(unmask|\s+thrpt)' || true
"${pin[@]}" cargo bench -p lanes-benches --locked --bench proto -- "${criterion_args[@]}" | grep -E '^(frame|utf8|handshake|\s+thrpt)' || true

echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
python3 scripts/criterion_table.py target unmask frame_header_decode utf8 handshake
