"""native:lrp: identities, conservation, agreement with Captum and per-rule formulas."""

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs
from xai_suite.methods.native.lrp import COMPOSITES, RULES, AlphaBeta, Epsilon, Flat, Gamma, _Settings, lrp
from xai_suite.testing import reference_problem


def _mlp(bias=True, act=nn.ReLU):
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 12, bias=bias), act(), nn.Linear(12, 8, bias=bias), act(),
                         nn.Linear(8, 3, bias=bias)).eval()


def _cnn1d(bias=True):
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv1d(2, 4, 5, padding=2, bias=bias), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(4, 6, 3, padding=1, bias=bias), nn.ReLU(), nn.AvgPool1d(2),
        nn.Conv1d(6, 8, 3, bias=bias), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        nn.Linear(8, 3, bias=bias),
    ).eval()


def _cnn2d(bias=True):
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=bias), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 1, bias=bias), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 3, bias=bias),
    ).eval()


MODELS = {"mlp": (_mlp, (6,)), "cnn1d": (_cnn1d, (2, 24)), "cnn2d": (_cnn2d, (1, 8, 8))}


def _x(shape, n=5, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32))


def _grad_x_input(model, x, target):
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).gather(1, target.view(-1, 1)).sum(), xg)
    return x * g


def _randomise_batchnorm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def _rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


# -- (a) LRP-0 = gradient x input ----------------------------------------------------------
@pytest.mark.parametrize("kind", MODELS)
def test_epsilon_to_zero_equals_gradient_times_input(kind):
    make, shape = MODELS[kind]
    model, x = make(bias=False), _x(shape)
    target = torch.tensor([0, 1, 2, 0, 1])
    exp = xs.explain(model, x.numpy(), method="native:lrp", epsilon=1e-9, target=target.numpy())
    expected = _grad_x_input(model, x, target).numpy()
    np.testing.assert_allclose(exp.attributions, expected, atol=1e-4 * np.abs(expected).max())
    assert np.abs(exp.convergence_delta).max() < 1e-5  # conserved without biases
    assert exp.method == "native:lrp" and xs.explainer_info("lrp").qualified_name == "native:lrp"


# -- (b) conservation layer by layer ---------------------------------------------------------
@pytest.mark.parametrize("kind", MODELS)
def test_epsilon_conserves_relevance_at_every_layer_without_biases(kind):
    make, shape = MODELS[kind]
    model, x = make(bias=False), _x(shape)
    record = {}
    lrp(model, x, torch.zeros(5, dtype=torch.long), layer_relevances=record)
    total = record.pop("output")
    hooked = [n for n, m in model.named_modules() if not isinstance(m, (nn.Sequential, nn.Flatten))]
    assert set(record) == set(hooked)  # every layer's input relevance was recorded
    for name, r in record.items():
        np.testing.assert_allclose(r, total, rtol=0.01, err_msg=f"layer {name}")
    # with biases, relevance leaks: the recorder shows where
    record = {}
    lrp(make(bias=True), x, torch.zeros(5, dtype=torch.long), layer_relevances=record)
    assert not np.allclose(record["0"], record["output"], rtol=0.01)


@pytest.mark.parametrize("composite", sorted(set(COMPOSITES) - {"epsilon_alpha2_beta1"}))
def test_conservative_composites_conserve_relevance_without_biases(composite):
    # alpha2-beta1 is left out: it conserves only where a neuron has both positive and
    # negative contributions (z+ and z- non-zero), which random 1-D convolutions break
    model, x = _cnn1d(bias=False), _x((2, 24))
    target = model(x).argmax(1)
    attr, used = lrp(model, x, target, composite=composite)
    np.testing.assert_allclose(attr.flatten(1).sum(1), model(x).gather(1, target[:, None])[:, 0].detach(),
                               rtol=0.01)
    assert used["10"].startswith("AlphaBeta" if composite == "zplus" else "Epsilon")  # dense head


