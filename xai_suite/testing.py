"""Conformance checks every explainer passes: ``check_explainer`` (like scikit-learn's
``check_estimator``). Third parties run it on their own registered explainers.

Which checks apply follows the entry's tags: batch-size invariance for
``batch_invariant`` entries, seeded repeatability for ``stochastic`` ones, completeness for
those with a convergence delta.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import clone
from .baselines import NotFittedError
from .explanation import load_explanation
from .modeling import ModelWrapper
from .registry import create_explainer, explainer_info

#: Modalities the reference models cover.
REFERENCE_MODALITIES = ("tabular", "timeseries", "image")


class _MLP(nn.Module):
    def __init__(self, n_features=6, n_classes=3):
        super().__init__()
        self.l1, self.r1 = nn.Linear(n_features, 16), nn.ReLU()
        self.l2, self.r2 = nn.Linear(16, 16), nn.ReLU()
        self.out = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.out(self.r2(self.l2(self.r1(self.l1(x)))))


class _CNN1d(nn.Module):
    def __init__(self, channels=2, n_classes=3):
        super().__init__()
        self.c1, self.b1, self.r1 = nn.Conv1d(channels, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU()
        self.c2, self.r2 = nn.Conv1d(8, 8, 3, padding=1), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.out = nn.Linear(8, n_classes)

    def forward(self, x):
        h = self.r2(self.c2(self.r1(self.b1(self.c1(x)))))
        return self.out(self.pool(h).flatten(1))


class _CNN2d(nn.Module):
    def __init__(self, channels=1, n_classes=3):
        super().__init__()
        self.c1, self.r1, self.p1 = nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.c2, self.r2 = nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Linear(8, n_classes)

    def forward(self, x):
        h = self.r2(self.c2(self.p1(self.r1(self.c1(x)))))
        return self.out(self.pool(h).flatten(1))


_SHAPES = {"tabular": (6,), "timeseries": (2, 24), "image": (1, 8, 8)}


def reference_problem(modality: str, kind: str = "torch", random_state: int = 0, *,
                      n_channels: int | None = None):
    """A small model with non-trivial weights and data for ``modality``.

    Parameters
    ----------
    modality : {"tabular", "timeseries", "image"}
    kind : {"torch", "sklearn", "callable"}
        The model kind (black boxes for tabular data only).
    random_state : int
    n_channels : int, optional
        Channels of the series (time series only; default 2, 1 for univariate-only methods).

    Returns
    -------
    model, X_train (40, ...), y_train (40,), X_test (4, ...) : float32 arrays, int labels
    """
    if modality not in _SHAPES:
        raise ValueError(f"no reference problem for modality {modality!r}")
    rng = np.random.default_rng(random_state)
    shape = _SHAPES[modality]
    if n_channels is not None:
        if modality != "timeseries":
            raise ValueError("n_channels applies to the time-series reference problem only")
        shape = (n_channels, *shape[1:])
    X = rng.normal(size=(44, *shape)).astype(np.float32)
    score = X.reshape(44, -1)[:, : max(2, X[0].size // 3)].sum(1)
    y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype(np.int64)
    if kind == "torch":
        torch.manual_seed(random_state)
        model = {"tabular": _MLP, "timeseries": _CNN1d, "image": _CNN2d}[modality](shape[0])
        if modality == "timeseries":  # non-trivial batch-norm statistics, so eval mode matters
            with torch.no_grad():
                model.b1.running_mean.uniform_(-0.5, 0.5)
                model.b1.running_var.uniform_(0.5, 2.0)
        # a few full-batch steps in eval mode (keeping those statistics), so that the model
        # separates the classes: counterfactuals need training data in several classes
        model.eval()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        xt, yt = torch.from_numpy(X[:40]), torch.from_numpy(y[:40])
        for _ in range(60):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()
    elif kind == "sklearn" and modality == "tabular":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=500).fit(X[:40], y[:40])
    elif kind == "callable" and modality == "tabular":
        w = rng.normal(size=(shape[0], 3))

        def model(a):
            z = np.tanh(a @ w)
            e = np.exp(z - z.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)

    else:
        raise ValueError(f"no reference {kind} model for {modality}; pass model= and inputs=")
    return model, X[:40], y[:40], X[40:]


def _close(a, b, rtol, atol=0.0) -> bool:
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-12)
    return float(np.abs(a - b).max()) <= rtol * scale + atol


def _raises(exc_type, fn, what: str) -> None:
    try:
        fn()
    except exc_type:
        return
    except Exception as exc:
        got = f"{type(exc).__name__}: {exc}"
        raise AssertionError(f"{what}: expected {exc_type.__name__}, got {got}") from exc
    raise AssertionError(f"{what}: expected {exc_type.__name__}, nothing was raised")


def _check_result(what: str, values: np.ndarray, x: np.ndarray, exp, explainer) -> None:
    """``values`` (the explanation's ``what``) are finite float32 of the inputs' shape; the
    method and every hyper-parameter are recorded."""
    assert values.shape == x.shape, f"{what} shape {values.shape} != inputs shape {x.shape}"
    assert values.dtype == np.float32 and np.isfinite(values).all(), f"{what} must be finite float32"
    qname = explainer.info.qualified_name
    assert exp.method == qname, f"method {exp.method!r} != {qname!r}"
    missing = set(explainer.get_params()) - set(exp.params)
    assert not missing, f"params not recorded in the explanation: {missing}"


def _check_params(name: str, model, explainer) -> None:
    """get/set/clone by introspection; unknown parameter names raise ``TypeError``."""
    twin = clone(explainer)
    assert twin.get_params().keys() == explainer.get_params().keys(), "clone lost parameters"
    _raises(TypeError, lambda: explainer.set_params(not_a_parameter=1), "set_params(unknown)")
    _raises(TypeError, lambda: create_explainer(name, model, not_a_parameter=1), "unknown param")


def _check_bad_inputs(e, x: np.ndarray, n_outputs: int, *, fitted: bool) -> None:
    """NaN, a missing batch axis, a target out of range and (fitted) another instance shape
    than ``fit``'s each raise ``ValueError``."""
    bad = x.copy()
    bad.reshape(-1)[0] = np.nan
    _raises(ValueError, lambda: e.explain(bad), "NaN inputs")
    _raises(ValueError, lambda: e.explain(x[0]), "inputs without a batch axis")
    _raises(ValueError, lambda: e.explain(x, target=n_outputs), "target out of range")
    if fitted:
        extra = np.concatenate([x, x[..., :1]], axis=-1)
        _raises(ValueError, lambda: e.explain(extra), "inputs of another shape than fit's")


def _explain_in_training_mode(model: nn.Module, explain):
    """``explain()`` with ``model`` in training mode: it must warn and restore the mode."""
    model.train()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = explain()
        assert any("training mode" in str(w.message) for w in caught), "no training-mode warning"
        assert model.training, "the model's training mode was not restored"
    finally:
        model.eval()
    return result


def check_explainer(
    name: str,
    model=None,
    inputs=None,
    *,
    fit_data=None,
    modality: str | None = None,
    params: dict | None = None,
    rtol: float = 1e-5,
    completeness_rtol: float = 0.05,
) -> list[str]:
    """Run the conformance checks on explainer ``name``; raise ``AssertionError`` on failure.

    Parameters
    ----------
    name : str
        Registry name.
    model, inputs : optional
        What to explain; default a reference model and 4 inputs of ``modality``.
    fit_data : tuple (X, y), optional
        Training data for ``fit``; default the reference problem's.
    modality : str, optional
        Which reference problem; default the entry's first modality.
    params : dict, optional
        Hyper-parameters for the explainer (e.g. fewer samples to run faster).
    rtol : float
        Tolerance of the batch-size and input-type invariance checks, relative to the
        largest attribution.
    completeness_rtol : float
        Largest completeness error allowed for gradient-family methods, relative to
        ``max |f(x) - f(baseline)|`` (+ 1e-3).

    Returns
    -------
    list of str
        Names of the checks that ran (and passed).
    """
    info = explainer_info(name)
    tags = info.tags
    params = dict(params or {})
    if tags.family == "concept":
        return _check_concept(name, model, inputs, params, rtol, completeness_rtol)
    if model is None:
        modality = modality or next(m for m in tags.modalities if m in REFERENCE_MODALITIES)
        kind = next(k for k in ("torch", "sklearn", "callable") if k in tags.model_kinds)
        model, X_train, y_train, inputs = reference_problem(modality, kind)
        fit_data = fit_data or (X_train, y_train)
    if inputs is None:
        raise ValueError("pass inputs= together with model=")
    x = np.asarray(inputs, dtype=np.float32)
    if "random_state" in info.params:
        params.setdefault("random_state", 0)
    passed: list[str] = []

    def make(**extra):
        e = create_explainer(name, model, **{**params, **extra})
        if fit_data is not None:
            e.fit(*fit_data) if isinstance(fit_data, tuple) else e.fit(fit_data)
        return e

    if tags.family == "counterfactual":
        return _check_counterfactual(name, model, x, make, params)

    explainer = make()
    exp = explainer.explain(x)

    # shape, type, metadata
    a = exp.attributions
    _check_result("attributions", a, x, exp, explainer)
    if tags.needs_baseline:
        assert "name" in exp.params["baseline"], "the baseline used must be recorded"
    np.testing.assert_array_equal(exp.target, exp.predictions.argmax(1))
    passed.append("shape_and_metadata")

    # parameters: get/set/clone, unknown names
    _check_params(name, model, explainer)
    passed.append("params")

    # the same call twice gives the same numbers (seeded where stochastic)
    again = make().explain(x)
    assert _close(exp.attributions, again.attributions, rtol), "not repeatable"
    if tags.stochastic:
        other = make(random_state=params["random_state"] + 1).explain(x)
        assert not np.array_equal(other.attributions, exp.attributions), (
            "a stochastic explainer gave identical results for two random_state values"
        )
    passed.append("repeatable")

    # torch tensors and numpy arrays give the same result; an explicit target too
    if "torch" not in tags.model_kinds or isinstance(model, nn.Module):
        from_tensor = make().explain(torch.from_numpy(x), target=exp.target)
        assert _close(from_tensor.attributions, exp.attributions, rtol), (
            "tensor inputs with an explicit target differ from numpy inputs"
        )
        passed.append("input_types")

    if tags.batch_invariant and "batch_size" in info.params:
        # float32 model outputs change in their last bits with the batch size (the kernels
        # differ); attributions built from output differences inherit that much noise
        atol = 8 * float(np.finfo(np.float32).eps) * float(np.abs(exp.predictions).max())
        for bs in (1, 3):
            other = make(batch_size=bs).explain(x)
            assert _close(other.attributions, exp.attributions, rtol, atol), (
                f"batch_size={bs} changed the attributions (max diff "
                f"{np.abs(other.attributions - exp.attributions).max():.3g})"
            )
        passed.append("batch_invariance")

    if tags.has_convergence_delta:
        d = exp.convergence_delta
        assert d is not None and d.shape == (len(x),), "convergence_delta must have shape (N,)"
        idx = np.arange(len(x))
        fx = exp.predictions[idx, exp.target]
        if exp.baselines is None:
            fb = np.zeros(len(x))
        else:
            b = exp.baselines
            flat = torch.from_numpy(b.reshape(-1, *b.shape[2:]))
            fb_all = ModelWrapper(model, device="cpu").predict(flat, rows=256)
            fb = fb_all.reshape(b.shape[0], len(x), -1)[:, idx, exp.target].mean(0)
        expected = a.reshape(len(x), -1).sum(1) - (fx - fb)
        assert np.allclose(d, expected, atol=1e-4, rtol=1e-3), "convergence_delta is misreported"
        if tags.family == "gradient":
            scale = float(np.abs(fx - fb).max()) + 1e-3
            assert np.abs(d).max() <= completeness_rtol * scale, (
                f"completeness error {np.abs(d).max():.3g} exceeds {completeness_rtol} x {scale:.3g}"
            )
        passed.append("completeness")

    # bad input: clear errors, nothing reshaped or broadcast silently
    e = make()
    _check_bad_inputs(e, x, exp.predictions.shape[1], fitted=fit_data is not None)
    _raises(ValueError, lambda: e.explain(x, target=np.zeros(len(x) + 1, dtype=int)), "target shape")
    if tags.needs_baseline:
        wrong = np.zeros((*x.shape[1:-1], x.shape[-1] + 1), dtype=np.float32)
        _raises(ValueError, lambda: e.explain(x, baselines=wrong), "baselines that do not broadcast")
    else:
        _raises(TypeError, lambda: e.explain(x, baselines=x), "baselines given to a method without")
    if e.requires_fit:
        _raises(NotFittedError, lambda: create_explainer(name, model, **params).explain(x),
                "explain before fit")
    passed.append("bad_input")

    if isinstance(model, nn.Module):
        trained = _explain_in_training_mode(model, lambda: make().explain(x))
        assert _close(trained.attributions, exp.attributions, rtol), "not explained in eval mode"
        passed.append("training_mode")

    with tempfile.TemporaryDirectory() as tmp:
        path = exp.save(Path(tmp) / "exp.npz")
        back = load_explanation(path)
        np.testing.assert_array_equal(back.attributions, exp.attributions)
        assert back.params == exp.params and back.method == exp.method, "save/load lost metadata"
    passed.append("save_load")
    return passed


def _check_counterfactual(name: str, model, x: np.ndarray, make, params: dict) -> list[str]:
    """The checks of :func:`check_explainer` for counterfactual explainers."""
    info = explainer_info(name)
    tags = info.tags
    passed: list[str] = []
    explainer = make()
    exp = explainer.explain(x)
    cf = exp.counterfactuals
    _check_result("counterfactuals", cf, x, exp, explainer)
    assert (exp.target != exp.predictions.argmax(1)).all(), "a target equals the predicted class"
    fresh = ModelWrapper(model, device="cpu").predict(torch.from_numpy(cf), rows=256)
    np.testing.assert_allclose(exp.cf_predictions, fresh, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(exp.valid, fresh.argmax(1) == exp.target)
    passed.append("shape_and_metadata")

    _check_params(name, model, explainer)
    passed.append("params")

    again = make().explain(x)
    assert _close(again.counterfactuals, cf, 1e-5), "not repeatable"
    passed.append("repeatable")

    if "torch" not in tags.model_kinds or isinstance(model, nn.Module):
        from_tensor = make().explain(torch.from_numpy(x), target=exp.target)
        assert _close(from_tensor.counterfactuals, cf, 1e-5), (
            "tensor inputs with an explicit target differ from numpy inputs"
        )
        passed.append("input_types")

    if tags.batch_invariant and "batch_size" in info.params:
        other = make(batch_size=1).explain(x)
        assert _close(other.counterfactuals, cf, 1e-5), "batch_size=1 changed the counterfactuals"
        passed.append("batch_invariance")

    e = make()
    _check_bad_inputs(e, x, exp.predictions.shape[1], fitted=True)
    _raises(ValueError, lambda: e.explain(x, target=exp.predictions.argmax(1)),
            "target equal to the predicted class")
    _raises(NotFittedError, lambda: create_explainer(name, model, **params).explain(x),
            "explain before fit")
    passed.append("bad_input")

    if isinstance(model, nn.Module):
        trained = _explain_in_training_mode(model, lambda: make().explain(x))
        assert _close(trained.counterfactuals, cf, 1e-5), "not explained in eval mode"
        passed.append("training_mode")

    with tempfile.TemporaryDirectory() as tmp:
        back = load_explanation(exp.save(Path(tmp) / "cf.npz"))
        np.testing.assert_array_equal(back.counterfactuals, cf)
        assert back.params == exp.params and back.method == exp.method, "save/load lost metadata"
        assert back.metrics.keys() == exp.metrics.keys(), "save/load lost metrics"
    passed.append("save_load")
    return passed


def _check_concept(name: str, model, inputs, params: dict, rtol: float,
                   completeness_rtol: float) -> list[str]:
    """The checks of :func:`check_explainer` for ``concept`` family explainers.

    Without ``model``, they run on both reference concept models (a CBM and a CEM, see
    :func:`xai_suite.concepts._reference.reference_concept_problem`).
    """
    from .concepts import ConceptExplanation
    from .concepts._reference import REFERENCE_CONCEPT_MODELS, reference_concept_problem

    if model is None:
        passed: list[str] = []
        for kind in REFERENCE_CONCEPT_MODELS:
            ref, *_, x_ref = reference_concept_problem(kind)
            passed += [p for p in _check_concept(name, ref, x_ref, params, rtol, completeness_rtol)
                       if p not in passed]
        return passed
    if inputs is None:
        raise ValueError("pass inputs= together with model=")
    info = explainer_info(name)
    tags = info.tags
    x = np.asarray(inputs, dtype=np.float32)
    if "random_state" in info.params:
        params.setdefault("random_state", 0)
    passed = []

    def make(**extra):
        return create_explainer(name, model, **{**params, **extra})

    explainer = make()
    exp = explainer.explain(x)
    a = exp.attributions
    n, n_c = len(x), model.n_concepts_
    assert isinstance(exp, ConceptExplanation), f"expected a ConceptExplanation, got {type(exp).__name__}"
    assert a.shape == (n, n_c), f"attributions shape {a.shape} != (N, n_concepts) = {(n, n_c)}"
    assert a.dtype == np.float32 and np.isfinite(a).all(), "attributions must be finite float32"
    assert exp.concepts.shape == (n, n_c) and exp.concept_names == list(model.concept_names_)
    assert exp.method == info.qualified_name, f"method {exp.method!r} != {info.qualified_name!r}"
    missing = set(explainer.get_params()) - set(exp.params)
    assert not missing, f"params not recorded in the explanation: {missing}"
    np.testing.assert_array_equal(exp.target, exp.predictions.argmax(1))
    with torch.no_grad():
        xt = torch.from_numpy(x)
        logits = model(xt).numpy()
        acts = model.bottleneck(xt).numpy()
    np.testing.assert_allclose(exp.predictions, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.concepts, acts, rtol=1e-5, atol=1e-6)
    passed.append("shape_and_metadata")

    _check_params(name, model, explainer)
    passed.append("params")

    again = make().explain(x)
    assert _close(again.attributions, a, rtol), "not repeatable"
    passed.append("repeatable")

    from_tensor = make().explain(torch.from_numpy(x), target=exp.target)
    assert _close(from_tensor.attributions, a, rtol), "tensor inputs with an explicit target differ"
    passed.append("input_types")

    if tags.batch_invariant and "batch_size" in info.params:
        atol = 8 * float(np.finfo(np.float32).eps) * float(np.abs(exp.predictions).max())
        for bs in (1, 3):
            other = make(batch_size=bs).explain(x)
            assert _close(other.attributions, a, rtol, atol), (
                f"batch_size={bs} changed the attributions (max diff "
                f"{np.abs(other.attributions - a).max():.3g})"
            )
        passed.append("batch_invariance")

    if tags.has_convergence_delta:
        d = exp.convergence_delta
        assert d is not None and d.shape == (n,), "convergence_delta must have shape (N,)"
        assert exp.reference is not None, "a complete concept method must record its reference"
        idx = np.arange(n)
        with torch.no_grad():
            f_ref = model.task_from_bottleneck(torch.from_numpy(x), torch.from_numpy(exp.reference))
        diff = exp.predictions[idx, exp.target] - f_ref.numpy()[idx, exp.target]
        expected = a.astype(np.float64).sum(1) - diff
        assert np.allclose(d, expected, atol=1e-4, rtol=1e-3), "convergence_delta is misreported"
        scale = float(np.abs(diff).max()) + 1e-3
        assert np.abs(d).max() <= completeness_rtol * scale, (
            f"completeness error {np.abs(d).max():.3g} exceeds {completeness_rtol} x {scale:.3g}"
        )
        passed.append("completeness")

    e = make()
    _check_bad_inputs(e, x, exp.predictions.shape[1], fitted=True)
    _raises(ValueError, lambda: e.explain(x, target=np.zeros(n + 1, dtype=int)), "target shape")
    _raises(TypeError, lambda: e.explain(x, baselines=x), "baselines given to a concept method")
    _raises(TypeError, lambda: create_explainer(name, _MLP(x.shape[1]), **params).explain(x),
            "a model that is not a concept model")
    unfitted = type(model)(**model.get_params())
    _raises(NotFittedError, lambda: create_explainer(name, unfitted, **params).explain(x),
            "an unfitted concept model")
    passed.append("bad_input")

    trained = _explain_in_training_mode(model, lambda: make().explain(x))
    assert _close(trained.attributions, a, rtol), "not explained in eval mode"
    passed.append("training_mode")

    with tempfile.TemporaryDirectory() as tmp:
        path = exp.save(Path(tmp) / "concepts.npz")
        back = ConceptExplanation.load(path)
        np.testing.assert_array_equal(back.attributions, a)
        np.testing.assert_array_equal(back.concepts, exp.concepts)
        assert back.params == exp.params and back.method == exp.method, "save/load lost metadata"
        assert back.concept_names == exp.concept_names, "save/load lost the concept names"
    passed.append("save_load")
    return passed
