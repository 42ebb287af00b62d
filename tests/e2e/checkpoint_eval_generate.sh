#!/usr/bin/env bash
# Checkpoints, eval and generate as a user runs them: a resumed run continues exactly; eval on the
# checkpoint equals the run's own validation loss; generate continues a prompt; a damaged
# checkpoint is refused with a clear error and --resume auto falls back to the previous one.
source "$(dirname "$0")/lib.sh"
prepare_zh
ARGS=(train --data "$WORK/data" $TINY --micro-batch 4 --steps 20 --lr 3e-3 --warmup-steps 5
      --log-every 1 --eval-tokens 4096 --ckpt-every 10)
"$ZT" "${ARGS[@]}" --metrics "$WORK/full.jsonl" --ckpt-dir "$WORK/ckpt" >/dev/null
[[ -f $WORK/ckpt/step_00000010/COMPLETE && -f $WORK/ckpt/step_00000020/COMPLETE ]] ||
  fail "checkpoints at steps 10 and 20 missing"
[[ $(cat "$WORK/ckpt/latest") == step_00000020 ]] || fail "latest does not name step_00000020"

# Resume from step 10 (as after a preemption) and compare steps 11..20 with the uninterrupted run.
mkdir -p "$WORK/resume" && cp -r "$WORK/ckpt/step_00000010" "$WORK/resume/"
"$ZT" "${ARGS[@]}" --metrics "$WORK/resumed.jsonl" --ckpt-dir "$WORK/resume" >"$WORK/resume.log"
grep -q "resuming from .*step_00000010" "$WORK/resume.log" || fail "did not resume from step 10"
python3 - "$WORK/full.jsonl" "$WORK/resumed.jsonl" <<'PY' || fail "resumed losses differ"
import json, sys
load = lambda p: {o['step']: o['loss'] for o in map(json.loads, open(p)) if 'loss' in o}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert sorted(b) == list(range(11, 21)), sorted(b)
bad = [s for s in b if a[s] != b[s]]
sys.exit(1 if bad else 0)
PY

# eval on the checkpoint = the run's validation loss at step 20 (same windows, same weights).
"$ZT" eval --ckpt "$WORK/ckpt" --data "$WORK/data/val.bin" --eval-tokens 4096 >"$WORK/eval.json"
python3 - "$WORK/eval.json" "$(jlast "$WORK/full.jsonl" val_loss)" <<'PY' || fail "eval differs from val_loss"
import json, sys
e = json.load(open(sys.argv[1])); v = float(sys.argv[2])
assert e['tokens'] == 4096 and set(e) == {'ce', 'aux_loss', 'tokens'}, e
sys.exit(0 if abs(e['ce'] - v) <= 1e-6 * v else 1)
PY

out=$("$ZT" generate --ckpt "$WORK/ckpt" --prompt "春眠" --max-new-tokens 40 --seed 3)
[[ $out == 春眠* && ${#out} -gt 2 ]] || fail "generate did not continue the prompt: $out"
out2=$("$ZT" generate --ckpt "$WORK/ckpt" --prompt "春眠" --max-new-tokens 40 --seed 3)
[[ $out == "$out2" ]] || fail "generate with the same seed differs"

# Damage the newest checkpoint: eval names the file; --resume auto skips to step 10.
printf 'X' | dd of="$WORK/ckpt/step_00000020/rank_00000.h5" bs=1 seek=5000 conv=notrunc 2>/dev/null
rc=0; "$ZT" eval --ckpt "$WORK/ckpt/step_00000020" --data "$WORK/data/val.bin" 2>"$WORK/err" || rc=$?
[[ $rc -ne 0 ]] && grep -q "rank_00000.h5" "$WORK/err" || fail "damaged checkpoint not refused: $(cat "$WORK/err")"
"$ZT" "${ARGS[@]}" --metrics "$WORK/auto.jsonl" --ckpt-dir "$WORK/ckpt" >"$WORK/auto.log" 2>&1 || fail "resume after damage failed: $(tail -n 2 "$WORK/auto.log")"
grep -q "skipping checkpoint .*step_00000020" "$WORK/auto.log" || fail "damaged checkpoint not reported"
grep -q "resuming from .*step_00000010" "$WORK/auto.log" || fail "did not fall back to step 10"
echo "checkpoint_eval_generate: passed"
