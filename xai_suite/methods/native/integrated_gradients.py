"""Integrated gradients, batched over instances x baseline draws x integration steps."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from ..._validation import check_positive_int
from ...base import Attribution, Batched, Call, GradientExplainer, Seeded, _model_errors, _predict
from ...baselines import Baseline, BaselineSpec
from ...batching import group_blocks
from ...modeling import NonFiniteOutputError
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
    alphas, weights = _quadrature(method, int(n_steps))
    return alphas.copy(), weights.copy()


@functools.lru_cache(maxsize=64)
def _quadrature(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quadrature`, computed once per ``(method, n)`` (``leggauss`` solves an eigenvalue
    problem: ~0.5 ms at 8 nodes); the cached arrays are read-only."""
    alphas, weights = _nodes(method, n)
    for a in (alphas, weights):
        a.flags.writeable = False
    return alphas, weights


def _nodes(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
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
    alphas_t = torch.tensor(alphas, dtype=x.dtype, device=x.device).view(shape)
    weights_t = torch.tensor(weights, dtype=x.dtype, device=x.device).view(shape)
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

    def _defers_predictions(self, *, explicit_baselines: bool) -> bool:
        # the predictions come from the path's own forward passes wherever the baselines can
        # be drawn before the target is known
        return explicit_baselines or target_free(self._baseline())

    def _attribute(self, call: Call, *, baselines, feature_mask) -> Attribution:
        check_positive_int(n_steps=self.n_steps)
        alphas, weights = _quadrature(self.quadrature, int(self.n_steps))  # cached, read-only
        check_positive_int(n_baseline_samples=self.n_baseline_samples)
        b = self._baselines(call, baselines, self.n_baseline_samples)
        if call.deferred:
            grads = fused_path_gradients(call, b, alphas, weights)
        else:
            grads = path_gradients(
                call.model.forward, call.x, b, call.target_t, alphas, weights, call.rows
            )
        attr = ((call.x.unsqueeze(0) - b) * grads).mean(0)
        return Attribution(attr, b, {"n_baseline_samples_used": int(b.shape[0])})


#: Packages whose baselines are known to draw without looking at the target (unless they are
#: stochastic, seeded per target, or learn labels); a third party's may look at it.
_OWN_PACKAGES = ("xai_suite", "xai_suite_tabular", "xai_suite_timeseries", "xai_suite_image",
                 "xai_suite_llm")


def target_free(baseline: Baseline) -> bool:
    """Whether ``baseline`` draws the same references whatever the explained target, so that
    they can be drawn before the predictions (and a ``None`` target's classes) are known.

    True for the suite's own deterministic baselines that learn no labels (``zeros``,
    ``constant``, ``blur``, ``training_mean``, a user function of the inputs, ...); False for
    stochastic ones (their draws are seeded per target), ``nearest_unlike`` and any baseline
    class defined outside the suite.
    """
    own = type(baseline).__module__.partition(".")[0] in _OWN_PACKAGES
    return own and not baseline.stochastic and not baseline.needs_labels


def _as_predictions(out: torch.Tensor) -> np.ndarray:
    """Model outputs as :meth:`ModelWrapper.predict` returns them (float64 stays, else float32)."""
    out = out.detach()
    return (out if out.dtype == torch.float64 else out.float()).cpu().numpy()


def fused_path_gradients(
    call: Call, baselines: torch.Tensor, alphas: np.ndarray, weights: np.ndarray
) -> torch.Tensor:
    """:func:`path_gradients` for a call whose predictions are deferred, supplying them and the
    baselines' outputs from the path's own forward passes.

    When the path rows and the endpoints the path lacks (``x`` unless ``alphas`` ends at 1,
    the baselines unless it starts at 0: Gauss-Legendre nodes contain neither) fit in one
    chunk of ``call.rows``, they go through the model in ONE call: the inputs' outputs give the
    predictions and so the target, the baselines' give the completeness base values, and one
    backward pass gives the gradients. Otherwise the inputs and baselines go through the
    model together, without gradients, in chunks of ``call.rows``, before
    :func:`path_gradients`.

    Parameters
    ----------
    call : Call
        With ``call.deferred``; its predictions and target are set here, and
        ``call.data["reference_outputs"]`` to ``(baselines, outputs (S * N, K))``.
    baselines : torch.Tensor, shape (S, N, ...)
    alphas, weights : numpy.ndarray, shape (K,)

    Returns
    -------
    torch.Tensor, shape (S, N, ...)
        As :func:`path_gradients`.
    """
    x, model = call.x, call.model
    s, n = baselines.shape[:2]
    k, feat = len(alphas), x.shape[1:]
    flat_b = baselines.reshape(s * n, *feat)
    x_node, b_node = bool(alphas[-1] == 1.0), bool(alphas[0] == 0.0)
    path_rows = s * n * k
    b_eval = flat_b[:1] if _one_reference(flat_b) else flat_b  # one zero row, not N of them
    extra = [] if x_node else [x]
    extra += [] if b_node else [b_eval]
    if path_rows + sum(len(e) for e in extra) > call.rows:  # several chunks
        _endpoint_outputs(call, baselines)
        return path_gradients(model.forward, x, baselines, call.target_t, alphas, weights, call.rows)

    shape = (1, -1) + (1,) * len(feat)
    alphas_t = torch.tensor(alphas, dtype=x.dtype, device=x.device).view(shape)
    weights_t = torch.tensor(weights, dtype=x.dtype, device=x.device).view(shape)
    x_pairs = x.unsqueeze(0).expand(s, *x.shape).reshape(s * n, 1, *feat)
    z = torch.lerp(flat_b.unsqueeze(1), x_pairs, alphas_t).reshape(path_rows, *feat)
    z = torch.cat([z, *extra]).requires_grad_(True) if extra else z.requires_grad_(True)
    # where each endpoint's output is: a path node (pair p < N is instance p, draw 0) or a row after
    x_rows = (torch.arange(n) * k + k - 1) if x_node else torch.arange(path_rows, path_rows + n)
    b_start = path_rows + (0 if x_node else n)
    b_rows = (torch.arange(s * n) * k if b_node else
              torch.arange(b_start, b_start + len(b_eval)).expand(s * n) if len(b_eval) == 1 else
              torch.arange(b_start, b_start + s * n))
    try:
        with _model_errors(x):
            out = model.forward(z)
    except NonFiniteOutputError as exc:  # name the inputs' rows where they are the bad ones
        bad = np.flatnonzero(np.isin(x_rows.numpy(), exc.rows))
        if len(bad):
            raise NonFiniteOutputError(bad, n) from None
        raise
    x_rows, b_rows = x_rows.to(out.device), b_rows.to(out.device)
    call.supply_predictions(_as_predictions(out[x_rows]))
    call.data["reference_outputs"] = (baselines, _as_predictions(out[b_rows]))
    target = call.target_t.repeat(s).repeat_interleave(k)  # pair p is instance p % N
    sel = out[:path_rows].gather(1, target.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(sel, z)
    grads = (grad[:path_rows].view(s * n, k, *feat) * weights_t).sum(1)
    return grads.reshape(s, n, *feat)


def _endpoint_outputs(call: Call, baselines: torch.Tensor) -> None:
    """Supply ``call``'s predictions and its baselines' outputs from one no-gradient pass over
    the inputs and baselines together (in chunks of ``call.rows``)."""
    x, n = call.x, call.x.shape[0]
    flat_b = baselines.reshape(-1, *x.shape[1:])
    one = _one_reference(flat_b)
    try:
        out = _predict(call.model, torch.cat([x, flat_b[:1] if one else flat_b]), call.rows)
    except NonFiniteOutputError as exc:  # the rows of the inputs, else of the baselines
        bad_x = exc.rows[exc.rows < n]
        if len(bad_x):
            raise NonFiniteOutputError(bad_x, n) from None
        bad_b = np.arange(len(flat_b)) if one else exc.rows - n
        raise NonFiniteOutputError(bad_b, len(flat_b)) from None
    call.supply_predictions(out[:n])
    ref = np.repeat(out[n:], len(flat_b), axis=0) if one else out[n:]
    call.data["reference_outputs"] = (baselines, ref)


def _one_reference(flat_b: torch.Tensor) -> bool:
    """Whether every baseline row (S * N, ...) is the same (zeros, a constant, a training mean):
    then one row's output stands for all."""
    return len(flat_b) > 1 and bool((flat_b == flat_b[:1]).all())
