"""LLM adapter: Hugging Face causal LMs (``transformers``, the ``llm`` extra), loaded locally.

Announced through the ``xai_suite.adapters`` entry point. :class:`LanguageModel` wraps a
model and its tokenizer and exposes TransformerLens-style hook points; the ``text``
explainers take it as their model: attribution of a continuation to the prompt's tokens,
words or sentences (``native:text_ablation``, ``text_shapley_sampling``, ``text_kernel_shap``,
``text_lime``, ``text_integrated_gradients``, ``text_gradient_x_activation``; multi-level with
``explain_hierarchical``), and the mechanistic ``native:logit_lens``,
``native:activation_patching`` and ``native:linear_probe``; steering (:mod:`.steering`:
``addition_hooks`` and ``ablation_hooks`` along a ``difference_of_means`` direction, for
``run_with_hooks`` and ``LanguageModel.generate(..., fns=...)``) and sparse autoencoders
(:mod:`.sae`: ``SparseAutoencoder`` trained with L1 or top-k, ``load_saelens`` for SAELens
folders, ``FeatureActivations`` and ``TopContexts``); every result writes an offline HTML view
with ``to_html(path)`` (:mod:`.html`). :mod:`.tiny` builds a tiny GPT-2 from a
config and trains it in seconds on a task whose answer is one known prompt token.
"""

from . import testing  # noqa: F401 (registers the text entries' conformance problems)
from .attribution import (
    TextAblation,
    TextExplanation,
    TextGradientXActivation,
    TextIntegratedGradients,
    TextKernelShap,
    TextLime,
    TextShapleySampling,
)
from .html import text_levels_html
from .lens import LogitLens, LogitLensResult
from .models import Encoding, LanguageModel
from .patching import ActivationPatching, PatchingResult, patch_all
from .probing import LinearProbe, ProbingResult
from .sae import FeatureActivations, SparseAutoencoder, TopContexts, load_saelens
from .segments import LEVELS, Unit, segment
from .steering import ablation_hooks, addition_hooks, chain_hooks, difference_of_means, hook_activations
from .tiny import KEY_POSITION, make_key_prompts, make_tiny_gpt2, make_tiny_tokenizer, train_key_model

__all__ = [
    "KEY_POSITION",
    "LEVELS",
    "ActivationPatching",
    "Encoding",
    "FeatureActivations",
    "LanguageModel",
    "LinearProbe",
    "LogitLens",
    "LogitLensResult",
    "PatchingResult",
    "ProbingResult",
    "SparseAutoencoder",
    "TextAblation",
    "TextExplanation",
    "TextGradientXActivation",
    "TextIntegratedGradients",
    "TextKernelShap",
    "TextLime",
    "TextShapleySampling",
    "TopContexts",
    "Unit",
    "ablation_hooks",
    "addition_hooks",
    "chain_hooks",
    "difference_of_means",
    "hook_activations",
    "load_saelens",
    "make_key_prompts",
    "make_tiny_gpt2",
    "make_tiny_tokenizer",
    "patch_all",
    "segment",
    "text_levels_html",
    "train_key_model",
]
