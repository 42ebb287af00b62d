#!/usr/bin/env bash
# `zerotrain plan` against the runs it predicts: for a matrix of 4-rank layouts (dp, tp with and
# without sequence parallelism, pp under every schedule, ep, tp x ep, ZeRO 0-3, fp32 and bf16,
# NVMe offload), each run with the `flags` of its plan row, the planner's figures against the
# metrics of a 3-step run:
# params / grads / optim and the bytes per collective exactly (the expert all-to-all, routed as
# the data has it, within 35% of the balanced-routing prediction), activations and peak within
# 15% (the peak counts the MPI receive slots as if every reduction were in flight at once, an
# upper bound that timing decides: a measured peak may be below it by up to those slots). Then the table's best command runs as printed, --calibrate measures under mpirun, and bad
# input gets one error line.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
prepare_zh
SHAPE="$TINY --layers 4"  # four blocks: interleaved pp 2 x 2 chunks
BATCH="--micro-batch 2 --grad-accum 2"
for p in fp32 bf16; do
  "$ZT" plan $SHAPE $BATCH --precision $p --world 4 --json >"$WORK/plan_$p.jsonl" 2>"$WORK/plan.err" ||
    fail "plan --json: $(cat "$WORK/plan.err")"
done
# The layouts to run, by their plan rows' layout keys; each runs with the row's own `flags`.
python3 - "$WORK" >"$WORK/runs.txt" <<'PY' || fail "plan rows missing"
import json, os, sys
d = sys.argv[1]
plans = {p: [json.loads(l) for l in open(os.path.join(d, f'plan_{p}.jsonl'))] for p in ('fp32', 'bf16')}
want = [dict(dp=4, zero_stage=0), dict(dp=4, zero_stage=3), dict(tp=2, zero_stage=1),
        dict(pp=2, zero_stage=2), dict(dp=4, ep=2, zero_stage=3), dict(dp=4, zero_stage=1, precision='bf16'),
        dict(tp=2, sequence_parallel=True, zero_stage=2), dict(pp=2, schedule='zb', zero_stage=3),
        dict(pp=2, schedule='interleaved', virtual_stages=2, zero_stage=0), dict(tp=2, ep=2, zero_stage=0),
        dict(dp=4, zero_stage=3, offload='optimizer+params:nvme'), dict(pp=4, zero_stage=1, offload='optimizer:nvme')]
