"""Tabular counterfactuals: nearest unlike neighbour, Wachter et al., growing spheres."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

import xai_suite as xs
from xai_suite.baselines import NotFittedError
from xai_suite_tabular.counterfactuals import _in_layer, feature_scale, resolve_features

NUN, WACHTER, GS = "native:nearest_unlike_neighbor", "native:wachter", "native:growing_spheres"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; several threads on a shared CPU crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _split(X, y, seed=0):
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr).astype(np.float32), ytr, sc.transform(Xte).astype(np.float32), yte


@pytest.fixture(scope="module")
def cancer():
    """Standardised breast cancer (30 features), an MLP, a logistic regression and its torch twin."""
    Xtr, ytr, Xte, yte = _split(*load_breast_cancer(return_X_y=True))
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(mlp.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    for _ in range(200):  # full batch, well under a second
        opt.zero_grad()
        nn.functional.cross_entropy(mlp(xt), yt).backward()
        opt.step()
    mlp.eval()
    lr = LogisticRegression(max_iter=1000).fit(Xtr, ytr)
    lin = nn.Linear(30, 2)  # logits (0, w.x + b): the same probabilities as ``lr``
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.stack([np.zeros(30), lr.coef_[0]])))
        lin.bias.copy_(torch.tensor([0.0, lr.intercept_[0]]))
    lin.eval()
    acc = (mlp(torch.from_numpy(Xte)).argmax(1).numpy() == yte).mean()
    assert acc > 0.9 and lr.score(Xte, yte) > 0.9
    return {"X": Xtr, "y": ytr, "xq": Xte[:30], "mlp": mlp, "lr": lr, "lr_torch": lin}


def _fit(name, model, data, **params):
    return xs.create_explainer(name, model, **params).fit(data["X"], data["y"])


def _predict(model, a: np.ndarray) -> np.ndarray:
    if isinstance(model, nn.Module):
        with torch.no_grad():
            return model(torch.from_numpy(a)).numpy()
    return model.predict_proba(a) if hasattr(model, "predict_proba") else model(a)


# -- validity on real data ------------------------------------------------------------------------
CASES = [(NUN, "mlp"), (NUN, "lr"), (GS, "mlp"), (GS, "lr"), (WACHTER, "mlp"), (WACHTER, "lr_torch")]


@pytest.mark.parametrize(("name", "model"), CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_valid_on_breast_cancer(cancer, name, model):
    # measured: every method valid on 30/30 instances with both models (numpy 2.3, torch 2.13)
    params = {"random_state": 0} if name == GS else {}
    exp = _fit(name, cancer[model], cancer, **params).explain(cancer["xq"])
    assert exp.valid.mean() >= 0.9, f"{name} on {model}: validity {exp.valid.mean():.2f}"
    np.testing.assert_array_equal(exp.valid, _predict(cancer[model], exp.counterfactuals).argmax(1)
                                  == exp.target)
    assert (exp.target != exp.predictions.argmax(1)).all()


def test_search_methods_are_closer_than_the_nearest_unlike_neighbor(cancer):
    # measured (mean L1 over 30 instances, std units): NUN 21.6, growing spheres 12.7, Wachter
    # 9.5; changed features 30, 10.4 and 7.6 (the NUN is a real data point)
    xq = cancer["xq"]
    nun = _fit(NUN, cancer["mlp"], cancer).explain(xq)
    gs = _fit(GS, cancer["mlp"], cancer, random_state=0).explain(xq)
    wa = _fit(WACHTER, cancer["mlp"], cancer).explain(xq)
    assert nun.metrics["changed"].mean() > 29
    for exp in (gs, wa):
        assert exp.metrics["l1"].mean() < 0.75 * nun.metrics["l1"].mean()
        assert exp.metrics["changed"].mean() < 15


# -- nearest unlike neighbour ----------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["std", None])
def test_nun_is_the_brute_force_nearest_of_the_target_class(scale):
    # wine: 3 classes, features in very different units (proline ~ 1000, hue ~ 1)
    X, y = load_wine(return_X_y=True)
    Xtr, Xte, ytr, _ = train_test_split(X.astype(np.float32), y, test_size=0.3, random_state=0,
                                        stratify=y)
    model = LogisticRegression(max_iter=5000).fit(StandardScaler().fit(Xtr).transform(Xtr), ytr)
    sc = StandardScaler().fit(Xtr)

    def f(a):
        return model.predict_proba(sc.transform(a))

    e = xs.create_explainer(NUN, f, scale=scale).fit(Xtr)
    pred = f(Xte).argmax(1)
    np.testing.assert_array_equal(e.train_class_, f(Xtr).argmax(1))
    s = Xtr.astype(np.float64).std(0) if scale == "std" else np.ones(Xtr.shape[1])
    picked = {}
    for shift in (1, 2):  # every other class as the target
        target = (pred + shift) % 3
        exp = e.explain(Xte, target=target)
        d = np.linalg.norm((Xte[:, None, :].astype(np.float64) - Xtr[None]) / s, axis=-1)
        d[e.train_class_[None, :] != target[:, None]] = np.inf
        nearest = Xtr[d.argmin(1)]
        np.testing.assert_array_equal(exp.counterfactuals, nearest)
        assert exp.valid.all()
        picked[shift] = exp.counterfactuals
    # scaling matters on wine: raw units pick other neighbours than std units
    other = xs.create_explainer(NUN, f, scale="std" if scale is None else None).fit(Xtr)
    assert not np.array_equal(other.explain(Xte, target=(pred + 1) % 3).counterfactuals, picked[1])


def test_nun_immutable_copies_features_and_takes_the_nearest_valid_hybrid(cancer):
    model, X, xq = cancer["lr"], cancer["X"], cancer["xq"]
    imm = [0, 7, 20, 27]  # radius, concave points, worst radius, worst concave points
    e = _fit(NUN, model, cancer, immutable=imm)
    exp = e.explain(xq)
    np.testing.assert_array_equal(exp.counterfactuals[:, imm], xq[:, imm])
    assert exp.valid.mean() >= 0.9
    # brute force: candidates ranked by std-scaled distance over the mutable features; the
    # first whose copy with the query's immutable values the model keeps in the target class
    s = X.astype(np.float64).std(0)
    mut = np.setdiff1d(np.arange(30), imm)
    for i in range(len(xq)):
        cand = np.flatnonzero(e.train_class_ == exp.target[i])
        d = np.linalg.norm((X[cand][:, mut] - xq[i, mut]) / s[mut], axis=1)
        hybrids = X[cand[np.argsort(d, kind="stable")]].copy()
        hybrids[:, imm] = xq[i, imm]
        ok = _predict(model, hybrids).argmax(1) == exp.target[i]
        expected = hybrids[ok.argmax()] if ok.any() else hybrids[0]
        np.testing.assert_array_equal(exp.counterfactuals[i], expected)


def test_nun_warns_when_the_immutable_features_decide_the_class():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)

    def f(a):  # the class is the sign of feature 0 alone
        p = 0.5 * (1 + np.tanh(5 * a[:, 0]))
        return np.stack([1 - p, p], 1)

    e = xs.create_explainer(NUN, f, immutable=[0]).fit(X)
    with pytest.warns(UserWarning, match="immutable features copied"):
        exp = e.explain(X[:5])
    assert not exp.valid.any()
    np.testing.assert_array_equal(exp.counterfactuals[:, 0], X[:5, 0])


# -- Wachter --------------------------------------------------------------------------------------
def _linear_torch(a, b=0.0):
    """Logits (0, a.x + b): class 1 iff a.x + b > 0."""
    lin = nn.Linear(len(a), 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(np.stack([np.zeros(len(a)), a]), dtype=torch.float32))
        lin.bias.copy_(torch.tensor([0.0, b]))
    return lin.eval()


def test_wachter_finds_the_l1_closest_counterfactual_of_a_linear_model():
    # Over a linear boundary the MAD-scaled L1 distance is cheapest along the feature with the
    # largest |a_j| * MAD_j: reaching a logit gain g costs at least g / max_j |a_j| MAD_j,
    # attained by moving that feature alone. Measured: at most 1.09 x that optimum (1.07 with
    # feature 1 immutable), the largest move always on the cheapest feature.
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(200, 5)) * [1.0, 3.0, 1.0, 1.0, 0.5]).astype(np.float32)
    a = np.array([1.0, 0.5, 0.8, -0.6, 0.4])  # times the spread: 1, 1.5 (feature 1), .8, .6, .2
    model = _linear_torch(a, b=-0.5)
    xq = X[_predict(model, X).argmax(1) == 0][:10]
    for imm, cheapest in ((None, 1), ([1], 0)):
        e = xs.create_explainer(WACHTER, model, margin=0.1, permitted_range=None, immutable=imm).fit(X)
        exp = e.explain(xq)
        assert exp.valid.all()
        s = e.scale_.numpy().astype(np.float64)
        moved = np.abs(exp.counterfactuals - xq) / s
        np.testing.assert_array_equal(moved.argmax(1), cheapest)
        logit = exp.counterfactuals.astype(np.float64) @ a - 0.5
        assert ((logit > 0) & (logit < 0.1 + 0.05)).all(), logit  # on the boundary + margin
        gain = logit - (xq.astype(np.float64) @ a - 0.5)
        mutable = np.setdiff1d(np.arange(5), imm or [])
        ratio = moved.sum(1) / (gain / (np.abs(a) * s)[mutable].max())
        assert (ratio > 1 - 1e-4).all() and (ratio < 1.15).all(), ratio
        if imm:
            np.testing.assert_array_equal(exp.counterfactuals[:, imm], xq[:, imm])


def test_wachter_larger_distance_weight_gives_closer_counterfactuals(cancer):
    # measured, mean MAD-scaled L1: 31.4 (0.01), 20.9 (0.1), 15.9 (1.0); changed features
    # 28.8, 17.1, 7.6
    xq = cancer["xq"]
    dist, changed = {}, {}
    for w in (0.01, 0.1, 1.0):
        e = _fit(WACHTER, cancer["mlp"], cancer, distance_weight=w)
        exp = e.explain(xq)
        assert exp.valid.all()
        dist[w] = (np.abs(exp.counterfactuals - xq) / e.scale_.numpy()).sum(1)
        changed[w] = exp.metrics["changed"]
    assert dist[0.01].mean() > dist[0.1].mean() > dist[1.0].mean()
    assert (dist[1.0] <= dist[0.01] + 1e-4).all()
    assert changed[1.0].mean() < changed[0.01].mean()


def test_wachter_clips_to_the_training_range(cancer):
    # measured with distance_weight=0.01: 22 values outside the range unclipped, 0 clipped
    # (22 on its bounds)
    lo = np.minimum(cancer["X"].min(0), cancer["xq"])  # the range, widened to include x
    hi = np.maximum(cancer["X"].max(0), cancer["xq"])
    outside = {}
    for fr in (None, "data"):
        e = _fit(WACHTER, cancer["mlp"], cancer, distance_weight=0.01, permitted_range=fr)
        cf = e.explain(cancer["xq"]).counterfactuals
        outside[fr] = ((cf < lo - 1e-6) | (cf > hi + 1e-6)).sum()
    assert outside[None] > 0 and outside["data"] == 0


# -- growing spheres -------------------------------------------------------------------------------
def test_layer_sampling_is_uniform_in_volume():
    gen = np.random.default_rng(0)
    d, low, high = 6, 1.0, 2.0
    z = _in_layer(gen, 20_000, d, low, high)
    r = np.linalg.norm(z, axis=1)
    assert r.min() >= low and r.max() <= high
    u = (r**d - low**d) / (high**d - low**d)  # uniform on [0, 1] when uniform in volume
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert np.abs((z / r[:, None]).mean(0)).max() < 0.03  # no preferred direction
    ball = np.linalg.norm(_in_layer(gen, 20_000, d, 0.0, 1.0), axis=1)
    assert abs((ball**d).mean() - 0.5) < 0.01


def test_growing_spheres_recovers_the_one_relevant_feature():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 6)).astype(np.float32)

    def f(a):  # class 1 iff feature 2 > 1
        p = 0.5 * (1 + np.tanh(10 * (a[:, 2] - 1)))
        return np.stack([1 - p, p], 1)

    xq = X[X[:, 2] < 0.5][:10]
    e = xs.create_explainer(GS, f, random_state=0, scale=None, first_radius=0.2).fit(X)
    exp = e.explain(xq)
    assert exp.valid.all()
    changed = exp.counterfactuals != xq
    np.testing.assert_array_equal(changed.sum(1), 1)
    assert changed[:, 2].all()
    # feature 2 lands beyond the threshold, within a few layer widths of it
    assert ((exp.counterfactuals[:, 2] > 1) & (exp.counterfactuals[:, 2] < 1 + 3 * 0.2)).all()


def test_growing_spheres_feature_selection_keeps_only_necessary_changes(cancer):
    model, xq = cancer["mlp"], cancer["xq"]
    # unbounded: the default (training) range would clip a feature at its edge back to x's value
    dense = _fit(GS, model, cancer, random_state=0, sparse=False, permitted_range=None).explain(xq)
    sparse = _fit(GS, model, cancer, random_state=0, permitted_range=None).explain(xq)
    assert dense.valid.all() and sparse.valid.all()
    # measured: 30 -> 10.4 changed features on average
    assert (dense.metrics["changed"] == 30).all()
    assert sparse.metrics["changed"].mean() < 0.5 * dense.metrics["changed"].mean()
    # selection only moves features back: what stays changed keeps the sphere point's value
    kept = sparse.counterfactuals != xq
    np.testing.assert_array_equal(sparse.counterfactuals[kept], dense.counterfactuals[kept])
    # every remaining change is necessary: undoing any one of them loses the target class
    inst, feat = np.nonzero(kept)
    undone = sparse.counterfactuals[inst].copy()
    undone[np.arange(inst.size), feat] = xq[inst, feat]
    assert (_predict(model, undone).argmax(1) != sparse.target[inst]).all()


def test_growing_spheres_reports_instances_it_cannot_flip():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    X[0, 0] = 100.0  # the only training instance of class 1

    def f(a):
        p = (a[:, 0] > 50).astype(np.float64)
        return np.stack([1 - p, p], 1)

    e = xs.create_explainer(GS, f, random_state=0, first_radius=0.1, max_layers=3).fit(X)
    with pytest.warns(UserWarning, match="no point of the target class within 3 layers"):
        exp = e.explain(X[1:4])
    assert not exp.valid.any()
    np.testing.assert_array_equal(exp.counterfactuals, X[1:4])


# -- all three: immutables, repeatability, batch size ----------------------------------------------
THREE = [(NUN, "lr", {}), (WACHTER, "mlp", {}), (GS, "mlp", {"random_state": 0})]
#: Batch sizes that split the work differently: one row, a few rows; for growing spheres,
#: part of one instance's 500 candidates, and the candidates of two instances.
BATCH_SIZES = {NUN: (1, 7), WACHTER: (3, 16), GS: (97, 1234)}


@pytest.mark.parametrize(("name", "model", "params"), THREE, ids=[t[0] for t in THREE])
def test_immutable_features_stay_exactly_unchanged(cancer, name, model, params):
    xq = cancer["xq"]
    free = _fit(name, cancer[model], cancer, **params).explain(xq)
    # the features the unconstrained search changes most often
    imm = np.argsort(-(free.counterfactuals != xq).sum(0), kind="stable")[:5].tolist()
    assert (free.counterfactuals[:, imm] != xq[:, imm]).any()
    exp = _fit(name, cancer[model], cancer, immutable=imm, **params).explain(xq)
    np.testing.assert_array_equal(exp.counterfactuals[:, imm], xq[:, imm])
    assert exp.valid.mean() >= 0.9
    assert exp.params["immutable"] == imm


@pytest.mark.parametrize(("name", "model", "params"), THREE, ids=[t[0] for t in THREE])
def test_repeatable_and_batch_size_invariant(cancer, name, model, params):
    xq = cancer["xq"]
    ref = _fit(name, cancer[model], cancer, **params).explain(xq).counterfactuals
    again = _fit(name, cancer[model], cancer, **params).explain(xq).counterfactuals
    np.testing.assert_array_equal(again, ref)
    scale = np.abs(ref).max()
    for bs in BATCH_SIZES[name]:
        other = _fit(name, cancer[model], cancer, batch_size=bs, **params).explain(xq)
        np.testing.assert_allclose(other.counterfactuals, ref, rtol=0, atol=1e-5 * scale)
        assert other.params["batch_size_used"] == bs
    if name == GS:
        seed1 = _fit(name, cancer[model], cancer, random_state=1).explain(xq).counterfactuals
        assert not np.array_equal(seed1, ref)


# -- clear errors ---------------------------------------------------------------------------------
def test_resolve_features():
    np.testing.assert_array_equal(resolve_features([3, 0], 5), [0, 3])
    np.testing.assert_array_equal(resolve_features(["c", 0], 5, names="abcde"), [0, 2])
    np.testing.assert_array_equal(resolve_features(pd.Index(["e", "b"]), 5, names="abcde"), [1, 4])
    assert resolve_features(None, 5).size == 0
    with pytest.raises(ValueError, match=r"in 0\.\.4 .*5 features.*got 5"):
        resolve_features([1, 5], 5)
    with pytest.raises(ValueError, match=r"in 0\.\.4"):
        resolve_features([-1], 5)
    with pytest.raises(ValueError, match="more than once"):
        resolve_features([1, "b"], 5, names="abcde")
    with pytest.raises(ValueError, match=r"'age', which is not among the columns \['a', 'b'\]"):
        resolve_features(["age"], 2, names=("a", "b"))
    with pytest.raises(ValueError, match="no column names: give DataFrames"):
        resolve_features(["age"], 2)
    with pytest.raises(TypeError, match=r"feature indices \(ints\) or column names"):
        resolve_features([0.0], 5)
    with pytest.raises(TypeError, match=r"feature indices \(ints\) or column names"):
        resolve_features([True], 5)
    with pytest.raises(TypeError, match="sequence of feature indices or column names"):
        resolve_features(3, 5)


def test_feature_scale_fallbacks():
    X = torch.tensor([[0.0, 1.0, 5.0], [0.0, 1.0, 5.0], [0.0, 1.0, 5.0], [2.0, 3.0, 5.0]])
    np.testing.assert_allclose(feature_scale(X, "std"), [np.sqrt(0.75), np.sqrt(0.75), 1.0])
    # MAD 0 for the first two (3 of 4 values equal): the standard deviation; constant: 1
    np.testing.assert_allclose(feature_scale(X, "mad"), [np.sqrt(0.75), np.sqrt(0.75), 1.0])
    Y = torch.tensor([[1.0], [2.0], [4.0], [8.0], [9.0]])
    np.testing.assert_allclose(feature_scale(Y, "mad"), [3.0])  # median 4, |dev| 3,2,0,4,5


@pytest.mark.parametrize(("name", "params", "exc", "match"), [
    (NUN, {"immutable": [30]}, ValueError, r"in 0\.\.29"),
    (NUN, {"immutable": list(range(30))}, ValueError, "none of the 30 features free"),
    (NUN, {"features_to_vary": [1], "immutable": [1]}, ValueError, "none of the 30 features free"),
    (NUN, {"features_to_vary": "radius"}, TypeError, "sequence of feature indices or column names"),
    (GS, {"integer_features": "yes"}, TypeError, "integer_features must be 'auto', None or"),
    (GS, {"permitted_range": {0: (2, 1)}}, ValueError, r"permitted_range\[0\] must be a pair"),
    (GS, {"permitted_range": {0: 3}}, ValueError, r"permitted_range\[0\] must be a pair"),
    (GS, {"permitted_range": "train"}, TypeError, "permitted_range must be 'data', None or a dict"),
    (GS, {"integer_features": [0], "permitted_range": {0: (0.2, 0.8)}}, ValueError, "holds no integer"),
    (NUN, {"scale": "mad"}, ValueError, "scale must be one of 'std', None"),
    (GS, {"immutable": [2, 2]}, ValueError, "more than once"),
    (GS, {"n_samples": 0}, ValueError, "n_samples must be a positive int"),
    (GS, {"first_radius": -1.0}, ValueError, "first_radius must be a finite number > 0"),
    (GS, {"sparse": "yes"}, TypeError, "sparse must be True or False"),
    (WACHTER, {"immutable": "radius"}, TypeError, "sequence of feature indices or column names"),
    (WACHTER, {"lambda_growth": 1.0}, ValueError, "lambda_growth must be a finite number > 1"),
    (WACHTER, {"lr": 0}, ValueError, "lr must be a finite number > 0"),
    (WACHTER, {"distance_weight": float("nan")}, ValueError, "distance_weight must be a finite"),
    (WACHTER, {"max_iter": 0}, ValueError, "max_iter must be a positive int"),
    (WACHTER, {"scale": "iqr"}, ValueError, "scale must be one of 'mad', 'std', None"),
])
def test_bad_parameters_raise_at_fit(cancer, name, params, exc, match):
    with pytest.raises(exc, match=match):
        _fit(name, cancer["mlp"], cancer, **params)


def test_wachter_on_a_black_box_agrees_with_autograd(cancer):
    # central differences on the scikit-learn model, autograd on its torch twin: the same
    # counterfactuals (measured: equal to float32 precision on 10 instances, default settings)
    xq = cancer["xq"][:4]
    box = _fit(WACHTER, cancer["lr"], cancer, max_iter=30, lambda_steps=3).explain(xq)
    grad = _fit(WACHTER, cancer["lr_torch"], cancer, max_iter=30, lambda_steps=3).explain(xq)
    assert box.valid.all() and grad.valid.all()
    np.testing.assert_allclose(box.counterfactuals, grad.counterfactuals, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(box.counterfactuals != xq, grad.counterfactuals != xq)


def test_bad_usage_raises_clearly(cancer):
    with pytest.raises(TypeError, match="'feature_range' \\(did you mean 'permitted_range'\\?\\)"):
        xs.create_explainer(WACHTER, cancer["mlp"], feature_range="data")
    with pytest.raises(NotFittedError, match="call fit"):
        xs.create_explainer(GS, cancer["lr"]).explain(cancer["xq"])
    e = _fit(NUN, cancer["lr"], cancer)
    with pytest.raises(ValueError, match=r"\(30,\)|30"):
        e.explain(cancer["xq"][:, :29])
    e.set_params(immutable=[31])  # a new parameter needs fitting again, which checks it
    with pytest.raises(NotFittedError):
        e.explain(cancer["xq"])
    with pytest.raises(ValueError, match=r"in 0\.\.29"):
        e.fit(cancer["X"], cancer["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid call warns about nothing
        _fit(NUN, cancer["lr"], cancer).explain(cancer["xq"][:3])


# -- constraints, a TabularModel, results in original units ----------------------------------------
@pytest.fixture(scope="module")
def mixed():
    """A scikit-learn pipeline with one-hot categoricals on make_mixed_tabular (integer ages),
    as a TabularModel; a torch model on the same codes that carries the column metadata."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from xai_suite_tabular.frames import TabularModel

    X, y = xs.datasets.make_mixed_tabular(300, random_state=0)
    X["age"] = X["age"].round().astype(int)
    pipe = make_pipeline(ColumnTransformer([("cat", OneHotEncoder(), ["color", "size"])],
                                           remainder=StandardScaler()),
                         LogisticRegression(max_iter=1000)).fit(X, y)
    model = TabularModel(pipe, X)
    codes = model.encode(X)

    class Coded(nn.Module):  # logits (0, w.x + b) of standardised codes: a differentiable twin
        feature_names_in_ = model.feature_names_in_
        feature_categories_ = model.feature_categories_

        def __init__(self):
            super().__init__()
            self.lin = _linear_torch(np.array([0.1, 0.0, 1.0, -1.0, 0.0]), b=-0.5)

        def forward(self, a):
            return self.lin(a - torch.tensor([40.0, 0.0, 0.0, 0.0, 0.0]))

    return {"X": X, "y": y, "model": model, "codes": codes, "torch": Coded().eval(),
            "frame": pd.DataFrame(codes, columns=X.columns), "q": X.iloc[:8]}


