"""The benchmark model zoo: small, seeded, quickly trained classifiers by name.

A zoo entry is a factory ``factory(X, y, *, random_state, **params) -> model`` that builds
and trains a model on ``(X, y)``; ``random_state`` (the suite seed) fixes the initial weights
and the training order, so a seed fully determines the trained model. PyTorch models are
trained through :func:`xai_suite_timeseries.fit_cached`, whose weight cache (under
``$XAI_SUITE_CACHE/models`` or ``~/.cache/xai_suite/models``) lets resumed runs and parallel
workers reload a model instead of training it again.

Register your own with :func:`register_model`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ZooModel:
    """A zoo entry.

    Attributes
    ----------
    name : str
    modality : str
        The data it takes: ``tabular`` (N, F), ``timeseries`` (N, C, T) or ``image``
        (N, C, H, W).
    kind : str
        The model kind explainers see (``torch``, ``sklearn``, ...).
    factory : callable
        ``factory(X, y, *, random_state, **params) -> trained model``.
    summary : str
    """

    name: str
    modality: str
    kind: str
    factory: Callable
    summary: str

    @property
    def params(self) -> dict:
        """Hyper-parameters of the factory and their defaults."""
        sig = inspect.signature(self.factory)
        return {p.name: p.default for p in sig.parameters.values()
                if p.kind == p.KEYWORD_ONLY and p.name != "random_state"}


_ZOO: dict[str, ZooModel] = {}


def register_model(name: str, *, modality: str, kind: str):
    """Decorator adding a model factory to the zoo (see the module docstring)."""

    def decorator(fn):
        if name in _ZOO:
            raise ValueError(f"a zoo model named {name!r} is already registered")
        summary = (inspect.getdoc(fn) or name).splitlines()[0]
        _ZOO[name] = ZooModel(name, modality, kind, fn, summary)
        return fn

    return decorator


def list_models() -> list[str]:
    """Names of the zoo models."""
    return sorted(_ZOO)


def model_info(name: str) -> ZooModel:
    """The zoo entry ``name``; unknown names raise a ``KeyError`` listing close matches."""
    if name in _ZOO:
        return _ZOO[name]
    close = difflib.get_close_matches(name, list(_ZOO), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise KeyError(f"unknown zoo model {name!r}{hint} Known: {', '.join(sorted(_ZOO))}")


def check_model_params(name: str, params: dict) -> None:
    """Raise a ``ValueError`` naming close matches for parameters the factory does not take."""
    known = model_info(name).params
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=2)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"zoo model {name!r} has no parameter {key!r}{hint} "
                             f"It takes: {', '.join(known) or 'none'}")


def build_model(name: str, X: np.ndarray, y: np.ndarray, *, random_state: int, **params):
    """Build and train zoo model ``name`` on ``(X, y)``.

    Parameters
    ----------
    name : str
    X : numpy.ndarray, shape (N, F), (N, C, T) or (N, C, H, W)
    y : numpy.ndarray of int, shape (N,)
        Labels 0..K-1.
    random_state : int
    **params
        The factory's hyper-parameters.
    """
    check_model_params(name, params)
    return model_info(name).factory(X, y, random_state=random_state, **params)


def _n_classes(y: np.ndarray) -> int:
    return int(np.max(y)) + 1


def _train_torch(make: Callable[[], torch.nn.Module], X, y, random_state: int, **fit_params):
    """Build ``make()`` under torch seed ``random_state`` (global RNG restored) and train it."""
    from ..modeling import fit_cached

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = make()
    return fit_cached(model, X, y, random_state=random_state, **fit_params)


@register_model("cnn1d", modality="timeseries", kind="torch")
def _cnn1d(X, y, *, random_state: int, widths=(32, 64, 64), kernels=(7, 5, 5), epochs: int = 60,
           lr: float = 3e-3, batch_size: int = 16, weight_decay: float = 0.0):
    """Conv1d-BatchNorm-ReLU blocks, global pooling, linear head (xai_suite_timeseries.CNN1d)."""
    from xai_suite_timeseries import CNN1d

    return _train_torch(lambda: CNN1d(X.shape[1], _n_classes(y), widths=tuple(widths),
                                      kernels=tuple(kernels)),
                        X, y, random_state, epochs=epochs, lr=lr, batch_size=batch_size,
                        weight_decay=weight_decay)


@register_model("fcn", modality="timeseries", kind="torch")
def _fcn(X, y, *, random_state: int, widths=(32, 64, 32), kernels=(7, 5, 3), epochs: int = 60,
         lr: float = 3e-3, batch_size: int = 16, weight_decay: float = 0.0):
    """Fully convolutional network of Wang et al. (2017), narrower (xai_suite_timeseries.FCN)."""
    from xai_suite_timeseries import FCN

    return _train_torch(lambda: FCN(X.shape[1], _n_classes(y), widths=tuple(widths),
                                    kernels=tuple(kernels)),
                        X, y, random_state, epochs=epochs, lr=lr, batch_size=batch_size,
                        weight_decay=weight_decay)


@register_model("resnet1d", modality="timeseries", kind="torch")
def _resnet1d(X, y, *, random_state: int, widths=(16, 32, 32), kernels=(7, 5, 3), epochs: int = 60,
              lr: float = 3e-3, batch_size: int = 16, weight_decay: float = 0.0):
    """Residual network of Wang et al. (2017), narrower (xai_suite_timeseries.ResNet1d)."""
    from xai_suite_timeseries import ResNet1d

    return _train_torch(lambda: ResNet1d(X.shape[1], _n_classes(y), widths=tuple(widths),
                                         kernels=tuple(kernels)),
                        X, y, random_state, epochs=epochs, lr=lr, batch_size=batch_size,
                        weight_decay=weight_decay)


@register_model("cnn2d", modality="image", kind="torch")
def _cnn2d(X, y, *, random_state: int, widths=(16, 32), epochs: int = 20, lr: float = 5e-3,
           batch_size: int = 32, weight_decay: float = 0.0):
    """Conv2d-ReLU-MaxPool blocks, global pooling, linear head (xai_suite_image.CNN2d)."""
    from xai_suite_image import CNN2d

    if np.ndim(X) != 4:
        raise ValueError(f"cnn2d trains on (N, C, H, W) images; got X of shape {np.shape(X)}")
    return _train_torch(lambda: CNN2d(X.shape[1], _n_classes(y), widths=tuple(widths)),
                        X, y, random_state, epochs=epochs, lr=lr, batch_size=batch_size,
                        weight_decay=weight_decay)


@register_model("mlp", modality="tabular", kind="torch")
def _mlp(X, y, *, random_state: int, hidden=(32, 32), epochs: int = 100, lr: float = 3e-3,
         batch_size: int = 32, weight_decay: float = 0.0):
    """Fully connected ReLU network (xai_suite_tabular.MLP); standardise the features."""
    from xai_suite_tabular import MLP

    return _train_torch(lambda: MLP(X.shape[1], _n_classes(y), hidden=tuple(hidden)),
                        X, y, random_state, epochs=epochs, lr=lr, batch_size=batch_size,
                        weight_decay=weight_decay)


@register_model("logreg", modality="tabular", kind="sklearn")
def _logreg(X, y, *, random_state: int, C: float = 1.0, max_iter: int = 1000):
    """scikit-learn LogisticRegression (L2, lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=max_iter, random_state=random_state).fit(X, y)


@register_model("random_forest", modality="tabular", kind="sklearn")
def _random_forest(X, y, *, random_state: int, n_estimators: int = 100, max_depth: int | None = None):
    """scikit-learn RandomForestClassifier (one thread: parallelism comes from the runner)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, n_jobs=1,
                                  random_state=random_state).fit(X, y)
