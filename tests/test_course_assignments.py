"""Assignments kernel_shap, nun and dot: each reference gets full marks, the classic mistakes fail
the check that names the broken property, correct variants pass, starters score 0, and the
references agree with the library (native:kernel_shap, shap.KernelExplainer, nearest_of_class,
xs.datasets.make_dot)."""

import itertools
from math import comb

import numpy as np
import pytest

import xai_suite as xs
from xai_suite.cli import main
from xai_suite.course import check_file, check_function, get_assignment, init_assignment
from xai_suite.course.assignments import dot, kernel_shap, nun

SEEDS = range(5)
NAMES = ("kernel_shap", "nun", "dot")


def _assert_fails(name, fn, failed, phrase, seeds=SEEDS):
    """``fn`` loses points on every seed, the checks in ``failed`` among those failed, with ``phrase``."""
    for seed in seeds:
        report = check_function(name, fn, seed=seed)
        assert not report.passed and report.score < report.max_score
        assert set(failed) <= set(report.failed()), (seed, str(report))
        assert phrase in str(report), str(report)


@pytest.mark.parametrize("name", NAMES)
def test_reference_gets_full_marks_on_every_seed(name):
    a = get_assignment(name)
    assert 4 <= len(a.checks) <= 6 and all(1 <= c.points <= 3 and c.hint for c in a.checks)
    for seed in SEEDS:
        report = check_function(name, a.reference, seed=seed)
        assert report.passed and report.score == a.max_score, str(report)


@pytest.mark.parametrize("name", NAMES)
def test_starter_scores_zero(name, tmp_path):
    path = init_assignment(name, tmp_path)
    text = path.read_text()
    assert f"def {get_assignment(name).function}(" in text and "raise NotImplementedError" in text
    report = check_file(name, path, seed=0)
    assert report.score == 0 and "not implemented yet" in str(report)


@pytest.mark.parametrize("name", NAMES)
def test_command_line_grades_the_reference_with_full_marks(name, tmp_path, capsys):
    a = get_assignment(name)
    path = tmp_path / "solved.py"
    path.write_text(f"from xai_suite.course.assignments.{name} import reference as {a.function}\n")
    assert main(["course", "check", name, str(path), "--seed", "3"]) == 0
    assert "full marks" in capsys.readouterr().out


# -- kernel_shap -------------------------------------------------------------------------------
def _regression(f, x, bg, weight, *, fill_zero=False, drop_ends=False):
    """KernelSHAP as a regression with a free intercept; ``weight(F, s)`` per coalition size."""
    x, bg = np.asarray(x, float), np.asarray(bg, float)
    n = len(x)
    Z = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    fill = np.zeros((1, n)) if fill_zero else bg
    v = f((Z[:, None] * x + (1 - Z[:, None]) * fill[None]).reshape(-1, n)).reshape(len(Z), -1).mean(1)
    s = Z.sum(1).astype(int)
    w = np.array([weight(n, k) for k in s], float)
    keep = (s > 0) & (s < n) if drop_ends else np.ones(len(Z), bool)
    A = np.hstack([np.ones((len(Z), 1)), Z])[keep]
    sw = np.sqrt(w[keep])[:, None]
    return np.linalg.lstsq(sw * A, sw[:, 0] * v[keep], rcond=None)[0][1:]


def _shapley_kernel(n, k):
    return 1e6 if k in (0, n) else (n - 1) / (comb(n, k) * k * (n - k))


def test_kernel_shap_with_huge_end_weights_instead_of_constraints_passes():
    def big_weight(f, x, bg):
        return _regression(f, x, bg, _shapley_kernel)

    for seed in SEEDS:
        assert check_function("kernel_shap", big_weight, seed=seed).passed


def test_kernel_shap_uniform_weights_fail_agreement():
    def uniform(f, x, bg):
        return _regression(f, x, bg, lambda n, k: 1e6 if k in (0, n) else 1.0)

    _assert_fails("kernel_shap", uniform, ["agreement"], "exact (brute-force) Shapley values")


def test_kernel_shap_without_the_efficiency_constraint_fails_efficiency():
    def unconstrained(f, x, bg):  # empty and full coalitions dropped: no constraint at all
        return _regression(f, x, bg, _shapley_kernel, drop_ends=True)

    _assert_fails("kernel_shap", unconstrained, ["efficiency", "agreement"], "efficiency broken: sum(phi)")


