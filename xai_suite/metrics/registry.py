"""The metric registry: every metric with what it needs and which direction is better.

A metric ``fn(exp, *, model=None, mask=None, explainer=None, **params)`` returns one value
per explained instance, shape ``(N,)``. Register one with :func:`register_metric`;
:func:`compute_metric` checks that what it needs is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..catalog import Registry

#: What a metric can need besides the explanation.
NEEDS = ("model", "mask", "explainer")
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
    """

    name: str
    fn: Callable
    kind: str
    needs: tuple[str, ...]
    higher_is_better: bool
    summary: str


METRICS: Registry[MetricInfo] = Registry(
    "metric", builtins=("xai_suite.metrics.faithfulness", "xai_suite.metrics.localisation",
                        "xai_suite.metrics.sanity"))


def register_metric(name: str, *, kind: str, needs=(), higher_is_better: bool, summary: str | None = None):
    """Decorator adding a metric function to the registry (see the module docstring)."""
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    if kind not in KINDS:
        raise ValueError(f"unknown metric kind {kind!r}; expected one of {', '.join(KINDS)}")
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise ValueError(f"unknown need(s) {bad}; expected a subset of {', '.join(NEEDS)}")

    def decorator(fn):
        doc = summary or ((fn.__doc__ or name).strip().splitlines()[0])
        METRICS.add(name, MetricInfo(name, fn, kind, needs, higher_is_better, doc))
        return fn

    return decorator


def metric_info(name: str) -> MetricInfo:
    """The registry entry of metric ``name``; unknown names list close matches."""
    return METRICS.get(name)


def list_metrics(kind: str | None = None) -> pd.DataFrame:
    """One row per metric: name, kind, needs, higher_is_better, summary."""
    rows = [{"name": m.name, "kind": m.kind, "needs": ", ".join(m.needs),
             "higher_is_better": m.higher_is_better, "summary": m.summary}
            for m in METRICS.values() if kind is None or m.kind == kind]
    return pd.DataFrame(rows, columns=["name", "kind", "needs", "higher_is_better", "summary"])


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
