"""Localisation against a ground-truth mask: AUROC, AUPRC, AUP, AUR, top-k precision.

Each metric scores every instance on its own: its flattened attributions are scores, its
flattened mask the labels. Scores are ``|attribution|`` by default (``absolute=True``).

Definitions follow time-interpret (Enguehard 2023, ``tint.metrics.white_box``), with the AUP
and AUR of Crabbé & van der Schaar (2021, Dynamask) as used on the benchmarks of Ismail et al.
(2020):

- scores are normalised per instance as time-interpret (0.2 and later) does,
  ``s = (a - min a) / (max a - min a + 1e-5)`` (``a = |attribution|``, or the signed
  attribution with ``absolute=False``; see :func:`normalise_scores`);
- ``aup``: area under precision(τ) as the threshold τ runs over the distinct normalised
  scores (a feature is selected when ``s >= τ``), by the trapezoid rule; ``aur`` the same for
  recall(τ). This is ``sklearn.metrics.auc(thresholds, precision[:-1])`` on
  ``precision_recall_curve`` (scikit-learn >= 1.3 keeps every threshold; older versions
  dropped those below the first one that reaches full recall, which lowers AUP and AUR);
- ``auprc``: average precision, ``sum_k (R_k - R_{k-1}) P_k`` (``average_precision_score``);
- ``auroc``: the area under the ROC curve (ties count one half; ``roc_auc_score``).

time-interpret pools all instances into one curve (as do the published figures):
:func:`pooled_localisation` gives that number, the registered metrics one per instance.

Undefined cases raise a ``ValueError`` naming the instances: a mask with no True element (no
metric is defined), and for ``auroc`` a mask with no False element. Constant scores give an
AUP and AUR of 0 (the thresholds span an empty range) and an AUROC of 0.5.
"""

from __future__ import annotations

import numpy as np

from .registry import register_metric

#: time-interpret's normalisation constant: ``(a - min) / (max - min + EPS)``.
EPS = 1e-5


def check_mask(mask, inputs: np.ndarray) -> np.ndarray:
    """A boolean ground-truth mask of the inputs' shape, flattened per instance.

    Parameters
    ----------
    mask : array-like of bool (or 0/1), shape (N, ...)
        Exactly the inputs' shape; nothing is broadcast.
    inputs : numpy.ndarray, shape (N, ...)

    Returns
    -------
    numpy.ndarray of bool, shape (N, D)
    """
    m = np.asarray(mask)
    if m.shape != inputs.shape:
        raise ValueError(f"mask must have the inputs' shape {inputs.shape}; got {m.shape}")
    if m.dtype != bool:
        if m.dtype.kind not in "biuf" or not np.isin(m, (0, 1)).all():
            raise ValueError(f"mask must be boolean (or hold only 0 and 1); got dtype {m.dtype} "
                             "with other values")
        m = m.astype(bool)
    return m.reshape(m.shape[0], -1)


def normalise_scores(attributions, absolute: bool = True) -> np.ndarray:
    """time-interpret's per-instance normalisation, ``(a - min a) / (max a - min a + 1e-5)``.

    As ``tint.metrics.white_box`` 0.2-0.3 computes it (checked against 0.3.0; 0.1 divided by
    ``max a + 1e-5``, nearly the same for ``|a|``).

    Parameters
    ----------
    attributions : array-like, shape (N, ...)
    absolute : bool
        Take ``a = |attributions|`` first (time-interpret's choice).

    Returns
    -------
    numpy.ndarray of float64, shape (N, D)
    """
    a = np.asarray(attributions, dtype=np.float64)
    a = a.reshape(a.shape[0], -1)
    if not np.isfinite(a).all():
        raise ValueError("attributions contain NaN or infinite values")
    if absolute:
        a = np.abs(a)
    lo = a.min(1, keepdims=True)
    return (a - lo) / (a.max(1, keepdims=True) - lo + EPS)


