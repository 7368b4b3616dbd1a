"""The HMM benchmark of time-interpret: generator, classifier, time-forward tunnel, reference run."""

import numpy as np
import pytest
import torch

import xai_suite as xs
from xai_suite_timeseries.hmm import (
    HMM_IMPORTANT,
    HMM_MEANS,
    StateClassifier,
    fit_state_classifier,
    hmm_covariances,
    make_hmm_timeseries,
    time_forward_tunnel,
)

torch.set_num_threads(1)


def _tint_loop(n, length, rng):
    """A literal scalar port of ``tint.datasets.HMM.download`` (states and signals only)."""
    mean, cov = np.array(HMM_MEANS), hmm_covariances()
    states, signals = np.empty((n, length), dtype=int), np.empty((n, length, 3))
    for i in range(n):
        previous, delta = rng.binomial(1, 0.5), 0
        for t in range(length):
            p = 0.95 if previous == 1 else 0.05
            p = p - delta / 500 if p > 0.8 else p
            s = rng.binomial(1, p)
            delta = delta + 1 if s == previous else 0
            signals[i, t] = rng.multivariate_normal(mean[s], cov[s])
            states[i, t] = previous = s
    return states, signals


@pytest.fixture(scope="module")
def hmm_data():
    return make_hmm_timeseries(600, 200, random_state=3, return_states=True)


def test_shapes_dtypes_and_mask_rule(hmm_data):
    X, y, mask, states = hmm_data
    assert X.shape == mask.shape == (600, 3, 200) and y.shape == states.shape == (600, 200)
    assert X.dtype == np.float32 and y.dtype == np.int64 and mask.dtype == bool
    assert set(np.unique(y)) == {0, 1} and set(np.unique(states)) == {0, 1}
    # exactly one salient element per step: feature 1 in state 0, feature 2 in state 1
    assert (mask.sum(1) == 1).all()
    expected = np.zeros_like(mask)
    for s, feature in enumerate(HMM_IMPORTANT):
        expected[:, feature, :] = states == s
    np.testing.assert_array_equal(mask, expected)
    assert not mask[:, 0].any()  # feature 0 is never important


def test_seeded_repeatability():
    a = make_hmm_timeseries(20, 50, random_state=7)
    b = make_hmm_timeseries(20, 50, random_state=7)
    c = make_hmm_timeseries(20, 50, random_state=8)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_distribution_matches_a_literal_port_of_tint(hmm_data):
    X, y, _, states = hmm_data
    ref_states, ref_x = _tint_loop(100, 200, np.random.default_rng(0))
    # the chain: share of time in state 1, switches per series, state-0 exit rate (0.05)
    assert abs(states.mean() - ref_states.mean()) < 0.08
    switches, ref_switches = (np.diff(states, axis=1) != 0).sum(1), (np.diff(ref_states, axis=1) != 0).sum(1)
    assert abs(switches.mean() - ref_switches.mean()) < 1.0
    prev0 = states[:, :-1] == 0
    assert abs(states[:, 1:][prev0].mean() - 0.05) < 0.005
    # state 1 is left faster the longer it lasts (0.95 - d / 500): fresh runs are stickier
    prev1, fresh = states[:, :-1] == 1, np.zeros_like(states[:, :-1], dtype=bool)
    fresh[:, 1:] = (states[:, 1:-1] == 1) & (states[:, :-2] == 0)  # entered state 1 one step ago
    late = prev1.copy()
    late[:, :100] = False
    assert states[:, 1:][fresh].mean() > states[:, 1:][late & ~fresh].mean() + 0.02
    # emissions: per-state means and covariances as time-interpret's
    x = X.transpose(0, 2, 1)
    for s in (0, 1):
        np.testing.assert_allclose(x[states == s].mean(0), HMM_MEANS[s], atol=0.03)
        np.testing.assert_allclose(np.cov(x[states == s].T), hmm_covariances()[s], atol=0.03)
        np.testing.assert_allclose(x[states == s].mean(0), ref_x[ref_states == s].mean(0), atol=0.06)
    # labels: P(y = 1 | x_imp) = sigmoid(2 x_imp), checked in bins of x_imp
    x_imp = np.take_along_axis(X, (1 + states)[:, None, :], axis=1)[:, 0]
    for lo in (-2.0, -1.0, 0.0, 1.0):
        sel = (x_imp >= lo) & (x_imp < lo + 0.5)
        expected = (1 / (1 + np.exp(-2 * x_imp[sel]))).mean()
        assert abs(y[sel].mean() - expected) < 0.02, lo


