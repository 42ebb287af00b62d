#!/usr/bin/env bash
# Preemption as Slurm does it: SIGTERM to one rank of a 2-rank run. Every rank finishes the step,
# a checkpoint is written, all exit 0; resuming continues exactly (the same losses as a run that
# was never stopped). --preempt-signal chooses the signals that do this, --preempt-exit-code the
# exit status, --status-file reports finished or stopped.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
prepare_zh
A=(--data "$WORK/data" $TINY --micro-batch 4 --steps 1500 --log-every 1 --seed 9 --zero-stage 3
   --eval-tokens 1024)
mpirun -np 2 "$ZT" train "${A[@]}" --ckpt-dir "$WORK/ckpt" --metrics "$WORK/pre.jsonl" \
  >"$WORK/pre.log" 2>&1 &
job=$!
for _ in $(seq 600); do  # wait until 20 steps are logged (at most 60 s)
  [[ -f $WORK/pre.jsonl && $(wc -l <"$WORK/pre.jsonl") -ge 20 ]] && break
  sleep 0.1
done
rank=$(pgrep -P "$job" -x zerotrain | tail -n 1)  # this job's rank, not another test's
[[ -n $rank ]] || fail "no rank to signal"
kill -TERM "$rank"
rc=0; wait "$job" || rc=$?
[[ $rc -eq 0 ]] || fail "preempted job exited $rc: $(tail -n 3 "$WORK/pre.log")"
grep -q "stop requested by a signal: checkpoint written" "$WORK/pre.log" || fail "no stop message"
stopped=$(python3 -c "import json; print([json.loads(l) for l in open('$WORK/pre.jsonl')][-1]['step'])")
[[ $stopped -lt 1500 && -f $WORK/ckpt/$(cat "$WORK/ckpt/latest")/COMPLETE ]] ||
  fail "no checkpoint of the stopped run (stopped at $stopped)"

mpirun -np 2 "$ZT" train "${A[@]}" --ckpt-dir "$WORK/ckpt" --metrics "$WORK/resumed.jsonl" \
  >"$WORK/resumed.log" 2>&1 || fail "resume failed: $(tail -n 3 "$WORK/resumed.log")"
mpirun -np 2 "$ZT" train "${A[@]}" --metrics "$WORK/ref.jsonl" >/dev/null 2>&1 || fail "reference run failed"
python3 - "$WORK/ref.jsonl" "$WORK/resumed.jsonl" "$stopped" <<'PY' || fail "resumed losses differ"
import json, sys
load = lambda p: {o['step']: o['loss'] for o in map(json.loads, open(p)) if 'loss' in o}
ref, res, k = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
assert sorted(res) == list(range(k + 1, 1501)), (min(res), max(res), k)
worst = max(abs(ref[s] - res[s]) / ref[s] for s in res)
print(f'stopped by SIGTERM after step {k}; resumed steps {k + 1}-1500 differ by at most {worst:.1e}')
sys.exit(0 if worst <= 1e-5 else 1)
PY

# --preempt-signal names the signals that stop the run: USR2 here checkpoints and exits 0; USR1,
# not named, keeps its default action (the process ends, nothing is claimed).
signal_run() {  # signal_run NAME SIGNAL FLAGS...: start 1 rank, send SIGNAL after 5 steps
  local name=$1 sig=$2; shift 2
  "$ZT" train "${A[@]}" --steps 400 "$@" --metrics "$WORK/$name.jsonl" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    [[ -f $WORK/$name.jsonl && $(wc -l <"$WORK/$name.jsonl") -ge 5 ]] && break
    sleep 0.1
  done
  kill "-$sig" "$pid"
  rc=0; { wait "$pid"; } 2>/dev/null || rc=$?
}
signal_run usr2 USR2 --preempt-signal usr2 --ckpt-dir "$WORK/ck2" --status-file "$WORK/usr2.status"
[[ $rc -eq 0 ]] || fail "--preempt-signal usr2: SIGUSR2 exit $rc: $(tail -n 2 "$WORK/usr2.log")"
[[ $(cat "$WORK/usr2.status") == "stopped $(jlast "$WORK/usr2.jsonl" step)" ]] ||
  fail "--status-file after a stop: $(cat "$WORK/usr2.status")"
grep -q "stop requested by a signal" "$WORK/usr2.log" || fail "SIGUSR2 did not stop the run"
[[ -f $WORK/ck2/$(cat "$WORK/ck2/latest")/COMPLETE ]] || fail "no checkpoint after SIGUSR2"
signal_run usr1 USR1 --preempt-signal TERM
[[ $rc -ne 0 ]] || fail "--preempt-signal TERM: SIGUSR1 was handled as a preemption"
! grep -q "stop requested by a signal" "$WORK/usr1.log" || fail "SIGUSR1 stopped the run as a preemption"
# --preempt-exit-code: a stopped run's status; --status-file tells finished from stopped.
signal_run code TERM --preempt-exit-code 75 --ckpt-dir "$WORK/ck3" --status-file "$WORK/code.status"
[[ $rc -eq 75 && $(cat "$WORK/code.status") == stopped* ]] ||
  fail "--preempt-exit-code 75: exit $rc, status '$(cat "$WORK/code.status")'"
"$ZT" train "${A[@]}" --steps 400 --preempt-exit-code 75 --ckpt-dir "$WORK/ck3" \
  --status-file "$WORK/code.status" >"$WORK/code2.log" 2>&1 || fail "resume: $(tail -n 2 "$WORK/code2.log")"
[[ $(cat "$WORK/code.status") == "finished 400" ]] || fail "--status-file at the end: $(cat "$WORK/code.status")"
echo "preemption: passed"
