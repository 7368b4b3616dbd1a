import numpy as np
import pytest
import torch

import xai_suite as xs
from xai_suite.baselines import (
    Baseline,
    Blur,
    Constant,
    Gaussian,
    NotFittedError,
    Uniform,
    baseline_info,
    ensure_baseline,
)
from xai_suite.testing import reference_problem

BUILTINS = {"zeros", "constant", "uniform", "gaussian", "blur", "training_mean",
            "training_median", "training_sample", "nearest_unlike"}


def _draw(b, x, target=None, n=1, seed=0):
    t = np.zeros(len(x), dtype=np.int64) if target is None else target
    return b.sample(torch.as_tensor(x), t, n, np.random.default_rng(seed)).numpy()


def test_builtins_registered_with_modalities():
    assert set(xs.list_baselines()) >= BUILTINS
    assert "blur" not in xs.list_baselines("tabular")
    assert "blur" in xs.list_baselines("timeseries") and "blur" in xs.list_baselines("image")
    with pytest.raises(KeyError, match="did you mean 'training_mean'"):
        baseline_info("training_means")


def test_deterministic_values(rng):
    x = rng.normal(size=(3, 2, 10)).astype(np.float32)
    assert (_draw(ensure_baseline("zeros"), x) == 0).all()
    np.testing.assert_array_equal(_draw(ensure_baseline(0.5), x), 0.5)
    np.testing.assert_array_equal(_draw(Constant(value=-1.0), x), -1.0)
    blurred = _draw(Blur(sigma=2.0), x)[0]
    assert blurred.shape == x.shape
    assert blurred.std(axis=-1).mean() < x.std(axis=-1).mean()  # smoother along time
    np.testing.assert_allclose(blurred.mean(-1), x.mean(-1), atol=0.3)
    with pytest.raises(ValueError, match="applies to timeseries, image inputs; got tabular"):
        _draw(ensure_baseline("blur"), x[:, 0])


def test_specs_build_the_baseline_a_result_records(rng):
    """A dict spec is what describe() records: it builds the same baseline again."""
    x = rng.normal(size=(3, 2, 10)).astype(np.float32)
    b = ensure_baseline({"name": "blur", "sigma": 2.0})
    assert isinstance(b, Blur) and b.sigma == 2.0
    np.testing.assert_array_equal(_draw(b, x), _draw(Blur(sigma=2.0), x))
    exp = xs.explain(torch.nn.Linear(4, 2), x[:, 0, :4], baseline={"name": "constant", "value": 0.25})
    assert exp.params["baseline"] == {"name": "constant", "value": 0.25}
    assert ensure_baseline(exp.params["baseline"]).value == 0.25
    with pytest.raises(TypeError, match="baseline 'blur' takes no parameters \\['width'\\]"):
        ensure_baseline({"name": "blur", "width": 2})
    with pytest.raises(TypeError, match="a dict with a 'name'"):
        ensure_baseline({"sigma": 2})
    with pytest.raises(KeyError, match="unknown baseline 'blurr'"):
        ensure_baseline({"name": "blurr"})


def test_noise_baselines_are_seeded_and_in_range(rng):
    x = rng.normal(size=(4, 30)).astype(np.float32)
    u = Uniform()
    a, b = _draw(u, x, n=3, seed=1), _draw(u, x, n=3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 4, 30)
    assert (a >= x.min(1)[None, :, None]).all() and (a <= x.max(1)[None, :, None]).all()
    assert not np.array_equal(a, _draw(u, x, n=3, seed=2))
    g = _draw(Gaussian(sigma=0.1), x, n=200)
    np.testing.assert_allclose(g.mean(0), x, atol=0.1)
    np.testing.assert_allclose((g - x).std(axis=(0, 2)), 0.1 * x.std(1), rtol=0.15)
    fixed = _draw(Uniform(low=-1.0, high=1.0), x)
    assert fixed.min() >= -1 and fixed.max() <= 1


