"""Assignment ``wilson``: the Wilson score interval for a proportion."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from ...metrics.statistics import wilson_interval as _ours
from ..core import Check, CheckFailed, assert_close, define_assignment

STARTER = '''"""Assignment: the Wilson score interval.

Write ``wilson_interval(successes, n, confidence=0.95)``: the Wilson score interval for the
proportion ``successes / n`` (e.g. the validity rate of 10 counterfactuals, 8 of them valid).
Check it with:  xai-suite course check wilson THIS_FILE.py
"""

from scipy.stats import norm  # norm.ppf gives the normal quantile z


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n``.

    Parameters
    ----------
    successes : int
        0 <= successes <= n.
    n : int
        Number of trials, n > 0.
    confidence : float
        In (0, 1).

    Returns
    -------
    (low, high) : tuple of float
        With 0 <= low <= successes / n <= high <= 1.
    """
    raise NotImplementedError
'''


def reference(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval (Wilson, 1927), written out."""
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _pair(fn, k: int, n: int, confidence: float = 0.95) -> np.ndarray:
    out = fn(k, n, confidence)
    try:
        low, high = (float(v) for v in out)
    except (TypeError, ValueError) as exc:
        raise CheckFailed(f"wilson_interval({k}, {n}, {confidence}) must return (low, high); got "
                          f"{out!r}") from exc
    return np.array([low, high])


def _textbook(fn, rng):
    assert_close(_pair(fn, 8, 10), [0.4902, 0.9433], what="wilson_interval(8, 10)", atol=5e-4, rtol=0)


def _agrees(fn, rng):
    for _ in range(20):
        n = int(rng.integers(1, 500))
        k = int(rng.integers(0, n + 1))
        conf = float(rng.choice([0.8, 0.9, 0.95, 0.99]))
        assert_close(_pair(fn, k, n, conf), _ours(k, n, conf),
                     what=f"wilson_interval({k}, {n}, {conf})", atol=1e-9, rtol=1e-7)


def _edges(fn, rng):
    n = int(rng.integers(3, 60))
    for k in (0, n):
        low, high = _pair(fn, k, n)
        tol = 1e-12  # at k = n the upper end is 1 up to rounding
        if not -tol <= low <= k / n + tol and k / n - tol <= high <= 1 + tol:
            raise CheckFailed(f"wilson_interval({k}, {n}) = ({low:.4g}, {high:.4g}) must satisfy "
                              f"0 <= low <= {k}/{n} <= high <= 1")
        if high - low < 1e-3:
            raise CheckFailed(f"wilson_interval({k}, {n}) = ({low:.4g}, {high:.4g}) is empty: with "
                              f"{k} of {n} successes the true rate is still uncertain")


def _shrinks(fn, rng):
    p = float(rng.uniform(0.2, 0.8))
    widths = [np.diff(_pair(fn, round(p * n), n))[0] for n in (20, 80, 320)]  # high - low
    if not widths[0] > widths[1] > widths[2]:
        raise CheckFailed(f"interval widths for n = 20, 80, 320 at p ~ {p:.2f} are "
                          f"{', '.join(f'{w:.3f}' for w in widths)}: more trials must narrow it")
    low99, high99 = _pair(fn, 8, 10, 0.99)
    low90, high90 = _pair(fn, 8, 10, 0.90)
    if not (low99 < low90 and high99 > high90):
        raise CheckFailed("a 99% interval must contain the 90% one; got "
                          f"({low99:.3f}, {high99:.3f}) vs ({low90:.3f}, {high90:.3f})")


ASSIGNMENT = define_assignment(
    "wilson", "The Wilson score interval", "wilson_interval", STARTER, reference,
    Check("textbook", "8 of 10 successes give [0.490, 0.943]", _textbook, 2,
          "centre (p + z^2/2n) / (1 + z^2/n), half-width z/(1 + z^2/n) * sqrt(p(1-p)/n + "
          "z^2/4n^2); z = norm.ppf(0.5 + confidence/2)"),
    Check("agreement", "equals xai_suite's interval on random counts and confidences", _agrees, 3,
          "use the confidence argument for z; do not round"),
    Check("edges", "0 and n successes give a non-empty interval inside [0, 1]", _edges, 2,
          "this is where the normal (Wald) interval p +- z sqrt(p(1-p)/n) collapses to a point"),
    Check("monotone", "more trials narrow it; higher confidence widens it", _shrinks, 1,
          "the width must depend on n and on confidence"),
)
