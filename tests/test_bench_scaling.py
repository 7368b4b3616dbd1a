"""``benchmarks/scaling.py``: its cases agree with Captum/shap, and its ``--quick`` run prints every
table with finite slopes (timings are not checked: performance claims live in the benchmark)."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xai_suite.bench.scripts import scaling

ROOT = Path(__file__).resolve().parents[1]
NUM = r"([-+]?\d+(?:\.\d+)?(?:e[-+]\d+)?|nan|inf|-inf)"


def test_slope_is_the_log_log_exponent():
    sizes = [10, 30, 100, 300]
    assert scaling.slope(sizes, [3e-3 * s**2 for s in sizes]) == pytest.approx(2.0)
    assert scaling.slope(sizes, [0.5 * s**0.5 for s in sizes]) == pytest.approx(0.5)


def test_cases_sweep_one_axis_at_a_time():
    grid = scaling.FULL
    ig = scaling.cases("ig", grid)
    assert [a for a, _, _ in ig] == ["N"] * 5 + ["T"] * 4 + ["steps"] * 4
    for axis, size, params in ig:
        key = {"N": "n", "T": "t", "steps": "steps"}[axis]
        assert params[key] == size
        assert {k: v for k, v in params.items() if k != key} == \
            {k: v for k, v in grid.ig_base.items() if k != key}
    assert [s for _, s, _ in scaling.cases("occlusion", grid)] == list(grid.occ_t)
    ks = scaling.cases("kernel_shap", grid)
    assert [p["f"] for _, _, p in ks] == list(grid.ks_f)
    assert all(p["n_peer"] <= p["n"] and p["n_floor"] <= p["n"] for _, _, p in ks)


@pytest.mark.parametrize("method", scaling.METHODS)
def test_every_quick_case_agrees_with_the_peer(method):
    """In process: every case of the quick grid gives ours' values equal to the peer's, and
    positive times for ours, the peer and the floor."""
    rows = scaling.time_worker(method, scaling.QUICK, "cpu", 1)
    assert len(rows) == len(scaling.cases(method, scaling.QUICK))
    for r in rows:
        assert r["diff"] <= scaling.AGREEMENT_TOL and r["scale"] > 0, r
        assert min(r["ours"], r["peer"], r["floor"]) > 0 and r["chunk"] >= 1, r


def test_floor_chunks_cover_every_row_count():
    """The floor's chunk sizes: the fixed ones below the row count, and all rows in one call."""
    assert scaling._chunks(12) == [12]
    assert scaling._chunks(300) == [64, 256, 300]
    assert scaling._chunks(1024) == [64, 256, 1024]
    case = scaling.build_ig({"n": 2, "t": 30, "steps": 6}, "cpu")  # 12 path rows
    assert set(case.runs) == {"ours", "peer", "floor_12"}
    np.testing.assert_allclose(case.runs["ours"](), case.runs["peer"](), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_quick_run_prints_every_table():
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--quick"],
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stdout
    titles = ["ig vs N", "ig vs T", "ig vs steps", "occlusion vs T", "kernel_shap vs F"]
    for title in titles:
        assert re.search(rf"^{title} \(", out, re.M), title
    slopes = re.findall(rf"log-log slope of time vs \S+: ours {NUM}, .+? {NUM}, floor {NUM}$", out,
                        re.M)
    assert len(slopes) == len(titles)
    assert all(math.isfinite(float(v)) for row in slopes for v in row)
    assert out.count("(<= 1e-04: yes)") == len(titles)
    assert "MiB ours" in out and "ours/floor" in out and "peer/ours" in out
    worst = re.findall(r"^  (ig|occlusion|kernel_shap) +" + NUM + r" \(at ", out, re.M)
    assert [m for m, _ in worst] == list(scaling.METHODS)
    assert "same values as the peers (every relative difference <= 1e-04): yes" in out
