"""Temporal saliency rescaling: agreement with an unbatched loop, localisation, speed."""

import time

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import xai_suite as xs
from xai_suite.testing import reference_problem
from xai_suite_timeseries import CNN1d, fit_classifier

#: Planted data: one informative channel (1) and window (steps 15..24) out of C=4, T=40; TSR
#: needs a clearer signal than the perturbation methods (noise 0.5; at noise 1 it reaches
#: about 0.81 AUROC there, plain integrated gradients 0.83).
PLANTED = {"n_channels": 4, "length": 40, "layout": "small_middle", "noise": 0.5}
CHANNEL, WINDOW = 1, (15, 25)


def reference_tsr(inner, x, target, threshold=0.55, mask_value=0.0):
    """TSR (Ismail et al. 2020, Algorithm 1) one instance and one masked copy at a time."""

    def saliency(z, ti):
        return inner.explain(z[None], target=np.array([ti])).attributions[0].astype(np.float64)

    out = []
    for xi, ti in zip(x, target, strict=True):
        base = saliency(xi, ti)
        c, t = xi.shape
        d_time = np.zeros(t)
        for s in range(t):
            z = xi.copy()
            z[:, s] = mask_value
            d_time[s] = np.abs(base - saliency(z, ti)).sum()
        cut = d_time.mean() if threshold == "mean" else np.quantile(d_time, threshold)
        r = np.zeros((c, t))
        for s in np.flatnonzero(d_time > cut):
            for i in range(c):
                z = xi.copy()
                z[i, s] = mask_value
                r[i, s] = d_time[s] * np.abs(base - saliency(z, ti)).sum()
        out.append(r)
    return np.stack(out)


