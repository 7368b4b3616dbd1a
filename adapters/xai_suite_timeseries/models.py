"""Small PyTorch classifiers for time series and a CPU training helper."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CNN1d(nn.Module):
    """Three Conv1d-BatchNorm-ReLU blocks, global average pooling and a linear head.

    About 32k parameters with the default widths; trains on GunPoint in seconds on a CPU.

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the (N, C, T) input.
    n_classes : int
    widths : tuple of int
        Filters of the three convolutions.
    kernels : tuple of int
        Their kernel sizes (odd sizes keep the length with ``padding="same"``).
    """

    def __init__(self, in_channels: int, n_classes: int, widths=(32, 64, 64), kernels=(7, 5, 5)):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w, k in zip(widths, kernels, strict=True):
            layers += [nn.Conv1d(c, w, k, padding="same"), nn.BatchNorm1d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).squeeze(-1))


def fit_classifier(
    model: nn.Module,
    X,
    y,
    *,
    epochs: int = 100,
    lr: float = 1e-2,
    batch_size: int = 16,
    weight_decay: float = 0.0,
    random_state: int = 0,
) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy; returns it in eval mode.

    Parameters
    ----------
    X : array-like, shape (N, ...)
    y : array-like of int, shape (N,)
    random_state : int
        Seeds the initial weights' shuffling order (set torch's seed before building the
        model for fully repeatable weights).
    """
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))
    y = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    gen = torch.Generator().manual_seed(random_state)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(X.shape[0], generator=gen)
        for start in range(0, X.shape[0], batch_size):
            idx = order[start : start + batch_size]
            if idx.numel() < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                       for m in model.modules()):
                continue  # batch-norm cannot train on a single row
            opt.zero_grad()
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()
    return model.eval()
