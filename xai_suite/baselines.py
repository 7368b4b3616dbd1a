"""Baselines (reference inputs) for gradient, propagation and perturbation methods.

A baseline is given to an explainer as

- a registered name: ``baseline="training_mean"`` (see :func:`list_baselines`);
- a number: ``baseline=0.5`` (a constant input);
- a callable ``f(x: np.ndarray) -> np.ndarray`` returning one baseline per instance;
- a :class:`Baseline` instance with its own parameters: ``baseline=Gaussian(sigma=0.2)``,
  or the same as a spec: ``baseline={"name": "gaussian", "sigma": 0.2}`` (what results record).

Explicit arrays are data, so they go to ``explainer.explain(inputs, baselines=...)``.
Fitted baselines learn from the data given to ``explainer.fit(X, y)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ._io import jsonable
from ._validation import NDIM_TO_MODALITY, as_float_tensor, check_instance_shape
from .catalog import Registry

ALL_MODALITIES = ("tabular", "timeseries", "image")
#: Modalities whose baselines are not input arrays: a concept model's concept layer (N, n_concepts),
#: and text, whose baselines are tokens (registered by the LLM adapter).
OTHER_MODALITIES = ("concept", "text")


class NotFittedError(ValueError, AttributeError):
    """Raised when an explainer or baseline that learns from data is used before ``fit``."""


@dataclass(frozen=True)
class BaselineInfo:
    """Registry entry of a baseline."""

    name: str
    factory: Callable[..., Baseline]
    modalities: tuple[str, ...]
    summary: str


BASELINES: Registry[BaselineInfo] = Registry("baseline")


class Baseline:
    """Base class: produces reference inputs for a batch of instances.

    Subclasses store keyword-only parameters in ``__init__`` and implement :meth:`_draw`.
    Class attributes say whether a baseline is random (``stochastic``), learns from
    training data (``needs_fit``), and needs its labels (``needs_labels``).
    """

    name: ClassVar[str] = "baseline"
    stochastic: ClassVar[bool] = False
    needs_fit: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False
    modalities: ClassVar[tuple[str, ...]] = ALL_MODALITIES

    _fit_shape: tuple[int, ...] | None = None

    def __init__(self):
        """No parameters (subclasses that take some store them keyword-only)."""

    def get_params(self) -> dict:
        """The constructor's parameters and their current values."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def clone(self) -> Baseline:
        """A new, unfitted baseline with the same parameters."""
        return type(self)(**self.get_params())

    def describe(self) -> dict:
        """JSON-ready description: ``{"name": ..., **params}``."""
        return {"name": self.name, **{k: jsonable(v) for k, v in self.get_params().items()}}

    @property
    def is_fitted(self) -> bool:
        return not self.needs_fit or self._fit_shape is not None

    def fit(self, X, y=None) -> Baseline:
        """Learn from training inputs ``X`` (N, ...) and, where needed, labels ``y`` (N,)."""
        X = as_float_tensor(X, "X")
        if self.needs_labels:
            if y is None:
                raise ValueError(f"baseline {self.name!r} needs training labels: call fit(X, y)")
            y = np.asarray(y)
            if y.shape != (X.shape[0],):
                raise ValueError(f"y must have shape ({X.shape[0]},) to match X; got {y.shape}")
        self._fit(X, y)
        self._fit_shape = tuple(X.shape[1:])
        return self

    def _fit(self, X: torch.Tensor, y) -> None:
        """Learn state from training data; only for ``needs_fit`` baselines."""

    def sample(
        self, x: torch.Tensor, target: np.ndarray, n_samples: int, rng: np.random.Generator,
        modality: str | None = None,
    ) -> torch.Tensor:
        """Baselines for ``x``.

        Parameters
        ----------
        x : torch.Tensor, shape (N, ...)
        target : numpy.ndarray of int, shape (N,)
            The class each instance is explained for.
        n_samples : int
            Draws per instance for stochastic baselines; deterministic ones draw once.
        rng : numpy.random.Generator
        modality : str, optional
            What ``x`` holds; default read from its number of axes (2: tabular, 3: time
            series, 4: images). Concept explainers pass ``"concept"``.

        Returns
        -------
        torch.Tensor, shape (S, N, ...)
            ``S = n_samples`` for stochastic baselines, else 1.
        """
        modality = modality or NDIM_TO_MODALITY.get(x.ndim)
        if modality not in self.modalities:
            raise ValueError(f"baseline {self.name!r} applies to {', '.join(self.modalities)} inputs; "
                             f"got {modality or f'{x.ndim}-D'} inputs of shape {tuple(x.shape)} (the "
                             f"baselines for {modality}: {', '.join(list_baselines(modality)) or 'none'})")
        if not self.is_fitted:
            raise NotFittedError(f"baseline {self.name!r} learns from training data: call the explainer's "
                                 "fit(X, y) first")
        if self.needs_fit:
            check_instance_shape(x, self._fit_shape, f"baseline {self.name!r}.fit")
        draws = n_samples if self.stochastic else 1
        return torch.stack([self._draw(x, target, rng) for _ in range(draws)]).to(x.dtype)

    def reference_set(
        self, x: torch.Tensor, target: np.ndarray, n_samples: int, rng: np.random.Generator
    ) -> torch.Tensor:
        """References for methods that average over a set (SHAP's background), shape (S, N, ...).

        :meth:`sample`, except for ``training_sample``, whose set is drawn once for all
        instances and without replacement (as shap's background).
        """
        return self.sample(x, target, n_samples, rng)

    def _draw(self, x: torch.Tensor, target: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


#: What ``baseline=`` takes: a registered name, a number, a spec dict, a callable or a Baseline.
BaselineSpec = str | float | dict | Callable | Baseline


def register_baseline(name: str, *, modalities=ALL_MODALITIES, summary: str | None = None):
    """Decorator registering a :class:`Baseline` subclass or a function under ``name``.

    A decorated function ``f(x: np.ndarray) -> np.ndarray`` maps inputs (N, ...) to one
    baseline per instance with the same shape. Registering a taken name raises.
    """
    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    bad = set(modalities) - set(ALL_MODALITIES + OTHER_MODALITIES)
    if bad:
        raise ValueError(f"unknown modalities {sorted(bad)}; expected some of "
                         f"{ALL_MODALITIES + OTHER_MODALITIES}")

    def decorator(obj):
        is_class = inspect.isclass(obj) and issubclass(obj, Baseline)
        if not (is_class or callable(obj)):
            raise TypeError("register_baseline decorates a Baseline subclass or a function")

        def from_function(_fn=obj):
            return FunctionBaseline(_fn, name=name, modalities=modalities)

        doc = summary or (inspect.getdoc(obj) or name).splitlines()[0]
        BASELINES.add(name, BaselineInfo(name, obj if is_class else from_function, modalities, doc))
        if is_class:
            obj.name = name
            obj.modalities = modalities
        return obj

    return decorator


def list_baselines(modality: str | None = None) -> list[str]:
    """Names of the registered baselines, optionally only those for ``modality``."""
    return sorted(i.name for i in BASELINES.values() if modality is None or modality in i.modalities)


def baseline_info(name: str) -> BaselineInfo:
    """The registry entry of baseline ``name``."""
    return BASELINES.get(name)


def ensure_baseline(spec) -> Baseline:
    """Coerce a name, number, callable, spec or :class:`Baseline` into a :class:`Baseline`.

    A spec is a dict ``{"name": <registered name>, **parameters}``, the form
    :meth:`Baseline.describe` records (so a result's recorded baseline builds it again).
    """
    if isinstance(spec, Baseline):
        return spec
    if isinstance(spec, str):
        return baseline_info(spec).factory()
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise TypeError(f"a baseline spec is a dict with a 'name' and parameters; got {spec!r}")
        try:
            return baseline_info(name).factory(**params)
        except TypeError as exc:
            raise TypeError(f"baseline {name!r} takes no parameters {sorted(params)}: {exc}") from None
    if isinstance(spec, bool):
        raise TypeError("baseline must be a name, a number, a callable or a Baseline; got a bool")
    if isinstance(spec, int | float | np.number):
        return Constant(value=float(spec))
    if isinstance(spec, np.ndarray | torch.Tensor | list):
        raise TypeError("explicit baseline arrays are data: pass them to explain(inputs, baselines=array)")
    if callable(spec):
        return FunctionBaseline(spec)
    raise TypeError(f"baseline must be a registered name ({', '.join(list_baselines())}), a number, a "
                    f"callable, a spec {{'name': ..., **parameters}} or a Baseline instance; got "
                    f"{type(spec).__name__}")


class FunctionBaseline(Baseline):
    """A user function ``f(x: np.ndarray (N, ...)) -> np.ndarray (N, ...)``."""

    name = "callable"

    def __init__(self, function, *, name: str = "callable", modalities=ALL_MODALITIES):
        self.function = function
        self.name = name
        self.modalities = tuple(modalities)

    def get_params(self) -> dict:
        return {"function": self.function}

    def clone(self) -> Baseline:
        return FunctionBaseline(self.function, name=self.name, modalities=self.modalities)

    def _draw(self, x, target, rng):
        out = as_float_tensor(self.function(x.numpy()), f"baseline function {self.name!r} output")
        if out.shape != x.shape:
            raise ValueError(f"baseline function {self.name!r} must return an array of the inputs' shape "
                             f"{tuple(x.shape)}; got {tuple(out.shape)}")
        return out


@register_baseline("zeros", modalities=(*ALL_MODALITIES, "concept"))
class Zeros(Baseline):
    """All-zero input (Captum's default; black for images scaled to [0, 1])."""

    def _draw(self, x, target, rng):
        return torch.zeros_like(x)


@register_baseline("constant", modalities=(*ALL_MODALITIES, "concept"))
class Constant(Baseline):
    """A constant input, ``value`` everywhere (gray for images: 0.5)."""

    def __init__(self, *, value: float = 0.0):
        self.value = value

    def _draw(self, x, target, rng):
        return torch.full_like(x, float(self.value))


@register_baseline("opposite", modalities=("concept",))
class Opposite(Baseline):
    """Each concept's other truth value, ``1 - round(a)`` (concept activations in [0, 1])."""

    def _draw(self, x, target, rng):
        return 1.0 - (x > 0.5).to(x.dtype)


def _per_instance(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply a reduction over all non-batch axes; result broadcastable to ``x``."""
    return fn(x.reshape(x.shape[0], -1)).reshape((x.shape[0],) + (1,) * (x.ndim - 1))


@register_baseline("uniform")
class Uniform(Baseline):
    """Uniform noise in ``[low, high]``; by default each instance's own min and max."""

    stochastic = True

    def __init__(self, *, low: float | None = None, high: float | None = None):
        self.low = low
        self.high = high

    def _draw(self, x, target, rng):
        lo = _per_instance(x, lambda f: f.min(1).values) if self.low is None else self.low
        hi = _per_instance(x, lambda f: f.max(1).values) if self.high is None else self.high
        u = torch.from_numpy(rng.random(tuple(x.shape), dtype=np.float32))
        return lo + u * (torch.as_tensor(hi) - torch.as_tensor(lo))


@register_baseline("gaussian")
class Gaussian(Baseline):
    """The input plus Gaussian noise of ``sigma`` times the instance's standard deviation."""

    stochastic = True

    def __init__(self, *, sigma: float = 0.5):
        self.sigma = sigma

    def _draw(self, x, target, rng):
        scale = _per_instance(x, lambda f: f.std(1, unbiased=False)) * float(self.sigma)
        eps = torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32))
        return x + eps * scale


