"""Conformance checks every explainer passes (like scikit-learn's ``check_estimator``).

Each check (:data:`CHECKS`) runs on a :class:`Problem`: a model, the inputs and how to read
the result; the entry's tags decide which apply. :func:`check_explainer` runs them;
:func:`explainer_checks` lists them for a pytest parametrisation (as
``parametrize_with_checks``). Problems are registered (:func:`register_problem`) by
qualified name, ``family/modality`` or modality; the LLM adapter registers the text ones.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import html
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import clone
from .baselines import NotFittedError
from .catalog import Registry
from .explanation import Result, load
from .modeling import ModelWrapper
from .registry import ExplainerInfo, create_explainer, explainer_info

#: Modalities the array reference models cover.
REFERENCE_MODALITIES = ("tabular", "timeseries", "image")
#: The reference model kinds, in the order a check picks the first an entry takes.
MODEL_KINDS_TRIED = ("torch", "sklearn", "callable")


# -- reference models ---------------------------------------------------------------------------
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


# -- problems -----------------------------------------------------------------------------------
def close(a, b, rtol: float, atol: float = 0.0) -> bool:
    """``max |a - b| <= rtol * max(|a|, |b|) + atol`` (NaN where both are NaN counts as equal)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    a, b = np.nan_to_num(a), np.nan_to_num(b)
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)), 1e-12)
    return float(np.abs(a - b).max(initial=0)) <= rtol * scale + atol


def raises(exc_type, fn, what: str) -> None:
    """Assert that ``fn()`` raises ``exc_type`` (an ``AssertionError`` naming ``what`` otherwise)."""
    try:
        fn()
    except exc_type:
        return
    except Exception as exc:
        raise AssertionError(f"{what}: expected {exc_type.__name__}, got "
                             f"{type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what}: expected {exc_type.__name__}, nothing was raised")


class Problem:
    """What the checks run an entry on: a model, the inputs, and how to read the result.

    Subclasses set the attributes and override the hooks; the defaults fit an ``explain``
    that returns ``attributions``.

    Attributes
    ----------
    model : object
    inputs : object
        ``explain``'s first argument.
    fit_data : tuple (X, y), or None
        Given to ``fit`` when not None.
    module : torch.nn.Module, or None
        The module whose training mode ``explain`` must handle (warn, use eval, restore).
    seeds_differ : bool
        Another ``random_state`` must change the result of a stochastic entry.
    params : dict, or None
        Hyper-parameters the entry needs on this problem (a fitted object tied to ``model``,
        say); the check's own parameters override them.
    """

    model: object
    inputs: object
    fit_data: tuple | None = None
    module: nn.Module | None = None
    seeds_differ = True
    params: dict | None = None

    def explain(self, explainer, **kwargs) -> Result:
        """The result of explaining ``inputs`` (``kwargs``: ``target=`` and the like)."""
        return explainer.explain(self.inputs, **kwargs)

    def values(self, result: Result) -> np.ndarray:
        """The numbers the repeatability, batch-size and round-trip checks compare."""
        return result.attributions

    def same_target(self, result: Result) -> dict:
        """Keyword arguments of :meth:`explain` that pin ``result``'s target (none by default)."""
        return {}

    def tensor_inputs(self):
        """``inputs`` as a torch tensor, where the entry takes both; else ``None``."""
        return None

    def check_result(self, ctx: Context, result: Result) -> None:
        """Entry-specific assertions on a result (shapes, dtypes, agreement with the model)."""

    def check_completeness(self, ctx: Context, result: Result) -> None:
        """Assertions on the convergence delta of an entry tagged ``has_convergence_delta``."""
        raise AssertionError(f"{type(self).__name__} has no completeness check")

    def bad_calls(self, ctx: Context) -> list[tuple[str, type[Exception], Callable[[], object]]]:
        """``(what, expected exception type, call)`` for bad input the entry must refuse."""
        return []


