"""Image plots: the overlay and the "one image, every baseline" grid (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import xai_suite as xs
import xai_suite_image  # noqa: F401 (registers the image baselines)
from xai_suite.viz.image import plot_baseline_grid, plot_image_attribution
from xai_suite_image import CNN2d


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CNN2d(1, 2, widths=(4, 8)).eval()


@pytest.fixture(scope="module")
def data():
    return xs.datasets.make_planted_patch_images(40, size=8, patch_size=2, random_state=0)


def test_overlay_draws_the_channel_sum_with_symmetric_limits():
    rng = np.random.default_rng(0)
    image = rng.random((3, 6, 5))
    attr = rng.normal(size=(3, 6, 5))
    ax = plot_image_attribution(image, attr, title="t")
    gray, heat = ax.images
    np.testing.assert_allclose(heat.get_array(), attr.sum(0))
    lim = np.abs(attr.sum(0)).max()
    assert heat.get_clim() == pytest.approx((-lim, lim))
    np.testing.assert_allclose(heat.get_alpha(), 0.8 * np.abs(attr.sum(0)) / lim)  # opacity ~ |a|
    assert ax.get_title() == "t"
    mean = image.mean(0)
    np.testing.assert_allclose(gray.get_array(), (mean - mean.min()) / np.ptp(mean))
    assert len(ax.figure.axes) == 2  # the axes and its colorbar
    ax2 = plot_image_attribution(image[0], np.zeros((6, 5)), colorbar=False)  # all-zero map
    assert ax2.images[1].get_clim() == (-1.0, 1.0) and len(ax2.figure.axes) == 1


def test_overlay_rejects_bad_input():
    with pytest.raises(ValueError, match=r"attribution must have the image's shape \(1, 4, 4\)"):
        plot_image_attribution(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))
    with pytest.raises(ValueError, match="alpha must be a number in"):
        plot_image_attribution(np.zeros((4, 4)), np.zeros((4, 4)), alpha=2)
    with pytest.raises(ValueError, match="attribution contains NaN"):
        plot_image_attribution(np.zeros((4, 4)), np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match=r"one image \(C, H, W\) or \(H, W\)"):
        plot_image_attribution(np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 4)))


def _each_baseline(model, images, baselines, method="integrated_gradients", **params):
    return [xs.explain(model, images, method=method, baseline=b, random_state=0, **params)
            for b in baselines]


def test_baseline_grid_draws_the_attributions_of_each_baseline(model, data, tmp_path):
    X, y, _ = data
    image = X[1]
    baselines = xs.list_baselines("image")
    exps = _each_baseline(model, X[:2], baselines, fit_data=(X, y), n_steps=16)
    path = tmp_path / "grid.png"
    fig = plot_baseline_grid(exps, model=model, index=1, path=path, ncols=5)
    assert len(fig.axes) == 1 + len(baselines)  # the image, then one panel per baseline
    assert path.stat().st_size > 5000
    assert fig.axes[0].get_title().startswith("input")
    for name, e, ax in zip(baselines, exps, fig.axes[1:], strict=True):
        np.testing.assert_array_equal(ax.images[1].get_array(), e.attributions[1].sum(0))
        title = ax.get_title()
        assert title.startswith(name + "\n")
        assert f"err {float(e.convergence_delta[1]):+.1e}" in title
        with torch.no_grad():
            p = model(torch.from_numpy(e.baselines[:, 1])).softmax(1)[:, e.target[1]].mean()
        assert f"p(b) {float(p):.2f}" in title
    black = xs.explain(model, image[None], baseline="black", n_steps=16)  # deterministic: same alone
    np.testing.assert_allclose(fig.axes[1 + baselines.index("black")].images[1].get_array(),
                               black.attributions[0].sum(0), rtol=1e-5, atol=1e-6)


def test_baseline_grid_without_model_and_errors(model, data):
    X, _, _ = data
    exps = _each_baseline(model, X[:1], ["black", 0.25], method="captum:occlusion", window=(1, 2, 2))
    fig = plot_baseline_grid(exps)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[1:]] == ["black", "constant"]
    assert "err n/a, p(b) n/a" in fig.axes[1].get_title()  # no completeness error, no model
    assert fig.axes[0].get_title() == f"input\nclass {exps[0].target[0]}"
    with pytest.raises(ValueError, match="at least one explanation"):
        plot_baseline_grid([])
    with pytest.raises(ValueError, match="the same images for the same targets"):
        plot_baseline_grid([exps[0], *_each_baseline(model, X[1:2], ["black"], n_steps=4)])
    with pytest.raises(ValueError, match="index must lie in 0..0"):
        plot_baseline_grid(exps, index=1)
    tabular = xs.explain(torch.nn.Linear(3, 2), np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"explanations of images \(N, C, H, W\)"):
        plot_baseline_grid([tabular])
