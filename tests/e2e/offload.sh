#!/usr/bin/env bash
# Offload as a user runs it. Over 20 steps at dp 1 and 2, --offload-optimizer cpu / nvme and
# --offload-params nvme (stage 3) give the in-memory run's losses exactly (relative tolerance
# 1e-6, the acceptance bar; the arithmetic is the same, so the difference is 0), and so does a
# 4-stage pipeline offloaded to NVMe, with a buffer
# smaller than the offloaded state; the metrics say where each category lives and what moved.
# An offloaded run checkpoints and resumes exactly, and its checkpoint resumes in memory on
# another layout. A shard file damaged or removed mid-run stops the job with an error naming it.
# Bad input (no --nvme-dir, an unusable or full one, a buffer too small, parameter offload below
# stage 3) is one clear error line and leaves nothing behind.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
prepare_zh
C=(--data "$WORK/data" $TINY --micro-batch 2 --log-every 1 --seed 5 --eval-tokens 1024)
NV=(--nvme-dir "$WORK/nv" --nvme-buffer-mb 1)

same() {  # same A B: the two runs' losses agree within 1e-6 relative, step by step
  python3 - "$WORK/$1.jsonl" "$WORK/$2.jsonl" <<'PY' || fail "$2 differs from $1"
import json, sys
L = lambda p: [o['loss'] for o in map(json.loads, open(p)) if 'loss' in o]
a, b = L(sys.argv[1]), L(sys.argv[2])
assert len(a) == len(b) > 0, (len(a), len(b))
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
assert worst <= 1e-6, worst
print(f'{sys.argv[2].split("/")[-1]}: {len(b)} losses, worst relative difference {worst:.1e}')
PY
}
train() {  # train NAME NP ARGS...: a run's metrics in $WORK/NAME.jsonl
  local name=$1 np=$2; shift 2
  timeout 300 mpirun -np "$np" "$ZT" train "${C[@]}" --steps "${STEPS:-20}" --metrics "$WORK/$name.jsonl" "$@" \
    >"$WORK/$name.log" 2>&1 || fail "$name failed: $(tail -n 2 "$WORK/$name.log")"
}
for np in 1 2; do
  train mem$np $np --zero-stage 3
  train cpu$np $np --zero-stage 3 --offload-optimizer cpu --offload-params cpu
  train nvo$np $np --zero-stage 3 --offload-optimizer nvme "${NV[@]}"
  train nvp$np $np --zero-stage 3 --offload-optimizer nvme --offload-params nvme "${NV[@]}"
  for r in cpu nvo nvp; do same mem$np $r$np; done
done
train mem2s1 2 --zero-stage 1 --precision bf16
train nvo2s1 2 --zero-stage 1 --precision bf16 --offload-optimizer nvme "${NV[@]}"
same mem2s1 nvo2s1
# A 4-stage pipeline: the middle stages hold no embedding (their first unit is a block's).
STEPS=4 train pp4mem 4 --layers 4 --pp 4 --grad-accum 4 --zero-stage 3
STEPS=4 train pp4nvp 4 --layers 4 --pp 4 --grad-accum 4 --zero-stage 3 --offload-optimizer nvme \
  --offload-params nvme "${NV[@]}"
same pp4mem pp4nvp

python3 - "$WORK" <<'PY' || fail "offload metrics wrong"
import json, sys, os
rows = lambda n: [json.loads(l) for l in open(os.path.join(sys.argv[1], n + '.jsonl'))]
m = [o for o in rows('nvp2') if 'loss' in o][-1]
loc, mem, off = m['mem']['location'], m['mem'], m['offload']
assert loc['optim'] == 'nvme' and loc['params'] == 'nvme' and loc['grads'] == 'device', loc
assert mem['optim'] + mem['params'] <= 2**20, mem  # resident: the staging, within the buffer
assert mem['nvme'] > 0.5 * 2**20, mem  # most of the state is on disk
assert off['write_bytes'] > 0 and off['read_bytes'] > 0, off
c = [o for o in rows('cpu1') if 'loss' in o][-1]['mem']['location']
assert c['optim'] == 'host' and c['params'] == 'host', c
assert [o for o in rows('mem1') if 'loss' in o][-1]['mem']['location']['optim'] == 'device'
print('metrics: location', loc, 'nvme bytes', mem['nvme'], 'moved', off['read_bytes'], off['write_bytes'])
PY
ls "$WORK"/nv/offload_rank_0000{0,1}.h5 >/dev/null || fail "no shard files under --nvme-dir"
h5ls -r "$WORK/nv/offload_rank_00000.h5" | grep -q "unit_1/exp_avg " || fail "shard file lacks unit_1/exp_avg"

# Checkpoint and resume with offload: 10 steps, stop, 10 more from the checkpoint (offloaded
# again) equal the straight run; the same checkpoint resumes in memory at dp 1 stage 0.
STEPS=10 train half 2 --zero-stage 3 --offload-optimizer nvme --offload-params nvme "${NV[@]}" \
  --ckpt-dir "$WORK/ck"
train rest 2 --zero-stage 3 --offload-optimizer nvme --offload-params nvme "${NV[@]}" \
  --ckpt-dir "$WORK/ck"
