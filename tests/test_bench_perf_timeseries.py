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
