#!/usr/bin/env bash
# Token data at scale: start-up time and peak resident memory per rank of `train` on 2 ranks for a
# 1-billion-token gpt2-format file (2 GB) against a 1-million-token one, same model, 3 steps.
# Prints one JSON line per file: its size, the run's wall time, each rank's peak RSS.
# usage: tests/bench/data_scale.sh PATH/TO/zerotrain [TOKENS]
set -euo pipefail
ZT=${1:?usage: data_scale.sh ZEROTRAIN [TOKENS]}
N=${2:-1000000000}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d -p "${TMPDIR:-/tmp}"); trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp" "$N" <<'PY'
import os, random, struct, sys
from array import array
d, n = sys.argv[1], int(sys.argv[2]); rnd = random.Random(0)
chunk = array('H', [rnd.randrange(50257) for _ in range(1 << 20)]).tobytes()
for name, count in [('big', n), ('small', 1 << 20)]:
    os.makedirs(f'{d}/{name}')
    with open(f'{d}/{name}/train.bin', 'wb') as f:
        f.write(struct.pack('<256i', 20240520, 1, count, *([0] * 253)))
        left = count
        while left > 0:
            k = min(left, 1 << 20); f.write(chunk[:2 * k]); left -= k
PY
M="--layers 2 --model-dim 64 --heads 4 --ffn-dim 96 --experts 4 --top-k 2 --expert-ffn-dim 64 --seq-len 64 --micro-batch 2 --vocab 50304 --steps 3"
for name in small big; do
  sync; t0=$(date +%s.%N)
  mpirun -np 2 /usr/bin/time -f 'maxrss_kb %M' "$ZT" train --data "$tmp/$name" $M >"$tmp/$name.log" 2>&1
  t1=$(date +%s.%N)
  python3 - "$name" "$tmp/$name/train.bin" "$t0" "$t1" "$tmp/$name.log" <<'PY'
import json, os, re, sys
name, path, t0, t1, log = sys.argv[1:]
rss = [int(m) // 1024 for m in re.findall(r'maxrss_kb (\d+)', open(log).read())]
print(json.dumps({"bench": "data_scale", "file": name, "tokens": (os.path.getsize(path) - 1024) // 2,
                  "file_mb": round(os.path.getsize(path) / 2**20), "wall_s": round(float(t1) - float(t0), 2),
                  "peak_rss_mb_per_rank": rss}))
PY
done
