"""Activation patching: which activations carry the difference between two prompts.

Run a *corrupted* prompt, overwrite one activation (one hook point, one position) with its
value from the *clean* prompt, and measure how much of the clean behaviour comes back. The
behaviour is a logit difference at the last position, ``logit(answer) - logit(wrong)``, and
the normalised effect of a patch is::

    effect = (patched - corrupted) / (clean - corrupted)

1 means the patch restores the clean logit difference, 0 that it changes nothing. Hook
points are TransformerLens's (:mod:`xai_suite_llm.models`). Sites are whole layers
(:data:`~xai_suite_llm.models.SITES`, one patch per layer and position) or attention heads
(:data:`HEAD_SITES`, one patch per layer and head, at every position at once or at each
position, as TransformerLens's ``get_act_patch_attn_head_*_all_pos`` and ``_by_pos``). All
patches of one site are rows of one batch (chunked by ``batch_size``): each row patches its
own layer, head and position, so a grid of R patches costs ``ceil(R / batch_size)`` forwards.

:func:`path_patch` and :func:`path_patch_senders` patch a *path* (Wang et al. 2023;
Goldowsky-Dill et al. 2023): a sender head's clean output reaches one receiver head's query,
key or value input (or the logits) directly, and nothing else changes.

References: Meng et al. (2022), Locating and Editing Factual Associations in GPT (causal
tracing); Wang et al. (2023), Interpretability in the Wild (logit difference, path patching);
Heimersheim & Nanda (2024), How to use and interpret activation patching; Goldowsky-Dill et
al. (2023), Localizing Model Behavior with Path Patching.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import Explainer, Result, check_batch_size, check_positive_int, register_explainer

from .lens import first_token
from .models import SITES, LanguageModel, check_language_model

#: Clean and corrupted logit differences this close (relative to their size) make explain raise.
EQUAL_DIFF_RTOL = 1e-6
#: Head sites and the hook point each patches per head (``blocks.{l}.attn.hook_{name}``):
#: ``attn_head_out`` a head's output (its ``z``, so its ``result``), the others its query, key,
#: value (key/value heads under grouped-query attention) or attention pattern.
HEAD_SITES = {"attn_head_out": "z", "attn_head_q": "q", "attn_head_k": "k", "attn_head_v": "v",
              "attn_head_pattern": "pattern"}


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


def hook_of(site: str, layer: int) -> str:
    """The hook point a site patches in ``layer``: ``blocks.{l}.hook_{site}`` for a layer site,
    ``blocks.{l}.attn.hook_{z|q|k|v|pattern}`` for a head site (:data:`HEAD_SITES`)."""
    if site in HEAD_SITES:
        return f"blocks.{layer}.attn.hook_{HEAD_SITES[site]}"
    return f"blocks.{layer}.hook_{site}"


@dataclass
class PatchingResult(Result):
    """Effects of patching clean activations into a corrupted run.

    Attributes
    ----------
    sites : tuple of str
        The sites patched: layer sites (``resid_pre``, ``attn_out``, ``mlp_out``,
        ``resid_post``) and head sites (:data:`HEAD_SITES`).
    tokens : list of str, length T
        The clean prompt's tokens.
    corrupted_tokens : list of str, length T
    answer, wrong : str
        The tokens whose logit difference is measured.
    clean_diff, corrupted_diff : float
        ``logit(answer) - logit(wrong)`` at the last position of the clean and corrupted runs.
    patched : dict of str to numpy.ndarray of float64
        Per site, the logit difference with the patch: shape (L, T) for a layer site
        (``blocks.{l}.hook_{site}`` patched at position t); for a head site (L, H) (head h of
        layer l patched at every position) or (L, H, T) (at position t); ``H`` is the number
        of key/value heads for ``attn_head_k`` and ``attn_head_v``.
    effects : dict of str to numpy.ndarray of float64
        ``(patched - corrupted_diff) / (clean_diff - corrupted_diff)``, same shapes.
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
                raise ValueError(f"{name} must hold one array per site {list(self.sites)}")
        for site in self.sites:
            shape, n_dims = np.shape(self.effects[site]), (2, 3) if site in HEAD_SITES else (2,)
            if np.shape(self.patched[site]) != shape or len(shape) not in n_dims:
                raise ValueError(f"site {site!r}: effects and patched must have one shape, (L, T) for a "
                                 f"layer site, (L, H) or (L, H, T) for a head site; got {shape} and "
                                 f"{np.shape(self.patched[site])}")

    @property
    def n_layers(self) -> int:
        return next(iter(self.patched.values())).shape[0]

    def axes(self, site: str) -> tuple[str, ...]:
        """The axes of ``effects[site]``: ``("layer", "position")`` for a layer site, ``("layer",
        "head")`` or ``("layer", "head", "position")`` for a head site."""
        if site not in HEAD_SITES:
            return ("layer", "position")
        return ("layer", "head", "position") if self.effects[site].ndim == 3 else ("layer", "head")

    def grid(self, site: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str], str]:
        """``effects[site]`` and ``patched[site]`` as matrices (R, C) for a heat map.

        Returns
        -------
        effects, patched : numpy.ndarray, shape (R, C)
            Rows are layers, or (layer, head) pairs for a head site patched per position;
            columns positions, or heads for a head site patched at every position.
        rows : list of str, length R
            Row labels: ``"0"``, ``"1"``, ... or ``"L0H0"``, ``"L0H1"``, ...
        hooks : list of str, length R
            The hook point each row patches.
        columns : str
            ``"position"`` or ``"head"``.
        """
        e, p = self.effects[site], self.patched[site]
        axes = self.axes(site)
        if len(axes) == 2:
            rows = [str(layer) for layer in range(e.shape[0])]
            return e, p, rows, [hook_of(site, layer) for layer in range(e.shape[0])], axes[1]
        n_layers, n_heads = e.shape[:2]
        rows = [f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)]
        hooks = [hook_of(site, layer) for layer in range(n_layers) for _ in range(n_heads)]
        return e.reshape(n_layers * n_heads, -1), p.reshape(n_layers * n_heads, -1), rows, hooks, "position"

    def to_frame(self) -> pd.DataFrame:
        """One row per patch: site, layer, head and position.

        Columns: site, layer, head (``<NA>`` for a layer site), hook, position (``<NA>`` for a
        head patched at every position), token, corrupted_token (None there), patched_diff,
        effect.
        """
        frames = []
        tokens = np.asarray(self.tokens, dtype=object)
        corrupted = np.asarray(self.corrupted_tokens, dtype=object)
        for site in self.sites:
            axes, shape = self.axes(site), self.patched[site].shape
            idx = dict(zip(axes, np.unravel_index(np.arange(int(np.prod(shape))), shape), strict=True))
            pos, missing = idx.get("position"), [pd.NA] * idx["layer"].size
            frames.append(pd.DataFrame({
                "site": site,
                "layer": idx["layer"],
                "head": pd.array(idx.get("head", missing), dtype="Int64"),
                "hook": [hook_of(site, layer) for layer in idx["layer"]],
                "position": pd.array(missing if pos is None else pos, dtype="Int64"),
                "token": tokens[pos] if pos is not None else None,
                "corrupted_token": corrupted[pos] if pos is not None else None,
                "patched_diff": self.patched[site].reshape(-1),
                "effect": self.effects[site].reshape(-1),
            }))
        return pd.concat(frames, ignore_index=True)

    def _html(self, page) -> None:
        from .html import patching_view

        patching_view(self, page)

    def plot(self, axes=None):
        """One heat map per site, coloured by the normalised effect: layer x position (a layer
        site), layer x head (a head site at every position) or (layer, head) x position.

        Parameters
        ----------
        axes : sequence of matplotlib Axes, optional
            One per site; a new figure when omitted.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        grids = [self.grid(site) for site in self.sites]
        if axes is None:
            width = max(g[0].shape[1] for g in grids)
            height = max(g[0].shape[0] for g in grids)
            fig, axes = plt.subplots(1, len(self.sites), squeeze=False, layout="constrained",
                                     figsize=(len(self.sites) * max(3.5, 0.35 * width + 1.5),
                                              max(2.5, 0.4 * height + 1.8)))
            axes = axes[0]
        elif len(axes) != len(self.sites):
            raise ValueError(f"axes must hold one Axes per site ({len(self.sites)}); got {len(axes)}")
        labels = [c if c == k else f"{c}/{k}" for c, k in zip(self.tokens, self.corrupted_tokens,
                                                               strict=True)]
        lim = max(1.0, max(float(np.abs(e).max()) for e in self.effects.values()))
        for ax, site, (effects, _, rows, hooks, columns) in zip(axes, self.sites, grids, strict=True):
            im = ax.imshow(effects, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                           interpolation="nearest")
            if columns == "position":
                ax.set_xticks(range(len(labels)), labels, rotation=90)
                xlabel = "position (clean/corrupted token)"
            else:
                ax.set_xticks(range(effects.shape[1]), [str(h) for h in range(effects.shape[1])])
                xlabel = "head (patched at every position)"
            ax.set_yticks(range(len(rows)), rows)
            ax.set(xlabel=xlabel, ylabel="layer" if rows[0] == "0" else "layer, head",
                   title=hooks[0].split(".", 2)[2] if site in HEAD_SITES else f"hook_{site}")
            ax.figure.colorbar(im, ax=ax, label="normalised effect")
        fig = axes[0].figure
        fig.suptitle(f"patching clean into corrupted: logit({self.answer.strip()}) - "
                     f"logit({self.wrong.strip()})")
        return fig


@register_explainer(
    "activation_patching", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",),
    summary="Activation patching: clean activations patched into a corrupted run, per layer, "
    "position and site, or per attention head (output, q, k, v, pattern)",
    reference="Meng et al. (2022), Locating and Editing Factual Associations in GPT; Wang et al. "
    "(2023), Interpretability in the Wild; Heimersheim & Nanda (2024), How to use and interpret "
    "activation patching",
    notes="Not an attribution: explain(clean, corrupted, answer, wrong) returns a PatchingResult; "
    "deterministic; results do not depend on batch_size (to float rounding).",
)
class ActivationPatching(Explainer):
    """Patch each (layer, position) of a layer site, or each (layer, head) of a head site, from
    the clean run into the corrupted one.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    sites : sequence of str
        Among the layer sites ``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_post`` and the
        head sites ``attn_head_out``, ``attn_head_q``, ``attn_head_k``, ``attn_head_v``,
        ``attn_head_pattern`` (:data:`HEAD_SITES`).
    head_positions : {"all", "each"}
        Head sites only: patch each head at every position at once (effects (L, H)) or at
        each position (effects (L, H, T)). Layer sites are always patched per position.
    batch_size : "auto" or int
        Patched runs (rows) per forward pass; ``"auto"`` sizes them from the model's
        activation memory per row.
    """

    family = "mechanistic"

    sites: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out")
    head_positions: str = "all"
    batch_size: int | str = "auto"

    def _check_sites(self) -> tuple[str, ...]:
        sites = (self.sites,) if isinstance(self.sites, str) else tuple(self.sites)
        known = (*SITES, *HEAD_SITES)
        bad = [s for s in sites if s not in known]
        if not sites or bad or len(set(sites)) != len(sites):
            raise ValueError(f"sites must be distinct names among {', '.join(known)}; got {self.sites!r}")
        if self.head_positions not in ("all", "each"):
            raise ValueError(f"head_positions must be 'all' or 'each'; got {self.head_positions!r}")
        return sites

    def explain(self, clean: str, corrupted: str, answer: str, wrong: str) -> PatchingResult:
        """Patch every (site, layer, position) or (site, layer, head[, position]) from ``clean``
        into ``corrupted``.

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
        enc_c, enc_k, a, w = _prompts(lm, clean, corrupted, answer, wrong)
        yield {"lm": lm, "sites": sites, "clean": enc_c, "corrupted": enc_k, "answer": a, "wrong": w}

    def _compute(self, call: dict) -> tuple:
        lm, sites, enc_c, enc_k, a, w = (call[k] for k in ("lm", "sites", "clean", "corrupted", "answer",
                                                          "wrong"))
        n_pos = enc_c.ids.shape[0]
        grids = {s: _grid(lm, s, n_pos, self.head_positions) for s in sites}
        clean_ids, corrupted_ids = enc_c.ids.unsqueeze(0), enc_k.ids.unsqueeze(0)
        hooks = {hook_of(s, layer) for s in sites for layer in range(lm.n_layers)}
        clean_logits, cache = lm.run_with_cache(clean_ids, sorted(hooks))
        clean_diff = _logit_diff(clean_logits, a, w).item()
        corrupted_diff = _logit_diff(lm.run_with_hooks(corrupted_ids, {}), a, w).item()
        _check_span(clean_diff, corrupted_diff)
        # probed on every leaf module's output per row (embeddings, attention, MLP, the logits)
        rows = self._chunk_rows(lm.model, corrupted_ids.to(lm.device), lm.device)
        patched = {}
        for site in sites:
            index, shape = grids[site]  # row r patches layer index["layer"][r], head ..., position ...
            out = np.empty(int(np.prod(shape)), dtype=np.float64)
            for start in range(0, out.size, rows):
                sl = slice(start, min(start + rows, out.size))
                chunk = {k: v[sl] for k, v in index.items()}
                fns = {}
                for layer in np.unique(chunk["layer"]):
                    b = np.flatnonzero(chunk["layer"] == layer)
                    source = cache[hook_of(site, layer)][0]
                    if site in HEAD_SITES:
                        pos = chunk["position"][b] if "position" in chunk else None
                        fns[hook_of(site, layer)] = _head_patcher(b, chunk["head"][b], pos, source,
                                                                  site == "attn_head_pattern")
                    else:
                        fns[hook_of(site, layer)] = _patcher(b, chunk["position"][b], source)
                logits = lm.run_with_hooks(corrupted_ids.expand(sl.stop - sl.start, -1), fns)
                out[sl] = _logit_diff(logits, a, w).double().cpu().numpy()
            patched[site] = out.reshape(shape)
        return clean_diff, corrupted_diff, patched, rows

    def _finish(self, call: dict, raw: tuple) -> PatchingResult:
        (clean_diff, corrupted_diff, patched, rows), lm, sites = raw, call["lm"], call["sites"]
        effects = {s: (p - corrupted_diff) / (clean_diff - corrupted_diff) for s, p in patched.items()}
        return PatchingResult(
            sites=sites, tokens=list(call["clean"].tokens), corrupted_tokens=list(call["corrupted"].tokens),
            answer=lm.decode([call["answer"]]), wrong=lm.decode([call["wrong"]]), clean_diff=clean_diff,
            corrupted_diff=corrupted_diff, patched=patched, effects=effects, method=self.info.qualified_name,
            params={"sites": list(sites), "head_positions": self.head_positions,
                    "batch_size": self.batch_size, "batch_size_used": rows},
        )


