"""A Hugging Face causal LM with its tokenizer, and TransformerLens-style hook points.

:class:`LanguageModel` is the model object every ``text`` explainer takes (model kind
``hf_causal_lm``). It knows where a decoder-only architecture keeps its parts (token
embedding, blocks, attention, MLP, final norm, unembedding) and exposes the activations
between them under TransformerLens's names, for reading (:meth:`LanguageModel.run_with_cache`)
and for overwriting (:meth:`LanguageModel.run_with_hooks`):

========================== ==============================================================
``hook_embed``             token embeddings (before position embeddings are added)
``blocks.{l}.hook_resid_pre``   the residual stream entering block ``l``
``blocks.{l}.hook_attn_out``    the attention sub-layer's output (what it adds)
``blocks.{l}.hook_mlp_out``     the MLP sub-layer's output (what it adds)
``blocks.{l}.hook_resid_post``  the residual stream leaving block ``l``
``ln_final.hook_normalized``    the final norm's output (what the unembedding reads)
========================== ==============================================================

Each is a ``(B, T, d_model)`` tensor. Supported architectures: GPT-2 (and GPT-J/GPT-Neo
style ``transformer.h``), LLaMA/Mistral/Qwen/Gemma/OLMo/Phi-3 and Phi-1/2 (``model.layers``) and
GPT-NeoX/Pythia (``gpt_neox.layers``). Others are refused at construction with the reason
(:data:`REFUSED`: BLOOM and Falcon, whose sub-layers fold the residual stream into their
outputs), or naming the part that is not where a layout keeps it.
"""

from __future__ import annotations

import contextlib
import functools
import re
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
_HOOK = re.compile(r"blocks\.(\d+)\.hook_(resid_pre|attn_out|mlp_out|resid_post)")
SITES = ("resid_pre", "attn_out", "mlp_out", "resid_post")


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
        """Every hook point, in execution order."""
        return ["hook_embed", *(f"blocks.{layer}.hook_{s}" for layer in range(self.n_layers) for s in SITES),
                "ln_final.hook_normalized"]

    def _site(self, name: str) -> tuple[nn.Module, str]:
        """(module, how) for a hook name: how is 'in' (the module's input) or 'out'."""
        if name == "hook_embed":
            return self.embed, "out"
        if name == "ln_final.hook_normalized":
            return self.final_norm, "out"
        m = _HOOK.fullmatch(name)
        if m is None:
            raise ValueError(f"unknown hook point {name!r}; expected hook_embed, "
                             f"blocks.<layer>.hook_<{'|'.join(SITES)}> or ln_final.hook_normalized")
        layer, site = int(m.group(1)), m.group(2)
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"hook point {name!r}: the model has layers 0..{self.n_layers - 1}")
        return {"resid_pre": (self.blocks[layer], "in"), "resid_post": (self.blocks[layer], "out"),
                "attn_out": (self.attn[layer], "out"), "mlp_out": (self.mlp[layer], "out")}[site]

    @contextlib.contextmanager
    def hooks(self, fns: dict[str, Callable[[torch.Tensor], torch.Tensor | None]]) -> Iterator[None]:
        """Within the block, ``fns[name](activation)`` runs at each hook point named.

        A function returning a tensor replaces the activation (same shape); ``None`` keeps it.
        """
        handles = []
        try:
            for name, fn in fns.items():
                module, how = self._site(name)
                handles.append(module.register_forward_pre_hook(_pre(fn, name), with_kwargs=True)
                               if how == "in" else module.register_forward_hook(_post(fn, name)))
            yield
        finally:
            for h in handles:
                h.remove()

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
        return logits, cache

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


def _pre(fn, name):
    def hook(module, args, kwargs):
        if args:
            new = _checked(name, args[0], fn(args[0]))
            return None if new is None else ((new, *args[1:]), kwargs)
        new = _checked(name, kwargs["hidden_states"], fn(kwargs["hidden_states"]))
        return None if new is None else (args, {**kwargs, "hidden_states": new})
    return hook


def _post(fn, name):
    def hook(module, args, out):
        first = out[0] if isinstance(out, tuple) else out
        new = _checked(name, first, fn(first))
        return (new, *out[1:]) if new is not None and isinstance(out, tuple) else new
    return hook
