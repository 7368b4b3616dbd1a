"""Native counterfactuals for tabular data ``(N, F)``: nearest unlike neighbour, Wachter, growing spheres.

- ``native:nearest_unlike_neighbor``: the nearest training instance the model assigns to the
  target class, found with one k-d tree per class (any model kind);
- ``native:wachter`` (Wachter, Mittelstadt & Russell 2017): Adam on ``lambda * loss(f(x'),
  target) + distance_weight * ||x' - x||_{1, MAD}``, ``lambda`` raised until valid, all
  instances at once (differentiable ``torch`` models);
- ``native:growing_spheres`` (Laugel et al. 2018): random points in growing spherical layers
  around the instance until one is of the target class, then features moved back to the
  instance's values (any model kind).

Distances are measured with each feature divided by its training standard deviation (median
absolute deviation for Wachter), so that a feature in thousands (a tumour's area) does not
drown one in hundredths (its smoothness). Every method takes ``immutable`` feature indices it
never changes. A training instance's class is the model's prediction for it (see
:class:`~xai_suite.base.CounterfactualExplainer`).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import field
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


# -- shared helpers ---------------------------------------------------------------------------
def _check_number(name: str, value, *, low: float = 0.0, strict: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")


def check_immutable(immutable, n_features: int) -> np.ndarray:
    """Validate ``immutable`` feature indices.

    Parameters
    ----------
    immutable : None or sequence of int
        Indices of features that must not change, each in ``0 .. n_features - 1``.
    n_features : int

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        Sorted indices (empty for ``None``).
    """
    if immutable is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(immutable, str | bytes) or not isinstance(immutable, Sequence | np.ndarray):
        raise TypeError(
            f"immutable must be None or a sequence of feature indices (ints); got {immutable!r}"
        )
    idx = list(immutable)
    bad = [i for i in idx if isinstance(i, bool) or not isinstance(i, int | np.integer)]
    if bad:
        raise TypeError(f"immutable must hold integer feature indices; got {bad[:5]!r}")
    out_of_range = [int(i) for i in idx if not 0 <= i < n_features]
    if out_of_range:
        raise ValueError(
            f"immutable feature indices must be in 0..{n_features - 1} (the data has "
            f"{n_features} features); got {out_of_range[:5]}"
        )
    arr = np.asarray(idx, dtype=np.int64)
    if np.unique(arr).size != arr.size:
        raise ValueError(f"immutable lists a feature more than once: {sorted(arr.tolist())}")
    if arr.size == n_features:
        raise ValueError(f"immutable lists all {n_features} features: no counterfactual can change any")
    return np.sort(arr)


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


class _TabularCounterfactual(CounterfactualExplainer):
    """Shared parameter checks and the training-data scale of the tabular methods."""

    _scales: ClassVar[tuple] = ("std", None)
    # fitted state (not hyper-parameters)
    scale_: torch.Tensor = field(init=False, repr=False)  # (F,) float32
    immutable_: np.ndarray = field(init=False, repr=False)  # (k,) int64
    mutable_: np.ndarray = field(init=False, repr=False)  # (F - k,) int64

    def _check_params(self, n_features: int) -> None:
        check_choice("scale", self.scale, self._scales)
        self.immutable_ = check_immutable(self.immutable, n_features)
        self.mutable_ = np.setdiff1d(np.arange(n_features), self.immutable_)

    def _fit(self, X: torch.Tensor, y) -> None:
        self._check_params(X.shape[1])
        super()._fit(X, y)
        self.scale_ = feature_scale(X, self.scale)

    def _compute(self, call: Call):
        self._check_params(call.x.shape[1])  # again: they may have been set after fit
        return super()._compute(call)


# -- nearest unlike neighbour -----------------------------------------------------------------
@_register(
    "nearest_unlike_neighbor", model_kinds=TABULAR_KINDS,
    summary="Nearest unlike neighbour: the nearest training instance of the target class "
    "(k-d tree per class on std-scaled features), immutable features copied from the query",
    reference="Wexler et al. (2019), The What-If Tool (nearest counterfactual datapoint); "
    "Delaney, Greene & Keane (2021) for the nearest unlike neighbour as a counterfactual",
    notes="Deterministic. Ties between equally distant training instances are broken by the "
    "k-d tree.",
)
class NearestUnlikeNeighbor(_TabularCounterfactual, Batched):
    """The nearest training instance that the model assigns to the target class.

    One k-d tree (:class:`scipy.spatial.cKDTree`) per class, built at ``fit`` in scaled
    feature space on the training instances the model assigns to that class. Without
    immutable features the counterfactual is the nearest such instance: valid by
    construction, plausible (a real data point), but usually changing every feature.

    Immutable features are copied from ``x``: candidates are ranked by distance over the
    mutable features only, and the nearest whose copy with ``x``'s immutable values stays in
    the target class wins (neighbours checked 1, 4, 16, ... at a time, all instances in one
    batched call per round). Demanding equal immutable features instead would leave no
    neighbour for a continuous one such as age. Where none stays valid the nearest is
    returned (reported invalid).

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    scale : {"std", None}
        ``"std"``: features divided by their training standard deviation (1 for a constant
        feature), so the neighbour does not depend on units; ``None``: raw units.
    immutable : None or sequence of int
        Indices of features the counterfactual keeps from ``x``.
    """

    scale: str | None = "std"
    immutable: Sequence[int] | None = None

    def _fit(self, X: torch.Tensor, y) -> None:
        from scipy.spatial import cKDTree

        super()._fit(X, y)
        pts = self._points(X)
        self.trees_ = {}
        for c in np.unique(self.train_class_):
            idx = np.flatnonzero(self.train_class_ == c)
            self.trees_[int(c)] = (cKDTree(pts[idx]), idx)

    def _points(self, X: torch.Tensor) -> np.ndarray:
        """Scaled mutable features (float64), the space the trees search."""
        return (X.cpu().double() / self.scale_.double())[:, torch.from_numpy(self.mutable_)].numpy()

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        x, target = call.x.cpu(), call.target
        n = x.shape[0]
        q = self._points(x)
        imm = torch.from_numpy(self.immutable_)
        chosen, nearest = np.full(n, -1), np.full(n, -1)
        k_lo, k_hi, evaluated, calls = 0, 1, 0, 0
        while (chosen < 0).any():
            inst, cand = [], []
            for c in np.unique(target[chosen < 0]):
                tree, idx = self.trees_[int(c)]
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
            rows = self.X_train_[torch.from_numpy(cand)].clone()
            rows[:, imm] = x[torch.from_numpy(inst)][:, imm]
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
                "copied from the query; returning the nearest one (invalid)", UserWarning, stacklevel=4,
            )
        pick = np.where(missing, nearest, chosen)
        cf = self.X_train_[torch.from_numpy(pick)].clone()
        cf[:, imm] = x[:, imm]
        return cf.to(call.x.device), {"neighbors_evaluated": int(evaluated), "model_calls": calls}


# -- Wachter et al. ---------------------------------------------------------------------------
@_register(
    "wachter", model_kinds=("torch",),
    summary="Wachter et al.: Adam on lambda * hinge(target log-odds) + distance_weight * "
    "MAD-scaled L1, lambda raised until valid; all instances optimised at once",
    reference="Wachter, Mittelstadt & Russell (2017), Counterfactual Explanations without "
    "Opening the Black Box: Automated Decisions and the GDPR",
    notes="Deterministic (the search starts at the instance itself).",
)
class Wachter(_TabularCounterfactual, Batched):
    """Gradient-based counterfactuals (Wachter et al. 2017) for differentiable models.

    Each instance ``x`` with target class ``t`` is moved to ``x' = x + s * z`` (``s`` the
    per-feature ``scale``), minimising over ``z``::

        lambda * max(0, margin - (log p_t(x') - max_{k != t} log p_k(x')))
            + distance_weight * sum_j |z_j|

    The prediction term is zero once the target wins by ``margin`` (log-odds), like Wachter
    et al.'s squared loss at the desired output, so the distance term (the paper's
    MAD-scaled L1 norm, ``scale``) holds the optimum close to the decision boundary.
    ``log p`` is the log of probability outputs, the log-softmax of logits.

    Optimisation: Adam (``lr``, ``max_iter`` steps per round) from ``z = 0``, with the L1 term
    handled orthant-wise (Andrew & Gao 2007): a feature at its original value moves only
    where the prediction gradient exceeds ``distance_weight``, and a step that would cross
    the original value stops on it, so features that need not change stay exactly unchanged.
    After each round, ``lambda`` (from 1) grows by ``lambda_growth`` for the instances
    without a valid iterate, for at most ``lambda_steps`` rounds (the paper's schedule).
    Returned per instance: the closest valid iterate (scaled L1; valid: the target's
    log-probability beats every other class's by more than 1e-4, beyond float noise) of the
    first round that found one, else the iterate of largest target margin. On a linear
    model the defaults land within 1.09x of the exact L1 optimum.

    Immutable features are held exactly (zero gradient, reset every step). With
    ``feature_range="data"`` every step is clipped to each feature's training range (widened
    to include ``x``'s value). All active instances go through the model together, in
    chunks of ``batch_size`` rows; each instance's update depends on its own rows only.

    Parameters
    ----------
    model : torch.nn.Module
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
    feature_range : {"data", None}
        Clip counterfactuals to the training data's per-feature range, or not.
    immutable : None or sequence of int
        Indices of features kept exactly at ``x``'s values.
    """

    _scales = ("mad", "std", None)

    distance_weight: float = 1.0
    lambda_growth: float = 4.0
    lambda_steps: int = 8
    lr: float = 0.1
    max_iter: int = 100
    margin: float = 0.1
    scale: str | None = "mad"
    feature_range: str | None = "data"
    immutable: Sequence[int] | None = None

    def _check_params(self, n_features: int) -> None:
        super()._check_params(n_features)
        _check_number("distance_weight", self.distance_weight, strict=False)
        _check_number("lambda_growth", self.lambda_growth, low=1.0)
        _check_number("lr", self.lr)
        _check_number("margin", self.margin, strict=False)
        check_positive_int(lambda_steps=self.lambda_steps, max_iter=self.max_iter)
        check_choice("feature_range", self.feature_range, ("data", None))

    def _fit(self, X: torch.Tensor, y) -> None:
        super()._fit(X, y)
        self.range_ = (X.min(0).values, X.max(0).values)

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        x, dev = call.x, call.x.device
        n, f = x.shape
        target = call.target_t
        simplex = on_simplex(call.predictions)
        s = self.scale_.to(dev)
        mutable = torch.zeros(f, dtype=torch.bool, device=dev)
        mutable[torch.from_numpy(self.mutable_).to(dev)] = True
        if self.feature_range == "data":
            lo, hi = (r.to(dev) for r in self.range_)
            z_lo = (torch.minimum(lo, x) - x) / s
            z_hi = (torch.maximum(hi, x) - x) / s
        else:
            z_lo = z_hi = None
        w, lr = float(self.distance_weight), float(self.lr)
        b1, b2, eps = 0.9, 0.999, 1e-8

        z = torch.zeros_like(x)
        lam = torch.ones(n, device=dev)
        found = torch.zeros(n, dtype=torch.bool, device=dev)
        best, best_d = torch.zeros_like(x), torch.full((n,), torch.inf, device=dev)  # closest valid z
        top, top_m = torch.zeros_like(x), torch.full((n,), -torch.inf, device=dev)  # largest margin
        rounds = passes = 0

        def margins(rows: torch.Tensor, zr: torch.Tensor):
            """Target margin and its gradient w.r.t. ``z`` for the given rows, chunked."""
            ms, gs = [], []
            for start in range(0, rows.numel(), call.rows):
                r = rows[start : start + call.rows]
                with torch.enable_grad():
                    zc = zr[start : start + call.rows].clone().requires_grad_(True)
                    out = call.model.forward(x[r] + zc * s)
                    m = _target_margin(out, target[r], simplex)
                    (g,) = torch.autograd.grad(m.sum(), zc)
                ms.append(m.detach())
                gs.append(g)
            return torch.cat(ms), torch.cat(gs)

        for _ in range(int(self.lambda_steps)):
            rows = torch.nonzero(~found).flatten()
            if rows.numel() == 0:
                break
            rounds += 1
            zr = z[rows]
            m1, m2 = torch.zeros_like(zr), torch.zeros_like(zr)
            lam_r = lam[rows, None]
            for step in range(1, int(self.max_iter) + 2):
                m, g = margins(rows, zr)
                passes += 1
                # record the current iterate
                d = zr.abs().sum(1)
                better = (m > _VALID_MARGIN) & (d < best_d[rows])
                best_d[rows] = torch.where(better, d, best_d[rows])
                best[rows] = torch.where(better[:, None], zr, best[rows])
                higher = m > top_m[rows]
                top_m[rows] = torch.where(higher, m, top_m[rows])
                top[rows] = torch.where(higher[:, None], zr, top[rows])
                if step > self.max_iter:
                    break
                # gradient of lambda * hinge; the L1 term orthant-wise
                active = (m < float(self.margin)).to(zr.dtype)[:, None]
                gp = -lam_r * active * g
                pg = torch.where(zr > 0, gp + w, torch.where(zr < 0, gp - w, torch.where(
                    gp + w < 0, gp + w, torch.where(gp - w > 0, gp - w, torch.zeros_like(gp)))))
                pg = torch.where(mutable, pg, torch.zeros_like(pg))
                orthant = torch.where(zr != 0, torch.sign(zr), -torch.sign(pg))
                m1 = b1 * m1 + (1 - b1) * pg
                m2 = b2 * m2 + (1 - b2) * pg * pg
                upd = lr * (m1 / (1 - b1**step)) / ((m2 / (1 - b2**step)).sqrt() + eps)
                new = zr - upd
                new = torch.where(torch.sign(new) == orthant, new, torch.zeros_like(new))
                if z_lo is not None:
                    new = torch.minimum(torch.maximum(new, z_lo[rows]), z_hi[rows])
                zr = torch.where(mutable, new, torch.zeros_like(new))
            z[rows] = zr
            found = torch.isfinite(best_d)
            lam = torch.where(found, lam, lam * float(self.lambda_growth))
        out = torch.where(found[:, None], best, top)
        cf = torch.where(mutable, x + out * s, x)  # immutable features exactly x's
        lam_used = lam[found]
        return cf.detach(), {
            "rounds": rounds,
            "model_calls": passes,
            "max_lambda_used": float(lam_used.max()) if lam_used.numel() else None,
        }


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

    In scaled feature space over the mutable features (immutable ones keep ``x``'s values),
    for each instance ``x`` with target class ``t``, as Laugel et al.'s Algorithm 1:

    1. draw ``n_samples`` points uniformly in the ball of radius ``eta = first_radius``;
       while one of them is of class ``t``, halve ``eta`` and draw again;
    2. draw ``n_samples`` points uniformly in the layer ``eta <= |z - x| <= 2 eta``, then
       ``2 eta .. 3 eta``, ... (at most ``max_layers`` layers) until one is of class ``t``;
       the closest such point (scaled Euclidean) is ``e``;
    3. with ``sparse=True``, move features of ``e`` back to ``x``'s value one at a time,
       smallest scaled change first, keeping each move that stays in class ``t`` (as the
       authors' package), in passes until none moves: undoing any single remaining change
       loses the target class.

    Each round's candidates of all instances still searching, and each feature-selection
    step, go through the model together in chunks of ``batch_size`` rows. An instance with
    no target-class point within ``max_layers`` layers keeps ``x`` (invalid, with a warning).

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
    immutable : None or sequence of int
        Indices of features kept at ``x``'s values.
    """

    n_samples: int = 500
    first_radius: float = 0.5
    max_layers: int = 200
    sparse: bool = True
    scale: str | None = "std"
    immutable: Sequence[int] | None = None

    def _check_params(self, n_features: int) -> None:
        super()._check_params(n_features)
        check_positive_int(n_samples=self.n_samples, max_layers=self.max_layers)
        _check_number("first_radius", self.first_radius)
        if not isinstance(self.sparse, bool | np.bool_):
            raise TypeError(f"sparse must be True or False; got {self.sparse!r}")

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        x = call.x.detach().cpu().double()
        target = call.target
        n = x.shape[0]
        s = self.scale_.double()
        mut = torch.from_numpy(self.mutable_)
        d = mut.numel()
        k = int(self.n_samples)
        gens = call.instance_rngs()  # one stream per instance: the same draws alone or in a batch

        eta = np.full(n, float(self.first_radius))
        zooming = np.ones(n, dtype=bool)  # phase 1 (shrinking ball) or 2 (growing layers)
        count = np.zeros(n, dtype=np.int64)  # halvings (phase 1) or layers drawn (phase 2)
        result = x.clone()
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
                cand = x[torch.from_numpy(inst)][:, None, :].repeat(1, k, 1)  # (b, k, F)
                cand[:, :, mut] += z * s[mut]
                flat = cand.reshape(-1, x.shape[1]).float()
                ok = _valid(call, flat, np.repeat(target[inst], k)).reshape(inst.size, k)
                calls += 1
                dist = torch.from_numpy(np.where(ok, z.norm(dim=-1).numpy(), np.inf))
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
            result, sel_calls = _feature_selection(call, x.float(), result, found, s.float())
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
    """Move features of ``cf`` back to ``x`` while the model keeps the target class.

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
