"""Small PyTorch classifiers for time series.

Every model takes ``(N, C, T)`` inputs (channels first, as aeon) and returns ``(N, K)``
logits. :class:`CNN1d`, :class:`FCN` and :class:`ResNet1d` are the zoo models ``cnn1d``,
``fcn`` and ``resnet1d`` of the benchmark runner. The training helpers ``fit_classifier``
and ``fit_cached`` (train once, reload the weights afterwards) live in
:mod:`xai_suite.modeling` and are re-exported here.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from xai_suite.plugin import (  # noqa: F401 (fit_cached, fit_classifier, model_cache_dir: re-exported)
    check_positive_int,
    fit_cached,
    fit_classifier,
    model_cache_dir,
    register_model,
    train_torch,
)


def _check_sizes(**sequences) -> None:
    """Raise unless every argument is a non-empty sequence of positive ints."""
    for name, seq in sequences.items():
        seq = tuple(seq)
        if not seq:
            raise ValueError(f"{name} must be a non-empty tuple of positive ints; got {seq}")
        check_positive_int(**{f"{name}[{i}]": v for i, v in enumerate(seq)})


def _conv_bn(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """A length-preserving convolution followed by batch-norm."""
    return [nn.Conv1d(c_in, c_out, kernel, padding="same"), nn.BatchNorm1d(c_out)]


class CNN1d(nn.Module):
    """Three Conv1d-BatchNorm-ReLU blocks, global average pooling and a linear head.

    About 32k parameters with the default widths; trains on GunPoint in seconds on a CPU.

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the (N, C, T) input.
    n_classes : int
    widths : tuple of int
        Filters of the convolutions (one block per entry).
    kernels : tuple of int
        Their kernel sizes (odd sizes keep the padding symmetric with ``padding="same"``).
    """

    def __init__(self, in_channels: int, n_classes: int, widths=(32, 64, 64), kernels=(7, 5, 5)):
        super().__init__()
        check_positive_int(in_channels=in_channels, n_classes=n_classes)
        _check_sizes(widths=widths, kernels=kernels)
        if len(tuple(widths)) != len(tuple(kernels)):
            raise ValueError(f"widths and kernels must have equal lengths; got {widths} and {kernels}")
        layers: list[nn.Module] = []
        c = in_channels
        for w, k in zip(widths, kernels, strict=True):
            layers += [*_conv_bn(c, w, k), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).squeeze(-1))


class FCN(CNN1d):
    """Fully convolutional network of Wang, Yan & Oates (2017), at a quarter of the width.

    A :class:`CNN1d` with the paper's three blocks: widths (128, 256, 128) and kernels (8, 5, 3)
    there, (32, 64, 32) and (7, 5, 3) here (about 17k parameters, seconds on GunPoint on a
    CPU; an odd first kernel keeps the ``"same"`` padding symmetric).

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the (N, C, T) input.
    n_classes : int
    widths, kernels : tuple of int
        Filters and kernel sizes of the convolutions, one block per entry.
    """

    def __init__(self, in_channels: int, n_classes: int, *, widths=(32, 64, 32), kernels=(7, 5, 3)):
        super().__init__(in_channels, n_classes, widths=widths, kernels=kernels)


class ResidualBlock1d(nn.Module):
    """Conv-BN-ReLU layers, the last without ReLU, plus a shortcut; ReLU after the sum.

    The shortcut is the identity when ``c_in == c_out``, else a 1x1 convolution with
    batch-norm. Each ReLU is its own module (hook-based methods need that).
    """

    def __init__(self, c_in: int, c_out: int, kernels=(7, 5, 3)):
        super().__init__()
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers += _conv_bn(c_in if i == 0 else c_out, c_out, k)
            if i < len(kernels) - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)
        self.shortcut = (
            nn.Identity() if c_in == c_out
            else nn.Sequential(nn.Conv1d(c_in, c_out, 1), nn.BatchNorm1d(c_out))
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet1d(nn.Module):
    """Residual network of Wang, Yan & Oates (2017), narrower by default.

    Residual blocks (:class:`ResidualBlock1d`), global average pooling and a linear head.
    The paper uses widths (64, 128, 128); the defaults (16, 32, 32) have about 30k
    parameters.

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the (N, C, T) input.
    n_classes : int
    widths : tuple of int
        Filters of each residual block.
    kernels : tuple of int
        Kernel sizes of the convolutions inside every block.
    """

    def __init__(self, in_channels: int, n_classes: int, *, widths=(16, 32, 32), kernels=(7, 5, 3)):
        super().__init__()
        check_positive_int(in_channels=in_channels, n_classes=n_classes)
        _check_sizes(widths=widths, kernels=kernels)
        blocks, c = [], in_channels
        for w in widths:
            blocks.append(ResidualBlock1d(c, w, tuple(kernels)))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(x)).squeeze(-1))


class LSTMClassifier(nn.Module):
    """An LSTM over time steps; its last hidden state feeds a linear head.

    Takes (N, C, T) inputs like the other models. On CUDA in eval mode, where cuDNN's LSTM
    has no backward pass, it runs without cuDNN so that gradient explainers work.

    Parameters
    ----------
    in_channels : int
        Channels ``C``: the features of each time step.
    n_classes : int
    hidden_size : int
    num_layers : int
        Stacked LSTM layers; the head reads the top layer's last hidden state.
    """

    def __init__(self, in_channels: int, n_classes: int, *, hidden_size: int = 32, num_layers: int = 1):
        super().__init__()
        check_positive_int(in_channels=in_channels, n_classes=n_classes, hidden_size=hidden_size,
                           num_layers=num_layers)
        self.lstm = nn.LSTM(in_channels, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"LSTMClassifier expects (N, C, T) inputs; got shape {tuple(x.shape)}")
        no_cudnn = x.is_cuda and not self.training
        with torch.backends.cudnn.flags(enabled=False) if no_cudnn else contextlib.nullcontext():
            _, (h, _) = self.lstm(x.transpose(1, 2))
        return self.head(h[-1])


def _zoo_entry(name: str, cls: type[nn.Module], widths: tuple[int, ...], kernels: tuple[int, ...]):
    """Register ``cls`` in the benchmark zoo as ``name``, trained for 60 epochs by default."""

    def factory(X, y, *, random_state: int, widths=widths, kernels=kernels, epochs: int = 60,
                lr: float = 3e-3, batch_size: int = 16, weight_decay: float = 0.0):
        return train_torch(lambda: cls(X.shape[1], int(np.max(y)) + 1, widths=tuple(widths),
                                       kernels=tuple(kernels)),
                           X, y, random_state=random_state, epochs=epochs, lr=lr,
                           batch_size=batch_size, weight_decay=weight_decay)

    factory.__doc__ = f"{cls.__doc__.splitlines()[0].rstrip('.')} (xai_suite_timeseries.{cls.__name__})"
    register_model(name, modality="timeseries", kind="torch")(factory)


_zoo_entry("cnn1d", CNN1d, (32, 64, 64), (7, 5, 5))
_zoo_entry("fcn", FCN, (32, 64, 32), (7, 5, 3))
_zoo_entry("resnet1d", ResNet1d, (16, 32, 32), (7, 5, 3))
