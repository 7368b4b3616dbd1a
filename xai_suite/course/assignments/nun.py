"""Assignment ``nun``: the nearest unlike neighbour, NativeGuide's starting counterfactual."""

from __future__ import annotations

import numpy as np

from ..core import Check, CheckFailed, as_array, batched, define_assignment

STARTER = '''"""Assignment: the nearest unlike neighbour (NUN).

Write ``nearest_unlike_neighbour(predict, x, X_train, y_train)``: the training instance
nearest to ``x`` (Euclidean distance) among those whose label differs from the class the
model predicts for ``x``. It is the simplest counterfactual ("the closest real example the
model would have to treat differently") and the starting point of NativeGuide
(Delaney et al., 2021). Check it with:  xai-suite course check nun THIS_FILE.py

Hints on the way: the class to move away from is the model's prediction for x, not a label
you guess from the data; and x may be a time series (C, T) as well as a row (F,), so
measure distances over all of its entries.
"""

import numpy as np


def nearest_unlike_neighbour(predict, x, X_train, y_train):
    """The training instance nearest to ``x`` whose label differs from ``x``'s predicted class.

    Parameters
    ----------
    predict : callable
        Takes a batch of shape (M, ...) (instances shaped like ``x``) and returns the
        predicted class labels, shape (M,). For ``x`` alone call ``predict(x[None])``.
    x : numpy.ndarray, shape (...)
        One instance, e.g. a time series (C, T) or a tabular row (F,).
    X_train : numpy.ndarray, shape (N, ...)
        Training instances, each shaped like ``x``.
    y_train : numpy.ndarray of int, shape (N,)
        Their labels.

    Returns
    -------
    numpy.ndarray, shape like ``x``
        The row ``X_train[i]`` with ``y_train[i] != predict(x[None])[0]`` at the smallest
        Euclidean distance ``||X_train[i] - x||`` (over all entries).
    """
    raise NotImplementedError
'''


def reference(predict, x, X_train, y_train):
    """Nearest unlike neighbour: the closest training row whose label is not x's predicted class."""
    x, X_train, y_train = np.asarray(x), np.asarray(X_train), np.asarray(y_train)
    if X_train.shape[1:] != x.shape or y_train.shape != X_train.shape[:1]:
        raise ValueError(f"expected X_train (N, *{x.shape}) and y_train (N,); got {X_train.shape} "
                         f"and {y_train.shape}")
    predicted = np.asarray(predict(x[None])).reshape(-1)[0]
    unlike = np.flatnonzero(y_train != predicted)
    if unlike.size == 0:
        raise ValueError(f"every training instance has the predicted class {predicted}")
    distance = np.sqrt(((X_train[unlike] - x) ** 2).reshape(unlike.size, -1).sum(axis=1))
    return X_train[unlike[np.argmin(distance)]]


# -- models and data the checks use ----------------------------------------------------------
def _linear_model(rng, shape, n_classes: int):
    d = int(np.prod(shape))
    W, b = rng.normal(0, 1, (d, n_classes)), rng.normal(0, 0.3, n_classes)
    return batched(lambda Z: np.argmax(Z @ W + b, axis=1), shape, "predict", "one instance")


def _one_nn_model(X_train, y_train):
    flat, labels = X_train.reshape(len(X_train), -1), y_train.copy()

    def fn(Z):
        d = ((Z[:, None, :] - flat[None]) ** 2).sum(-1)
        return labels[np.argmin(d, axis=1)]

    return batched(fn, X_train.shape[1:], "predict", "one instance")


def _task(rng, shape, n_classes: int, n_train: int):
    """A linear classifier, training data labelled by it (every class present) and a query x."""
    while True:
        predict = _linear_model(rng, shape, n_classes)
        X_train = rng.normal(0, 1, (n_train, *shape))
        y_train = predict(X_train)
        if len(np.unique(y_train)) == n_classes:
            return predict, rng.normal(0, 1, shape), X_train, y_train


def _call(fn, predict, x, X_train, y_train) -> np.ndarray:
    got = as_array(fn(predict, x.copy(), X_train.copy(), y_train.copy()),
                   "nearest_unlike_neighbour(predict, x, X_train, y_train)")
    if got.shape != x.shape:
        raise CheckFailed(f"the neighbour must have x's shape {x.shape} (one instance); got shape "
                          f"{got.shape}")
    return got


def _row_index(got, X_train) -> int | None:
    hits = np.flatnonzero(np.all((X_train == got).reshape(len(X_train), -1), axis=1))
    return int(hits[0]) if hits.size else None


