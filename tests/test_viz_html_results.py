"""HTML views of counterfactuals and concept explanations, and the benchmark report as HTML,
checked in Chromium: offline, no console error, instance pickers, sortable tables with
intervals, hostile names kept as text."""

import base64
import html
import json

import numpy as np
import pandas as pd
import pytest
from test_bench_report import SUITE as REPORT_SUITE
from test_bench_report import suite_run

import xai_suite as xs
from xai_suite.bench.report import _fmt
from xai_suite.metrics.counterfactual import changed_points

HOSTILE = '<script>alert(1)</script>"\u202e'
SHOWN = '<script>alert(1)</script>"<U+202E>'  # how escape() shows it: as text, the bidi control visible


def _pick(view, label: str) -> None:
    """Open the first Plotly dropdown of the page and choose ``label``."""
    view.click(".updatemenu-header-group")
    view.click(f".updatemenu-dropdown-button >> text={label}")
    view.wait_for_timeout(200)


def _figure(view, what: str, fig: str = "fig0"):
    return view.evaluate(f"(() => {{ const gd = document.getElementById('{fig}'); return {what}; }})()")


def _array(value) -> np.ndarray:
    """A Plotly data array as the page holds it: a list, or base64 ``bdata`` with its dtype."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def _clean(tab, view, text: str) -> None:
    """Loaded offline, no error, the hostile string never became markup."""
    assert tab.errors == [] and tab.network() == []
    assert "<script>alert(1)" not in text and "\u202e" not in text
    assert view.locator("script", has_text="alert(1)").count() == 0


def _runs(x, cf):
    """(first, last) changed step of every run of consecutive changed steps, per channel."""
    out = []
    for row in changed_points(x, cf):
        steps = np.flatnonzero(row)
        out += [(r[0], r[-1]) for r in np.split(steps, np.flatnonzero(np.diff(steps) > 1) + 1) if steps.size]
    return out


# -- counterfactuals -------------------------------------------------------------------------------
def test_timeseries_counterfactual_overlay_shading_and_picker(gunpoint, gunpoint_cnn, tmp_path, browser_page):
    X, y, Xt, _ = gunpoint
    exp = xs.create_explainer("native:native_guide", gunpoint_cnn).fit(X, y).explain(Xt[:3])
    path = exp.to_html(tmp_path / "cf.html", channel_names=[HOSTILE])
    tab = browser_page
    view = tab.open(path)
    _clean(tab, view, path.read_text())
    assert _figure(view, "gd.data.map(t => t.visible)") == [True, True, False, False, False, False]
    ys = [_array(y) for y in _figure(view, "gd.data.slice(0, 2).map(t => t.y)")]
    np.testing.assert_allclose(ys, [exp.inputs[0, 0], exp.counterfactuals[0, 0]], rtol=1e-6)
    for i in (0, 1):  # the picker switches traces, shading and title to instance i
        if i:
            _pick(view, "instance 1")
        visible = _figure(view, "gd.data.map(t => t.visible)")
        assert visible == [k // 2 == i for k in range(6)]
        shapes = _figure(view, "(gd.layout.shapes || []).map(s => [s.x0, s.x1])")
        runs = _runs(exp.inputs[i], exp.counterfactuals[i])
        assert runs and shapes == [[a - 0.5, b + 0.5] for a, b in runs]
        title = _figure(view, "gd.layout.title.text")
        status = "valid" if exp.valid[i] else "NOT valid"
        assert f"instance {i}, class {exp.predictions[i].argmax()} -> {exp.metrics['new_class'][i]}" in title
        assert status in title and f"l1 {exp.metrics['l1'][i]:.4g}" in title and "dtw" in title
    assert SHOWN in view.locator(".ytitle").first.text_content()
    rows = view.locator("table tbody tr")
    assert rows.count() == 3
    header = view.locator("table thead th").all_text_contents()
    assert {"valid", "new_class", "l1", "l2", "dtw", "plausibility"} <= set(header)
    valid = view.locator(f"table tbody tr td:nth-child({header.index('valid') + 1})").all_text_contents()
    assert valid == [str(v) for v in exp.valid]
    tab.screenshot("counterfactual_timeseries")


@pytest.fixture(scope="module")
def mixed_cf():
    """Nearest unlike neighbour counterfactuals of a one-hot pipeline on make_mixed_tabular,
    with a hostile column name."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from xai_suite_tabular.frames import TabularModel

    X, y = xs.datasets.make_mixed_tabular(200, random_state=0)
    X = X.rename(columns={"noise": HOSTILE})
    pipe = make_pipeline(ColumnTransformer([("cat", OneHotEncoder(), ["color", "size"])],
                                           remainder=StandardScaler()),
                         LogisticRegression(max_iter=1000)).fit(X, y)
    explainer = xs.create_explainer("native:nearest_unlike_neighbor", TabularModel(pipe, X))
    return explainer.fit(X).explain(X.iloc[:3])


