"""Summary plots of tabular explanations: beeswarm, mean |attribution| bars and waterfall.

A batch explained with ``target=None`` explains each row's *predicted* class, so its rows
may explain different classes; the summaries never pool them silently. They take
``target=k`` (the rows explained for class ``k``) and raise when rows explain several
classes and none is chosen. ``plot_bar(explainer.explain_all_classes(X), target="all")``
shows one bar group per class: every class explained for the same rows. Coded
categorical columns (``Explanation.categories``) are shown by their labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..explanation import Explanation

#: Colours of positive and negative attributions (as the single-instance bars).
POSITIVE, NEGATIVE = "#c0392b", "#2e6da4"
#: Colour map of feature values in the beeswarm (low blue, high red).
VALUE_CMAP = "coolwarm"


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _number(v: float) -> str:
    """A value as a label: integers whole, large values without exponent, else 4 digits."""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def value_labels(x, feature_names, categories=None) -> list[str]:
    """One instance's values as the user knows them: a category's label, else the number.

    Parameters
    ----------
    x : array-like, shape (F,)
        One tabular instance, as the model saw it (categorical columns as codes).
    feature_names : sequence of str, or None
        The columns (``categories``' keys); ``x0, x1, ...`` where None.
    categories : dict of str to sequence of str, optional
        Column -> the label of each code (``Explanation.categories``).

    Returns
    -------
    list of str, length F
    """
    from ..explanation import decoded_frame

    row = decoded_frame(np.asarray(x, np.float64)[None], feature_names, categories).iloc[0]
    return [v if isinstance(v, str) else _number(v) for v in row.tolist()]


def _tabular(explanations) -> list[Explanation]:
    """``explanations`` (one or a sequence) as a list of tabular explanations of one layout."""
    from ..explanation import Explanation

    exps = [explanations] if isinstance(explanations, Explanation) else list(explanations)
    if not exps or not all(isinstance(e, Explanation) for e in exps):
        raise TypeError("expected an Explanation or a non-empty sequence of them (one per class, as "
                        "explainer.explain_all_classes(X) returns)")
    first = exps[0]
    if any(e.modality != "tabular" for e in exps):
        raise ValueError(f"summary plots need tabular (N, F) explanations; got "
                         f"{sorted({e.modality for e in exps})}")
    if any(e.inputs.shape[1] != first.inputs.shape[1] or e.feature_names != first.feature_names
           for e in exps):
        raise ValueError("the explanations must have the same features (columns, in order)")
    return exps


def _class_name(k: int, class_names) -> str:
    return f"class {k}" if class_names is None else str(class_names[k])


def _checked(explanations, max_features, class_names) -> list[Explanation]:
    """The explanations (:func:`_tabular`), after checking the plot's common arguments."""
    if isinstance(max_features, bool) or not isinstance(max_features, int | np.integer) \
            or max_features < 1:
        raise ValueError(f"max_features must be an int >= 1; got {max_features!r}")
    exps = _tabular(explanations)
    n = exps[0].predictions.shape[1]
    if class_names is not None and len(class_names) != n:
        raise ValueError(f"class_names must name each of the model's {n} outputs; got "
                         f"{len(class_names)} names")
    return exps


def _rows_for(exps: list[Explanation], target) -> tuple[int, np.ndarray, np.ndarray]:
    """``(k, attributions (n, F), inputs (n, F))`` of the rows explained for one class ``k``:
    ``target``, or the one class every row explains when it is None."""
    classes = sorted(set().union(*(np.unique(e.target).tolist() for e in exps)))
    if target is None:
        if len(classes) > 1:
            raise ValueError(
                f"the rows explain different classes {classes} (target=None explains each row's "
                "predicted class), and a summary of them together would mix classes: pass target=k "
                "to summarise the rows explained for class k, or explain every row for one class "
                "with explainer.explain(X, target=k) (every class: explain_all_classes(X), then "
                "plot_bar(..., target='all'))")
        target = classes[0]
    if isinstance(target, bool) or not isinstance(target, int | np.integer):
        raise TypeError(f"target must be None or a class index (int); got {target!r}")
    k = int(target)
    rows = [e.target == k for e in exps]
    if not any(r.any() for r in rows):
        raise ValueError(f"no row is explained for class {k} (the rows explain classes {classes}); "
                         f"explain them for it: explainer.explain(X, target={k})")
    attrs = np.concatenate([e.attributions[r] for e, r in zip(exps, rows, strict=True)])
    inputs = np.concatenate([e.inputs[r] for e, r in zip(exps, rows, strict=True)])
    return k, attrs.astype(np.float64), inputs


def _names(exp: Explanation) -> list[str]:
    return list(exp.feature_names or (f"x{j}" for j in range(exp.inputs.shape[1])))


def _new_axes(ax, n_rows: int):
    if ax is None:
        _, ax = _plt().subplots(figsize=(6.5, 0.4 * n_rows + 1.4), layout="constrained")
    return ax


def _swarm(a: np.ndarray, width: float = 0.4, n_bins: int = 100) -> np.ndarray:
    """Vertical offsets that spread points of similar value (deterministic, as shap's)."""
    span = float(np.ptp(a)) or 1.0
    bins = np.round(n_bins * (a - a.min()) / span)
    offsets = np.zeros(len(a))
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        rank = np.arange(len(members))
        offsets[members] = (rank + 1) // 2 * np.where(rank % 2, 1.0, -1.0)
    return offsets * (width / max(1.0, float(np.abs(offsets).max())))


def _swarm_features(exp: Explanation, attrs: np.ndarray, inputs: np.ndarray, max_features: int):
    """The beeswarm's rows, bottom to top (the most important on top): ``(order, labels,
    colours)``, the feature indices, their labels (categorical: ``name (a < b < c)``) and each
    row's point colours in [0, 1] (the value between its 5th and 95th percentile; a category's
    code)."""
    names, categories = _names(exp), exp.categories or {}
    order = np.argsort(-np.abs(attrs).mean(0), kind="stable")[:max_features][::-1]
    labels, colours = [], []
    for j in order:
        v = inputs[:, j].astype(np.float64)
        if names[j] in categories:
            cats = categories[names[j]]
            colours.append(v / max(1, len(cats) - 1))
            shown = " < ".join(cats) if len(cats) <= 6 else f"codes 0..{len(cats) - 1}"
            labels.append(f"{names[j]} ({shown})")
        else:
            lo, hi = np.percentile(v, [5, 95])
            colours.append(np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.full(len(v), 0.5))
            labels.append(names[j])
    return order, labels, colours


def plot_beeswarm(explanations, *, target=None, max_features: int = 10, class_names=None, ax=None,
                  title: str | None = None):
    """Every row's attribution per feature, coloured by the feature's value; returns the Axes.

    Features are sorted by mean |attribution| (largest on top). A point's colour is its
    feature's value, from low (blue) to high (red) between the feature's 5th and 95th
    percentiles; a categorical column is coloured by its code, in the order its tick label
    lists the categories (``color (blue < green < red)``).

    Parameters
    ----------
    explanations : Explanation or sequence of Explanation
        Tabular explanations of the same features (e.g. ``explain_all_classes``' list).
    target : int, optional
        The class whose rows are drawn; required when the rows explain several classes.
    max_features : int
        The most important features shown.
    class_names : sequence of str, optional
        One name per model output (default ``class k``).
    ax : matplotlib.axes.Axes, optional
    title : str, optional
    """
    exps = _checked(explanations, max_features, class_names)
    k, attrs, inputs = _rows_for(exps, target)
    order, labels, colours = _swarm_features(exps[0], attrs, inputs, max_features)
    ax = _new_axes(ax, len(order))
    for pos, j in enumerate(order):
        points = ax.scatter(attrs[:, j], pos + _swarm(attrs[:, j]), c=colours[pos], cmap=VALUE_CMAP,
                            vmin=0, vmax=1, s=12, linewidths=0)
    ax.set_yticks(range(len(order)), labels)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel(f"attribution (for {_class_name(k, class_names)})")
    bar = ax.figure.colorbar(points, ax=ax, ticks=[0, 1], aspect=40, pad=0.01)
    bar.ax.set_yticklabels(["low", "high"])
    bar.set_label("feature value (categories: by code)")
    ax.set_title(title or f"{exps[0].method}: {len(attrs)} rows", fontsize=9)
    return ax


def _bar_means(exps: list[Explanation], target) -> tuple[list[int], np.ndarray]:
    """``(classes, means (len(classes), F))``: the mean |attribution| per feature of the rows
    explained for ``target`` (see :func:`_rows_for`), or of each class with ``target="all"``."""
    if isinstance(target, str):
        if target != "all":
            raise ValueError(f"target must be None, a class index or 'all'; got {target!r}")
        targets = [np.unique(e.target) for e in exps]
        if any(len(t) != 1 for t in targets) or len({int(t[0]) for t in targets}) != len(exps) \
                or any(not np.array_equal(e.inputs, exps[0].inputs) for e in exps):
            raise ValueError("target='all' takes one explanation per class, each of the same rows "
                             "(as explainer.explain_all_classes(X) returns)")
        classes = [int(t[0]) for t in targets]
        means = np.stack([np.abs(e.attributions.astype(np.float64)).mean(0) for e in exps])
    else:
        k, attrs, _ = _rows_for(exps, target)
        classes, means = [k], np.abs(attrs).mean(0)[None]
    return classes, means


def plot_bar(explanations, *, target=None, max_features: int = 10, class_names=None, ax=None,
             title: str | None = None):
    """Mean |attribution| per feature, largest on top; returns the Axes.

    Parameters
    ----------
    explanations : Explanation or sequence of Explanation
        Tabular explanations of the same features.
    target : int or "all", optional
        The class whose rows are summarised (required when the rows explain several
        classes), or ``"all"``: one bar per class for each feature, from one explanation per
        class of the same rows (``plot_bar(explainer.explain_all_classes(X), target="all")``),
        features sorted by their total over the classes.
    max_features : int
    class_names : sequence of str, optional
        One name per model output (default ``class k``).
    ax : matplotlib.axes.Axes, optional
    title : str, optional
    """
    exps = _checked(explanations, max_features, class_names)
    classes, means = _bar_means(exps, target)
    names = _names(exps[0])
    order = np.argsort(-means.sum(0), kind="stable")[:max_features][::-1]
    ax = _new_axes(ax, len(order))
    height = 0.8 / len(classes)
    for c, k in enumerate(classes):  # the first class on top within each group
        y = np.arange(len(order)) + 0.4 - height * (c + 0.5)
        ax.barh(y, means[c, order], height=height, label=_class_name(k, class_names),
                color=POSITIVE if len(classes) == 1 else None)
    ax.set_yticks(range(len(order)), [names[j] for j in order])
    ax.set_xlabel("mean |attribution|" + ("" if len(classes) > 1 else
                                          f" (for {_class_name(classes[0], class_names)})"))
    if len(classes) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or exps[0].method, fontsize=9)
    return ax


