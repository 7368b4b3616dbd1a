"""Input checks at the boundary: every error names what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# The number of array dimensions (batch axis included) decides the modality.
NDIM_TO_MODALITY = {2: "tabular", 3: "timeseries", 4: "image"}
MODALITY_LAYOUT = {
    "tabular": "(N, F)",
    "timeseries": "(N, C, T)",
    "image": "(N, C, H, W)",
    "text": "token ids (N, L)",
}


def as_float_tensor(x, name: str = "inputs") -> torch.Tensor:
    """Convert a numeric array or tensor to a detached floating-point CPU tensor, checking values.

    Float64 data stays float64; everything else (other floats, ints, bools) becomes float32.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Numeric data of any shape.
    name : str
        How the error messages call this argument.

    Returns
    -------
    torch.Tensor
        Float32 or float64 tensor of the same shape.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex():
            raise TypeError(f"{name} must be real-valued, got a complex tensor")
        t = t.to("cpu", torch.float64 if t.dtype == torch.float64 else torch.float32)
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a numeric numpy array or torch tensor: {exc}") from exc
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a numeric numpy array or torch tensor, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if not torch.isfinite(t).all():
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s); expected finite numbers")
    return t


def infer_modality(x: torch.Tensor, allowed: Sequence[str], who: str) -> str:
    """Return the modality implied by ``x.ndim`` and check that ``who`` explains it."""
    modality = NDIM_TO_MODALITY.get(x.ndim)
    if modality is None or modality not in allowed:
        layouts = " or ".join(f"{m} {MODALITY_LAYOUT[m]}" for m in allowed)
        got = f"a {x.ndim}-D array of shape {tuple(x.shape)}" + (f" ({modality})" if modality else "")
        raise ValueError(f"{who} explains {layouts} inputs; got {got}")
    if x.shape[0] == 0:
        raise ValueError(f"inputs must hold at least one instance; got shape {tuple(x.shape)}")
    return modality


def check_instance_shape(x: torch.Tensor, expected: tuple[int, ...] | None, where: str) -> None:
    """Check that ``x`` has per-instance shape ``expected`` (the shape seen by ``fit``)."""
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise ValueError(f"inputs have per-instance shape {tuple(x.shape[1:])} but {where} saw "
                         f"{tuple(expected)}; expected inputs of shape (N, {', '.join(map(str, expected))})")


def resolve_target(target, predictions: np.ndarray) -> np.ndarray:
    """Turn ``target`` into one class index per instance.

    Parameters
    ----------
    target : None, int or array-like of int, shape (N,)
        ``None`` means the predicted class (arg-max of the model output).
    predictions : numpy.ndarray, shape (N, K)
        The model's outputs.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    n, k = predictions.shape
    if target is None:
        return predictions.argmax(axis=1).astype(np.int64)
    if isinstance(target, torch.Tensor):
        target = target.detach().cpu().numpy()
    arr = np.asarray(target)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"target must be an int or integer array of shape ({n},), got {arr.dtype}")
    if arr.ndim == 0:
        arr = np.full(n, int(arr), dtype=np.int64)
    elif arr.shape != (n,):
        raise ValueError(f"target must be an int or an array of shape ({n},); got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= k:
        raise ValueError(f"target must lie in 0..{k - 1} (the model has {k} output(s)); "
                         f"got values in {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int64)


def resolve_counterfactual_target(target, predictions: np.ndarray) -> np.ndarray:
    """The class each counterfactual should get, one per instance.

    ``None`` takes each instance's most probable class other than its predicted one; a
    given class must differ from the predicted one.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
    """
    n, k = predictions.shape
    if k < 2:
        raise ValueError("counterfactuals need a model with at least 2 output classes")
    predicted = predictions.argmax(1)
    if target is None:
        masked = predictions.astype(np.float64).copy()
        masked[np.arange(n), predicted] = -np.inf
        return masked.argmax(1).astype(np.int64)
    out = resolve_target(target, predictions)
    same = np.flatnonzero(out == predicted)
    if same.size:
        raise ValueError(f"target must differ from the predicted class; instance(s) {same[:10].tolist()} "
                         f"are already predicted as their target {out[same[:10]].tolist()}")
    return out


def broadcast_baseline(b: torch.Tensor, x: torch.Tensor, name: str = "baselines") -> torch.Tensor:
    """Match an explicit baseline to ``x``: shape ``x.shape`` or one instance ``x.shape[1:]``
    (anything else raises; nothing is broadcast along other axes)."""
    if tuple(b.shape) == tuple(x.shape):
        return b
    if tuple(b.shape) == tuple(x.shape[1:]):
        return b.unsqueeze(0).expand_as(x)
    raise ValueError(f"{name} must have the inputs' shape {tuple(x.shape)} or one instance's shape "
                     f"{tuple(x.shape[1:])}; got {tuple(b.shape)}")


def check_choice(name: str, value, allowed) -> None:
    """Raise a ``ValueError`` naming the choices unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_bool(**values) -> None:
    """Raise a ``TypeError`` naming each argument that is not ``True`` or ``False``."""
    for name, v in values.items():
        if not isinstance(v, bool | np.bool_):
            raise TypeError(f"{name} must be True or False; got {v!r}")


