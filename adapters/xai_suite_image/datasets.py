"""Image datasets that ship offline: scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` images.

Registered under ``xs.datasets``: ``load_digits_images(split)``.
"""

from __future__ import annotations

import numpy as np

from xai_suite.datasets import register_dataset

_SPLITS = ("train", "test", "all")
#: Largest pixel value of scikit-learn's digits (4x4 blocks of a 32x32 bitmap, 0..16 ink counts).
_DIGITS_MAX = 16.0


@register_dataset
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
    X = (bunch.images.astype(np.float32) / np.float32(_DIGITS_MAX))[:, None, :, :]
    y = bunch.target.astype(np.int64)
    rows = np.arange(len(X))
    if split == "all":
        return X, y
    train, test = train_test_split(rows, test_size=test_size, random_state=random_state, stratify=y)
    keep = np.sort(train if split == "train" else test)
    return np.ascontiguousarray(X[keep]), y[keep]
