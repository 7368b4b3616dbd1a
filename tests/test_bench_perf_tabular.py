"""Smoke test of ``python -m xai_suite.bench.scripts.perf_tabular``: it runs, prints its table, and
ours equals shap.

Timings are not checked here (performance claims live in the benchmark); the agreement with
shap.KernelExplainer on the same coalitions and background is.
"""

import importlib.util
import json
import re
import subprocess
import sys

import pytest

SCRIPT = ["-m", "xai_suite.bench.scripts.perf_tabular"]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("shap") is None,
                                reason="shap is not installed")


def test_perf_tabular_quick_run():
    res = subprocess.run([sys.executable, *SCRIPT, "--quick"], capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert out.startswith("KernelSHAP timings on CPU")
    assert "breast cancer: LogisticRegression" in out
    for label in ("ours (native:kernel_shap, batch_size='auto')",
                  "shap.KernelExplainer (l1_reg=False), 1 instance/call",
                  "floor: the model alone on the same rows"):
        assert out.count(label) == 1, label
    assert re.search(r"ratios: shap / ours = [\d.]+ \(target >= 5: (met|NOT met)\)", out)
    assert "coalitions and weights identical to shap's: yes" in out
    diff = float(re.search(r"max \|ours - shap\| = ([\d.e+-]+)", out).group(1))
    assert diff <= 1e-4
    assert "same values (every max |ours - shap| <= 1e-04, same coalitions): yes" in out
    # the feature sweep: one line per F, each with shap's coalitions and equal values
    assert "feature sweep: synthetic LogisticRegression" in out
    lines = re.findall(r"^ +(10|40) +(\d+) +\d+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +"
                       r"([\d.e+-]+) +(yes|NO)$", out, re.M)
    assert [ln[0] for ln in lines] == ["10", "40"]
    assert lines[0][1] == str(2**10 - 2)  # F = 10: the auto budget enumerates every coalition
    assert all(float(ln[2]) <= 1e-4 and ln[3] == "yes" for ln in lines)
    assert re.search(r"sweep targets: shap / ours at F = 40 = [\d.]+ \(>= 8\); worst ours / floor "
                     r"= [\d.]+ \(<= 1.3\): (met|NOT met)", out)


def test_memory_worker_measures_a_peak():
    # a fresh process, as the benchmark runs it: in a long-lived process (pytest) the allocator
    # reuses pages freed by earlier tests and the peak above the start reads near zero
    cmd = [sys.executable, *SCRIPT, "--worker", "ours", "--model", "logreg", "--n", "4",
           "--background", "10", "--threads", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    peak = json.loads(res.stdout.strip().splitlines()[-1])["peak_extra"]
    # at least most of one chunk buffer: 4 x 2108 x 10 = 84,320 rows are built in chunks of
    # 34,952 rows (about 4 MiB of float32 input per black-box call) of 30 float64 = 8.0 MiB
    assert peak > 6 * 2**20
