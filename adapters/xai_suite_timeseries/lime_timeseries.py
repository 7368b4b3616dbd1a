"""``lime:timeseries``: LIME on ``(N, C, T)`` series, with time segments as its features.

See :class:`LimeTimeSeries`; seeding is that of every ``lime:`` entry (:mod:`xai_suite.methods.lime`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from xai_suite.plugin import (
    RIBEIRO,
    Attribution,
    BaselineSpec,
    Batched,
    Call,
    Seeded,
    SurrogateExplainer,
    check_bool,
    check_n_samples,
    check_positive_number,
    instance_seeds,
    pair_outputs,
    register_explainer,
)

from .perturbation import segment_mask

REFERENCE = (RIBEIRO + "; Guillemé et al. (2019), Agnostic Local Explanation for Time Series "
             "Classification (LEFTIST); Sivill & Flach (2022), LIMESegment")


def sample_segment_masks(n_groups: int, n_samples: int, random_state: int) -> np.ndarray:
    """LIME's binary perturbations of ``n_groups`` interpretable features.

    Row 0 is the instance itself (all ones). Each other row switches off ``k`` features
    chosen uniformly without replacement, ``k`` uniform in ``1..n_groups``, as lime's text
    explainer does.

    Parameters
    ----------
    n_groups, n_samples : int
    random_state : int
        Seed of the ``numpy.random.RandomState`` that draws the masks.

    Returns
    -------
    numpy.ndarray of float64, shape (n_samples, n_groups)
        1 where a feature is kept, 0 where it is replaced by the baseline.
    """
    rs = np.random.RandomState(int(random_state))
    n_off = rs.randint(1, n_groups + 1, n_samples - 1)
    rank = rs.random_sample((n_samples - 1, n_groups)).argsort(1).argsort(1)
    z = np.ones((n_samples, n_groups))
    z[1:][rank < n_off[:, None]] = 0.0
    return z


def _kernel(d: np.ndarray, kernel_width: float) -> np.ndarray:
    """lime's default kernel: ``sqrt(exp(-d^2 / width^2))``."""
    return np.sqrt(np.exp(-(d**2) / kernel_width**2))


