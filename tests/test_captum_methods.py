"""Properties of the Captum entries beyond the conformance checks."""

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs
from xai_suite.testing import reference_problem


def _mlp(bias: bool):
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 12, bias=bias), nn.ReLU(), nn.Linear(12, 8, bias=bias),
                         nn.ReLU(), nn.Linear(8, 3, bias=bias)).eval()


def _x(n=5, f=6):
    return np.random.default_rng(2).normal(size=(n, f)).astype(np.float32)


def test_deeplift_is_complete_on_relu_networks():
    exp = xs.explain(_mlp(True), _x(), method="deeplift", baseline=0.3)
    assert np.abs(exp.convergence_delta).max() < 1e-5


def test_deeplift_shap_matches_captum_on_the_recorded_baselines():
    from captum.attr import DeepLiftShap

    model, x = _mlp(True), _x()
    background = np.random.default_rng(3).normal(size=(30, 6)).astype(np.float32)
    exp = xs.explain(model, x, method="deeplift_shap", target=1, fit_data=background,
                     n_baseline_samples=7, random_state=0)
    assert exp.baselines.shape == (7, 5, 6)
    for i in range(len(x)):
        raw = DeepLiftShap(model).attribute(torch.from_numpy(x[i : i + 1]),
                                            baselines=torch.from_numpy(exp.baselines[:, i]),
                                            target=1)
        np.testing.assert_allclose(exp.attributions[i], raw[0].detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert np.abs(exp.convergence_delta).max() < 1e-5


def test_lrp_epsilon_equals_gradient_times_input_without_biases():
    model, x = _mlp(False), _x()
    lrp = xs.explain(model, x, method="captum:lrp", rule="epsilon", epsilon=1e-9, target=0)
    ixg = xs.explain(model, x, method="input_x_gradient", target=0)
    np.testing.assert_allclose(lrp.attributions, ixg.attributions, atol=1e-4)
    assert np.abs(lrp.convergence_delta).max() < 1e-4  # conserved without biases
    gamma = xs.explain(model, x, method="captum:lrp", rule="gamma", target=0)
    assert not np.allclose(gamma.attributions, lrp.attributions)
    with pytest.raises(ValueError, match="rule must be one of epsilon, gamma"):
        xs.explain(model, x, method="captum:lrp", rule="zplus")
    # the user's model carries no rules afterwards
    assert not any(hasattr(m, "rule") for m in model.modules())


def test_captum_lrp_refuses_1d_cnns_with_the_layer_list(gunpoint_cnn):
    explainer = xs.create_explainer("captum:lrp", gunpoint_cnn)
    with pytest.raises(ValueError, match="explains tabular"):
        explainer.explain(np.zeros((2, 1, 150), dtype=np.float32))
    # on an image model it names every layer type it has no rule for
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.BatchNorm1d(18), nn.Linear(18, 2)).eval()
    with pytest.raises(TypeError, match="no rule for layer type\\(s\\) BatchNorm1d, Flatten"):
        xs.explain(model, np.zeros((2, 1, 5, 5), dtype=np.float32), method="captum:lrp")


def test_lime_default_surrogate_keeps_signal_where_captums_lasso_zeroes_it():
    trained, _, _, x = reference_problem("timeseries")

    class Damped(nn.Module):  # tiny output changes, as from an untrained model
        def forward(self, z):
            return trained(z) / 1000

    model = Damped().eval()
    ridge = xs.explain(model, x, method="lime", random_state=0)
    lasso = xs.explain(model, x, method="lime", surrogate="lasso", alpha=0.01, random_state=0)
    assert (ridge.attributions != 0).mean() > 0.9
    assert (lasso.attributions == 0).all()  # Captum's default surrogate on this model
    assert ridge.params["surrogate"] == "ridge"


def test_grad_cam_default_layer_and_upsampling(gunpoint, gunpoint_cnn):
    _, _, Xt, _ = gunpoint
    exp = xs.explain(gunpoint_cnn, Xt[:4], method="grad_cam")
    assert exp.params["layer"] == "features.8"  # the ReLU after the last convolution
    assert exp.attributions.shape == (4, 1, 150) and (exp.attributions >= 0).all()
    assert exp.attributions.std(axis=-1).min() > 0  # a map, not a constant
    conv = xs.explain(gunpoint_cnn, Xt[:4], method="grad_cam", layer="features.3")
    assert conv.params["layer"] == "features.3"
    with pytest.raises(ValueError, match="no submodule 'feature.8'.*features.8"):
        xs.explain(gunpoint_cnn, Xt[:4], method="grad_cam", layer="feature.8")
    model, _, _, x = reference_problem("timeseries")  # 2 channels: one map repeated
    multi = xs.explain(model, x, method="grad_cam")
    np.testing.assert_array_equal(multi.attributions[:, 0], multi.attributions[:, 1])


def test_occlusion_window():
    model, _, _, x = reference_problem("timeseries")
    exp = xs.explain(model, x, method="occlusion")
    assert exp.params["window"] == [1, 2] and exp.params["stride"] == [1, 2]
    with pytest.raises(ValueError, match="window must be 2 positive ints"):
        xs.explain(model, x, method="occlusion", window=(1, 50))
    whole = xs.explain(model, x, method="occlusion", window=(2, 24), baseline=0.0)
    fx = whole.predictions[np.arange(4), whole.target]
    with torch.no_grad():
        f0 = model(torch.zeros(1, 2, 24))[0].numpy()[whole.target]
    # one window covering everything: every element gets the whole output drop
    np.testing.assert_allclose(whole.attributions[:, 0, 0], fx - f0, rtol=1e-5)


def test_feature_permutation_needs_a_batch():
    model, _, _, x = reference_problem("tabular")
    with pytest.raises(ValueError, match="at least 2 instances"):
        xs.explain(model, x[:1], method="feature_permutation")


def test_saliency_sign_and_abs():
    model, x = _mlp(True), _x()
    signed = xs.explain(model, x, method="saliency")
    absolute = xs.explain(model, x, method="saliency", abs=True)
    assert (signed.attributions < 0).any()
    np.testing.assert_allclose(absolute.attributions, np.abs(signed.attributions))


def test_smoothgrad_tends_to_saliency_as_noise_vanishes():
    model, x = _mlp(True), _x()
    sg = xs.explain(model, x, method="smoothgrad", stdevs=1e-6, random_state=0)
    sal = xs.explain(model, x, method="saliency")
    np.testing.assert_allclose(sg.attributions, sal.attributions, rtol=1e-4, atol=1e-6)
    vg = xs.explain(model, x, method="vargrad", random_state=0)
    # a variance: non-negative up to the rounding of Captum's E[g^2] - E[g]^2
    eps = float(np.finfo(np.float32).eps)
    assert (vg.attributions >= -8 * eps * (sal.attributions**2).max()).all()
