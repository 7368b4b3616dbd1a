"""Cache analysis: the residual stream as a sum of its parts, direct logit attribution, attention.

:class:`ActivationCache` holds one run's activations (:meth:`LanguageModel.run_with_cache`)
and splits the residual stream the way TransformerLens's ``ActivationCache`` does. The
stream at the final norm's input (``blocks.{L-1}.hook_resid_post``) is exactly::

    embed (+ pos_embed) + sum over layers l of (l_attn_out + l_mlp_out)

(:meth:`~ActivationCache.decompose_resid`), and each ``attn_out`` is its heads' results
(``attn.hook_result``) plus the output projection's bias ``b_O``, which is in no head
(:meth:`~ActivationCache.stack_head_results`). ``embed`` is what the token embedding adds to
the stream (``blocks.0.hook_resid_pre`` less ``hook_pos_embed``: ``hook_embed`` itself, scaled
where a model scales it). Layouts that normalise each sub-layer's output before adding it
(Gemma-2/3, OLMo-2's ``post_attention_layernorm``) have no per-head decomposition: a norm
sits between the heads and the stream.

**Direct logit attribution** (:meth:`~ActivationCache.logit_attribution`, the entry
``native:direct_logit_attribution``): each component's share of ``logit(answer) -
logit(wrong)`` at one position, through the final norm with its scale *frozen* at its value on
the real stream (TransformerLens's ``apply_ln_to_stack``): a LayerNorm centres each component
and divides it by the real stream's scale ``sqrt(var(x) + eps)``, an RMSNorm (LLaMA) divides
by ``sqrt(mean(x^2) + eps)`` without centring; then the norm's weight and the unembedding.
The norm's bias and the unembedding's bias are terms of their own (``ln_final_bias``,
``unembed_bias``), so the terms sum to the model's logit difference exactly (to float
rounding). ``native:attention_pattern`` returns every head's attention pattern as an
:class:`AttentionResult` (heat maps, and an offline head view).

References: Elhage et al. (2021), A Mathematical Framework for Transformer Circuits; Nanda
(2022), TransformerLens (``ActivationCache``, ``logit_attrs``); Wang et al. (2023),
Interpretability in the Wild (direct logit attribution of heads).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from xai_suite.plugin import Explainer, Result, check_bool, register_explainer

from .lens import first_token
from .models import LanguageModel, check_language_model

#: Bias terms of a direct logit attribution that are no part of the residual stream.
BIAS_TERMS = ("ln_final_bias", "unembed_bias")


def _ids(lm: LanguageModel, inputs, what: str = "inputs") -> torch.Tensor:
    """A prompt, prompts of one length, or token ids (T,) / (B, T) as int64 ids (B, T)."""
    if isinstance(inputs, str):
        return _ids(lm, lm.encode(inputs).ids, what)
    if isinstance(inputs, list | tuple) and inputs and all(isinstance(p, str) for p in inputs):
        rows = [lm.encode(p).ids for p in inputs]
        if len({len(r) for r in rows}) != 1:
            raise ValueError(f"{what}: prompts of a batch must tokenise to the same number of tokens (no "
                             f"padding); got {sorted({len(r) for r in rows})}")
        return _ids(lm, torch.stack(rows), what)
    if not isinstance(inputs, torch.Tensor | np.ndarray | list | tuple):
        raise TypeError(f"{what} must be a prompt string or token ids; got {type(inputs).__name__}")
    t = torch.as_tensor(inputs)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{what} must be a prompt string or integer token ids; got dtype {t.dtype}")
    t = t.unsqueeze(0) if t.ndim == 1 else t
    if t.ndim != 2 or t.shape[1] == 0:
        raise ValueError(f"{what} ids must have shape (T,) or (B, T) with T >= 1; got {tuple(t.shape)}")
    if int(t.min()) < 0 or int(t.max()) >= lm.vocab_size:
        raise ValueError(f"{what} ids must lie in [0, {lm.vocab_size}); got {int(t.min())}..{int(t.max())}")
    max_pos = getattr(lm.model.config, "max_position_embeddings", None)
    if max_pos is not None and t.shape[1] > max_pos:
        raise ValueError(f"{what} has {t.shape[1]} tokens, more than the model's {max_pos} positions")
    return t.long()


def _post_norms(lm: LanguageModel) -> bool:
    """Whether a norm follows each sub-layer before the add (Gemma-2/3, OLMo-2/3; as models.py)."""
    return isinstance(getattr(lm.blocks[0], "post_feedforward_layernorm", None), nn.Module)


@dataclass(frozen=True)
class _FinalNorm:
    """The final norm as ``(x - centre) / sqrt(mean((x - centre)^2) + eps) * weight + bias``."""

    centre: bool
    eps: float
    weight: torch.Tensor  # (d_model,), float64
    bias: torch.Tensor | None  # (d_model,), float64

    @classmethod
    def of(cls, lm: LanguageModel) -> _FinalNorm:
        norm, d = lm.final_norm, lm.d_model
        name = type(norm).__name__
        centre = isinstance(norm, nn.LayerNorm) or ("LayerNorm" in name and "RMS" not in name)
        eps = next((getattr(norm, a) for a in ("eps", "variance_epsilon")
                    if isinstance(getattr(norm, a, None), float)), 1e-5)  # OLMo's: F.layer_norm's 1e-5
        w = getattr(norm, "weight", None)
        weight = torch.ones(d, dtype=torch.float64) if w is None else w.detach().double().cpu()
        if name.startswith("Gemma"):  # Gemma's RMSNorm scales by (1 + weight)
            weight = weight + 1.0
        b = getattr(norm, "bias", None)
        return cls(centre, float(eps), weight, None if b is None else b.detach().double().cpu())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Centred (LayerNorm) or not (RMSNorm), float64."""
        x = x.double()
        return x - x.mean(-1, keepdim=True) if self.centre else x

    def scale(self, stream: torch.Tensor) -> torch.Tensor:
        """The norm's divisor on the real ``stream`` (..., d_model), shape (..., 1)."""
        return (self.prepare(stream).pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def __call__(self, stream: torch.Tensor) -> torch.Tensor:
        out = self.prepare(stream) / self.scale(stream) * self.weight
        return out if self.bias is None else out + self.bias


class ActivationCache(Mapping):
    """One run's activations by hook point, and the residual stream split into its parts.

    A read-only mapping ``name -> tensor`` (``cache["blocks.0.hook_resid_post"]``), built by
    :meth:`run`. ``B`` is the batch, ``T`` the tokens, ``C`` the components, ``L`` the
    layers, ``H`` the heads. A ``pos`` argument picks one position (an int, negative from
    the end) and drops the ``T`` axis; ``None`` keeps every position.

    Attributes
    ----------
    lm : LanguageModel
    ids : torch.Tensor of int64, shape (B, T)
    logits : torch.Tensor, shape (B, T, V)
    """

    def __init__(self, lm: LanguageModel, ids: torch.Tensor, logits: torch.Tensor,
                 cache: dict[str, torch.Tensor]):
        self.lm, self.ids, self.logits = lm, ids, logits
        self._cache = dict(cache)

    @classmethod
    def run(cls, lm: LanguageModel, inputs, *, heads: bool = True, patterns: bool = False,
            names: Sequence[str] = ()) -> ActivationCache:
        """Run ``inputs`` and keep what the analysis reads.

        Parameters
        ----------
        lm : LanguageModel
        inputs : str, list of str, or int tensor of shape (T,) or (B, T)
            A prompt, prompts that tokenise to the same length (no special tokens added),
            or token ids.
        heads : bool
            Keep every layer's ``attn.hook_result`` (H times the memory of ``attn_out``), for
            :meth:`stack_head_results`; refused (with the reason) on layouts without it.
        patterns : bool
            Keep every layer's ``attn.hook_pattern`` (the run then uses this adapter's eager
            attention, see :mod:`.models`).
        names : sequence of str
            Further hook points to keep.

        Returns
        -------
        ActivationCache
        """
        check_language_model(lm, "ActivationCache.run")
        check_bool(heads=heads, patterns=patterns)
        ids = _ids(lm, inputs)
        top = ["hook_pos_embed"] if lm.pos_embed is not None else []
        wanted = [*top, "blocks.0.hook_resid_pre"]
        for layer in range(lm.n_layers):
            block = [f"blocks.{layer}.{s}" for s in ("hook_attn_out", "hook_mlp_out", "hook_resid_post")]
            wanted += block + [f"blocks.{layer}.attn.hook_result"] * heads
            wanted += [f"blocks.{layer}.attn.hook_pattern"] * patterns
        wanted = list(dict.fromkeys([*wanted, "ln_final.hook_normalized", *names]))
        logits, cache = lm.run_with_cache(ids, wanted)
        return cls(lm, ids.to(logits.device), logits, cache)

    # -- the mapping ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            raise KeyError(f"{name!r} is not in this cache (it holds {len(self._cache)} hook points; pass "
                           "names=[...] to ActivationCache.run to keep it)")
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return f"ActivationCache({self.lm!r}, batch={self.ids.shape[0]}, tokens={self.ids.shape[1]}, " \
               f"hooks={len(self)})"

    # -- helpers --------------------------------------------------------------------------
    def _pos(self, pos: int | None) -> int | None:
        """``pos`` as an index in [0, T), or None."""
        if pos is None:
            return None
        n = self.ids.shape[1]
        if isinstance(pos, bool) or not isinstance(pos, int | np.integer) or not -n <= pos < n:
            raise ValueError(f"pos must be None or an int in [{-n}, {n}) (the prompt has {n} tokens); "
                             f"got {pos!r}")
        return int(pos) % n

    def _at(self, name: str, pos: int | None) -> torch.Tensor:
        act = self[name]
        return act if pos is None else act[:, pos]

    def _layers(self, layer: int | None) -> int:
        """The number of blocks a decomposition covers: all for None, else ``layer`` (the
        stream entering block ``layer``; ``n_layers`` is the final stream)."""
        if layer is None:
            return self.lm.n_layers
        n = self.lm.n_layers
        if isinstance(layer, bool) or not isinstance(layer, int | np.integer) or not 0 <= layer <= n:
            raise ValueError(f"layer must be None or an int in [0, {n}]; got {layer!r}")
        return int(layer)

    def resid(self, layer: int | None = None, pos: int | None = None) -> torch.Tensor:
        """The residual stream entering block ``layer`` (``None``: the final norm's input,
        ``blocks.{L-1}.hook_resid_post``), shape (B, [T,] d_model)."""
        n, p = self._layers(layer), self._pos(pos)
        return self._at("blocks.0.hook_resid_pre" if n == 0 else f"blocks.{n - 1}.hook_resid_post", p)

    # -- decompositions -------------------------------------------------------------------
    def decompose_resid(self, layer: int | None = None, pos: int | None = None, *,
                        heads: bool = False) -> tuple[torch.Tensor, list[str]]:
        """The residual stream as the sum of what each part adds to it.

        Parameters
        ----------
        layer : int, optional
            Decompose the stream entering block ``layer`` (the parts before it); None: the
            final norm's input.
        pos : int, optional
            One position; None: every position.
        heads : bool
            Split each ``attn_out`` into its heads and its bias (:meth:`stack_head_results`).

        Returns
        -------
        components : torch.Tensor, shape (C, B, [T,] d_model)
            They sum to :meth:`resid` ``(layer, pos)``.
        labels : list of str, length C
            ``"embed"``, ``"pos_embed"`` (learned position embeddings only), then per layer
            ``"{l}_attn_out"`` (or ``"L{l}H{h}"`` for each head and ``"{l}_attn_bias"``) and
            ``"{l}_mlp_out"``.
        """
        check_bool(heads=heads)
        n, p = self._layers(layer), self._pos(pos)
        parts, labels = [], []
        embed = self._at("blocks.0.hook_resid_pre", p)
        if "hook_pos_embed" in self._cache:
            pos_embed = self._at("hook_pos_embed", p)
            parts += [embed - pos_embed, pos_embed]
            labels += ["embed", "pos_embed"]
        else:
            parts.append(embed)
            labels.append("embed")
        for layer_ in range(n):
            if heads:
                stack, names = self._heads(layer_, p)
                parts += stack
                labels += names
            else:
                parts.append(self._at(f"blocks.{layer_}.hook_attn_out", p))
                labels.append(f"{layer_}_attn_out")
            parts.append(self._at(f"blocks.{layer_}.hook_mlp_out", p))
            labels.append(f"{layer_}_mlp_out")
        return torch.stack(parts), labels

    def accumulated_resid(self, layer: int | None = None, pos: int | None = None, *,
                          incl_mid: bool = False) -> tuple[torch.Tensor, list[str]]:
        """The residual stream as it grows: the embeddings, then after each block.

        Parameters
        ----------
        layer : int, optional
            Stop at the stream entering block ``layer``; None: the final norm's input.
        pos : int, optional
        incl_mid : bool
            Also the stream between each block's attention and MLP (``hook_resid_mid``;
            refused on parallel-attention layouts, which have none).

        Returns
        -------
        streams : torch.Tensor, shape (S, B, [T,] d_model)
            ``streams[-1]`` is :meth:`resid` ``(layer, pos)``.
        labels : list of str, length S
            ``"embed"``, then per block ``"{l}_mid"`` (with ``incl_mid``) and ``"{l}_post"``.
        """
        check_bool(incl_mid=incl_mid)
        n, p = self._layers(layer), self._pos(pos)
        if incl_mid and "hook_resid_mid" in self.lm._refused:
            raise ValueError(f"incl_mid=True: {self.lm._refused['hook_resid_mid']}")
        streams, labels = [self._at("blocks.0.hook_resid_pre", p)], ["embed"]
        for layer_ in range(n):
            if incl_mid:  # resid_pre + attn_out, as the MLP's side reads it
                streams.append(streams[-1] + self._at(f"blocks.{layer_}.hook_attn_out", p))
                labels.append(f"{layer_}_mid")
            streams.append(self._at(f"blocks.{layer_}.hook_resid_post", p))
            labels.append(f"{layer_}_post")
        return torch.stack(streams), labels

    def stack_head_results(self, layer: int | None = None, pos: int | None = None
                           ) -> tuple[torch.Tensor, list[str]]:
        """Every head's output and each layer's attention bias, as components of the stream.

        Parameters
        ----------
        layer : int, optional
            The layers before block ``layer``; None: all.
        pos : int, optional

        Returns
        -------
        components : torch.Tensor, shape (L * (H + 1), B, [T,] d_model)
            Per layer, its ``H`` heads' results (``attn.hook_result``) then the output
            projection's bias ``b_O`` (zeros where it has none); per layer they sum to
            ``attn_out``.
        labels : list of str
            ``"L{l}H{h}"`` and ``"{l}_attn_bias"``.

        Raises
        ------
        ValueError
            On layouts where a norm follows attention before the add (Gemma-2/3, OLMo-2/3):
            there the heads' results do not add to the stream.
        """
        n, p = self._layers(layer), self._pos(pos)
        parts, labels = [], []
        for layer_ in range(n):
            stack, names = self._heads(layer_, p)
            parts += stack
            labels += names
        if not parts:  # layer=0: no block before it
            return self.resid(0, pos).new_zeros((0, *self.resid(0, pos).shape)), labels
        return torch.stack(parts), labels

    def _heads(self, layer: int, p: int | None) -> tuple[list[torch.Tensor], list[str]]:
        """Layer ``layer``'s heads' results and its attention bias, each (B, [T,] d_model)."""
        if _post_norms(self.lm):
            raise ValueError(f"{type(self.lm.model).__name__} normalises the attention output before adding "
                             "it to the stream (post_attention_layernorm): the heads' results do not sum to "
                             "attn_out, so the stream has no per-head decomposition")
        name = f"blocks.{layer}.attn.hook_result"
        if name not in self._cache:
            self.lm._site(name)  # refused on this layout: raises with the reason
            raise KeyError(f"{name!r} is not in this cache: run ActivationCache.run(..., heads=True)")
        result = self._at(name, p)  # (B, [T,] H, d_model)
        bias = self.lm._site(name)[1].module.bias
        zero = result[..., 0, :]
        bias = torch.zeros_like(zero) if bias is None else bias.detach().to(zero).expand_as(zero)
        labels = [f"L{layer}H{h}" for h in range(result.shape[-2])] + [f"{layer}_attn_bias"]
        return [*result.movedim(-2, 0), bias], labels

    # -- direct logit attribution ---------------------------------------------------------
    def _direction(self, answer, wrong) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``W_U[answer] - W_U[wrong]`` per row (B, d_model) float64, and the ids (B,) (or None)."""
        a = self._tokens(answer, "answer")
        w = None if wrong is None else self._tokens(wrong, "wrong")
        if w is not None and bool((a == w).any()):
            raise ValueError(f"answer {answer!r} and wrong {wrong!r} are the same token "
                             f"{self.lm.decode([int(a[(a == w).nonzero()[0, 0]])])!r} in a row: their logit "
                             "difference is always 0")
        weight = self.lm.unembed.weight.detach().double().cpu()  # (V, d_model)
        return weight[a] - (0 if w is None else weight[w]), a, w

    def _tokens(self, tokens, what: str) -> torch.Tensor:
        """One token id per row (B,): a continuation or an id for every row, or a list of B."""
        batch = self.ids.shape[0]
        if isinstance(tokens, list | tuple):
            if len(tokens) != batch:
                raise ValueError(f"{what} must be one token for every row or a list of {batch} (one per "
                                 f"row); got a list of {len(tokens)}")
            return torch.tensor([_token(self.lm, t, what) for t in tokens])
        return torch.full((batch,), _token(self.lm, tokens, what))

    def apply_ln_to_stack(self, stack: torch.Tensor, pos: int | None = None) -> torch.Tensor:
        """Components through the final norm with its scale frozen at the real stream's.

        Parameters
        ----------
        stack : torch.Tensor, shape (C, B, [T,] d_model)
            Components of :meth:`resid` ``(None, pos)`` (from :meth:`decompose_resid` or
            :meth:`stack_head_results` with the same ``pos``).
        pos : int, optional

        Returns
        -------
        torch.Tensor of float64, shape (C, B, [T,] d_model)
            Each component centred (LayerNorm; RMSNorm: not) and divided by the real stream's
            scale (the norm's weight and bias are not applied). Their sum is the normalised
            stream before the weight.
        """
        stream = self.resid(None, pos).detach().cpu()
        if stack.shape[1:] != stream.shape:
            raise ValueError(f"stack must have shape (C, {', '.join(map(str, stream.shape))}) (components of "
                             f"the final stream at pos={pos!r}); got {tuple(stack.shape)}")
        norm = _FinalNorm.of(self.lm)
        return norm.prepare(stack.detach().cpu()) / norm.scale(stream)

    def logit_attrs(self, stack: torch.Tensor, answer, wrong=None, pos: int = -1) -> torch.Tensor:
        """Each component's direct effect on ``logit(answer) - logit(wrong)`` at ``pos``.

        Parameters
        ----------
        stack : torch.Tensor, shape (C, B, d_model)
            Components of the final stream at ``pos`` (see :meth:`apply_ln_to_stack`).
        answer, wrong : str or int, or a list of B of them
            A continuation (its first token) or a token id, for every row or one per row;
            ``wrong=None``: the answer's logit.
        pos : int

        Returns
        -------
        torch.Tensor of float64, shape (C, B)
            Through the frozen final norm, its weight and the unembedding; the norm's and
            the unembedding's biases are not included (see :meth:`logit_attribution`).
        """
        if stack.ndim != 3:
            raise ValueError(f"stack must have shape (C, B, d_model) (components at one position); got "
                             f"{tuple(stack.shape)}")
        direction, _, _ = self._direction(answer, wrong)
        return ((self.apply_ln_to_stack(stack, pos) * _FinalNorm.of(self.lm).weight) * direction).sum(-1)

    def logit_attribution(self, answer, wrong=None, pos: int = -1, *, heads: bool = False
                          ) -> tuple[torch.Tensor, list[str]]:
        """Direct logit attribution of every component, with the bias terms: the terms sum
        to the model's ``logit(answer) - logit(wrong)`` at ``pos``.

        Parameters
        ----------
        answer, wrong : str or int, or a list of B of them
            As :meth:`logit_attrs`.
        pos : int
        heads : bool
            Per head (and attention bias) rather than per attention layer.

        Returns
        -------
        attributions : torch.Tensor of float64, shape (C + 2, B)
        labels : list of str, length C + 2
            :meth:`decompose_resid`'s, then ``"ln_final_bias"`` (the final norm's bias through
            the unembedding) and ``"unembed_bias"`` (0 where there is none).

        Raises
        ------
        ValueError
            When the model's logits are not this linear read-out of the final norm (Gemma-2's
            final soft-capping), where no exact decomposition exists.
        """
        cap = getattr(self.lm.model.config, "final_logit_softcapping", None)
        if cap:
            raise ValueError(f"{type(self.lm.model).__name__} soft-caps its logits (tanh, cap {cap}): the "
                             "logit difference is not a sum of the components' direct effects")
        stack, labels = self.decompose_resid(None, pos, heads=heads)
        direction, a, w = self._direction(answer, wrong)
        norm, b = _FinalNorm.of(self.lm), getattr(self.lm.unembed, "bias", None)
        attrs = ((self.apply_ln_to_stack(stack, pos) * norm.weight) * direction).sum(-1)
        zero = torch.zeros(attrs.shape[1], dtype=torch.float64)
        ln_bias = zero if norm.bias is None else direction @ norm.bias
        b = None if b is None else b.detach().double().cpu()
        ub = zero if b is None else b[a] - (0 if w is None else b[w])
        out = torch.cat([attrs, ln_bias[None], ub[None]])
        self._check_total(out.sum(0), a, w, pos)
        return out, [*labels, *BIAS_TERMS]

    def _check_total(self, total: torch.Tensor, a: torch.Tensor, w: torch.Tensor | None, pos: int) -> None:
        """The terms must sum to the model's own logit difference, or the read-out is not ours."""
        logits = self.logits[:, self._pos(pos)].double().cpu()
        real = logits.gather(1, a[:, None])[:, 0] - (0 if w is None else logits.gather(1, w[:, None])[:, 0])
        gap = float((total - real).abs().max())
        if gap > 1e-3 * max(1.0, float(real.abs().max())):
            raise ValueError(f"{type(self.lm.model).__name__}'s logits are not the unembedding of its final "
                             f"norm ({type(self.lm.final_norm).__name__}) as this analysis reads it (the "
                             f"terms miss the logit difference by {gap:.3g}): no exact decomposition")


