#!/usr/bin/env bash
# Tensor parallelism as a user runs it: mpirun with --tp (and --sequence-parallel, and tp x dp at
# ZeRO stage 3) reproduces the single process with the same global batch (losses within 1e-5
# relative), and with NVMe offload the in-memory run exactly; the metrics name the layout and count the tp collectives, the trace shows them on
# the communication track; a tp checkpoint resumes without tp and a checkpoint written without tp
# resumes under it, both equal to the uninterrupted run; its export equals the export of the
# same steps trained without tp; bad tp flags are one line each.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
prepare_zh
C=(--data "$WORK/data" $TINY --micro-batch 2 --steps 8 --log-every 1 --seed 9 --eval-tokens 2048)
run() { local n=$1 log=$2; shift 2; timeout 300 mpirun --oversubscribe -np "$n" "$ZT" train "${C[@]}" "$@" >"$log" 2>&1 ||
  fail "mpirun -np $n train $*: $(tail -n 3 "$log")"; }
"$ZT" train "${C[@]}" --grad-accum 2 --metrics "$WORK/ref.jsonl" >/dev/null
run 2 "$WORK/tp2.log" --tp 2 --grad-accum 2 --metrics "$WORK/tp2.jsonl" --trace "$WORK/trace.json"
run 2 "$WORK/sp.log" --tp 2 --sequence-parallel on --grad-accum 2 --metrics "$WORK/sp.jsonl"
run 4 "$WORK/z3.log" --tp 2 --zero-stage 3 --metrics "$WORK/z3.jsonl" --ckpt-dir "$WORK/ckpt" --ckpt-every 4
grep -q "dp 2 x tp 2" "$WORK/z3.log" || fail "the start line does not give the layout: $(head -n 1 "$WORK/z3.log")"
run 4 "$WORK/off.log" --tp 2 --zero-stage 3 --offload-optimizer nvme --offload-params nvme \
  --nvme-dir "$WORK/nvme" --nvme-buffer-mb 4 --metrics "$WORK/off.jsonl"

python3 - "$WORK" <<'PY' || fail "tensor-parallel losses, metrics or trace wrong"
import json, sys, os
d = sys.argv[1]
rows = lambda f: [json.loads(l) for l in open(os.path.join(d, f))]
loss = lambda r: [o['loss'] for o in r if 'loss' in o]
ref = loss(rows('ref.jsonl'))
for f in ['tp2.jsonl', 'sp.jsonl', 'z3.jsonl']:
    got = loss(rows(f))
    worst = max(abs(a - b) / b for a, b in zip(got, ref))
    assert len(got) == len(ref) == 8 and worst <= 1e-5, f'{f}: {worst}'
    print(f'{f} vs single process: {worst:.1e}')
assert loss(rows('off.jsonl')) == loss(rows('z3.jsonl')), 'tp with NVMe offload differs from in memory'
last = [o for o in rows('z3.jsonl') if 'loss' in o][-1]
assert last['layout'] == {'world': 4, 'dp': 2, 'tp': 2, 'pp': 1, 'ep': 1, 'zero_stage': 3}, last['layout']
tp = [o for o in rows('tp2.jsonl') if 'loss' in o][-1]
assert tp['comm']['allreduce_bytes'] > 0, tp['comm']          # the tp sums
sp = [o for o in rows('sp.jsonl') if 'loss' in o][-1]
assert sp['comm']['allgather_bytes'] > 0 and sp['comm']['reduce_scatter_bytes'] > 0, sp['comm']
ev = json.load(open(os.path.join(d, 'trace.json')))['traceEvents']
names = {e['name'] for e in ev if e['ph'] == 'X' and e['tid'] == 1}
assert any(n.startswith('tp all_reduce attn_out') for n in names), sorted(names)[:20]
assert 'tp gather loss stats' in names, sorted(names)[:20]
PY

# The tp2 x dp2 checkpoint of step 4 resumes on 2 ranks without tp (dp 2, stage 1)...
mkdir -p "$WORK/a" && cp -r "$WORK/ckpt/step_00000004" "$WORK/a/"
run 2 "$WORK/a.log" --zero-stage 1 --ckpt-dir "$WORK/a" --metrics "$WORK/a.jsonl"
grep -q "resuming from .*step_00000004" "$WORK/a.log" || fail "did not resume from step 4"
# ... and a checkpoint written without tp (dp 2) resumes under tp 2 x dp 2.
run 2 "$WORK/dp.log" --ckpt-dir "$WORK/dpck" --ckpt-every 4 --metrics "$WORK/dp.jsonl"
mkdir -p "$WORK/b" && cp -r "$WORK/dpck/step_00000004" "$WORK/b/"
run 4 "$WORK/b.log" --tp 2 --zero-stage 2 --ckpt-dir "$WORK/b" --metrics "$WORK/b.jsonl"
python3 "$(dirname "$0")/compare_resumed.py" "$WORK/z3.jsonl" 5 8 tp "$WORK/a.jsonl" "$WORK/b.jsonl" ||
  fail "resumed losses differ"

# The export of the tp checkpoint equals the export of the same steps without tp.
"$ZT" export --ckpt "$WORK/ckpt/step_00000008" --out "$WORK/tp.h5" >/dev/null || fail "export of the tp checkpoint failed"
"$ZT" export --ckpt "$WORK/dpck/step_00000008" --out "$WORK/dp.h5" >/dev/null || fail "export of the dp checkpoint failed"
python3 "$(dirname "$0")/compare_exports.py" "$WORK/tp.h5" "$WORK/dp.h5" \
  /params/blocks.1.moe.experts.2.w2 /params/embed || fail "exports differ"

# Bad tensor-parallel flags: one line naming the flag, from rank 0, every rank exits non-zero.
bad() { local needle=$1 n=$2; shift 2; local rc=0
  timeout 60 mpirun --oversubscribe -np "$n" "$ZT" train "$@" >"$WORK/bad.out" 2>"$WORK/bad.err" || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "'$*' exited $rc"
  [[ $(grep -c "error:" "$WORK/bad.err") -eq 1 ]] || fail "'$*': $(cat "$WORK/bad.err")"
  grep -q -- "$needle" "$WORK/bad.err" || fail "'$*' does not name $needle: $(cat "$WORK/bad.err")"; }
D=(--data "$WORK/data" --steps 1)  # the default model: 4 heads, FFN 688, experts 256, vocab 256
bad "--heads" 2 "${D[@]}" --tp 2 --heads 1
bad "--ffn-dim" 2 "${D[@]}" --tp 2 --ffn-dim 95
bad "--expert-ffn-dim" 2 "${D[@]}" --tp 2 --expert-ffn-dim 63
bad "--vocab" 4 "${D[@]}" --tp 4 --vocab 258
bad "ranks" 3 "${D[@]}" --tp 2
bad "--sequence-parallel" 1 "${D[@]}" --sequence-parallel on
bad "--micro-batch x --seq-len" 2 "${D[@]}" --tp 2 --sequence-parallel on --micro-batch 1 --seq-len 31
echo "tensor_parallel: passed"