def test_kernel_shap_zero_filling_fails_efficiency_and_linear():
    def zeros(f, x, bg):
        return _regression(f, x, bg, _shapley_kernel, fill_zero=True)

    _assert_fails("kernel_shap", zeros, ["efficiency", "agreement", "linear"],
                  "expected w * (x - mean(background))")


def test_kernel_shap_wrong_shape_is_named():
    _assert_fails("kernel_shap", lambda f, x, bg: np.zeros(len(x) + 1), ["efficiency"],
                  "must return phi of shape (F,)", seeds=[0])


def _softmax_model(n_features, seed):
    rng = np.random.default_rng(seed)
    w, v = rng.normal(size=(n_features, 8)), rng.normal(size=(8, 3))

    def model(a):
        z = np.tanh(np.asarray(a, np.float64) @ w) @ v
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return model


@pytest.mark.parametrize("n_features", [4, 7])
def test_kernel_shap_reference_equals_the_library_and_brute_force(n_features):
    model = _softmax_model(n_features, seed=n_features)
    rng = np.random.default_rng(n_features)
    bg = rng.normal(size=(6, n_features)).astype(np.float32)
    x = rng.normal(size=(2, n_features)).astype(np.float32)
    exp = (xs.create_explainer("native:kernel_shap", model, n_samples="all", n_baseline_samples=6)
           .fit(bg).explain(x, target=np.array([0, 2])))
    for i, t in enumerate((0, 2)):
        def f(z, t=t):
            return model(z)[:, t]

        phi = kernel_shap.reference(f, x[i].astype(np.float64), bg.astype(np.float64))
        np.testing.assert_allclose(phi, exp.attributions[i], atol=1e-6)
        np.testing.assert_allclose(phi, kernel_shap._exact_shapley(f, x[i].astype(np.float64),
                                                                   bg.astype(np.float64)), atol=1e-10)
        assert phi.sum() == pytest.approx(f(x[i:i + 1])[0] - f(bg).mean(), abs=1e-10)


def test_kernel_shap_reference_equals_shap_kernel_explainer():
    shap = pytest.importorskip("shap")
    model = _softmax_model(5, seed=3)
    rng = np.random.default_rng(3)
    bg, x = rng.normal(size=(5, 5)), rng.normal(size=5)

    def f(z):
        return model(z)[:, 1]

    sv = shap.KernelExplainer(f, bg).shap_values(x[None], nsamples=2**5, l1_reg=False, silent=True)
    np.testing.assert_allclose(kernel_shap.reference(f, x, bg), np.asarray(sv).reshape(-1), atol=1e-8)


# -- nun --------------------------------------------------------------------------------------
def _dist(X, x, p=2):
    d = np.abs(X - x).reshape(len(X), -1)
    return np.sqrt((d**2).sum(1)) if p == 2 else d.sum(1)


def test_nun_squared_distance_and_a_copy_pass():
    def squared(predict, x, X, y):
        u = np.flatnonzero(y != predict(x[None])[0])
        return X[u[np.argmin((_dist(X[u], x)) ** 2)]].copy()

    for seed in SEEDS:
        assert check_function("nun", squared, seed=seed).passed


def test_nun_nearest_of_any_class_fails_validity():
    def any_class(predict, x, X, y):
        return X[np.argmin(_dist(X, x))]

    _assert_fails("nun", any_class, ["validity", "nearest_series", "nearest_rows"],
                  "It is the nearest training row of any class")


def test_nun_from_the_label_of_x_not_the_prediction_fails():
    def label_of_x(predict, x, X, y):  # x's class guessed from its nearest neighbour's label
        d = _dist(X, x)
        u = np.flatnonzero(y != y[np.argmin(d)])
        return X[u[np.argmin(d[u])]]

    _assert_fails("nun", label_of_x, ["prediction"], "misclassifies x")


def test_nun_manhattan_distance_fails_euclidean():
    def manhattan(predict, x, X, y):
        u = np.flatnonzero(y != predict(x[None])[0])
        return X[u[np.argmin(_dist(X[u], x, p=1))]]

    _assert_fails("nun", manhattan, ["euclidean"], "nearest unlike row in Manhattan (L1) distance")