# -- each rule against its formula on one Linear layer -------------------------------------
def _formula(rule: str, w, b, x, t, s):
    """Relevance of the inputs of ``y = w x + b`` for output ``t``, written out per rule."""
    c = x * w[t]  # contributions c_i = x_i w_ti, shape (n, F)
    z = c.sum(1) + b[t]
    r = z  # the starting relevance is the output itself

    def stab(v):
        return v + s.epsilon * np.where(v >= 0, 1, -1)

    cp, cn = np.clip(c, 0, None), np.clip(c, None, 0)
    if rule == "epsilon":
        return c / stab(z)[:, None] * r[:, None]
    if rule == "gamma":
        g = s.gamma
        up = np.where(z[:, None] > 0, c + g * cp, c + g * cn)
        bias = np.where(z > 0, b[t] + g * max(b[t], 0), b[t] + g * min(b[t], 0))
        return up / stab(up.sum(1) + bias)[:, None] * r[:, None]
    if rule in ("zplus", "alpha1_beta0", "alpha2_beta1"):
        alpha, beta = (2.0, 1.0) if rule == "alpha2_beta1" else (1.0, 0.0)
        zp, zn = cp.sum(1) + max(b[t], 0), cn.sum(1) + min(b[t], 0)
        return (alpha * cp / stab(zp)[:, None] - beta * cn / stab(zn)[:, None]) * r[:, None]
    if rule == "flat":
        return np.repeat((r / x.shape[1])[:, None], x.shape[1], 1)
    if rule == "wsquare":
        return np.tile(w[t] ** 2 / (w[t] ** 2).sum(), (len(x), 1)) * r[:, None]
    if rule == "zbox":
        lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
        q = c - lo * np.clip(w[t], 0, None) - hi * np.clip(w[t], None, 0)
        return q / stab(q.sum(1))[:, None] * r[:, None]
    raise AssertionError(f"no formula for {rule}")


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rules_match_their_formula_on_one_linear_layer(rule):
    torch.manual_seed(4)
    layer = nn.Linear(7, 3).double().eval()
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(6, 7)))
    s = _Settings(epsilon=1e-6, gamma=0.25, low=None, high=None)
    attr, used = lrp(layer, x, torch.full((6,), 1), rules={nn.Linear: rule}, epsilon=s.epsilon)
    expected = _formula(rule, layer.weight.detach().numpy(), layer.bias.detach().numpy(),
                        x.numpy(), 1, s)
    np.testing.assert_allclose(attr.numpy(), expected, rtol=1e-5, atol=1e-9)
    assert used == {"Linear": repr(RULES[rule](s))}


# -- (e) z-plus: non-negative relevance from positive outputs ------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_zplus_relevance_is_non_negative_and_conserved(bias):
    model, x = _cnn1d(bias=bias), _x((2, 24), n=12)  # inputs of both signs
    out = model(x).detach()
    target = out.argmax(1)
    keep = out.gather(1, target[:, None])[:, 0] > 0
    attr, _ = lrp(model, x[keep], target[keep], composite="zplus")
    assert keep.sum() >= 6 and (attr >= -1e-7).all()
    if not bias:  # biases take their positive part in z+ and absorb relevance
        np.testing.assert_allclose(attr.flatten(1).sum(1), out[keep].gather(1, target[keep, None])[:, 0],
                                   rtol=2e-3)  # the 1e-6 stabiliser of small z+ absorbs a little
    # alpha2-beta1 gives signed maps that still weigh positive evidence twice
    signed, _ = lrp(model, x[keep], target[keep], composite="epsilon_alpha2_beta1")
    assert (signed < 0).any()


