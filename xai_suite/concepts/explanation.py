"""``ConceptExplanation``: which concepts drove each task prediction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..explanation import Result


@dataclass
class ConceptExplanation(Result):
    """Concept-level attributions of a concept model's task output.

    Attributes
    ----------
    attributions : numpy.ndarray of float32, shape (N, n_concepts)
        Signed contribution of each concept to the explained task logit.
    concepts : numpy.ndarray of float32, shape (N, n_concepts)
        The concept activations the task head saw (probabilities, or 0/1 for hard concepts).
    concept_names : list of str, length n_concepts
    inputs : numpy.ndarray of float32, shape (N, F)
        The explained inputs.
    target : numpy.ndarray of int, shape (N,)
        The task class explained per instance.
    predictions : numpy.ndarray, shape (N, K)
        The model's task logits for ``inputs``.
    method : str
        Qualified explainer name, e.g. ``"native:concept_shapley"``.
    params : dict
        Every hyper-parameter in effect (JSON-ready).
    convergence_delta : numpy.ndarray, shape (N,), or None
        ``sum(attributions) - (f(concepts) - f(baselines))`` per instance, where the method
        is complete.
    baselines : numpy.ndarray, shape (N, n_concepts), or None
        The reference concept activations (the explainer's ``baseline``) attributions are
        measured against.
    """

    format = "xai-suite-concept-explanation/2"

    attributions: np.ndarray
    concepts: np.ndarray
    concept_names: list
    inputs: np.ndarray
    target: np.ndarray
    predictions: np.ndarray
    method: str
    params: dict = field(default_factory=dict)
    convergence_delta: np.ndarray | None = None
    baselines: np.ndarray | None = None

    def __post_init__(self):
        n = self.inputs.shape[0]
        shape = self.attributions.shape
        if len(shape) != 2 or shape[0] != n or self.concepts.shape != shape:
            raise ValueError(f"attributions and concepts must both have shape ({n}, n_concepts); got "
                             f"{shape} and {self.concepts.shape}")
        if len(self.concept_names) != shape[1]:
            raise ValueError(f"concept_names must name the {shape[1]} concepts; got "
                             f"{len(self.concept_names)}")
        if self.target.shape != (n,) or self.predictions.ndim != 2 or len(self.predictions) != n:
            raise ValueError(f"expected target of shape ({n},) and predictions of shape ({n}, K); got "
                             f"{self.target.shape} and {self.predictions.shape}")
        if self.baselines is not None and self.baselines.shape != shape:
            raise ValueError(f"baselines must have shape {shape}; got {self.baselines.shape}")
        self.concept_names = [str(c) for c in self.concept_names]

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __repr__(self) -> str:
        delta = ("" if self.convergence_delta is None
                 else f", max |delta|={np.abs(self.convergence_delta).max():.3g}")
        return (f"ConceptExplanation(method={self.method!r}, n={len(self)}, "
                f"concepts={self.concept_names}{delta})")

    def top_concepts(self, index: int = 0, k: int | None = None) -> list[str]:
        """Concept names of instance ``index`` by decreasing absolute attribution (the first ``k``)."""
        order = np.argsort(-np.abs(self.attributions[index]), kind="stable")
        return [self.concept_names[i] for i in order[:k]]

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per instance and concept.

        Columns: ``instance``, ``concept`` (name), ``activation``, ``attribution``, ``target``.
        """
        n, m = self.attributions.shape
        return pd.DataFrame({
            "instance": np.repeat(np.arange(n), m),
            "concept": np.tile(np.asarray(self.concept_names, dtype=object), n),
            "activation": self.concepts.ravel(),
            "attribution": self.attributions.ravel(),
            "target": np.repeat(self.target, m),
        })

    def plot(self, index: int = 0, ax=None, **kwargs):
        """Bar chart of instance ``index``'s concept attributions; returns the matplotlib Axes."""
        from .plot import plot_concept_explanation

        return plot_concept_explanation(self, index=index, ax=ax, **kwargs)

    def _html(self, page) -> None:
        """Concept activations, attributions and the task prediction per instance (a picker).
        See :func:`xai_suite.viz.html_results.concept_view`."""
        from ..viz.html_results import concept_view

        concept_view(self, page)
