"""Models of several inputs (a series and a static vector), explained as Captum explains them."""

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs


class SeriesAndStatic(nn.Module):
    """A series (N, 2, 16) through a small CNN and a static vector (N, 3) through a linear layer."""

    def __init__(self, conv: bool = True):
        super().__init__()
        self.conv = conv
        self.series = (nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
                       if conv else nn.Linear(32, 4))
        self.static = nn.Linear(3, 4)
        self.relu = nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, s, v):
        h = self.series(s).flatten(1) if self.conv else self.series(s.flatten(1))
        return self.head(self.relu(torch.cat([h, self.static(v)], 1)))


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 2, 16)).astype(np.float32)
    v = rng.normal(size=(5, 3)).astype(np.float32)
    return SeriesAndStatic().eval(), SeriesAndStatic(conv=False).eval(), s, v


def _captum(cls, model, s, v, **kwargs):
    algo = cls(model)
    out = algo.attribute((torch.from_numpy(s), torch.from_numpy(v)), **kwargs)
    return tuple(o.detach().numpy() for o in out)


def _same(ours, captum, rtol=1e-5, atol=1e-6):
    assert isinstance(ours, tuple) and len(ours) == len(captum)
    for a, b in zip(ours, captum, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_gradient_and_perturbation_entries_equal_captum_multi_input(problem):
    from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency

    model, _, s, v = problem
    target = xs.explain(model, (s, v), method="captum:saliency").target
    kw = {"target": torch.from_numpy(target)}
    ig = _captum(IntegratedGradients, model, s, v, n_steps=32, **kw)
    for name in ("native:integrated_gradients", "captum:integrated_gradients"):
        exp = xs.explain(model, (s, v), method=name, n_steps=32)
        _same(exp.attributions, ig)
        # completeness sums over both inputs: f(x) - f(0)
        with torch.no_grad():
            f0 = model(torch.zeros(5, 2, 16), torch.zeros(5, 3)).numpy()[np.arange(5), target]
        total = sum(a.reshape(5, -1).sum(1) for a in exp.attributions)
        fx = exp.predictions[np.arange(5), target]
        np.testing.assert_allclose(exp.convergence_delta, total - (fx - f0), rtol=1e-4, atol=1e-5)
        # small: the 32-step rule's error on a ReLU network (piecewise linear along the path)
        assert (np.abs(exp.convergence_delta) <= 0.05 * np.abs(total) + 5e-3).all()
    _same(xs.explain(model, (s, v), method="captum:saliency").attributions,
          _captum(Saliency, model, s, v, abs=False, **kw))
    _same(xs.explain(model, (s, v), method="captum:input_x_gradient").attributions,
          _captum(InputXGradient, model, s, v, **kw))
    _same(xs.explain(model, (s, v), method="captum:occlusion", batch_size=7).attributions,
          _captum(Occlusion, model, s, v, sliding_window_shapes=((1, 1), (1,)), strides=((1, 1), (1,)),
                  baselines=(0.0, 0.0), **kw))  # a scalar baseline: IndexError in Captum 0.9


def test_lrp_equals_captum_multi_input(problem):
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    _, dense, s, v = problem
    exp = xs.explain(dense, (s, v), method="native:lrp", epsilon=1e-9)
    for m in (dense.series, dense.static, dense.head):
        m.rule = EpsilonRule(epsilon=1e-9)
    _same(exp.attributions, _captum(LRP, dense, s, v, target=torch.from_numpy(exp.target)), rtol=1e-4)


def test_baselines_masks_fit_and_the_result(problem, tmp_path):
    model, _, s, v = problem
    X = (np.random.default_rng(1).normal(size=(20, 2, 16)).astype(np.float32),
         np.random.default_rng(2).normal(size=(20, 3)).astype(np.float32))
    exp = xs.explain(model, (s, v), baseline="training_mean", fit_data=(X, None), n_steps=16)
    assert [b.shape for b in exp.baselines] == [(1, 5, 2, 16), (1, 5, 3)]
    np.testing.assert_allclose(exp.baselines[0][0, 0], X[0].mean(0), rtol=1e-6)
    np.testing.assert_allclose(exp.baselines[1][0, 2], X[1].mean(0), rtol=1e-6)
    explicit = xs.explain(model, (s, v), baselines=(s * 0 + 1, np.zeros(3, np.float32)), n_steps=16)
    assert explicit.params["baseline"] == {"name": "explicit"} and (explicit.baselines[0] == 1).all()
    # one group per time step of the series (shared by its channels), one per static feature
    masks = (np.tile(np.arange(16), (2, 1)), np.arange(16, 19))
    ab = xs.explain(model, (s, v), method="captum:feature_ablation", feature_mask=masks)
    np.testing.assert_array_equal(ab.attributions[0][:, 0], ab.attributions[0][:, 1])
    # the result: parts, a table, a plot, save and load
    assert exp.n_inputs == 2 and exp.modality == "multi-input" and len(exp) == 5
    part = exp.part(1)
    assert part.modality == "tabular" and part.inputs is exp.inputs[1]
    frame = exp.to_frame()
    assert set(frame.model_input) == {0, 1} and len(frame) == s.size + v.size
    assert exp.plot(0, model_input=0) is not None
    back = xs.load(exp.save(tmp_path / "multi.npz"))
    for a, b in zip(back.attributions + back.inputs + back.baselines,
                    exp.attributions + exp.inputs + exp.baselines, strict=True):
        np.testing.assert_array_equal(a, b)


def test_errors(problem):
    model, _, s, v = problem
    with pytest.raises(TypeError, match="explains models of one input array; got a tuple of 2"):
        xs.explain(model, (s, v), method="captum:deeplift")
    with pytest.raises(ValueError, match="at least 2"):
        xs.explain(model, (s,), method="captum:saliency")
    with pytest.raises(ValueError, match="same N"):
        xs.explain(model, (s, v[:3]), method="captum:saliency")
    with pytest.raises(TypeError, match="must be a tuple of 2 arrays"):
        xs.explain(model, (s, v), baselines=s)
    with pytest.raises(ValueError, match="baselines\\[1\\] must have the inputs' shape"):
        xs.explain(model, (s, v), baselines=(s, np.zeros(4, np.float32)))
    e = xs.create_explainer("integrated_gradients", model, baseline="training_mean").fit((s, v))
    with pytest.raises(ValueError, match="per-instance shapes"):
        e.explain((s[:, :, :8], v))
    with pytest.raises(ValueError, match="explanations of one model input"):
        xs.metrics.deletion_auc(xs.explain(model, (s, v), n_steps=4), model=model)
    with pytest.raises(TypeError, match="torch models"):
        xs.explain(lambda a, b: np.zeros((len(a), 2)), (s, v), method="captum:occlusion")
