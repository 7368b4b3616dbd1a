"""Native counterfactuals for tabular data ``(N, F)``: nearest unlike neighbour, Wachter, growing spheres.

- ``native:nearest_unlike_neighbor``: the nearest training instance the model assigns to the
  target class, found with one k-d tree per class (any model kind);
- ``native:wachter`` (Wachter, Mittelstadt & Russell 2017): Adam on ``lambda * loss(f(x'),
  target) + distance_weight * ||x' - x||_{1, MAD}``, ``lambda`` raised until valid, all
  instances at once (autograd for ``torch`` models, differences for black boxes);
- ``native:growing_spheres`` (Laugel et al. 2018): random points in growing spherical layers
  around the instance until one is of the target class, then features moved back to the
  instance's values (any model kind).

Distances are measured with each feature divided by its training standard deviation (median
absolute deviation for Wachter), so that a feature in thousands (a tumour's area) does not
drown one in hundredths (its smoothness). A training instance's class is the model's
prediction for it (see :class:`~xai_suite.base.CounterfactualExplainer`).

Constraints, shared by the three methods (:class:`Constraints`), by column name or index:

- ``features_to_vary`` (default all) and ``immutable``: a feature may change iff it is in the
  first and not in the second; the others keep the instance's values exactly;
- ``integer_features``: rounded to integers (default ``"auto"``: the columns whose training
  values are all integers);
- categorical columns of a :class:`~xai_suite_tabular.frames.TabularModel` take only its codes
  ``0..k-1``: searched as numbers, like the other features, and rounded to the nearest code;
- ``permitted_range`` (as DiCE's): ``{"age": (18, 90)}``; features without an entry stay in
  their training range, widened to include the instance's own value.

Every candidate is projected onto the constraints (clipped to its range, rounded where
integer, non-free features reset) *before* the model judges it, so every counterfactual
returned satisfies them and its validity is that of the projected point.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from xai_suite.plugin import (
    Batched,
    Call,
    CounterfactualExplainer,
    Seeded,
    check_choice,
    check_positive_int,
    on_simplex,
    register_explainer,
)

TABULAR_KINDS = ("torch", "sklearn", "callable")
_register = functools.partial(register_explainer, library="native", modalities=("tabular",), needs_fit=True)
#: A counterfactual of the gradient search counts as valid when the target's log-probability
#: exceeds every other class's by this much: a margin that float32 noise between batch sizes
#: (about 1e-7) cannot flip.
_VALID_MARGIN = 1e-4
#: Halvings of the first sphere in growing spheres before the instance is taken to lie on the
#: decision boundary itself.
_MAX_HALVINGS = 40
#: Step of Wachter's central differences along a continuous feature of a black box (scaled units).
_FD_STEP = 1e-3


# -- shared helpers ---------------------------------------------------------------------------
def _check_number(name: str, value, *, low: float = 0.0, strict: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")


def feature_index(feature, n_features: int, names=None, param: str = "immutable") -> int:
    """The index of one feature given by index or, where ``names`` are known, column name.

    Parameters
    ----------
    feature : int or str
    n_features : int
    names : sequence of str, optional
        The column names (from a DataFrame, the model's ``feature_names_in_`` or ``fit``).
    param : str
        The parameter being resolved, named in errors.

    Returns
    -------
    int
    """
    if isinstance(feature, str):
        if names is None:
            raise ValueError(f"{param} names column {feature!r}, but the inputs have no column names: give "
                             "DataFrames (or a model with feature_names_in_), or feature indices")
        if feature not in names:
            raise ValueError(f"{param} names column {feature!r}, which is not among the columns "
                             f"{list(names)}")
        return list(names).index(feature)
    if isinstance(feature, bool) or not isinstance(feature, int | np.integer):
        raise TypeError(f"{param} must hold feature indices (ints) or column names (str); got {feature!r}")
    if not 0 <= feature < n_features:
        raise ValueError(f"{param} feature indices must be in 0..{n_features - 1} (the data has "
                         f"{n_features} features); got {int(feature)}")
    return int(feature)


def resolve_features(features, n_features: int, names=None, param: str = "immutable") -> np.ndarray:
    """Validate a list of features given by index or column name.

    Parameters
    ----------
    features : None or sequence of int or str
    n_features : int
    names : sequence of str, optional
        The column names, needed for features given by name.
    param : str
        The parameter being resolved, named in errors.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        Sorted indices (empty for ``None``).
    """
    if features is None:
        return np.zeros(0, dtype=np.int64)
    if not _is_feature_list(features):
        raise TypeError(f"{param} must be None or a sequence of feature indices or column names; got "
                        f"{features!r}")
    idx = np.asarray([feature_index(f, n_features, names, param) for f in features], dtype=np.int64)
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{param} lists a feature more than once: {list(features)}")
    return np.sort(idx)


@dataclass(frozen=True)
class Constraints:
    """What the counterfactuals of one explain call may change, per feature.

    Attributes
    ----------
    free : numpy.ndarray of bool, shape (F,)
        Features that may change; the others keep the instance's values.
    integral : numpy.ndarray of bool, shape (F,)
        Features rounded to integers (integer and categorical ones).
    low, high : numpy.ndarray of float64, shape (F,)
        Permitted range per feature.
    widen : numpy.ndarray of bool, shape (F,)
        Ranges (the training data's) widened to include the instance's own value.
    categorical : dict of int to int
        Categorical feature -> its number of codes.
    """

    free: np.ndarray
    integral: np.ndarray
    low: np.ndarray
    high: np.ndarray
    widen: np.ndarray
    categorical: dict

    def bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-instance range ``(lo, hi)``, each (N, F) like ``x``, integer features' rounded inwards."""
        low, high, widen, integral = (torch.as_tensor(a, device=x.device) for a in
                                      (self.low, self.high, self.widen, self.integral))
        xd = x.double()
        lo = torch.where(widen, torch.minimum(low, xd), low)
        hi = torch.where(widen, torch.maximum(high, xd), high)
        lo = torch.where(integral, torch.ceil(lo), lo)
        hi = torch.where(integral, torch.floor(hi), hi)
        return lo.to(x.dtype), hi.to(x.dtype)

    def project(self, cand: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``cand`` (..., N, F) made to satisfy every constraint for instances ``x`` (N, F):
        clipped to the range, rounded where integral, non-free features reset to ``x``."""
        lo, hi = self.bounds(x)
        integral = torch.as_tensor(self.integral, device=x.device)
        free = torch.as_tensor(self.free, device=x.device)
        out = torch.minimum(torch.maximum(cand, lo), hi)
        out = torch.where(integral, torch.round(out), out)
        return torch.where(free, out, x)

    def describe(self, names=None) -> dict:
        """The constraints in effect, JSON-ready, features by name where known."""
        label = (lambda j: names[j]) if names is not None else int
        explicit = ~self.widen & ~np.isin(np.arange(self.free.size), list(self.categorical))
        return {"fixed_features": [label(j) for j in np.flatnonzero(~self.free)],
                "integer_features": [label(j) for j in np.flatnonzero(self.integral)
                                     if j not in self.categorical],
                "categorical_features": [label(j) for j in self.categorical],
                "permitted_range": {label(j): [float(self.low[j]), float(self.high[j])]
                                    for j in np.flatnonzero(explicit)}}


def feature_scale(X: torch.Tensor, scale: str | None) -> torch.Tensor:
    """Per-feature scale of training data ``X``.

    Parameters
    ----------
    X : torch.Tensor, shape (M, F)
    scale : {"std", "mad", None}
        The standard deviation (``ddof=0``), the median absolute deviation from the median,
        or ones. A MAD of 0 (a feature with more than half its values equal) falls back to
        the standard deviation, and a scale of 0 (a constant feature) to 1.

    Returns
    -------
    torch.Tensor of float32, shape (F,)
    """
    if scale is None:
        return torch.ones(X.shape[1])
    Xd = X.double()
    out = Xd.std(0, unbiased=False)
    if scale == "mad":
        mad = (Xd - Xd.median(0).values).abs().median(0).values
        out = torch.where(mad > 0, mad, out)
    return torch.where(out > 0, out, torch.ones_like(out)).float()


def _target_margin(out: torch.Tensor, target: torch.Tensor, simplex: bool) -> torch.Tensor:
    """``log p_target - max_{k != target} log p_k`` per row of outputs ``out`` (n, K)."""
    logp = torch.log(out.clamp_min(1e-12)) if simplex else torch.log_softmax(out, 1)
    other = logp.scatter(1, target[:, None], -torch.inf).max(1).values
    return logp.gather(1, target[:, None])[:, 0] - other


def _valid(call: Call, cand: torch.Tensor, target: np.ndarray) -> np.ndarray:
    """Whether the model assigns each candidate (b, F) to its target class (b,)."""
    if cand.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return call.model.predict(cand, call.rows).argmax(1) == target


def _is_feature_list(value) -> bool:
    """Whether ``value`` can list features: a list, tuple, array, pandas Index, ... (not a str)."""
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def _is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


def _range_entry(key, value) -> tuple[float, float]:
    ok = isinstance(value, Sequence | np.ndarray) and not isinstance(value, str) and len(value) == 2 and all(
        not isinstance(v, bool) and isinstance(v, int | float | np.integer | np.floating) for v in value)
    if not ok or math.isnan(value[0]) or math.isnan(value[1]) or value[0] > value[1]:
        raise ValueError(f"permitted_range[{key!r}] must be a pair (low, high) of numbers with low <= high; "
                         f"got {value!r}")
    return float(value[0]), float(value[1])


class _TabularCounterfactual(CounterfactualExplainer):
    """The constraints, their parameter checks and the training-data scale of the tabular methods.

    Parameters
    ----------
    immutable : None or sequence of int or str
        Features (indices, or column names where the inputs have them) kept at ``x``'s values.
    features_to_vary : None or sequence of int or str
        The only features that may change (default all); combined with ``immutable``.
    integer_features : "auto", None or sequence of int or str
        Features rounded to integers; ``"auto"``: the columns whose training values are all
        integers.
    permitted_range : "data", None or dict
        Feature (index or name) -> ``(low, high)``; features without an entry stay in their
        training range widened to include ``x``'s value (``"data"``: all of them so), or
        are unbounded (``None``).
    """

    _mixin_params: ClassVar[bool] = True  # its parameters' docs join the methods'
    _scales: ClassVar[tuple] = ("std", None)
    immutable: Sequence[int | str] | None = None
    features_to_vary: Sequence[int | str] | None = None
    integer_features: str | Sequence[int | str] | None = "auto"
    permitted_range: str | dict | None = "data"
    # fitted state (not hyper-parameters)
    scale_: torch.Tensor = field(init=False, repr=False)  # (F,) float32
    range_: np.ndarray = field(init=False, repr=False)  # (2, F) float64: training min, max
    integer_: np.ndarray = field(init=False, repr=False)  # (F,) bool: integer-valued training columns

    def _check_params(self) -> None:
        """Checks that need neither the data nor its column names."""
        check_choice("scale", self.scale, self._scales)
        for param in ("immutable", "features_to_vary"):
            value = getattr(self, param)
            if value is not None and not _is_feature_list(value):
                raise TypeError(f"{param} must be None or a sequence of feature indices or column names; "
                                f"got {value!r}")
        integer = self.integer_features
        if not (integer is None or _is_auto(integer) or _is_feature_list(integer)):
            raise TypeError(f"integer_features must be 'auto', None or a sequence of feature indices or "
                            f"column names; got {integer!r}")
        rng = self.permitted_range
        if not (rng is None or isinstance(rng, Mapping) or (isinstance(rng, str) and rng == "data")):
            raise TypeError(f"permitted_range must be 'data', None or a dict of feature -> (low, high); got "
                            f"{rng!r}")
        for key, value in (rng.items() if isinstance(rng, Mapping) else ()):
            _range_entry(key, value)

    def _names_used(self) -> bool:
        specs = [self.immutable, self.features_to_vary,
                 None if _is_auto(self.integer_features) else self.integer_features,
                 list(self.permitted_range) if isinstance(self.permitted_range, Mapping) else None]
        return any(isinstance(f, str) for spec in specs if spec is not None for f in spec)

    def _constraints(self, n: int, names, categories) -> Constraints:
        """The constraints for data of ``n`` features with column ``names`` (or None) and a
        model's coded ``categories`` (column name -> labels, or None)."""
        vary = (np.ones(n, dtype=bool) if self.features_to_vary is None else
                np.isin(np.arange(n), resolve_features(self.features_to_vary, n, names, "features_to_vary")))
        free = vary & ~np.isin(np.arange(n), resolve_features(self.immutable, n, names, "immutable"))
        if not free.any():
            raise ValueError(f"immutable and features_to_vary leave none of the {n} features free to change: "
                             "no counterfactual can change any")
        categorical = {feature_index(col, n, names, "categories"): len(labels)
                       for col, labels in (categories or {}).items()}
        integral = (self.integer_.copy() if _is_auto(self.integer_features) else
                    np.isin(np.arange(n), resolve_features(self.integer_features, n, names,
                                                           "integer_features")))
        low, high = self.range_[0].copy(), self.range_[1].copy()
        widen = np.ones(n, dtype=bool)
        if self.permitted_range is None:
            low[:], high[:] = -np.inf, np.inf
        for key, value in (self.permitted_range.items() if isinstance(self.permitted_range, Mapping) else ()):
            j = feature_index(key, n, names, "permitted_range")
            if j in categorical:
                raise ValueError(f"permitted_range[{key!r}]: {names[j]!r} is categorical (its codes are "
                                 "fixed); keep it with immutable or features_to_vary instead")
            low[j], high[j] = _range_entry(key, value)
            widen[j] = False
            if integral[j] and math.ceil(low[j]) > math.floor(high[j]):
                raise ValueError(f"permitted_range[{key!r}] = {value!r} holds no integer, but the feature "
                                 "is integer")
        for j, k in categorical.items():
            integral[j], low[j], high[j], widen[j] = True, 0.0, k - 1.0, False
        return Constraints(free=free, integral=integral, low=low, high=high, widen=widen,
                           categorical=categorical)

    def _fit(self, X: torch.Tensor, y) -> None:
        self._check_params()
        super()._fit(X, y)
        self.scale_ = feature_scale(X, self.scale)
        Xd = X.double()
        self.range_ = torch.stack([Xd.min(0).values, Xd.max(0).values]).numpy()
        self.integer_ = (Xd == Xd.round()).all(0).numpy()
        names = getattr(self.model, "feature_names_in_", None)
        names = None if names is None or len(names) != X.shape[1] else [str(c) for c in names]
        if names is not None or not self._names_used():  # else checked once the names are known
            self._constraints(X.shape[1], names, getattr(self.model, "feature_categories_", None)
                              if names is not None else None)

    def _compute(self, call: Call):
        self._check_params()  # again: they may have been set after fit
        names = call.feature_names
        cons = self._constraints(call.x.shape[1], names, self._categories(call))
        call.data["constraints"] = cons
        cf, pred, resolved = super()._compute(call)
        resolved["constraints"] = cons.describe(names)
        return cf, pred, resolved



# -- nearest unlike neighbour -----------------------------------------------------------------
@_register(
    "nearest_unlike_neighbor", model_kinds=TABULAR_KINDS,
    summary="Nearest unlike neighbour: the nearest training instance of the target class "
    "(k-d tree per class on std-scaled features), fixed features copied from the query",
    reference="Wexler et al. (2019), The What-If Tool (nearest counterfactual datapoint); "
    "Delaney, Greene & Keane (2021) for the nearest unlike neighbour as a counterfactual",
    notes="Deterministic. Ties between equally distant training instances are broken by the "
    "k-d tree.",
)
class NearestUnlikeNeighbor(_TabularCounterfactual, Batched):
    """The nearest training instance that the model assigns to the target class.

    One k-d tree (:class:`scipy.spatial.cKDTree`) per class, built on the training instances
    the model assigns to that class, in scaled space over the features free to change (once
    per set of free features). Without constraints the counterfactual is the nearest such
    instance: valid by construction, plausible (a real data point), but usually changing
    every feature.

    Fixed features (``immutable``, or not in ``features_to_vary``) are copied from ``x``, and
    each candidate is projected onto the constraints (see
    :mod:`xai_suite_tabular.counterfactuals`): candidates are ranked by distance over the free
    features, and the nearest whose projection stays in the target class wins (neighbours
    checked 1, 4, 16, ... at a time, all instances in one batched call per round). Demanding
    equal fixed features instead would leave no neighbour for a continuous one such as age.
    Where none stays valid the nearest (projected) is returned, reported invalid.

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    scale : {"std", None}
        ``"std"``: features divided by their training standard deviation (1 for a constant
        feature), so the neighbour does not depend on units; ``None``: raw units.
    """

    scale: str | None = "std"

    def _fit(self, X: torch.Tensor, y) -> None:
        super()._fit(X, y)
        self.trees_ = {}  # free features -> {class: (k-d tree, training rows)}

    def _class_trees(self, free: np.ndarray) -> dict:
        from scipy.spatial import cKDTree

        key = tuple(np.flatnonzero(free).tolist())
        if key not in self.trees_:
            pts = self._points(self.X_train_, free)
            self.trees_[key] = {int(c): (cKDTree(pts[idx]), idx) for c in np.unique(self.train_class_)
                                for idx in [np.flatnonzero(self.train_class_ == c)]}
        return self.trees_[key]

    def _points(self, X: torch.Tensor, free: np.ndarray) -> np.ndarray:
        """Scaled free features (float64), the space the trees search."""
        return (X.cpu().double() / self.scale_.double())[:, torch.from_numpy(free)].numpy()

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        x, target = call.x.cpu(), call.target
        cons = call.data["constraints"]
        trees = self._class_trees(cons.free)
        n = x.shape[0]
        q = self._points(x, cons.free)
        chosen, nearest = np.full(n, -1), np.full(n, -1)
        k_lo, k_hi, evaluated, calls = 0, 1, 0, 0
        while (chosen < 0).any():
            inst, cand = [], []
            for c in np.unique(target[chosen < 0]):
                tree, idx = trees[int(c)]
                kk = min(k_hi, idx.size)
                if k_lo >= kk:
                    continue  # every instance of the class checked
                qi = np.flatnonzero((target == c) & (chosen < 0))
                _, nb = tree.query(q[qi], k=list(range(k_lo + 1, kk + 1)))
                inst.append(np.repeat(qi, kk - k_lo))
                cand.append(idx[nb.reshape(-1)])
            if not inst:
                break
            inst, cand = np.concatenate(inst), np.concatenate(cand)  # nearest first per instance
            rows = cons.project(self.X_train_[torch.from_numpy(cand)], x[torch.from_numpy(inst)])
            ok = _valid(call, rows, target[inst])
            evaluated += inst.size
            calls += 1
            if k_lo == 0:  # one candidate per instance: its nearest
                nearest[inst] = cand
            hit = np.flatnonzero(ok)
            _, first = np.unique(inst[hit], return_index=True)
            chosen[inst[hit[first]]] = cand[hit[first]]
            k_lo, k_hi = k_hi, 4 * k_hi
        missing = chosen < 0
        if missing.any():
            warnings.warn(
                f"native:nearest_unlike_neighbor: for {int(missing.sum())} instance(s) no training "
                "instance of the target class stays in that class with the immutable features "
                "copied from the query (and the constraints applied); returning the nearest one "
                "(invalid)", UserWarning, stacklevel=4,
            )
        pick = np.where(missing, nearest, chosen)
        cf = cons.project(self.X_train_[torch.from_numpy(pick)], x)
        return cf.to(call.x.device), {"neighbors_evaluated": int(evaluated), "model_calls": calls}


# -- Wachter et al. ---------------------------------------------------------------------------
@_register(
    "wachter", model_kinds=TABULAR_KINDS,
    summary="Wachter et al.: Adam on lambda * hinge(target log-odds) + distance_weight * "
    "MAD-scaled L1, lambda raised until valid; all instances optimised at once (black boxes: "
    "central differences)",
    reference="Wachter, Mittelstadt & Russell (2017), Counterfactual Explanations without "
    "Opening the Black Box: Automated Decisions and the GDPR",
    notes="Deterministic (the search starts at the instance itself).",
)
class Wachter(_TabularCounterfactual, Batched):
    """Gradient-based counterfactuals (Wachter et al. 2017).

    Each instance ``x`` with target class ``t`` is moved to ``x' = x + s * z`` (``s`` the
    per-feature ``scale``), minimising over ``z``::

        lambda * max(0, margin - (log p_t(x') - max_{k != t} log p_k(x')))
            + distance_weight * sum_j |z_j|

    The prediction term is zero once the target wins by ``margin`` (log-odds), like Wachter
    et al.'s squared loss at the desired output, so the distance term (the paper's
    MAD-scaled L1 norm, ``scale``) holds the optimum close to the decision boundary.
    ``log p`` is the log of probability outputs, the log-softmax of logits.

    Gradients: torch's for ``torch`` models, taken at the unprojected iterate. A black box
    (an estimator, a callable, a :class:`~xai_suite_tabular.frames.TabularModel`) is only
    ever called on projected points: the gradient there is a central difference along each
    free feature, of step 1e-3 (scaled units, float64) for a continuous feature and of one
    unit (the next integer or code, within range) for an integer or categorical one; ``2 m +
    1`` model rows per instance and step for ``m`` free features. Categorical codes are thus
    searched in their code order, like growing spheres' rounding.

    Optimisation: Adam (``lr``, ``max_iter`` steps per round) from ``z = 0``, with the L1 term
    handled orthant-wise (Andrew & Gao 2007): a feature at its original value moves only
    where the prediction gradient exceeds ``distance_weight``, and a step that would cross
    the original value stops on it, so features that need not change stay exactly unchanged.
    After each round, ``lambda`` (from 1) grows by ``lambda_growth`` for the instances
    without a valid iterate, for at most ``lambda_steps`` rounds (the paper's schedule).

    Constraints: every step is clipped to the permitted range and fixed features are held
    exactly (zero gradient); integer and categorical features are optimised as continuous
    numbers and each iterate is projected (rounded to the nearest integer or code) before
    it is judged. Returned per instance: the closest valid projected iterate (scaled L1;
    valid: the target's log-probability beats every other class's by more than 1e-4,
    beyond float noise) of the first round that found one, else the projected iterate of
    largest target margin. On a linear model the defaults land within 1.09x of the exact L1
    optimum. All active instances go through the model together, in chunks of
    ``batch_size`` rows; each instance's update depends on its own rows only.

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    distance_weight : float
        Weight on closeness relative to the prediction term's starting weight 1 (larger:
        closer counterfactuals, more rounds of ``lambda`` growth).
    lambda_growth : float
        Factor (> 1) of the prediction term's weight after a round without a valid one.
    lambda_steps : int
        Most rounds.
    lr : float
        Adam's step size in scaled units (about the largest move of a feature per step).
    max_iter : int
        Adam steps per round.
    margin : float
        Log-odds by which the target class should win (>= 0).
    scale : {"mad", "std", None}
        Per-feature scale of the distance (and of the optimisation variable): the training
        data's median absolute deviation (Wachter et al.), standard deviation, or raw units.
    """

    _scales = ("mad", "std", None)

    distance_weight: float = 1.0
    lambda_growth: float = 4.0
    lambda_steps: int = 8
    lr: float = 0.1
    max_iter: int = 100
    margin: float = 0.1
    scale: str | None = "mad"

    def _check_params(self) -> None:
        super()._check_params()
        _check_number("distance_weight", self.distance_weight, strict=False)
        _check_number("lambda_growth", self.lambda_growth, low=1.0)
        _check_number("lr", self.lr)
        _check_number("margin", self.margin, strict=False)
        check_positive_int(lambda_steps=self.lambda_steps, max_iter=self.max_iter)

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        x, dev = call.x, call.x.device
        n = x.shape[0]
        target = call.target_t
        cons = call.data["constraints"]
        simplex = on_simplex(call.predictions)
        s = self.scale_.to(dev, x.dtype)
        free = torch.from_numpy(cons.free).to(dev)
        lo, hi = cons.bounds(x)
        z_lo, z_hi = (lo - x) / s, (hi - x) / s
        rounding = bool((cons.free & cons.integral).any())
        w, lr = float(self.distance_weight), float(self.lr)
        b1, b2, eps = 0.9, 0.999, 1e-8

        z = torch.zeros_like(x)
        lam = torch.ones(n, device=dev)
        found = torch.zeros(n, dtype=torch.bool, device=dev)
        best, best_d = x.clone(), torch.full((n,), torch.inf, device=dev)  # closest valid point
        top, top_m = x.clone(), torch.full((n,), -torch.inf, device=dev)  # largest margin
        rounds = passes = 0
        at_point = call.model.kind != "torch"  # black boxes: margins at the projected points
        grad_of = functools.partial(_difference_margins if at_point else _margins, call, x, target, s,
                                    simplex, cons)

        for _ in range(int(self.lambda_steps)):
            rows = torch.nonzero(~found).flatten()
            if rows.numel() == 0:
                break
            rounds += 1
            zr = z[rows]
            m1, m2 = torch.zeros_like(zr), torch.zeros_like(zr)
            lam_r = lam[rows, None]
            for step in range(1, int(self.max_iter) + 2):
                m, g = grad_of(rows, zr)
                passes += 1
                # record the current iterate, projected onto the constraints
                point, m_point = x[rows] + zr * s, m
                if rounding or at_point:
                    point = cons.project(point, x[rows])
                if rounding and not at_point:
                    with torch.no_grad():
                        m_point = _target_margin(call.model.forward(point), target[rows], simplex).to(m.dtype)
                d = ((point - x[rows]) / s).abs().sum(1)
                better = (m_point > _VALID_MARGIN) & (d < best_d[rows])
                best_d[rows] = torch.where(better, d, best_d[rows])
                best[rows] = torch.where(better[:, None], point, best[rows])
                higher = m_point > top_m[rows]
                top_m[rows] = torch.where(higher, m_point, top_m[rows])
                top[rows] = torch.where(higher[:, None], point, top[rows])
                if step > self.max_iter:
                    break
                # gradient of lambda * hinge; the L1 term orthant-wise
                active = (m < float(self.margin)).to(zr.dtype)[:, None]
                gp = -lam_r * active * g
                pg = torch.where(zr > 0, gp + w, torch.where(zr < 0, gp - w, torch.where(
                    gp + w < 0, gp + w, torch.where(gp - w > 0, gp - w, torch.zeros_like(gp)))))
                pg = torch.where(free, pg, torch.zeros_like(pg))
                orthant = torch.where(zr != 0, torch.sign(zr), -torch.sign(pg))
                m1 = b1 * m1 + (1 - b1) * pg
                m2 = b2 * m2 + (1 - b2) * pg * pg
                upd = lr * (m1 / (1 - b1**step)) / ((m2 / (1 - b2**step)).sqrt() + eps)
                new = zr - upd
                new = torch.where(torch.sign(new) == orthant, new, torch.zeros_like(new))
                new = torch.minimum(torch.maximum(new, z_lo[rows]), z_hi[rows])
                zr = torch.where(free, new, torch.zeros_like(new))
            z[rows] = zr
            found = torch.isfinite(best_d)
            lam = torch.where(found, lam, lam * float(self.lambda_growth))
        cf = cons.project(torch.where(found[:, None], best, top), x)  # fixed features exactly x's
        lam_used = lam[found]
        return cf.detach(), {
            "rounds": rounds,
            "model_calls": passes,
            "max_lambda_used": float(lam_used.max()) if lam_used.numel() else None,
        }


def _margins(call: Call, x: torch.Tensor, target: torch.Tensor, s: torch.Tensor, simplex: bool,
             cons: Constraints, rows: torch.Tensor, zr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target margin (b,) at ``x[rows] + zr * s`` and its gradient (b, F) w.r.t. ``zr``, by
    autograd, in chunks of ``call.rows`` rows."""
    ms, gs = [], []
    for start in range(0, rows.numel(), call.rows):
        r = rows[start : start + call.rows]
        with torch.enable_grad():
            zc = zr[start : start + call.rows].clone().requires_grad_(True)
            m = _target_margin(call.model.forward(x[r] + zc * s), target[r], simplex)
            (g,) = torch.autograd.grad(m.sum(), zc)
        ms.append(m.detach())
        gs.append(g)
    return torch.cat(ms), torch.cat(gs)


def _difference_margins(call: Call, x: torch.Tensor, target: torch.Tensor, s: torch.Tensor, simplex: bool,
                        cons: Constraints, rows: torch.Tensor, zr: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`_margins` for a black box: the margin at the projection of ``x[rows] + zr * s``
    and central differences around it along each free feature (see :class:`Wachter`), in
    float64, the model called on projected points only, ``call.rows`` rows at a time."""
    f = x.shape[1]
    free = torch.from_numpy(np.flatnonzero(cons.free)).to(x.device)
    m = free.numel()
    unit = torch.where(torch.from_numpy(cons.integral).to(x.device)[free], 1.0, _FD_STEP * s[free].double())
    step = torch.zeros(m, f, dtype=torch.float64, device=x.device)
    step[torch.arange(m), free] = unit.double()
    per, ms, gs = 2 * m + 1, [], []
    chunk = max(1, call.rows // per)
    for start in range(0, rows.numel(), chunk):
        r = rows[start : start + chunk]
        xr = x[r].double()[:, None, :]
        pts = cons.project(xr + (zr[start : start + chunk] * s).double()[:, None, :], xr)  # (b, 1, F)
        cand = cons.project(torch.cat([pts, pts + step, pts - step], 1), xr)  # (b, 2m + 1, F)
        out = call.model.forward(cand.reshape(-1, f))
        mar = _target_margin(out.double(), target[r].repeat_interleave(per), simplex).reshape(r.numel(), per)
        up, down = (cand[:, k, free].diagonal(dim1=1, dim2=2) for k in (slice(1, m + 1), slice(m + 1, None)))
        dz = (up - down) / s[free].double()  # the steps taken, in z units (clipped at a bound)
        g = torch.zeros(r.numel(), f, dtype=torch.float64, device=x.device)
        g[:, free] = torch.where(dz > 0, (mar[:, 1 : m + 1] - mar[:, m + 1 :]) / dz.clamp_min(1e-300), 0.0)
        ms.append(mar[:, 0].to(x.dtype))
        gs.append(g.to(x.dtype))
    return torch.cat(ms), torch.cat(gs)


# -- growing spheres --------------------------------------------------------------------------
@_register(
    "growing_spheres", model_kinds=TABULAR_KINDS, stochastic=True, batch_invariant=True,
    summary="Growing spheres: uniform samples in growing spherical layers around x until one "
    "is of the target class, then features moved back to x while it stays valid",
    reference="Laugel, Lesot, Marsala, Renard & Detyniecki (2018), Comparison-Based Inverse "
    "Classification for Interpretability in Machine Learning (IPMU)",
    notes="Each instance draws from its own generator seeded from random_state, so the draws "
    "do not depend on batch_size.",
)
class GrowingSpheres(_TabularCounterfactual, Batched, Seeded):
    """Black-box counterfactuals by sampling in growing spherical layers (Laugel et al. 2018).

    In scaled feature space over the features free to change (the others keep ``x``'s
    values), for each instance ``x`` with target class ``t``, as Laugel et al.'s Algorithm 1:

    1. draw ``n_samples`` points uniformly in the ball of radius ``eta = first_radius``;
       while one of them is of class ``t``, halve ``eta`` and draw again;
    2. draw ``n_samples`` points uniformly in the layer ``eta <= |z - x| <= 2 eta``, then
       ``2 eta .. 3 eta``, ... (at most ``max_layers`` layers) until one is of class ``t``;
       the closest such point (scaled Euclidean) is ``e``;
    3. with ``sparse=True``, move features of ``e`` back to ``x``'s value one at a time,
       smallest scaled change first, keeping each move that stays in class ``t`` (as the
       authors' package), in passes until none moves: undoing any single remaining change
       loses the target class.

    Every drawn point is projected onto the constraints (clipped to the permitted range,
    integer and categorical features rounded) before the model judges it and before
    distances are measured; step 3 moves features back to ``x``'s projection (``x`` itself
    where it satisfies the constraints). The constraints act per feature, so each step
    keeps them. Each round's candidates of all instances still searching, and each
    feature-selection step, go through the model together in chunks of ``batch_size`` rows.
    An instance with no target-class point within ``max_layers`` layers keeps ``x``'s
    projection (invalid, with a warning).

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    n_samples : int
        Points drawn per ball or layer and instance (the authors' package: 2000).
    first_radius : float
        Radius of the first ball, in scaled units (the authors' package: 0.1; 0.5 needs 5
        times fewer layers for the same reach, and one too large is halved anyway). The
        final radius is the layer width, the resolution of the distance found.
    max_layers : int
        Most layers per instance.
    sparse : bool
        Run the feature-selection step.
    scale : {"std", None}
        Divide features by their training standard deviation (1 for a constant feature):
        spheres round in units of each feature's spread; or raw units.
    """

    n_samples: int = 500
    first_radius: float = 0.5
    max_layers: int = 200
    sparse: bool = True
    scale: str | None = "std"

    def _check_params(self) -> None:
        super()._check_params()
        check_positive_int(n_samples=self.n_samples, max_layers=self.max_layers)
        _check_number("first_radius", self.first_radius)
        if not isinstance(self.sparse, bool | np.bool_):
            raise TypeError(f"sparse must be True or False; got {self.sparse!r}")

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        x = call.x.detach().cpu().double()
        target = call.target
        cons = call.data["constraints"]
        n = x.shape[0]
        s = self.scale_.double()
        free = torch.from_numpy(cons.free)
        mut = torch.from_numpy(np.flatnonzero(cons.free))
        d = mut.numel()
        k = int(self.n_samples)
        gens = call.instance_rngs()  # one stream per instance: the same draws alone or in a batch

        eta = np.full(n, float(self.first_radius))
        zooming = np.ones(n, dtype=bool)  # phase 1 (shrinking ball) or 2 (growing layers)
        count = np.zeros(n, dtype=np.int64)  # halvings (phase 1) or layers drawn (phase 2)
        origin = cons.project(x, x)  # x where it satisfies the constraints
        result = origin.clone()
        done, found = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        calls = 0
        per_chunk = max(1, call.rows // k)
        while not done.all():
            todo = np.flatnonzero(~done)
            for c0 in range(0, todo.size, per_chunk):
                inst = todo[c0 : c0 + per_chunk]
                lo = np.where(zooming[inst], 0.0, eta[inst] * (count[inst] + 1))
                hi = np.where(zooming[inst], eta[inst], eta[inst] * (count[inst] + 2))
                z = torch.from_numpy(np.stack([_in_layer(gens[i], k, d, a, b)
                                               for i, a, b in zip(inst, lo, hi, strict=True)]))
                xi = x[torch.from_numpy(inst)][:, None, :]  # (b, 1, F)
                cand = xi.repeat(1, k, 1)  # (b, k, F)
                cand[:, :, mut] += z * s[mut]
                cand = cons.project(cand, xi)
                flat = cand.reshape(-1, x.shape[1]).float()
                ok = _valid(call, flat, np.repeat(target[inst], k)).reshape(inst.size, k)
                calls += 1
                moved = torch.where(free, (cand - xi) / s, torch.zeros_like(cand)).norm(dim=-1)
                dist = torch.from_numpy(np.where(ok, moved.numpy(), np.inf))
                for j, i in enumerate(inst):
                    hit = ok[j].any()
                    if zooming[i] and hit and count[i] < _MAX_HALVINGS:
                        eta[i] /= 2
                        count[i] += 1
                    elif zooming[i] and not hit:  # empty ball: grow layers from eta
                        zooming[i], count[i] = False, 0
                    elif not hit:
                        count[i] += 1
                        done[i] = count[i] >= self.max_layers
                    else:
                        result[i] = cand[j, int(dist[j].argmin())]
                        done[i] = found[i] = True
        if (~found).any():
            warnings.warn(
                f"native:growing_spheres: no point of the target class within {self.max_layers} "
                f"layers for {int((~found).sum())} instance(s); returning them unchanged "
                "(invalid). Raise first_radius or max_layers.", UserWarning, stacklevel=4,
            )
        result = result.float()
        if self.sparse:
            result, sel_calls = _feature_selection(call, origin.float(), result, found, s.float())
            calls += sel_calls
        params = {"model_calls": calls, "layers_max": int(count[~zooming].max(initial=0) + 1)}
        return result.to(call.x.device), params


def _in_layer(gen: np.random.Generator, k: int, d: int, low: float, high: float) -> np.ndarray:
    """``k`` points uniform in the ``d``-dimensional spherical layer ``low <= |z| <= high``.

    Directions are normalised Gaussian draws; radii ``r`` with ``r^d`` uniform on
    ``[low^d, high^d]``, computed as ``high * (rho^d + u (1 - rho^d))^(1/d)``, ``rho = low /
    high`` (no overflow in many dimensions). Returns float64 (k, d).
    """
    g = gen.standard_normal((k, d))
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
    u = gen.random(k)
    rho_d = (low / high) ** d
    r = high * (rho_d + u * (1.0 - rho_d)) ** (1.0 / d)
    return g * r[:, None]


def _feature_selection(call: Call, x: torch.Tensor, cf: torch.Tensor, todo: np.ndarray,
                       s: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Move features of ``cf`` back to ``x`` (the instances' projections) while the model
    keeps the target class.

    Step 3 of :class:`GrowingSpheres`, one (chunked) model call per step for all instances.
    Returns the new counterfactuals and the number of model calls.
    """
    cf = cf.clone()
    n = x.shape[0]
    target = call.target
    active = todo.copy()
    calls = 0
    while active.any():
        delta = ((cf - x).abs() / s).numpy()
        delta[~active] = 0
        order = np.argsort(np.where(delta > 0, delta, np.inf), axis=1, kind="stable")
        n_changed = (delta > 0).sum(1)
        moved = np.zeros(n, dtype=bool)
        for step in range(int(n_changed.max(initial=0))):
            inst = np.flatnonzero(n_changed > step)
            feat = torch.from_numpy(order[inst, step])
            it = torch.from_numpy(inst)
            cand = cf[it].clone()
            cand[torch.arange(inst.size), feat] = x[it, feat]
            ok = _valid(call, cand, target[inst])
            calls += 1
            cf[it[ok]] = cand[ok]
            moved[inst[ok]] = True
        active &= moved
    return cf, calls