grep -q "resuming from .*step_00000010" "$WORK/rest.log" || fail "did not resume from step 10"
cat "$WORK/half.jsonl" "$WORK/rest.jsonl" >"$WORK/both.jsonl"
same mem2 both
mkdir -p "$WORK/ck1" && cp -r "$WORK/ck/step_00000010" "$WORK/ck1/"
train one 1 --zero-stage 0 --grad-accum 2 --ckpt-dir "$WORK/ck1"
python3 - "$WORK/mem2.jsonl" "$WORK/one.jsonl" <<'PY' || fail "in-memory resume of an offloaded checkpoint differs"
import json, sys
L = lambda p: {o['step']: o['loss'] for o in map(json.loads, open(p)) if 'loss' in o}
a, b = L(sys.argv[1]), L(sys.argv[2])
assert sorted(b) == list(range(11, 21)), sorted(b)
worst = max(abs(a[s] - b[s]) / a[s] for s in b)
assert worst <= 1e-5, worst
print(f'offloaded dp=2 stage 3 checkpoint resumed in memory at dp=1 stage 0: {worst:.1e}')
PY

# The shard file damaged or removed under a running 2-rank job: the job stops with an error
# naming the file (no hang, no silent use of bad state), and the failing rank removes its file.
damage() {  # damage NAME ACTION: ACTION runs (repeatedly) on rank 0's shard file while training
  local name=$1 action=$2 f="$WORK/nv-$1/offload_rank_00000.h5"
  timeout 120 mpirun -np 2 "$ZT" train "${C[@]}" --steps 100000 --zero-stage 3 \
    --offload-optimizer nvme --offload-params nvme --nvme-dir "$WORK/nv-$name" \
    --metrics "$WORK/$name.jsonl" >"$WORK/$name.log" 2>&1 &
  local job=$!
  for _ in $(seq 600); do
    [[ -f $WORK/$name.jsonl && $(wc -l <"$WORK/$name.jsonl") -ge 5 ]] && break
    sleep 0.1
  done
  for _ in $(seq 200); do  # until the job notices (a write may repair a byte before a read)
    kill -0 "$job" 2>/dev/null || break
    $action "$f"
    sleep 0.05
  done
  local rc=0; wait "$job" || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "$name: the job exited $rc"
  grep -q "offload_rank_00000.h5" "$WORK/$name.log" || fail "$name: no error naming the file: $(tail -n 3 "$WORK/$name.log")"
  echo "$name: $(grep -m1 "error" "$WORK/$name.log")"
}
scribble() {  # 16 bytes of 0x5a into unit_1/exp_avg's data (its offset from h5dump)
  local off
  off=$(h5dump -p -H -d unit_1/exp_avg "$1" 2>/dev/null | awk '/OFFSET/ {print $2}') || return 0
  [[ -n $off ]] || return 0
  printf 'ZZZZZZZZZZZZZZZZ' | dd of="$1" bs=1 seek=$((off + 1000)) conv=notrunc status=none
}
damage flipped scribble
grep -q "damaged" "$WORK/flipped.log" || fail "flipped: not reported as damaged"
[[ ! -e $WORK/nv-flipped/offload_rank_00000.h5 ]] || fail "flipped: the damaged shard file stayed"
remove() { rm -f "$1"; }
damage removed remove
grep -q "removed or replaced" "$WORK/removed.log" || fail "removed: not reported as removed"

# Bad input: exit 2, one line naming the problem, no metrics file, no shard file left.
expect_error() {
  local needle=$1; shift
  local rc=0
  rm -rf "$WORK/bad.jsonl"
  "$ZT" train "${C[@]}" --steps 2 --metrics "$WORK/bad.jsonl" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  [[ $rc -eq 2 ]] || fail "'$*' exited $rc, expected 2 ($(cat "$WORK/err"))"
  [[ $(wc -l <"$WORK/err") -eq 1 ]] || fail "'$*' printed $(wc -l <"$WORK/err") lines: $(cat "$WORK/err")"
  grep -q -- "$needle" "$WORK/err" || fail "'$*' error does not name '$needle': $(cat "$WORK/err")"
  [[ ! -e $WORK/bad.jsonl ]] || fail "'$*' wrote metrics despite the error"
  echo "ok: $(cat "$WORK/err")"
}
expect_error "--nvme-dir" --offload-optimizer nvme
expect_error "--zero-stage 3" --zero-stage 2 --offload-params nvme --nvme-dir "$WORK/x"
expect_error "--offload-optimizer" --offload-optimizer disk
touch "$WORK/plain"
expect_error "plain/sub" --offload-optimizer nvme --nvme-dir "$WORK/plain/sub"
expect_error "--nvme-buffer-mb" --zero-stage 3 --offload-params nvme --nvme-dir "$WORK/small" \
  --nvme-buffer-mb 0.05
[[ -z $(ls -A "$WORK/small" 2>/dev/null) ]] || fail "a refused start left files in $WORK/small"
# A full disk, as a file-size limit: refused at start, and no half-made shard file stays.
(ulimit -f 64; expect_error "no room" --zero-stage 3 --offload-optimizer nvme --nvme-dir "$WORK/full")
[[ ! -e $WORK/full/offload_rank_00000.h5 ]] || fail "a failed start left its shard file"
echo "offload: ok"
