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
    # a straight path to a digit switches many ReLUs and max-pool winners, so the integrand is
    # rough and how well a rule does depends on the trained weights: over 5 training seeds the
    # largest error of Gauss-Legendre (a rule for smooth integrands) at 128 steps was 0.93%
    # (training_sample) and 1.96% (uniform), and one model gave 2.1%; the trapezoid rule left
    # at most 0.68% for every image baseline and seed at 512 steps, 0.51% at 1024
    exp = xs.explain(digits_cnn, Xt[:n], method="native:integrated_gradients", n_steps=1024,
                     quadrature="riemann_trapezoid",
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


# -- planted-patch images ----------------------------------------------------------------------
def test_planted_patch_images_design():
    noise, p = 0.3, 4
    X, y, mask = xs.datasets.make_planted_patch_images(60, size=16, patch_size=p, noise=noise,
                                                        random_state=3)
    assert X.shape == mask.shape == (60, 1, 16, 16) and y.shape == (60,)
    assert X.dtype == np.float32 and y.dtype == np.int64 and mask.dtype == bool
    assert set(np.unique(y)) == {0, 1} and abs(int(y.sum()) - 30) <= 1  # balanced
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert not mask[y == 0].any()
    flat = X.reshape(60, -1)
    grey = (flat > noise) & (flat < 1 - noise)  # only the distractor lies strictly between
    bright = flat >= 1 - noise  # only the checkerboard's bright cells
    assert (grey.sum(1) == p * p).all()  # every image, whatever its class, has one distractor
    assert (bright.sum(1) == np.where(y == 1, p * p // 2, 0)).all()
    for i in np.flatnonzero(y == 1):  # the mask is one p x p square holding the checkerboard
        rows, cols = np.nonzero(mask[i, 0])
        r0, c0 = rows.min(), cols.min()
        assert mask[i, 0].sum() == p * p and rows.max() - r0 == p - 1 and cols.max() - c0 == p - 1
        patch = X[i, 0, r0:r0 + p, c0:c0 + p]
        checker = np.add.outer(np.arange(p), np.arange(p)) % 2 == 0
        assert (patch[checker] >= 1 - noise).all() and (patch[~checker] <= noise).all()
        assert not grey[i].reshape(16, 16)[mask[i, 0]].any()  # the distractor never overlaps it
    # both squares have the same mean brightness (0.5 in expectation): texture, not brightness
    assert abs(X[mask].mean() - flat[grey].mean()) < 0.03


def test_planted_patch_images_channels_seed_and_errors():
    X, y, mask = xs.datasets.make_planted_patch_images(20, size=12, patch_size=3, n_channels=3,
                                                        random_state=0)
    assert X.shape == (20, 3, 12, 12)
    assert (mask == mask[:, :1]).all()  # the square spans every channel
    assert not np.array_equal(X[:, 0], X[:, 1])  # with each channel's own noise
    again = xs.datasets.make_planted_patch_images(20, size=12, patch_size=3, n_channels=3,
                                                   random_state=0)
    for a, b in zip((X, y, mask), again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(X, xs.datasets.make_planted_patch_images(
        20, size=12, patch_size=3, n_channels=3, random_state=1)[0])
    assert "make_planted_patch_images" in xs.datasets.list_datasets()
    with pytest.raises(ValueError, match=r"size must be at least 2 \* patch_size = 8"):
        xs.datasets.make_planted_patch_images(10, size=7, patch_size=4)
    with pytest.raises(ValueError, match="patch_size must be >= 2"):
        xs.datasets.make_planted_patch_images(10, patch_size=1)
    with pytest.raises(ValueError, match=r"noise must be a float in \[0, 0.5\]"):
        xs.datasets.make_planted_patch_images(10, noise=0.7)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        xs.datasets.make_planted_patch_images(0)
    with pytest.raises(TypeError, match="random_state"):
        xs.datasets.make_planted_patch_images(10, random_state=1.5)


def test_cnn2d_bias_option():
    biased, free = CNN2d(1, 2), CNN2d(1, 2, bias=False)
    assert any(n.endswith("bias") for n, _ in biased.named_parameters())
    assert not any(n.endswith("bias") for n, _ in free.named_parameters())
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():  # bias-free ReLU network: positively homogeneous of degree 1
        torch.testing.assert_close(free(2.5 * x), 2.5 * free(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="bias must be a bool"):
        CNN2d(1, 2, bias=1)


# -- image baselines -----------------------------------------------------------------------------
def test_black_white_gray_values_and_registry():
    from xai_suite.baselines import ensure_baseline
    from xai_suite_image import Black, Gray, White

    names = set(xs.list_baselines("image"))
    assert {"black", "white", "gray"} <= names
    others = set(xs.list_baselines("timeseries") + xs.list_baselines("tabular"))
    assert not {"black", "white", "gray"} & others
    x = torch.rand(4, 3, 5, 6)
    rng = np.random.default_rng(0)
    for name, value in (("black", 0.0), ("white", 1.0), ("gray", 0.5)):
        b = ensure_baseline(name).sample(x, np.zeros(4, dtype=int), 3, rng)
        assert b.shape == (1, 4, 3, 5, 6) and b.dtype == x.dtype  # deterministic: one draw
        assert (b == value).all()
    for cls, value in ((Black, -1.0), (White, 3.0), (Gray, 1.0)):
        b = cls(low=-1.0, high=3.0).sample(x, np.zeros(4, dtype=int), 1, rng)
        assert (b == value).all()
    assert Gray(low=0, high=255).describe() == {"name": "gray", "low": 0, "high": 255}


def test_image_baselines_refuse_other_modalities_and_bad_ranges():
    from xai_suite_image import Gray, White

    series = torch.rand(2, 3, 10)
    with pytest.raises(ValueError, match=r"baseline 'gray' applies to image inputs; got timeseries"):
        Gray().sample(series, np.zeros(2, dtype=int), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="needs low < high"):
        White(low=1.0, high=0.0).sample(torch.rand(1, 1, 4, 4), np.zeros(1, dtype=int), 1,
                                        np.random.default_rng(0))
    with pytest.raises(ValueError, match="high must be a finite number"):
        Gray(high=float("nan")).sample(torch.rand(1, 1, 4, 4), np.zeros(1, dtype=int), 1,
                                       np.random.default_rng(0))


def test_gray_baseline_through_ig_records_and_uses_it(digits, digits_cnn):
    _, _, Xt, _ = digits
    exp = xs.explain(digits_cnn, Xt[:4], method="native:integrated_gradients", baseline="gray",
                     n_steps=64)
    assert exp.params["baseline"] == {"name": "gray", "low": 0.0, "high": 1.0}
    assert (exp.baselines == 0.5).all()
    explicit = xs.explain(digits_cnn, Xt[:4], method="native:integrated_gradients", n_steps=64,
                          baselines=np.full((1, 8, 8), 0.5, dtype=np.float32), target=exp.target)
    np.testing.assert_allclose(exp.attributions, explicit.attributions, rtol=1e-6, atol=1e-7)


# -- feature masks ---------------------------------------------------------------------------
def test_patch_mask_grid_partial_edges_and_channels():
    from xai_suite_image import patch_mask

    m = patch_mask((16, 16), 4)
    assert m.shape == (16, 16) and m.dtype == np.int64
    np.testing.assert_array_equal(m, np.kron(np.arange(16).reshape(4, 4), np.ones((4, 4), int)))
    edge = patch_mask((10, 7), (4, 3))  # 3 x 3 patches, the last row 2 high, the last column 1 wide
    assert edge.max() == 8 and set(np.unique(edge)) == set(range(9))
    sizes = np.bincount(edge.ravel()).reshape(3, 3)
    np.testing.assert_array_equal(sizes, [[12, 12, 4], [12, 12, 4], [6, 6, 2]])
    chw = patch_mask((3, 8, 8), 4)
    assert chw.shape == (3, 8, 8) and (chw == chw[:1]).all() and chw.max() == 3
    per = patch_mask((3, 8, 8), 4, per_channel=True)
    assert set(np.unique(per)) == set(range(12)) and (per[2] == chw[0] + 8).all()
    with pytest.raises(ValueError, match="larger than the image"):
        patch_mask((4, 4), 5)
    with pytest.raises(ValueError, match=r"shape must be \(H, W\) or \(C, H, W\)"):
        patch_mask((2, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="patch_height must be a positive int"):
        patch_mask((4, 4), 0)


def test_patch_mask_groups_perturbation_methods(digits, digits_cnn):
    """Feature ablation over 2x2 patches: one value per patch, f(x) - f(x with the patch at 0);
    non-overlapping occlusion windows of the patch size give the same map."""
    from xai_suite_image import patch_mask

    _, _, Xt, _ = digits
    x = Xt[:5]
    mask = patch_mask((1, 8, 8), 2)
    abl = xs.explain(digits_cnn, x, method="captum:feature_ablation", feature_mask=mask)
    a = abl.attributions
    for label in range(16):
        vals = a[:, mask == label]
        np.testing.assert_allclose(vals, vals[:, :1].repeat(vals.shape[1], 1), rtol=0, atol=0)
    with torch.no_grad():  # patch 5 (rows 2-3, columns 2-3) removed by hand
        cut = x.copy()
        cut[:, :, 2:4, 2:4] = 0
        rows = np.arange(len(x))
        drop = (digits_cnn(torch.from_numpy(x)) - digits_cnn(torch.from_numpy(cut))).numpy()[rows, abl.target]
    np.testing.assert_allclose(a[:, 0, 2, 2], drop, rtol=1e-5, atol=1e-6)
    occ = xs.explain(digits_cnn, x, method="captum:occlusion", window=(1, 2, 2), stride=(1, 2, 2),
                     target=abl.target)
    np.testing.assert_allclose(occ.attributions, a, rtol=1e-5, atol=1e-5)


def test_superpixels_cover_connected_deterministic():
    from scipy import ndimage

    from xai_suite_image import superpixel_mask, superpixel_masks

    X, _, _ = xs.datasets.make_planted_patch_images(3, size=16, n_channels=3, random_state=0)
    m = superpixel_mask(X[0], n_segments=20)
    assert m.shape == (3, 16, 16) and m.dtype == np.int64 and (m == m[:1]).all()
    labels = np.unique(m)
    np.testing.assert_array_equal(labels, np.arange(labels.size))  # every pixel, labels 0..P-1
    assert 8 <= labels.size <= 30
    for k in labels:  # each superpixel is one 4-connected region
        assert ndimage.label(m[0] == k)[1] == 1
    np.testing.assert_array_equal(m, superpixel_mask(X[0], n_segments=20))
    batch = superpixel_masks(X, n_segments=20)
    assert batch.shape == X.shape
    np.testing.assert_array_equal(batch[2], superpixel_mask(X[2], n_segments=20))
    one = superpixel_mask(X[0, :1], n_segments=20)  # grey-scale path
    assert one.shape == (1, 16, 16)
    with pytest.raises(ValueError, match=r"one \(C, H, W\) image"):
        superpixel_mask(X)
    with pytest.raises(ValueError, match="compactness must be a positive number"):
        superpixel_mask(X[0], compactness=0)


def test_superpixel_masks_with_feature_ablation(digits, digits_cnn):
    from xai_suite_image import superpixel_masks

    _, _, Xt, _ = digits
    x = Xt[:3]
    masks = superpixel_masks(x, n_segments=8)
    a = xs.explain(digits_cnn, x, method="captum:feature_ablation", feature_mask=masks).attributions
    for i in range(3):
        for k in np.unique(masks[i]):
            assert np.ptp(a[i][masks[i] == k]) == 0


def test_superpixels_need_scikit_image(monkeypatch):
    import sys

    from xai_suite_image import superpixel_mask

    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r'pip install "xai-suite\[image\]"'):
        superpixel_mask(np.zeros((1, 8, 8)))
