"""The logit lens: what each layer's residual stream would predict if the model stopped there.

For every layer's residual stream (``blocks.{l}.hook_resid_post``, and the embeddings
``blocks.0.hook_resid_pre`` as layer ``"embed"``) and every prompt position, the stream is
decoded with the model's own final norm and unembedding, ``softmax(unembed(final_norm(h)))``:
at the last layer this is exactly the model's output distribution. The lens keeps the top-k
tokens, their probabilities and a target token's probability, one layer at a time, so an
``(L, T, V)`` array is never held for a large vocabulary.

Reference: nostalgebraist (2020), "interpreting GPT: the logit lens" (LessWrong).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import Explainer, Result, check_bool, check_positive_int, register_explainer

from .models import LanguageModel, check_language_model, layer_hooks


def first_token(lm: LanguageModel, continuation: str, what: str) -> int:
    """The id of the first token of ``continuation`` as it follows a prompt."""
    if not isinstance(continuation, str):
        raise TypeError(f"{what} must be a continuation string; got {type(continuation).__name__}")
    return int(lm.token_ids(continuation)[0])


@dataclass
class LogitLensResult(Result):
    """The logit lens of one prompt.

    Attributes
    ----------
    layers : tuple of str, length L
        ``"embed"`` (when included) then ``"0"``, ``"1"``, ...: the residual stream after block l.
    hook_names : tuple of str, length L
        The hook point each layer reads (``blocks.0.hook_resid_pre``, ``blocks.{l}.hook_resid_post``).
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
    method : str
        The explainer's qualified name.
    params : dict
        The settings used (``top_k``, ``include_embeddings``, the target).
    """

    format = "xai-suite-logit-lens/1"
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
    method: str = "native:logit_lens"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.layers, self.hook_names = tuple(self.layers), tuple(self.hook_names)
        self.tokens = [str(t) for t in self.tokens]
        self.top_tokens = np.asarray(self.top_tokens, dtype=str)  # savable without pickle
        n_layers, n_pos = len(self.layers), len(self.tokens)
        k = self.top_ids.shape[-1] if self.top_ids.ndim == 3 else 0
        for name, shape in (("top_tokens", (n_layers, n_pos, k)), ("top_ids", (n_layers, n_pos, k)),
                            ("top_probs", (n_layers, n_pos, k)), ("target_probs", (n_layers, n_pos))):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape (layers, positions{', k' * (len(shape) == 3)}) = "
                                 f"{shape}; got {getattr(self, name).shape}")

    def to_frame(self) -> pd.DataFrame:
        """One row per layer and position.

        Columns: layer, hook, position, token, target, target_prob, then ``top{i}_token`` and
        ``top{i}_prob`` for i = 1..k.
        """
        n_layers, n_pos, k = self.top_probs.shape
        data = {
            "layer": np.repeat(self.layers, n_pos),
            "hook": np.repeat(self.hook_names, n_pos),
            "position": np.tile(np.arange(n_pos), n_layers),
            "token": np.tile(np.asarray(self.tokens, dtype=object), n_layers),
            "target": self.target,
            "target_prob": self.target_probs.reshape(-1),
        }
        for i in range(k):
            data[f"top{i + 1}_token"] = self.top_tokens[:, :, i].reshape(-1)
            data[f"top{i + 1}_prob"] = self.top_probs[:, :, i].reshape(-1)
        return pd.DataFrame(data)

    def _html(self, page) -> None:
        from .html import logit_lens_view

        logit_lens_view(self, page)

    def plot(self, ax=None, *, annotate: bool = True):
        """Heat map of the target's probability, layer x position, annotated with the top-1 token.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Drawn into a new figure when omitted.
        annotate : bool
            Write each cell's most probable token in it.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        n_layers, n_pos = self.target_probs.shape
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.6 * n_pos + 1.5), max(2.5, 0.45 * n_layers + 1.2)))
        im = ax.imshow(self.target_probs, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                       interpolation="nearest")
        if annotate:
            for (i, j), p in np.ndenumerate(self.target_probs):
                top = self.top_tokens[i, j, 0]
                ax.text(j, i, top.strip() or repr(top), ha="center", va="center", fontsize=7,
                        color="black" if p > 0.6 else "white")
        ax.set_xticks(range(n_pos), [t.strip() or repr(t) for t in self.tokens], rotation=90)
        ax.set_yticks(range(n_layers), self.layers)
        ax.set(xlabel="position (input token)", ylabel="layer",
               title=f"logit lens: P({self.target.strip() or repr(self.target)}) and top-1 token")
        ax.figure.colorbar(im, ax=ax, label="target probability")
        return ax


