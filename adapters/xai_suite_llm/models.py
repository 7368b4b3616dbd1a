"""A Hugging Face causal LM with its tokenizer, and TransformerLens-style hook points.

:class:`LanguageModel` is the model object every ``text`` explainer takes (model kind
``hf_causal_lm``). It knows where a decoder-only architecture keeps its parts (token
embedding, blocks, attention, MLP, final norm, unembedding) and exposes the activations
between and inside them under TransformerLens's names and shapes, for reading
(:meth:`LanguageModel.run_with_cache`) and for overwriting (:meth:`LanguageModel.run_with_hooks`).
``B`` is the batch, ``T`` the tokens, ``H`` the query heads, ``K`` the key/value heads (``H``
but for grouped-query attention), ``d`` the head size, ``M`` the MLP width:

====================================== ================== ==================================================
``hook_embed``                         (B, T, d_model)    token embeddings (before position embeddings)
``hook_pos_embed``                     (B, T, d_model)    learned position embeddings (GPT-2, GPT-Neo)
``blocks.{l}.hook_resid_pre``          (B, T, d_model)    the residual stream entering block ``l``
``blocks.{l}.attn.hook_q``             (B, T, H, d)       queries: the projection's output (before rotary)
``blocks.{l}.attn.hook_k``             (B, T, K, d)       keys: the projection's output (before rotary)
``blocks.{l}.attn.hook_v``             (B, T, K, d)       values
``blocks.{l}.attn.hook_rot_q``         (B, T, H, d)       queries as the scores use them (rotary models)
``blocks.{l}.attn.hook_rot_k``         (B, T, K, d)       keys as the scores use them (rotary models)
``blocks.{l}.attn.hook_attn_scores``   (B, H, T, T)       scaled (soft-capped) ``q.k``, masked ``-inf``
``blocks.{l}.attn.hook_pattern``       (B, H, T, T)       the softmax of the scores (rows sum to 1)
``blocks.{l}.attn.hook_z``             (B, T, H, d)       ``pattern @ v`` per head (the output proj.'s input)
``blocks.{l}.attn.hook_result``        (B, T, H, d_model) each head's ``z_h @ W_O[h]`` (no bias)
``blocks.{l}.hook_attn_out``           (B, T, d_model)    the attention sub-layer's output (what it adds)
``blocks.{l}.hook_resid_mid``          (B, T, d_model)    ``resid_pre + attn_out``: what the MLP's side reads
``blocks.{l}.mlp.hook_pre``            (B, T, M)          the MLP's pre-activation (gated MLPs: the gate's)
``blocks.{l}.mlp.hook_pre_linear``     (B, T, M)          the up projection (gated MLPs only)
``blocks.{l}.mlp.hook_post``           (B, T, M)          the activation: the down projection's input
``blocks.{l}.hook_mlp_out``            (B, T, d_model)    the MLP sub-layer's output (what it adds)
``blocks.{l}.hook_resid_post``         (B, T, d_model)    the residual stream leaving block ``l``
``ln_final.hook_normalized``           (B, T, d_model)    the final norm's output (what the unembedding reads)
====================================== ================== ==================================================

:meth:`LanguageModel.hook_names` lists the ones a model has, in this (execution) order;
:data:`SITES` are the four whole-layer sites activation patching and probing use,
:data:`BLOCK_HOOKS` every name inside a block. Conventions (as TransformerLens's):

- ``hook_q``/``hook_k`` are the projections' outputs, before any q/k norm (Gemma-3, OLMo-2,
  Qwen-3) and before rotary; ``hook_rot_q``/``hook_rot_k`` are what the dot product uses,
  after both. Grouped-query attention: ``k``, ``v`` and ``rot_k`` have ``K`` heads and query
  head ``h`` reads key/value head ``h // (H // K)``; scores, pattern, z and result have ``H``.
- The output projection's bias ``b_O`` is in no head: ``hook_result.sum(2) + b_O`` is the
  projection's output, which is ``hook_attn_out`` except where a norm follows attention
  before the add (Gemma-2/3 and OLMo-2/3 ``post_attention_layernorm``: ``attn_out`` is after
  it, as what is added to the stream; likewise ``mlp_out`` after ``post_feedforward_layernorm``).
  ``hook_result`` costs ``H`` times the memory of ``attn_out``; it is computed only when named.
- Writing ``hook_z`` replaces the output projection's input; writing ``hook_result``
  replaces its output by the heads' sum plus ``b_O``; writing ``hook_resid_mid`` replaces
  ``attn_out`` by ``new - resid_pre``, so the MLP and the rest of the block see the new stream.
- Scores and pattern are computed in float32 by this module's attention function, which
  transformers calls (``AttentionInterface`` name :data:`ATTENTION`) only while a hook on
  ``rot_q``, ``rot_k``, ``attn_scores`` or ``pattern`` is active; otherwise the model's own
  implementation (sdpa, ...) runs untouched. It applies the mask the model gives it
  (causal, sliding window, padding), Gemma-2's soft-capping and the model's scaling.

Refused with the reason: ``hook_pos_embed`` on rotary models, ``hook_rot_q``/``hook_rot_k``
on models with learned position embeddings, ``hook_resid_mid`` on parallel-attention layouts
(GPT-J, Phi-1/2, GPT-NeoX with ``use_parallel_residual``: attention and MLP read the same
input, so there is no stream between them), ``mlp.hook_pre_linear`` on ungated MLPs.

Supported architectures: GPT-2, GPT-Neo and GPT-J (``transformer.h``),
LLaMA/Mistral/Qwen/Gemma/OLMo/Phi-3 and Phi-1/2 (``model.layers``) and GPT-NeoX/Pythia
(``gpt_neox.layers``). Others are refused at construction with the reason
(:data:`REFUSED`: BLOOM and Falcon, whose sub-layers fold the residual stream into their
outputs), or naming the part that is not where a layout keeps it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xai_suite.plugin import resolve_device

#: (blocks path, attention attrs, mlp attrs, final norm paths, embedding paths) per layout (see
#: the module doc); the first name found of each alternative is used.
_LAYOUTS = (
    ("transformer.h", ("attn",), ("mlp",), ("transformer.ln_f",), ("transformer.wte",)),
    ("model.layers", ("self_attn",), ("mlp",), ("model.norm", "model.final_layernorm"),
     ("model.embed_tokens",)),
    ("gpt_neox.layers", ("attention",), ("mlp",), ("gpt_neox.final_layer_norm",), ("gpt_neox.embed_in",)),
)
#: Architectures refused up front (``config.model_type``), and why their hook points would lie.
REFUSED = {
    "bloom": "its attention and MLP modules add the residual stream inside them, so attn_out and "
             "mlp_out would include it",
    "falcon": "its block adds the attention output into the MLP's output tensor in place, so mlp_out "
              "cannot be read or patched on its own",
}
#: Layouts whose attention and MLP read the same input (``config.model_type``); GPT-NeoX is one
#: when its config says ``use_parallel_residual``.
PARALLEL = ("gptj", "codegen", "phi", "cohere", "cohere2")
_HOOK = re.compile(r"blocks\.(\d+)\.(.+)")
#: The whole-layer sites (``blocks.{l}.hook_{site}``) activation patching and probing use.
SITES = ("resid_pre", "attn_out", "mlp_out", "resid_post")
#: Every hook point inside a block (``blocks.{l}.{name}``), in execution order.
BLOCK_HOOKS = ("hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q",
               "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",
               "attn.hook_result", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_pre_linear",
               "mlp.hook_post", "hook_mlp_out", "hook_resid_post")
#: The hook points this module's attention function serves (see the module doc).
_IN_ATTENTION = ("attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_attn_scores", "attn.hook_pattern")
#: The name this module's attention function is registered under in transformers.
ATTENTION = "xai_suite_eager"
#: Projections by the names layouts give them (the first found is used).
_O_PROJ = ("o_proj", "out_proj", "dense", "c_proj")
_MLP_IN = ("gate_proj", "c_fc", "fc_in", "fc1", "dense_h_to_4h")
_MLP_OUT = ("down_proj", "c_proj", "fc_out", "fc2", "dense_4h_to_h")


def _get(root: nn.Module, path: str) -> nn.Module | None:
    return functools.reduce(lambda obj, part: getattr(obj, part, None), path.split("."), root)


def check_language_model(model, who: str) -> LanguageModel:
    """Return ``model`` if it is a :class:`LanguageModel`, else raise a ``TypeError``."""
    if not isinstance(model, LanguageModel):
        raise TypeError(f"{who} explains a xai_suite_llm.LanguageModel (model kind hf_causal_lm); "
                        f"got {type(model).__name__}: wrap a causal LM as LanguageModel(model, tokenizer)")
    return model


def layer_hooks(lm: LanguageModel, site: str, embed: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Layer labels ``"0"``, ``"1"``, ... and their hook points ``blocks.{l}.hook_{site}``;
    with ``embed``, the embeddings (``blocks.0.hook_resid_pre``) first, as layer ``"embed"``."""
    layers = [str(layer) for layer in range(lm.n_layers)]
    hooks = [f"blocks.{layer}.hook_{site}" for layer in layers]
    if embed:
        layers, hooks = ["embed", *layers], ["blocks.0.hook_resid_pre", *hooks]
    return tuple(layers), tuple(hooks)


