#!/usr/bin/env bash
# Non-finite gradients and loss spikes never lose a run. The test hook ZT_TEST_FAULT=nan@3:1 makes
# rank 1's gradients of step 4 NaN (runtime/fault.h); every rank sees the NaN norm and:
#  - skip (default), under dp 2 ZeRO-1, tp 2, pp 2 and ep 2: step 4 makes no update, its metrics
#    line says "event": "skipped", the run goes on with finite losses;
#  - rollback: the run reloads the newest checkpoint (step 2) and replays steps 3.. exactly (the
#    same losses as the first time), steps past the bad batch, and finishes;
#  - stop: a checkpoint is written and the run exits 1 with "event": "stopped";
#  - --spike-factor: a loss above F x its running mean is skipped like a NaN one.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
prepare_zh
C=(--data "$WORK/data" $TINY --micro-batch 2 --steps 6 --log-every 1)
run() { local name=$1; shift; ZT_TEST_FAULT=nan@3:1 timeout 300 mpirun --oversubscribe -np 2 "$ZT" train "${C[@]}" "$@" \
  --metrics "$WORK/$name.jsonl" >"$WORK/$name.log" 2>&1; }
for layout in "dp:--zero-stage 1" "tp:--tp 2" "pp:--pp 2 --grad-accum 2" "ep:--ep 2 --zero-stage 3"; do
  name=${layout%%:*}
  # shellcheck disable=SC2086
  run "$name" ${layout#*:} || fail "$name: skip run failed: $(tail -n 3 "$WORK/$name.log")"
done
run rb --ckpt-dir "$WORK/ck" --ckpt-every 2 --on-nonfinite rollback || fail "rollback run failed: $(tail -n 3 "$WORK/rb.log")"
rc=0
run stop --ckpt-dir "$WORK/sck" --on-nonfinite stop || rc=$?
[ "$rc" -eq 1 ] || fail "--on-nonfinite stop exited $rc, not 1: $(tail -n 3 "$WORK/stop.log")"
[ -d "$WORK/sck/step_00000004" ] || fail "--on-nonfinite stop wrote no checkpoint: $(ls "$WORK/sck")"
"$ZT" train "${C[@]}" --steps 30 --lr 3 --warmup-steps 0 --spike-factor 1.2 --metrics "$WORK/spike.jsonl" \
  >"$WORK/spike.log" 2>&1 || fail "spike run failed: $(tail -n 3 "$WORK/spike.log")"
grep -q "loss spike (loss" "$WORK/spike.log" || fail "no loss spike reported: $(tail -n 5 "$WORK/spike.log")"
python3 - "$WORK" <<'PY' || fail "non-finite steps handled wrong"
import json, math, sys, os
d = sys.argv[1]
rows = lambda n: [o for o in map(json.loads, open(os.path.join(d, n))) if 'step' in o]
for name in ['dp', 'tp', 'pp', 'ep']:
    r = {o['step']: o for o in rows(name + '.jsonl')}
    assert sorted(r) == [1, 2, 3, 4, 5, 6], (name, sorted(r))
    assert r[4].get('event') == 'skipped' and r[4]['grad_norm'] is None, (name, r[4])
    assert all('event' not in r[s] and math.isfinite(r[s]['loss']) for s in [1, 2, 3, 5, 6]), name
# rollback: steps 1-4 (4 rolled back), then 3 (replayed from the step-2 checkpoint), 4 stepped
# past, 5, 6; the replayed step 3 has the first run's loss exactly.
rb = rows('rb.jsonl')
steps = [o['step'] for o in rb]
assert steps == [1, 2, 3, 4, 3, 4, 5, 6], steps
assert rb[3]['event'] == 'rolled_back' and rb[5]['event'] == 'skipped', rb[3:6]
assert rb[4]['loss'] == rb[2]['loss'], (rb[4]['loss'], rb[2]['loss'])
st = rows('stop.jsonl')
assert st[-1]['step'] == 4 and st[-1]['event'] == 'stopped', st[-1]
sp = [o for o in rows('spike.jsonl') if o.get('event') == 'skipped']
assert sp and all(math.isfinite(o['loss']) for o in sp), sp
assert len(sp) < 15, f'{len(sp)} of 30 steps skipped: the running mean does not follow the loss'
print(f'skip on 4 layouts, rollback replayed exactly, stop checkpointed, {len(sp)} spikes skipped')
PY
grep -q "resuming from .*step_00000002" "$WORK/rb.log" || fail "rollback did not reload step 2: $(grep -i resum "$WORK/rb.log")"
echo "nonfinite: passed"
