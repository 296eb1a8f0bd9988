#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ (each provider's admit path, the config loader) for a
# bounded time each, and prints executions and crashes per target (issue #7).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#
# The corpus grows in fuzz/corpus/<target> (not committed) and starts from the committed seeds
# in fuzz/seeds/<target>. A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>` in fuzz/. cargo-fuzz needs nightly compiler
# flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain take them (FUZZ_TOOLCHAIN=nightly uses a
# nightly toolchain instead). Exit status: non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-${FUZZ_SECS:-60}}"
[ $# -gt 0 ] && shift
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi

if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  fuzz() { cargo "+$FUZZ_TOOLCHAIN" fuzz "$@"; }
else
  fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(fuzz list)
fi
fuzz build

results=()
crashed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log="target/fuzz-logs/$t.log" # fuzz/target is not committed
  mkdir -p target/fuzz-logs
  echo "fuzz: $t for ${secs}s"
  # -rss_limit_mb/-timeout: an input that eats memory or hangs is a finding too.
  set +e
  fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    >"$log" 2>&1
  status=$?
  set -e
  execs=$(awk '/stat::number_of_executed_units:/ {n=$2} END {print n}' "$log")
  rate=$(awk '/stat::average_exec_per_sec:/ {n=$2} END {print n}' "$log")
  corpus=$(find "corpus/$t" -type f | wc -l)
  after=$(find "artifacts/$t" -type f | wc -l)
  new=$((after - before))
  if [ "$status" -ne 0 ] || [ "$new" -gt 0 ]; then
    crashed=1
    echo "fuzz: $t FAILED (exit $status); last lines:"
    grep -E -A2 "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -30 || tail -20 "$log"
    echo "fuzz: full output in fuzz/$log"
  fi
  results+=("$(printf '%-20s %6s %12s %10s %8s %8s' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$corpus" "$new")")
done

echo
printf '%-20s %6s %12s %10s %8s %8s\n' target secs executions exec/s corpus crashes
printf '%s\n' "${results[@]}"
exit "$crashed"