def _check_constraints(exp, model_codes_x, free, ranges=None):
    """Integers integral, categorical codes valid, ranges respected, fixed features unchanged."""
    x, cf = model_codes_x, exp.counterfactuals
    np.testing.assert_array_equal(cf[:, ~free], x[:, ~free])
    np.testing.assert_array_equal(cf[:, 0], np.round(cf[:, 0]))  # age: integer
    for j in (2, 3):  # color, size: codes 0..2
        assert np.isin(cf[:, j], [0, 1, 2]).all()
    for j, (lo, hi) in (ranges or {}).items():
        assert ((cf[:, j] >= lo) & (cf[:, j] <= hi)).all()


#: Every tabular counterfactual entry (Wachter through central differences on the black box).
MIXED = [(NUN, {}), (GS, {"random_state": 0, "n_samples": 200}),
         (WACHTER, {"max_iter": 20, "lambda_steps": 3})]


def test_mixed_covers_every_tabular_counterfactual_entry():
    table = xs.list_explainers(family="counterfactual", modality="tabular")
    assert set(table["qualified_name"]) == {m[0] for m in MIXED}
    assert all("callable" in kinds for kinds in table["model_kinds"])


@pytest.mark.parametrize(("name", "params"), MIXED, ids=[m[0] for m in MIXED])
def test_tabular_model_keeps_age_immutable_by_name_and_every_constraint(mixed, name, params):
    xq = mixed["model"].encode(mixed["q"])
    e = xs.create_explainer(name, mixed["model"], immutable=["age"],
                            permitted_range={"income": (15000, 40000)}, **params).fit(mixed["X"])
    exp = e.explain(mixed["q"])
    # measured: 8/8 valid (nearest unlike neighbour, growing spheres), 5/8 (Wachter, 20 steps)
    assert exp.valid.mean() >= (0.5 if name == WACHTER else 0.75), exp.valid
    free = np.array([False, True, True, True, True])
    _check_constraints(exp, xq, free, {1: (15000, 40000)})
    assert exp.params["constraints"] == {"fixed_features": ["age"], "integer_features": ["age"],
                                         "categorical_features": ["color", "size"],
                                         "permitted_range": {"income": [15000.0, 40000.0]}}
    # validity judged on what is returned: the pipeline's own prediction of the decoded rows
    pred = mixed["model"].model.predict(mixed["model"].decode(exp.counterfactuals))
    np.testing.assert_array_equal(pred == exp.target, exp.valid)
    # old -> new in original units, categories by label
    table = exp.changes()
    assert "age" not in set(table["feature"])
    for _, row in table.iterrows():
        i, col = int(row["instance"]), row["feature"]
        assert row["old"] == mixed["q"].iloc[i][col] or np.isclose(row["old"], mixed["q"].iloc[i][col])
        new = mixed["model"].decode(exp.counterfactuals[i : i + 1]).iloc[0][col]
        assert row["new"] == new or np.isclose(row["new"], new)
        if col in ("color", "size"):
            assert row["new"] in mixed["model"].feature_categories_[col]


