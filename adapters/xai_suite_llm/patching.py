"""Activation patching: which activations carry the difference between two prompts.

Run a *corrupted* prompt, overwrite one activation (one hook point, one position) with its
value from the *clean* prompt, and measure how much of the clean behaviour comes back. The
behaviour is a logit difference at the last position, ``logit(answer) - logit(wrong)``, and
the normalised effect of a patch is::

    effect = (patched - corrupted) / (clean - corrupted)

1 means the patch restores the clean logit difference, 0 that it changes nothing. Hook
points are TransformerLens's (:mod:`xai_suite_llm.models`). All layers x positions of one
site are rows of one batch (chunked by ``batch_size``): each row patches its own.

References: Meng et al. (2022), Locating and Editing Factual Associations in GPT (causal
tracing); Wang et al. (2023), Interpretability in the Wild (logit difference, path patching);
Heimersheim & Nanda (2024), How to use and interpret activation patching.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import Explainer, Result, check_batch_size, register_explainer

from .lens import first_token
from .models import SITES, LanguageModel, check_language_model

#: Clean and corrupted logit differences this close (relative to their size) make explain raise.
EQUAL_DIFF_RTOL = 1e-6


def _as_ids(lm: LanguageModel, ids, what: str) -> torch.Tensor:
    if isinstance(ids, str):
        return lm.encode(ids).ids.unsqueeze(0)
    t = torch.as_tensor(ids)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"{what} must be a string or integer token ids; got dtype {t.dtype}")
    t = t.unsqueeze(0) if t.ndim == 1 else t
    if t.ndim != 2 or t.shape[1] == 0:
        raise ValueError(f"{what} ids must have shape (T,) or (B, T) with T >= 1; got {tuple(t.shape)}")
    return t.long()


def patch_all(lm: LanguageModel, clean_ids, corrupted_ids, names: Sequence[str]) -> torch.Tensor:
    """Run the corrupted prompt with the clean activations at ``names`` patched in everywhere.

    Parameters
    ----------
    lm : LanguageModel
    clean_ids, corrupted_ids : str or int tensor, shape (T,) or (B, T)
        The two prompts (strings are tokenised); they must have the same shape.
    names : sequence of str
        Hook points (``blocks.{l}.hook_{site}``, ``hook_embed``, ...) patched at all positions.

    Returns
    -------
    torch.Tensor, shape (B, T, V)
        The corrupted run's logits with the patches applied. Patching every layer's
        ``resid_pre`` (or any one layer's, at all positions) gives the clean logits.
    """
    check_language_model(lm, "patch_all")
    clean = _as_ids(lm, clean_ids, "clean_ids")
    corrupted = _as_ids(lm, corrupted_ids, "corrupted_ids")
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean and corrupted prompts must have the same shape (tokens); got "
                         f"{tuple(clean.shape)} and {tuple(corrupted.shape)}")
    names = list(names)
    if not names:
        raise ValueError("names must list at least one hook point")
    _, cache = lm.run_with_cache(clean, names)
    return lm.run_with_hooks(corrupted, {n: (lambda act, n=n: cache[n]) for n in names})


@dataclass
class PatchingResult(Result):
    """Effects of patching clean activations into a corrupted run.

    Attributes
    ----------
    sites : tuple of str
        The sites patched (``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_post``).
    tokens : list of str, length T
        The clean prompt's tokens.
    corrupted_tokens : list of str, length T
    answer, wrong : str
        The tokens whose logit difference is measured.
    clean_diff, corrupted_diff : float
        ``logit(answer) - logit(wrong)`` at the last position of the clean and corrupted runs.
    patched : dict of str to numpy.ndarray of float64, shape (L, T)
        Per site, the logit difference with ``blocks.{l}.hook_{site}`` patched at position t.
    effects : dict of str to numpy.ndarray of float64, shape (L, T)
        ``(patched - corrupted_diff) / (clean_diff - corrupted_diff)``.
    method : str
    params : dict
    """

    format = "xai-suite-patching/1"
    sites: tuple[str, ...]
    tokens: list[str]
    corrupted_tokens: list[str]
    answer: str
    wrong: str
    clean_diff: float
    corrupted_diff: float
    patched: dict[str, np.ndarray]
    effects: dict[str, np.ndarray]
    method: str = "native:activation_patching"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.sites = tuple(self.sites)
        for name in ("patched", "effects"):
            if set(getattr(self, name)) != set(self.sites):
                raise ValueError(f"{name} must hold one (L, T) array per site {list(self.sites)}")

    @property
    def n_layers(self) -> int:
        return next(iter(self.patched.values())).shape[0]

    def to_frame(self) -> pd.DataFrame:
        """One row per site, layer and position.

        Columns: site, layer, hook, position, token, corrupted_token, patched_diff, effect.
        """
        frames = []
        for site in self.sites:
            n_layers, n_pos = self.patched[site].shape
            layers = np.repeat(np.arange(n_layers), n_pos)
            frames.append(pd.DataFrame({
                "site": site,
                "layer": layers,
                "hook": [f"blocks.{layer}.hook_{site}" for layer in layers],
                "position": np.tile(np.arange(n_pos), n_layers),
                "token": np.tile(np.asarray(self.tokens, dtype=object), n_layers),
                "corrupted_token": np.tile(np.asarray(self.corrupted_tokens, dtype=object), n_layers),
                "patched_diff": self.patched[site].reshape(-1),
                "effect": self.effects[site].reshape(-1),
            }))
        return pd.concat(frames, ignore_index=True)

    def _html(self, page) -> None:
        from .html import patching_view

        patching_view(self, page)

    def plot(self, axes=None):
        """One heat map per site: layer x position, coloured by the normalised effect.

        Parameters
        ----------
        axes : sequence of matplotlib Axes, optional
            One per site; a new figure when omitted.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        n_pos = len(self.tokens)
        if axes is None:
            fig, axes = plt.subplots(1, len(self.sites), squeeze=False, layout="constrained",
                                     figsize=(len(self.sites) * max(3.5, 0.35 * n_pos + 1.5),
                                              max(2.5, 0.4 * self.n_layers + 1.8)))
            axes = axes[0]
        elif len(axes) != len(self.sites):
            raise ValueError(f"axes must hold one Axes per site ({len(self.sites)}); got {len(axes)}")
        labels = [c if c == k else f"{c}/{k}" for c, k in zip(self.tokens, self.corrupted_tokens,
                                                               strict=True)]
        lim = max(1.0, max(float(np.abs(e).max()) for e in self.effects.values()))
        for ax, site in zip(axes, self.sites, strict=True):
            im = ax.imshow(self.effects[site], aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                           interpolation="nearest")
            ax.set_xticks(range(n_pos), labels, rotation=90)
            ax.set_yticks(range(self.n_layers), [str(i) for i in range(self.n_layers)])
            ax.set(xlabel="position (clean/corrupted token)", ylabel="layer", title=f"hook_{site}")
            ax.figure.colorbar(im, ax=ax, label="normalised effect")
        fig = axes[0].figure
        fig.suptitle(f"patching clean into corrupted: logit({self.answer.strip()}) - "
                     f"logit({self.wrong.strip()})")
        return fig


@register_explainer(
    "activation_patching", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Activation patching: clean activations patched into a corrupted run, per layer, "
    "position and site",
    reference="Meng et al. (2022), Locating and Editing Factual Associations in GPT; Wang et al. "
    "(2023), Interpretability in the Wild; Heimersheim & Nanda (2024), How to use and interpret "
    "activation patching",
    notes="Not an attribution: explain(clean, corrupted, answer, wrong) returns a PatchingResult; "
    "deterministic; results do not depend on batch_size (to float rounding).",
)
class ActivationPatching(Explainer):
    """Patch each (layer, position) of each site from the clean run into the corrupted one.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    sites : sequence of str
        Among ``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_post``.
    batch_size : "auto" or int
        Patched runs (rows) per forward pass; ``"auto"`` sizes them from the model's
        activation memory per row.
    """

    family = "mechanistic"

    sites: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out")
    batch_size: int | str = "auto"

    def _check_sites(self) -> tuple[str, ...]:
        sites = (self.sites,) if isinstance(self.sites, str) else tuple(self.sites)
        bad = [s for s in sites if s not in SITES]
        if not sites or bad or len(set(sites)) != len(sites):
            raise ValueError(f"sites must be distinct names among {', '.join(SITES)}; got {self.sites!r}")
        return sites

    def explain(self, clean: str, corrupted: str, answer: str, wrong: str) -> PatchingResult:
        """Patch every (site, layer, position) from ``clean`` into ``corrupted``.

        Parameters
        ----------
        clean, corrupted : str
            Prompts that tokenise to the same number of tokens.
        answer, wrong : str
            Continuations; the metric is ``logit(answer) - logit(wrong)`` of their first
            tokens at the last position.

        Returns
        -------
        PatchingResult

        Raises
        ------
        ValueError
            When the prompts tokenise to different lengths, the two continuations start with
            the same token, or the clean and corrupted logit differences are equal (to
            :data:`EQUAL_DIFF_RTOL`): the normalised effect is undefined then, and patching
            cannot show anything, so no effect is returned rather than NaN or infinity.
        """
        return self._explain(clean, corrupted, answer, wrong)

    @contextlib.contextmanager
    def _begin(self, clean: str, corrupted: str, answer: str, wrong: str) -> Iterator[dict]:
        lm = check_language_model(self.model, self.info.qualified_name)
        sites = self._check_sites()
        check_batch_size(self.batch_size)
        enc_c, enc_k = lm.encode(clean), lm.encode(corrupted)
        if enc_c.ids.shape != enc_k.ids.shape:
            raise ValueError(f"clean and corrupted prompts must tokenise to the same number of tokens "
                             f"(patching aligns positions); got {enc_c.ids.shape[0]} {enc_c.tokens} and "
                             f"{enc_k.ids.shape[0]} {enc_k.tokens}")
        a, w = first_token(lm, answer, "answer"), first_token(lm, wrong, "wrong")
        if a == w:
            raise ValueError(f"answer {answer!r} and wrong {wrong!r} start with the same token "
                             f"{lm.decode([a])!r}: their logit difference is always 0")
        yield {"lm": lm, "sites": sites, "clean": enc_c, "corrupted": enc_k, "answer": a, "wrong": w}

    def _compute(self, call: dict) -> tuple:
        lm, sites, enc_c, enc_k, a, w = (call[k] for k in ("lm", "sites", "clean", "corrupted", "answer",
                                                          "wrong"))
        n_layers, n_pos = lm.n_layers, enc_c.ids.shape[0]
        hooks = {s: [f"blocks.{layer}.hook_{s}" for layer in range(n_layers)] for s in sites}
        clean_ids, corrupted_ids = enc_c.ids.unsqueeze(0), enc_k.ids.unsqueeze(0)
        clean_logits, cache = lm.run_with_cache(clean_ids, [h for hs in hooks.values() for h in hs])
        clean_diff = _logit_diff(clean_logits, a, w).item()
        corrupted_diff = _logit_diff(lm.run_with_hooks(corrupted_ids, {}), a, w).item()
        span = clean_diff - corrupted_diff
        if abs(span) <= EQUAL_DIFF_RTOL * max(1.0, abs(clean_diff), abs(corrupted_diff)):
            raise ValueError(
                f"the clean and corrupted prompts give the same logit difference ({clean_diff:.6g} vs "
                f"{corrupted_diff:.6g}): the normalised effect (patched - corrupted) / (clean - "
                "corrupted) is undefined; choose a corrupted prompt the model answers differently")
        # probed on every leaf module's output per row (embeddings, attention, MLP, the logits)
        rows = self._chunk_rows(lm.model, corrupted_ids.to(lm.device), lm.device)
        layer_of = np.repeat(np.arange(n_layers), n_pos)  # row r patches (layer_of[r], pos_of[r])
        pos_of = np.tile(np.arange(n_pos), n_layers)
        patched = {}
        for site in sites:
            out = np.empty(n_layers * n_pos, dtype=np.float64)
            for start in range(0, out.size, rows):
                sl = slice(start, min(start + rows, out.size))
                fns = {}
                for layer in np.unique(layer_of[sl]):
                    b = np.flatnonzero(layer_of[sl] == layer)
                    fns[hooks[site][layer]] = _patcher(b, pos_of[sl][b], cache[hooks[site][layer]][0])
                logits = lm.run_with_hooks(corrupted_ids.expand(sl.stop - sl.start, -1), fns)
                out[sl] = _logit_diff(logits, a, w).double().cpu().numpy()
            patched[site] = out.reshape(n_layers, n_pos)
        return clean_diff, corrupted_diff, patched, rows

    def _finish(self, call: dict, raw: tuple) -> PatchingResult:
        (clean_diff, corrupted_diff, patched, rows), lm, sites = raw, call["lm"], call["sites"]
        effects = {s: (p - corrupted_diff) / (clean_diff - corrupted_diff) for s, p in patched.items()}
        return PatchingResult(
            sites=sites, tokens=list(call["clean"].tokens), corrupted_tokens=list(call["corrupted"].tokens),
            answer=lm.decode([call["answer"]]), wrong=lm.decode([call["wrong"]]), clean_diff=clean_diff,
            corrupted_diff=corrupted_diff, patched=patched, effects=effects, method=self.info.qualified_name,
            params={"sites": list(sites), "batch_size": self.batch_size, "batch_size_used": rows},
        )


def _logit_diff(logits: torch.Tensor, a: int, w: int) -> torch.Tensor:
    """``logit(a) - logit(w)`` at the last position, shape (B,)."""
    last = logits[:, -1].float()
    return last[:, a] - last[:, w]


def _patcher(rows: np.ndarray, positions: np.ndarray, source: torch.Tensor):
    """Hook function: row ``rows[i]`` gets ``source[positions[i]]`` at position ``positions[i]``."""
    dev = source.device
    rows, positions = torch.as_tensor(rows, device=dev), torch.as_tensor(positions, device=dev)

    def fn(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        new[rows, positions] = source[positions].to(act.dtype)
        return new
    return fn