# -- (d) agreement with Captum ---------------------------------------------------------------
@pytest.mark.parametrize("modality", ["tabular", "image"])
def test_agrees_with_captum_lrp(modality):
    from captum.attr import LRP as CaptumLRP
    from captum.attr._utils import lrp_rules

    model, X, _, _ = reference_problem(modality)
    x = X[:8]
    ours = xs.explain(model, x, method="native:lrp", epsilon=1e-9)  # Captum's epsilon default
    theirs = xs.explain(model, x, method="captum:lrp", rule="epsilon", epsilon=1e-9)
    np.testing.assert_allclose(ours.attributions, theirs.attributions,
                               atol=1e-5 * np.abs(theirs.attributions).max())
    np.testing.assert_allclose(ours.convergence_delta, theirs.convergence_delta, atol=1e-5)
    # gamma and z-plus: Captum's simpler forms equal ours on non-negative inputs without biases
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    xp = torch.from_numpy(np.abs(x))
    target = model(xp).argmax(1)
    weighted = (nn.Linear, nn.Conv2d)
    for captum_rule, rule in ((lambda: lrp_rules.GammaRule(0.25), Gamma(0.25, stabilizer=1e-9)),
                              (lrp_rules.Alpha1_Beta0_Rule, AlphaBeta(1, 0, stabilizer=1e-9))):
        twin = copy.deepcopy(model)
        for m in twin.modules():
            if isinstance(m, weighted):
                m.rule = captum_rule()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = CaptumLRP(twin).attribute(xp.clone().requires_grad_(True), target=target)
        attr, _ = lrp(model, xp, target, rules=dict.fromkeys(weighted, rule), epsilon=1e-9)
        assert _rel_err(attr, expected.detach()) < 1e-5, rule


# -- (c) 1-D zoo models with BatchNorm1d and residual blocks --------------------------------
def _zoo():
    from xai_suite_timeseries import FCN, CNN1d, ResNet1d

    torch.manual_seed(0)
    return {"CNN1d": CNN1d(2, 3), "FCN": FCN(2, 3), "ResNet1d": ResNet1d(2, 3)}


