"""HTML views of explanations: their figures' content, and in Chromium: no error, no network,
controls that change what is shown, hostile text that stays text."""

import numpy as np
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import xai_suite as xs
import xai_suite_image  # noqa: F401 (registers the image baselines)
from xai_suite.viz import baseline_html, comparison_html, html
from xai_suite_image import CNN2d
from xai_suite_tabular import TabularModel

HOSTILE = '<script>alert(1)</script>"\u202e'
#: How Plotly shows the hostile text once escaped (the format character made visible).
SHOWN = '<script>alert(1)</script>"<U+202E>'
#: The hostile text as it is in the figures' JSON (escaped).
PLOTTED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&lt;U+202E&gt;"


@pytest.fixture
def figures(monkeypatch):
    """The Plotly figures that pages get, in order."""
    seen = []
    add = html.Page.figure

    def record(self, fig):
        seen.append(fig)
        return add(self, fig)

    monkeypatch.setattr(html.Page, "figure", record)
    return seen


@pytest.fixture(scope="module")
def series(gunpoint_cnn, gunpoint):
    """Integrated gradients and saliency of 3 GunPoint series, each for class 0."""
    X = gunpoint[0][:3]
    target = np.zeros(3, np.int64)
    return (xs.explain(gunpoint_cnn, X, method="integrated_gradients", target=target, n_steps=16),
            xs.explain(gunpoint_cnn, X, method="captum:saliency", target=target))


@pytest.fixture(scope="module")
def digits():
    X, y = xs.datasets.load_digits_images("train")
    torch.manual_seed(0)
    model = CNN2d(1, 10, widths=(4, 8)).eval()
    return model, X[:40], y[:40]


@pytest.fixture(scope="module")
def mixed():
    """KernelSHAP of a one-hot pipeline on mixed columns, one numeric column hostile-named."""
    X, y = xs.datasets.make_mixed_tabular(330, random_state=0)
    X = X.rename(columns={"noise": HOSTILE})
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["color", "size"])], remainder=StandardScaler())
    pipe = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(X.iloc[:300], y[:300])
    model = TabularModel(pipe, X.iloc[:300])
    explainer = xs.create_explainer("native:kernel_shap", model, n_baseline_samples=20,
                                    random_state=0).fit(X.iloc[:300])
    X_test = X.iloc[300:].reset_index(drop=True)
    return explainer.explain(X_test), explainer.explain(X_test, target=1)


# -- content ------------------------------------------------------------------------------------
def test_timeseries_view_lines_over_symmetric_heat_strips(series, figures, tmp_path):
    exp = series[0]
    path = exp.to_html(tmp_path / "ts.html", class_names=[HOSTILE, "b"], max_instances=2)
    (fig,) = figures
    lines = [t for t in fig.data if t.type == "scatter"]
    strips = [t for t in fig.data if t.type == "heatmap"]
    assert len(lines) == len(strips) == 2  # 2 of the 3 instances, 1 channel each
    for i, (line, strip) in enumerate(zip(lines, strips, strict=True)):
        np.testing.assert_array_equal(line.y, exp.inputs[i, 0])
        np.testing.assert_array_equal(np.asarray(strip.z)[0], exp.attributions[i, 0])
        lim = np.abs(exp.attributions[i]).max()
        assert (strip.zmin, strip.zmax) == pytest.approx((-lim, lim))
    assert fig.layout.xaxis.matches == "x2"  # the line shares the strip's time axis
    assert "attribution %{customdata" in lines[0].hovertemplate and "time %{x}" in lines[0].hovertemplate
    assert strips[0].colorscale[2] == (0.5, "rgb(255,255,255)")  # white at zero
    (menu,) = fig.layout.updatemenus
    assert [b.args[0]["visible"] for b in menu.buttons] == [[True, True, False, False],
                                                            [False, False, True, True]]
    assert "class " + PLOTTED in fig.layout.title.text and exp.method in fig.layout.title.text
    text = path.read_text()
    assert "Showing the first 2 of 3 instances" in text  # never dropped silently
    assert "completeness error" in text and "baseline zeros" in text
    assert "<script>alert(1)" not in text and "\u202e" not in text


def test_image_view_overlay_and_opacity_slider(digits, figures, tmp_path):
    model, X, _ = digits
    exp = xs.explain(model, X[:3], n_steps=8)
    exp.to_html(tmp_path / "img.html")
    (fig,) = figures
    assert len(fig.data) == 6  # image and overlay per instance
    for i in range(3):
        overlay = fig.data[2 * i + 1]
        heat = exp.attributions[i].sum(0)
        np.testing.assert_allclose(np.asarray(overlay.z), heat)
        assert (overlay.zmin, overlay.zmax) == pytest.approx((-np.abs(heat).max(), np.abs(heat).max()))
    (slider,) = fig.layout.sliders
    assert slider.steps[0].args[0] == {"opacity": 0.0} and list(slider.steps[0].args[1]) == [1, 3, 5]
    assert len(fig.layout.updatemenus[0].buttons) == 3