def _prompts(lm: LanguageModel, clean: str, corrupted: str, answer: str, wrong: str) -> tuple:
    """The two prompts' encodings and the answer's and wrong continuation's first token ids."""
    enc_c, enc_k = lm.encode(clean), lm.encode(corrupted)
    if enc_c.ids.shape != enc_k.ids.shape:
        raise ValueError(f"clean and corrupted prompts must tokenise to the same number of tokens "
                         f"(patching aligns positions); got {enc_c.ids.shape[0]} {enc_c.tokens} and "
                         f"{enc_k.ids.shape[0]} {enc_k.tokens}")
    a, w = first_token(lm, answer, "answer"), first_token(lm, wrong, "wrong")
    if a == w:
        raise ValueError(f"answer {answer!r} and wrong {wrong!r} start with the same token "
                         f"{lm.decode([a])!r}: their logit difference is always 0")
    return enc_c, enc_k, a, w


def _check_span(clean_diff: float, corrupted_diff: float) -> None:
    if abs(clean_diff - corrupted_diff) <= EQUAL_DIFF_RTOL * max(1.0, abs(clean_diff), abs(corrupted_diff)):
        raise ValueError(
            f"the clean and corrupted prompts give the same logit difference ({clean_diff:.6g} vs "
            f"{corrupted_diff:.6g}): the normalised effect (patched - corrupted) / (clean - "
            "corrupted) is undefined; choose a corrupted prompt the model answers differently")


