"""Image adapter: the digits images, the CNN2d model and its zoo entry, IG on images."""

import numpy as np
import pytest
import torch

import xai_suite as xs
import xai_suite_image  # noqa: F401 (registers its datasets, whether or not the entry point is installed)
from xai_suite.bench.models import build_model, list_models, model_info
from xai_suite.modeling import fit_classifier
from xai_suite_image import CNN2d


@pytest.fixture(scope="module")
def digits():
    X, y = xs.datasets.load_digits_images("train")
    Xt, yt = xs.datasets.load_digits_images("test")
    return X, y, Xt, yt


@pytest.fixture(scope="module")
def digits_cnn(digits):
    """CNN2d trained on the digits for about 2 s on one thread (test accuracy 0.98-0.99 over seeds)."""
    X, y, _, _ = digits
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        return fit_classifier(CNN2d(1, 10), X, y, epochs=20, lr=5e-3, batch_size=32, random_state=0)
    finally:
        torch.set_num_threads(prev)


def _accuracy(model, X, y) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(X)).argmax(1).numpy() == y).mean())


# -- data --------------------------------------------------------------------------------------
def test_digits_shapes_range_and_registry(digits):
    X, y, Xt, yt = digits
    Xa, ya = xs.datasets.load_digits_images("all")
    assert Xa.shape == (1797, 1, 8, 8) and ya.shape == (1797,)
    assert X.shape == (1347, 1, 8, 8) and Xt.shape == (450, 1, 8, 8)
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert Xa.min() == 0.0 and Xa.max() == 1.0  # 0..16 ink counts divided by 16
    assert np.array_equal(np.unique(Xa * 16), np.arange(17))
    assert set(np.unique(ya)) == set(range(10))
    # the images are scikit-learn's, in the same orientation (not transposed)
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(Xa[:, 0] * 16, load_digits().images)
    assert "load_digits_images" in xs.datasets.list_datasets()


def test_digits_split_disjoint_stratified_reproducible(digits):
    X, y, Xt, yt = digits
    Xa, _ = xs.datasets.load_digits_images("all")
    # every image appears in exactly one split (the 1797 images are distinct: compare bytes)
    train, test, every = ({a.tobytes() for a in A} for A in (X, Xt, Xa))
    assert len(every) == len(Xa) and len(train) == len(X) and len(test) == len(Xt)
    assert not train & test and train | test == every
    for k in range(10):  # stratified: class shares agree within one image
        assert abs((y == k).mean() - (yt == k).mean()) < 1.5 / len(yt)
    X2, y2 = xs.datasets.load_digits_images("test")
    np.testing.assert_array_equal(X2, Xt)
    np.testing.assert_array_equal(y2, yt)
    X3, _ = xs.datasets.load_digits_images("test", random_state=1)
    assert not np.array_equal(X3, Xt)
    X4, _ = xs.datasets.load_digits_images("test", test_size=0.5)
    assert len(X4) == 899


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of train, test, all"):
        xs.datasets.load_digits_images("validation")
    with pytest.raises(ValueError, match=r"test_size must be a float in \(0, 1\)"):
        xs.datasets.load_digits_images("train", test_size=1.5)


# -- model -------------------------------------------------------------------------------------
def test_cnn2d_trains_on_digits(digits, digits_cnn):
    _, _, Xt, yt = digits
    assert _accuracy(digits_cnn, Xt, yt) >= 0.95
    assert not digits_cnn.training
    out = digits_cnn(torch.from_numpy(Xt[:3]))
    assert out.shape == (3, 10)


def test_cnn2d_rejects_bad_shapes():
    model = CNN2d(1, 10)
    with pytest.raises(ValueError, match=r"expects \(N, 1, H, W\) images; got shape \(2, 8, 8\)"):
        model(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"expects \(N, 1, H, W\)"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 4x4 pixels; got 3x8"):
        model(torch.zeros(2, 1, 3, 8))
    with pytest.raises(ValueError, match="widths"):
        CNN2d(1, 10, widths=())
    with pytest.raises(ValueError):
        CNN2d(1, 0)


def test_zoo_builds_cnn2d(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_SUITE_CACHE", str(tmp_path))
    X, y, Xt, yt = digits
    assert "cnn2d" in list_models() and model_info("cnn2d").modality == "image"
    assert model_info("cnn2d").kind == "torch"
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_model("cnn2d", X, y, random_state=0)
        again = build_model("cnn2d", X, y, random_state=0)  # reloaded from the weight cache
    finally:
        torch.set_num_threads(prev)
    assert isinstance(model, CNN2d) and _accuracy(model, Xt, yt) >= 0.95
    assert model.cache_path_ == again.cache_path_ and model.cache_path_.is_relative_to(tmp_path)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"cnn2d trains on \(N, C, H, W\) images"):
        build_model("cnn2d", X[:, 0], y, random_state=0)


# -- explainers on the digits CNN --------------------------------------------------------------
def test_image_baselines_exist():
    assert {"zeros", "constant", "uniform", "gaussian", "blur", "training_mean", "training_median",
            "training_sample", "nearest_unlike"} <= set(xs.list_baselines("image"))


@pytest.mark.parametrize("baseline", sorted(xs.list_baselines("image")))
def test_ig_completeness_on_digits_cnn(digits, digits_cnn, baseline):
    """sum of IG attributions = f(x) - f(baseline) for every image baseline, to 1% of the change."""
    X, y, Xt, _ = digits
    n = 10
    exp = xs.explain(digits_cnn, Xt[:n], method="native:integrated_gradients", n_steps=128,
                     baseline=baseline, fit_data=(X, y), random_state=0)
    assert exp.attributions.shape == (n, 1, 8, 8) and np.isfinite(exp.attributions).all()
    rows = np.arange(n)
    fx = exp.predictions[rows, exp.target]
    with torch.no_grad():  # the model's own outputs, not the explainer's bookkeeping
        fb = digits_cnn(torch.from_numpy(exp.baselines[0])).numpy()[rows, exp.target]
        fx_model = digits_cnn(torch.from_numpy(Xt[:n])).numpy()[rows, exp.target]
    np.testing.assert_allclose(fx, fx_model, rtol=1e-5, atol=1e-5)
    total = exp.attributions.reshape(n, -1).sum(1)
    err = np.abs(total - (fx - fb))
    assert (err / np.maximum(np.abs(fx - fb), 1.0)).max() < 0.01
    np.testing.assert_allclose(exp.convergence_delta, total - (fx - fb), atol=1e-3)


def test_ig_agrees_with_captum_on_digits_cnn(digits, digits_cnn):
    from captum.attr import IntegratedGradients

    _, _, Xt, _ = digits
    ours = xs.explain(digits_cnn, Xt[:8], method="native:integrated_gradients", n_steps=32,
                      baseline="zeros")
    raw = IntegratedGradients(digits_cnn).attribute(
        torch.from_numpy(Xt[:8]), target=torch.from_numpy(ours.target), n_steps=32,
        method="gausslegendre").detach().numpy()
    assert np.abs(ours.attributions - raw).max() / np.abs(raw).max() < 1e-5