@register_explainer(
    "timeseries", library="lime", modalities=("timeseries",),
    model_kinds=("torch", "sklearn", "aeon", "callable"), requires=("lime",), needs_baseline=True,
    uses_feature_mask=True, stochastic=True, batch_invariant=True,
    summary="LIME on time segments switched off to a baseline; lime's LimeBase ridge surrogate",
    reference=REFERENCE,
    notes="Every time step carries its segment's weight (the ridge coefficient of the segment's "
    "on/off indicator), not a share of it.",
)
class LimeTimeSeries(SurrogateExplainer, Batched, Seeded):
    """Segment-based LIME for ``(N, C, T)`` series.

    The features are segments (:func:`~.perturbation.segment_mask`): ``n_segments`` equal
    windows per channel (``per_channel``), windows spanning all channels, or the groups of an
    explicit ``feature_mask``. A
    perturbation replaces some segments by the baseline (:func:`sample_segment_masks`); all
    perturbations of all instances go through the model in chunks of ``batch_size`` rows.
    lime's ``LimeBase`` fits, per instance, a ridge regression (alpha 1) of the target output
    on the keep/replace indicators, weighted by lime's kernel on their ``distance`` to
    all-ones. Every time step gets its segment's coefficient.

    Parameters
    ----------
    n_segments : int
        Windows per channel (10). Ignored when ``explain`` gets a ``feature_mask``.
    per_channel : bool
        Separate segments per channel (``C * n_segments`` features) or shared across channels.
    n_samples : int
        Perturbations per instance, the instance itself included (lime has no time-series
        default; 1000 leaves 50 rows per unknown for 20 segments, each row a full series).
    kernel_width : float
        Kernel width on distances in [0, 1] (lime's text explainer: 25 on cosine x 100).
    distance : {"cosine", "hamming"}
        Distance of a perturbation's indicators to all-ones (lime's text explainer: cosine).
    baseline : str, float, callable or Baseline
        What replaced segments become (``"zeros"``, ``"channel_mean"``, ``"training_mean"``
        after ``fit``, ...); stochastic ones are drawn once per instance and call.
    """

    n_segments: int = 10
    per_channel: bool = True
    n_samples: int = 1000
    kernel_width: float = 0.25
    distance: str = "cosine"
    baseline: BaselineSpec = "zeros"

    def _check_params(self) -> None:
        check_n_samples(self.n_samples)
        check_positive_number(kernel_width=self.kernel_width)
        check_bool(per_channel=self.per_channel)
        if self.distance not in ("cosine", "hamming"):
            raise ValueError(f"distance must be 'cosine' or 'hamming'; got {self.distance!r}")

    def _groups(self, call: Call, feature_mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """Per instance: group index of every point (N, C*T), 0..G_i-1, and G_i (N,)."""
        n, c, t = call.x.shape
        if feature_mask is None:
            labels = segment_mask((c, t), self.n_segments, per_channel=self.per_channel)
            g = labels.reshape(1, -1)
            return np.repeat(g, n, axis=0), np.full(n, int(labels.max()) + 1)
        m = feature_mask.cpu().numpy().reshape(feature_mask.shape[0], -1)
        groups = np.empty((n, c * t), dtype=np.int64)
        counts = np.empty(n, dtype=np.int64)
        for i in range(n):
            uniq, inv = np.unique(m[i if m.shape[0] > 1 else 0], return_inverse=True)
            groups[i], counts[i] = inv, uniq.size
        return groups, counts

    def _attribute(self, call, *, baselines, feature_mask):
        self._check_params()
        n, c, t = call.x.shape
        groups, counts = self._groups(call, feature_mask)
        seeds = instance_seeds(self.random_state, call)
        b = self._baselines(call, baselines)[:1]  # (1, N, C, T): one draw per instance
        s = int(self.n_samples)
        # masks per instance, drawn once per distinct (seed, number of groups)
        draw = functools.cache(lambda seed, g: sample_segment_masks(g, s, seed))
        z = np.zeros((n, s, int(counts.max())))
        for i in range(n):
            z[i, :, : counts[i]] = draw(int(seeds[i]), int(counts[i]))
        y = _masked_outputs(call, b[0], torch.from_numpy(z), torch.from_numpy(groups))

        import lime.lime_base
        from sklearn.metrics import pairwise_distances

        base = lime.lime_base
        width = float(self.kernel_width)
        values = np.empty((n, c * t))
        scores = []
        for i in range(n):
            zi = z[i, :, : counts[i]]
            d = pairwise_distances(zi, zi[:1], metric=self.distance).ravel()
            lime = base.LimeBase(lambda dist: _kernel(dist, width),
                                 random_state=np.random.RandomState(int(seeds[i])))
            _, coefs, score, _ = lime.explain_instance_with_data(
                zi, y[i][:, None], d, 0, int(counts[i]), feature_selection="none")
            w = np.zeros(int(counts[i]))
            for j, v in coefs:
                w[j] = v
            values[i] = w[groups[i]]
            scores.append(float(score))
        n_groups = counts.tolist()
        resolved = {"n_groups": n_groups[0] if len(set(n_groups)) == 1 else n_groups,
                    "surrogate_r2": scores, "instance_seeds": seeds.tolist()}
        return Attribution(torch.from_numpy(values.reshape(n, c, t)).float(), b, resolved)


def _masked_outputs(call: Call, baselines: torch.Tensor, z: torch.Tensor,
                    groups: torch.Tensor) -> np.ndarray:
    """Target outputs of rows ``(i, k)``: ``x_i`` with the points of every group ``g`` where
    ``z[i, k, g] == 0`` replaced by ``baselines[i]``, ``call.rows`` per model call.

    Parameters
    ----------
    call : Call
    baselines : torch.Tensor, shape (N, C, T)
    z : torch.Tensor, shape (N, S, G)
    groups : torch.Tensor of int64, shape (N, C*T)

    Returns
    -------
    numpy.ndarray of float64, shape (N, S)
    """
    x = call.x
    n, s = z.shape[:2]
    keep_all = z.to(x.device) > 0.5
    groups = groups.to(x.device)
    baselines = baselines.to(x.device)

    def build(inst: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        keep = keep_all[inst, k].gather(1, groups[inst]).view(-1, *x.shape[1:])
        return torch.where(keep, x[inst], baselines[inst])

    return pair_outputs(call.model.forward, n, s, build, call.target_t, call.rows,
                        "lime perturbations").numpy()
