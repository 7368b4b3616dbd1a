"""Temporal saliency rescaling (TSR) over any gradient method, batched.

TSR (Ismail et al. 2020, Algorithm 1) rescales a saliency method ``R`` by how much the whole
map changes when parts of the input are masked:

1. time relevance: for every step ``t``, mask all channels at ``t`` and score
   ``d_time[t] = sum |R(x) - R(x masked at t)|``;
2. feature relevance: for every step whose ``d_time`` exceeds the threshold and every
   channel ``i``, mask ``(i, t)`` alone and score ``d_feat[i, t]`` the same way; other steps
   get ``d_feat = 0``;
3. ``R_TSR[i, t] = d_time[t] * d_feat[i, t]``.

On a univariate series masking ``(0, t)`` is masking step ``t``, so ``d_feat[0, t] = d_time[t]``
(``R_TSR = d_time**2`` on relevant steps) at no extra cost. All masked copies of all instances
go through the inner explainer in a few large, memory-bounded ``explain`` calls (TSInterpret
runs it once per step and instance).
"""

from __future__ import annotations

import numpy as np
import torch

from xai_suite.plugin import (
    Attribution,
    BaselineSpec,
    Batched,
    Call,
    GradientExplainer,
    Seeded,
    create_explainer,
    explainer_info,
    progress,
    register_explainer,
)

#: Bytes of masked copies handed to the inner explainer per ``explain`` call.
COPY_BYTES = 32 * 2**20
#: Families whose maps TSR can rescale: saliency maps of differentiable models.
INNER_FAMILIES = ("gradient", "propagation")


@register_explainer(
    "tsr", library="native", modalities=("timeseries",), model_kinds=("torch",),
    needs_baseline=True, recommended=True,
    summary="Temporal saliency rescaling: time x feature relevance of masking on a gradient "
    "map, batched over all masked copies (non-negative by definition)",
    reference="Ismail, Gunady, Corrada Bravo & Feizi (2020), Benchmarking Deep Learning "
    "Interpretability in Time Series Predictions",
    notes="Scores are magnitudes (sums of absolute map differences): non-negative by "
    "definition. Random only where the inner method or a baseline is.",
)
class TemporalSaliencyRescaling(GradientExplainer, Batched, Seeded):
    """TSR over a registered gradient-family explainer, batched over all masked copies.

    The output ``d_time[t] * d_feat[i, t]`` is non-negative and unnormalised (the reference
    code min-max scales both scores and gives non-relevant steps a feature score of 0.1;
    Algorithm 1, followed here, gives 0): how much masking ``(i, t)`` changes the whole map,
    not in which direction it moves the output.

    The inner method's own baseline (e.g. integrated gradients' reference) is drawn once per
    instance and shared by its masked copies (as the reference code), so map differences come
    from the masking alone; with ``n_baseline_samples`` random draws, maps are their mean.

    Parameters
    ----------
    inner : str
        Registry name of the saliency method (gradient or propagation family, torch models),
        ``"integrated_gradients"`` by default.
    inner_params : dict, optional
        Its hyper-parameters; ``batch_size``, ``max_memory``, ``device`` and
        ``random_state`` default to this explainer's.
    threshold : float or "mean"
        Steps whose ``d_time`` exceeds its per-instance quantile (a float in [0, 1); 0.55, the
        reference code's) or mean get feature scores.
    baseline : str, float, callable or Baseline
        Values that mask a point (see :mod:`xai_suite.baselines`); ``"zeros"``, as Algorithm
        1. Explicit arrays go to ``explain(..., baselines=...)``.
    """

    inner: str = "integrated_gradients"
    inner_params: dict | None = None
    threshold: float | str = 0.55
    baseline: BaselineSpec = "zeros"

    # -- the inner explainer ------------------------------------------------------------------
    def _make_inner(self):
        info = explainer_info(self.inner)
        tags = info.tags
        if (tags.family not in INNER_FAMILIES or "torch" not in tags.model_kinds
                or "timeseries" not in tags.modalities or issubclass(info.cls, type(self))):
            raise ValueError(
                f"inner must name a {' or '.join(INNER_FAMILIES)} explainer of torch models for "
                f"time series (e.g. 'integrated_gradients', 'captum:saliency'); "
                f"{info.qualified_name} is a {tags.family} explainer of "
                f"{', '.join(tags.model_kinds)} models for {', '.join(tags.modalities)}"
            )
        if self.inner_params is not None and not isinstance(self.inner_params, dict):
            raise TypeError(f"inner_params must be a dict or None; got {type(self.inner_params).__name__}")
        params = dict(self.inner_params or {})
        for k in ("batch_size", "max_memory", "device", "random_state"):
            if k in info.params:
                params.setdefault(k, getattr(self, k))
        return create_explainer(info.qualified_name, self.model, **params)

    @property
    def requires_fit(self) -> bool:
        return super().requires_fit or self._make_inner().requires_fit

    def _fit(self, X, y) -> None:
        inner = self._make_inner()
        self._fitted_inner = inner.fit(X, y) if inner.requires_fit else None

    # -- the algorithm ------------------------------------------------------------------------
    def _attribute(self, call: Call, *, baselines, feature_mask) -> Attribution:
        inner = self._make_inner()
        if inner.requires_fit:
            inner = self._fitted_inner  # _check_fitted saw fit() after the last set_params
        q = _check_threshold(self.threshold)
        x = call.x
        n, c, t = x.shape
        mask_values = self._baselines(call, baselines)[0]  # (N, C, T)
        maps = _InnerMaps(inner, call, COPY_BYTES)

        base = maps(torch.arange(n), x)  # (N, C, T)

        def masked_scores(inst: torch.Tensor, ch: torch.Tensor | None, step: torch.Tensor):
            """``sum |R(x) - R(copy)|`` for copies masking (ch, step), or all of step if None."""
            inst, step = inst.to(x.device), step.to(x.device)
            rows = torch.arange(len(inst), device=x.device)
            z = x[inst].clone()
            ch = slice(None) if ch is None else ch.to(x.device)
            z[rows, ch, step] = mask_values[inst, ch, step]
            return (maps(inst, z) - base[inst.cpu()]).abs().sum((1, 2))

        inst = torch.arange(n).repeat_interleave(t)
        step = torch.arange(t).repeat(n)
        d_time = maps.blocks(inst, lambda i, s: masked_scores(inst[i:s], None, step[i:s]),
                             "tsr: time relevance").view(n, t)

        cut = d_time.mean(1) if q is None else torch.quantile(d_time, q, dim=1)
        relevant = d_time > cut[:, None]  # (N, T)
        if c == 1:
            d_feat = torch.where(relevant, d_time, 0.0).unsqueeze(1)
        else:
            r_inst, r_step = relevant.nonzero(as_tuple=True)
            inst = r_inst.repeat_interleave(c)
            step = r_step.repeat_interleave(c)
            ch = torch.arange(c).repeat(len(r_inst))
            d_feat = torch.zeros(n, c, t, dtype=d_time.dtype)
            if len(inst):
                d_feat[inst, ch, step] = maps.blocks(
                    inst, lambda i, s: masked_scores(inst[i:s], ch[i:s], step[i:s]), "tsr: feature relevance")
        values = d_time.unsqueeze(1) * d_feat
        return Attribution(values.float(), mask_values.unsqueeze(0), {
            "inner_method": inner.info.qualified_name,
            "n_relevant_steps": relevant.sum(1).tolist(),
        })


