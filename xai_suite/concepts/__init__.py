"""Concept datasets (XOR, Trigonometry, Dot), concept models (CBM, CEM), test-time
interventions and concept-level attribution (``concept`` family explainers).

>>> import xai_suite as xs
>>> from xai_suite.concepts import ConceptEmbeddingModel, intervention_curve
>>> X, C, y = xs.datasets.make_trigonometry(500, random_state=0)
>>> cem = ConceptEmbeddingModel(random_state=0).fit(X, C, y)      # doctest: +SKIP
>>> exp = xs.create_explainer("native:concept_shapley", cem).explain(X[:5])  # doctest: +SKIP
"""

from .datasets import CONCEPT_NAMES, make_dot, make_trigonometry, make_xor
from .explainers import ConceptExplainer, ConceptGradient, ConceptIntervention, ConceptShapley
from .explanation import ConceptExplanation
from .interventions import intervene, intervention_curve, intervention_masks
from .models import ConceptBottleneckModel, ConceptEmbeddingModel, ConceptModel
from .plot import plot_concept_explanation, plot_intervention_curve

__all__ = [
    "CONCEPT_NAMES",
    "ConceptBottleneckModel",
    "ConceptEmbeddingModel",
    "ConceptExplainer",
    "ConceptExplanation",
    "ConceptGradient",
    "ConceptIntervention",
    "ConceptModel",
    "ConceptShapley",
    "intervene",
    "intervention_curve",
    "intervention_masks",
    "make_dot",
    "make_trigonometry",
    "make_xor",
    "plot_concept_explanation",
    "plot_intervention_curve",
]
