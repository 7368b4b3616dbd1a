"""The logit lens: what each layer's activations would predict if the model stopped there.

For every layer's activation at one hook point (``site``: by default the residual stream
leaving the block, ``blocks.{l}.hook_resid_post``, with the embeddings
``blocks.0.hook_resid_pre`` as layer ``"embed"``) and every prompt position, the activation is
decoded with the model's own final norm and unembedding, ``softmax(unembed(final_norm(h)))``:
at the last layer's ``resid_post`` this is exactly the model's output distribution. The lens
keeps the top-k tokens with their probabilities, a target token's probability and rank, and
the distribution's entropy, one layer at a time, so an ``(L, T, V)`` array is never held for a
large vocabulary. The tuned lens (:mod:`.tuned_lens`) decodes the same way after a learned
affine map per layer and returns the same :class:`LogitLensResult`.

Reference: nostalgebraist (2020), "interpreting GPT: the logit lens" (LessWrong).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import (
    Explainer,
    Result,
    check_bool,
    check_choice,
    check_positive_int,
    register_explainer,
)

from .models import LanguageModel, check_language_model, layer_hooks

#: Hook points the logit lens reads (``blocks.{l}.hook_{site}``).
LENS_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
#: What :meth:`LogitLensResult.plot` and the HTML heat map can show per layer and position.
LENS_VALUES = ("target_prob", "target_rank", "entropy")


def first_token(lm: LanguageModel, continuation: str, what: str) -> int:
    """The id of the first token of ``continuation`` as it follows a prompt."""
    if not isinstance(continuation, str):
        raise TypeError(f"{what} must be a continuation string; got {type(continuation).__name__}")
    return int(lm.token_ids(continuation)[0])


def decode_logits(lm: LanguageModel, h: torch.Tensor) -> torch.Tensor:
    """The lens's next-token logits ``unembed(final_norm(h))``, float32, shape (..., V), for
    activations ``h`` (..., d_model); differentiable (no ``no_grad`` here)."""
    return lm.unembed(lm.final_norm(h)).float()


@dataclass
class LogitLensResult(Result):
    """The logit lens (or tuned lens) of one prompt.

    Attributes
    ----------
    layers : tuple of str, length L
        ``"embed"`` (when included) then ``"0"``, ``"1"``, ...: the activation of block l at
        the lens's site.
    hook_names : tuple of str, length L
        The hook point each layer reads (``blocks.0.hook_resid_pre``, ``blocks.{l}.hook_{site}``).
    tokens : list of str, length T
        The prompt's tokens.
    top_tokens : numpy.ndarray of str, shape (L, T, k)
        The k most probable next tokens per layer and position, most probable first.
    top_ids : numpy.ndarray of int64, shape (L, T, k)
    top_probs : numpy.ndarray of float32, shape (L, T, k)
    target : str
        The tracked token (the first token of the target continuation).
    target_id : int
    target_probs : numpy.ndarray of float32, shape (L, T)
        The target token's probability per layer and position.
    target_ranks : numpy.ndarray of int64, shape (L, T)
        The target's rank in the lens distribution: how many tokens have a larger logit
        (0 = the most probable token).
    entropy : numpy.ndarray of float32, shape (L, T)
        The lens distribution's entropy, in nats (0 to ``log V``).
    lens : str
        ``"logit"`` or ``"tuned"`` (decoded through a fitted :class:`~xai_suite_llm.TunedLens`).
    method : str
        The explainer's qualified name.
    params : dict
        The settings used (``top_k``, ``include_embeddings``, the site or the tuned lens, the
        target).
    """

    format = "xai-suite-logit-lens/2"
    text_arrays = ("top_tokens",)
    layers: tuple[str, ...]
    hook_names: tuple[str, ...]
    tokens: list[str]
    top_tokens: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    target: str
    target_id: int
    target_probs: np.ndarray
    target_ranks: np.ndarray
    entropy: np.ndarray
    lens: str = "logit"
    method: str = "native:logit_lens"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.layers, self.hook_names = tuple(self.layers), tuple(self.hook_names)
        self.tokens = [str(t) for t in self.tokens]
        self.top_tokens = np.asarray(self.top_tokens, dtype=str)  # savable without pickle
        check_choice("lens", self.lens, ("logit", "tuned"))
        n_layers, n_pos = len(self.layers), len(self.tokens)
        k = self.top_ids.shape[-1] if self.top_ids.ndim == 3 else 0
        for name in ("top_tokens", "top_ids", "top_probs", "target_probs", "target_ranks", "entropy"):
            shape = (n_layers, n_pos, k) if name.startswith("top") else (n_layers, n_pos)
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape (layers, positions{', k' * (len(shape) == 3)}) = "
                                 f"{shape}; got {getattr(self, name).shape}")

    def to_frame(self) -> pd.DataFrame:
        """One row per layer and position.

        Columns: layer, hook, position, token, target, target_prob, target_rank, entropy, then
        ``top{i}_token`` and ``top{i}_prob`` for i = 1..k.
        """
        n_layers, n_pos, k = self.top_probs.shape
        data = {
            "layer": np.repeat(self.layers, n_pos),
            "hook": np.repeat(self.hook_names, n_pos),
            "position": np.tile(np.arange(n_pos), n_layers),
            "token": np.tile(np.asarray(self.tokens, dtype=object), n_layers),
            "target": self.target,
            "target_prob": self.target_probs.reshape(-1),
            "target_rank": self.target_ranks.reshape(-1),
            "entropy": self.entropy.reshape(-1),
        }
        for i in range(k):
            data[f"top{i + 1}_token"] = self.top_tokens[:, :, i].reshape(-1)
            data[f"top{i + 1}_prob"] = self.top_probs[:, :, i].reshape(-1)
        return pd.DataFrame(data)

    def _html(self, page) -> None:
        from .html import logit_lens_view

        logit_lens_view(self, page)

    def plot(self, ax=None, *, value: str = "target_prob", annotate: bool = True):
        """Heat map layer x position of the target's probability (or its rank, or the
        entropy), annotated with the top-1 token.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Drawn into a new figure when omitted.
        value : {"target_prob", "target_rank", "entropy"}
            What the colour shows: P(target) on [0, 1], the target's rank on a log scale
            (``log10(1 + rank)``, 0 = top), or the entropy in nats on [0, log V].
        annotate : bool
            Write each cell's most probable token in it.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        check_choice("value", value, LENS_VALUES)
        n_layers, n_pos = self.target_probs.shape
        target = self.target.strip() or repr(self.target)
        z, vmin, vmax, label, cmap = {
            "target_prob": (self.target_probs, 0.0, 1.0, f"P({target})", "viridis"),
            "target_rank": (np.log10(1.0 + self.target_ranks), 0.0,
                            max(1.0, float(np.log10(1.0 + self.target_ranks.max()))),
                            f"log10(1 + rank of {target})", "viridis_r"),
            "entropy": (self.entropy, 0.0, max(float(self.entropy.max()), 1e-6), "entropy (nats)",
                        "magma"),
        }[value]
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.6 * n_pos + 1.5), max(2.5, 0.45 * n_layers + 1.2)))
        im = ax.imshow(z, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if annotate:
            shade = (z - vmin) / (vmax - vmin)  # where the colour map is light, write in black
            for (i, j), bright in np.ndenumerate((1 - shade if cmap.endswith("_r") else shade) > 0.6):
                top = self.top_tokens[i, j, 0]
                ax.text(j, i, top.strip() or repr(top), ha="center", va="center", fontsize=7,
                        color="black" if bright else "white")
        ax.set_xticks(range(n_pos), [t.strip() or repr(t) for t in self.tokens], rotation=90)
        ax.set_yticks(range(n_layers), self.layers)
        ax.set(xlabel="position (input token)", ylabel="layer",
               title=f"{self.lens} lens: {label} and top-1 token")
        ax.figure.colorbar(im, ax=ax, label=label)
        return ax


class _Lens(Explainer):
    """What the logit and tuned lenses share: the rows read, the decoding loop, the result.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    top_k : int
        Most probable tokens kept per layer and position.
    include_embeddings : bool
        Add the embedding stream (``blocks.0.hook_resid_pre``) as layer ``"embed"``.
    """

    family = "mechanistic"

    top_k: int = 5
    include_embeddings: bool = True

    #: ``LogitLensResult.lens`` of this explainer's results.
    kind = "logit"

    def _check(self) -> LanguageModel:
        lm = check_language_model(self.model, self.info.qualified_name)
        check_positive_int(top_k=self.top_k)
        if self.top_k > lm.vocab_size:
            raise ValueError(f"top_k must be at most the vocabulary size {lm.vocab_size}; got {self.top_k}")
        check_bool(include_embeddings=self.include_embeddings)
        return lm

    def _rows(self, lm: LanguageModel) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The layer labels and the hook point each reads."""
        return layer_hooks(lm, "resid_post", self.include_embeddings)

    def _logits(self, lm: LanguageModel, layer: str, h: torch.Tensor) -> torch.Tensor:
        """Lens logits (T, V), float32, of one layer's activations (T, d_model)."""
        return decode_logits(lm, h)

    def _settings(self) -> dict:
        """The lens's own settings, recorded in the result's params."""
        return {}

    def explain(self, prompt: str, target: str | None = None, hooks: dict | None = None) -> LogitLensResult:
        """The lens table of ``prompt``.

        Parameters
        ----------
        prompt : str
        target : str, optional
            A continuation whose first token's probability and rank are tracked; ``None``
            tracks the model's own next-token prediction at the last position.
        hooks : dict of str to callable, optional
            Hook functions applied during the run (:meth:`LanguageModel.hooks`), e.g. an
            intervention's (:func:`xai_suite_llm.intervention.intervention_hooks`): the lens of
            the intervened run.

        Returns
        -------
        LogitLensResult
        """
        return self._explain(prompt, target, hooks)

    @contextlib.contextmanager
    def _begin(self, prompt: str, target: str | None, hooks: dict | None = None) -> Iterator[dict]:
        lm = self._check()
        yield {"lm": lm, "enc": lm.encode(prompt), "target": target, "hooks": hooks,
               "layers_hooks": self._rows(lm)}

    def _compute(self, call: dict) -> tuple:
        lm, enc, target = call["lm"], call["enc"], call["target"]
        layers, hooks = call["layers_hooks"]
        logits, cache = lm.run_with_cache(enc.ids.unsqueeze(0), hooks, call["hooks"])
        target_id = int(logits[0, -1].argmax()) if target is None else first_token(lm, target, "target")
        per_layer = []
        with torch.no_grad():
            for layer, name in zip(layers, hooks, strict=True):  # one layer's (T, V) at a time
                z = self._logits(lm, layer, cache.pop(name)[0])
                logp = torch.log_softmax(z, dim=-1)
                probs = logp.exp()
                p, idx = probs.topk(self.top_k, dim=-1)
                rank = (z > z[:, target_id : target_id + 1]).sum(-1)
                per_layer.append([a.cpu().numpy() for a in (
                    idx, p, probs[:, target_id], rank, torch.special.entr(probs).sum(-1))])
        return target_id, *(np.stack(a) for a in zip(*per_layer, strict=True))

    def _finish(self, call: dict, raw: tuple) -> LogitLensResult:
        (target_id, top_ids, top_probs, target_probs, ranks, entropy), lm = raw, call["lm"]
        layers, hooks = call["layers_hooks"]
        vocab = {int(t): lm.decode([t]) for t in np.unique(top_ids)}
        top_tokens = np.vectorize(vocab.__getitem__, otypes=[object])(top_ids)
        return LogitLensResult(
            layers=layers, hook_names=hooks, tokens=list(call["enc"].tokens), top_tokens=top_tokens,
            top_ids=top_ids, top_probs=top_probs, target=lm.decode([target_id]), target_id=target_id,
            target_probs=target_probs, target_ranks=ranks.astype(np.int64), entropy=entropy,
            lens=self.kind, method=self.info.qualified_name,
            params={"top_k": self.top_k, "include_embeddings": self.include_embeddings,
                    **self._settings(), "target": call["target"]},
        )

    def distribution(self, prompt: str, layer: str | int) -> np.ndarray:
        """The lens's full next-token distribution at one layer, every position.

        Parameters
        ----------
        prompt : str
        layer : str or int
            A name from ``LogitLensResult.layers`` (``"embed"``, ``"0"``, ...) or a block index.

        Returns
        -------
        numpy.ndarray of float32, shape (T, V)
            Rows sum to 1; at the last layer's ``resid_post``, the model's own output softmax.
        """
        lm = self._check()
        layers, hooks = self._rows(lm)
        key = str(layer)
        if key not in layers:
            raise ValueError(f"layer must be one of {', '.join(layers)}; got {layer!r}")
        name = hooks[layers.index(key)]
        _, cache = lm.run_with_cache(lm.encode(prompt).ids.unsqueeze(0), [name])
        with torch.no_grad():
            return torch.softmax(self._logits(lm, key, cache[name][0]), dim=-1).cpu().numpy()


@register_explainer(
    "logit_lens", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Logit lens: each layer's residual stream (or attention/MLP output) decoded with the "
    "final norm and unembedding; target probability, rank and entropy",
    reference="nostalgebraist (2020), interpreting GPT: the logit lens",
    notes="Not an attribution: explain(prompt, target) returns a LogitLensResult (layer x position "
    "tables), not an Explanation; deterministic.",
)
class LogitLens(_Lens):
    """Decode every layer's activation at one site, at every position, with the model's own head.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    top_k : int
        Most probable tokens kept per layer and position.
    include_embeddings : bool
        Add the embedding stream (``blocks.0.hook_resid_pre``) as layer ``"embed"``. With
        ``site="resid_pre"`` layer ``"0"`` already is that stream: pass False.
    site : {"resid_post", "resid_pre", "resid_mid", "attn_out", "mlp_out"}
        The hook point read in every block (``blocks.{l}.hook_{site}``): the residual stream
        leaving it (default), entering it, between its attention and MLP, or what its
        attention or MLP sub-layer adds.
    """

    site: str = "resid_post"

    def _check(self) -> LanguageModel:
        lm = super()._check()
        check_choice("site", self.site, LENS_SITES)
        if self.site == "resid_pre" and self.include_embeddings:
            raise ValueError("site='resid_pre' with include_embeddings=True would read the embeddings "
                             "twice (layer 0's resid_pre is the embedding stream): pass "
                             "include_embeddings=False")
        return lm

    def _rows(self, lm: LanguageModel) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return layer_hooks(lm, self.site, self.include_embeddings)

    def _settings(self) -> dict:
        return {"site": self.site}