@dataclass(frozen=True)
class _Site:
    """Where and how one hook point attaches.

    ``kind``: ``"in"`` (the module's input), ``"out"`` (its output), ``"result"`` (the output
    projection, split per head), ``"mid"`` (``block``'s input plus the module's output),
    ``"attn"`` (inside :func:`_attention`, for this attention module) or ``"pos"`` (the
    position embedding, expanded to the batch). ``view`` picks the activation out of the
    module's tensor (a fused projection's part, with its heads split out).
    """

    kind: str
    module: nn.Module
    view: Callable[[torch.Tensor], torch.Tensor] | None = None
    block: nn.Module | None = None


def _dims(module) -> tuple[int, int] | None:
    """(in, out) widths of a linear layer (``nn.Linear`` or GPT-2's ``Conv1D``), else None."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":
        return tuple(module.weight.shape)
    return None


def _cols(start: int, stop: int, heads: tuple[int, int] | None = None) -> Callable:
    """A view of the last dimension's columns ``start:stop``, split into ``heads`` (n, d)."""
    if heads is None:
        return lambda t: t[..., start:stop]
    return lambda t: t[..., start:stop].unflatten(-1, heads)


def _qkv(core: nn.Module, h: int, d: int) -> tuple[list[_Site], int] | None:
    """The query, key and value sites of an attention module with ``h`` heads of size ``d``, and
    its number of key/value heads; None where its projections are not where a layout keeps them."""
    if all(_dims(getattr(core, n, None)) for n in ("q_proj", "k_proj", "v_proj")):
        k = _dims(core.k_proj)[1] // d
        return [_Site("out", core.q_proj, _cols(0, h * d, (h, d))),
                _Site("out", core.k_proj, _cols(0, k * d, (k, d))),
                _Site("out", core.v_proj, _cols(0, k * d, (k, d)))], k
    if _dims(getattr(core, "c_attn", None)):  # GPT-2: [q | k | v], each h * d wide
        return [_Site("out", core.c_attn, _cols(i * h * d, (i + 1) * h * d, (h, d))) for i in range(3)], h
    if _dims(getattr(core, "query_key_value", None)):  # GPT-NeoX: per head [q | k | v], each d wide
        per_head = [lambda t, i=i: t.unflatten(-1, (h, 3 * d))[..., i * d:(i + 1) * d] for i in range(3)]
        return [_Site("out", core.query_key_value, view) for view in per_head], h
    if _dims(getattr(core, "qkv_proj", None)):  # Phi-3: [q (h * d) | k (k * d) | v (k * d)]
        k = (_dims(core.qkv_proj)[1] - h * d) // (2 * d)
        ends = (0, h * d, (h + k) * d, (h + 2 * k) * d)
        return [_Site("out", core.qkv_proj, _cols(ends[i], ends[i + 1], (n, d)))
                for i, n in enumerate((h, k, k))], k
    return None


