#!/usr/bin/env bash
# The GPU training path's passes (--device cuda: model/device/, parallel/step/device_step.cpp) run
# through the whole program on the CPU (ZT_TEST_DEVICE_PASSES=1 puts the device passes on the
# host): ZeRO stages 0 and 3 on 2 ranks with grad-accum 2 give the host passes' losses and
# validation loss exactly, a checkpoint resumes on the host passes with the uninterrupted run's
# losses (1e-6 relative), and
# --device cuda is one line naming why it cannot run here (no CUDA in the build, or no GPU), with
# nothing written.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
prepare_zh
C=(--data "$WORK/data" $TINY --micro-batch 2 --grad-accum 2 --steps 6 --log-every 1 --seed 3
  --eval-tokens 2048 --capacity-factor 1.0)
for z in 0 3; do
  timeout 300 mpirun -np 2 "$ZT" train "${C[@]}" --zero-stage $z --metrics "$WORK/host$z.jsonl" \
    >"$WORK/host.log" 2>&1 || fail "host passes failed: $(tail -n 3 "$WORK/host.log")"
  ckpt=()
  [[ $z == 3 ]] && ckpt=(--ckpt-dir "$WORK/ckpt" --ckpt-every 3)
  ZT_TEST_DEVICE_PASSES=1 timeout 300 mpirun -np 2 -x ZT_TEST_DEVICE_PASSES "$ZT" train "${C[@]}" \
    --zero-stage $z --metrics "$WORK/dev$z.jsonl" "${ckpt[@]}" >"$WORK/dev.log" 2>&1 ||
    fail "device passes failed: $(tail -n 3 "$WORK/dev.log")"
done
C+=(--zero-stage 3)
# Steps 4..6 again on the host passes from the device passes' step-3 checkpoint.
mkdir -p "$WORK/re" && cp -r "$WORK/ckpt/step_00000003" "$WORK/re/"
timeout 300 mpirun -np 2 "$ZT" train "${C[@]}" --ckpt-dir "$WORK/re" --resume auto \
  --metrics "$WORK/re.jsonl" >"$WORK/re.log" 2>&1 || fail "resume failed: $(tail -n 3 "$WORK/re.log")"
python3 - "$WORK" <<'PY' || fail "the device passes differ from the host passes"
import json, sys, os
d = sys.argv[1]
rows = lambda f: [json.loads(l) for l in open(os.path.join(d, f))]
loss = lambda r: {o['step']: o['loss'] for o in r if 'loss' in o}
val = lambda r: [o['val_loss'] for o in r if 'val_loss' in o][-1]
for z in (0, 3):
    host, dev = rows(f'host{z}.jsonl'), rows(f'dev{z}.jsonl')
    assert host[0]['device'] == 'cpu' and dev[0]['device'] == 'cpu (device passes)', (host[0], dev[0])
    h, v = loss(host), loss(dev)
    assert sorted(h) == sorted(v) == list(range(1, 7)), sorted(v)
    assert h == v and val(host) == val(dev), f'stage {z}: {h} vs {v}, val {val(host)} vs {val(dev)}'
    print(f'stage {z}: device passes equal to the host passes (6 losses, val {val(dev):.6f})')
r = loss(rows('re.jsonl'))
h = loss(rows('host3.jsonl'))
assert sorted(r) == [4, 5, 6], sorted(r)
worst_re = max(abs(h[s] - r[s]) / h[s] for s in r)
assert worst_re <= 1e-6, f'resumed {worst_re}'
print(f'resumed on the host passes from the device passes checkpoint: {worst_re:.1e}')
PY

# --device cuda where it cannot run: one line, exit 2, nothing written.
rm -rf "$WORK/m.jsonl" "$WORK/ckpt2"
rc=0
"$ZT" train --data "$WORK/data" $TINY --steps 1 --device cuda --metrics "$WORK/m.jsonl" \
  --ckpt-dir "$WORK/ckpt2" >"$WORK/out" 2>"$WORK/err" || rc=$?
if "$ZT" version | grep -q "built without CUDA"; then
  needle="rebuild with cmake -DZT_CUDA=ON"
else
  needle="no CUDA device is visible"
  nvidia-smi -L >/dev/null 2>&1 && { echo "a GPU is visible: --device cuda runs (tests/gpu)"; exit 0; }
fi
[[ $rc -eq 2 && $(wc -l <"$WORK/err") -eq 1 ]] || fail "--device cuda: exit $rc, $(cat "$WORK/err")"
grep -q -- "$needle" "$WORK/err" || fail "--device cuda: '$(cat "$WORK/err")' does not say '$needle'"
[[ ! -e $WORK/m.jsonl && ! -e $WORK/ckpt2 ]] || fail "--device cuda wrote files despite the error"
echo "ok: $(cat "$WORK/err")"
