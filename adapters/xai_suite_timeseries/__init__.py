"""Time-series adapter: aeon data and models, time-series baselines and methods.

Announced through the ``xai_suite.adapters`` entry point; importing it registers its dataset
functions under ``xs.datasets``, its baselines and its explainers (``native:`` segment
perturbation, TSR and counterfactuals; ``lime:timeseries``; ``tsinterpret:`` entries, whose
backends are imported only when one is used).
"""

from . import baselines, counterfactuals, hmm, lime_timeseries, perturbation, tsinterpret, tsr  # noqa: F401
from .datasets import load_ucr, make_planted_timeseries, ucr_datasets
from .models import FCN, CNN1d, LSTMClassifier, ResNet1d, fit_cached, fit_classifier, model_cache_dir

__all__ = [
    "FCN",
    "CNN1d",
    "LSTMClassifier",
    "ResNet1d",
    "fit_cached",
    "fit_classifier",
    "load_ucr",
    "make_planted_timeseries",
    "model_cache_dir",
    "ucr_datasets",
]