for i, w in enumerate(want):
    p = w.pop('precision', 'fp32')
    full = dict(tp=1, pp=1, ep=1, sequence_parallel=False, virtual_stages=1, offload='none')
    full.update(w)
    full.setdefault('dp', 4 // (full['tp'] * full['pp']))
    full.setdefault('schedule', '1f1b' if full['pp'] > 1 else 'none')
    rows = [o for o in plans[p] if all(o['layout'][k] == v for k, v in full.items())]
    assert len(rows) == 1, (w, len(rows))
    print(i, p, rows[0]['rank'], rows[0]['flags'])
PY
while read -r i p rank flags; do
  flags=${flags//DIR/$WORK/nvme$i}
  # shellcheck disable=SC2086
  mpirun -np 4 "$ZT" train --data "$WORK/data" $SHAPE $BATCH --precision "$p" --steps 3 --log-every 1 $flags \
    --metrics "$WORK/m$i.jsonl" </dev/null >"$WORK/t.log" 2>&1 || fail "train $flags: $(tail -n 3 "$WORK/t.log")"
done <"$WORK/runs.txt"
python3 - "$WORK" <<'PY' || fail "the planner and the runs disagree"
import json, sys, os
d = sys.argv[1]
plans = {p: {o['rank']: o for o in map(json.loads, open(os.path.join(d, f'plan_{p}.jsonl')))} for p in ('fp32', 'bf16')}
bad, worst, n = [], {}, 0
for line in open(os.path.join(d, 'runs.txt')):
    i, prec, rank, flags = line.split(' ', 3)
    p, n = plans[prec][int(rank)], n + 1
    m = [o for o in map(json.loads, open(os.path.join(d, f'm{i}.jsonl'))) if 'mem' in o][-1]
    what = f'{prec} {flags.strip()}'
    checks = [('mem', k, 0) for k in ('params', 'grads', 'optim')] + \
             [('comm', k, 0) for k in ('allgather_bytes', 'reduce_scatter_bytes', 'allreduce_bytes', 'p2p_bytes')] + \
             [('comm', 'alltoall_bytes', 0.35 if p['layout']['ep'] > 1 else 0), ('mem', 'activations', 0.15), ('mem', 'peak', 0.15)]
    for cat, k, tol in checks:
        pv, mv = p[cat][k], m[cat][k]
        e = abs(pv - mv) / max(mv, 1)
        if k == 'peak' and mv < pv:  # the receive slots are an upper bound: as low as none of them
            e = max(0.0, (pv - p['mem']['comm_slots'] - mv) / max(mv, 1))
        worst[k] = max(worst.get(k, 0), e)
        if k in ("peak", "activations") and e > 0.08: print(f"{what}: {k} {pv} vs {mv} ({e:.3f})")
        if e > tol: bad.append(f'{what}: {cat}.{k} predicted {pv} measured {mv} ({e:.3f} > {tol})')
for b in bad: print(b)
print('planner vs runs over', n, 'layouts, worst relative error:', ', '.join(f'{k} {v:.3f}' for k, v in worst.items()))
sys.exit(1 if bad else 0)
PY

# The table and its best command, run as printed (for 2 steps).
"$ZT" plan $SHAPE $BATCH --world 4 --mem-gb 1 --top 5 >"$WORK/table.txt" 2>&1 || fail "plan table: $(cat "$WORK/table.txt")"
grep -q "^Best: " "$WORK/table.txt" || fail "no best layout: $(cat "$WORK/table.txt")"
cmd=$(grep "^  mpirun -np 4 zerotrain train" "$WORK/table.txt" | sed "s|^  mpirun -np 4 zerotrain|mpirun -np 4 $ZT|; s|--data DIR|--data $WORK/data|; s|--nvme-dir DIR|--nvme-dir $WORK/nvme2|")
[ -n "$cmd" ] || fail "the table does not end with the best command: $(cat "$WORK/table.txt")"
# shellcheck disable=SC2086
$cmd --steps 2 </dev/null >"$WORK/best.log" 2>&1 || fail "the best command failed: $cmd: $(tail -n 2 "$WORK/best.log")"
OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2 "$ZT" plan $SHAPE --world 4 --calibrate --top 3 </dev/null >"$WORK/cal.txt" 2>&1 ||
  fail "plan --calibrate under mpirun: $(tail -n 2 "$WORK/cal.txt")"
grep -q "gemm measured, all-reduce bandwidth measured over 2 ranks" "$WORK/cal.txt" || fail "calibration: $(head -n 1 "$WORK/cal.txt")"
[ "$(grep -c '^Best: ' "$WORK/cal.txt")" -eq 1 ] || fail "plan under mpirun printed on more than rank 0"
# Model flags from --config reach the best command as flags.
printf 'layers = 2\nmodel-dim = 64\nuntie-embeddings = true\n' >"$WORK/plan.ini"
"$ZT" plan --config "$WORK/plan.ini" --world 2 --top 1 >"$WORK/cfg.txt" 2>&1 || fail "plan --config: $(cat "$WORK/cfg.txt")"
grep -q "zerotrain train --data DIR --layers 2 --model-dim 64 --untie-embeddings " "$WORK/cfg.txt" ||
  fail "--config's model flags missing from the best command: $(tail -n 1 "$WORK/cfg.txt")"
"$ZT" plan $SHAPE $BATCH --world 4 --mem-gb 0.001 >"$WORK/none.txt" 2>&1 || fail "plan with a tiny budget failed"
grep -q "No layout fits 0.001 GiB per rank" "$WORK/none.txt" || fail "a budget nothing fits: $(tail -n 2 "$WORK/none.txt")"
"$ZT" plan $TINY --world 8 --tp-max 1 --pp-max 1 --ep-max 1 --json | python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert rows and all(r['layout']['tp'] == r['layout']['pp'] == r['layout']['ep'] == 1 for r in rows), rows[:2]
assert sorted(r['rank'] for r in rows) == list(range(1, len(rows) + 1))
" || fail "--tp-max / --pp-max / --ep-max or the ranks of --json"

# Bad input: one error line, exit 2.
expect_error() {
  local want=$1; shift
  set +e; "$ZT" plan "$@" >"$WORK/err.txt" 2>&1; local rc=$?; set -e
  [ $rc -eq 2 ] || fail "plan $*: exit $rc, want 2: $(cat "$WORK/err.txt")"
  [ "$(wc -l <"$WORK/err.txt")" -eq 1 ] || fail "plan $*: more than one line: $(cat "$WORK/err.txt")"
  grep -q -- "$want" "$WORK/err.txt" || fail "plan $*: '$(cat "$WORK/err.txt")' does not name $want"
}
expect_error "--world is required" $TINY
expect_error "--world" --world 0
expect_error "--device" --world 2 --device tpu
expect_error "--mem-gb" --world 2 --mem-gb -1
expect_error "--tp-max" --world 2 --tp-max -1
expect_error "--heads" --world 2 --heads 3 --model-dim 64
expect_error "--bogus" --world 2 --bogus 1
echo "plan: passed"
