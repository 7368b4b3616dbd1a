"""Attribution of a continuation to the prompt of a causal LM, at token, word, sentence or span level.

What is explained is a *scalariser* of the continuation, read by teacher forcing (the prompt
and the continuation in one sequence, the scalariser computed from the logits at the J
positions that predict the continuation's tokens):

- ``logprob``: ``sum_j log p(target_j | prompt, target_<j)``;
- ``prob``: the product of those probabilities (``exp`` of ``logprob``);
- ``entropy``: ``sum_j H(p(. | prompt, target_<j))``, the predictive entropy (nats) summed
  over the continuation's positions (a sum, not a mean, so that per-token rows add up to
  it; divide by J for the mean);
- ``contrastive``: ``logprob(target) - logprob(contrast)``, why this continuation rather
  than another one (``contrast`` is given to ``explain``);
- any scalariser registered with :func:`register_scalariser`, or a callable given as
  ``scalariser=`` itself: ``fn(logits (R, J, V), ids (J,)) -> (R,)``, batched over rows.

A ``target`` of ``None`` explains the model's own greedy continuation of ``max_new_tokens``
tokens. With ``per_token=True`` the result also holds ``token_attributions`` (J, U): row
``j`` attributes the scalariser of continuation token ``j`` alone (the scalariser on
position ``j``: ``log p(target_j | prompt, target_<j)`` for ``logprob``), so for a
scalariser that is a sum over positions (``logprob``, ``entropy``) the rows sum to
``attributions``. Perturbation explainers read every row's J values off the forward pass
that gives the whole score (no extra model rows); gradient explainers take one backward
pass per row through the same forward pass.

Perturbation explainers replace units of the prompt by a baseline token: their ``baseline``, a
text baseline (:mod:`xai_suite_llm.baselines`; default ``"pad_token"``, the tokenizer's pad
token, else its unk token). Every perturbed prompt of a call is a row of one id matrix, run
through the model in chunks of ``batch_size`` rows (identical rows are run once);
``params["model_rows"]`` records how many rows went through the model. Gradient explainers
integrate (or take) gradients with respect to the prompt's token embeddings, the
continuation's embeddings kept as they are; a token's attribution is the sum over the
embedding dimension, a unit's the ``aggregate`` (sum, mean, max or absmax) of its tokens'.
Units are the prompt's tokens, words or sentences (``level``), or character spans and
phrases given to ``explain(..., spans=...)`` (:func:`~xai_suite_llm.segments.segment_spans`).

:meth:`TextPerturbationExplainer.explain_hierarchical` attributes coarse units first (say
sentences) and refines only the most important ones (into words, then tokens), so long
prompts cost far fewer model rows than a token-level attribution of the whole prompt.

:class:`TextIntegratedGradients` warns (:class:`CompletenessWarning`) when its completeness
error exceeds 5% of the score change, and names the step count that brings it within 5%.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from xai_suite.plugin import (
    QUADRATURES,
    BaselineSpec,
    Explainer,
    Result,
    Seeded,
    check_batch_size,
    check_bool,
    check_choice,
    check_positive_int,
    check_random_state,
    chunks,
    instance_generators,
    kernel_coalitions,
    list_baselines,
    quadrature,
    register_explainer,
    render_text_html,
    solve_kernel_shap,
)

from .baselines import PadToken, TextBaseline
from .models import Encoding, LanguageModel, check_language_model
from .segments import LEVELS, Unit, check_level, refine, segment, segment_spans

TEXT = ("text",)
HF = ("hf_causal_lm",)
REQUIRES = ("transformers",)


# -- scalarisers ------------------------------------------------------------------------------
Scalariser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: The scalarisers of one continuation by name (:func:`register_scalariser`): ``fn(logits
#: (R, J, V), ids (J,)) -> (R,)``. ``contrastive`` is not among them: it is ``logprob`` of
#: the target minus ``logprob`` of the contrast.
SCALARISERS: dict[str, Scalariser] = {}
CONTRASTIVE = "contrastive"


def register_scalariser(name: str) -> Callable[[Scalariser], Scalariser]:
    """Register a scalariser of one continuation under ``name`` (a decorator).

    Every text explainer then takes ``scalariser=name`` (and the removal metrics of its
    results can recompute it). A scalariser can also be given to an explainer directly, as
    ``scalariser=fn``, without registering it.

    Parameters
    ----------
    name : str
        A new name (registered names and ``"contrastive"`` are refused).

    Returns
    -------
    callable
        A decorator registering ``fn(logits, ids) -> scores`` and returning it unchanged:
        ``logits`` (R, J, V) float32 are the logits at the J positions that predict the
        continuation's tokens (the last prompt position, then each continuation position
        but the last), one row per (perturbed) prompt; ``ids`` (J,) int64 are the
        continuation's token ids, on the logits' device; ``scores`` must be a floating
        tensor (R,) of finite values, computed with torch operations (the gradient
        explainers differentiate it). With ``per_token=True`` it is also called on each
        position alone: ``fn(logits[:, j:j+1], ids[j:j+1])``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a scalariser's name must be a non-empty string; got {name!r}")
    if name in SCALARISERS or name == CONTRASTIVE:
        raise ValueError(f"a scalariser named {name!r} is already registered")

    def register(fn: Scalariser) -> Scalariser:
        if not callable(fn):
            raise TypeError(f"scalariser {name!r} must be callable; got {type(fn).__name__}")
        SCALARISERS[name] = fn
        return fn

    return register


def _token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log p(ids_j)`` at each position (R, J), in the logits' dtype."""
    picked = logits.gather(2, ids.expand(len(logits), -1).unsqueeze(2)).squeeze(2)
    return picked - torch.logsumexp(logits, dim=2)


@register_scalariser("logprob")
def logprob(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``sum_j log p(ids_j | prompt, ids_<j)`` of each row (R,), float64."""
    return _token_logprobs(logits, ids).double().sum(1)


@register_scalariser("prob")
def prob(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The continuation's probability ``exp(logprob)`` of each row (R,), float64."""
    return logprob(logits, ids).exp()


@register_scalariser("entropy")
def entropy(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The predictive entropy (nats) summed over the J positions, of each row (R,), float64."""
    logp = torch.log_softmax(logits, dim=2)
    return -(logp.exp() * logp).sum(2).double().sum(1)


def _resolve_scalariser(value) -> tuple[str, Scalariser]:
    """``(name, fn)`` of a ``scalariser`` parameter: a registered name, ``contrastive`` (its
    ``fn`` is ``logprob``) or a callable (named by its qualified name)."""
    if callable(value) and not isinstance(value, str):
        return getattr(value, "__qualname__", type(value).__name__), value
    check_choice("scalariser", value, (*SCALARISERS, CONTRASTIVE))
    return value, SCALARISERS["logprob" if value == CONTRASTIVE else value]


def _checked_scores(name: str, scores, rows: int) -> torch.Tensor:
    """A scalariser's output as float64 (R,), or a clear error for anything else."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scalariser {name!r} must return a torch.Tensor of shape ({rows},), one score "
                        f"per row of logits; got {type(scores).__name__}")
    if scores.shape != (rows,) or not scores.is_floating_point():
        raise ValueError(f"scalariser {name!r} must return a floating tensor of shape ({rows},), one "
                         f"score per row of logits (R, J, V); got shape {tuple(scores.shape)} and "
                         f"dtype {scores.dtype}")
    if not bool(torch.isfinite(scores.detach()).all()):
        raise ValueError(f"scalariser {name!r} returned non-finite scores (NaN or inf): every score "
                         "must be finite")
    return scores.double()


# -- aggregation of token attributions into units ---------------------------------------------
def _absmax(x: np.ndarray) -> np.ndarray:
    """The signed value of largest magnitude along the last axis (the first on ties)."""
    return np.take_along_axis(x, np.abs(x).argmax(-1)[..., None], -1)[..., 0]


#: How gradient explainers combine their tokens' attributions (K, n) into a unit's (K,).
AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sum": functools.partial(np.sum, axis=-1),
    "mean": functools.partial(np.mean, axis=-1),
    "max": functools.partial(np.max, axis=-1),
    "absmax": _absmax,
}