def check_positive_number(**values) -> None:
    """Raise a ``ValueError`` naming each argument that is not a finite number > 0."""
    for name, v in values.items():
        number = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        if not number or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive number; got {v!r}")


def check_positive_int(**values) -> None:
    """Raise a ``ValueError`` naming each argument that is not a positive int."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")


def parse_bytes(value) -> int | None:
    """Parse ``512e6``, ``"512MB"``, ``"2GiB"`` into bytes; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"max_memory must be positive, got {value}")
        return int(value)
    if isinstance(value, str):
        units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 1e3, "mb": 1e6, "gb": 1e9, "b": 1}
        s = value.strip().lower().replace(" ", "")
        for unit, factor in units.items():
            if s.endswith(unit):
                try:
                    return parse_bytes(float(s[: -len(unit)]) * factor)
                except ValueError:
                    break
    raise ValueError(f"max_memory must be a number of bytes or a string like '512MiB'; got {value!r}")


def split_frame(inputs, model, name: str = "inputs"):
    """Numeric data and column names from a pandas DataFrame; other inputs pass through.

    A DataFrame's columns must be the ones ``model`` was fitted on (its
    ``feature_names_in_``), in that order. A model with an ``encode(frame)`` method (such as
    ``xai_suite_tabular.TabularModel``) turns the frame into numbers (categorical codes);
    otherwise every column must be numeric.

    Returns
    -------
    data : array-like
        ``inputs`` unchanged, or the frame's values as float32 (N, F).
    names : tuple of str, or None
        The frame's column names.
    """
    import pandas as pd

    if not isinstance(inputs, pd.DataFrame):
        return inputs, None
    names = tuple(str(c) for c in inputs.columns)
    expected = getattr(model, "feature_names_in_", None)
    if expected is not None and tuple(str(c) for c in expected) != names:
        expected = tuple(str(c) for c in expected)
        missing = [c for c in expected if c not in names]
        extra = [c for c in names if c not in expected]
        detail = (f"missing {missing}" if missing else "") + (f" unexpected {extra}" if extra else "")
        raise ValueError(f"{name} must have the columns the model was fitted on, in order: {list(expected)}; "
                         f"got {list(names)} ({detail.strip() or 'another order'})")
    encode = getattr(model, "encode", None)
    if callable(encode):
        return encode(inputs), names
    bad = [str(c) for c, dtype in inputs.dtypes.items()
           if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))]
    if bad:
        raise TypeError(f"{name} has non-numeric column(s) {bad}; to explain categorical columns wrap the "
                        "model: xai_suite_tabular.TabularModel(model, X_train)")
    return inputs.to_numpy(dtype=np.float32, copy=True), names


def check_random_state(value) -> None:
    """Check a seed: ``None`` or an int in [0, 2**32 - 1], what every NumPy generator takes
    (``TypeError`` for other types, ``ValueError`` out of range)."""
    if value is None:
        return
    msg = f"random_state must be None or an int in [0, 2**32 - 1]; got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(msg)
    if not 0 <= value < 2**32:
        raise ValueError(msg)
