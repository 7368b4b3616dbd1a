"""LIME backend: ``lime:tabular``, computed with the ``lime`` package (imported on first use).

``lime:tabular`` is lime's own ``LimeTabularExplainer`` on ``(N, F)`` data: every feature's
weight for the explained class, in the inputs' column order. (``lime:timeseries``, LIME on
time segments, lives in the time-series adapter and shares this module's seeding.)

Seeding (every ``lime:`` entry): every instance is explained with a fresh
``numpy.random.RandomState`` seeded with ``random_state``, so an instance's weights do not
depend on which other instances are explained with it or in which order, and
``LimeTabularExplainer(X, random_state=seed).explain_instance(x, ...)`` reproduces
``lime:tabular``'s weights for ``x`` exactly. The instances of one call therefore share one
stream of random numbers (common random numbers).
With ``random_state=None`` each instance gets a seed of its own from fresh entropy; the seeds
used are recorded in the explanation's ``params["instance_seeds"]``.

``batch_size`` is the number of rows per model call: lime asks for all ``n_samples``
perturbations of an instance at once, and we send them through the model in chunks.
Models of every kind see float32 inputs, and their outputs are rounded to float32, as
everywhere in the suite.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._validation import check_bool, check_positive_int, check_positive_number, check_random_state
from ..base import Attribution, Batched, Call, Seeded, SurrogateExplainer
from ..batching import progress
from ..registry import register_explainer

RIBEIRO = ('Ribeiro, Singh & Guestrin (2016), "Why Should I Trust You?": Explaining the Predictions '
           "of Any Classifier")
_MAX_SEED = 2**32 - 1  # numpy.random.RandomState takes seeds in [0, 2**32 - 1]


def check_n_samples(n_samples) -> None:
    """Raise unless ``n_samples`` is an int >= 2: the instance itself and one perturbation."""
    check_positive_int(n_samples=n_samples)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 (the instance itself and one "
                         f"perturbation); got {n_samples}")


def instance_seeds(random_state, call: Call) -> np.ndarray:
    """One ``RandomState`` seed per instance: ``random_state`` for all, or fresh draws (see the
    module docstring)."""
    n = call.x.shape[0]
    if random_state is None:
        return call.rng.integers(0, _MAX_SEED, size=n, endpoint=True, dtype=np.int64)
    check_random_state(random_state)
    return np.full(n, int(random_state), dtype=np.int64)


# -- tabular -------------------------------------------------------------------------------
@register_explainer(
    "tabular", library="lime", modalities=("tabular",), model_kinds=("torch", "sklearn", "callable"),
    requires=("lime",), needs_fit=True, stochastic=True, batch_invariant=True,
    summary="lime's LimeTabularExplainer: local ridge surrogate on perturbed (discretised) features",
    reference=RIBEIRO,
    notes="Weights are ridge coefficients of lime's interpretable features: with "
    "discretize_continuous=True, of 'the feature lies in the instance's bin' indicators "
    "(quartiles by default); "
    "otherwise of the features standardised by the training data's standard deviation.",
)
class LimeTabular(SurrogateExplainer, Batched, Seeded):
    """LIME for tabular data through ``lime.lime_tabular.LimeTabularExplainer``.

    ``fit(X)`` gives the training data (M, F) lime takes its statistics from (means,
    standard deviations, quartiles, bin frequencies). ``explain`` returns, for every instance,
    lime's weight of every feature for the target class (``num_features=F``), as an (N, F)
    array in the inputs' column order. lime's feature selection is off (``"none"``): with
    all F features kept it only reorders the ridge's columns.

    Parameters
    ----------
    n_samples : int
        Perturbations per instance (lime's ``num_samples``): 5000, as in lime. lime's own work
        takes about 15 ms per instance with 6 features (measured here), plus the model calls.
    kernel_width : float, optional
        Width of lime's exponential kernel on the Euclidean distance between standardised
        (or binary, when discretised) rows. ``None``: lime's ``0.75 * sqrt(F)``.
    discretize_continuous : bool
        ``True``, as in lime: each feature is binned (``discretizer``) and the surrogate's
        inputs are indicators "the perturbed value lies in the instance's bin"; a weight is
        then the change of the target output when the feature takes a value from its own bin
        rather than from another bin of the training distribution (not a slope). ``False``:
        the surrogate sees the perturbed values standardised by the training data, and a
        weight is the output change per training standard deviation of the feature.
    discretizer : {"quartile", "decile"}
        lime's binning when ``discretize_continuous`` is true ("quartile", as in lime).
    sample_around_instance : bool
        Draw continuous perturbations around the instance instead of around the training
        mean (lime's default ``False``); used when ``discretize_continuous`` is false.
    """

    n_samples: int = 5000
    kernel_width: float | None = None
    discretize_continuous: bool = True
    discretizer: str = "quartile"
    sample_around_instance: bool = False

    def _fit(self, X: torch.Tensor, y) -> None:
        self.X_train_ = X.double().numpy()  # (M, F): what lime computes its statistics from

    def _check_params(self) -> None:
        check_n_samples(self.n_samples)
        if self.kernel_width is not None:
            check_positive_number(kernel_width=self.kernel_width)
        check_bool(discretize_continuous=self.discretize_continuous,
                   sample_around_instance=self.sample_around_instance)
        if self.discretizer not in ("quartile", "decile"):
            raise ValueError(f"discretizer must be 'quartile' or 'decile'; got {self.discretizer!r}")

    def _lime_explainer(self, seed: int):
        """lime's explainer for the fitted data, its random state seeded with ``seed``."""
        import lime.lime_tabular

        return lime.lime_tabular.LimeTabularExplainer(
            self.X_train_, mode="classification", feature_selection="none",
            kernel_width=None if self.kernel_width is None else float(self.kernel_width),
            discretize_continuous=bool(self.discretize_continuous), discretizer=self.discretizer,
            sample_around_instance=bool(self.sample_around_instance), random_state=int(seed),
        )

    def _attribute(self, call, *, baselines, feature_mask):
        self._check_params()
        seeds = instance_seeds(self.random_state, call)
        n, f = call.x.shape
        x = call.x.cpu().double().numpy()

        def predict_fn(rows: np.ndarray) -> np.ndarray:  # float64 (S, F) -> (S, K), call.rows at a time
            return call.model.predict(torch.from_numpy(np.asarray(rows, dtype=np.float32)), call.rows)

        explainer = self._lime_explainer(int(seeds[0]))
        rs = explainer.random_state
        # lime's explainer, discretizer and ridge share one RandomState: reseeding it in place
        # equals building a new explainer with that seed (its construction draws nothing).
        shared = explainer.base.random_state is rs and (
            explainer.discretizer is None or explainer.discretizer.random_state is rs)
        values = np.empty((n, f))
        scores = []
        with warnings.catch_warnings():
            # explaining logits or regression outputs is allowed: they need not sum to 1
            warnings.filterwarnings("ignore", message=r"(?s).*do not sum to 1")
            for i in progress(n, "lime:tabular", min_steps=20):
                if shared:
                    rs.seed(int(seeds[i]))
                else:  # pragma: no cover - a lime version with separate generators
                    explainer = self._lime_explainer(int(seeds[i]))
                label = int(call.target[i])
                exp = explainer.explain_instance(x[i], predict_fn, labels=(label,), num_features=f,
                                                 num_samples=int(self.n_samples))
                for j, w in exp.as_map()[label]:
                    values[i, j] = w
                scores.append(float(exp.score))
        width = self.kernel_width if self.kernel_width is not None else 0.75 * np.sqrt(f)
        resolved = {"kernel_width_used": float(width), "surrogate_r2": scores,
                    "instance_seeds": seeds.tolist()}
        return Attribution(torch.from_numpy(values).float(), params=resolved)
