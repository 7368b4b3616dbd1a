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

    Dependent DTW: channels aligned jointly, local cost the squared Euclidean distance of the
    channel vectors, no window; the cost summed along the optimal path, no square root (aeon's
    ``dtw_distance``). Memory O(N C T): two anti-diagonals of the cost matrix at a time.

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
    # cells (i, j) with i + j = k depend only on the anti-diagonals k - 1 and k - 2, indexed by i
    before = np.full((n, t + 1), np.inf)  # diagonal k - 2
    before[:, 0] = 0.0
    last = np.full((n, t + 1), np.inf)  # diagonal k - 1
    for k in range(2, 2 * t + 1):
        i = np.arange(max(1, k - t), min(t, k - 1) + 1)
        j = k - i
        cost = ((a64[:, :, i - 1] - b64[:, :, j - 1]) ** 2).sum(1)  # (N, len(i))
        best = np.minimum(np.minimum(before[:, i - 1], last[:, i - 1]), last[:, i])
        current = np.full((n, t + 1), np.inf)
        current[:, i] = cost + best
        before, last = last, current
    return last[:, t]


#: Most reference instances whose leave-one-out k-NN distance gives plausibility's typical one.
TYPICAL_ROWS = 2000


def plausibility(cf: np.ndarray, X_ref: np.ndarray, k: int = 5) -> np.ndarray:
    """Outlier score of each counterfactual against reference data (a k-NN distance ratio).

    The mean Euclidean distance from a counterfactual to its ``k`` nearest reference
    instances, divided by the median of the same (leave-one-out) over at most
    :data:`TYPICAL_ROWS` evenly spaced reference instances: about 1 for a counterfactual as
    typical as the data, much larger for one far from it. Distances are computed in blocks of
    about 64 MiB, so memory and time grow linearly with the reference set.

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
    rows = np.linspace(0, m - 1, min(m, TYPICAL_ROWS)).round().astype(np.int64)  # all, up to 2000
    typical = _knn_mean(ref[rows], ref, k, leave_one_out=rows).median()
    return (_knn_mean(q, ref, k) / typical.clamp_min(1e-12)).numpy()


def _knn_mean(q: torch.Tensor, ref: torch.Tensor, k: int, leave_one_out: np.ndarray | None = None,
              budget: int = 2**26) -> torch.Tensor:
    """Mean distance (N,) from each row of ``q`` to its ``k`` nearest rows of ``ref``, ``budget``
    bytes of distances at a time; ``leave_one_out`` (N,): the row of ``ref`` each row of ``q``
    is, not its own neighbour."""
    step = max(1, budget // (8 * ref.shape[0]))
    out = []
    for start in range(0, q.shape[0], step):
        d = torch.cdist(q[start : start + step], ref)
        if leave_one_out is not None:
            own = torch.from_numpy(leave_one_out[start : start + step])
            d[torch.arange(d.shape[0]), own] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).values.mean(1))
    return torch.cat(out)


def counterfactual_metrics(x: np.ndarray, cf: np.ndarray, cf_predictions: np.ndarray, target: np.ndarray,
                           X_ref: np.ndarray, ref_class: np.ndarray) -> dict[str, np.ndarray]:
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
    out = {"valid": new_class == target, "new_class": new_class, "l1": np.abs(diff).sum(1),
           "l2": np.sqrt((diff**2).sum(1))}
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
