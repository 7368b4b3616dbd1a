"""Metrics for explanations, with the statistics that put intervals on them.

Every metric is registered with what it needs and which direction is better
(:func:`list_metrics`); the benchmark runner calls them by name through
:func:`compute_metric`, one value per explained instance.
"""

from .counterfactual import changed_points, counterfactual_metrics, dtw_distance, plausibility
from .faithfulness import (
    comprehensiveness,
    deletion_auc,
    deletion_curve,
    infidelity,
    insertion_auc,
    insertion_curve,
    sensitivity_max,
    sufficiency,
)
from .localisation import aup, auprc, aur, auroc, pooled_localisation, top_k_precision
from .registry import compute_metric, list_metrics, metric_info, register_metric
from .sanity import (
    cascading_randomisation,
    completeness_error,
    randomisation_correlation,
    randomised_copy,
)
from .statistics import (
    PairedTest,
    bootstrap_interval,
    paired_test,
    t_interval,
    wilson_interval,
)

__all__ = [
    "PairedTest",
    "aup",
    "auprc",
    "aur",
    "auroc",
    "bootstrap_interval",
    "cascading_randomisation",
    "changed_points",
    "completeness_error",
    "comprehensiveness",
    "compute_metric",
    "counterfactual_metrics",
    "deletion_auc",
    "deletion_curve",
    "dtw_distance",
    "infidelity",
    "insertion_auc",
    "insertion_curve",
    "list_metrics",
    "metric_info",
    "paired_test",
    "plausibility",
    "pooled_localisation",
    "randomisation_correlation",
    "randomised_copy",
    "register_metric",
    "sensitivity_max",
    "sufficiency",
    "t_interval",
    "top_k_precision",
    "wilson_interval",
]