def _first(root: nn.Module, names: Sequence[str]) -> nn.Module | None:
    return next((m for m in (getattr(root, n, None) for n in names) if isinstance(m, nn.Module)), None)


def _attn_sites(core: nn.Module) -> tuple[dict[str, _Site], tuple[int, int, int] | None]:
    """An attention module's sites inside it, and its (query heads, key/value heads, head size)."""
    d = getattr(core, "head_dim", None) or getattr(core, "head_size", None)
    o = _first(core, _O_PROJ)
    dims = _dims(o)
    if not isinstance(d, int) or dims is None or dims[0] % d:
        return {}, None
    h = dims[0] // d
    sites = {"attn.hook_z": _Site("in", o, _cols(0, h * d, (h, d))),
             "attn.hook_result": _Site("result", o, _cols(0, h * d, (h, d)))}
    sites.update({s: _Site("attn", core) for s in _IN_ATTENTION})
    qkv = _qkv(core, h, d)
    if qkv is None:
        return sites, (h, h, d)
    sites.update(zip(("attn.hook_q", "attn.hook_k", "attn.hook_v"), qkv[0], strict=True))
    return sites, (h, qkv[1], d)


def _mlp_sites(mlp: nn.Module) -> dict[str, _Site]:
    """An MLP's pre-activation (its gate's where gated), up projection (gated) and activation."""
    sites = {}
    gate_up = _dims(getattr(mlp, "gate_up_proj", None))  # Phi-3: [gate | up]
    pre = _first(mlp, _MLP_IN)
    if gate_up:
        m = gate_up[1] // 2
        sites["mlp.hook_pre"] = _Site("out", mlp.gate_up_proj, _cols(0, m))
        sites["mlp.hook_pre_linear"] = _Site("out", mlp.gate_up_proj, _cols(m, 2 * m))
    elif pre is not None:
        sites["mlp.hook_pre"] = _Site("out", pre)
        if isinstance(getattr(mlp, "up_proj", None), nn.Module):
            sites["mlp.hook_pre_linear"] = _Site("out", mlp.up_proj)
    post = _first(mlp, _MLP_OUT)
    if post is not None:
        sites["mlp.hook_post"] = _Site("in", post)
    return sites