def _require_positives(labels: np.ndarray, metric: str, negatives: bool = False) -> None:
    for bad, marks in ((~labels.any(1), "no element"), (labels.all(1) & negatives, "every element")):
        if bad.any():
            raise ValueError(f"{metric} is undefined for instance(s) {np.flatnonzero(bad)[:10].tolist()}: "
                             f"their mask marks {marks} as important")


def threshold_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall of ``scores >= τ`` at every distinct score ``τ`` of one instance.

    Parameters
    ----------
    scores : numpy.ndarray, shape (D,)
    labels : numpy.ndarray of bool, shape (D,)
        At least one True.

    Returns
    -------
    thresholds, precision, recall : numpy.ndarray, shape (M,)
        Thresholds in decreasing order (M distinct scores).
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each tie group
    tp = np.cumsum(y)[last].astype(np.float64)
    return s[last], tp / (last + 1.0), tp / tp[-1]


def _auc_over_thresholds(scores: np.ndarray, labels: np.ndarray, which: int) -> np.ndarray:
    out = np.empty(scores.shape[0])
    for i in range(scores.shape[0]):
        curve = threshold_curve(scores[i], labels[i])
        tau, y = curve[0], curve[which]
        out[i] = float(np.sum((tau[:-1] - tau[1:]) * (y[:-1] + y[1:]) / 2))
    return out


def _scores_labels(attributions, mask, inputs, absolute: bool, metric: str, negatives=False):
    labels = check_mask(mask, np.asarray(inputs))
    _require_positives(labels, metric, negatives)
    return normalise_scores(attributions, absolute), labels