def test_nun_that_is_no_training_row_or_calls_predict_unbatched_fails():
    _assert_fails("nun", lambda predict, x, X, y: X.mean(0), ["row"], "not one of the rows of X_train",
                  seeds=[0])
    _assert_fails("nun", lambda predict, x, X, y: X[np.flatnonzero(y != predict(x)[0])[0]],
                  ["validity", "prediction"], "call predict(x[None]) for one instance", seeds=[0])


def test_nun_reference_equals_the_time_series_adapters_nearest_of_class():
    torch = pytest.importorskip("torch")
    from xai_suite_timeseries.counterfactuals import nearest_of_class

    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(40, 2, 15))
    y_train = rng.integers(0, 2, 40)
    for _ in range(5):
        x = rng.normal(size=(2, 15))
        label = int(rng.integers(2))
        got = nun.reference(lambda X, label=label: np.full(len(X), label), x, X_train, y_train)
        idx = nearest_of_class(torch.tensor(x[None]), torch.tensor(X_train), y_train, np.array([1 - label]))
        np.testing.assert_array_equal(got, X_train[idx[0, 0]])


def test_nun_reference_refuses_a_training_set_without_another_class():
    with pytest.raises(ValueError, match="every training instance has the predicted class"):
        nun.reference(lambda X: np.zeros(len(X), int), np.zeros(3), np.ones((4, 3)), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"expected X_train \(N, \*\(3,\)\)"):
        nun.reference(lambda X: np.zeros(len(X), int), np.zeros(3), np.ones((4, 2)), np.zeros(4, int))


# -- dot --------------------------------------------------------------------------------------
def _dot(n, seed, *, scale=2.0, concept2="v4", label="v1.v3"):
    rng = np.random.default_rng(seed)
    v1, v3 = scale * rng.standard_normal((n, 2)), scale * rng.standard_normal((n, 2))
    v2, v4 = np.ones(2), -np.ones(2)
    X = np.hstack([v1 + v3, v1 - v3])
    C = np.stack([v1 @ v2 > 0, v3 @ (v4 if concept2 == "v4" else v2) > 0], axis=1).astype(int)
    y = ((v1 * v3).sum(1) > 0) if label == "v1.v3" else (v1 @ v2 > 0)
    return X, C, y.astype(int)


def test_dot_our_library_generator_passes_the_checker():
    for seed in SEEDS:
        report = check_function("dot", lambda n, random_state=None: xs.datasets.make_dot(n, random_state),
                                seed=seed)
        assert report.passed, str(report)


def test_dot_reference_follows_the_rule_of_the_library():
    X, C, y = dot.reference(3000, random_state=0)
    Xl, Cl, yl = xs.datasets.make_dot(3000, random_state=0)
    assert [a.shape for a in (X, C, y)] == [a.shape for a in (Xl, Cl, yl)]  # same layout
    assert not np.array_equal(X, Xl)  # another random stream: only the rule is shared
    v1, v3 = (X[:, :2] + X[:, 2:]) / 2, (X[:, :2] - X[:, 2:]) / 2
    np.testing.assert_array_equal(C, np.stack([v1.sum(1) > 0, v3.sum(1) < 0], 1))
    np.testing.assert_array_equal(y, (v1 * v3).sum(1) > 0)
    # the concepts do not determine the label: every concept pattern has both labels
    for c in itertools.product([0, 1], repeat=2):
        rows = (C == c).all(1)
        assert 0.2 < y[rows].mean() < 0.8


def test_dot_unit_variance_fails_distribution():
    _assert_fails("dot", lambda n, random_state=None: _dot(n, random_state, scale=1.0),
                  ["distribution"], "have mean 0 and std 2")


def test_dot_concept_two_from_v2_fails_the_rule():
    _assert_fails("dot", lambda n, random_state=None: _dot(n, random_state, concept2="v2"),
                  ["rule"], "concept C[:, 1] disagrees with v3.v4")


def test_dot_label_from_v1_v2_fails_the_rule():
    _assert_fails("dot", lambda n, random_state=None: _dot(n, random_state, label="v1.v2"),
                  ["rule"], "label y disagrees with v1.v3")


def test_dot_ignoring_the_seed_fails_seeded():
    _assert_fails("dot", lambda n, random_state=None: _dot(n, None), ["seeded"],
                  "two calls with random_state=", seeds=[0])


def test_dot_wrong_shapes_are_named():
    _assert_fails("dot", lambda n, random_state=None: tuple(a[:-1] for a in _dot(n, random_state)),
                  ["shapes"], "X has shape", seeds=[0])
