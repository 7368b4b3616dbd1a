"""Assignment ``kernel_shap``: KernelSHAP from scratch, every coalition enumerated."""

from __future__ import annotations

import itertools
from math import comb, factorial

import numpy as np

from ..core import Check, CheckFailed, as_array, assert_close, batched, define_assignment

STARTER = '''"""Assignment: KernelSHAP from scratch.

Write ``kernel_shap(f, x, background)``: the Shapley values of one prediction, computed the
KernelSHAP way (Lundberg & Lee, 2017) with every coalition of features enumerated, so the
answer is exact. Check it with:  xai-suite course check kernel_shap THIS_FILE.py

The game. A coalition S (a subset of the F features) is worth
    v(S) = mean over background rows b of f(z),  z_i = x_i for i in S, z_i = b_i otherwise,
so v(empty) = mean f(background) and v(all) = f(x). The Shapley values phi (F,) satisfy
    sum(phi) = f(x) - mean f(background)          (efficiency).

The recipe.
1. Coalition matrix: Z (2^F, F) of 0/1, one row per subset (itertools.product helps).
2. Values: build every masked input x_S + background_{not S} for every coalition and every
   background row (2^F * B rows), call f once on all of them, average over the background.
3. Shapley kernel weight of a coalition of size s, 0 < s < F:
       pi(s) = (F - 1) / (comb(F, s) * s * (F - s)).
   The empty and the full coalition have infinite weight: they are constraints
   (phi_0 = v(empty), sum(phi) = v(all) - v(empty)). Either impose them exactly (eliminate
   one feature: phi_F = v(all) - v(empty) - sum of the others) or give those two rows a huge
   weight (e.g. 1e6) in the regression.
4. Weighted least squares of v(S) - v(empty) on Z with weights pi: the coefficients are phi.
"""

import itertools
from math import comb

import numpy as np


def kernel_shap(f, x, background):
    """Exact KernelSHAP values of ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        Takes a 2-D array of shape (M, F) and returns the model's outputs for one class,
        shape (M,). Call it on batches (f(x[None]) for x alone), not on single rows.
    x : numpy.ndarray, shape (F,)
        The instance explained; F <= 10.
    background : numpy.ndarray, shape (B, F)
        Background rows that stand in for absent features.

    Returns
    -------
    numpy.ndarray, shape (F,)
        phi, with phi.sum() == f(x) - mean f(background).
    """
    raise NotImplementedError
'''


def reference(f, x, background):
    """KernelSHAP with every coalition: the Shapley values of the background game, written out."""
    x, background = np.asarray(x, dtype=float), np.asarray(background, dtype=float)
    if x.ndim != 1 or background.ndim != 2 or background.shape[1] != x.shape[0]:
        raise ValueError(f"expected x (F,) and background (B, F); got {x.shape} and {background.shape}")
    n = x.shape[0]
    Z = np.array(list(itertools.product([0.0, 1.0], repeat=n)))  # (2^F, F); row 0 empty, last full
    masked = Z[:, None, :] * x + (1 - Z[:, None, :]) * background[None]  # (2^F, B, F)
    v = np.asarray(f(masked.reshape(-1, n)), dtype=float).reshape(len(Z), -1).mean(axis=1)  # (2^F,)
    v_empty, v_full = v[0], v[-1]
    inner = Z[1:-1]  # the proper, non-empty coalitions
    s = inner.sum(axis=1)
    weight = (n - 1) / (np.array([comb(n, int(k)) for k in s]) * s * (n - s))
    # efficiency imposed exactly: phi_last = (v_full - v_empty) - sum(phi_rest)
    A = inner[:, :-1] - inner[:, -1:]
    b = v[1:-1] - v_empty - inner[:, -1] * (v_full - v_empty)
    sw = np.sqrt(weight)[:, None]
    phi_rest = np.linalg.lstsq(sw * A, sw[:, 0] * b, rcond=None)[0]
    return np.append(phi_rest, v_full - v_empty - phi_rest.sum())


# -- the games the checks play -----------------------------------------------------------------
def _mlp(rng, n_features: int, hidden: int = 8, dummy=None, tied=None):
    """A random 2-layer tanh MLP (M, F) -> (M,); ``dummy`` ignores one input, ``tied`` ties two."""
    W1 = rng.normal(0, 1, (n_features, hidden))
    b1 = rng.normal(0, 0.5, hidden)
    w2, b2 = rng.normal(0, 1, hidden), rng.normal()
    if dummy is not None:
        W1[dummy] = 0.0
    if tied is not None:
        W1[tied[1]] = W1[tied[0]]
    return batched(lambda Z: np.tanh(Z @ W1 + b1) @ w2 + b2, (n_features,), "f", "one row")


def _instance(rng, n_features: int, n_baseline_samples: int):
    x = rng.normal(0, 1.5, n_features)
    return x, rng.normal(0, 1, (n_baseline_samples, n_features)) + rng.normal(0, 0.5, n_features)


