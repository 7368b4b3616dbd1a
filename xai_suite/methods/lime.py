"""LIME backend: ``lime:`` entries computed with the ``lime`` package (imported on first use).

- ``lime:tabular``: lime's own ``LimeTabularExplainer`` on ``(N, F)`` data; every feature's
  weight for the explained class, in the inputs' column order.
- ``lime:timeseries``: LIME on ``(N, C, T)`` series with contiguous time segments (or the
  groups of a ``feature_mask``) as its interpretable features, in the style of LIME for
  time series: a perturbation switches segments off by replacing them with a baseline, and
  lime's ``LimeBase`` fits the locally weighted ridge regression.

Seeding (both entries): every instance is explained with a fresh ``numpy.random.RandomState``
seeded with ``random_state``, so an instance's weights do not depend on which other instances
are explained with it or in which order, and ``LimeTabularExplainer(X, random_state=seed)
.explain_instance(x, ...)`` reproduces ``lime:tabular``'s weights for ``x`` exactly. The
instances of one call therefore share one stream of random numbers (common random numbers).
With ``random_state=None`` each instance gets a seed of its own from fresh entropy; the seeds
used are recorded in the explanation's ``params["instance_seeds"]``.

``batch_size`` is the number of rows per model call: lime asks for all ``n_samples``
perturbations of an instance at once, and we send them through the model in chunks.
Models of every kind see float32 inputs, and their outputs are rounded to float32, as
everywhere in the suite.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .._validation import check_positive_int, check_random_state
from ..base import Attribution, Call, SurrogateExplainer
from ..registry import register_explainer

RIBEIRO = ('Ribeiro, Singh & Guestrin (2016), "Why Should I Trust You?": Explaining the Predictions '
           "of Any Classifier")
TS_REFERENCE = ("Guillemé et al. (2019), Agnostic Local Explanation for Time Series Classification "
                "(LEFTIST); Sivill & Flach (2022), LIMESegment")
_MAX_SEED = 2**32 - 1  # numpy.random.RandomState takes seeds in [0, 2**32 - 1]


def _lime_tabular():
    import lime.lime_tabular

    return lime.lime_tabular


def _lime_base():
    import lime.lime_base

    return lime.lime_base


def _check_n_samples(n_samples) -> None:
    check_positive_int(n_samples=n_samples)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 (the instance itself and one "
                         f"perturbation); got {n_samples}")


def _check_kernel_width(kernel_width, allow_none: bool) -> None:
    if kernel_width is None and allow_none:
        return
    number = isinstance(kernel_width, int | float | np.number) and not isinstance(kernel_width, bool)
    if not number or not np.isfinite(kernel_width) or kernel_width <= 0:
        what = "a positive number" + (" or None" if allow_none else "")
        raise ValueError(f"kernel_width must be {what}; got {kernel_width!r}")


def _check_bool(**values) -> None:
    for name, v in values.items():
        if not isinstance(v, bool | np.bool_):
            raise TypeError(f"{name} must be True or False; got {v!r}")


def _instance_seeds(random_state, call: Call) -> np.ndarray:
    """One ``RandomState`` seed per instance: ``random_state`` for all, or fresh draws."""
    n = call.x.shape[0]
    if random_state is None:
        return call.rng.integers(0, _MAX_SEED, size=n, endpoint=True, dtype=np.int64)
    check_random_state(random_state)
    return np.full(n, int(random_state), dtype=np.int64)


def _each_instance(n: int, desc: str):
    """Instance indices, with a progress bar on a terminal when there are many."""
    return tqdm(range(n), desc=desc, leave=False, disable=None if n > 20 else True)


# -- tabular -------------------------------------------------------------------------------
@register_explainer(
    "tabular", library="lime", modalities=("tabular",), model_kinds=("torch", "sklearn", "callable"),
    requires=("lime",), needs_fit=True, stochastic=True, batch_invariant=True,
    summary="lime's LimeTabularExplainer: local ridge surrogate on perturbed (discretised) features",
    reference=RIBEIRO,
    notes="Weights are ridge coefficients of lime's interpretable features: with "
    "discretize_continuous=True, of 'the feature lies in the instance's bin' indicators "
    "(quartiles by default); "
    "otherwise of the features standardised by the training data's standard deviation.",
)
class LimeTabular(SurrogateExplainer):
    """LIME for tabular data through ``lime.lime_tabular.LimeTabularExplainer``.

    ``fit(X)`` gives the training data (M, F) lime takes its statistics from (means,
    standard deviations, quartiles, bin frequencies). ``explain`` returns, for every instance,
    lime's weight of every feature for the target class (``num_features=F``), as an (N, F)
    array in the inputs' column order. lime's feature selection is off (``"none"``): with
    all F features kept it only reorders the ridge's columns.

    Parameters
    ----------
    n_samples : int
        Perturbations per instance (lime's ``num_samples``): 5000, as in lime. lime's own work
        takes about 15 ms per instance with 6 features (measured here), plus the model calls.
    kernel_width : float, optional
        Width of lime's exponential kernel on the Euclidean distance between standardised
        (or binary, when discretised) rows. ``None``: lime's ``0.75 * sqrt(F)``.
    discretize_continuous : bool
        ``True``, as in lime: each feature is binned (``discretizer``) and the surrogate's
        inputs are indicators "the perturbed value lies in the instance's bin"; a weight is
        then the change of the target output when the feature takes a value from its own bin
        rather than from another bin of the training distribution (not a slope). ``False``:
        the surrogate sees the perturbed values standardised by the training data, and a
        weight is the output change per training standard deviation of the feature.
    discretizer : {"quartile", "decile"}
        lime's binning when ``discretize_continuous`` is true ("quartile", as in lime).
    sample_around_instance : bool
        Draw continuous perturbations around the instance instead of around the training
        mean (lime's default ``False``); used when ``discretize_continuous`` is false.
    batch_size : int or "auto"
        Rows per model call.
    max_memory : int or str, optional
        Memory budget for ``batch_size="auto"``.
    device : str
        Compute device of torch models.
    random_state : int, optional
        Seeds every instance's ``RandomState`` (see the module docstring).
    """

    def __init__(self, model, *, n_samples: int = 5000, kernel_width: float | None = None,
                 discretize_continuous: bool = True, discretizer: str = "quartile",
                 sample_around_instance: bool = False, batch_size="auto", max_memory=None,
                 device="auto", random_state: int | None = None):
        self.model = model
        self.n_samples = n_samples
        self.kernel_width = kernel_width
        self.discretize_continuous = discretize_continuous
        self.discretizer = discretizer
        self.sample_around_instance = sample_around_instance
        self.batch_size = batch_size
        self.max_memory = max_memory
        self.device = device
        self.random_state = random_state

    def _fit(self, X: torch.Tensor, y) -> None:
        self.X_train_ = X.double().numpy()  # (M, F): what lime computes its statistics from

    def _check_params(self) -> None:
        _check_n_samples(self.n_samples)
        _check_kernel_width(self.kernel_width, allow_none=True)
        _check_bool(discretize_continuous=self.discretize_continuous,
                    sample_around_instance=self.sample_around_instance)
        if self.discretizer not in ("quartile", "decile"):
            raise ValueError(f"discretizer must be 'quartile' or 'decile'; got {self.discretizer!r}")

    def _lime_explainer(self, seed: int):
        """lime's explainer for the fitted data, its random state seeded with ``seed``."""
        return _lime_tabular().LimeTabularExplainer(
            self.X_train_, mode="classification", feature_selection="none",
            kernel_width=None if self.kernel_width is None else float(self.kernel_width),
            discretize_continuous=bool(self.discretize_continuous), discretizer=self.discretizer,
            sample_around_instance=bool(self.sample_around_instance), random_state=int(seed),
        )

    def _attribute(self, call, *, baselines, feature_mask):
        self._check_params()
        seeds = _instance_seeds(self.random_state, call)
        n, f = call.x.shape
        x = call.x.cpu().double().numpy()
        predict_fn = _predict_fn(call)
        explainer = self._lime_explainer(int(seeds[0]))
        rs = explainer.random_state
        # lime's explainer, discretizer and ridge share one RandomState: reseeding it in place
        # equals building a new explainer with that seed (its construction draws nothing).
        shared = explainer.base.random_state is rs and (
            explainer.discretizer is None or explainer.discretizer.random_state is rs)
        values = np.empty((n, f))
        scores = []
        with warnings.catch_warnings():
            # explaining logits or regression outputs is allowed: they need not sum to 1
            warnings.filterwarnings("ignore", message=r"(?s).*do not sum to 1")
            for i in _each_instance(n, "lime:tabular"):
                if shared:
                    rs.seed(int(seeds[i]))
                else:  # pragma: no cover - a lime version with separate generators
                    explainer = self._lime_explainer(int(seeds[i]))
                label = int(call.target[i])
                exp = explainer.explain_instance(x[i], predict_fn, labels=(label,), num_features=f,
                                                 num_samples=int(self.n_samples))
                for j, w in exp.as_map()[label]:
                    values[i, j] = w
                scores.append(float(exp.score))
        width = self.kernel_width if self.kernel_width is not None else 0.75 * np.sqrt(f)
        resolved = {"kernel_width_used": float(width), "surrogate_r2": scores,
                    "instance_seeds": seeds.tolist()}
        return Attribution(torch.from_numpy(values).float(), params=resolved)


def _predict_fn(call: Call) -> Callable[[np.ndarray], np.ndarray]:
    """lime's ``predict_fn``: float64 rows (S, F) -> outputs (S, K), in chunks of ``call.rows``."""

    def predict(rows: np.ndarray) -> np.ndarray:
        return call.model.predict(torch.from_numpy(np.asarray(rows, dtype=np.float32)), call.rows)

    return predict


# -- time series ---------------------------------------------------------------------------
def lime_segment_mask(shape: tuple[int, int], n_segments: int, *, per_channel: bool = True) -> np.ndarray:
    """Group labels cutting each channel into ``n_segments`` contiguous, (nearly) equal windows.

    Step ``s`` of a length-``T`` series lies in window ``floor(s * n_segments / T)``, so window
    sizes differ by at most one.

    Parameters
    ----------
    shape : tuple (C, T)
        One instance's shape.
    n_segments : int
        Windows along time, ``1 <= n_segments <= T``.
    per_channel : bool
        Each channel's windows are separate groups (``C * n_segments`` labels, channel-major)
        or one window spans all channels (``n_segments`` labels).

    Returns
    -------
    numpy.ndarray of int64, shape (C, T)
    """
    c, t = (int(s) for s in shape)
    check_positive_int(n_segments=n_segments)
    if n_segments > t:
        raise ValueError(f"n_segments must be at most the series length T={t}; got {n_segments}")
    _check_bool(per_channel=per_channel)
    seg = (np.arange(t) * int(n_segments)) // t
    offsets = np.arange(c)[:, None] * int(n_segments) if per_channel else np.zeros((c, 1), np.int64)
    return (seg[None, :] + offsets).astype(np.int64)


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
    reference=RIBEIRO + "; " + TS_REFERENCE,
    notes="Every time step carries its segment's weight (the ridge coefficient of the segment's "
    "on/off indicator), not a share of it.",
)
class LimeTimeSeries(SurrogateExplainer):
    """Segment-based LIME for ``(N, C, T)`` series.

    The interpretable features are segments: each channel cut into ``n_segments`` equal
    windows (``per_channel=True``), windows spanning all channels (``per_channel=False``), or
    the groups of an explicit ``feature_mask`` (which then overrides both). A perturbation
    keeps some segments and replaces the others by the baseline (:func:`sample_segment_masks`);
    all perturbations of all instances go through the model in chunks of ``batch_size`` rows.
    lime's ``LimeBase`` then fits, per instance, a ridge regression (alpha 1) of the target
    output on the binary keep/replace indicators, weighted by lime's exponential kernel on the
    ``distance`` of each indicator vector to all-ones. Every time step gets its segment's
    coefficient: the output lost when that segment is replaced, in the surrogate's view.

    Parameters
    ----------
    n_segments : int
        Windows per channel (10). Ignored when ``explain`` gets a ``feature_mask``.
    per_channel : bool
        Separate segments per channel (``C * n_segments`` features) or shared across channels.
    n_samples : int
        Perturbations per instance, the instance itself included. 1000: lime has no
        time-series default (its text explainer draws 5000); 1000 leaves 50 rows per unknown
        of the ridge for the default 20 segments of a 2-channel series, and every row is a
        full series through the model.
    kernel_width : float
        Width of the kernel on distances in [0, 1] (0.25: lime's text explainer uses 25 on
        cosine distances times 100).
    distance : {"cosine", "hamming"}
        Distance between a perturbation's indicator vector and all-ones (lime's text explainer
        uses cosine).
    baseline : str, float, callable or Baseline
        What replaced segments become (``"zeros"``; ``"channel_mean"`` once the time-series
        adapter is loaded, ``"training_mean"`` after ``fit``, ...). Stochastic baselines are
        drawn once per instance and call.
    batch_size : int or "auto"
        Rows per model call.
    max_memory : int or str, optional
        Memory budget for ``batch_size="auto"``.
    device : str
        Compute device of torch models.
    random_state : int, optional
        Seeds every instance's masks (see the module docstring) and stochastic baselines.
    """

    def __init__(self, model, *, n_segments: int = 10, per_channel: bool = True,
                 n_samples: int = 1000, kernel_width: float = 0.25, distance: str = "cosine",
                 baseline="zeros", batch_size="auto", max_memory=None, device="auto",
                 random_state: int | None = None):
        self.model = model
        self.n_segments = n_segments
        self.per_channel = per_channel
        self.n_samples = n_samples
        self.kernel_width = kernel_width
        self.distance = distance
        self.baseline = baseline
        self.batch_size = batch_size
        self.max_memory = max_memory
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        _check_n_samples(self.n_samples)
        _check_kernel_width(self.kernel_width, allow_none=False)
        _check_bool(per_channel=self.per_channel)
        if self.distance not in ("cosine", "hamming"):
            raise ValueError(f"distance must be 'cosine' or 'hamming'; got {self.distance!r}")

    def _groups(self, call: Call, feature_mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """Per instance: group index of every point (N, C*T), 0..G_i-1, and G_i (N,)."""
        n, c, t = call.x.shape
        if feature_mask is None:
            labels = lime_segment_mask((c, t), self.n_segments, per_channel=self.per_channel)
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
        seeds = _instance_seeds(self.random_state, call)
        b = self._baselines(call, baselines)[:1]  # (1, N, C, T): one draw per instance
        s = int(self.n_samples)
        # masks per instance, drawn once per distinct (seed, number of groups)
        cache: dict[tuple[int, int], np.ndarray] = {}
        z = np.zeros((n, s, int(counts.max())))
        for i in range(n):
            key = (int(seeds[i]), int(counts[i]))
            if key not in cache:
                cache[key] = sample_segment_masks(key[1], s, key[0])
            z[i, :, : key[1]] = cache[key]
        y = _masked_outputs(call, b[0], torch.from_numpy(z), torch.from_numpy(groups))

        from sklearn.metrics import pairwise_distances

        base = _lime_base()
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
    """Target outputs of every perturbation of every instance.

    Row ``(i, k)`` is ``x_i`` with the points of every group ``g`` where ``z[i, k, g] == 0``
    replaced by ``baselines[i]``; the ``N * S`` rows go through the model ``call.rows`` at a
    time.

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
    total = n * s
    keep_all = z.to(x.device) > 0.5
    groups = groups.to(x.device)
    baselines = baselines.to(x.device)
    tgt = call.target_t
    out = np.empty(total)
    starts = range(0, total, call.rows)
    with torch.no_grad():
        for start in tqdm(starts, desc="lime perturbations", leave=False,
                          disable=None if len(starts) > 50 else True):
            idx = torch.arange(start, min(start + call.rows, total), device=x.device)
            inst, k = idx // s, idx % s
            keep = keep_all[inst, k].gather(1, groups[inst]).view(-1, *x.shape[1:])
            rows = torch.where(keep, x[inst], baselines[inst])
            y = call.model.forward(rows).gather(1, tgt[inst].unsqueeze(1))[:, 0]
            out[start : start + len(idx)] = y.double().cpu().numpy()
    return out.reshape(n, s)