def _dist(X, x, p: int = 2) -> np.ndarray:
    diff = np.abs(X - x).reshape(len(X), -1)
    return np.sqrt((diff**2).sum(1)) if p == 2 else diff.sum(1)


def _diagnose(i, x, X_train, y_train, predicted) -> str:
    """Name the classic mistake the returned row ``i`` matches, if any."""
    d2, d1 = _dist(X_train, x), _dist(X_train, x, p=1)
    unlike = y_train != predicted
    if i == int(np.argmin(d2)):
        return " It is the nearest training row of any class."
    if unlike[i] and i == int(np.flatnonzero(unlike)[np.argmin(d1[unlike])]):
        return " It is the nearest unlike row in Manhattan (L1) distance, not Euclidean."
    if y_train[i] == predicted:
        return f" Its label {y_train[i]} equals the model's prediction for x."
    return ""


def _assert_nun(got, x, X_train, y_train, predicted, what: str) -> None:
    i = _row_index(got, X_train)
    if i is None:
        j = int(np.argmin(_dist(X_train, got)))
        raise CheckFailed(f"{what}: the returned instance is not a row of X_train (the closest row, "
                          f"{j}, differs by {float(_dist(X_train[j:j + 1], got)[0]):.3g})")
    if y_train[i] == predicted:
        anyclass = " It is the nearest training row of any class." if i == int(np.argmin(
            _dist(X_train, x))) else ""
        raise CheckFailed(f"{what}: returned row {i}, labelled {y_train[i]}, the class the model "
                          f"predicts for x: it is not an unlike neighbour.{anyclass}")
    unlike = np.flatnonzero(y_train != predicted)
    d = _dist(X_train, x)
    best = int(unlike[np.argmin(d[unlike])])
    if d[i] > d[best] * (1 + 1e-9):
        raise CheckFailed(f"{what}: returned row {i} (label {y_train[i]}, Euclidean distance "
                          f"{d[i]:.4g}); the nearest row labelled differently from the model's "
                          f"prediction {predicted} is row {best} (label {y_train[best]}, distance "
                          f"{d[best]:.4g}).{_diagnose(i, x, X_train, y_train, predicted)}")


# -- checks ----------------------------------------------------------------------------------
def _validity(fn, rng):
    shape = (int(rng.integers(1, 4)), int(rng.integers(10, 25)))
    predict, _, X_train, y_train = _task(rng, shape, 2, int(rng.integers(30, 60)))
    k = int(rng.integers(len(X_train)))
    while True:  # x right next to a training row, of that row's class
        x = X_train[k] + rng.normal(0, 1e-3, shape)
        if predict(x[None])[0] == y_train[k]:
            break
    predicted = int(predict(x[None])[0])
    got = _call(fn, predict, x, X_train, y_train)
    now = int(predict(got[None])[0])
    if now == predicted:
        raise CheckFailed(f"not a counterfactual: the model predicts class {now} for the returned "
                          f"instance, the same as for x (x is a series of shape {shape} that lies "
                          f"next to training row {k} of class {predicted})")


def _is_row(fn, rng):
    shape = (int(rng.integers(1, 4)), int(rng.integers(10, 25)))
    predict, x, X_train, y_train = _task(rng, shape, 3, int(rng.integers(20, 50)))
    got = _call(fn, predict, x, X_train, y_train)
    if _row_index(got, X_train) is None:
        j = int(np.argmin(_dist(X_train, got)))
        raise CheckFailed(f"the returned instance is not one of the rows of X_train (the closest row, "
                          f"{j}, differs by {float(_dist(X_train[j:j + 1], got)[0]):.3g}): the NUN is "
                          "a real training example, returned unchanged")


def _nearest(fn, rng, shapes):
    for shape in shapes:
        n_classes = int(rng.integers(2, 4))
        predict, x, X_train, y_train = _task(rng, shape, n_classes, int(rng.integers(20, 60)))
        # plant a training row of x's predicted class right next to x
        predicted = int(predict(x[None])[0])
        like = np.flatnonzero(y_train == predicted)
        if like.size:
            X_train[like[0]] = x + rng.normal(0, 0.05, shape)
        got = _call(fn, predict, x, X_train, y_train)
        _assert_nun(got, x, X_train, y_train, predicted, f"x of shape {shape}, {n_classes} classes")


def _nearest_series(fn, rng):
    _nearest(fn, rng, [(int(rng.integers(1, 4)), int(rng.integers(10, 25))) for _ in range(3)])


def _nearest_rows(fn, rng):
    _nearest(fn, rng, [(int(rng.integers(3, 12)),) for _ in range(3)])


