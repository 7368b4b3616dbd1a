"""The synthetic concept datasets of the CEM paper: XOR, Trigonometry and Dot.

Each generator returns ``(X, C, y)``: features ``X`` (N, F) float32, binary concepts ``C``
(N, n_concepts) float32 in {0, 1} and labels ``y`` (N,) int64. The rules follow the paper's
reference code (``torch_explain.datasets``), drawn from a private
``numpy.random.RandomState(random_state)`` in the same order, so a seed gives the same data as
the reference code seeded with it (where that code is seeded), and no global random state is
touched. Each function's docstring gives its rules.

Reference: Espinosa Zarlenga et al. (2022), Concept Embedding Models, NeurIPS.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_positive_int
from ..datasets import register_dataset

#: Concept names per dataset, in the order of the columns of ``C``.
CONCEPT_NAMES = {
    "xor": ("x0 > 0.5", "x1 > 0.5"),
    "trigonometry": ("a > 0", "b > 0", "z > 0"),
    "dot": ("v1.v2 > 0", "v3.v4 > 0"),
}


def _rng(n_samples: int, random_state) -> np.random.RandomState:
    check_positive_int(n_samples=n_samples)
    if random_state is None or isinstance(random_state, bool) or not isinstance(
        random_state, int | np.integer
    ):
        raise TypeError(
            f"random_state must be an int (a seed fully determines the data); got {random_state!r}"
        )
    return np.random.RandomState(int(random_state))  # the reference code's stream


def _pack(X, C, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.ascontiguousarray(X, dtype=np.float32),
        np.ascontiguousarray(C, dtype=np.float32),
        np.asarray(y, dtype=np.int64),
    )


@register_dataset("tabular")
def make_xor(n_samples: int = 500, random_state: int = 42):
    """XOR of two thresholded uniform features.

    Parameters
    ----------
    n_samples : int
    random_state : int
        Seed; the same seed gives the same data.

    Returns
    -------
    X : numpy.ndarray of float32, shape (n_samples, 2)
        x ~ U(0, 1)^2.
    C : numpy.ndarray of float32, shape (n_samples, 2)
        [x0 > 0.5, x1 > 0.5] as 0/1.
    y : numpy.ndarray of int64, shape (n_samples,)
        c0 XOR c1.
    """
    rng = _rng(n_samples, random_state)
    x = rng.uniform(0, 1, (n_samples, 2))
    c = np.stack([x[:, 0] > 0.5, x[:, 1] > 0.5], axis=1)
    y = np.logical_xor(c[:, 0], c[:, 1])
    return _pack(x, c, y)


@register_dataset("tabular")
def make_trigonometry(n_samples: int = 500, random_state: int = 42):
    """Seven trigonometric features of three hidden normals; concepts are their signs.

    Parameters
    ----------
    n_samples : int
    random_state : int
        Seed; the same seed gives the same data.

    Returns
    -------
    X : numpy.ndarray of float32, shape (n_samples, 7)
        [sin a + a, cos a + a, sin b + b, cos b + b, sin z + z, cos z + z, a^2 + b^2 + z^2]
        with a, b, z ~ N(0, 2^2).
    C : numpy.ndarray of float32, shape (n_samples, 3)
        [a > 0, b > 0, z > 0] as 0/1.
    y : numpy.ndarray of int64, shape (n_samples,)
        a + b + z > 1. The concepts do not determine it (an incomplete concept set).
    """
    rng = _rng(n_samples, random_state)
    h = rng.normal(0, 2, (n_samples, 3))
    a, b, z = h[:, 0], h[:, 1], h[:, 2]
    x = np.stack(
        [np.sin(a) + a, np.cos(a) + a, np.sin(b) + b, np.cos(b) + b, np.sin(z) + z,
         np.cos(z) + z, a**2 + b**2 + z**2],
        axis=1,
    )
    c = np.stack([a > 0, b > 0, z > 0], axis=1)
    return _pack(x, c, (a + b + z) > 1)


@register_dataset("tabular")
def make_dot(n_samples: int = 500, random_state: int = 42):
    """Sums and differences of two random 2-D vectors; the label is the sign of their dot product.

    Parameters
    ----------
    n_samples : int
    random_state : int
        Seed; the same seed gives the same data.

    Returns
    -------
    X : numpy.ndarray of float32, shape (n_samples, 4)
        [v1 + v3, v1 - v3] with v1, v3 ~ 2 N(0, I_2).
    C : numpy.ndarray of float32, shape (n_samples, 2)
        [v1.(1, 1) > 0, v3.(-1, -1) > 0] as 0/1.
    y : numpy.ndarray of int64, shape (n_samples,)
        v1.v3 > 0. The concepts do not determine it (an incomplete concept set).
    """
    rng = _rng(n_samples, random_state)
    v1 = rng.randn(n_samples, 2) * 2
    v2 = np.ones(2)
    v3 = rng.randn(n_samples, 2) * 2
    v4 = -np.ones(2)
    x = np.hstack([v1 + v3, v1 - v3])
    c = np.stack([v1 @ v2 > 0, v3 @ v4 > 0], axis=1)
    return _pack(x, c, (v1 * v3).sum(axis=1) > 0)
