"""Small PyTorch classifiers for images; train them with :func:`xai_suite.modeling.fit_classifier`.

Every model takes ``(N, C, H, W)`` inputs and returns ``(N, K)`` logits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xai_suite.plugin import check_positive_int, register_model, train_torch


class CNN2d(nn.Module):
    """Conv2d-ReLU-MaxPool blocks, global average pooling and a linear head.

    Each block is a 3x3 convolution (padding 1: same height and width), a ReLU and a 2x2
    max-pooling (halving them, rounding down); global average pooling makes the head
    independent of the image size. The default widths (16, 32) give about 5k parameters, 0.98
    test accuracy on scikit-learn's 8x8 digits after seconds on one CPU thread. Every ReLU is
    a module and ``features[3 * i]`` is the ``i``-th convolution, so hook-based methods
    (Grad-CAM on a conv layer, LRP, guided backprop) find them (no functional non-linearity).

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the (N, C, H, W) input (1 for grey-scale images).
    n_classes : int
    widths : tuple of int
        Filters of the convolutions, one block per entry. Each block halves the image, so an
        image needs at least ``2 ** len(widths)`` pixels a side.
    bias : bool
        Give the convolutions and the head biases (default). ``bias=False`` builds a
        bias-free ReLU network, positively homogeneous in its input: LRP-0 (the epsilon rule
        with epsilon -> 0) on it equals gradient x input, max pooling included (a max pool
        passes relevance, like the gradient, to its winning input), and rules that conserve
        relevance sum it to the target logit exactly.
    """

    def __init__(self, in_channels: int, n_classes: int, widths=(16, 32), *, bias: bool = True):
        super().__init__()
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool; got {bias!r}")
        check_positive_int(in_channels=in_channels, n_classes=n_classes)
        widths = tuple(widths)
        if not widths:
            raise ValueError(f"widths must be a non-empty tuple of positive ints; got {widths}")
        check_positive_int(**{f"widths[{i}]": w for i, w in enumerate(widths)})
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, kernel_size=3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, n_classes, bias=bias)
        self.in_channels = in_channels
        self.min_size = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"CNN2d expects (N, {self.in_channels}, H, W) images; got shape "
                             f"{tuple(x.shape)}")
        if min(x.shape[2], x.shape[3]) < self.min_size:
            raise ValueError(f"CNN2d with {self.min_size.bit_length() - 1} pooling blocks needs images of "
                             f"at least {self.min_size}x{self.min_size} pixels; got "
                             f"{x.shape[2]}x{x.shape[3]}")
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


@register_model("cnn2d", modality="image", kind="torch")
def _cnn2d(X, y, *, random_state: int, widths=(16, 32), epochs: int = 20, lr: float = 5e-3,
           batch_size: int = 32, weight_decay: float = 0.0):
    """Conv2d-ReLU-MaxPool blocks, global pooling, linear head (xai_suite_image.CNN2d)."""
    if np.ndim(X) != 4:
        raise ValueError(f"cnn2d trains on (N, C, H, W) images; got X of shape {np.shape(X)}")
    return train_torch(lambda: CNN2d(X.shape[1], int(np.max(y)) + 1, widths=tuple(widths)), X, y,
                       random_state=random_state, epochs=epochs, lr=lr, batch_size=batch_size,
                       weight_decay=weight_decay)
