"""Faithfulness metrics: hand-computed deletion/insertion areas of a linear model, the
insertion/deletion symmetry of linear models, ERASER comprehensiveness/sufficiency on a model
whose output is one feature, and infidelity / sensitivity-max equal to Captum's on the same
perturbations."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

import xai_suite as xs
from xai_suite.baselines import Blur, TrainingMean
from xai_suite.explanation import Explanation
from xai_suite.metrics import (
    comprehensiveness,
    compute_metric,
    deletion_auc,
    deletion_curve,
    infidelity,
    insertion_auc,
    insertion_curve,
    sensitivity_max,
    sufficiency,
)
from xai_suite.metrics.statistics import instance_generators
from xai_suite.testing import reference_problem

torch.set_num_threads(1)


def _linear(w, bias) -> nn.Linear:
    w = torch.as_tensor(np.atleast_2d(w), dtype=torch.float32)
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.fill_(bias)
    return lin.eval()


def _exp(model, x, attributions, target=None, baselines=None) -> Explanation:
    x = np.asarray(x, dtype=np.float32)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).numpy()
    target = pred.argmax(1) if target is None else np.asarray(target)
    a = np.asarray(attributions, dtype=np.float32)
    return Explanation(a, x, target, pred, "test", baselines=baselines)


def test_deletion_and_insertion_of_a_linear_model_by_hand():
    # f(x) = 3 x0 - x1 + 2 x2 + 0.5 x3 + 1 at x = (1, 2, -1, 4): contributions (3, -2, -2, 2),
    # f(x) = 2, f(0) = 1. Integrated gradients from zero gives exactly the contributions.
    model = _linear([3.0, -1.0, 2.0, 0.5], 1.0)
    x = np.array([[1.0, 2.0, -1.0, 4.0]], dtype=np.float32)
    exp = xs.explain(model, x, method="native:integrated_gradients", baseline="zeros", n_steps=8)
    np.testing.assert_allclose(exp.attributions, [[3, -2, -2, 2]], atol=1e-5)
    # removal order (signed, descending): x0 (3), x3 (2), then the two -2s
    fractions, values = deletion_curve(exp, model, n_steps=4)
    np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(values, [[2, -1, -3, -1, 1]], atol=1e-5)
    # trapezoid: 0.25 * ((2-1)/2 + (-1-3)/2 + (-3-1)/2 + (-1+1)/2) = -0.875
    np.testing.assert_allclose(deletion_auc(exp, model=model, n_steps=4), [-0.875], atol=1e-5)
    _, ins = insertion_curve(exp, model, n_steps=4)
    np.testing.assert_allclose(ins, [[1, 4, 6, 4, 2]], atol=1e-5)
    # 0.25 * (5/2 + 10/2 + 10/2 + 6/2) = 3.875
    np.testing.assert_allclose(insertion_auc(exp, model=model, n_steps=4), [3.875], atol=1e-5)
    # by |attribution| the order is x0, then the 2s and -2s in memory order: x1, x2, x3
    _, values = deletion_curve(exp, model, n_steps=4, absolute=True)
    np.testing.assert_allclose(values, [[2, -1, 1, 3, 1]], atol=1e-5)


def test_insertion_plus_deletion_is_f_x_plus_f_baseline_for_linear_models():
    # for f linear, deletion(t) + insertion(t) = f(x) + f(r) at every fraction, so the areas
    # add up to f(x) + f(r), whatever the attribution
    rng = np.random.default_rng(0)
    model = _linear(rng.normal(size=(3, 10)), 0.3)
    x = rng.normal(size=(6, 10)).astype(np.float32)
    exp = _exp(model, x, rng.normal(size=(6, 10)))
    r = 0.7
    total = deletion_auc(exp, model=model, replacement=r) + insertion_auc(exp, model=model, replacement=r)
    with torch.no_grad():
        fr = model(torch.full((6, 10), r)).numpy()[np.arange(6), exp.target]
    np.testing.assert_allclose(total, exp.predictions[np.arange(6), exp.target] + fr, rtol=1e-5, atol=1e-5)


def test_replacements():
    rng = np.random.default_rng(1)
    model = _linear(rng.normal(size=(2, 2 * 16)), 0.0)
    flat = nn.Sequential(nn.Flatten(), model).eval()
    x = rng.normal(size=(3, 2, 16)).astype(np.float32)
    b = rng.normal(size=(1, 3, 2, 16)).astype(np.float32)
    exp = _exp(flat, x, rng.normal(size=x.shape), baselines=b)
    idx = np.arange(3)

    def f(z):
        with torch.no_grad():
            return flat(torch.from_numpy(np.asarray(z, dtype=np.float32))).numpy()[idx, exp.target]

    # baseline: fully deleted = f(recorded baseline); fully inserted = f(x)
    _, values = deletion_curve(exp, flat, n_steps=5)
    np.testing.assert_allclose(values[:, 0], f(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[:, -1], f(b[0]), rtol=1e-5, atol=1e-6)
    # any baseline, as explainers take it: blur along time (the registered baseline, a spec, an
    # instance), a fitted training mean
    blurred = gaussian_filter(x, sigma=(0, 0, 2.0), mode="nearest")
    for spec in ({"name": "blur", "sigma": 2.0}, Blur(sigma=2.0)):
        _, values = deletion_curve(exp, flat, n_steps=5, replacement=spec)
        np.testing.assert_allclose(values[:, -1], f(blurred), rtol=1e-5, atol=1e-5)
    _, values = deletion_curve(exp, flat, n_steps=5, replacement="blur")  # Blur's own sigma, 5
    np.testing.assert_allclose(values[:, -1], f(gaussian_filter(x, sigma=(0, 0, 5.0), mode="nearest")),
                               rtol=1e-5, atol=1e-5)
    X_train = rng.normal(size=(20, 2, 16)).astype(np.float32)
    _, values = deletion_curve(exp, flat, n_steps=5, replacement=TrainingMean().fit(X_train))
    np.testing.assert_allclose(values[:, -1], f(np.repeat(X_train.mean(0, keepdims=True), 3, 0)),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="learns from training data: pass it fitted"):
        deletion_curve(exp, flat, replacement="training_mean")
    # a random baseline is drawn per instance, so one instance alone gets the same curve
    _, v0 = deletion_curve(exp, flat, replacement="uniform", random_state=3)
    _, again = deletion_curve(exp, flat, replacement="uniform", random_state=3, batch_size=7)
    _, other = deletion_curve(exp, flat, replacement="uniform", random_state=4)
    one = Explanation(exp.attributions[1:2], x[1:2], exp.target[1:2], exp.predictions[1:2], "test")
    _, alone = deletion_curve(one, flat, replacement="uniform", random_state=3)
    # other batch shapes run other float32 kernels: outputs (sums of 32 products) agree to a
    # few ulps of their terms, not bit for bit (1.2e-5 relative seen on an AVX-512 CPU)
    atol = 32 * np.finfo(np.float32).eps * np.abs(v0).max()
    np.testing.assert_allclose(again, v0, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(alone, v0[1:2], rtol=1e-5, atol=atol)
    assert not np.allclose(other[:, -1], v0[:, -1])
    # softmax probabilities
    _, p = deletion_curve(exp, flat, n_steps=5, softmax=True)
    with torch.no_grad():
        probs = torch.softmax(flat(torch.from_numpy(x)), 1).numpy()[idx, exp.target]
    np.testing.assert_allclose(p[:, 0], probs, rtol=1e-5)
    assert ((p >= 0) & (p <= 1)).all()


def test_bad_input_raises():
    rng = np.random.default_rng(2)
    model = _linear(rng.normal(size=(2, 5)), 0.0)
    exp = _exp(model, rng.normal(size=(3, 5)), rng.normal(size=(3, 5)))
    with pytest.raises(ValueError, match="replacement must be 'baseline' .* unknown baseline 'mean'"):
        deletion_auc(exp, model=model, replacement="mean")
    with pytest.raises(ValueError, match="baseline 'blur' applies to timeseries, image inputs"):
        deletion_auc(exp, model=model, replacement="blur")  # tabular
    with pytest.raises(ValueError, match="pass the model that was explained"):
        deletion_auc(exp, model=_linear(rng.normal(size=(2, 5)), 0.0))
    with pytest.raises(ValueError, match="n_steps"):
        deletion_auc(exp, model=model, n_steps=0)
    with pytest.raises(ValueError, match="fractions"):
        comprehensiveness(exp, model=model, fractions=(0.0, 0.5))
    with pytest.raises(ValueError, match="needs model"):
        compute_metric("deletion_auc", exp)


class _Pick(nn.Module):
    """Output = feature ``j`` (one output)."""

    def __init__(self, j):
        super().__init__()
        self.j = j

    def forward(self, x):
        return x[:, self.j : self.j + 1]


def test_comprehensiveness_and_sufficiency_when_the_output_is_one_feature():
    # D = 10: ERASER's 1, 5, 10, 20, 50% take 1, 1, 1, 2, 5 features; feature 3 is the output
    model = _Pick(3).eval()
    x = np.random.default_rng(3).normal(size=(4, 10)).astype(np.float32) + 2
    right = np.tile(np.linspace(0, 1, 10), (4, 1))
    right[:, 3] = 5.0  # ranked first
    wrong = -right  # feature 3 last
    exp_right, exp_wrong = _exp(model, x, right), _exp(model, x, wrong)
    # removing the top features removes feature 3: the output drops from x3 to 0 at every k
    np.testing.assert_allclose(comprehensiveness(exp_right, model=model), x[:, 3], rtol=1e-6)
    np.testing.assert_allclose(sufficiency(exp_right, model=model), 0.0, atol=1e-7)
    np.testing.assert_allclose(comprehensiveness(exp_wrong, model=model), 0.0, atol=1e-7)
    np.testing.assert_allclose(sufficiency(exp_wrong, model=model), x[:, 3], rtol=1e-6)
    # with the top 50% only, feature 3 is kept by the second-ranked half of "half"
    half = np.tile(np.linspace(1, 0, 10), (4, 1))  # feature 3 ranked 4th: in the 50% bin only
    exp_half = _exp(model, x, half)
    np.testing.assert_allclose(comprehensiveness(exp_half, model=model), x[:, 3] / 5, rtol=1e-6)
    np.testing.assert_allclose(sufficiency(exp_half, model=model), x[:, 3] * 4 / 5, rtol=1e-6)


@pytest.fixture(scope="module")
def tabular():
    model, _, _, x = reference_problem("tabular")
    explainer = xs.create_explainer("native:integrated_gradients", model, n_steps=16)
    return model, x, explainer, explainer.explain(x)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captums(tabular, normalize):
    from captum.metrics import infidelity as captum_infidelity

    model, x, _, exp = tabular

    def perturb(inputs):  # the same seeded noise for both
        g = torch.Generator().manual_seed(0)
        noise = 0.1 * torch.randn(inputs.shape, generator=g)
        return noise, inputs - noise

    ours = infidelity(exp, model=model, perturb_fn=perturb, n_perturb_samples=7, normalize=normalize)
    theirs = captum_infidelity(model, perturb, torch.from_numpy(x), torch.from_numpy(exp.attributions),
                               target=torch.from_numpy(exp.target), n_perturb_samples=7,
                               normalize=normalize).numpy()
    assert ours.shape == (len(x),) and (theirs > 1e-3).all()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_sensitivity_max_equals_captums(tabular):
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    _, x, explainer, exp = tabular

    def perturb(inputs):
        g = torch.Generator().manual_seed(1)
        return inputs + torch.empty(inputs.shape).uniform_(-0.05, 0.05, generator=g)

    def explanation_func(inputs, target):  # Captum passes x as a 1-tuple, perturbed x as a tensor
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        with torch.enable_grad():
            return (torch.from_numpy(explainer.explain(inputs, target=target).attributions),)

    ours = sensitivity_max(exp, explainer=explainer, perturb_fn=perturb, n_perturb_samples=5)
    theirs = captum_sensitivity_max(explanation_func, torch.from_numpy(x), perturb_func=perturb,
                                    n_perturb_samples=5, target=torch.from_numpy(exp.target)).numpy()
    assert (theirs > 1e-3).all()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_infidelity_and_sensitivity_of_exact_local_attributions_are_zero():
    # for a linear model the gradient w is exact: I . w = f(x) - f(x - I) for every I, and it
    # does not change when x moves; input x gradient is not a local explanation of I
    rng = np.random.default_rng(4)
    model = _linear(rng.normal(size=(3, 8)), 0.5)
    x = rng.normal(size=(5, 8)).astype(np.float32)
    saliency = xs.create_explainer("captum:saliency", model)
    exp = saliency.explain(x)
    np.testing.assert_allclose(exp.attributions, model.weight.detach().numpy()[exp.target], rtol=1e-6)
    assert infidelity(exp, model=model).max() < 1e-9
    assert sensitivity_max(exp, explainer=saliency).max() < 1e-6
    global_exp = xs.create_explainer("captum:input_x_gradient", model).explain(x)
    assert infidelity(global_exp, model=model).min() > 1e-3
    # default perturbations are seeded per instance: repeatable, chunking does not matter
    a = infidelity(global_exp, model=model, random_state=1)
    # another batch size runs other float32 kernels: equal to float32 rounding, not bit for bit
    np.testing.assert_allclose(a, infidelity(global_exp, model=model, random_state=1, batch_size=3),
                               rtol=1e-5, atol=1e-9)
    assert not np.allclose(a, infidelity(global_exp, model=model, random_state=2))
    np.testing.assert_array_equal(a, compute_metric("infidelity", global_exp, model=model, random_state=1))


def test_removal_infidelity_of_complete_additive_attributions_is_zero():
    # removal perturbations: random subsets replaced by the explanation's baseline, I . attr the
    # removed elements' total. For a linear model integrated gradients' contributions are
    # exact for every subset (0); input x gradient from a nonzero baseline is not, and its
    # value is the hand-computed mean squared gap over the same seeded subsets.
    rng = np.random.default_rng(5)
    model = _linear(rng.normal(size=(3, 6)), 0.5)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    ref = rng.normal(size=(1, 4, 6)).astype(np.float32)
    ig = xs.create_explainer("native:integrated_gradients", model, n_steps=4)
    exp = ig.explain(x, baselines=torch.from_numpy(ref[0]))
    assert infidelity(exp, model=model, perturbation="removal", n_perturb_samples=16).max() < 1e-9
    wrong = _exp(model, x, x * model.weight.detach().numpy()[exp.target], target=exp.target, baselines=ref)
    ours = infidelity(wrong, model=model, perturbation="removal", n_perturb_samples=5, random_state=2)
    w = model.weight.detach().double().numpy()
    for i, g in enumerate(instance_generators(x, 2)):
        removed = g.random((5, 6)) < 0.5
        drops = (removed * (x[i] - ref[0, i])) @ w[exp.target[i]]  # f(x) - f(x with removed -> ref)
        gaps = removed @ wrong.attributions[i] - drops
        np.testing.assert_allclose(ours[i], np.mean(gaps**2), rtol=1e-4)
    assert ours.min() > 1e-3
    with pytest.raises(ValueError, match="perturb_fn gives 'noise' perturbations"):
        infidelity(exp, model=model, perturbation="removal", perturb_fn=lambda v: (v, v))
