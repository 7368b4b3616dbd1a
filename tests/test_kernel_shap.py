"""native:kernel_shap: exact with every coalition, equal to shap.KernelExplainer on the same
coalitions and background, batch-size invariant, memory-bounded, clear errors."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs
from xai_suite.baselines import NotFittedError
from xai_suite.methods.native.kernel_shap import coalition_values, kernel_coalitions

shap = pytest.importorskip("shap")


def _softmax_model(n_features: int, n_classes: int = 3, seed: int = 0):
    """A non-linear numpy black box: softmax(tanh(a W) V) with interactions between features."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_features, 8))
    v = rng.normal(size=(8, n_classes))

    def model(a):
        z = np.tanh(np.asarray(a, np.float64) @ w) @ v
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return model


def _mlp(n_features: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_features, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 3)).eval()


def _data(n_features: int, n: int = 30, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(np.float32)


def brute_force_shapley(f, x: np.ndarray, background: np.ndarray, target: int,
                        groups: list[list[int]]) -> np.ndarray:
    """Exact Shapley values of the game v(S) = mean_b f(x_S, b_rest)[target], players = groups."""
    m = len(groups)
    cache = {}

    def v(players: tuple[int, ...]) -> float:
        if players not in cache:
            rows = background.astype(np.float64).copy()
            for p in players:
                rows[:, groups[p]] = x[groups[p]]
            cache[players] = float(np.mean(f(rows)[:, target]))
        return cache[players]

    phi = np.zeros(m)
    for j in range(m):
        others = [p for p in range(m) if p != j]
        for size in range(m):
            w = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for s in itertools.combinations(others, size):
                phi[j] += w * (v(tuple(sorted((*s, j)))) - v(s))
    return phi


def _shap_reference(f, x: np.ndarray, background: np.ndarray, target: np.ndarray, nsamples,
                    seed: int):
    """shap.KernelExplainer called directly, the global seed reset before each instance.

    Returns its values (N, F) for ``target`` and its mask matrices and kernel weights.
    """
    ke = shap.KernelExplainer(f, background.astype(np.float64))
    state = np.random.get_state()  # noqa: NPY002  (shap draws from the global generator)
    values, masks, weights = [], [], []
    try:
        for i in range(len(x)):
            np.random.seed(seed)  # noqa: NPY002
            sv = ke.shap_values(x[i : i + 1].astype(np.float64), nsamples=nsamples, l1_reg=False,
                                silent=True)
            values.append(sv[0, :, target[i]])
            masks.append(ke.maskMatrix[: ke.nsamplesAdded].copy())
            weights.append(ke.kernelWeights[: ke.nsamplesAdded].copy())
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return np.array(values), masks, weights


# -- exactness ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_samples", ["all", "auto", 30, 10_000])
def test_all_coalitions_give_exact_shapley_values(n_samples):
    # 5 features: 2^5 - 2 = 30 coalitions, so every budget here enumerates them all
    f = _softmax_model(5)
    X = _data(5)
    bg, x = X[:8], X[20:24]
    e = xs.create_explainer("native:kernel_shap", f, n_samples=n_samples, random_state=0)
    exp = e.fit(bg).explain(x)
    assert exp.params["exact"] and exp.params["n_samples_used"] == 30
    exact = np.array([brute_force_shapley(f, x[i], bg, exp.target[i], [[j] for j in range(5)])
                      for i in range(len(x))])
    assert np.abs(exact).max() > 0.05  # a non-trivial game
    np.testing.assert_allclose(exp.attributions, exact, atol=1e-6, rtol=0)


def test_exact_with_a_torch_model_and_non_predicted_target():
    model = _mlp(6)
    X = _data(6)
    bg, x = X[:10], X[20:23]
    target = np.array([0, 1, 2])
    exp = xs.create_explainer("native:kernel_shap", model, n_samples="all").fit(bg).explain(
        x, target=target)

    def f(a):
        with torch.no_grad():
            return model.double()(torch.from_numpy(np.asarray(a, np.float64))).numpy()

    exact = np.array([brute_force_shapley(f, x[i], bg, target[i], [[j] for j in range(6)])
                      for i in range(3)])
    model.float()
    np.testing.assert_allclose(exp.attributions, exact, atol=2e-6, rtol=0)


def test_feature_groups_are_players():
    f = _softmax_model(7)
    X = _data(7)
    bg, x = X[:6], X[20:23]
    labels = np.array([5, 5, 2, 9, 2, 7, 7])  # groups {0,1}, {2,4}, {3}, {5,6}
    groups = [[2, 4], [0, 1], [5, 6], [3]]  # players in sorted label order 2, 5, 7, 9
    exp = xs.create_explainer("native:kernel_shap", f, n_samples="all").fit(bg).explain(
        x, feature_mask=labels)
    a = exp.attributions
    for members in groups:  # every feature of a group carries the group's value
        np.testing.assert_array_equal(a[:, members], a[:, members[:1]].repeat(len(members), 1))
    exact = np.array([brute_force_shapley(f, x[i], bg, exp.target[i], groups) for i in range(3)])
    np.testing.assert_allclose(a[:, [g[0] for g in groups]], exact, atol=1e-6, rtol=0)
    assert exp.params["n_samples_used"] == 2**4 - 2


def test_per_instance_masks_do_not_depend_on_the_other_instances():
    f = _softmax_model(12)
    X = _data(12)
    bg, x = X[:8], X[20:23]
    masks = np.stack([np.arange(12), np.arange(12) // 2, np.arange(12)])
    e = xs.create_explainer("native:kernel_shap", f, n_samples=150, random_state=4).fit(bg)
    together = e.explain(x, feature_mask=masks).attributions
    alone = np.concatenate([e.explain(x[i : i + 1], feature_mask=masks[i]).attributions
                            for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(together[1, ::2], together[1, 1::2])  # pairs share a value


def test_a_single_player_takes_the_whole_difference():
    f = _softmax_model(4)
    X = _data(4)
    exp = xs.create_explainer("native:kernel_shap", f).fit(X[:5]).explain(
        X[20:22], feature_mask=np.zeros(4, dtype=int))
    total = exp.predictions[[0, 1], exp.target] - f(X[:5])[:, exp.target].mean(0)
    np.testing.assert_allclose(exp.attributions, np.repeat(total[:, None], 4, 1), atol=1e-6)


def test_constant_feature_gets_zero_when_exact():
    # shap drops a feature equal to every background row (a dummy player); we keep it, and
    # its exact value is 0 (with sampled coalitions it is estimated, not forced to 0)
    f = _softmax_model(5)
    X = _data(5)
    bg, x = X[:6].copy(), X[20:22].copy()
    bg[:, 2] = 0.7
    x[:, 2] = 0.7
    exp = xs.create_explainer("native:kernel_shap", f, n_samples="all").fit(bg).explain(x)
    assert np.abs(exp.attributions[:, 2]).max() < 1e-7
    ref, _, _ = _shap_reference(f, x, bg, exp.target, "auto", seed=0)
    np.testing.assert_allclose(exp.attributions, ref, atol=1e-5)


# -- agreement with shap --------------------------------------------------------------------
@pytest.mark.parametrize(("n_features", "n_samples"), [(12, 300), (11, 120), (12, "auto")])
def test_same_values_and_coalitions_as_shap_when_sampling(n_features, n_samples):
    f = _softmax_model(n_features, seed=n_features)
    X = _data(n_features)
    bg, x = X[:10], X[20:23]
    seed = 7
    exp = xs.create_explainer("native:kernel_shap", f, n_samples=n_samples,
                              random_state=seed).fit(bg).explain(x)
    assert not exp.params["exact"]
    ref, masks, weights = _shap_reference(f, x, bg, exp.target, n_samples, seed)
    c = kernel_coalitions(n_features, n_samples, seed)
    for m, w in zip(masks, weights, strict=True):  # shap draws the same set for every instance
        np.testing.assert_array_equal(c.masks, m)
        np.testing.assert_allclose(c.weights, w, rtol=1e-13, atol=0)
    assert exp.params["n_samples_used"] == len(c.weights)
    sampled = c.weights[c.masks.sum(1) >= 3]  # shap merges duplicates by adding weights
    assert len(np.unique(np.round(sampled / sampled.min(), 6))) > 1
    diff = np.abs(exp.attributions - ref).max()
    assert diff < 1e-4, diff
    assert np.abs(ref).max() > 1e-2


def test_same_values_as_shap_when_enumerating():
    model = _mlp(8)
    X = _data(8)
    bg, x = X[:12], X[20:24]

    def f(a):
        with torch.no_grad():
            return model(torch.from_numpy(np.asarray(a, np.float32))).numpy()

    exp = xs.create_explainer("native:kernel_shap", model, n_samples="all").fit(bg).explain(x)
    assert exp.params["exact"] and exp.params["n_samples_used"] == 254
    ref, masks, weights = _shap_reference(f, x, bg, exp.target, 254, seed=0)
    c = kernel_coalitions(8, "all")
    np.testing.assert_array_equal(c.masks, masks[0])
    np.testing.assert_allclose(c.weights, weights[0], rtol=1e-13, atol=0)
    assert np.abs(exp.attributions - ref).max() < 1e-4


def test_coalitions_even_number_of_players():
    # even M: the middle size has no separate complement; duplicates there are merged too
    f = _softmax_model(10)
    X = _data(10)
    bg, x = X[:4], X[20:21]
    _, masks, weights = _shap_reference(f, x, bg, np.array([0]), 200, seed=11)
    c = kernel_coalitions(10, 200, 11)
    np.testing.assert_array_equal(c.masks, masks[0])
    np.testing.assert_allclose(c.weights, weights[0], rtol=1e-13, atol=0)
    assert np.isclose(c.weights.sum(), 1.0)


def test_seeds():
    f = _softmax_model(12)
    X = _data(12)
    bg, x = X[:6], X[20:22]

    def run(n_samples, seed):
        e = xs.create_explainer("native:kernel_shap", f, n_samples=n_samples,
                                random_state=seed)
        return e.fit(bg).explain(x).attributions

    np.testing.assert_array_equal(run(100, 3), run(100, 3))
    assert np.abs(run(100, 3) - run(100, 4)).max() > 1e-4
    np.testing.assert_allclose(run(6000, 3), run(6000, 4), atol=1e-7)  # 6000 >= 2^12 - 2: exact



def test_seeded_coalitions_are_computed_once_and_equal_fresh_ones():
    from xai_suite.methods.native.kernel_shap import _game

    c1, reg1 = _game(9, 60, 5)
    c2, reg2 = _game(9, 60, 5)
    assert c1 is c2 and reg1 is reg2  # cached per (players, budget, seed)
    fresh = kernel_coalitions(9, 60, 5)
    np.testing.assert_array_equal(c1.masks, fresh.masks)
    np.testing.assert_array_equal(c1.weights, fresh.weights)
    assert not c1.masks.flags.writeable and not c1.weights.flags.writeable
    assert _game(9, 60, None)[0] is not _game(9, 60, None)[0]  # unseeded: drawn afresh
    with pytest.raises(TypeError, match="n_samples"):
        _game(9, 60.0, 5)
    with pytest.raises(TypeError, match="random_state"):
        _game(9, 60, 1.5)
    # an explainer called twice (the cached game) gives what a fresh process would
    f = _softmax_model(9)
    X = _data(9)
    e = xs.create_explainer("native:kernel_shap", f, n_samples=60, random_state=5).fit(X[:4])
    first = e.explain(X[20:23]).attributions
    np.testing.assert_array_equal(e.explain(X[20:23]).attributions, first)



def test_sklearn_skips_its_finite_check_only_on_finite_mixtures():
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from xai_suite.methods.native.kernel_shap import _trusted_rows
    from xai_suite.modeling import ModelWrapper

    X = _data(5).astype(np.float64)
    y = (X[:, 0] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    x, bg = torch.from_numpy(X[:2]), torch.from_numpy(X[2:6])
    bad = bg.clone()
    bad[0, 0] = float("nan")
    cases = [(clf, bg, True), (clf, bad, False), (pipe, bg, False), (_mlp(5), bg, False)]
    for model, b, skipped in cases:
        with _trusted_rows(ModelWrapper(model), x, b):
            assert sklearn.get_config()["assume_finite"] is skipped
    assert sklearn.get_config()["assume_finite"] is False
    # values as shap's, with the check skipped
    ours = xs.create_explainer("native:kernel_shap", clf, n_samples=30,
                               random_state=0).fit(X[:6]).explain(X[20:23].astype(np.float32))
    ref, *_ = _shap_reference(clf.predict_proba, X[20:23].astype(np.float32),
                              ours.baselines[:, 0], ours.target, 30, 0)
    np.testing.assert_allclose(ours.attributions, ref, atol=1e-6)

# -- batching and additivity ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["torch", "callable"])
def test_batch_size_invariance_and_additivity(kind):
    n_features = 11
    model = _mlp(n_features) if kind == "torch" else _softmax_model(n_features)
    X = _data(n_features)
    bg, x = X[:5], X[20:24]
    results = {}
    for bs in (1, 7, 30, "auto"):
        e = xs.create_explainer("native:kernel_shap", model, n_samples=40, random_state=2,
                                batch_size=bs)
        results[bs] = e.fit(bg).explain(x)
    ref = results["auto"]
    scale = np.abs(ref.attributions).max()
    for bs in (1, 7, 30):
        np.testing.assert_allclose(results[bs].attributions, ref.attributions, rtol=0,
                                   atol=1e-5 * scale)
    # additivity: the values sum to f(x) - mean over the background of f(b)
    fb = results[1].baselines  # (B, N, F): the background, for every instance
    assert fb.shape == (5, 4, n_features)
    np.testing.assert_array_equal(fb[:, 0], bg)
    assert np.abs(ref.convergence_delta).max() < 1e-5


def test_rows_per_model_call_are_bounded():
    n_features, n_bg = 9, 5
    f = _softmax_model(n_features)
    calls = []

    def counted(a):
        calls.append(len(a))
        return f(a)

    X = _data(n_features)
    bg, x = X[:n_bg], X[20:23]
    masks = torch.from_numpy(kernel_coalitions(n_features, 50, 0).masks > 0.5)
    from xai_suite.modeling import ModelWrapper

    fwd = ModelWrapper(counted).forward
    target = torch.tensor([0, 1, 2])
    xt, bt = torch.from_numpy(x), torch.from_numpy(bg)
    for rows in (3, 12, 1000):
        calls.clear()
        v = coalition_values(fwd, xt, bt, target, masks, rows)
        assert max(calls) <= rows and sum(calls) == 3 * len(masks) * n_bg
        np.testing.assert_allclose(v.numpy(), coalition_values(fwd, xt, bt, target, masks,
                                                               10_000).numpy(), atol=1e-7)
    # the value of a coalition is the mean over the background of the mixed rows
    z = masks[4].numpy()
    mixed = np.where(z, x[1], bg)
    assert np.isclose(v[1, 4].item(), f(mixed)[:, 1].mean(), atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e38])  # 1e38: x - b could overflow, so no lerp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_rows_are_exact_mixtures(scale, dtype):
    n_features, n_bg = 7, 4
    seen = []

    def recording(a):
        seen.append(a.copy())
        return np.zeros((len(a), 2))

    from xai_suite.modeling import ModelWrapper

    rng = np.random.default_rng(5)
    x = (rng.normal(size=(2, n_features)) * scale).astype(np.float32)
    bg = (rng.normal(size=(n_bg, n_features)) * scale).astype(np.float32)
    x[0, 1], bg[2, 3] = 0.0, -0.0
    masks = torch.from_numpy(kernel_coalitions(n_features, "all").masks > 0.5)
    coalition_values(ModelWrapper(recording).forward, torch.from_numpy(x).to(dtype),
                     torch.from_numpy(bg).to(dtype), torch.tensor([0, 1]), masks, rows=50)
    rows = np.concatenate(seen)
    z = masks.numpy()
    expected = np.where(z[None, :, None, :], x[:, None, None, :], bg[None, None])
    np.testing.assert_array_equal(rows, expected.reshape(-1, n_features))


def test_sklearn_model_and_recorded_params():
    from sklearn.linear_model import LogisticRegression

    X = _data(12, n=60)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    e = xs.create_explainer("kernel_shap", clf, n_samples=80, n_baseline_samples=20, random_state=0)
    assert e.info.qualified_name == "native:kernel_shap"
    exp = e.fit(X).explain(X[:3])
    assert exp.params["n_baseline_samples_used"] == 20 and exp.params["n_samples_used"] == 80
    assert exp.baselines.shape == (20, 3, 12)
    assert np.abs(exp.convergence_delta).max() < 1e-5
    # a linear model in log-odds: the probability's Shapley values are largest for feature 0
    assert (np.abs(exp.attributions).argmax(1) == np.abs(clf.coef_[0] * (X[:3] - X.mean(0)))
            .argmax(1)).mean() >= 2 / 3


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "exc"), [(1, ValueError), (0, ValueError), (-5, ValueError),
                                            ("some", ValueError), (1.5, TypeError),
                                            (True, TypeError), (None, TypeError)])
def test_bad_n_samples(value, exc):
    f = _softmax_model(4)
    X = _data(4)
    e = xs.create_explainer("native:kernel_shap", f, n_samples=value).fit(X)
    with pytest.raises(exc, match="n_samples must be 'auto', 'all' or an int >= 2"):
        e.explain(X[:2])
    with pytest.raises(exc, match="n_samples"):
        kernel_coalitions(4, value)


def test_other_errors():
    f = _softmax_model(4)
    X = _data(4)
    with pytest.raises(NotFittedError, match="call fit"):
        xs.create_explainer("native:kernel_shap", f).explain(X[:2])
    with pytest.raises(ValueError, match="n_baseline_samples must be a positive int"):
        xs.create_explainer("native:kernel_shap", f, n_baseline_samples=0).fit(X).explain(X[:2])
    with pytest.raises(ValueError, match=r"random_state must be None or an int in \[0, 2\*\*32 - 1\]"):
        xs.create_explainer("native:kernel_shap", f, random_state=-1).fit(X).explain(X[:2])
    with pytest.raises(TypeError, match="random_state must be None or an int"):
        kernel_coalitions(4, 10, random_state=1.5)
    with pytest.raises(ValueError, match="at most 22 players"):
        kernel_coalitions(23, "all")
    with pytest.raises(ValueError, match="at least 2 players"):
        kernel_coalitions(1)
    e = xs.create_explainer("native:kernel_shap", f).fit(X)
    with pytest.raises(TypeError, match="integer group labels"):
        e.explain(X[:2], feature_mask=np.zeros(4))
    with pytest.raises(ValueError, match="feature_mask must have one instance's shape"):
        e.explain(X[:2], feature_mask=np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="per-instance shape"):
        e.explain(X[:2, :3])
    with pytest.raises(ValueError, match=r"explains tabular \(N, F\)"):
        e.explain(X[:2, :, None])


def test_registry_entry():
    info = xs.explainer_info("kernel_shap")
    assert info.qualified_name == "native:kernel_shap"
    t = info.tags
    assert t.needs_baseline and t.uses_feature_mask and t.has_convergence_delta and t.batch_invariant
    assert xs.create_explainer("kernel_shap", lambda a: a).requires_fit  # training_sample learns
    assert set(t.model_kinds) == {"torch", "sklearn", "callable"}
    assert "captum:kernel_shap" in xs.list_explainers(available_only=False).qualified_name.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    model = _mlp(12)
    X = _data(12)
    bg, x = X[:10], X[20:26]
    res = {}
    for device, bs in (("cpu", "auto"), ("cuda", "auto"), ("cuda", 13)):
        e = xs.create_explainer("native:kernel_shap", model, n_samples=300, random_state=1,
                                device=device, batch_size=bs)
        res[device, bs] = e.fit(bg).explain(x)
    ref = res["cpu", "auto"].attributions
    for key in (("cuda", "auto"), ("cuda", 13)):
        np.testing.assert_allclose(res[key].attributions, ref, rtol=0,
                                   atol=1e-5 * np.abs(ref).max())
        assert np.abs(res[key].convergence_delta).max() < 1e-5


def test_too_few_coalitions_warn_and_stay_additive():
    f = _softmax_model(12)
    X = _data(12)
    e = xs.create_explainer("native:kernel_shap", f, n_samples=2, random_state=0).fit(X[:10])
    with pytest.warns(RuntimeWarning, match="regression is singular"):
        exp = e.explain(X[20:23])
    assert exp.params["n_samples_used"] == 2
    assert np.abs(exp.convergence_delta).max() < 1e-5
