"""How good a counterfactual is: validity, proximity, sparsity, plausibility.

Computed once, for every counterfactual method, by
:class:`~xai_suite.base.CounterfactualExplainer`.
"""

from __future__ import annotations

import numpy as np
import torch


def changed_points(x: np.ndarray, cf: np.ndarray, *, rtol: float = 1e-5, atol: float = 1e-6) -> np.ndarray:
    """Elements a counterfactual changed.

    Parameters
    ----------
    x, cf : numpy.ndarray, shape (N, ...)

    Returns
    -------
    numpy.ndarray of bool, shape (N, ...)
    """
    return ~np.isclose(cf, x, rtol=rtol, atol=atol)


def dtw_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dynamic time warping distance between paired series, batched.

    Multivariate series are aligned jointly (dependent DTW), the local cost being the squared
    Euclidean distance between the channel vectors; no window. The result is the cost summed
    along the optimal path (aeon's ``dtw_distance`` convention: no square root).

    Parameters
    ----------
    a, b : numpy.ndarray, shape (N, C, T)

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"dtw_distance pairs series of one shape (N, C, T); got {a.shape}, {b.shape}")
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n, _, t = a64.shape
    cost = ((a64[:, :, :, None] - b64[:, :, None, :]) ** 2).sum(1)  # (N, T, T)
    acc = np.full((n, t + 1, t + 1), np.inf)
    acc[:, 0, 0] = 0.0
    # cells (i, j) with i + j = k depend only on the anti-diagonals k - 1 and k - 2
    for k in range(2, 2 * t + 1):
        i = np.arange(max(1, k - t), min(t, k - 1) + 1)
        j = k - i
        best = np.minimum(np.minimum(acc[:, i - 1, j - 1], acc[:, i - 1, j]), acc[:, i, j - 1])
        acc[:, i, j] = cost[:, i - 1, j - 1] + best
    return acc[:, t, t]


def plausibility(cf: np.ndarray, X_ref: np.ndarray, k: int = 5) -> np.ndarray:
    """Outlier score of each counterfactual against reference data (a k-NN distance ratio).

    The mean Euclidean distance from a counterfactual to its ``k`` nearest reference
    instances, divided by the same quantity for the reference instances themselves
    (leave-one-out, median over the reference set). About 1 for a counterfactual as typical
    as the data; much larger for one far from it.

    Parameters
    ----------
    cf : numpy.ndarray, shape (N, ...)
    X_ref : numpy.ndarray, shape (M, ...)
        M >= 2 reference instances, e.g. the training data of the counterfactual's class.
    k : int

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
    """
    m = X_ref.shape[0]
    if m < 2:
        raise ValueError("plausibility needs at least 2 reference instances")
    k = min(k, m - 1)
    ref = torch.from_numpy(np.asarray(X_ref, np.float64).reshape(m, -1))
    q = torch.from_numpy(np.asarray(cf, np.float64).reshape(cf.shape[0], -1))
    d_ref = torch.cdist(ref, ref)
    d_ref.fill_diagonal_(float("inf"))
    typical = d_ref.topk(k, dim=1, largest=False).values.mean(1).median()
    d = torch.cdist(q, ref).topk(k, dim=1, largest=False).values.mean(1)
    return (d / typical.clamp_min(1e-12)).numpy()


def counterfactual_metrics(
    x: np.ndarray,
    cf: np.ndarray,
    cf_predictions: np.ndarray,
    target: np.ndarray,
    X_ref: np.ndarray,
    ref_class: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-instance quality of counterfactuals.

    Parameters
    ----------
    x, cf : numpy.ndarray, shape (N, ...)
        Inputs and their counterfactuals.
    cf_predictions : numpy.ndarray, shape (N, K)
        The model's outputs for ``cf``.
    target : numpy.ndarray of int, shape (N,)
        The class each counterfactual should get.
    X_ref : numpy.ndarray, shape (M, ...)
        Training data; plausibility is measured against the instances of the target class.
    ref_class : numpy.ndarray of int, shape (M,)
        The class of each training instance.

    Returns
    -------
    dict of numpy.ndarray, each of shape (N,)
        ``valid``, ``new_class``, ``l1``, ``l2``, ``dtw`` (time series only), ``changed``
        (number of changed elements), ``changed_fraction`` and ``plausibility``.
    """
    n = x.shape[0]
    diff = (cf - x).reshape(n, -1).astype(np.float64)
    changed = changed_points(x, cf).reshape(n, -1)
    new_class = cf_predictions.argmax(1)
    out = {
        "valid": new_class == target,
        "new_class": new_class,
        "l1": np.abs(diff).sum(1),
        "l2": np.sqrt((diff**2).sum(1)),
    }
    if x.ndim == 3:
        out["dtw"] = dtw_distance(x, cf)
    out["changed"] = changed.sum(1)
    out["changed_fraction"] = changed.mean(1)
    score = np.full(n, np.nan)
    for c in np.unique(target):
        ref = X_ref[ref_class == c]
        if ref.shape[0] >= 2:
            score[target == c] = plausibility(cf[target == c], ref)
    out["plausibility"] = score
    return out
