"""Per-call costs of ``native:integrated_gradients`` (issue 18, small calls): how many model
forwards one call makes, that the values equal a hand-written IG and do not depend on the batch
size, and that constants and mode switches are not recomputed per call. No timings here: those
live in ``benchmarks/perf_gradients.py --small``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xai_suite as xs
from xai_suite.baselines import ensure_baseline
from xai_suite.methods.native import integrated_gradients as ig_module
from xai_suite.methods.native.integrated_gradients import _quadrature, target_free

pytestmark = pytest.mark.usefixtures("one_thread")

T = 20


class SmallCNN(nn.Module):
    """Conv1d-BatchNorm-ReLU, global pooling, a linear head: (n, 1, T) -> (n, 3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 5, padding=2)
        self.bn = nn.BatchNorm1d(4)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.pool(torch.relu(self.bn(self.conv(x)))).squeeze(-1))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SmallCNN()
    with torch.no_grad():  # non-trivial running statistics, so eval mode matters
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(4, 1, T)).astype(np.float32)


class Counter:
    """Records ``(rows, gradients enabled)`` of every call of a module's forward."""

    def __init__(self, module: nn.Module):
        self.calls: list[tuple[int, bool]] = []
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _mod, inputs, _out):
        self.calls.append((int(inputs[0].shape[0]), torch.is_grad_enabled()))

    @property
    def with_grad(self) -> list[int]:
        return [r for r, g in self.calls if g]

    @property
    def without_grad(self) -> list[int]:
        return [r for r, g in self.calls if not g]


def hand_ig(model, x, b, target, n_steps):
    """Integrated gradients written out directly: Gauss-Legendre nodes, one path per instance."""
    nodes, w = np.polynomial.legendre.leggauss(n_steps)
    alphas, w = (nodes + 1) / 2, w / 2
    x, b = torch.as_tensor(x), torch.as_tensor(b, dtype=torch.float32)
    total = torch.zeros_like(x)
    for a, wk in zip(alphas, w, strict=True):
        z = (b + float(a) * (x - b)).requires_grad_(True)
        out = model(z).gather(1, torch.as_tensor(target).unsqueeze(1)).sum()
        (g,) = torch.autograd.grad(out, z)
        total += float(wk) * g
    return ((x - b) * total).numpy()


