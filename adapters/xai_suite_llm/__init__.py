"""LLM adapter: Hugging Face causal LMs (``transformers``, the ``llm`` extra), loaded locally.

Announced through the ``xai_suite.adapters`` entry point. :class:`LanguageModel` wraps a
model and its tokenizer and exposes TransformerLens-style hook points; the ``text``
explainers take it as their model: attribution of a continuation to the prompt's tokens,
words or sentences (``native:text_ablation``, ``text_shapley_sampling``, ``text_kernel_shap``,
``text_lime``, ``text_integrated_gradients``, ``text_gradient_x_activation``; multi-level with
``explain_hierarchical``); Captum's LLM wrappers as ``captum:llm_*`` entries
(:mod:`.captum_llm`: ``llm_feature_ablation``, ``llm_shapley_value_sampling``,
``llm_shapley_values``, ``llm_lime``, ``llm_kernel_shap``, ``llm_integrated_gradients``,
``llm_gradient_x_activation``); CELL-style contrastive prompt edits (``native:cell``,
:mod:`.contrastive`) and Token Highlighter's jailbreak-token scores with soft removal
(``native:token_highlighter``, :mod:`.highlighter`); and the mechanistic
``native:logit_lens``, ``native:activation_patching`` and ``native:linear_probe``. Every
result writes an offline HTML view with ``to_html(path)`` (:mod:`.html`). :mod:`.tiny` builds
a tiny GPT-2 from a config and trains it in seconds on a task whose answer is one known
prompt token.
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
from .segments import LEVELS, Unit, segment
from .tiny import KEY_POSITION, make_key_prompts, make_tiny_gpt2, make_tiny_tokenizer, train_key_model

__all__ = [
    "AFFIRMATION",
    "KEY_POSITION",
    "LEVELS",
    "ActivationPatching",
    "CaptumTextFeatureAblation",
    "CaptumTextGradientXActivation",
    "CaptumTextIntegratedGradients",
    "CaptumTextKernelShap",
    "CaptumTextLime",
    "CaptumTextShapleySampling",
    "CaptumTextShapleyValues",
    "CellEdits",
    "Encoding",
    "LanguageModel",
    "LinearProbe",
    "LogitLens",
    "LogitLensResult",
    "PatchingResult",
    "ProbingResult",
    "PromptEdits",
    "TextAblation",
    "TextExplanation",
    "TextGradientXActivation",
    "TextIntegratedGradients",
    "TextKernelShap",
    "TextLime",
    "TextShapleySampling",
    "TokenHighlighter",
    "Unit",
    "make_key_prompts",
    "make_tiny_gpt2",
    "make_tiny_tokenizer",
    "patch_all",
    "segment",
    "text_levels_html",
    "train_key_model",
]