def test_tabular_counterfactual_changes_table_bars_and_picker(mixed_cf, tmp_path, browser_page):
    exp = mixed_cf
    changes = exp.changes()
    assert {"red", "blue", "green"} & set(changes.old.astype(str))  # decoded labels, not codes
    path = exp.to_html(tmp_path / "cf_tab.html")
    tab = browser_page
    view = tab.open(path)
    _clean(tab, view, path.read_text())
    table = view.locator("table").first
    assert table.locator("thead th").all_text_contents() == ["instance", "feature", "old", "new"]
    cells = [r.locator("td").all_text_contents() for r in table.locator("tbody tr").all()]
    assert len(cells) == len(changes)
    for (_, row), shown in zip(changes.iterrows(), cells, strict=True):
        assert shown[1] == row.feature.replace("\u202e", "<U+202E>")
        if isinstance(row.old, str):
            assert shown[2:] == [row.old, row.new]
    assert any(c[1] == SHOWN for c in cells)  # the hostile feature name, as text
    cols = list(exp.feature_names)
    width = exp.feature_ranges[1] - exp.feature_ranges[0]
    for i in (0, 1):
        if i:
            _pick(view, "instance 1")
        assert _figure(view, "gd.data.map(t => t.visible)") == [k // 2 == i for k in range(6)]
        bars = [_array(v) for v in _figure(view, f"[gd.data[{2 * i}].x, gd.data[{2 * i}].y]")]
        numeric = [j for j, f in enumerate(cols) if f not in exp.categories
                   and changed_points(exp.inputs[i, j], exp.counterfactuals[i, j])]
        assert [f.replace("\u202e", "<U+202E>") for f in np.asarray(cols)[numeric]] == [
            html.unescape(v) for v in bars[1]]
        np.testing.assert_allclose(bars[0], (exp.counterfactuals[i, numeric] - exp.inputs[i, numeric])
                                   / width[numeric], rtol=1e-5)
        assert f"instance {i}," in _figure(view, "gd.layout.title.text")
    assert SHOWN in " ".join(view.locator(".ytick").all_text_contents())
    metrics = view.locator("table").nth(1)
    assert metrics.locator("tbody tr").count() == 3
    tab.screenshot("counterfactual_tabular")


# -- concepts --------------------------------------------------------------------------------------
def test_concept_view_bars_prediction_and_picker(tmp_path, browser_page):
    from xai_suite.concepts import ConceptBottleneckModel

    rng = np.random.default_rng(0)
    C = rng.integers(0, 2, (200, 3)).astype(np.float32)
    X = (2 * C - 1 + 0.3 * rng.normal(size=C.shape)).astype(np.float32)
    names = ["c0", HOSTILE, "c2"]
    model = ConceptBottleneckModel(epochs=30, random_state=0).fit(X, C, C[:, 1].astype(np.int64),
                                                                  concept_names=names)
    exp = xs.create_explainer("native:concept_shapley", model).explain(X[:3])
    assert exp.concept_names == names
    path = exp.to_html(tmp_path / "concepts.html")
    tab = browser_page
    view = tab.open(path)
    _clean(tab, view, path.read_text())
    for i in (0, 2):
        if i:
            _pick(view, "instance 2")
        assert _figure(view, "gd.data.map(t => t.visible)") == [k // 2 == i for k in range(6)]
        values = [_array(v) for v in _figure(view, f"[gd.data[{2 * i}].y, gd.data[{2 * i + 1}].y]")]
        np.testing.assert_allclose(values, [exp.concepts[i], exp.attributions[i]], rtol=1e-5, atol=1e-7)
        title = _figure(view, "gd.layout.title.text")
        assert f"instance {i}, task prediction class {exp.predictions[i].argmax()}" in title
    assert SHOWN in " ".join(view.locator(".xtick").all_text_contents())
    header = view.locator("table thead th").all_text_contents()
    rows = [r.locator("td").all_text_contents() for r in view.locator("table tbody tr").all()]
    assert header[:3] == ["instance", "predicted class", "explained class"] and "convergence delta" in header
    assert [r[1] for r in rows] == [str(k) for k in exp.predictions.argmax(1)]
    assert [r[header.index("top concept")] for r in rows] == [
        exp.top_concepts(i, 1)[0].replace("\u202e", "<U+202E>") for i in range(3)]
    tab.screenshot("concepts")


# -- the benchmark report ------------------------------------------------------------------------
# test_bench_report's tiny suite, one seed (--quick), saliency under a hostile label.
SUITE = REPORT_SUITE.replace('name = "captum:saliency"\n',
                             'name = "captum:saliency"\nlabel = "<script>alert(1)</script>\\"\\u202E"\n', 1)


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    with suite_run(tmp_path_factory.mktemp("bench_html"), SUITE, ["--quick"], ["--html"]) as run:
        yield run / "report"


def test_html_report_sorts_by_a_metric_and_shows_intervals(html_report, browser_page):
    summary = pd.read_csv(html_report / "summary.csv", keep_default_na=False)
    assert HOSTILE in set(summary.explainer)
    path = html_report / "report.html"
    tab = browser_page
    view = tab.open(path)
    _clean(tab, view, path.read_text())
    table = view.locator("table", has=view.locator("th", has_text="test_rep_abs_sum")).first
    header = table.locator("thead th").all_text_contents()
    col = header.index("test_rep_abs_sum ↓")

    def column(k):
        return table.locator(f"tbody tr td:nth-child({k + 1})").all_text_contents()

    cells = column(col)
    # every cell: mean [low, high] (n=...), the numbers of summary.csv
    s = summary[summary.metric == "test_rep_abs_sum"].set_index(["explainer", "baseline"])
    for explainer, baseline, cell in zip(column(0), column(1), cells, strict=True):
        r = s.loc[(explainer.replace("<U+202E>", "\u202e"), baseline)]
        assert cell.startswith(f"{_fmt(r['mean'])} [{_fmt(r.low)}, {_fmt(r.high)}]") and "(n=4)" in cell
    def methods():
        return [(e.replace("<U+202E>", "\u202e"), b) for e, b in zip(column(0), column(1), strict=True)]

    assert methods() == sorted(s.index.tolist())  # as written: by explainer and baseline
    expected = s.sort_values("mean").index.tolist()
    assert expected != sorted(expected)  # so that sorting by the metric shows
    view.click("th >> text=test_rep_abs_sum ↓")
    assert methods() == expected
    view.click("th >> text=test_rep_abs_sum ↓")
    assert methods() == expected[::-1]
    assert SHOWN in column(0)  # the hostile explainer label, as text
    # the heat map: methods x metrics, each interval on hover; the curves: a band and a mean per method
    heat = _figure(view, "({type: gd.data[0].type, y: gd.data[0].y, customdata: gd.data[0].customdata})")
    assert heat["type"] == "heatmap" and len(heat["y"]) == len(s)
    first = f"[{_fmt(s.iloc[0].low)}, {_fmt(s.iloc[0].high)}]"
    assert any(first in c for row in heat["customdata"] for c in row)
    curves = _figure(view, "gd.data.map(t => [t.fill || '', t.name || ''])", "fig1")
    assert [f for f, _ in curves] == ["toself", ""] * len(s)
    assert view.locator("pre", has_text="report-test").count() == 2  # the config: TOML and JSON
    assert json.loads(view.locator("pre").nth(1).text_content())["name"] == "report-test"
    tab.screenshot("bench_report")
