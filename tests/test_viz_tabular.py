"""Report-ready tabular plots: base values, to_shap, beeswarm / bar / waterfall, decoded labels."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import xai_suite as xs
from xai_suite.testing import reference_problem
from xai_suite.viz import plot_bar, plot_beeswarm, plot_waterfall
from xai_suite_tabular import TabularModel

CATEGORIES = {"color": ("blue", "green", "red"), "size": ("S", "M", "L")}


@pytest.fixture(scope="module")
def mixed():
    """A one-hot pipeline on mixed columns, wrapped as a TabularModel, and KernelSHAP on it."""
    X, y = xs.datasets.make_mixed_tabular(340, random_state=0)
    X_train, X_test = X.iloc[:300], X.iloc[300:].reset_index(drop=True)
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["color", "size"])], remainder=StandardScaler())
    pipe = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(X_train, y[:300])
    model = TabularModel(pipe, X_train)
    explainer = xs.create_explainer("native:kernel_shap", model, n_baseline_samples=30,
                                    random_state=0).fit(X_train)
    return model, explainer, X_train, X_test


@pytest.fixture(scope="module")
def by_prediction(mixed):
    """40 rows, each explained for its predicted class (both classes occur)."""
    _, explainer, _, X_test = mixed
    exp = explainer.explain(X_test)
    assert set(exp.target.tolist()) == {0, 1}
    return exp


def _fx(exp):
    return exp.predictions[np.arange(len(exp)), exp.target].astype(np.float64)


def _ticks(ax):
    """Y tick labels from top to bottom."""
    return [t.get_text() for t in ax.get_yticklabels()][::-1]


# -- base values -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["native:kernel_shap", "shap:kernel"])
def test_kernel_shap_base_values_are_the_expected_value(mixed, method):
    import shap

    model, _, X_train, X_test = mixed
    exp = xs.explain(model, X_test.iloc[:4], method=method, fit_data=X_train, n_baseline_samples=20,
                     random_state=0)
    assert exp.base_values.shape == (4,)
    # additivity: attributions start from the base value and end at the explained output
    np.testing.assert_allclose(exp.attributions.astype(np.float64).sum(1) + exp.base_values, _fx(exp),
                               rtol=0, atol=1e-6)
    # the base value is shap's expected value: the mean output over the background
    background = exp.baselines[:, 0].astype(np.float64)
    expected = shap.KernelExplainer(model, background, link="identity").expected_value
    np.testing.assert_allclose(exp.base_values, np.asarray(expected)[exp.target], rtol=1e-6)


@pytest.mark.parametrize(("method", "params"), [
    ("native:integrated_gradients", {"baseline": "zeros"}),
    ("captum:integrated_gradients", {"baseline": "zeros"}),
    ("native:integrated_gradients", {"baseline": "gaussian", "n_baseline_samples": 3,
                                     "random_state": 0}),
])
def test_integrated_gradients_base_values_are_f_of_the_baseline(method, params):
    import torch

    model, X, y, x = reference_problem("tabular")
    exp = xs.explain(model, x, method=method, fit_data=(X, y), n_steps=16, **params)
    with torch.no_grad():  # f(baseline) for each row's target, averaged over the draws
        out = model(torch.as_tensor(exp.baselines.reshape(-1, x.shape[1]))).numpy()
    f_b = out.reshape(len(exp.baselines), len(x), -1)[:, np.arange(len(x)), exp.target].mean(0)
    np.testing.assert_allclose(exp.base_values, f_b, rtol=1e-5, atol=1e-6)
    # completeness within the convergence delta
    gap = exp.attributions.astype(np.float64).sum(1) + exp.base_values - _fx(exp)
    np.testing.assert_allclose(gap, exp.convergence_delta, rtol=1e-4, atol=1e-5)


def test_methods_without_completeness_have_no_base_values(mixed):
    model, _, X_train, X_test = mixed
    exp = xs.explain(model, X_test.iloc[:3], method="captum:feature_ablation",
                     baselines=model.encode(X_train.iloc[[0]])[0])
    assert exp.base_values is None
    with pytest.raises(ValueError, match="no base values"):
        exp.to_shap()
    with pytest.raises(ValueError, match="no base values"):
        plot_waterfall(exp)
    series = xs.Explanation(np.ones((2, 1, 5)), np.ones((2, 1, 5)), np.zeros(2, np.int64),
                            np.ones((2, 2)), "m", base_values=np.zeros(2))
    with pytest.raises(ValueError, match="to_shap needs a tabular"):
        series.to_shap()
    with pytest.raises(ValueError, match=r"base_values must have shape \(3,\)"):
        xs.Explanation(exp.attributions, exp.inputs, exp.target, exp.predictions, exp.method,
                       base_values=np.zeros(2))


def test_base_values_save_and_load(by_prediction, tmp_path):
    import json

    back = xs.load_explanation(by_prediction.save(tmp_path / "exp.npz"))
    np.testing.assert_array_equal(back.base_values, by_prediction.base_values)
    assert back.categories == CATEGORIES
    # files written before base_values existed still load, without them
    with np.load(tmp_path / "exp.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "base_values"}
    np.savez(tmp_path / "old.npz", **arrays)
    assert "base_values" not in json.loads(str(arrays["meta"]))
    old = xs.load_explanation(tmp_path / "old.npz")
    assert old.base_values is None
    np.testing.assert_array_equal(old.attributions, by_prediction.attributions)


# -- to_shap -----------------------------------------------------------------------------------
def test_to_shap_adds_up_and_shows_labels(by_prediction):
    import shap

    exp = by_prediction
    sh = exp.to_shap()
    assert isinstance(sh, shap.Explanation) and sh.feature_names == list(exp.feature_names)
    np.testing.assert_allclose(sh.values.sum(1) + sh.base_values, _fx(exp), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(sh.data, exp.inputs)
    color = list(exp.feature_names).index("color")
    codes = exp.inputs[:, color].astype(int)
    assert list(sh.display_data[:, color]) == [CATEGORIES["color"][c] for c in codes]
    # shap's own plots take it, and show the labels
    plt.figure()
    shap.plots.waterfall(sh[0], show=False)
    shown = " ".join(t.get_text() for t in plt.gca().get_yticklabels())
    assert f"{CATEGORIES['color'][codes[0]]} = color" in shown
    plt.close("all")


# -- decoded frames and single-instance bars ---------------------------------------------------
def test_to_frame_and_plot_show_category_labels(by_prediction):
    exp = by_prediction
    df = exp.to_frame()
    assert list(df.columns) == ["instance", "feature", "input", "value", "attribution", "target"]
    colors = df[df.feature == "color"]
    assert list(colors.value) == [CATEGORIES["color"][int(c)] for c in colors.input]
    ages = df[df.feature == "age"]
    np.testing.assert_array_equal(ages.value.astype(float), ages.input)
    ax = exp.plot(0)
    labels = {t.get_text().split(" = ")[0]: t.get_text().split(" = ")[1] for t in ax.get_yticklabels()}
    x = exp.inputs[0]
    assert labels["color"] == CATEGORIES["color"][int(x[2])]
    assert labels["size"] == CATEGORIES["size"][int(x[3])]
    assert float(labels["age"]) == pytest.approx(float(x[0]), rel=1e-3)
    plt.close("all")


# -- summary plots -----------------------------------------------------------------------------
def test_summaries_refuse_to_mix_classes(by_prediction):
    for plot in (plot_beeswarm, plot_bar):
        with pytest.raises(ValueError, match=r"different classes \[0, 1\].*explain\(X, target=k\)"):
            plot(by_prediction)
    single = xs.Explanation(by_prediction.attributions[:3], by_prediction.inputs[:3],
                            np.zeros(3, np.int64), by_prediction.predictions[:3], "m",
                            feature_names=by_prediction.feature_names)
    with pytest.raises(ValueError, match=r"no row is explained for class 1.*target=1"):
        plot_bar(single, target=1)
    with pytest.raises(ValueError, match="one explanation per class"):
        plot_bar(by_prediction, target="all")
    with pytest.raises(ValueError, match="class_names must name each of the model's 2"):
        plot_bar(single, class_names=["a"])
    plt.close("all")


def test_bar_is_mean_abs_attribution_of_the_chosen_class(by_prediction):
    exp = by_prediction
    rows = exp.target == 1
    ax = plot_bar(exp, target=1, max_features=4, class_names=["low", "high"])
    means = np.abs(exp.attributions[rows]).mean(0)
    order = np.argsort(-means)[:4]
    assert _ticks(ax) == [exp.feature_names[j] for j in order]
    widths = [p.get_width() for p in ax.patches][::-1]  # drawn bottom to top
    np.testing.assert_allclose(widths, means[order], rtol=1e-6)
    assert ax.get_xlabel() == "mean |attribution| (for high)"
    plt.close("all")


def test_bar_all_classes_draws_one_group_per_class(mixed):
    _, explainer, _, X_test = mixed
    per_class = explainer.explain_all_classes(X_test.iloc[:20])
    ax = plot_bar(per_class, target="all")
    means = np.stack([np.abs(e.attributions).mean(0) for e in per_class])
    order = np.argsort(-means.sum(0))
    assert _ticks(ax) == [per_class[0].feature_names[j] for j in order]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["class 0", "class 1"]
    n = len(order)
    for k in range(2):  # each class's bars, bottom to top
        widths = [p.get_width() for p in ax.patches[k * n : (k + 1) * n]][::-1]
        np.testing.assert_allclose(widths, means[k, order], rtol=1e-6)
    # the planted columns lead (color, size and age decide the label)
    assert set(_ticks(ax)[:3]) == {"color", "size", "age"}
    plt.close("all")


def test_beeswarm_sorts_features_and_colours_by_value(by_prediction):
    exp = by_prediction
    rows = exp.target == 0
    a, x = exp.attributions[rows], exp.inputs[rows]
    ax = plot_beeswarm(exp, target=0)
    order = np.argsort(-np.abs(a).mean(0))
    shown = {"color": "color (blue < green < red)", "size": "size (S < M < L)"}
    assert _ticks(ax) == [shown.get(exp.feature_names[j], exp.feature_names[j]) for j in order]
    points = ax.collections[::-1]  # top to bottom
    for j, pts in zip(order, points, strict=True):
        np.testing.assert_allclose(pts.get_offsets()[:, 0], a[:, j], rtol=1e-6)
    size = list(exp.feature_names).index("size")
    np.testing.assert_allclose(points[list(order).index(size)].get_array(), x[:, size] / 2)
    plt.close("all")


def test_waterfall_goes_from_base_value_to_the_output(by_prediction):
    exp, i = by_prediction, 5
    ax = plot_waterfall(exp, i, max_features=3)
    a, x, base = exp.attributions[i], exp.inputs[i], exp.base_values[i]
    order = np.argsort(-np.abs(a))
    bars = ax.patches  # bottom ("2 other features") to top (the largest)
    assert bars[0].get_x() == pytest.approx(base)
    end = bars[-1].get_x() + bars[-1].get_width()
    assert end == pytest.approx(_fx(exp)[i], abs=1e-6)
    np.testing.assert_allclose([b.get_width() for b in bars],
                               [a[order[3:]].sum(), *a[order[:3]][::-1]], rtol=1e-5, atol=1e-7)
    ticks, names = _ticks(ax), exp.feature_names
    assert ticks[-1] == "2 other features"
    for tick, j in zip(ticks, order[:3], strict=False):  # "feature = value", labels decoded
        name, value = tick.split(" = ")
        assert name == names[j]
        if name in CATEGORIES:
            assert value == CATEGORIES[name][int(x[j])]
        else:
            assert float(value.replace(",", "")) == pytest.approx(float(x[j]), rel=1e-3)
    plt.close("all")


# -- the README example ------------------------------------------------------------------------
def test_readme_example_runs(tmp_path, monkeypatch, readme_example):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(readme_example("plot_beeswarm(exp)"), "README example", "exec"), ns)
    assert {p.name for p in tmp_path.iterdir()} == {"beeswarm.png", "waterfall.png", "bar.png"}
    # the waterfall and the shap Explanation show the categories by their labels
    labels = [t.get_text() for t in plot_waterfall(ns["exp"], 0).get_yticklabels()]
    color = ns["X_test"]["color"].iloc[0]
    assert f"color = {color}" in labels
    assert ns["sh"].display_data[0][list(ns["sh"].feature_names).index("color")] == color
    plt.close("all")