class CompletenessWarning(UserWarning):
    """Integrated gradients' completeness error exceeds 5% of the explained change."""


#: Completeness error above which :class:`TextIntegratedGradients` warns, relative to
#: ``|f(x) - f(baseline)|`` (with :data:`COMPLETENESS_ATOL` as a floor).
COMPLETENESS_RTOL = 0.05
COMPLETENESS_ATOL = 1e-6
#: The most integration steps tried when looking for a step count that passes.
MAX_STEPS = 512


# -- the result ---------------------------------------------------------------------------------
@dataclass
class TextExplanation(Result):
    """Attributions of a continuation to the units of a prompt.

    Attributes
    ----------
    prompt : str
    target : str
        The explained continuation (decoded from ``target_ids``).
    target_ids : numpy.ndarray of int64, shape (L,)
    units : list of str, length U
        Each unit's text (``prompt[start:end]``).
    spans : list of (int, int), length U
        Each unit's character span in ``prompt``.
    level : str
        ``token``, ``word`` or ``sentence`` (for a refined level of
        :meth:`~TextPerturbationExplainer.explain_hierarchical`, the finest level in it;
        ``params["unit_levels"]`` gives each unit's own); ``span`` for units given as
        ``explain(..., spans=...)`` (``unit_levels``: ``span`` for those, the explainer's
        ``level`` for the units of the text between them).
    attributions : numpy.ndarray of float64, shape (U,)
        Signed, unnormalised.
    score : float
        The scalariser's value on the unperturbed prompt.
    method : str
        Qualified explainer name, e.g. ``"native:text_ablation"``.
    params : dict
        Every hyper-parameter (the baseline as a spec), plus settings resolved in the call
        (the baseline token id, ``model_rows``, the batch size used, ...).
    convergence_delta : float or None
        Completeness error ``sum(attributions) - (score - score of the baseline prompt)``
        where the method has one.
    contrast : str or None
        The contrast continuation (``contrastive`` scalariser).
    unit_tokens : list of tuple of int, length U
        Indices of the prompt's tokens in each unit.
    target_tokens : list of str, length L
        Each target token's text (``target_ids`` decoded one by one): the labels of the rows
        of ``token_attributions``.
    token_attributions : numpy.ndarray of float64, shape (L, U), or None
        With ``per_token=True``: row ``j`` attributes the scalariser of target token ``j``
        alone (``log p(target_j | prompt, target_<j)`` for ``logprob``) to the units; for a
        scalariser that is a sum over positions (``logprob``, ``entropy``) and units that
        sum their tokens, the rows sum to ``attributions``.
    token_scores : numpy.ndarray of float64, shape (L,), or None
        With ``per_token=True``: each target token's scalariser on the unperturbed prompt.
    """

    format = "xai-suite-text-explanation/1"
    prompt: str
    target: str
    target_ids: np.ndarray
    units: list[str]
    spans: list[tuple[int, int]]
    level: str
    attributions: np.ndarray
    score: float
    method: str
    params: dict = field(default_factory=dict)
    convergence_delta: float | None = None
    contrast: str | None = None
    unit_tokens: list[tuple[int, ...]] = field(default_factory=list)
    target_tokens: list[str] = field(default_factory=list)
    token_attributions: np.ndarray | None = None
    token_scores: np.ndarray | None = None

    def __post_init__(self):
        self.units = [str(u) for u in self.units]
        self.spans = [(int(a), int(b)) for a, b in self.spans]
        self.unit_tokens = [tuple(int(t) for t in u) for u in self.unit_tokens]
        self.target_tokens = [str(t) for t in self.target_tokens]
        n, n_target = len(self.units), len(self.target_ids)
        if self.attributions.shape != (n,) or len(self.spans) != n or len(self.unit_tokens) not in (0, n):
            raise ValueError(f"attributions (shape {self.attributions.shape}), spans ({len(self.spans)}) "
                             f"and unit_tokens ({len(self.unit_tokens)}) must have one entry per unit "
                             f"({n})")
        if len(self.target_tokens) not in (0, n_target):
            raise ValueError(f"target_tokens ({len(self.target_tokens)}) must have one entry per target "
                             f"token ({n_target})")
        if (self.token_attributions is None) is not (self.token_scores is None):
            raise ValueError("token_attributions and token_scores come together (per_token=True) or not "
                             "at all")
        if self.token_attributions is not None:
            self.token_attributions = np.asarray(self.token_attributions, dtype=np.float64)
            self.token_scores = np.asarray(self.token_scores, dtype=np.float64)
            if self.token_attributions.shape != (n_target, n) or self.token_scores.shape != (n_target,):
                raise ValueError(f"token_attributions (shape {self.token_attributions.shape}) and "
                                 f"token_scores (shape {self.token_scores.shape}) must be (target tokens, "
                                 f"units) = ({n_target}, {n}) and ({n_target},)")

    def __len__(self) -> int:
        return 1  # one prompt: the metrics give one value per explanation

    def faithfulness_view(self, model, *, replacement="baseline", softmax: bool = False,
                          batch_size="auto") -> _UnitView:
        """The units as the removal metrics see them (:mod:`xai_suite.metrics.faithfulness`).

        A removed unit's tokens become ``replacement``: ``"baseline"`` the explanation's own
        baseline (``pad_token`` for an explainer without one), or any text baseline (name,
        spec or instance) that is a token; the value followed is the explained scalariser of
        the continuation.
        """
        if softmax:
            raise ValueError("softmax applies to class outputs; a text explanation follows its "
                             f"scalariser ({self.params.get('scalariser')})")
        name = self.params["scalariser"]
        if name not in (*SCALARISERS, CONTRASTIVE):
            raise ValueError(f"the explained scalariser {name!r} is not registered, so the metrics cannot "
                             "recompute it: register it with register_scalariser and explain with its name")
        spec = self.params.get("baseline", "pad_token") if replacement == "baseline" else replacement
        ablation = TextAblation(model, scalariser=name, baseline=spec,
                                batch_size=batch_size)
        lm = check_language_model(model, "the removal metrics")
        if replacement == "baseline" and ablation._baseline().token_id(lm) is None:
            raise ValueError(f"{self.method} explained towards {spec!r}, no token; the removal "
                             "metrics replace units by a token: pass replacement= a token baseline, "
                             "e.g. replacement='pad_token'")
        prep = ablation._prepare(self.prompt, self.target_ids, self.contrast)
        view = _UnitView(_Evaluator(ablation, prep), self.unit_tokens, self.attributions)
        if not np.isclose(view.fx[0], self.score, rtol=1e-4, atol=1e-5):
            raise ValueError(f"the model scores the prompt {view.fx[0]:.6g}, the explanation "
                             f"{self.score:.6g}: pass the model that was explained")
        return view

    def output_gap(self) -> np.ndarray:
        """``score - baseline score`` (1,): what complete attributions sum to."""
        if "baseline_score" not in self.params:
            raise ValueError(f"{self.method} records no baseline score (it explains without a "
                             "baseline): completeness does not apply")
        return np.array([self.score - self.params["baseline_score"]])

    def to_frame(self) -> pd.DataFrame:
        """One row per unit: unit, start, end, tokens, attribution."""
        return pd.DataFrame({
            "unit": self.units,
            "start": [s for s, _ in self.spans],
            "end": [e for _, e in self.spans],
            "tokens": list(self.unit_tokens) or [None] * len(self.units),
            "attribution": self.attributions,
        })

    def token_frame(self) -> pd.DataFrame:
        """The (target token x unit) matrix in long form: one row per target token and unit.

        Columns: position (of the target token), token, token_score, unit_index, unit,
        start, end, attribution; ``L x U`` rows, target token by target token.
        """
        if self.token_attributions is None:
            raise ValueError(f"this explanation has no token_attributions: explain with per_token=True "
                             f"({self.method})")
        n_target, n = self.token_attributions.shape
        tokens = self.target_tokens or [str(int(t)) for t in self.target_ids]
        return pd.DataFrame({
            "position": np.repeat(np.arange(n_target), n),
            "token": np.repeat(tokens, n),
            "token_score": np.repeat(self.token_scores, n),
            "unit_index": np.tile(np.arange(n), n_target),
            "unit": self.units * n_target,
            "start": [s for s, _ in self.spans] * n_target,
            "end": [e for _, e in self.spans] * n_target,
            "attribution": self.token_attributions.reshape(-1),
        })

    def top(self, k: int = 5, *, absolute: bool = False) -> pd.DataFrame:
        """The ``k`` units with the largest attribution (or absolute attribution), largest first."""
        check_positive_int(k=k)
        key = np.abs(self.attributions) if absolute else self.attributions
        return self.to_frame().iloc[np.argsort(-key, kind="stable")[:k]]

    def html_fragment(self, title: str | None = None) -> str:
        """An HTML fragment (a ``<div>``, for notebooks and other pages): the prompt with each
        unit shaded by its attribution (see :mod:`xai_suite.viz.text`). ``to_html(path)``
        writes a whole page."""
        from .html import text_summary

        return render_text_html(self.prompt, self.spans, self.attributions,
                                title=title or f"{self.method} ({self.level})",
                                subtitle=text_summary(self))

    def _html(self, page) -> None:
        from .html import text_view

        text_view(self, page)

    def _repr_html_(self) -> str:
        return self.html_fragment()

    def plot(self, ax=None):
        """Horizontal bars, one per unit in text order (red positive, blue negative); with
        ``token_attributions``, a heat map target token x unit instead (red positive, blue
        negative, on a symmetric scale). Returns the Axes."""
        import matplotlib.pyplot as plt

        if self.token_attributions is not None:
            return self._plot_matrix(ax)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.3 * len(self.units) + 1))
        y = np.arange(len(self.units))
        ax.barh(y, self.attributions, color=["tab:red" if v > 0 else "tab:blue" for v in self.attributions])
        ax.set_yticks(y, [repr(u)[1:-1] for u in self.units])
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(xlabel=f"attribution ({self.params.get('scalariser', 'score')})",
               title=f"{self.method}: {self.target!r}")
        return ax

    def _plot_matrix(self, ax=None):
        import matplotlib.pyplot as plt

        m = self.token_attributions
        if ax is None:
            _, ax = plt.subplots(figsize=(0.35 * m.shape[1] + 2, 0.35 * m.shape[0] + 1.5))
        lim = float(np.abs(m).max()) or 1.0
        image = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(np.arange(m.shape[1]), [repr(u)[1:-1] for u in self.units], rotation=90)
        tokens = self.target_tokens or [str(int(t)) for t in self.target_ids]
        ax.set_yticks(np.arange(m.shape[0]), [repr(t)[1:-1] for t in tokens])
        ax.figure.colorbar(image, ax=ax, label=f"attribution ({self.params.get('scalariser', 'score')})")
        ax.set(xlabel="prompt unit", ylabel="target token", title=f"{self.method}: {self.target!r}")
        return ax


