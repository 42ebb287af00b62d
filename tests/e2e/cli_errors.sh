#!/usr/bin/env bash
# Bad input on the command line and in files: one clear line naming what is wrong, a non-zero exit,
# nothing written.
source "$(dirname "$0")/lib.sh"
prepare_zh

# expect_error NEEDLE ARGS...: exit status 2, exactly one line on stderr containing NEEDLE, and
# neither the metrics file nor the checkpoint directory created.
expect_error() {
  local needle=$1; shift
  local out="$WORK/out" err="$WORK/err" rc=0
  rm -rf "$WORK/m.jsonl" "$WORK/ckpt"
  "$ZT" "$@" >"$out" 2>"$err" || rc=$?
  [[ $rc -eq 2 ]] || fail "'$*' exited $rc, expected 2 ($(cat "$err"))"
  [[ $(wc -l <"$err") -eq 1 ]] || fail "'$*' printed $(wc -l <"$err") error lines: $(cat "$err")"
  grep -q -- "$needle" "$err" || fail "'$*' error does not name '$needle': $(cat "$err")"
  [[ ! -e $WORK/m.jsonl && ! -e $WORK/ckpt ]] || fail "'$*' wrote files despite the error"
  echo "ok: $(cat "$err")"
}
T0=(train --data "$WORK/data" --metrics "$WORK/m.jsonl" --ckpt-dir "$WORK/ckpt")
# srun's environment without a PMI (plain `srun -n 2` where MpiDefault is none): one line naming
# the fix, before MPI is touched (rank 0 prints it; the other ranks exit 2 silently).
SLURM_PROCID=0 SLURM_NTASKS=2 SLURM_LOCALID=0 expect_error "srun --mpi=pmix" "${T0[@]}" --steps 2
SLURM_PROCID=1 SLURM_NTASKS=2 SLURM_LOCALID=1 "$ZT" "${T0[@]}" --steps 2 >"$WORK/out" 2>"$WORK/err" && fail "rank 1 without PMI ran"
[[ ! -s $WORK/err ]] || fail "rank 1 without PMI printed: $(cat "$WORK/err")"
T=("${T0[@]}" --steps 2)
expect_error "--no-such-flag" "${T[@]}" --no-such-flag 3
expect_error "--heads" "${T[@]}" --model-dim 64 --heads 5
expect_error "--lr" "${T[@]}" --lr -1
expect_error "--top-k" "${T[@]}" --experts 4 --top-k 5
expect_error "--micro-batch" "${T[@]}" --micro-batch 0
expect_error "--router-norm" "${T[@]}" --router-norm maybe
expect_error "--preempt-signal: 'KILL'" "${T[@]}" --preempt-signal USR1,KILL
expect_error "--preempt-signal needs" "${T[@]}" --preempt-signal ,
expect_error "--precision" "${T[@]}" --precision fp8
expect_error "missing.bin" train --data "$WORK/missing.bin" --metrics "$WORK/m.jsonl" --ckpt-dir "$WORK/ckpt"
expect_error "'--data' is required" train --steps 1
expect_error "unknown subcommand" frobnicate

# A damaged token file: wrong magic, and a truncated one; both name the file.
python3 -c "import struct,sys; open(sys.argv[1],'wb').write(struct.pack('<256i',*([7,1,10]+[0]*253))+bytes(20))" "$WORK/bad.bin"
expect_error "bad.bin" train --data "$WORK/bad.bin" --metrics "$WORK/m.jsonl" --ckpt-dir "$WORK/ckpt"
head -c 2000 "$WORK/data/train.bin" >"$WORK/short.bin"
expect_error "short.bin" train --data "$WORK/short.bin" --metrics "$WORK/m.jsonl" --ckpt-dir "$WORK/ckpt"
# A token id beyond --vocab.
expect_error "vocab" train --data "$WORK/data" --vocab 100 --metrics "$WORK/m.jsonl" --ckpt-dir "$WORK/ckpt"
# eval of something that is not a checkpoint.
expect_error "checkpoint" eval --ckpt "$WORK/src" --data "$WORK/data/val.bin"
# --config FILE: its values are checked like flags, unknown keys are refused, the command line wins.
printf 'steps = 2\nlayers = 0\n' >"$WORK/bad.ini"
expect_error "--layers" "${T0[@]}" --config "$WORK/bad.ini"
printf 'bogus = 1\n' >"$WORK/unknown.ini"
expect_error "bogus" "${T[@]}" --config "$WORK/unknown.ini"
expect_error "nowhere.ini" "${T[@]}" --config "$WORK/nowhere.ini"
# Text holding the option parser's own placeholders (once an endless loop, found by fuzzing):
# refused at once, on the command line and in a --config file.
timeout 20 "$ZT" train --data "$WORK/data" --steps '%value%' 2>"$WORK/err" && fail "--steps %value% ran"
grep -q "holds '%value%'" "$WORK/err" || fail "--steps %value%: $(cat "$WORK/err")"
printf 'st%%canonical_option%%eps = 2\n' >"$WORK/loop.ini"
expect_error "holds '%canonical_option%'" "${T[@]}" --config "$WORK/loop.ini"
printf 'layers = 0\nmodel-dim = 32\nsteps = 1\n' >"$WORK/ok.ini"
"$ZT" train --data "$WORK/data" --config "$WORK/ok.ini" --layers 1 --heads 2 --ffn-dim 16 \
  --experts 2 --expert-ffn-dim 16 --seq-len 16 --micro-batch 2 --metrics "$WORK/m.jsonl" >/dev/null ||
  fail "command line did not override --config"
[[ $(python3 -c "import json;print([json.loads(l) for l in open('$WORK/m.jsonl')][-1]['steps'])") == 1 ]] ||
  fail "--config steps = 1 not applied"
echo "cli_errors: all passed"
