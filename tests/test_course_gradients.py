"""Assignments ig, smoothgrad and lrp: each reference gets full marks, each classic mistake
fails the check of the property it breaks with a message that names it, the starters score 0,
and the references agree with the libraries (Captum) on the same inputs."""

import textwrap

import numpy as np
import pytest
import torch

import xai_suite as xs
from xai_suite.cli import main
from xai_suite.course import check_file, check_function, init_assignment
from xai_suite.course.assignments import ig, lrp, smoothgrad
from xai_suite.course.assignments.ig import mlp, targets, tensor

NAMES = ("ig", "smoothgrad", "lrp")
MODULES = {"ig": ig, "smoothgrad": smoothgrad, "lrp": lrp}


pytestmark = pytest.mark.usefixtures("one_thread")


def _failures(name, fn, seeds=(0, 1, 2)):
    """Failed check names and report text per seed."""
    reports = [check_function(name, fn, seed=s) for s in seeds]
    return [(set(r.failed()), str(r)) for r in reports]


# -- every assignment --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_reference_gets_full_marks_on_seeds_0_to_4(name):
    a = MODULES[name].ASSIGNMENT
    assert 4 <= len(a.checks) <= 6 and all(1 <= c.points <= 3 for c in a.checks)
    for seed in range(5):
        report = check_function(name, a.reference, seed=seed)
        assert report.passed, str(report)
        assert report.score == a.max_score == 10


@pytest.mark.parametrize("name", NAMES)
def test_starter_scores_zero(name, tmp_path):
    path = init_assignment(name, tmp_path)
    report = check_file(name, path, seed=0)
    assert report.score == 0
    assert str(report).count("not implemented yet") == len(MODULES[name].ASSIGNMENT.checks)


@pytest.mark.parametrize("name", NAMES)
def test_command_line_gives_full_marks_to_the_reference(name, tmp_path, capsys):
    path = tmp_path / "mine.py"
    fn = MODULES[name].ASSIGNMENT.function
    path.write_text(f"from xai_suite.course.assignments.{name} import reference as {fn}\n")
    assert main(["course", "check", name, str(path), "--seed", "0"]) == 0
    assert "full marks" in capsys.readouterr().out


# -- ig ----------------------------------------------------------------------------------------
def _path_mean_gradient(model, x, baseline, target, alphas):
    total = torch.zeros_like(x)
    for a in alphas:
        z = (baseline + a * (x - baseline)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(z).gather(1, target.view(-1, 1)).sum(), z)
        total += g
    return total / len(alphas)


def _riemann(offset):
    def integrated_gradients(model, x, baseline, target, n_steps=50):
        alphas = [(k + offset) / n_steps for k in range(n_steps)]
        return (x - baseline) * _path_mean_gradient(model, x, baseline, target, alphas)
    return integrated_gradients


def _trapezoid(model, x, baseline, target, n_steps=50):
    alphas = torch.linspace(0, 1, n_steps)
    g = torch.stack([_path_mean_gradient(model, x, baseline, target, [a]) for a in alphas])
    w = torch.full((n_steps,), 1.0 / (n_steps - 1))
    w[[0, -1]] /= 2
    return (x - baseline) * (w.view(-1, *[1] * x.dim()) * g).sum(0)


def _ig_without_factor(model, x, baseline, target, n_steps=50):
    return _path_mean_gradient(model, x, baseline, target, [(k + 0.5) / n_steps for k in range(n_steps)])


def _gradient_x_input(model, x, baseline, target, n_steps=50):
    return x * _path_mean_gradient(model, x, x, target, [1.0])


def _ig_class_zero(model, x, baseline, target, n_steps=50):
    return ig.reference(model, x, baseline, torch.zeros_like(target), n_steps)


@pytest.mark.parametrize("rule", [_riemann(0.0), _riemann(1.0), _trapezoid],
                         ids=["left", "right", "trapezoid"])
def test_ig_accepts_any_riemann_rule(rule):
    for seed in (0, 1, 2):
        report = check_function("ig", rule, seed=seed)
        assert report.passed, str(report)


def test_ig_without_the_factor_is_told_so():
    for failed, text in _failures("ig", _ig_without_factor):
        assert {"linear", "completeness", "agreement", "zero_path"} <= failed
        assert "yours looks like the average gradient alone: did you forget to multiply by " \
               "(x - baseline)?" in text
        assert "completeness: the attributions of row" in text


def test_ig_gradient_x_input_and_ignored_target_fail():
    for failed, text in _failures("ig", _gradient_x_input):
        assert {"linear", "completeness", "agreement", "zero_path"} <= failed
        assert "(gradient x input): the path must start at the baseline" in text
    for failed, text in _failures("ig", _ig_class_zero):
        assert {"linear", "agreement", "independent"} <= failed
        assert "every row was explained for class 0" in text
        assert "left its attributions unchanged" in text


