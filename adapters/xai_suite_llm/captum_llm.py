"""Captum's LLM attribution wrappers as ``captum:`` text entries.

Captum explains a causal LM's continuation with ``LLMAttribution`` (a perturbation method over
a ``TextTokenInput``: FeatureAblation, ShapleyValueSampling, ShapleyValues, Lime, KernelShap)
and ``LLMGradientAttribution`` (a layer gradient method on the token embedding layer:
LayerIntegratedGradients, LayerGradientXActivation). The ``captum:llm_*`` entries run those
wrappers, Captum's own code, on a :class:`~xai_suite_llm.LanguageModel` and return a
:class:`~xai_suite_llm.TextExplanation` with the native entries' units, so the two can be
compared side by side (``tests/test_llm_captum.py`` shows where they agree).

How Captum is called, and why:

- The prompt is tokenised as :meth:`LanguageModel.encode` tokenises it, without special
  tokens (``TextTokenInput`` would add the tokenizer's BOS, which the native entries neither
  feed nor attribute to): Captum gets the tokenizer through a view whose ``encode`` adds none.
- ``forward_in_tokens=False``: Captum scores the prompt and the continuation in one pass, by
  teacher forcing, as the native scalarisers do. Its default, decoding the continuation token
  by token with the KV cache, fails with transformers 5 (Captum 0.9 does not advance
  ``cache_position``: GPT-2 indexes its position embeddings out of range).
- ``LLMAttribution`` runs one perturbed prompt per model call (its forward reads row 0
  only), so its entries have no ``batch_size``; ``LLMGradientAttribution`` takes batches, and
  ``captum:llm_integrated_gradients`` maps ``batch_size`` to ``internal_batch_size``.
  ``params["model_calls"]`` and ``params["model_rows"]`` record what went through the model.
- Word and sentence units: the perturbation entries give Captum a ``feature_mask`` grouping
  each unit's tokens, so a unit is perturbed as a whole (the native entries' perturbation);
  the gradient entries sum their tokens' attributions (as the native gradient entries).
- Captum's per-generated-token matrix (``LLMAttributionResult.token_attr``, one row per
  continuation token) is kept, by unit, as the result's ``token_attributions`` (J, U), with
  ``token_scores`` each token's scalariser on the prompt (as ``per_token=True`` gives for a
  native entry); Captum computes none for Lime and KernelShap (``None`` there).
  ``attributions`` is Captum's ``seq_attr``: the attribution of the whole continuation's
  scalariser.
- Scalarisers: ``logprob`` or ``prob`` for the perturbation entries (Captum's ``attr_target``),
  ``logprob`` for the gradient ones (all Captum's gradient wrapper explains); no contrastive.
- ``random_state`` seeds torch's and numpy's global generators around the call (Captum draws
  its permutations and samples from them), restoring them after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from xai_suite.plugin import (
    QUADRATURES,
    BaselineSpec,
    Explainer,
    Seeded,
    check_batch_size,
    check_choice,
    check_positive_int,
    check_random_state,
    list_baselines,
    register_explainer,
)

from .attribution import TextAblation, TextExplanation, _Evaluator, _KeptLogits, _Prepared
from .baselines import TextBaseline
from .models import check_language_model
from .segments import Unit, check_level, segment

TEXT = ("text",)
HF = ("hf_causal_lm",)
REQUIRES = ("captum", "transformers")
CAPTUM_LLM = ("Kokhlikyan et al. (2020), Captum; Miglani et al. (2023), Using Captum to Explain "
              "Generative Language Models")
#: Our scalariser names and Captum's ``attr_target`` for each.
_ATTR_TARGET = {"logprob": "log_prob", "prob": "prob"}


class _NoSpecialTokens:
    """A tokenizer as Captum sees it: ``encode`` adds no special tokens (as ``LanguageModel.encode``)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def encode(self, text, **kwargs):
        kwargs.setdefault("add_special_tokens", False)
        return self._tokenizer.encode(text, **kwargs)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


