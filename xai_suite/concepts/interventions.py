"""Test-time concept interventions: replace predicted concepts by the true ones.

An intervention on concept i sets its activation in the model's concept layer to the true
value ``C[:, i]`` (0 or 1) and recomputes the task output from the layer
(:meth:`~xai_suite.concepts.models.ConceptModel.bottleneck`). :func:`intervene` does it for
chosen concepts; :func:`intervention_curve` measures task accuracy when k = 0 .. n_concepts
concepts per instance are intervened on, chosen by a policy (:func:`intervention_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .models import ConceptModel, check_concepts

#: Named policies for choosing which k concepts to intervene on.
ORDERS = ("random", "uncertainty")


def _check_model(model) -> ConceptModel:
    if not isinstance(model, ConceptModel):
        raise TypeError(
            "expected a concept model (ConceptBottleneckModel, ConceptEmbeddingModel or another "
            f"xai_suite.concepts.ConceptModel); got {type(model).__name__}"
        )
    model._check_fitted()
    return model


def _concept_mask(concepts, n: int, n_concepts: int) -> torch.Tensor:
    """``concepts`` (None, indices, or a boolean (N, n_concepts) array) as a bool mask (N, n_c)."""
    if concepts is None:
        return torch.ones(n, n_concepts, dtype=torch.bool)
    arr = np.asarray(concepts.detach().cpu() if isinstance(concepts, torch.Tensor) else concepts)
    if arr.dtype == bool:
        if arr.shape not in ((n, n_concepts), (n_concepts,)):
            raise ValueError(f"a boolean concepts mask must have shape ({n}, {n_concepts}) or "
                             f"({n_concepts},); got {arr.shape}")
        return torch.from_numpy(np.broadcast_to(arr, (n, n_concepts)).copy())
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise TypeError("concepts must be None, a sequence of concept indices, or a boolean mask of "
                        f"shape ({n}, {n_concepts}); got {arr.dtype} array of shape {arr.shape}")
    idx = arr.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_concepts):
        raise ValueError(f"concept indices must lie in 0..{n_concepts - 1}; got {idx.tolist()}")
    mask = torch.zeros(n, n_concepts, dtype=torch.bool)
    mask[:, torch.from_numpy(idx)] = True
    return mask


def _task_logits(model: ConceptModel, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Task logits ``(N, K)`` with the concepts of ``mask`` set to ``c``."""

    def logits(xs, cs, ms):
        return model.task_from_bottleneck(xs, model.bottleneck(xs, cs, ms))

    return torch.from_numpy(model._numpy(logits, x, c, mask))


def intervene(model: ConceptModel, X, C_true, concepts=None) -> np.ndarray:
    """Task probabilities after setting chosen concepts to their true values.

    Parameters
    ----------
    model : ConceptModel
        A fitted concept model.
    X : array-like, shape (N, F)
    C_true : array-like, shape (N, n_concepts)
        True concept values (0/1).
    concepts : None, sequence of int, or array-like of bool, shape (N, n_concepts)
        Which concepts to intervene on: ``None`` all of them; indices: those concepts for
        every instance; a boolean mask: per instance (see :func:`intervention_masks`).

    Returns
    -------
    numpy.ndarray of float32, shape (N, K)
        Task class probabilities.
    """
    model = _check_model(model)
    x = model._check_X(X)
    c = check_concepts(C_true, x.shape[0], model.n_concepts_, "C_true")
    mask = _concept_mask(concepts, x.shape[0], model.n_concepts_)
    return torch.softmax(_task_logits(model, x, c, mask), 1).numpy()


def intervention_masks(model: ConceptModel, X, k: int, order="random", random_state=None
                       ) -> np.ndarray:
    """Which ``k`` concepts to intervene on, per instance.

    Parameters
    ----------
    model : ConceptModel
    X : array-like, shape (N, F)
    k : int
        Concepts per instance, 0 <= k <= n_concepts.
    order : "random", "uncertainty" or sequence of int
        ``"random"``: a random order of the concepts per instance, drawn from
        ``random_state``; ``"uncertainty"``: the concepts whose predicted probability is
        closest to 0.5 first (ties by index); a sequence: a permutation of all concept
        indices, the same for every instance. The first ``k`` of the order are chosen, so the
        sets are nested as k grows (for a fixed ``random_state``).
    random_state : int or None
        Seed of the random order.

    Returns
    -------
    numpy.ndarray of bool, shape (N, n_concepts)
    """
    model = _check_model(model)
    x = model._check_X(X)
    m = model.n_concepts_
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= m:
        raise ValueError(f"k must be an int in 0..{m} (the model's concepts); got {k!r}")
    return _orders(model, x, order, random_state) < k


def _orders(model: ConceptModel, x: torch.Tensor, order, random_state) -> np.ndarray:
    """Rank (N, n_concepts) of each concept in the intervention order of each instance."""
    n, m = x.shape[0], model.n_concepts_
    if isinstance(order, str):
        if order == "random":
            rng = np.random.default_rng(random_state)
            perm = np.argsort(rng.random((n, m)), axis=1, kind="stable")
        elif order == "uncertainty":
            p = model.predict_concept_proba(x)
            perm = np.argsort(np.abs(p - 0.5), axis=1, kind="stable")
        else:
            raise ValueError(f"order must be one of {', '.join(map(repr, ORDERS))} or a permutation of "
                             f"the concept indices; got {order!r}")
    else:
        seq = np.asarray(order)
        if seq.dtype.kind not in "iu" or sorted(seq.tolist()) != list(range(m)):
            raise ValueError(f"order must be a permutation of 0..{m - 1}; got {order!r}")
        perm = np.broadcast_to(seq.astype(np.int64), (n, m))
    ranks = np.empty((n, m), dtype=np.int64)
    np.put_along_axis(ranks, perm, np.arange(m)[None, :].repeat(n, 0), axis=1)
    return ranks


def intervention_curve(model: ConceptModel, X, C, y, *, order: str | Sequence[int] = "random",
                       random_state=None) -> pd.DataFrame:
    """Task accuracy when k = 0 .. n_concepts concepts per instance are set to their true values.

    Parameters
    ----------
    model : ConceptModel
    X : array-like, shape (N, F)
    C : array-like, shape (N, n_concepts)
        True concepts (0/1).
    y : array-like of int, shape (N,)
        True task labels.
    order, random_state
        Which concepts come first (see :func:`intervention_masks`).

    Returns
    -------
    pandas.DataFrame
        One row per k with columns ``k``, ``task_accuracy``, ``concept_accuracy`` (of the
        concept layer after the intervention, thresholded at 0.5) and ``n`` (instances).
    """
    model = _check_model(model)
    x = model._check_X(X)
    c = check_concepts(C, x.shape[0], model.n_concepts_)
    labels = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},); got {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise TypeError(f"y must hold integer class labels; got dtype {labels.dtype}")
    ranks = torch.from_numpy(_orders(model, x, order, random_state))
    predicted = torch.from_numpy(model.predict_concept_proba(x)) > 0.5
    rows = []
    for k in range(model.n_concepts_ + 1):
        mask = ranks < k
        pred = _task_logits(model, x, c, mask).argmax(1).numpy()
        after = torch.where(mask, c > 0.5, predicted)
        rows.append({"k": k, "task_accuracy": float((pred == labels).mean()),
                     "concept_accuracy": float((after == (c > 0.5)).float().mean()),
                     "n": x.shape[0]})
    return pd.DataFrame(rows)
