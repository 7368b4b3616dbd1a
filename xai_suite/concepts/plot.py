"""Plots for concept models (matplotlib, imported on first use; nothing here calls ``show``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._validation import check_choice
from ..metrics.statistics import wilson_interval

if TYPE_CHECKING:
    from .explanation import ConceptExplanation


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.5))[1]


def plot_intervention_curve(curves, ax=None, *, metric: str = "task_accuracy", title: str | None = None,
                            confidence: float | None = 0.95):
    """Task accuracy against the number of concepts intervened on, with confidence bands.

    Parameters
    ----------
    curves : pandas.DataFrame or dict of str to pandas.DataFrame
        Results of :func:`~xai_suite.concepts.intervention_curve`; a dict draws one line per
        label.
    ax : matplotlib.axes.Axes, optional
    metric : {"task_accuracy", "concept_accuracy"}
    title : str, optional
        Default: what is plotted, and the intervals' level.
    confidence : float or None
        Task accuracy: each point's Wilson interval at this level over the curve's ``n``
        test instances (column ``n``), shaded in the line's colour; ``None`` draws none.
        Concept accuracy gets no band: its ``n x n_concepts`` outcomes are not independent.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines`` holds the curves, ``ax.collections`` their bands, in the same order.
    """
    check_choice("metric", metric, ("task_accuracy", "concept_accuracy"))
    if isinstance(curves, pd.DataFrame):
        curves = {None: curves}
    band = confidence is not None and metric == "task_accuracy"
    need = {"k", metric} | ({"n"} if band else set())
    ax = _axes(ax)
    for label, df in curves.items():
        if not need <= set(df.columns):
            raise ValueError(f"an intervention curve needs columns {sorted(need)}; got {list(df.columns)}"
                             + ("; pass confidence=None to plot one without n" if band else ""))
        (line,) = ax.plot(df["k"], df[metric], marker="o", label=label)
        if band:
            lo, hi = zip(*(wilson_interval(round(acc * n), int(n), confidence)
                           for acc, n in zip(df[metric], df["n"], strict=True)), strict=True)
            ax.fill_between(df["k"], lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("concepts intervened on (k)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_xticks(sorted({int(k) for df in curves.values() for k in df["k"]}))
    if any(label is not None for label in curves):
        ax.legend()
    what = f"{metric.replace('_', ' ')} after setting k concepts to their true values"
    ax.set_title(title or (f"{what}\n(shaded: {confidence:.0%} Wilson intervals)" if band else what),
                 fontsize=10)
    return ax


def plot_concept_explanation(exp: ConceptExplanation, index: int = 0, ax=None, *, title: str | None = None):
    """Signed bar chart of instance ``index``'s concept attributions, activations in the labels.

    Returns
    -------
    matplotlib.axes.Axes
    """
    n = len(exp)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for an explanation of {n} instances")
    a = exp.attributions[index]
    labels = [f"{name} ({v:.2f})" for name, v in zip(exp.concept_names, exp.concepts[index], strict=True)]
    ax = _axes(ax)
    pos = np.arange(len(a))
    ax.barh(pos, a, color=np.where(a >= 0, "tab:red", "tab:blue"))
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution to the task logit")
    t = int(exp.target[index])
    ax.set_title(title or f"{exp.method}  (target {t}, logit {exp.predictions[index, t]:.3g})")
    return ax
