"""Native implementations: ours, where a library is missing, slow or wrong."""

from . import control, integrated_gradients, kernel_shap, lrp  # noqa: F401  (register native: entries)