def _token(lm: LanguageModel, token, what: str) -> int:
    """A continuation's first token id, or an id checked against the vocabulary."""
    if isinstance(token, int | np.integer) and not isinstance(token, bool):
        if not 0 <= token < lm.vocab_size:
            raise ValueError(f"{what} id must lie in [0, {lm.vocab_size}); got {token}")
        return int(token)
    return first_token(lm, token, what)


# -- direct logit attribution: the result and its entry ----------------------------------------
@dataclass
class DirectLogitAttribution(Result):
    """Direct logit attribution of one prompt's logit difference, per component and per head.

    Attributes
    ----------
    tokens : list of str, length T
    position : int
        The position explained (in [0, T)).
    answer, wrong : str
        The tokens compared (``wrong`` None: the answer's logit alone).
    answer_id, wrong_id : int (wrong_id None without ``wrong``)
    logit_diff : float
        The model's ``logit(answer) - logit(wrong)`` at ``position``.
    scale : float
        The final norm's divisor on the real stream, frozen for every component.
    labels : tuple of str, length C
        ``"embed"``, ``"pos_embed"`` (learned positions), ``"{l}_attn_out"``,
        ``"{l}_mlp_out"``, ``"ln_final_bias"``, ``"unembed_bias"``.
    attributions : numpy.ndarray of float64, shape (C,)
        Each component's direct effect; they sum to ``logit_diff``.
    head_attributions : numpy.ndarray of float64, shape (L, H), or None
        Each head's direct effect (None when computed with ``heads=False``).
    attn_bias_attributions : numpy.ndarray of float64, shape (L,), or None
        Each layer's attention output bias ``b_O``'s; with the heads of layer ``l`` it sums
        to the ``"{l}_attn_out"`` attribution.
    method : str
    params : dict
    """

    format = "xai-suite-direct-logit-attribution/1"
    tokens: list[str]
    position: int
    answer: str
    wrong: str | None
    answer_id: int
    wrong_id: int | None
    logit_diff: float
    scale: float
    labels: tuple[str, ...]
    attributions: np.ndarray
    head_attributions: np.ndarray | None = None
    attn_bias_attributions: np.ndarray | None = None
    method: str = "native:direct_logit_attribution"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.tokens, self.labels = [str(t) for t in self.tokens], tuple(self.labels)
        if self.attributions.shape != (len(self.labels),):
            raise ValueError(f"attributions must have shape (components,) = ({len(self.labels)},); got "
                             f"{self.attributions.shape}")
        if (self.head_attributions is None) != (self.attn_bias_attributions is None):
            raise ValueError("head_attributions and attn_bias_attributions go together (both or neither)")
        if self.head_attributions is not None:
            n_layers = self.n_layers
            if self.head_attributions.ndim != 2 or self.head_attributions.shape[0] != n_layers:
                raise ValueError(f"head_attributions must have shape (layers, heads) with {n_layers} layers; "
                                 f"got {self.head_attributions.shape}")
            if self.attn_bias_attributions.shape != (n_layers,):
                raise ValueError(f"attn_bias_attributions must have shape (layers,) = ({n_layers},); got "
                                 f"{self.attn_bias_attributions.shape}")
        if not 0 <= self.position < len(self.tokens):
            raise ValueError(f"position must lie in [0, {len(self.tokens)}); got {self.position}")

    @property
    def n_layers(self) -> int:
        return sum(label.endswith("_mlp_out") for label in self.labels)

    @property
    def metric(self) -> str:
        """``logit(answer) - logit(wrong)`` (or ``logit(answer)``) as text."""
        a = f"logit({self.answer.strip() or repr(self.answer)})"
        return a if self.wrong is None else f"{a} - logit({self.wrong.strip() or repr(self.wrong)})"

    def top_heads(self, k: int = 5) -> list[tuple[int, int, float]]:
        """The ``k`` heads of largest direct effect (signed, largest first): (layer, head, value)."""
        if self.head_attributions is None:
            raise ValueError("this result has no per-head attributions (computed with heads=False)")
        flat = self.head_attributions.reshape(-1)
        order = np.argsort(-flat, kind="stable")[:k]
        n_heads = self.head_attributions.shape[1]
        return [(int(i // n_heads), int(i % n_heads), float(flat[i])) for i in order]

    def to_frame(self) -> pd.DataFrame:
        """One row per term: the components, then (with heads) each head and attention bias.

        Columns: level (``"component"`` or ``"head"``), label, layer (-1 for terms of no
        layer), head (-1 but for heads), attribution.
        """
        def layer_of(label: str) -> int:
            first = label.split("_")[0]
            return int(first) if first.isdigit() else -1

        rows = [("component", lab, layer_of(lab), -1, float(v))
                for lab, v in zip(self.labels, self.attributions, strict=True)]
        if self.head_attributions is not None:
            for (layer, head), v in np.ndenumerate(self.head_attributions):
                rows.append(("head", f"L{layer}H{head}", layer, head, float(v)))
            rows += [("head", f"{layer}_attn_bias", layer, -1, float(v))
                     for layer, v in enumerate(self.attn_bias_attributions)]
        return pd.DataFrame(rows, columns=["level", "label", "layer", "head", "attribution"])

    def _html(self, page) -> None:
        from .html import dla_view

        dla_view(self, page)

    def plot(self, axes=None):
        """Bars per component and (with heads) a heat map layer x head, on a symmetric scale.

        Parameters
        ----------
        axes : sequence of matplotlib Axes, optional
            Two (one without heads); a new figure when omitted.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        n = 1 if self.head_attributions is None else 2
        if axes is None:
            _, axes = plt.subplots(1, n, squeeze=False, layout="constrained",
                                   figsize=(max(4.0, 0.45 * len(self.labels) + 1.5) + 4.0 * (n - 1), 3.8))
            axes = axes[0]
        elif len(axes) != n:
            raise ValueError(f"axes must hold {n} Axes (components{', heads' * (n - 1)}); got {len(axes)}")
        a = self.attributions
        axes[0].bar(range(len(a)), a, color=np.where(a >= 0, "tab:red", "tab:blue"))
        axes[0].axhline(0.0, color="black", linewidth=0.8)
        axes[0].set_xticks(range(len(a)), self.labels, rotation=90)
        axes[0].set(ylabel="direct effect", title=f"components (sum {self.logit_diff:.3g})")
        if n == 2:
            h = self.head_attributions
            lim = float(np.abs(h).max()) or 1.0
            im = axes[1].imshow(h, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            axes[1].set_xticks(range(h.shape[1]))
            axes[1].set_yticks(range(h.shape[0]))
            axes[1].set(xlabel="head", ylabel="layer", title="heads")
            axes[1].figure.colorbar(im, ax=axes[1], label="direct effect")
        fig = axes[0].figure
        fig.suptitle(f"direct logit attribution of {self.metric} at position {self.position}")
        return fig


@register_explainer(
    "direct_logit_attribution", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Direct logit attribution: each component's and each head's direct effect on a logit "
    "difference through the frozen final norm; the terms sum to the logit difference",
    reference="Elhage et al. (2021), A Mathematical Framework for Transformer Circuits; Nanda (2022), "
    "TransformerLens; Wang et al. (2023), Interpretability in the Wild",
    notes="Not an attribution over inputs: explain(prompt, answer, wrong=None, position=-1) returns a "
    "DirectLogitAttribution (per component and per head); deterministic.",
)
class DirectLogitAttributionExplainer(Explainer):
    """Split ``logit(answer) - logit(wrong)`` into the direct effects of the stream's parts.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    heads : bool
        Also per head (``attn.hook_result``); False on layouts without a per-head
        decomposition (Gemma-2/3, OLMo-2/3).
    """

    family = "mechanistic"

    heads: bool = True

    def explain(self, prompt: str, answer: str, wrong: str | None = None,
                position: int = -1) -> DirectLogitAttribution:
        """The direct logit attribution of ``prompt``'s prediction at ``position``.

        Parameters
        ----------
        prompt : str
        answer : str
            A continuation; its first token's logit is explained.
        wrong : str, optional
            A continuation whose first token's logit is subtracted; None: the answer's logit.
        position : int
            The prompt position whose next-token logits are explained (negative from the end).

        Returns
        -------
        DirectLogitAttribution
        """
        return self._explain(prompt, answer, wrong, position)

    @contextlib.contextmanager
    def _begin(self, prompt, answer, wrong, position) -> Iterator[dict]:
        lm = check_language_model(self.model, self.info.qualified_name)
        check_bool(heads=self.heads)
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a non-empty string; got {type(prompt).__name__}")
        enc = lm.encode(prompt)
        ids = _ids(lm, enc.ids, "prompt")
        a = first_token(lm, answer, "answer")
        w = None if wrong is None else first_token(lm, wrong, "wrong")
        yield {"lm": lm, "enc": enc, "ids": ids, "answer": a, "wrong": w, "position": position}

    def _compute(self, call: dict) -> tuple:
        lm, a, w = call["lm"], call["answer"], call["wrong"]
        cache = ActivationCache.run(lm, call["ids"], heads=self.heads)
        pos = cache._pos(call["position"])
        attrs, labels = cache.logit_attribution(a, w, pos)
        heads = bias = None
        if self.heads:
            per_head, head_labels = cache.logit_attribution(a, w, pos, heads=True)
            n_heads = lm.n_heads
            rows = [i for i, lab in enumerate(head_labels) if lab.startswith("L")]
            heads = per_head[rows, 0].reshape(lm.n_layers, n_heads).numpy()
            bias = per_head[[i for i, lab in enumerate(head_labels) if lab.endswith("_attn_bias")], 0].numpy()
        logits = cache.logits[0, pos].double().cpu()
        diff = float(logits[a] - (0 if w is None else logits[w]))
        scale = float(_FinalNorm.of(lm).scale(cache.resid(None, pos).cpu())[0, 0])
        return pos, attrs[:, 0].numpy(), labels, heads, bias, diff, scale

    def _finish(self, call: dict, raw: tuple) -> DirectLogitAttribution:
        (pos, attrs, labels, heads, bias, diff, scale), lm = raw, call["lm"]
        a, w = call["answer"], call["wrong"]
        return DirectLogitAttribution(
            tokens=list(call["enc"].tokens), position=pos, answer=lm.decode([a]),
            wrong=None if w is None else lm.decode([w]), answer_id=a, wrong_id=w, logit_diff=diff,
            scale=scale, labels=tuple(labels), attributions=attrs, head_attributions=heads,
            attn_bias_attributions=bias,
            method=self.info.qualified_name,
            params={"heads": self.heads, "position": call["position"]},
        )


# -- attention patterns -----------------------------------------------------------------------
@dataclass
class AttentionResult(Result):
    """Every head's attention pattern on one prompt.

    Attributes
    ----------
    tokens : list of str, length T
    pattern : numpy.ndarray of float32, shape (L, H, T, T)
        ``pattern[l, h, q, k]``: how much head ``h`` of layer ``l`` at query position ``q``
        attends to key position ``k`` (``blocks.{l}.attn.hook_pattern``; rows sum to 1,
        causal: 0 for ``k > q``).
    method : str
    params : dict
    """

    format = "xai-suite-attention/1"
    tokens: list[str]
    pattern: np.ndarray
    method: str = "native:attention_pattern"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.tokens = [str(t) for t in self.tokens]
        n = len(self.tokens)
        if self.pattern.ndim != 4 or self.pattern.shape[2:] != (n, n):
            raise ValueError(f"pattern must have shape (layers, heads, {n}, {n}); got {self.pattern.shape}")

    @property
    def n_layers(self) -> int:
        return self.pattern.shape[0]

    @property
    def n_heads(self) -> int:
        return self.pattern.shape[1]

    def to_frame(self) -> pd.DataFrame:
        """One row per layer, head, query and key position.

        Columns: layer, head, query_position, query_token, key_position, key_token, weight.
        """
        idx = np.indices(self.pattern.shape).reshape(4, -1)
        tokens = np.asarray(self.tokens, dtype=object)
        return pd.DataFrame({"layer": idx[0], "head": idx[1], "query_position": idx[2],
                             "query_token": tokens[idx[2]], "key_position": idx[3],
                             "key_token": tokens[idx[3]], "weight": self.pattern.reshape(-1)})

    def _html(self, page) -> None:
        from .html import attention_view

        attention_view(self, page)

    def plot(self, layer: int = 0, heads: Sequence[int] | None = None, *, axes=None):
        """Heat maps query x key of one layer's heads, in a grid (see :func:`plot_attention`)."""
        return plot_attention(self.pattern, self.tokens, layer=layer, heads=heads, axes=axes)


def plot_attention(pattern, tokens: Sequence[str], *, layer: int = 0, heads: Sequence[int] | None = None,
                   axes=None):
    """Heat maps query x key of attention patterns, one per head, in a grid.

    Parameters
    ----------
    pattern : array-like, shape (L, H, T, T) (or (B, L, H, T, T) with B = 1)
        Attention patterns (:attr:`AttentionResult.pattern`, or a cache's ``hook_pattern`` of
        every layer stacked).
    tokens : sequence of str, length T
    layer : int
    heads : sequence of int, optional
        Heads shown (default: all).
    axes : sequence of matplotlib Axes, optional
        One per head; a grid of at most 4 columns when omitted.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    p = np.asarray(pattern.cpu() if isinstance(pattern, torch.Tensor) else pattern)
    p = p[0] if p.ndim == 5 and p.shape[0] == 1 else p
    n = len(tokens)
    if p.ndim != 4 or p.shape[2:] != (n, n):
        raise ValueError(f"pattern must have shape (layers, heads, {n}, {n}) for {n} tokens; got {p.shape}")
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer) or not 0 <= layer < p.shape[0]:
        raise ValueError(f"layer must be an int in [0, {p.shape[0]}); got {layer!r}")
    heads = list(range(p.shape[1])) if heads is None else [int(h) for h in heads]
    if not heads or any(not 0 <= h < p.shape[1] for h in heads):
        raise ValueError(f"heads must be a non-empty list of ints in [0, {p.shape[1]}); got {heads!r}")
    if axes is None:
        cols = min(4, len(heads))
        rows = -(-len(heads) // cols)
        side = max(2.5, 0.3 * n + 1.0)
        _, grid = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                               figsize=(side * cols, side * rows))
        for ax in grid.reshape(-1)[len(heads):]:
            ax.set_visible(False)
        axes = grid.reshape(-1)[:len(heads)]
    elif len(axes) != len(heads):
        raise ValueError(f"axes must hold one Axes per head ({len(heads)}); got {len(axes)}")
    labels = [t.strip() or repr(t) for t in tokens]
    for ax, h in zip(axes, heads, strict=True):
        im = ax.imshow(p[layer, h], cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        ax.set(xlabel="key", ylabel="query", title=f"layer {layer}, head {h}")
    fig = axes[0].figure
    fig.colorbar(im, ax=list(axes), label="attention weight")
    return fig


@register_explainer(
    "attention_pattern", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Attention patterns of every layer and head (query x key), with heat maps and an offline "
    "head view",
    reference="Vig (2019), A Multiscale Visualization of Attention in the Transformer Model (bertviz); "
    "Elhage et al. (2021), A Mathematical Framework for Transformer Circuits",
    notes="Not an attribution: explain(prompt) returns an AttentionResult (L, H, T, T); deterministic.",
)
class AttentionPattern(Explainer):
    """Read every head's attention pattern (``blocks.{l}.attn.hook_pattern``) on a prompt.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    """

    family = "mechanistic"

    def explain(self, prompt: str) -> AttentionResult:
        """The attention patterns of ``prompt``.

        Returns
        -------
        AttentionResult
        """
        return self._explain(prompt)

    @contextlib.contextmanager
    def _begin(self, prompt) -> Iterator[dict]:
        lm = check_language_model(self.model, self.info.qualified_name)
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a non-empty string; got {type(prompt).__name__}")
        enc = lm.encode(prompt)
        yield {"lm": lm, "enc": enc, "ids": _ids(lm, enc.ids, "prompt")}

    def _compute(self, call: dict) -> np.ndarray:
        lm = call["lm"]
        names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(lm.n_layers)]
        _, cache = lm.run_with_cache(call["ids"], names)
        return torch.stack([cache[n][0] for n in names]).float().cpu().numpy()

    def _finish(self, call: dict, raw: np.ndarray) -> AttentionResult:
        return AttentionResult(tokens=list(call["enc"].tokens), pattern=raw, method=self.info.qualified_name,
                               params={})