@register_baseline("blur", modalities=("timeseries", "image"))
class Blur(Baseline):
    """The input blurred by a Gaussian of ``sigma`` steps (time) or pixels (height, width)."""

    def __init__(self, *, sigma: float = 5.0):
        self.sigma = sigma

    def _draw(self, x, target, rng):
        from scipy.ndimage import gaussian_filter

        s = float(self.sigma)
        sigmas = (0.0, 0.0, s) if x.ndim == 3 else (0.0, 0.0, s, s)
        return torch.from_numpy(gaussian_filter(x.numpy(), sigma=sigmas, mode="nearest"))


class _TrainingStatistic(Baseline):
    needs_fit = True
    _reduce: ClassVar[Callable[[torch.Tensor], torch.Tensor]]
    value_: torch.Tensor

    def _fit(self, X, y):
        self.value_ = type(self)._reduce(X)

    def _draw(self, x, target, rng):
        return self.value_.unsqueeze(0).expand_as(x).clone()


@register_baseline("training_mean")
class TrainingMean(_TrainingStatistic):
    """The mean training input (per feature / channel-time point / pixel)."""

    _reduce = staticmethod(lambda X: X.mean(0))


@register_baseline("training_median")
class TrainingMedian(_TrainingStatistic):
    """The median training input (per feature / channel-time point / pixel)."""

    _reduce = staticmethod(lambda X: X.median(0).values)


