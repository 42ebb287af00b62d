#!/usr/bin/env bash
# The command line as a user meets it: `--help` of every subcommand (and of each bench) lists its
# flags with readable defaults (at most 6 significant digits); docs/user-guide.md names every one
# of them, and every flag its section of a subcommand names is one that subcommand accepts;
# `zerotrain --version` gives the build facts, which also head every metrics file and checkpoint
# manifest; the progress line has elapsed time, ETA and memory, and the run ends with a summary.
source "$(dirname "$0")/lib.sh"
GUIDE="$(dirname "$0")/../../docs/user-guide.md"
[ -f "$GUIDE" ] || fail "no docs/user-guide.md beside the tests"
for sub in train eval generate prepare export plan version "bench gemm" "bench comm" "bench adamw" "bench io"; do
  # shellcheck disable=SC2086
  "$ZT" $sub --help >"$WORK/help.txt" 2>&1 || fail "zerotrain $sub --help failed: $(tail -n 2 "$WORK/help.txt")"
  python3 - "$sub" "$WORK/help.txt" "$GUIDE" <<'PY' || fail "zerotrain $sub --help and docs/user-guide.md disagree"
import re, sys
sub, help_text, guide = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
flags = set(re.findall(r'^\s+(?:-\w \[ )?--([a-z0-9][a-z0-9-]*)', help_text, re.M)) - {'help', 'config'}
assert flags, f'{sub}: no flags in --help'
for flag, default in re.findall(r'--([a-z0-9-]+) arg \(=([^)]*)\)', help_text):
    digits = re.sub(r'[eE][-+]?\d+$', '', default).lstrip('-').replace('.', '').strip('0')
    if re.fullmatch(r'[-+.\deE]+', default) and len(digits) > 6:
        sys.exit(f'{sub}: --{flag} shows its default as {default}')
missing = sorted(f for f in flags if f'--{f}' not in guide)
assert not missing, f'{sub}: flags missing from docs/user-guide.md: {missing}'
# The guide's section of the subcommand names only flags it accepts.
name = sub.split()[0]
m = re.search(rf'^## {name}\b.*?(?=^## )', guide, re.M | re.S)
if m and name not in ('bench',):
    named = set(re.findall(r'`[^`]*?--([a-z][a-z0-9-]*)', m.group(0)))
    foreign = sorted(f for f in named if f not in flags | {'help', 'config'})
    assert not foreign, f'{sub}: docs/user-guide.md names flags `{name}` does not accept: {foreign}'
print(f'{sub}: {len(flags)} flags, all in the user guide')
PY
done

"$ZT" --version >"$WORK/v.txt" || fail "zerotrain --version failed"
for k in "zerotrain [0-9]" "commit: " "mpi: " "hdf5: " "openblas: " "isa_machine: "; do
  grep -q "$k" "$WORK/v.txt" || fail "--version lacks '$k': $(cat "$WORK/v.txt")"
done
"$ZT" version --json | python3 -c "import json,sys; j=json.load(sys.stdin); assert j['commit'] and j['mpi'], j" ||
  fail "version --json"

prepare_zh
"$ZT" train --data "$WORK/data" $TINY --micro-batch 2 --steps 4 --log-every 1 --metrics "$WORK/m.jsonl" \
  --ckpt-dir "$WORK/ck" >"$WORK/train.log" 2>&1 || fail "train: $(tail -n 3 "$WORK/train.log")"
python3 - "$WORK" <<'PY' || fail "build facts missing from the metrics head or the manifest"
import json, sys, os
d = sys.argv[1]
head = json.loads(open(os.path.join(d, 'm.jsonl')).readline())
assert head['event'] == 'start' and head['build']['commit'] and head['layout']['world'] == 1, head
man = json.load(open(os.path.join(d, 'ck', 'step_00000004', 'manifest.json')))
assert man['build']['version'] == head['build']['version'], man.get('build')
PY
grep -q "step 2/4 .* mem [0-9.]* [KMG]iB | [0-9]*s elapsed, ETA [0-9]*s" "$WORK/train.log" ||
  fail "the progress line lacks memory, elapsed time or ETA: $(grep 'step 2/4' "$WORK/train.log")"
grep -q "zerotrain train: done: 4 steps, 256 tokens in [0-9]*s ([0-9]* tok/s), best val loss [0-9.]* at step 4, checkpoint .*step_00000004" \
  "$WORK/train.log" || fail "no closing summary: $(tail -n 2 "$WORK/train.log")"
echo "help_and_docs: passed"