# -- one call's fixed state ---------------------------------------------------------------
@dataclass
class _Prepared:
    """A prompt, its continuations and how their scores combine into the scalariser."""

    lm: LanguageModel
    enc: Encoding
    ids: torch.Tensor  # (T,) prompt ids on the model's device
    target_ids: torch.Tensor  # (L,)
    target: str
    contrast: str | None
    conts: torch.Tensor  # (C, Lmax) continuation ids, right-padded
    lengths: list[int]  # (C,) true lengths
    coefs: np.ndarray  # (C,) +1 target, -1 contrast
    scalariser: str  # its name (a callable's qualified name)
    score: Scalariser  # the scalariser of one continuation
    per_token: bool  # also each target token's score
    baseline_id: int | None  # None: zero embeddings (integrated gradients)
    spans: Sequence | None = None  # units given to explain
    rows: int = 0  # rows per model call, resolved on first use

    @property
    def keep(self) -> int:
        """Logit positions read: the last prompt position and every continuation position."""
        return int(self.conts.shape[1]) + 1

    @property
    def n_values(self) -> int:
        """Values per prompt: the scalariser, then (``per_token``) each target token's."""
        return 1 + (len(self.target_ids) if self.per_token else 0)

    def values(self, kept: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """Values (R, K) float64 of model rows, differentiable.

        ``kept`` (R, Lmax + 1, V) are the logits from the last prompt position on; row ``r``
        continues with continuation ``cont[r]``. Column 0 is the scalariser of that
        continuation, columns ``1 + j`` (``per_token``) its value on position ``j`` alone.
        """
        out = torch.zeros((len(kept), self.n_values), dtype=torch.float64, device=kept.device)
        for c, n in enumerate(self.lengths):
            rows = (cont == c).nonzero().squeeze(1)
            if len(rows) == 0:
                continue
            logits, ids = kept[rows, :n].float(), self.conts[c, :n]
            cols = [self._call(logits, ids)]
            if self.per_token:
                cols += [self._call(logits[:, j : j + 1], ids[j : j + 1]) for j in range(n)]
            out = out.index_put((rows,), torch.stack(cols, 1))
        return out

    def _call(self, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return _checked_scores(self.scalariser, self.score(logits, ids), len(logits))

    def combine(self, values: torch.Tensor) -> torch.Tensor:
        """Scalariser values (R, K) from each continuation's (R, C, K)."""
        coefs = torch.as_tensor(self.coefs, dtype=values.dtype, device=values.device)
        return (coefs[None, :, None] * values).sum(1)


@functools.cache
def _takes_logits_to_keep(cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


class _KeptLogits(nn.Module):
    """The LM on ids (B, S) or embeddings (B, S, d): logits at the last ``keep`` positions."""

    def __init__(self, lm: LanguageModel, keep: int):
        super().__init__()
        self.model = lm.model
        self.keep = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # an all-ones attention mask: no padding (only right-padded continuations, never read)
        kwargs = {"use_cache": False,
                  "attention_mask": torch.ones(x.shape[:2], dtype=torch.long, device=x.device)}
        if _takes_logits_to_keep(type(self.model)):
            kwargs["logits_to_keep"] = self.keep
        key = "inputs_embeds" if x.is_floating_point() else "input_ids"
        return self.model(**{key: x}, **kwargs).logits[:, -self.keep:]


# -- the explainers -----------------------------------------------------------------------------
class TextExplainer(Explainer):
    """Base of the ``text`` explainers: prompt and target handling, scalarisers, batching.

    Parameters
    ----------
    level : {"token", "word", "sentence"}
        Units attributed (default ``"token"``); with ``explain(..., spans=...)``, the units
        of the text between the given spans.
    scalariser : str or callable
        What is explained: ``"logprob"`` (default), ``"prob"``, ``"entropy"``,
        ``"contrastive"``, a name registered with :func:`register_scalariser`, or a callable
        ``fn(logits (R, J, V), ids (J,)) -> (R,)`` (see :mod:`xai_suite_llm.attribution`).
    per_token : bool
        Also attribute each target token's own score: ``token_attributions`` (L, U) of the
        result (default ``False``; not with ``contrastive``).
    max_new_tokens : int
        Length of the greedy continuation explained when ``target`` is ``None``.
    batch_size : "auto" or int
        Rows (perturbed prompt + continuation) per model call.
    max_memory : int or str, optional
        Memory budget for ``batch_size="auto"``.
    """

    _mixin_params: ClassVar[bool] = True  # its parameters' docs join its subclasses'
    #: Whether the baseline may be ``zero_embedding`` (the method replaces embeddings, not tokens).
    _embedding_baseline: ClassVar[bool] = False

    level: str = "token"
    scalariser: str | Scalariser = "logprob"
    per_token: bool = False
    max_new_tokens: int = 1
    batch_size: int | str = "auto"
    max_memory: int | str | None = None

    def explain(self, prompt: str, target=None, *, contrast=None, spans=None) -> TextExplanation:
        """Attribute the scalariser of ``target`` to the units of ``prompt``.

        Parameters
        ----------
        prompt : str
            A non-empty prompt.
        target : str, sequence of int or None
            The continuation to explain (text, as it follows the prompt, e.g. ``" Paris"``, or
            token ids); ``None`` takes the model's greedy continuation of ``max_new_tokens``.
        contrast : str or sequence of int, optional
            The other continuation of the ``contrastive`` scalariser (required by it, refused
            by the others).
        spans : sequence of (int, int) or str, optional
            Units given by hand: character spans ``(start, end)`` of the prompt or phrases
            found in it (each must occur once), disjoint and on token edges; the text between
            them is cut into units at ``level``. The result's ``level`` is ``"span"`` (see
            :func:`~xai_suite_llm.segments.segment_spans`).

        Returns
        -------
        TextExplanation
        """
        return self._explain(prompt, target, contrast=contrast, spans=spans)

    @contextlib.contextmanager
    def _begin(self, prompt, target, *, contrast, spans) -> Iterator[_Prepared]:
        yield self._prepare(prompt, target, contrast, spans)

    def _compute(self, prep: _Prepared) -> tuple:
        if prep.spans is None:
            return self._explain_units(prep, segment(prep.enc, self.level), self.level, None, {})
        return self._explain_units(prep, segment_spans(prep.enc, prep.spans, self.level), "span", None, {})

    def _finish(self, prep: _Prepared, raw: tuple) -> TextExplanation:
        return self._result(prep, *raw)

    @property
    def requires_fit(self) -> bool:
        """Text explainers learn nothing from data."""
        return False

    def fit(self, X, y=None) -> TextExplainer:
        """Not used: text explainers learn nothing from data (raises ``TypeError``)."""
        raise TypeError(f"{self.info.qualified_name} learns nothing from data: call "
                        "explain(prompt, target) without fit")

    # -- preparation ----------------------------------------------------------------------
    def _baseline_id(self, lm: LanguageModel) -> int | None:
        """The baseline token's id (``None``: zero embeddings); ``pad_token`` without a baseline."""
        if not self.info.tags.needs_baseline:
            return PadToken().token_id(lm)
        b = self._baseline()
        if not isinstance(b, TextBaseline):
            raise TypeError(f"{self.info.qualified_name}: baseline must be a text baseline "
                            f"({', '.join(list_baselines('text'))}), e.g. {{'name': 'token', 'token': "
                            f"'the'}}; got {b.name!r}")
        tid = b.token_id(lm)
        if tid is None and not self._embedding_baseline:
            raise ValueError(f"{b.name!r} replaces token embeddings; removing prompt units (as "
                             f"{self.info.qualified_name} and the removal metrics do) replaces tokens: "
                             "use a token baseline (pad_token, unk_token or token)")
        return tid

    def _continuation(self, lm: LanguageModel, value, what: str) -> torch.Tensor:
        if isinstance(value, str):
            return lm.token_ids(value)
        if isinstance(value, torch.Tensor | np.ndarray | list | tuple):
            ids = torch.as_tensor(np.asarray(value))
            if ids.ndim != 1 or len(ids) == 0 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
                raise ValueError(f"{what} as token ids must be a non-empty 1-D integer sequence; "
                                 f"got shape {tuple(ids.shape)} and dtype {ids.dtype}")
            if int(ids.min()) < 0 or int(ids.max()) >= lm.vocab_size:
                raise ValueError(f"{what} token ids must lie in [0, {lm.vocab_size})")
            return ids.long()
        raise TypeError(f"{what} must be a string, a sequence of token ids or None; got "
                        f"{type(value).__name__}")

    def _prepare(self, prompt, target, contrast, spans=None) -> _Prepared:
        lm = check_language_model(self.model, self.info.qualified_name)
        name, score = _resolve_scalariser(self.scalariser)
        check_level(self.level)
        check_bool(per_token=self.per_token)
        if self.per_token and self.scalariser == CONTRASTIVE:
            raise ValueError("per_token=True attributes each target token's own score; the contrastive "
                             "scalariser compares two continuations: explain the target "
                             "and the contrast with scalariser='logprob' and subtract their rows")
        check_positive_int(max_new_tokens=self.max_new_tokens)
        check_batch_size(self.batch_size)
        check_random_state(self._shared("random_state"))
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string; got {prompt!r}")
        if self.scalariser == "contrastive" and contrast is None:
            raise ValueError("scalariser='contrastive' explains logprob(target) - "
                             "logprob(contrast): pass contrast= to explain")
        if self.scalariser != "contrastive" and contrast is not None:
            raise ValueError(f"contrast is only used with scalariser='contrastive' (this "
                             f"explainer's scalariser is {self.scalariser!r})")
        enc = lm.encode(prompt)
        if len(enc.ids) == 0:
            raise ValueError(f"prompt {prompt!r} tokenises to no tokens")
        if spans is not None:
            segment_spans(enc, spans, self.level)  # bad spans fail before any model row
        baseline_id = self._baseline_id(lm)
        max_pos = getattr(lm.model.config, "max_position_embeddings", None)
        if target is None:
            if max_pos is not None and len(enc.ids) + self.max_new_tokens > max_pos:
                raise ValueError(f"the prompt ({len(enc.ids)} tokens) and max_new_tokens="
                                 f"{self.max_new_tokens} exceed the model's {max_pos} positions")
            target_ids = lm.generate(enc.ids, self.max_new_tokens)
        else:
            target_ids = self._continuation(lm, target, "target")
        conts = [target_ids, *([] if contrast is None else [self._continuation(lm, contrast, "contrast")])]
        lengths = [len(c) for c in conts]
        lmax = max(lengths)
        if max_pos is not None and len(enc.ids) + lmax > max_pos:
            raise ValueError(f"the prompt ({len(enc.ids)} tokens) and its continuation ({lmax}) "
                             f"exceed the model's {max_pos} positions")
        padded = nn.utils.rnn.pad_sequence(conts, batch_first=True)  # right padding is never read
        dev = lm.device
        return _Prepared(
            lm=lm, enc=enc, ids=enc.ids.to(dev), target_ids=target_ids,
            target=lm.decode(target_ids) if not isinstance(target, str) else target,
            contrast=None if contrast is None else (
                contrast if isinstance(contrast, str) else lm.decode(conts[1])),
            conts=padded.to(dev), lengths=lengths,
            coefs=np.array([1.0, -1.0][: len(conts)]), scalariser=name, score=score,
            per_token=self.per_token, baseline_id=baseline_id, spans=spans,
        )

    def _resolve_rows(self, prep: _Prepared, sample: torch.Tensor) -> int:
        """Rows per model call: ``batch_size``, or for ``"auto"`` from a probe of the model."""
        return self._chunk_rows(_KeptLogits(prep.lm, prep.keep), sample, prep.lm.device,
                                key=prep.lm.model)

    def _result(self, prep: _Prepared, units: Sequence[Unit], level: str, values: np.ndarray,
                score: np.ndarray, delta: float | None, resolved: dict) -> TextExplanation:
        params = self._recorded_params(prep.rows, {
            "scalariser": prep.scalariser, "baseline_token_id": prep.baseline_id,
            "n_units": len(units), "unit_levels": [u.level for u in units], **resolved})
        values, score = np.asarray(values, dtype=np.float64), np.asarray(score, dtype=np.float64)
        target_ids = prep.target_ids.cpu().numpy().astype(np.int64)
        return TextExplanation(
            prompt=prep.enc.text, target=prep.target, contrast=prep.contrast, target_ids=target_ids,
            units=[u.text for u in units], spans=[(u.start, u.end) for u in units],
            unit_tokens=[u.tokens for u in units], level=level,
            attributions=np.ascontiguousarray(values[:, 0]), score=float(score[0]), params=params,
            method=self.info.qualified_name, convergence_delta=None if delta is None else float(delta),
            target_tokens=[prep.lm.decode([t]) for t in target_ids],
            token_attributions=values[:, 1:].T.copy() if prep.per_token else None,
            token_scores=score[1:].copy() if prep.per_token else None,
        )

    def _explain_units(self, prep: _Prepared, units: list[Unit], level: str, evaluator,
                       extra: dict) -> tuple:
        """``(units, level, values (U, K), score (K,), delta, resolved)``: what :meth:`_result`
        takes; column 0 is the scalariser's, columns ``1 + j`` (``per_token``) target token
        ``j``'s."""
        raise NotImplementedError


class _Evaluator:
    """Scalariser values of perturbed prompts, batched and cached by token-presence pattern.

    ``presence`` rows (P, T) say which prompt tokens are kept (the others become the
    baseline token). Distinct uncached patterns are run as rows of one id matrix, prompt and
    continuation in one sequence, ``prep.rows`` rows per model call. Each pattern's values
    (K,) are the scalariser and (``per_token``) each target token's, from the same forward.
    """

    def __init__(self, explainer: TextExplainer, prep: _Prepared):
        self.prep = prep
        self.cache: dict[bytes, np.ndarray] = {}
        self.model_rows = 0
        self.explainer = explainer

    def __call__(self, presence: np.ndarray) -> np.ndarray:
        """Values (P, K) of presence rows (P, T)."""
        presence = np.asarray(presence, dtype=bool)
        uniq, inv = np.unique(presence, axis=0, return_inverse=True)
        keys = [np.packbits(row).tobytes() + bytes([len(row) % 8]) for row in uniq]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            self.cache.update(zip([keys[i] for i in todo], self._run(uniq[todo]), strict=True))
        return np.stack([self.cache[k] for k in keys])[inv.reshape(-1)]

    def _run(self, presence: np.ndarray) -> np.ndarray:
        p = self.prep
        ids = torch.where(torch.as_tensor(presence, device=p.ids.device), p.ids, p.baseline_id)  # (P, T)
        self.model_rows += len(ids) * p.conts.shape[0]
        return prompt_values(self.explainer, p, ids)


def prompt_values(explainer: TextExplainer, p: _Prepared, ids: torch.Tensor,
                  desc: str = "text perturbations") -> np.ndarray:
    """Values (P, K) of prompts ``ids`` (P, T') followed by each of ``p``'s continuations.

    Column 0 is the scalariser, columns ``1 + j`` (``per_token``) each target token's. Every
    (prompt, continuation) pair is one row of an id matrix, ``p.rows`` rows per model call
    (resolved on the first rows when still 0).
    """
    dev = ids.device
    n_cont = p.conts.shape[0]
    if p.rows == 0:
        first = torch.arange(min(4, len(ids) * n_cont), device=dev)
        p.rows = explainer._resolve_rows(p, torch.cat([ids[first // n_cont], p.conts[first % n_cont]], dim=1))
    # rows: prompt-major, then continuation
    forward, total = _KeptLogits(p.lm, p.keep), len(ids) * n_cont
    out = torch.empty((total, p.n_values), dtype=torch.float64)
    with torch.no_grad():
        for sl in chunks(total, p.rows, desc):
            idx = torch.arange(sl.start, sl.stop, device=dev)
            r, c = idx // n_cont, idx % n_cont
            out[sl] = p.values(forward(torch.cat([ids[r], p.conts[c]], dim=1)), c).cpu()
    return p.combine(out.view(len(ids), n_cont, -1)).numpy()


class _UnitView:
    """One prompt's units for the removal metrics: scalariser values with units absent.

    The removal view of :mod:`xai_suite.metrics.faithfulness` (``n``, ``attributions``,
    ``fx``, ``outputs``, ``generators``), with the units as its elements.

    Parameters
    ----------
    evaluator : _Evaluator
    unit_tokens : sequence of sequence of int, length U
        Each unit's prompt tokens; a token is in one unit at most (tokens of no unit are
        never removed).
    attributions : numpy.ndarray, shape (U,), optional
        The units' attributions (``None`` while an explainer computes them).
    """

    n = 1

    def __init__(self, evaluator: _Evaluator, unit_tokens, attributions: np.ndarray | None = None):
        self.evaluator = evaluator
        n_tokens = len(evaluator.prep.ids)
        self.unit_of = np.full(n_tokens, -1, dtype=np.int64)
        counts = np.zeros(n_tokens, dtype=np.int64)
        for i, tokens in enumerate(unit_tokens):
            tokens = list(tokens)
            if any(not 0 <= t < n_tokens for t in tokens):
                raise ValueError(f"unit {i}'s tokens {tokens} lie outside the prompt's {n_tokens} tokens")
            self.unit_of[tokens] = i
            np.add.at(counts, tokens, 1)
        if (counts > 1).any():
            raise ValueError(f"a prompt token may be in one unit only (unit_tokens); tokens "
                             f"{np.flatnonzero(counts > 1).tolist()} are in {counts[counts > 1].tolist()}")
        self.covered = self.unit_of >= 0
        if attributions is not None:
            self.attributions = np.asarray(attributions, dtype=np.float64).reshape(1, len(unit_tokens))

    @functools.cached_property
    def fx(self) -> np.ndarray:
        """The unperturbed prompt's value (1,)."""
        return self.evaluator(np.ones((1, len(self.unit_of)), dtype=bool))[:, 0]

    def values(self, present) -> np.ndarray:
        """Values (M, K) for unit-presence rows ``present`` (M, U): the scalariser, then (``per_token``)
        each target token's."""
        present = np.asarray(present, dtype=bool)
        tokens = np.ones((len(present), len(self.unit_of)), dtype=bool)  # tokens of no unit stay
        tokens[:, self.covered] = present[:, self.unit_of[self.covered]]
        return self.evaluator(tokens)

    def outputs(self, inst, present) -> np.ndarray:
        """Values (M,) of the scalariser for unit-presence rows ``present`` (M, U) of instance 0."""
        return self.values(present)[:, 0]

    def generators(self, random_state) -> list[np.random.Generator]:
        """One generator, seeded by ``random_state`` and the prompt's token ids."""
        return instance_generators(self.evaluator.prep.ids.cpu().numpy()[None], random_state)


class TextPerturbationExplainer(TextExplainer):
    """Perturbation explainers of text: units replaced by a baseline token, batched.

    Parameters
    ----------
    baseline : str, dict or TextBaseline
        A text baseline: the token that replaces removed tokens (default ``"pad_token"``,
        see :mod:`xai_suite_llm.baselines`).
    """

    _mixin_params: ClassVar[bool] = True
    family = "perturbation"

    baseline: BaselineSpec = "pad_token"

    def _attribute_units(self, game: Callable[[np.ndarray], np.ndarray], n_units: int,
                         score: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, dict]:
        """Unit attributions (U, K) from ``game(masks (P, U) bool) -> values (P, K)``.

        ``score`` and ``null`` (K,) are the values with every unit present and with none;
        column 0 is the scalariser's, the others (``per_token``) each target token's, all
        attributed with the same masks (the methods are linear in the values).
        """
        raise NotImplementedError

    def _known_masks(self, n_units: int) -> np.ndarray | None:
        """Masks (P, U) that :meth:`_attribute_units` will ask for, known before it runs: they
        go through the model in the same calls as the full and empty prompts (cached)."""
        return None

    def _explain_units(self, prep, units, level, evaluator, extra) -> tuple:
        ev = evaluator or _Evaluator(self, prep)
        rows_before = ev.model_rows
        game = _UnitView(ev, [u.tokens for u in units]).values
        ends = np.array([[True], [False]]).repeat(len(units), axis=1)
        known = self._known_masks(len(units))
        score, null = game(ends if known is None else np.concatenate([ends, known]))[:2]
        values, resolved = self._attribute_units(game, len(units), score, null)
        delta = (float(values[:, 0].sum() - (score[0] - null[0])) if self.info.tags.has_convergence_delta
                 else None)
        resolved = {**resolved, **extra, "baseline_score": float(null[0]),
                    "model_rows": ev.model_rows - rows_before}
        return units, level, values, score, delta, resolved

    def explain_hierarchical(self, prompt: str, target=None, *, contrast=None,
                             levels: Sequence[str] = ("sentence", "word", "token"),
                             top_k: int = 1) -> list[TextExplanation]:
        """Attribute coarse units first, then refine the most important ones level by level.

        At each level after the first, the ``top_k`` units with the largest absolute
        attribution among those the previous level introduced are split into the units of
        the next level; every other unit stays whole (perturbing a fine unit leaves the rest
        of the prompt, coarse units included, as it is). A level whose units are the
        previous level's (a one-token word refined into its token) is not recomputed. Model
        rows are cached across levels by the prompt tokens they keep, so the unperturbed and
        fully perturbed prompts run once.

        Parameters
        ----------
        prompt, target, contrast
            As for :meth:`explain`.
        levels : sequence of str
            From coarse to fine, e.g. ``("sentence", "word", "token")``; the ``level``
            hyper-parameter is not used here.
        top_k : int
            Units refined at each step.

        Returns
        -------
        list of TextExplanation
            One per level; ``params["model_rows"]`` counts the rows that level ran,
            ``params["refined"]`` the positions (in the previous level's units) refined.
        """
        levels = tuple(levels)
        if not levels:
            raise ValueError("levels must name at least one level")
        order = [LEVELS.index(check_level(lev)) for lev in levels]
        if any(a <= b for a, b in itertools.pairwise(order)):
            raise ValueError(f"levels must go from coarse to fine without repeats (sentence, word, "
                             f"token); got {levels}")
        check_positive_int(top_k=top_k)
        prep = self._prepare(prompt, target, contrast)
        ev = _Evaluator(self, prep)
        units = segment(prep.enc, levels[0])
        newest = list(range(len(units)))
        common = {"levels": list(levels), "top_k": top_k}
        results = [self._result(prep, *self._explain_units(prep, units, levels[0], ev,
                                                           {**common, "refined": []}))]
        for lev in levels[1:]:
            prev = results[-1]
            chosen = sorted(newest, key=lambda i: (-abs(prev.attributions[i]), i))[:top_k]
            finer = segment(prep.enc, lev)
            new_units = refine(units, chosen, finer)
            chosen_tokens = {t for i in chosen for t in units[i].tokens}
            newest = [j for j, u in enumerate(new_units) if set(u.tokens) <= chosen_tokens]
            extra = {**common, "refined": sorted(chosen)}
            if [u.tokens for u in new_units] == [u.tokens for u in units]:
                params = {**prev.params, **extra, "model_rows": 0,
                          "unit_levels": [u.level for u in new_units]}
                results.append(replace(prev, level=lev, params=params))
            else:
                results.append(self._result(prep, *self._explain_units(prep, new_units, lev, ev, extra)))
            units = new_units
        return results


@register_explainer(
    "text_ablation", library="native", family="perturbation", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True, recommended=True,
    summary="Occlusion of prompt units (tokens, words, sentences) by a baseline token, batched",
    reference="Zeiler & Fergus (2014); Captum's LLMAttribution(FeatureAblation)",
)
class TextAblation(TextPerturbationExplainer):
    """Each unit replaced by the baseline token, one at a time: ``f(x) - f(x without unit)``.

    Equals Captum's ``LLMAttribution(FeatureAblation(model), tokenizer)`` with
    ``TextTokenInput(prompt, tokenizer, baselines=<baseline token id>)`` at token level.

    Parameters
    ----------
    model : LanguageModel
    """

    def _known_masks(self, n_units):
        return ~np.eye(n_units, dtype=bool)

    def _attribute_units(self, game, n_units, score, null):
        return score - game(self._known_masks(n_units)), {}


@register_explainer(
    "text_shapley_sampling", library="native", family="perturbation", modalities=TEXT,
    model_kinds=HF, requires=REQUIRES, needs_baseline=True, stochastic=True, batch_invariant=True,
    has_convergence_delta=True, recommended=True,
    summary="Shapley values of prompt units by permutation sampling, all rows batched",
    reference="Castro, Gomez & Tejada (2009), Polynomial calculation of the Shapley value "
    "based on sampling; Strumbelj & Kononenko (2010)",
    notes="Efficient by construction: each permutation's marginal contributions sum to "
    "f(x) - f(baseline prompt).",
)
class TextShapleySampling(TextPerturbationExplainer, Seeded):
    """Shapley values of the units, averaged over random permutations (as Captum's ShapleyValueSampling).

    Each permutation adds the units one by one to the all-baseline prompt; a unit's value is
    the mean change of the scalariser when it is added. The rows of all permutations run in
    one batched pass (identical coalitions, such as the empty and the full one, once).

    Parameters
    ----------
    model : LanguageModel
    n_samples : int
        Permutations (each costs ``U + 1`` rows, fewer after removing repeats).
    """

    n_samples: int = 25

    def _attribute_units(self, game, n_units, score, null):
        check_positive_int(n_samples=self.n_samples)
        rng = np.random.default_rng(self.random_state)
        perms = np.stack([rng.permutation(n_units) for _ in range(self.n_samples)])  # (n, U)
        rank = np.argsort(perms, axis=1)  # rank[p, u]: position of unit u in permutation p
        masks = rank[:, None, :] < np.arange(n_units + 1)[None, :, None]  # (n, U + 1, U): first k present
        v = game(masks.reshape(-1, n_units)).reshape(self.n_samples, n_units + 1, -1)
        gains = np.diff(v, axis=1)  # (n, U, K): gain of adding perms[p, j]
        values = np.zeros((n_units, v.shape[-1]))
        np.add.at(values, perms.reshape(-1), gains.reshape(-1, v.shape[-1]))
        return values / self.n_samples, {"n_samples_used": int(self.n_samples)}


@register_explainer(
    "text_kernel_shap", library="native", family="perturbation", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True, stochastic=True, batch_invariant=True, has_convergence_delta=True,
    recommended=True,
    summary="KernelSHAP over prompt units with shap's coalitions and weights, rows batched",
    reference="Lundberg & Lee (2017), A Unified Approach to Interpreting Model Predictions",
    notes="Exact Shapley values when every coalition is enumerated (n_samples='all' or "
    ">= 2^U - 2); random only while coalitions are sampled.",
)
class TextKernelShap(TextPerturbationExplainer, Seeded):
    """KernelSHAP over the units: absent units are the baseline token.

    Coalitions and weights are shap.KernelExplainer's
    (:func:`xai_suite.methods.native.kernel_shap.kernel_coalitions`), the regression its
    efficiency-constrained weighted least squares
    (:func:`~xai_suite.methods.native.kernel_shap.solve_kernel_shap`): the values sum to
    ``f(x) - f(baseline prompt)``.

    Parameters
    ----------
    model : LanguageModel
    n_samples : "auto", "all" or int
        Coalitions (shap's ``nsamples``): ``"auto"`` is ``2 U + 2048``; ``"all"`` (or an
        int ``>= 2^U - 2``) enumerates every coalition: exact Shapley values (at most 22 units).
    """

    n_samples: int | str = "auto"

    def _attribute_units(self, game, n_units, score, null):
        if n_units == 1:
            return (score - null)[None, :], {"n_samples_used": 0, "exact": True}
        c = kernel_coalitions(n_units, self.n_samples, self.random_state)
        values = solve_kernel_shap(c, game(c.masks > 0.5).T, score, null).T
        return values, {"n_samples_used": len(c.weights), "exact": bool(c.exact)}


@register_explainer(
    "text_lime", library="native", family="surrogate", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True, stochastic=True, batch_invariant=True, recommended=True,
    summary="LIME over prompt units: random unit masks, cosine-distance kernel, weighted ridge",
    reference="Ribeiro, Singh & Guestrin (2016), Why Should I Trust You?",
)
class TextLime(TextPerturbationExplainer, Seeded):
    """LIME over the units, sampled as ``lime.lime_text.LimeTextExplainer`` samples words.

    The first sample is the prompt itself; every other one removes ``k`` units chosen at
    random, ``k`` uniform in ``1..U``. A sample's weight is ``sqrt(exp(-d^2 / width^2))``
    with ``d`` 100 times the cosine distance between its binary mask and the all-ones mask
    (LIME's text kernel); the attributions are the coefficients of a weighted ridge
    regression of the scalariser on the masks, with an intercept. Unlike LIME no feature
    selection is done: every unit gets a coefficient.

    Parameters
    ----------
    model : LanguageModel
    n_samples : int
        Masks drawn (LIME's default is 5000; ours is 500, each one a model row).
    kernel_width : float
        LIME's text kernel width (25).
    alpha : float
        Ridge penalty (1.0, as LIME's ``Ridge(alpha=1)``).
    """

    n_samples: int = 500
    kernel_width: float = 25.0
    alpha: float = 1.0

    def _attribute_units(self, game, n_units, score, null):
        check_positive_int(n_samples=self.n_samples)
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 for LIME's regression; got {self.n_samples}")
        for name in ("kernel_width", "alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v < 0 \
                    or (name == "kernel_width" and v == 0):
                raise ValueError(f"{name} must be a finite number > 0 (alpha >= 0); got {v!r}")
        rng = np.random.default_rng(self.random_state)
        masks = np.ones((self.n_samples, n_units), dtype=bool)
        sizes = rng.integers(1, n_units + 1, size=self.n_samples - 1)
        for i, k in enumerate(sizes, start=1):
            masks[i, rng.choice(n_units, size=k, replace=False)] = False
        distance = (1.0 - np.sqrt(masks.sum(1) / n_units)) * 100.0  # cosine distance to all-ones
        w = np.sqrt(np.exp(-(distance**2) / self.kernel_width**2))
        coef, intercept, r2 = weighted_ridge(masks.astype(np.float64), game(masks), w, self.alpha)
        return coef, {"intercept": float(intercept[0]), "surrogate_r2": float(r2[0])}


def weighted_ridge(X: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float
                   ) -> tuple[np.ndarray, float | np.ndarray, float | np.ndarray]:
    """Weighted ridge regression with an unpenalised intercept (as scikit-learn's ``Ridge``).

    Parameters
    ----------
    X : numpy.ndarray, shape (S, U)
    y : numpy.ndarray, shape (S,) or (S, K)
        Targets (``K`` columns fitted at once, each on its own).
    w : numpy.ndarray, shape (S,)
        Sample weights (>= 0).
    alpha : float

    Returns
    -------
    coef : numpy.ndarray, shape (U,) or (U, K)
    intercept : float or numpy.ndarray, shape (K,)
    r2 : float or numpy.ndarray, shape (K,)
        Weighted coefficient of determination of the fit (1 where ``y`` is constant).
    """
    sw = w / w.sum()
    xm, ym = sw @ X, sw @ y
    Xc, yc = X - xm, y - ym
    A = (w[:, None] * Xc).T @ Xc + alpha * np.eye(X.shape[1])
    coef = np.linalg.lstsq(A, (w[:, None] * Xc).T @ yc, rcond=None)[0]
    intercept = ym - xm @ coef
    resid = y - X @ coef - intercept
    ss_tot, ss_res = w @ yc**2, w @ resid**2
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 1.0)
    if np.ndim(y) == 1:
        return coef, float(intercept), float(r2)
    return coef, intercept, r2


# -- gradient explainers ------------------------------------------------------------------------
def _column_grads(out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Gradients (K, *z.shape) of each column's sum of ``out`` (k, K) with respect to ``z``:
    one backward pass per column through the one forward pass that gave ``out``."""
    cols = out.sum(0)
    return torch.stack([torch.autograd.grad(cols[c], z, retain_graph=c < len(cols) - 1)[0]
                        for c in range(len(cols))])


class TextGradientExplainer(TextExplainer):
    """Gradients with respect to the prompt's token embeddings (continuation embeddings kept).

    Parameters
    ----------
    aggregate : {"sum", "mean", "max", "absmax"}
        How a unit of several tokens (a word, a sentence, a span) combines its tokens'
        attributions: their sum (default; the only one under which unit attributions keep
        completeness), mean, maximum, or the signed value of largest magnitude. Perturbation
        explainers have no such parameter: they remove a unit's tokens together.
    """

    _mixin_params: ClassVar[bool] = True
    family = "gradient"

    aggregate: str = "sum"

    def _embeddings(self, prep: _Prepared) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings (T, d) and continuation embeddings (C, Lmax, d), detached."""
        with torch.no_grad():
            return prep.lm.embed(prep.ids).detach(), prep.lm.embed(prep.conts).detach()

    def _scores(self, prep: _Prepared, z: torch.Tensor, cont_emb: torch.Tensor) -> torch.Tensor:
        """Values (k, K) for prompt embeddings ``z`` (k, T, d), differentiable: the scalariser,
        then (``per_token``) each target token's."""
        k, n_cont = z.shape[0], cont_emb.shape[0]
        rows = torch.cat([z.unsqueeze(1).expand(-1, n_cont, -1, -1),
                          cont_emb.unsqueeze(0).expand(k, -1, -1, -1)], dim=2)
        rows = rows.reshape(k * n_cont, -1, z.shape[-1])
        cont = torch.arange(n_cont, device=z.device).repeat(k)
        values = prep.values(_KeptLogits(prep.lm, prep.keep)(rows), cont)
        return prep.combine(values.view(k, n_cont, -1))

    def _path_rows(self, prep: _Prepared, e: torch.Tensor, cont_emb: torch.Tensor) -> int:
        sample = torch.cat([e.unsqueeze(0), cont_emb[:1]], dim=1)
        prep.rows = self._resolve_rows(prep, sample)
        return max(1, prep.rows // cont_emb.shape[0])  # path points per model call

    def _explain_units(self, prep, units, level, evaluator, extra) -> tuple:
        check_choice("aggregate", self.aggregate, AGGREGATES)
        token_attr, score, delta, resolved = self._token_attributions(prep)
        aggregate = AGGREGATES[self.aggregate]
        values = np.stack([aggregate(token_attr[:, list(u.tokens)]) for u in units])
        return units, level, values, score, delta, {**resolved, **extra}

    def _token_attributions(self, prep: _Prepared) -> tuple[np.ndarray, np.ndarray, float | None, dict]:
        """``(token attributions (K, T), score (K,), delta, resolved)``; ``delta`` is the
        completeness error of the scalariser's token attributions (row 0)."""
        raise NotImplementedError


@register_explainer(
    "text_integrated_gradients", library="native", family="gradient", modalities=TEXT,
    model_kinds=HF, requires=REQUIRES, needs_baseline=True, has_convergence_delta=True,
    recommended=True,
    summary="Layer integrated gradients on the prompt's token embeddings (baseline: the "
    "baseline token's embedding, or zero_embedding), batched over the path",
    reference="Sundararajan, Taly & Yan (2017), Axiomatic Attribution for Deep Networks; "
    "Captum's LLMGradientAttribution(LayerIntegratedGradients)",
)
class TextIntegratedGradients(TextGradientExplainer):
    """Integrated gradients of the scalariser along the path from baseline to prompt embeddings.

    A token's attribution is ``sum_d (e - b)_d * integral of the gradient``; the path points
    of every step go through the model in chunks of ``batch_size`` rows. With the default
    baseline (the baseline token's embedding at every prompt position), ``n_steps`` and
    quadrature this is Captum's ``LLMGradientAttribution(LayerIntegratedGradients(model,
    embedding layer))`` with ``TextTokenInput(prompt, tokenizer, baselines=<token id>)``
    (Captum attributes each target token's log-probability separately and sums; IG is
    linear in the explained function, so that is the same thing).

    When the completeness error ``|sum(attributions) - (f(x) - f(baseline))|`` exceeds 5%
    of ``|f(x) - f(baseline)|`` it warns (:class:`CompletenessWarning`), after re-running the
    integral (the scalariser's only) at doubled step counts up to 512, and names the smallest
    count that brings the error within 5%; the attributions returned are those of ``n_steps``.

    Parameters
    ----------
    model : LanguageModel
    n_steps : int
        Integration points (50, as Captum).
    quadrature : str
        ``gausslegendre`` (Captum's default) or ``riemann_left|right|middle|trapezoid``.
    baseline : str, dict or TextBaseline
        A text baseline: the embedding the path starts from, a token's (default
        ``"pad_token"``) or ``"zero_embedding"`` (see :mod:`xai_suite_llm.baselines`).
    """

    _embedding_baseline = True

    n_steps: int = 50
    quadrature: str = "gausslegendre"
    baseline: BaselineSpec = "pad_token"

    def _token_attributions(self, prep):
        check_choice("quadrature", self.quadrature, QUADRATURES)
        check_positive_int(n_steps=self.n_steps)
        e, cont_emb = self._embeddings(prep)
        b = torch.zeros_like(e) if prep.baseline_id is None else (
            prep.lm.embed(torch.full_like(prep.ids, prep.baseline_id)).detach())
        per_call = self._path_rows(prep, e, cont_emb)
        token_attr, (fx, fb) = self._integrate(prep, e, b, cont_emb, self.n_steps, per_call, prep.n_values,
                                               ends=True)
        delta = float(token_attr[0].sum() - (fx[0] - fb[0]))
        extra_steps = self._check_completeness(prep, e, b, cont_emb, per_call, delta, float(fx[0] - fb[0]))
        return token_attr, fx, delta, {"baseline_score": float(fb[0]), "model_rows": (
            self.n_steps + 2 + extra_steps) * cont_emb.shape[0]}

    def _integrate(self, prep: _Prepared, e: torch.Tensor, b: torch.Tensor, cont_emb: torch.Tensor,
                   n_steps: int, per_call: int, columns: int, ends: bool = False):
        """Integrated gradients (columns, T) of the first ``columns`` values, ``n_steps`` points.

        With ``ends``, also the values (2, K) at ``e`` and ``b``: two extra rows of the first
        model call (which then takes two path points fewer), not a call of their own.
        """
        alphas, weights = quadrature(self.quadrature, n_steps)
        a_t, w_t = (torch.as_tensor(v, dtype=e.dtype, device=e.device) for v in (alphas, weights))
        acc = torch.zeros((columns, *e.shape), dtype=torch.float64, device=e.device)
        stops = list(range(max(1, per_call - 2) if ends else per_call, len(alphas), per_call))
        end_values = None
        for s, stop in zip([0, *stops], [*stops, len(alphas)], strict=True):
            with_ends = ends and s == 0  # the first call's first two rows are e and b
            z = b + a_t[s:stop].view(-1, 1, 1) * (e - b)
            if with_ends:
                z = torch.cat([torch.stack([e, b]), z])
            z.requires_grad_(True)
            out = self._scores(prep, z, cont_emb)
            if with_ends:
                end_values, out = out[:2].detach().cpu().numpy(), out[2:]
            acc += _column_grads(out[:, :columns] * w_t[s:stop, None], z).double().sum(1)
        attributions = ((e - b).double() * acc).sum(-1).cpu().numpy()
        return (attributions, end_values) if ends else attributions

    def _check_completeness(self, prep, e, b, cont_emb, per_call, delta: float, gap: float) -> int:
        """Warn (:class:`CompletenessWarning`) when ``|delta|`` exceeds 5% of ``|gap|`` (at least
        :data:`COMPLETENESS_ATOL`), naming the smallest doubled step count (up to
        :data:`MAX_STEPS`) that brings it within; returns the integration steps re-run."""
        bound = max(COMPLETENESS_RTOL * abs(gap), COMPLETENESS_ATOL)
        if abs(delta) <= bound:
            return 0
        steps, run, err = self.n_steps, 0, delta
        while abs(err) > bound and steps < MAX_STEPS:
            steps = min(2 * steps, MAX_STEPS)
            err = float(self._integrate(prep, e, b, cont_emb, steps, per_call, 1)[0].sum() - gap)
            run += steps
        share = f"{abs(delta) / abs(gap):.1%} of" if gap else "above"
        msg = (f"{self.info.qualified_name}: completeness error {delta:.3g} is {share} the score change "
               f"f(x) - f(baseline) = {gap:.3g} at n_steps={self.n_steps} (more than "
               f"{COMPLETENESS_RTOL:.0%}); ")
        if abs(err) <= bound:
            msg += (f"n_steps={steps} brings it to {err:.3g}, within {COMPLETENESS_RTOL:.0%} (the smallest "
                    f"count passing among n_steps doubled up to {MAX_STEPS})")
        else:
            msg += (f"n_steps={steps} still leaves {err:.3g} (counts above {MAX_STEPS} were not tried): "
                    "try another quadrature or baseline")
        warnings.warn(msg, CompletenessWarning, stacklevel=7)
        return run


@register_explainer(
    "text_gradient_x_activation", library="native", family="gradient", modalities=TEXT,
    model_kinds=HF, requires=REQUIRES, recommended=True,
    summary="Gradient x token embedding, summed over the embedding dimension",
    reference="Shrikumar et al. (2016); Captum's LLMGradientAttribution(LayerGradientXActivation)",
)
class TextGradientXActivation(TextGradientExplainer):
    """Gradient of the scalariser with respect to each prompt token's embedding, times the embedding.

    Parameters
    ----------
    model : LanguageModel
    """

    def _token_attributions(self, prep):
        e, cont_emb = self._embeddings(prep)
        self._path_rows(prep, e, cont_emb)
        z = e.unsqueeze(0).clone().requires_grad_(True)
        out = self._scores(prep, z, cont_emb)
        grads = _column_grads(out, z)[:, 0]  # (K, T, d)
        token_attr = (grads.double() * e.double()).sum(-1).cpu().numpy()
        return token_attr, out.detach()[0].cpu().numpy(), None, {"model_rows": cont_emb.shape[0]}
