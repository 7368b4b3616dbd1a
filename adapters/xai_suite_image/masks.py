"""Feature masks for images: square patches on a grid, and SLIC superpixels.

A feature mask holds integer group labels; explainers that take ``feature_mask=`` (occlusion
by groups, feature ablation, Shapley value sampling, KernelSHAP, LIME) perturb the pixels of
one group together. They accept one instance's shape ``(C, H, W)`` (the same groups for
every image) or the inputs' shape ``(N, C, H, W)`` (groups per image).
"""

from __future__ import annotations

import numpy as np
import torch

from xai_suite.plugin import check_positive_int


def _pair(patch_size) -> tuple[int, int]:
    pair = tuple(patch_size) if isinstance(patch_size, tuple | list) else (patch_size, patch_size)
    if len(pair) != 2:
        raise ValueError(f"patch_size must be an int or a pair (height, width); got {patch_size!r}")
    check_positive_int(patch_height=pair[0], patch_width=pair[1])
    return int(pair[0]), int(pair[1])


def patch_mask(shape, patch_size, *, per_channel: bool = False) -> np.ndarray:
    """Square (or rectangular) patches on a grid, labelled row by row from the top left.

    Patches are ``patch_size`` pixels a side from the top-left corner; where the size does not
    divide the image, the last row and column of patches are cut to what remains (so every
    pixel belongs to exactly one patch and no patch is empty).

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` or one instance's ``(C, H, W)``.
    patch_size : int or (int, int)
        Patch height and width.
    per_channel : bool
        ``(C, H, W)`` only: give each channel of a patch its own label (channel-major:
        channel ``c`` uses labels ``c * P .. (c + 1) * P - 1``). By default a patch spans
        every channel.

    Returns
    -------
    numpy.ndarray of int64, shape ``shape``
        Labels ``0 .. P - 1`` with ``P = ceil(H / ph) * ceil(W / pw)`` patches (``C * P``
        labels with ``per_channel``).
    """
    shape = tuple(shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (H, W) or (C, H, W); got {shape}")
    check_positive_int(**{f"shape[{i}]": s for i, s in enumerate(shape)})
    ph, pw = _pair(patch_size)
    h, w = shape[-2:]
    if ph > h or pw > w:
        raise ValueError(f"patch_size ({ph}, {pw}) is larger than the image ({h}, {w})")
    cols = -(-w // pw)
    grid = (np.arange(h)[:, None] // ph) * cols + np.arange(w)[None, :] // pw
    if len(shape) == 2:
        return grid.astype(np.int64)
    if per_channel:
        n_patches = -(-h // ph) * cols
        return (grid[None] + n_patches * np.arange(shape[0])[:, None, None]).astype(np.int64)
    return np.broadcast_to(grid, shape).astype(np.int64)


def _check_image(image, name: str) -> np.ndarray:
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a.astype(np.float64)


def superpixel_mask(image, *, n_segments: int = 50, compactness: float = 0.2,
                    sigma: float = 0.0) -> np.ndarray:
    """SLIC superpixels of one image (scikit-image), as a feature mask.

    SLIC is k-means on position and intensity started from a regular grid, so it is
    deterministic (no seed). Segments are made connected (``enforce_connectivity``) and
    relabelled ``0 .. P - 1`` in order of first appearance, row by row.

    Parameters
    ----------
    image : array-like, shape (C, H, W)
        One image, channels first. The channels are clustered as given (no Lab conversion,
        so ``compactness`` means the same for any number of channels).
    n_segments : int
        Approximate number of superpixels (SLIC's starting grid); the result may have fewer.
    compactness : float
        Weight of position against intensity, > 0: larger gives squarer segments. 0.2 suits
        intensities in [0, 1] (scikit-image's default 10 is meant for Lab colours, 0..100);
        much smaller values on noisy images make fragments that the connectivity step merges
        into very few segments.
    sigma : float
        Gaussian smoothing (pixels) before segmenting, >= 0.

    Returns
    -------
    numpy.ndarray of int64, shape (C, H, W)
        The same labels in every channel (a superpixel spans all channels).
    """
    try:
        from skimage.segmentation import slic
    except ImportError as exc:
        raise ImportError('superpixel masks need scikit-image: pip install "xai-suite[image]"') from exc
    a = _check_image(image, "image")
    if a.ndim != 3:
        raise ValueError(f"image must be one (C, H, W) image; got shape {a.shape} (use "
                         "superpixel_masks for a batch (N, C, H, W))")
    check_positive_int(n_segments=n_segments)
    for what, v, low_ok in (("compactness", compactness, False), ("sigma", sigma, True)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not (v >= 0 if low_ok else v > 0):
            raise ValueError(f"{what} must be a {'non-negative' if low_ok else 'positive'} number; "
                             f"got {v!r}")
    one = a.shape[0] == 1
    labels = slic(a[0] if one else np.moveaxis(a, 0, -1), n_segments=int(n_segments),
                  compactness=float(compactness), sigma=float(sigma), start_label=0,
                  channel_axis=None if one else -1, convert2lab=False)
    _, first, inverse = np.unique(labels.ravel(), return_index=True, return_inverse=True)
    labels = np.argsort(np.argsort(first))[inverse].reshape(labels.shape)  # numbered by first appearance
    return np.broadcast_to(labels, a.shape).astype(np.int64)


def superpixel_masks(images, *, n_segments: int = 50, compactness: float = 0.2,
                     sigma: float = 0.0) -> np.ndarray:
    """:func:`superpixel_mask` of every image of a batch.

    Parameters
    ----------
    images : array-like, shape (N, C, H, W)
    n_segments, compactness, sigma
        As for :func:`superpixel_mask`.

    Returns
    -------
    numpy.ndarray of int64, shape (N, C, H, W)
        Labels per image (``0 .. P_i - 1``); pass as ``feature_mask`` of the same inputs.
    """
    a = _check_image(images, "images")
    if a.ndim != 4:
        raise ValueError(f"images must be a batch (N, C, H, W); got shape {a.shape}")
    return np.stack([superpixel_mask(i, n_segments=n_segments, compactness=compactness,
                                     sigma=sigma) for i in a])
