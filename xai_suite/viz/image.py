"""Image plots: an attribution overlaid on its image, and "one image, every baseline"
(colours as in :mod:`xai_suite.viz`, scaled per panel)."""

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


def _limit(a: np.ndarray) -> float:
    """The symmetric colour limit ``max |a|`` (1 where ``a`` is all zero)."""
    m = float(np.abs(a).max())
    return m if m > 0 else 1.0


def _gray(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W) in [0, 1]: channel mean, min-max scaled for display."""
    g = image.mean(0) if image.ndim == 3 else image
    lo, hi = g.min(), g.max()
    return (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)


def plot_image_attribution(image, attribution, ax=None, *, alpha: float = 0.8, cmap: str = CMAP,
                           title: str | None = None, colorbar: bool = True):
    """One attribution map drawn over its image (gray: channel mean, min-max scaled).

    The attribution, summed over channels, is drawn with limits ``[-m, m]``, ``m = max |a|``,
    and opacity ``alpha * |a| / m``, so the image shows through where it is small.

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

    img, a = _as_array(image, "image"), _as_array(attribution, "attribution")
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be one image (C, H, W) or (H, W); got shape {img.shape}")
    if a.shape != img.shape and a.shape != img.shape[-2:]:
        raise ValueError(f"attribution must have the image's shape {img.shape} or {img.shape[-2:]}; "
                         f"got {a.shape}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
    heat = a.sum(0) if a.ndim == 3 else a
    lim = _limit(heat)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.2), layout="constrained")
    ax.imshow(_gray(img), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    opacity = float(alpha) * np.abs(heat) / lim  # the image shows through where |a| is small
    im = ax.imshow(heat, cmap=cmap, vmin=-lim, vmax=lim, alpha=opacity, interpolation="nearest")
    ax.set(xticks=[], yticks=[])
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="attribution")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _baseline_label(exp) -> str:
    spec = exp.params.get("baseline")
    return spec.get("name", "?") if isinstance(spec, dict) else "no baseline"


def _probability(model):
    """``p(batch, t)``: the mean over ``batch`` (S, C, H, W) of target ``t``'s probability
    (softmax of a torch model's outputs, else the outputs themselves)."""
    import torch

    from ..modeling import ModelWrapper

    wrapper = ModelWrapper(model, device="cpu")

    def p(batch: np.ndarray, t: int) -> float:
        with wrapper.prepared():
            out = torch.from_numpy(wrapper.predict(torch.from_numpy(batch.astype(np.float32)), 64))
        if wrapper.kind == "torch":
            out = out.softmax(1)
        return float(out[:, t].mean())

    return p


def _one_image(explanations, index: int, caller: str):
    """``(explanations as a list, image index (C, H, W), its target)``, after checking that the
    explanations explain the same images for the same targets."""
    exps = list(explanations)
    if not exps:
        raise ValueError("explanations must hold at least one explanation")
    if any(getattr(e, "modality", None) != "image" for e in exps):
        raise ValueError(f"{caller} draws explanations of images (N, C, H, W)")
    if not 0 <= index < len(exps[0]):
        raise ValueError(f"index must lie in 0..{len(exps[0]) - 1}; got {index}")
    img, t = exps[0].inputs[index], int(exps[0].target[index])
    if any(e.inputs.shape != exps[0].inputs.shape or not np.array_equal(e.inputs[index], img)
           or int(e.target[index]) != t for e in exps[1:]):
        raise ValueError("the explanations must explain the same images for the same targets")
    return exps, img, t


def plot_baseline_grid(explanations, *, model=None, index: int = 0, path=None, ncols: int = 6,
                       alpha: float = 0.8):
    """One image, every baseline: how an attribution changes with its baseline.

    The first panel is the image and its class; each further panel one explanation's
    attribution, titled with its baseline, the completeness error ``sum(a) - (f_t(x) - f_t(b))``
    (where the method has one) and, with ``model``, the target's probability ``p_t`` at the
    input and at the baseline (softmax of a torch model's outputs, else the outputs themselves;
    averaged over the draws of random baselines).

    Parameters
    ----------
    explanations : sequence of Explanation
        Explanations of the same images (N, C, H, W) for the same targets, one per baseline,
        e.g. ``[xs.explain(model, x, baseline=b) for b in xs.list_baselines("image")]``.
    model : optional
        The explained model; only called on the input and the recorded baselines for the
        titles' probabilities.
    index : int
        Which image of the explanations to draw.
    path : str or Path, optional
        Where to save the figure (PNG); the figure is returned either way.
    ncols : int
        Panels per row.
    alpha : float
        Opacity of the attribution layers.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` is the image, ``fig.axes[1 + i]`` explanation ``i``'s panel, whose
        ``images[1]`` holds its (H, W) attribution summed over channels.
    """
    import matplotlib.pyplot as plt

    from .._validation import check_positive_int

    check_positive_int(ncols=ncols)
    exps, img, t = _one_image(explanations, index, "plot_baseline_grid")
    wrapper = None if model is None else _probability(model)

    def prob(batch: np.ndarray | None) -> str:
        return "n/a" if wrapper is None or batch is None else f"{wrapper(batch, t):.2f}"

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
    ax0.set(xticks=[], yticks=[])
    ax0.set_title(f"input\nclass {t}" + ("" if wrapper is None else f", p={prob(img[None])}"),
                  fontsize=8)
    for e, ax in zip(exps, flat[1:n], strict=True):
        delta = "n/a" if e.convergence_delta is None else f"{float(e.convergence_delta[index]):+.1e}"
        pb = prob(None if e.baselines is None else e.baselines[:, index])
        plot_image_attribution(img, e.attributions[index], ax=ax, alpha=alpha, colorbar=False,
                               title=f"{_baseline_label(e)}\nerr {delta}, p(b) {pb}")
    fig.suptitle(f"{exps[0].method}: one image, every baseline (target {t})", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