@dataclass(frozen=True)
class Encoding:
    """A tokenised text.

    Attributes
    ----------
    text : str
    ids : torch.Tensor of int64, shape (T,)
    tokens : list of str
        Each token's text as it appears in ``text`` (``text[start:end]``).
    offsets : list of (int, int)
        Character span of each token in ``text``.
    """

    text: str
    ids: torch.Tensor
    tokens: list[str]
    offsets: list[tuple[int, int]]


class LanguageModel:
    """A causal LM and its tokenizer, ready for the ``text`` explainers.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM (``AutoModelForCausalLM``) of a supported layout (see the module doc).
    tokenizer : transformers.PreTrainedTokenizerFast
        A fast tokenizer (it must return offset mappings, for word and sentence levels).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    xai_suite_model_kind = "hf_causal_lm"

    def __init__(self, model: nn.Module, tokenizer, *, device: str = "auto"):
        if not isinstance(model, nn.Module) or not hasattr(model, "get_output_embeddings"):
            raise TypeError(f"model must be a Hugging Face causal LM (transformers "
                            f"PreTrainedModel); got {type(model).__name__}")
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("tokenizer must be a fast tokenizer (PreTrainedTokenizerFast): word "
                            f"and sentence levels need its offset mappings; got {type(tokenizer).__name__}")
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type in REFUSED:
            raise TypeError(f"{type(model).__name__} ({model_type}) is not supported: {REFUSED[model_type]}")
        layout = next((lay for lay in _LAYOUTS if _get(model, lay[0]) is not None), None)
        if layout is None:
            raise TypeError(f"{type(model).__name__} has an unsupported layout: expected blocks at "
                            f"one of {', '.join(lay[0] for lay in _LAYOUTS)}")
        blocks_path, attn, mlp, norm, embed = layout
        blocks = list(_get(model, blocks_path))

        def first(root, paths):
            return next((m for m in (_get(root, p) for p in paths) if m is not None), None)

        parts = {"attention": [first(b, attn) for b in blocks], "mlp": [first(b, mlp) for b in blocks],
                 "final norm": [first(model, norm)], "embedding": [first(model, embed)],
                 "unembedding": [model.get_output_embeddings()]}
        missing = [k for k, found in parts.items() if any(m is None for m in found)]
        if missing:
            raise TypeError(f"{type(model).__name__} ({model_type}) has blocks at {blocks_path} but no "
                            f"{' or '.join(missing)} module where this layout keeps it (attention: "
                            f"{'/'.join(attn)}, mlp: {'/'.join(mlp)}, final norm: {'/'.join(norm)}, "
                            f"embedding: {'/'.join(embed)}): it is not supported")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.blocks: list[nn.Module] = blocks
        self.attn, self.mlp = parts["attention"], parts["mlp"]
        self.final_norm: nn.Module = parts["final norm"][0]
        self.embed: nn.Embedding = parts["embedding"][0]
        self.unembed: nn.Module = parts["unembedding"][0]
        self._find_sites(f"{type(model).__name__} ({model_type})", model_type)

    def _find_sites(self, who: str, model_type: str | None) -> None:
        """Each block's hook points (``self._sites``), those refused and why (``self._refused``),
        and the head counts and sizes (``n_heads``, ``n_kv_heads``, ``d_head``; None if unknown)."""
        self.pos_embed: nn.Module | None = _get(self.model, "transformer.wpe")
        self._neo = model_type == "gpt_neo"  # its attention does not use transformers' interface
        self._cores = [a.attention if isinstance(getattr(a, "attention", None), nn.Module) else a
                       for a in self.attn]
        parallel = model_type in PARALLEL or bool(getattr(self.model.config, "use_parallel_residual", False))
        self._sites: list[dict[str, _Site]] = []
        heads = []
        for block, attn, mlp, core in zip(self.blocks, self.attn, self.mlp, self._cores, strict=True):
            # Gemma-2/3, OLMo-2/3 normalise each sub-layer's output before adding it
            post_norms = isinstance(getattr(block, "post_feedforward_layernorm", None), nn.Module)
            attn_out = block.post_attention_layernorm if post_norms else attn
            sites = {"hook_resid_pre": _Site("in", block), "hook_resid_post": _Site("out", block),
                     "hook_attn_out": _Site("out", attn_out),
                     "hook_mlp_out": _Site("out", block.post_feedforward_layernorm if post_norms else mlp),
                     "hook_resid_mid": _Site("mid", attn_out, block=block)}
            inner, dims = _attn_sites(core)
            sites.update(inner, **_mlp_sites(mlp))
            self._sites.append(sites)
            heads.append(dims)
        self.n_heads, self.n_kv_heads, self.d_head = heads[0] or (None, None, None)
        rotary = ("attn.hook_rot_q", "attn.hook_rot_k")
        self._refused: dict[str, str] = {}
        if self.pos_embed is None:
            self._refused["hook_pos_embed"] = (
                f"{who} has no position embeddings: it uses rotary position embeddings, applied to the "
                f"queries and keys inside attention ({', '.join(rotary)})")
        else:
            self._refused.update(dict.fromkeys(rotary, (
                f"{who} has no rotary embeddings: it adds learned position embeddings (hook_pos_embed) to "
                "the stream, so attn.hook_q and attn.hook_k are what the scores use")))
        if parallel:
            self._refused["hook_resid_mid"] = (
                f"{who} has no resid_mid: its attention and MLP read the same input (parallel attention) and "
                "both outputs are added to the stream at once")
        if "mlp.hook_pre" in self._sites[0] and "mlp.hook_pre_linear" not in self._sites[0]:
            self._refused["mlp.hook_pre_linear"] = (
                f"{who}'s MLP is not gated: its one input projection is mlp.hook_pre")
        for suffix in BLOCK_HOOKS:
            if suffix not in self._refused and any(suffix not in sites for sites in self._sites):
                part = "attention" if suffix.startswith("attn.") else "MLP"
                self._refused[suffix] = (
                    f"{who}'s {part} has no {suffix.split('hook_')[1]} where this layout keeps it "
                    f"(attention: head_dim, {'/'.join(_O_PROJ)}, q_proj/k_proj/v_proj, c_attn, "
                    f"query_key_value or qkv_proj; MLP: {'/'.join(_MLP_IN)}, up_proj, {'/'.join(_MLP_OUT)})")

    @classmethod
    def from_pretrained(cls, path: str, *, device: str = "auto", dtype=None) -> LanguageModel:
        """Load a model and tokenizer saved in the local folder ``path`` (never downloads)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        return cls(model, tok, device=device)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return self.embed.embedding_dim

    @property
    def vocab_size(self) -> int:
        return self.embed.num_embeddings

    def __repr__(self) -> str:
        return (f"LanguageModel({type(self.model).__name__}, layers={self.n_layers}, "
                f"d_model={self.d_model}, vocab={self.vocab_size})")

    # -- text <-> ids -------------------------------------------------------------------
    def encode(self, text: str) -> Encoding:
        """Tokenise ``text`` (no special tokens added)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty string; got {text!r}")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        return Encoding(text, torch.tensor(enc["input_ids"], dtype=torch.long),
                        [text[s:e] for s, e in offsets], offsets)

    def token_ids(self, text: str) -> torch.Tensor:
        """The ids of ``text`` as a continuation, shape (T,): tokenised as it follows a prompt."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"a target continuation must be a non-empty string; got {text!r}")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"{text!r} tokenises to no tokens")
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(map(int, ids)))

    # -- running ------------------------------------------------------------------------
    def logits(self, ids: torch.Tensor, *, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits, shape (B, T, V), for ids (B, T) (or embeddings (B, T, d_model))."""
        if inputs_embeds is None and ids.ndim != 2:
            raise ValueError(f"ids must have shape (B, T); got {tuple(ids.shape)}")
        key, x = ("input_ids", ids) if inputs_embeds is None else ("inputs_embeds", inputs_embeds)
        # every position is attended to, pad-token baselines included (an explicit all-ones mask)
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=self.device)
        return self.model(**{key: x.to(self.device)}, attention_mask=mask, use_cache=False).logits

    def generate(self, ids: torch.Tensor, max_new_tokens: int,
                 fns: dict[str, Callable] | None = None) -> torch.Tensor:
        """Greedy continuation of one prompt ``ids`` (T,): the new ids, shape (max_new_tokens,).

        ``fns`` (see :meth:`hooks`) apply at every step: each step runs the whole sequence so
        far (no key-value cache), so a hook sees activations of shape (1, T + step, d_model).
        """
        seq = ids.to(self.device).unsqueeze(0)
        with torch.no_grad(), self.hooks(fns or {}):
            for _ in range(max_new_tokens):
                nxt = self.logits(seq)[:, -1].argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], dim=1)
        return seq[0, ids.shape[0]:].cpu()

    # -- hook points --------------------------------------------------------------------
    def hook_names(self) -> list[str]:
        """Every hook point this model has, in execution order (see the module doc)."""
        top = [n for n in ("hook_embed", "hook_pos_embed") if n not in self._refused]
        return [*top, *(f"blocks.{layer}.{s}" for layer in range(self.n_layers) for s in BLOCK_HOOKS
                        if s not in self._refused), "ln_final.hook_normalized"]

    def _site(self, name: str) -> tuple[tuple[int, int], _Site]:
        """(execution order, site) of a hook point; a ValueError names what was expected."""
        if name in self._refused:
            raise ValueError(f"hook point {name!r} is refused: {self._refused[name]}")
        if name == "hook_embed":
            return (-1, 0), _Site("out", self.embed)
        if name == "hook_pos_embed":
            return (-1, 1), _Site("pos", self.pos_embed)
        if name == "ln_final.hook_normalized":
            return (self.n_layers, 0), _Site("out", self.final_norm)
        m = _HOOK.fullmatch(name)
        if m is None or m.group(2) not in BLOCK_HOOKS:
            raise ValueError(f"unknown hook point {name!r}; expected hook_embed, hook_pos_embed, "
                             f"blocks.<layer>.<{'|'.join(BLOCK_HOOKS)}> or ln_final.hook_normalized")
        layer, suffix = int(m.group(1)), m.group(2)
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"hook point {name!r}: the model has layers 0..{self.n_layers - 1}")
        if suffix in self._refused:
            raise ValueError(f"hook point {name!r} is refused: {self._refused[suffix]}")
        return (layer, BLOCK_HOOKS.index(suffix)), self._sites[layer][suffix]

    @contextlib.contextmanager
    def hooks(self, fns: dict[str, Callable[[torch.Tensor], torch.Tensor | None]]) -> Iterator[None]:
        """Within the block, ``fns[name](activation)`` runs at each hook point named.

        A function returning a tensor replaces the activation (same shape); ``None`` keeps it.
        Functions run in execution order whatever the order of ``fns``. Hooks on the attention
        scores, pattern or rotated q/k switch the model to this module's attention function
        (:data:`ATTENTION`) until the block ends.
        """
        located = sorted(((*self._site(name), name, fn) for name, fn in fns.items()), key=lambda s: s[0])
        with contextlib.ExitStack() as stack:
            if any(site.kind == "attn" for _, site, _, _ in located):
                stack.enter_context(self._own_attention())
            for _, site, name, fn in located:
                self._install(stack, site, name, fn)
            yield

    def _install(self, stack: contextlib.ExitStack, site: _Site, name: str, fn: Callable) -> None:
        """Attach ``fn`` at ``site`` until ``stack`` closes."""
        m = site.module
        if site.kind == "attn":
            entry = (name.rsplit(".", 1)[1], name, fn)
            hooks = _ATTN_HOOKS.setdefault(m, [])
            hooks.append(entry)
            stack.callback(hooks.remove, entry)
            return
        if site.kind == "in":
            handles = [m.register_forward_pre_hook(_pre(fn, name, site.view), with_kwargs=True)]
        elif site.kind == "out":
            handles = [m.register_forward_hook(_post(fn, name, site.view))]
        elif site.kind == "result":
            handles = [m.register_forward_hook(_result(fn, name, site.view))]
        elif site.kind == "mid":
            stash: dict[str, torch.Tensor] = {}
            handles = [site.block.register_forward_pre_hook(_keep(stash), with_kwargs=True),
                       m.register_forward_hook(_mid(fn, name, stash))]
        else:  # "pos"
            batch: dict[str, int] = {}
            handles = [self.model.register_forward_pre_hook(_batch(batch), with_kwargs=True),
                       m.register_forward_hook(_pos(fn, name, batch))]
        for h in handles:
            stack.callback(h.remove)

    @contextlib.contextmanager
    def _own_attention(self) -> Iterator[None]:
        """Attention runs through :func:`_attention` while active (GPT-Neo: its ``_attn``)."""
        with contextlib.ExitStack() as stack:
            if self._neo:
                for core in self._cores:
                    if "_attn" not in vars(core):  # an enclosing block has not replaced it already
                        core._attn = _neo_attn(core)
                        stack.callback(delattr, core, "_attn")
            else:
                _register_attention()
                configs = [self.model.config, *(getattr(c, "config", None) for c in self._cores)]
                for config in {id(c): c for c in configs if c is not None}.values():
                    stack.callback(setattr, config, "_attn_implementation", config._attn_implementation)
                    config._attn_implementation = ATTENTION
            yield

    def run_with_cache(self, ids: torch.Tensor, names: Sequence[str] | None = None,
                       fns: dict[str, Callable] | None = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, T, V) and the activations at ``names`` (default all), detached.

        ``fns`` (see :meth:`hooks`) run first where given: the cache holds what they return.
        """
        cache: dict[str, torch.Tensor] = {}
        names = self.hook_names() if names is None else list(names)
        fns = dict(fns or {})

        def record(n, fn):  # stores the (possibly replaced) activation, returns the replacement
            def hook(act):
                new = None if fn is None else fn(act)
                cache[n] = (act if new is None else new).detach()
                return new
            return hook

        with torch.no_grad(), self.hooks({**fns, **{n: record(n, fns.get(n)) for n in names}}):
            logits = self.logits(ids)
        missing = [n for n in names if n not in cache]
        if missing:
            raise RuntimeError(f"hook points {missing} did not run: {type(self.model).__name__}'s forward "
                               "does not call the module where this layout keeps them")
        return logits, {n: cache[n] for n in names}

    def run_with_hooks(self, ids: torch.Tensor, fns: dict[str, Callable]) -> torch.Tensor:
        """Logits (B, T, V) with the hook functions applied (see :meth:`hooks`)."""
        with torch.no_grad(), self.hooks(fns):
            return self.logits(ids)


def _checked(name: str, old: torch.Tensor, new) -> torch.Tensor | None:
    if new is None:
        return None
    if not isinstance(new, torch.Tensor) or new.shape != old.shape:
        got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
        raise ValueError(f"hook {name!r} must return None or a tensor of shape {tuple(old.shape)}; "
                         f"got {got}")
    return new.to(old.dtype)


def _through(fn, name: str, x: torch.Tensor, view) -> torch.Tensor | None:
    """``fn`` applied to ``view(x)`` (all of ``x`` without a view): None, or ``x`` with it replaced."""
    if view is None:
        return _checked(name, x, fn(x))
    act = view(x).clone()  # the caller's copy: a layout may change x in place (OLMo's clip_qkv)
    new = _checked(name, act, fn(act))
    if new is None:
        return None
    x = x.clone()
    view(x).copy_(new)
    return x


def _pre(fn, name, view=None):
    def hook(module, args, kwargs):
        if args:
            new = _through(fn, name, args[0], view)
            return None if new is None else ((new, *args[1:]), kwargs)
        new = _through(fn, name, kwargs["hidden_states"], view)
        return None if new is None else (args, {**kwargs, "hidden_states": new})
    return hook


def _post(fn, name, view=None):
    def hook(module, args, out):
        first = out[0] if isinstance(out, tuple) else out
        new = _through(fn, name, first, view)
        return (new, *out[1:]) if new is not None and isinstance(out, tuple) else new
    return hook


def _result(fn, name, heads):
    """Per-head results ``z_h @ W_O[h]`` (B, T, H, d_model) of an output projection; written
    back, the projection's output becomes their sum plus its bias."""
    def hook(module, args, out):
        z = heads(args[0])
        w = module.weight.T if isinstance(module, nn.Linear) else module.weight  # (H * d, d_model)
        result = torch.einsum("bthd,hdm->bthm", z, w.unflatten(0, z.shape[-2:]))
        new = _checked(name, result, fn(result))
        return None if new is None else new.sum(2) + (0 if module.bias is None else module.bias)
    return hook


def _keep(stash):
    def hook(module, args, kwargs):  # a block's input: resid_pre, as the block adds it
        stash["pre"] = args[0] if args else kwargs["hidden_states"]
    return hook


def _mid(fn, name, stash):
    """resid_mid = resid_pre + attn_out, read at attn_out; written as attn_out = new - resid_pre."""
    def hook(module, args, out):
        first = out[0] if isinstance(out, tuple) else out
        pre = stash.pop("pre")
        new = _checked(name, pre + first, fn(pre + first))
        if new is None:
            return None
        return (new - pre, *out[1:]) if isinstance(out, tuple) else new - pre
    return hook


def _batch(store):
    def hook(module, args, kwargs):  # the batch size, which position embeddings broadcast over
        x = next((v for v in (kwargs.get("input_ids"), kwargs.get("inputs_embeds"), *args[:1])
                  if v is not None), None)
        if x is not None:
            store["B"] = x.shape[0]
    return hook


def _pos(fn, name, store):
    def hook(module, args, out):  # position embeddings (1, T, d_model) as (B, T, d_model)
        act = out.expand(store.get("B", out.shape[0]), *out.shape[1:])
        return _checked(name, act, fn(act))
    return hook


#: Hook functions inside :func:`_attention`, per attention module: (site, name, fn), in order.
_ATTN_HOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _apply(hooks, site: str, act: torch.Tensor) -> torch.Tensor:
    for s, name, fn in hooks:
        if s == site:
            new = _checked(name, act, fn(act))
            act = act if new is None else new
    return act


def _masked(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``scores`` (B, H, T, S) with the masked entries ``-inf``: ``mask`` is boolean (True:
    attend), additive (entries at the dtype's minimum or ``-inf`` masked) or None (causal)."""
    if mask is None:
        t, s = scores.shape[-2:]
        keep = torch.ones(t, s, dtype=torch.bool, device=scores.device).tril(s - t)
    elif mask.dtype == torch.bool:
        keep = mask
    else:
        scores = scores + mask
        keep = mask > torch.finfo(mask.dtype).min
    return scores.masked_fill(~keep, float("-inf"))


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
               softcap: float | None = None, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention with hook points, called by transformers as attention implementation
    :data:`ATTENTION`.

    Parameters
    ----------
    module : nn.Module
        The attention module (its hooks are looked up in ``_ATTN_HOOKS``).
    query : torch.Tensor, shape (B, H, T, d)
        After any q norm and rotary.
    key, value : torch.Tensor, shape (B, K, S, d)
        ``K`` divides ``H`` (grouped-query attention repeats each key/value head).
    attention_mask : torch.Tensor or None
        Boolean (True: attend) or additive, broadcasting to (B, H, T, S); None means causal.
    scaling, dropout, softcap
        The model's score scale (default ``d ** -0.5``), dropout (0 in eval) and Gemma-2's
        soft-capping of the scores.

    Returns
    -------
    z : torch.Tensor, shape (B, T, H, d)
    pattern : torch.Tensor, shape (B, H, T, S)
    """
    hooks = _ATTN_HOOKS.get(module, ())
    query = _apply(hooks, "hook_rot_q", query.transpose(1, 2)).transpose(1, 2)
    key = _apply(hooks, "hook_rot_k", key.transpose(1, 2)).transpose(1, 2)
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = _apply(hooks, "hook_attn_scores", _masked(scores, attention_mask))
    pattern = _apply(hooks, "hook_pattern", scores.softmax(-1).to(value.dtype))
    pattern = nn.functional.dropout(pattern, p=dropout, training=module.training)
    return torch.matmul(pattern, value).transpose(1, 2).contiguous(), pattern


def _neo_attn(core: nn.Module) -> Callable:
    """GPT-Neo's ``_attn`` (unscaled scores, its causal or local window in ``core.bias``) through
    :func:`_attention`; it returns z as (B, H, T, d)."""
    def attn(query, key, value, attention_mask=None):
        t, s = query.shape[-2], key.shape[-2]
        allowed = core.bias[:, :, s - t:s, :s]
        mask = torch.zeros(allowed.shape, device=query.device).masked_fill(~allowed, float("-inf"))
        mask = mask if attention_mask is None else mask + attention_mask
        z, pattern = _attention(core, query, key, value, mask, scaling=1.0, dropout=core.attn_dropout.p)
        return z.transpose(1, 2), pattern
    return attn


def _bool_mask(*args, **kwargs):
    """transformers' boolean (sdpa) mask, always materialised: :func:`_attention` reads it."""
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, **{**kwargs, "allow_is_causal_skip": False})


@functools.cache
def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, _bool_mask)
