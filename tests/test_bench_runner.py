"""Benchmark runner: config parsing and expansion, --quick, resumption after kill -9, unit
errors, metric needs, n_jobs independence, clear config errors."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import forget_plugins

from xai_suite.bench import (
    SUITES_DIR,
    ConfigError,
    ResultsStore,
    expand_units,
    load_suite,
    not_applicable,
    run_suite,
)
from xai_suite.bench.store import ID_COLUMNS

METRICS = ("test_run_abs_sum", "test_run_mask_mass", "test_run_top_prob", "test_run_killer")

# Imported by the runner in every process (parent, loky workers, subprocesses) via `imports`.
PLUGIN = textwrap.dedent('''
    import os, signal
    import numpy as np
    import torch
    from xai_suite.metrics.registry import METRICS, register_metric

    CALLS = [0]

    if "test_run_abs_sum" not in METRICS:
        @register_metric("test_run_abs_sum", kind="sanity", higher_is_better=True)
        def abs_sum(exp):
            """Sum of |attributions| per instance."""
            return np.abs(exp.attributions).reshape(len(exp), -1).sum(1)

        @register_metric("test_run_mask_mass", kind="localisation", needs="mask", higher_is_better=True)
        def mask_mass(exp, *, mask):
            """Share of |attribution| inside the ground-truth mask."""
            a = np.abs(exp.attributions).reshape(len(exp), -1)
            return (a * mask.reshape(len(exp), -1)).sum(1) / a.sum(1)

        @register_metric("test_run_top_prob", kind="faithfulness", needs="model", higher_is_better=True)
        def top_prob(exp, *, model):
            """The model's top class probability, recomputed from the model itself."""
            if hasattr(model, "predict_proba"):
                return model.predict_proba(exp.inputs).max(1)
            with torch.no_grad():
                return model(torch.from_numpy(exp.inputs)).softmax(1).max(1).values.numpy()

        @register_metric("test_run_killer", kind="sanity", higher_is_better=True)
        def killer(exp):
            """0 per instance; kills its own process (SIGKILL) at call $TEST_BENCH_KILL_AT."""
            CALLS[0] += 1
            if CALLS[0] == int(os.environ.get("TEST_BENCH_KILL_AT", "0")):
                os.kill(os.getpid(), signal.SIGKILL)
            return np.zeros(len(exp))
''')

SUITE = textwrap.dedent('''
    name = "runner-test"
    seeds = [0, 1]
    n_instances = 3
    imports = ["plugin.py"]
    baselines = ["zeros", "training_mean"]

    [[datasets]]
    loader = "make_planted_timeseries"
    label = "planted"
    params = { n_samples = 48, n_channels = 2, length = 12, random_state = 0 }
    quick_params = { n_samples = 40 }

    [[datasets]]
    loader = "load_tabular"
    label = "cancer"
    params = { name = "breast_cancer", standardize = true }

    [[models]]
    name = "cnn1d"
    params = { widths = [4], kernels = [3], epochs = 3 }

    [[models]]
    name = "logreg"

    [[explainers]]
    name = "captum:saliency"

    [[explainers]]
    name = "captum:integrated_gradients"
    params = { n_steps = 4 }

    [[explainers]]
    name = "captum:feature_ablation"

    [[metrics]]
    name = "test_run_abs_sum"
    [[metrics]]
    name = "test_run_mask_mass"
    [[metrics]]
    name = "test_run_top_prob"
    [[metrics]]
    name = "test_run_killer"

    [quick]
    seeds = [0]
    n_instances = 2
