#!/usr/bin/env bash
# Prepares the embedded default corpus: the Chinese (fortunes-zh: Tang poems, Song ci, quotes) and
# English (fortunes) texts installed by ./launch/install-deps.sh, into OUT/train.bin and OUT/val.bin.
# usage: launch/prepare-corpus.sh ZEROTRAIN_BINARY OUT_DIR
set -euo pipefail
zt=${1:?usage: prepare-corpus.sh ZEROTRAIN_BINARY OUT_DIR}
out=${2:?usage: prepare-corpus.sh ZEROTRAIN_BINARY OUT_DIR}
src=/usr/share/games/fortunes
for f in tang300 song100 chinese fortunes; do
  [[ -f $src/$f ]] || { echo "prepare-corpus: $src/$f missing: run ./launch/install-deps.sh" >&2; exit 1; }
done
if [[ -f $out/train.bin && -f $out/val.bin ]]; then
  echo "prepare-corpus: $out already prepared"
  exit 0
fi
# The text files of the two packages (prepare skips fortune's binary .dat indexes and .u8 links).
mapfile -t files < <(dpkg -L fortunes-zh fortunes fortunes-min 2>/dev/null |
  grep "^$src/[^/]*$" | grep -v -e '\.dat$' -e '\.u8$' | sort -u)
"$zt" prepare --input "${files[@]}" --output "$out"
