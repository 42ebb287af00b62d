# Helpers for the end-to-end tests (sourced). Each test gets the zerotrain binary as $1.
set -euo pipefail
ZT=${1:?usage: TEST.sh PATH/TO/zerotrain}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}

fail() { echo "FAIL: $*" >&2; exit 1; }

# The Chinese part of the default corpus (fortunes-zh), prepared into $WORK/data.
prepare_zh() {
  mkdir -p "$WORK/src"
  cp /usr/share/games/fortunes/{tang300,song100,chinese} "$WORK/src/" || fail "fortunes-zh missing"
  "$ZT" prepare --input "$WORK/src" --output "$WORK/data" >/dev/null
}

# Value of KEY (dotted) in the last JSON line of FILE that has it.
jlast() { python3 - "$1" "$2" <<'PY'
import json, sys
v = None
for line in open(sys.argv[1]):
    o = json.loads(line)
    for k in sys.argv[2].split('.'):
        o = o.get(k) if isinstance(o, dict) else None
    if o is not None: v = o
print(v)
PY
}

TINY="--layers 2 --model-dim 64 --heads 4 --ffn-dim 96 --experts 4 --top-k 2 --shared-experts 1 --dense-layers 1 --expert-ffn-dim 64 --seq-len 32"