def test_one_forward_per_call_when_rows_fit_one_chunk(model, x):
    """Predictions, the baselines' outputs and the path share one model call: with an explicit
    batch size nothing else runs; with "auto" the only other forward is the batch-size probe
    (no gradients, at most 4 rows), which batching.py may serve from its cache."""
    n, k = len(x), 8
    counter = Counter(model)
    ex = xs.create_explainer("native:integrated_gradients", model, n_steps=k, batch_size=256)
    exp = ex.explain(x)  # target None: the predicted class, from the same forward
    assert counter.calls == [(n * k + n + 1, True)]  # path rows, x, then one row of the zero baseline
    np.testing.assert_allclose(exp.predictions, model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(exp.target, exp.predictions.argmax(1))

    counter.calls.clear()  # baselines that differ per instance: each gets its row
    ex.explain(x, baselines=0.5 * x)
    assert counter.calls == [(n * k + n + n, True)]

    counter.calls.clear()
    xs.create_explainer("native:integrated_gradients", model, n_steps=k).explain(x, target=1)
    assert counter.with_grad == [n * k + n + 1]
    assert len(counter.without_grad) <= 1 and all(r <= 4 for r in counter.without_grad), (
        f"only the batch-size probe may run apart from the path: {counter.calls}")
    counter.handle.remove()


def test_endpoints_on_the_path_add_no_rows(model, x):
    """With nodes at 0 and 1 (riemann_trapezoid) the baseline's and the input's outputs are path
    rows: one call over exactly N * K rows."""
    counter = Counter(model)
    ex = xs.create_explainer("native:integrated_gradients", model, n_steps=6,
                             quadrature="riemann_trapezoid", batch_size=512)
    exp = ex.explain(x)
    assert counter.calls == [(len(x) * 6, True)]
    np.testing.assert_allclose(exp.predictions, model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    counter.handle.remove()


def test_several_chunks_one_endpoint_pass(model, x):
    """Rows over several chunks: the inputs and baselines go through the model together, once,
    without gradients; the path takes ceil(N K / rows) calls with gradients."""
    n, k, rows = len(x), 8, 10
    counter = Counter(model)
    ex = xs.create_explainer("native:integrated_gradients", model, n_steps=k, batch_size=rows)
    ex.explain(x)
    assert counter.without_grad == [n + 1]  # x and (one row of) the zero baseline, in one call
    assert sum(counter.with_grad) == n * k and len(counter.with_grad) == -(-n * k // rows)
    counter.handle.remove()


@pytest.mark.parametrize("baseline", ["zeros", "explicit", "per_instance", "uniform"])
def test_attributions_equal_hand_written_ig(model, x, baseline):
    """Equal to a hand-written IG (rtol 1e-5) for the fused path (zeros, explicit baselines) and
    the separate one (a stochastic baseline, drawn per target); completeness as before."""
    kw = {"baseline": "uniform", "random_state": 3} if baseline == "uniform" else {}
    ex = xs.create_explainer("native:integrated_gradients", model, n_steps=16, **kw)
    explicit = {"explicit": np.full_like(x, 0.3), "per_instance": 0.5 * x[::-1]}.get(baseline)
    exp = ex.explain(x, baselines=explicit)
    b = exp.baselines[0] if exp.baselines.ndim == x.ndim + 1 else exp.baselines
    want = hand_ig(model, x, b, exp.target, 16)
    np.testing.assert_allclose(exp.attributions, want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        f = model(torch.from_numpy(x)).numpy()[np.arange(len(x)), exp.target]
        fb = model(torch.as_tensor(b, dtype=torch.float32)).numpy()[np.arange(len(x)), exp.target]
    np.testing.assert_allclose(exp.base_values, fb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exp.convergence_delta, exp.attributions.reshape(len(x), -1).sum(1)
                               - (f - fb), atol=1e-5)


@pytest.mark.parametrize("quadrature", ["gausslegendre", "riemann_trapezoid", "riemann_right"])
def test_batch_size_invariant(model, x, quadrature):
    """One fused call, several chunks, one row per call: the same attributions, predictions,
    targets and base values."""
    runs = [xs.create_explainer("native:integrated_gradients", model, n_steps=8, quadrature=quadrature,
                                batch_size=bs).explain(x) for bs in ("auto", 1, 3, 7, 1000)]
    for other in runs[1:]:
        np.testing.assert_allclose(other.attributions, runs[0].attributions, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(other.predictions, runs[0].predictions, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(other.target, runs[0].target)
        np.testing.assert_allclose(other.base_values, runs[0].base_values, rtol=1e-6, atol=1e-7)


def test_target_out_of_range_still_refused(model, x):
    with pytest.raises(ValueError, match="target must lie in 0..2"):
        xs.explain(model, x, method="native:integrated_gradients", target=5)


def test_target_free_baselines_ignore_the_target(x):
    """Every baseline classed as target-free (drawn before the predictions are known) gives the
    same references whatever the target; the stochastic ones and nearest_unlike are not."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(12, 1, T)).astype(np.float32), np.arange(12) % 3
    xt = torch.from_numpy(x)
    checked = 0
    for name in xs.list_baselines("timeseries"):
        b = ensure_baseline(name)
        if b.needs_fit:
            b.fit(X, y)
        if not target_free(b):
            assert b.stochastic or b.needs_labels, name
            continue
        first = b.sample(xt, np.zeros(len(x), dtype=np.int64), 1, np.random.default_rng(0))
        other = b.sample(xt, np.full(len(x), 2, dtype=np.int64), 1, np.random.default_rng(5))
        torch.testing.assert_close(first, other, msg=name)
        checked += 1
    assert checked >= 3
    assert not target_free(ensure_baseline("nearest_unlike"))
    assert not target_free(ensure_baseline("uniform"))


def test_constants_and_mode_switches_once(model, x, monkeypatch):
    """leggauss runs once per step count; an eval-mode model is never switched (no train/eval
    walk over its submodules); a training-mode one is switched once and restored."""
    calls = {"leggauss": 0, "train": 0}
    leggauss, train = np.polynomial.legendre.leggauss, nn.Module.train

    def counting_leggauss(n):
        calls["leggauss"] += 1
        return leggauss(n)

    def counting_train(self, mode=True):
        calls["train"] += 1
        return train(self, mode)

    monkeypatch.setattr(np.polynomial.legendre, "leggauss", counting_leggauss)
    monkeypatch.setattr(nn.Module, "train", counting_train)
    _quadrature.cache_clear()
    ex = xs.create_explainer("native:integrated_gradients", model, n_steps=13)
    for _ in range(3):
        ex.explain(x)
    assert calls == {"leggauss": 1, "train": 0}
    model.train()
    calls["train"] = 0
    with pytest.warns(UserWarning, match="training mode"):
        ex.explain(x)
    assert model.training and all(m.training for m in model.modules())
    assert calls["train"] == 2 * len(list(model.modules()))  # eval() and train() walk it once each
    a, _ = ig_module.quadrature("gausslegendre", 13)
    a[0] = -1.0  # the public function hands out copies: the cache stays intact
    assert ig_module.quadrature("gausslegendre", 13)[0][0] > 0


def test_param_names_read_once_per_class(monkeypatch):
    import inspect

    cls = xs.explainer_info("native:integrated_gradients").cls
    cls._param_names()  # cached now
    n = {"calls": 0}
    signature = inspect.signature

    def counting(obj, *a, **k):
        n["calls"] += 1
        return signature(obj, *a, **k)

    monkeypatch.setattr(inspect, "signature", counting)
    names = cls._param_names()
    names.append("x")  # a copy: the cache is not changed
    assert "x" not in cls._param_names() and n["calls"] == 0
    assert list(xs.explainer_info("native:integrated_gradients").params) == cls._param_names()
