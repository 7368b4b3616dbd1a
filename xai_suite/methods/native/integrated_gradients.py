"""Integrated gradients, batched over instances x baseline draws x integration steps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..._validation import check_positive_int
from ...base import Attribution, Batched, Call, GradientExplainer, Seeded
from ...baselines import BaselineSpec
from ...batching import group_blocks
from ...registry import register_explainer

QUADRATURES = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)


def quadrature(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alphas`` in [0, 1] and weights (summing to 1) for integrating over the path.

    The same points as Captum's. Weights too, except for ``riemann_trapezoid``: Captum
    spaces its points ``1/(n-1)`` apart but weights them ``1/n`` (ends halved), so its
    weights sum to ``1 - 1/n`` and its attributions come out scaled by ``(n-1)/n``.

    Returns
    -------
    alphas, weights : numpy.ndarray, shape (n_steps,)
    """
    check_positive_int(n_steps=n_steps)
    n = int(n_steps)
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1) / 2, w / 2
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError("riemann_trapezoid needs n_steps >= 2")
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] /= 2
        return np.linspace(0, 1, n), w
    offsets = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}
    if method not in offsets:
        raise ValueError(f"method must be one of {', '.join(QUADRATURES)}; got {method!r}")
    return (np.arange(n) + offsets[method]) / n, np.full(n, 1.0 / n)


def path_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    baselines: torch.Tensor,
    target: torch.Tensor,
    alphas: np.ndarray,
    weights: np.ndarray,
    rows: int,
) -> torch.Tensor:
    """Weighted sum of target gradients along straight paths from each baseline to its input.

    There are ``S * N`` paths (pair ``p``: baseline draw ``p // N``, instance ``p % N``) of
    ``K`` steps. Each model call takes a block of whole paths (``rows // K`` of them), or,
    when one path does not fit in ``rows``, a slice of one path's steps; blocks are built on
    the fly, so memory stays bounded whatever ``N``, ``S`` and ``K``. Whole-path blocks need
    no gather or scatter: the weighted sum over steps is one reduction.

    Parameters
    ----------
    forward : callable
        ``(n, ...) -> (n, K_out)`` differentiable model outputs.
    x : torch.Tensor, shape (N, ...)
    baselines : torch.Tensor, shape (S, N, ...)
    target : torch.Tensor of int, shape (N,)
    alphas, weights : numpy.ndarray, shape (K,)
    rows : int
        Rows per model call.

    Returns
    -------
    torch.Tensor, shape (S, N, ...)
        ``sum_k weights[k] * grad f_target(b + alphas[k] (x - b))`` per pair.
    """
    s, n = baselines.shape[:2]
    feat = x.shape[1:]
    flat_b = baselines.reshape(s * n, *feat)
    shape = (1, -1) + (1,) * len(feat)
    alphas_t = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).view(shape)
    weights_t = torch.as_tensor(weights, dtype=x.dtype, device=x.device).view(shape)
    acc = torch.zeros_like(flat_b)
    for pairs, steps in group_blocks(s * n, len(alphas), rows, "integrated gradients"):
        inst = torch.arange(pairs.start, pairs.stop, device=x.device) % n
        z = torch.lerp(flat_b[pairs].unsqueeze(1), x[inst].unsqueeze(1), alphas_t[:, steps])
        n_steps = z.shape[1]
        z = z.reshape(-1, *feat).requires_grad_(True)
        out = forward(z)
        sel = out.gather(1, target[inst].repeat_interleave(n_steps).unsqueeze(1)).sum()
        (grad,) = torch.autograd.grad(sel, z)
        acc[pairs] += (grad.view(len(inst), n_steps, *feat) * weights_t[:, steps]).sum(1)
    return acc.reshape(s, n, *feat)


@register_explainer(
    "integrated_gradients", library="native", modalities=("tabular", "timeseries", "image"),
    model_kinds=("torch",), needs_baseline=True, has_convergence_delta=True, multi_input=True,
    recommended=True,
    summary="Integrated gradients batched over instances, steps and baseline draws "
    "(expected gradients with a random baseline)",
    reference="Sundararajan, Taly & Yan (2017), Axiomatic Attribution for Deep Networks; "
    "Erion et al. (2021), expected gradients",
)
class IntegratedGradients(GradientExplainer, Batched, Seeded):
    """Integrated gradients with any registered baseline, batched over all instances.

    Parameters
    ----------
    model : torch.nn.Module
    baseline : str, float, callable or Baseline
        Reference input (see :mod:`xai_suite.baselines`); ``"zeros"`` as in Captum.
    n_steps : int
        Integration points per path (50, as Captum).
    quadrature : str
        ``gausslegendre`` (Captum's default) or ``riemann_left|right|middle|trapezoid``
        (Captum calls it ``method``; that name is ``xs.explain``'s registry name).
    n_baseline_samples : int
        Draws per instance from a random baseline; IG is averaged over them
        (``baseline="training_sample"`` gives expected gradients). Ignored for
        deterministic baselines.
    """

    baseline: BaselineSpec = "zeros"
    n_steps: int = 50
    quadrature: str = "gausslegendre"
    n_baseline_samples: int = 1

    def _attribute(self, call: Call, *, baselines, feature_mask) -> Attribution:
        alphas, weights = quadrature(self.quadrature, self.n_steps)
        check_positive_int(n_baseline_samples=self.n_baseline_samples)
        b = self._baselines(call, baselines, self.n_baseline_samples)
        grads = path_gradients(
            call.model.forward, call.x, b, call.target_t, alphas, weights, call.rows
        )
        attr = ((call.x.unsqueeze(0) - b) * grads).mean(0)
        return Attribution(attr, b, {"n_baseline_samples_used": int(b.shape[0])})