@pytest.mark.parametrize(("name", "params"), MIXED, ids=[m[0] for m in MIXED])
def test_features_to_vary_and_integer_features(mixed, name, params):
    xq = mixed["model"].encode(mixed["q"])
    e = xs.create_explainer(name, mixed["model"], features_to_vary=["age", "income", "size"],
                            immutable=[1], integer_features=[0], **params).fit(mixed["X"])
    exp = e.explain(mixed["q"])
    free = np.array([True, False, False, True, False])
    _check_constraints(exp, xq, free)
    assert exp.params["constraints"]["fixed_features"] == ["income", "color", "noise"]
    assert exp.params["constraints"]["integer_features"] == ["age"]
    assert (exp.counterfactuals != xq)[:, [0, 3]].any()


def test_wachter_projects_integer_and_categorical_features(mixed):
    # a torch model on the codes with the TabularModel's metadata: continuous optimisation of
    # age and the codes, each iterate rounded before it is judged
    m, codes = mixed["torch"], mixed["codes"]
    xq = codes[_predict(m, codes).argmax(1) == 0][:8]
    e = xs.create_explainer(WACHTER, m, permitted_range={"age": (18, 60)}).fit(mixed["frame"])
    exp = e.explain(xq)
    assert exp.valid.all()
    _check_constraints(exp, xq, np.ones(5, dtype=bool), {0: (18, 60)})
    assert (exp.counterfactuals != xq)[:, [0, 2, 3]].any()
    assert exp.params["constraints"]["categorical_features"] == ["color", "size"]


