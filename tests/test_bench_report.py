"""Benchmark reports: every number with an interval (bootstrap or Wilson), model accuracy with
a Wilson interval, PNG plots incl. deletion curves with bands, config and versions; the
`xai-suite bench` (TOML and script suites) and `report` commands; the shipped suites."""

import contextlib
import re
import textwrap

import numpy as np
import pytest
from conftest import forget_plugins

from xai_suite.bench import SUITES_DIR, ResultsStore
from xai_suite.bench.report import RUNTIME, summarise
from xai_suite.cli import main
from xai_suite.metrics.statistics import bootstrap_interval, wilson_interval

METRICS = ("test_rep_abs_sum", "test_rep_positive")

PLUGIN = textwrap.dedent('''
    import numpy as np
    from xai_suite.metrics.registry import METRICS, register_metric

    if "test_rep_abs_sum" not in METRICS:
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
    [[metrics]]
    name = "deletion_auc"
    params = { n_steps = 4 }

    [quick]
    seeds = [0]
''')

NUM = r"-?\d[\d.]*(?:e[-+]?\d+)?"
CELL = re.compile(rf"^({NUM}) \[({NUM}), ({NUM})\](ᵂ?) \(n=(\d+)\)$")


@contextlib.contextmanager
def suite_run(d, suite: str = SUITE, bench_args=(), report_args=()):
    """`xai-suite bench tiny` of ``suite`` (looked up in ``d``/benchmarks) then `xai-suite
    report`; yields the run directory, then unregisters the plugin's metrics."""
    (d / "benchmarks").mkdir()
    (d / "benchmarks" / "plugin.py").write_text(PLUGIN)
    (d / "benchmarks" / "tiny.toml").write_text(suite)
    mp = pytest.MonkeyPatch()
    mp.setenv("XAI_SUITE_CACHE", str(d / "cache"))
    mp.chdir(d)
    try:
        assert main(["bench", "tiny", *bench_args, "--out", "run"]) == 0
        assert main(["report", "run", *report_args]) == 0
        yield d / "run"
    finally:
        mp.undo()
        forget_plugins(d, METRICS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """`xai-suite bench NAME` (looked up in ./benchmarks) then `xai-suite report`."""
    with suite_run(tmp_path_factory.mktemp("bench_report")) as run:
        yield run


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
    assert header == ["explainer", "baseline", "deletion_auc ↓", "test_rep_abs_sum ↓", "test_rep_positive ↑",
                      RUNTIME]
    assert [r[:2] for r in rows] == [["captum:integrated_gradients", "training_mean"],
                                    ["captum:integrated_gradients", "zeros"], ["captum:saliency", "-"]]
    for row in rows:
        for cell in row[2:]:
            m = CELL.match(cell)
            assert m, cell
            mean, low, high = map(float, m.group(1, 2, 3))
            assert low <= mean + 1e-3 * abs(mean) and mean <= high + 1e-3 * abs(mean)
            assert int(m.group(5)) == 8  # 4 instances x 2 seeds, pooled
        assert CELL.match(row[4]).group(4) == "ᵂ"  # a 0/1 metric gets a Wilson interval
        assert CELL.match(row[3]).group(4) == ""


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
    for png in ("heatmap_planted-cnn1d.png", "baselines_planted-cnn1d.png",
                "curves_deletion_auc-planted-cnn1d.png"):
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


def test_bench_exits_non_zero_and_names_failed_units(tmp_path, monkeypatch, capsys):
    """A run where a unit fails is not a success: exit 1 and the failing unit and its error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XAI_SUITE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "failing.toml").write_text(textwrap.dedent('''\
        name = "failing"
        n_instances = 2
        [[datasets]]
        loader = "make_planted_timeseries"
        params = { n_samples = 24, n_channels = 1, length = 8 }
        [[models]]
        name = "cnn1d"
        params = { widths = [2], kernels = [3], epochs = 1 }
        [[explainers]]
        name = "captum:saliency"
        [[explainers]]
        name = "native:integrated_gradients"
        params = { n_steps = 0 }
        '''))
    assert main(["bench", "failing.toml", "--out", "run"]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 units failed" in err and "native:integrated_gradients" in err and "n_steps" in err


def test_quick_demo_suite_parses():

    from xai_suite.bench import expand_units, load_suite

    path = SUITES_DIR / "quick-demo.toml"
    full, quick = load_suite(path), load_suite(path, quick=True)
    units = expand_units(quick)
    assert len(expand_units(full)) == 3 * len(units)
    assert {u.dataset for u in units} == {"planted-box-middle", "breast_cancer"}
    ig = {u.baseline for u in units if u.explainer == "captum:integrated_gradients"}
    assert ig == {"zeros", "training_mean", "gaussian"}


def test_model_accuracy_with_a_wilson_interval_heads_each_section(run_dir):
    from xai_suite.bench.report import model_summary, write_report

    with ResultsStore(run_dir) as store:
        models = store.models()
    assert len(models) == 2 and (models.n_test == 12).all()  # 48 series, test_size 0.25; two seeds
    k, n = int(models.n_correct.sum()), int(models.n_test.sum())
    low, high = wilson_interval(k, n)
    q = model_summary(models).iloc[0]
    assert q.n == n and (q.accuracy, q.low, q.high) == pytest.approx((k / n, low, high))
    text = (run_dir / "report" / "report.md").read_text()
    section = text[text.index("## planted / cnn1d"):]
    first = section.splitlines()[2]
    assert first.startswith(f"Model test accuracy: **{k / n:.3f} [{low:.3f}, {high:.3f}]ᵂ**"), first
    assert f"n={n}: 12 test rows x 2 seeds" in first
    assert "## Models" in text and (run_dir / "report" / "models.csv").exists()
    # the weak-model flag follows min_accuracy
    strict = write_report(run_dir, run_dir / "strict", min_accuracy=1.01).read_text()
    lax = write_report(run_dir, run_dir / "lax", min_accuracy=0.0).read_text()
    assert "**Weak model**: test accuracy" in strict and "Weak model" not in lax


def test_curve_bands_are_bootstrap_intervals_of_the_stored_curves(run_dir):
    from xai_suite.bench.report import BAND_RESAMPLES, curve_summary

    with ResultsStore(run_dir) as store:
        curves = store.curves()
    cs = curve_summary(curves)
    assert len(cs) == 3 * 5  # 3 explainer | baseline rows x 5 fractions
    row = cs[(cs.explainer == "captum:saliency") & (cs.step == 2)].iloc[0]
    vals = curves[(curves.explainer == "captum:saliency") & (curves.step == 2)].value.to_numpy()
    assert row.n == 8 and row["mean"] == pytest.approx(vals.mean()) and row.fraction == 0.5
    assert (row.low, row.high) == pytest.approx(bootstrap_interval(vals, n_resamples=BAND_RESAMPLES,
                                                                   random_state=0))


SCRIPTS = {
    "ok.py": "import sys\nprint('hello from ok', sys.argv[1:])\n",
    "bad.py": "import sys\nprint('about to fail')\nsys.exit(3)\n",
}


def test_script_suite_tees_output_and_reports_failures(tmp_path, monkeypatch, capsys):
    from xai_suite import cli

    monkeypatch.chdir(tmp_path)  # `python -m ok` finds ok.py here
    for name, code in SCRIPTS.items():
        (tmp_path / name).write_text(code)
    monkeypatch.setitem(cli.SCRIPT_SUITES, "fake", (("ok", ("--quick",), True), ("bad", (), False)))
    assert main(["bench", "fake", "--quick", "--out", "o"]) == 1
    shown = capsys.readouterr().out
    saved = (tmp_path / "o" / "fake.txt").read_text()
    assert saved in shown and "output: o/fake.txt" in shown
    assert saved.startswith("$ python -m ok --quick --out o\n")
    assert "hello from ok ['--quick', '--out', 'o']" in saved
    assert "$ python -m bad\nabout to fail\n[bad exited with status 3]" in saved
    assert saved.rstrip().endswith("failed: bad")
    assert main(["bench", "fake", "--out", "o2"]) == 1  # without --quick no quick arguments
    assert "hello from ok ['--out', 'o2']" in (tmp_path / "o2" / "fake.txt").read_text()
    # a TOML suite of the same name in ./benchmarks wins over the script suite
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "fake.toml").write_text('name = "x"\nseed = [0]\n')
    assert main(["bench", "fake"]) == 2
    assert "did you mean 'seeds'" in capsys.readouterr().err


def test_concepts_script_suite_runs_quick_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no benchmarks/ here: the suite runs the package's module
    assert main(["bench", "concepts", "--quick", "--out", "out"]) == 0
    shown = capsys.readouterr().out
    saved = (tmp_path / "out" / "concepts.txt").read_text()
    assert saved.startswith("$ python -m xai_suite.bench.scripts.concepts --quick --out out\n")
    assert saved in shown and "mean [95% t-interval over seeds]" in saved
    assert (tmp_path / "out" / "concepts_runs.csv").exists()
    assert (tmp_path / "out" / "concepts_summary.csv").exists()


def test_bench_help_documents_script_suites(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for name in ("counterfactuals", "concepts", "perf", "counterfactuals_ts", "perf_gradients",
                 "perf_timeseries", "perf_tabular", "NAME.txt", "python -m xai_suite.bench.scripts.MODULE"):
        assert name in text


def _shipped(name: str):

    from xai_suite.bench import expand_units, load_suite

    path = SUITES_DIR / f"{name}.toml"
    return expand_units(load_suite(path)), expand_units(load_suite(path, quick=True))


def test_ig_baselines_models_per_dataset():
    full, quick = _shipped("ig-baselines")
    pairs = {(u.dataset, u.model) for u in quick}
    assert ("load_ucr:ArrowHead", "resnet1d") in pairs and ("load_ucr:ArrowHead", "cnn1d") not in pairs
    assert {d for d, m in pairs if m == "cnn1d"} == {"load_ucr:GunPoint", "load_ucr:BasicMotions",
                                                     "planted-box-middle"}
    import xai_suite as xs

    ts = {u.baseline for u in quick if u.dataset == "load_ucr:GunPoint"
          and u.explainer == "native:integrated_gradients"}
    assert ts == set(xs.list_baselines("timeseries"))  # every registered baseline
    assert len(full) == 3 * len(quick)


def test_ts_saliency_runs_with_and_without_tsr():
    full, quick = _shipped("ts-saliency")
    labels = {u.explainer: (u.explainer_name, u.explainer_params) for u in quick}
    pairs = {"tsr(saliency)": "captum:saliency", "tsr(integrated_gradients)": "native:integrated_gradients",
             "tsr(input_x_gradient)": "captum:input_x_gradient", "tsr(lrp)": "native:lrp"}
    for tsr, plain in pairs.items():
        assert labels[tsr][0] == "native:tsr" and labels[tsr][1]["inner"] == plain
        assert plain in labels  # the same method without TSR
    assert labels["tsr(integrated_gradients)"][1]["inner_params"] == {"n_steps": 16}  # --quick only
    assert "inner_params" not in {u.explainer: u.explainer_params for u in full}["tsr(integrated_gradients)"]
    assert len({u.dataset for u in quick}) == 12


@pytest.mark.slow
def test_ig_baselines_quick_end_to_end(tmp_path, monkeypatch):
    """`xai-suite bench ig-baselines --quick` and its report: every number has an interval."""
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("XAI_SUITE_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "ig-baselines", "--quick", "--out", str(tmp_path / "run")]) == 0
    assert main(["report", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "report" / "report.md").read_text()
    with ResultsStore(tmp_path / "run") as store:
        units, models = store.units(), store.models()
    assert (units.status == "done").all()
    assert (models.accuracy >= 0.8).all(), models  # every model learned its task
    sections = [ln for ln in text.splitlines() if ln.startswith("## ") and " / " in ln]
    assert len(sections) == len(models) >= 5
    n_cells, ranks = 0, False
    assert "native:random | completeness_error | completeness_error needs an explainer" in text  # n/a
    for line in text.split("## Not applicable")[0].splitlines():  # the dataset / model sections
        ranks = line.startswith("| method |") or (ranks and line.startswith("|"))  # a ranks table
        if line.startswith("Model test accuracy:"):
            assert re.match(rf"Model test accuracy: \*\*{NUM} \[{NUM}, {NUM}\]ᵂ\*\*", line), line
        if line.startswith("| native:"):
            for cell in [c.strip() for c in line.strip("|").split(" | ")][2:]:
                if ranks:
                    assert re.match(r"^(\d+(-\d+)?|n/a|-)$", cell), cell
                    continue
                interval = re.match(rf"^{NUM} \[{NUM}, {NUM}\]ᵂ? \(n=\d+\)$", cell)
                assert cell in ("not computed", "n/a") or interval, cell
                n_cells += cell not in ("not computed", "n/a")
    assert n_cells > 100
    assert "Weak model" not in text
    for dataset, model in zip(models.dataset, models.model, strict=True):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset}-{model}")
        assert f"](curves_deletion_auc-{slug}.png)" in text
