"""Controls: explainers that know nothing, to read every metric against."""

from __future__ import annotations

import numpy as np
import torch

from ...base import Attribution, AttributionExplainer, Batched, Call, Seeded
from ...metrics.statistics import instance_generators
from ...registry import register_explainer


@register_explainer(
    "random", library="native", family="control", modalities=("tabular", "timeseries", "image"),
    model_kinds=("torch", "sklearn", "aeon", "callable"), stochastic=True, batch_invariant=True,
    summary="Random-attribution control: i.i.d. standard normal attributions",
    reference="Adebayo et al. (2018), Sanity Checks for Saliency Maps (the random baseline "
    "metrics are compared with)",
    notes="Ignores the model beyond predicting the target; any metric worth reporting must "
    "score real methods better than this control.",
)
class RandomAttribution(AttributionExplainer, Batched, Seeded):
    """Attributions drawn i.i.d. from a standard normal, seeded per instance.

    Each instance's values come from a generator seeded by ``random_state``, the instance's
    own values and its target class, so they do not depend on ``batch_size``, on the other
    instances of the batch or on their order.

    Parameters
    ----------
    model : any model kind
        Only called to predict (and pick the target class).
    """

    family = "control"

    def _attribute(self, call: Call, *, baselines, feature_mask) -> Attribution:
        x = call.x.cpu().numpy()
        seed = self.random_state
        if seed is None:  # fresh, but drawn from the call's generator like every stochastic path
            seed = int(call.rng.integers(2**32))  # within check_random_state's range
        values = np.empty(x.shape, dtype=np.float32)
        for i, t in enumerate(call.target):
            gen = instance_generators(x[i : i + 1], seed, int(t))[0]
            values[i] = gen.standard_normal(x.shape[1:], dtype=np.float32)
        return Attribution(torch.from_numpy(values).to(call.x.device))
