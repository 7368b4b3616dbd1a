"""Segment perturbation methods: agreement with Captum, Shapley efficiency, localisation."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import xai_suite as xs
from xai_suite.testing import check_explainer, reference_problem
from xai_suite_timeseries import CNN1d, fit_classifier
from xai_suite_timeseries.perturbation import occlusion_windows, segment_mask

METHODS = ["native:segment_occlusion", "native:segment_ablation", "native:segment_shapley"]
#: Planted data: one informative channel (1) and window (steps 15..24) out of C=4, T=40.
PLANTED = {"n_channels": 4, "length": 40, "layout": "small_middle"}
CHANNEL, WINDOW = 1, (15, 25)


@pytest.fixture(scope="module")
def data():
    """Training data and 24 held-out series with their planted-signal masks."""
    X, y, _ = xs.datasets.make_planted_timeseries(200, random_state=0, **PLANTED)
    Xt, yt, mt = xs.datasets.make_planted_timeseries(24, random_state=1, **PLANTED)
    assert (mt[:, CHANNEL, WINDOW[0] : WINDOW[1]]).all() and mt.sum() == 24 * 10
    return X, y, Xt, yt, mt


@pytest.fixture(scope="module")
def torch_model(data):
    X, y = data[:2]
    torch.manual_seed(0)
    return fit_classifier(CNN1d(4, 2, widths=(8, 16, 16)), X, y, epochs=15, random_state=0)


@pytest.fixture(scope="module")
def black_boxes(data):
    """The same flattened logistic regression as an sklearn pipeline and as a callable."""
    X, y = data[:2]
    pipe = make_pipeline(FunctionTransformer(lambda a: a.reshape(len(a), -1)),
                         LogisticRegression(max_iter=1000)).fit(X, y)
    return {"sklearn": pipe, "callable": lambda a: pipe.predict_proba(a)}


def _mean_auroc(attributions, mask):
    pairs = zip(attributions, mask, strict=True)
    return float(np.mean([roc_auc_score(m.ravel(), a.ravel()) for a, m in pairs]))


PARAMS = {
    "native:segment_occlusion": {"window": 4, "stride": 2},
    "native:segment_ablation": {"n_segments": 10},
    "native:segment_shapley": {"n_segments": 10, "n_samples": 10, "random_state": 0},
}


@pytest.mark.parametrize("per_channel", [True, False])
def test_ablation_equals_captum_feature_ablation(per_channel):
    model, X, _, _ = reference_problem("timeseries")  # (N, 2, 24), a CNN with batch norm
    b = np.random.default_rng(1).normal(size=X.shape[1:]).astype(np.float32)
    ours = xs.explain(model, X[:8], "native:segment_ablation", n_segments=5,
                      per_channel=per_channel, baselines=b)
    mask = segment_mask(X.shape[1:], 5, per_channel=per_channel)
    assert mask.max() + 1 == (10 if per_channel else 5)
    theirs = xs.explain(model, X[:8], "captum:feature_ablation", feature_mask=mask, baselines=b)
    np.testing.assert_allclose(ours.attributions, theirs.attributions, atol=1e-5, rtol=0)
    # an explicit feature_mask gives the same groups
    again = xs.explain(model, X[:8], "native:segment_ablation", feature_mask=mask, baselines=b)
    np.testing.assert_allclose(again.attributions, ours.attributions, atol=1e-7)


def test_per_instance_feature_masks():
    model, X, _, _ = reference_problem("timeseries")
    rng = np.random.default_rng(0)
    masks = np.stack([segment_mask(X.shape[1:], k) for k in (2, 3, 4, 6)])  # (N, C, T)
    masks[1] = rng.permutation(masks[1].ravel()).reshape(masks[1].shape)  # scattered groups
    ours = xs.explain(model, X[:4], "native:segment_ablation", feature_mask=masks)
    theirs = xs.explain(model, X[:4], "captum:feature_ablation", feature_mask=masks)
    np.testing.assert_allclose(ours.attributions, theirs.attributions, atol=1e-5, rtol=0)
    shap = xs.explain(model, X[:4], "native:segment_shapley", feature_mask=masks, n_samples=4,
                      random_state=0)
    assert np.abs(shap.convergence_delta).max() < 1e-5
    for a, m in zip(shap.attributions, masks, strict=True):  # constant within each group
        for g in np.unique(m):
            assert np.ptp(a[m == g]) < 1e-7


@pytest.mark.parametrize(("per_channel", "window", "stride"),
                         [(True, 5, 5), (True, 5, 2), (False, 4, 3), (False, 24, 1), (True, 1, 1)])
def test_occlusion_equals_captum_occlusion(per_channel, window, stride):
    model, X, _, _ = reference_problem("timeseries")
    ours = xs.explain(model, X[:8], "native:segment_occlusion", window=window, stride=stride,
                      per_channel=per_channel, baseline=0.3)
    theirs = xs.explain(model, X[:8], "captum:occlusion", window=(1 if per_channel else 2, window),
                        stride=(1, stride), baseline=0.3)
    np.testing.assert_allclose(ours.attributions, theirs.attributions, atol=1e-5, rtol=0)
    assert ours.params["window"] == window and ours.params["stride"] == stride



def _dense_occlusion(f, x, baselines, window, stride, per_channel, target):
    """Occlusion written out with dense masks, one window (and channel) at a time."""
    n, c, t = x.shape
    rows = np.arange(n)
    fx = f(x)[rows, target]
    total, count = np.zeros(x.shape), np.zeros(x.shape)
    for ch in range(c) if per_channel else [None]:
        for lo, hi in occlusion_windows(t, window, stride):
            mask = np.zeros(x.shape, bool)
            mask[:, slice(None) if ch is None else ch, lo:hi] = True
            drop = fx - f(np.where(mask, baselines, x))[rows, target]
            total += drop[:, None, None] * mask
            count += mask
    return total / count


@pytest.mark.parametrize("per_channel", [True, False])
def test_occlusion_equals_dense_masks_at_every_batch_size(per_channel):
    rng = np.random.default_rng(3)
    n, c, t = 5, 3, 24  # window 5, stride 3: 8 windows, the last one clipped to (21, 24)
    w, v = rng.normal(size=(c * t, 6)), rng.normal(size=(6, 3))

    def f(a):
        z = np.tanh(np.asarray(a, np.float64).reshape(len(a), -1) @ w) @ v
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    calls = []

    def counted(a):
        calls.append(len(a))
        return f(a)

    x = rng.normal(size=(n, c, t)).astype(np.float32)
    b = rng.normal(size=(n, c, t)).astype(np.float32)  # per-instance references, not zeros
    target = np.array([0, 1, 2, 1, 0])
    ref = _dense_occlusion(f, x, b, 5, 3, per_channel, target)
    n_masks = (c if per_channel else 1) * 8
    for bs in (1, 7, n * n_masks, "auto"):
        calls.clear()
        e = xs.create_explainer("native:segment_occlusion", counted, window=5, stride=3,
                                per_channel=per_channel, batch_size=bs)
        exp = e.explain(x, target=target, baselines=b)
        np.testing.assert_allclose(exp.attributions, ref, atol=1e-6, rtol=0)
        rows = exp.params["batch_size_used"]
        assert max(calls) <= rows
        assert sum(calls) - n == n * n_masks  # the predictions, then every occluded copy once


def test_occlusion_windows_cover_every_step_like_captum():
    assert occlusion_windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert occlusion_windows(11, 4, 3) == [(0, 4), (3, 7), (6, 10), (9, 11)]  # clipped last one
    with pytest.raises(ValueError, match="stride"):
        occlusion_windows(10, 2, 3)
    with pytest.raises(ValueError, match="window"):
        occlusion_windows(10, 11, 1)


def test_segment_mask_and_bad_segments():
    m = segment_mask((2, 10), 3)
    np.testing.assert_array_equal(m[0], [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(m[1], m[0] + 3)
    np.testing.assert_array_equal(segment_mask((2, 10), 3, per_channel=False)[1], m[0])
    model, X, _, _ = reference_problem("timeseries")
    with pytest.raises(ValueError, match="n_segments must be at most"):
        xs.explain(model, X[:2], "native:segment_ablation", n_segments=25)
    with pytest.raises(TypeError, match="per_channel"):
        xs.explain(model, X[:2], "native:segment_shapley", per_channel="yes")


def test_occlusion_with_disjoint_windows_equals_ablation():
    model, X, _, _ = reference_problem("timeseries")
    occ = xs.explain(model, X[:4], "native:segment_occlusion", window=6, stride=6)
    abl = xs.explain(model, X[:4], "native:segment_ablation", n_segments=4)
    np.testing.assert_allclose(occ.attributions, abl.attributions, atol=1e-6)


def test_shapley_efficiency_and_seeded_repeatability():
    model, X, _, _ = reference_problem("timeseries")
    kw = {"n_segments": 6, "n_samples": 8, "baseline": 0.5}
    a = xs.explain(model, X[:5], "native:segment_shapley", random_state=3, **kw)
    # every permutation's gains telescope to f(x) - f(baseline): the map sums to it exactly
    with torch.no_grad():
        fb = model(torch.full((5, *X.shape[1:]), 0.5)).numpy()
    total = a.attributions.reshape(5, -1).sum(1)
    np.testing.assert_allclose(total, a.predictions[np.arange(5), a.target]
                               - fb[np.arange(5), a.target], atol=1e-5)
    assert np.abs(a.convergence_delta).max() < 1e-5
    again = xs.explain(model, X[:5], "native:segment_shapley", random_state=3, **kw)
    np.testing.assert_array_equal(a.attributions, again.attributions)
    other = xs.explain(model, X[:5], "native:segment_shapley", random_state=4, **kw)
    assert not np.allclose(a.attributions, other.attributions)
    # the permutations are shared, so an instance's values do not depend on the others
    alone = xs.explain(model, X[2:3], "native:segment_shapley", random_state=3, **kw)
    np.testing.assert_allclose(alone.attributions[0], a.attributions[2], atol=1e-6)


def test_shapley_is_exact_for_an_additive_model():
    """For a linear model every permutation gives each segment its own w . (x - b)."""
    w = np.random.default_rng(0).normal(size=(3, 20))

    def linear(a):
        return (a * w).sum((1, 2))[:, None]

    X = np.random.default_rng(1).normal(size=(4, 3, 20)).astype(np.float32)
    a = xs.explain(linear, X, "native:segment_shapley", n_segments=4, n_samples=3, random_state=0)
    mask = segment_mask((3, 20), 4)
    expected = np.stack([np.bincount(mask.ravel(), (w * x).ravel())[mask] / 5 for x in X])
    np.testing.assert_allclose(a.attributions, expected, rtol=1e-4, atol=1e-5)
    # Captum's convention (the whole value at each point) is the map times the segment size
    c = xs.explain(linear, X, "captum:shapley_value_sampling", feature_mask=mask, n_samples=3,
                   random_state=0)
    np.testing.assert_allclose(a.attributions * 5, c.attributions, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_localises_planted_signal_torch(method, data, torch_model):
    _, _, Xt, yt, mask = data
    exp = xs.explain(torch_model, Xt, method, target=yt, **PARAMS[method])
    assert (exp.predictions.argmax(1) == yt).mean() > 0.9
    auroc = _mean_auroc(exp.attributions, mask)
    assert auroc >= 0.85, f"{method}: mean AUROC {auroc:.3f}"


@pytest.mark.parametrize("kind", ["sklearn", "callable"])
@pytest.mark.parametrize("method", METHODS)
def test_localises_planted_signal_black_box(method, kind, data, black_boxes):
    _, _, Xt, yt, mask = data
    exp = xs.explain(black_boxes[kind], Xt, method, target=yt, **PARAMS[method])
    auroc = _mean_auroc(exp.attributions, mask)
    assert auroc >= 0.85, f"{method} on {kind}: mean AUROC {auroc:.3f}"
    # the planted channel carries the largest share of the attribution
    per_channel = exp.attributions.sum((0, 2))
    assert per_channel.argmax() == CHANNEL


@pytest.mark.parametrize("method", METHODS)
def test_conformance_on_black_box_series(method, data, black_boxes):
    X, y, Xt = data[:3]
    params = {k: v for k, v in PARAMS[method].items() if k != "random_state"}
    passed = check_explainer(method, model=black_boxes["callable"], inputs=Xt[:3],
                             fit_data=(X, y), params=params)
    assert {"batch_invariance", "bad_input", "repeatable"} <= set(passed)
