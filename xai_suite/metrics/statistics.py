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
