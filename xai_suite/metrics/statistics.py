"""Confidence intervals, a paired test between two methods, and per-instance random generators."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from .._validation import check_random_state


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or ``n``
    successes (validity rates of a few dozen counterfactuals).

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
    _check_confidence(confidence)
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0; got {successes} of {n}")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 or n successes one end is exactly 0 or 1 (rounding would leave it a few ulps off)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


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

    Suits a handful of roughly normal values (seeds): unlike a bootstrap it widens properly
    when ``n`` is small. Identical values give an empty-width interval.

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


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of two methods measured on the same instances.

    Attributes
    ----------
    mean_difference : float
        Mean of ``a - b``.
    low, high : float
        Percentile bootstrap interval for the mean difference.
    p_value : float
        Two-sided Wilcoxon signed-rank p-value (zero differences dropped, scipy's default);
        1.0 when every difference is zero.
    n : int
        Number of pairs.
    confidence : float
    """

    mean_difference: float
    low: float
    high: float
    p_value: float
    n: int
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


def paired_test(a, b, confidence: float = 0.95, n_resamples: int = 10_000,
                random_state=None) -> PairedTest:
    """Compare two methods' per-instance values on the same instances.

    Parameters
    ----------
    a, b : array-like, shape (n,), n >= 2
        The values of methods A and B on the same instances, in the same order.
    confidence : float
        Of the bootstrap interval.
    n_resamples : int
        Bootstrap resamples.
    random_state : int or None
        Seeds the bootstrap; the same seed gives the same interval.

    Returns
    -------
    PairedTest
        Mean of ``a - b``, its bootstrap interval and the Wilcoxon signed-rank p-value.
    """
    a, b = _sample(a), _sample(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair values one to one; got shapes {a.shape} and {b.shape}")
    d = a - b
    low, high = bootstrap_interval(d, confidence, n_resamples, random_state)
    from scipy.stats import wilcoxon

    p = float(wilcoxon(d).pvalue) if d.any() else 1.0
    return PairedTest(float(d.mean()), low, high, p, int(d.size), float(confidence))


def instance_generators(inputs, random_state=None, *salt: int) -> list[np.random.Generator]:
    """One random generator per instance, seeded by ``random_state`` and the instance itself.

    The seed mixes ``random_state``, a hash of the instance's float32 values and ``salt``: an
    instance gets the same numbers whatever batch, chunk or position it comes in.

    Parameters
    ----------
    inputs : array-like, shape (N, ...)
    random_state : int or None
        ``None`` draws fresh entropy (different numbers every call).
    *salt : int
        Further integers mixed into every seed (e.g. a target class).

    Returns
    -------
    list of numpy.random.Generator, length N
    """
    x = np.ascontiguousarray(np.asarray(inputs, dtype=np.float32))
    if random_state is None:
        random_state = int(np.random.SeedSequence().entropy) % 2**63
    else:
        check_random_state(random_state)
    rows = x.reshape(x.shape[0], -1)
    digests = [int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little") for r in rows]
    return [np.random.default_rng([int(random_state), *map(int, salt), h]) for h in digests]
