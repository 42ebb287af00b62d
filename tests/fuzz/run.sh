#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time: run.sh FUZZ_BUILD_DIR NAME SECONDS
# It starts from the seeds in corpus/NAME and replays regressions/NAME (inputs that once crashed a
# reader, kept after the fix). A finding (crash, sanitizer report, an exception other than
# zt::Error, a hang over 10 s, more than 2 GiB) fails the test; the input is kept in
# FUZZ_BUILD_DIR/findings/ — fix the reader, then add the input to regressions/NAME.
# The mutations follow a fixed seed (ZT_FUZZ_SEED, default 1) so that the suite does the same work
# on every run; ZT_FUZZ_SEED=0 lets libFuzzer pick one (a longer hunt, tests/fuzz/README.md).
set -euo pipefail
dir=$1 name=$2 secs=$3
here=$(cd "$(dirname "$0")" && pwd)
bin=$dir/tests/fuzz/zt_fuzz_$name
[[ -x $bin ]] || { echo "run.sh: $bin missing (the fuzz.build test builds it)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$dir/findings"
corpora=("$work/corpus" "$here/corpus/$name")
[[ -d $here/regressions/$name ]] && corpora+=("$here/regressions/$name")
rc=0
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$bin" "${corpora[@]}" -max_total_time="$secs" -seed="${ZT_FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 \
  -malloc_limit_mb=2048 -artifact_prefix="$dir/findings/$name-" -print_final_stats=1 \
  >"$work/log" 2>&1 || rc=$?
if ((rc != 0)); then
  grep -v "^#" "$work/log" | tail -n 40
  echo "FAIL: zt_fuzz_$name found an input that breaks its reader: $(ls -t "$dir/findings/$name-"* 2>/dev/null | head -n 1)"
  exit 1
fi
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$')
echo "zt_fuzz_$name: ${runs:-?} inputs in ${secs}s, no finding (corpus $(ls "$work/corpus" | wc -l) new)"
