"""Native batched counterfactuals for ``(N, C, T)`` series, univariate or multivariate.

Every candidate of every instance goes through the model in calls of at most ``batch_size``
rows (TSInterpret calls it once per candidate and instance):

- ``native:native_guide`` (Delaney et al. 2021): copy the most salient window of the nearest
  unlike neighbour into the query, the shortest window that flips the class;
- ``native:comte`` (Ates et al. 2021): greedily substitute channels (or channel segments)
  from a few nearest target-class training instances, then prune and hill-climb to as few
  substitutions as possible;
- ``native:tsevo`` (Höllig et al. 2022): NSGA-II over TSEvo's mutations (authentic windows,
  frequency bands, Gaussian draws) and crossover, one batched call per generation.

The data given to ``fit`` is the pool the searches draw from, each instance of the class the
model predicts for it (see :class:`~xai_suite.base.CounterfactualExplainer`). Target-class
probabilities are the model's outputs where these lie on the simplex (``predict_proba``), their
softmax (logits) otherwise, decided once per call from the outputs for the inputs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn
from tqdm.auto import tqdm

from xai_suite.plugin import (
    Batched,
    Call,
    CounterfactualExplainer,
    Seeded,
    check_choice,
    check_positive_int,
    chunks,
    create_explainer,
    dtw_distance,
    on_simplex,
    register_explainer,
    softmax,
)

BLACK_BOX_KINDS = ("torch", "sklearn", "aeon", "callable")
_register = functools.partial(register_explainer, library="native", modalities=("timeseries",),
                              model_kinds=BLACK_BOX_KINDS, needs_fit=True)
#: Tolerances of "changed" (as :func:`xai_suite.metrics.counterfactual.changed_points`).
_RTOL, _ATOL = 1e-5, 1e-6
#: Bytes of DTW cost matrices computed at once when ranking neighbours by DTW.
_DTW_BYTES = 64 * 2**20


# -- shared machinery ------------------------------------------------------------------------
class _Scorer:
    """Target-class probability and validity of candidate series, in calls of ``call.rows``.

    Parameters
    ----------
    call : Call
        The explain call; its outputs decide between probabilities (kept) and logits (softmaxed).
    """

    def __init__(self, call: Call):
        self.call = call
        self.on_simplex = on_simplex(call.predictions)
        self.calls = 0  # model calls made (for progress reports and tests)

    def __call__(self, n: int, build: Callable[[slice], torch.Tensor], target: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Score ``n`` candidates built chunk by chunk.

        Parameters
        ----------
        n : int
            Number of candidates.
        build : callable
            ``build(slice) -> tensor (b, C, T)``: the candidates in that slice of ``range(n)``.
        target : numpy.ndarray of int, shape (n,)
            The class each candidate should get.

        Returns
        -------
        p_target : numpy.ndarray of float64, shape (n,)
        valid : numpy.ndarray of bool, shape (n,)
            The model predicts the target class.
        """
        rows = self.call.rows
        p_target, valid = np.empty(n), np.zeros(n, dtype=bool)
        for sl in chunks(n, rows):
            out = self.call.model.predict(build(sl), rows)
            self.calls += 1
            p_target[sl], valid[sl] = self.of(out, target[sl])
        return p_target, valid

    def of(self, out: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target probability and validity from model outputs ``out`` (n, K)."""
        out = out.astype(np.float64)
        p = out if self.on_simplex else softmax(out)
        return p[np.arange(len(target)), target], out.argmax(1) == target


def nearest_of_class(
    x: torch.Tensor,
    X_ref: torch.Tensor,
    ref_class: np.ndarray,
    target: np.ndarray,
    k: int = 1,
    distance: str = "euclidean",
) -> np.ndarray:
    """The ``k`` nearest reference instances of each instance's target class.

    Parameters
    ----------
    x : torch.Tensor, shape (N, C, T)
    X_ref : torch.Tensor, shape (M, C, T)
    ref_class : numpy.ndarray of int, shape (M,)
    target : numpy.ndarray of int, shape (N,)
        Every target class must occur in ``ref_class``.
    k : int
        At most this many; fewer when a target class has fewer reference instances.
    distance : {"euclidean", "dtw"}
        Euclidean distance between the flattened series, or dependent DTW (no window, see
        :func:`~xai_suite.metrics.counterfactual.dtw_distance`).

    Returns
    -------
    numpy.ndarray of int, shape (N, k')
        Indices into ``X_ref``, nearest first (ties: lower index first), ``k' = min(k,
        smallest class count among the targets)``.
    """
    check_choice("distance", distance, ("euclidean", "dtw"))
    xc, rc = (a.detach().cpu().double() for a in (x, X_ref))
    d = np.full((x.shape[0], X_ref.shape[0]), np.inf)
    counts = []
    for c in np.unique(target):
        qi, ri = np.flatnonzero(target == c), np.flatnonzero(ref_class == c)
        counts.append(ri.size)
        if distance == "euclidean":
            d[np.ix_(qi, ri)] = torch.cdist(xc[qi].flatten(1), rc[ri].flatten(1)).numpy()
            continue
        pi, pj = (a.ravel() for a in np.meshgrid(qi, ri, indexing="ij"))
        step = max(1, _DTW_BYTES // (24 * x.shape[-1] ** 2))
        for s in range(0, pi.size, step):
            a, b = pi[s : s + step], pj[s : s + step]
            d[a, b] = dtw_distance(xc[a].numpy(), rc[b].numpy())
    k = min(k, min(counts))
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def _windows(starts: torch.Tensor, lengths: torch.Tensor, channels: torch.Tensor, shape
             ) -> torch.Tensor:
    """Boolean masks (B, C, T) of windows ``[start, start + length)`` in one channel or all.

    ``channels`` holds a channel index per window, or -1 for all channels.
    """
    c, t = shape
    steps = torch.arange(t, device=starts.device)
    in_time = (steps >= starts[:, None]) & (steps < (starts + lengths)[:, None])
    in_chan = (channels[:, None] < 0) | (torch.arange(c, device=starts.device) == channels[:, None])
    return in_chan[:, :, None] & in_time[:, None, :]


def _pick(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per row, the ``floor(u * count)``-th True column of ``mask`` (rows with one at least)."""
    k = np.floor(u * mask.sum(1)).astype(np.int64)
    return (np.cumsum(mask, 1) > k[:, None]).argmax(1)


# -- NativeGuide -----------------------------------------------------------------------------
SALIENCIES = ("auto", "grad_cam", "gradient_x_input", "occlusion")
#: Each saliency as a registry entry and its settings. The NUN is explained for class ``t``;
#: gradient x input (IG with one step at the NUN) and occlusion take the query as reference.
SALIENCY_ENTRIES = {
    "grad_cam": ("captum:grad_cam", {"relu_attributions": False}),
    "gradient_x_input": ("native:integrated_gradients", {"n_steps": 1, "quadrature": "riemann_right"}),
    "occlusion": ("native:segment_occlusion", {"per_channel": False}),
}


@_register(
    "native_guide",
    summary="NativeGuide: the shortest salient window of the nearest unlike neighbour copied "
    "into the query; all instances and window lengths in batched model calls",
    reference="Delaney, Greene & Keane (2021), Instance-Based Counterfactual Explanations for "
    "Time Series Classification (ICCBR)",
    notes="Deterministic. Saliency by Grad-CAM or gradient x input for torch models, by "
    "occlusion for black boxes.",
)
class NativeGuide(CounterfactualExplainer, Batched):
    """Nearest-unlike-neighbour window substitution guided by class activation.

    For each instance ``x`` with target class ``t``: find the nearest unlike neighbour (NUN),
    the training instance of class ``t`` nearest to ``x``; map its ``saliency`` for ``t``; for
    each window length ``L`` (multiples of ``window_step * T``, up to ``T``) copy the NUN's
    window of largest summed saliency into ``x``, keep the shortest length the model assigns
    to ``t``, then refine it one step at a time down to the last length that failed. All
    instances and lengths go through the model in two batched rounds (plus the saliency's).

    The length-``T`` all-channel candidate is the NUN itself: the result is valid by
    construction. With ``channels="each"``, single-channel windows (located by that channel's
    saliency where the map has channels) compete with all-channel ones; the valid candidate
    changing the fewest points wins (ties: the higher target probability). As in Delaney et
    al.'s code, each length gets its own best window (not nested); TSInterpret grows the
    window with one model call per step and fails on multivariate series.

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    distance : {"euclidean", "dtw"}
        How the NUN is found (TSInterpret's window method uses Euclidean).
    saliency : {"auto", "grad_cam", "gradient_x_input", "occlusion"}
        A registry entry run on the NUN for class ``t`` (:data:`SALIENCY_ENTRIES`).
        ``grad_cam``: ``captum:grad_cam`` on its default layer (the last module keeping the
        series layout, whose maps a global-average-pooling head reads: CAM up to a positive
        factor, as Delaney et al. and TSInterpret use), signed (no ReLU, so regions against
        ``t`` penalise window sums), interpolated to ``T``. ``gradient_x_input``:
        ``native:integrated_gradients`` with one step from the query to the NUN (the gradient
        at the NUN times ``NUN - x``), per channel. ``occlusion``: ``native:segment_occlusion``
        with windows of ``ceil(window_step * T)`` steps across channels and the query as the
        baseline (any model). ``auto``: Grad-CAM for torch models with a ``Conv1d`` layer,
        gradient x input for other torch models, occlusion otherwise.
    window_step : float in (0, 1]
        Window lengths grow in steps of ``ceil(window_step * T)`` before the refinement.
    channels : {"all", "each"}
        Copy windows across all channels, or also try each channel alone.
    """

    distance: str = "euclidean"
    saliency: str = "auto"
    window_step: float = 0.05
    channels: str = "all"

    def _check_params(self) -> None:
        check_choice("distance", self.distance, ("euclidean", "dtw"))
        check_choice("saliency", self.saliency, SALIENCIES)
        check_choice("channels", self.channels, ("all", "each"))
        step = self.window_step
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 1:
            raise ValueError(f"window_step must be a number in (0, 1]; got {step!r}")

    def _resolve_saliency(self, call: Call) -> str:
        is_torch = call.model.kind == "torch"
        has_conv = is_torch and any(isinstance(m, nn.Conv1d) for m in call.model.model.modules())
        if self.saliency == "auto":
            return "occlusion" if not is_torch else "grad_cam" if has_conv else "gradient_x_input"
        if self.saliency != "occlusion" and not is_torch:
            raise ValueError(
                f"saliency={self.saliency!r} needs gradients of a torch model; got a "
                f"{call.model.kind} model (use 'occlusion')"
            )
        if self.saliency == "grad_cam" and not has_conv:
            raise ValueError("saliency='grad_cam' needs a torch model with a Conv1d layer; use "
                             "'gradient_x_input' or 'occlusion'")
        return self.saliency

    def _saliency(self, call: Call, method: str, nun: torch.Tensor, seg: int, simplex: bool
                  ) -> torch.Tensor:
        """The NUNs' saliency maps (N, C, T) for the targets, from the registry entry of ``method``."""
        name, params = SALIENCY_ENTRIES[method]
        model = self.model
        if method == "occlusion":  # drops in the target's probability, per window of seg steps
            model = _probabilities(model, simplex)
            params = {**params, "window": seg, "stride": seg}
        shared = {k: getattr(self, k) for k in ("batch_size", "max_memory", "device")}
        explainer = create_explainer(name, model, **params, **shared)
        ref = {} if method == "grad_cam" else {"baselines": call.x}
        exp = explainer.explain(nun, call.target, **ref)
        return torch.from_numpy(exp.attributions).to(call.x.device)

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        self._check_params()
        x, target = call.x, call.target
        n, c, t = x.shape
        nun_idx = nearest_of_class(x, self.X_train_, self.train_class_, target, 1, self.distance)
        nun = self.X_train_[nun_idx[:, 0]].to(x.device)
        score = _Scorer(call)
        method = self._resolve_saliency(call)
        seg = max(1, math.ceil(self.window_step * t))
        sal = self._saliency(call, method, nun, seg, score.on_simplex)  # (N, C, T)

        opts = [-1] + (list(range(c)) if self.channels == "each" and c > 1 else [])
        maps = torch.stack([sal.sum(1) if o < 0 else sal[:, min(o, sal.shape[1] - 1)] for o in opts], 1)
        starts = _best_starts(maps.double().cpu())  # (N, O, T): best start per length L
        opts_t = torch.tensor(opts)

        def masks(inst, opt, length):  # int64 arrays (b,) -> the candidates' windows (b, C, T)
            inst, opt, length = (torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in (inst, opt, length))
            st = starts[inst, opt, length - 1]
            return _windows(*(a.to(x.device) for a in (st, length, opts_t[opt])), (c, t))

        def evaluate(inst, opt, length):
            def build(sl):
                i = torch.from_numpy(inst[sl]).to(x.device)
                return torch.where(masks(inst[sl], opt[sl], length[sl]), nun[i], x[i])

            return score(len(inst), build, target[inst])

        coarse = np.unique(np.minimum(t, seg * np.arange(1, math.ceil(t / seg) + 1)))
        inst, opt, li = (a.ravel() for a in np.meshgrid(
            np.arange(n), np.arange(len(opts)), np.arange(len(coarse)), indexing="ij"))
        p, v = evaluate(inst, opt, coarse[li])
        cost = coarse[li] * np.where(np.asarray(opts)[opt] < 0, c, 1)
        k = len(opts) * len(coarse)
        best = _best_candidate(v.reshape(n, k), cost.reshape(n, k), p.reshape(n, k))
        b_opt, b_li = opt.reshape(n, k)[np.arange(n), best], li.reshape(n, k)[np.arange(n), best]
        b_len = coarse[b_li]

        # refine: the lengths between the last coarse length that failed and the chosen one
        lo = np.where(b_li > 0, coarse[np.maximum(b_li - 1, 0)], 0)
        extra = [(i, L) for i in np.flatnonzero(v.reshape(n, k)[np.arange(n), best])
                 for L in range(lo[i] + 1, b_len[i])]
        if extra:
            ri, rl = (np.array(a, dtype=np.int64) for a in zip(*extra, strict=True))
            _, rv = evaluate(ri, b_opt[ri], rl)
            for i, L in zip(ri[rv], rl[rv], strict=True):
                b_len[i] = min(b_len[i], L)  # the shortest valid length
        cf = torch.where(masks(np.arange(n), b_opt, b_len), nun, x)
        return cf, {"saliency_used": method, "model_calls": score.calls}


def _best_starts(maps: torch.Tensor) -> torch.Tensor:
    """Start of the window with the largest sum, for every length.

    Parameters
    ----------
    maps : torch.Tensor, shape (N, O, T)

    Returns
    -------
    torch.Tensor of int64, shape (N, O, T)
        ``[..., L - 1]``: the first start of the best window of length ``L``.
    """
    t = maps.shape[-1]
    cs = F.pad(maps.cumsum(-1), (1, 0))
    out = torch.empty(maps.shape, dtype=torch.int64, device=maps.device)
    for length in range(1, t + 1):
        sums = cs[..., length:] - cs[..., :-length]  # (N, O, T - L + 1)
        out[..., length - 1] = sums.argmax(-1)
    return out


def _best_candidate(valid: np.ndarray, cost: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per row: the valid column of least cost (ties: highest ``p``, then first); the column
    of highest ``p`` where none is valid. Arrays of shape (N, K); returns (N,)."""
    key_cost = np.where(valid, cost, 0)
    order = np.lexsort((-p, key_cost, ~valid), axis=-1)
    return order[:, 0]


def _probabilities(model, simplex: bool):
    """``model``, or a view of it returning softmax probabilities where it returns logits."""
    if simplex:
        return model
    if isinstance(model, nn.Module):  # in the model's mode: explaining must not change it
        return nn.Sequential(model, nn.Softmax(dim=1)).train(model.training)
    return lambda a: softmax(model(a))


# -- COMTE -----------------------------------------------------------------------------------
@_register(
    "comte", stochastic=True, batch_invariant=True,
    summary="COMTE: channels (or channel segments) substituted from nearest target-class "
    "distractors, greedy then pruned and hill-climbed; every step batched over all instances",
    reference="Ates, Aksar, Leung & Coskun (2021), Counterfactual Explanations for "
    "Multivariate Time Series (ICAPAI)",
    notes="The random hill-climbing draws a fixed amount of randomness per step, so the batch "
    "size does not change the draws.",
)
class COMTE(CounterfactualExplainer, Batched, Seeded):
    """Counterfactuals that substitute whole channels, or segments of channels, from distractors.

    The units are ``C x n_segments`` blocks, each channel cut into ``n_segments`` equal time
    segments. One segment per channel (the multivariate default) is Ates et al.'s COMTE; a
    univariate series would be a single unit (TSInterpret's COMTE then returns the nearest
    distractor), so univariate series get 10 segments by default.

    For each instance, with its ``n_distractors`` nearest target-class training instances
    (Euclidean):

    1. greedy (one search per distractor): add the unit whose substitution most increases
       the target probability until the model predicts the target (all units give the
       distractor, which it does); keep the search with the fewest units, then the highest
       probability;
    2. pruning: while one does, remove the unit whose removal keeps the counterfactual
       valid with the highest probability;
    3. random hill climbing (``n_restarts`` chains, ``max_iter`` steps, seeded): a chain
       proposes removing a unit, swapping one for an unused one (from a random
       distractor) or taking one from another distractor, and moves if the result stays
       valid with no more units; the best state seen (fewest units, then highest
       probability) is pruned again. No single unit of the result can go back to the query
       without losing validity.

    Each step evaluates the candidates of all instances and searches in one batched pass.
    An instance whose greedy search ends invalid (only when a distractor's own class is a
    near-tie) keeps its most probable attempt.

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    n_distractors : int
        Nearest target-class training instances to draw from (2, as TSInterpret); fewer
        when a target class has fewer training instances.
    n_segments : "auto" or int
        Time segments per channel; ``"auto"``: 1 for multivariate series, ``min(10, T)``
        for univariate ones.
    n_restarts : int
        Hill-climbing chains per instance (0 skips the phase).
    max_iter : int
        Hill-climbing steps per chain.
    """

    n_distractors: int = 2
    n_segments: int | str = "auto"
    n_restarts: int = 5
    max_iter: int = 30

    def _segments(self, c: int, t: int) -> int:
        if self.n_segments == "auto":
            return 1 if c > 1 else min(10, t)
        check_positive_int(n_segments=self.n_segments)
        if self.n_segments > t:
            raise ValueError(f"n_segments must be at most the series length {t}; got {self.n_segments}")
        return int(self.n_segments)

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        check_positive_int(n_distractors=self.n_distractors, max_iter=self.max_iter)
        if isinstance(self.n_restarts, bool) or not isinstance(self.n_restarts, int | np.integer) \
                or self.n_restarts < 0:
            raise ValueError(f"n_restarts must be a non-negative int; got {self.n_restarts!r}")
        x, target, rng = call.x, call.target, call.rng
        n, c, t = x.shape
        n_seg = self._segments(c, t)
        seg_of = np.repeat(np.arange(n_seg), [len(a) for a in np.array_split(np.arange(t), n_seg)])
        unit_of = torch.from_numpy(np.arange(c)[:, None] * n_seg + seg_of[None, :]).to(x.device)
        n_units = c * n_seg
        near = nearest_of_class(x, self.X_train_, self.train_class_, target, self.n_distractors)
        n_dist = near.shape[1]
        # sources: 0 = the query, d = distractor d (1..D)
        stack = torch.cat([x[:, None], self.X_train_[torch.from_numpy(near)].to(x.device)], 1)
        score = _Scorer(call)

        def compose(inst: np.ndarray, assign: np.ndarray) -> torch.Tensor:
            """Series (b, C, T): unit ``u`` of row ``j`` from source ``assign[j, u]`` of ``inst[j]``."""
            src = torch.from_numpy(assign).to(x.device)[:, unit_of]  # (b, C, T)
            rows = stack[torch.from_numpy(inst).to(x.device)]
            return torch.gather(rows, 1, src.unsqueeze(1)).squeeze(1)

        def evaluate(inst: np.ndarray, assign: np.ndarray):
            return score(len(inst), lambda sl: compose(inst[sl], assign[sl]), target[inst])

        # 1. greedy, one search per (instance, distractor)
        s_inst = np.repeat(np.arange(n), n_dist)
        s_src = np.tile(np.arange(1, n_dist + 1), n)
        assign = np.zeros((n * n_dist, n_units), dtype=np.int64)
        p = np.full(n * n_dist, -np.inf)
        valid = np.zeros(n * n_dist, dtype=bool)
        for _ in range(n_units):
            active = np.flatnonzero(~valid & (assign == 0).any(1))
            if not active.size:
                break
            a_idx, u_idx = np.nonzero(assign[active] == 0)
            cand = assign[active[a_idx]]
            cand[np.arange(len(a_idx)), u_idx] = s_src[active[a_idx]]
            pc, vc = evaluate(s_inst[active[a_idx]], cand)
            first = _group_best(a_idx, -pc)
            assign[active] = cand[first]
            p[active], valid[active] = pc[first], vc[first]
        count = (assign > 0).sum(1)
        key = np.lexsort((-p.reshape(n, n_dist), count.reshape(n, n_dist), ~valid.reshape(n, n_dist)),
                         axis=-1)[:, 0]
        pick = np.arange(n) * n_dist + key
        best, best_p, best_v = assign[pick], p[pick], valid[pick]

        def prune(todo: np.ndarray) -> None:
            """Drop units of ``best[todo]`` while the counterfactual stays valid (in place)."""
            done = np.ones(n, dtype=bool)
            done[todo] = False
            while True:
                active = np.flatnonzero(~done & ((best > 0).sum(1) >= 2))
                if not active.size:
                    return
                a_idx, u_idx = np.nonzero(best[active] > 0)
                cand = best[active[a_idx]]
                cand[np.arange(len(a_idx)), u_idx] = 0
                pc, vc = evaluate(active[a_idx], cand)
                first = _group_best(a_idx, np.where(vc, -pc, np.inf))
                ok = vc[first]
                done[active[~ok]] = True
                best[active[ok]], best_p[active[ok]] = cand[first[ok]], pc[first[ok]]

        prune(np.flatnonzero(best_v))  # 2. pruning
        # 3. random hill climbing (seeded, fixed draws per step), then pruning what it improved
        best_count = (best > 0).sum(1)
        improved = np.zeros(n, dtype=bool)
        n_chains = self.n_restarts
        if n_chains and n_units > 1:
            ch_inst = np.repeat(np.arange(n), n_chains)
            cur = best[ch_inst].copy()
            cur_count = best_count[ch_inst].copy()
            live = best_v[ch_inst]
            steps = tqdm(range(self.max_iter), desc="COMTE hill climbing", leave=False,
                         disable=None if n * n_chains * self.max_iter > 20_000 else True)
            for _ in steps:
                if not (live & (best_count[ch_inst] > 1)).any():
                    break
                u = rng.random((n * n_chains, 4))
                prop = _comte_moves(cur, u, n_dist)
                idx = np.flatnonzero(live & (prop != cur).any(1))
                if not idx.size:
                    continue
                pc, vc = evaluate(ch_inst[idx], prop[idx])
                new_count = (prop[idx] > 0).sum(1)
                acc = np.flatnonzero(vc & (new_count <= cur_count[idx]))
                moved = idx[acc]
                cur[moved], cur_count[moved] = prop[moved], new_count[acc]
                if acc.size:  # fewest units, then highest probability (p < 1 < unit step)
                    key = 2.0 * new_count[acc] - pc[acc]
                    j = _group_best(ch_inst[moved], key)
                    inst = ch_inst[moved[j]]
                    imp = key[j] < 2.0 * best_count[inst] - best_p[inst]
                    j, inst = j[imp], inst[imp]
                    best[inst], best_count[inst], best_p[inst] = prop[moved[j]], new_count[acc][j], pc[acc][j]
                    improved[inst] = True
            prune(np.flatnonzero(improved))
        return compose(np.arange(n), best), {"n_segments_used": n_seg, "n_distractors_used": n_dist,
                    "model_calls": score.calls}


def _group_best(groups: np.ndarray, key: np.ndarray) -> np.ndarray:
    """For sorted group labels, the position of each group's smallest ``key`` (first on ties)."""
    order = np.lexsort((key, groups))
    _, first = np.unique(groups[order], return_index=True)
    return order[first]


def _comte_moves(state: np.ndarray, u: np.ndarray, n_dist: int) -> np.ndarray:
    """One random neighbour per row of unit assignments (0 = query, 1..D = distractor).

    Moves: remove a substituted unit (needs 2 or more), swap a substituted unit for an
    unused one from a random distractor, or take a substituted unit from another distractor
    (needs 2 or more distractors). ``u`` holds 4 uniform draws per row.
    """
    sub, free = state > 0, state == 0
    n_sub = sub.sum(1)
    ok = np.stack([n_sub >= 2, (n_sub >= 1) & free.any(1), (n_sub >= 1) & (n_dist >= 2)], 1)
    any_ok = ok.any(1)
    kind = _pick(ok, u[:, 0])
    rows = np.arange(len(state))
    out = state.copy()
    a = _pick(sub, u[:, 1])
    b = _pick(free, u[:, 2])
    swap = any_ok & (kind == 1)
    out[rows[any_ok & (kind <= 1)], a[any_ok & (kind <= 1)]] = 0
    out[rows[swap], b[swap]] = 1 + np.floor(u[swap, 3] * n_dist).astype(np.int64)
    other = any_ok & (kind == 2)
    v = 1 + np.floor(u[other, 3] * (n_dist - 1)).astype(np.int64)
    v = v + (v >= state[rows[other], a[other]])
    out[rows[other], a[other]] = v
    return out


# -- TSEvo -----------------------------------------------------------------------------------
TRANSFORMERS = ("authentic", "frequency", "gaussian", "mixed")
_MUTATIONS = ("authentic", "frequency", "gaussian")
_CXPB, _MUTPB = 0.9, 0.6  # TSEvo's crossover and mutation probabilities
_CX_INDPB = 0.1  # chance that crossover swaps a window-long block


def fft_bands(n_freq: int) -> np.ndarray:
    """TSEvo's frequency bands: ``[0, 1)``, then bands of 1, 4, 9, ... bins (squares).

    Returns
    -------
    numpy.ndarray of int, shape (B, 2)
        ``[start, end)`` of each band over ``n_freq`` rFFT bins.
    """
    bands, length, k = [(0, 1)], 1, 1
    while length < n_freq:
        end = min(length + k * k, n_freq)
        bands.append((length, end))
        length, k = end, k + 1
    return np.array(bands, dtype=np.int64)


@_register(
    "tsevo", stochastic=True,
    summary="TSEvo: NSGA-II over authentic, frequency-band and Gaussian mutations; the "
    "population of all instances evaluated in one batched call per generation",
    reference="Höllig, Kulbach & Thoma (2022), TSEvo: Evolutionary Counterfactual "
    "Explanations for Time Series Classification (ICMLA)",
    notes="Not batch-invariant: the random draws do not depend on batch_size, but float32 "
    "model outputs change in their last bits with it, and over thousands of selections one "
    "flipped near-tie changes the rest of the run. Repeatable for a fixed batch_size and "
    "random_state.",
)
class TSEvo(CounterfactualExplainer, Batched, Seeded):
    """Evolutionary multi-objective counterfactuals (NSGA-II), batched over all instances.

    Each instance evolves ``population`` candidates, all starting as the instance, each with
    its own window length (uniform in ``1..T // 2``, redrawn with probability 0.5 when it
    mutates) and, with ``transformer="mixed"``, mutation kind. Per generation, as TSEvo:
    binary tournaments pick parents; consecutive pairs cross over with probability 0.9
    (window-long blocks swapped per channel with probability 0.1); each child mutates with
    probability 0.6:

    - ``authentic``: a random window of one random channel copied from a random target-class
      training instance (TSEvo's authentic opposing information);
    - ``frequency``: one band of one channel's rFFT taken from a random target-class training
      instance (TSEvo's frequency band mapping; bands of 1, 1, 4, 9, ... bins);
    - ``gaussian``: a random window of one channel set to the target-class per-step mean plus
      ``z ~ N(0, 1)`` (one per mutation) times the per-step standard deviation: smooth and
      plausible (TSEvo's mutate_mean redraws every point independently, which within a window
      left 3 of 8 GunPoint instances invalid after 100 generations; this finds all 8 in 12);
    - ``mixed``: each candidate keeps its own kind, children their first parent's (mutate_both).

    The objectives, minimised, are ``1 - p(target)``, the mean absolute distance to the
    instance and the fraction of changed points. NSGA-II keeps the best ``population`` of
    parents and children by constrained non-domination (Deb et al. 2002; valid candidates
    dominate, the others are ranked by ``p(target)``), then crowding distance (normalised by
    each objective's range). The changed children of all instances go through the model in
    one batched pass per generation; unchanged ones keep their parent's objectives. Returned
    per instance: the valid candidate seen closest to it, else the most probable one.

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    transformer : {"authentic", "frequency", "gaussian", "mixed"}
        The mutation (TSEvo's ``authentic_opposing_information``, ``frequency_band_mapping``,
        ``mutate_mean``, ``mutate_both``); ``"authentic"`` as TSEvo's default.
    population : int
        Candidates per instance (TSEvo: 100); at least 2.
    generations : int
        Generations (TSEvo: ``epochs=500``).

    Notes
    -----
    Memory: ``2 x N x population x C x T`` floats (parents and children of all instances).
    Repeatable for a fixed ``batch_size`` and ``random_state`` only: the draws do not depend
    on the batch size, but float32 outputs change in their last bits with it, and one
    flipped near-tie changes the rest of the run.
    """

    transformer: str = "authentic"
    population: int = 50
    generations: int = 100

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        check_choice("transformer", self.transformer, TRANSFORMERS)
        check_positive_int(population=self.population, generations=self.generations)
        if self.population < 2:
            raise ValueError(f"population must be at least 2; got {self.population}")
        x, target, rng = call.x, call.target, call.rng
        dev = x.device
        n, c, t = x.shape
        size = int(self.population)
        half = max(1, t // 2)
        score = _Scorer(call)
        ref = _References(self.X_train_, self.train_class_, target, dev)

        pop = x[:, None].expand(n, size, c, t).clone()
        win = rng.integers(1, half + 1, (n, size))
        kind = (rng.integers(0, 3, (n, size)) if self.transformer == "mixed"
                else np.full((n, size), _MUTATIONS.index(self.transformer)))
        p0, _ = score.of(call.predictions, target)
        obj = np.zeros((n, size, 3))
        obj[..., 0] = 1 - p0[:, None]
        valid = np.zeros((n, size), dtype=bool)
        best_cf, best_dist = x.clone(), np.full(n, np.inf)  # closest valid candidate seen
        top_cf, top_neg_p = x.clone(), -p0  # most probable candidate seen

        gens = tqdm(range(self.generations), desc="TSEvo generations", leave=False,
                    disable=None if n * size * self.generations > 200_000 else True)
        rows = np.arange(n)[:, None]

        def take(a: torch.Tensor, idx: np.ndarray) -> torch.Tensor:  # a[i, idx[i, j]]
            return a[torch.from_numpy(rows).to(dev), torch.from_numpy(idx).to(dev)]

        for _ in gens:
            parents = rng.integers(0, size, (n, size, 2)).min(-1)  # sorted population: lower wins
            first = take(pop, parents)
            k_win, k_kind = win[rows, parents], kind[rows, parents]
            kids, k_kind = _crossover(first, k_win, k_kind, rng)
            kids, k_win = _mutate(kids, k_win, k_kind, ref, rng, half)

            k_obj, k_valid = obj[rows, parents], valid[rows, parents]  # copies
            changed = (kids != first).flatten(2).any(-1)
            ii, jj = (a.cpu().numpy() for a in torch.nonzero(changed, as_tuple=True))
            if ii.size:
                flat = kids[torch.from_numpy(ii).to(dev), torch.from_numpy(jj).to(dev)]
                pt, vt = score(len(ii), lambda sl, f=flat: f[sl], target[ii])
                xi = x[torch.from_numpy(ii).to(dev)]
                delta = (flat - xi).abs()
                dist = delta.flatten(1).mean(1).double().cpu().numpy()
                moved = delta > _ATOL + _RTOL * xi.abs()  # as numpy.isclose
                k_obj[ii, jj] = np.stack([1 - pt, dist, moved.flatten(1).double().mean(1).cpu().numpy()], 1)
                k_valid[ii, jj] = vt
                _update_archive(ii, flat, -pt, vt, dist, best_cf, best_dist, top_cf, top_neg_p)

            # NSGA-II environmental selection over parents and children
            all_obj, all_valid, all_win, all_kind = (np.concatenate(pair, 1) for pair in (
                (obj, k_obj), (valid, k_valid), (win, k_win), (kind, k_kind)))
            rank = _nondominated_rank(all_obj, all_valid, size)
            keep = np.lexsort((-_crowding(all_obj, rank), rank), axis=-1)[:, :size]
            pop = take(torch.cat([pop, kids], 1), keep)
            obj, valid, win, kind = (a[rows, keep] for a in (all_obj, all_valid, all_win, all_kind))

        found = np.isfinite(best_dist)
        cf = torch.where(torch.from_numpy(found).to(dev)[:, None, None], best_cf, top_cf)
        return cf, {"model_calls": score.calls}


class _References:
    """Target-class training instances per explained instance, and their per-step statistics."""

    def __init__(self, X_train: torch.Tensor, train_class: np.ndarray, target: np.ndarray, dev):
        order = np.argsort(train_class, kind="stable")
        self.X = X_train[torch.from_numpy(order)].to(dev)
        cls = train_class[order]
        classes, starts, counts = np.unique(cls, return_index=True, return_counts=True)
        pos = np.searchsorted(classes, target)
        self.start, self.count = starts[pos], counts[pos]  # (N,)
        mean = torch.stack([self.X[s : s + k].mean(0) for s, k in zip(starts, counts, strict=True)])
        std = torch.stack([self.X[s : s + k].std(0, unbiased=False)
                           for s, k in zip(starts, counts, strict=True)])
        self.mean, self.std = mean[torch.from_numpy(pos)], std[torch.from_numpy(pos)]  # (N, C, T)

    def draw(self, inst: np.ndarray, u: np.ndarray) -> torch.Tensor:
        """Random reference series (B, C, T) for instances ``inst`` from uniform draws ``u``."""
        idx = self.start[inst] + np.floor(u * self.count[inst]).astype(np.int64)
        return self.X[torch.from_numpy(idx).to(self.X.device)]


def _crossover(kids: torch.Tensor, win: np.ndarray, kind: np.ndarray, rng: np.random.Generator):
    """TSEvo's crossover of consecutive pairs: window-long blocks swapped per channel.

    Each pair crosses with probability ``_CXPB``; blocks of the first parent's window
    length are exchanged with probability ``_CX_INDPB``; both children take the first
    parent's mutation kind.
    """
    n, size, c, t = kids.shape
    half = size // 2
    do = rng.random((n, half)) < _CXPB
    u = torch.from_numpy(rng.random((n, half, c, t))).to(kids.device)
    a, b = kids[:, 0 : 2 * half : 2], kids[:, 1 : 2 * half : 2]
    w = torch.from_numpy(win[:, 0 : 2 * half : 2]).to(kids.device)  # (N, half)
    block = torch.arange(t, device=kids.device) // w[..., None]  # (N, half, T)
    swap = torch.gather(u, -1, block[:, :, None, :].expand(n, half, c, t)) < _CX_INDPB
    swap &= torch.from_numpy(do).to(kids.device)[..., None, None]
    out = kids.clone()
    out[:, 0 : 2 * half : 2] = torch.where(swap, b, a)
    out[:, 1 : 2 * half : 2] = torch.where(swap, a, b)
    kind = kind.copy()
    kind[:, 1 : 2 * half : 2] = np.where(do, kind[:, 0 : 2 * half : 2], kind[:, 1 : 2 * half : 2])
    return out, kind


def _mutate(kids: torch.Tensor, win: np.ndarray, kind: np.ndarray, ref: _References,
            rng: np.random.Generator, half: int):
    """Apply each child's mutation with probability ``_MUTPB``; draws are fixed per call.

    Returns the children (N, P, C, T) and their window lengths (N, P).
    """
    n, size, c, t = kids.shape
    dev = kids.device
    mut = rng.random((n, size)) < _MUTPB
    u_ref, u_chan, u_start, u_band = rng.random((4, n, size))
    z = rng.standard_normal((n, size))
    new_win = rng.integers(1, half + 1, (n, size))
    re_win = rng.random((n, size)) < 0.5

    out = kids.clone()
    for k in range(len(_MUTATIONS)):
        ii, jj = np.nonzero(mut & (kind == k))
        if not ii.size:
            continue
        i_t, j_t = torch.from_numpy(ii).to(dev), torch.from_numpy(jj).to(dev)
        rows = out[i_t, j_t]  # (B, C, T)
        donor = ref.draw(ii, u_ref[ii, jj])
        chan = np.floor(u_chan[ii, jj] * c).astype(np.int64)
        w = win[ii, jj]
        start = np.floor(u_start[ii, jj] * (t - w + 1)).astype(np.int64)
        window = _windows(*(torch.from_numpy(a).to(dev) for a in (start, w, chan)), (c, t))
        if _MUTATIONS[k] == "authentic":
            rows = torch.where(window, donor, rows)
        elif _MUTATIONS[k] == "gaussian":
            zi = torch.from_numpy(z[ii, jj]).to(dev, rows.dtype)[:, None, None]
            rows = torch.where(window, ref.mean[i_t] + ref.std[i_t] * zi, rows)
        else:  # frequency: one band of one channel's spectrum taken from the donor
            b = torch.arange(len(ii), device=dev)
            ch = torch.from_numpy(chan).to(dev)
            spec = torch.fft.rfft(rows[b, ch].double(), dim=-1)  # (B, F)
            bands = fft_bands(spec.shape[-1])
            lo, hi = (torch.from_numpy(bands[np.floor(u_band[ii, jj] * len(bands)).astype(np.int64), e])
                      .to(dev)[:, None] for e in (0, 1))
            f = torch.arange(spec.shape[-1], device=dev)
            spec = torch.where((f >= lo) & (f < hi), torch.fft.rfft(donor[b, ch].double(), dim=-1), spec)
            rows = rows.clone()
            rows[b, ch] = torch.fft.irfft(spec, n=t, dim=-1).to(rows.dtype)
        out[i_t, j_t] = rows
    win = np.where(mut & re_win, new_win, win)
    return out, win


def _update_archive(inst, flat, neg_p, valid, dist, best_cf, best_dist, top_cf, top_neg_p) -> None:
    """Keep, per instance, the closest valid and the most probable candidate seen so far.

    ``inst`` (B,) names the instance of each candidate in ``flat`` (B, C, T); ``best_*`` and
    ``top_*`` (per instance) are updated in place.
    """
    for sel, key, cf, kept in ((np.flatnonzero(valid), dist, best_cf, best_dist),
                               (np.arange(len(inst)), neg_p, top_cf, top_neg_p)):
        j = sel[_group_best(inst[sel], key[sel])]
        j = j[key[j] < kept[inst[j]]]
        kept[inst[j]] = key[j]
        cf[torch.from_numpy(inst[j]).to(cf.device)] = flat[torch.from_numpy(j).to(flat.device)]


def _nondominated_rank(obj: np.ndarray, valid: np.ndarray, need: int) -> np.ndarray:
    """Constrained non-domination rank (0 = first front), batched over instances.

    Valid candidates dominate invalid ones and are ranked among themselves by Pareto
    domination (fronts peeled until ``need`` per instance are ranked; the rest share the
    next rank); invalid ones come after, ranked by their first objective (equal values,
    equal rank).

    Parameters
    ----------
    obj : numpy.ndarray, shape (N, M, K)
    valid : numpy.ndarray of bool, shape (N, M)
    need : int

    Returns
    -------
    numpy.ndarray of int, shape (N, M)
    """
    n, m, k = obj.shape
    le, lt = np.ones((n, m, m), dtype=bool), np.zeros((n, m, m), dtype=bool)
    for q in range(k):  # one objective at a time: no (N, M, M, K) temporaries
        a, b = obj[:, :, None, q], obj[:, None, :, q]
        le &= a <= b
        lt |= a < b
    # dom[n, i, j]: i dominates j (both valid); fronts peeled by domination counts, each
    # front's dominated counts subtracted in one batched product (exact in float32: <= M)
    dom = (le & lt & valid[:, :, None] & valid[:, None, :]).astype(np.float32)
    count = dom.sum(1)  # (N, M): valid dominators of each candidate
    rank = np.zeros(valid.shape, dtype=np.int64)
    remaining = valid.copy()
    ranked = np.zeros(n, dtype=np.int64)
    r = 0
    while (remaining.any(1) & (ranked < need)).any():
        front = remaining & (count == 0)
        rank[front] = r
        remaining &= ~front
        ranked += front.sum(1)
        count -= np.matmul(front[:, None, :].astype(np.float32), dom)[:, 0]
        r += 1
    rank[remaining] = r
    base = np.where(valid.any(1), np.where(valid, rank, -1).max(1) + 1, 0)
    dense = rankdata(np.where(valid, np.inf, obj[..., 0]), method="dense", axis=1).astype(np.int64) - 1
    return np.where(valid, rank, base[:, None] + dense)


def _crowding(obj: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within each front, batched over instances.

    Gaps are normalised by each objective's range over all ``M`` candidates of the instance;
    the extremes of every front get infinity.

    Parameters
    ----------
    obj : numpy.ndarray, shape (N, M, K)
    rank : numpy.ndarray of int, shape (N, M)
    """
    crowd = np.zeros(rank.shape)
    span = np.maximum(obj.max(1) - obj.min(1), 1e-12)  # (N, K)
    for m in range(obj.shape[-1]):
        order = np.lexsort((obj[..., m], rank), axis=-1)
        f = np.take_along_axis(obj[..., m], order, 1)
        r = np.take_along_axis(rank, order, 1)
        change, ends = r[:, 1:] != r[:, :-1], np.ones((len(r), 1), dtype=bool)  # fronts end at changes
        edge = np.concatenate([ends, change], 1) | np.concatenate([change, ends], 1)
        gap = np.zeros(f.shape)
        gap[:, 1:-1] = (f[:, 2:] - f[:, :-2]) / span[:, m : m + 1]
        gap[edge] = np.inf
        back = np.empty_like(gap)
        np.put_along_axis(back, order, gap, 1)
        crowd += back
    return crowd
