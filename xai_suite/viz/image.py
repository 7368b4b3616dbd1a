"""Image plots: an attribution overlaid on its image, and "one image, every baseline".

Matplotlib is imported inside the functions; nothing here calls ``show``. Colours are
symmetric around zero (red positive, blue negative) and scaled per panel: only the picture
is normalised, never the attributions.
"""

from __future__ import annotations

import numpy as np

CMAP = "RdBu_r"


def _as_array(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a.astype(np.float64)


def _gray(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W) in [0, 1]: channel mean, min-max scaled for display."""
    g = image.mean(0) if image.ndim == 3 else image
    lo, hi = g.min(), g.max()
    return (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)


def plot_image_attribution(image, attribution, ax=None, *, alpha: float = 0.8, cmap: str = CMAP,
                           title: str | None = None, colorbar: bool = True):
    """One attribution map drawn over its image.

    The image is shown in gray (channel mean, min-max scaled); on top, the attribution summed
    over channels in a signed colormap with symmetric limits ``[-m, m]``, ``m = max |a|``,
    each pixel's opacity growing with ``|a|`` (``alpha * |a| / m``), so the image shows
    through where the attribution is small.

    Parameters
    ----------
    image : array-like, shape (C, H, W) or (H, W)
    attribution : array-like, shape (C, H, W) or (H, W)
        Of the image's shape, or already (H, W) for a (C, H, W) image.
    ax : matplotlib.axes.Axes, optional
        Drawn into a new figure if omitted.
    alpha : float
        Opacity of the attribution layer where ``|a|`` is largest, in [0, 1].
    cmap : str
        A diverging colormap.
    title : str, optional
    colorbar : bool
        Add a colorbar for the attribution layer.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.images[0]`` is the gray image, ``ax.images[1]`` the (H, W) attribution layer.
    """
    import matplotlib.pyplot as plt

    img = _as_array(image, "image")
    a = _as_array(attribution, "attribution")
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be one image (C, H, W) or (H, W); got shape {img.shape}")
    if a.shape != img.shape and a.shape != img.shape[-2:]:
        raise ValueError(f"attribution must have the image's shape {img.shape} or {img.shape[-2:]}; "
                         f"got {a.shape}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
    heat = a.sum(0) if a.ndim == 3 else a
    m = float(np.abs(heat).max())
    lim = m if m > 0 else 1.0
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.2), layout="constrained")
    ax.imshow(_gray(img), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    opacity = float(alpha) * np.abs(heat) / lim  # the image shows through where |a| is small
    im = ax.imshow(heat, cmap=cmap, vmin=-lim, vmax=lim, alpha=opacity, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="attribution")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _baseline_names(baselines, fit_data) -> list:
    from ..baselines import ensure_baseline, list_baselines

    if baselines is None:
        names = list_baselines("image")
        if fit_data is None:  # leave out those that learn from training data
            names = [n for n in names if not ensure_baseline(n).needs_fit]
        return names
    baselines = list(baselines)
    if not baselines:
        raise ValueError("baselines must name at least one baseline")
    return baselines


def _label(spec) -> str:
    from ..baselines import ensure_baseline

    return spec if isinstance(spec, str) else ensure_baseline(spec).describe()["name"]


def plot_baseline_grid(model, image, *, method: str = "integrated_gradients", baselines=None,
                       target=None, fit_data=None, path=None, random_state: int | None = 0,
                       ncols: int = 6, alpha: float = 0.8, **params):
    """One image, every baseline: how the attribution of ``method`` changes with its baseline.

    The first panel is the image (titled with the explained class and its probability);
    each further panel overlays the attribution computed with one baseline, titled with the
    baseline's name, the completeness error ``sum(a) - (f_t(x) - f_t(b))`` (where the
    method has one) and the target's probability at the baseline ``p_t(b)`` (softmax of a
    torch model's outputs; the output itself for other models; the mean over draws for
    random baselines). Each panel has its own symmetric colour scale.

    Parameters
    ----------
    model : torch.nn.Module or model accepted by ``method``
    image : array-like, shape (C, H, W)
        One image.
    method : str
        A registry name of a method that takes a ``baseline``.
    baselines : sequence of (str, float, callable or Baseline), optional
        Default: every baseline registered for images, less those that learn from training
        data when ``fit_data`` is not given.
    target : int, optional
        Class explained; default the predicted class.
    fit_data : array-like or tuple (X, y), optional
        Training data for baselines that learn from it (``training_*``, ``nearest_unlike``).
    path : str or Path, optional
        Where to save the figure (PNG); the figure is returned either way.
    random_state : int or None
        Seed of stochastic baselines and methods (given to methods that take it).
    ncols : int
        Panels per row.
    alpha : float
        Opacity of the attribution layers.
    **params
        Further hyper-parameters of ``method`` (e.g. ``n_steps``).

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` is the image, ``fig.axes[1 + i]`` baseline ``i``'s panel, whose
        ``images[1]`` holds its (H, W) attribution summed over channels.
    """
    import matplotlib.pyplot as plt
    import torch

    from ..modeling import ModelWrapper
    from ..registry import create_explainer, explainer_info

    img = _as_array(image, "image")
    if img.ndim != 3:
        raise ValueError(f"image must be one (C, H, W) image; got shape {img.shape}")
    info = explainer_info(method)
    if "baseline" not in info.params:
        raise ValueError(f"{info.qualified_name} takes no baseline; choose a method that does "
                         "(e.g. integrated_gradients, captum:occlusion)")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int; got {ncols!r}")
    names = _baseline_names(baselines, fit_data)
    if "random_state" in info.params:
        params = {"random_state": random_state, **params}
    x = img[None].astype(np.float32)
    exps = []
    for b in names:
        explainer = create_explainer(method, model, baseline=b, **params)
        if explainer.requires_fit:
            if fit_data is None:
                raise ValueError(f"baseline {_label(b)!r} learns from training data: pass "
                                 "fit_data=(X, y)")
            X, y = fit_data if isinstance(fit_data, tuple) else (fit_data, None)
            explainer.fit(X, y)
        exps.append(explainer.explain(x, target))
    t = int(exps[0].target[0])
    wrapper = ModelWrapper(model, device="cpu")

    def prob(batch: np.ndarray) -> float:
        with wrapper.prepared():
            out = torch.from_numpy(wrapper.predict(torch.from_numpy(batch.astype(np.float32)), 64))
        if wrapper.kind == "torch":
            out = out.softmax(1)
        return float(out[:, t].mean())

    n = 1 + len(exps)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for extra in flat[n:]:
        extra.remove()
    ax0 = flat[0]
    ax0.imshow(_gray(img), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax0.set_xticks([])
    ax0.set_yticks([])
    ax0.set_title(f"input\nclass {t}, p={prob(x):.2f}", fontsize=8)
    for b, e, ax in zip(names, exps, flat[1:n], strict=True):
        delta = "n/a" if e.convergence_delta is None else f"{float(e.convergence_delta[0]):+.1e}"
        pb = "n/a" if e.baselines is None else f"{prob(e.baselines[:, 0]):.2f}"
        plot_image_attribution(img, e.attributions[0], ax=ax, alpha=alpha, colorbar=False,
                               title=f"{_label(b)}\nerr {delta}, p(b) {pb}")
    fig.suptitle(f"{exps[0].method}: one image, every baseline (target {t})", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
