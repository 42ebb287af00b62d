#!/usr/bin/env bash
# run_gpu_checks.sh: the checks that need a GPU, run ON a GPU machine from the repository root:
#   configure -DZT_CUDA=ON into build-cuda, build, run zt_cuda_tests (nothing may be skipped there:
#   the device layer, and the op harness of tests/cuda/test_cuda_ops.cpp, every GPU op and AdamW
#   against its CPU version),
#   `zerotrain bench gemm --device cuda` (fp32 and bf16), and nvidia-smi.
# Everything is also written under $OUT when it is set (logs, gtest XML, bench JSON lines).
# Env: BUILD_DIR (default build-cuda), JOBS (default nproc), CUDA_ARCH (default 90 = H200).
set -uo pipefail

BUILD_DIR=${BUILD_DIR:-build-cuda}
JOBS=${JOBS:-$(nproc)}
CUDA_ARCH=${CUDA_ARCH:-90}
OUT_DIR=${OUT:-$BUILD_DIR/gpu-checks}
mkdir -p "$OUT_DIR"
status=0

step() {  # step NAME CMD...: run, tee to $OUT_DIR/NAME.log, remember failure
  local name=$1
  shift
  echo "=== $name: $*" | tee "$OUT_DIR/$name.log"
  "$@" 2>&1 | tee -a "$OUT_DIR/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc" | tee -a "$OUT_DIR/$name.log"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

step nvidia-smi nvidia-smi
step configure cmake -S . -B "$BUILD_DIR" -DZT_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" || exit 1
step build cmake --build "$BUILD_DIR" -j "$JOBS" --target zt_cuda_tests zerotrain || exit 1

step cuda_tests "$BUILD_DIR/tests/zt_cuda_tests" --gtest_output="xml:$OUT_DIR/zt_cuda_tests.xml"
if grep -q '\[  SKIPPED \]' "$OUT_DIR/cuda_tests.log"; then
  echo "cuda_tests: tests were SKIPPED on a GPU machine (no device visible?)" | tee -a "$OUT_DIR/cuda_tests.log"
  status=1
fi

ZT="$BUILD_DIR/launch/zerotrain"
SIZES=1024x688x256,1024x256x688,256x256x256,1024x1024x1024,4096x4096x4096,8192x8192x8192
step bench_gemm_fp32 "$ZT" bench gemm --device cuda --sizes "$SIZES"
step bench_gemm_bf16 "$ZT" bench gemm --device cuda --dtype bf16 --sizes "$SIZES"
grep -h '^{' "$OUT_DIR"/bench_gemm_*.log > "$OUT_DIR/bench_gemm.jsonl" 2>/dev/null

echo "gpu checks: $([ $status -eq 0 ] && echo PASS || echo FAIL), output in $OUT_DIR"
exit $status