def _exact_shapley(f, x, background) -> np.ndarray:
    """Brute-force Shapley values of the background game: the weighted marginal contributions."""
    n = x.shape[0]
    Z = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    masked = Z[:, None, :] * x + (1 - Z[:, None, :]) * background[None]
    v = f(masked.reshape(-1, n)).reshape(len(Z), -1).mean(axis=1)
    index = {tuple(int(t) for t in z): k for k, z in enumerate(Z)}
    phi = np.zeros(n)
    for i in range(n):
        for z, k in index.items():
            if z[i]:
                continue
            s = sum(z)
            with_i = (*z[:i], 1, *z[i + 1:])
            phi[i] += factorial(s) * factorial(n - s - 1) / factorial(n) * (v[index[with_i]] - v[k])
    return phi


def _phi(fn, f, x, background) -> np.ndarray:
    n = x.shape[0]
    got = as_array(fn(f, x.copy(), background.copy()), f"kernel_shap(f, x, background) with F = {n}")
    if got.shape != (n,):
        raise CheckFailed(f"kernel_shap must return phi of shape (F,) = ({n},); got shape {got.shape}")
    return got


def _efficiency(fn, rng):
    for _ in range(2):
        n, nb = int(rng.integers(3, 8)), int(rng.integers(4, 12))
        f = _mlp(rng, n)
        x, bg = _instance(rng, n, nb)
        phi = _phi(fn, f, x, bg)
        want = float(f(x[None])[0] - f(bg).mean())
        if abs(phi.sum() - want) > 1e-6 * (1 + abs(want)):
            raise CheckFailed(f"efficiency broken: sum(phi) = {phi.sum():.6g} but f(x) - mean "
                              f"f(background) = {want:.6g} (F = {n}, B = {nb})")


def _agreement(fn, rng):
    for n in (int(rng.integers(3, 6)), 10):
        nb = int(rng.integers(3, 8))
        f = _mlp(rng, n)
        x, bg = _instance(rng, n, nb)
        assert_close(_phi(fn, f, x, bg), _exact_shapley(f, x, bg),
                     what=f"phi vs the exact (brute-force) Shapley values, F = {n}", atol=1e-6, rtol=1e-6)


def _symmetry(fn, rng):
    n, nb = int(rng.integers(4, 8)), int(rng.integers(4, 10))
    i, j = (int(k) for k in rng.choice(n, 2, replace=False))
    f = _mlp(rng, n, tied=(i, j))
    x, bg = _instance(rng, n, nb)
    x[j], bg[:, j] = x[i], bg[:, i]
    phi = _phi(fn, f, x, bg)
    if abs(phi[i] - phi[j]) > 1e-6 * (1 + abs(phi[i])):
        raise CheckFailed(f"symmetry broken: features {i} and {j} enter f identically and have equal "
                          f"values in x and in every background row, yet phi[{i}] = {phi[i]:.6g} and "
                          f"phi[{j}] = {phi[j]:.6g}")


def _dummy(fn, rng):
    n, nb = int(rng.integers(3, 8)), int(rng.integers(4, 10))
    k = int(rng.integers(n))
    f = _mlp(rng, n, dummy=k)
    x, bg = _instance(rng, n, nb)
    phi = _phi(fn, f, x, bg)
    if abs(phi[k]) > 1e-6 * (1 + np.abs(phi).max()):
        raise CheckFailed(f"dummy broken: f ignores feature {k}, yet phi[{k}] = {phi[k]:.6g} "
                          f"(phi = {np.array2string(phi, precision=4)})")


def _linear(fn, rng):
    n, nb = int(rng.integers(3, 9)), int(rng.integers(3, 10))
    w, b0 = rng.normal(0, 1, n), rng.normal()
    f = batched(lambda Z: Z @ w + b0, (n,), "f", "one row")
    x, bg = _instance(rng, n, nb)
    assert_close(_phi(fn, f, x, bg), w * (x - bg.mean(axis=0)),
                 what="phi of a linear f(z) = w.z + b (expected w * (x - mean(background)))",
                 atol=1e-6, rtol=1e-6)


ASSIGNMENT = define_assignment(
    "kernel_shap", "KernelSHAP from scratch", "kernel_shap", STARTER, reference,
    Check("efficiency", "sum(phi) equals f(x) - mean f(background)", _efficiency, 2,
          "the empty and full coalitions are constraints, not ordinary rows: impose "
          "sum(phi) = v(all) - v(empty) exactly (eliminate one feature) or give those two "
          "rows a huge weight; and fill absent features from the background rows, averaging "
          "f over them, not with zeros"),
    Check("agreement", "equals the exact Shapley values (brute force over all subsets) on "
          "random tanh MLPs, F up to 10", _agreement, 3,
          "the regression weight of a coalition of size s is (F-1) / (comb(F, s) s (F-s)): "
          "uniform weights give a different (Banzhaf-like) answer; check that the coalition "
          "values average f over the background rows, one background row per masked copy"),
    Check("symmetry", "two features f treats alike, with equal values, get equal phi",
          _symmetry, 1,
          "symmetric players must be treated alike: enumerate all coalitions and weight "
          "them by size only, never by which features they hold"),
    Check("dummy", "a feature f ignores gets phi = 0", _dummy, 1,
          "a feature that never changes f adds nothing to any coalition, so its Shapley value is "
          "0; the Shapley kernel with both constraints gives exactly that, while other "
          "weights or a free, unconstrained intercept generally do not"),
    Check("linear", "for f(z) = w.z + b, phi = w * (x - mean(background))", _linear, 2,
          "absent features take the background's values, so a linear model's phi is measured "
          "from the background mean, not from zero"),
)
