"""Time-series plots: a dark series over its attribution, heat maps over channels, one scale
across compared methods, class names in titles, counterfactual overlays."""

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

import xai_suite as xs
from xai_suite.testing import reference_problem
from xai_suite.viz import SERIES_COLOR, plot_comparison, plot_series

NAMES = ("low", "mid", "high")  # the reference problem's 3 classes


@pytest.fixture(scope="module")
def explained():
    model, X, y, x = reference_problem("timeseries")  # 2 channels x 24 steps
    return model, X, y, xs.explain(model, x, method="integrated_gradients", n_steps=8)


def test_lines_and_heatmap_show_every_channel(explained):
    *_, exp = explained
    a = exp.attributions[1]
    lim = np.abs(a).max()
    ax = exp.plot(1)
    fig = ax.figure
    rows = [axi for axi in fig.axes if axi.get_ylabel().startswith("channel")]
    assert [r.get_ylabel() for r in rows] == ["channel 0", "channel 1"]
    for i, r in enumerate(rows):
        # the series: one neutral line, never coloured by the attribution (no white on white)
        assert len(r.lines) == 1 and not r.collections
        assert to_rgba(r.lines[0].get_color()) == to_rgba(SERIES_COLOR)
        np.testing.assert_array_equal(r.lines[0].get_ydata(), exp.inputs[1, i])
        # the attribution: shading behind it, one colour per step, symmetric limits
        shade = r.images[0]
        np.testing.assert_array_equal(shade.get_array()[0], a[i])
        assert shade.get_clim() == pytest.approx((-lim, lim))
    bars = [axi for axi in fig.axes if axi.get_ylabel() == "attribution"]
    assert len(bars) == 1  # one colour bar for all channels
    plt.close(fig)
    ax = exp.plot(1, kind="heatmap")
    np.testing.assert_array_equal(ax.images[0].get_array(), a)
    lo, hi = ax.images[0].get_clim()
    assert lo == -hi and hi == pytest.approx(np.abs(a).max())  # symmetric: sign is visible
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="'lines' or 'heatmap'"):
        exp.plot(0, kind="bars")
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="pass ax=None to plot a multichannel series"):
        exp.plot(0, ax=ax)
    with pytest.raises(ValueError, match="limit must be a positive finite number"):
        plot_series(exp.inputs[0], exp.attributions[0], limit=0.0)
    plt.close("all")


def test_titles_name_the_class(explained):
    *_, exp = explained
    i = 2
    t, k = int(exp.target[i]), int(exp.predictions[i].argmax())
    assert t == k  # explained: the predicted class
    ax = exp.plot(i, class_names=NAMES)
    assert ax.get_title().startswith(f"{exp.method}: class {NAMES[t]} (output ")
    assert "predicted" not in ax.get_title()
    plt.close(ax.figure)
    ax = exp.plot(i, kind="heatmap")  # no names: the class index
    assert f": class {t} (output" in ax.get_title()
    plt.close(ax.figure)
    other = (t + 1) % 3  # a class other than the predicted one: both are named
    ax = dataclasses.replace(exp, target=np.full(len(exp), other)).plot(i, class_names=NAMES)
    assert f"class {NAMES[other]} (output " in ax.get_title()
    assert ax.get_title().endswith(f"predicted class {NAMES[k]}")
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="class_names must name each of the model's 3 outputs"):
        exp.plot(i, class_names=NAMES[:2])


def test_comparison_shares_one_colour_scale(explained):
    uni, *_, xu = reference_problem("timeseries", n_channels=1)
    exps = [xs.explain(uni, xu, method="integrated_gradients", n_steps=8),
            xs.create_explainer("captum:saliency", uni).explain(xu),
            xs.create_explainer("captum:occlusion", uni).explain(xu)]
    peaks = [np.abs(e.attributions[1]).max() for e in exps]
    assert max(peaks) > 1.2 * min(peaks)  # per-panel scales would differ
    fig = plot_comparison(exps, 1, titles=["IG", "Saliency", "Occlusion"], class_names=NAMES)
    panels = [ax for ax in fig.axes if ax.get_ylabel() == "channel 0"]
    assert [ax.get_title() for ax in panels] == ["IG", "Saliency", "Occlusion"]
    for ax, e in zip(panels, exps, strict=True):
        assert ax.images[0].get_clim() == pytest.approx((-max(peaks), max(peaks)))
        np.testing.assert_array_equal(ax.images[0].get_array()[0], e.attributions[1, 0])
        assert to_rgba(ax.lines[0].get_color()) == to_rgba(SERIES_COLOR)
    assert sum(ax.get_ylabel() == "attribution" for ax in fig.axes) == 1  # one colour bar
    assert fig.get_suptitle() == f"instance 1: attributions for class {NAMES[int(exps[0].target[1])]}"
    plt.close(fig)
    with pytest.raises(ValueError, match="univariate"):
        plot_comparison([explained[3]])
    with pytest.raises(ValueError, match="differs between the explanations"):
        plot_comparison([exps[0], xs.explain(uni, xu[::-1], method="integrated_gradients", n_steps=8)])
    with pytest.raises(ValueError, match="titles has 1 entries for 3"):
        plot_comparison(exps, titles=["IG"])


def test_counterfactual_overlay_shades_exactly_the_changed_steps(explained):
    model, X, y, x = explained[0], explained[1], explained[2], explained[3].inputs
    exp = xs.create_explainer("native:native_guide", model).fit(X, y).explain(x)
    for i in range(len(x)):
        ax = exp.plot(i)
        changed = np.flatnonzero((exp.counterfactuals[i] != exp.inputs[i]).any(0))
        shaded = set()
        for axi in ax.figure.axes:
            for patch in axi.patches:  # axvspan rectangles [r0 - 0.5, r1 + 0.5]
                x0 = patch.get_x()
                shaded |= set(range(int(np.ceil(x0)), int(np.ceil(x0 + patch.get_width()))))
        assert shaded == set(changed.tolist())
        lines = ax.lines
        np.testing.assert_array_equal(lines[0].get_ydata(), exp.inputs[i, 0])
        np.testing.assert_array_equal(lines[1].get_ydata(), exp.counterfactuals[i, 0])
        assert ("NOT valid" in ax.get_title()) != bool(exp.valid[i])
        plt.close(ax.figure)
    with pytest.raises(IndexError, match="out of range"):
        exp.plot(len(x))
