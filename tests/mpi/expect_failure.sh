#!/usr/bin/env bash
# expect_failure.sh LIMIT_S COMMAND...: passes when COMMAND (an mpirun fault scenario) exits
# non-zero within LIMIT_S seconds, no rank crashes on the way out, and its output names the
# failing rank (rank 1).
set -u
limit=$1
shift
log=$(mktemp)
start=$(date +%s)
timeout -k 5 "$limit" "$@" >"$log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))
cat "$log"
echo "--- exit status $rc after ${elapsed}s"
if [[ $rc -eq 0 ]]; then echo "FAIL: the job exited 0"; exit 1; fi
# timeout(1) exits 124 (or 137 after -k) when it had to stop the job; mpirun itself may exit 137
# when a rank died of SIGKILL, so the clock decides.
if [[ $rc -eq 124 || $elapsed -ge $limit ]]; then echo "FAIL: the job hung (stopped after ${limit}s)"; exit 1; fi
if grep -Eq 'Segmentation fault|signal 11|AddressSanitizer' "$log"; then
  echo "FAIL: a rank crashed instead of failing cleanly"
  exit 1
fi
if ! grep -Eq 'rank 1|ranks? 1[^0-9]|\[\[[0-9]+,[0-9]+\],1\]' "$log"; then
  echo "FAIL: the output does not name the failing rank 1"
  exit 1
fi
echo "OK: non-zero exit ($rc) in ${elapsed}s, rank 1 named"
