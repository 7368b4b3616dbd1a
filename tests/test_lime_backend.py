"""The ``lime:`` entries: lime's own numbers, seeded repeatability, fidelity, planted signals."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import xai_suite as xs
from xai_suite.baselines import NotFittedError
from xai_suite_timeseries.lime_timeseries import sample_segment_masks
from xai_suite_timeseries.perturbation import segment_mask

pytest.importorskip("lime")

W = np.array([3.0, -2.0, 1.5, -1.0, 0.5, 0.1])  # planted coefficients, distinct magnitudes


def _standardised(n=400, f=6, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, f))
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32)  # std 1 exactly (ddof 0, as lime)


def _linear(a):
    """A regression model with coefficients W: one output column."""
    return (a @ W + 0.5)[:, None]


def _x(n=3, f=6, seed=1):
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32)


# -- tabular: seeding ------------------------------------------------------------------------
def test_tabular_same_seed_same_numbers_and_instances_independent_of_the_batch():
    X, x = _standardised(), _x()

    def run(inputs, **params):
        e = xs.create_explainer("lime:tabular", _linear, n_samples=300, **params).fit(X)
        return e.explain(inputs)

    first = run(x, random_state=4)
    np.testing.assert_array_equal(run(x, random_state=4).attributions, first.attributions)
    assert not np.array_equal(run(x, random_state=5).attributions, first.attributions)
    # the same explainer object explaining again (lime's RandomState reseeded per instance)
    e = xs.create_explainer("lime:tabular", _linear, n_samples=300, random_state=4).fit(X)
    e.explain(x[::-1])
    np.testing.assert_array_equal(e.explain(x).attributions, first.attributions)
    # an instance's weights do not depend on which instances are explained with it
    for i in range(len(x)):
        alone = run(x[i : i + 1], random_state=4).attributions[0]
        np.testing.assert_array_equal(alone, first.attributions[i])
    # random_state=None: fresh seeds per instance, recorded so the run can be reproduced
    free = run(x, random_state=None)
    seeds = free.params["instance_seeds"]
    assert len(set(seeds)) == len(x)
    for i, s in enumerate(seeds):
        np.testing.assert_array_equal(run(x[i : i + 1], random_state=s).attributions[0],
                                      free.attributions[i])


# -- tabular: agreement with lime itself -----------------------------------------------------
@pytest.mark.filterwarnings("ignore:(?s).*do not sum to 1")  # lime, called directly on logits
@pytest.mark.parametrize(("kind", "discretize", "around"), [
    ("sklearn", True, False), ("sklearn", False, False), ("sklearn", False, True),
    ("torch", True, False),
])
def test_tabular_equals_lime_tabular_explainer_with_the_same_seed(kind, discretize, around):
    from lime.lime_tabular import LimeTabularExplainer
    from sklearn.linear_model import LogisticRegression

    X, x = _standardised(), _x(2)
    y = np.digitize(X @ W, [-1.0, 1.0])  # 3 classes
    if kind == "sklearn":
        model = LogisticRegression(max_iter=500).fit(X, y)

        def predict(a):  # what the suite's model wrapper does: float32 in, float32 out
            return model.predict_proba(a.astype(np.float32)).astype(np.float32)
    else:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).eval()

        def predict(a):
            with torch.no_grad():
                return model(torch.from_numpy(a.astype(np.float32))).numpy()

    ours = xs.explain(model, x, method="lime:tabular", target=2, fit_data=X, n_samples=400,
                      discretize_continuous=discretize, sample_around_instance=around,
                      random_state=7, batch_size=400)
    for i in range(len(x)):
        for selection in ("none", "auto"):  # lime's default "auto" only reorders the columns
            lime = LimeTabularExplainer(X.astype(np.float64), mode="classification",
                                        discretize_continuous=discretize, random_state=7,
                                        sample_around_instance=around, feature_selection=selection)
            raw = lime.explain_instance(x[i].astype(np.float64), predict, labels=(2,),
                                        num_features=6, num_samples=400)
            weights = np.zeros(6)
            for j, w in raw.as_map()[2]:
                weights[j] = w
            if selection == "none":
                np.testing.assert_array_equal(ours.attributions[i], weights.astype(np.float32))
                assert ours.params["surrogate_r2"][i] == raw.score
            else:
                np.testing.assert_allclose(ours.attributions[i], weights, rtol=1e-5, atol=1e-7)
    assert ours.params["kernel_width_used"] == pytest.approx(0.75 * np.sqrt(6))


# -- tabular: fidelity ------------------------------------------------------------------------
def test_tabular_recovers_a_linear_models_coefficients():
    """Without discretisation the surrogate sees standardised features: weight = w * std."""
    X, x = _standardised(), _x()
    exp = xs.explain(_linear, x, method="lime:tabular", fit_data=X, n_samples=2000,
                     discretize_continuous=False, random_state=0)
    np.testing.assert_allclose(exp.attributions, np.broadcast_to(W, x.shape), rtol=0.01)
    assert min(exp.params["surrogate_r2"]) > 0.999
    # training data with std 2: weights double
    doubled = xs.explain(lambda a: _linear(a / 2), 2 * x, method="lime:tabular", fit_data=2 * X,
                         n_samples=2000, discretize_continuous=False, random_state=0)
    np.testing.assert_allclose(doubled.attributions, exp.attributions, rtol=1e-4)


def test_tabular_logistic_model_weights_have_the_coefficients_ranks_and_signs():
    from sklearn.linear_model import LogisticRegression

    w = np.array([3.0, -2.0, 1.5, -1.0, 0.7, -0.4])
    X = _standardised()
    y = (X @ w + np.random.default_rng(3).logistic(size=len(X)) > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    exp = xs.explain(clf, _x(), method="lime:tabular", target=1, fit_data=X, n_samples=1000,
                     discretize_continuous=False, random_state=0)
    coef = clf.coef_[0]
    for a in exp.attributions:
        assert spearmanr(a, coef)[0] >= 0.9
        np.testing.assert_array_equal(np.sign(a), np.sign(coef))


def test_tabular_discretised_weights_compare_the_instances_bin_with_the_others():
    """An instance in every feature's top quartile: 'in my bin' raises a linear model's output
    by w_j times (mean of the top bin - mean of the others): about 1.7-1.9 w_j for standard
    normals (lime draws within a bin from a normal truncated to it)."""
    X = _standardised(1000)
    top = np.quantile(X, 0.95, axis=0, keepdims=True).astype(np.float32)
    exp = xs.explain(_linear, top, method="lime:tabular", fit_data=X, n_samples=2000,
                     random_state=0)
    a = exp.attributions[0]
    np.testing.assert_array_equal(np.sign(a), np.sign(W))
    assert spearmanr(np.abs(a), np.abs(W))[0] == pytest.approx(1.0)
    big = np.abs(W) >= 0.5  # the 0.1 coefficient's ratio is dominated by sampling noise
    assert np.all((a[big] / W[big] > 1.5) & (a[big] / W[big] < 2.2))


# -- time series ----------------------------------------------------------------------------
C, T, S = 2, 24, 6  # 6 windows of 4 steps per channel; group g = channel * S + window


class Planted(nn.Module):
    """Output depends only on channel 1, steps 8..11 (group 1 * 6 + 2 = 8)."""

    def forward(self, x):
        s = 3 * x[:, 1, 8:12].mean(-1)
        return torch.stack([s, -s], 1)


def _series(n=4, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, C, T)).astype(np.float32)
    x[:, 1, 8:12] += 2.0
    return x


def _per_group(a):
    """Attributions (N, C, T) -> one value per window (N, C * S), checking windows are flat."""
    w = a.reshape(len(a), C, S, T // S)
    assert np.all(w == w[..., :1])
    return w[..., 0].reshape(len(a), -1)


def test_timeseries_planted_segment_gets_the_largest_weight():
    model = Planted().eval()
    exp = xs.explain(model, _series(), method="lime:timeseries", n_segments=S, random_state=0)
    w = _per_group(exp.attributions)
    assert (np.abs(w).argmax(1) == 8).all() and (w[:, 8] > 0).all()
    assert (w[:, 8] > 50 * np.delete(np.abs(w), 8, axis=1).max(1)).all()
    assert exp.params["n_groups"] == C * S
    assert exp.baselines.shape == (1, 4, C, T) and not exp.baselines.any()  # zeros recorded


def test_timeseries_recovers_additive_segment_effects():
    """f = sum_g a_g * mean(segment g): with a zero baseline, switching segment g off changes
    f by exactly a_g * mean_g(x), which the ridge surrogate recovers (up to its shrinkage)."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=C * S)
    x = rng.normal(size=(3, C, T)).astype(np.float32) + 1.0

    def f(arr):
        out = arr.reshape(len(arr), C, S, T // S).mean(-1).reshape(len(arr), -1) @ a
        return np.stack([out, -out], 1)

    effects = x.reshape(3, C, S, T // S).mean(-1).reshape(3, -1) * a
    for distance in ("cosine", "hamming"):
        exp = xs.explain(f, x, method="lime:timeseries", target=0, n_segments=S,
                         distance=distance, random_state=0)
        w = _per_group(exp.attributions)
        assert np.abs(w - effects).max() <= 0.03 * np.abs(effects).max()
        assert min(exp.params["surrogate_r2"]) > 0.99


def test_timeseries_repeatable_with_random_state():
    model, x = Planted().eval(), _series()

    def run(inputs, seed, **params):
        return xs.explain(model, inputs, method="lime:timeseries", n_segments=S, n_samples=200,
                          random_state=seed, **params).attributions

    first = run(x, 3)
    np.testing.assert_array_equal(run(x, 3), first)
    assert not np.array_equal(run(x, 4), first)
    np.testing.assert_array_equal(run(x[2:3], 3)[0], first[2])  # independent of the batch
    np.testing.assert_allclose(run(x, 3, batch_size=7), first, rtol=1e-6, atol=1e-7)


def test_timeseries_masks_are_lime_style_perturbations():
    z = sample_segment_masks(5, 400, random_state=0)
    assert z.shape == (400, 5) and set(np.unique(z)) == {0.0, 1.0}
    assert z[0].all()  # row 0 is the instance itself
    off = (z[1:] == 0).sum(1)
    assert off.min() == 1 and off.max() == 5  # 1..G features switched off
    np.testing.assert_array_equal(z, sample_segment_masks(5, 400, random_state=0))
    np.testing.assert_array_equal(segment_mask((2, 5), 2),
                                  [[0, 0, 0, 1, 1], [2, 2, 2, 3, 3]])
    np.testing.assert_array_equal(segment_mask((2, 5), 2, per_channel=False),
                                  [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1]])


def test_timeseries_feature_mask_groups_share_one_weight():
    model, x = Planted().eval(), _series(3)
    # three non-contiguous groups with arbitrary labels; the planted steps all in group 42
    mask = np.full((C, T), 5)
    mask[:, 1::3] = 17
    mask[1, 8:12] = 42
    exp = xs.explain(model, x, method="lime:timeseries", feature_mask=mask, random_state=0,
                     n_segments=100)  # n_segments is ignored with a feature_mask
    a = exp.attributions
    for i in range(len(x)):
        values = {label: np.unique(a[i][mask == label]) for label in (5, 17, 42)}
        assert all(v.size == 1 for v in values.values())
        assert abs(values[42][0]) > 10 * max(abs(values[5][0]), abs(values[17][0]))
    assert exp.params["n_groups"] == 3
    # one mask per instance, with different numbers of groups
    masks = np.stack([mask, np.zeros((C, T), int), (np.arange(T) // 12)[None].repeat(C, 0)])
    per = xs.explain(model, x, method="lime:timeseries", feature_mask=masks, random_state=0)
    assert per.params["n_groups"] == [3, 1, 2]
    assert np.unique(per.attributions[1]).size == 1


def test_timeseries_baselines_replace_the_switched_off_segments():
    model, x = Planted().eval(), _series(2)
    # replacing segments by the instance itself changes nothing: every weight is zero
    same = xs.explain(model, x, method="lime:timeseries", baselines=x, random_state=0)
    np.testing.assert_allclose(same.attributions, 0.0, atol=1e-6)
    assert same.params["baseline"] == {"name": "explicit"}
    # a baseline equal to the instance on the planted segment removes its weight there
    b = np.zeros_like(x)
    b[:, 1, 8:12] = x[:, 1, 8:12]
    part = xs.explain(model, x, method="lime:timeseries", baselines=b, n_segments=S,
                      random_state=0)
    np.testing.assert_allclose(part.attributions, 0.0, atol=1e-6)
    if "channel_mean" in xs.list_baselines("timeseries"):
        cm = xs.explain(model, x, method="lime:timeseries", baseline="channel_mean",
                        n_segments=S, random_state=0)
        np.testing.assert_allclose(cm.baselines[0], x.mean(-1, keepdims=True).repeat(T, -1),
                                   rtol=1e-6)
        assert (np.abs(_per_group(cm.attributions)).argmax(1) == 8).all()


# -- registry and errors ----------------------------------------------------------------------
def test_entries_are_registered_as_stochastic_surrogates():
    for name in ("lime:tabular", "lime:timeseries"):
        info = xs.explainer_info(name)
        assert info.tags.family == "surrogate" and info.tags.stochastic
        assert info.tags.batch_invariant and info.requires == ("lime",)
    assert xs.explainer_info("lime:tabular").tags.needs_fit
    assert xs.explainer_info("lime:timeseries").tags.uses_feature_mask
    assert xs.explainer_info("lime").qualified_name == "captum:lime"  # the alias is unchanged


def test_clear_errors():
    X, x = _standardised(60), _x()
    series = _series(2)
    model = Planted().eval()
    with pytest.raises(ValueError, match=r"explains tabular \(N, F\) inputs; got a 3-D"):
        xs.explain(model, series, method="lime:tabular", fit_data=series.reshape(2, -1))
    with pytest.raises(ValueError, match=r"explains tabular \(N, F\) inputs; got a 3-D"):
        xs.create_explainer("lime:tabular", _linear).fit(series)
    with pytest.raises(ValueError, match=r"explains timeseries \(N, C, T\)"):
        xs.explain(_linear, x, method="lime:timeseries")
    with pytest.raises(ValueError, match="n_segments must be at most the series length 24"):
        xs.explain(model, series, method="lime:timeseries", n_segments=25)
    with pytest.raises(ValueError, match="n_segments must be a positive int"):
        xs.explain(model, series, method="lime:timeseries", n_segments=0)
    with pytest.raises(ValueError, match="distance must be 'cosine' or 'hamming'"):
        xs.explain(model, series, method="lime:timeseries", distance="euclidean")
    with pytest.raises(ValueError, match="kernel_width must be a positive number; got 0"):
        xs.explain(model, series, method="lime:timeseries", kernel_width=0)
    with pytest.raises(TypeError, match="per_channel must be True or False"):
        xs.explain(model, series, method="lime:timeseries", per_channel="yes")
    with pytest.raises(TypeError, match="feature_mask must hold integer group labels"):
        xs.explain(model, series, method="lime:timeseries", feature_mask=np.zeros((C, T)))
    with pytest.raises(ValueError, match="feature_mask must have one instance's shape"):
        xs.explain(model, series, method="lime:timeseries",
                   feature_mask=np.zeros((C, T - 1), int))
    with pytest.raises(TypeError, match="takes no feature_mask"):
        xs.explain(_linear, x, method="lime:tabular", fit_data=X,
                   feature_mask=np.arange(6))
    with pytest.raises(ValueError, match="n_samples must be at least 2"):
        xs.explain(_linear, x, method="lime:tabular", fit_data=X, n_samples=1)
    with pytest.raises(ValueError, match="discretizer must be 'quartile' or 'decile'"):
        xs.explain(_linear, x, method="lime:tabular", fit_data=X, discretizer="entropy")
    with pytest.raises(ValueError, match="kernel_width must be a positive number; got"):
        xs.explain(_linear, x, method="lime:tabular", fit_data=X, kernel_width=-1.0)
    with pytest.raises(ValueError, match=r"random_state must be None or an int in \[0, 2\*\*32 - 1\]"):
        xs.explain(_linear, x, method="lime:tabular", fit_data=X, random_state=2**40)
    with pytest.raises(NotFittedError, match="call fit"):
        xs.explain(_linear, x, method="lime:tabular")
    with pytest.raises(ValueError, match=r"per-instance shape \(5,\)"):
        xs.explain(_linear, x[:, :5], method="lime:tabular", fit_data=X)
