"""Benchmark reports: every number with an interval (bootstrap or Wilson), PNG plots, config
and versions; the `xai-suite bench` and `report` commands."""

import re
import textwrap

import numpy as np
import pytest

from xai_suite.bench import ResultsStore
from xai_suite.bench import config as bench_config
from xai_suite.bench.report import RUNTIME, summarise
from xai_suite.cli import main
from xai_suite.metrics import registry as metric_registry
from xai_suite.metrics.statistics import bootstrap_interval, wilson_interval

METRICS = ("test_rep_abs_sum", "test_rep_positive")

PLUGIN = textwrap.dedent('''
    import numpy as np
    from xai_suite.metrics.registry import _METRICS, register_metric

    if "test_rep_abs_sum" not in _METRICS:
        @register_metric("test_rep_abs_sum", kind="sanity", higher_is_better=False)
        def abs_sum(exp):
            """Sum of |attributions| per instance."""
            return np.abs(exp.attributions).reshape(len(exp), -1).sum(1)

        @register_metric("test_rep_positive", kind="sanity", higher_is_better=True)
        def positive(exp):
            """1 where the attributions sum to more than 0 (a proportion)."""
            return (exp.attributions.reshape(len(exp), -1).sum(1) > 0).astype(float)
''')

SUITE = textwrap.dedent('''
    name = "report-test"
    description = "A tiny suite for the report tests."
    seeds = [0, 1]
    n_instances = 4
    imports = ["plugin.py"]
    baselines = ["zeros", "training_mean"]

    [[datasets]]
    loader = "make_planted_timeseries"
    label = "planted"
    params = { n_samples = 48, n_channels = 2, length = 12, random_state = 0 }

    [[models]]
    name = "cnn1d"
    params = { widths = [4], kernels = [3], epochs = 3 }

    [[explainers]]
    name = "captum:integrated_gradients"
    params = { n_steps = 4 }

    [[explainers]]
    name = "captum:saliency"

    [[metrics]]
    name = "test_rep_abs_sum"
    [[metrics]]
    name = "test_rep_positive"

    [quick]
    seeds = [0]
''')

NUM = r"-?\d[\d.]*(?:e[-+]?\d+)?"
CELL = re.compile(rf"^({NUM}) \[({NUM}), ({NUM})\](ᵂ?) \(n=(\d+)\)$")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """`xai-suite bench NAME` (looked up in ./benchmarks) then `xai-suite report`."""
    d = tmp_path_factory.mktemp("bench_report")
    (d / "benchmarks").mkdir()
    (d / "benchmarks" / "plugin.py").write_text(PLUGIN)
    (d / "benchmarks" / "tiny.toml").write_text(SUITE)
    mp = pytest.MonkeyPatch()
    mp.setenv("XAI_SUITE_CACHE", str(d / "cache"))
    mp.chdir(d)
    assert main(["bench", "tiny", "--out", "run"]) == 0
    assert main(["report", "run"]) == 0
    yield d / "run"
    mp.undo()
    for name in METRICS:
        metric_registry._METRICS.pop(name, None)
    for key in [k for k in bench_config._IMPORTED if k.startswith(str(d))]:
        bench_config._IMPORTED.pop(key)


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| explainer |")]
    assert len(lines) == 1
    start = text.splitlines().index(lines[0])
    rows = []
    for ln in text.splitlines()[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split(" | ")])
    return [c.strip() for c in lines[0].strip("|").split(" | ")], rows


def test_every_number_in_the_table_has_an_interval(run_dir):
    text = (run_dir / "report" / "report.md").read_text()
    header, rows = _table(text)
    assert header == ["explainer", "baseline", "test_rep_abs_sum ↓", "test_rep_positive ↑", RUNTIME]
    assert [r[:2] for r in rows] == [["captum:integrated_gradients", "training_mean"],
                                    ["captum:integrated_gradients", "zeros"], ["captum:saliency", "-"]]
    for row in rows:
        for cell in row[2:]:
            m = CELL.match(cell)
            assert m, cell
            mean, low, high = map(float, m.group(1, 2, 3))
            assert low <= mean + 1e-3 * abs(mean) and mean <= high + 1e-3 * abs(mean)
            assert int(m.group(5)) == 8  # 4 instances x 2 seeds, pooled
        assert CELL.match(row[3]).group(4) == "ᵂ"  # a 0/1 metric gets a Wilson interval
        assert CELL.match(row[2]).group(4) == ""


def test_intervals_match_the_statistics_module(run_dir):
    with ResultsStore(run_dir) as store:
        df = store.results()
    s = summarise(df)
    ig = df[(df.explainer == "captum:integrated_gradients") & (df.baseline == "zeros")]
    vals = ig[ig.metric == "test_rep_abs_sum"].value.to_numpy()
    row = s[(s.explainer == "captum:integrated_gradients") & (s.baseline == "zeros")
            & (s.metric == "test_rep_abs_sum")].iloc[0]
    assert row["mean"] == pytest.approx(vals.mean())
    assert (row.low, row.high) == pytest.approx(bootstrap_interval(vals, random_state=0))
    assert row.interval == "bootstrap"
    pos = ig[ig.metric == "test_rep_positive"].value.to_numpy()
    row = s[(s.explainer == "captum:integrated_gradients") & (s.baseline == "zeros")
            & (s.metric == "test_rep_positive")].iloc[0]
    assert (row.low, row.high) == pytest.approx(wilson_interval(int(pos.sum()), pos.size))
    assert row.interval == "wilson"
    assert set(np.unique(pos)) <= {0.0, 1.0}


def test_summary_handles_nan_and_single_values():
    import pandas as pd

    df = pd.DataFrame({"suite": "s", "dataset": "d", "model": "m", "seed": 0, "explainer": "e",
                       "baseline": "-", "metric": ["a", "a", "a", "b"], "instance": [0, 1, 2, 0],
                       "value": [1.0, np.nan, 3.0, 2.0], "seconds": 0.1})
    s = summarise(df).set_index("metric")
    assert (s.loc["a", "n"], s.loc["a", "missing"], s.loc["a", "mean"]) == (2, 1, 2.0)
    assert s.loc["b", "interval"] == "none (n < 2)" and np.isnan(s.loc["b", "low"])


def test_pngs_exist_and_report_has_config_and_versions(run_dir):
    report = run_dir / "report"
    text = (report / "report.md").read_text()
    for png in ("heatmap_planted-cnn1d.png", "baselines_planted-cnn1d.png"):
        data = (report / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({png})" in text
    assert SUITE.strip() in text  # the exact TOML
    import torch

    assert f"| torch | {torch.__version__} |" in text
    assert "A tiny suite for the report tests." in text
    assert (report / "summary.csv").exists()


def test_cli_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "no-such-suite"]) == 2
    assert "no suite 'no-such-suite'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no results store" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text('name = "x"\nseed = [0]\n')
    assert main(["bench", "bad.toml"]) == 2
    assert "did you mean 'seeds'" in capsys.readouterr().err


def test_quick_demo_suite_parses():
    from pathlib import Path

    from xai_suite.bench import expand_units, load_suite

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quick-demo.toml"
    full, quick = load_suite(path), load_suite(path, quick=True)
    units = expand_units(quick)
    assert len(expand_units(full)) == 3 * len(units)
    assert {u.dataset for u in units} == {"planted-box-middle", "breast_cancer"}
    ig = {u.baseline for u in units if u.explainer == "captum:integrated_gradients"}
    assert ig == {"zeros", "training_mean", "gaussian"}
