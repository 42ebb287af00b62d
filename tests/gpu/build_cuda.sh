#!/usr/bin/env bash
# The CUDA build of the suite (ctest's cuda.build): configure SRC with -DZT_CUDA=ON into DIR and
# build zerotrain and zt_cuda_tests (compile and link only: this machine may have no GPU; the
# GPU runs are tests/gpu/run_gpu_checks.sh's). A compiler warning fails it, as in the CPU build.
# usage: build_cuda.sh SRC DIR
set -euo pipefail
src=${1:?usage: build_cuda.sh SRC DIR} dir=${2:?usage: build_cuda.sh SRC DIR}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cmake -S "$src" -B "$dir" -DZT_CUDA=ON -DCMAKE_BUILD_TYPE=Release >"$log" 2>&1 ||
  { cat "$log"; echo "build_cuda.sh: configuring with -DZT_CUDA=ON failed" >&2; exit 1; }
cmake --build "$dir" -j"$(nproc)" --target zerotrain zt_cuda_tests >>"$log" 2>&1 ||
  { grep -E "error|Error" "$log" | head -n 40; echo "build_cuda.sh: the CUDA build failed" >&2; exit 1; }
if grep -iE "warning[: ]" "$log" | grep -v "^--" >/dev/null; then
  grep -iE -B2 -A4 "warning[: ]" "$log" | head -n 60
  echo "build_cuda.sh: the CUDA build has warnings" >&2
  exit 1
fi
"$dir/launch/zerotrain" version | grep -i cuda
echo "build_cuda.sh: CUDA build of zerotrain and zt_cuda_tests in $dir, no warnings"
