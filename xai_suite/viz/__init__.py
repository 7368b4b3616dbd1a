"""Matplotlib plots of explanations (imported on first use; nothing here calls ``show``).

Colours are symmetric around zero (red positive, blue negative) and scaled per plot: only
the picture is normalised, never the attributions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..explanation import Explanation

CMAP = "RdBu_r"


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _limit(a: np.ndarray) -> float:
    m = float(np.abs(a).max())
    return m if m > 0 else 1.0


def plot_explanation(exp: Explanation, index: int = 0, ax=None, *, feature_names=None,
                     max_features: int = 20, title: str | None = None):
    """Plot the attributions of instance ``index`` of ``exp``; returns the Axes.

    Parameters
    ----------
    exp : Explanation
    index : int
        Which instance.
    ax : matplotlib.axes.Axes, optional
        Drawn into a new figure if omitted (images need two axes and always make a figure).
    feature_names : sequence of str, optional
        Tabular only: bar labels.
    max_features : int
        Tabular only: the largest-magnitude features shown.
    title : str, optional
        Default: method, target and prediction.
    """
    n = len(exp)
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for an explanation of {n} instances")
    a, x = exp.attributions[index], exp.inputs[index]
    t = int(exp.target[index])
    title = title or f"{exp.method}  (target {t}, output {exp.predictions[index, t]:.3g})"
    if exp.modality == "tabular":
        return _bars(a, x, ax, feature_names, max_features, title)
    if exp.modality == "timeseries":
        return plot_series(x, a, ax=ax, title=title)
    if exp.modality == "image":
        return _image(x, a, title)
    raise ValueError(f"no plot for {exp.inputs.ndim}-D inputs")


def _bars(a, x, ax, names, max_features, title):
    plt = _plt()
    names = list(names) if names is not None else [f"x{i}" for i in range(a.size)]
    if len(names) != a.size:
        raise ValueError(f"feature_names has {len(names)} names for {a.size} features")
    order = np.argsort(-np.abs(a))[:max_features][::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    colors = ["#c0392b" if a[i] > 0 else "#2e6da4" for i in order]
    ax.barh([f"{names[i]} = {x[i]:.3g}" for i in order], a[order], color=colors)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("attribution")
    ax.set_title(title, fontsize=9)
    return ax


def plot_series(x: np.ndarray, a: np.ndarray, ax=None, *, title: str | None = None,
                channel_names=None):
    """One time series (C, T) drawn as lines coloured by attribution, with a heat strip.

    Returns the Axes (a new figure with one row per channel when ``ax`` is omitted and
    ``C > 1``: then the first row's Axes).
    """
    plt = _plt()
    from matplotlib.collections import LineCollection

    c, t = x.shape
    names = channel_names or [f"channel {i}" for i in range(c)]
    if ax is None:
        fig, axes = plt.subplots(c, 1, figsize=(8, 1.8 * c + 0.6), sharex=True, squeeze=False,
                                 layout="constrained")
        axes = axes[:, 0]
    else:
        if c != 1:
            raise ValueError("pass ax=None to plot a multichannel series (one row per channel)")
        fig, axes = ax.figure, [ax]
    lim = _limit(a)
    for i, axi in enumerate(axes):
        xs = np.arange(t)
        lo, hi = float(x[i].min()), float(x[i].max())
        pad = 0.1 * (hi - lo or 1.0)
        axi.imshow(a[i][None, :], aspect="auto", cmap=CMAP, vmin=-lim, vmax=lim, alpha=0.35,
                   extent=(-0.5, t - 0.5, lo - pad, hi + pad), origin="lower")
        pts = np.stack([xs, x[i]], 1)
        segs = np.stack([pts[:-1], pts[1:]], 1)
        lc = LineCollection(segs, cmap=CMAP, norm=plt.Normalize(-lim, lim), linewidths=2)
        lc.set_array((a[i][:-1] + a[i][1:]) / 2)
        axi.add_collection(lc)
        axi.set_xlim(-0.5, t - 0.5)
        axi.set_ylim(lo - pad, hi + pad)
        axi.set_ylabel(names[i], fontsize=8)
    axes[-1].set_xlabel("time")
    fig.colorbar(lc, ax=list(axes), label="attribution", fraction=0.03, pad=0.01)
    if title:
        axes[0].set_title(title, fontsize=9)
    return axes[0]


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
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=ax1, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    return ax1


def plot_comparison(explanations, index: int = 0, path=None, *, titles=None):
    """Attributions of one time series by several explanations, one row each.

    Parameters
    ----------
    explanations : sequence of Explanation
        Of the same univariate inputs.
    index : int
    path : str or Path, optional
        Where to save the figure (PNG); the figure is returned either way.
    titles : sequence of str, optional
    """
    plt = _plt()
    exps = list(explanations)
    if any(e.modality != "timeseries" or e.inputs.shape[1] != 1 for e in exps):
        raise ValueError("plot_comparison draws univariate time-series explanations (N, 1, T)")
    fig, axes = plt.subplots(len(exps), 1, figsize=(8, 1.6 * len(exps) + 0.5), sharex=True,
                             squeeze=False, layout="constrained")
    for i, (e, ax) in enumerate(zip(exps, axes[:, 0], strict=True)):
        plot_series(e.inputs[index], e.attributions[index], ax=ax,
                    title=titles[i] if titles else e.method)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
