"""One calling convention for every kind of model an explainer accepts.

Model kinds (``ExplainerInfo.model_kinds``):

- ``torch``: a differentiable ``torch.nn.Module`` returning ``(N, K)`` outputs (logits or
  probabilities; attributions explain whatever it returns);
- ``sklearn``: a fitted estimator with ``predict_proba`` (or ``predict`` for regressors);
- ``aeon``: an aeon/sktime-style classifier, called like ``sklearn`` on ``(N, C, T)`` arrays;
- ``callable``: any ``f(np.ndarray) -> np.ndarray`` black box.

An estimator fitted on a DataFrame (it has ``feature_names_in_``) is called on a DataFrame
with those columns, so pipelines that select columns by name work.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._io import atomic_write
from ._validation import check_positive_int
from .batching import resolve_device

MODEL_KINDS = ("torch", "sklearn", "aeon", "callable", "hf_causal_lm")


def model_kind(model) -> str:
    """Return the model kind of ``model`` (see the module docstring)."""
    declared = getattr(type(model), "xai_suite_model_kind", None)  # e.g. xai_suite_llm.LanguageModel
    if declared is not None:
        return declared
    module = type(model).__module__
    if isinstance(model, torch.nn.Module):
        hf = module.startswith("transformers.") and hasattr(model, "generate")
        return "hf_causal_lm" if hf else "torch"
    if module.startswith(("aeon.", "sktime.")) and hasattr(model, "predict_proba"):
        return "aeon"
    if hasattr(model, "predict_proba") or (hasattr(model, "predict") and hasattr(model, "fit")):
        return "sklearn"
    if callable(model):
        return "callable"
    raise TypeError("model must be a torch.nn.Module, a fitted estimator with predict_proba/predict, "
                    f"or a callable f(np.ndarray) -> np.ndarray; got {type(model).__name__}")


def _as_2d_output(out: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        hint = (" (a Hugging Face output: return its .logits)" if hasattr(out, "logits") else
                " (return the one output to explain, e.g. a wrapper module whose forward returns "
                "model(x)[0])")
        raise TypeError(f"the model must return one tensor of outputs (N, K); got a "
                        f"{type(out).__name__}{hint}")
    if out.ndim == 1 and out.shape[0] == n:
        return out.unsqueeze(1)  # one output per instance: a single "class" 0
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(f"the model must return outputs of shape (N, K) or (N,) for N={n} inputs; "
                         f"got shape {tuple(out.shape)}")
    return out


class ModelWrapper:
    """Calls a model of any kind on float tensors and returns ``(N, K)`` outputs.

    Computation runs in :attr:`dtype`: a torch model's own (float64 models stay float64),
    else float32, or float64 for float64 inputs to a black box.

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    device : str or torch.device
        ``"auto"`` picks CUDA when available. Only used for torch models.
    """

    def __init__(self, model, device="auto"):
        self.model = model
        self.kind = model_kind(model)
        if self.kind in ("sklearn", "aeon"):
            from sklearn.exceptions import NotFittedError
            from sklearn.utils.validation import check_is_fitted

            try:
                check_is_fitted(model)
            except NotFittedError as exc:
                raise NotFittedError(f"the {type(model).__name__} model is not fitted; call its fit() "
                                     "before explaining it") from exc
            except TypeError:
                pass  # not a scikit-learn estimator: aeon models check themselves when called
        self.device = resolve_device(device) if self.kind == "torch" else torch.device("cpu")

    @property
    def differentiable(self) -> bool:
        return self.kind == "torch"

    def dtype(self, inputs: torch.Tensor) -> torch.dtype:
        """The dtype ``inputs`` are computed in: a torch model's floating parameters' dtype
        (float32 without any), for other models the inputs' own (float32 or float64)."""
        if self.kind == "torch":
            p = next((p for p in self.model.parameters() if p.is_floating_point()), None)
            return torch.float32 if p is None or p.dtype not in (torch.float32, torch.float64) else p.dtype
        return inputs.dtype
    @contextlib.contextmanager
    def prepared(self) -> Iterator[ModelWrapper]:
        """Put a torch model in eval mode on ``self.device``; restore mode and device after."""
        if self.kind != "torch":
            yield self
            return
        m = self.model
        was_training = m.training
        if was_training:
            warnings.warn(f"{type(m).__name__} is in training mode; explaining it in eval mode (dropout "
                          "off, batch-norm running statistics) and restoring training mode after",
                          stacklevel=4)
        params = next(iter(m.parameters()), None)
        old_device = params.device if params is not None else self.device
        # switch modes only where some submodule trains: ``eval()``/``train()`` walk every
        # submodule, twice per call, for a model that is (as usual) already in eval mode
        switch = any(sub.training for sub in m.modules())
        if switch:
            m.eval()
        if old_device != self.device:
            m.to(self.device)
        try:
            yield self
        finally:
            if old_device != self.device:
                m.to(old_device)
            if switch:
                m.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs ``(n, K)`` for a float tensor ``x`` of shape ``(n, ...)``.

        Differentiable for torch models; for the others the output is a float tensor on
        ``x.device`` with no gradient.
        """
        n = x.shape[0]
        if self.kind == "torch":
            return _checked(_as_2d_output(self.model(x.to(self.device)), n))
        arr = x.detach().cpu().numpy()
        if self.kind in ("sklearn", "aeon"):
            fn = getattr(self.model, "predict_proba", None) or self.model.predict
            names = getattr(self.model, "feature_names_in_", None)
            if names is not None and arr.ndim == 2:
                import pandas as pd

                arr = pd.DataFrame(arr, columns=names)
            out = fn(arr)
        else:
            out = self.model(arr)
        if isinstance(out, tuple | dict):
            raise TypeError(f"the model must return one array of outputs (N, K); got a {type(out).__name__} "
                            "(wrap it to return the one output to explain)")
        try:
            out = np.array(out, dtype=np.float64 if x.dtype == torch.float64 else np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the model must return numeric outputs (N, K); got {type(out).__name__} "
                            f"that is not numeric ({exc})") from None
        return _checked(_as_2d_output(torch.as_tensor(out, device=x.device), n))

    def predict(self, x: torch.Tensor, rows: int) -> np.ndarray:
        """Outputs ``(N, K)`` as numpy (float64 for float64 models, else float32), computed
        without gradients in chunks of ``rows``."""
        outs = []
        with torch.no_grad():
            for start in range(0, x.shape[0], rows):
                try:
                    out = self.forward(x[start : start + rows])
                except NonFiniteOutputError as exc:  # name the rows of x, not of the chunk
                    raise NonFiniteOutputError(exc.rows + start, x.shape[0]) from None
                outs.append((out if out.dtype == torch.float64 else out.float()).cpu())
        return torch.cat(outs).numpy()


class NonFiniteOutputError(ValueError):
    """The model returned NaN or infinite outputs: every explanation of those rows would be
    NaN, or read as "nothing mattered"."""

    def __init__(self, rows: np.ndarray, n: int):
        self.rows = np.asarray(rows)
        shown = ", ".join(map(str, self.rows[:8])) + (", ..." if len(self.rows) > 8 else "")
        super().__init__(f"the model returned NaN or infinite outputs for {len(self.rows)} of {n} rows "
                         f"(rows {shown}); an explanation of them would be NaN or meaningless: check "
                         "the model on these inputs")


def _checked(out: torch.Tensor) -> torch.Tensor:
    """``out`` (n, K), after raising :class:`NonFiniteOutputError` if any row is not finite."""
    if not bool(torch.isfinite(out.detach()).all()):  # one reduction; the rows only on failure
        bad = ~torch.isfinite(out.detach()).all(1)
        raise NonFiniteOutputError(torch.nonzero(bad).squeeze(1).cpu().numpy(), out.shape[0])
    return out


def fit_classifier(
    model: nn.Module,
    X,
    y,
    *,
    epochs: int = 100,
    lr: float = 3e-3,
    batch_size: int = 16,
    weight_decay: float = 0.0,
    random_state: int = 0,
) -> nn.Module:
    """Train ``model`` with Adam, a one-cycle learning rate and cross-entropy on the CPU.

    The one-cycle schedule (:func:`train_loop`) matters: at a constant 1e-2 the CNN1d of
    ``xai_suite_timeseries`` stalls on GunPoint (test accuracy 0.57-0.92 over seeds, 60
    epochs); with it, 0.97-0.99.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (n, ...) float32 inputs to (n, K) logits.
    X : array-like, shape (N, ...)
    y : array-like of int, shape (N,)
        Labels 0..K-1.
    epochs, batch_size : int
    lr, weight_decay : float
        Adam's peak learning rate and weight decay.
    random_state : int
        Seeds the shuffling order (set torch's seed before building the model for fully
        repeatable weights).

    Returns
    -------
    model
        The same module, trained, in eval mode.
    """
    if np.ndim(y) != 1 or len(X) != len(y):
        raise ValueError(f"y must have shape ({len(X)},) to match X; got {np.shape(y)}")
    return train_loop(model, X, y, loss=lambda m, xb, yb, _gen: nn.functional.cross_entropy(m(xb), yb),
                      epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                      random_state=random_state)


def train_loop(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss, epochs: int, lr: float,
               batch_size: int, weight_decay: float, random_state: int, one_cycle: bool = True
               ) -> nn.Module:
    """Adam over shuffled mini-batches: :func:`fit_classifier`'s loop, for any loss.

    Parameters
    ----------
    model : torch.nn.Module
        Trains on the device its parameters are on.
    X, y : array-like or torch.Tensor, shape (N, ...)
        Inputs (as float32) and integer labels.
    loss : callable
        ``loss(model, X_batch, y_batch, generator) -> scalar tensor``; ``generator`` is the
        seeded ``torch.Generator`` that also shuffles, for losses that draw (say, a step).
    epochs, batch_size : int
    lr, weight_decay : float
        Adam's peak learning rate and weight decay.
    random_state : int
        Seeds the shuffling order and ``generator``.
    one_cycle : bool
        A one-cycle learning rate (warm-up over 30% of the steps, then annealing to nearly 0);
        else constant.

    Returns
    -------
    model
        Trained, in eval mode. A last batch of one row is skipped where batch-norm is.
    """
    check_positive_int(epochs=epochs, batch_size=batch_size)
    dev = next(model.parameters(), torch.empty(0)).device  # no parameters: Adam says so below
    X, y = (v.to(dev, getattr(torch, dtype)) if isinstance(v, torch.Tensor)
            else torch.from_numpy(np.array(v, dtype=dtype)).to(dev)  # a contiguous copy
            for v, dtype in ((X, "float32"), (y, "int64")))
    n = X.shape[0]
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    starts = [s for s in range(0, n, batch_size) if not (has_bn and n - s < 2)]
    if not starts:
        raise ValueError("batch-norm cannot train on a single row: give at least 2 training rows")
    gen = torch.Generator().manual_seed(random_state)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(starts))
                if one_cycle else None)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in starts:
            idx = order[start : start + batch_size].to(X.device)
            opt.zero_grad()
            loss(model, X[idx], y[idx], gen).backward()
            opt.step()
            if schedule is not None:
                schedule.step()
    return model.eval()


#: Bumped when the cache file layout or the training loop changes meaning.
_CACHE_VERSION = 1


def model_cache_dir(cache_dir=None) -> Path:
    """Where :func:`fit_cached` keeps weights: ``cache_dir`` if given, else
    ``$XAI_SUITE_CACHE/models`` where that variable (xai-suite's cache root) is set, else
    ``~/.cache/xai_suite/models``."""
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

    The key hashes the model's class, ``repr`` and initial weights (seed torch before building
    it), the settings (defaults filled in) and the data. The state dict is written atomically
    and read with ``torch.load(weights_only=True)``; an unreadable or unfitting file warns and
    is retrained and overwritten.

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
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.cache_path_ = path
            return model.eval()
        except Exception as exc:  # corrupt, truncated or foreign file
            warnings.warn(f"cached weights {path} could not be loaded into {type(model).__name__} "
                          f"({type(exc).__name__}: {str(exc)[:200]}); retraining and overwriting them",
                          stacklevel=2)
            model.load_state_dict(initial)  # a failed load may have copied some tensors
    fit_classifier(model, X, y, **settings)
    atomic_write(path, lambda fh: torch.save(model.state_dict(), fh))
    model.cache_path_ = path
    return model
