#!/usr/bin/env bash
# Token data as users bring it: files written the way llm.c's write_datafile does (gpt2 uint16 and
# llama-3 uint32, here by Python), a vocabulary past 65,536, a directory of shards and a glob of
# them, prepare --shard-tokens; 1 and 4 ranks on shards give the same losses (a step's samples do
# not depend on the layout, also across a shard boundary); a run resumes exactly across a shard
# boundary; a checkpoint resumed on other shards is one clear error unless --allow-data-change;
# a bad token id names the file and position; eval takes the same forms.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
python3 - "$WORK" <<'PY' || fail "could not write the token files"
import os, random, struct, sys
from array import array
d = sys.argv[1]; rnd = random.Random(1)
def write(path, toks, magic, version, code):  # llm.c dev/data/data_common.py write_datafile
    with open(path, 'wb') as f:
        f.write(struct.pack('<256i', magic, version, len(toks), *([0] * 253)))
        f.write(array(code, toks).tobytes())
os.makedirs(f'{d}/l3'); t = [rnd.randrange(100_000) for _ in range(20_000)]
write(f'{d}/l3/train.bin', t, 20240801, 7, 'I'); write(f'{d}/l3/val.bin', t[:4_000], 20240801, 7, 'I')
os.makedirs(f'{d}/sh'); t = [(i * 7 + i // 5) % 256 for i in range(40_000)]
for i in range(4): write(f'{d}/sh/corpus_train_{i:06d}.bin', t[i * 10_000:(i + 1) * 10_000], 20240520, 1, 'H')
write(f'{d}/sh/corpus_val_000000.bin', t[:5_000], 20240520, 1, 'H')
os.makedirs(f'{d}/other'); write(f'{d}/other/train.bin', t, 20240520, 1, 'H')
os.makedirs(f'{d}/bad'); b = list(t[:3_000]); b[2_500] = 300
write(f'{d}/bad/train.bin', b, 20240520, 1, 'H')
PY
M="--layers 2 --model-dim 32 --heads 2 --ffn-dim 48 --experts 4 --top-k 2 --expert-ffn-dim 32 --seq-len 32"
train() { local log=$1; shift; timeout 300 "$ZT" train $M --log-every 1 "$@" >"$log" 2>&1 || fail "train $*: $(tail -n 3 "$log")"; }

# llama-3 format with a 100,000-token vocabulary.
train "$WORK/l3.log" --data "$WORK/l3" --vocab 100000 --micro-batch 2 --steps 2 --metrics "$WORK/l3.jsonl"
grep -q '"val_loss"' "$WORK/l3.jsonl" || fail "no validation on the llama-3 val.bin"

# Shards: one process and 4 ranks (dp 4) see the same global batches; the glob form is the same.
S=(--micro-batch 4 --steps 12 --seed 4 --eval-tokens 1024)
train "$WORK/one.log" --data "$WORK/sh" "${S[@]}" --grad-accum 4 --metrics "$WORK/one.jsonl" --ckpt-dir "$WORK/ck" --ckpt-every 6
grep -q "40000 train tokens" "$WORK/one.log" || fail "the 4 shards are not one 40,000-token stream: $(head -n 1 "$WORK/one.log")"
timeout 300 mpirun --oversubscribe -np 4 "$ZT" train $M --log-every 1 --data "$WORK/sh" "${S[@]}" --metrics "$WORK/four.jsonl" \
  >"$WORK/four.log" 2>&1 || fail "4 ranks on shards: $(tail -n 3 "$WORK/four.log")"
train "$WORK/glob.log" --data "$WORK/sh/corpus_train_*.bin" --val-data "$WORK/sh/corpus_val_000000.bin" "${S[@]}" \
  --grad-accum 4 --metrics "$WORK/glob.jsonl"
# Resume from step 6 (past the first shard boundary: 12 x 16 samples x 32 tokens > 10,000).
mkdir -p "$WORK/r" && cp -r "$WORK/ck/step_00000006" "$WORK/r/"
train "$WORK/r.log" --data "$WORK/sh" "${S[@]}" --grad-accum 4 --ckpt-dir "$WORK/r" --metrics "$WORK/r.jsonl"
python3 - "$WORK" <<'PY' || fail "shard runs differ"
import json, sys, os
d = sys.argv[1]
L = lambda n: {o['step']: o['loss'] for o in map(json.loads, open(os.path.join(d, n))) if 'loss' in o}
one, four, glob, r = L('one.jsonl'), L('four.jsonl'), L('glob.jsonl'), L('r.jsonl')
worst = max(abs(one[s] - four[s]) / one[s] for s in one)
assert len(one) == 12 and worst <= 1e-5, worst
assert glob == one, 'the glob of the shards differs from the directory'
assert sorted(r) == list(range(7, 13)) and all(r[s] == one[s] for s in r), (r, one)
print(f'shards: 1 vs 4 ranks {worst:.1e}; glob equal; resumed across a shard boundary exactly')
PY
man="$WORK/ck/step_00000006/manifest.json"
python3 -c "import json,sys; d=json.load(open('$man'))['train']['data']; assert len(d['files'])==4 and d['tokens']==40000 and d['files'][0]['name']=='corpus_train_000000.bin', d" ||
  fail "the manifest does not name the shard set"

# Other data on resume: one clear error, or on with --allow-data-change.
mkdir -p "$WORK/o" && cp -r "$WORK/ck/step_00000006" "$WORK/o/"
out=$("$ZT" train $M --data "$WORK/other" "${S[@]}" --grad-accum 4 --ckpt-dir "$WORK/o" 2>&1) && fail "resumed on other data"
echo "$out" | grep -q "was trained on 4 files (corpus_train_000000.bin .. corpus_train_000003.bin), 40000 tokens; --data gives 1 file (train.bin), 40000 tokens (pass --allow-data-change" ||
  fail "resume on other data: $out"
train "$WORK/o.log" --data "$WORK/other" "${S[@]}" --grad-accum 4 --ckpt-dir "$WORK/o" --allow-data-change
grep -q "resuming from" "$WORK/o.log" || fail "--allow-data-change did not resume"

# A checkpoint of another model: one line naming the field.
out=$("$ZT" train ${M/--layers 2/--layers 3} --data "$WORK/sh" "${S[@]}" --grad-accum 4 --ckpt-dir "$WORK/o" 2>&1) && fail "resumed another model"
echo "$out" | grep -q "has layers = 2 but this run has 3: it belongs to a different model" || fail "another model's checkpoint: $out"

# A bad token id: one line naming the file and the position, when the sample holding it is read.
out=$("$ZT" train $M --data "$WORK/bad" --micro-batch 8 --steps 20 2>&1) && fail "trained on a bad token"
echo "$out" | grep -q "bad/train.bin: token id 300 at position 2500 is >= --vocab 256" || fail "bad token: $out"

# eval on the shard directory (its val shards) and prepare's shards.
"$ZT" eval --ckpt "$WORK/ck" --data "$WORK/sh" --eval-tokens 2048 | grep -q '"tokens":2048' || fail "eval on a shard directory"
mkdir -p "$WORK/txt" && cp /usr/share/games/fortunes/{tang300,song100} "$WORK/txt/"
"$ZT" prepare --input "$WORK/txt" --output "$WORK/prep" --shard-tokens 100000 >"$WORK/prep.log" || fail "prepare --shard-tokens"
ls "$WORK/prep"/train_000000.bin "$WORK/prep"/train_000001.bin "$WORK/prep"/val_000000.bin >/dev/null || fail "no shards: $(ls "$WORK/prep")"
train "$WORK/p.log" --data "$WORK/prep" --micro-batch 2 --steps 2
echo "data_formats: passed"
