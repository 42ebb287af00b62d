#!/usr/bin/env bash
# Pipeline parallelism as a user runs it: mpirun with --pp (each schedule; pp x dp at ZeRO stage
# 3; pp x tp; a given --pp-split) reproduces the single process with the same global batch
# (losses within 1e-5 relative) and NVMe offload the in-memory run exactly; the metrics give the
# layout, the schedule, each stage's bubble and the p2p bytes; the trace shows the schedule's
# passes and waits; a pp checkpoint resumes without pp, one written without pp resumes under
# pp 4, a pp x tp checkpoint resumes as dp 2, all equal to the uninterrupted run; the export of a
# pp checkpoint equals the one-process export; bad pipeline flags are one line each.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
prepare_zh
L4=${TINY/--layers 2/--layers 4}
C=(--data "$WORK/data" $L4 --micro-batch 2 --steps 8 --log-every 1 --seed 9 --eval-tokens 2048)
run() { local n=$1 log=$2; shift 2; timeout 300 mpirun --oversubscribe -np "$n" "$ZT" train "${C[@]}" "$@" >"$log" 2>&1 ||
  fail "mpirun -np $n train $*: $(tail -n 3 "$log")"; }
"$ZT" train "${C[@]}" --grad-accum 4 --metrics "$WORK/ref.jsonl" --ckpt-dir "$WORK/refck" --ckpt-every 4 >/dev/null
run 2 "$WORK/a.log" --pp 2 --grad-accum 4 --metrics "$WORK/a.jsonl" --trace "$WORK/trace.json" \
  --ckpt-dir "$WORK/ckpt" --ckpt-every 4
run 2 "$WORK/b.log" --pp 2 --grad-accum 4 --pp-schedule zb --pp-split 1,3 --metrics "$WORK/b.jsonl" \
  --trace "$WORK/zb.json"
run 2 "$WORK/c.log" --pp 2 --grad-accum 4 --pp-schedule interleaved --virtual-stages 2 --metrics "$WORK/c.jsonl"
run 4 "$WORK/z3.log" --pp 2 --zero-stage 3 --grad-accum 2 --metrics "$WORK/z3.jsonl"
grep -q "dp 2 x tp 1 x pp 2" "$WORK/z3.log" || fail "the start line does not give the layout: $(head -n 1 "$WORK/z3.log")"
grep -q "pipeline 2 stages, blocks 2+2, schedule 1f1b" "$WORK/z3.log" || fail "no pipeline line: $(head -n 2 "$WORK/z3.log")"
run 4 "$WORK/off.log" --pp 2 --zero-stage 3 --grad-accum 2 --offload-optimizer nvme --offload-params nvme \
  --nvme-dir "$WORK/nvme" --nvme-buffer-mb 4 --metrics "$WORK/off.jsonl"
run 4 "$WORK/tp.log" --pp 2 --tp 2 --zero-stage 1 --grad-accum 4 --pp-schedule zb --metrics "$WORK/tp.jsonl" \
  --ckpt-dir "$WORK/tpck" --ckpt-every 4

python3 - "$WORK" <<'PY' || fail "pipeline losses, metrics or trace wrong"
import json, sys, os
d = sys.argv[1]
rows = lambda f: [json.loads(l) for l in open(os.path.join(d, f))]
loss = lambda r: [o['loss'] for o in r if 'loss' in o]
ref = loss(rows('ref.jsonl'))
for f in ['a.jsonl', 'b.jsonl', 'c.jsonl', 'z3.jsonl', 'tp.jsonl']:
    got = loss(rows(f))
    worst = max(abs(a - b) / b for a, b in zip(got, ref))
    assert len(got) == len(ref) == 8 and worst <= 1e-5, f'{f}: {worst}'
    print(f'{f} vs single process: {worst:.1e}')
assert loss(rows('off.jsonl')) == loss(rows('z3.jsonl')), 'pp with NVMe offload differs from in memory'
for f, sched in [('a.jsonl', '1f1b'), ('b.jsonl', 'zb'), ('c.jsonl', 'interleaved')]:
    last = [o for o in rows(f) if 'loss' in o][-1]
    p = last['pipeline']
    assert p['schedule'] == sched and len(p['stages']) == 2, p
    assert all(0 <= b < 1 for b in p['stages']) and p['bubble'] == p['stages'][0], p
    assert last['comm']['p2p_bytes'] > 0, last['comm']
