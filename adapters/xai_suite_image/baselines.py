"""Image baselines (modality ``image``): black, white and gray, constant images of the inputs'
shape ``(N, C, H, W)`` at a point of the pixel range ``[low, high]`` (``[0, 1]`` by default).
"""

from __future__ import annotations

import math

import torch

from xai_suite.plugin import Baseline, register_baseline


class _PixelRange(Baseline):
    """A constant image at a point of the pixel range ``[low, high]``."""

    #: Where in the range the constant lies: 0 = low, 1 = high.
    _where: float = 0.0

    def __init__(self, *, low: float = 0.0, high: float = 1.0):
        self.low = low
        self.high = high

    def value(self) -> float:
        """The constant pixel value, after checking ``low`` and ``high``."""
        for what, v in (("low", self.low), ("high", self.high)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"baseline {self.name!r}: {what} must be a finite number; got {v!r}")
        if not self.low < self.high:
            raise ValueError(f"baseline {self.name!r} needs low < high (the pixel range); got "
                             f"low={self.low!r}, high={self.high!r}")
        return float(self.low) + self._where * (float(self.high) - float(self.low))

    def _draw(self, x, target, rng):
        return torch.full_like(x, self.value())


@register_baseline("black", modalities=("image",))
class Black(_PixelRange):
    """Black: every pixel at the bottom of the range, ``low`` (0 for images in [0, 1])."""

    _where = 0.0


@register_baseline("white", modalities=("image",))
class White(_PixelRange):
    """White: every pixel at the top of the range, ``high`` (1 for images in [0, 1])."""

    _where = 1.0


@register_baseline("gray", modalities=("image",))
class Gray(_PixelRange):
    """Gray: every pixel at the middle of the range, ``(low + high) / 2`` (0.5 by default)."""

    _where = 0.5
