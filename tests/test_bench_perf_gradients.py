"""Smoke test of ``benchmarks/perf_gradients.py``: it runs end to end and prints every row of its
table (timings are not checked: performance claims live in the benchmark)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_perf_gradients_benchmark_runs():
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perf_gradients.py"), "--n", "3",
         "--repeats", "1", "--no-malloc-variant"],
        capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    for label in ("ours (native IG", "Captum IG, one instance at a time", "peak extra MiB",
                  "Captum IG, whole batch", "floor: forward+backward", "targets"):
        assert label in res.stdout