def test_bad_input_errors():
    with pytest.raises(ValueError, match="n_samples"):
        make_hmm_timeseries(0)
    with pytest.raises(ValueError, match="p0"):
        make_hmm_timeseries(5, p0=1.5)
    with pytest.raises(ValueError, match="random_state"):
        make_hmm_timeseries(5, random_state=-1)
    model = StateClassifier(hidden_size=4)
    with pytest.raises(ValueError, match=r"\(N, 3, T\)"):
        model(torch.zeros(2, 4, 10))
    with pytest.raises(ValueError, match=r"y of shape \(N, T\)"):
        fit_state_classifier(model, np.zeros((4, 3, 10)), np.zeros(4, dtype=int), epochs=1)
    ig = xs.create_explainer("native:integrated_gradients", model, device="cpu")
    with pytest.raises(ValueError, match=r"\(N, C, T\)"):
        time_forward_tunnel(ig, np.zeros((4, 10)))


def test_registered_as_dataset():
    assert xs.datasets.make_hmm_timeseries is make_hmm_timeseries


def test_per_step_logits_are_the_prefix_logits():
    torch.manual_seed(0)
    model = StateClassifier(hidden_size=8).eval()
    x = torch.from_numpy(make_hmm_timeseries(5, 12, random_state=0)[0])
    steps = model.forward_steps(x)
    for t in (0, 5, 11):
        torch.testing.assert_close(steps[:, t], model(x[:, :, : t + 1]), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def small_model():
    X, y, mask = make_hmm_timeseries(240, 40, random_state=1)
    torch.manual_seed(1)
    model = fit_state_classifier(StateClassifier(hidden_size=16), X[:200], y[:200], epochs=10, random_state=1)
    return model, X[200:], y[200:], mask[200:]


def test_tunnel_looks_only_backwards(small_model):
    """Step t's attributions come from the prefix ending at t: later steps cannot move them."""
    model, X, _, _ = small_model
    ig = xs.create_explainer("native:integrated_gradients", model, n_steps=8, device="cpu")
    x = X[:3, :, :12]
    exp = time_forward_tunnel(ig, x)
    assert exp.attributions.shape == x.shape and exp.params["time_forward_tunnel"] is True
    changed = x.copy()
    changed[:, :, 8:] += 3.0
    exp2 = time_forward_tunnel(ig, changed)
    np.testing.assert_allclose(exp2.attributions[:, :, :8], exp.attributions[:, :, :8], rtol=1e-5, atol=1e-7)
    assert not np.allclose(exp2.attributions[:, :, 8:], exp.attributions[:, :, 8:])
    # each column is the last column of that prefix's own explanation, for its predicted class
    last = ig.explain(x[:, :, :5])
    np.testing.assert_allclose(exp.attributions[:, :, 4], last.attributions[:, :, -1], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(exp.params["step_targets"])[:, 4], last.target)


def test_quick_reference_run_localises_the_important_feature():
    from xai_suite.bench.scripts import hmm_reference as bench

    r = bench.run_seed(0, n_train=300, n_test=6, length=40, hidden_size=16, epochs=10, n_steps=16)
    assert r.accuracy > r.bayes_accuracy - 0.06  # the classifier learned the task
    ig, rnd = r.pooled["ig"], r.pooled["random"]
    assert ig["auroc"] > 0.8 and ig["auroc"] > rnd["auroc"] + 0.25
    assert ig["aup"] > 0.7 and abs(rnd["aup"] - 1 / 3) < 0.05  # random: the share of salient elements
    assert r.per_series["ig"]["auroc"].shape == (6,)
    summary = bench.summarise([r])
    lo, hi = summary["auroc"]["pooled_ci"]
    assert lo <= summary["auroc"]["pooled"] <= hi
