"""SHAP backend: ``shap:`` entries for SHAP's explainers, in one output convention.

shap is imported when an entry is first used, never at ``import xai_suite``. Every entry
returns attributions of the inputs' shape for the explained target, whatever the shap
version returns (a list of per-class arrays before 0.45, an ``(N, ..., K)`` array after, an
``Explanation`` in the new API). An entry's background is its ``baseline``: by default
``"training_sample"``, ``n_baseline_samples`` rows of ``fit``'s data drawn once without
replacement (shap's background); any other baseline works as for every explainer (a one-row
background for ``"training_mean"`` or ``"zeros"``; an instance-dependent baseline such as
``"blur"`` gives each instance its own background). The draw is seeded by ``random_state``
(0 when it is ``None``, so that the deterministic entries are). The background is the
explanation's ``baselines``, ``(S, N, ...)``, so that the completeness error of the additive
ones is ``sum(attr) - (f(x) - mean_s f(b_s))``.

shap draws from NumPy's global generator; the entries seed it from ``random_state`` before
every instance and restore its state afterwards, so each instance's explanation depends on
the seed only, not on the other instances explained with it or on ``batch_size``.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .._validation import check_random_state
from ..base import Attribution, Batched, Call, GradientExplainer, PerturbationExplainer, SurrogateExplainer
from ..baselines import BaselineSpec, background_groups
from ..batching import progress
from ..modeling import ModelWrapper, _as_2d_output
from ..registry import register_explainer

ALL = ("tabular", "timeseries", "image")
TABULAR = ("tabular",)
TORCH = ("torch",)
SKLEARN = ("sklearn",)
BLACK_BOX = ("torch", "sklearn", "callable")
#: Every entry takes a background (its baseline); most explain tabular data.
_register = functools.partial(register_explainer, library="shap", requires=("shap",), needs_baseline=True,
                              modalities=TABULAR)
SHAP = "Lundberg & Lee (2017), A Unified Approach to Interpreting Model Predictions"
#: Entries that explain any differentiable model, named when DeepExplainer fails.
DEEP_ALTERNATIVES = (
    "shap:gradient or native:integrated_gradients (any differentiable model), or "
    "captum:deeplift_shap (where every non-linearity is its own nn module, used once)"
)
TREE_MODELS = (
    "DecisionTree, RandomForest and ExtraTrees classifiers and regressors, GradientBoosting and "
    "HistGradientBoosting regressors and binary classifiers"
)


def _shap():
    import shap

    return shap


# -- conventions ---------------------------------------------------------------------------
def _per_output(values, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """shap's values in any version's convention, as float64 ``(N, *shape, K)``."""
    if not isinstance(values, np.ndarray | list) and hasattr(values, "values"):
        values = values.values  # shap.Explanation
    if isinstance(values, list):  # shap < 0.45: one array per model output
        values = np.stack([np.asarray(v) for v in values], axis=-1)
    values = np.asarray(values, dtype=np.float64)
    if values.shape == (n, *shape):  # a single-output model
        values = values[..., None]
    if values.shape[:-1] != (n, *shape):
        raise RuntimeError(
            f"shap returned values of shape {values.shape}; expected {(n, *shape)} or "
            f"{(n, *shape)} + (outputs,)"
        )
    return values


def _for_target(values: np.ndarray, target: np.ndarray, n_outputs: int) -> np.ndarray:
    """Pick each instance's target from ``(N, ..., K)`` values; returns ``(N, ...)``.

    A binary model that shap explains as one output (``P(class 1)`` for a gradient-boosted
    tree, the margin of a logistic regression) gives class 0 the negated values: its
    probability is ``1 - P(class 1)``, its log-odds ``-margin``.
    """
    k = values.shape[-1]
    moved = np.moveaxis(values, -1, 1)  # (N, K, ...)
    idx = np.arange(len(target))
    if k == n_outputs:
        return moved[idx, target]
    if k == 1 and n_outputs == 2:
        sign = np.where(target == 1, 1.0, -1.0).reshape(-1, *[1] * (values.ndim - 2))
        return moved[:, 0] * sign
    raise RuntimeError(f"shap explained {k} model outputs; the model has {n_outputs}")


def _instance_seed(explainer, call: Call) -> int:
    """The seed of NumPy's global generator before each instance: ``random_state`` itself
    (as ``np.random.seed(random_state)`` before a shap call), or one fresh draw per call."""
    check_random_state(explainer.random_state)
    if explainer.random_state is None:
        return int(call.rng.integers(2**32 - 1))
    return int(explainer.random_state)


@contextlib.contextmanager
def _numpy_global_state() -> Iterator[None]:
    """Restore NumPy's global generator after shap has seeded and drawn from it."""
    state = np.random.get_state()  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _numpy_model(call: Call, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """``call.model.forward`` as ``f(np.ndarray (m, *shape)) -> (m, K)`` float64, run in
    chunks of ``call.rows`` rows (shap hands over all coalitions x background rows at once)."""

    def f(a) -> np.ndarray:
        arr = np.ascontiguousarray(np.asarray(a), dtype=np.float32)
        x = torch.from_numpy(arr).reshape(-1, *shape).to(call.x.device)
        return call.model.predict(x, call.rows).astype(np.float64)

    return f


class _TargetOutput(nn.Module):
    """A torch model reduced to one output column ``(N, 1)``: shap's gradient and deep
    explainers then explain that output only (no ``ranked_outputs``)."""

    def __init__(self, module: nn.Module, k: int):
        super().__init__()
        self.module = module
        self.k = int(k)

    def forward(self, x):
        return _as_2d_output(self.module(x), x.shape[0])[:, self.k : self.k + 1]


@dataclass(kw_only=True, eq=False, repr=False)
class _ShapExplainer:
    """Mixin: the background from the ``baseline``; the result with it as its baselines.

    Parameters
    ----------
    baseline : baseline spec
        The background: ``"training_sample"`` (``n_baseline_samples`` rows of ``fit``'s data,
        drawn once, as shap's) or any baseline (see the module docstring).
    n_baseline_samples : int
        Background rows (draws of a random baseline). Cost grows linearly.
    random_state : int, optional
        Seeds the background draw.
    """

    _mixin_params: ClassVar[bool] = True

    baseline: BaselineSpec = "training_sample"
    n_baseline_samples: int = 100
    random_state: int | None = None

    def _backgrounds(self, call: Call, explicit: torch.Tensor | None
                     ) -> tuple[torch.Tensor, list[tuple[np.ndarray, torch.Tensor]]]:
        """The references (S, N, ...) and their ``(instances, background (S, ...))`` groups."""
        b = self._reference_set(call, explicit)
        return b, background_groups(b)

    @staticmethod
    def _by_target(call: Call, groups: list[tuple[np.ndarray, torch.Tensor]]
                   ) -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
        """``(k, instances explained for output k, their background on the model's device)``."""
        for group, bg in groups:
            for k in np.unique(call.target[group]):
                yield int(k), group[call.target[group] == k], bg.to(call.x.device)

    def _result(self, call: Call, values: np.ndarray, b: torch.Tensor, params: dict | None = None
                ) -> Attribution:
        b = b.to(call.x.device)
        resolved = {"n_baseline_samples_used": int(b.shape[0]), **(params or {})}
        out = torch.as_tensor(np.ascontiguousarray(values), dtype=torch.float32)
        return Attribution(out.to(call.x.device), b, resolved)


class DeepShapError(RuntimeError, ValueError):
    """shap's DeepExplainer failed on this model or these inputs (its additivity check, say):
    a ``ValueError`` as every bad-input error, and a ``RuntimeError`` for older callers."""


def _check_count(name: str, value, minimum: int = 1, allow: tuple = ()) -> None:
    if value in allow and isinstance(value, str):
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        extra = "".join(f"{a!r} or " for a in allow)
        raise ValueError(f"{name} must be {extra}an int >= {minimum}; got {value!r}")


# -- model-agnostic explainers on tabular data ---------------------------------------------
class _Masked(_ShapExplainer, PerturbationExplainer, Batched):
    """shap's masker-based explainers (Exact, Permutation, Partition) on ``(N, F)`` data."""

    _random = True  # draws from NumPy's global generator (recorded as seed_used)

    max_evals: int = 500

    def _masker(self, shap, bg: np.ndarray):
        return shap.maskers.Independent(bg, max_samples=len(bg))

    def _make(self, shap, f, masker):
        raise NotImplementedError

    def _shap_batch_size(self, call: Call, n_bg: int):
        """Masked samples per model call (each is ``n_bg`` rows)."""
        return max(1, call.rows // n_bg)

    def _attribute(self, call, *, baselines, feature_mask):
        _check_count("max_evals", self.max_evals)
        shap = _shap()
        b, groups = self._backgrounds(call, baselines)
        shape = tuple(call.x.shape[1:])
        x = call.x.cpu().numpy().astype(np.float64)
        seed = _instance_seed(self, call)
        parts = []
        with _numpy_global_state():
            for idx, background in groups:
                bg = background.numpy().astype(np.float64)
                kwargs = {"max_evals": int(self.max_evals), "silent": True,
                          "batch_size": self._shap_batch_size(call, len(bg))}
                explainer = self._make(shap, _numpy_model(call, shape), self._masker(shap, bg))
                for i in progress(idx, self.info.qualified_name, min_steps=1):  # each from one seed
                    np.random.seed(seed)  # noqa: NPY002
                    try:
                        parts.append(_per_output(explainer(x[i : i + 1], **kwargs), 1, shape))
                    except ValueError as exc:
                        if "max_evals" not in str(exc):
                            raise
                        raise ValueError(f"{self.info.qualified_name}: {exc}") from exc
        values = _for_target(np.concatenate(parts), call.target, call.predictions.shape[1])
        return self._result(call, values, b, {"seed_used": seed} if self._random else {})


_VALUE_DOC = """

    The value of a coalition is the model's mean output over the background with the
    coalition's features taken from the instance (shap's ``{masker}`` masker), for the
    function every other entry explains (``predict_proba`` for classifiers, the outputs of a
    torch model). The values sum to ``f(x) - mean_b f(b)``.

    Parameters
    ----------
    max_evals : int
        shap's ``max_evals``: masked evaluations per instance ({max_evals}).
"""
_BATCH_DOC = """    batch_size : "auto" or int
        Rows per model call; shap's ``batch_size`` (masked samples per call) is
        ``batch_size // n_baseline_samples``.
"""
_REST_DOC = """    random_state : int, optional
        Seeds the background draw{seed}.
    """


@_register(
    "exact", model_kinds=BLACK_BOX, has_convergence_delta=True,
    summary="Exact Shapley values over all 2^F coalitions, features absent = background values",
    reference=SHAP + "; shap.explainers.Exact",
    notes="Cost 2^F masked evaluations x background rows per instance: for about 15 features or fewer.",
)
class Exact(_Masked):
    __doc__ = (
        "shap's ``ExactExplainer``: exact Shapley values by enumerating every coalition."
        + _VALUE_DOC.format(
            masker="Independent",
            max_evals="100000, as in shap; at least ``2^F``, not counting features equal to "
            "every\n        background row",
        )
        + _BATCH_DOC
        + _REST_DOC.format(seed="")
    )
    _random = False

    max_evals: int = 100000

    def _make(self, shap, f, masker):
        return shap.explainers.Exact(f, masker)


@_register(
    "permutation", model_kinds=BLACK_BOX, has_convergence_delta=True, stochastic=True, batch_invariant=True,
    summary="Shapley values from random feature permutations, each walked forwards and backwards",
    reference=SHAP + "; shap.explainers.Permutation",
)
class Permutation(_Masked):
    __doc__ = (
        "shap's ``PermutationExplainer``: antithetic permutation sampling, additive by "
        "construction, exact for models with at most pairwise interactions."
        + _VALUE_DOC.format(
            masker="Independent",
            max_evals="500, as in shap: ``max_evals // (2 F + 1)`` permutations",
        )
        + _BATCH_DOC
        + _REST_DOC.format(seed=" and the permutations: NumPy's global generator is seeded with "
                           "it\n        before every instance (its state is restored after), so "
                           "every instance\n        gets the same permutations")
    )

    def _make(self, shap, f, masker):
        return shap.explainers.Permutation(f, masker)


@_register(
    "partition", model_kinds=BLACK_BOX, has_convergence_delta=True,
    summary="Owen values over a hierarchical clustering of the features (shap's Partition)",
    reference=SHAP + "; Owen (1977), Values of games with a priori unions; shap.explainers.Partition",
    notes="Owen values equal Shapley values only for additive models; they depend on the "
    "feature clustering learnt from the background.",
)
class Partition(_Masked):
    __doc__ = (
        "shap's ``PartitionExplainer``: Owen values, recursing through a hierarchical clustering "
        "of the features learnt from the background."
        + _VALUE_DOC.format(masker="Partition",
                            max_evals="500, as in shap; the full recursion takes about ``F^2``")
        + """    clustering : str
        Distance between features for shap's clustering (a ``scipy.spatial.distance.pdist``
        metric; ``"correlation"``, as in shap).
    batch_size : "auto" or int
        Rows per model call. shap's own ``batch_size`` stays at its default: it decides
        which nodes are refined when ``max_evals`` runs out, so results would depend on it.
"""
        + _REST_DOC.format(seed=" and shap's tie-breaking in its evaluation queue (which\n"
                           "        matters only when ``max_evals`` cuts the recursion short)")
    )

    clustering: str = "correlation"

    def _masker(self, shap, bg):
        if not isinstance(self.clustering, str):
            raise ValueError(f"clustering must be a pdist metric name; got {self.clustering!r}")
        if np.ptp(bg, axis=0).min() == 0 and self.clustering == "correlation":
            raise ValueError(
                "shap:partition clusters features by correlation over the background, but a "
                "feature is constant there; fit on more varied data, keep the 'training_sample' "
                "baseline, or pass clustering='euclidean'"
            )
        return shap.maskers.Partition(bg, max_samples=len(bg), clustering=self.clustering)

    def _shap_batch_size(self, call, n_bg):
        return "auto"

    def _make(self, shap, f, masker):
        return shap.explainers.Partition(f, masker)


@_register(
    "kernel", model_kinds=BLACK_BOX, has_convergence_delta=True, stochastic=True, batch_invariant=True,
    summary="shap's KernelExplainer: Shapley-kernel weighted regression on coalitions",
    reference=SHAP,
    notes="Random only while n_samples does not enumerate every coalition; every instance "
    "of a call gets the same coalitions (NumPy's generator reseeded per instance).",
)
class KernelShap(_ShapExplainer, SurrogateExplainer, Batched):
    """shap's ``KernelExplainer``, comparable with ``native:kernel_shap``.

    Each instance is explained after ``np.random.seed(seed)`` (see the module docstring), the
    seed being ``random_state`` or one fresh draw per call, so every instance gets the
    coalitions and weights ``native:kernel_shap`` draws for that seed. Only features equal to
    every background row, which shap leaves out of the regression (their value is 0), make
    the coalitions of two instances differ.

    Parameters
    ----------
    n_samples : "auto" or int
        shap's ``nsamples``: coalitions per instance. ``"auto"`` is ``2 F + 2048``, as in
        shap; shap caps it at the ``2^F - 2`` coalitions there are, and then enumerates them
        all (exact Shapley values, no randomness).
    l1_reg : False, float or str
        shap's ``l1_reg``. Default ``False``: no feature selection. shap's default
        (``"num_features(10)"`` since 0.47, ``"auto"`` before) first selects features by
        LARS or a lasso and gives the others 0. Also ``"num_features(k)"``, ``"aic"``,
        ``"bic"`` or a lasso ``alpha``.
    random_state : int, optional
        Seeds the coalitions (``np.random.seed(random_state)`` before each instance) and the
        background draw.
    """

    n_samples: int | str = "auto"
    l1_reg: bool | str | int = False

    def _check_l1_reg(self) -> None:
        r = self.l1_reg
        ok = (
            r is False
            or (isinstance(r, str) and (r in ("auto", "aic", "bic") or (
                r.startswith("num_features(") and r.endswith(")") and r[13:-1].isdigit())))
            or (not isinstance(r, bool) and isinstance(r, int | float | np.number) and r >= 0)
        )
        if not ok:
            raise ValueError(
                "l1_reg must be False, 'num_features(k)', 'aic', 'bic', 'auto' or a lasso alpha "
                f">= 0; got {r!r}"
            )

    def _attribute(self, call, *, baselines, feature_mask):
        _check_count("n_samples", self.n_samples, 2, allow=("auto",))
        self._check_l1_reg()
        shap = _shap()
        b, groups = self._backgrounds(call, baselines)
        shape = tuple(call.x.shape[1:])
        x = call.x.cpu().numpy().astype(np.float64)
        seed = _instance_seed(self, call)
        n_features = int(np.prod(shape))
        wanted = 2 * n_features + 2048 if self.n_samples == "auto" else int(self.n_samples)
        used = min(wanted, 2**n_features - 2) if n_features <= 30 else wanted
        parts = []
        with _numpy_global_state(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*l1_reg='auto' is deprecated.*")
            for idx, background in groups:
                bg = background.numpy().astype(np.float64)
                explainer = shap.KernelExplainer(_numpy_model(call, shape), bg, link="identity")
                for i in progress(idx, self.info.qualified_name, min_steps=1):  # the same coalitions
                    np.random.seed(seed)  # noqa: NPY002
                    v = explainer.shap_values(x[i : i + 1], nsamples=wanted, l1_reg=self.l1_reg,
                                              silent=True)
                    parts.append(_per_output(v, 1, shape))
        values = _for_target(np.concatenate(parts), call.target, call.predictions.shape[1])
        return self._result(call, values, b, {"n_samples_used": used, "seed_used": seed})


# -- model-specific explainers -------------------------------------------------------------
def _refuse(name: str, what: str, model, detail: str = "") -> TypeError:
    return TypeError(
        f"{name} explains {what}; got {type(model).__name__}{detail}. Use shap:exact (up to "
        "~15 features) or shap:kernel, which explain any model"
    )


def _float32_thresholds(ensemble) -> bool:
    """Make shap's interventional TreeSHAP route inputs as scikit-learn does.

    scikit-learn compares float32 inputs with float64 thresholds; shap's interventional
    algorithm stores thresholds as C floats (``struct Node`` in ``tree_shap.h``), so an input
    equal to a rounded-up threshold goes left where scikit-learn sends it right. On data on a
    grid (measurements with fixed decimals) a split midpoint often is another data value:
    shap 0.51 then gives values that differ from exact Shapley values (measured: up to 0.09
    in probability on scikit-learn's wine data). Rounding every threshold down to a float32
    keeps each of scikit-learn's decisions for float32 inputs. Returns whether it applied.
    """
    thresholds = getattr(ensemble, "thresholds", None)
    if thresholds is None or getattr(ensemble, "input_dtype", None) is not np.float32:
        return False
    t32 = thresholds.astype(np.float32)
    up = t32.astype(np.float64) > thresholds
    t32[up] = np.nextafter(t32[up], np.float32(-np.inf))
    ensemble.thresholds = t32.astype(thresholds.dtype)
    return True


@_register(
    "tree", model_kinds=SKLEARN, has_convergence_delta=True,
    summary="Interventional TreeSHAP: Shapley values of tree ensembles against a background",
    reference="Lundberg et al. (2020), From local explanations to global understanding with "
    "explainable AI for trees",
    notes="scikit-learn tree ensembles only (shap:exact / shap:kernel explain any model).",
)
class TreeShap(_ShapExplainer, PerturbationExplainer):
    """shap's ``TreeExplainer`` with an interventional background.

    Classifiers are explained in probability space (``model_output="probability"``), so the
    values sum to ``predict_proba(x) - mean_b predict_proba(b)``, as for every other entry;
    regressors in the space of ``predict`` (``model_output="raw"``). For trees that predict
    probabilities (decision trees, random forests, extra trees) these are the exact Shapley
    values of ``predict_proba`` against the background (as ``shap:exact``). Gradient-boosted
    classifiers add log-odds: for each background row ``r`` shap takes the exact Shapley
    values of the margin and rescales them by ``(p(x) - p(r)) / (m(x) - m(r))``, which is
    additive in probability but not the Shapley values of ``predict_proba``. A binary
    gradient-boosted classifier, which shap explains as ``P(class 1)``, gives class 0 the
    negated values. Split thresholds are rounded down to float32 first, so that shap routes
    inputs equal to a split midpoint as scikit-learn does (see ``_float32_thresholds``).

    Supported: scikit-learn's DecisionTree, RandomForest and ExtraTrees classifiers and
    regressors, GradientBoosting and HistGradientBoosting regressors and binary classifiers
    (and the other ensembles shap's TreeExplainer reads). Any other model raises a
    ``TypeError`` naming shap:exact and shap:kernel.
    """

    def _wrapper(self, layout=None) -> ModelWrapper:
        try:
            return super()._wrapper(layout)
        except TypeError as exc:
            raise _refuse(self.info.qualified_name, TREE_MODELS, self.model) from exc

    def _attribute(self, call, *, baselines, feature_mask):
        shap = _shap()
        b, groups = self._backgrounds(call, baselines)
        from shap.utils._exceptions import InvalidModelError
        from sklearn.base import is_classifier

        model = call.model.model
        output = "probability" if is_classifier(model) else "raw"
        x = call.x.cpu().numpy().astype(np.float64)
        shape = tuple(call.x.shape[1:])
        parts = []  # groups are in instance order
        for idx, background in groups:
            bg = background.numpy().astype(np.float64)
            try:
                explainer = shap.TreeExplainer(model, data=bg, model_output=output,
                                               feature_perturbation="interventional")
            except (InvalidModelError, NotImplementedError) as exc:
                raise _refuse(self.info.qualified_name, TREE_MODELS, model, f" ({exc})") from exc
            rounded = _float32_thresholds(explainer.model)
            # additivity: the explanation's convergence_delta reports it for every call
            raw = explainer.shap_values(x[idx], check_additivity=False)
            parts.append(_per_output(raw, len(idx), shape))
        values = _for_target(np.concatenate(parts), call.target, call.predictions.shape[1])
        return self._result(call, values, b, {"model_output": output,
                                           "thresholds_rounded_to_float32": rounded})


@_register(
    "linear", model_kinds=SKLEARN,
    summary="shap's LinearExplainer: coef * (x - background mean), in margin (decision function) space",
    reference=SHAP + "; shap.explainers.Linear",
    notes="Explains the margin (decision function), not predict_proba, so the completeness "
    "error against predict_proba does not apply.",
)
class LinearShap(_ShapExplainer, PerturbationExplainer):
    """shap's ``LinearExplainer`` (interventional): ``coef_ * (x - mean_b b)``.

    It explains the model's **margin**, ``x @ coef_.T + intercept_`` (``decision_function``:
    log-odds for a logistic regression, ``predict`` for a linear regressor), not
    ``predict_proba``: the values sum to ``margin(x) - mean_b margin(b)``. A binary classifier
    has one margin, that of class 1; class 0 gets the negated values (its log-odds). The
    explanation's params record ``explained_output="margin"``.

    Models: fitted scikit-learn linear models (anything with ``coef_`` and ``intercept_``
    that shap reads); any other model raises a ``TypeError``.
    """

    def _wrapper(self, layout=None) -> ModelWrapper:
        try:
            return super()._wrapper(layout)
        except TypeError as exc:
            raise _refuse(self.info.qualified_name, "linear scikit-learn models (coef_)",
                          self.model) from exc

    def _attribute(self, call, *, baselines, feature_mask):
        shap = _shap()
        b, groups = self._backgrounds(call, baselines)
        from shap.utils._exceptions import InvalidModelError

        model = call.model.model
        what = "linear scikit-learn models (coef_, intercept_)"
        if not hasattr(model, "coef_"):
            raise _refuse(self.info.qualified_name, what, model, " (no coef_)")
        x = call.x.cpu().numpy().astype(np.float64)
        shape = tuple(call.x.shape[1:])
        parts = []
        for idx, background in groups:
            bg = background.numpy().astype(np.float64)
            try:
                masker = shap.maskers.Independent(bg, max_samples=len(bg))
                explainer = shap.LinearExplainer(model, masker)
            except InvalidModelError as exc:
                raise _refuse(self.info.qualified_name, what, model, f" ({exc})") from exc
            parts.append(_per_output(explainer.shap_values(x[idx]), len(idx), shape))
        values = _for_target(np.concatenate(parts), call.target, call.predictions.shape[1])
        return self._result(call, values, b, {"explained_output": "margin"})


# -- differentiable models -----------------------------------------------------------------
@_register(
    "gradient", modalities=ALL, model_kinds=TORCH, stochastic=True, batch_invariant=True,
    summary="Expected gradients: gradients at random points between background rows and input",
    reference="Erion et al. (2021), Improving performance of deep learning models with axiomatic "
    "attribution priors and expected gradients; shap.GradientExplainer",
    notes="Complete only in expectation over its random draws, so no per-instance delta.",
)
class GradientShap(_ShapExplainer, GradientExplainer, Batched):
    """shap's ``GradientExplainer`` (expected gradients) for torch models.

    Each instance is explained by one shap call with ``rseed`` = the seed, so it gets the same
    background rows and interpolation points whatever else is explained with it. Only the
    target output is differentiated (the model is wrapped to return that column).

    Parameters
    ----------
    n_samples : int
        shap's ``nsamples``: (background row, point) draws per instance (200, as in shap).
    local_smoothing : float
        shap's ``local_smoothing``: std of Gaussian noise added to the input (0, as in shap).
    random_state : int, optional
        Seeds the background draw and shap's draws (its ``rseed``).
    """

    n_samples: int = 200
    local_smoothing: float = 0.0

    def _attribute(self, call, *, baselines, feature_mask):
        _check_count("n_samples", self.n_samples)
        if not float(self.local_smoothing) >= 0:
            raise ValueError(f"local_smoothing must be >= 0; got {self.local_smoothing!r}")
        shap = _shap()
        b, groups = self._backgrounds(call, baselines)
        shape = tuple(call.x.shape[1:])
        seed = _instance_seed(self, call)
        values = np.zeros((call.x.shape[0], *shape))
        with _numpy_global_state():
            for k, idx, bg in self._by_target(call, groups):
                explainer = shap.GradientExplainer(
                    _TargetOutput(call.model.model, k), bg, batch_size=int(call.rows),
                    local_smoothing=float(self.local_smoothing),
                )
                for i in idx:
                    v = explainer.shap_values(call.x[i : i + 1], nsamples=int(self.n_samples),
                                              rseed=seed)
                    values[i] = _per_output(v, 1, shape)[0, ..., 0]
        return self._result(call, values, b, {"seed_used": seed})


@contextlib.contextmanager
def _restore_parameters(model: nn.Module) -> Iterator[None]:
    """Remove the ``x``/``y`` parameters DeepExplainer's hooks leave on nested modules.

    shap stores each layer's input and output as ``nn.Parameter`` attributes and deletes
    them afterwards only on direct children and inside containers, so a model wrapped in
    another module would keep them (and report them from ``parameters()``).
    """
    before = {m: set(m._parameters) for m in model.modules()}
    try:
        yield
    finally:
        for m in model.modules():
            for name in set(m._parameters) - before.get(m, set()):
                del m._parameters[name]


@_register(
    "deep", modalities=ALL, model_kinds=TORCH, has_convergence_delta=True,
    summary="DeepSHAP: DeepLIFT multipliers averaged over a background (shap's DeepExplainer)",
    reference=SHAP + "; Shrikumar, Greenside & Kundaje (2017), Learning Important Features "
    "Through Propagating Activation Differences",
    notes="Needs every non-linearity to be its own nn module used once; where shap's own "
    "additivity check fails, the error names entries that work.",
)
class DeepShap(_ShapExplainer, GradientExplainer):
    """shap's ``DeepExplainer`` (DeepLIFT rescale rules averaged over the background).

    The model is wrapped to return only the target output, so shap explains one output per
    call and never takes its ``ranked_outputs`` path (whose own additivity check crashes
    with ``IndexError``/``AssertionError`` in shap 0.51 although the values add up). Where
    shap's additivity check fails (an operation its rules do not cover: a functional
    non-linearity such as ``torch.relu``, a ReLU module used twice, ...), a
    ``RuntimeError`` says so and names entries that work.

    Parameters
    ----------
    check_additivity : bool
        shap's own check that values sum to ``f(x) - mean_b f(b)`` (to 0.01). With
        ``False`` shap's values are returned anyway and ``convergence_delta`` shows the error.
    device : str
    random_state : int, optional
        Seeds the background draw.
    """

    check_additivity: bool = True
    device: str = "auto"

    def _attribute(self, call, *, baselines, feature_mask):
        if not isinstance(self.check_additivity, bool | np.bool_):
            raise TypeError(f"check_additivity must be a bool; got {self.check_additivity!r}")
        shap = _shap()
        b, groups = self._backgrounds(call, baselines)
        shape = tuple(call.x.shape[1:])
        model = call.model.model
        values = np.zeros((call.x.shape[0], *shape))
        with _restore_parameters(model), warnings.catch_warnings():
            # shap 0.51 hands torch tensors to NumPy in its additivity check
            warnings.filterwarnings("ignore", message=".*__array_wrap__ must accept context.*")
            for k, idx, bg in self._by_target(call, groups):
                explainer = shap.DeepExplainer(_TargetOutput(model, k), bg)
                sel = torch.from_numpy(idx).to(call.x.device)
                try:
                    v = explainer.shap_values(call.x[sel],
                                              check_additivity=bool(self.check_additivity))
                except (AssertionError, IndexError, RuntimeError) as exc:
                    raise self._failure(model, exc) from exc
                values[idx] = _per_output(v, len(idx), shape)[..., 0]
        return self._result(call, values, b)

    def _failure(self, model: nn.Module, exc: Exception) -> DeepShapError:
        if isinstance(exc, AssertionError) and "sum up" in str(exc):
            what = (
                "its own additivity check failed: the values do not sum to f(x) - E[f(background)], "
                "so an operation in this model is not covered by its DeepLIFT rules (a functional "
                "non-linearity such as torch.relu, a module used twice, ...)"
            )
            fix = "; or pass check_additivity=False to get shap's values anyway (convergence_delta " \
                  "then shows the error)"
        else:
            what = "it raised an error"
            fix = ""
        return DeepShapError(
            f"SHAP's DeepExplainer failed on {type(model).__name__}: {what}. shap said: "
            f"{type(exc).__name__}: {str(exc).strip()[:300]}. Entries that work: "
            f"{DEEP_ALTERNATIVES}{fix}"
        )
