"""LLM adapter: Hugging Face causal LMs (``transformers``, the ``llm`` extra), loaded locally.

Announced through the ``xai_suite.adapters`` entry point. :class:`LanguageModel` wraps a
model and its tokenizer and exposes TransformerLens-style hook points, down to attention
heads and MLP neurons (queries, keys, values, scores, pattern, per-head results,
``resid_mid``, MLP pre/post activations), for the GPT-2, GPT-Neo, GPT-J, LLaMA/Mistral/Qwen,
Gemma, Phi, OLMo and GPT-NeoX layouts (:mod:`.models`). On it:

- attribution of a continuation to the prompt's tokens, words, sentences or spans
  (``native:text_ablation``, ``text_shapley_sampling``, ``text_kernel_shap``, ``text_lime``,
  ``text_integrated_gradients``, ``text_gradient_x_activation``; ``explain_hierarchical``;
  a target token x unit matrix with ``per_token=True``; scalarisers by name,
  :func:`register_scalariser` or a callable; :class:`CompletenessWarning` when integrated
  gradients has too few steps), and Captum's LLM wrappers as ``captum:llm_*`` entries
  (:mod:`.captum_llm`);
- contrastive prompt edits (``native:cell``, :mod:`.contrastive`) and jailbreak-token scores
  (``native:token_highlighter``, :mod:`.highlighter`);
- the logit lens on any site and the tuned lens (``native:logit_lens``,
  ``native:tuned_lens``, :class:`TunedLens`, :func:`kl_to_final`);
- cache analysis and direct logit attribution (:mod:`.cache`, ``native:direct_logit_attribution``,
  ``native:attention_pattern``);
- activation patching of layers or heads and path patching between heads
  (``native:activation_patching``, :func:`patch_all`, :func:`path_patch`,
  :func:`path_patch_senders`), linear probes (``native:linear_probe``);
- steering (:mod:`.steering`), sparse autoencoders (:mod:`.sae`) and injection
  (:mod:`.intervention`).

Every result writes an offline HTML view with ``to_html(path)`` (:mod:`.html`). :mod:`.tiny`
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
from .patching import (
    HEAD_SITES,
    ActivationPatching,
    PatchingResult,
    patch_all,
    path_patch,
    path_patch_senders,
)
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
    "HEAD_SITES",
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
    "path_patch",
    "path_patch_senders",
    "plot_attention",
    "register_scalariser",
    "segment",
    "segment_spans",
    "text_levels_html",
    "train_key_model",
]
