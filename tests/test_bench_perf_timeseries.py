"""Smoke test of ``python -m xai_suite.bench.scripts.perf_timeseries``: it runs and prints its tables
and targets.

Timings are not checked here (performance claims live in the benchmark, not in timed unit
tests); the agreement it prints is, since TSR's outputs are deterministic.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

SCRIPT = ["-m", "xai_suite.bench.scripts.perf_timeseries"]


@pytest.mark.skipif(importlib.util.find_spec("TSInterpret") is None,
                    reason="TSInterpret is not installed (extra: tsinterpret)")
def test_perf_timeseries_quick_run(tmp_path):
    env = {**os.environ, "XAI_SUITE_CACHE": str(tmp_path), "MPLBACKEND": "Agg"}
    res = subprocess.run(
        [sys.executable, *SCRIPT, "--n", "1", "--repeats", "1", "--quick"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    for label in ("ours (native:tsr, batch_size='auto')",
                  "TSInterpret (tsinterpret:tsr, inner='IG')",
                  "ours, one masked copy at a time (loop)",
                  "plain IG (native, batch_size='auto')",
                  "floor: TSR calls x plain IG time"):
        assert out.count(label) == 2, label  # one table per configuration
    assert out.startswith("TSR timings on CPU")
    assert "GunPoint: CNN1d" in out and "planted 3 x 40" in out
    assert out.count("ratios: TSInterpret / ours = ") == 2
    assert "AUROC vs planted mask" in out
    assert re.search(r"^targets: GunPoint: TSInterpret / ours = [\d.]+ \(>= 10\)", out, re.M)
    # the same saliency: ours = the unbatched loop, TSInterpret = the loop post-processed
    assert "same saliency up to numerical noise (every TSR max |diff| above <= 1e-03): yes" in out
    # the occlusion section (quick: T = 100, both models): ours equals Captum's Occlusion
    assert "Occlusion timings on CPU" in out
    for label in ("ours (native:segment_occlusion, batch_size='auto')",
                  "Captum Occlusion (defaults: perturbations_per_eval=1)",
                  "floor: the faster forward-only run"):
        assert out.count(label) == 2, label  # one table per model
    assert re.search(r"^occlusion targets .*cnn T=100: Captum / ours = [\d.]+, ours / floor = "
                     r"[\d.]+ \((met|NOT met)\); linear T=100", out, re.M)
    assert "occlusion values equal to Captum's (every max |diff| <= 1e-05 of max |Captum|): yes" in out


@pytest.mark.skipif(importlib.util.find_spec("captum") is None, reason="captum is not installed")
def test_perf_timeseries_occlusion_section_alone(tmp_path):
    env = {**os.environ, "XAI_SUITE_CACHE": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, *SCRIPT, "--section", "occlusion", "--repeats", "1", "--n-occlusion", "3",
         "--occlusion-lengths", "50", "--occlusion-models", "linear"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert out.startswith("Occlusion timings on CPU") and "TSR timings" not in out
    assert "occlusion linear T = 50: linear layer on the flat series" in out
    assert "3 instances of 1 x 50; 10 windows of 5 steps, stride 5" in out
    assert "33 model rows" in out  # 3 x 10 occluded copies and the 3 instances
    assert "occlusion values equal to Captum's (every max |diff| <= 1e-05 of max |Captum|): yes" in out
