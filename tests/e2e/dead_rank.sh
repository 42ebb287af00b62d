#!/usr/bin/env bash
# A rank that dies or hangs never hangs the allocation, at every layout: under tp 2 (the other rank
# waits in an all-reduce), pp 2 (in a point-to-point receive) and ep 2 (in the experts'
# all-to-all), rank 1 kills itself with SIGKILL, or stops, at the start of step 3 (the test hook
# ZT_TEST_FAULT, runtime/fault.h). The job must exit non-zero within 60 s and its output name rank
# 1; a hang must be reported by the communication timeout (--comm-timeout 5) with the operation.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
prepare_zh
C=(--data "$WORK/data" $TINY --micro-batch 2 --steps 50 --log-every 1 --comm-timeout 5)
case_() { # case_ NAME FAULT WANT FLAGS...
  local name=$1 fault=$2 want=$3; shift 3
  local start rc=0
  start=$(date +%s)
  ZT_TEST_FAULT=$fault timeout -k 5 60 mpirun --oversubscribe -np 2 "$ZT" train "${C[@]}" "$@" \
    >"$WORK/$name.log" 2>&1 || rc=$?
  local took=$(($(date +%s) - start))
  [ "$rc" -ne 0 ] || fail "$name: the job exited 0"
  [ "$rc" -ne 124 ] && [ "$took" -lt 60 ] || fail "$name: the job hung (stopped after 60 s)"
  grep -Eq 'rank 1|ranks? 1[^0-9]|\[\[[0-9]+,[0-9]+\],1\]' "$WORK/$name.log" ||
    fail "$name: the output does not name rank 1: $(tail -n 5 "$WORK/$name.log")"
  grep -q -- "$want" "$WORK/$name.log" || fail "$name: expected '$want' in: $(tail -n 5 "$WORK/$name.log")"
  ! grep -Eq 'Segmentation fault|signal 11' "$WORK/$name.log" || fail "$name: a rank crashed"
  echo "$name: exit $rc after ${took}s, rank 1 named"
}
for layout in "tp:--tp 2" "pp:--pp 2 --grad-accum 2" "ep:--ep 2"; do
  name=${layout%%:*}
  # shellcheck disable=SC2086
  case_ "$name-kill" "kill@3:1" "" ${layout#*:}
  # shellcheck disable=SC2086
  case_ "$name-hang" "hang@3:1" "did not complete within the communication timeout (5 s" ${layout#*:}
done
echo "dead_rank: passed"
