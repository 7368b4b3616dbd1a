"""Interventions on one prompt's residual stream, as InTraVisTo does: at a hook point and a
position, overwrite the activation with a token's input embedding (*injection*) or with the
activation a second prompt has there (*patching*), then read the new output and logit lens.

An :class:`Intervention` is the vector to write and where; :func:`intervention_hooks` turns a
list of them into hook functions for :meth:`LanguageModel.run_with_hooks` (or the lens,
``LogitLens.explain(prompt, hooks=...)``). Interventions apply in order: a later one at the
same hook and position replaces an earlier one, so patching the clean activation back over an
injection restores the clean run exactly.

Reference: Katz et al. (2024), InTraVisTo: Inside Transformer Visualisation Tool.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .lens import first_token
from .models import LanguageModel, check_language_model


@dataclass(frozen=True)
class Intervention:
    """Write ``value`` into the activation at ``hook``, position ``position``.

    Attributes
    ----------
    hook : str
        A hook point (``blocks.{l}.hook_resid_pre``, ...; see :mod:`xai_suite_llm.models`).
    position : int
        The prompt position (0-based).
    value : torch.Tensor, shape (d_model,)
    label : str
        What it writes, for display (``embedding of ' d'``, ``activation of '...'``).
    """

    hook: str
    position: int
    value: torch.Tensor
    label: str = ""


def _check_position(position, n_tokens: int | None, what: str) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError(f"position must be a non-negative int; got {position!r}")
    if n_tokens is not None and position >= n_tokens:
        raise ValueError(f"position {position} is past the end of {what} ({n_tokens} tokens)")
    return position


def embedding_intervention(lm: LanguageModel, hook: str, position: int, token: str) -> Intervention:
    """Write the input embedding of ``token`` (one token, as it follows a prompt) at ``hook``.

    Raises
    ------
    ValueError
        When ``token`` is not exactly one token, or ``hook`` is no hook point.
    """
    lm = check_language_model(lm, "embedding_intervention")
    lm._site(hook)  # validates the hook name
    ids = lm.token_ids(token) if isinstance(token, str) else None
    if ids is not None and len(ids) != 1:
        raise ValueError(f"token must be one token; {token!r} tokenises to {len(ids)}: "
                         f"{[lm.decode([i]) for i in ids]}")
    tid = first_token(lm, token, "token")
    value = lm.embed.weight[tid].detach().clone()
    return Intervention(hook, _check_position(position, None, ""), value,
                        f"embedding of {lm.decode([tid])!r}")


def activation_intervention(lm: LanguageModel, source: str, hook: str, position: int) -> Intervention:
    """Write the activation ``source`` (a prompt) has at ``hook`` and ``position``."""
    lm = check_language_model(lm, "activation_intervention")
    lm._site(hook)
    enc = lm.encode(source)
    _check_position(position, len(enc.tokens), f"the source prompt {source!r}")
    _, cache = lm.run_with_cache(enc.ids.unsqueeze(0), [hook])
    return Intervention(hook, position, cache[hook][0, position].clone(), f"activation of {source!r}")


def intervention_hooks(interventions: Sequence[Intervention]) -> dict[str, Callable]:
    """Hook functions applying ``interventions`` in order (for ``run_with_hooks`` and the lens)."""
    by_hook: dict[str, list[Intervention]] = defaultdict(list)
    for iv in interventions:
        if not isinstance(iv, Intervention):
            raise TypeError(f"interventions must be Intervention objects; got {type(iv).__name__}")
        by_hook[iv.hook].append(iv)

    def writer(ivs: list[Intervention]):
        def fn(act: torch.Tensor) -> torch.Tensor:
            if max(iv.position for iv in ivs) >= act.shape[1]:
                raise ValueError(f"intervention position {max(iv.position for iv in ivs)} is past the end "
                                 f"of the prompt ({act.shape[1]} tokens)")
            new = act.clone()
            for iv in ivs:
                new[:, iv.position] = iv.value.to(act.device, act.dtype)
            return new
        return fn

    return {hook: writer(ivs) for hook, ivs in by_hook.items()}


def run_intervened(lm: LanguageModel, prompt: str, interventions: Sequence[Intervention]) -> torch.Tensor:
    """Next-token logits of ``prompt`` with ``interventions`` applied, shape (T, V)."""
    lm = check_language_model(lm, "run_intervened")
    enc = lm.encode(prompt)
    return lm.run_with_hooks(enc.ids.unsqueeze(0), intervention_hooks(interventions))[0]


def inject_embedding(lm: LanguageModel, prompt: str, hook: str, position: int, token: str) -> torch.Tensor:
    """Logits (T, V) of ``prompt`` with ``token``'s embedding written at ``hook`` and ``position``.

    Example: on the tiny key model, the embedding of a wrong key at the key position of
    ``blocks.0.hook_resid_pre`` (the stream entering layer 0) makes the model answer it.
    """
    return run_intervened(lm, prompt, [embedding_intervention(lm, hook, position, token)])
