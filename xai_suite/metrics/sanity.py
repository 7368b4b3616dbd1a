"""Sanity checks and completeness: completeness error, model-parameter randomisation.

The random-attribution control these checks are read against is the explainer
``native:random`` (:mod:`xai_suite.methods.native.control`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .faithfulness import _re_explain, target_outputs
from .registry import register_metric


@register_metric("completeness_error", kind="completeness", needs=("model",), higher_is_better=False,
                 explainer_tags=("has_convergence_delta",),
                 summary="|sum(attributions) - (f(x) - f(baseline))|")
def completeness_error(exp, *, model, relative: bool = False, eps: float = 1e-6, batch_size: int = 256,
                       device="auto") -> np.ndarray:
    """Completeness error ``|sum(attr) - (f(x) - f(baseline))|``, per instance.

    Read from ``exp.convergence_delta`` when the method records one; otherwise ``f(baseline)``
    is the target output averaged over the draws of ``exp.baselines`` (0 without baselines),
    and for a text explanation ``f(x) - f(baseline)`` is ``exp.output_gap()``.

    Parameters
    ----------
    exp : Explanation
    model : the explained model
    relative : bool
        Divide by ``max(|f(x) - f(baseline)|, eps)``.
    eps : float
        Floor of the relative error's denominator.
    batch_size : int
        Rows per model call.
    device : str

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    n = len(exp)
    output_gap = getattr(exp, "output_gap", None)
    if output_gap is not None:  # results of other modalities (text) say what f(x) - f(baseline) is
        fx = output_gap()
    else:
        idx, target = np.arange(n), np.asarray(exp.target)
        fx = np.asarray(exp.predictions, dtype=np.float64)[idx, target]
    fb = np.zeros(n)
    if (relative or exp.convergence_delta is None) and output_gap is None and exp.baselines is not None:
        b = np.asarray(exp.baselines, dtype=np.float32)
        if b.ndim != exp.inputs.ndim + 1 or b.shape[1:] != exp.inputs.shape:
            raise ValueError(f"exp.baselines must have shape (S, *inputs.shape); got {b.shape}")
        with target_outputs(model, batch_size=batch_size, device=device) as f:
            out = f(torch.from_numpy(b.reshape(-1, *b.shape[2:])), np.tile(target, b.shape[0]))
        fb = out.reshape(b.shape[0], n).mean(0)
    if exp.convergence_delta is not None:
        err = np.abs(np.asarray(exp.convergence_delta, dtype=np.float64))
        err = err.reshape(1) if output_gap is not None else err  # one prompt, one float
        if err.shape != (n,):
            raise ValueError(f"exp.convergence_delta must have shape ({n},); got {err.shape}")
    else:
        total = np.asarray(exp.attributions, dtype=np.float64).reshape(n, -1).sum(1)
        err = np.abs(total - (fx - fb))
    if relative:
        if not eps > 0:
            raise ValueError(f"eps must be positive; got {eps!r}")
        err = err / np.maximum(np.abs(fx - fb), eps)
    return err


def parameterised_layers(model: nn.Module) -> list[str]:
    """Names of the modules that hold parameters of their own, from input to output.

    Registration order stands for depth (as in ``nn.Sequential`` and most models).
    """
    return [name for name, m in model.named_modules()
            if any(True for _ in m.parameters(recurse=False))]


