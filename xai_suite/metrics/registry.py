"""The metric registry: every metric with what it needs and which direction is better.

A metric ``fn(exp, *, model=None, mask=None, explainer=None, **params)`` returns one value
per explained instance, shape ``(N,)``. Register one with :func:`register_metric`;
:func:`compute_metric` checks that what it needs is given.

A metric may mean something only for some explainers or models: ``explainer_tags`` names
the explainer tags it requires (``completeness_error`` requires ``has_convergence_delta``,
a completeness axiom: not saliency, occlusion or feature ablation) and ``model_kinds`` the
model kinds it takes (``randomisation_correlation`` re-initialises torch layers).
:meth:`MetricInfo.not_applicable` says why a metric does not apply; the benchmark runner
computes a metric only where it applies and the report marks the other cells ``n/a``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..catalog import Registry

#: What a metric can need besides the explanation.
NEEDS = ("model", "mask", "explainer")
#: The boolean explainer tags (:class:`~xai_suite.base.ExplainerTags`) a metric can require.
EXPLAINER_TAGS = ("needs_baseline", "uses_feature_mask", "needs_fit", "stochastic", "has_convergence_delta",
                  "batch_invariant", "multi_input")
KINDS = ("localisation", "faithfulness", "robustness", "sanity", "completeness")


@dataclass(frozen=True)
class MetricInfo:
    """Registry entry of a metric.

    Attributes
    ----------
    name : str
    fn : callable
        ``fn(exp, *, model=None, mask=None, explainer=None, **params) -> (N,)``.
    kind : str
        One of :data:`KINDS`.
    needs : tuple of str
        Subset of :data:`NEEDS`: ``model`` (the explained model, to re-run it), ``mask``
        (a ground-truth mask of the inputs' shape), ``explainer`` (the fitted explainer that
        made ``exp``, to explain perturbed inputs or a randomised model again).
    higher_is_better : bool
    summary : str
    explainer_tags : tuple of str
        Explainer tags (:class:`~xai_suite.base.ExplainerTags` fields) that must be true for
        the metric to mean something, e.g. ``("has_convergence_delta",)``.
    model_kinds : tuple of str, optional
        The model kinds it takes (``None``: any).
    """

    name: str
    fn: Callable
    kind: str
    needs: tuple[str, ...]
    higher_is_better: bool
    summary: str
    explainer_tags: tuple[str, ...] = ()
    model_kinds: tuple[str, ...] | None = None

    @property
    def applies_to(self) -> str:
        """Which explainers and models the metric means something for, in words."""
        parts = [f"explainers with {t}" for t in self.explainer_tags]
        if self.model_kinds is not None:
            parts.append(f"{' or '.join(self.model_kinds)} models")
        return "; ".join(parts) or "any"

    def not_applicable(self, tags, model_kind: str) -> str | None:
        """Why the metric means nothing for an explainer with ``tags`` on a ``model_kind`` model.

        Parameters
        ----------
        tags : ExplainerTags
            The explainer's tags (``explainer_info(name).tags``).
        model_kind : str

        Returns
        -------
        str or None
            The reason, or ``None`` where the metric applies.
        """
        missing = [t for t in self.explainer_tags if not getattr(tags, t)]
        if missing:
            return f"{self.name} needs an explainer with {' and '.join(missing)}"
        if self.model_kinds is not None and model_kind not in self.model_kinds:
            return f"{self.name} takes {' or '.join(self.model_kinds)} models, not {model_kind}"
        return None


METRICS: Registry[MetricInfo] = Registry(
    "metric", builtins=("xai_suite.metrics.faithfulness", "xai_suite.metrics.localisation",
                        "xai_suite.metrics.sanity"))


def register_metric(name: str, *, kind: str, needs=(), higher_is_better: bool, summary: str | None = None,
                    explainer_tags=(), model_kinds=None):
    """Decorator adding a metric function to the registry (see the module docstring, :class:`MetricInfo`)."""
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    explainer_tags = tuple(explainer_tags)
    unknown = [t for t in explainer_tags if t not in EXPLAINER_TAGS]
    if unknown:
        raise ValueError(f"unknown explainer tag(s) {unknown}; expected a subset of "
                         f"{', '.join(EXPLAINER_TAGS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown metric kind {kind!r}; expected one of {', '.join(KINDS)}")
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise ValueError(f"unknown need(s) {bad}; expected a subset of {', '.join(NEEDS)}")

    def decorator(fn):
        doc = summary or ((fn.__doc__ or name).strip().splitlines()[0])
        METRICS.add(name, MetricInfo(name, fn, kind, needs, higher_is_better, doc, explainer_tags,
                                     None if model_kinds is None else tuple(model_kinds)))
        return fn

    return decorator


def metric_info(name: str) -> MetricInfo:
    """The registry entry of metric ``name``; unknown names list close matches."""
    return METRICS.get(name)


def list_metrics(kind: str | None = None) -> pd.DataFrame:
    """One row per metric: name, kind, needs, higher_is_better, summary, applies_to."""
    rows = [{"name": m.name, "kind": m.kind, "needs": ", ".join(m.needs),
             "higher_is_better": m.higher_is_better, "summary": m.summary, "applies_to": m.applies_to}
            for m in METRICS.values() if kind is None or m.kind == kind]
    return pd.DataFrame(rows, columns=["name", "kind", "needs", "higher_is_better", "summary", "applies_to"])


def compute_metric(name: str, exp, *, model=None, mask=None, explainer=None, **params) -> np.ndarray:
    """Metric ``name`` of explanation ``exp``: one float per instance, shape (N,).

    Raises a ``ValueError`` when the metric needs a ``model``, ``mask`` or ``explainer``
    that is not given.
    """
    info = metric_info(name)
    given = {"model": model, "mask": mask, "explainer": explainer}
    missing = [n for n in info.needs if given[n] is None]
    if missing:
        raise ValueError(f"metric {name!r} needs {' and '.join(missing)}; pass "
                         + ", ".join(f"{m}=" for m in missing))
    out = np.asarray(info.fn(exp, **{n: given[n] for n in info.needs}, **params), dtype=np.float64)
    if out.shape != (len(exp),):
        raise RuntimeError(f"metric {name!r} returned shape {out.shape}; expected ({len(exp)},)")
    return out
