"""KernelSHAP batched over instances: shap.KernelExplainer's coalitions, one regression for all.

``shap.KernelExplainer`` explains one instance at a time: it builds every coalition's rows
(``n_samples x n_baseline_samples`` of them) in a Python loop, runs the model on them and solves
one weighted least-squares problem. Here the coalitions are drawn once per call, with shap's
own algorithm and random draws (:func:`kernel_coalitions`), the rows of all coalitions of all
instances go through the model in memory-bounded chunks (:func:`coalition_values`), and the
regression, whose design matrix is the same for every instance, is factorised once and solved
for all instances together (:func:`solve_kernel_shap`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..._validation import check_random_state
from ...base import Attribution, Batched, Call, Seeded, SurrogateExplainer
from ...baselines import BaselineSpec, background_groups
from ...batching import group_blocks
from ...registry import register_explainer

#: Most coalition values (instances x coalitions, float64) held at once: instances are
#: explained in blocks of ``max(1, INSTANCE_BLOCK_VALUES // n_samples)``.
INSTANCE_BLOCK_VALUES = 2**22
#: ``n_samples="all"`` refuses more players than this (2^22 - 2 coalitions).
MAX_ALL_PLAYERS = 22


@dataclass(frozen=True)
class Coalitions:
    """Coalitions of players and their kernel weights, as ``shap.KernelExplainer`` builds them.

    Attributes
    ----------
    masks : numpy.ndarray of float64, shape (S, M)
        1 where a player is present (shap's ``maskMatrix``, without its unused rows).
    weights : numpy.ndarray of float64, shape (S,)
        Regression weights (shap's ``kernelWeights``); they sum to 1.
    exact : bool
        Every coalition (all ``2^M - 2`` proper, non-empty subsets) is enumerated, so the
        regression returns exact Shapley values.
    """

    masks: np.ndarray
    weights: np.ndarray
    exact: bool


def _check_budget(n_samples) -> None:
    if isinstance(n_samples, str):
        if n_samples not in ("auto", "all"):
            raise ValueError(f"n_samples must be 'auto', 'all' or an int >= 2; got {n_samples!r}")
        return
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
        raise TypeError(
            f"n_samples must be 'auto', 'all' or an int >= 2; got {type(n_samples).__name__} "
            f"{n_samples!r}"
        )
    if n_samples < 2:
        raise ValueError(f"n_samples must be 'auto', 'all' or an int >= 2; got {n_samples}")


def kernel_coalitions(n_players: int, n_samples="auto", random_state: int | None = None) -> Coalitions:
    """Coalitions and weights exactly as ``shap.KernelExplainer.explain`` draws them.

    Subset sizes are enumerated from the outside in (size ``s`` with its complements of size
    ``M - s``) while the budget covers their share of the Shapley kernel; the rest of the
    budget is sampled from the kernel distribution over the remaining sizes, complements
    paired, duplicates merged by adding their weights, and the sampled weights rescaled to the
    kernel mass left. The random draws come from ``np.random.RandomState(random_state)`` in the
    order in which shap takes them from NumPy's global generator, so
    ``np.random.seed(random_state)`` before shap explains an instance gives the same
    coalitions and weights (with all ``M`` players varying: see :class:`KernelShap`).

    Parameters
    ----------
    n_players : int
        ``M >= 2`` players (features or feature groups).
    n_samples : "auto", "all" or int
        Budget ``S``: ``"auto"`` is shap's ``2 M + 2048``; an int is shap's ``nsamples``;
        ``"all"`` (or any int ``>= 2^M - 2``) enumerates every coalition.
    random_state : int, optional
        Seed of the sampled part (unused when every coalition is enumerated).

    Returns
    -------
    Coalitions
    """
    from scipy.special import binom

    _check_budget(n_samples)
    check_random_state(random_state)
    m = int(n_players)
    if m < 2:
        raise ValueError(f"KernelSHAP's regression needs at least 2 players; got {m}")
    if n_samples == "all" and m > MAX_ALL_PLAYERS:
        raise ValueError(
            f"n_samples='all' enumerates 2^{m} - 2 coalitions; at most {MAX_ALL_PLAYERS} "
            "players are allowed: pass an int budget or group features with feature_mask"
        )
    max_samples = 2**30 if m > 30 else 2**m - 2
    budget = 2 * m + 2**11 if n_samples == "auto" else n_samples
    force_all = n_samples == "all" or budget >= max_samples
    nsamples = max_samples if force_all else int(budget)

    num_subset_sizes = int(np.ceil((m - 1) / 2.0))
    num_paired = int(np.floor((m - 1) / 2.0))
    weight_vector = np.array([(m - 1.0) / (i * (m - i)) for i in range(1, num_subset_sizes + 1)])
    weight_vector[:num_paired] *= 2
    weight_vector /= np.sum(weight_vector)

    blocks_m: list[np.ndarray] = []
    blocks_w: list[np.ndarray] = []
    num_full = 0
    left = nsamples
    remaining = weight_vector.copy()
    for size in range(1, num_subset_sizes + 1):
        nsubsets = binom(m, size)
        if size <= num_paired:
            nsubsets *= 2
        if not (force_all or left * remaining[size - 1] / nsubsets >= 1.0 - 1e-8):
            break
        num_full += 1
        left -= nsubsets
        if remaining[size - 1] < 1.0:
            remaining /= 1 - remaining[size - 1]
        w = weight_vector[size - 1] / binom(m, size)
        if size <= num_paired:
            w /= 2.0
        combos = np.array(list(itertools.combinations(range(m), size)), dtype=np.int64)
        masks = np.zeros((len(combos), m))
        masks[np.arange(len(combos))[:, None], combos] = 1.0
        if size <= num_paired:  # each subset followed by its complement, as shap adds them
            masks = np.stack([masks, 1.0 - masks], axis=1).reshape(-1, m)
        blocks_m.append(masks)
        blocks_w.append(np.full(len(masks), w))
    n_fixed = sum(len(b) for b in blocks_m)
    if num_full == num_subset_sizes:
        return Coalitions(np.concatenate(blocks_m), np.concatenate(blocks_w), exact=True)

    rs = np.random.RandomState(random_state)  # the legacy generator, as shap uses
    samples_left = nsamples - n_fixed
    rw = weight_vector.copy()
    rw[:num_paired] /= 2  # two samples are drawn each below
    rw = rw[num_full:]
    rw /= np.sum(rw)
    ind_set = rs.choice(len(rw), 4 * samples_left, p=rw)
    sampled: list[np.ndarray] = []
    counts: list[float] = []
    used: dict[bytes, int] = {}
    pos = 0
    while samples_left > 0 and pos < len(ind_set):
        size = int(ind_set[pos]) + num_full + 1
        pos += 1
        mask = np.zeros(m)
        mask[rs.permutation(m)[:size]] = 1.0
        key = mask.tobytes()
        row = used.get(key)
        if row is None:
            used[key] = row = len(sampled)
            samples_left -= 1
            sampled.append(mask)
            counts.append(1.0)
            new = True
        else:
            counts[row] += 1.0
            new = False
        if samples_left > 0 and size <= num_paired:
            if new:
                samples_left -= 1
                sampled.append(1.0 - mask)
                counts.append(1.0)
            else:  # shap: the complement is the row after the original
                counts[row + 1] += 1.0
    weights_s = np.asarray(counts)
    weight_left = np.sum(weight_vector[num_full:])
    weights_s *= weight_left / weights_s.sum()
    masks = np.concatenate([*blocks_m, np.asarray(sampled).reshape(-1, m)])
    weights = np.concatenate([*blocks_w, weights_s])
    return Coalitions(masks, weights, exact=False)


def coalition_values(
    forward,
    x: torch.Tensor,
    background: torch.Tensor,
    target: torch.Tensor,
    feature_masks: torch.Tensor,
    rows: int,
) -> torch.Tensor:
    """Mean model output over the background with each coalition's features taken from x.

    Value of coalition ``z`` for instance ``x``: ``mean_b f(where(z, x, b))[target]``. The
    ``N * S * B`` rows (instance-major, then coalition, then background row) are built
    chunk by chunk, ``rows`` per model call: whole (instance, coalition) pairs of ``B`` rows
    when ``rows >= B``, else slices of one pair's background; memory stays bounded whatever
    ``N``, ``S`` and ``B``.

    Parameters
    ----------
    forward : callable
        ``(n, F) -> (n, K)`` model outputs.
    x : torch.Tensor, shape (N, F)
    background : torch.Tensor, shape (B, F)
    target : torch.Tensor of int, shape (N,)
    feature_masks : torch.Tensor of bool, shape (S, F)
        True where a feature comes from ``x``.
    rows : int
        Rows per model call.

    Returns
    -------
    torch.Tensor of float64, shape (N, S)
    """
    n, s, nb = x.shape[0], feature_masks.shape[0], background.shape[0]
    sums = torch.zeros(n * s, dtype=torch.float64, device=x.device)
    # lerp(b, x, z) with z in {0, 1} is exactly where(z, x, b) (b + 0 (x - b), x - (x - b) 0)
    # and about twice as fast on CPU, as long as x - b cannot overflow
    big = max(float(x.abs().max()), float(background.abs().max()))
    use_lerp = big < torch.finfo(x.dtype).max / 4
    fm = feature_masks.to(x.dtype) if use_lerp else feature_masks
    buf = None  # one buffer for every chunk: fresh large allocations cost page faults on each call
    with torch.no_grad():
        for pairs, bgs in group_blocks(n * s, nb, rows, "kernel shap"):
            if buf is None:  # the first block is the largest
                buf = torch.empty((pairs.stop, bgs.stop, x.shape[1]), dtype=x.dtype, device=x.device)
            idx = torch.arange(pairs.start, pairs.stop, device=x.device)
            inst = idx // s
            chunk = buf[: len(idx), : bgs.stop - bgs.start]
            z, xi, b = fm[idx % s].unsqueeze(1), x[inst].unsqueeze(1), background[bgs].unsqueeze(0)
            if use_lerp:
                torch.lerp(b, xi, z, out=chunk)
            else:
                torch.where(z, xi, b, out=chunk)
            out = forward(chunk.view(-1, x.shape[1]))
            # sum over the background rows first (all outputs), then pick the target
            total = out.reshape(chunk.shape[0], chunk.shape[1], -1).double().sum(1)
            sums[pairs] += total.gather(1, target[inst].unsqueeze(1)).squeeze(1)
    return (sums / nb).view(n, s)


def _trusted_rows(model, *parts: torch.Tensor):
    """A context in which scikit-learn skips its NaN/inf check of each chunk of rows (a full
    pass over them, about a quarter of a linear model's time) when every row is a mixture of
    ``parts`` (instances, background) that are all finite: so is every mixture. Only for a
    scikit-learn estimator that is not a pipeline (a pipeline's steps could turn finite rows
    into non-finite ones, which its later steps would then no longer report); otherwise, or
    with any non-finite part, nothing changes."""
    if (model.kind != "sklearn" or hasattr(model.model, "steps")
            or not all(bool(torch.isfinite(p).all()) for p in parts)):
        return contextlib.nullcontext()
    import sklearn

    return sklearn.config_context(assume_finite=True)


class _Regression:
    """shap's constrained weighted least squares for one coalition set.

    Efficiency (``sum phi = f(x) - E f``) is imposed by eliminating the last player:
    ``phi[:-1]`` solves ``(X' W X) phi = X' W y`` with ``X = Z[:, :-1] - Z[:, -1]`` and
    ``y = v(z) - E f - Z[:, -1] (f(x) - E f)``; ``phi[-1] = f(x) - E f - sum phi[:-1]``.
    ``X' W X`` is the same for every instance, so one solve takes all right-hand sides.
    """

    def __init__(self, c: Coalitions):
        self.last = c.masks[:, -1]
        self.X = c.masks[:, :-1] - self.last[:, None]
        self.weights = c.weights
        self.WXt = (c.weights[:, None] * self.X).T
        self.A = self.WXt @ self.X
        self.warned = False

    def solve(self, values: np.ndarray, fx: np.ndarray, fnull: np.ndarray) -> np.ndarray:
        """Shapley value estimates, shape (N, M), from coalition values (N, S)."""
        total = fx - fnull  # (N,)
        y = values.T - fnull[None, :] - self.last[:, None] * total[None, :]  # (S, N)
        try:
            w = np.linalg.solve(self.A, self.WXt @ y)
        except np.linalg.LinAlgError:  # as shap: fall back to least squares
            if not self.warned:
                warnings.warn(
                    "KernelSHAP's regression is singular (too few distinct coalitions for the "
                    "players); a least-squares solution is used. Raise n_samples or group "
                    "features with feature_mask",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.warned = True
            sw = np.sqrt(self.weights)[:, None]
            w = np.linalg.lstsq(sw * self.X, sw * y, rcond=None)[0]
        return np.concatenate([w.T, (total - w.sum(0))[:, None]], axis=1)


@functools.lru_cache(maxsize=8)
def _cached_game(n_players: int, n_samples, random_state) -> tuple[Coalitions, _Regression]:
    c = kernel_coalitions(n_players, n_samples, random_state)
    for a in (c.masks, c.weights):
        a.setflags(write=False)
    return c, _Regression(c)


def _game(n_players: int, n_samples, random_state) -> tuple[Coalitions, _Regression]:
    """:func:`kernel_coalitions` and their factorised regression, computed once per process
    for each ``(n_players, n_samples, random_state)`` with an int seed (they are a pure
    function of these; shap's sampling loop and ``X' W X`` cost tens of ms at 200 players);
    drawn afresh when ``random_state`` is None."""
    _check_budget(n_samples)
    check_random_state(random_state)
    if random_state is not None:
        budget = n_samples if isinstance(n_samples, str) else int(n_samples)
        c, reg = _cached_game(int(n_players), budget, int(random_state))
    else:
        c = kernel_coalitions(n_players, n_samples, random_state)
        reg = _Regression(c)
    reg.warned = False  # warn once per call, as with a fresh regression
    return c, reg


def solve_kernel_shap(coalitions: Coalitions, values: np.ndarray, fx: np.ndarray,
                      fnull: np.ndarray) -> np.ndarray:
    """KernelSHAP values of many instances that share one coalition set.

    Parameters
    ----------
    coalitions : Coalitions
        ``S`` coalitions of ``M`` players.
    values : numpy.ndarray, shape (N, S)
        Each coalition's value per instance (:func:`coalition_values`).
    fx, fnull : numpy.ndarray, shape (N,)
        ``f(x)`` and the background mean ``E f`` of each instance's explained output.

    Returns
    -------
    numpy.ndarray of float64, shape (N, M)
        Sums to ``fx - fnull`` per instance.
    """
    return _Regression(coalitions).solve(np.asarray(values, np.float64),
                                         np.asarray(fx, np.float64), np.asarray(fnull, np.float64))


@register_explainer(
    "kernel_shap", library="native", modalities=("tabular",),
    model_kinds=("torch", "sklearn", "callable"), uses_feature_mask=True, needs_baseline=True,
    stochastic=True, batch_invariant=True, has_convergence_delta=True, recommended=True,
    summary="KernelSHAP with shap.KernelExplainer's coalitions, every instance and coalition "
    "batched through the model and one regression solved for all instances",
    reference="Lundberg & Lee (2017), A Unified Approach to Interpreting Model Predictions",
    notes="Random only while the coalition budget does not enumerate every coalition (then "
    "random_state picks them, and they are shared by all instances of a call); with every "
    "coalition enumerated the values are the exact Shapley values of the background game. "
    "Unlike shap, features whose value equals every background row are kept as players "
    "(their exact value is 0). With a feature_mask every feature of a group carries the "
    "group's value (as Captum), so completeness holds for the sum over groups.",
)
class KernelShap(SurrogateExplainer, Batched, Seeded):
    """KernelSHAP on tabular data, batched over instances and coalitions.

    The value of a coalition is the model's mean output over the background with the
    coalition's features taken from the instance (shap's interventional KernelSHAP). The
    coalitions and weights are shap's (:func:`kernel_coalitions`), shared by all instances;
    the weighted least squares with shap's efficiency constraint is solved in float64. With
    the same background, budget and seed, the values equal ``shap.KernelExplainer``'s with
    ``l1_reg=False`` (shap's default ``"num_features(10)"`` first selects 10 features by LARS
    and zeroes the others; we do no feature selection).

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    n_samples : "auto", "all" or int
        Coalitions per instance (shap's ``nsamples``): ``"auto"`` is ``2 M + 2048`` for
        ``M`` players, as in shap; ``"all"``, or an int ``>= 2^M - 2``, enumerates every
        coalition (exact Shapley values; at most 22 players).
    baseline : baseline spec
        The background: ``"training_sample"`` (``n_baseline_samples`` rows of ``fit``'s data,
        drawn once without replacement, as shap's) or any baseline (a one-row background for
        ``"training_mean"``; an instance-dependent one gives each instance its own).
    n_baseline_samples : int
        Background rows (draws of a random baseline). The cost grows linearly with it; shap
        suggests at most 100.
    """

    n_samples: int | str = "auto"
    baseline: BaselineSpec = "training_sample"
    n_baseline_samples: int = 100

    def _attribute(self, call: Call, *, baselines, feature_mask) -> Attribution:
        _check_budget(self.n_samples)
        x, n = call.x, call.x.shape[0]
        b = self._reference_set(call, baselines)
        # scikit-learn models compute in float64: give them float64 rows (exact copies of the
        # float32 values), which spares them a slow mixed-precision product
        rows_dtype = torch.float64 if call.model.kind == "sklearn" else x.dtype
        fx = call.predictions[np.arange(n), call.target].astype(np.float64)
        masks = np.zeros((1, x.shape[1]), np.int64) + np.arange(x.shape[1])
        if feature_mask is not None:
            masks = feature_mask.cpu().numpy()
        # instances that share one grouping share one coalition set (drawn afresh for each
        # grouping, so an instance's values do not depend on the others explained with it)
        groupings, which = np.unique(masks, axis=0, return_inverse=True)
        which = np.broadcast_to(which.reshape(-1), (n,)) if len(masks) == 1 else which.reshape(-1)
        # one coalition set and regression per grouping, shared by every background
        used, exact, games = [], True, []
        for labels in groupings:
            _, player = np.unique(labels, return_inverse=True)
            n_players = int(player.max()) + 1
            if n_players == 1:  # one player takes the whole difference
                used.append(0)
                games.append((player, None, None))
                continue
            c, reg = _game(n_players, self.n_samples, self.random_state)
            used.append(len(c.weights))
            exact &= c.exact
            zf = torch.as_tensor(c.masks[:, player] > 0.5, device=x.device)  # (S, F)
            games.append((player, reg, zf))
        values, fnull = np.zeros((n, x.shape[1])), np.zeros(n)
        for bg_rows, bg in background_groups(b):  # one background for all, or one per instance
            bg = bg.to(x.device)
            f_bg = call.model.predict(bg, call.rows).astype(np.float64)  # (B, K)
            fnull[bg_rows] = f_bg[:, call.target[bg_rows]].mean(0)
            bg_rows_dtype = bg.to(rows_dtype)
            for g, (player, reg, zf) in enumerate(games):
                rows_g = bg_rows[which[bg_rows] == g]
                if len(rows_g) == 0:
                    continue
                if reg is None:
                    values[rows_g] = (fx - fnull)[rows_g, None]
                    continue
                step = max(1, INSTANCE_BLOCK_VALUES // zf.shape[0])
                for i0 in range(0, len(rows_g), step):
                    r = rows_g[i0 : i0 + step]
                    r_t = torch.as_tensor(r, device=x.device)
                    xr = x[r_t].to(rows_dtype)
                    with _trusted_rows(call.model, xr, bg_rows_dtype):
                        v = coalition_values(call.model.forward, xr, bg_rows_dtype,
                                             call.target_t[r_t], zf, call.rows)
                    phi = reg.solve(v.cpu().numpy(), fx[r], fnull[r])  # (n_r, M)
                    values[r] = phi[:, player]
        params = {
            "n_samples_used": used[0] if len(used) == 1 else used,
            "n_baseline_samples_used": int(b.shape[0]),
            "exact": bool(exact),
        }
        return Attribution(torch.from_numpy(values), b.to(x.device), params)