#: Problem factories ``factory(info, modality, kind) -> list of Problem``, by qualified name,
#: ``family/modality`` or modality.
PROBLEMS: Registry[Callable[..., list[Problem]]] = Registry("conformance problem")


def register_problem(key: str):
    """Decorator registering a problem factory ``factory(info, modality, kind) -> [Problem, ...]``.

    ``key`` is an entry's qualified name, ``family/modality`` or a modality; the most
    specific key that matches an entry wins.
    """
    def decorator(factory):
        PROBLEMS.add(key, factory)
        return factory

    return decorator


def problems_for(info: ExplainerInfo, modality: str, kind: str = "torch") -> list[Problem]:
    """The reference problems of entry ``info`` on ``modality`` with a model of ``kind``."""
    for key in (info.qualified_name, f"{info.tags.family}/{modality}", modality):
        if key in PROBLEMS:
            return PROBLEMS.get(key)(info, modality, kind)
    raise ValueError(f"no conformance problem for {info.qualified_name} on {modality}; pass "
                     "model= and inputs= (or problem=)")


class ArrayProblem(Problem):
    """Attribution of array inputs (N, F), (N, C, T) or (N, C, H, W): ``exp.attributions``."""

    def __init__(self, model, inputs, fit_data=None):
        self.model, self.inputs, self.fit_data = model, np.asarray(inputs, dtype=np.float32), fit_data
        self.module = model if isinstance(model, nn.Module) else None

    def same_target(self, result):
        return {"target": result.target}

    def tensor_inputs(self):
        return torch.from_numpy(self.inputs)

    def check_result(self, ctx, result):
        _check_array(self.values(result), self.inputs, "attributions")
        if ctx.info.tags.needs_baseline:
            assert "name" in result.params["baseline"], "the baseline used must be recorded"
        np.testing.assert_array_equal(result.target, result.predictions.argmax(1))

    def check_completeness(self, ctx, result):
        n = len(self.inputs)
        d = result.convergence_delta
        assert d is not None and d.shape == (n,), "convergence_delta must have shape (N,)"
        idx = np.arange(n)
        fx, b, fb = result.predictions[idx, result.target], result.baselines, np.zeros(n)
        if b is not None:
            flat = torch.from_numpy(b.reshape(-1, *b.shape[2:]))
            fb_all = ModelWrapper(self.model, device="cpu").predict(flat, rows=256)
            fb = fb_all.reshape(b.shape[0], n, -1)[:, idx, result.target].mean(0)
        expected = result.attributions.reshape(n, -1).sum(1) - (fx - fb)
        assert np.allclose(d, expected, atol=1e-4, rtol=1e-3), "convergence_delta is misreported"
        if ctx.info.tags.family == "gradient":
            scale = float(np.abs(fx - fb).max()) + 1e-3
            assert np.abs(d).max() <= ctx.completeness_rtol * scale, (
                f"completeness error {np.abs(d).max():.3g} exceeds {ctx.completeness_rtol} x {scale:.3g}")

    def bad_calls(self, ctx):
        e, x = ctx.make(), self.inputs
        calls = _bad_array_calls(ctx, e, fitted=self.fit_data is not None)
        if ctx.info.tags.needs_baseline:
            wrong = np.zeros((*x.shape[1:-1], x.shape[-1] + 1), dtype=np.float32)
            calls.append(("baselines that do not broadcast", ValueError,
                          lambda: e.explain(x, baselines=wrong)))
        else:
            calls.append(("baselines given to a method without", TypeError,
                          lambda: e.explain(x, baselines=x)))
        return calls


