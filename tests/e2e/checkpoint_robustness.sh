#!/usr/bin/env bash
# Checkpoints that must not lose a run: a rank killed with SIGKILL while checkpoints are being
# written leaves the newest complete one loadable and resumable; a checkpoint written at dp=2
# stage 3 resumes at dp=4 stage 1 and dp=2 stage 2 with the losses of the uninterrupted run
# (1e-5 relative; the aux loss is off so microbatch size does not change the loss).
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
prepare_zh

# 1. SIGKILL in the middle of checkpointing every step.
K=(--data "$WORK/data" $TINY --micro-batch 4 --steps 2000 --log-every 1 --seed 3 --zero-stage 3
   --ckpt-every 1 --keep-last 2 --eval-tokens 1024)
mpirun -np 2 "$ZT" train "${K[@]}" --ckpt-dir "$WORK/kill" --metrics "$WORK/kill.jsonl" \
  >"$WORK/kill.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [[ -f $WORK/kill.jsonl && $(wc -l <"$WORK/kill.jsonl") -ge 15 ]] && break
  sleep 0.1
done
kill -KILL "$(pgrep -P "$job" -x zerotrain | tail -n 1)"  # this job's rank, not another test's
wait "$job" && fail "the killed job exited 0"
latest=$(cat "$WORK/kill/latest")
[[ -f $WORK/kill/$latest/COMPLETE ]] || fail "latest ($latest) is not complete"
"$ZT" eval --ckpt "$WORK/kill" --data "$WORK/data/val.bin" --eval-tokens 512 >/dev/null ||
  fail "the newest complete checkpoint does not load after SIGKILL"
timeout 120 "$ZT" train "${K[@]}" --ckpt-dir "$WORK/kill" --metrics "$WORK/k2.jsonl" \
  >"$WORK/k2.log" 2>&1 &
job=$!
for _ in $(seq 300); do grep -q "resuming from" "$WORK/k2.log" 2>/dev/null && break; sleep 0.1; done
kill "$job" 2>/dev/null; wait "$job" || true
grep -q "resuming from .*step_" "$WORK/k2.log" || fail "no resume after SIGKILL: $(head -n 3 "$WORK/k2.log")"
echo "SIGKILL: $latest complete and resumable"

# 2. Resharding: save at dp=2 stage 3, resume at dp=4 stage 1 and dp=2 stage 2.
R=(--data "$WORK/data" $TINY --aux-loss-coef 0 --steps 8 --log-every 1 --seed 4 --eval-tokens 1024)
mpirun -np 2 "$ZT" train "${R[@]}" --micro-batch 2 --zero-stage 3 --ckpt-dir "$WORK/r" \
  --ckpt-every 4 --metrics "$WORK/straight.jsonl" >/dev/null 2>&1 || fail "dp=2 stage 3 run failed"
for layout in "4 1 1" "2 2 2"; do
  read -r np st mb <<<"$layout"
  mpirun -np "$np" "$ZT" train "${R[@]}" --micro-batch "$mb" --zero-stage "$st" \
    --resume "$WORK/r/step_00000004" --metrics "$WORK/re$np$st.jsonl" >"$WORK/re.log" 2>&1 ||
    fail "resume at dp=$np stage $st failed: $(tail -n 2 "$WORK/re.log")"
  python3 - "$WORK/straight.jsonl" "$WORK/re$np$st.jsonl" "$np" "$st" <<'PY' || fail "dp=$np stage $st differs"
import json, sys
load = lambda p: {o['step']: o['loss'] for o in map(json.loads, open(p)) if 'loss' in o}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert sorted(b) == [5, 6, 7, 8], sorted(b)
worst = max(abs(a[s] - b[s]) / a[s] for s in b)
print(f'dp=2 stage 3 checkpoint resumed at dp={sys.argv[3]} stage {sys.argv[4]}: {worst:.1e}')
sys.exit(0 if worst <= 1e-5 else 1)
PY
done
echo "checkpoint_robustness: passed"
