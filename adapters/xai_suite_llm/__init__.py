"""LLM adapter: Hugging Face causal LMs (``transformers``, the ``llm`` extra), loaded locally.

Announced through the ``xai_suite.adapters`` entry point. :class:`LanguageModel` wraps a
model and its tokenizer and exposes TransformerLens-style hook points; the ``text``
explainers take it as their model: attribution of a continuation to the prompt's tokens,
words or sentences (``native:text_ablation``, ``text_shapley_sampling``, ``text_kernel_shap``,
``text_lime``, ``text_integrated_gradients``, ``text_gradient_x_activation``; multi-level with
``explain_hierarchical``; a target token x unit matrix with ``per_token=True``; scalarisers
``logprob``, ``prob``, ``entropy``, ``contrastive`` or one's own, by :func:`register_scalariser`
or as a callable; units given as spans or phrases with :func:`segment_spans`; integrated
gradients warns with a :class:`CompletenessWarning` when too few steps), and the
mechanistic ``native:logit_lens``, ``native:activation_patching``, ``native:linear_probe``,
``native:direct_logit_attribution`` (each component's and head's direct effect on a logit
difference, summing to it) and ``native:attention_pattern`` (heat maps and a head view);
:class:`ActivationCache` splits the residual stream into its parts (``decompose_resid``,
``accumulated_resid``, ``stack_head_results``, ``logit_attrs``, TransformerLens-style);
every result writes an offline HTML view with ``to_html(path)`` (:mod:`.html`). The hook
points go down to attention heads and MLP neurons (queries, keys, values, scores, pattern,
per-head results, ``resid_mid``, MLP pre/post activations) for the GPT-2, GPT-Neo, GPT-J,
LLaMA/Mistral/Qwen, Gemma, Phi, OLMo and GPT-NeoX layouts (:mod:`.models`). :mod:`.tiny`
builds a tiny GPT-2 (``make_tiny_gpt2``) or LLaMA (``make_tiny_llama``) from a config and
trains it in seconds on a task whose answer is one known prompt token.
"""

from . import testing  # noqa: F401 (registers the text entries' conformance problems)
from .attribution import (
    SCALARISERS,
    CompletenessWarning,
    TextAblation,
    TextExplanation,
    TextGradientXActivation,
    TextIntegratedGradients,
    TextKernelShap,
    TextLime,
    TextShapleySampling,
    register_scalariser,
)
from .cache import (
    ActivationCache,
    AttentionPattern,
    AttentionResult,
    DirectLogitAttribution,
    DirectLogitAttributionExplainer,
    plot_attention,
)
from .captum_llm import (
    CaptumTextFeatureAblation,
    CaptumTextGradientXActivation,
    CaptumTextIntegratedGradients,
    CaptumTextKernelShap,
    CaptumTextLime,
    CaptumTextShapleySampling,
    CaptumTextShapleyValues,
)
from .contrastive import CellEdits, PromptEdits
from .highlighter import AFFIRMATION, TokenHighlighter
from .html import text_levels_html
from .lens import LogitLens, LogitLensResult
from .models import Encoding, LanguageModel
from .patching import ActivationPatching, PatchingResult, patch_all
from .probing import LinearProbe, ProbingResult
from .sae import FeatureActivations, SparseAutoencoder, TopContexts, load_saelens
from .segments import LEVELS, Unit, segment, segment_spans
from .steering import ablation_hooks, addition_hooks, chain_hooks, difference_of_means, hook_activations
from .tiny import (
    KEY_POSITION,
    make_key_prompts,
    make_tiny_gpt2,
    make_tiny_llama,
    make_tiny_tokenizer,
    train_key_model,
)
from .tuned_lens import TunedLens, TunedLensExplainer, kl_to_final

__all__ = [
    "AFFIRMATION",
    "KEY_POSITION",
    "LEVELS",
    "SCALARISERS",
    "ActivationCache",
    "ActivationPatching",
    "AttentionPattern",
    "AttentionResult",
    "CaptumTextFeatureAblation",
    "CaptumTextGradientXActivation",
    "CaptumTextIntegratedGradients",
    "CaptumTextKernelShap",
    "CaptumTextLime",
    "CaptumTextShapleySampling",
    "CaptumTextShapleyValues",
    "CellEdits",
    "CompletenessWarning",
    "DirectLogitAttribution",
    "DirectLogitAttributionExplainer",
    "Encoding",
    "FeatureActivations",
    "LanguageModel",
    "LinearProbe",
    "LogitLens",
    "LogitLensResult",
    "PatchingResult",
    "ProbingResult",
    "PromptEdits",
    "SparseAutoencoder",
    "TextAblation",
    "TextExplanation",
    "TextGradientXActivation",
    "TextIntegratedGradients",
    "TextKernelShap",
    "TextLime",
    "TextShapleySampling",
    "TokenHighlighter",
    "TopContexts",
    "TunedLens",
    "TunedLensExplainer",
    "Unit",
    "ablation_hooks",
    "addition_hooks",
    "chain_hooks",
    "difference_of_means",
    "hook_activations",
    "kl_to_final",
    "load_saelens",
    "make_key_prompts",
    "make_tiny_gpt2",
    "make_tiny_llama",
    "make_tiny_tokenizer",
    "patch_all",
    "plot_attention",
    "register_scalariser",
    "segment",
    "segment_spans",
    "text_levels_html",
    "train_key_model",
]
