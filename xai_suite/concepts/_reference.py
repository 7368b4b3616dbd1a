"""Small fitted concept models for the conformance checks (``xai_suite.testing``)."""

from __future__ import annotations

import numpy as np

from .datasets import CONCEPT_NAMES, make_trigonometry
from .models import ConceptBottleneckModel, ConceptEmbeddingModel, ConceptModel

#: Reference concept models: a CBM with a non-linear task head and a CEM.
REFERENCE_CONCEPT_MODELS = ("cbm", "cem")


def reference_concept_problem(kind: str = "cbm", random_state: int = 0
                              ) -> tuple[ConceptModel, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A concept model fitted for a few epochs on 120 Trigonometry rows, and 4 more rows.

    Parameters
    ----------
    kind : {"cbm", "cem"}
        A joint sigmoid CBM with a one-hidden-layer task head, or a CEM.
    random_state : int

    Returns
    -------
    model, X_train (120, 7), C_train (120, 3), y_train (120,), X_test (4, 7)
    """
    X, C, y = make_trigonometry(124, random_state=random_state)
    common = {"epochs": 60, "random_state": random_state}
    if kind == "cbm":
        model = ConceptBottleneckModel(task_hidden_sizes=(8,), **common)
    elif kind == "cem":
        model = ConceptEmbeddingModel(embedding_size=4, **common)
    else:
        raise ValueError(f"kind must be one of {REFERENCE_CONCEPT_MODELS}; got {kind!r}")
    model.fit(X[:120], C[:120], y[:120], concept_names=CONCEPT_NAMES["trigonometry"])
    return model, X[:120], C[:120], y[:120], X[120:]