def test_constraint_names_raise_clearly(mixed):
    with pytest.raises(ValueError, match=r"'agee', which is not among the columns \['age', 'income'"):
        xs.create_explainer(NUN, mixed["model"], immutable=["agee"]).fit(mixed["X"])
    with pytest.raises(ValueError, match="'color' is categorical"):
        xs.create_explainer(NUN, mixed["model"], permitted_range={"color": (0, 1)}).fit(mixed["X"])
    # names without columns: checked once the inputs come, and said so
    f = mixed["model"]
    e = xs.create_explainer(NUN, lambda a: f(a), immutable=["age"]).fit(mixed["codes"])
    with pytest.raises(ValueError, match="no column names"):
        e.explain(mixed["codes"][:2])


def test_permitted_range_on_breast_cancer(cancer):
    # every entry keeps a narrowed range (by index) and the default training range
    xq, X = cancer["xq"][:10], cancer["X"]
    for name, model, params in THREE:
        exp = _fit(name, cancer[model], cancer, permitted_range={0: (-0.5, 0.5), 7: (-1.0, 1.0)},
                   **params).explain(xq)
        cf = exp.counterfactuals
        assert ((cf[:, 0] >= -0.5) & (cf[:, 0] <= 0.5)).all() and ((cf[:, 7] >= -1) & (cf[:, 7] <= 1)).all()
        lo, hi = np.minimum(X.min(0), xq), np.maximum(X.max(0), xq)
        assert ((cf >= lo - 1e-6) & (cf <= hi + 1e-6)).all()
        assert exp.valid.mean() >= 0.8, (name, exp.valid.mean())