def test_fitted_baselines(rng):
    X = rng.normal(size=(30, 5)).astype(np.float32)
    mean = ensure_baseline("training_mean")
    with pytest.raises(NotFittedError, match="call the explainer's fit"):
        _draw(mean, X[:2])
    np.testing.assert_allclose(_draw(mean.fit(X), X[:2])[0], np.tile(X.mean(0), (2, 1)), rtol=1e-6)
    med = ensure_baseline("training_median").fit(X)
    np.testing.assert_allclose(_draw(med, X[:2])[0, 0], torch.from_numpy(X).median(0).values)
    with pytest.raises(ValueError, match="per-instance shape \\(4,\\)"):
        _draw(mean, X[:2, :4])
    sample = ensure_baseline("training_sample").fit(X)
    draws = _draw(sample, X[:3], n=5)
    assert all((np.abs(X - d).sum(1) == 0).any() for d in draws.reshape(-1, 5))


def test_nearest_unlike_picks_the_nearest_other_class():
    X = np.array([[0.0], [1.0], [5.0], [6.0]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    nun = ensure_baseline("nearest_unlike")
    with pytest.raises(ValueError, match="needs training labels"):
        nun.fit(X)
    nun.fit(X, y)
    x = np.array([[0.9], [5.2]], dtype=np.float32)
    out = _draw(nun, x, target=np.array([0, 1]))[0]
    np.testing.assert_array_equal(out, [[5.0], [1.0]])
    # explaining class 1 for the first point: the nearest sample of another class is 1.0
    np.testing.assert_array_equal(_draw(nun, x[:1], target=np.array([1]))[0], [[1.0]])
    with pytest.raises(ValueError, match="at least 2 classes"):
        ensure_baseline("nearest_unlike").fit(X, np.zeros(4))


def test_callable_and_custom_registered_baselines(registry_snapshot, rng):
    x = rng.normal(size=(3, 4)).astype(np.float32)
    b = ensure_baseline(lambda a: a * 0 + 2)
    np.testing.assert_array_equal(_draw(b, x)[0], 2)
    with pytest.raises(ValueError, match="must return an array of the inputs' shape"):
        _draw(ensure_baseline(lambda a: a[:, :2]), x)

    @xs.register_baseline("flipped", modalities="tabular")
    def flipped(a):
        """The input with its sign flipped."""
        return -a

    assert "flipped" in xs.list_baselines("tabular")
    np.testing.assert_array_equal(_draw(ensure_baseline("flipped"), x)[0], -x)
    with pytest.raises(ValueError, match="already registered"):
        xs.register_baseline("flipped")(flipped)

    @xs.register_baseline("halved")
    class Halved(Baseline):
        """Half the input."""

        def __init__(self):
            pass

        def _draw(self, x, target, rng):
            return x / 2

    np.testing.assert_allclose(_draw(ensure_baseline("halved"), x)[0], x / 2)
    assert ensure_baseline("halved").describe() == {"name": "halved"}


def test_ensure_baseline_errors():
    with pytest.raises(TypeError, match="explain\\(inputs, baselines=array\\)"):
        ensure_baseline(np.zeros(3))
    with pytest.raises(TypeError, match="got a bool"):
        ensure_baseline(True)
    with pytest.raises(TypeError, match="registered name"):
        ensure_baseline(object())
    assert Gaussian(sigma=0.3).describe() == {"name": "gaussian", "sigma": 0.3}


CASES = [
    (name, modality)
    for modality in ("tabular", "timeseries")
    for name in xs.list_explainers(family="gradient", modality=modality)
    .query("needs_baseline").qualified_name
]
#: Settings under which an entry uses its baseline (TSInterpret's default GRAD takes none).
USES_BASELINE = {"tsinterpret:tsr": {"inner": "IG"}}


@pytest.mark.parametrize(("name", "modality"), CASES, ids=[f"{m}-{n}" for n, m in CASES])
def test_every_gradient_method_accepts_every_baseline(name, modality):
    model, X, y, x = reference_problem(modality)
    for baseline in xs.list_baselines(modality):
        explainer = xs.create_explainer(name, model, baseline=baseline, random_state=0,
                                        **USES_BASELINE.get(name, {}))
        exp = explainer.fit(X, y).explain(x)
        assert exp.params["baseline"]["name"] == baseline
        assert exp.baselines.shape[1:] == x.shape
        assert np.isfinite(exp.attributions).all()
        if exp.convergence_delta is not None:
            scale = np.abs(exp.attributions.reshape(len(x), -1).sum(1) - exp.convergence_delta)
            assert (np.abs(exp.convergence_delta) <= 0.05 * scale.max() + 1e-4).all(), baseline
