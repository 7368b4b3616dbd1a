"""Confidence intervals."""

from __future__ import annotations

import numpy as np


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or ``n``
    successes, so it suits validity rates of a few dozen counterfactuals.

    Parameters
    ----------
    successes : int or array-like of bool
        Number of successes, or the outcomes themselves (then ``n`` may be ``None``).
    n : int or None
    confidence : float

    Returns
    -------
    (low, high) : tuple of float
    """
    if n is None:
        outcomes = np.asarray(successes)
        if outcomes.dtype != bool or outcomes.ndim != 1:
            raise TypeError("with n=None, successes must be a 1-D boolean array of outcomes")
        successes, n = int(outcomes.sum()), outcomes.size
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0; got {successes} of {n}")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _sample(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"an interval for a mean needs a 1-D array of at least 2 values; got shape "
                         f"{arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("values must be finite")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of ``values``: ``mean -+ t_{n-1} s / sqrt(n)``.

    Suits a handful of repeated runs (seeds): it assumes roughly normal values and, unlike a
    bootstrap, widens properly when ``n`` is small. Identical values give an empty-width
    interval.

    Parameters
    ----------
    values : array-like, shape (n,), n >= 2
    confidence : float

    Returns
    -------
    (low, high) : tuple of float
    """
    arr = _sample(values)
    _check_confidence(confidence)
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, arr.size - 1)) * arr.std(ddof=1) / np.sqrt(arr.size)
    m = float(arr.mean())
    return float(m - half), float(m + half)


def bootstrap_interval(values, confidence: float = 0.95, n_resamples: int = 10_000,
                       random_state=None) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of ``values``.

    Parameters
    ----------
    values : array-like, shape (n,), n >= 2
    confidence : float
    n_resamples : int
        Resamples with replacement.
    random_state : int or None
        Seed; the same seed gives the same interval.

    Returns
    -------
    (low, high) : tuple of float
    """
    arr = _sample(values)
    _check_confidence(confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int; got {n_resamples!r}")
    rng = np.random.default_rng(random_state)
    means = arr[rng.integers(0, arr.size, (int(n_resamples), arr.size))].mean(1)
    lo, hi = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(lo), float(hi)
