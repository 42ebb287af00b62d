#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) in a clang build of their own:
#   build.sh SOURCE_DIR BUILD_DIR CC CXX
set -euo pipefail
src=$1 dir=$2 cc=$3 cxx=$4
cmake -S "$src" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DZT_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$dir.configure.log" 2>&1 ||
  { tail -n 20 "$dir.configure.log"; exit 1; }
cmake --build "$dir" --target zt_fuzzers -j"$(nproc)" 2>&1 | grep -E "error|warning|Error" || true
for t in tokens text manifest config safetensors h5export; do
  [[ -x $dir/tests/fuzz/zt_fuzz_$t ]] || { echo "build.sh: zt_fuzz_$t was not built" >&2; exit 1; }
done
echo "fuzz targets built in $dir"