''')


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_runner")
    (d / "plugin.py").write_text(PLUGIN)
    (d / "suite.toml").write_text(SUITE)
    mp = pytest.MonkeyPatch()
    mp.setenv("XAI_SUITE_CACHE", str(d / "cache"))  # trained weights stay in the test's folder
    mp.delenv("TEST_BENCH_KILL_AT", raising=False)
    yield d
    mp.undo()
    forget_plugins(d, METRICS)


@pytest.fixture(scope="module")
def reference(suite_dir):
    """An uninterrupted n_jobs=1 run: its store's results, units and log."""
    path = run_suite(suite_dir / "suite.toml", suite_dir / "reference", progress=False)
    with ResultsStore(path) as store:
        return store.results(), store.units(), store.log()


def _rows(df: pd.DataFrame) -> list[tuple]:
    """Identifying columns and value, sorted (run times differ between runs)."""
    return sorted(df[[*ID_COLUMNS, "value"]].itertuples(index=False, name=None))


def test_config_expands_to_the_expected_units(suite_dir):
    suite = load_suite(suite_dir / "suite.toml")
    units = expand_units(suite)
    keys = [u.key for u in units]
    expected = []
    for dataset, model in (("planted", "cnn1d"), ("cancer", "logreg")):
        for seed in (0, 1):
            if model == "cnn1d":  # the gradient entries explain torch models only
                expected += [f"{dataset}|{model}|{seed}|captum:saliency|-"]
                expected += [f"{dataset}|{model}|{seed}|captum:integrated_gradients|{b}"
                             for b in ("zeros", "training_mean")]
            expected += [f"{dataset}|{model}|{seed}|captum:feature_ablation|{b}"
                         for b in ("zeros", "training_mean")]
    assert keys == expected  # cnn1d only on the time series, logreg only on the table
    assert [(p["model"], p["explainer"]) for p in not_applicable(suite)] == [
        ("logreg", "captum:saliency"), ("logreg", "captum:integrated_gradients")]
    ig = next(u for u in units if u.explainer == "captum:integrated_gradients")
    assert ig.explainer_params == {"n_steps": 4}


def test_select_filters_and_all_baselines(suite_dir):
    cfg = {
        "name": "select", "imports": [str(suite_dir / "plugin.py")],
        "datasets": [{"loader": "make_planted_timeseries", "params": {"n_samples": 40}}],
        "models": ["cnn1d"],
        "explainers": [{"select": {"family": "gradient", "library": "captum"},
                        "exclude": ["captum:guided_grad_cam"], "params": {"n_steps": 4}}],
        "baselines": "all",
    }
    import xai_suite as xs

    units = expand_units(load_suite(cfg))
    chosen = {u.explainer for u in units}
    listed = set(xs.list_explainers(modality="timeseries", family="gradient", library="captum",
                                    model_kind="torch").qualified_name) - {"captum:guided_grad_cam"}
    assert chosen == listed
    ig = {u.baseline for u in units if u.explainer == "captum:integrated_gradients"}
    assert ig == set(xs.list_baselines("timeseries"))
    assert {u.baseline for u in units if u.explainer == "captum:saliency"} == {"-"}
    # n_steps reaches only the explainers that take it
    assert all(("n_steps" in u.explainer_params) == (u.explainer == "captum:integrated_gradients")
               for u in units)


def test_quick_overrides(suite_dir):
    full, quick = load_suite(suite_dir / "suite.toml"), load_suite(suite_dir / "suite.toml", quick=True)
    assert (full.seeds, full.n_instances) == ((0, 1), 3)
    assert (quick.seeds, quick.n_instances) == ((0,), 2)
    assert full.datasets[0].params["n_samples"] == 48 and quick.datasets[0].params["n_samples"] == 40
    assert len(expand_units(quick)) == len(expand_units(full)) // 2
    assert quick.quick and "quick" not in quick.config and quick.config["seeds"] == [0]


def test_run_rows_units_errors_and_metric_needs(reference):
    results, units, log = reference
    # the gradient entries x logreg are no units (not_applicable), so none fails
    assert len(units) == 14 and (units.status == "done").all()
    # rows: one per instance and metric; the mask metric only where the data has a mask
    counts = results.groupby(["dataset", "metric"]).size().to_dict()
    assert counts[("planted", "test_run_mask_mass")] == 10 * 3
    assert ("cancer", "test_run_mask_mass") not in counts
    assert counts[("cancer", "test_run_top_prob")] == 4 * 3
    assert len(results) == 10 * 3 * 4 + 4 * 3 * 3
    skipped = [m for m in log.message if "test_run_mask_mass" in m]
    assert len(skipped) == 1 and "cancer" in skipped[0] and "mask" in skipped[0]
    assert not any("failed" in m for m in log.message)  # no metric got an argument it does not take
    assert results.value.notna().all() and (results.seconds > 0).all()
    # mask metric is a share; a trained-model probability lies in [0.5, 1] for two classes
    mass = results[results.metric == "test_run_mask_mass"].value
    assert ((mass >= 0) & (mass <= 1)).all()
    top = results[results.metric == "test_run_top_prob"].value
    assert ((top >= 0.5) & (top <= 1)).all()
    # every explainer of one dataset and seed explains the same seeded test rows
    inst = results.groupby(["dataset", "seed", "explainer", "baseline"]).instance.apply(tuple)
    for (_, _), grp in inst.groupby(level=[0, 1]):
        assert grp.nunique() == 1
    planted = results[results.dataset == "planted"]
    assert set(planted[planted.seed == 0].instance) != set(planted[planted.seed == 1].instance)


def test_store_keeps_config_and_versions(suite_dir, reference):
    with ResultsStore(suite_dir / "reference") as store:
        meta = store.meta()
    assert meta["suite"] == "runner-test" and meta["quick"] is False
    assert meta["config_toml"] == SUITE
    assert meta["config"]["seeds"] == [0, 1]
    assert meta["versions"]["torch"] and meta["versions"]["python"]
    assert meta["metrics"]["test_run_mask_mass"]["needs"] == "mask"


def test_unique_key_refuses_a_second_copy(suite_dir, reference):
    con = sqlite3.connect(suite_dir / "reference" / "results.sqlite")
    row = con.execute("SELECT * FROM results LIMIT 1").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    con.close()


def test_rerun_adds_nothing(suite_dir, reference):
    path = run_suite(suite_dir / "suite.toml", suite_dir / "reference", progress=False)
    with ResultsStore(path) as store:
        assert _rows(store.results()) == _rows(reference[0])
        assert len(store.units()) == 14


def test_killed_run_resumes_to_the_same_rows(suite_dir, reference):
    out = suite_dir / "killed"
    script = ("import sys; from xai_suite.bench import run_suite; "
              "run_suite(sys.argv[1], sys.argv[2], progress=False)")
    cmd = [sys.executable, "-c", script, str(suite_dir / "suite.toml"), str(out)]
    env = {**os.environ, "TEST_BENCH_KILL_AT": "4", "XAI_SUITE_CACHE": str(suite_dir / "cache")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr  # SIGKILL in the middle of the 4th metric-computing unit
    with ResultsStore(out) as store:
        done_before = store.units()
        rows_before = store.results()
    assert len(done_before) == 3  # units 1-3 committed; unit 4 died before its transaction
    assert len(rows_before) == 3 * 3 * 4
    # whole units only: each recorded unit has all its rows, no unrecorded unit has any
    keys = set(done_before.unit)
    row_units = set(rows_before.dataset + "|" + rows_before.model + "|" + rows_before.seed.astype(str)
                    + "|" + rows_before.explainer + "|" + rows_before.baseline)
    assert row_units <= keys
    env.pop("TEST_BENCH_KILL_AT")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with ResultsStore(out) as store, ResultsStore(suite_dir / "reference") as ref:
        assert _rows(store.results()) == _rows(reference[0])
        units = store.units()
        pd.testing.assert_frame_equal(store.models(), ref.models())  # model rows: once each, same numbers
    assert sorted(units.unit) == sorted(reference[1].unit)
    assert (units.set_index("unit").status == reference[1].set_index("unit").status).all()


def test_max_units_stops_and_the_rest_resumes(suite_dir, reference):
    out = suite_dir / "pieces"
    for stored in (5, 10, 14, 14):
        run_suite(suite_dir / "suite.toml", out, progress=False, max_units=5)
        with ResultsStore(out) as store:
            assert len(store.units()) == stored
    with ResultsStore(out) as store:
        assert _rows(store.results()) == _rows(reference[0])
    with pytest.raises(ValueError, match="max_units must be a positive int"):
        run_suite(suite_dir / "suite.toml", out, progress=False, max_units=0)


def test_parallel_run_gives_the_same_rows(suite_dir, reference):
    path = run_suite(suite_dir / "suite.toml", suite_dir / "parallel", n_jobs=2, backend="loky",
                     progress=False)
    with ResultsStore(path) as store:
        assert _rows(store.results()) == _rows(reference[0])
        assert sorted(store.units().unit) == sorted(reference[1].unit)


def test_resume_with_another_config_is_refused(suite_dir, reference):
    with pytest.raises(ValueError, match="another config"):
        run_suite(suite_dir / "suite.toml", suite_dir / "reference", quick=True, progress=False)


def _cfg(suite_dir, **changes):
    cfg = {
        "name": "bad", "imports": [str(suite_dir / "plugin.py")],
        "datasets": [{"loader": "make_planted_timeseries", "params": {"n_samples": 40}}],
        "models": ["cnn1d"], "explainers": ["captum:saliency"], "metrics": ["test_run_abs_sum"],
    }
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize("changes, match", [
    ({"datasets": [{"loader": "make_planted_timeserie"}]}, "did you mean 'make_planted_timeseries'"),
    ({"datasets": [{"loader": "make_planted_timeseries", "params": {"n_sample": 4}}]},
     "did you mean 'n_samples'"),
    ({"models": ["cnn1"]}, "did you mean 'cnn1d'"),
    ({"models": [{"name": "cnn1d", "params": {"epoch": 3}}]}, "did you mean 'epochs'"),
    ({"models": ["logreg"]}, "takes tabular data but no dataset is tabular"),
    ({"explainers": ["captum:integrated_gradient"]}, "did you mean 'captum:integrated_gradients'"),
    ({"explainers": [{"name": "captum:integrated_gradients", "params": {"n_step": 4}}]},
     "did you mean 'n_steps'"),
    ({"explainers": [{"name": "captum:integrated_gradients", "params": {"baseline": "zeros"}}]},
     "the runner sets it"),
    ({"explainers": [{"select": {"famliy": "gradient"}}]}, "did you mean 'family'"),
    ({"explainers": [{"select": {"family": "gradient"}, "params": {"bogus": 1}}]}, "taken by none"),
    ({"metrics": ["test_run_abs_summ"]}, "did you mean 'test_run_abs_sum'"),
    ({"metrics": [{"name": "test_run_abs_sum", "params": {"k": 3}}]}, "unknown parameter"),
    ({"baselines": ["zero"]}, "did you mean 'zeros'"),
    ({"seed": [0]}, "did you mean 'seeds'"),
    ({"seeds": [0, 0]}, "distinct"),
    ({"n_instances": 0}, "positive int"),
    ({"datasets": []}, "non-empty list"),
    ({"quick": {"name": "x"}}, "unknown key in \\[quick\\]"),
    ({"imports": ["no_such_module_xyz"]}, "cannot import"),
])
def test_bad_configs_give_clear_errors(suite_dir, changes, match):
    with pytest.raises(ConfigError, match=match):
        load_suite(_cfg(suite_dir, **changes))


def test_missing_suite_keys_and_files(suite_dir, tmp_path):
    cfg = _cfg(suite_dir)
    del cfg["models"]
    with pytest.raises(ConfigError, match="needs 'models'"):
        load_suite(cfg)
    with pytest.raises(ConfigError, match="no suite config"):
        load_suite(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("name = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_suite(tmp_path / "broken.toml")


def test_generated_data_split_is_stratified_and_seeded(suite_dir):
    from xai_suite.bench.runner import load_data

    suite = load_suite(suite_dir / "suite.toml")
    a, b = load_data(suite, "planted", 0), load_data(suite, "planted", 1)
    assert a["X_test"].shape == (12, 2, 12) and a["mask_test"].shape == a["X_test"].shape
    assert np.bincount(a["y_test"]).tolist() == [6, 6]
    assert not np.array_equal(a["X_test"], b["X_test"])  # the seed draws the split
    again = load_data(load_suite(json.loads(json.dumps(suite.config)) | {"imports": []}), "planted", 0)
    np.testing.assert_array_equal(again["X_test"], a["X_test"])
    cancer = load_data(suite, "cancer", 0)
    assert cancer["mask_test"] is None and cancer["X_train"].dtype == np.float32


# -- model quality, labels, curves ---------------------------------------------------------------
def test_model_accuracy_is_stored_once_per_model(suite_dir, reference):
    from xai_suite.bench.runner import load_data, load_model
    from xai_suite.modeling import ModelWrapper

    with ResultsStore(suite_dir / "reference") as store:
        models = store.models()
    assert sorted(zip(models.dataset, models.model, models.seed, strict=True)) == [
        ("cancer", "logreg", 0), ("cancer", "logreg", 1), ("planted", "cnn1d", 0), ("planted", "cnn1d", 1)]
    suite = load_suite(suite_dir / "suite.toml")
    for row in models.itertuples():
        data = load_data(suite, row.dataset, row.seed)
        model = load_model(suite, row.dataset, row.model, row.seed)
        with ModelWrapper(model).prepared() as w:
            pred = w.predict(__import__("torch").from_numpy(data["X_test"]), 64).argmax(1)
        assert row.n_test == len(data["y_test"])  # the whole test split, not the explained rows
        assert row.n_correct == int((pred == data["y_test"]).sum())
        assert row.accuracy == pytest.approx(row.n_correct / row.n_test)
        assert row.majority == pytest.approx(np.bincount(data["y_test"]).max() / row.n_test)
    assert (models[models.model == "logreg"].accuracy > 0.9).all()  # breast cancer is easy


CURVE_SUITE = {
    "name": "curves", "seeds": [0], "n_instances": 5,
    "datasets": [{"loader": "make_planted_timeseries", "label": "planted",
                  "params": {"n_samples": 48, "n_channels": 2, "length": 12, "random_state": 0}}],
    "models": [{"name": "cnn1d", "params": {"widths": [4], "kernels": [3], "epochs": 3}}],
    "baselines": ["zeros"],
    "explainers": [
        {"name": "captum:integrated_gradients", "params": {"n_steps": 8}},
        {"name": "captum:integrated_gradients", "label": "ig(2 steps)", "params": {"n_steps": 2}},
    ],
    "metrics": [
        {"name": "deletion_auc", "params": {"n_steps": 6}},
        {"name": "deletion_auc", "label": "deletion(noise)",
         "params": {"n_steps": 4, "replacement": "uniform"}},
        {"name": "insertion_auc", "params": {"n_steps": 5}},
    ],
}


@pytest.fixture(scope="module")
def curve_run(suite_dir):
    path = run_suite(CURVE_SUITE, suite_dir / "curves", progress=False)
    with ResultsStore(path) as store:
        return store.results(), store.curves(), store.units(), store.meta()


def test_labels_give_two_entries_of_one_explainer(curve_run):
    units = expand_units(load_suite(CURVE_SUITE))
    assert [(u.explainer, u.explainer_name, u.explainer_params) for u in units] == [
        ("captum:integrated_gradients", "captum:integrated_gradients", {"n_steps": 8}),
        ("ig(2 steps)", "captum:integrated_gradients", {"n_steps": 2})]
    results, _, units, meta = curve_run
    assert (units.status == "done").all() and set(units.explainer) == {"captum:integrated_gradients",
                                                                       "ig(2 steps)"}
    assert set(results.metric) == {"deletion_auc", "deletion(noise)", "insertion_auc"}
    assert meta["metrics"]["deletion(noise)"]["metric"] == "deletion_auc"
    # the two labelled entries really ran with their own params: same rows, different areas
    wide = results.pivot_table(index=["metric", "instance"], columns="explainer", values="value")
    assert not np.allclose(wide["captum:integrated_gradients"], wide["ig(2 steps)"])


def test_stored_areas_are_the_trapezoids_of_the_stored_curves(curve_run):
    results, curves, _, _ = curve_run
    n_steps = {"deletion_auc": 6, "deletion(noise)": 4, "insertion_auc": 5}
    keys = ["explainer", "baseline", "metric", "instance"]
    assert len(curves) == sum(len(results[results.metric == m]) * (s + 1) for m, s in n_steps.items())
    for key, c in curves.groupby(keys):
        c = c.sort_values("step")
        assert c.step.tolist() == list(range(n_steps[key[2]] + 1))
        np.testing.assert_allclose(c.fraction, np.arange(len(c)) / n_steps[key[2]])
        area = results.set_index(keys).loc[key, "value"]
        assert area == pytest.approx(np.trapezoid(c.value, c.fraction), rel=1e-12, abs=1e-12)
    assert ((curves.value >= 0) & (curves.value <= 1)).all()  # deletion_output "probability": softmax
    # same replacement (the zeros baseline): deleting everything = inserting nothing, and back
    ends = curves[curves.metric.isin(["deletion_auc", "insertion_auc"]) & curves.fraction.isin([0.0, 1.0])]
    ends = ends.pivot_table(index=["explainer", "instance"], columns=["metric", "fraction"], values="value")
    np.testing.assert_allclose(ends[("deletion_auc", 1.0)], ends[("insertion_auc", 0.0)], rtol=1e-6)
    np.testing.assert_allclose(ends[("deletion_auc", 0.0)], ends[("insertion_auc", 1.0)], rtol=1e-6)
    assert not np.allclose(ends[("deletion_auc", 0.0)], ends[("deletion_auc", 1.0)])


def test_curve_areas_equal_the_metric_computed_directly(suite_dir, curve_run):
    from xai_suite.bench.runner import instances, load_data, load_model
    from xai_suite.metrics.registry import compute_metric
    from xai_suite.registry import create_explainer

    results, _, _, _ = curve_run
    suite = load_suite(CURVE_SUITE)
    data, model = load_data(suite, "planted", 0), load_model(suite, "planted", "cnn1d", 0)
    rows = instances(len(data["X_test"]), 5, 0)
    exp = create_explainer("captum:integrated_gradients", model, n_steps=2,
                           baseline="zeros").explain(data["X_test"][rows])
    _, curves, _, _ = curve_run
    start = curves[(curves.explainer == "ig(2 steps)") & (curves.metric == "deletion_auc")
                   & (curves.step == 0)]
    from xai_suite.batching import softmax

    # the predicted class's probability: deletion_output "probability" softmaxes cnn1d's logits
    np.testing.assert_allclose(start.value, softmax(exp.predictions).max(1), rtol=1e-5)
    for label, name, params in (("deletion(noise)", "deletion_auc",
                                 {"n_steps": 4, "replacement": "uniform", "random_state": 0}),
                                ("insertion_auc", "insertion_auc", {"n_steps": 5, "random_state": 0})):
        params["softmax"] = True
        stored = results[(results.explainer == "ig(2 steps)") & (results.metric == label)]
        assert stored.instance.tolist() == rows.tolist()
        np.testing.assert_allclose(stored.value, compute_metric(name, exp, model=model, **params),
                                   rtol=1e-6, atol=1e-7)


def test_metrics_record_what_features_are_removed_towards(curve_run):
    metrics = curve_run[3]["metrics"]
    assert metrics["deletion_auc"]["removed towards"] == "each explanation's own baseline"
    assert metrics["deletion(noise)"]["removed towards"] == (
        'shared: {"high": null, "low": null, "name": "uniform"}')


def test_rerun_adds_no_curve_and_a_unit_is_all_or_nothing(suite_dir, curve_run):
    from xai_suite.bench.store import UnitResult

    path = run_suite(CURVE_SUITE, suite_dir / "curves", progress=False)
    with ResultsStore(path) as store:
        assert len(store.curves()) == len(curve_run[1])
        n_results, n_curves = len(store.results()), len(store.curves())
        bad = UnitResult("planted|cnn1d|9|x|-", "planted", "cnn1d", 9, "x", "-",
                         rows=[("m", 0, 1.0, 0.1)], curves=[("m", 0, 0, 0.0, 1.0), ("m", 0, 0, 0.0, 1.0)],
                         model_quality={"n_test": 4, "n_correct": 2, "accuracy": 0.5, "n_classes": 2,
                                        "majority": 0.5})
        with pytest.raises(sqlite3.IntegrityError):
            store.write_unit("curves", bad)  # a duplicate curve point: the whole unit rolls back
        assert (len(store.results()), len(store.curves())) == (n_results, n_curves)
        assert "planted|cnn1d|9|x|-" not in store.finished_units()
        assert len(store.models()) == 1


@pytest.mark.parametrize("changes, match", [
    ({"explainers": [{"select": {"family": "gradient"}, "label": "grads"}]}, "select entry takes no label"),
    ({"explainers": [{"name": "captum:saliency", "label": "x"},
                     {"name": "captum:integrated_gradients", "label": "x"}]}, "names two explainers"),
    ({"explainers": [{"name": "captum:saliency", "label": "a|b"}]}, "without '\\|'"),
    ({"metrics": ["test_run_abs_sum", {"name": "test_run_abs_sum"}]}, "two metrics are labelled"),
    ({"models": [{"name": "cnn1d", "datasets": ["planted-x"]}]}, "did you mean 'planted'"),
    ({"models": [{"name": "cnn1d", "datasets": "planted"}]}, "non-empty list of dataset labels"),
    ({"explainers": [{"name": "captum:integrated_gradients", "quick_params": {"n_step": 2}}],
      "quick": {"seeds": [0]}}, "did you mean 'n_steps'"),
])
def test_label_and_restriction_errors(suite_dir, changes, match):
    cfg = _cfg(suite_dir, **changes)
    cfg["datasets"] = [{"loader": "make_planted_timeseries", "label": "planted", "params": {"n_samples": 40}}]
    with pytest.raises(ConfigError, match=match):
        load_suite(cfg, quick=True)


def test_model_restricted_to_datasets_and_explainer_quick_params(suite_dir):
    cfg = _cfg(suite_dir, models=[{"name": "cnn1d", "datasets": ["b"]}, {"name": "fcn", "datasets": ["a"]}],
               explainers=[{"name": "captum:integrated_gradients", "params": {"n_steps": 8},
                            "quick_params": {"n_steps": 2}}])
    cfg["datasets"] = [{"loader": "make_planted_timeseries", "label": label, "params": {"n_samples": 40}}
                       for label in ("a", "b")]
    for quick, steps in ((False, 8), (True, 2)):
        units = expand_units(load_suite(cfg, quick=quick))
        assert [(u.dataset, u.model) for u in units] == [("a", "fcn"), ("b", "cnn1d")]
        assert all(u.explainer_params == {"n_steps": steps} for u in units)


def test_shared_baseline_suite_sweeps_one_baseline_across_three_libraries(tmp_path):
    """The shipped suite shared-baseline.toml: one baseline name means the same reference for Captum's
    IG and both KernelSHAPs (their background), and deletion runs towards each explanation's own
    baseline and towards one shared, fitted replacement."""

    suite_path = SUITES_DIR / "shared-baseline.toml"
    units = expand_units(load_suite(suite_path, quick=True))
    assert {(u.explainer, u.baseline) for u in units} == {
        (e, b) for e in ("captum:integrated_gradients", "shap:kernel", "native:kernel_shap")
        for b in ("zeros", "training_mean", "training_sample")}
    path = run_suite(suite_path, tmp_path, quick=True, progress=False)
    with ResultsStore(path) as store:
        rows, done = store.results(), store.units()
    assert (done.status == "done").all()
    area = rows[rows.metric.str.startswith("deletion_auc")].pivot_table(
        index=["metric", "baseline", "instance"], columns="explainer", values="value")
    # shap's KernelExplainer and ours explain the same game under the same background
    np.testing.assert_allclose(area["shap:kernel"], area["native:kernel_shap"], atol=0.02)
    own, shared = (area.xs(m, level="metric")
                   for m in ("deletion_auc(own baseline)", "deletion_auc(training_mean)"))
    # training_sample deletes towards random training rows by its own measure, towards the
    # training mean by the shared one: the two columns differ
    assert not np.allclose(own.xs("training_sample", level="baseline"),
                           shared.xs("training_sample", level="baseline"))


def test_text_suite_scores_text_explanations_over_units(tmp_path):
    """The shipped suite text.toml expands over the text baselines, and a run of it (cut down here)
    explains one prompt per instance: its removal metrics follow each explanation's own
    baseline token or one shared one, and the complete methods' completeness error is ~0."""

    suite_path = SUITES_DIR / "text.toml"
    units = expand_units(load_suite(suite_path, quick=True))
    assert len(units) == 7 * 2 + 1  # GxA takes no baseline
    assert {u.baseline for u in units} == {"pad_token", "unk_token", "-"}
    config = {
        "name": "text-small", "seeds": [0], "n_instances": 3, "baselines": ["pad_token", "unk_token"],
        "datasets": [{"loader": "make_key_prompts", "label": "key", "params": {"n_samples": 240}}],
        "models": [{"name": "key_gpt2", "params": {"steps": 120}}],
        "explainers": [{"name": "native:text_ablation", "params": {"level": "word"}},
                       {"name": "native:text_shapley_sampling", "params": {"n_samples": 4}}],
        "metrics": ["deletion_auc", {"name": "deletion_auc", "label": "shared",
                                     "params": {"replacement": "pad_token"}},
                    "comprehensiveness", "infidelity", "completeness_error"],
    }
    path = run_suite(config, tmp_path, progress=False)
    with ResultsStore(path) as store:
        rows, done, models = store.results(), store.units(), store.models()
    assert (done.status == "done").all() and len(done) == 4
    assert models.accuracy.iloc[0] > 0.9  # the model learned the task
    table = rows.pivot_table(index=["explainer", "baseline", "instance"], columns="metric", values="value")
    assert len(table) == 4 * 3 and table.drop(columns="completeness_error").notna().all().all()
    # completeness only where the method has the property (Shapley sampling's efficiency)
    assert set(rows[rows.metric == "completeness_error"].explainer) == {"native:text_shapley_sampling"}
    own, shared = table["deletion_auc"].unstack("baseline"), table["shared"].unstack("baseline")
    np.testing.assert_allclose(own["pad_token"], shared["pad_token"])
    assert not np.allclose(own["unk_token"], shared["unk_token"])
    shapley = table.xs("native:text_shapley_sampling", level="explainer")["completeness_error"]
    assert (shapley < 1e-4).all()
    assert (table["comprehensiveness"] > 1).all()  # removing the top units (the key) costs the answer


def test_a_second_runner_on_one_store_refuses(suite_dir, tmp_path):
    """While a runner holds a store's lock, another refuses with a clear message (no duplicate
    work, no raw IntegrityError); the lock goes with its holder, so the next run proceeds."""
    import fcntl

    from xai_suite.bench import StoreLockedError

    out = tmp_path / "locked"
    out.mkdir()
    with open(out / "results.lock", "a+") as held:  # what a running runner holds
        held.write("pid 12345")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StoreLockedError, match=r"another runner \(pid 12345\) is writing"):
            run_suite(suite_dir / "suite.toml", out, progress=False, max_units=1)
    run_suite(suite_dir / "suite.toml", out, progress=False, max_units=1)  # released: it runs
    with ResultsStore(out) as store:
        assert len(store.units()) == 1


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = set()
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(stat))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process trees from /proc")
def test_kill_9_of_a_parallel_run_leaves_no_worker(suite_dir, tmp_path):
    """``kill -9`` of a runner with two worker processes: the workers exit within 10 s (they
    watch the runner), the units stored so far stay, and the run resumes."""
    import time

    out = tmp_path / "parallel-killed"
    script = ("import sys; from xai_suite.bench import run_suite; "
              "run_suite(sys.argv[1], sys.argv[2], progress=False, n_jobs=2)")
    env = {**os.environ, "XAI_SUITE_CACHE": str(suite_dir / "cache")}
    env.pop("TEST_BENCH_KILL_AT", None)
    proc = subprocess.Popen([sys.executable, "-c", script, str(suite_dir / "suite.toml"), str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        workers: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            workers |= {c for c in _children(proc.pid) if _alive(c)}
            if len(workers) >= 2 and (out / "results.sqlite").exists():
                with ResultsStore(out) as store:
                    if len(store.units()) >= 1:
                        break
            time.sleep(0.2)
        assert proc.poll() is None and len(workers) >= 2, "the run ended before it could be killed"
        proc.kill()
        proc.wait(10)
        stop = time.monotonic() + 10
        while time.monotonic() < stop and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], "workers outlived the killed runner by 10 s"
    finally:
        proc.kill()
    with ResultsStore(out) as store:
        assert len(store.units()) >= 1


def test_a_full_disk_gives_a_clear_error_and_an_intact_store(tmp_path):
    """SQLite's "database or disk is full" (here: a page limit) becomes StoreFullError naming
    the store and what to do; the units stored before stay, and writing resumes once there
    is room."""
    from xai_suite.bench.store import StoreFullError, UnitResult

    def unit(i: int, n_rows: int) -> UnitResult:
        r = UnitResult(f"d|m|0|e{i}|-", "d", "m", 0, f"e{i}", "-")
        r.rows = [("metric", k, float(k), 0.1) for k in range(n_rows)]
        return r

    with ResultsStore(tmp_path / "run", create=True) as store:
        store.write_unit("s", unit(0, 10))
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 1}")
        with pytest.raises(StoreFullError, match=r"is full .*unit d\|m\|0\|e1\|- was not stored.*resume"):
            store.write_unit("s", unit(1, 20_000))
        assert list(store.units().unit) == ["d|m|0|e0|-"] and len(store.results()) == 10
        store.conn.execute("PRAGMA max_page_count = 1073741823")
        store.write_unit("s", unit(1, 20_000))
        assert len(store.units()) == 2 and len(store.results()) == 20_010
