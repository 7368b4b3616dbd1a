"""Temporal saliency rescaling: agreement with an unbatched loop, settings, errors.

Localisation of a planted signal: tests/test_ts_localisation.py; speed against TSInterpret
and the step loop: benchmarks/perf_timeseries.py."""

import numpy as np
import pytest
import torch

import xai_suite as xs
from xai_suite.testing import reference_problem
from xai_suite_timeseries import CNN1d


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


def test_both_stages_report_progress(record_progress):
    """TSR shows a progress bar over each stage's blocks, however few (one series can take
    half a minute)."""
    from xai_suite_timeseries import tsr

    seen = record_progress(tsr)
    model, X, _, _ = reference_problem("timeseries")
    x = X[:2, :, :12].copy()
    exp = xs.explain(model, x, "native:tsr", inner_params={"n_steps": 4})
    assert [d for d, _ in seen] == ["tsr: time relevance", "tsr: feature relevance"]
    assert all(n >= 1 for _, n in seen)
    assert np.isfinite(exp.attributions).all()
