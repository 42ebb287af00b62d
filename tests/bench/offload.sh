#!/usr/bin/env bash
# Offload modes against no offload, bench shape (6,959,360 parameters), one BLAS/OpenMP thread
# per rank. Prints one JSON line per mode (means over the steps after the first 3): step time,
# its ratio to no offload, the bytes the step moved to and from the shard file, and the offload
# throughput of the optimizer step (those bytes over the step's optimizer phase) next to the raw
# sequential rates `zerotrain bench io` measures on the same disk in the same run.
# usage: tests/bench/offload.sh PATH/TO/zerotrain DATA_DIR [STEPS] [NP] [NVME_DIR]
set -euo pipefail
ZT=${1:?usage: offload.sh ZEROTRAIN DATA_DIR [STEPS] [NP] [NVME_DIR]}
DATA=${2:?usage: offload.sh ZEROTRAIN DATA_DIR [STEPS] [NP] [NVME_DIR]}
STEPS=${3:-12} NP=${4:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
SHAPE="--layers 4 --model-dim 256 --heads 4 --ffn-dim 688 --experts 8 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 256 --seq-len 128"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
NV=${5:-$tmp/nv}
"$ZT" bench io --dir "$NV" --repeat 2 >"$tmp/io.jsonl" 2>"$tmp/io.err"
run() {
  local name=$1; shift
  mpirun -np "$NP" "$ZT" train --data "$DATA" $SHAPE --micro-batch 8 --steps "$STEPS" --log-every 1 \
    --eval-every 100000 --zero-stage 3 --metrics "$tmp/$name.jsonl" "$@" >/dev/null
}
run none
run cpu --offload-optimizer cpu --offload-params cpu
run nvme_optim --offload-optimizer nvme --nvme-dir "$NV" --nvme-buffer-mb 64
run nvme_all --offload-optimizer nvme --offload-params nvme --nvme-dir "$NV" --nvme-buffer-mb 64
python3 - "$tmp" "$NP" <<'PY'
import json, sys, os
d, np_ = sys.argv[1], int(sys.argv[2])
io = {o['what']: o['gbs'] for o in map(json.loads, open(os.path.join(d, 'io.jsonl')))}
raw = (io['raw_write'] + io['raw_read']) / 2
base = None
for mode in ('none', 'cpu', 'nvme_optim', 'nvme_all'):
    r = [json.loads(l) for l in open(os.path.join(d, mode + '.jsonl'))]
    r = [o for o in r if 'step_ms' in o and o['step'] > 3 and 'val_loss' not in o]
    ms = sum(o['step_ms'] for o in r) / len(r)
    base = base or ms
    out = {"bench": "offload", "mode": mode, "ranks": np_, "step_ms": round(ms, 1),
           "slowdown": round(ms / base, 3)}
    if 'offload' in r[0]:
        avg = lambda k: sum(o['offload'][k] for o in r) / len(r)
        moved = avg('read_bytes') + avg('write_bytes')
        opt = avg('optimizer_ms')
        out.update({"bytes_moved_per_step": round(moved), "optimizer_ms": round(opt, 1),
                    "io_wait_ms": round(avg('io_wait_ms'), 1),
                    "optimizer_io_gbs": round(moved / (opt / 1000) / 1e9, 3) if mode == 'nvme_optim' else None,
                    "raw_seq_gbs": round(raw, 3)})
        if mode == 'nvme_optim':
            out["optimizer_io_over_raw"] = round(moved / (opt / 1000) / 1e9 / raw, 3)
    print(json.dumps(out))
print(json.dumps({"bench": "offload_io", **{k: round(v, 3) for k, v in io.items()}}))
PY
cat "$tmp/io.err" >&2