def test_tabular_view_decodes_categories_and_the_waterfall_ends_at_f_x(mixed, figures, tmp_path):
    by_prediction, exp = mixed
    # rows explaining different classes are never pooled: a beeswarm and bars per class, of its rows
    classes, counts = np.unique(by_prediction.target, return_counts=True)
    assert len(classes) == 2
    text = by_prediction.to_html(tmp_path / "mixed.html").read_text()
    assert "so each class gets its own summaries" in text
    swarm0, bars0, swarm1, bars1, _ = figures
    for swarm, bars, k, n in ((swarm0, bars0, classes[0], counts[0]), (swarm1, bars1, classes[1], counts[1])):
        assert all(len(t.x) == n for t in swarm.data)
        rows = by_prediction.attributions[by_prediction.target == k]
        np.testing.assert_allclose(sorted(bars.data[0].x), sorted(np.abs(rows).mean(0)), rtol=1e-6)
    figures.clear()
    path = exp.to_html(tmp_path / "tab.html", class_names=["no", HOSTILE], max_instances=5)
    swarm, bars, water = figures
    ticks = list(swarm.layout.yaxis.ticktext)
    assert "color (blue &lt; green &lt; red)" in ticks and PLOTTED in ticks
    np.testing.assert_allclose(sorted(bars.data[0].x), sorted(np.abs(exp.attributions).mean(0)), rtol=1e-6)
    assert len(water.data) == 5 and len(water.layout.updatemenus[0].buttons) == 5
    for i, trace in enumerate(water.data):
        x = np.asarray(trace.x, np.float64)
        assert trace.measure[0] == "absolute" and trace.measure[-1] == "total"
        assert x[0] == pytest.approx(exp.base_values[i])
        fx = exp.predictions[i, 1] + exp.convergence_delta[i]
        assert x[:-1].sum() == pytest.approx(fx, abs=1e-6)  # ends at f(x)
    ticks = water.layout.updatemenus[0].buttons[1].args[1]["yaxis.ticktext"]
    assert f"color = {exp.categories['color'][int(exp.inputs[1, 2])]}" in ticks
    assert ticks[-1] == f"f(x) = {exp.predictions[1, 1]:.4g}"
    text = path.read_text()
    assert "<script>alert(1)" not in text and "\u202e" not in text


def test_multi_input_explanation_gets_one_section_per_input(figures, tmp_path):
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.s, self.v = torch.nn.Linear(8, 2), torch.nn.Linear(3, 2)

        def forward(self, s, v):
            return self.s(s.flatten(1)) + self.v(v)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    s, v = rng.normal(size=(3, 1, 8)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)
    exp = xs.explain(Two().eval(), (s, v), method="captum:saliency", target=np.zeros(3, np.int64))
    text = exp.to_html(tmp_path / "multi.html").read_text()
    assert "input 0: timeseries (1, 8)" in text and "input 1: tabular (3,)" in text
    assert [f.data[0].type for f in figures] == ["scatter", "scatter", "bar"]


def test_comparison_switches_methods_on_one_colour_scale(series, figures, tmp_path):
    ig, sal = series
    comparison_html([ig, sal], tmp_path / "cmp.html", titles=["IG", HOSTILE], max_instances=2)
    assert len(figures) == 2
    for i, fig in enumerate(figures):
        lim = max(np.abs(ig.attributions[i]).max(), np.abs(sal.attributions[i]).max())
        strips = [t for t in fig.data if t.type == "heatmap"]
        assert [(t.zmin, t.zmax) for t in strips] == [pytest.approx((-lim, lim))] * 2
        np.testing.assert_array_equal(np.asarray(strips[1].z)[0], sal.attributions[i, 0])
        (menu,) = fig.layout.updatemenus
        assert menu.type == "buttons" and [b.label for b in menu.buttons] == ["IG", PLOTTED]
    with pytest.raises(ValueError, match="same inputs: explanation 1"):
        comparison_html([ig, _shifted(sal)], tmp_path / "x.html")
    with pytest.raises(ValueError, match="time-series explanations"):
        comparison_html([xs.explain(torch.nn.Linear(3, 2), np.zeros((1, 3), np.float32))],
                        tmp_path / "x.html")


def _shifted(exp):
    import dataclasses

    return dataclasses.replace(exp, inputs=exp.inputs + 1)


