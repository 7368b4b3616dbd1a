"""Assignment ``ig``: Integrated Gradients from scratch, and the gradient assignments' helpers."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..core import Check, CheckFailed, as_array, assert_close, define_assignment

STARTER = '''"""Assignment: Integrated Gradients from scratch.

Write ``integrated_gradients(model, x, baseline, target, n_steps=50)`` in plain PyTorch.
Check it with:  xai-suite course check ig THIS_FILE.py
"""

import torch


def integrated_gradients(model, x, baseline, target, n_steps=50):
    """Integrated Gradients (Sundararajan, Taly & Yan, 2017) of ``model``'s ``target`` output.

    For instance ``n`` and input element ``i``::

        IG_i(x) = (x_i - x'_i) * integral_0^1 d f_t(x' + a (x - x')) / d x_i  da

    where ``x'`` is the baseline and ``f_t`` the target logit. Approximate the integral with
    ``n_steps`` points on the straight path from ``x'`` to ``x`` (any Riemann rule is fine).
    Each instance is explained on its own path and for its own target.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a float tensor of shape (N, ...) to logits of shape (N, K).
    x : torch.Tensor, shape (N, ...)
        Inputs to explain (a batch: any number of trailing dimensions).
    baseline : torch.Tensor, shape (N, ...)
        Reference inputs, same shape as ``x``.
    target : torch.Tensor of int64, shape (N,)
        Class explained for each instance, in 0..K-1.
    n_steps : int
        Points of the quadrature along the path.

    Returns
    -------
    torch.Tensor, shape (N, ...), floating point
        The attributions, same shape as ``x``; row ``n`` sums (approximately) to
        ``f_t(x_n) - f_t(baseline_n)``.
    """
    raise NotImplementedError
'''


def reference(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
              n_steps: int = 50) -> torch.Tensor:
    """Integrated Gradients with the midpoint Riemann rule, written out."""
    total = torch.zeros_like(x)
    for k in range(n_steps):
        alpha = (k + 0.5) / n_steps  # midpoint of the k-th of n_steps equal pieces of [0, 1]
        z = (baseline + alpha * (x - baseline)).detach().requires_grad_(True)
        logit = model(z).gather(1, target.view(-1, 1))  # (N, 1): each row's own target
        (grad,) = torch.autograd.grad(logit.sum(), z)  # rows are independent: sum is safe
        total += grad
    return (x - baseline) * total / n_steps


# -- helpers shared by the gradient assignments ---------------------------------------------
def mlp(rng: np.random.Generator, sizes: tuple[int, ...], activation: type[nn.Module] = nn.Tanh,
        bias: bool = True, flatten: bool = False, gain: float = 1.5) -> nn.Sequential:
    """An untrained float32 MLP ``sizes = (F, H1, ..., K)`` drawn from ``rng``, in eval mode.

    ``activation`` between the Linear layers, an ``nn.Flatten`` first with ``flatten`` (inputs
    (N, ...) of F elements); weights of standard deviation ``gain / sqrt(fan_in)``.
    """
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(fan_in, fan_out, bias=bias)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(rng.normal(0, gain / np.sqrt(fan_in), (fan_out, fan_in))))
            if bias:
                lin.bias.copy_(torch.as_tensor(rng.normal(0, 0.5, fan_out)))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers).eval()


def tensor(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """float32 normal draws of ``shape``."""
    return torch.as_tensor(rng.normal(0, scale, shape), dtype=torch.float32)


def targets(rng: np.random.Generator, n: int, k: int) -> torch.Tensor:
    """``n`` class indices in 0..k-1 that use every class (when n >= k)."""
    return torch.as_tensor(rng.permutation(np.arange(n) % k), dtype=torch.int64)


def attributions(fn: Callable, name: str, x: torch.Tensor, *args, **kwargs) -> np.ndarray:
    """``fn(model, x, ...)`` (``args[0]`` the model) on clones of the tensors, as an array of x's shape."""
    model, *rest = (a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    got = as_array(fn(model, x.clone(), *rest, **kwargs), f"{name}'s result")
    if got.shape != tuple(x.shape):
        raise CheckFailed(f"{name} returned shape {got.shape}; attributions must have the inputs' "
                          f"shape {tuple(x.shape)}")
    return got


def check_tensor_result(out, x: torch.Tensor, function: str, what: str, note: str = "") -> None:
    """CheckFailed unless ``out`` is a floating-point tensor of ``x``'s shape with finite values."""
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{function} must return a torch.Tensor; got {type(out).__name__}")
    if tuple(out.shape) != tuple(x.shape):
        raise CheckFailed(f"for x of shape {tuple(x.shape)}{note} {what} has shape {tuple(out.shape)}; "
                          "it must have x's shape")
    if not out.dtype.is_floating_point:
        raise CheckFailed(f"{what} must be floating point; got {out.dtype}")
    as_array(out, what)


def target_logit(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """``f_t(x)`` per row, shape (N,), as float64."""
    with torch.no_grad():
        return model(x).gather(1, target.view(-1, 1)).squeeze(1).double().numpy()


def gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """``d f_t(x) / d x`` per row, shape of ``x``."""
    z = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(z).gather(1, target.view(-1, 1)).sum(), z)
    return g.double().numpy()


def _near(a: np.ndarray, b: np.ndarray, rtol: float = 1e-3) -> bool:
    return bool(np.allclose(a, b, rtol=rtol, atol=rtol * (np.abs(b).max() + 1e-12)))


# -- checks ----------------------------------------------------------------------------------
def _shape(fn, rng):
    model = mlp(rng, (10, 8, 3), flatten=True)
    x, b = tensor(rng, 4, 2, 5), tensor(rng, 4, 2, 5, scale=0.1)
    out = fn(model, x.clone(), b.clone(), targets(rng, 4, 3), n_steps=20)
    check_tensor_result(out, x, "integrated_gradients", "the attributions", " (N, C, T)")

def _linear(fn, rng):
    n, f, k = 5, 6, 3
    model = nn.Linear(f, k)
    with torch.no_grad():
        model.weight.copy_(tensor(rng, k, f))
        model.bias.copy_(tensor(rng, k))
    x, b, t = tensor(rng, n, f), tensor(rng, n, f, scale=0.5), targets(rng, n, k)
    got = attributions(fn, "integrated_gradients", x, model, b, t, n_steps=int(rng.integers(10, 60)))
    w = model.weight.detach().double().numpy()
    xd, bd = x.double().numpy(), b.double().numpy()
    want = (xd - bd) * w[t.numpy()]
    if _near(got, want, 1e-4):
        return
    if _near(got, np.broadcast_to(w[t.numpy()], got.shape)):
        raise CheckFailed("on a linear model IG must equal (x - baseline) * w; yours looks like the "
                          "average gradient alone: did you forget to multiply by (x - baseline)?")
    if _near(got, xd * w[t.numpy()]):
        raise CheckFailed("on a linear model IG must equal (x - baseline) * w; yours equals x * w "
                          "(gradient x input): the path must start at the baseline, and the factor "
                          "is (x - baseline), not x")
    if _near(got, (xd - bd) * w[0]):
        raise CheckFailed("on a linear model IG must equal (x - baseline) * w[target]; yours equals "
                          "(x - baseline) * w[0]: every row was explained for class 0, not its target")
    assert_close(got, want, what="on a linear model IG must equal (x - baseline) * w[target]; yours",
                 atol=1e-5 * np.abs(want).max(), rtol=1e-4)


def _path_variation(model: nn.Module, x: torch.Tensor, b: torch.Tensor, t: torch.Tensor,
                    points: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature error bounds along the straight paths, per element and per row.

    With ``g(a)`` the gradient at ``b + a (x - b)``, an n-point Riemann rule errs by at most
    ``TV(g) / n`` on ``integral g``; ``TV`` (total variation) is measured on a fine grid.

    Returns
    -------
    per_element : numpy.ndarray, shape (N, F)
        ``|x - b| * TV(g_i)``.
    per_row : numpy.ndarray, shape (N,)
        ``TV(F')`` with ``F'(a) = g(a) . (x - b)``, the derivative of ``f_t`` along the path.
    """
    a = torch.linspace(0, 1, points).view(points, 1, 1)
    z = (b + a * (x - b)).reshape(-1, x.shape[1]).requires_grad_(True)
    (g,) = torch.autograd.grad(model(z).gather(1, t.repeat(points).view(-1, 1)).sum(), z)
    g = g.view(points, *x.shape).double().numpy()
    step = (x - b).double().numpy()
    per_element = np.abs(np.diff(g, axis=0)).sum(0) * np.abs(step)
    per_row = np.abs(np.diff((g * step).sum(2), axis=0)).sum(0)
    return per_element, per_row


def _completeness(fn, rng):
    n, f, k, steps = 5, 6, 3, 200
    model = mlp(rng, (f, 16, 16, k))
    x, b, t = tensor(rng, n, f), tensor(rng, n, f, scale=0.5), targets(rng, n, k)
    got = attributions(fn, "integrated_gradients", x, model, b, t, n_steps=steps)
    diff = target_logit(model, x, t) - target_logit(model, b, t)
    sums = got.sum(axis=1)
    scale = np.maximum(np.abs(diff), np.abs(diff).mean())
    bound = _path_variation(model, x, b, t)[1] / steps
    rel = np.abs(sums - diff) / scale
    if (np.abs(sums - diff) > 0.02 * scale + bound).any():
        i = int(np.argmax(np.abs(sums - diff) / (0.02 * scale + bound)))
        raise CheckFailed(f"completeness: the attributions of row {i} sum to {sums[i]:.5g} but "
                          f"f_t(x) - f_t(baseline) = {diff[i]:.5g} (relative error {rel[i]:.1%}; "
                          f"allowed at n_steps={steps}: 2% plus what any Riemann rule may miss on "
                          f"this path, {bound[i] / scale[i]:.1%})")


def _agreement(fn, rng):
    from ...registry import create_explainer

    n, f, k = 5, 6, 3
    model = mlp(rng, (f, 12, 12, k))
    x, b, t = tensor(rng, n, f), tensor(rng, n, f, scale=0.5), targets(rng, n, k)
    got = attributions(fn, "integrated_gradients", x, model, b, t, n_steps=200)
    ours = create_explainer("native:integrated_gradients", model, n_steps=200, device="cpu")
    want = ours.explain(x, target=t.numpy(), baselines=b).attributions.astype(np.float64)
    # any Riemann rule is within |x - b| TV(gradient) / n_steps of the integral
    bound = _path_variation(model, x, b, t)[0] / 200
    assert_close(got, want, what="IG (n_steps=200) compared with xai_suite's "
                 "native:integrated_gradients (Gauss-Legendre)",
                 atol=0.005 * np.abs(want).max() + bound, rtol=0.01)


def _zero_path(fn, rng):
    n, f, k = 4, 6, 3
    model = mlp(rng, (f, 10, k))
    x, t = tensor(rng, n, f), targets(rng, n, k)
    got = attributions(fn, "integrated_gradients", x, model, x, t, n_steps=20)
    if np.abs(got).max() > 1e-6:
        raise CheckFailed(f"with baseline == x the path has length 0, so every attribution must be 0; "
                          f"yours reach {np.abs(got).max():.3g}")


def _independent(fn, rng):
    n, f, k = 4, 6, 3
    model = mlp(rng, (f, 12, k))
    x, b, t = tensor(rng, n, f), tensor(rng, n, f, scale=0.5), targets(rng, n, k)
    batch = attributions(fn, "integrated_gradients", x, model, b, t, n_steps=30)
    for i in range(n):
        one = attributions(fn, "integrated_gradients", x[i : i + 1], model, b[i : i + 1], t[i : i + 1],
                           n_steps=30)
        if not _near(one[0], batch[i], 1e-4):
            raise CheckFailed(f"row {i} explained in a batch differs from row {i} explained alone "
                              f"(largest difference {np.abs(one[0] - batch[i]).max():.3g}): each "
                              "row's attributions must depend on that row and its own target only")
        other = torch.tensor([(int(t[i]) + 1) % k])
        alt = attributions(fn, "integrated_gradients", x[i : i + 1], model, b[i : i + 1], other,
                           n_steps=30)
        if _near(alt[0], one[0], 1e-3):
            raise CheckFailed(f"changing row {i}'s target from {int(t[i])} to {int(other[0])} left its "
                              "attributions unchanged: the target must pick the logit explained")


ASSIGNMENT = define_assignment(
    "ig", "Integrated Gradients from scratch", "integrated_gradients", STARTER, reference,
    Check("shape", "returns a floating tensor of x's shape, for x of shape (N, C, T) too", _shape, 1,
          "work on x as it comes (any trailing dimensions); do not flatten or squeeze the result"),
    Check("linear", "on a linear model equals (x - baseline) * w[target] exactly", _linear, 3,
          "the gradient of a linear model is w everywhere, so any quadrature gives the same: "
          "what remains is the factor (x - baseline) and picking row target of w"),
    Check("completeness", "attributions sum to f_t(x) - f_t(baseline) within 2% (n_steps=200)",
          _completeness, 2,
          "completeness holds only when the gradients are taken along the whole path from the "
          "baseline to x, averaged, and multiplied by (x - baseline); the gradient at x alone "
          "does not have it"),
    Check("agreement", "matches xai_suite's native:integrated_gradients on an MLP (n_steps=200)",
          _agreement, 2,
          "the alphas must cover [0, 1] evenly (alpha_k = (k + 0.5) / n_steps, or k / n_steps), "
          "the points must be baseline + alpha (x - baseline), and the average must divide by "
          "n_steps"),
    Check("zero_path", "x == baseline gives all-zero attributions", _zero_path, 1,
          "IG is (x - baseline) times an average gradient: zero when x equals the baseline"),
    Check("independent", "a batch gives each row's own result, for each row's own target",
          _independent, 1,
          "select each row's logit with out.gather(1, target[:, None]) (or out[range(N), "
          "target]); out[:, target] is an N x N block that mixes the rows' targets"),
)
