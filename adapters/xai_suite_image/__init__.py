"""Image adapter: ``(N, C, H, W)`` image data and small CNNs.

Announced through the ``xai_suite.adapters`` entry point; importing it registers its dataset
functions under ``xs.datasets`` (``load_digits_images``). The core's image baselines
(``zeros`` = black, ``constant`` = gray, ``uniform``, ``gaussian``, ``blur``,
``training_*``, ``nearest_unlike``) and its image-capable explainers apply to these images
unchanged; the zoo model ``cnn2d`` (:mod:`xai_suite.bench.models`) is :class:`CNN2d`.
"""

from .datasets import load_digits_images
from .models import CNN2d

__all__ = ["CNN2d", "load_digits_images"]
