#!/usr/bin/env python3
"""compare_exports.py A.h5 B.h5 DATASET...: the datasets of two zerotrain exports agree within
fp32 reduction-order noise (the largest difference under 1e-3 of the tensor's largest value).
Reads them with h5dump (no h5py needed); prints the worst difference of each."""
import re
import subprocess
import sys


def values(path, ds):
    out = subprocess.run(['h5dump', '-d', ds, '-w', '0', '-m', '%.9g', path],
                         capture_output=True, text=True, check=True).stdout
    body = out.split('DATA {', 1)[1].split('}', 1)[0]
    body = re.sub(r'\(\d+(,\d+)*\):', ' ', body)  # the element indices h5dump prints
    return [float(t) for t in re.split(r'[,\s]+', body) if t]


def main():
    a_path, b_path, datasets = sys.argv[1], sys.argv[2], sys.argv[3:]
    for ds in datasets:
        a, b = values(a_path, ds), values(b_path, ds)
        scale = max(abs(x) for x in b)
        worst = max(abs(x - y) for x, y in zip(a, b)) / scale
        if len(a) != len(b) or not a or worst >= 1e-3:
            sys.exit(f'{ds}: {len(a)} and {len(b)} values, worst difference {worst:.1e} of the scale')
        print(f'{ds}: {worst:.1e} of the tensor scale')


main()
