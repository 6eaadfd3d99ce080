#!/usr/bin/env bash
# Builds and runs the cargo-fuzz targets under fuzz/.
#
#   scripts/fuzz.sh smoke [SECONDS]       build all, replay each corpus, fuzz each SECONDS (10)
#   scripts/fuzz.sh run TARGET SECONDS    fuzz one target for SECONDS, print executions
#
# Uses the nightly toolchain when it is installed (with AddressSanitizer); otherwise stable with
# RUSTC_BOOTSTRAP=1 and no sanitizer (libFuzzer's coverage still works; bugs show as panics).
# Installs cargo-fuzz from crates.io when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz() { cargo +nightly fuzz "$@"; }
  sanitizer=()
else
  fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
  sanitizer=(-s none)
fi

targets=$(fuzz list)

case "${1:-smoke}" in
  smoke)
    seconds="${2:-10}"
    fuzz build -O "${sanitizer[@]}"
    for target in $targets; do
      corpus="corpus/$target"
      # Fuzz into a scratch copy so the committed corpus is not touched.
      scratch=$(mktemp -d)
      cp -r "$corpus"/. "$scratch"/
      echo "--- $target: replay $(ls "$corpus" | wc -l) corpus inputs"
      fuzz run -O "${sanitizer[@]}" "$target" "$corpus" -- -runs=0 2>&1 | tail -1
      if [ "$seconds" -gt 0 ]; then
        echo "--- $target: fuzz ${seconds}s"
        fuzz run -O "${sanitizer[@]}" "$target" "$scratch" -- \
          -max_total_time="$seconds" -print_final_stats=1 2>&1 | grep -E '^(Done|stat::number_of_executed_units)' || true
      fi
      rm -rf "$scratch"
    done
    ;;
  run)
    target="$2"
    seconds="$3"
    fuzz run -O "${sanitizer[@]}" "$target" -- -max_total_time="$seconds" -print_final_stats=1
    ;;
  *)
    echo "usage: $0 smoke [SECONDS] | run TARGET SECONDS" >&2
    exit 2
    ;;
esac
