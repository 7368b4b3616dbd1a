"""One calling convention for every kind of model an explainer accepts.

Model kinds (``ExplainerInfo.model_kinds``):

- ``torch``: a differentiable ``torch.nn.Module`` returning ``(N, K)`` outputs (logits or
  probabilities; attributions explain whatever it returns);
- ``sklearn``: a fitted estimator with ``predict_proba`` (or ``predict`` for regressors);
- ``aeon``: an aeon/sktime-style classifier, called like ``sklearn`` on ``(N, C, T)`` arrays;
- ``callable``: any ``f(np.ndarray) -> np.ndarray`` black box.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .batching import resolve_device

MODEL_KINDS = ("torch", "sklearn", "aeon", "callable", "hf_causal_lm")


def model_kind(model) -> str:
    """Return the model kind of ``model`` (see the module docstring)."""
    if isinstance(model, torch.nn.Module):
        cls_mod = type(model).__module__
        if cls_mod.startswith("transformers.") and hasattr(model, "generate"):
            return "hf_causal_lm"
        return "torch"
    module = type(model).__module__
    if module.startswith(("aeon.", "sktime.")) and hasattr(model, "predict_proba"):
        return "aeon"
    if hasattr(model, "predict_proba") or (hasattr(model, "predict") and hasattr(model, "fit")):
        return "sklearn"
    if callable(model):
        return "callable"
    raise TypeError(
        "model must be a torch.nn.Module, a fitted estimator with predict_proba/predict, "
        f"or a callable f(np.ndarray) -> np.ndarray; got {type(model).__name__}"
    )


def _as_2d_output(out: torch.Tensor, n: int) -> torch.Tensor:
    if out.ndim == 1 and out.shape[0] == n:
        return out.unsqueeze(1)  # one output per instance: a single "class" 0
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(
            f"the model must return outputs of shape (N, K) or (N,) for N={n} inputs; "
            f"got shape {tuple(out.shape)}"
        )
    return out


class ModelWrapper:
    """Calls a model of any kind on float32 tensors and returns ``(N, K)`` outputs.

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

            try:
                from sklearn.utils.validation import check_is_fitted

                check_is_fitted(model)
            except NotFittedError as exc:
                raise NotFittedError(
                    f"the {type(model).__name__} model is not fitted; call its fit() before "
                    "explaining it"
                ) from exc
            except TypeError:
                pass  # not a scikit-learn estimator: aeon models check themselves when called
        self.device = resolve_device(device) if self.kind == "torch" else torch.device("cpu")

    @property
    def differentiable(self) -> bool:
        return self.kind == "torch"

    @contextlib.contextmanager
    def prepared(self) -> Iterator[ModelWrapper]:
        """Put a torch model in eval mode on ``self.device``; restore mode and device after."""
        if self.kind != "torch":
            yield self
            return
        m = self.model
        was_training = m.training
        if was_training:
            warnings.warn(
                f"{type(m).__name__} is in training mode; explaining it in eval mode "
                "(dropout off, batch-norm running statistics) and restoring training mode after",
                UserWarning,
                stacklevel=4,
            )
        params = next(iter(m.parameters()), None)
        old_device = params.device if params is not None else self.device
        m.eval()
        if old_device != self.device:
            m.to(self.device)
        try:
            yield self
        finally:
            if old_device != self.device:
                m.to(old_device)
            m.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs ``(n, K)`` for a float32 tensor ``x`` of shape ``(n, ...)``.

        Differentiable for torch models; for the others the output is a float tensor on
        ``x.device`` with no gradient.
        """
        n = x.shape[0]
        if self.kind == "torch":
            return _as_2d_output(self.model(x.to(self.device)), n)
        arr = x.detach().cpu().numpy()
        if self.kind in ("sklearn", "aeon"):
            fn = getattr(self.model, "predict_proba", None) or self.model.predict
            out = fn(arr)
        else:
            out = self.model(arr)
        out = torch.as_tensor(np.asarray(out, dtype=np.float32), device=x.device)
        return _as_2d_output(out, n)

    def predict(self, x: torch.Tensor, rows: int) -> np.ndarray:
        """Outputs ``(N, K)`` as numpy, computed without gradients in chunks of ``rows``."""
        outs = []
        with torch.no_grad():
            for start in range(0, x.shape[0], rows):
                outs.append(self.forward(x[start : start + rows]).float().cpu())
        return torch.cat(outs).numpy()
