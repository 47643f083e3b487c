#!/usr/bin/env python3
"""Summarise a series from `profiler/examples/speed_series.rs`: per 10-s
stretch, aes's percentiles and the references' medians; how well each
reference tracks aes; and how closely five consecutive simulated profiles
of 12 and 30 s would agree under two deadline estimators (the whole
sample's p99, and the median over 0.5-s blocks of each block's p99).
docs/profiler.md, "Deadline reproducibility", quotes its output.

Usage: python3 scripts/speed-series.py SERIES.txt  (needs numpy)"""
import sys

import numpy as np


def load(path):
    rows = {}
    for n, line in enumerate(open(path), 1):
        parts = line.split()
        if len(parts) != 3:
            sys.exit(f"{path}:{n}: expected 'seconds kind ns', got {line.strip()!r}")
        t, kind, ns = parts
        rows.setdefault(kind, []).append((float(t), int(ns) / 1e3))
    return {k: np.array(v) for k, v in rows.items()}


def spread(x):
    return (x.max() - x.min()) / np.median(x) * 100


def stretches(data, length):
    aes = data["aes"]
    end = int(aes[:, 0].max() // length)
    refs = [k for k in ("alu", "sha", "aes4k", "mem") if k in data]
    print(f"{length:.0f}-s stretch: aes p10 p50 p99 | " + " ".join(f"{r} median" for r in refs))
    table = []
    for i in range(end):
        m = (aes[:, 0] >= i * length) & (aes[:, 0] < (i + 1) * length)
        v = aes[m, 1]
        row = [np.percentile(v, q) for q in (10, 50, 99)]
        for r in refs:
            d = data[r]
            row.append(np.median(d[(d[:, 0] >= i * length) & (d[:, 0] < (i + 1) * length), 1]))
        table.append(row)
        print(f"{i:3d}: " + " ".join(f"{x:8.1f}" for x in row))
    t = np.array(table)
    print("spread %: p10 {:.1f}, p50 {:.1f}, p99 {:.1f}".format(*(spread(t[:, j]) for j in range(3))))
    for j, r in enumerate(refs):
        c = t[:, 3 + j]
        print(f"  {r}: spread {spread(c):.1f} %, corr with aes p50 {np.corrcoef(t[:, 1], c)[0, 1]:.2f}, "
              f"spread of p50/{r} {spread(t[:, 1] / c):.1f} %")


def profiles(data):
    aes = data["aes"]
    t, v = aes[:, 0], aes[:, 1]
    for length in (12, 30):
        n = int(t.max() // length)
        for name in ("whole-sample p99", "median of 0.5-s block p99s"):
            values = []
            for i in range(n):
                m = (t >= i * length) & (t < (i + 1) * length)
                ts, vs = t[m], v[m]
                if name.startswith("whole"):
                    values.append(np.percentile(vs, 99))
                else:
                    b = (ts // 0.5).astype(int)
                    p = [np.percentile(vs[b == k], 99) for k in np.unique(b) if (b == k).sum() >= 50]
                    values.append(np.median(p))
            values = np.array(values)
            worst = [np.abs(values[g:g + 5] / np.median(values[g:g + 5]) - 1).max() * 100
                     for g in range(len(values) - 4)]
            if worst:
                print(f"{length}-s profiles, {name}: worst deviation of five consecutive, "
                      f"median over {len(worst)} groups {np.median(worst):.1f} %, max {max(worst):.1f} %")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    series = load(sys.argv[1])
    stretches(series, 10.0)
    profiles(series)
