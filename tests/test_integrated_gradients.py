import copy

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs
from xai_suite.methods.native.integrated_gradients import QUADRATURES, quadrature


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_completeness_within_one_percent_at_128_steps(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    for baseline in ("zeros", "training_mean", "blur", "nearest_unlike"):
        exp = xs.explain(gunpoint_cnn, Xt[:20], method="integrated_gradients", n_steps=128,
                         baseline=baseline, fit_data=(X, y))
        fx = exp.predictions[np.arange(20), exp.target]
        with torch.no_grad():
            fb = gunpoint_cnn(torch.from_numpy(exp.baselines[0])).numpy()[np.arange(20), exp.target]
        total = exp.attributions.reshape(20, -1).sum(1)
        change = np.abs(fx - fb)
        err = np.abs(total - (fx - fb))
        # 1% of the output change; where the output barely moves (one GunPoint series moves
        # by 0.09 from the zero baseline) a relative error means little: there, 1% of 0.5.
        # On a ReLU network the gradient along the path is piecewise constant and the
        # error of any n-point rule falls like 1/n (0.7% at 128 steps, 0.3% at 2048 here).
        assert (err / np.maximum(change, 0.5)).max() < 0.01, baseline
        np.testing.assert_allclose(exp.convergence_delta, total - (fx - fb), atol=1e-4)


def test_exact_on_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).eval()
    x = torch.randn(4, 5)
    exp = xs.explain(lin, x, method="integrated_gradients", target=1, n_steps=7,
                     baseline=0.5)
    expected = (x - 0.5) * lin.weight[1].detach()
    np.testing.assert_allclose(exp.attributions, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(exp.convergence_delta).max() < 1e-5



def test_float64_model_is_explained_in_float64():
    """Inputs near 1e4, a baseline 1e-2 below: float32 cannot even represent the difference
    exactly (its spacing there is 1e-3); float64 gets IG exact to 1e-10."""
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double().eval()
    x = 1e4 + torch.rand(4, 5, dtype=torch.float64)
    b = x - 1e-2
    exp = xs.explain(lin, x, method="integrated_gradients", target=1, n_steps=3, baselines=b)
    assert exp.attributions.dtype == exp.inputs.dtype == exp.predictions.dtype == np.float64
    expected = ((x - b) * lin.weight[1].detach()).numpy()
    np.testing.assert_allclose(exp.attributions, expected, rtol=1e-10)
    assert np.abs(exp.convergence_delta).max() < 1e-10 * np.abs(expected).sum(1).max() + 1e-12
    from captum.attr import IntegratedGradients

    # Captum agrees to the float32 precision of its step weights (torch.tensor(...).float())
    captum = IntegratedGradients(lin).attribute(x, baselines=b, target=1, n_steps=3).numpy()
    np.testing.assert_allclose(exp.attributions, captum, rtol=1e-6)
    # a float32 model computes in float32, whatever the inputs' dtype
    single = xs.explain(lin.float(), x, method="integrated_gradients", target=1, n_steps=3)
    assert single.attributions.dtype == np.float32

@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_agrees_with_captum(gunpoint, gunpoint_cnn, method):
    _, _, Xt, _ = gunpoint
    kw = {"n_steps": 32, "quadrature": method, "baseline": "zeros"}
    ours = xs.explain(gunpoint_cnn, Xt[:12], method="native:integrated_gradients", **kw)
    theirs = xs.explain(gunpoint_cnn, Xt[:12], method="captum:integrated_gradients", **kw)
    from captum.attr import IntegratedGradients

    raw = IntegratedGradients(gunpoint_cnn).attribute(
        torch.from_numpy(Xt[:12]), target=torch.from_numpy(ours.target), n_steps=32,
        method=method)
    raw = raw.detach().numpy()
    assert _rel(theirs.attributions, raw) < 1e-5
    if method == "riemann_trapezoid":  # Captum's weights sum to 1 - 1/n: a (n-1)/n scale
        assert _rel(ours.attributions * 31 / 32, raw) < 1e-5
        assert np.abs(ours.convergence_delta).mean() < np.abs(theirs.convergence_delta).mean()
    else:
        assert _rel(ours.attributions, raw) < 1e-5


def test_quadratures_match_captum():
    from captum.attr._utils.approximation_methods import approximation_parameters

    for method in QUADRATURES:
        step_sizes, alphas = approximation_parameters(method)
        a, w = quadrature(method, 9)
        np.testing.assert_allclose(a, alphas(9), atol=1e-6)
        assert w.sum() == pytest.approx(1.0)
        if method == "riemann_trapezoid":  # Captum's nodes are 1/8 apart, weighted 1/9
            np.testing.assert_allclose(np.asarray(step_sizes(9)), w * 8 / 9, atol=1e-6)
        else:
            np.testing.assert_allclose(w, step_sizes(9), atol=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        quadrature("simpson", 9)
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        quadrature("gausslegendre", 0)


def _smooth(model: nn.Module) -> nn.Module:
    """``model`` with GELU for ReLU. On a ReLU network an interpolation point can sit on a
    kink, where rounding that differs with the batch shape (oneDNN picks kernels by batch
    size) flips a gradient: on the GunPoint CNN batch_size=1 moved 23 of 1,500 values by up to
    3e-5 of the largest. A smooth model leaves only the batching to test."""
    smooth = copy.deepcopy(model)
    for m in list(smooth.modules()):
        for child, sub in list(m.named_children()):
            if isinstance(sub, nn.ReLU):
                setattr(m, child, nn.GELU())
    return smooth.eval()


def test_batch_size_does_not_change_results(gunpoint, gunpoint_cnn):
    _, _, Xt, _ = gunpoint
    model = _smooth(gunpoint_cnn)
    ref = xs.explain(model, Xt[:10], method="integrated_gradients", batch_size=1)
    for bs in ("auto", 7, 500):
        other = xs.explain(model, Xt[:10], method="integrated_gradients", batch_size=bs)
        assert _rel(other.attributions, ref.attributions) < 1e-5
    tiny = xs.explain(model, Xt[:10], method="integrated_gradients", max_memory="2MiB")
    assert tiny.params["batch_size_used"] < 10
    assert _rel(tiny.attributions, ref.attributions) < 1e-5


def test_expected_gradients_seeded_and_complete(gunpoint, gunpoint_cnn):
    X, _, Xt, _ = gunpoint
    kw = {"baseline": "training_sample", "n_baseline_samples": 16, "n_steps": 64}
    a = xs.explain(gunpoint_cnn, Xt[:6], fit_data=X, random_state=3, **kw)
    b = xs.explain(gunpoint_cnn, Xt[:6], fit_data=X, random_state=3, **kw)
    c = xs.explain(gunpoint_cnn, Xt[:6], fit_data=X, random_state=4, **kw)
    np.testing.assert_array_equal(a.attributions, b.attributions)
    assert not np.array_equal(a.attributions, c.attributions)
    assert a.baselines.shape == (16, 6, 1, 150)
    assert a.params["n_baseline_samples_used"] == 16
    # the draws are training series, and completeness holds against their mean output
    flat = X.reshape(len(X), -1)
    assert all((np.abs(flat - s.ravel()).sum(1) == 0).any() for s in a.baselines[:, 0])
    fx = a.predictions[np.arange(6), a.target]
    gap = np.abs(a.convergence_delta) / np.abs(a.attributions.reshape(6, -1).sum(1)
                                                - a.convergence_delta)
    assert gap.max() < 0.02 and np.isfinite(fx).all()
    # deterministic baselines draw once whatever n_baseline_samples says
    z = xs.explain(gunpoint_cnn, Xt[:2], baseline="zeros", n_baseline_samples=5)
    assert z.baselines.shape[0] == 1


def test_explicit_baselines(gunpoint, gunpoint_cnn):
    _, _, Xt, _ = gunpoint
    x = Xt[:4]
    one = np.full(x.shape[1:], 0.25, dtype=np.float32)
    e1 = xs.explain(gunpoint_cnn, x, baselines=one)
    e2 = xs.explain(gunpoint_cnn, x, baseline=0.25)
    np.testing.assert_allclose(e1.attributions, e2.attributions, rtol=1e-6)
    assert e1.params["baseline"] == {"name": "explicit"}
    assert e2.params["baseline"] == {"name": "constant", "value": 0.25}
    per = np.stack([np.full(x.shape[1:], v, dtype=np.float32) for v in (0, 1, 2, 3)])
    e3 = xs.explain(gunpoint_cnn, x, baselines=per)
    np.testing.assert_array_equal(e3.baselines[0], per)
    with pytest.raises(ValueError, match="inputs' shape \\(4, 1, 150\\) or one instance's"):
        xs.explain(gunpoint_cnn, x, baselines=per[:2])
    with pytest.raises(ValueError, match="or one instance's shape"):
        xs.explain(gunpoint_cnn, x, baselines=np.zeros(150, dtype=np.float32))


def test_recorded_defaults(gunpoint, gunpoint_cnn):
    _, _, Xt, _ = gunpoint
    exp = xs.explain(gunpoint_cnn, Xt[:2])
    assert exp.method == "native:integrated_gradients"
    p = exp.params
    assert p["n_steps"] == 50 and p["quadrature"] == "gausslegendre"
    assert p["baseline"] == {"name": "zeros"} and p["batch_size"] == "auto"
    assert p["batch_size_used"] >= 1


def test_tensor_inputs_and_results_stay_on_cpu(gunpoint, gunpoint_cnn):
    _, _, Xt, _ = gunpoint
    t = torch.from_numpy(Xt[:3]).double()
    exp = xs.explain(gunpoint_cnn, t)
    assert isinstance(exp.attributions, np.ndarray) and exp.attributions.dtype == np.float32
    ref = xs.explain(gunpoint_cnn, Xt[:3])
    np.testing.assert_allclose(exp.attributions, ref.attributions, rtol=1e-6)
