"""Metrics for explanations, with the statistics that put intervals on them."""

from .counterfactual import changed_points, counterfactual_metrics, dtw_distance, plausibility
from .statistics import wilson_interval

__all__ = ["changed_points", "counterfactual_metrics", "dtw_distance", "plausibility",
           "wilson_interval"]
