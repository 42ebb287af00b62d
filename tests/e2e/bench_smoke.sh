#!/usr/bin/env bash
# The benchmarks run and print SPEC section 3's JSON lines (figures are not judged here; see
# docs/performance.md): bench gemm, adamw and io on small sizes.
source "$(dirname "$0")/lib.sh"
"$ZT" bench gemm --sizes 64x48x32 --repeat 1 >"$WORK/gemm.jsonl"
"$ZT" bench adamw --params 100000 --steps 2 --impls scalar,reference >"$WORK/adamw.jsonl" 2>/dev/null
"$ZT" bench io --dir "$WORK" --layers 1 --model-dim 64 --repeat 1 >"$WORK/io.jsonl" 2>/dev/null
python3 - "$WORK" <<'PY' || fail "bench output does not follow SPEC section 3"
import json, os, sys
d = sys.argv[1]
rows = lambda f: [json.loads(l) for l in open(os.path.join(d, f)) if l.startswith('{')]
g = rows('gemm.jsonl')
assert len(g) == 1 and g[0]['bench'] == 'gemm' and g[0]['gflops'] > 0, g
a = rows('adamw.jsonl')
assert {o['impl'] for o in a} == {'scalar', 'reference'}, a
assert all(o['gparams_per_s'] > 0 and o['gbs'] > 0 and o['triad_gbs'] > 0 for o in a), a
io = rows('io.jsonl')
assert {o['what'] for o in io} == {'ckpt_write', 'raw_write', 'ckpt_read', 'raw_read', 'store_write', 'store_read'}, io
assert all(o['bench'] == 'io' and o['bytes'] > 0 and o['gbs'] > 0 for o in io), io
PY
[[ -z $(ls "$WORK" | grep -v jsonl) ]] || fail "bench io left files behind: $(ls "$WORK")"
echo "bench_smoke: passed"
