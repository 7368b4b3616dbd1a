"""Small PyTorch classifiers for time series, a CPU training helper and a weight cache.

Every model takes ``(N, C, T)`` inputs (channels first, as aeon) and returns ``(N, K)``
logits. ``fit_cached`` trains a model once and reloads its weights afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xai_suite._io import atomic_write
from xai_suite._validation import check_positive_int
from xai_suite.modeling import fit_classifier

#: Bumped when the cache file layout or the training loop changes meaning.
_CACHE_VERSION = 1


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

    Three Conv1d-BatchNorm-ReLU blocks, global average pooling and a linear head. The
    paper uses widths (128, 256, 128) and kernels (8, 5, 3); the defaults here, (32, 64, 32)
    and (7, 5, 3) (about 17k parameters), train on GunPoint in seconds on a CPU, and an odd
    first kernel keeps the ``"same"`` padding symmetric.

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

    Takes (N, C, T) inputs like the other models and transposes them to (N, T, C) inside.
    On CUDA in eval mode cuDNN's LSTM has no backward pass, so there the forward pass runs
    without cuDNN and gradient explainers work.

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


def model_cache_dir(cache_dir=None) -> Path:
    """Where :func:`fit_cached` keeps weights.

    ``cache_dir`` if given; else ``$XAI_SUITE_CACHE/models`` when the environment variable
    ``XAI_SUITE_CACHE`` (the root of xai-suite's cache) is set; else
    ``~/.cache/xai_suite/models``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get("XAI_SUITE_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "xai_suite") / "models"


def _cache_key(model: nn.Module, X: np.ndarray, y: np.ndarray, fit_params: dict) -> str:
    """SHA-256 of the architecture, the initial weights, the training settings and data."""
    h = hashlib.sha256()

    def add(*parts) -> None:
        for p in parts:
            b = p if isinstance(p, bytes) else repr(p).encode()
            h.update(len(b).to_bytes(8, "little") + b)

    add(_CACHE_VERSION, type(model).__module__, type(model).__qualname__, repr(model))
    for name, t in model.state_dict().items():  # initial weights decide the trained ones
        t = t.detach().cpu().contiguous()
        add(name, str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())
    add(sorted(fit_params.items()), X.dtype.str, X.shape, X.tobytes(), y.shape, y.tobytes())
    return h.hexdigest()


def fit_cached(model: nn.Module, X, y, *, cache_dir=None, **fit_params) -> nn.Module:
    """:func:`fit_classifier` with a weight cache: train once, reload afterwards.

    The cache key is a SHA-256 hash of the model's class, its structure (``repr``), its
    initial weights (so seed torch before building the model), the training settings
    (``fit_params`` with :func:`fit_classifier`'s defaults filled in) and the training data.
    Weights are saved as a state dict with ``torch.save``, written to a temporary file and
    moved into place with ``os.replace`` (an interrupted run leaves no partial file), and
    read with ``torch.load(weights_only=True)``. A cache file that cannot be read or does
    not fit the model gives a warning and is retrained and overwritten.

    Parameters
    ----------
    model : torch.nn.Module
        An untrained model; it is trained or loaded in place.
    X : array-like, shape (N, ...)
    y : array-like of int, shape (N,)
    cache_dir : str or Path, optional
        Overrides the directory from :func:`model_cache_dir`.
    **fit_params
        Keyword arguments of :func:`fit_classifier` (``epochs``, ``lr``, ...).

    Returns
    -------
    model
        The same module with trained weights, in eval mode. ``model.cache_path_`` is the
        file its weights came from or went to.
    """
    try:
        bound = inspect.signature(fit_classifier).bind(model, X, y, **fit_params)
    except TypeError as exc:
        known = [p for p in inspect.signature(fit_classifier).parameters if p not in ("model", "X", "y")]
        raise TypeError(f"fit_cached takes fit_classifier's settings {', '.join(known)}: {exc}") from None
    bound.apply_defaults()
    settings = {k: v for k, v in bound.arguments.items() if k not in ("model", "X", "y")}
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    folder = model_cache_dir(cache_dir)
    path = folder / f"{type(model).__name__}-{_cache_key(model, X, y, settings)[:32]}.pt"
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    if path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            model.cache_path_ = path
            return model.eval()
        except Exception as exc:  # corrupt, truncated or foreign file
            warnings.warn(
                f"cached weights {path} could not be loaded into {type(model).__name__} "
                f"({type(exc).__name__}: {str(exc)[:200]}); retraining and overwriting them",
                UserWarning,
                stacklevel=2,
            )
            model.load_state_dict(initial)  # a failed load may have copied some tensors
    fit_classifier(model, X, y, **settings)
    atomic_write(path, lambda fh: torch.save(model.state_dict(), fh))
    model.cache_path_ = path
    return model
