#!/usr/bin/env bash
# Expert parallelism as a user runs it: mpirun with --ep (ep 2 and 4, every kind of ZeRO stage,
# with tp, with pp, the 4-D grid tp2 x pp2 x dp2 with ep2 on 8 ranks, NVMe offload) reproduces the
# single process with the same global batch (losses within 1e-5 relative; offload equal to in
# memory exactly); the metrics give the layout, the experts' load (every assignment of the step)
# and imbalance, and all-to-all bytes; a matrix of checkpoints written under eight layouts, each
# resumed under another, equals the uninterrupted run; the export of a 4-D checkpoint equals the
# one-process one; bad ep flags are one line each.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
prepare_zh
L4=${TINY/--layers 2/--layers 4} # a dense block, then 3 MoE blocks of 4 experts
C=(--data "$WORK/data" $L4 --micro-batch 2 --steps 8 --log-every 1 --seed 5 --eval-tokens 2048)
run() { # run NAME RANKS FLAGS...: 8 samples per step, a checkpoint at step 4 in $WORK/NAME.ck
  local name=$1 n=$2; shift 2
  timeout 300 mpirun --oversubscribe -np "$n" "$ZT" train "${C[@]}" "$@" --metrics "$WORK/$name.jsonl" \
    --ckpt-dir "$WORK/$name.ck" --ckpt-every 4 >"$WORK/$name.log" 2>&1 ||
    fail "$name: mpirun -np $n train $*: $(tail -n 3 "$WORK/$name.log")"
}
"$ZT" train "${C[@]}" --grad-accum 4 --metrics "$WORK/ref.jsonl" --ckpt-dir "$WORK/ref.ck" --ckpt-every 4 \
  >"$WORK/ref.log" 2>&1 || fail "single process: $(tail -n 3 "$WORK/ref.log")"
run a 2 --ep 2 --grad-accum 2
run b 4 --ep 2 --zero-stage 3
run c 4 --ep 4 --zero-stage 1
run d 4 --ep 2 --tp 2 --zero-stage 2 --grad-accum 2
run e 4 --ep 2 --pp 2 --zero-stage 1 --grad-accum 2 --pp-schedule zb
run f 8 --ep 2 --tp 2 --pp 2 --zero-stage 3 --grad-accum 2
run g 4 --ep 4 --zero-stage 3 --offload-optimizer nvme --offload-params nvme --nvme-dir "$WORK/nvme" \
  --nvme-buffer-mb 4
run h 4 --ep 4 --zero-stage 3
grep -q "dp 2 x tp 2 x pp 2, experts over ep 2 inside dp" "$WORK/f.log" ||
  fail "the start line does not give the layout: $(head -n 1 "$WORK/f.log")"
grep -q " imb [0-9.]*" "$WORK/c.log" || fail "the progress line does not show the imbalance: $(tail -n 2 "$WORK/c.log")"

python3 - "$WORK" <<'PY' || fail "expert-parallel losses or metrics wrong"
import json, sys, os
d = sys.argv[1]
rows = lambda f: [o for o in map(json.loads, open(os.path.join(d, f))) if 'loss' in o]
loss = lambda f: [o['loss'] for o in rows(f)]
ref = loss('ref.jsonl')
for f in 'abcdefh':
    got = loss(f + '.jsonl')
    worst = max(abs(a - b) / b for a, b in zip(got, ref))
    assert len(got) == len(ref) == 8 and worst <= 1e-5, f'{f}: {worst}'
    print(f'{f} vs single process: {worst:.1e}')
assert loss('g.jsonl') == loss('h.jsonl'), 'ep with NVMe offload differs from in memory'
want = {'world': 8, 'dp': 2, 'tp': 2, 'pp': 2, 'ep': 2, 'zero_stage': 3}
assert rows('f.jsonl')[-1]['layout'] == want, rows('f.jsonl')[-1]['layout']
for f in ['ref.jsonl', 'c.jsonl', 'f.jsonl']:
    for o in rows(f):  # every assignment of the step: 8 samples x 32 tokens x top-2 x 3 blocks
        m = o['moe']
        assert len(m['load']) == 4 and sum(m['load']) == 8 * 32 * 2 * 3, (f, m)
        assert len(m['block_load']) == 3 and [sum(x) for x in zip(*m['block_load'])] == m['load'], (f, m)
        per = [max(b) * 4 / sum(b) for b in m['block_load']]
        assert all(abs(a - b) < 1e-9 for a, b in zip(per, m['block_imbalance'])), (f, m)
        assert abs(m['imbalance'] - max(per)) < 1e-9, (f, m)
