#!/usr/bin/env bash
# Expert parallelism on this machine, bench shape (8 experts, 3 MoE blocks), the same global batch
# of 16 samples everywhere: one process (2 BLAS threads, grad-accum 2), dp=2 and ep=2 inside dp=2
# (one thread per rank). Prints one JSON line per run (means over the steps after the first 5,
# evaluation steps left out): tokens/s, step time, exposed communication, the all-to-all bytes
# rank 0 sent per step next to the formula at balanced routing, the experts' load imbalance, and
# the model-state bytes per rank. Then the imbalance over a longer run on the same corpus (one
# process, a smaller model) with the aux loss at its default 0.01 and at 0.
# usage: tests/bench/expert_parallel.sh PATH/TO/zerotrain DATA_DIR [STEPS] [LONG_STEPS]
set -euo pipefail
ZT=${1:?usage: expert_parallel.sh ZEROTRAIN DATA_DIR [STEPS] [LONG_STEPS]}
DATA=${2:?usage: expert_parallel.sh ZEROTRAIN DATA_DIR [STEPS] [LONG_STEPS]}
STEPS=${3:-25}
LONG=${4:-200}
source "$(dirname "$0")/lib.sh"
C="--data $DATA $SHAPE --micro-batch 8 --steps $STEPS --log-every 1 --eval-tokens 1024"
baselines "$ZT" "$C"
mpirun -np 2 "$ZT" train $C --ep 2 --metrics "$tmp/ep2.jsonl" >/dev/null
SMALL="--layers 4 --model-dim 128 --heads 4 --ffn-dim 344 --experts 8 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 128 --seq-len 128"
L="--data $DATA $SMALL --micro-batch 8 --steps $LONG --log-every 1 --eval-tokens 1024 --lr 2e-3"
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$ZT" train $L --metrics "$tmp/aux.jsonl" >/dev/null
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$ZT" train $L --aux-loss-coef 0 --metrics "$tmp/noaux.jsonl" >/dev/null
python3 - "$tmp" "$LONG" <<'PY'
import json, sys, os
d, long_steps = sys.argv[1], int(sys.argv[2])
N, dm, moe, K, X, ep = 8 * 128, 256, 3, 2, 8, 2  # tokens per microbatch, model dim, MoE blocks
# Per microbatch and MoE block, rank 0 sends the other rank the rows it routed to the other
# rank's experts (forward inputs, backward output gradients) and the rows it received back
# (forward outputs, backward input gradients): at balanced routing N K (ep-1)/ep rows each way,
# d fp32 per row, four exchanges; plus the per-expert counts (X int32 per exchange of counts).
rows = N * K * (ep - 1) // ep
formula = moe * (4 * rows * dm * 4 + (ep - 1) * (X // ep) * 4)
expert_params = moe * X * 3 * dm * 256  # w1, w2, w3 of every routed expert
base = None
for name in ['one', 'dp2', 'ep2']:
    r = [json.loads(l) for l in open(os.path.join(d, name + '.jsonl'))]
    r = [o for o in r if 'step_ms' in o and o['step'] > 5 and 'val_loss' not in o]
    ms = sum(o['step_ms'] for o in r) / len(r)
    tps = sum(o['tokens_per_s'] for o in r) / len(r)
    ex = sum(o['comm']['exposed_ms'] for o in r) / len(r)
    a2a = sum(o['comm']['alltoall_bytes'] for o in r) / len(r)
    imb = sum(o['moe']['imbalance'] for o in r) / len(r)
    c, m = r[-1]['comm'], r[-1]['mem']
    base = base or tps
    line = {"bench": "expert_parallel", "run": name, "tokens_per_s": round(tps),
            "vs_one_process": round(tps / base, 3), "step_ms": round(ms, 1),
            "exposed_ms": round(ex, 1), "alltoall_bytes": round(a2a),
            "allreduce_bytes": c['allreduce_bytes'], "imbalance": round(imb, 3),
            "params_bytes": m['params'], "grads_bytes": m['grads'], "optim_bytes": m['optim'],
            "activations_peak": m['activations']}
    if name == 'ep2':
        line["alltoall_formula_balanced"] = formula
        line["expert_params_bytes_per_rank"] = expert_params * 4 // ep
    else:
        line["expert_params_bytes_per_rank"] = expert_params * 4
    print(json.dumps(line))
for name in ['aux', 'noaux']:
    r = [json.loads(l) for l in open(os.path.join(d, name + '.jsonl'))]
    r = [o for o in r if 'moe' in o]
    imb = [o['moe']['imbalance'] for o in r]
    q = max(1, len(imb) // 10)
    print(json.dumps({"bench": "expert_imbalance", "run": name, "steps": long_steps,
                      "aux_loss_coef": 0.01 if name == 'aux' else 0,
                      "imbalance_first_10pct": round(sum(imb[:q]) / q, 3),
                      "imbalance_last_10pct": round(sum(imb[-q:]) / q, 3),
                      "imbalance_max": round(max(imb), 3),
                      "final_loss": round(r[-1]['loss'], 4),
                      "final_aux_loss": round(r[-1]['aux_loss'], 5)}))
PY
