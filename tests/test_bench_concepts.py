"""Smoke test of ``python -m xai_suite.bench.scripts.concepts``: the whole script at its ``--quick``
settings."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

SCRIPT = ["-m", "xai_suite.bench.scripts.concepts"]
CELL = r"(\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\]"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the script once (12 fits of 100 epochs: a few seconds)."""
    out = tmp_path_factory.mktemp("bench_concepts")
    res = subprocess.run([sys.executable, *SCRIPT, "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout, out


def test_table_has_every_dataset_and_model_with_intervals(run):
    out, _ = run
    rows = [line for line in out.splitlines() if line.startswith(("XOR", "Trigonometry", "Dot"))]
    assert [r.split()[:2] for r in rows] == [[d, m] for d in ("XOR", "Trigonometry", "Dot")
                                             for m in ("CBM", "CEM")]
    for r in rows:
        cells = re.findall(CELL, r)
        assert len(cells) == 3, r  # task, concept, intervened accuracy
        for mean, lo, hi in cells:
            assert 0 <= float(lo) <= float(mean) <= float(hi) <= 1, r
    assert "mean [95% t-interval over seeds]" in out
    assert re.search(r"published picture: (holds|does not hold).*quick settings", out)
    assert len(re.findall(r"^check: .*: .*(ok|MISSED)$", out, flags=re.M)) == 5


def test_csv_agrees_with_the_table_and_the_models_learn(run):
    _, out = run
    runs = pd.read_csv(out / "concepts_runs.csv")
    summary = pd.read_csv(out / "concepts_summary.csv")
    assert len(runs) == 12 and set(runs.seed) == {0, 1}
    for _, row in summary.iterrows():
        g = runs[(runs.dataset == row.dataset) & (runs.model == row.model)]
        np.testing.assert_allclose(row.task_accuracy, g.task_accuracy.mean())
    # both models learn the concepts even at the quick settings
    assert (runs.concept_accuracy >= 0.9).all(), runs[["dataset", "model", "concept_accuracy"]]
    # a CEM trained with RandInt uses true concepts well: intervening on all of them does not
    # cost it task accuracy on average
    cem = runs[runs.model == "CEM"]
    assert cem.intervened_accuracy.mean() >= cem.task_accuracy.mean() - 0.02
