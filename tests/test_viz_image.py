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


def test_baseline_grid_draws_the_attributions_of_each_baseline(model, data, tmp_path):
    X, y, _ = data
    image = X[1]
    baselines = xs.list_baselines("image")
    path = tmp_path / "grid.png"
    fig = plot_baseline_grid(model, image, fit_data=(X, y), path=path, n_steps=16, ncols=5)
    assert len(fig.axes) == 1 + len(baselines)  # the image, then one panel per baseline
    assert path.stat().st_size > 5000
    assert fig.axes[0].get_title().startswith("input")
    for name, ax in zip(baselines, fig.axes[1:], strict=True):
        direct = xs.explain(model, image[None], method="integrated_gradients", baseline=name,
                            fit_data=(X, y), random_state=0, n_steps=16)
        np.testing.assert_allclose(ax.images[1].get_array(), direct.attributions[0].sum(0),
                                   rtol=1e-6, atol=1e-7)
        title = ax.get_title()
        assert title.startswith(name + "\n")
        assert f"err {float(direct.convergence_delta[0]):+.1e}" in title
        with torch.no_grad():
            p = model(torch.from_numpy(direct.baselines[:, 0])).softmax(1)[:, direct.target[0]].mean()
        assert f"p(b) {float(p):.2f}" in title


def test_baseline_grid_defaults_and_errors(model, data):
    X, _, _ = data
    fig = plot_baseline_grid(model, X[0], n_steps=8)  # no training data: those needing it are left out
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes[1:]]
    assert "gray" in titles and "blur" in titles and "training_mean" not in titles
    fig = plot_baseline_grid(model, X[0], method="captum:occlusion", baselines=["black", 0.25],
                             window=(1, 2, 2))
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[1:]] == ["black", "constant"]
    assert "err n/a" in fig.axes[1].get_title()  # occlusion has no completeness error
    with pytest.raises(ValueError, match="baseline 'training_mean' learns from training data"):
        plot_baseline_grid(model, X[0], baselines=["training_mean"])
    with pytest.raises(ValueError, match="takes no baseline"):
        plot_baseline_grid(model, X[0], method="captum:saliency")
    with pytest.raises(ValueError, match=r"one \(C, H, W\) image"):
        plot_baseline_grid(model, X[:2])


def test_plot_explanation_overlays_into_a_given_axes(model, data):
    X, _, _ = data
    exp = xs.explain(model, X[:2], method="captum:saliency")
    _, ax = plt.subplots()
    out = exp.plot(1, ax=ax)
    assert out is ax
    np.testing.assert_allclose(ax.images[1].get_array(), exp.attributions[1].sum(0))