class CounterfactualProblem(ArrayProblem):
    """Counterfactuals of array inputs: ``exp.counterfactuals``, always fitted."""

    seeds_differ = False  # a search that converges may find the same counterfactual from any seed

    def values(self, result):
        return result.counterfactuals

    def check_result(self, ctx, result):
        _check_array(result.counterfactuals, self.inputs, "counterfactuals")
        assert (result.target != result.predictions.argmax(1)).all(), "a target equals the predicted class"
        fresh = ModelWrapper(self.model, device="cpu").predict(torch.from_numpy(result.counterfactuals),
                                                               rows=256)
        np.testing.assert_allclose(result.cf_predictions, fresh, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(result.valid, fresh.argmax(1) == result.target)

    def bad_calls(self, ctx):
        e = ctx.make()
        return [*_bad_array_calls(ctx, e, fitted=True),
                ("target equal to the predicted class", ValueError,
                 lambda: e.explain(self.inputs, target=ctx.result.predictions.argmax(1)))]


def _problem_class(info: ExplainerInfo) -> type[ArrayProblem]:
    return {"counterfactual": CounterfactualProblem, "concept": ConceptProblem}.get(
        info.tags.family, ArrayProblem)


def _check_array(values: np.ndarray, x: np.ndarray, what: str) -> None:
    """Finite values of the inputs' shape and float dtype (float32 for the reference inputs)."""
    assert values.shape == x.shape, f"{what} shape {values.shape} != inputs shape {x.shape}"
    assert values.dtype == x.dtype and np.isfinite(values).all(), f"{what} must be finite {x.dtype}"


def _bad_array_calls(ctx: Context, e, *, fitted: bool) -> list:
    """NaN, a missing batch axis, a target out of range or of the wrong shape and (fitted)
    another instance shape than ``fit``'s each raise ``ValueError`` from explainer ``e``; an
    entry that needs ``fit`` raises ``NotFittedError`` without it."""
    x, n_outputs = ctx.problem.inputs, ctx.result.predictions.shape[1]
    bad = x.copy()
    bad.reshape(-1)[0] = np.nan
    calls = [
        ("NaN inputs", ValueError, lambda: e.explain(bad)),
        ("inputs without a batch axis", ValueError, lambda: e.explain(x[0])),
        ("target out of range", ValueError, lambda: e.explain(x, target=n_outputs)),
        ("target shape", ValueError, lambda: e.explain(x, target=np.zeros(len(x) + 1, dtype=int))),
    ]
    if fitted:
        extra = np.concatenate([x, x[..., :1]], axis=-1)
        calls.append(("inputs of another shape than fit's", ValueError, lambda: e.explain(extra)))
    if e.requires_fit:
        calls.append(("explain before fit", NotFittedError,
                      lambda: create_explainer(ctx.info.qualified_name, ctx.problem.model,
                                               **ctx.params).explain(x)))
    return calls


class ConceptProblem(ArrayProblem):
    """Concept attribution of a fitted concept model: ``exp.attributions`` (N, n_concepts)."""

    def check_result(self, ctx, result):
        from .concepts import ConceptExplanation

        model, x, a = self.model, self.inputs, result.attributions
        n, n_c = len(x), model.n_concepts_
        assert isinstance(result, ConceptExplanation), f"expected a ConceptExplanation, got {type(result)}"
        assert a.shape == (n, n_c), f"attributions shape {a.shape} != (N, n_concepts) = {(n, n_c)}"
        assert a.dtype == np.float32 and np.isfinite(a).all(), "attributions must be finite float32"
        assert result.concepts.shape == (n, n_c) and result.concept_names == list(model.concept_names_)
        np.testing.assert_array_equal(result.target, result.predictions.argmax(1))
        with torch.no_grad():
            xt = torch.from_numpy(x)
            np.testing.assert_allclose(result.predictions, model(xt).numpy(), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(result.concepts, model.bottleneck(xt).numpy(), rtol=1e-5, atol=1e-6)

    def check_completeness(self, ctx, result):
        n, d = len(self.inputs), result.convergence_delta
        assert d is not None and d.shape == (n,), "convergence_delta must have shape (N,)"
        assert result.baselines is not None, "a complete concept method must record its baselines"
        idx = np.arange(n)
        with torch.no_grad():
            f_ref = self.model.task_from_bottleneck(torch.from_numpy(self.inputs),
                                                    torch.from_numpy(result.baselines)).numpy()
        diff = result.predictions[idx, result.target] - f_ref[idx, result.target]
        expected = result.attributions.astype(np.float64).sum(1) - diff
        assert np.allclose(d, expected, atol=1e-4, rtol=1e-3), "convergence_delta is misreported"
        scale = float(np.abs(diff).max()) + 1e-3
        assert np.abs(d).max() <= ctx.completeness_rtol * scale, (
            f"completeness error {np.abs(d).max():.3g} exceeds {ctx.completeness_rtol} x {scale:.3g}")

    def bad_calls(self, ctx):
        e, x, name = ctx.make(), self.inputs, ctx.info.qualified_name
        unfitted = type(self.model)(**self.model.get_params())
        return [*_bad_array_calls(ctx, e, fitted=True),
                ("baselines given to a concept method", TypeError, lambda: e.explain(x, baselines=x)),
                ("a model that is not a concept model", TypeError,
                 lambda: create_explainer(name, _MLP(x.shape[1]), **ctx.params).explain(x)),
                ("an unfitted concept model", NotFittedError,
                 lambda: create_explainer(name, unfitted, **ctx.params).explain(x))]


@functools.cache
def _trained_reference(modality: str, kind: str) -> tuple:
    return reference_problem(modality, kind)


def _array_problems(info, modality, kind):
    model, X, y, x = _trained_reference(modality, kind)  # trained once, a copy per entry
    return [_problem_class(info)(copy.deepcopy(model), x, (X, y))]


for _modality in REFERENCE_MODALITIES:
    register_problem(_modality)(_array_problems)
    register_problem(f"counterfactual/{_modality}")(_array_problems)


@register_problem("concept/tabular")
def _concept_problems(info, modality, kind):
    """Both reference concept models: a CBM and a CEM."""
    from .concepts._reference import REFERENCE_CONCEPT_MODELS, reference_concept_problem

    problems = [reference_concept_problem(name) for name in REFERENCE_CONCEPT_MODELS]
    return [ConceptProblem(model, x) for model, *_, x in problems]


# -- the checks ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
    """One entry on one problem: how to build it, and its first result (computed once)."""

    info: ExplainerInfo
    problem: Problem
    params: dict
    rtol: float = 1e-5
    completeness_rtol: float = 0.05
    _result: Result | None = None

    def make(self, **extra):
        """A fresh explainer of the entry with the check's parameters (and ``extra``), fitted."""
        e = create_explainer(self.info.qualified_name, self.problem.model,
                             **{**(self.problem.params or {}), **self.params, **extra})
        if self.problem.fit_data is not None:
            e.fit(*self.problem.fit_data)
        return e

    def explain(self, **extra) -> Result:
        return self.problem.explain(self.make(**extra))

    @property
    def result(self) -> Result:
        if self._result is None:
            self._result = self.explain()
        return self._result

    def values(self, result: Result | None = None) -> np.ndarray:
        return self.problem.values(self.result if result is None else result)


def check_result_and_metadata(ctx: Context) -> None:
    """A :class:`Result` naming the entry and recording every hyper-parameter; the problem's
    own assertions (shapes, finite values, agreement with the model)."""
    exp, e = ctx.result, ctx.make()
    assert isinstance(exp, Result), f"{type(exp).__name__} is not an xai_suite Result"
    assert exp.method == ctx.info.qualified_name, f"method {exp.method!r} != {ctx.info.qualified_name!r}"
    missing = set(e.get_params()) - set(exp.params)
    assert not missing, f"params not recorded in the result: {missing}"
    ctx.problem.check_result(ctx, exp)


def check_params(ctx: Context) -> None:
    """get/set/clone by introspection; unknown parameter names raise ``TypeError``."""
    e = ctx.make()
    assert clone(e).get_params().keys() == e.get_params().keys(), "clone lost parameters"
    raises(TypeError, lambda: e.set_params(not_a_parameter=1), "set_params(unknown)")
    raises(TypeError, lambda: create_explainer(ctx.info.qualified_name, ctx.problem.model,
                                               not_a_parameter=1), "unknown param")


def check_repeatable(ctx: Context) -> None:
    """The same call twice gives the same numbers (seeded where stochastic); another seed
    gives other numbers (where the problem says it must); an entry tagged deterministic
    gives the same numbers with its default ``random_state=None`` too."""
    assert close(ctx.values(ctx.explain()), ctx.values(), ctx.rtol), "not repeatable"
    if ctx.info.tags.stochastic and ctx.problem.seeds_differ:
        other = ctx.explain(random_state=ctx.params["random_state"] + 1)
        assert not np.array_equal(ctx.values(other), ctx.values()), (
            "a stochastic explainer gave identical results for two random_state values")
    if not ctx.info.tags.stochastic and "random_state" in ctx.info.params:
        first, second = (ctx.values(ctx.explain(random_state=None)) for _ in range(2))
        assert close(first, second, ctx.rtol), (
            "tagged deterministic, yet two fresh explainers with the default random_state=None differ")


def check_input_types(ctx: Context) -> None:
    """Torch tensors and numpy arrays give the same result, with an explicit target too."""
    tensor = ctx.problem.tensor_inputs()
    got = ctx.make().explain(tensor, **ctx.problem.same_target(ctx.result))
    assert close(ctx.values(got), ctx.values(), ctx.rtol), (
        "tensor inputs with an explicit target differ from numpy inputs")


def check_batch_invariance(ctx: Context) -> None:
    """``batch_size`` 1 and 3 give the attributions of ``"auto"``, up to float32 noise, and an
    instance explained alone gets what it gets inside the batch."""
    # float32 model outputs change in their last bits with the batch size (the kernels
    # differ); results built from output differences inherit that much noise
    preds = getattr(ctx.result, "predictions", None)
    scale = 1.0 if preds is None else float(np.abs(preds).max())
    atol = 8 * float(np.finfo(np.float32).eps) * scale
    for bs in (1, 3):
        other = ctx.values(ctx.explain(batch_size=bs))
        assert close(other, ctx.values(), ctx.rtol, atol), (
            f"batch_size={bs} changed the result (max diff {np.abs(other - ctx.values()).max():.3g})")
    if isinstance(ctx.problem, ArrayProblem):  # the last instance alone, as inside the batch
        pinned = {k: v[-1:] for k, v in ctx.problem.same_target(ctx.result).items()}
        alone = ctx.problem.values(ctx.make().explain(ctx.problem.inputs[-1:], **pinned))
        assert close(alone, ctx.values()[-1:], ctx.rtol, atol), (
            "an instance explained alone differs from the same instance inside a batch (max diff "
            f"{np.abs(alone - ctx.values()[-1:]).max():.3g}): seed each instance's draws by itself")


def check_completeness(ctx: Context) -> None:
    """The convergence delta is reported right, and small for gradient-family methods."""
    ctx.problem.check_completeness(ctx, ctx.result)


def check_bad_input(ctx: Context) -> None:
    """Bad input gets a clear error of the right type; nothing is reshaped or broadcast."""
    for what, exc, call in ctx.problem.bad_calls(ctx):
        raises(exc, call, what)


def check_training_mode(ctx: Context) -> None:
    """A module in training mode: explain warns, uses eval mode and restores training mode."""
    module = ctx.problem.module
    module.train()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = ctx.explain()
        assert any("training mode" in str(w.message) for w in caught), "no training-mode warning"
        assert module.training, "the model's training mode was not restored"
    finally:
        module.eval()
    assert close(ctx.values(got), ctx.values(), ctx.rtol), "not explained in eval mode"


def check_save_load(ctx: Context) -> None:
    """``save`` then ``xs.load`` gives back a result of the same type with every field equal."""
    exp = ctx.result
    with tempfile.TemporaryDirectory() as tmp:
        back = load(exp.save(Path(tmp) / "result.npz"))
    assert type(back) is type(exp), f"loaded a {type(back).__name__}, saved a {type(exp).__name__}"
    for f in dataclasses.fields(exp):
        a, b = getattr(exp, f.name), getattr(back, f.name)
        if isinstance(a, dict) and a and all(isinstance(v, np.ndarray) for v in a.values()):
            assert a.keys() == b.keys(), f"save/load changed the keys of {f.name}"
            for k in a:
                np.testing.assert_array_equal(b[k], a[k], err_msg=f"save/load changed {f.name}[{k!r}]")
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(b, a, err_msg=f"save/load changed {f.name}")
            assert b.dtype == a.dtype, f"save/load changed the dtype of {f.name}"
        else:
            assert b == a, f"save/load changed {f.name}: {a!r} -> {b!r}"


#: A reference to something outside the page (a URL in ``src`` or ``href``, or CSS ``url()``).
_EXTERNAL = re.compile(
    r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//""", re.I)


def check_html(ctx: Context) -> None:
    """``to_html`` writes one self-contained page: a whole document that names the method and
    refers to nothing outside itself. With ``XAI_SUITE_HTML_DIR`` set the pages are kept
    there (the suite's browser tests then load each in Chromium)."""
    exp = ctx.result
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(os.environ.get("XAI_SUITE_HTML_DIR") or tmp)
        stem = ctx.info.qualified_name.replace(":", "-")
        n = len(list(folder.glob(f"{stem}-*.html")))
        path = exp.to_html(folder / f"{stem}-{n}.html")
        text = path.read_text(encoding="utf-8")
    whole = text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert whole, "not a whole HTML document"
    assert html.escape(exp.method) in text, f"the page does not name the method {exp.method!r}"
    found = _EXTERNAL.search(text)
    assert found is None, f"the page refers to something outside itself: {found.group()!r}"


class _Halves(nn.Module):
    """A one-input tabular model as a model of two inputs: the features' two halves."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, a, b):
        return self.model(torch.cat([a, b], 1))


def check_multi_input(ctx: Context) -> None:
    """The features split into two inputs of a two-input model: the same attributions (and
    completeness delta), as a tuple of the two halves."""
    x, k = ctx.problem.inputs, ctx.problem.inputs.shape[1] // 2
    e = create_explainer(ctx.info.qualified_name, _Halves(ctx.problem.module), **ctx.params)
    if ctx.problem.fit_data is not None:
        X, y = ctx.problem.fit_data
        e.fit((X[:, :k], X[:, k:]), y)
    exp = e.explain((x[:, :k], x[:, k:]))
    assert [a.shape for a in exp.attributions] == [x[:, :k].shape, x[:, k:].shape]
    atol = 8 * float(np.finfo(np.float32).eps) * float(np.abs(ctx.result.predictions).max())
    assert close(np.concatenate(exp.attributions, 1), ctx.values(), ctx.rtol, atol), (
        "two inputs got other attributions than their concatenation as one")
    if ctx.result.convergence_delta is not None:
        assert close(exp.convergence_delta, ctx.result.convergence_delta, 1e-4, atol), (
            "the completeness delta of two inputs must sum over both")


#: Every check, by name (its function's, without ``check_``), in the order they run.
CHECKS: dict[str, Callable[[Context], None]] = {f.__name__.removeprefix("check_"): f for f in (
    check_result_and_metadata, check_params, check_repeatable, check_input_types, check_batch_invariance,
    check_completeness, check_bad_input, check_training_mode, check_multi_input, check_save_load, check_html)}


def _applies(check: str, info: ExplainerInfo, problem: Problem) -> bool:
    tags = info.tags
    if check == "input_types":
        return problem.tensor_inputs() is not None and (
            "torch" not in tags.model_kinds or isinstance(problem.model, nn.Module))
    if check == "batch_invariance":
        return tags.batch_invariant and "batch_size" in info.params
    if check == "completeness":
        return tags.has_convergence_delta
    if check == "training_mode":
        return problem.module is not None
    if check == "multi_input":
        return (tags.multi_input and type(problem) is ArrayProblem and problem.module is not None
                and problem.inputs.ndim == 2)
    return True


def explainer_checks(name: str, model=None, inputs=None, *, fit_data=None, modality: str | None = None,
                     kind: str | None = None, problems: list[Problem] | None = None,
                     params: dict | None = None, rtol: float = 1e-5, completeness_rtol: float = 0.05
                     ) -> Iterator[tuple[str, Callable[[], None]]]:
    """The checks that apply to explainer ``name``: ``(check name, run)`` pairs.

    Parameters are those of :func:`check_explainer`. Every ``run`` of one call shares the
    problems and the first result, so a parametrised test runs the entry once per check,
    not once per check and problem setup.
    """
    info = explainer_info(name)
    kinds = info.tags.model_kinds
    kind = kind or next((k for k in MODEL_KINDS_TRIED if k in kinds), kinds[0])
    params = dict(params or {})
    if "random_state" in info.params:
        params.setdefault("random_state", 0)
    if problems is None:
        if model is not None:
            if inputs is None:
                raise ValueError("pass inputs= together with model=")
            problems = [_problem_class(info)(model, inputs, fit_data)]
        else:
            problems = problems_for(info, modality or info.tags.modalities[0], kind)
    contexts = [Context(info, p, params, rtol, completeness_rtol) for p in problems]
    for check, fn in CHECKS.items():
        applicable = [c for c in contexts if _applies(check, info, c.problem)]
        if applicable:
            yield check, _runner(fn, applicable)


def _runner(fn: Callable[[Context], None], contexts: list[Context]) -> Callable[[], None]:
    def run() -> None:
        for ctx in contexts:
            fn(ctx)

    return run


def check_explainer(name: str, model=None, inputs=None, *, fit_data=None, modality: str | None = None,
                    kind: str | None = None, problems: list[Problem] | None = None,
                    params: dict | None = None, rtol: float = 1e-5,
                    completeness_rtol: float = 0.05) -> list[str]:
    """Run the conformance checks on explainer ``name``; raise ``AssertionError`` on failure.

    Parameters
    ----------
    name : str
        Registry name.
    model, inputs : optional
        What to explain (array inputs); default the registered reference problems of
        ``modality``.
    fit_data : tuple (X, y), optional
        Training data for ``fit`` with ``model``.
    modality : str, optional
        Which reference problem; default the entry's first modality.
    kind : str, optional
        The reference model's kind (``torch``, ``sklearn``, ``callable``); default the first
        of them the entry takes.
    problems : list of Problem, optional
        Explicit problems (for entries whose inputs are not arrays).
    params : dict, optional
        Hyper-parameters for the explainer (e.g. fewer samples to run faster).
    rtol : float
        Tolerance of the repeatability, batch-size and input-type checks, relative to the
        largest value.
    completeness_rtol : float
        Largest completeness error allowed for gradient-family methods, relative to
        ``max |f(x) - f(baseline)|`` (+ 1e-3).

    Returns
    -------
    list of str
        Names of the checks that ran (and passed).
    """
    passed = []
    for check, run in explainer_checks(name, model, inputs, fit_data=fit_data, modality=modality,
                                       kind=kind, problems=problems, params=params, rtol=rtol,
                                       completeness_rtol=completeness_rtol):
        try:
            run()
        except AssertionError as exc:
            raise AssertionError(f"{name}: check {check!r} failed: {exc}") from exc
        passed.append(check)
    return passed