def _waterfall_steps(exp: Explanation, index: int, max_features: int):
    """``(target, base, steps, f(x))`` of instance ``index``'s waterfall: ``steps`` bottom to
    top, ``(label, attribution)``, the "other features" sum first, each feature labelled
    ``feature = value``; ``base + sum(steps) = f(x)`` up to ``convergence_delta``."""
    if exp.base_values is None:
        raise ValueError(f"{exp.method} has no base values (no completeness property), so its "
                         "attributions do not build up an output; use a method that has one")
    n = len(exp)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for an explanation of {n} instances")
    a = exp.attributions[index].astype(np.float64)
    t, base = int(exp.target[index]), float(exp.base_values[index])
    names = _names(exp)
    labels = [f"{c} = {v}" for c, v in zip(names, value_labels(exp.inputs[index], names, exp.categories),
                                           strict=True)]
    order = np.argsort(-np.abs(a), kind="stable")
    shown, rest = order[:max_features][::-1], order[max_features:]
    steps = ([(f"{len(rest)} other features", float(a[rest].sum()))] if len(rest) else [])
    steps += [(labels[j], float(a[j])) for j in shown]
    return t, base, steps, float(exp.predictions[index, t])


def plot_waterfall(exp: Explanation, index: int = 0, *, max_features: int = 10, class_names=None,
                   ax=None, title: str | None = None):
    """How one instance's output builds up from the base value, feature by feature.

    Bars start at ``base_values[index]`` (``E[f(X)]``) and add each attribution in turn,
    largest on top, the smallest summed into one "other features" bar; the last ends at
    ``base + sum(attributions) = f(x)`` (up to ``convergence_delta``). Each bar is labelled
    ``feature = value`` (a category's label, else the input value).

    Parameters
    ----------
    exp : Explanation
        Tabular, with ``base_values`` (methods with a completeness property).
    index : int
        Which instance.
    max_features : int
        Bars shown for single features.
    class_names : sequence of str, optional
        One name per model output (default ``class k``).
    ax : matplotlib.axes.Axes, optional
    title : str, optional
    """
    (exp,) = _checked(exp, max_features, class_names)
    t, base, steps, fx = _waterfall_steps(exp, index, max_features)
    ax = _new_axes(ax, len(steps))
    start = base
    for y, (_, v) in enumerate(steps):  # bottom to top
        ax.barh(y, v, left=start, color=POSITIVE if v > 0 else NEGATIVE, height=0.7)
        ax.annotate(f"{v:+.3g}", (max(start, start + v), y), xytext=(3, 0),  # right of the bar
                    textcoords="offset points", va="center", fontsize=7)
        start += v
    ax.axvline(base, color="0.5", lw=0.8, ls=":", label=f"E[f(X)] = {base:.4g}")
    ax.axvline(fx, color="k", lw=0.8, ls="--", label=f"f(x) = {fx:.4g}")
    ax.set_yticks(range(len(steps)), [s for s, _ in steps])
    ax.margins(x=0.15)  # room for the value labels
    ax.set_xlabel(f"output for {_class_name(t, class_names)}")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"{exp.method}: instance {index}", fontsize=9)
    return ax
