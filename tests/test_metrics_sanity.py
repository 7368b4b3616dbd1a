"""Sanity metrics: completeness error against the recorded convergence delta, the
model-parameter randomisation test (Adebayo et al. 2018) with a gradient method, and the
random-attribution control native:random."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs
from xai_suite.metrics import (
    auroc,
    bootstrap_interval,
    cascading_randomisation,
    completeness_error,
    compute_metric,
    randomisation_correlation,
    randomised_copy,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def planted():
    """An MLP trained on 20 features of which the label uses 0, 1 and 2."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20)).astype(np.float32)
    y = ((X[:, 0] + X[:, 1] - X[:, 2]) > 0).astype(np.int64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(torch.from_numpy(X)).argmax(1).numpy() == y).mean() > 0.95
    mask = np.zeros((300, 20), dtype=bool)
    mask[:, :3] = True
    return model, X, y, mask


def test_completeness_error_equals_the_convergence_delta(planted):
    model, X, y, _ = planted
    exp = xs.create_explainer("native:integrated_gradients", model, n_steps=8).explain(X[:10])
    err = completeness_error(exp, model=model)
    np.testing.assert_array_equal(err, np.abs(exp.convergence_delta.astype(np.float64)))
    assert err.max() > 1e-4  # 8 steps: a visible error
    # without the recorded delta it is computed from the model and the recorded baselines
    bare = dataclasses.replace(exp, convergence_delta=None)
    np.testing.assert_allclose(completeness_error(bare, model=model), err, atol=2e-5)
    # several baseline draws: f(baseline) is their mean output, as in the delta
    eg = xs.create_explainer("native:integrated_gradients", model, n_steps=8, baseline="training_sample",
                             n_baseline_samples=3, random_state=0).fit(X, y).explain(X[:10])
    assert eg.baselines.shape[0] == 3
    eg_bare = dataclasses.replace(eg, convergence_delta=None)
    np.testing.assert_allclose(completeness_error(eg_bare, model=model), np.abs(eg.convergence_delta),
                               atol=2e-5)
    # relative to |f(x) - f(baseline)|
    fx = exp.predictions[np.arange(10), exp.target]
    with torch.no_grad():
        fb = model(torch.zeros(1, 20)).numpy()[0, exp.target]
    np.testing.assert_allclose(completeness_error(exp, model=model, relative=True), err / np.abs(fx - fb),
                               rtol=1e-5)


def test_completeness_error_without_baselines_uses_zero(planted):
    model, X, _, _ = planted
    exp = xs.create_explainer("captum:saliency", model).explain(X[:5])
    assert exp.baselines is None and exp.convergence_delta is None
    fx = exp.predictions[np.arange(5), exp.target]
    expected = np.abs(exp.attributions.astype(np.float64).sum(1) - fx)
    np.testing.assert_allclose(compute_metric("completeness_error", exp, model=model), expected, rtol=1e-6)


def test_randomised_copy(planted):
    model = planted[0]
    before = [p.detach().clone() for p in model.parameters()]
    top = randomised_copy(model, layers=1, random_state=0)
    for p, q in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p, q)  # the original is untouched
    changed = [not torch.equal(p, q) for p, q in zip(top.parameters(), before, strict=True)]
    assert changed == [False, False, False, False, True, True]  # the last Linear's weight and bias
    again = randomised_copy(model, layers=1, random_state=0)
    for p, q in zip(top.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(p, q)  # seeded
    every = randomised_copy(model).parameters()
    assert all(not torch.equal(p, q) for p, q in zip(every, before, strict=True))
    with pytest.raises(ValueError, match="layers must be"):
        randomised_copy(model, layers=4)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        randomised_copy(lambda x: x)


def test_randomisation_correlation_with_a_gradient_method(planted):
    model, X, _, _ = planted
    saliency = xs.create_explainer("captum:saliency", model)
    exp = saliency.explain(X[:20])
    same = randomisation_correlation(exp, model=model, explainer=saliency, layers=0)
    np.testing.assert_allclose(same, 1.0)  # nothing randomised: the method agrees with itself
    full = compute_metric("randomisation_correlation", exp, model=model, explainer=saliency)
    assert abs(full.mean()) < 0.2, full.mean()  # measured 0.015
    names, cascade = cascading_randomisation(exp, model, saliency)
    assert names == ["4", "2", "0"] and cascade.shape == (20, 3)
    np.testing.assert_allclose(cascade[:, -1], full)
    assert cascade[:, 0].mean() > 0.5 > cascade[:, -1].mean()  # measured 0.76 -> 0.12 -> 0.015


def test_randomisation_of_a_fitted_explainer(planted):
    model, X, y, _ = planted
    ig = xs.create_explainer("native:integrated_gradients", model, n_steps=8, baseline="training_mean")
    other = xs.create_explainer("captum:saliency", model).explain(X[:3])
    with pytest.raises(ValueError, match="must be fitted"):
        randomisation_correlation(other, model=model, explainer=ig)
    ig.fit(X, y)
    exp = ig.explain(X[:10])
    kept = randomisation_correlation(exp, model=model, explainer=ig)  # copies the fitted state
    refit = randomisation_correlation(exp, model=model, explainer=ig, fit_data=(X, y))
    np.testing.assert_allclose(kept, refit)
    assert kept.mean() < 0.6  # measured about 0.3 (input x gradient-like maps keep |x|'s ranking)


def test_random_control(planted):
    model, X, _, mask = planted
    e = xs.create_explainer("native:random", model, random_state=0)
    exp = e.explain(X[:200])
    a = exp.attributions
    # i.i.d. standard normal (4000 values: Kolmogorov-Smirnov; correlations within 4 sigma of 0)
    from scipy.stats import kstest

    assert kstest(a.ravel(), "norm").pvalue > 1e-3
    assert np.abs(np.corrcoef(a.T) - np.eye(20)).max() < 4 / np.sqrt(200)
    # per instance: the same numbers alone, in another order or batch size
    alone = e.explain(X[7:8]).attributions
    np.testing.assert_array_equal(alone, a[7:8])
    np.testing.assert_array_equal(e.explain(X[:200][::-1]).attributions, a[::-1])
    # localises nothing: AUROC about 0.5, where a real method finds the planted features
    chance = auroc(exp, mask=mask[:200])
    lo, hi = bootstrap_interval(chance, random_state=0)
    assert lo < 0.5 < hi, (lo, hi)
    ig = xs.create_explainer("native:integrated_gradients", model, n_steps=16).explain(X[:200])
    assert auroc(ig, mask=mask[:200]).mean() > 0.9
    # and, ignoring the model, it is untouched by model randomisation
    np.testing.assert_allclose(randomisation_correlation(exp, model=model, explainer=e)[:10], 1.0)
    # with its default random_state=None: fresh numbers each call (it used to draw a seed
    # above 2**32 and refuse it)
    fresh = xs.create_explainer("native:random", model)
    first, second = (fresh.explain(X[:3]).attributions for _ in range(2))
    assert np.isfinite(first).all() and not np.array_equal(first, second)
