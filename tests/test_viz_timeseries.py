"""Time-series plots: attribution heat maps over channels, counterfactual overlays."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

import xai_suite as xs
from xai_suite.testing import reference_problem


@pytest.fixture(scope="module")
def explained():
    model, X, y, x = reference_problem("timeseries")  # 2 channels x 24 steps
    return model, X, y, xs.explain(model, x, method="integrated_gradients", n_steps=8)


def test_lines_and_heatmap_show_every_channel(explained):
    *_, exp = explained
    a = exp.attributions[1]
    ax = exp.plot(1)
    fig = ax.figure
    rows = [axi for axi in fig.axes if axi.get_ylabel().startswith("channel")]
    assert [r.get_ylabel() for r in rows] == ["channel 0", "channel 1"]
    for i, r in enumerate(rows):  # the line carries the attribution as its colour
        line = r.collections[0]
        np.testing.assert_allclose(line.get_array(), (a[i][:-1] + a[i][1:]) / 2, rtol=1e-6)
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
    plt.close("all")


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
