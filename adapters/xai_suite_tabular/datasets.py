"""Tabular datasets that ship offline (``xs.datasets``): scikit-learn's toy sets
(:func:`load_tabular`) and a planted mixed-type set (:func:`make_mixed_tabular`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xai_suite.plugin import check_positive_int, register_dataset

#: scikit-learn loader and task of each set.
_SETS = {
    "breast_cancer": ("load_breast_cancer", "classification"),
    "wine": ("load_wine", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
_SPLITS = ("train", "test", "all")


def tabular_datasets() -> list[str]:
    """Names :func:`load_tabular` accepts."""
    return sorted(_SETS)


@register_dataset("tabular")
def load_tabular(name: str, split: str = "train", *, as_frame: bool = True, standardize: bool = False,
                 test_size: float = 0.25, random_state: int = 0):
    """Load one of scikit-learn's bundled tabular datasets, split reproducibly.

    Parameters
    ----------
    name : {"breast_cancer", "wine", "diabetes"}
        Breast cancer (569 x 30, 2 classes), wine (178 x 13, 3 classes), diabetes
        (442 x 10, a regression target).
    split : {"train", "test", "all"}
        The split is stratified for the classification sets and fixed by ``random_state``.
    as_frame : bool
        Return X as a DataFrame with the original column names (else a float32 array).
    standardize : bool
        Centre and scale every column by the *training* split's mean and standard deviation
        (whichever split is returned), as MLPs and distance-based counterfactuals need.
    test_size : float
        Fraction of rows in the test split, in (0, 1).
    random_state : int

    Returns
    -------
    X : pandas.DataFrame or numpy.ndarray, shape (N, F), float32
    y : numpy.ndarray, shape (N,)
        int64 class labels 0..K-1, or float32 targets for diabetes.
    """
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    if name not in _SETS:
        raise ValueError(f"unknown tabular dataset {name!r}; expected one of {', '.join(sorted(_SETS))}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}; got {split!r}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must lie in (0, 1); got {test_size}")
    loader, task = _SETS[name]
    bunch = getattr(sklearn.datasets, loader)(as_frame=True)
    X = bunch.data.astype(np.float32)
    y = bunch.target.to_numpy().astype(np.int64 if task == "classification" else np.float32)
    rows = np.arange(len(X))
    train, test = train_test_split(rows, test_size=test_size, random_state=random_state,
                                   stratify=y if task == "classification" else None)
    if standardize:
        mean, std = X.iloc[train].mean(), X.iloc[train].std(ddof=0).replace(0.0, 1.0)
        X = ((X - mean) / std).astype(np.float32)
    keep = {"train": np.sort(train), "test": np.sort(test), "all": rows}[split]
    X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    return (X, y) if as_frame else (X.to_numpy(), y)


@register_dataset("tabular")
def make_mixed_tabular(n_samples: int = 1000, random_state: int | None = 0):
    """A planted binary task on mixed numeric and categorical columns.

    Columns: ``age`` ~ N(40, 10); ``income`` ~ lognormal (irrelevant); ``color`` in
    {blue, green, red}; ``size`` in {S, M, L}; ``noise`` ~ N(0, 1) (irrelevant). The label
    is ``y = [2 [color = red] - 2 [size = L] + 0.1 (age - 40) > 0]``, so ``color``,
    ``size`` and ``age`` decide it and ``income`` and ``noise`` do not.

    Parameters
    ----------
    n_samples : int
    random_state : int or None

    Returns
    -------
    X : pandas.DataFrame, shape (n_samples, 5)
        ``color`` and ``size`` are pandas categoricals.
    y : numpy.ndarray of int64, shape (n_samples,)
    """
    check_positive_int(n_samples=n_samples)
    rng = np.random.default_rng(random_state)
    age = rng.normal(40.0, 10.0, n_samples)
    X = pd.DataFrame({
        "age": age,
        "income": rng.lognormal(10.0, 0.5, n_samples),
        "color": pd.Categorical(rng.choice(["blue", "green", "red"], n_samples),
                                categories=["blue", "green", "red"]),
        "size": pd.Categorical(rng.choice(["S", "M", "L"], n_samples), categories=["S", "M", "L"]),
        "noise": rng.normal(size=n_samples),
    })
    score = 2.0 * (X["color"] == "red") - 2.0 * (X["size"] == "L") + 0.1 * (age - 40.0)
    return X, (score > 0).to_numpy().astype(np.int64)
