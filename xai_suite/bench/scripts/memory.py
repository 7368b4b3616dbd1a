"""Peak memory of the three computations whose memory used to grow with the square of the input.

Each case runs in a fresh worker process, which imports everything and builds its data and
model first; the figure is the worker's peak RSS above what it held then (``ru_maxrss``), so
imports and the data themselves are not counted. Printed next to the figures measured before
the rewrite (issue 14) and the target:

- ``native:native_guide`` on one series of T=2000 steps: every counterfactual's metrics run
  DTW, which built (N, C, T, T) float64 arrays (1.8 GB at T=2000); now two anti-diagonals.
- ``native:nearest_unlike_neighbor`` with 100k training rows (10 features): plausibility took
  all-pairs distances over each class's rows (1.5 GB at 24k rows; about 20 GB extrapolated at
  100k); now blocks of 64 MiB and a typical distance over at most 2,000 rows.
- ``native:segment_occlusion`` at T=20000, stride 1: a dense (C T / stride) x (C T) float64
  window matrix (2.8 GB at T=8000); now masks built chunk by chunk and a difference array.

Run: ``python -m xai_suite.bench.scripts.memory [--quick]`` (``--quick``: the same cases at a
quarter of the sizes, with the old figures scaled as the old code scaled, quadratically).
``xai-suite bench memory [--quick]`` runs it and saves its output to ``OUT/memory.txt``. In a
checkout, ``python benchmarks/memory.py`` is the same.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MIB = 2**20

WORKER = r"""
import json, resource, sys
import numpy as np
import torch
import xai_suite as xs

case, size = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
rng = np.random.default_rng(0)


class MeanAbove(torch.nn.Module):
    # class 1 when the series' (or the row's) mean is above 0.5: two classes, no training
    def forward(self, x):
        m = x.reshape(x.shape[0], -1).mean(1, keepdim=True)
        return torch.cat([0.5 - m, m - 0.5], 1) * 10


if case == "native_guide":
    X = rng.random((40, 1, size), dtype=np.float32) * 0.2 + np.repeat([0.3, 0.6], 20)[:, None, None]
    e = xs.create_explainer("native:native_guide", MeanAbove(), saliency="occlusion").fit(X)
    run = lambda: e.explain(X[:1])
elif case == "nearest_unlike_neighbor":
    X = rng.random((size, 10), dtype=np.float32)
    e = xs.create_explainer("native:nearest_unlike_neighbor", MeanAbove()).fit(X)
    run = lambda: e.explain(X[:4])
elif case == "segment_occlusion":
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 5, stride=4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(),
                                torch.nn.Linear(2, 2)).eval()
    X = rng.random((1, 1, size), dtype=np.float32)
    e = xs.create_explainer("native:segment_occlusion", model, stride=1)
    run = lambda: e.explain(X)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mib": (after - before) / 1024}))  # ru_maxrss is in KiB on Linux
"""

#: case -> (size, quick size, old figure in MiB at old_size, old_size, target MiB, what size is)
CASES = {
    "native_guide": (2000, 500, 1.8 * 1024, 2000, 400, "T"),
    "nearest_unlike_neighbor": (100_000, 25_000, 1.5 * 1024, 24_000, 500, "training rows"),
    "segment_occlusion": (20_000, 5000, 2.8 * 1024, 8000, 500, "T"),
}


def measure(case: str, size: int) -> float:
    out = subprocess.run([sys.executable, "-c", WORKER, case, str(size)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the sizes")
    args = parser.parse_args(argv)
    print(f"{'case':26s} {'size':>18s} {'peak above setup':>17s} {'before (scaled)':>16s} "
          f"{'target':>8s}  met")
    met_all = True
    for case, (size, quick_size, old, old_size, target, what) in CASES.items():
        n = quick_size if args.quick else size
        peak = measure(case, n)
        old_at_n = old * (n / old_size) ** 2  # the old code grew with the square of the size
        met = peak < target
        met_all &= met
        print(f"{case:26s} {f'{n:,} {what}':>18s} {peak:12.0f} MiB {old_at_n:11.0f} MiB "
              f"{target:4d} MiB  {'yes' if met else 'NO'}")
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())
