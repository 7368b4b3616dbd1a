"""Smoke test of ``benchmarks/perf_gradients.py``: it runs end to end and prints every row of its
table (timings are not checked: performance claims live in the benchmark)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL_LABELS = ("[small calls]", "overhead ms", "ours x floor", "captum x floor", "model calls",
                "targets (small calls)")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "perf_gradients.py"), *args],
                          capture_output=True, text=True, timeout=900)


def test_perf_gradients_benchmark_runs():
    # the small-calls section is smoke-tested below on its own (one worker fewer here)
    res = _run("--n", "3", "--repeats", "1", "--no-malloc-variant", "--no-small")
    assert res.returncode == 0, res.stderr[-4000:]
    for label in ("ours (native IG", "Captum IG, one instance at a time", "peak extra MiB",
                  "Captum IG, whole batch", "floor: forward+backward", "targets"):
        assert label in res.stdout
    assert "[small calls]" not in res.stdout


def test_perf_gradients_small_calls_section():
    """``--small`` alone: one row per config, ours agreeing with the hand-written IG (else the
    run fails), one model call with gradients per small call of ours."""
    res = _run("--small", "--small-repeats", "1", "--small-configs", "1x40x4,2x30x2",
               "--small-threads", "1")
    assert res.returncode == 0, res.stderr[-4000:] + res.stdout[-2000:]
    for label in SMALL_LABELS:
        assert label in res.stdout
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(("  1    40", "  2    30"))]
    assert len(rows) == 2
    assert all(r[9].startswith("1+") for r in rows), rows  # one forward with gradients per call
    assert "ours (native IG" not in res.stdout  # only the small section
