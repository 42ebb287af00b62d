#!/usr/bin/env bash
# Pipeline parallelism on this machine. Prints one JSON line per run (means over the steps after
# the first 3, evaluation steps left out).
#  1. The bubble of each schedule against its formula, same run: a uniform stack (8 dense blocks of
#     the bench shape's width, so no stage is heavier than another but for the head) with 8
#     microbatches of 2 samples per step, at pp 2 (1f1b, interleaved x2, zb) and pp 4 (1f1b,
#     interleaved x2, zb). The measured bubble is each stage's time waiting on its neighbours over
#     the step's forward and backward (pipeline.stages), averaged over the stages.
#  2. The bench shape (4 blocks, MoE), the same global batch of 16 samples everywhere: tokens/s
#     and peak memory per rank of one process (2 BLAS threads), dp 2 and pp 2 (each schedule),
#     then on 4 ranks dp 4 and pp 2 x dp 2 at ZeRO 0-3: the model state per rank, the activation
#     and buffer peaks, and the all-gather bytes per step (stage 3: the pipeline gathers a stage's
#     units once per step, dp gathers every unit twice per microbatch).
# 4-rank runs on a 2-core machine share the cores: their tokens/s and pp 4's bubble (which then
# includes waiting for a neighbour that is not scheduled) are not the schedule's alone.
# usage: tests/bench/pipeline.sh PATH/TO/zerotrain DATA_DIR [STEPS]
set -euo pipefail
ZT=${1:?usage: pipeline.sh ZEROTRAIN DATA_DIR [STEPS]}
DATA=${2:?usage: pipeline.sh ZEROTRAIN DATA_DIR [STEPS]}
STEPS=${3:-12}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
WIDTH="--model-dim 256 --heads 4 --ffn-dim 688 --seq-len 128"
UNIFORM="--layers 8 --dense-layers 8 $WIDTH"
SHAPE="--layers 4 $WIDTH --experts 8 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 256"
C="--data $DATA --micro-batch 2 --steps $STEPS --log-every 1 --eval-tokens 1024"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
for p in 2 4; do
  mpirun -np $p "$ZT" train $C --grad-accum 8 $UNIFORM --pp $p --metrics "$tmp/u$p-1f1b.jsonl" >/dev/null
  mpirun -np $p "$ZT" train $C --grad-accum 8 $UNIFORM --pp $p --pp-schedule interleaved --virtual-stages 2 \
    --metrics "$tmp/u$p-interleaved.jsonl" >/dev/null
  mpirun -np $p "$ZT" train $C --grad-accum 8 $UNIFORM --pp $p --pp-schedule zb --metrics "$tmp/u$p-zb.jsonl" >/dev/null
done
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$ZT" train $C $SHAPE --grad-accum 8 --metrics "$tmp/one.jsonl" >/dev/null
mpirun -np 2 "$ZT" train $C $SHAPE --grad-accum 4 --metrics "$tmp/dp2.jsonl" >/dev/null
for s in 1f1b zb; do
  mpirun -np 2 "$ZT" train $C $SHAPE --grad-accum 8 --pp 2 --pp-schedule $s --metrics "$tmp/pp2-$s.jsonl" >/dev/null
done
mpirun -np 2 "$ZT" train $C $SHAPE --grad-accum 8 --pp 2 --pp-schedule interleaved --virtual-stages 2 \
  --metrics "$tmp/pp2-interleaved.jsonl" >/dev/null
for z in 0 1 2 3; do
  mpirun -np 4 "$ZT" train $C $SHAPE --grad-accum 2 --zero-stage $z --metrics "$tmp/dp4-z$z.jsonl" >/dev/null
  mpirun -np 4 "$ZT" train $C $SHAPE --grad-accum 4 --pp 2 --zero-stage $z --metrics "$tmp/pp2dp2-z$z.jsonl" >/dev/null
done
python3 - "$tmp" <<'PY'
import json, sys, os
d = sys.argv[1]
def rows(name):
    r = [json.loads(l) for l in open(os.path.join(d, name + '.jsonl'))]
    return [o for o in r if 'step_ms' in o and o['step'] > 3 and 'val_loss' not in o]
mean = lambda r, f: sum(f(o) for o in r) / len(r)
M = 8
for P in (2, 4):
    for s, V in (('1f1b', 1), ('interleaved', 2), ('zb', 1)):
        r = rows(f'u{P}-{s}')
        stages = [round(mean(r, lambda o: o['pipeline']['stages'][i]), 3) for i in range(P)]
        formula = {'1f1b': (P - 1) / (M + P - 1), 'interleaved': (P - 1) / (V * M + P - 1),
                   'zb': (P - 1) / (3 * M + P - 1)}[s]
        print(json.dumps({"bench": "pipeline_bubble", "pp": P, "schedule": s, "microbatches": M,
                          "bubble": round(sum(stages) / P, 3), "stages": stages,
                          "formula": round(formula, 3),
                          "tokens_per_s": round(mean(r, lambda o: o['tokens_per_s']))}))
base = None
for name in ['one', 'dp2', 'pp2-1f1b', 'pp2-interleaved', 'pp2-zb'] + \
            [f'{k}-z{z}' for z in range(4) for k in ('dp4', 'pp2dp2')]:
    r = rows(name)
    tps = mean(r, lambda o: o['tokens_per_s'])
    base = base or tps
    c, m = r[-1]['comm'], r[-1]['mem']
    line = {"bench": "pipeline", "run": name, "tokens_per_s": round(tps),
            "vs_one_process": round(tps / base, 3),
            "step_ms": round(mean(r, lambda o: o['step_ms']), 1),
            "params_bytes": m['params'], "grads_bytes": m['grads'], "optim_bytes": m['optim'],
            "activations_peak": m['activations'], "buffers_peak": m['buffers'], "peak": m['peak'],
            "allgather_bytes": c['allgather_bytes'], "p2p_bytes": c['p2p_bytes']}
    if 'pipeline' in r[-1]:
        line["bubble"] = round(mean(r, lambda o: o['pipeline']['bubble']), 3)
    print(json.dumps(line))
PY
