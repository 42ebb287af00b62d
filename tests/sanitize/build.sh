#!/usr/bin/env bash
# Builds sanitized test binaries in a clang build of their own (tests/sanitize/README.md):
#   build.sh SOURCE_DIR BUILD_DIR CC CXX address|thread TARGET...
# address: AddressSanitizer + UndefinedBehaviorSanitizer; thread: ThreadSanitizer. -O1 with line
# tables: fast to build, reports with file:line.
set -euo pipefail
src=$1 dir=$2 cc=$3 cxx=$4 kind=$5
shift 5
cmake -S "$src" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DZT_SANITIZE="$kind" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -gline-tables-only -Wno-pass-failed" \
  >"$dir.configure.log" 2>&1 || { tail -n 20 "$dir.configure.log"; exit 1; }
cmake --build "$dir" --target "$@" -j"$(nproc)" >"$dir.build.log" 2>&1 ||
  { grep -E -A5 "error|Error" "$dir.build.log" | head -n 60; exit 1; }
echo "sanitized ($kind) $* built in $dir"
