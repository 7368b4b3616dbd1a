"""A small PyTorch MLP for tabular data (the zoo model ``mlp``); train it with
:func:`xai_suite.modeling.fit_classifier`."""

from __future__ import annotations

import numpy as np
from torch import nn

from xai_suite.plugin import check_positive_int, register_model, train_torch


class MLP(nn.Module):
    """Fully connected ReLU network mapping (N, F) features to (N, K) logits.

    Parameters
    ----------
    n_features, n_classes : int
    hidden : tuple of int
        Width of each hidden layer (32, 32 by default: trains on breast cancer in a second).
    dropout : float
        Dropout after each hidden layer (off in eval mode, where explainers run).
    """

    def __init__(self, n_features: int, n_classes: int, hidden=(32, 32), dropout: float = 0.0):
        super().__init__()
        check_positive_int(n_features=n_features, n_classes=n_classes)
        hidden = tuple(hidden)
        check_positive_int(**{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
        layers, width = [], n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        self.n_features = n_features

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"MLP expects inputs of shape (N, {self.n_features}); got {tuple(x.shape)}")
        return self.net(x)


@register_model("mlp", modality="tabular", kind="torch")
def _mlp(X, y, *, random_state: int, hidden=(32, 32), epochs: int = 100, lr: float = 3e-3,
         batch_size: int = 32, weight_decay: float = 0.0):
    """Fully connected ReLU network (xai_suite_tabular.MLP); standardise the features."""
    return train_torch(lambda: MLP(X.shape[1], int(np.max(y)) + 1, hidden=tuple(hidden)), X, y,
                       random_state=random_state, epochs=epochs, lr=lr, batch_size=batch_size,
                       weight_decay=weight_decay)
