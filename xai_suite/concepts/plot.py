"""Plots for concept models (matplotlib, imported on first use; nothing here calls ``show``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .explanation import ConceptExplanation


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.5))[1]


def plot_intervention_curve(curves, ax=None, *, metric: str = "task_accuracy", title: str | None = None):
    """Task accuracy against the number of concepts intervened on.

    Parameters
    ----------
    curves : pandas.DataFrame or dict of str to pandas.DataFrame
        Results of :func:`~xai_suite.concepts.intervention_curve`; a dict draws one line per
        label.
    ax : matplotlib.axes.Axes, optional
    metric : {"task_accuracy", "concept_accuracy"}
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if isinstance(curves, pd.DataFrame):
        curves = {None: curves}
    ax = _axes(ax)
    for label, df in curves.items():
        if not {"k", metric} <= set(df.columns):
            raise ValueError(f"an intervention curve needs columns 'k' and {metric!r}; got "
                             f"{list(df.columns)}")
        ax.plot(df["k"], df[metric], marker="o", label=label)
    ax.set_xlabel("concepts intervened on (k)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_xticks(sorted({int(k) for df in curves.values() for k in df["k"]}))
    if any(label is not None for label in curves):
        ax.legend()
    if title:
        ax.set_title(title)
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