def test_plot_shows_old_to_new_with_a_complete_legend(mixed):
    exp = xs.create_explainer(NUN, mixed["model"]).fit(mixed["X"]).explain(mixed["q"].iloc[:1])
    table = exp.changes(0)
    ax = exp.plot(0)
    assert "training range" in ax.get_xlabel() and "attribution" not in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table["feature"])
    texts = {t.get_text() for t in ax.texts}
    for _, row in table.iterrows():
        fmt = [str(v) if isinstance(v, str) else f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
               for v in (row["old"], row["new"])]
        assert f"{fmt[0]} -> {fmt[1]}" in texts
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    delta = exp.counterfactuals[0] - exp.inputs[0]
    numeric = [j for j in (0, 1, 4) if delta[j] != 0]
    expected = ({"increase"} if (delta[numeric] > 0).any() else set()) | (
        {"decrease"} if (delta[numeric] < 0).any() else set()) | (
        {"category changed"} if delta[[2, 3]].any() else set())
    assert labels == expected
    # widths: change over the training range, so that age's small range stays visible
    widths = sorted(p.get_width() for p in ax.patches)
    rng = exp.feature_ranges[1] - exp.feature_ranges[0]
    np.testing.assert_allclose(widths, sorted(delta[numeric] / rng[numeric]), rtol=1e-5)
    assert ax.figure is not None