@pytest.mark.parametrize(
    ("inner", "inner_params", "threshold", "channels"),
    [
        ("integrated_gradients", {"n_steps": 16}, 0.55, 2),
        ("captum:saliency", {}, "mean", 2),
        ("integrated_gradients", {"n_steps": 8, "quadrature": "riemann_trapezoid"}, 0.3, 1),
    ],
)
def test_equals_unbatched_reference(inner, inner_params, threshold, channels):
    model, X, _, _ = reference_problem("timeseries")
    x = X[:2, :channels, :12].copy()
    if channels == 1:
        torch.manual_seed(0)
        model = CNN1d(1, 3, widths=(4, 4, 4)).eval()
    exp = xs.explain(model, x, "native:tsr", inner=inner, inner_params=inner_params,
                     threshold=threshold)
    ref = reference_tsr(xs.create_explainer(inner, model, **inner_params), x, exp.target,
                        threshold)
    np.testing.assert_allclose(exp.attributions, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    assert (exp.attributions >= 0).all()
    n_relevant = (ref.sum(1) > 0).sum(1)
    assert exp.params["n_relevant_steps"] == n_relevant.tolist()
    assert exp.params["inner_method"] == xs.explainer_info(inner).qualified_name


def test_masking_baseline_and_inner_baseline_are_respected():
    model, X, _, _ = reference_problem("timeseries")
    x = X[:2, :, :12].copy()
    params = {"inner_params": {"n_steps": 8, "baseline": 0.2}}
    exp = xs.explain(model, x, "native:tsr", baseline=-0.5, **params)
    inner = xs.create_explainer("integrated_gradients", model, n_steps=8, baseline=0.2)
    ref = reference_tsr(inner, x, exp.target, mask_value=-0.5)
    np.testing.assert_allclose(exp.attributions, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    explicit = xs.explain(model, x, "native:tsr", baselines=np.full(x.shape[1:], -0.5, np.float32),
                          **params)
    np.testing.assert_allclose(explicit.attributions, exp.attributions, rtol=1e-5)
    assert explicit.params["baseline"] == {"name": "explicit"}


def test_fitted_inner_baseline_needs_fit():
    model, X, y, _ = reference_problem("timeseries")
    e = xs.create_explainer("native:tsr", model, inner_params={"n_steps": 4, "baseline": "training_mean"})
    assert e.requires_fit
    with pytest.raises(xs.baselines.NotFittedError, match="fit"):
        e.explain(X[:1, :, :8])
    x = X[:2, :, :8].copy()
    e.fit(X[:, :, :8], y)
    got = e.explain(x).attributions
    inner = xs.create_explainer("integrated_gradients", model, n_steps=4, baseline="training_mean")
    inner.fit(X[:, :, :8], y)
    ref = reference_tsr(inner, x, e.explain(x).target)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_bad_inner_and_threshold():
    model, X, _, _ = reference_problem("timeseries")
    with pytest.raises(ValueError, match="inner must name a gradient or propagation"):
        xs.explain(model, X[:1], "native:tsr", inner="captum:occlusion")
    with pytest.raises(ValueError, match="inner must name"):
        xs.explain(model, X[:1], "native:tsr", inner="native:tsr")
    with pytest.raises(KeyError, match="unknown explainer"):
        xs.explain(model, X[:1], "native:tsr", inner="no_such_method")
    with pytest.raises(TypeError, match="inner_params"):
        xs.explain(model, X[:1], "native:tsr", inner_params=[("n_steps", 4)])
    for bad in (1.0, -0.1, "median", True):
        with pytest.raises(ValueError, match="threshold"):
            xs.explain(model, X[:1], "native:tsr", threshold=bad, inner_params={"n_steps": 2})


@pytest.fixture(scope="module")
def planted_model():
    X, y, _ = xs.datasets.make_planted_timeseries(200, random_state=0, **PLANTED)
    torch.manual_seed(0)
    model = fit_classifier(CNN1d(4, 2, widths=(8, 16, 16)), X, y, epochs=15, random_state=0)
    return model, *xs.datasets.make_planted_timeseries(12, random_state=1, **PLANTED)


def test_localises_planted_signal_multivariate(planted_model):
    model, X, y, mask = planted_model
    assert mask[:, CHANNEL, WINDOW[0] : WINDOW[1]].all() and mask.sum() == 12 * 10
    exp = xs.explain(model, X, "native:tsr", target=y, inner_params={"n_steps": 16})
    assert (exp.predictions.argmax(1) == y).all()
    a = exp.attributions
    auroc = np.mean([roc_auc_score(m.ravel(), v.ravel()) for v, m in zip(a, mask, strict=True)])
    assert auroc >= 0.85, f"mean AUROC {auroc:.3f}"
    # the planted channel and window come out on top
    assert a.sum((0, 2)).argmax() == CHANNEL
    top = np.argsort(a.mean(0)[CHANNEL])[::-1][: WINDOW[1] - WINDOW[0]]
    assert np.isin(top, np.arange(*WINDOW)).mean() >= 0.8


@pytest.mark.slow
def test_batched_is_faster_than_step_loop(gunpoint, gunpoint_cnn):
    """Batched TSR vs the loop over steps on 20 GunPoint instances (IG, 8 steps)."""
    _, _, Xt, _ = gunpoint
    x = Xt[:20]
    params = {"n_steps": 8, "batch_size": 256}
    times = {"batched": [], "loop": []}
    for _ in range(2):  # alternate the runs (timings vary run to run)
        t0 = time.perf_counter()
        exp = xs.explain(gunpoint_cnn, x, "native:tsr", inner_params=params)
        times["batched"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = reference_tsr(xs.create_explainer("integrated_gradients", gunpoint_cnn, **params), x,
                            exp.target)
        times["loop"].append(time.perf_counter() - t0)
    np.testing.assert_allclose(exp.attributions, ref, rtol=1e-3, atol=1e-5 * np.abs(ref).max())
    ratio = min(times["loop"]) / min(times["batched"])
    print(f"TSR batched {min(times['batched']):.2f}s, loop {min(times['loop']):.2f}s, x{ratio:.1f}")
    assert ratio > 2