@pytest.mark.parametrize("name", ["CNN1d", "FCN", "ResNet1d"])
def test_explains_timeseries_zoo_where_captum_raises(name):
    from captum.attr import LRP as CaptumLRP

    model = _randomise_batchnorm(_zoo()[name])
    x = _x((2, 40), n=4)
    with pytest.raises(TypeError, match="Conv1d"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CaptumLRP(copy.deepcopy(model)).attribute(x.clone().requires_grad_(True), target=0)
    exp = xs.explain(model, x.numpy(), method="lrp", epsilon=1e-9)
    # biases and batch-norm shifts included, LRP-0 is still gradient x input (in float64:
    # in float32 the merged layers' round-off shows where outputs are near 0)
    target = torch.from_numpy(exp.target)
    model64, x64 = copy.deepcopy(model).double(), x.double()
    attr, _ = lrp(model64, x64, target, epsilon=1e-12)
    assert _rel_err(attr, _grad_x_input(model64, x64, target)) < 1e-6
    assert _rel_err(torch.from_numpy(exp.attributions), attr.float()) < 1e-3
    used = exp.params["rules_used"]
    n_bn = sum(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert sum(v.startswith("merged into") for v in used.values()) == n_bn
    for composite in ("epsilon_plus", "epsilon_gamma_box"):
        other = xs.explain(model, x.numpy(), method="lrp", composite=composite)
        assert np.isfinite(other.attributions).all()
        assert not np.allclose(other.attributions, exp.attributions)


def test_trained_gunpoint_cnn(gunpoint_cnn, gunpoint):
    x = gunpoint[2][:8]
    exp = xs.explain(gunpoint_cnn, x, method="lrp", epsilon=1e-9)
    target = torch.from_numpy(exp.target)
    model64, x64 = copy.deepcopy(gunpoint_cnn).double(), torch.from_numpy(x).double()
    attr, _ = lrp(model64, x64, target, epsilon=1e-12)
    assert _rel_err(attr, _grad_x_input(model64, x64, target)) < 1e-6
    assert _rel_err(torch.from_numpy(exp.attributions), attr.float()) < 1e-3
    # epsilon-plus (z-plus convolutions) also runs on the trained model and gives another map
    plus = xs.explain(gunpoint_cnn, x, method="lrp", composite="epsilon_plus")
    assert np.isfinite(plus.attributions).all() and not np.allclose(plus.attributions, exp.attributions)


class _Residual(nn.Module):
    """Functional residual sums, a reused in-place ReLU and an in-place LeakyReLU."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv1d(1, 4, 5, padding=2, bias=False)
        self.c1 = nn.Conv1d(4, 4, 3, padding=1, bias=False)
        self.c2 = nn.Conv1d(4, 4, 3, padding=1, bias=False)
        self.relu, self.leaky = nn.ReLU(inplace=True), nn.LeakyReLU(0.2, inplace=True)
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        h = self.relu(self.inp(x))
        h = self.relu(self.c2(self.leaky(self.c1(h))) + h)
        return self.head(h.mean(-1))


def test_residual_sums_split_relevance_and_inplace_activations():
    torch.manual_seed(6)
    model, x = _Residual().eval(), _x((1, 30))
    target = torch.tensor([0, 1, 0, 1, 0])
    record = {}
    attr, _ = lrp(model, x, target, epsilon=1e-9, layer_relevances=record)
    assert _rel_err(attr, _grad_x_input(model, x, target)) < 1e-4
    # the sum splits relevance between its addends, so nothing is counted twice: the
    # relevance of h (the shortcut plus what flows back through c1 and c2) is all of it
    for key in ("relu#1", "c1", "relu", "inp"):
        np.testing.assert_allclose(record[key], record["output"], rtol=0.01, err_msg=key)
    assert not np.allclose(record["c2"], record["output"], rtol=0.1)  # the body's share


def test_activations_pass_relevance_through():
    model, x = _mlp(bias=False, act=nn.GELU), _x((6,))
    target = torch.zeros(5, dtype=torch.long)
    attr, _ = lrp(model, x, target, epsilon=1e-9)
    out = model(x)[:, 0].detach()
    np.testing.assert_allclose(attr.sum(1), out, rtol=1e-4)  # conserved through GELU
    assert not torch.allclose(_grad_x_input(model, x, target).sum(1), out, rtol=1e-2)


# -- (f) the BatchNorm canonizer -------------------------------------------------------------
def _bn_model():
    torch.manual_seed(7)
    return _randomise_batchnorm(nn.Sequential(
        nn.Conv1d(2, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(),
        nn.Conv1d(4, 6, 3, padding=1, bias=False), nn.BatchNorm1d(6), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3),
    ))


def _fold(model):
    """The same network with every BatchNorm folded into the layer before it."""
    folded = copy.deepcopy(model)
    mods = list(folded)
    for i, bn in enumerate(mods):
        if isinstance(bn, nn.BatchNorm1d):
            layer = mods[i - 1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            with torch.no_grad():
                bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.bias)
                new_bias = (bias - bn.running_mean) * scale + bn.bias
                layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.dim() - 1)))
                layer.bias = nn.Parameter(new_bias)
            folded[i] = nn.Identity()
    return folded.eval()


@pytest.mark.parametrize("composite", sorted(COMPOSITES))
def test_batchnorm_is_merged_into_the_preceding_layer(composite):
    model, x = _bn_model(), _x((2, 24))
    folded = _fold(model)
    target = model(x).argmax(1)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    ours, used = lrp(model, x, target, composite=composite)
    reference, _ = lrp(folded, x, target, composite=composite)
    assert _rel_err(ours, reference) < 1e-4
    assert used["1"] == used["4"] == "merged into the preceding Conv1d"
    assert used["9"] == "merged into the preceding Linear"


def test_lone_batchnorm_is_an_epsilon_layer():
    torch.manual_seed(8)
    model = _randomise_batchnorm(nn.Sequential(nn.BatchNorm1d(2), nn.Conv1d(2, 3, 3), nn.ReLU(),
                                               nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2)))
    x, target = _x((2, 20)), torch.zeros(5, dtype=torch.long)
    attr, used = lrp(model, x, target, epsilon=1e-9)
    assert used["0"].startswith("Epsilon") and used["1"].startswith("Epsilon")
    assert _rel_err(attr, _grad_x_input(model, x, target)) < 1e-4
    with pytest.raises(ValueError, match="no such layer takes it directly"):
        lrp(model, x, target, composite="epsilon_plus_flat")


# -- (g) the model is left as it was; clear errors --------------------------------------------
def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


def test_model_unchanged_and_hooks_removed():
    model = _bn_model()
    model[1].train()  # a module in training mode is refused, not switched
    x = _x((2, 24))
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="training mode"):
        lrp(model, x, torch.zeros(5, dtype=torch.long))
    assert model[1].training
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs.explain(model, x.numpy(), method="lrp", composite="epsilon_gamma_box")
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    lrp(model, x, torch.zeros(5, dtype=torch.long), composite="epsilon_alpha2_beta1")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert _no_hooks(model) and not any(p.grad is not None for p in model.parameters())
    assert torch._C._len_torch_function_stack() == 0


class _Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.a(x)
        return self.b(h * torch.sigmoid(h))


class _OwnParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.relu(x) ** self.scale)


def test_unsupported_layers_raise_type_errors_naming_them():
    from xai_suite_timeseries import LSTMClassifier

    x4, t = _x((4,)), torch.zeros(5, dtype=torch.long)
    cases = [
        (LSTMClassifier(2, 3).eval(), _x((2, 10)),
         r"module 'lstm' of type LSTM.*supported module types:.*Conv1d"),
        (nn.Sequential(nn.Linear(4, 2), nn.Softmax(1)).eval(), x4, "type Softmax \\(explain the logits"),
        (_Gated().eval(), x4, "function 'sigmoid'"),
        (_OwnParameter().eval(), x4,
         "module '_OwnParameter' \\(_OwnParameter\\): it uses its own parameters"),
        (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)).eval(), x4, "type LayerNorm"),
    ]
    for model, x, match in cases:
        with pytest.raises(TypeError, match=match):
            lrp(model, x, t)
        assert _no_hooks(model) and torch._C._len_torch_function_stack() == 0
    with pytest.raises(TypeError, match="type LSTM"):  # through the explainer as well
        xs.explain(LSTMClassifier(2, 3).eval(), _x((2, 10)).numpy(), method="lrp")


def test_bad_settings_raise_value_errors():
    model, x, t = _cnn1d(), _x((2, 24)), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="composite must be one of epsilon, zplus"):
        lrp(model, x, t, composite="gamma_box")
    with pytest.raises(ValueError, match="did you mean '10'"):
        lrp(model, x, t, rules={"100": "epsilon"})
    with pytest.raises(ValueError, match="one of epsilon, gamma"):
        lrp(model, x, t, rules={nn.Linear: "eps"})
    with pytest.raises(ValueError, match="needs a Linear/Conv layer; '2' is a MaxPool1d"):
        lrp(model, x, t, rules={nn.MaxPool1d: "zplus"})
    with pytest.raises(ValueError, match="only to a layer that takes the model input"):
        lrp(model, x, t, rules={"3": Flat()})
    with pytest.raises(ValueError, match="pass relevance through"):
        lrp(model, x, t, rules={nn.ReLU: "epsilon"})
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        AlphaBeta(2, 2)
    with pytest.raises(ValueError, match="epsilon must be a non-negative number"):
        xs.explain(model, x.numpy(), method="lrp", epsilon=-1.0)
    with pytest.raises(ValueError, match="ZBox bounds must broadcast"):
        lrp(model, x, t, composite="epsilon_gamma_box", low=np.zeros(3))
    # user rules by name win over types, and reach pooling layers (epsilon-like rules only)
    _, used = lrp(model, x, t, rules={"0": "flat", nn.Conv1d: "gamma", "5": Epsilon(0.1)})
    assert used["0"] == "Flat(stabilizer=1e-06)" and used["3"].startswith("Gamma")
    assert used["5"] == "Epsilon(epsilon=0.1)"


def _lrp0_is_gradient_x_input(model: nn.Module, x: torch.Tensor, rtol: float = 1e-8) -> None:
    """native:lrp with epsilon 0 on a float64 ReLU network gives gradient x input."""
    exp = xs.explain(model, x.numpy(), method="lrp", epsilon=0.0)
    xg = x.clone().requires_grad_(True)
    out = model(xg)[torch.arange(len(x)), torch.from_numpy(exp.target)].sum()
    (grad,) = torch.autograd.grad(out, xg)
    scale = np.abs(exp.attributions).max()
    np.testing.assert_allclose(exp.attributions, (grad * x).numpy(), rtol=rtol, atol=rtol * scale)


def test_subclasses_of_supported_layers():
    """Subclasses of supported layers get their base's rules (LRP-0 = gradient x input on a
    ReLU network), through their own forward where they override it; a batch norm that
    overrides forward, which LRP folds into the layer before it, is refused by name."""
    import torch.nn.functional as F

    class TaggedConv(nn.Conv1d):  # a subclass that only adds a name
        pass

    class PaddedConv(nn.Conv1d):
        def forward(self, x):
            return super().forward(F.pad(x, (1, 1)))

    torch.manual_seed(0)
    x = torch.rand(3, 1, 10, dtype=torch.float64)
    tagged = nn.Sequential(TaggedConv(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8, 2))
    _lrp0_is_gradient_x_input(tagged.eval().double(), x)
    # one that pads in its own forward (as TSInterpret's Conv1dSamePadding): the rules run
    # through that forward, and LRP-0 is still gradient x input
    padded = nn.Sequential(PaddedConv(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 10, 2))
    _lrp0_is_gradient_x_input(padded.eval().double(), x)

    class OddNorm(nn.BatchNorm1d):
        def forward(self, x):
            return super().forward(x) * 2

    odd = nn.Sequential(nn.Conv1d(1, 3, 3), OddNorm(3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 2)).eval()
    with pytest.raises(TypeError, match="OddNorm.*overrides forward, and batch norms are merged"):
        xs.explain(odd, x.float().numpy(), method="lrp")


def test_captum_lrp_refuses_a_residual_written_as_plus():
    """A residual written as a plain ``+`` in forward, which Captum's LRP never sees (on its
    own skip-connection test it gives [11.2, 100.8] where [10, 18] is right): the entry
    refuses the model by name and points to native:lrp, whose relevance is conserved."""

    class PlainSkip(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2, bias=False)
            self.relu = nn.ReLU()
            with torch.no_grad():
                self.lin.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))

        def forward(self, x):
            return self.relu(self.lin(x)) + self.lin(x)

    x = np.array([[1.0, 2.0]], dtype=np.float32)
    with pytest.raises(TypeError, match=r"mis-propagates .*outside any module \(add.*native:lrp"):
        xs.explain(PlainSkip().eval(), x, method="captum:lrp")
    exp = xs.explain(PlainSkip().eval(), x, method="native:lrp", epsilon=0.0)
    np.testing.assert_allclose(exp.convergence_delta, 0.0, atol=1e-4)  # relevance conserved


def test_tsinterpret_resnet_with_same_padding_convolutions():
    """TSInterpret's ResNetBaseline (Conv1dSamePadding: a Conv1d that pads in its own forward,
    with batch norms and residual sums) is explained, LRP-0 equal to gradient x input."""
    cnn_t = pytest.importorskip("ClassificationModels.CNN_T")
    torch.manual_seed(0)
    model = cnn_t.ResNetBaseline(in_channels=1, num_pred_classes=2).eval().double()
    _randomise_batchnorm(model)
    _lrp0_is_gradient_x_input(model, torch.rand(2, 1, 30, dtype=torch.float64), rtol=1e-9)
