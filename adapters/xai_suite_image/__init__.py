"""Image adapter: ``(N, C, H, W)`` data, small CNNs, image baselines, feature masks.

Announced through the ``xai_suite.adapters`` entry point; importing it registers

- datasets under ``xs.datasets``: ``load_digits_images`` (scikit-learn's 8x8 digits) and
  ``make_planted_patch_images`` (a textured patch decides the class; its mask is known);
- baselines for images (``xs.list_baselines("image")``), by name: ``black``, ``white``,
  ``gray`` (this adapter; pixel range ``low=0``, ``high=1``); from the core ``zeros``,
  ``constant(value=)``, uniform noise ``uniform`` (in ``[low, high]``, default each image's
  own min and max), Gaussian noise ``gaussian`` (the image plus noise of ``sigma`` times its
  standard deviation), Gaussian blur ``blur`` (``sigma`` in pixels), the training
  distribution ``training_sample`` (a training image per draw; averaged over draws with IG:
  expected gradients), ``training_mean``, ``training_median``, and the nearest image of
  another class ``nearest_unlike``.

Feature masks for group perturbations: :func:`patch_mask` (a grid of patches) and, with
scikit-image installed (``pip install "xai-suite[image]"``), :func:`superpixel_mask` /
:func:`superpixel_masks` (SLIC). Every image-capable explainer of the core applies
(``xs.list_explainers(modality="image")``): Grad-CAM on a chosen layer
(``captum:grad_cam``, ``layer="features.3"``), LRP composites for 2-D CNNs
(``native:lrp``, e.g. ``composite="epsilon_plus_flat"``), IG with any baseline above.
The zoo model ``cnn2d`` (:mod:`xai_suite.bench.models`) is :class:`CNN2d`; plots are
:func:`xai_suite.viz.image.plot_image_attribution` and
:func:`xai_suite.viz.image.plot_baseline_grid` ("one image, every baseline").
"""

from . import baselines  # noqa: F401 (registers black, white, gray)
from .baselines import Black, Gray, White
from .datasets import load_digits_images, make_planted_patch_images
from .masks import patch_mask, superpixel_mask, superpixel_masks
from .models import CNN2d

__all__ = [
    "Black",
    "CNN2d",
    "Gray",
    "White",
    "load_digits_images",
    "make_planted_patch_images",
    "patch_mask",
    "superpixel_mask",
    "superpixel_masks",
]
