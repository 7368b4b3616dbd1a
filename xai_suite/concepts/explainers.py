"""Concept-level attribution: which concepts drove a concept model's task prediction.

Three ``concept`` family entries explain the task logit of a fitted
:class:`~xai_suite.concepts.models.ConceptModel` in terms of its concept layer (the
activations ``a`` the task head sees), each against a reference activation ``r`` per concept:

- ``native:concept_intervention``: the drop in the target logit when concept i alone is set to
  its reference, ``f(a) - f(a with a_i = r_i)``;
- ``native:concept_shapley``: exact Shapley values of the concepts (every coalition of
  concepts kept at ``a``, the rest set to ``r``); complete: they sum to ``f(a) - f(r)``;
- ``native:concept_gradient``: integrated gradients from ``r`` to ``a`` in the concept layer;
  complete up to the quadrature error.

References ``r`` are baselines of the ``concept`` modality (``xs.list_baselines("concept")``),
given as ``baseline=``: ``"opposite"`` (each concept's other truth value, ``1 - round(a_i)``),
``0.5`` (a constant: undecided), ``"zeros"`` (absent), ``1.0`` (present), or any
:class:`~xai_suite.baselines.Baseline` of that modality. Inputs are
``(N, F)`` features; the result is a :class:`~xai_suite.concepts.explanation.ConceptExplanation`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from .._validation import check_positive_int, resolve_target
from ..base import Batched, Call, Explainer
from ..baselines import BaselineSpec, NotFittedError, list_baselines
from ..batching import chunks, pair_outputs
from ..methods.native.integrated_gradients import QUADRATURES, path_gradients, quadrature
from ..registry import register_explainer
from .explanation import ConceptExplanation
from .models import ConceptModel

#: Most concepts ``concept_shapley`` enumerates (2^n coalitions per instance).
MAX_SHAPLEY_CONCEPTS = 16


class ConceptExplainer(Explainer, Batched):
    """Base of the ``concept`` family: attributions over a concept model's concept layer.

    Subclasses implement ``_concept_attribute(call, model, a, r) -> (values, resolved)`` with
    ``values`` ``(N, n_concepts)``.
    """

    family = "concept"
    _complete = False

    baseline: BaselineSpec = "opposite"

    def _wrapper(self, layout=None):
        name = self.info.qualified_name
        if not isinstance(self.model, ConceptModel):
            raise TypeError(
                f"{name} explains concept models (xai_suite.concepts.ConceptBottleneckModel, "
                f"ConceptEmbeddingModel or another ConceptModel); got {type(self.model).__name__}"
            )
        if not self.model.is_fitted:
            raise NotFittedError(f"{name}: the {type(self.model).__name__} is not fitted; call its "
                                 "fit(X, C, y) first")
        return super()._wrapper(layout)

    def explain(self, inputs, target=None, *, baselines=None, feature_mask=None) -> ConceptExplanation:
        """Attribute the task output to the concepts.

        Parameters
        ----------
        inputs : numpy.ndarray or torch.Tensor, shape (N, F)
        target : None, int or array-like of int, shape (N,)
            Task class whose logit is explained; ``None`` explains the predicted class.
        baselines, feature_mask : None
            Not taken (the reference concept activations come from the ``baseline``
            hyper-parameter); accepted so that ``xs.explain`` can pass its defaults.

        Returns
        -------
        ConceptExplanation
        """
        return self._explain(inputs, target, baselines=baselines, feature_mask=feature_mask)

    @contextlib.contextmanager
    def _begin(self, inputs, target, *, baselines, feature_mask) -> Iterator[Call]:
        name = self.info.qualified_name
        if baselines is not None:
            raise TypeError(f"{name} takes no baselines= arrays; set its baseline hyper-parameter (a "
                            f"concept baseline: {', '.join(list_baselines('concept'))})")
        if feature_mask is not None:
            raise TypeError(f"{name} takes no feature_mask")
        baseline = self._baseline()  # validate before any model call
        with self._calling(inputs, target, resolve_target) as call:
            model: ConceptModel = call.model.model
            with torch.no_grad():
                a = torch.cat([model.bottleneck(call.x[sl]) for sl in chunks(len(call.x), call.rows)])
            call.data.update(model=model, activations=a, baseline=baseline,
                             baselines=baseline.sample(a, call.target, 1, call.rng, modality="concept")[0])
            yield call

    def _compute(self, call: Call) -> tuple[torch.Tensor, np.ndarray | None, dict]:
        model, a, r = call.data["model"], call.data["activations"], call.data["baselines"]
        values, resolved = self._concept_attribute(call, model, a, r)
        delta = None
        if self._complete:
            none_kept = torch.zeros(1, a.shape[1], dtype=torch.bool)
            f_r = _masked_logits(call, model, a, r, none_kept)[:, 0].numpy()
            f_a = call.predictions[np.arange(len(call.target)), call.target]
            delta = (values.double().cpu().sum(1).numpy() - (f_a - f_r)).astype(np.float32)
        return values, delta, resolved

    def _finish(self, call: Call, raw: tuple[torch.Tensor, np.ndarray | None, dict]) -> ConceptExplanation:
        values, delta, resolved = raw
        a = call.data["activations"]
        values = values.detach().float().cpu().numpy()
        if values.shape != tuple(a.shape):
            raise RuntimeError(f"{self.info.qualified_name} produced attributions of shape {values.shape}")
        return ConceptExplanation(
            attributions=values,
            concepts=a.float().cpu().numpy(),
            concept_names=list(call.data["model"].concept_names_),
            inputs=call.x.cpu().numpy(),
            target=call.target,
            predictions=call.predictions,
            method=self.info.qualified_name,
            params=self._recorded_params(call.rows, {"baseline": call.data["baseline"].describe(),
                                                     **resolved}),
            convergence_delta=delta,
            baselines=call.data["baselines"].float().cpu().numpy(),
        )

    def _concept_attribute(self, call: Call, model: ConceptModel, a: torch.Tensor, r: torch.Tensor
                           ) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


def _masked_logits(call: Call, model: ConceptModel, a: torch.Tensor, r: torch.Tensor,
                   keep: torch.Tensor) -> torch.Tensor:
    """Target logits ``(N, M)`` float64: instance n with concepts ``keep[m]`` at ``a``, the rest at ``r``.

    ``keep`` is a bool ``(M, n_concepts)``; rows go through the model ``call.rows`` at a time.
    """
    keep = keep.to(a.device)
    return pair_outputs(lambda xa: model.task_from_bottleneck(*xa), a.shape[0], keep.shape[0],
                        lambda i, m: (call.x[i], torch.where(keep[m], a[i], r[i])),
                        call.target_t, call.rows, "concept interventions")


@register_explainer(
    "concept_intervention", library="native", modalities=("tabular",), model_kinds=("torch",),
    summary="Drop in the task logit when one concept at a time is set to a reference value "
    "(its opposite by default)",
    reference="Koh et al. (2020), Concept Bottleneck Models (test-time interventions)",
)
class ConceptIntervention(ConceptExplainer):
    """Per-concept intervention effect: ``f_t(a) - f_t(a with a_i = r_i)``.

    Parameters
    ----------
    model : ConceptModel
        A fitted concept model.
    baseline : str, float, dict or Baseline
        A ``concept`` baseline: the value each concept is set to (``"opposite"``: its other
        truth value).
    """

    def _concept_attribute(self, call, model, a, r):
        n_c = a.shape[1]
        keep = torch.ones(n_c + 1, n_c, dtype=torch.bool)
        keep[1:] = ~torch.eye(n_c, dtype=torch.bool)  # row 0: all at a; row 1+i: concept i at r
        f = _masked_logits(call, model, a, r, keep)
        return f[:, :1] - f[:, 1:], {}


@register_explainer(
    "concept_shapley", library="native", modalities=("tabular",), model_kinds=("torch",),
    has_convergence_delta=True,
    summary="Exact Shapley values of the concepts for the task logit (concepts absent from a "
    "coalition at a reference value)",
    reference="Shapley (1953); Lundberg & Lee (2017), interventional SHAP over the concept layer",
    notes=f"Enumerates all 2^n_concepts coalitions: at most {MAX_SHAPLEY_CONCEPTS} concepts.",
)
class ConceptShapley(ConceptExplainer):
    """Exact Shapley values over the concept layer; they sum to ``f_t(a) - f_t(r)``.

    Parameters
    ----------
    model : ConceptModel
        A fitted concept model with at most 16 concepts.
    baseline : str, float, dict or Baseline
        A ``concept`` baseline: the value of the concepts left out of a coalition.
    """

    _complete = True

    def _concept_attribute(self, call, model, a, r):
        n_c = a.shape[1]
        if n_c > MAX_SHAPLEY_CONCEPTS:
            raise ValueError(
                f"{self.info.qualified_name} enumerates 2^n_concepts coalitions; the model has {n_c} "
                f"concepts (at most {MAX_SHAPLEY_CONCEPTS}): use native:concept_gradient instead"
            )
        codes = torch.arange(2**n_c)
        keep = (codes[:, None] >> torch.arange(n_c)[None, :]) & 1 == 1  # (2^n, n_c): coalitions
        f = _masked_logits(call, model, a, r, keep)  # (N, 2^n)
        fact = [math.factorial(i) for i in range(n_c + 1)]
        size = keep.sum(1)
        # phi_i = sum over coalitions S without i of |S|! (n - 1 - |S|)! / n! [f(S + i) - f(S)]:
        # differences first, so that a concept the head ignores gets exactly 0
        phi = torch.empty(a.shape, dtype=torch.float64, device=f.device)
        for i in range(n_c):
            without = torch.nonzero(~keep[:, i]).squeeze(1)
            w = torch.tensor([fact[s] * fact[n_c - 1 - s] / fact[n_c] for s in size[without].tolist()],
                             dtype=torch.float64, device=f.device)
            with_i = (without | (1 << i)).to(f.device)
            phi[:, i] = (f[:, with_i] - f[:, without.to(f.device)]) @ w
        return phi.float(), {}


@register_explainer(
    "concept_gradient", library="native", modalities=("tabular",), model_kinds=("torch",),
    has_convergence_delta=True,
    summary="Integrated gradients of the task logit over the concept layer, from reference "
    "activations to the predicted ones",
    reference="Sundararajan, Taly & Yan (2017), Axiomatic Attribution for Deep Networks",
)
class ConceptGradient(ConceptExplainer):
    """Integrated gradients in the concept layer: ``(a_i - r_i) x mean gradient on the path``.

    Parameters
    ----------
    model : ConceptModel
        A fitted concept model.
    baseline : str, float, dict or Baseline
        A ``concept`` baseline: the start of the path (``0.5``: every concept undecided).
    n_steps : int
        Integration points.
    quadrature : str
        ``gausslegendre`` or ``riemann_left|right|middle|trapezoid`` (see
        ``native:integrated_gradients``).
    """

    _complete = True

    baseline: BaselineSpec = 0.5
    n_steps: int = 50
    quadrature: str = "gausslegendre"

    def _concept_attribute(self, call, model, a, r):
        check_positive_int(n_steps=self.n_steps)
        if self.quadrature not in QUADRATURES:
            raise ValueError(f"quadrature must be one of {', '.join(QUADRATURES)}; got "
                             f"{self.quadrature!r}")
        alphas, weights = quadrature(self.quadrature, int(self.n_steps))
        n_f = call.x.shape[1]
        # integrate over [x, a] from [x, r]: the features stay fixed, the concept layer moves
        z = torch.cat([call.x, a], 1)
        zb = torch.cat([call.x, r], 1).unsqueeze(0)

        def forward(rows: torch.Tensor) -> torch.Tensor:
            return model.task_from_bottleneck(rows[:, :n_f], rows[:, n_f:])

        with torch.enable_grad():
            grads = path_gradients(forward, z, zb, call.target_t, alphas, weights, call.rows)
        return (grads[0, :, n_f:] * (a - r)).detach(), {}