def _n_heads(lm: LanguageModel, name: str) -> int:
    """Heads of hook ``attn.hook_{name}``: key/value heads for k and v, query heads otherwise."""
    n = lm.n_kv_heads if name in ("k", "v") else lm.n_heads
    if n is None:
        raise ValueError(f"{type(lm.model).__name__}'s attention heads are not where this layout keeps them: "
                         "head sites need the attn.hook_* hook points (see xai_suite_llm.models)")
    return n


def _grid(lm: LanguageModel, site: str, n_pos: int, head_positions: str) -> tuple[dict, tuple]:
    """The patches of ``site``, one per row: index arrays ``layer``, ``head`` (head sites) and
    ``position`` (layer sites, head sites with ``head_positions="each"``) in C order of the
    result's shape (L, T), (L, H) or (L, H, T), and that shape."""
    if site in HEAD_SITES:
        shape = (lm.n_layers, _n_heads(lm, HEAD_SITES[site]))
        shape = (*shape, n_pos) if head_positions == "each" else shape
        names = ("layer", "head", "position")[:len(shape)]
    else:
        shape, names = (lm.n_layers, n_pos), ("layer", "position")
    return dict(zip(names, np.unravel_index(np.arange(int(np.prod(shape))), shape), strict=True)), shape


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