@register_baseline("training_sample")
class TrainingSample(Baseline):
    """A training input drawn at random per instance: averaged over draws, expected gradients."""

    stochastic = True
    needs_fit = True

    def _fit(self, X, y):
        self.X_ = X

    def _draw(self, x, target, rng):
        return self.X_[torch.from_numpy(rng.integers(0, self.X_.shape[0], size=x.shape[0]))]

    def reference_set(self, x, target, n_samples, rng):
        """SHAP's background: ``n_samples`` training rows drawn once, without replacement, in
        the order of the training data (all of them when there are no more), for every
        instance."""
        self.sample(x[:1], target[:1], 1, np.random.default_rng(0))  # its checks; rng untouched
        m = self.X_.shape[0]
        rows = np.arange(m) if m <= n_samples else np.sort(rng.choice(m, int(n_samples), replace=False))
        return self.X_[torch.from_numpy(rows)].to(x.dtype).unsqueeze(1).expand(len(rows), *x.shape)


@register_baseline("nearest_unlike")
class NearestUnlike(Baseline):
    """The nearest (Euclidean) training input whose label differs from the explained class."""

    needs_fit = True
    needs_labels = True

    def _fit(self, X, y):
        if np.unique(y).size < 2:
            raise ValueError("baseline 'nearest_unlike' needs training labels of at least 2 classes")
        self.X_ = X
        self.y_ = torch.as_tensor(np.asarray(y).astype(np.int64))

    def _draw(self, x, target, rng):
        d = torch.cdist(x.reshape(x.shape[0], -1), self.X_.reshape(self.X_.shape[0], -1))
        same = self.y_.unsqueeze(0) == torch.as_tensor(target).unsqueeze(1)
        d = d.masked_fill(same, float("inf"))
        if torch.isinf(d).all(1).any():
            raise ValueError("baseline 'nearest_unlike' found no training input of another class than the "
                             "explained one; fit it on data with labels of at least 2 classes")
        return self.X_[d.argmin(1)]


def background_groups(b: torch.Tensor) -> list[tuple[np.ndarray, torch.Tensor]]:
    """Instances that share one reference set, for methods that take a background (SHAP).

    Parameters
    ----------
    b : torch.Tensor, shape (S, N, ...)
        Reference inputs per instance (:meth:`Baseline.reference_set`, or explicit ones).

    Returns
    -------
    list of (numpy.ndarray of int, torch.Tensor of shape (S, ...))
        One group of all instances when every instance has the same references (a
        background), else one group per instance.
    """
    n = b.shape[1]
    if torch.equal(b, b[:, :1].expand_as(b)):
        return [(np.arange(n), b[:, 0])]
    return [(np.array([i]), b[:, i]) for i in range(n)]
