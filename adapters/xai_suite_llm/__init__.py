"""LLM adapter: Hugging Face causal LMs (``transformers``, the ``llm`` extra), loaded locally.

Announced through the ``xai_suite.adapters`` entry point. :class:`LanguageModel` wraps a
model and its tokenizer and exposes TransformerLens-style hook points; the ``text``
explainers take it as their model. :mod:`.tiny` builds a tiny GPT-2 from a config and trains
it in seconds on a task whose answer is one known prompt token.
"""

from .lens import LogitLens, LogitLensResult
from .models import Encoding, LanguageModel
from .patching import ActivationPatching, PatchingResult, patch_all
from .probing import LinearProbe, ProbingResult
from .tiny import KEY_POSITION, make_key_prompts, make_tiny_gpt2, make_tiny_tokenizer, train_key_model

__all__ = [
    "KEY_POSITION",
    "ActivationPatching",
    "Encoding",
    "LanguageModel",
    "LinearProbe",
    "LogitLens",
    "LogitLensResult",
    "PatchingResult",
    "ProbingResult",
    "make_key_prompts",
    "make_tiny_gpt2",
    "make_tiny_tokenizer",
    "patch_all",
    "train_key_model",
]