def test_ig_mixing_rows_targets_fails_independence():
    def block(model, x, baseline, target, n_steps=50):
        total = torch.zeros_like(x)
        for k in range(n_steps):
            z = (baseline + (k + 0.5) / n_steps * (x - baseline)).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model(z)[:, target].sum(), z)  # an N x N block
            total += g
        return (x - baseline) * total / n_steps

    for failed, text in _failures("ig", block, seeds=(0,)):
        assert "independent" in failed and "differs from row 0 explained alone" in text


def test_ig_wrong_solution_fails_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "my_ig.py"
    path.write_text(textwrap.dedent("""
        import torch

        def integrated_gradients(model, x, baseline, target, n_steps=50):
            total = torch.zeros_like(x)
            for k in range(n_steps):
                z = (baseline + (k + 0.5) / n_steps * (x - baseline)).detach().requires_grad_(True)
                (g,) = torch.autograd.grad(model(z).gather(1, target.view(-1, 1)).sum(), z)
                total += g
            return total / n_steps
    """))
    assert main(["course", "check", "ig", str(path), "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] completeness" in out and "did you forget to multiply by (x - baseline)?" in out


def test_ig_reference_matches_captum():
    rng = np.random.default_rng(0)
    model = mlp(rng, (6, 12, 12, 3))
    x, b, t = tensor(rng, 5, 6), tensor(rng, 5, 6, scale=0.5), targets(rng, 5, 3)
    want = xs.create_explainer("captum:integrated_gradients", model, n_steps=300, device="cpu") \
        .explain(x, target=t.numpy(), baselines=b).attributions
    got = ig.reference(model, x, b, t, n_steps=300).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=1e-3)


# -- smoothgrad --------------------------------------------------------------------------------
def _noisy_gradients(model, x, target, n_samples, std, gen, average_inputs=False):
    std = std.view(-1, *[1] * (x.dim() - 1)) if torch.is_tensor(std) else std
    grads, inputs = torch.zeros_like(x), torch.zeros_like(x)
    for _ in range(n_samples):
        noisy = x + torch.randn(x.shape, generator=gen) * std
        if average_inputs:
            inputs += noisy
            continue
        noisy.requires_grad_(True)
        (g,) = torch.autograd.grad(model(noisy).gather(1, target.view(-1, 1)).sum(), noisy)
        grads += g
    if not average_inputs:
        return grads / n_samples
    z = (inputs / n_samples).requires_grad_(True)
    (g,) = torch.autograd.grad(model(z).gather(1, target.view(-1, 1)).sum(), z)
    return g


def _range_std(x, sigma):
    flat = x.flatten(1)
    return sigma * (flat.max(1).values - flat.min(1).values)


def _sg_unscaled(model, x, target, n_samples=50, sigma=0.15, random_state=0):
    return _noisy_gradients(model, x, target, n_samples, sigma, torch.Generator().manual_seed(random_state))


def _sg_of_mean_input(model, x, target, n_samples=50, sigma=0.15, random_state=0):
    return _noisy_gradients(model, x, target, n_samples, _range_std(x, sigma),
                            torch.Generator().manual_seed(random_state), average_inputs=True)


def _sg_unseeded(model, x, target, n_samples=50, sigma=0.15, random_state=0):
    return _noisy_gradients(model, x, target, n_samples, _range_std(x, sigma), None)


def test_smoothgrad_noise_not_scaled_by_the_range_fails():
    for failed, text in _failures("smoothgrad", _sg_unscaled):
        assert "noise_scale" in failed and {"linear", "sigma_zero", "random_state"}.isdisjoint(failed)
        assert "Your noise std is sigma = 0.15 itself: scale it by each instance's max - min" in text


def test_smoothgrad_gradient_of_the_mean_input_fails():
    for failed, text in _failures("smoothgrad", _sg_of_mean_input):
        assert {"noise_scale", "statistics"} <= failed
        assert "Your maps are one gradient at x + the average noise: average the gradients" in text
        assert "standard errors away" in text


def test_smoothgrad_ignoring_random_state_fails():
    for failed, text in _failures("smoothgrad", _sg_unseeded):
        assert failed == {"random_state"}
        assert "must give the same map" in text


def test_smoothgrad_reference_matches_the_closed_form_and_captum():
    rng = np.random.default_rng(1)
    n, f, k, sigma = 3, 5, 2, 0.15
    # closed form: on sum_i a_i sin(x_i), noise of std s shrinks the gradient by exp(-s^2/2)
    model = smoothgrad.Sines(rng.normal(0, 1, (f, k)))
    x = torch.as_tensor(rng.normal(0, 1, (n, f)) * np.array([[1.0], [2.0], [3.0]]), dtype=torch.float32)
    t = targets(rng, n, k)
    got = smoothgrad.reference(model, x, t, n_samples=3000, sigma=sigma, random_state=0).double().numpy()
    s = _range_std(x, sigma).double().numpy()
    a = model.a.detach().double().numpy()[:, t.numpy()].T
    want = a * np.cos(x.double().numpy()) * np.exp(-s[:, None] ** 2 / 2)
    np.testing.assert_allclose(got, want, atol=0.03 * np.abs(a).max())
    # Captum's stdevs is absolute: captum:smoothgrad with stdevs = sigma * (max - min) of the
    # instance estimates the same expectation
    model = mlp(rng, (f, 16, k))
    x = tensor(rng, n, f, scale=1.5)
    s = _range_std(x, sigma).double().numpy()
    ours = smoothgrad.reference(model, x, t, n_samples=4000, sigma=sigma, random_state=1).numpy()
    for i in range(n):
        exp = xs.create_explainer("captum:smoothgrad", model, nt_samples=4000, stdevs=float(s[i]),
                                  batch_size=4000, random_state=i, device="cpu") \
            .explain(x[i : i + 1], target=t[i : i + 1].numpy())
        mean, sd = smoothgrad.expected_smoothgrad(model, x[i : i + 1], t[i : i + 1],
                                                  torch.tensor([float(s[i])]), 20000,
                                                  torch.Generator().manual_seed(7))
        se = sd[0] * np.sqrt(2 / 4000)  # the difference of two independent 4000-sample means
        assert (np.abs(exp.attributions[0] - ours[i]) < 5 * se + 1e-6).all()
        assert (np.abs(ours[i] - mean[0]) < 5 * sd[0] / np.sqrt(4000) + 1e-6).all()
    assert np.abs(ours).max() > 0.1  # a real signal was compared


def test_smoothgrad_reference_is_repeatable_and_seeded():
    rng = np.random.default_rng(2)
    model, x, t = mlp(rng, (4, 8, 2)), tensor(rng, 3, 4), targets(rng, 3, 2)
    a = smoothgrad.reference(model, x, t, n_samples=5, random_state=3)
    assert torch.equal(a, smoothgrad.reference(model, x, t, n_samples=5, random_state=3))
    assert not torch.allclose(a, smoothgrad.reference(model, x, t, n_samples=5, random_state=4))


# -- lrp ---------------------------------------------------------------------------------------
def _lrp_variant(**kwargs):
    def lrp_epsilon(model, x, target, epsilon=1e-6):
        return torch.as_tensor(lrp._variant(model, x, target, epsilon, **kwargs), dtype=torch.float32)
    return lrp_epsilon


def test_lrp_starting_from_all_logits_fails():
    for failed, text in _failures("lrp", _lrp_variant(start="all")):
        assert {"agreement", "conservation", "target"} <= failed
        assert "your sums equal the sum of all logits: start from the target logit only" in text


def test_lrp_weights_without_activations_fail():
    for failed, text in _failures("lrp", _lrp_variant(activations=False)):
        assert {"agreement", "conservation", "gradient_x_input"} <= failed
        assert "you propagate with the weights alone" in text


def test_lrp_epsilon_without_its_sign_fails_agreement():
    # with epsilon = 1e-6 the sign hardly matters (conservation passes); with the check's
    # epsilon >= 0.1 and negative target logits it does
    for failed, text in _failures("lrp", _lrp_variant(denominator="plus")):
        assert failed == {"agreement"}
        assert "your denominators are z + epsilon" in text
    for failed, text in _failures("lrp", _lrp_variant(denominator="abs")):
        assert {"agreement", "gradient_x_input"} <= failed
        assert "you divide by |z| + epsilon" in text


@pytest.mark.parametrize("epsilon", [1e-9, 0.3])
def test_lrp_reference_matches_captum(epsilon):
    rng = np.random.default_rng(3)
    model = mlp(rng, (6, 10, 8, 3), activation=torch.nn.ReLU)
    x = tensor(rng, 6, 6)
    t = lrp._mixed_targets(model, x)
    want = xs.create_explainer("captum:lrp", model, epsilon=epsilon, device="cpu") \
        .explain(x, target=t.numpy()).attributions
    got = lrp.reference(model, x, t, epsilon).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max(), rtol=1e-4)
    with torch.no_grad():
        assert (model(x).gather(1, t.view(-1, 1)) < 0).any()  # the sign of z was exercised


def test_lrp_reference_refuses_other_layers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    with pytest.raises(TypeError, match="only Linear and ReLU layers are supported; got Tanh"):
        lrp.reference(model, torch.zeros(2, 4), torch.zeros(2, dtype=torch.int64))
