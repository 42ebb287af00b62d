#!/usr/bin/env bash
# QAT against post-training quantization (docs/qat.md's table): the bench shape on the Chinese
# default corpus, 2 ranks at ZeRO-3, one fp32 base run of 160 steps with a checkpoint at step 80;
# each QAT setting resumes from step 80 with --qat-start-step 80 and trains to 160 (same total
# steps); PTQ quantizes the fp32 step-160 checkpoint at the same setting. Every quantized model
# is evaluated from its integer export (int8 x int8 -> int32 matmuls). Also: the step time of the
# QAT runs against the fp32 run's same steps, and eval throughput, integer export against fp32.
# usage: tests/bench/qat.sh PATH/TO/zerotrain
set -euo pipefail
ZT=${1:?usage: qat.sh ZEROTRAIN}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d -p "${TMPDIR:-/tmp}"); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cp /usr/share/games/fortunes/{tang300,song100,chinese} "$tmp/src/"
"$ZT" prepare --input "$tmp/src" --output "$tmp/data" >/dev/null
SMALL="--layers 4 --model-dim 256 --heads 4 --ffn-dim 688 --experts 8 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 256 --seq-len 128"
common="--data $tmp/data $SMALL --micro-batch 4 --log-every 10 --seed 13 --lr 3e-3 --min-lr 3e-4 --warmup-steps 10"
train() { # train NAME FLAGS...
  local n=$1; shift
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 mpirun -np 2 "$ZT" train $common --zero-stage 3 --steps 160 \
    --metrics "$tmp/$n.jsonl" --ckpt-dir "$tmp/$n" "$@" >"$tmp/$n.log" 2>&1 </dev/null ||
    { tail -n 3 "$tmp/$n.log"; exit 1; }
}
ev() { # ev PATH -> "ce seconds"
  local t0; t0=$(date +%s.%N)
  local ce; ce=$(OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$ZT" eval --ckpt "$1" --data "$tmp/data/val.bin" \
    --eval-tokens 32768 | python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['ce'])")
  echo "$ce $(python3 -c "import time; print(time.time() - $t0)")"
}
train base --ckpt-every 80
b80=$tmp/base/step_00000080 b160=$tmp/base/step_00000160
rows=()
for s in "int8 0" "int4 16" "int2 16" "int2 0"; do
  set -- $s
  name=$1-g$2
  train "$name" --resume "$b80" --qat "$1" --qat-group-size "$2" --qat-start-step 80
  "$ZT" export --ckpt "$tmp/$name" --out "$tmp/$name.safetensors" --quantized >/dev/null
  "$ZT" export --ckpt "$b160" --out "$tmp/ptq-$name.safetensors" --quantized "$1" --qat-group-size "$2" >/dev/null
  rows+=("$name $(ev "$tmp/ptq-$name.safetensors") $(ev "$tmp/$name.safetensors") $(ev "$tmp/$name")")
done
fp=$(ev "$b160")
python3 - "$tmp" "$fp" "${rows[@]}" <<'PY'
import json, sys
d, (fp, fp_s) = sys.argv[1], map(float, sys.argv[2].split())
def tps(name):  # mean tokens/s over steps 81..160
    r = [o['tokens_per_s'] for o in map(json.loads, open(f'{d}/{name}.jsonl')) if o.get('step', 0) > 80 and 'tokens_per_s' in o]
    return sum(r) / len(r)
base = tps('base')
print(f'fp32 (160 steps): val ce {fp:.4f}; eval {32768 / fp_s:.0f} tok/s')
print('| setting | PTQ | QAT | QAT - fp32 | PTQ gap closed | integer vs fake-quant | QAT step time vs fp32 | integer eval tok/s vs fp32 |')
print('|---|---|---|---|---|---|---|---|')
for row in sys.argv[3:]:
    name, ptq, ptq_s, q, q_s, fq, fq_s = row.split()
    ptq, q, fq, q_s = float(ptq), float(q), float(fq), float(q_s)
    gap = ptq - fp
    closed = f'{(ptq - q) / gap:.0%}' if gap > 0.005 else 'no gap'
    print(f'| {name} | {ptq:.4f} ({gap:+.4f}) | {q:.4f} | {q - fp:+.4f} | {closed} | {abs(q - fq) / fq:.1e} | '
          f'{base / tps(name):.2f}x | {fp_s / q_s:.2f}x |')
PY