@contextlib.contextmanager
def _seeded(random_state: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's and numpy's global generators from ``random_state`` (``None``: leave them);
    restore them afterwards."""
    if random_state is None:
        yield
        return
    np_state = np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(random_state))
        np.random.seed(int(random_state))  # noqa: NPY002
        try:
            yield
        finally:
            np.random.set_state(np_state)  # noqa: NPY002


@contextlib.contextmanager
def _counting(embedding: torch.nn.Module) -> Iterator[list[int]]:
    """``[calls, rows]``: the model's forward passes within the block, counted at its token
    embedding (Captum calls ``model.forward`` itself, which bypasses the model's own hooks)."""
    count = [0, 0]

    def hook(module, args):
        count[0] += 1
        count[1] += int(args[0].shape[0])

    handle = embedding.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


@dataclass
class _Call:
    """One explain call: the prepared prompt (the native entries' preparation) and its units."""

    prep: _Prepared
    units: list[Unit]
    evaluator: _Evaluator


class CaptumTextExplainer(Explainer):
    """Base of the ``captum:llm_*`` entries: one of Captum's LLM wrappers on a LanguageModel.

    Parameters
    ----------
    level : {"token", "word", "sentence"}
        Units attributed (default ``"token"``).
    max_new_tokens : int
        Length of the greedy continuation explained when ``target`` is ``None``.
    """

    _mixin_params: ClassVar[bool] = True
    #: The Captum attribution class wrapped (a name in ``captum.attr``).
    _captum_class: ClassVar[str]

    level: str = "token"
    max_new_tokens: int = 1

    @property
    def requires_fit(self) -> bool:
        """Text explainers learn nothing from data."""
        return False

    def fit(self, X, y=None):
        """Not used: text explainers learn nothing from data (raises ``TypeError``)."""
        raise TypeError(f"{self.info.qualified_name} learns nothing from data: call "
                        "explain(prompt, target) without fit")

    def explain(self, prompt: str, target=None, *, contrast=None) -> TextExplanation:
        """Attribute the scalariser of ``target`` to the units of ``prompt``, by Captum.

        Parameters
        ----------
        prompt : str
            A non-empty prompt.
        target : str, sequence of int or None
            The continuation (text as it follows the prompt, or token ids); ``None`` takes
            the model's greedy continuation of ``max_new_tokens`` tokens.
        contrast : None
            Refused: Captum's wrappers explain one continuation (use a native entry with
            ``scalariser="contrastive"``).

        Returns
        -------
        TextExplanation
            ``token_attributions`` (J, U), one row per continuation token, and
            ``token_scores`` (J,) (``None`` for Lime and KernelShap).
        """
        return self._explain(prompt, target, contrast=contrast)

    # -- the template ----------------------------------------------------------------------
    def _scalariser(self) -> str:
        return "logprob"

    def _baseline_spec(self):
        """The text baseline handed to the preparation (token 0 where the method takes none)."""
        return self.baseline if self.info.tags.needs_baseline else {"name": "token", "token": 0}

    @contextlib.contextmanager
    def _begin(self, prompt, target, *, contrast) -> Iterator[_Call]:
        name = self.info.qualified_name
        lm = check_language_model(self.model, name)
        scalariser = self._scalariser()
        if contrast is not None:
            raise ValueError(f"{name} explains one continuation (Captum's LLM wrappers have no "
                             "contrastive target): pass no contrast, or use a native text entry "
                             "with scalariser='contrastive'")
        check_level(self.level)
        check_random_state(self._shared("random_state"))
        if self.info.tags.needs_baseline:
            b = self._baseline()
            if not isinstance(b, TextBaseline) or b.token_id(lm) is None:
                raise ValueError(f"{name}: Captum's TextTokenInput replaces prompt tokens by one "
                                 f"token id: baseline must be a token baseline (pad_token, unk_token or "
                                 f"token; text baselines: {', '.join(list_baselines('text'))}); got "
                                 f"{b.name!r}")
        helper = TextAblation(lm, scalariser=scalariser, max_new_tokens=self.max_new_tokens,
                              baseline=self._baseline_spec(), per_token=True)
        prep = helper._prepare(prompt, target, None)
        yield _Call(prep, segment(prep.enc, self.level), _Evaluator(helper, prep))

    def _compute(self, call: _Call) -> tuple:
        from captum.attr import TextTokenInput

        prep = call.prep
        lm = prep.lm
        tok = _NoSpecialTokens(lm.tokenizer)
        inp = TextTokenInput(prep.enc.text, tok, baselines=int(prep.baseline_id))
        if not torch.equal(inp.inp_tensor[0], prep.enc.ids.cpu()):
            raise RuntimeError("Captum's TextTokenInput tokenised the prompt differently from "
                               "LanguageModel.encode")
        with _counting(lm.embed) as count:
            seq, per_token, rows, resolved = self._captum(call, inp, tok)
        full, empty = call.evaluator(np.array([[True], [False]]).repeat(len(prep.ids), axis=1))
        resolved = {**resolved, "model_calls": count[0], "model_rows": count[1]}
        return seq, per_token, full, float(empty[0]), rows, resolved

    def _captum(self, call: _Call, inp, tok) -> tuple[np.ndarray, np.ndarray | None, int, dict]:
        """Captum's ``seq_attr`` (T,), ``token_attr`` (J, T) or None, rows per call, settings."""
        raise NotImplementedError

    def _by_unit(self, values: np.ndarray, units: list[Unit]) -> np.ndarray:
        """Token attributions (..., T) as unit attributions (..., U)."""
        raise NotImplementedError

    def _finish(self, call: _Call, raw: tuple) -> TextExplanation:
        seq, per_token, full, null, rows, resolved = raw
        prep, units = call.prep, call.units
        score = float(full[0])
        values = self._by_unit(seq, units)
        delta = float(values.sum() - (score - null)) if self.info.tags.has_convergence_delta else None
        params = self._recorded_params(rows, {
            "scalariser": prep.scalariser, "baseline_token_id": prep.baseline_id,
            "n_units": len(units), "unit_levels": [u.level for u in units],
            **({"baseline_score": null} if self.info.tags.needs_baseline else {}),
            "captum_class": self._captum_class, **resolved})
        return TextExplanation(
            prompt=prep.enc.text, target=prep.target, contrast=None,
            target_ids=prep.target_ids.cpu().numpy().astype(np.int64), units=[u.text for u in units],
            spans=[(u.start, u.end) for u in units], unit_tokens=[u.tokens for u in units],
            level=self.level, attributions=np.asarray(values, dtype=np.float64), score=float(score),
            params=params, method=self.info.qualified_name, convergence_delta=delta,
            target_tokens=[prep.lm.decode([t]) for t in prep.target_ids.tolist()],
            token_attributions=None if per_token is None else self._by_unit(per_token, units),
            token_scores=None if per_token is None else full[1:].astype(np.float64))


# -- LLMAttribution: perturbation methods ---------------------------------------------------
class CaptumTextPerturbation(CaptumTextExplainer):
    """``LLMAttribution`` around a Captum perturbation method; absent tokens become the baseline token.

    Parameters
    ----------
    scalariser : {"logprob", "prob"}
        Captum's ``attr_target`` (``log_prob``, ``prob``): the continuation's log-probability
        or probability.
    baseline : str, dict or TextBaseline
        A token baseline: the token that replaces absent tokens (default ``"pad_token"``;
        Captum's ``TextTokenInput(baselines=<its id>)``).
    """

    _mixin_params: ClassVar[bool] = True
    family = "perturbation"

    scalariser: str = "logprob"
    baseline: BaselineSpec = "pad_token"

    def _scalariser(self) -> str:
        check_choice("scalariser", self.scalariser, tuple(_ATTR_TARGET))
        return self.scalariser

    def _method(self, attr, model):
        """The Captum attribution object around ``model``."""
        return getattr(attr, self._captum_class)(model)

    def _kwargs(self) -> dict:
        """Keyword arguments of the method's ``attribute`` (``n_samples``, ...)."""
        return {}

    def _captum(self, call, inp, tok):
        import captum.attr as attr

        prep = call.prep
        dev = prep.lm.device
        llm = attr.LLMAttribution(self._method(attr, prep.lm.model), tok,
                                  attr_target=_ATTR_TARGET[prep.scalariser])
        kwargs = self._kwargs()
        if self.level != "token":  # each unit's tokens form one Captum feature
            mask = torch.empty(len(prep.ids), dtype=torch.long)
            for i, u in enumerate(call.units):
                mask[list(u.tokens)] = i
            kwargs["feature_mask"] = mask.unsqueeze(0).to(dev)
        with _seeded(self._shared("random_state"), dev), torch.no_grad():
            res = llm.attribute(inp, target=prep.target_ids.to(dev), forward_in_tokens=False, **kwargs)
        per_token = None if res.token_attr is None else res.token_attr.double().cpu().numpy()
        return res.seq_attr.double().cpu().numpy(), per_token, 1, {}

    def _by_unit(self, values, units):
        # a unit's tokens share one Captum feature: each carries the unit's attribution
        return values[..., [u.tokens[0] for u in units]]


@register_explainer(
    "llm_feature_ablation", library="captum", family="perturbation", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True,
    summary="Captum's LLMAttribution(FeatureAblation): occlusion of prompt units by a baseline token",
    reference=CAPTUM_LLM,
    notes="Equals native:text_ablation with the same baseline token (to float32 rounding).",
)
class CaptumTextFeatureAblation(CaptumTextPerturbation):
    """Captum's ``LLMAttribution(FeatureAblation(model), tokenizer)``: each unit replaced in turn.

    Parameters
    ----------
    model : LanguageModel
    """

    _captum_class = "FeatureAblation"


@register_explainer(
    "llm_shapley_value_sampling", library="captum", family="perturbation", modalities=TEXT,
    model_kinds=HF, requires=REQUIRES, needs_baseline=True, stochastic=True,
    summary="Captum's LLMAttribution(ShapleyValueSampling): Shapley values of prompt units from "
    "random permutations",
    reference="Castro, Gomez & Tejada (2009); " + CAPTUM_LLM,
    notes="Efficient: the values sum to f(prompt) - f(baseline prompt) (to float32 rounding); "
    "Captum draws its permutations from torch's generator, so the numbers differ from "
    "native:text_shapley_sampling's for one seed.",
)
class CaptumTextShapleySampling(CaptumTextPerturbation, Seeded):
    """Captum's ``LLMAttribution(ShapleyValueSampling(model), tokenizer)``.

    Parameters
    ----------
    model : LanguageModel
    n_samples : int
        Random permutations (25, as Captum); each costs ``U + 1`` model calls.
    """

    _captum_class = "ShapleyValueSampling"

    n_samples: int = 25

    def _kwargs(self):
        check_positive_int(n_samples=self.n_samples)
        return {"n_samples": int(self.n_samples), "show_progress": False}


@register_explainer(
    "llm_shapley_values", library="captum", family="perturbation", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True,
    summary="Captum's LLMAttribution(ShapleyValues): exact Shapley values of prompt units, every "
    "permutation (few units only)",
    reference="Shapley (1953); " + CAPTUM_LLM,
    notes="U! permutations: meant for sentence or word level on short prompts; equals "
    "native:text_kernel_shap with n_samples='all' (exact).",
)
class CaptumTextShapleyValues(CaptumTextPerturbation):
    """Captum's ``LLMAttribution(ShapleyValues(model), tokenizer)``: exact, over every permutation.

    Parameters
    ----------
    model : LanguageModel
    level : {"sentence", "word", "token"}
        Units attributed (default ``"sentence"``: few units).
    max_units : int
        Refuse more units than this (Captum enumerates ``U!`` permutations; 8 is 40,320).
    """

    _captum_class = "ShapleyValues"

    level: str = "sentence"
    max_units: int = 8

    def _kwargs(self):
        check_positive_int(max_units=self.max_units)
        return {"show_progress": False}

    def _captum(self, call, inp, tok):
        if len(call.units) > self.max_units:
            raise ValueError(f"{self.info.qualified_name} enumerates every permutation of the units: "
                             f"{len(call.units)} {self.level} units exceed max_units={self.max_units}; "
                             "use a coarser level or captum:llm_shapley_value_sampling")
        return super()._captum(call, inp, tok)


class _CaptumTextSurrogate(CaptumTextPerturbation, Seeded):
    """Captum's Lime and KernelShap under ``LLMAttribution`` (no per-token matrix: Captum gives none).

    Parameters
    ----------
    n_samples : int
        Sampled coalitions, one model call each (Captum's defaults: 50 for Lime, 25 for
        KernelShap; ours 200, as ``captum:lime`` and ``captum:kernel_shap``).
    """

    _mixin_params: ClassVar[bool] = True
    family = "surrogate"

    n_samples: int = 200

    def _kwargs(self):
        check_positive_int(n_samples=self.n_samples)
        return {"n_samples": int(self.n_samples), "show_progress": False}


@register_explainer(
    "llm_kernel_shap", library="captum", family="surrogate", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True, stochastic=True,
    summary="Captum's LLMAttribution(KernelShap): Shapley-kernel weighted linear surrogate over "
    "prompt units",
    reference="Lundberg & Lee (2017); " + CAPTUM_LLM,
)
class CaptumTextKernelShap(_CaptumTextSurrogate):
    """Captum's ``LLMAttribution(KernelShap(model), tokenizer)``.

    Parameters
    ----------
    model : LanguageModel
    """

    _captum_class = "KernelShap"


@register_explainer(
    "llm_lime", library="captum", family="surrogate", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True, stochastic=True,
    summary="Captum's LLMAttribution(Lime): locally weighted linear surrogate over prompt units",
    reference="Ribeiro, Singh & Guestrin (2016); " + CAPTUM_LLM,
)
class CaptumTextLime(_CaptumTextSurrogate):
    """Captum's ``LLMAttribution(Lime(model, ...), tokenizer)``.

    Parameters
    ----------
    model : LanguageModel
    surrogate : {"ridge", "lasso"}
        The local linear model. Ridge by default, as ``captum:lime`` (Captum's default,
        ``Lasso(alpha=0.01)``, zeroes every coefficient on the reference prompt).
    alpha : float
        Its regularisation strength (1.0).
    kernel_width : float
        Width of the exponential kernel on cosine distance (1.0, as in Captum).
    """

    _captum_class = "Lime"

    surrogate: str = "ridge"
    alpha: float = 1.0
    kernel_width: float = 1.0

    def _method(self, attr, model):
        from captum._utils.models.linear_model import SkLearnLasso, SkLearnRidge
        from captum.attr._core.lime import get_exp_kernel_similarity_function

        models = {"ridge": SkLearnRidge, "lasso": SkLearnLasso}
        check_choice("surrogate", self.surrogate, tuple(models))
        sim = get_exp_kernel_similarity_function("cosine", float(self.kernel_width))
        return attr.Lime(model, interpretable_model=models[self.surrogate](alpha=float(self.alpha)),
                         similarity_func=sim)


# -- LLMGradientAttribution: layer gradient methods on the embedding layer -------------------
class CaptumTextGradient(CaptumTextExplainer):
    """``LLMGradientAttribution`` around a Captum layer method on the token embedding layer.

    Captum attributes each continuation token's log-probability separately (the tokens before
    it appended to the prompt) and sums the rows; a token's attribution is the sum over the
    embedding dimension, a unit's the sum over its tokens.
    """

    family = "gradient"

    def _method(self, attr, model, layer):
        return getattr(attr, self._captum_class)(model, layer)

    def _kwargs(self, call: _Call) -> tuple[dict, int]:
        """Keyword arguments of the method's ``attribute`` and the rows per model call."""
        return {}, 1

    def _captum(self, call, inp, tok):
        import captum.attr as attr

        prep = call.prep
        llm = attr.LLMGradientAttribution(self._method(attr, prep.lm.model, prep.lm.embed), tok)
        kwargs, rows = self._kwargs(call)
        res = llm.attribute(inp, target=prep.target_ids.to(prep.lm.device), **kwargs)
        return res.seq_attr.double().cpu().numpy(), res.token_attr.double().cpu().numpy(), rows, {}

    def _by_unit(self, values, units):
        return np.stack([values[..., list(u.tokens)].sum(-1) for u in units], axis=-1)


@register_explainer(
    "llm_integrated_gradients", library="captum", family="gradient", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES, needs_baseline=True, has_convergence_delta=True,
    summary="Captum's LLMGradientAttribution(LayerIntegratedGradients) on the token embeddings "
    "(path from the baseline token's embedding)",
    reference="Sundararajan, Taly & Yan (2017); " + CAPTUM_LLM,
    notes="Equals native:text_integrated_gradients with the same baseline token, n_steps and "
    "quadrature (to float32 rounding).",
)
class CaptumTextIntegratedGradients(CaptumTextGradient):
    """Captum's ``LLMGradientAttribution(LayerIntegratedGradients(model, embedding layer), tokenizer)``.

    The baseline prompt puts the baseline token at every prompt position; the path runs from
    its embeddings to the prompt's (the continuation's embeddings are the same at both ends).

    Parameters
    ----------
    model : LanguageModel
    n_steps : int
        Integration points (50, as Captum).
    quadrature : str
        Captum's ``method``: ``gausslegendre`` (Captum's default) or
        ``riemann_left|right|middle|trapezoid``.
    baseline : str, dict or TextBaseline
        A token baseline (default ``"pad_token"``): Captum's ``TextTokenInput(baselines=<id>)``.
    batch_size : "auto" or int
        Path points per model call (Captum's ``internal_batch_size``); ``"auto"`` sizes it
        from a probe of the model, within ``max_memory``.
    max_memory : int or str, optional
        Memory budget for ``batch_size="auto"``.
    """

    n_steps: int = 50
    quadrature: str = "gausslegendre"
    baseline: BaselineSpec = "pad_token"
    batch_size: int | str = "auto"
    max_memory: int | str | None = None

    _captum_class = "LayerIntegratedGradients"

    def _kwargs(self, call):
        check_positive_int(n_steps=self.n_steps)
        check_choice("quadrature", self.quadrature, QUADRATURES)
        check_batch_size(self.batch_size)
        prep = call.prep
        sample = torch.cat([prep.ids, prep.conts[0, : prep.lengths[0]]]).unsqueeze(0)
        rows = self._chunk_rows(_KeptLogits(prep.lm, prep.keep), sample, prep.lm.device,
                                key=prep.lm.model)
        return {"n_steps": int(self.n_steps), "method": self.quadrature, "internal_batch_size": rows}, rows


@register_explainer(
    "llm_gradient_x_activation", library="captum", family="gradient", modalities=TEXT, model_kinds=HF,
    requires=REQUIRES,
    summary="Captum's LLMGradientAttribution(LayerGradientXActivation): gradient x token embedding",
    reference="Shrikumar et al. (2016); " + CAPTUM_LLM,
    notes="Equals native:text_gradient_x_activation (to float32 rounding).",
)
class CaptumTextGradientXActivation(CaptumTextGradient):
    """Captum's ``LLMGradientAttribution(LayerGradientXActivation(model, embedding layer), tokenizer)``.

    Parameters
    ----------
    model : LanguageModel
    """

    _captum_class = "LayerGradientXActivation"
