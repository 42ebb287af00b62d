#!/usr/bin/env bash
# run_gpu_checks.sh: the checks that need a GPU, run ON a GPU machine from the repository root:
#   zt_cuda_tests (nothing may be skipped there: the device layer, and the op harness of
#   tests/cuda/test_cuda_ops.cpp, every GPU op and AdamW against its CPU version),
#   `zerotrain bench gemm --device cuda` (fp32 and bf16), nvidia-smi, and training: the same
#   20 steps with --device cpu and --device cuda (losses compared, fp32 both: 1e-3 relative),
#   the same on 2 ranks at ZeRO-3 (both ranks on the one GPU, MPI through host memory),
#   then tokens/s and MFU on a GPT-2-small-sized dense shape and on an MoE shape.
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
  mpidir="$dest/mpi/usr/lib/x86_64-linux-gnu"
  export LD_LIBRARY_PATH="$dest/lib:$mpidir/openmpi/lib:$mpidir/pmix2/lib$cudalib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The bundle's Open MPI, relocated: its plugins and help files under $dest/mpi (checked on a
  # CPU machine with the system's Open MPI and PMIx directories moved away).
  export OPAL_PREFIX="$dest/mpi/usr"
  MPIRUN="$dest/mpi/usr/bin/mpirun"
  ZT="$dest/bin/zerotrain"
  CUDA_TESTS="$dest/bin/zt_cuda_tests"
  DATA="$dest/data"
  missing=$(ldd "$ZT" "$CUDA_TESTS" | grep "not found" | sort -u)
  if [ -n "$missing" ]; then
    echo "preflight: the bundle's binaries cannot load here:"
    echo "$missing"
    exit 1
  fi
elif [ "$(have mpicc)" = yes ] && [ "$(have h5cc)" = yes ] && [ "$(have cmake)" = yes ]; then
  mode=build
  MPIRUN=mpirun
  ZT="$BUILD_DIR/launch/zerotrain"
  CUDA_TESTS="$BUILD_DIR/tests/zt_cuda_tests"
  DATA="$BUILD_DIR/data"
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
  step data launch/prepare-corpus.sh "$ZT" "$DATA" || exit 1
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

# --- training: the GPU's losses against the CPU's (same binary, flags and tokens; fp32 both)
losses() { grep -o '"loss":[-0-9.e+]*' "$1" | cut -d: -f2; }
SMALL=(--data "$DATA" --layers 4 --model-dim 256 --heads 8 --ffn-dim 688 --experts 8 --top-k 2
  --shared-experts 1 --dense-layers 1 --expert-ffn-dim 256 --seq-len 256 --micro-batch 8
  --steps 20 --log-every 1 --seed 1 --eval-every 0 --eval-tokens 16384)
step train_cpu env OMP_NUM_THREADS="$JOBS" "$ZT" train "${SMALL[@]}" --device cpu \
  --metrics "$OUT_DIR/train_cpu.jsonl"
step train_gpu "$ZT" train "${SMALL[@]}" --device cuda --metrics "$OUT_DIR/train_gpu.jsonl" \
  --trace "$OUT_DIR/train_gpu_trace.json"
if paste <(losses "$OUT_DIR/train_cpu.jsonl") <(losses "$OUT_DIR/train_gpu.jsonl") |
  awk 'BEGIN { w = 0; n = 0 }
       { n++; d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > w) w = d; printf "step %2d cpu %.6f gpu %.6f\n", n, $1, $2 }
       END { printf "train_compare: %d steps, worst relative loss difference %.2e (bar 1e-3)\n", n, w; exit !(n == 20 && w <= 1e-3) }' |
  tee "$OUT_DIR/train_compare.log"; then :; else status=1; fi

# --- 2 ranks on the one GPU (ZeRO-3 over MPI through host memory) against 2 ranks on the CPU
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=("$MPIRUN" -np 2 --oversubscribe --mca pml ob1 --mca btl self,vader
  --mca mca_base_component_show_load_errors 0)
step train2_cpu "${MPI[@]}" -x OMP_NUM_THREADS=$((JOBS / 2)) "$ZT" train "${SMALL[@]}" \
  --zero-stage 3 --device cpu --metrics "$OUT_DIR/train2_cpu.jsonl"
step train2_gpu "${MPI[@]}" "$ZT" train "${SMALL[@]}" --zero-stage 3 --device cuda \
  --metrics "$OUT_DIR/train2_gpu.jsonl"
if paste <(losses "$OUT_DIR/train2_cpu.jsonl") <(losses "$OUT_DIR/train2_gpu.jsonl") |
  awk 'BEGIN { w = 0; n = 0 }
       { n++; d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > w) w = d }
       END { printf "train2_compare: 2 ranks, %d steps, worst relative loss difference %.2e (bar 1e-3)\n", n, w; exit !(n == 20 && w <= 1e-3) }' |
  tee "$OUT_DIR/train2_compare.log"; then :; else status=1; fi

# --- throughput on the GPU: tokens/s and the step's model FLOP/s of the last steps' metrics,
# as MFU against the H200's dense bf16 peak (989 TFLOP/s) and its fp32 peak without tensor
# cores (67 TFLOP/s; the device passes run fp32 GEMMs, through TF32 tensor cores with --precision
# bf16).
speed() {  # speed NAME FLAGS...
  local name=$1
  shift
  step "$name" "$ZT" train --data "$DATA" --steps 12 --log-every 1 --eval-every 0 --eval-tokens 16384 --device cuda \
    --metrics "$OUT_DIR/$name.jsonl" "$@" || return
  tail -n 4 "$OUT_DIR/$name.jsonl" | grep -o '"\(tokens_per_s\|flops_per_s\)":[0-9.e+]*' |
    awk -F: -v n="$name" '/tokens/ { t += $2; k++ } /flops/ { f += $2 }
      END { if (k) printf "%s: %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% of bf16 peak, %.1f%% of fp32 peak\n",
        n, t / k, f / k / 1e12, 100 * f / k / 989e12, 100 * f / k / 67e12 }' | tee -a "$OUT_DIR/speed.log"
}
speed speed_dense_bf16 --precision bf16 --layers 12 --model-dim 768 --heads 12 --ffn-dim 3072 \
  --experts 0 --dense-layers 12 --shared-experts 0 --seq-len 1024 --micro-batch 8
speed speed_dense --layers 12 --model-dim 768 --heads 12 --ffn-dim 3072 --experts 0 \
  --dense-layers 12 --shared-experts 0 --seq-len 1024 --micro-batch 8
speed speed_moe --layers 8 --model-dim 512 --heads 8 --ffn-dim 1376 --experts 8 --top-k 2 \
  --expert-ffn-dim 512 --seq-len 512 --micro-batch 16

echo "gpu checks ($mode): $([ $status -eq 0 ] && echo PASS || echo FAIL), output in $OUT_DIR"
exit $status
