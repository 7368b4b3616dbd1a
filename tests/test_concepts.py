"""Concept datasets, CBM/CEM models, interventions and concept attribution."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from scipy.optimize import brentq

import xai_suite as xs
from xai_suite.baselines import NotFittedError
from xai_suite.concepts import (
    CONCEPT_NAMES,
    ConceptBottleneckModel,
    ConceptEmbeddingModel,
    ConceptExplanation,
    intervene,
    intervention_curve,
    intervention_masks,
    make_dot,
    make_trigonometry,
    make_xor,
    plot_intervention_curve,
)
from xai_suite.metrics.statistics import bootstrap_interval, t_interval, wilson_interval

CONCEPT_METHODS = ("native:concept_intervention", "native:concept_shapley", "native:concept_gradient")


# -- datasets ---------------------------------------------------------------------------------
def _check_types(X, C, y, n, f, k):
    assert X.shape == (n, f) and C.shape == (n, k) and y.shape == (n,)
    assert X.dtype == np.float32 and C.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(C)) <= {0.0, 1.0} and set(np.unique(y)) == {0, 1}


def test_xor_follows_its_rule():
    X, C, y = make_xor(2000, random_state=3)
    _check_types(X, C, y, 2000, 2, 2)
    assert X.min() >= 0 and X.max() < 1
    np.testing.assert_array_equal(C, (X > 0.5).astype(np.float32))
    np.testing.assert_array_equal(y, C[:, 0] != C[:, 1])


def _invert(g, f, lo=-30.0, hi=30.0):
    """t with g(t) = f for the increasing g(t) = sin t + t or cos t + t."""
    return brentq(lambda t: g(t) - f, lo, hi, xtol=1e-12)


def test_trigonometry_follows_its_rule():
    """a, b, z recovered from the features (inverting sin t + t and cos t + t, each increasing)
    reproduce the other features, the concepts and the label on every row."""
    X, C, y = make_trigonometry(600, random_state=5)
    _check_types(X, C, y, 600, 7, 3)
    X64 = X.astype(np.float64)
    latent = np.empty((600, 3))
    for j in range(3):
        f_sin, f_cos = X64[:, 2 * j], X64[:, 2 * j + 1]
        for i in range(600):
            t_sin = _invert(lambda t: np.sin(t) + t, f_sin[i])
            t_cos = _invert(lambda t: np.cos(t) + t, f_cos[i])
            # each inverse is ill-conditioned where its slope vanishes (1 + cos t = 0 or
            # 1 - sin t = 0): take the one with the steeper slope there
            latent[i, j] = t_sin if 1 + np.cos(t_sin) >= 1 - np.sin(t_cos) else t_cos
    a, b, z = latent.T
    for j, t in enumerate(latent.T):  # the features recomputed from the latents
        np.testing.assert_allclose(X64[:, 2 * j], np.sin(t) + t, atol=1e-5)
        np.testing.assert_allclose(X64[:, 2 * j + 1], np.cos(t) + t, atol=1e-5)
    np.testing.assert_allclose(X64[:, 6], a**2 + b**2 + z**2, rtol=1e-5)
    np.testing.assert_array_equal(C, (latent > 0).astype(np.float32))
    np.testing.assert_array_equal(C[:, 0], X[:, 0] > 0)  # sin t + t > 0 iff t > 0
    np.testing.assert_array_equal(y, (a + b + z) > 1)
    # the concepts do not determine the label (an incomplete concept set)
    codes = C @ [1, 2, 4]
    assert any(len(set(y[codes == c])) == 2 for c in np.unique(codes))


def test_dot_follows_its_rule():
    X, C, y = make_dot(2000, random_state=11)
    _check_types(X, C, y, 2000, 4, 2)
    X64 = X.astype(np.float64)
    v1 = (X64[:, :2] + X64[:, 2:]) / 2  # X = [v1 + v3, v1 - v3]
    v3 = (X64[:, :2] - X64[:, 2:]) / 2
    np.testing.assert_array_equal(C[:, 0], v1 @ [1, 1] > 0)
    np.testing.assert_array_equal(C[:, 1], v3 @ [-1, -1] > 0)
    np.testing.assert_array_equal(y, (v1 * v3).sum(1) > 0)


@pytest.mark.parametrize("make", [make_xor, make_trigonometry, make_dot])
def test_dataset_seeds(make):
    state = np.random.get_state()  # noqa: NPY002
    a, b, c = make(50, random_state=1), make(50, random_state=1), make(50, random_state=2)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == state[0] and np.array_equal(after[1], state[1]), "global random state touched"
    with pytest.raises(TypeError, match="random_state must be an int"):
        make(50, random_state=None)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        make(0)


def test_datasets_match_the_reference_streams():
    """The same numbers as the reference code, which seeds numpy's global generator and draws
    from it in this order (the global state is restored afterwards)."""
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(9)  # noqa: NPY002
        x = np.random.uniform(0, 1, (30, 2))  # noqa: NPY002
        np.random.seed(9)  # noqa: NPY002
        h = np.random.normal(0, 2, (30, 3))  # noqa: NPY002
        np.random.seed(9)  # noqa: NPY002
        v1, v3 = np.random.randn(30, 2) * 2, np.random.randn(30, 2) * 2  # noqa: NPY002
    finally:
        np.random.set_state(state)  # noqa: NPY002
    np.testing.assert_array_equal(make_xor(30, random_state=9)[0], x.astype(np.float32))
    np.testing.assert_array_equal(make_trigonometry(30, random_state=9)[0][:, 0],
                                  (np.sin(h[:, 0]) + h[:, 0]).astype(np.float32))
    np.testing.assert_array_equal(make_dot(30, random_state=9)[0],
                                  np.hstack([v1 + v3, v1 - v3]).astype(np.float32))


def test_registered_in_xs_datasets():
    assert {"make_xor", "make_dot", "make_trigonometry"} <= set(xs.datasets.list_datasets())
    np.testing.assert_array_equal(xs.datasets.make_dot(20, random_state=0)[0],
                                  make_dot(20, random_state=0)[0])


# -- models -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trig():
    X, C, y = make_trigonometry(300, random_state=0)
    return X[:240], C[:240], y[:240], X[240:], C[240:], y[240:]


@pytest.mark.parametrize("make_model", [
    lambda **kw: ConceptBottleneckModel(training_scheme="joint", **kw),
    lambda **kw: ConceptBottleneckModel(training_scheme="sequential", concept_activation="hard", **kw),
    lambda **kw: ConceptBottleneckModel(training_scheme="independent", **kw),
    lambda **kw: ConceptEmbeddingModel(embedding_size=4, **kw),
], ids=["cbm-joint", "cbm-sequential-hard", "cbm-independent", "cem"])
def test_fit_predict_shapes_and_repeatability(make_model, trig):
    X, C, y, Xt, Ct, _ = trig
    m = make_model(epochs=150, random_state=0).fit(X, C, y, concept_names=CONCEPT_NAMES["trigonometry"])
    proba, pred = m.predict_proba(Xt), m.predict(Xt)
    assert proba.shape == (60, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    assert pred.dtype == np.int64 and np.array_equal(pred, proba.argmax(1))
    cp = m.predict_concept_proba(Xt)
    assert cp.shape == (60, 3) and cp.min() >= 0 and cp.max() <= 1
    np.testing.assert_array_equal(m.predict_concepts(Xt), (cp > 0.5).astype(np.float32))
    with torch.no_grad():  # the module maps features to task logits
        np.testing.assert_allclose(torch.softmax(m(torch.from_numpy(Xt)), 1).numpy(), proba, rtol=1e-5)
    assert (m.predict_concepts(Xt) == Ct).mean() > 0.9  # it learned the concepts
    assert m.concept_names_ == ["a > 0", "b > 0", "z > 0"] and not m.training
    same = make_model(epochs=150, random_state=0).fit(X, C, y)
    np.testing.assert_array_equal(same.predict_proba(Xt), proba)
    other = make_model(epochs=150, random_state=1).fit(X, C, y)
    assert not np.array_equal(other.predict_proba(Xt), proba)


def test_training_schemes(trig):
    """Independent and sequential training fit the concept encoder alone (the same encoder for
    one seed); joint training shapes it with the task loss too; hard concepts are 0/1."""
    X, C, y, Xt, *_ = trig
    fits = {s: ConceptBottleneckModel(training_scheme=s, epochs=100, random_state=0).fit(X, C, y)
            for s in ("independent", "sequential", "joint")}
    p = {s: m.predict_concept_proba(Xt) for s, m in fits.items()}
    np.testing.assert_array_equal(p["independent"], p["sequential"])
    assert not np.allclose(p["independent"], p["joint"])
    hard = ConceptBottleneckModel(concept_activation="hard", epochs=50, random_state=0).fit(X, C, y)
    with torch.no_grad():
        a = hard.bottleneck(torch.from_numpy(Xt)).numpy()
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, hard.predict_concepts(Xt))


def test_independent_cbm_head_learns_the_rule_from_true_concepts():
    """XOR's concepts determine its label: an independent CBM's head, trained on the true
    concepts, is exact on them (accuracy 1 after intervening on all concepts)."""
    X, C, y = make_xor(400, random_state=0)
    m = ConceptBottleneckModel(training_scheme="independent", task_hidden_sizes=(16,), epochs=300,
                               random_state=0).fit(X[:300], C[:300], y[:300])
    curve = intervention_curve(m, X[300:], C[300:], y[300:], random_state=0)
    assert curve.task_accuracy.iloc[-1] == 1.0
    assert curve.task_accuracy.iloc[0] >= 0.9


def test_params_and_validation(trig):
    from sklearn.base import clone

    X, C, y, *_ = trig
    m = ConceptEmbeddingModel(embedding_size=3, epochs=5)
    twin = clone(m)
    assert twin.get_params() == m.get_params() and twin is not m
    m.set_params(epochs=6)
    assert m.epochs == 6
    with pytest.raises(TypeError, match="unknown parameter"):
        m.set_params(emb_size=3)
    with pytest.raises(NotFittedError, match="not fitted"):
        m.predict(X)
    with pytest.raises(ValueError, match=r"C must have shape \(240, n_concepts\)"):
        m.fit(X, C[:10], y)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        m.fit(X, C * 2, y)
    with pytest.raises(ValueError, match="y must have shape"):
        m.fit(X, C, y[:5])
    with pytest.raises(TypeError, match="integer class labels"):
        m.fit(X, C, y + 0.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        m.fit(X, C, np.zeros_like(y))
    with pytest.raises(ValueError, match="NaN"):
        bad = X.copy()
        bad[0, 0] = np.nan
        m.fit(bad, C, y)
    with pytest.raises(ValueError, match="training_scheme must be one of"):
        ConceptBottleneckModel(training_scheme="together").fit(X, C, y)
    with pytest.raises(ValueError, match="concept_activation must be one of"):
        ConceptBottleneckModel(concept_activation="relu").fit(X, C, y)
    with pytest.raises(ValueError, match="intervention_prob must be a probability"):
        ConceptEmbeddingModel(intervention_prob=1.5).fit(X, C, y)
    m.fit(X, C, y)
    with pytest.raises(ValueError, match=r"expected shape \(N, 7\)"):
        m.predict(X[:, :5])


# -- interventions ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hard_cbm(trig):
    X, C, y, *_ = trig
    return ConceptBottleneckModel(concept_activation="hard", task_hidden_sizes=(8,), epochs=150,
                                  random_state=0).fit(X, C, y)


def test_intervening_on_all_concepts_gives_the_head_on_the_true_concepts(hard_cbm, trig):
    *_, Xt, Ct, yt = trig
    with torch.no_grad():
        head = torch.softmax(hard_cbm.task_head(torch.from_numpy(Ct)), 1).numpy()
    np.testing.assert_array_equal(intervene(hard_cbm, Xt, Ct), head)
    np.testing.assert_array_equal(intervene(hard_cbm, Xt, Ct, concepts=[0, 1, 2]), head)
    np.testing.assert_array_equal(intervene(hard_cbm, Xt, Ct, concepts=[]), hard_cbm.predict_proba(Xt))
    curve = intervention_curve(hard_cbm, Xt, Ct, yt, random_state=0)
    assert curve.k.tolist() == [0, 1, 2, 3]
    assert curve.task_accuracy.iloc[-1] == (head.argmax(1) == yt).mean()
    assert curve.task_accuracy.iloc[0] == (hard_cbm.predict(Xt) == yt).mean()
    assert curve.concept_accuracy.iloc[-1] == 1.0
    # a fixed order: k = 1 intervenes on concept 2 only
    fixed = intervention_curve(hard_cbm, Xt, Ct, yt, order=[2, 0, 1])
    only2 = intervene(hard_cbm, Xt, Ct, concepts=[2]).argmax(1)
    assert fixed.task_accuracy.iloc[1] == (only2 == yt).mean()


def test_intervention_masks(hard_cbm, trig):
    *_, Xt, Ct, _ = trig
    masks = [intervention_masks(hard_cbm, Xt, k, random_state=4) for k in range(4)]
    for k, m in enumerate(masks):
        assert m.shape == (60, 3) and (m.sum(1) == k).all()
        if k:
            assert (masks[k - 1] <= m).all()  # nested
    np.testing.assert_array_equal(masks[1], intervention_masks(hard_cbm, Xt, 1, random_state=4))
    assert len({tuple(r) for r in masks[1]}) == 3  # per-instance orders
    unc = intervention_masks(hard_cbm, Xt, 1, order="uncertainty")
    p = hard_cbm.predict_concept_proba(Xt)
    np.testing.assert_array_equal(unc.argmax(1), np.abs(p - 0.5).argmin(1))
    per_row = intervene(hard_cbm, Xt, Ct, concepts=masks[2])
    manual = np.stack([intervene(hard_cbm, Xt[i:i + 1], Ct[i:i + 1], np.flatnonzero(masks[2][i]))[0]
                       for i in range(5)])
    np.testing.assert_allclose(per_row[:5], manual, rtol=1e-6)
    with pytest.raises(ValueError, match="k must be an int in 0..3"):
        intervention_masks(hard_cbm, Xt, 4)
    with pytest.raises(ValueError, match="permutation"):
        intervention_curve(hard_cbm, Xt, Ct, np.zeros(60, int), order=[0, 0, 1])
    with pytest.raises(ValueError, match=r"C_true must have 3 columns"):
        intervene(hard_cbm, Xt, Ct[:, :2])
    with pytest.raises(TypeError, match="expected a concept model"):
        intervene(torch.nn.Linear(7, 2), Xt, Ct)


def test_cem_interventions_use_the_true_concept_embeddings(trig):
    """With every concept intervened on, a CEM's task head sees each concept's positive
    embedding where the concept is true and its negative one where it is false."""
    X, C, y, Xt, Ct, _ = trig
    cem = ConceptEmbeddingModel(embedding_size=4, epochs=30, random_state=0).fit(X, C, y)
    xt = torch.from_numpy(Xt)
    with torch.no_grad():
        ctx = cem._contexts(xt)
        emb = torch.where(torch.from_numpy(Ct)[..., None] > 0.5, ctx[..., :4], ctx[..., 4:]).flatten(1)
        expected = torch.softmax(cem.task_head(emb), 1).numpy()
    np.testing.assert_allclose(intervene(cem, Xt, Ct), expected, rtol=1e-5, atol=1e-7)


def test_plot_intervention_curve(hard_cbm, trig):
    *_, Xt, Ct, yt = trig
    curve = intervention_curve(hard_cbm, Xt, Ct, yt, random_state=0)
    assert (curve.n == len(yt)).all()
    ax = plot_intervention_curve({"CBM": curve, "CBM again": curve})
    assert len(ax.lines) == 2 and ax.get_xlabel().startswith("concepts intervened")
    assert ax.get_title() == ("task accuracy after setting k concepts to their true values\n"
                              "(shaded: 95% Wilson intervals)")
    assert len(ax.collections) == 2  # one band per curve, in its colour
    for line, band in zip(ax.lines, ax.collections, strict=True):
        assert band.get_facecolor()[0][:3] == pytest.approx(to_rgba(line.get_color())[:3])
        path = band.get_paths()[0].vertices  # the polygon: the upper edge, then the lower
        for k, acc in zip(curve.k, curve.task_accuracy, strict=True):
            ys = path[np.isclose(path[:, 0], k), 1]
            lo, hi = wilson_interval(round(acc * len(yt)), len(yt))
            assert ys.min() == pytest.approx(lo) and ys.max() == pytest.approx(hi)
            assert lo <= acc <= hi  # the band holds the curve
    plt.close(ax.figure)
    ax = plot_intervention_curve(curve, metric="concept_accuracy", title="t")
    assert ax.get_title() == "t" and not ax.collections  # no band for concept accuracy
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="pass confidence=None"):
        plot_intervention_curve(curve.drop(columns="n"))
    ax = plot_intervention_curve(curve.drop(columns="n"), confidence=None)
    assert not ax.collections and "Wilson" not in ax.get_title()
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="metric"):
        plot_intervention_curve(curve, metric="accuracy")


# -- concept attribution ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted():
    """The task is concept 1 alone: y = c1, with c0 and c2 independent coin flips."""
    rng = np.random.default_rng(0)
    C = rng.integers(0, 2, (400, 3)).astype(np.float32)
    X = (2 * C - 1 + 0.3 * rng.normal(size=C.shape)).astype(np.float32)
    return X, C, C[:, 1].astype(np.int64)


def test_planted_concept_gets_the_largest_attribution(planted):
    X, C, y = planted
    model = ConceptBottleneckModel(training_scheme="independent", epochs=200, random_state=0)
    model.fit(X[:300], C[:300], y[:300])
    for name in CONCEPT_METHODS:
        exp = xs.create_explainer(name, model).explain(X[300:])
        top = np.abs(exp.attributions).argmax(1)
        assert (top == 1).mean() >= 0.95, (name, (top == 1).mean())
        assert exp.top_concepts(int(np.flatnonzero(top == 1)[0]), 1) == ["c1"]


def test_cem_with_a_linear_head_has_no_concept_interactions(planted):
    """A CEM's task logit is affine in each concept's mixing weight when the head is linear, so
    single interventions equal the Shapley values. (On the planted task they do not single out
    concept 1: every concept's embeddings are computed from all features and carry c1 too.)"""
    X, C, y = planted
    cem = ConceptEmbeddingModel(embedding_size=4, epochs=100, random_state=0).fit(X[:300], C[:300], y[:300])
    single = xs.create_explainer("native:concept_intervention", cem).explain(X[300:])
    shapley = xs.create_explainer("native:concept_shapley", cem).explain(X[300:])
    np.testing.assert_allclose(single.attributions, shapley.attributions, atol=1e-4)


def _linear_cbm(trig):
    X, C, y, *_ = trig
    return ConceptBottleneckModel(epochs=60, random_state=0).fit(X, C, y)


def test_linear_head_attributions_are_exact_and_agree(trig):
    """With a linear task head, the target logit is w . a + b: all three methods give
    w_i (a_i - r_i) against the same reference; a concept with zero weight gets exactly 0."""
    *_, Xt, _, _ = trig
    m = _linear_cbm(trig)
    with torch.no_grad():
        m.task_head[0].weight[:, 0] = 0.0  # the head ignores concept 0
    exps = {n: xs.create_explainer(n, m, baseline="opposite").explain(Xt) for n in CONCEPT_METHODS}
    e = exps["native:concept_shapley"]
    w = m.task_head[0].weight.detach().numpy()[e.target]
    expected = w * (e.concepts - e.baselines)
    for name, exp in exps.items():
        np.testing.assert_allclose(exp.attributions, expected, atol=2e-5, err_msg=name)
        assert (exp.attributions[:, 0] == 0).all(), name
    np.testing.assert_array_equal(e.baselines, 1 - (e.concepts > 0.5))


def test_completeness_on_a_nonlinear_head(trig):
    X, C, y, Xt, *_ = trig
    m = ConceptEmbeddingModel(embedding_size=4, task_hidden_sizes=(8,), epochs=60, random_state=0)
    m.fit(X, C, y)
    xt = torch.from_numpy(Xt)
    for name, tol in (("native:concept_shapley", 1e-5), ("native:concept_gradient", 2e-2)):
        exp = xs.create_explainer(name, m).explain(Xt)
        idx = np.arange(len(Xt))
        with torch.no_grad():
            f_ref = m.task_from_bottleneck(xt, torch.from_numpy(exp.baselines)).numpy()[idx, exp.target]
        gap = exp.predictions[idx, exp.target] - f_ref
        np.testing.assert_allclose(exp.attributions.sum(1), gap, atol=tol * np.abs(gap).max())
        np.testing.assert_allclose(exp.convergence_delta, exp.attributions.sum(1) - gap, atol=1e-4)
    # shapley values against "half" of a CEM with a non-linear head differ from the single
    # interventions (interactions) but share their sum with integrated gradients
    sh = xs.create_explainer("native:concept_shapley", m, baseline=0.5).explain(Xt)
    ig = xs.create_explainer("native:concept_gradient", m, baseline=0.5, n_steps=200).explain(Xt)
    total = sh.attributions.sum(1)
    np.testing.assert_allclose(ig.attributions.sum(1), total, atol=2e-3 * np.abs(total).max())
    assert not np.allclose(sh.attributions, ig.attributions, atol=1e-2)


def test_explainer_errors_and_xs_explain(trig, tmp_path):
    *_, Xt, _, _ = trig
    m = _linear_cbm(trig)
    with pytest.raises(TypeError, match="explains concept models"):
        xs.create_explainer("native:concept_shapley", torch.nn.Linear(7, 2)).explain(Xt)
    with pytest.raises(NotFittedError, match="not fitted"):
        xs.create_explainer("native:concept_shapley", ConceptBottleneckModel()).explain(Xt)
    with pytest.raises(KeyError, match="unknown baseline 'opposit'.*'opposite'"):
        xs.create_explainer("native:concept_intervention", m, baseline="opposit").explain(Xt)
    with pytest.raises(ValueError, match="applies to tabular.*got concept inputs.*constant, opposite, zeros"):
        xs.create_explainer("native:concept_intervention", m, baseline="training_mean").explain(Xt)
    with pytest.raises(TypeError, match="'reference' \\(did you mean 'baseline'\\?\\)"):
        xs.create_explainer("native:concept_intervention", m, reference="opposite")
    ones = xs.create_explainer("native:concept_shapley", m, baseline=1.0).explain(Xt)
    assert (ones.baselines == 1).all() and ones.params["baseline"] == {"name": "constant", "value": 1.0}
    with pytest.raises(ValueError, match="expected shape|shape \\(N, 7\\)"):
        xs.create_explainer("native:concept_intervention", m).explain(Xt[:, :6])
    many = ConceptBottleneckModel(epochs=1, random_state=0).fit(
        np.zeros((4, 2), np.float32), np.tile([[0.0] * 17, [1.0] * 17], (2, 1)), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="at most 16"):
        xs.create_explainer("native:concept_shapley", many).explain(np.zeros((1, 2), np.float32))
    exp = xs.explain(m, Xt[:3], method="native:concept_shapley", target=1)
    assert isinstance(exp, ConceptExplanation) and (exp.target == 1).all()
    frame = exp.to_frame()
    assert len(frame) == 9 and list(frame.columns) == ["instance", "concept", "activation", "attribution",
                                                        "target"]
    back = xs.load(exp.save(tmp_path / "c.npz"))
    np.testing.assert_array_equal(back.baselines, exp.baselines)
    assert back.concept_names == exp.concept_names
    generic = xs.load_explanation(tmp_path / "c.npz")  # the one loader reads every result type
    assert isinstance(generic, xs.ConceptExplanation)
    np.testing.assert_array_equal(generic.attributions, exp.attributions)
    ax = exp.plot(1)
    assert len(ax.patches) == 3


def test_input_attribution_of_a_concept_model(trig):
    """The concept model is an nn.Module mapping features to task logits: input-space
    explainers run on it as on any torch classifier."""
    *_, Xt, _, _ = trig
    m = _linear_cbm(trig)
    exp = xs.explain(m, Xt[:4], method="native:integrated_gradients", baseline="zeros")
    assert exp.attributions.shape == (4, 7)
    assert np.abs(exp.convergence_delta).max() < 0.05 * np.abs(exp.predictions).max()


# -- intervals --------------------------------------------------------------------------------
def test_intervals():
    from scipy import stats

    v = np.array([0.8, 0.82, 0.79, 0.85, 0.81])
    lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, 4, loc=v.mean(), scale=stats.sem(v))
    np.testing.assert_allclose((lo, hi), ref)
    assert t_interval([0.5, 0.5]) == (0.5, 0.5)
    b = bootstrap_interval(v, random_state=0)
    assert b == bootstrap_interval(v, random_state=0) and v.min() <= b[0] < v.mean() < b[1] <= v.max()
    with pytest.raises(ValueError, match="at least 2 values"):
        t_interval([0.5])
