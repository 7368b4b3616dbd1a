"""Tabular adapter: DataFrames, scikit-learn estimators and pipelines, categorical columns.

Announced through the ``xai_suite.adapters`` entry point; importing it registers its dataset
functions under ``xs.datasets`` (``load_tabular``, ``make_mixed_tabular``) and its explainers
(tabular counterfactuals). DataFrames go straight into ``xs.explain``; wrap a model whose
DataFrames hold categorical columns in :class:`TabularModel`.
"""

from . import counterfactuals  # noqa: F401 (registers)
from .datasets import load_tabular, make_mixed_tabular, tabular_datasets
from .frames import FrameEncoder, TabularModel, column_groups, group_attributions
from .models import MLP

__all__ = [
    "MLP",
    "FrameEncoder",
    "TabularModel",
    "column_groups",
    "group_attributions",
    "load_tabular",
    "make_mixed_tabular",
    "tabular_datasets",
]
