#!/usr/bin/env bash
# ZeRO stages 0-3 with overlap on and off on 2 ranks (1 BLAS/OpenMP thread each), bench shape.
# Prints one JSON line per run (mean over steps after the first 10) and the stage-3 / stage-0
# step-time ratio. usage: tests/bench/zero_stages.sh PATH/TO/zerotrain DATA_DIR [STEPS] [PRECISION]
set -euo pipefail
ZT=${1:?usage: zero_stages.sh ZEROTRAIN DATA_DIR [STEPS] [PRECISION]}
DATA=${2:?usage: zero_stages.sh ZEROTRAIN DATA_DIR [STEPS] [PRECISION]}
STEPS=${3:-40} PREC=${4:-fp32}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
SHAPE="--layers 4 --model-dim 256 --heads 4 --ffn-dim 688 --experts 8 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 256 --seq-len 128"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for overlap in on off; do
  for st in 0 1 2 3; do
    mpirun -np 2 "$ZT" train --data "$DATA" $SHAPE --micro-batch 8 --steps "$STEPS" --log-every 1 \
      --eval-tokens 1024 --zero-stage $st --overlap $overlap --precision "$PREC" \
      --metrics "$tmp/s$st-$overlap.jsonl" >/dev/null
  done
done
python3 - "$tmp" "$PREC" <<'PY'
import json, sys, os
d, prec = sys.argv[1], sys.argv[2]
res = {}
for ov in ('on', 'off'):
    for st in range(4):
        r = [json.loads(l) for l in open(os.path.join(d, f's{st}-{ov}.jsonl'))]
        r = [o for o in r if 'step_ms' in o and o['step'] > 10 and 'val_loss' not in o]
        ms = sum(o['step_ms'] for o in r) / len(r)
        ex = sum(o['comm']['exposed_ms'] for o in r) / len(r)
        tps = sum(o['tokens_per_s'] for o in r) / len(r)
        c = r[-1]['comm']
        moved = c['allgather_bytes'] + c['reduce_scatter_bytes'] + c['allreduce_bytes']
        res[(st, ov)] = ms
        print(json.dumps({"bench": "zero_stage", "precision": prec, "stage": st, "overlap": ov,
                          "tokens_per_s": round(tps), "step_ms": round(ms, 1),
                          "exposed_ms": round(ex, 2), "exposed_share": round(ex / ms, 3),
                          "bytes_sent_per_step": moved}))
print(json.dumps({"bench": "zero_stage_ratio", "precision": prec,
                  "stage3_over_stage0_overlap_on": round(res[(3, 'on')] / res[(0, 'on')], 3),
                  "stage3_over_stage0_overlap_off": round(res[(3, 'off')] / res[(0, 'off')], 3)}))
PY
