"""Assignment ``smoothgrad``: SmoothGrad (Smilkov et al., 2017) from scratch.

Instance ``n`` gets Gaussian noise of standard deviation ``sigma * (max(x[n]) - min(x[n]))``,
the paper's level relative to the input's range; Captum's ``stdevs`` is absolute (with
``stdevs = sigma * (max - min)`` of one instance it has the same expectation, as tests show).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core import Check, CheckFailed, assert_close, define_assignment
from .ig import attributions, check_tensor_result, gradient, mlp, targets, tensor

STARTER = '''"""Assignment: SmoothGrad from scratch.

Write ``smoothgrad(model, x, target, n_samples=50, sigma=0.15, random_state=0)`` in plain
PyTorch. Check it with:  xai-suite course check smoothgrad THIS_FILE.py
"""

import torch


def smoothgrad(model, x, target, n_samples=50, sigma=0.15, random_state=0):
    """SmoothGrad (Smilkov et al., 2017): the input gradient averaged over noisy copies of x.

    For instance ``n``::

        SG(x_n) = 1/n_samples * sum_s  d f_t(x_n + e_s) / d x,   e_s ~ Normal(0, s_n^2 I)

    with the noise standard deviation relative to the instance's range::

        s_n = sigma * (max(x_n) - min(x_n))     (max and min over all elements of x_n)

    (Captum's ``stdevs`` is an absolute standard deviation; ours is the paper's noise level.)
    Draw the noise from a generator seeded with ``random_state``, e.g.
    ``g = torch.Generator().manual_seed(random_state)`` and
    ``torch.randn(x.shape, generator=g)``, so the same seed gives the same map.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a float tensor of shape (N, ...) to logits of shape (N, K).
    x : torch.Tensor, shape (N, ...)
        Inputs to explain.
    target : torch.Tensor of int64, shape (N,)
        Class explained for each instance.
    n_samples : int
        Noisy copies per instance.
    sigma : float
        Noise level, relative to each instance's range (0 gives the plain gradient).
    random_state : int
        Seeds the noise.

    Returns
    -------
    torch.Tensor, shape (N, ...), floating point
        The averaged gradients, same shape as ``x`` (signed: no absolute value).
    """
    raise NotImplementedError
'''


def reference(model: nn.Module, x: torch.Tensor, target: torch.Tensor, n_samples: int = 50,
              sigma: float = 0.15, random_state: int = 0) -> torch.Tensor:
    """SmoothGrad with noise relative to each instance's range, written out."""
    gen = torch.Generator().manual_seed(random_state)
    flat = x.flatten(1)
    std = sigma * (flat.max(1).values - flat.min(1).values)  # (N,): one noise level per instance
    std = std.view(-1, *[1] * (x.dim() - 1))  # (N, 1, ..., 1) to scale each instance's noise
    total = torch.zeros_like(x)
    for _ in range(n_samples):
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) * std
        noisy = (x + noise).detach().requires_grad_(True)
        logit = model(noisy).gather(1, target.view(-1, 1))  # each row's own target
        (grad,) = torch.autograd.grad(logit.sum(), noisy)
        total += grad
    return total / n_samples


