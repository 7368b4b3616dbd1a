"""Native implementations: ours, where a library is missing, slow or wrong."""

from . import integrated_gradients  # noqa: F401  (registers native:integrated_gradients)
