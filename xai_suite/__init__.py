"""xai-suite: one registry over Captum, SHAP, LIME, TSInterpret and native batched explainers.

>>> import xai_suite as xs
>>> xs.list_explainers(modality="timeseries")          # doctest: +SKIP
>>> exp = xs.explain(model, X, method="integrated_gradients", baseline="training_mean",
...                  fit_data=X_train)                  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets
from .base import clone
from .baselines import Baseline, list_baselines, register_baseline
from .explanation import CounterfactualExplanation, Explanation, load, load_explanation
from .registry import (
    create_explainer,
    explain,
    explainer_info,
    list_explainers,
    navigation_table,
    register_explainer,
)

try:
    __version__ = version("xai-suite")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Baseline",
    "ConceptExplanation",
    "CounterfactualExplanation",
    "Explanation",
    "clone",
    "create_explainer",
    "datasets",
    "explain",
    "explainer_info",
    "list_baselines",
    "list_explainers",
    "load",
    "load_explanation",
    "navigation_table",
    "register_baseline",
    "register_explainer",
]


def __getattr__(name: str):
    if name == "ConceptExplanation":  # lives with the concept models, imported on first use
        from .concepts import ConceptExplanation

        return ConceptExplanation
    raise AttributeError(f"module 'xai_suite' has no attribute {name!r}")
