"""Segment perturbation methods for time series (tsCaptum-style), for any model kind.

Three ``native:`` entries (``segment_occlusion``: sliding windows; ``segment_ablation``:
equal segments or the groups of a ``feature_mask``; ``segment_shapley``: Shapley values of
those segments) replace contiguous time segments of ``(N, C, T)`` series, per channel or
across channels, with a baseline, and send all perturbed copies of all instances through the
model together, in chunks of ``batch_size`` rows, whatever the model kind.

Occlusion and ablation give every point of a segment the segment's full drop (Captum's
convention; with overlapping windows, the mean over the windows covering the point). Shapley
values are additive: each point carries its segment's value divided by the segment's size, so
the map sums to ``f(x) - f(baseline)`` (``convergence_delta``); multiply by the segment size
to compare with ``captum:shapley_value_sampling``, which gives every point the whole value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from xai_suite.plugin import (
    Attribution,
    BaselineSpec,
    Batched,
    Call,
    PerturbationExplainer,
    Seeded,
    check_bool,
    check_positive_int,
    chunks,
    pair_outputs,
    register_explainer,
)

ANY_MODEL = ("torch", "sklearn", "aeon", "callable")
_register = functools.partial(register_explainer, library="native", modalities=("timeseries",),
                              model_kinds=ANY_MODEL, needs_baseline=True)
TSCAPTUM = ("Serramazza et al. (2024), Improving the Evaluation and Actionability of Explanation "
            "Methods for Multivariate Time Series Classification (tsCaptum)")


def segment_mask(shape: tuple[int, int], n_segments: int, *, per_channel: bool = True) -> np.ndarray:
    """Group labels cutting a series into ``n_segments`` contiguous, (nearly) equal segments.

    Segment ``k`` covers steps ``[k T // n, (k + 1) T // n)``, so sizes differ by at most one.

    Parameters
    ----------
    shape : tuple (C, T)
        One instance's shape.
    n_segments : int
        Segments along time, ``1 <= n_segments <= T``.
    per_channel : bool
        Each channel's segments are separate groups (``C * n_segments`` labels, channel-major)
        or one segment spans all channels (``n_segments`` labels).

    Returns
    -------
    numpy.ndarray of int64, shape (C, T)
        Usable as ``feature_mask`` by any explainer that takes one.
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be one instance's (C, T); got {tuple(shape)}")
    c, t = (int(s) for s in shape)
    check_positive_int(n_segments=n_segments)
    if n_segments > t:
        raise ValueError(f"n_segments must be at most the series length {t}; got {n_segments}")
    check_bool(per_channel=per_channel)
    seg = (np.arange(t) * int(n_segments)) // t  # step s lies in segment floor(s n / T)
    offsets = np.arange(c)[:, None] * int(n_segments) if per_channel else np.zeros((c, 1), int)
    return (seg[None, :] + offsets).astype(np.int64)


def occlusion_windows(length: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the sliding windows, as Captum's ``Occlusion`` places them.

    Windows start at ``0, stride, 2 stride, ...``; when ``stride`` does not divide
    ``length - window`` a last window, clipped at the end, covers the remaining steps, so
    every step is covered (``stride <= window`` is required).
    """
    check_positive_int(window=window, stride=stride)
    if window > length:
        raise ValueError(f"window must be at most the series length {length}; got {window}")
    if stride > window:
        raise ValueError(f"stride ({stride}) must not exceed window ({window}): steps between "
                         "windows would never be occluded")
    n_shifts = -(-(length - window) // stride) + 1  # ceil((T - w) / s) + 1, as Captum
    return [(k * stride, min(k * stride + window, length)) for k in range(n_shifts)]


def target_outputs(
    call: Call,
    baselines: torch.Tensor,
    n_masks: int,
    masks_for: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Target outputs of copies ``(i, m) = where(masks_for(i, m), baseline_i, x_i)``, built
    ``call.rows`` per model call (:func:`~xai_suite.batching.pair_outputs`).

    Parameters
    ----------
    call : Call
        Inputs ``x`` (N, C, T), targets and the model.
    baselines : torch.Tensor, shape (N, C, T)
    n_masks : int
    masks_for : callable
        ``(instances (r,), masks (r,)) -> bool tensor (r, C, T)``: points set to the baseline.

    Returns
    -------
    torch.Tensor of float64, shape (N, n_masks)
    """
    x = call.x
    return pair_outputs(call.model.forward, x.shape[0], n_masks,
                        lambda i, m: torch.where(masks_for(i, m), baselines[i], x[i]),
                        call.target_t, call.rows, "segment perturbations")


def window_outputs(
    call: Call,
    baselines: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    """Target outputs of copies ``(i, m)``: ``x_i`` with the points ``cols[m]`` (flat indices
    into one instance's ``C * T`` values) set to ``baselines_i``'s, ``call.rows`` per call.

    Every chunk is written into one buffer allocated once per call: the instances' rows are
    copied in (``index_select``), then only the occluded points are overwritten
    (``scatter_``); no mask over the whole series is built. Rows are pair-major as in
    :func:`~xai_suite.batching.pair_outputs` (instance ``p // M``, mask ``p % M``).

    Parameters
    ----------
    call : Call
        Inputs ``x`` (N, C, T), targets and the model.
    baselines : torch.Tensor, shape (N, C, T)
    cols : torch.Tensor of int64, shape (M, w)
        Occluded points of each mask; a point may be listed more than once.

    Returns
    -------
    torch.Tensor of float64 on CPU, shape (N, M)
    """
    x = call.x
    n, m = x.shape[0], cols.shape[0]
    flat = x.reshape(n, -1)
    size = flat.shape[1]
    ref = baselines.to(x.dtype).reshape(-1)  # (N C T,): the points are read by flat index
    target = call.target_t.to(x.device)
    out = torch.empty(n * m, dtype=torch.float64)
    buf = None
    with torch.no_grad():
        for sl in chunks(n * m, call.rows, "segment perturbations"):
            idx = torch.arange(sl.start, sl.stop, device=x.device)
            inst, var = idx // m, idx % m
            if buf is None:  # the first chunk is the largest
                buf = torch.empty((len(idx), size), dtype=x.dtype, device=x.device)
            rows = buf[: len(idx)]
            torch.index_select(flat, 0, inst, out=rows)
            c = cols.index_select(0, var)  # (r, w)
            # (index_select: several times faster than advanced indexing of these sizes)
            values = ref.index_select(0, (inst[:, None] * size + c).view(-1)).view(c.shape)
            rows.scatter_(1, c, values)
            y = call.model.forward(rows.view(len(idx), *x.shape[1:]))
            out[sl] = y.gather(1, target[inst].unsqueeze(1))[:, 0].double().cpu()
    return out.view(n, m)


def _target_predictions(call: Call) -> torch.Tensor:
    """``f(x)`` at the target, shape (N,), float64."""
    return torch.from_numpy(call.predictions[np.arange(len(call.target)), call.target]).double()


class _Segments(PerturbationExplainer, Batched, Seeded):
    """Shared constructor and helpers of the segment methods."""

    baseline: BaselineSpec = "zeros"
    per_channel: bool = True

    def _groups(self, call: Call, feature_mask: torch.Tensor | None, n_segments: int):
        """Group labels (1 or N, C, T) numbered 0..G-1 and G."""
        if feature_mask is None:
            labels = torch.from_numpy(segment_mask(tuple(call.x.shape[1:]), n_segments,
                                                   per_channel=self.per_channel))
            labels = labels.unsqueeze(0).to(call.x.device)
            return labels, int(labels.max()) + 1
        _, inverse = torch.unique(feature_mask, return_inverse=True)  # labels -> 0..G-1
        return inverse.reshape(feature_mask.shape), int(inverse.max()) + 1


_COMMON_PARAMS = """baseline : str, float, callable or Baseline
        Values replacing the perturbed points (see :mod:`xai_suite.baselines`); ``"zeros"``
        as in Captum. Explicit arrays go to ``explain(..., baselines=...)``.
    per_channel : bool
        Perturb each channel's segments separately (True) or all channels of a segment
        together (False).
    random_state : int, optional
        Seeds random baselines"""


@_register(
    "segment_occlusion",
    summary="Mean output drop over the sliding time windows, per channel or across channels, "
    "that cover each point",
    reference="Zeiler & Fergus (2014), Visualizing and Understanding Convolutional Networks; "
    + TSCAPTUM,
)
class SegmentOcclusion(_Segments):
    __doc__ = """Sliding-window occlusion along time, batched over windows and instances.

    Each window's drop ``f(x) - f(x with the window set to the baseline)`` is given to every
    point of the window; a point's attribution is the mean over the windows covering it.
    Equal to ``captum:occlusion`` with ``window=(1, w), stride=(1, s)`` (``per_channel``) or
    ``window=(C, w), stride=(1, s)``.

    Parameters
    ----------
    window : int, optional
        Window length in steps; default ``max(1, T // 10)``.
    stride : int, optional
        Steps between window starts, at most ``window``; default ``window`` (no overlap).
    """ + _COMMON_PARAMS + ".\n    "

    window: int | None = None
    stride: int | None = None

    def _attribute(self, call, *, baselines, feature_mask):
        check_bool(per_channel=self.per_channel)
        c, t = call.x.shape[1:]
        window = max(1, t // 10) if self.window is None else self.window
        stride = window if self.stride is None else self.stride
        dev, n = call.x.device, call.x.shape[0]
        spans = torch.tensor(occlusion_windows(t, window, stride), device=dev)  # (W, 2)
        n_w = spans.shape[0]
        # mask m occludes channel chan[m] (every channel: not per_channel) over span m % W,
        # given as the flat indices of its points; a clipped last window repeats its last step
        m_all = torch.arange(c * n_w if self.per_channel else n_w, device=dev)
        chan = m_all // n_w if self.per_channel else torch.zeros_like(m_all)
        lo, hi = spans[m_all % n_w, 0], spans[m_all % n_w, 1]
        steps = torch.minimum(lo[:, None] + torch.arange(window, device=dev), hi[:, None] - 1)
        if self.per_channel:
            cols = chan[:, None] * t + steps  # (M, w)
        else:
            rows_c = torch.arange(c, device=dev)[None, :, None] * t
            cols = (rows_c + steps[:, None, :]).reshape(len(m_all), c * window)
        b = self._baselines(call, baselines)
        out = window_outputs(call, b[0], cols)
        drop = (_target_predictions(call)[:, None] - out).cpu()  # (N, M)
        chan, lo, hi = chan.cpu(), lo.cpu(), hi.cpu()

        def spread(v: torch.Tensor) -> torch.Tensor:
            """Each window's value (R, M) summed over its span: (R, C or 1, T), through a
            difference array along time (+v at the span's start, -v at its end)."""
            acc = torch.zeros(v.shape[0], c if self.per_channel else 1, t + 1, dtype=torch.float64)
            r = torch.arange(v.shape[0])[:, None].expand_as(v)
            for edge, sign in ((lo, 1.0), (hi, -1.0)):
                acc.index_put_((r, chan.expand_as(v), edge.expand_as(v)), sign * v, accumulate=True)
            return acc.cumsum(-1)[..., :t]

        covering = spread(torch.ones(1, len(m_all), dtype=torch.float64))  # windows over each point
        values = (spread(drop) / covering).expand(n, c, t)
        return Attribution(values.reshape(call.x.shape).float(), b,
                           {"window": int(window), "stride": int(stride)})


@_register(
    "segment_ablation", uses_feature_mask=True,
    summary="Output drop when each time segment (per channel or across channels) is set to "
    "the baseline",
    reference=TSCAPTUM,
)
class SegmentAblation(_Segments):
    __doc__ = """Segment ablation: each segment set to the baseline in turn, batched over segments.

    Every point of a segment carries the segment's whole drop ``f(x) - f(x without it)``, as
    Captum's ``FeatureAblation`` (equal to ``captum:feature_ablation`` with the
    :func:`segment_mask` as ``feature_mask``).

    Parameters
    ----------
    n_segments : int
        Equal segments along time (see :func:`segment_mask`); ignored when ``explain`` gets
        a ``feature_mask``, whose groups are then the segments.
    """ + _COMMON_PARAMS + ".\n    "

    n_segments: int = 10

    def _attribute(self, call, *, baselines, feature_mask):
        labels, g = self._groups(call, feature_mask, self.n_segments)
        shared = labels.shape[0] == 1
        b = self._baselines(call, baselines)
        out = target_outputs(
            call, b[0], g,
            lambda i, m: labels[0 if shared else i] == m[:, None, None],
        )
        drop = _target_predictions(call)[:, None] - out  # (N, G)
        lab = labels.expand_as(call.x).reshape(call.x.shape[0], -1).cpu()
        values = drop.gather(1, lab).reshape(call.x.shape)
        return Attribution(values.float(), b, {"n_groups": g})


@_register(
    "segment_shapley", uses_feature_mask=True, stochastic=True, batch_invariant=True,
    has_convergence_delta=True,
    summary="Shapley values of time segments from random permutations; each point carries "
    "its share, so the map sums to f(x) - f(baseline)",
    reference="Castro, Gomez & Tejada (2009), Polynomial calculation of the Shapley value based "
    "on sampling; " + TSCAPTUM,
)
class SegmentShapley(_Segments):
    __doc__ = """Shapley value sampling over time segments, all coalitions of all permutations batched.

    Each of ``n_samples`` random permutations of the ``G`` segments adds them one by one to
    the baseline; a segment's value is its mean marginal gain. The permutations, drawn once
    from ``random_state``, are shared by all instances (values depend neither on the other
    instances nor on ``batch_size``). The gains sum to ``f(x) - f(baseline)``, and so does
    the map: each point carries its segment's value divided by the segment's size.

    Parameters
    ----------
    n_samples : int
        Random permutations (25, as Captum); ``n_samples * (G - 1)`` model rows per instance.
    n_segments : int
        Equal segments along time (see :func:`segment_mask`); ignored when ``explain`` gets
        a ``feature_mask``.
    """ + _COMMON_PARAMS + " and the permutations.\n    "

    n_samples: int = 25
    n_segments: int = 10

    def _attribute(self, call, *, baselines, feature_mask):
        check_positive_int(n_samples=self.n_samples)
        labels, g = self._groups(call, feature_mask, self.n_segments)
        shared = labels.shape[0] == 1
        p = int(self.n_samples)
        perms = np.stack([call.rng.permutation(g) for _ in range(p)])  # (P, G)
        ranks = torch.from_numpy(np.argsort(perms, axis=1)).to(call.x.device)  # rank of group
        b = self._baselines(call, baselines)
        n, c, t = call.x.shape
        steps = max(g - 1, 1)

        def absent(i, m):  # coalition m: permutation m // (G-1), its first m % (G-1) + 1 groups
            lab = labels[0].expand(len(i), c, t) if shared else labels[i]
            joins = ranks[m // steps].gather(1, lab.reshape(len(i), -1))  # when each point joins
            return (joins >= (m % steps + 1)[:, None]).view(len(i), c, t)

        f = torch.empty(n, p, g + 1, dtype=torch.float64)
        f[:, :, 0] = target_outputs(call, b[0], 1, lambda i, m: torch.ones_like(call.x[i],
                                                                                dtype=torch.bool))
        f[:, :, g] = _target_predictions(call)[:, None]
        if g > 1:
            f[:, :, 1:g] = target_outputs(call, b[0], p * (g - 1), absent).view(n, p, g - 1)
        gains = f[:, :, 1:] - f[:, :, :-1]  # (N, P, G): gain of the k-th group added
        phi = gains.gather(2, ranks.cpu().unsqueeze(0).expand(n, -1, -1)).mean(1)  # (N, G)
        lab = labels.expand_as(call.x).reshape(n, -1).cpu()
        sizes = torch.zeros(lab.shape[0], g, dtype=torch.float64).scatter_add_(
            1, lab, torch.ones_like(lab, dtype=torch.float64))
        values = (phi / sizes.clamp(min=1)).gather(1, lab).reshape(call.x.shape)
        return Attribution(values.float(), b, {"n_groups": g})