# The load is the routers' decision, the same in every layout (up to a near-tie moving one).
for a, b in zip(rows('ref.jsonl'), rows('c.jsonl')):
    assert sum(abs(x - y) for x, y in zip(a['moe']['load'], b['moe']['load'])) <= 2, (a['moe'], b['moe'])
assert all(o['comm']['alltoall_bytes'] > 0 for o in rows('c.jsonl')), 'no all-to-all bytes under --ep'
assert all(o['comm']['alltoall_bytes'] == 0 for o in rows('ref.jsonl')), 'all-to-all bytes on one process'
print('expert-parallel metrics: layout, load, imbalance, all-to-all bytes')
PY

# Each layout's step-4 checkpoint resumes under another layout (steps 5-8).
resume() { # resume NAME FROM RANKS FLAGS...
  local name=$1 from=$2 n=$3; shift 3
  mkdir -p "$WORK/$name.ck" && cp -r "$WORK/$from.ck/step_00000004" "$WORK/$name.ck/"
  timeout 300 mpirun --oversubscribe -np "$n" "$ZT" train "${C[@]}" "$@" --metrics "$WORK/$name.jsonl" \
    --ckpt-dir "$WORK/$name.ck" >"$WORK/$name.log" 2>&1 ||
    fail "resume of $from as $name: mpirun -np $n train $*: $(tail -n 3 "$WORK/$name.log")"
  grep -q "resuming from .*step_00000004" "$WORK/$name.log" || fail "$name did not resume from step 4"
}
resume r_ref ref 4 --ep 4 --zero-stage 3
resume r_a a 1 --grad-accum 4
resume r_b b 4 --ep 2 --tp 2 --zero-stage 2 --grad-accum 2
resume r_c c 2 --ep 2 --zero-stage 1 --grad-accum 2
resume r_d d 4 --ep 2 --pp 2 --zero-stage 3 --grad-accum 2
resume r_e e 8 --ep 2 --tp 2 --pp 2 --zero-stage 1 --grad-accum 2
resume r_f f 4 --ep 4
resume r_g g 2 --zero-stage 3 --grad-accum 2
python3 "$(dirname "$0")/compare_resumed.py" "$WORK/ref.jsonl" 5 8 layouts "$WORK"/r_{ref,a,b,c,d,e,f,g}.jsonl ||
  fail "resumed losses differ"

# The export of the 4-D checkpoint (each rank wrote its stage's, tp slice's and experts' pieces)
# equals the one-process export.
"$ZT" export --ckpt "$WORK/f.ck/step_00000008" --out "$WORK/f.h5" >/dev/null || fail "export of the 4-D checkpoint failed"
"$ZT" export --ckpt "$WORK/ref.ck/step_00000008" --out "$WORK/one.h5" >/dev/null || fail "export of the one-process checkpoint failed"
python3 "$(dirname "$0")/compare_exports.py" "$WORK/f.h5" "$WORK/one.h5" /params/embed \
  /params/blocks.1.moe.experts.0.w1 /params/blocks.3.moe.experts.3.w2 /params/blocks.2.moe.router || fail "exports differ"

# Bad ep flags: one line each, nothing trained.
bad() { # bad RANKS "EXPECTED" MODEL FLAGS...
  local n=$1 want=$2 model=$3; shift 3
  local out rc=0
  out=$(timeout 60 mpirun --oversubscribe -np "$n" "$ZT" train --data "$WORK/data" $model --steps 2 "$@" 2>&1) &&
    rc=0 || rc=$?
  [ "$rc" -ne 0 ] || fail "train $* succeeded"
  echo "$out" | grep -q -- "$want" || fail "train $*: expected '$want', got: $out"
  [ "$(echo "$out" | grep -c -- "$want")" -eq 1 ] || fail "train $*: the error is not printed once: $out"
}
bad 4 "--ep 3 does not divide --experts 4" "$L4" --ep 3
bad 2 "--ep 4 does not divide the data-parallel size 2" "$L4" --ep 4
bad 4 "--ep 4 does not divide --experts 6" "${L4/--experts 4/--experts 6}" --ep 4
bad 2 "--ep 2 needs an MoE model (--experts > 0)" "${L4/--experts 4 --top-k 2 --shared-experts 1 --dense-layers 1/--experts 0 --dense-layers 4}" --ep 2
echo "expert_parallel: passed"