def _check_threshold(threshold) -> float | None:
    """The quantile as a float, or None for the mean."""
    if isinstance(threshold, str) and threshold == "mean":
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 1:
        raise ValueError(f"threshold must be a quantile in [0, 1) or 'mean'; got {threshold!r}")
    return float(threshold)


class _InnerMaps:
    """The inner explainer's maps of (masked) copies of the explained instances.

    Each copy is explained for its instance's target with its instance's inner baseline
    draws (shared by the instance and all its copies); maps are averaged over the draws.
    """

    def __init__(self, inner, call: Call, copy_bytes: int):
        self.inner = inner
        self.target = call.target
        per_copy = call.x[0].numel() * call.x.element_size()
        self.baselines = None  # (S, N, C, T)
        if inner.info.tags.needs_baseline:
            bl = inner._baseline()
            draws = int(getattr(inner, "n_baseline_samples", 1)) if bl.stochastic else 1
            self.baselines = bl.sample(call.x.cpu(), call.target, draws, call.rng)
        draws = 1 if self.baselines is None else self.baselines.shape[0]
        self.per_call = max(1, copy_bytes // (per_copy * draws))

    def __call__(self, inst: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Maps (r, C, T) of copies ``z`` (r, C, T) of instances ``inst`` (r,)."""
        inst = inst.cpu()
        return self.blocks(inst, lambda i, s: self._explain(inst[i:s], z[i:s]))

    def _explain(self, inst: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        tgt = self.target[inst.numpy()]
        if self.baselines is None:
            return torch.from_numpy(self.inner.explain(z, target=tgt).attributions).double()
        s = self.baselines.shape[0]
        zs = z.unsqueeze(0).expand(s, *z.shape).reshape(-1, *z.shape[1:])
        exp = self.inner.explain(zs, target=np.tile(tgt, s),
                                 baselines=self.baselines[:, inst].reshape(zs.shape))
        return torch.from_numpy(exp.attributions).double().view(s, *z.shape).mean(0)

    def blocks(self, inst: torch.Tensor, fn, desc: str | None = None) -> torch.Tensor:
        """``fn(start, stop)`` over blocks of at most ``per_call`` copies, concatenated; with
        ``desc``, a progress bar follows the blocks however few they are."""
        starts = range(0, len(inst), self.per_call)
        return torch.cat([fn(i, min(i + self.per_call, len(inst)))
                          for i in (progress(starts, desc, min_steps=0) if desc else starts)])