@register_explainer(
    "logit_lens", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Logit lens: each layer's residual stream decoded with the final norm and unembedding",
    reference="nostalgebraist (2020), interpreting GPT: the logit lens",
    notes="Not an attribution: explain(prompt, target) returns a LogitLensResult (layer x position "
    "tables), not an Explanation; deterministic.",
)
class LogitLens(Explainer):
    """Decode every layer's residual stream at every position with the model's own head.

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

    def _check(self) -> LanguageModel:
        lm = check_language_model(self.model, self.info.qualified_name)
        check_positive_int(top_k=self.top_k)
        if self.top_k > lm.vocab_size:
            raise ValueError(f"top_k must be at most the vocabulary size {lm.vocab_size}; got {self.top_k}")
        check_bool(include_embeddings=self.include_embeddings)
        return lm

    @staticmethod
    def _decode(lm: LanguageModel, resid: torch.Tensor) -> torch.Tensor:
        """Probabilities (T, V), float32, from one layer's residual stream (T, d_model)."""
        with torch.no_grad():
            return torch.softmax(lm.unembed(lm.final_norm(resid)).float(), dim=-1)

    def explain(self, prompt: str, target: str | None = None, hooks: dict | None = None) -> LogitLensResult:
        """The lens table of ``prompt``.

        Parameters
        ----------
        prompt : str
        target : str, optional
            A continuation whose first token's probability is tracked; ``None`` tracks the
            model's own next-token prediction at the last position.
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
               "layers_hooks": layer_hooks(lm, "resid_post", self.include_embeddings)}

    def _compute(self, call: dict) -> tuple:
        lm, enc, target = call["lm"], call["enc"], call["target"]
        _, hooks = call["layers_hooks"]
        logits, cache = lm.run_with_cache(enc.ids.unsqueeze(0), hooks, call["hooks"])
        target_id = int(logits[0, -1].argmax()) if target is None else first_token(lm, target, "target")
        per_layer = []
        for name in hooks:  # one layer's (T, V) at a time
            probs = self._decode(lm, cache.pop(name)[0])
            p, idx = probs.topk(self.top_k, dim=-1)
            per_layer.append((idx.cpu().numpy(), p.cpu().numpy(), probs[:, target_id].cpu().numpy()))
        return target_id, *(np.stack(a) for a in zip(*per_layer, strict=True))  # top ids, probs, target probs

    def _finish(self, call: dict, raw: tuple) -> LogitLensResult:
        (target_id, top_ids, top_probs, target_probs), lm = raw, call["lm"]
        layers, hooks = call["layers_hooks"]
        vocab = {int(t): lm.decode([t]) for t in np.unique(top_ids)}
        top_tokens = np.vectorize(vocab.__getitem__, otypes=[object])(top_ids)
        return LogitLensResult(
            layers=layers, hook_names=hooks, tokens=list(call["enc"].tokens), top_tokens=top_tokens,
            top_ids=top_ids, top_probs=top_probs, target=lm.decode([target_id]), target_id=target_id,
            target_probs=target_probs, method=self.info.qualified_name,
            params={"top_k": self.top_k, "include_embeddings": self.include_embeddings,
                    "target": call["target"]},
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
            Rows sum to 1; at the last layer, the model's own output softmax.
        """
        lm = self._check()
        layers, hooks = layer_hooks(lm, "resid_post", self.include_embeddings)
        key = str(layer)
        if key not in layers:
            raise ValueError(f"layer must be one of {', '.join(layers)}; got {layer!r}")
        name = hooks[layers.index(key)]
        _, cache = lm.run_with_cache(lm.encode(prompt).ids.unsqueeze(0), [name])
        return self._decode(lm, cache[name][0]).cpu().numpy()
