"""Time-series adapter: aeon's UCR/UEA data, small PyTorch classifiers.

Announced through the ``xai_suite.adapters`` entry point; importing it registers its dataset
functions under ``xs.datasets``.
"""

from .datasets import load_ucr, ucr_datasets
from .models import CNN1d, fit_classifier

__all__ = ["CNN1d", "fit_classifier", "load_ucr", "ucr_datasets"]
