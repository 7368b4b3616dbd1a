"""Time-series baselines (registered with modality ``timeseries``).

Each maps inputs ``(N, C, T)`` to one reference series per instance, channel by channel.
The core's ``zeros``, ``constant``, ``training_mean``, ``nearest_unlike``, ``uniform``,
``gaussian`` and ``blur`` baselines apply to time series as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xai_suite.plugin import Baseline, check_positive_int, register_baseline


@register_baseline("channel_mean", modalities=("timeseries",))
class ChannelMean(Baseline):
    """Each channel's mean over time, held constant (per instance and channel)."""

    def __init__(self):
        pass

    def _draw(self, x, target, rng):
        return x.mean(-1, keepdim=True).expand_as(x).clone()


@register_baseline("linear", modalities=("timeseries",))
class StraightLine(Baseline):
    """The straight line from each channel's first to its last value (per instance)."""

    def __init__(self):
        pass

    def _draw(self, x, target, rng):
        t = x.shape[-1]
        w = torch.linspace(0.0, 1.0, t, dtype=x.dtype) if t > 1 else torch.zeros(1, dtype=x.dtype)
        return x[..., :1] + (x[..., -1:] - x[..., :1]) * w


@register_baseline("moving_average", modalities=("timeseries",))
class MovingAverage(Baseline):
    """Centred moving average of ``window`` time steps, per instance and channel.

    ``window`` is odd, so step ``t`` averages steps ``t - window // 2 .. t + window // 2``.
    Near the ends the window is cut to the steps that exist and the mean is taken over
    those (no padding values are invented), so a constant or a straight line is unchanged
    away from its ends, and a constant stays constant everywhere; ``window >= 2 T - 1``
    gives the channel mean.

    Parameters
    ----------
    window : int
        Odd number of time steps, >= 1 (1 returns the input).
    """

    def __init__(self, *, window: int = 5):
        self.window = window

    def _draw(self, x, target, rng):
        check_positive_int(window=self.window)
        if self.window % 2 == 0:
            raise ValueError(f"moving_average window must be odd (a centred window); got {self.window}")
        n, c, t = x.shape
        half = self.window // 2
        kernel = torch.ones(1, 1, self.window, dtype=torch.float64)
        sums = F.conv1d(x.reshape(n * c, 1, t).double(), kernel, padding=half)
        counts = F.conv1d(torch.ones(1, 1, t, dtype=torch.float64), kernel, padding=half)
        return (sums / counts).reshape(n, c, t).to(x.dtype)