def _euclidean(fn, rng):
    shape = (2, int(rng.integers(4, 10)))
    d = int(np.prod(shape))
    x = rng.normal(0, 1, shape)
    n_like, n_far = 6, 8
    coords = rng.choice(d, 5, replace=False)
    spread = np.zeros(d)
    spread[coords[:4]] = rng.choice([-1.0, 1.0], 4)  # Euclidean 2, Manhattan 4
    spike = np.zeros(d)
    spike[coords[4]] = rng.choice([-1.0, 1.0]) * 3.0  # Euclidean 3, Manhattan 3
    like = x + rng.normal(0, 0.1, (n_like, *shape))  # the model's class for x: closest of all
    far_dirs = rng.normal(0, 1, (n_far, d))
    far = x + (6.0 * far_dirs / np.linalg.norm(far_dirs, axis=1, keepdims=True)).reshape(n_far, *shape)
    X_train = np.concatenate([like, (x.reshape(-1) + spread).reshape(1, *shape),
                              (x.reshape(-1) + spike).reshape(1, *shape), far])
    y_train = np.concatenate([np.zeros(n_like, int), [1, 1], rng.integers(1, 3, n_far)])
    order = rng.permutation(len(X_train))
    X_train, y_train = X_train[order], y_train[order]
    predict = _one_nn_model(X_train, y_train)
    got = _call(fn, predict, x, X_train, y_train)
    _assert_nun(got, x, X_train, y_train, 0, "two unlike rows: one 2 away in Euclidean distance (4 in "
                "Manhattan), one 3 away in both")


def _prediction(fn, rng):
    F = int(rng.integers(3, 8))
    a, b = rng.normal(0, 1, F), rng.normal(0, 1, F)
    b = a + 6.0 * (b - a) / np.linalg.norm(b - a)
    X_train = np.concatenate([a + rng.normal(0, 1, (15, F)), b + rng.normal(0, 1, (15, F))])
    y_train = np.repeat([0, 1], 15)
    order = rng.permutation(30)
    X_train, y_train = X_train[order], y_train[order]
    x = a + rng.normal(0, 0.5, F)  # in the middle of class 0 ...
    radius = 0.5 * _dist(X_train, x).min()

    def fn_model(Z):  # ... but the model predicts 1 there (nearest centroid elsewhere)
        out = (np.linalg.norm(Z - b, axis=1) < np.linalg.norm(Z - a, axis=1)).astype(int)
        out[np.linalg.norm(Z - x, axis=1) < radius] = 1
        return out

    predict = batched(fn_model, (F,), "predict", "one instance")
    got = _call(fn, predict, x, X_train, y_train)
    i = _row_index(got, X_train)
    if i is not None and y_train[i] == 1:
        raise CheckFailed("the model predicts class 1 for x although every training row near x is "
                          f"labelled 0 (it misclassifies x); you returned row {i}, labelled 1, the "
                          "model's own class: the NUN must differ from the prediction, not from the "
                          "label x's neighbours suggest")
    _assert_nun(got, x, X_train, y_train, 1, "x misclassified by the model")


ASSIGNMENT = define_assignment(
    "nun", "The nearest unlike neighbour (NativeGuide's NUN)", "nearest_unlike_neighbour", STARTER, reference,
    Check("validity", "the model predicts another class for the NUN than for x", _validity, 2,
          "keep only the training rows whose label differs from predict(x[None])[0] before "
          "looking for the nearest one; the nearest row of any class is usually x's own class"),
    Check("row", "the NUN is a row of X_train, returned unchanged", _is_row, 1,
          "return X_train[i] itself, not an average, a blend with x, or a flattened copy"),
    Check("nearest_series", "it is the nearest unlike row for series (C, T), 2-3 classes",
          _nearest_series, 2,
          "the distance runs over all channels and time steps: flatten each (C, T) instance "
          "(or sum over both axes), then take the argmin over the unlike rows only"),
    Check("nearest_rows", "it is the nearest unlike row for tabular rows (F,)", _nearest_rows, 1,
          "write the distance so that it works for any instance shape, e.g. reshape to (N, -1)"),
    Check("euclidean", "distance is Euclidean: a row 2 away beats one 3 away even when the "
          "first is 4 away in Manhattan distance", _euclidean, 2,
          "sqrt(sum((a - b)**2)), not sum(|a - b|): the two metrics rank neighbours differently"),
    Check("prediction", "the class left behind is the model's prediction for x, even when the "
          "model misclassifies x", _prediction, 2,
          "call predict(x[None])[0]; do not infer x's class from its neighbours' labels: a "
          "counterfactual explains the model, not the data"),
)
