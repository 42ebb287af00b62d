#!/usr/bin/env bash
# export as a user runs it: a trained checkpoint exported to model.h5 lists every SPEC parameter with
# its shape (h5ls) and evaluates to the same loss as the checkpoint; model.safetensors has a header
# that parses and offsets that cover the data exactly; bad requests fail with one line naming the
# path (exit 2) and leave nothing at --out.
source "$(dirname "$0")/lib.sh"
prepare_zh
"$ZT" train --data "$WORK/data" $TINY --micro-batch 4 --steps 4 --lr 3e-3 --warmup-steps 2 \
  --ckpt-every 4 --ckpt-dir "$WORK/ckpt" >/dev/null
STEP=$WORK/ckpt/$(cat "$WORK/ckpt/latest")
"$ZT" export --ckpt "$WORK/ckpt" --out "$WORK/model.h5" >/dev/null || fail "export to .h5 failed"
"$ZT" export --ckpt "$STEP" --out "$WORK/model.safetensors" >/dev/null ||
  fail "export to .safetensors failed"

# h5ls -r lists exactly the manifest's parameters, each with its shape; config attributes are there.
h5ls -r "$WORK/model.h5" >"$WORK/h5ls.txt"
python3 - "$STEP/manifest.json" "$WORK/h5ls.txt" <<'PY' || fail "h5ls does not list the parameters"
import json, re, sys
want = {'/params/' + p['name']: p['shape'] for p in json.load(open(sys.argv[1]))['params']}
got = {}
for line in open(sys.argv[2]):
    m = re.match(r'(\S+)\s+Dataset \{([^}]*)\}', line)
    if m: got[m.group(1)] = [int(x.split('/')[0]) for x in m.group(2).split(',')]
assert 'embed' in str(want) and 'blocks.1.moe.experts.3.w2' in str(want), want
assert got == want, (sorted(set(got) ^ set(want)), [k for k in want if got.get(k) != want[k]])
PY
h5dump -A "$WORK/model.h5" >"$WORK/attrs.txt"
for a in config vocab layers model_dim experts step tokens; do
  grep -q "ATTRIBUTE \"$a\"" "$WORK/attrs.txt" || fail "model.h5 lacks the root attribute $a"
done

# eval on the export = eval on the checkpoint (same weights, same windows).
E=(--data "$WORK/data/val.bin" --eval-tokens 2048)
a=$("$ZT" eval --ckpt "$WORK/ckpt" "${E[@]}") || fail "eval on the checkpoint failed"
b=$("$ZT" eval --ckpt "$WORK/model.h5" "${E[@]}") || fail "eval on model.h5 failed"
[[ $a == "$b" ]] || fail "eval differs: checkpoint $a, model.h5 $b"

# safetensors: 8-byte little-endian header length, JSON header, contiguous offsets over the data.
python3 - "$WORK/model.safetensors" "$STEP/manifest.json" <<'PY' || fail "bad safetensors file"
import json, math, os, struct, sys
path, man = sys.argv[1], json.load(open(sys.argv[2]))
with open(path, 'rb') as f:
    (n,) = struct.unpack('<Q', f.read(8))
    header = json.loads(f.read(n))
size = os.path.getsize(path)
meta = header.pop('__metadata__')
assert all(isinstance(v, str) for v in meta.values()), meta
assert json.loads(meta['config']) == man['config'] and meta['step'] == str(man['step']), meta
want = {p['name']: p['shape'] for p in man['params']}
assert set(header) == set(want), sorted(set(header) ^ set(want))
at = 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    b, e = t['data_offsets']
    assert t['dtype'] == 'F32' and t['shape'] == want[name], (name, t)
    assert b == at and e - b == 4 * math.prod(t['shape']), (name, t, at)
    at = e
assert n % 8 == 0 and 8 + n + at == size, (n, at, size)
PY

# expect_error NEEDLE OUT ARGS...: exit 2, one stderr line naming NEEDLE, nothing at OUT.
expect_error() {
  local needle=$1 out=$2 rc=0; shift 2
  "$ZT" export "$@" >/dev/null 2>"$WORK/err" || rc=$?
  [[ $rc -eq 2 ]] || fail "'export $*' exited $rc, expected 2 ($(cat "$WORK/err"))"
  [[ $(wc -l <"$WORK/err") -eq 1 ]] || fail "'export $*' printed: $(cat "$WORK/err")"
  grep -qF -- "$needle" "$WORK/err" || fail "'export $*' does not name $needle: $(cat "$WORK/err")"
  [[ ! -e $out ]] || fail "'export $*' left $out behind"
  [[ -z $(find "$WORK" -maxdepth 1 -name '.*.tmp.*') ]] || fail "temporary file left behind"
  echo "ok: $(cat "$WORK/err")"
}
expect_error "$WORK/m.bin" "$WORK/m.bin" --ckpt "$WORK/ckpt" --out "$WORK/m.bin"
expect_error "$WORK/none" "$WORK/m.h5" --ckpt "$WORK/none" --out "$WORK/m.h5"
expect_error "$WORK/no/dir/m.h5" "$WORK/no/dir/m.h5" --ckpt "$WORK/ckpt" --out "$WORK/no/dir/m.h5"
printf 'X' | dd of="$STEP/rank_00000.h5" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect_error "rank_00000.h5" "$WORK/m.h5" --ckpt "$WORK/ckpt" --out "$WORK/m.h5"
expect_error "rank_00000.h5" "$WORK/m.safetensors" --ckpt "$STEP" --out "$WORK/m.safetensors"
echo "export: passed"
