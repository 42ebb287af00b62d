#!/usr/bin/env python3
"""compare_resumed.py FULL.jsonl FIRST LAST WHAT RUN.jsonl...: each resumed run logged exactly the
steps FIRST..LAST and its losses equal the uninterrupted run's (FULL) within 1e-5 relative."""
import json
import sys


def losses(path):
    return {o['step']: o['loss'] for o in map(json.loads, open(path)) if 'loss' in o}


full, first, last, what = losses(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for path in sys.argv[5:]:
    got = losses(path)
    if sorted(got) != list(range(first, last + 1)):
        sys.exit(f'{path}: logged steps {sorted(got)}, not {first}..{last}')
    worst = max(abs(full[s] - got[s]) / full[s] for s in got)
    if worst > 1e-5:
        sys.exit(f'{path}: relative loss difference {worst:.1e}')
    print(f'{path}: resumed across {what}, worst relative loss difference {worst:.1e}')