def randomised_copy(model: nn.Module, layers: int | None = None, random_state: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the weights of its top ``layers`` layers re-initialised.

    Layers are :func:`parameterised_layers`, counted from the output end as in cascading
    randomisation (Adebayo et al. 2018): ``layers=1`` the last, ..., ``None`` all, ``0`` none.
    A layer is re-initialised by its ``reset_parameters`` (batch-norm layers also forget their
    running statistics); a module without one gets parameters drawn from ``N(0, 0.02^2)``.

    Parameters
    ----------
    model : torch.nn.Module
    layers : int or None
    random_state : int
        Seeds the new weights (torch's global generator is restored after).

    Returns
    -------
    torch.nn.Module
        The copy, in the original's train/eval mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model-parameter randomisation needs a torch.nn.Module; got {type(model).__name__}")
    names = parameterised_layers(model)
    layers = len(names) if layers is None else layers
    if isinstance(layers, bool) or not isinstance(layers, int | np.integer) or not 0 <= layers <= len(names):
        raise ValueError(f"layers must be None or an int in 0..{len(names)} (the model's parameterised "
                         f"layers); got {layers!r}")
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(random_state))
        for name in names[len(names) - int(layers):]:
            m = modules[name]
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
            else:
                for p in m.parameters(recurse=False):
                    p.normal_(0.0, 0.02)
    return twin


def spearman_rows(a, b) -> np.ndarray:
    """Spearman rank correlation between the rows of ``a`` and ``b`` (flattened per instance).

    A constant row has no ranking to agree with: its correlation is defined as 0.

    Parameters
    ----------
    a, b : array-like, shape (N, ...)

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    from scipy.stats import rankdata

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rank correlation pairs arrays of one shape; got {a.shape} and {b.shape}")
    ra, rb = (rankdata(v.reshape(len(v), -1), axis=1) for v in (a, b))
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    num = (ra * rb).sum(1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _explainer_for(explainer, model: nn.Module, fit_data):
    """The explainer with ``model`` swapped in: a clone (fitted on ``fit_data`` if given), or,
    for a fitted explainer and no ``fit_data``, a copy keeping its fitted state."""
    from ..base import clone  # base imports this package

    if fit_data is None and explainer.requires_fit:
        if explainer._fit_shape is None:
            raise ValueError(f"{explainer.info.qualified_name} must be fitted: pass a fitted explainer "
                             "or fit_data=(X, y)")
        # what explainers learn in fit (backgrounds, baseline statistics) holds for any model
        return copy.deepcopy(explainer, memo={id(explainer.model): model})
    e = clone(explainer, model=model)
    if fit_data is not None:
        e.fit(*fit_data) if isinstance(fit_data, tuple) else e.fit(fit_data)
    return e


def cascading_randomisation(exp, model: nn.Module, explainer, *, absolute: bool = True, fit_data=None,
                            random_state: int = 0) -> tuple[list[str], np.ndarray]:
    """Rank correlation after randomising the top 1, 2, ..., L layers (Adebayo et al. 2018).

    Parameters
    ----------
    exp, model, explainer, absolute, fit_data, random_state
        As for :func:`randomisation_correlation`.

    Returns
    -------
    layers : list of str
        The layer randomised last at each step, from the output end (length L).
    values : numpy.ndarray, shape (N, L)
        Spearman correlation per instance after randomising layers ``L-1 ... L-1-j``.
    """
    names = parameterised_layers(model)
    values = np.stack([
        randomisation_correlation(exp, model=model, explainer=explainer, layers=j, absolute=absolute,
                                  fit_data=fit_data, random_state=random_state)
        for j in range(1, len(names) + 1)
    ], axis=1)
    return names[::-1], values


@register_metric("randomisation_correlation", kind="sanity", needs=("model", "explainer"),
                 higher_is_better=False, model_kinds=("torch",),
                 summary="Rank correlation of attributions for the trained and a randomised model")
def randomisation_correlation(exp, *, model, explainer, layers: int | None = None, absolute: bool = True,
                              fit_data=None, random_state: int = 0) -> np.ndarray:
    """Model-parameter randomisation test (Adebayo et al. 2018), per instance.

    A clone of the explainer (:func:`xai_suite.clone`) explains ``exp.inputs`` for the same
    targets on :func:`randomised_copy` of the model; the value is the Spearman rank correlation
    of the trained and the randomised attributions. A method that depends on what the model
    learned scores near 0; lower is better.

    Parameters
    ----------
    exp : Explanation
    model : torch.nn.Module
        The explained model.
    explainer : AttributionExplainer
        The explainer that made ``exp``.
    layers : int or None
        Layers re-initialised from the output end; ``None``: all (independent full
        randomisation), ``0``: none (the correlation of the method with itself).
    absolute : bool
        Compare ``|attributions|`` (Adebayo et al.'s choice) or the signed values.
    fit_data : tuple (X, y) or array, optional
        Fit the clone on this data; without it, a fitted explainer is copied with its fitted
        state (learnt from the data alone, not the model).
    random_state : int
        Seeds the new weights.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    e = _explainer_for(explainer, randomised_copy(model, layers, random_state), fit_data)
    b = _re_explain(e, torch.from_numpy(np.ascontiguousarray(exp.inputs)), np.asarray(exp.target), exp, 1)
    a, b = np.asarray(exp.attributions), b.attributions
    if absolute:
        a, b = np.abs(a), np.abs(b)
    return spearman_rows(a, b)
