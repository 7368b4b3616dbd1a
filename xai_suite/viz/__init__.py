"""Matplotlib plots of explanations (imported on first use; nothing here calls ``show``).

Colours are symmetric around zero (red positive, blue negative, white at zero) and scaled
per plot, or shared across the panels of :func:`plot_comparison`: only the picture is
normalised, never the attributions. Time series are drawn as a dark line over their
attribution, so no part of a series fades into the background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .html_views import baseline_html, comparison_html  # noqa: F401 (plotly imported on use)
from .image import CMAP, _limit, plot_baseline_grid, plot_image_attribution  # noqa: F401 (re-exported)
from .tabular import NEGATIVE, POSITIVE, plot_bar, plot_beeswarm, plot_waterfall, value_labels  # noqa: F401
from .text import render_text_html  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from ..explanation import CounterfactualExplanation, Explanation


def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot_explanation(exp: Explanation, index: int = 0, ax=None, *, feature_names=None,
                     max_features: int = 20, title: str | None = None, kind: str = "lines",
                     class_names=None):
    """Plot the attributions of instance ``index`` of ``exp``; returns the Axes.

    Parameters
    ----------
    exp : Explanation
    index : int
        Which instance.
    ax : matplotlib.axes.Axes, optional
        Drawn into a new figure if omitted. Images: with ``ax``, the attribution overlaid on
        the image (:func:`plot_image_attribution`); without, a new figure with the input and
        the attribution side by side.
    feature_names : sequence of str, optional
        Tabular only: bar labels (default ``exp.feature_names``, else ``x0, x1, ...``),
        each shown as ``name = value`` (coded categorical columns by their labels).
    max_features : int
        Tabular only: the largest-magnitude features shown.
    title : str, optional
        Default: method, explained class (``class <name>``), its output, and the predicted
        class where it differs (tabular without ``class_names``: the target index).
    kind : {"lines", "heatmap"}
        Time series only: each channel drawn as a dark line over its attribution (see
        :func:`plot_series`), or one channel x time heat map (better for many channels).
    class_names : sequence of str, optional
        One name per model output, for the title (default ``class 0``, ``class 1``, ...).
    """
    n = len(exp)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for an explanation of {n} instances")
    a, x = exp.attributions[index], exp.inputs[index]
    t = int(exp.target[index])
    if exp.modality == "tabular" and class_names is None:  # regressors have no classes
        title = title or f"{exp.method}  (target {t}, output {exp.predictions[index, t]:.3g})"
    else:
        title = title or _class_title(exp, index, class_names)
    if exp.modality == "tabular":
        return _bars(a, x, ax, feature_names or exp.feature_names, max_features, title,
                     categories=(exp.feature_names, exp.categories))
    if exp.modality == "timeseries":
        if kind == "heatmap":
            return plot_heatmap(a, ax=ax, title=title)
        if kind != "lines":
            raise ValueError(f"kind must be 'lines' or 'heatmap' for time series; got {kind!r}")
        return plot_series(x, a, ax=ax, title=title)
    if exp.modality == "image":
        return _image(x, a, title) if ax is None else plot_image_attribution(x, a, ax=ax, title=title)
    raise ValueError(f"no plot for {exp.inputs.ndim}-D inputs")


def _class_names(class_names, n_outputs: int) -> list[str]:
    """``class_names`` as a list of ``n_outputs`` str (default ``"0"``, ``"1"``, ...)."""
    if class_names is None:
        return [str(k) for k in range(n_outputs)]
    names = [str(c) for c in class_names]
    if len(names) != n_outputs:
        raise ValueError(f"class_names must name each of the model's {n_outputs} outputs; got "
                         f"{len(names)} names")
    return names


def _class_title(exp: Explanation, index: int, class_names) -> str:
    """``"<method>: class <name> (output v)"``, and the predicted class where it differs."""
    p = exp.predictions[index]
    names = _class_names(class_names, p.size)
    t, k = int(exp.target[index]), int(p.argmax())
    title = f"{exp.method}: class {names[t]} (output {p[t]:.3g})"
    return title if k == t else f"{title}, predicted class {names[k]}"


def _bars(a, x, ax, names, max_features, title, categories=(None, None)):
    """Signed bars labelled ``name = value``; ``categories``: the columns and their labels
    (``exp.feature_names, exp.categories``) by which coded values are shown."""
    plt = _plt()
    names = list(names) if names is not None else [f"x{i}" for i in range(a.size)]
    if len(names) != a.size:
        raise ValueError(f"feature_names has {len(names)} names for {a.size} features")
    order = np.argsort(-np.abs(a))[:max_features][::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    colors = [POSITIVE if a[i] > 0 else NEGATIVE for i in order]
    values = value_labels(x, *categories)
    ax.barh([f"{names[i]} = {values[i]}" for i in order], a[order], color=colors)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("attribution")
    ax.set_title(title, fontsize=9)
    return ax


def _channel_axes(c: int, ax):
    """A figure with one row per channel, or the given ``ax`` for a single channel."""
    if ax is None:
        fig, axes = _plt().subplots(c, 1, figsize=(8, 1.8 * c + 0.6), sharex=True,
                                    squeeze=False, layout="constrained")
        return fig, list(axes[:, 0])
    if c != 1:
        raise ValueError("pass ax=None to plot a multichannel series (one row per channel)")
    return ax.figure, [ax]


#: The colour of a plotted series: neutral, readable over any attribution colour.
SERIES_COLOR = "0.1"
#: Opacity of the attribution shading behind a series (the colour bar shows it too).
SHADE_ALPHA = 0.6


def _check_limit(limit) -> float | None:
    ok = isinstance(limit, int | float | np.integer | np.floating) and not isinstance(limit, bool)
    if limit is not None and not (ok and np.isfinite(limit) and limit > 0):
        raise ValueError(f"limit must be a positive finite number (the colour scale's max |a|); "
                         f"got {limit!r}")
    return None if limit is None else float(limit)


def plot_series(x: np.ndarray, a: np.ndarray, ax=None, *, title: str | None = None,
                channel_names=None, limit: float | None = None, colorbar: bool = True):
    """One time series (C, T) drawn as a dark line over shading by its attribution.

    Each channel's series is one neutral line (:data:`SERIES_COLOR`); behind it every time
    step is shaded by its attribution on a diverging map, symmetric around zero (white at
    zero), with a colour bar labelled ``attribution``.

    Parameters
    ----------
    x, a : numpy.ndarray, shape (C, T)
        The series and its attributions.
    ax : matplotlib.axes.Axes, optional
        Only for ``C == 1``; otherwise a new figure with one row per channel.
    title : str, optional
    channel_names : sequence of str, optional
        Row labels (default ``channel 0``, ``channel 1``, ...).
    limit : float, optional
        The colour scale's limits ``[-limit, limit]`` (default ``max |a|``); pass one limit
        to several plots to compare them on one scale.
    colorbar : bool
        Add the colour bar.

    Returns
    -------
    matplotlib.axes.Axes
        The first row's Axes; ``ax.lines[0]`` is the series, ``ax.images[0]`` the shading.
    """
    c, t = x.shape
    names = channel_names or [f"channel {i}" for i in range(c)]
    fig, axes = _channel_axes(c, ax)
    lim = _check_limit(limit) or _limit(a)
    for i, axi in enumerate(axes):
        lo, hi = float(x[i].min()), float(x[i].max())
        pad = 0.1 * (hi - lo or 1.0)
        im = axi.imshow(a[i][None, :], aspect="auto", cmap=CMAP, vmin=-lim, vmax=lim,
                        alpha=SHADE_ALPHA, interpolation="nearest",
                        extent=(-0.5, t - 0.5, lo - pad, hi + pad), origin="lower")
        axi.plot(np.arange(t), x[i], color=SERIES_COLOR, lw=1.6)
        axi.set(xlim=(-0.5, t - 0.5), ylim=(lo - pad, hi + pad))
        axi.set_ylabel(names[i], fontsize=8)
    axes[-1].set_xlabel("time")
    if colorbar:
        fig.colorbar(im, ax=list(axes), label="attribution", fraction=0.03, pad=0.01)
    if title:
        axes[0].set_title(title, fontsize=9)
    return axes[0]


def plot_heatmap(a: np.ndarray, ax=None, *, title: str | None = None, channel_names=None,
                 limit: float | None = None):
    """Attributions of one time series (C, T) as a channel x time heat map; returns the Axes.

    The colour scale is ``[-limit, limit]`` (default ``limit = max |a|``).
    """
    plt = _plt()
    c = a.shape[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * c + 1.4), layout="constrained")
    lim = _check_limit(limit) or _limit(a)
    im = ax.imshow(a, aspect="auto", cmap=CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(c), channel_names or [f"channel {i}" for i in range(c)], fontsize=8)
    ax.set_xlabel("time")
    ax.figure.colorbar(im, ax=ax, label="attribution", fraction=0.03, pad=0.01)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_counterfactual(exp: CounterfactualExplanation, index: int = 0, ax=None, *,
                        channel_names=None, feature_names=None, title: str | None = None):
    """Counterfactual ``index`` of ``exp`` against its input; returns the (first) Axes.

    Time series: the input and the counterfactual per channel, changed time steps shaded.
    Tabular: one bar per changed feature, the change ``new - old`` as a fraction of the
    feature's training range (``exp.feature_ranges``; raw units where it is unknown), so a
    small change of a feature with a small range stays visible; annotated ``old -> new`` in
    the input's units, categories by their labels (a changed category: a diamond at 0).
    """
    n = len(exp)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for {n} counterfactuals")
    x, cf = exp.inputs[index], exp.counterfactuals[index]
    title = title or f"{exp.method}: {_counterfactual_status(exp, index)}"
    if exp.modality == "tabular":
        return _changes(exp, index, ax, feature_names, title)
    if exp.modality != "timeseries":
        raise ValueError(f"no counterfactual plot for {exp.modality} inputs")
    c = x.shape[0]
    _, axes = _channel_axes(c, ax)
    names = channel_names or [f"channel {i}" for i in range(c)]
    for i, (axi, runs) in enumerate(zip(axes, _changed_runs(x, cf), strict=True)):
        for start, stop in runs:
            axi.axvspan(start, stop, color=_CHANGED, alpha=0.3, lw=0, label="changed")
        axi.plot(x[i], color="0.35", lw=1.5, label="input")
        axi.plot(cf[i], color="#c0392b", lw=1.5, label="counterfactual")
        axi.set_ylabel(names[i], fontsize=8)
    _legend(axes[0], axes)
    axes[-1].set_xlabel("time")
    axes[0].set_title(title, fontsize=9)
    return axes[0]


def _counterfactual_status(exp: CounterfactualExplanation, index: int) -> str:
    """``"class 0 -> 1 (target 1, valid)"`` for counterfactual ``index``."""
    orig = int(exp.predictions[index].argmax())
    new = int(exp.metrics["new_class"][index])
    status = "valid" if exp.valid[index] else "NOT valid"
    return f"class {orig} -> {new} (target {int(exp.target[index])}, {status})"


#: Shade of the time steps a counterfactual changed.
_CHANGED = "#f5b041"


def _changed_runs(x: np.ndarray, cf: np.ndarray) -> list[list[tuple[float, float]]]:
    """Per channel of one series ``(C, T)`` and its counterfactual, the runs of consecutive
    changed steps (:func:`~xai_suite.metrics.counterfactual.changed_points`) as ``(start - 0.5,
    stop + 0.5)`` spans of the time axis."""
    from ..metrics.counterfactual import changed_points

    out = []
    for row in changed_points(x, cf):
        steps = np.flatnonzero(row)
        runs = np.split(steps, np.flatnonzero(np.diff(steps) > 1) + 1) if steps.size else []
        out.append([(r[0] - 0.5, r[-1] + 0.5) for r in runs])
    return out


def _legend(ax, axes) -> None:
    """One legend on ``ax`` with every label drawn on any of ``axes``, each once."""
    entries: dict = {}
    for a in axes:
        for handle, label in zip(*a.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    ax.legend(entries.values(), entries.keys(), fontsize=7, loc="upper right")


#: Colours of the tabular counterfactual plot: increase, decrease, category changed.
_CHANGE_STYLE = {"increase": "#c0392b", "decrease": "#2e6da4", "category changed": "#8e44ad"}


def _change_bars(exp: CounterfactualExplanation, index: int, feature_names=None):
    """What the tabular plots of counterfactual ``index`` draw, one entry per changed feature.

    Returns
    -------
    table : pandas.DataFrame
        :meth:`~xai_suite.explanation.CounterfactualExplanation.changes` of the instance.
    names : list of str
        The changed features' display names.
    delta : numpy.ndarray of float64, shape (n_changed,)
        ``new - old`` over the feature's training range (raw units where it is unknown).
    categorical : numpy.ndarray of bool, shape (n_changed,)
    xlabel : str
        What ``delta`` measures.
    """
    table = exp.changes(index)
    names = list(feature_names or exp.feature_names or [f"x{j}" for j in range(exp.inputs.shape[1])])
    if len(names) != exp.inputs.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names for {exp.inputs.shape[1]} features")
    cols = list(exp.feature_names or [f"x{j}" for j in range(exp.inputs.shape[1])])
    j = np.asarray([cols.index(f) for f in table["feature"]], dtype=np.int64)
    delta = (exp.counterfactuals[index, j] - exp.inputs[index, j]).astype(np.float64)
    if exp.feature_ranges is not None:
        width = exp.feature_ranges[1, j] - exp.feature_ranges[0, j]
        delta = delta / np.where(width > 0, width, 1.0)
        xlabel = "change (new - old) / training range of the feature"
    else:
        xlabel = "change (new - old), in the feature's units"
    categorical = np.asarray([cols[k] in (exp.categories or {}) for k in j], dtype=bool)
    return table, [names[k] for k in j], delta, categorical, xlabel


def _changes(exp: CounterfactualExplanation, index: int, ax, feature_names, title: str):
    """The tabular branch of :func:`plot_counterfactual`."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = _plt()
    table, names, delta, categorical, xlabel = _change_bars(exp, index, feature_names)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.4 * max(len(names), 1) + 1.4), layout="constrained")
    used = []
    for row, (d, cat) in enumerate(zip(delta, categorical, strict=True)):
        kind = "category changed" if cat else "increase" if d > 0 else "decrease"
        used.append(kind)
        if cat:
            ax.plot([0.0], [row], marker="D", ms=7, ls="", color=_CHANGE_STYLE[kind])
        else:
            ax.barh(row, d, color=_CHANGE_STYLE[kind])
        old, new = (_value_text(v) for v in table.iloc[row][["old", "new"]])
        ax.annotate(f"{old} -> {new}", (0.0 if cat else d, row), xytext=(6 if cat or d >= 0 else -6, 0),
                    textcoords="offset points", va="center", ha="left" if cat or d >= 0 else "right",
                    fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    if len(names):
        lim = max(float(np.abs(delta[~categorical]).max(initial=0.0)), 0.05)
        ax.set_xlim(-2.2 * lim, 2.2 * lim)  # room for the annotations
        ax.set_ylim(-0.7, len(names) - 0.3)
        handles = [Line2D([], [], marker="D", ls="", color=c, label=k) if k == "category changed"
                   else Patch(color=c, label=k) for k, c in _CHANGE_STYLE.items() if k in used]
        ax.legend(handles=handles, fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no feature changed", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title, fontsize=9)
    return ax


def _value_text(v) -> str:
    """A value of :meth:`~xai_suite.explanation.CounterfactualExplanation.changes` as text: 4
    significant digits, whole numbers from 10,000 up; labels as they are."""
    if not isinstance(v, float | np.floating):
        return str(v)
    return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def _image(x, a, title):
    plt = _plt()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(7, 3.4), layout="constrained")
    img = np.moveaxis(x, 0, -1)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    ax0.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
    ax0.set_title("input", fontsize=9)
    heat = a.sum(0)
    lim = _limit(heat)
    im = ax1.imshow(heat, cmap=CMAP, vmin=-lim, vmax=lim)
    ax1.set_title("attribution (summed over channels)", fontsize=9)
    for ax in (ax0, ax1):
        ax.set(xticks=[], yticks=[])
    fig.colorbar(im, ax=ax1, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    return ax1


def plot_comparison(explanations, index: int = 0, path=None, *, titles=None, class_names=None):
    """Attributions of one time series by several explanations, one row each, on one scale.

    Every row shares the colour limits ``[-m, m]``, ``m`` the largest ``|a|`` of instance
    ``index`` over all the explanations, and the figure has one colour bar.

    Parameters
    ----------
    explanations : sequence of Explanation
        Of the same univariate inputs (N, 1, T).
    index : int
    path : str or Path, optional
        Where to save the figure (PNG); the figure is returned either way.
    titles : sequence of str, optional
        One per explanation (default: the method names).
    class_names : sequence of str, optional
        One name per model output: the figure's title names the explained class
        (``class <name>``; each row's title where the explanations explain different ones).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    exps = list(explanations)
    if not exps:
        raise ValueError("plot_comparison needs at least one explanation")
    if any(e.modality != "timeseries" or e.inputs.shape[1] != 1 for e in exps):
        raise ValueError("plot_comparison draws univariate time-series explanations (N, 1, T)")
    n = min(len(e) for e in exps)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for explanations of {n} instances")
    x = exps[0].inputs[index]
    if any(e.inputs[index].shape != x.shape or not np.allclose(e.inputs[index], x) for e in exps):
        raise ValueError(f"plot_comparison compares explanations of one series: instance {index} "
                         "differs between the explanations")
    titles = list(titles) if titles is not None else [e.method for e in exps]
    if len(titles) != len(exps):
        raise ValueError(f"titles has {len(titles)} entries for {len(exps)} explanations")
    names = [_class_names(class_names, e.predictions.shape[1]) for e in exps]
    classes = [nm[int(e.target[index])] for nm, e in zip(names, exps, strict=True)]
    one_class = len(set(classes)) == 1
    lim = _limit(np.stack([e.attributions[index] for e in exps]))
    fig, axes = plt.subplots(len(exps), 1, figsize=(8, 1.6 * len(exps) + 0.7), sharex=True,
                             squeeze=False, layout="constrained")
    for e, ax, label, cls in zip(exps, axes[:, 0], titles, classes, strict=True):
        plot_series(e.inputs[index], e.attributions[index], ax=ax, limit=lim, colorbar=False,
                    title=label if one_class else f"{label}: class {cls}")
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("time")
    fig.colorbar(axes[0, 0].images[0], ax=list(axes[:, 0]), label="attribution", fraction=0.03,
                 pad=0.01)
    if one_class:
        fig.suptitle(f"instance {index}: attributions for class {classes[0]}", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
