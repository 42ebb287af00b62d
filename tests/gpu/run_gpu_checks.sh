#!/usr/bin/env bash
# run_gpu_checks.sh: the checks that need a GPU, run ON a GPU machine from the repository root:
#   zt_cuda_tests (nothing may be skipped there: the device layer, and the op harness of
#   tests/cuda/test_cuda_ops.cpp, every GPU op and AdamW against its CPU version),
#   `zerotrain bench gemm --device cuda` (fp32 and bf16), and nvidia-smi.
# Where the binaries come from, decided and printed first, before any GPU time is spent:
#   bundle - gpu-bundle/bundle.tar.xz, made on a CPU machine by tests/gpu/bundle.sh and carried
#            (the device tool: carry ["gpu-bundle"]); the GPU machine lent to sessions has no
#            Open MPI, HDF5, OpenBLAS or Boost, so this is the mode there;
#   build  - configure -DZT_CUDA=ON into BUILD_DIR and build, where those libraries are installed.
# Everything is also written under $OUT when it is set (logs, gtest XML, bench JSON lines).
# Env: BUILD_DIR (default build-cuda), JOBS (default nproc), CUDA_ARCH (default 90 = H200).
set -uo pipefail
cd "$(dirname "$0")/../.."

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

# --- what this machine has, and so where the binaries come from
have() { command -v "$1" >/dev/null 2>&1 && echo yes || echo no; }
echo "preflight: nvidia-smi $(have nvidia-smi), nvcc $(have nvcc), cmake $(have cmake)," \
  "mpicc $(have mpicc), h5cc $(have h5cc), bundle $([ -f gpu-bundle/bundle.tar.xz ] && echo yes || echo no)"
if [ -f gpu-bundle/bundle.tar.xz ]; then
  mode=bundle
  head -n 2 gpu-bundle/BUNDLE 2>/dev/null
  dest=/tmp/zt-gpu-bundle
  rm -rf "$dest" && mkdir -p "$dest" && tar -xJf gpu-bundle/bundle.tar.xz -C "$dest" || {
    echo "preflight: gpu-bundle/bundle.tar.xz does not unpack"
    exit 1
  }
  # CUDA's own libraries from this machine: the toolkit's, then the Python wheels' (nvidia-*).
  cudalib=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
    $(ls -d /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib /usr/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null); do
    [ -d "$d" ] && cudalib="$cudalib:$d"
  done
  export LD_LIBRARY_PATH="$dest/lib$cudalib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  ZT="$dest/bin/zerotrain"
  CUDA_TESTS="$dest/bin/zt_cuda_tests"
  missing=$(ldd "$ZT" "$CUDA_TESTS" | grep "not found" | sort -u)
  if [ -n "$missing" ]; then
    echo "preflight: the bundle's binaries cannot load here:"
    echo "$missing"
    exit 1
  fi
elif [ "$(have mpicc)" = yes ] && [ "$(have h5cc)" = yes ] && [ "$(have cmake)" = yes ]; then
  mode=build
  ZT="$BUILD_DIR/launch/zerotrain"
  CUDA_TESTS="$BUILD_DIR/tests/zt_cuda_tests"
else
  echo "preflight: no gpu-bundle/bundle.tar.xz and no Open MPI / HDF5 / CMake to build with here:"
  echo "  on a CPU machine run tests/gpu/bundle.sh, then carry gpu-bundle to this one"
  exit 1
fi
echo "preflight: mode $mode"

step nvidia-smi nvidia-smi
if [ "$mode" = build ]; then
  step configure cmake -S . -B "$BUILD_DIR" -DZT_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" || exit 1
  step build cmake --build "$BUILD_DIR" -j "$JOBS" --target zt_cuda_tests zerotrain || exit 1
fi

step cuda_tests "$CUDA_TESTS" --gtest_output="xml:$OUT_DIR/zt_cuda_tests.xml"
if grep -q '\[  SKIPPED \]' "$OUT_DIR/cuda_tests.log"; then
  echo "cuda_tests: tests were SKIPPED on a GPU machine (no device visible?)" | tee -a "$OUT_DIR/cuda_tests.log"
  status=1
fi

SIZES=1024x688x256,1024x256x688,256x256x256,1024x1024x1024,4096x4096x4096,8192x8192x8192
step bench_gemm_fp32 "$ZT" bench gemm --device cuda --sizes "$SIZES"
step bench_gemm_bf16 "$ZT" bench gemm --device cuda --dtype bf16 --sizes "$SIZES"
grep -h '^{' "$OUT_DIR"/bench_gemm_*.log > "$OUT_DIR/bench_gemm.jsonl" 2>/dev/null

echo "gpu checks ($mode): $([ $status -eq 0 ] && echo PASS || echo FAIL), output in $OUT_DIR"
exit $status
