#!/usr/bin/env bash
# zerotrain against PyTorch DDP in one run, as a new user would compare them: the bench shape (MoE)
# and its dense twin (--dense-layers 4), 2 ranks x 1 thread, the same micro-batch per rank, at
# micro-batch 2 and 8. PyTorch is Debian's python3-torch (launch/install-deps.sh --bench) running
# tests/bench/ddp_moe.py (DDP over gloo, find_unused_parameters=True for MoE, AdamW, clipping);
# zerotrain runs ZeRO-0 (what DDP does) and ZeRO-3. Prints one JSON line per run, the ratios, and
# the step's model FLOP/s against the one-thread sgemm rate measured before and after (the share
# of GEMM peak). A benchmark, not a test: nothing is asserted.
# usage: tests/bench/vs_pytorch.sh PATH/TO/zerotrain DATA_DIR [STEPS] [MICRO_BATCHES] [MODELS]
#   e.g. tests/bench/vs_pytorch.sh build/launch/zerotrain data/default 30 "2 8" "moe dense"
set -euo pipefail
ZT=${1:?usage: vs_pytorch.sh ZEROTRAIN DATA_DIR [STEPS] [MICRO_BATCHES] [MODELS]}
DATA=${2:?usage: vs_pytorch.sh ZEROTRAIN DATA_DIR [STEPS] [MICRO_BATCHES] [MODELS]}
STEPS=${3:-30} MBS=${4:-2 8} MODELS=${5:-moe dense}
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
# A pyenv or venv python3 on PATH may not see Debian's dist-packages: fall back to the system one.
if ! "$PY" -c 'import torch' 2>/dev/null; then PY=/usr/bin/python3; fi
"$PY" -c 'import torch' 2>/dev/null || {
  echo "vs_pytorch.sh: PyTorch not found; install it with ./launch/install-deps.sh --bench" >&2
  exit 2
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
SHAPE="--layers 4 --model-dim 256 --heads 4 --ffn-dim 688 --experts 8 --top-k 2 --shared-experts 1 --expert-ffn-dim 256 --seq-len 128"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
WARM=5

# Which OpenBLAS kernels both programs run (OPENBLAS_CORETYPE in the environment overrides the
# library's own choice; some machines set it).
core=$("$ZT" version | sed -n 's/^ *openblas: .* \([A-Za-z0-9]*\) MAX_THREADS.*/\1/p')
echo "{\"bench\": \"openblas_kernels\", \"core\": \"${core:-unknown}\", \"OPENBLAS_CORETYPE\": \"${OPENBLAS_CORETYPE:-}\"}"
"$ZT" bench gemm --threads 1 >"$tmp/gemm.jsonl"
for model in $MODELS; do
  dense=1; [[ $model == dense ]] && dense=4
  for mb in $MBS; do
    "$PY" "$here/ddp_moe.py" --ranks 2 --threads 1 --micro-batch "$mb" --steps "$STEPS" \
      --warmup $WARM --dense-layers $dense $SHAPE \
      >"$tmp/torch-$model-$mb.jsonl" 2>"$tmp/torch.err" || { cat "$tmp/torch.err" >&2; exit 1; }
    for st in 0 3; do
      mpirun -np 2 "$ZT" train --data "$DATA" $SHAPE --dense-layers $dense --micro-batch "$mb" \
        --steps $((STEPS + WARM)) --log-every 1 --eval-tokens 1024 --zero-stage $st \
        --metrics "$tmp/zt-$model-$mb-$st.jsonl" >/dev/null </dev/null
    done
  done
done
"$ZT" bench gemm --threads 1 >>"$tmp/gemm.jsonl"

"$PY" - "$tmp" "$WARM" "$MBS" "$MODELS" <<'PY'
import json, os, sys
d, warm, mbs, models = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
gemm = max(json.loads(l)['gflops'] for l in open(os.path.join(d, 'gemm.jsonl')))
print(json.dumps({"bench": "sgemm_one_thread", "best_gflops": round(gemm, 1)}))
for model in models:
    for mb in mbs:
        torch = json.loads(open(os.path.join(d, f'torch-{model}-{mb}.jsonl')).readline())
        for st in (0, 3):
            r = [json.loads(l) for l in open(os.path.join(d, f'zt-{model}-{mb}-{st}.jsonl'))]
            r = [o for o in r if 'step_ms' in o and o['step'] > warm and 'val_loss' not in o]
            tps = sum(o['tokens_per_s'] for o in r) / len(r)
            ms = sum(o['step_ms'] for o in r) / len(r)
            # flops_per_s is the whole job's model FLOP/s; each of the 2 ranks runs one thread.
            fl = sum(o['flops_per_s'] for o in r) / len(r) / 2 / 1e9
            print(json.dumps({"bench": "vs_pytorch", "model": model, "micro_batch": int(mb),
                              "zero_stage": st, "zerotrain_tokens_per_s": round(tps),
                              "zerotrain_step_ms": round(ms, 1),
                              "pytorch_tokens_per_s": torch['tokens_per_s'],
                              "pytorch_step_ms": torch['step_ms'],
                              "ratio": round(tps / torch['tokens_per_s'], 3),
                              "model_gflops_per_rank": round(fl, 1),
                              "share_of_gemm_peak": round(fl / gemm, 3)}))
PY