def auroc_scores(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Area under the ROC curve per row (Mann-Whitney U, ties counting one half).

    Parameters
    ----------
    scores : numpy.ndarray, shape (N, D)
    labels : numpy.ndarray of bool, shape (N, D)
        Each row with at least one True and one False.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)  # average ranks for ties
    pos = labels.sum(1).astype(np.float64)
    neg = labels.shape[1] - pos
    return ((ranks * labels).sum(1) - pos * (pos + 1) / 2) / (pos * neg)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` per row (scikit-learn's definition)."""
    out = np.empty(scores.shape[0])
    for i in range(scores.shape[0]):
        _, precision, recall = threshold_curve(scores[i], labels[i])
        out[i] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return out


@register_metric("auroc", kind="localisation", needs=("mask",), higher_is_better=True,
                 summary="Area under the ROC curve of |attributions| against the ground-truth mask")
def auroc(exp, *, mask, absolute: bool = True) -> np.ndarray:
    """Area under the ROC curve of the scores against the mask, per instance.

    Parameters
    ----------
    exp : Explanation
    mask : array-like of bool, shape (N, ...)
        Ground truth, the inputs' shape; each instance needs True and False elements.
    absolute : bool
        Score ``|attributions|`` (default) or the signed values.

    Returns
    -------
    numpy.ndarray, shape (N,)
        1 for a perfect ranking, 0.5 for a random one, 0 for a reversed one.
    """
    s, y = _scores_labels(exp.attributions, mask, exp.inputs, absolute, "AUROC", negatives=True)
    return auroc_scores(s, y)


@register_metric("auprc", kind="localisation", needs=("mask",), higher_is_better=True,
                 summary="Average precision of |attributions| against the ground-truth mask")
def auprc(exp, *, mask, absolute: bool = True) -> np.ndarray:
    """Area under the precision-recall curve (average precision), per instance.

    Parameters
    ----------
    exp, mask, absolute
        As for :func:`auroc`.

    Returns
    -------
    numpy.ndarray, shape (N,)
        1 for a perfect ranking; about the fraction of True elements for a random one.
    """
    s, y = _scores_labels(exp.attributions, mask, exp.inputs, absolute, "AUPRC")
    return average_precision(s, y)


@register_metric("aup", kind="localisation", needs=("mask",), higher_is_better=True,
                 summary="Area under precision over saliency thresholds (time-interpret AUP)")
def aup(exp, *, mask, absolute: bool = True) -> np.ndarray:
    """Area under precision(τ) over the normalised-score thresholds τ, per instance.

    High when the elements given high scores are in the mask (few false positives).

    Parameters
    ----------
    exp, mask, absolute
        As for :func:`auroc`.

    Returns
    -------
    numpy.ndarray, shape (N,)
        In [0, 1).
    """
    s, y = _scores_labels(exp.attributions, mask, exp.inputs, absolute, "AUP")
    return _auc_over_thresholds(s, y, 1)


@register_metric("aur", kind="localisation", needs=("mask",), higher_is_better=True,
                 summary="Area under recall over saliency thresholds (time-interpret AUR)")
def aur(exp, *, mask, absolute: bool = True) -> np.ndarray:
    """Area under recall(τ) over the normalised-score thresholds τ, per instance.

    High when the mask's elements all get high scores (few false negatives).

    Parameters
    ----------
    exp, mask, absolute
        As for :func:`auroc`.

    Returns
    -------
    numpy.ndarray, shape (N,)
        In [0, 1).
    """
    s, y = _scores_labels(exp.attributions, mask, exp.inputs, absolute, "AUR")
    return _auc_over_thresholds(s, y, 2)


@register_metric("top_k_precision", kind="localisation", needs=("mask",), higher_is_better=True,
                 summary="Fraction of the k highest-scored elements that lie in the mask")
def top_k_precision(exp, *, mask, k: int | None = None, absolute: bool = True) -> np.ndarray:
    """Fraction of the ``k`` highest-scored elements that the mask marks, per instance.

    Ties at the ``k``-th score are shared out: of ``t`` elements tied there, of which ``p``
    are in the mask, taking ``r`` more counts ``r p / t`` hits (the expectation over random
    tie-breaking), so the value does not depend on element order.

    Parameters
    ----------
    exp, mask, absolute
        As for :func:`auroc`.
    k : int, optional
        Elements taken per instance; default the number of True mask elements of each
        instance (then the value is also the recall at ``k``).

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    labels = check_mask(mask, np.asarray(exp.inputs))
    _require_positives(labels, "top-k precision")
    scores = np.asarray(exp.attributions, dtype=np.float64).reshape(labels.shape)
    if absolute:
        scores = np.abs(scores)
    d = labels.shape[1]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= d):
        raise ValueError(f"k must be an int in 1..{d} (elements per instance); got {k!r}")
    ks = labels.sum(1) if k is None else np.full(labels.shape[0], int(k))
    out = np.empty(labels.shape[0])
    for i, (s, y, ki) in enumerate(zip(scores, labels, ks, strict=True)):
        tau = np.sort(s)[::-1][ki - 1]
        above, tied = s > tau, s == tau
        taken_tied = ki - above.sum()
        out[i] = (y[above].sum() + taken_tied * y[tied].sum() / tied.sum()) / ki
    return out


def pooled_localisation(attributions, mask, *, absolute: bool = True) -> dict[str, float]:
    """time-interpret's numbers (``tint.metrics.white_box.aup`` etc.): all instances pooled.

    Scores are normalised per instance, then every element of every instance enters one
    ranking, as in the published benchmark figures.

    Parameters
    ----------
    attributions, mask : array-like, shape (N, ...)
    absolute : bool

    Returns
    -------
    dict
        ``auroc``, ``auprc``, ``aup``, ``aur``: floats.
    """
    a = np.asarray(attributions)
    labels = check_mask(mask, a).reshape(1, -1)
    _require_positives(labels, "pooled localisation", negatives=True)
    s = normalise_scores(a, absolute).reshape(1, -1)
    return {
        "auroc": float(auroc_scores(s, labels)[0]),
        "auprc": float(average_precision(s, labels)[0]),
        "aup": float(_auc_over_thresholds(s, labels, 1)[0]),
        "aur": float(_auc_over_thresholds(s, labels, 2)[0]),
    }
