"""Steering a language model along a direction of its residual stream.

Two interventions, each a dict of hook functions (hook name -> function) for
:meth:`LanguageModel.run_with_hooks`, :meth:`LanguageModel.run_with_cache`, the lens, a
``with lm.hooks(fns):`` block, or :meth:`LanguageModel.generate` (``fns=``: every generation
step runs the whole sequence, so the hooks apply at every step):

- **activation addition** (:func:`addition_hooks`): ``x + alpha * direction`` at one hook point,
  at every position or at given ones (Turner et al. 2023, Activation Addition);
- **directional ablation** (:func:`ablation_hooks`): ``x - (x . d) d`` for a unit direction ``d``
  at every residual-stream hook point of every layer (or at the hook points given), so no
  layer reads or writes the component along ``d`` (Arditi et al. 2024).

:func:`difference_of_means` finds a direction: the mean activation of one set of prompts minus
that of another, at one hook point and position. :func:`chain_hooks` runs several dicts of
hook functions together (say an ablation everywhere and an addition at one site).
:func:`hook_activations` reads a hook point's activations for many prompts, batched.

References: Turner et al. (2023), Activation Addition: Steering Language Models Without
Optimization; Arditi et al. (2024), Refusal in Language Models Is Mediated by a Single Direction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

from xai_suite.plugin import as_float_tensor, auto_rows, check_batch_size, probe_activations, progress

from .models import LanguageModel, check_language_model

#: Hook points :func:`ablation_hooks` projects by default: every one the residual stream passes
#: through (``resid_mid`` where the model exposes it) and every sub-layer output written into it.
_RESIDUAL = re.compile(r"blocks\.\d+\.hook_(resid_pre|resid_mid|attn_out|mlp_out|resid_post)")


def _check_prompts(prompts, name: str) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise TypeError(f"{name} must be a non-empty sequence (list) of strings")
    if not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"{name} must hold strings only")
    return list(prompts)


def _check_direction(lm: LanguageModel, direction, name: str = "direction") -> torch.Tensor:
    d = as_float_tensor(direction, name)
    if d.shape != (lm.d_model,):
        raise ValueError(f"{name} must have shape (d_model,) = ({lm.d_model},); got {tuple(d.shape)}")
    return d


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.integer | np.floating) \
            or not np.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number; got {alpha!r}")
    return float(alpha)


def hook_activations(lm: LanguageModel, prompts: Sequence[str], hook: str, *,
                     batch_size: int | str = "auto") -> list[torch.Tensor]:
    """Each prompt's activations at one hook point.

    Prompts of one token length go through the model together, ``batch_size`` at a time
    (``"auto"``: as many as fit the memory budget, see :mod:`xai_suite.batching`); no padding.

    Parameters
    ----------
    lm : LanguageModel
    prompts : sequence of str, length N
    hook : str
        A hook point (``lm.hook_names()``).
    batch_size : "auto" or int

    Returns
    -------
    list of torch.Tensor of float32, each of shape (T_i, d_model)
        On the CPU, in the order of ``prompts``.
    """
    lm = check_language_model(lm, "hook_activations")
    prompts = _check_prompts(prompts, "prompts")
    lm._site(hook)  # validates the name
    check_batch_size(batch_size)
    encoded = [lm.encode(p).ids for p in prompts]
    lengths = np.array([e.shape[0] for e in encoded])
    out: list[torch.Tensor | None] = [None] * len(prompts)
    groups = [np.flatnonzero(lengths == n) for n in np.unique(lengths)]
    if batch_size == "auto":
        sample = torch.stack([encoded[i] for i in groups[0][:4]]).to(lm.device)
        batch_size = auto_rows(probe_activations(lm.model, sample), lm.device, None)
    plan = [idx[s:s + batch_size] for idx in groups for s in range(0, idx.size, batch_size)]
    for rows in progress(plan, f"activations at {hook}"):
        _, cache = lm.run_with_cache(torch.stack([encoded[i] for i in rows]), [hook])
        acts = cache[hook].float().cpu()
        for j, i in enumerate(rows):
            out[i] = acts[j]
    return out


def difference_of_means(lm: LanguageModel, prompts_a: Sequence[str], prompts_b: Sequence[str],
                        hook: str, *, position: int = -1, batch_size: int | str = "auto") -> torch.Tensor:
    """The mean activation of ``prompts_a`` minus that of ``prompts_b`` at ``hook``, ``position``.

    Parameters
    ----------
    lm : LanguageModel
    prompts_a, prompts_b : sequence of str
        The two sets (say prompts with the property and without).
    hook : str
        A hook point (``blocks.{l}.hook_resid_post``, ...).
    position : int
        The token position read in every prompt; negative counts from each prompt's end
        (``-1``: the last token, so the prompts may differ in length).
    batch_size : "auto" or int
        Prompts per forward pass (see :func:`hook_activations`).

    Returns
    -------
    torch.Tensor of float32, shape (d_model,)
        Not normalised: adding it to the activation of a ``b`` prompt moves it to the mean
        of the ``a`` prompts.

    Raises
    ------
    ValueError
        When ``position`` is out of range for a prompt.
    """
    if isinstance(position, bool) or not isinstance(position, int | np.integer):
        raise TypeError(f"position must be an int; got {position!r}")
    means = []
    for name, prompts in (("prompts_a", prompts_a), ("prompts_b", prompts_b)):
        acts = hook_activations(lm, _check_prompts(prompts, name), hook, batch_size=batch_size)
        short = min(a.shape[0] for a in acts)
        if not -short <= position < short:
            raise ValueError(f"position {position} is out of range for {name}: its shortest prompt has "
                             f"{short} tokens (valid: {-short}..{short - 1})")
        means.append(torch.stack([a[position] for a in acts]).double().mean(0))
    return (means[0] - means[1]).float()


def _positions(positions, n_tokens: int) -> list[int] | slice:
    """Token indices of an activation with ``n_tokens`` positions (``None``: all of them)."""
    if positions is None:
        return slice(None)
    for p in positions:
        if not -n_tokens <= p < n_tokens:
            raise ValueError(f"steering position {p} is out of range for a sequence of {n_tokens} tokens")
    return list(positions)


def _check_positions(positions) -> tuple[int, ...] | None:
    if positions is None:
        return None
    if isinstance(positions, int | np.integer) and not isinstance(positions, bool):
        positions = (positions,)
    if isinstance(positions, str) or not isinstance(positions, Sequence) or not positions or \
            any(isinstance(p, bool) or not isinstance(p, int | np.integer) for p in positions):
        raise TypeError(f"positions must be None (every position), an int or a non-empty sequence of "
                        f"ints; got {positions!r}")
    return tuple(int(p) for p in positions)


def addition_hooks(lm: LanguageModel, hook: str, direction, *, alpha: float = 1.0,
                   positions: int | Sequence[int] | None = None) -> dict[str, Callable]:
    """Hook functions adding ``alpha * direction`` to the activation at ``hook``.

    Parameters
    ----------
    lm : LanguageModel
    hook : str
        A hook point (``blocks.{l}.hook_resid_pre``, ...).
    direction : torch.Tensor or numpy.ndarray, shape (d_model,)
        Added as given (not normalised).
    alpha : float
        Its coefficient; ``0`` leaves every activation exactly as it was.
    positions : int, sequence of int or None
        Token positions steered; negative count from the end of the sequence each forward
        pass sees (during :meth:`~LanguageModel.generate`, ``-1`` is the newest token at
        every step); ``None``: every position, generated ones included.

    Returns
    -------
    dict of str to callable
        ``{hook: fn}``, for ``run_with_hooks``, ``hooks`` or ``generate(fns=...)``.
    """
    lm = check_language_model(lm, "addition_hooks")
    lm._site(hook)
    vector = _check_direction(lm, direction) * _check_alpha(alpha)
    positions = _check_positions(positions)

    def add(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        new[:, _positions(positions, act.shape[1])] += vector.to(act.device, act.dtype)
        return new

    return {hook: add}


def ablation_hooks(lm: LanguageModel, direction, *, hooks: Sequence[str] | None = None
                   ) -> dict[str, Callable]:
    """Hook functions projecting the unit vector along ``direction`` out of activations.

    Each activation ``x`` (every position) becomes ``x - (x . d) d`` with ``d = direction /
    ||direction||``. By default at every layer's ``resid_pre``, ``attn_out``, ``mlp_out`` and
    ``resid_post`` (and ``resid_mid`` where the model exposes it): since a projection is linear
    and each residual stream is the sum of what was written into it, no sub-layer then reads
    or writes a component along ``d``, as in Arditi et al. (2024).

    Parameters
    ----------
    lm : LanguageModel
    direction : torch.Tensor or numpy.ndarray, shape (d_model,)
        Any non-zero length (it is normalised).
    hooks : sequence of str, optional
        The hook points to project at (default: the residual-stream ones above).

    Returns
    -------
    dict of str to callable
    """
    lm = check_language_model(lm, "ablation_hooks")
    d = _check_direction(lm, direction).double()
    norm = float(d.norm())
    if norm == 0:
        raise ValueError("direction must be non-zero to be ablated")
    d = d / norm
    if hooks is None:
        hooks = [h for h in lm.hook_names() if _RESIDUAL.fullmatch(h)]
    elif isinstance(hooks, str) or not isinstance(hooks, Sequence) or not hooks:
        raise TypeError(f"hooks must be None or a non-empty sequence of hook names; got {hooks!r}")
    for h in hooks:
        lm._site(h)

    def project(act: torch.Tensor) -> torch.Tensor:
        u = d.to(act.device, act.dtype)
        return act - (act @ u).unsqueeze(-1) * u

    return {h: project for h in hooks}


def chain_hooks(*fns: dict[str, Callable]) -> dict[str, Callable]:
    """One dict of hook functions running each of ``fns`` in turn where they share a hook point.

    Each function receives what the previous one returned (the activation itself when it
    returned ``None``).
    """
    chained: dict[str, list[Callable]] = {}
    for group in fns:
        if not isinstance(group, dict):
            raise TypeError(f"chain_hooks takes dicts of hook functions; got {type(group).__name__}")
        for name, fn in group.items():
            chained.setdefault(name, []).append(fn)

    def run(chain: list[Callable]) -> Callable:
        def fn(act: torch.Tensor) -> torch.Tensor:
            for f in chain:
                new = f(act)
                act = act if new is None else new
            return act
        return fn

    return {name: chain[0] if len(chain) == 1 else run(chain) for name, chain in chained.items()}
