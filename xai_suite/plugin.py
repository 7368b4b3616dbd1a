"""What a plugin (a modality adapter or a third party's explainers) builds on: the one module
it imports from xai-suite besides the public ``xai_suite`` API.

A plugin registers explainers, baselines, datasets, metrics and zoo models with the
decorators below, subclasses the explainer base classes, and validates its arguments with the
same checks as the core, so its errors read like ours. Announce the plugin in the
``xai_suite.adapters`` (or ``xai_suite.explainers``) entry-point group; it is imported on the
first registry lookup (:mod:`xai_suite.catalog`).
"""
# ruff: noqa: F401  (every name here is re-exported)

from ._io import atomic_write, jsonable
from ._validation import (
    as_float_tensor,
    check_bool,
    check_choice,
    check_positive_int,
    check_positive_number,
    check_random_state,
    parse_bytes,
)
from .base import (
    Attribution,
    AttributionExplainer,
    Batched,
    Call,
    CounterfactualExplainer,
    Explainer,
    GradientExplainer,
    PerturbationExplainer,
    PropagationExplainer,
    Seeded,
    SurrogateExplainer,
)
from .baselines import Baseline, BaselineSpec, Uniform, list_baselines, register_baseline
from .batching import (
    auto_rows,
    check_batch_size,
    chunks,
    on_simplex,
    pair_outputs,
    pick_rows,
    probe_activations,
    progress,
    resolve_device,
    softmax,
)
from .bench.models import register_model, train_torch
from .catalog import close_matches
from .datasets import register_dataset
from .explanation import Explanation, Result
from .methods.lime import RIBEIRO, check_n_samples, instance_seeds
from .methods.native.integrated_gradients import QUADRATURES, quadrature
from .methods.native.kernel_shap import kernel_coalitions, solve_kernel_shap
from .metrics.counterfactual import dtw_distance
from .metrics.registry import register_metric
from .metrics.statistics import instance_generators, wilson_interval
from .modeling import fit_cached, fit_classifier, model_cache_dir, train_loop
from .registry import create_explainer, explainer_info, register_explainer
from .testing import Problem, register_problem
from .viz.text import render_text_html
