"""Image datasets (``xs.datasets``): scikit-learn's 8x8 digits (offline) and a synthetic,
seeded planted-patch set with known masks."""

from __future__ import annotations

import numpy as np

from xai_suite.plugin import check_positive_int, check_random_state, register_dataset

_SPLITS = ("train", "test", "all")


@register_dataset("image")
def load_digits_images(split: str = "train", *, test_size: float = 0.25, random_state: int = 0):
    """scikit-learn's handwritten digits as one-channel 8x8 images, split reproducibly.

    1,797 images of the digits 0-9 (about 180 per class); each pixel counts the ink in a
    4x4 block of a 32x32 bitmap (0..16) and is divided by 16, so 0 is the white background
    and 1 full ink.

    Parameters
    ----------
    split : {"train", "test", "all"}
        The split is stratified by class and fixed by ``random_state``; rows of each split
        keep the order of the original set.
    test_size : float
        Fraction of images in the test split, in (0, 1).
    random_state : int

    Returns
    -------
    X : numpy.ndarray of float32, shape (N, 1, 8, 8)
        Pixel values in [0, 1].
    y : numpy.ndarray of int64, shape (N,)
        The digit, 0..9.
    """
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}; got {split!r}")
    if isinstance(test_size, bool) or not isinstance(test_size, int | float) or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a float in (0, 1); got {test_size!r}")
    bunch = sklearn.datasets.load_digits()
    X = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]  # ink counts 0..16
    y = bunch.target.astype(np.int64)
    rows = np.arange(len(X))
    if split == "all":
        return X, y
    train, test = train_test_split(rows, test_size=test_size, random_state=random_state, stratify=y)
    keep = np.sort(train if split == "train" else test)
    return np.ascontiguousarray(X[keep]), y[keep]


@register_dataset("image")
def make_planted_patch_images(
    n_samples: int = 400,
    *,
    size: int = 16,
    patch_size: int = 4,
    n_channels: int = 1,
    noise: float = 0.3,
    random_state: int | None = 0,
):
    """Images whose class is decided by one planted, textured patch at a random place.

    Every image starts as background noise, ``noise * U(0, 1)`` per pixel and channel. Every
    image (of both classes) then gets a *distractor*: a ``patch_size`` square of flat mid-grey,
    ``0.5 - noise / 2 + noise * U(0, 1)``. Class-1 images also get the *target*: a
    ``patch_size`` square of checkerboard texture, ``(1 - noise) * c + noise * U(0, 1)`` with
    ``c`` alternating 1 (top-left corner) and 0. Both squares have the same mean brightness
    (0.5 in expectation) and are placed uniformly at random, apart from each other; the
    distractor is the same for both classes, so the target's presence is the only class
    evidence and a model must tell texture from brightness. Every channel gets the same
    squares (with its own noise). All values lie in ``[0, 1]``.

    Parameters
    ----------
    n_samples : int
        Images; the classes are balanced (counts differ by at most one) and shuffled.
    size : int
        Height and width ``H = W``; at least ``2 * patch_size`` (room for both squares).
    patch_size : int
        Side of the target and the distractor squares, >= 2.
    n_channels : int
        ``C``.
    noise : float
        Amplitude of the uniform noise, in [0, 0.5] (at most 0.5 keeps the checkerboard's
        dark and bright pixels apart).
    random_state : int or None
        Seed of ``numpy.random.default_rng``; the same seed gives the same data.

    Returns
    -------
    X : numpy.ndarray of float32, shape (N, C, H, W)
    y : numpy.ndarray of int64, shape (N,)
        1 where the target patch is planted, else 0.
    mask : numpy.ndarray of bool, shape (N, C, H, W)
        True exactly on the target patch (every channel); all False for class 0. The
        distractor is never marked.
    """
    check_positive_int(n_samples=n_samples, size=size, patch_size=patch_size, n_channels=n_channels)
    if patch_size < 2:
        raise ValueError(f"patch_size must be >= 2 (a checkerboard needs 2 pixels a side); got {patch_size}")
    if size < 2 * patch_size:
        raise ValueError(f"size must be at least 2 * patch_size = {2 * patch_size} so that the target "
                         f"and the distractor fit side by side; got size={size}")
    if isinstance(noise, bool) or not isinstance(noise, int | float | np.floating) or not 0 <= noise <= 0.5:
        raise ValueError(f"noise must be a float in [0, 0.5]; got {noise!r}")
    check_random_state(random_state)
    rng = np.random.default_rng(random_state)
    n, p, c, noise = int(n_samples), int(patch_size), int(n_channels), float(noise)
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    X = noise * rng.random((n, c, size, size))
    mask = np.zeros((n, c, size, size), dtype=bool)
    checker = (np.add.outer(np.arange(p), np.arange(p)) % 2 == 0).astype(np.float64)
    for i in range(n):
        tr, tc = rng.integers(0, size - p + 1, size=2)
        while True:  # a distractor square that does not overlap the target (always possible)
            dr, dc = rng.integers(0, size - p + 1, size=2)
            if abs(int(dr) - int(tr)) >= p or abs(int(dc) - int(tc)) >= p:
                break
        X[i, :, dr:dr + p, dc:dc + p] = 0.5 - noise / 2 + noise * rng.random((c, p, p))
        if y[i] == 1:
            X[i, :, tr:tr + p, tc:tc + p] = (1 - noise) * checker + noise * rng.random((c, p, p))
            mask[i, :, tr:tr + p, tc:tc + p] = True
    return X.astype(np.float32), y, mask
