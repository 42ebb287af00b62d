#!/usr/bin/env bash
# Tensor parallelism on this machine, bench shape, the same global batch of 16 samples everywhere:
# one process (2 BLAS threads, grad-accum 2), dp=2 (1 thread per rank), tp=2 (grad-accum 2) and
# tp=2 with sequence parallelism. Prints one JSON line per run (means over the steps after the
# first 5, evaluation steps left out): tokens/s, step time, exposed communication, the bytes each
# rank sent per step by kind next to the formula for tp's sums, and the model-state bytes per rank.
# usage: tests/bench/tensor_parallel.sh PATH/TO/zerotrain DATA_DIR [STEPS]
set -euo pipefail
ZT=${1:?usage: tensor_parallel.sh ZEROTRAIN DATA_DIR [STEPS]}
DATA=${2:?usage: tensor_parallel.sh ZEROTRAIN DATA_DIR [STEPS]}
STEPS=${3:-25}
source "$(dirname "$0")/lib.sh"
C="--data $DATA $SHAPE --micro-batch 8 --steps $STEPS --log-every 1 --eval-tokens 1024"
baselines "$ZT" "$C"
mpirun -np 2 "$ZT" train $C --tp 2 --grad-accum 2 --metrics "$tmp/tp2.jsonl" >/dev/null
mpirun -np 2 "$ZT" train $C --tp 2 --grad-accum 2 --sequence-parallel on --metrics "$tmp/tp2sp.jsonl" >/dev/null
python3 - "$tmp" <<'PY'
import json, sys, os
d = sys.argv[1]
N, dm, L, moe, K, micro = 8 * 128, 256, 4, 3, 2, 2  # tokens per microbatch, model dim, blocks
# tp=2 without sequence parallelism, per microbatch: all-reduces of N x d fp32 (embedding, 2 per
# block forward, 2 backward, the head), of N x K (the MoE gates' gradient), and one all-gather
# of 4 floats per token (the loss stats); a ring all-reduce on 2 ranks sends the buffer once.
formula = micro * ((2 + 4 * L) * N * dm * 4 + moe * N * K * 4)
base = None
for name in ['one', 'dp2', 'tp2', 'tp2sp']:
    r = [json.loads(l) for l in open(os.path.join(d, name + '.jsonl'))]
    r = [o for o in r if 'step_ms' in o and o['step'] > 5 and 'val_loss' not in o]
    ms = sum(o['step_ms'] for o in r) / len(r)
    tps = sum(o['tokens_per_s'] for o in r) / len(r)
    ex = sum(o['comm']['exposed_ms'] for o in r) / len(r)
    c, m = r[-1]['comm'], r[-1]['mem']
    base = base or tps
    line = {"bench": "tensor_parallel", "run": name, "tokens_per_s": round(tps),
            "vs_one_process": round(tps / base, 3), "step_ms": round(ms, 1),
            "exposed_ms": round(ex, 1), "allreduce_bytes": c['allreduce_bytes'],
            "allgather_bytes": c['allgather_bytes'], "reduce_scatter_bytes": c['reduce_scatter_bytes'],
            "params_bytes": m['params'], "grads_bytes": m['grads'], "optim_bytes": m['optim'],
            "activations_peak": m['activations']}
    if name == 'tp2':
        line["allreduce_formula"] = formula
    print(json.dumps(line))
PY