def expected_smoothgrad(model: nn.Module, x: torch.Tensor, target: torch.Tensor, std: torch.Tensor,
                        samples: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo mean and standard deviation of the noisy gradient, in one batched pass.

    Parameters
    ----------
    x : torch.Tensor, shape (N, F)
    std : torch.Tensor, shape (N,)
        Noise standard deviation per instance.

    Returns
    -------
    mean, sd : numpy.ndarray, shape (N, F)
        Mean and standard deviation of one noisy gradient over ``samples`` draws.
    """
    noise = torch.randn((samples, *x.shape), generator=gen) * std.view(1, -1, 1)
    z = (x.unsqueeze(0) + noise).reshape(-1, x.shape[1]).requires_grad_(True)
    (g,) = torch.autograd.grad(model(z).gather(1, target.repeat(samples).view(-1, 1)).sum(), z)
    g = g.view(samples, *x.shape).double()
    return g.mean(0).numpy(), g.std(0).numpy()


class Sines(nn.Module):
    """``f_k(x) = sum_i A[i, k] sin(omega x_i)``: Gaussian smoothing has a closed form.

    Under noise of standard deviation ``s``, ``E[d f_k / d x_i] = A[i, k] omega cos(omega x_i)
    exp(-omega^2 s^2 / 2)``: the noise shrinks the plain gradient by ``exp(-omega^2 s^2 / 2)``.
    """

    def __init__(self, a: np.ndarray, omega: float = 1.0):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float32))
        self.omega = omega

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * x.flatten(1)) @ self.a


def _ranges(x: torch.Tensor) -> np.ndarray:
    flat = x.flatten(1).double()
    return (flat.max(1).values - flat.min(1).values).numpy()


# -- checks ----------------------------------------------------------------------------------
def _shape(fn, rng):
    model = mlp(rng, (10, 8, 3), flatten=True)
    x = tensor(rng, 4, 2, 5)
    out = fn(model, x.clone(), targets(rng, 4, 3), n_samples=5, sigma=0.15, random_state=0)
    check_tensor_result(out, x, "smoothgrad", "the map", " (N, C, T)")

def _linear(fn, rng):
    n, f, k = 5, 6, 3
    model = nn.Linear(f, k)
    with torch.no_grad():
        model.weight.copy_(tensor(rng, k, f))
        model.bias.copy_(tensor(rng, k))
    x, t = tensor(rng, n, f, scale=2.0), targets(rng, n, k)
    sigma = float(rng.uniform(0.1, 0.5))
    got = attributions(fn, "smoothgrad", x, model, t, n_samples=8, sigma=sigma,
                       random_state=int(rng.integers(1000)))
    w = model.weight.detach().double().numpy()
    if np.allclose(got, w[0], rtol=1e-4, atol=1e-5) and not (t == 0).all():
        raise CheckFailed("on a linear model SmoothGrad must equal w[target] (the gradient is w "
                          "everywhere); yours equals w[0]: every row was explained for class 0")
    assert_close(got, w[t.numpy()], what=f"on a linear model SmoothGrad (sigma={sigma:.2f}) must equal "
                 "w[target] whatever the noise; yours", atol=1e-5, rtol=1e-4)


def _sigma_zero(fn, rng):
    n, f, k = 4, 6, 3
    model = mlp(rng, (f, 16, k))
    x, t = tensor(rng, n, f), targets(rng, n, k)
    got = attributions(fn, "smoothgrad", x, model, t, n_samples=3, sigma=0.0, random_state=0)
    assert_close(got, gradient(model, x, t), what="with sigma=0 (no noise) SmoothGrad must equal the "
                 "plain gradient d f_t / d x; yours", atol=1e-5, rtol=1e-4)


def _random_state(fn, rng):
    n, f, k = 4, 6, 3
    model = mlp(rng, (f, 16, k))
    x, t = tensor(rng, n, f), targets(rng, n, k)
    seed = int(rng.integers(1000))
    first = attributions(fn, "smoothgrad", x, model, t, n_samples=10, sigma=0.2, random_state=seed)
    again = attributions(fn, "smoothgrad", x, model, t, n_samples=10, sigma=0.2, random_state=seed)
    assert_close(again, first, what=f"two calls with random_state={seed} must give the same map; "
                 "the second", atol=1e-6, rtol=1e-5)
    other = attributions(fn, "smoothgrad", x, model, t, n_samples=10, sigma=0.2, random_state=seed + 1)
    if np.abs(other - first).max() <= 1e-6 * (np.abs(first).max() + 1e-12):
        raise CheckFailed(f"random_state={seed} and random_state={seed + 1} gave the same map on a "
                          "non-linear model: the seed must drive the noise")


def _noise_scale(fn, rng):
    n, f, k, samples, sigma, omega = 4, 8, 3, 400, 0.15, 2.0
    model = Sines(rng.normal(0, 1, (f, k)), omega)
    rows = np.array([0.5, 0.8, 1.2, 1.6])[rng.permutation(n)]
    x = torch.as_tensor(rng.normal(0, 1, (n, f)) * rows[:, None], dtype=torch.float32)
    t = targets(rng, n, k)
    got = attributions(fn, "smoothgrad", x, model, t, n_samples=samples, sigma=sigma,
                       random_state=int(rng.integers(1000)))
    a = model.a.detach().double().numpy()[:, t.numpy()].T * omega  # (N, F)
    xd = x.double().numpy()
    plain = a * np.cos(omega * xd)  # the gradient at x
    denom = (plain**2).sum(1)
    ratio = (got * plain).sum(1) / denom  # least-squares shrink factor of each instance's map

    def predicted(std: np.ndarray, draws: int = samples) -> tuple[np.ndarray, np.ndarray]:
        """Shrink factor per instance under noise ``std`` (N,), and its sampling sd."""
        u = (omega * std[:, None]) ** 2
        var1 = a**2 * ((1 + np.exp(-2 * u) * np.cos(2 * omega * xd)) / 2
                       - np.exp(-u) * np.cos(omega * xd) ** 2)  # one noisy gradient's variance
        sd = np.sqrt((plain**2 * var1.clip(min=0)).sum(1) / draws) / denom
        return np.exp(-u[:, 0] / 2), sd

    s = sigma * _ranges(x)  # the noise std each instance must get
    shrink, sd = predicted(s)
    if (np.abs(ratio - shrink) <= 5 * sd + 0.01).all():
        return
    fmt = ", ".join
    msg = (f"noise scale: on f(x) = sum_i a_i sin({omega:g} x_i) noise of std s shrinks the gradient by "
           f"exp(-{omega**2:g} s^2 / 2); your maps shrink it by {fmt(f'{r:.3f}' for r in ratio)} (rows "
           f"0..{n - 1}); noise std sigma * (max - min) = {fmt(f'{v:.2f}' for v in s)} shrinks it by "
           f"{fmt(f'{v:.3f}' for v in shrink)}")
    mistakes = (  # (noise std, draws averaged, what it means)
        (s / np.sqrt(samples), 1, "Your maps are one gradient at x + the average noise: average the "
         "gradients of the noisy copies, not the noisy copies (their mean is just x)"),
        (np.full(n, sigma), samples, f"Your noise std is sigma = {sigma} itself: scale it by each instance's "
         "max - min"),
        (np.full(n, sigma * (xd.max() - xd.min())), samples, "Your noise std uses the max - min "
         "of the whole batch: take it per instance"),
        (sigma * xd.std(1), samples, "Your noise std is sigma times the instance's standard "
         "deviation: use its max - min"),
    )
    # name the mistake that explains the shrink factors best, if one explains them at all
    z = [np.abs(ratio - want) / (spread + 0.003) for want, spread in
         (predicted(std, draws) for std, draws, _ in mistakes)]
    best = int(np.argmin([(zi**2).sum() for zi in z]))
    if z[best].max() <= 6:
        msg += f". {mistakes[best][2]}"
    raise CheckFailed(msg)


def _statistics(fn, rng):
    n, f, k, samples, sigma = 4, 6, 3, 100, 0.15
    model = mlp(rng, (f, 16, 16, k))
    x, t = tensor(rng, n, f, scale=1.5), targets(rng, n, k)
    got = attributions(fn, "smoothgrad", x, model, t, n_samples=samples, sigma=sigma,
                       random_state=int(rng.integers(1000)))
    std = torch.as_tensor(sigma * _ranges(x), dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    big = 8000
    mean, sd = expected_smoothgrad(model, x, t, std, big, gen)
    tol = 5 * sd / np.sqrt(samples) + 5 * sd / np.sqrt(big) + 1e-6
    z = np.abs(got - mean) / (sd / np.sqrt(samples) + 1e-12)
    if (np.abs(got - mean) > tol).any():
        i = tuple(int(j) for j in np.unravel_index(int(np.argmax(np.abs(got - mean) / tol)), got.shape))
        raise CheckFailed(f"statistics: with n_samples={samples} each value of the map should lie "
                          f"within 5 standard errors of the expected smoothed gradient; at {i} yours is "
                          f"{got[i]:.4g}, expected {mean[i]:.4g} +- {sd[i] / np.sqrt(samples):.2g} "
                          f"({z[i]:.0f} standard errors away)")


ASSIGNMENT = define_assignment(
    "smoothgrad", "SmoothGrad from scratch", "smoothgrad", STARTER, reference,
    Check("shape", "returns a floating tensor of x's shape, for x of shape (N, C, T) too", _shape, 1,
          "add noise of x's shape and return the gradient with respect to the noisy input, "
          "averaged: no flattening, no absolute value"),
    Check("linear", "on a linear model equals w[target] whatever the noise", _linear, 1,
          "a linear model's gradient is the row target of its weight matrix at every point; "
          "pick each row's logit with out.gather(1, target[:, None])"),
    Check("sigma_zero", "sigma=0 gives the plain gradient", _sigma_zero, 1,
          "the noise std is sigma * (max - min): zero when sigma is zero"),
    Check("random_state", "the same random_state repeats the map; another seed changes it",
          _random_state, 2,
          "draw all noise from torch.Generator().manual_seed(random_state) (pass generator= to "
          "torch.randn), never from the global random state"),
    Check("noise_scale", "the noise std of each instance is sigma * (max(x_n) - min(x_n))",
          _noise_scale, 3,
          "compute max - min per instance (over all its elements), not over the batch and not "
          "the standard deviation; average gradients taken at x + noise"),
    Check("statistics", "the map is the mean noisy gradient, within its sampling error", _statistics,
          2,
          "each noisy copy needs its own fresh noise, and the map is the mean of their gradients "
          "(divide by n_samples)"),
)