last = [o for o in rows('z3.jsonl') if 'loss' in o][-1]
assert last['layout'] == {'world': 4, 'dp': 2, 'tp': 1, 'pp': 2, 'ep': 1, 'zero_stage': 3}, last['layout']
# the p2p bytes: stage 0 (rank 0) sends each microbatch's activation once: B x T x d fp32
a = [o for o in rows('a.jsonl') if 'loss' in o][-1]
assert a['comm']['p2p_bytes'] == 4 * 2 * 32 * 64 * 4, a['comm']
for trace, want in [('trace.json', {'forward mb 0', 'backward mb 3', 'wait grad mb 0'}),
                    ('zb.json', {'forward mb 0', 'backward input mb 3', 'backward weight mb 3'})]:
    ev = json.load(open(os.path.join(d, trace)))['traceEvents']
    names = {e['name'] for e in ev if e['ph'] == 'X'}
    assert want <= names, (trace, sorted(names)[:30])
    assert any(n.startswith('send act mb') for n in names), sorted(names)[:30]
print('pipeline metrics and trace: schedule, bubble per stage, p2p bytes, passes and waits')
PY

# The pp2 checkpoint of step 4 resumes on one process...
mkdir -p "$WORK/r1" && cp -r "$WORK/ckpt/step_00000004" "$WORK/r1/"
"$ZT" train "${C[@]}" --grad-accum 4 --ckpt-dir "$WORK/r1" --metrics "$WORK/r1.jsonl" >"$WORK/r1.log" 2>&1 ||
  fail "resume of the pp checkpoint on one process: $(tail -n 3 "$WORK/r1.log")"
grep -q "resuming from .*step_00000004" "$WORK/r1.log" || fail "did not resume from step 4"
# ... and the one-process checkpoint of step 4 resumes under pp 4 (zb, ZeRO stage 2).
mkdir -p "$WORK/r2" && cp -r "$WORK/refck/step_00000004" "$WORK/r2/"
run 4 "$WORK/r2.log" --pp 4 --grad-accum 4 --pp-schedule zb --zero-stage 2 --ckpt-dir "$WORK/r2" --metrics "$WORK/r2.jsonl"
# ... and the pp2 x tp2 checkpoint of step 4 (each stage's tp slices) resumes on 2 ranks as dp 2.
mkdir -p "$WORK/r3" && cp -r "$WORK/tpck/step_00000004" "$WORK/r3/"
run 2 "$WORK/r3.log" --grad-accum 2 --ckpt-dir "$WORK/r3" --metrics "$WORK/r3.jsonl"
python3 "$(dirname "$0")/compare_resumed.py" "$WORK/ref.jsonl" 5 8 pp "$WORK/r1.jsonl" "$WORK/r2.jsonl" "$WORK/r3.jsonl" ||
  fail "resumed losses differ"

# The export of the pp checkpoint (each stage wrote its own layers) equals the one-process one.
"$ZT" export --ckpt "$WORK/ckpt/step_00000008" --out "$WORK/pp.h5" >/dev/null || fail "export of the pp checkpoint failed"
"$ZT" export --ckpt "$WORK/refck/step_00000008" --out "$WORK/one.h5" >/dev/null || fail "export of the one-process checkpoint failed"
python3 "$(dirname "$0")/compare_exports.py" "$WORK/pp.h5" "$WORK/one.h5" /params/embed \
  /params/blocks.0.attn.wq /params/blocks.3.moe.experts.2.w2 /params/final_norm || fail "exports differ"

# Bad pipeline flags: one line naming the flag, from rank 0, every rank exits non-zero.
bad() { local needle=$1 n=$2; shift 2; local rc=0
  timeout 60 mpirun --oversubscribe -np "$n" "$ZT" train "$@" >"$WORK/bad.out" 2>"$WORK/bad.err" || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "'$*' exited $rc"
  [[ $(grep -c "error:" "$WORK/bad.err") -eq 1 ]] || fail "'$*': $(cat "$WORK/bad.err")"
  grep -q -- "$needle" "$WORK/bad.err" || fail "'$*' does not name $needle: $(cat "$WORK/bad.err")"; }
D=(--data "$WORK/data" --steps 1 --layers 4)
bad "ranks" 3 "${D[@]}" --pp 2
bad "--layers" 2 --data "$WORK/data" --steps 1 --layers 1 --pp 2
bad "--pp-split" 2 "${D[@]}" --pp 2 --pp-split 1,2
bad "--pp-split" 2 "${D[@]}" --pp 2 --pp-split 1,x
bad "--virtual-stages 4 does not divide" 2 --data "$WORK/data" --steps 1 --layers 12 --pp 2 \
  --pp-schedule interleaved --virtual-stages 4
bad "--virtual-stages 2 needs --pp-schedule interleaved" 2 "${D[@]}" --pp 2 --virtual-stages 2
bad "multiple of --pp 2" 2 "${D[@]}" --pp 2 --pp-schedule interleaved --virtual-stages 2 --grad-accum 3
bad "--pp-schedule" 2 "${D[@]}" --pp 2 --pp-schedule gpipe
bad "--virtual-stages needs --pp" 1 "${D[@]}" --virtual-stages 2
echo "pipeline: passed"