def test_timeseries_plot_legend_lists_changes_of_any_channel():
    from xai_suite.explanation import CounterfactualExplanation

    x = np.zeros((1, 2, 10), np.float32)
    cf = x.copy()
    cf[0, 1, 3:5] = 1.0  # only the second channel changes
    p = np.array([[0.9, 0.1]])
    exp = CounterfactualExplanation(inputs=x, counterfactuals=cf, target=np.array([1]), predictions=p,
                                    cf_predictions=p[:, ::-1], method="test",
                                    metrics={"valid": np.array([True]), "new_class": np.array([1])})
    ax = exp.plot(0)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"changed", "input", "counterfactual"}


def test_readme_counterfactual_table_in_original_units(readme_example):
    ns: dict = {}
    exec(compile(readme_example('"native:growing_spheres", model, immutable=["age"]'), "README example",
                 "exec"), ns)
    exp, model, ax, table = ns["exp"], ns["model"], ns["ax"], ns["exp"].changes()
    assert exp.valid.all()
    assert "age" not in set(table["feature"]) and len(table) >= 3
    for _, row in table.iterrows():
        if row["feature"] in ("color", "size"):
            assert row["old"] in model.feature_categories_[row["feature"]]
            assert row["new"] in model.feature_categories_[row["feature"]] and row["new"] != row["old"]
        elif row["feature"] == "income":
            assert 10_000 <= row["new"] <= 60_000
    assert ax.get_xlabel() == "change (new - old) / training range of the feature"