def test_baseline_view_shows_completeness_error_and_p_baseline(digits, figures, tmp_path):
    model, X, y = digits
    names = ["black", "blur", "uniform"]
    exps = [xs.explain(model, X[:2], baseline=b, n_steps=8, random_state=0, fit_data=(X, y)) for b in names]
    text = baseline_html(exps, tmp_path / "base.html", model=model, index=1).read_text()
    (fig,) = figures
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == names
    for e, button in zip(exps, menu.buttons, strict=True):
        with torch.no_grad():
            p = model(torch.from_numpy(e.baselines[:, 1])).softmax(1)[:, e.target[1]].mean()
        head = button.args[1]["title.text"]
        assert f"completeness error {float(e.convergence_delta[1]):+.3g}" in head
        assert f"p(target | baseline) {float(p):.3f}" in head
        assert f">{float(p):.3f}</td>" in text  # and in the table
    np.testing.assert_allclose(np.asarray(fig.data[5].z), exps[2].attributions[1].sum(0))
    with pytest.raises(ValueError, match="the same images for the same targets"):
        baseline_html([exps[0], _shifted(exps[1])], tmp_path / "x.html")


# -- in the browser -------------------------------------------------------------------------------
def _clean(tab, view):
    assert tab.errors == [] and tab.network() == []
    assert view.locator("script", has_text="alert(1)").count() == 0  # no script element added


def _state(view, expr: str, fig: str = "fig0"):
    return view.evaluate(f"(() => {{ const f = document.getElementById('{fig}'); return {expr}; }})()")


def _pick(view, current: str, item: str):
    """Open the dropdown showing ``current`` and choose ``item``."""
    view.locator(".updatemenu-header-group", has_text=current).first.click()
    view.locator(".updatemenu-dropdown-button", has_text=item).first.click()
    view.wait_for_timeout(200)


def test_timeseries_page_in_chromium(series, tmp_path, browser_page):
    tab = browser_page
    view = tab.open(series[0].to_html(tmp_path / "ts.html", class_names=[HOSTILE, "b"]))
    _clean(tab, view)
    assert SHOWN in view.locator(".gtitle").first.text_content()  # the hostile class name, as text
    assert _state(view, "f.data.map(t => t.visible)") == [True, True, False, False, False, False]
    _pick(view, "instance 0", "instance 2")
    assert _state(view, "f.data.map(t => t.visible)") == [False, False, False, False, True, True]
    assert _state(view, "f.layout.title.text").startswith("instance 2")
    tab.screenshot("timeseries")


def test_image_page_in_chromium(digits, tmp_path, browser_page):
    model, X, _ = digits
    exp = xs.explain(model, X[:2], n_steps=8)
    tab = browser_page
    view = tab.open(exp.to_html(tmp_path / "img.html", class_names=[HOSTILE] * 10))
    _clean(tab, view)
    assert SHOWN in view.locator(".gtitle").first.text_content()
    assert _state(view, "f.data[1].opacity") == pytest.approx(0.8)
    view.locator(".slider-group .slider-rail-touch-rect, .slider-rail-touch-rect").first.click(
        position={"x": 2, "y": 5})
    view.wait_for_timeout(200)
    assert _state(view, "[f.data[1].opacity, f.data[3].opacity]") == [0.0, 0.0]
    _pick(view, "instance 0", "instance 1")
    assert _state(view, "f.data.map(t => t.visible)") == [False, False, True, True]
    tab.screenshot("image")


def test_tabular_page_in_chromium(mixed, tmp_path, browser_page):
    exp = mixed[1]
    tab = browser_page
    view = tab.open(exp.to_html(tmp_path / "tab.html", max_instances=3))
    _clean(tab, view)
    assert SHOWN in view.locator("#fig0 .ytick").all_text_contents()  # the hostile feature name
    assert "color (blue < green < red)" in view.locator("#fig0 .ytick").all_text_contents()
    _pick(view, "instance 0", "instance 2")
    assert _state(view, "f.data.map(t => t.visible)", "fig2") == [False, False, True]
    shown = view.locator("#fig2 .ytick").all_text_contents()
    assert f"color = {exp.categories['color'][int(exp.inputs[2, 2])]}" in shown
    tab.screenshot("tabular")


def test_comparison_page_in_chromium(series, tmp_path, browser_page):
    tab = browser_page
    view = tab.open(comparison_html(series, tmp_path / "cmp.html", titles=["IG", HOSTILE], max_instances=1))
    _clean(tab, view)
    view.locator(".updatemenu-button", has_text=SHOWN).first.click()
    view.wait_for_timeout(200)
    assert _state(view, "f.data.map(t => t.visible)") == [False, False, True, True]
    assert SHOWN in view.locator(".gtitle").first.text_content()
    tab.screenshot("comparison")


def test_baselines_page_in_chromium(digits, tmp_path, browser_page):
    model, X, _ = digits
    exps = [xs.explain(model, X[:1], baseline=b, n_steps=8) for b in ["black", "white"]]
    tab = browser_page
    view = tab.open(baseline_html(exps, tmp_path / "base.html", model=model))
    _clean(tab, view)
    view.locator(".updatemenu-button", has_text="white").first.click()
    view.wait_for_timeout(200)
    assert _state(view, "f.data.map(t => t.visible)") == [False, False, True, True]
    assert _state(view, "f.layout.title.text").startswith("baseline white: completeness error")
    assert view.locator("tbody tr td:first-child").all_text_contents() == ["black", "white"]
    tab.screenshot("baselines")
