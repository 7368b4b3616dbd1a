"""The benchmark model zoo: small, seeded, quickly trained classifiers by name.

A zoo entry is a factory ``factory(X, y, *, random_state, **params) -> model`` that builds
and trains a model on ``(X, y)``, fully determined by ``random_state`` (the suite seed).
PyTorch models train through :func:`train_torch`, whose weight cache (under
``$XAI_SUITE_CACHE/models`` or ``~/.cache/xai_suite/models``) lets resumed runs and parallel
workers reload a model instead of training it again.

The core registers the scikit-learn entries (``logreg``, ``random_forest``); the modality
adapters register their PyTorch models (``cnn1d``, ``fcn``, ``resnet1d``; ``cnn2d``; ``mlp``).
Register your own with :func:`register_model`.

Your own model on your own DataFrame: register a factory with ``frames=True``. It gets the
training DataFrame as the dataset function returns it (string and categorical columns
included, never cast to float32) and returns a fitted estimator with ``predict_proba`` (a
scikit-learn pipeline with a ``OneHotEncoder``, say, or an already fitted model it loads);
the runner wraps it in ``xai_suite_tabular.TabularModel(model, X_train)``, so explainers see
integer codes of the categorical columns and explain per original column (model kind
``callable``)::

    # my_plugin.py, listed under the suite's imports
    from xai_suite.plugin import register_dataset, register_model

    @register_dataset("tabular")
    def my_data(random_state=0):
        return X, y                      # a DataFrame and int labels 0..K-1

    @register_model("my_pipeline", modality="tabular", kind="sklearn", frames=True)
    def my_pipeline(X, y, *, random_state):
        return make_pipeline(ColumnTransformer(...), LogisticRegression()).fit(X, y)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..catalog import Registry, close_matches


@dataclass(frozen=True)
class ZooModel:
    """A zoo entry.

    Attributes
    ----------
    name : str
    modality : str
        The data it takes: ``tabular`` (N, F), ``timeseries`` (N, C, T), ``image``
        (N, C, H, W) or ``text`` (N prompts).
    kind : str
        The model kind explainers see (``torch``, ``sklearn``, ...).
    factory : callable
        ``factory(X, y, *, random_state, **params) -> trained model``.
    summary : str
    correct : callable, optional
        ``correct(model, X, y) -> bool array (N,)``: which rows the model gets right, for the
        model-quality rows; default: the argmax of the model's outputs equals ``y``.
    frames : bool
        The factory takes the dataset's DataFrame and its model is explained through a
        ``TabularModel`` (see the module docstring).
    outputs : str
        What the model returns: ``logits`` (the default for ``torch``), ``probabilities``
        (the default for other kinds) or ``score`` (``hf_causal_lm``: the scalariser of a
        text explanation). Deletion and insertion turn logits into probabilities where the
        suite says ``deletion_output = "probability"``.
    """

    name: str
    modality: str
    kind: str
    factory: Callable
    summary: str
    correct: Callable | None = None
    frames: bool = False
    outputs: str = "probabilities"

    @property
    def explained_kind(self) -> str:
        """The model kind explainers see: ``callable`` (a ``TabularModel``) for ``frames``."""
        return "callable" if self.frames else self.kind

    @property
    def params(self) -> dict:
        """Hyper-parameters of the factory and their defaults."""
        return {p.name: p.default for p in inspect.signature(self.factory).parameters.values()
                if p.kind == p.KEYWORD_ONLY and p.name != "random_state"}


ZOO: Registry[ZooModel] = Registry("zoo model")


#: What a zoo model may return (:attr:`ZooModel.outputs`).
OUTPUTS = ("logits", "probabilities", "score")


def register_model(name: str, *, modality: str, kind: str, correct: Callable | None = None,
                   frames: bool = False, outputs: str | None = None):
    """Decorator adding a model factory to the zoo (see the module docstring and :class:`ZooModel`).

    ``outputs`` defaults to ``logits`` for ``torch``, ``score`` for ``hf_causal_lm`` and
    ``probabilities`` otherwise; ``frames=True`` takes ``tabular`` DataFrames.
    """
    if outputs is None:
        outputs = {"torch": "logits", "hf_causal_lm": "score"}.get(kind, "probabilities")
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUTS)}; got {outputs!r}")
    if frames and (modality != "tabular" or kind == "torch"):
        raise ValueError(f"frames=True is for tabular models taking DataFrames (not torch); got "
                         f"modality {modality!r}, kind {kind!r}")

    def decorator(fn):
        summary = (inspect.getdoc(fn) or name).splitlines()[0]
        ZOO.add(name, ZooModel(name, modality, kind, fn, summary, correct, bool(frames), outputs))
        return fn

    return decorator


def list_models() -> list[str]:
    """Names of the zoo models."""
    return sorted(ZOO.names())


def model_info(name: str) -> ZooModel:
    """The zoo entry ``name``; unknown names raise a ``KeyError`` listing close matches."""
    return ZOO.get(name)


def check_model_params(name: str, params: dict) -> None:
    """Raise a ``ValueError`` naming close matches for parameters the factory does not take."""
    known = model_info(name).params
    for key in params:
        if key not in known:
            raise ValueError(f"zoo model {name!r} has no parameter {key!r}{close_matches(key, known)} "
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


def train_torch(make: Callable[[], torch.nn.Module], X, y, *, random_state: int, **fit_params):
    """Build ``make()`` under torch seed ``random_state`` (global RNG restored) and train it.

    Zoo factories of torch models call this; training goes through
    :func:`~xai_suite.modeling.fit_cached` (and its weight cache) with ``fit_params``.
    """
    from ..modeling import fit_cached

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = make()
    return fit_cached(model, X, y, random_state=random_state, **fit_params)


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
