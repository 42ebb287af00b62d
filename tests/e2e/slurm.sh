#!/usr/bin/env bash
# Slurm, for real: a one-node cluster of this test's own (launch/slurm/local-cluster.sh, its own
# state directory and ports). srun -n 2 trains exactly like mpirun -np 2; srun without PMI is one
# line naming --mpi=pmix; the sbatch template, sent SIGUSR1 mid-run, checkpoints, requeues itself
# and finishes with the losses of an uninterrupted run (metrics appended); a finished job, a job
# whose rank crashes and one past ZT_MAX_REQUEUES are not requeued; `up` twice is harmless and
# `down` stops what `up` started by its pid files (a process merely named like a daemon lives).
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]]; then echo "SKIP: the local Slurm cluster needs root"; exit 77; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ZT_SLURM_DIR=$WORK/slurm ZT_SLURM_PORT=$((7100 + RANDOM % 800 * 2))
export SLURM_CONF=$ZT_SLURM_DIR/slurm.conf ZT_BIN=$ZT PATH=$PATH:/usr/sbin
CLUSTER=$ROOT/launch/slurm/local-cluster.sh
cleanup() {  # this cluster's jobs first (their ranks outlive slurmd), then its daemons
  squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
  for _ in $(seq 60); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.5; done
  "$CLUSTER" down >/dev/null 2>&1 || true
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
prepare_zh

"$CLUSTER" up >"$WORK/up1.log" 2>&1 || fail "local-cluster.sh up: $(tail -n 2 "$WORK/up1.log")"
pids() { cat "$ZT_SLURM_DIR"/run/{munged,slurmctld,slurmd}.pid | tr '\n' ' '; }
first=$(pids)
"$CLUSTER" up >"$WORK/up2.log" 2>&1 || fail "a second up failed: $(tail -n 2 "$WORK/up2.log")"
[[ $(pids) == "$first" ]] || fail "a second up restarted the daemons: $first -> $(pids)"
"$CLUSTER" status >"$WORK/status.log" || fail "status of a running cluster: $(cat "$WORK/status.log")"

A=(--data "$WORK/data" $TINY --micro-batch 2 --log-every 1 --seed 21 --zero-stage 3
   --eval-tokens 512)
mpirun -np 2 "$ZT" train "${A[@]}" --steps 150 --metrics "$WORK/mpi.jsonl" >"$WORK/mpi.log" 2>&1 ||
  fail "mpirun -np 2: $(tail -n 2 "$WORK/mpi.log")"
timeout 300 srun -n 2 "$ZT" train "${A[@]}" --steps 150 --metrics "$WORK/srun.jsonl" >"$WORK/srun.log" 2>&1 ||
  fail "srun -n 2: $(tail -n 2 "$WORK/srun.log")"
same_losses() {  # same_losses A.jsonl B.jsonl: every step's loss equal (a repeated step: the last)
  python3 - "$1" "$2" <<'PY'
import json, sys
L = lambda p: {o['step']: o['loss'] for o in map(json.loads, open(p)) if 'loss' in o}
a, b = L(sys.argv[1]), L(sys.argv[2])
assert sorted(a) == sorted(b), f'steps {sorted(b)[:3]}..{len(b)} vs {len(a)}'
bad = [k for k in a if a[k] != b[k]]
assert not bad, f'step {bad[0]}: {a[bad[0]]} vs {b[bad[0]]}'
PY
}
same_losses "$WORK/mpi.jsonl" "$WORK/srun.jsonl" || fail "srun losses differ from mpirun's"

rc=0; timeout 60 srun --mpi=none -n 2 "$ZT" train "${A[@]}" >"$WORK/nopmi.log" 2>&1 || rc=$?
[[ $rc -ne 0 && $(grep -c "srun --mpi=pmix" "$WORK/nopmi.log") -eq 1 ]] ||
  fail "srun --mpi=none: exit $rc, not one line naming --mpi=pmix: $(head -n 3 "$WORK/nopmi.log")"

job_field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }
# wait_gone JOB: until the job has left the queue. Slurm holds a requeued job ~2 minutes (time
# for its last step to end everywhere); after 10 s here it may start.
wait_gone() {
  local st held=0
  for _ in $(seq 600); do
    st=$(squeue -h -j "$1" -o '%T %r' 2>/dev/null)
    [[ -z $st ]] && return 0
    if [[ $st == "PENDING BeginTime" ]] && ((++held == 20)); then
      scontrol update jobid="$1" starttime=now 2>/dev/null || true
    fi
    sleep 0.5
  done
  scancel "$1"
  fail "job $1 still queued after 300 s"
}
wait_steps() {  # wait_steps FILE N: until FILE logs N losses
  for _ in $(seq 600); do
    [[ -f $1 ]] && (($(grep -c '"loss"' "$1") >= $2)) && return 0
    sleep 0.1
  done
  fail "$1 did not reach $2 steps"
}
submit() { sbatch --parsable -n 2 --chdir "$WORK" -o "$WORK/$1.log" "$ROOT/launch/slurm/train.sbatch" "${A[@]}" \
  --steps "${STEPS:-150}" --ckpt-dir "$WORK/ck-$1" --ckpt-every 5 --metrics "$WORK/$1.jsonl" "${@:2}"; }

