"""Smoke test of ``python -m xai_suite.bench.scripts.counterfactuals_ts``: the whole script at its
tiniest settings."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

import xai_suite as xs

SCRIPT = ["-m", "xai_suite.bench.scripts.counterfactuals_ts"]
TINY = [
    "--n", "2", "--datasets", "GunPoint", "BasicMotions", "--model-epochs", "20",
    "--tsevo-epochs", "1", "--tsevo-generations", "3",
    "--comte-max-attempts", "5", "--comte-max-iter", "5", "--threads", "1",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the script once (about 15 s: two small FCNs trained into a temporary cache)."""
    if not all(xs.explainer_info(f"tsinterpret:{m}").available for m in ("native_guide", "comte", "tsevo")):
        pytest.skip("TSInterpret (the tsinterpret extra) is not installed")
    tmp = tmp_path_factory.mktemp("bench_cf")
    env = {**os.environ, "XAI_SUITE_CACHE": str(tmp / "cache")}
    res = subprocess.run([sys.executable, *SCRIPT, *TINY, "--out", str(tmp / "out")],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout, tmp


def _rows(out: str, dataset: str) -> list[str]:
    """The table rows printed for ``dataset``."""
    block = out.split(f"\n{dataset} (", 1)[1].split("\n\n", 1)[0]
    return [line for line in block.splitlines() if line.startswith(("NativeGuide", "COMTE", "TSEvo"))]


def test_tables_have_every_method_and_library(run):
    out, _ = run
    assert "failed" not in out
    for dataset in ("GunPoint", "BasicMotions"):
        rows = _rows(out, dataset)
        assert [r.split()[0] for r in rows] == ["NativeGuide"] * 2 + ["COMTE"] * 2 + ["TSEvo"] * 3
        assert [r.split()[1] for r in rows] == ["ours", "TSInterpret"] * 3 + ["ours"]
        measured = [r for r in rows if "n/a" not in r]
        for r in measured:  # validity with its Wilson interval, then 5 metrics and the time
            assert re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]( +(nan|[\d.]+)){6}$", r), r
    assert "TSInterpret (NUN_CF)" in _rows(out, "GunPoint")[1]
    assert "n/a (univariate only)" in _rows(out, "BasicMotions")[1]  # its NativeGuide: univariate
    assert "TSInterpret (1 of 500 epochs)" in out
    assert "ours (generations=3)" in out
    assert "ours (generations=1, population=100)" in out  # TSInterpret's budget
    for col in ("validity [95% CI]", "L1", "L2", "DTW", "changed", "plaus.", "s/instance"):
        assert col in out


def test_targets_lines(run):
    out, _ = run
    for dataset in ("GunPoint", "BasicMotions"):
        line = next(x for x in out.splitlines() if x.startswith(f"targets ({dataset}): "))
        assert "validity ours/theirs: NativeGuide" in line
        assert "time theirs/ours: COMTE" in line
        assert re.search(r"TSEvo [\d.]+ \(>= 10: (ok|MISSED)\) at equal budgets \(1 generations x 100\); "
                         r"ours at its defaults vs theirs at 1 epochs [\d.]+, at its default 500 "
                         r"[\d.]+ \(extrapolated\); CPU time at equal budgets [\d.]+", line)
        assert "time ours/theirs: NativeGuide" in line
    basic = next(x for x in out.splitlines() if x.startswith("targets (BasicMotions)"))
    assert "NativeGuide n/a" in basic


def test_csv_per_instance(run):
    _, tmp = run
    inst = pd.read_csv(tmp / "out" / "counterfactuals_ts_instances.csv")
    # GunPoint: 7 runs x 2 instances; BasicMotions: 6 (no TSInterpret NativeGuide) x 2
    assert len(inst) == 26
    assert {"dataset", "entry", "test_index", "target", "valid", "l1", "dtw",
            "seconds_per_instance"} <= set(inst.columns)
    # the same instances and targets on both sides
    for _, g in inst.groupby("dataset"):
        per_entry = {e: tuple(zip(d["test_index"], d["target"], strict=True))
                     for e, d in g.groupby(["entry", "library"])}
        assert len(set(per_entry.values())) == 1
    summary = pd.read_csv(tmp / "out" / "counterfactuals_ts_summary.csv")
    assert len(summary) == 14
    assert (summary["status"] != "ok").sum() == 1