def _head_patcher(rows: np.ndarray, heads: np.ndarray, positions: np.ndarray | None, source: torch.Tensor,
                  pattern: bool):
    """Hook function on a per-head activation: row ``rows[i]`` gets head ``heads[i]`` of
    ``source`` at every position (``positions`` None) or at position ``positions[i]``.

    ``source`` is (T, H, d) (q, k, v, z) or, with ``pattern``, (H, T, S) (query position t).
    """
    dev = source.device
    rows, heads = torch.as_tensor(rows, device=dev), torch.as_tensor(heads, device=dev)
    positions = None if positions is None else torch.as_tensor(positions, device=dev)
    src = source if pattern else source.transpose(0, 1)  # (H, T, X)

    def fn(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        view = new if pattern else new.transpose(1, 2)  # (B, H, T, X), writes into new
        if positions is None:
            view[rows, heads] = src[heads].to(act.dtype)
        else:
            view[rows, heads, positions] = src[heads, positions].to(act.dtype)
        return new
    return fn


# -- path patching ---------------------------------------------------------------------------------
#: Receiver inputs of path patching: a head's query, key or value.
RECEIVER_INPUTS = ("q", "k", "v")


def path_patch(lm: LanguageModel, clean: str, corrupted: str, answer: str, wrong: str, *,
               sender: tuple[int, int], receiver: tuple[int, int] | str,
               receiver_input: str | None = None) -> float:
    """Normalised effect of one path: sender head's clean output -> receiver's input only.

    See :func:`path_patch_senders` (this is its entry for one sender).

    Parameters
    ----------
    lm : LanguageModel
    clean, corrupted, answer, wrong : str
        As for ``native:activation_patching``.
    sender : (int, int)
        (layer, head) of the sender, a query head.
    receiver : (int, int) or "logits"
        (layer, head) of the receiver, in a later layer, or ``"logits"`` (the direct path to
        the unembedding).
    receiver_input : {"q", "k", "v"} or None
        The receiver head's input the sender's path reaches; None for ``"logits"``.

    Returns
    -------
    float
        ``(patched - corrupted) / (clean - corrupted)`` of ``logit(answer) - logit(wrong)``.
    """
    if not (isinstance(sender, tuple) and len(sender) == 2 and all(isinstance(x, int) for x in sender)):
        raise TypeError(f"sender must be a (layer, head) tuple of ints; got {sender!r}")
    return float(_path_effects(lm, clean, corrupted, answer, wrong, receiver, receiver_input,
                               senders=[sender], batch_size=1)[0])


def path_patch_senders(lm: LanguageModel, clean: str, corrupted: str, answer: str, wrong: str, *,
                       receiver: tuple[int, int] | str, receiver_input: str | None = None,
                       batch_size: int = 64) -> np.ndarray:
    """Path patching from every head before the receiver to one receiver, batched.

    The path from sender head ``(l1, h1)`` to the receiver (Wang et al. 2023; Goldowsky-Dill
    et al. 2023): the corrupted run, except that the receiver's ``receiver_input`` is
    recomputed from ``resid_pre`` of its layer plus the sender's clean result minus its
    corrupted result (``attn.hook_result`` at every position): only the sender's direct
    contribution to the stream changes, every other component it would reach in between is
    frozen at the corrupted run. The receiver's other inputs and heads keep their corrupted
    values; what follows the receiver is recomputed. For ``receiver="logits"`` the final norm
    and unembedding read the corrupted ``resid_post`` of the last layer plus that difference
    (the sender's direct effect). Each sender is a row of one batch (chunked by
    ``batch_size``): two forwards per chunk for a head receiver (one records the recomputed
    inputs, one patches them in), one for the logits.

    Parameters
    ----------
    lm : LanguageModel
    clean, corrupted, answer, wrong : str
        As for ``native:activation_patching``: same-length prompts; the metric is
        ``logit(answer) - logit(wrong)`` at the last position.
    receiver : (int, int) or "logits"
        (layer, head) of the receiver head, or ``"logits"``. For ``receiver_input`` ``"k"``
        or ``"v"`` the head is a key/value head (``0 .. n_kv_heads - 1``).
    receiver_input : {"q", "k", "v"} or None
        Which input of the receiver head the path reaches; None for ``"logits"``.
    batch_size : int
        Senders per forward pass.

    Returns
    -------
    numpy.ndarray of float64, shape (l2, H)
        The normalised effect ``(patched - corrupted) / (clean - corrupted)`` of the path from
        each head of layers ``0 .. l2 - 1`` (``l2`` the receiver's layer; all L layers for
        ``"logits"``).

    Raises
    ------
    ValueError
        For an unknown receiver or input, a receiver in layer 0, a layout whose attention
        output is normalised before the residual add (Gemma-2/3, OLMo-2/3: a head's result is
        not what it adds to the stream), or the errors of ``native:activation_patching``.
    """
    check_language_model(lm, "path_patch_senders")
    n_layers = _path_layers(lm, receiver)
    senders = [(layer, h) for layer in range(n_layers) for h in range(_n_heads(lm, "z"))]
    effects = _path_effects(lm, clean, corrupted, answer, wrong, receiver, receiver_input, senders,
                            batch_size)
    return effects.reshape(n_layers, -1)


def _path_layers(lm: LanguageModel, receiver) -> int:
    """The layers senders of ``receiver`` may be in (``0 .. n - 1``): n."""
    if isinstance(receiver, str):
        if receiver != "logits":
            raise ValueError(f"receiver must be a (layer, head) tuple or 'logits'; got {receiver!r}")
        return lm.n_layers
    if not (isinstance(receiver, tuple) and len(receiver) == 2 and all(isinstance(x, int) for x in receiver)):
        raise ValueError(f"receiver must be a (layer, head) tuple of ints or 'logits'; got {receiver!r}")
    if not 1 <= receiver[0] < lm.n_layers:
        raise ValueError(f"receiver layer must be in 1..{lm.n_layers - 1} (a sender must come before it); "
                         f"got {receiver[0]}")
    return receiver[0]


def _path_effects(lm: LanguageModel, clean: str, corrupted: str, answer: str, wrong: str, receiver,
                  receiver_input: str | None, senders: list[tuple[int, int]], batch_size: int) -> np.ndarray:
    """Normalised effects (S,) of the paths from ``senders`` to ``receiver`` (see
    :func:`path_patch_senders`)."""
    check_language_model(lm, "path patching")
    check_positive_int(batch_size=batch_size)
    n_layers = _path_layers(lm, receiver)
    if receiver == "logits":
        if receiver_input is not None:
            raise ValueError(f"receiver_input must be None for receiver='logits'; got {receiver_input!r}")
    elif receiver_input not in RECEIVER_INPUTS:
        raise ValueError(f"receiver_input must be one of {RECEIVER_INPUTS} for a head receiver; "
                         f"got {receiver_input!r}")
    elif not 0 <= receiver[1] < _n_heads(lm, receiver_input):
        raise ValueError(f"receiver head must be in 0..{_n_heads(lm, receiver_input) - 1} for input "
                         f"{receiver_input!r}; got {receiver[1]}")
    n_heads = _n_heads(lm, "z")
    for layer, head in senders:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"sender {(layer, head)} must be a head (0..{n_heads - 1}) of a layer in "
                             f"0..{n_layers - 1} (before the receiver {receiver!r})")
    if any(isinstance(getattr(b, "post_feedforward_layernorm", None), torch.nn.Module) for b in lm.blocks):
        raise ValueError(f"{type(lm.model).__name__} normalises the attention output before adding it to the "
                         "stream: a head's attn.hook_result is not its contribution, so path patching by "
                         "result differences does not apply")
    enc_c, enc_k, a, w = _prompts(lm, clean, corrupted, answer, wrong)
    clean_ids, corrupted_ids = enc_c.ids.unsqueeze(0), enc_k.ids.unsqueeze(0)
    results = [f"blocks.{layer}.attn.hook_result" for layer in sorted({s[0] for s in senders})]
    stream = (f"blocks.{lm.n_layers - 1}.hook_resid_post" if receiver == "logits"
              else f"blocks.{receiver[0]}.hook_resid_pre")
    clean_logits, clean_cache = lm.run_with_cache(clean_ids, results)
    corrupted_logits, cache = lm.run_with_cache(corrupted_ids, [*results, stream])
    clean_diff = _logit_diff(clean_logits, a, w).item()
    corrupted_diff = _logit_diff(corrupted_logits, a, w).item()
    _check_span(clean_diff, corrupted_diff)
    out = np.empty(len(senders), dtype=np.float64)
    for start in range(0, len(senders), batch_size):
        chunk = senders[start:start + batch_size]
        delta = torch.stack([clean_cache[f"blocks.{layer}.attn.hook_result"][0, :, h]
                             - cache[f"blocks.{layer}.attn.hook_result"][0, :, h] for layer, h in chunk])
        new_stream = cache[stream] + delta.to(cache[stream].dtype)  # (n, T, d_model)
        ids = corrupted_ids.expand(len(chunk), -1)
        if receiver == "logits":
            logits = lm.run_with_hooks(ids, {stream: lambda act, s=new_stream: s})
        else:
            hook = f"blocks.{receiver[0]}.attn.hook_{receiver_input}"
            _, recomputed = lm.run_with_cache(ids, [hook], {stream: lambda act, s=new_stream: s})
            logits = lm.run_with_hooks(ids, {hook: _row_head_patcher(receiver[1], recomputed[hook])})
        out[start:start + len(chunk)] = _logit_diff(logits, a, w).double().cpu().numpy()
    return (out - corrupted_diff) / (clean_diff - corrupted_diff)


def _row_head_patcher(head: int, source: torch.Tensor):
    """Hook function on a per-head activation (B, T, H, d): head ``head`` of every row gets
    its own row of ``source`` (B, T, H, d)."""
    def fn(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        new[:, :, head] = source[:, :, head].to(act.dtype)
        return new
    return fn