# Preempted mid-run: checkpoint, requeue, resume, finish with the uninterrupted losses.
job=$(submit pre) || fail "sbatch failed"
wait_steps "$WORK/pre.jsonl" 8
scancel --signal=USR1 --full "$job" || fail "scancel --signal=USR1 failed"
wait_gone "$job"
grep -q "requeueing job $job" "$WORK/pre.log" || fail "the preempted job did not requeue: $(tail -n 3 "$WORK/pre.log")"
grep -q "resuming from" "$WORK/pre.log" || fail "the requeued job did not resume: $(tail -n 3 "$WORK/pre.log")"
[[ $(job_field "$job" Restarts) == 1 && $(job_field "$job" JobState) == COMPLETED ]] ||
  fail "preempted job: $(job_field "$job" JobState), restarts $(job_field "$job" Restarts)"
grep -q '"event": *"done"' "$WORK/pre.jsonl" || fail "the requeued run did not finish"
(($(grep -c '"event": *"start"' "$WORK/pre.jsonl") == 2)) || fail "the requeued run's metrics were not appended"
same_losses "$WORK/mpi.jsonl" "$WORK/pre.jsonl" || fail "the requeued run's losses differ from the uninterrupted run's"

# The GPU template's logic (SIGUSR2, one task per GPU) on CPU: the same requeue and exact resume.
job=$(ZT_DEVICE=cpu sbatch --parsable -n 2 --chdir "$WORK" --gpus-per-task=0 --cpus-per-task=1 -o "$WORK/gpu.log" \
  "$ROOT/launch/slurm/train-gpu.sbatch" "${A[@]}" --steps 150 --ckpt-dir "$WORK/ck-gpu" \
  --ckpt-every 5 --metrics "$WORK/gpu.jsonl") || fail "sbatch train-gpu.sbatch failed"
wait_steps "$WORK/gpu.jsonl" 8
scancel --signal=USR2 --full "$job" || fail "scancel --signal=USR2 failed"
wait_gone "$job"
[[ $(job_field "$job" Restarts) == 1 && $(job_field "$job" JobState) == COMPLETED ]] ||
  fail "GPU template: $(job_field "$job" JobState), restarts $(job_field "$job" Restarts): $(tail -n 2 "$WORK/gpu.log")"
same_losses "$WORK/mpi.jsonl" "$WORK/gpu.jsonl" || fail "the GPU template's requeued losses differ"

# Finished: not requeued.
job=$(STEPS=6 submit fin) || fail "sbatch failed"
wait_gone "$job"
[[ $(job_field "$job" Restarts) == 0 && $(job_field "$job" JobState) == COMPLETED ]] ||
  fail "finished job: $(job_field "$job" JobState), restarts $(job_field "$job" Restarts)"
grep -q "the run finished (step 6)" "$WORK/fin.log" || fail "finished job's log: $(tail -n 2 "$WORK/fin.log")"

# A rank crashes (SIGKILL at step 4): the job fails and is not requeued.
job=$(ZT_TEST_FAULT=kill@4:1 submit crash) || fail "sbatch failed"
wait_gone "$job"
[[ $(job_field "$job" Restarts) == 0 && $(job_field "$job" JobState) == FAILED ]] ||
  fail "crashed job: $(job_field "$job" JobState), restarts $(job_field "$job" Restarts)"
grep -q "not requeued" "$WORK/crash.log" || fail "crashed job's log: $(tail -n 2 "$WORK/crash.log")"

# Past ZT_MAX_REQUEUES: the signal still checkpoints, the job is not requeued.
job=$(ZT_MAX_REQUEUES=0 submit cap) || fail "sbatch failed"
wait_steps "$WORK/cap.jsonl" 8
scancel --signal=USR1 --full "$job"
wait_gone "$job"
[[ $(job_field "$job" Restarts) == 0 ]] || fail "ZT_MAX_REQUEUES=0 job requeued"
grep -q "not requeued: the job ran 1 times" "$WORK/cap.log" || fail "capped job's log: $(tail -n 2 "$WORK/cap.log")"
[[ -f $WORK/ck-cap/$(cat "$WORK/ck-cap/latest")/COMPLETE ]] || fail "capped job wrote no checkpoint"

# down stops by pid files: a process named munged that up did not start survives it.
mkdir -p "$WORK/decoy" && cp "$(command -v sleep)" "$WORK/decoy/munged"
"$WORK/decoy/munged" 300 &
decoy=$!
read -r -a daemons <<<"$(pids)"
"$CLUSTER" down >"$WORK/down.log" 2>&1 || fail "down: $(tail -n 2 "$WORK/down.log")"
for p in "${daemons[@]}"; do [[ ! -d /proc/$p ]] || fail "down left daemon $p running"; done
kill -0 "$decoy" 2>/dev/null || fail "down killed a process by its name"
kill "$decoy"
rc=0; "$CLUSTER" status >/dev/null || rc=$?
[[ $rc -eq 3 ]] || fail "status of a stopped cluster exited $rc, not 3"
"$CLUSTER" down >/dev/null 2>&1 || fail "a second down failed"
echo "slurm: srun = mpirun exactly; preempted jobs (both templates) requeued once and resumed exactly; finished, crashed and capped jobs not requeued; up/down idempotent"
