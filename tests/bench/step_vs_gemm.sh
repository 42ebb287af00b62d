#!/usr/bin/env bash
# Training throughput on the bench shape next to OpenBLAS sgemm, measured in the same run on the
# same threads. Prints one JSON line per measurement and a summary line with the ratio.
# usage: tests/bench/step_vs_gemm.sh PATH/TO/zerotrain DATA_DIR [THREADS] [STEPS]
set -euo pipefail
ZT=${1:?usage: step_vs_gemm.sh ZEROTRAIN DATA_DIR [THREADS] [STEPS]}
DATA=${2:?usage: step_vs_gemm.sh ZEROTRAIN DATA_DIR [THREADS] [STEPS]}
THREADS=${3:-2} STEPS=${4:-60}
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
SHAPE="--layers 4 --model-dim 256 --heads 4 --ffn-dim 688 --experts 8 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 256 --seq-len 128"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$ZT" bench gemm --threads "$THREADS" | tee "$tmp/gemm.jsonl"
"$ZT" train --data "$DATA" $SHAPE --micro-batch 8 --steps "$STEPS" --log-every 10 \
  --eval-tokens 1024 --metrics "$tmp/m.jsonl" >/dev/null
"$ZT" bench gemm --threads "$THREADS" >>"$tmp/gemm.jsonl"
python3 - "$tmp/gemm.jsonl" "$tmp/m.jsonl" "$THREADS" <<'PY'
import json, sys
g = [json.loads(l) for l in open(sys.argv[1])]
peak = max(o['gflops'] for o in g)
shapes = {}
for o in g: shapes.setdefault((o['m'], o['n'], o['k']), []).append(o['gflops'])
model_shapes = [max(v) for k, v in shapes.items() if k != (1024, 1024, 1024)]
m = [json.loads(l) for l in open(sys.argv[2])]
steps = [o for o in m if 'step_ms' in o and o['step'] > 10]  # skip warm-up
tps = sum(o['tokens_per_s'] for o in steps) / len(steps)
fl = sum(o['flops_per_s'] for o in steps) / len(steps) / 1e9
print(json.dumps({"bench": "step_vs_gemm", "threads": int(sys.argv[3]), "tokens_per_s": round(tps),
                  "model_gflops": round(fl, 1), "gemm_peak_gflops": round(peak, 1),
                  "fraction_of_peak": round(fl / peak, 3),
                  "fraction_of_model_shapes": round(fl / (sum(model_shapes) / len(model_shapes)), 3)}))
PY
