"""Bad input gives a clear error naming what was expected; nothing is reshaped silently."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import xai_suite as xs
from xai_suite.baselines import NotFittedError
from xai_suite.testing import reference_problem


@pytest.fixture(scope="module")
def ts():
    model, X, y, x = reference_problem("timeseries")
    return model, X, y, x


def test_nan_and_inf(ts):
    model, _, _, x = ts
    bad = x.copy()
    bad[0, 1, 3] = np.inf
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        xs.explain(model, bad)


def test_wrong_dimensions_name_the_layout(ts):
    model, _, _, x = ts
    with pytest.raises(ValueError, match=r"explains tabular \(N, F\) or timeseries \(N, C, T\) "
                       r"or image \(N, C, H, W\) inputs; got a 5-D array"):
        xs.explain(model, x[None, None])
    with pytest.raises(ValueError, match=r"model failed on inputs of shape \(1, 4, 2, 24\)"):
        xs.explain(model, x[None])
    with pytest.raises(ValueError, match=r"timeseries \(N, C, T\) or image \(N, C, H, W\) inputs; "
                       r"got a 2-D array of shape \(4, 48\) \(tabular\)"):
        xs.explain(model, x.reshape(4, -1), method="grad_cam")
    with pytest.raises(ValueError, match="at least one instance"):
        xs.explain(model, x[:0])


def test_wrong_channels_for_the_model(ts):
    model, _, _, x = ts
    with pytest.raises(ValueError, match=r"model failed on inputs of shape \(4, 3, 24\).*channels"):
        xs.explain(model, np.concatenate([x, x[:, :1]], 1))


def test_shape_differs_from_fit(ts):
    model, X, y, x = ts
    e = xs.create_explainer("integrated_gradients", model, baseline="training_mean").fit(X, y)
    with pytest.raises(ValueError, match=r"per-instance shape \(2, 20\).*saw \(2, 24\)"):
        e.explain(x[..., :20])


def test_target_checks(ts):
    model, _, _, x = ts
    with pytest.raises(ValueError, match="target must lie in 0..2"):
        xs.explain(model, x, target=3)
    with pytest.raises(ValueError, match="target must lie in 0..2"):
        xs.explain(model, x, target=-1)
    with pytest.raises(ValueError, match=r"array of shape \(4,\)"):
        xs.explain(model, x, target=[0, 1])
    with pytest.raises(TypeError, match="integer array"):
        xs.explain(model, x, target=np.array([0.0, 1.0, 1.0, 0.0]))
    exp = xs.explain(model, x, target=torch.tensor([2, 2, 1, 0]))
    np.testing.assert_array_equal(exp.target, [2, 2, 1, 0])


def test_non_numeric_inputs(ts):
    model, _, _, _ = ts
    with pytest.raises(TypeError, match="numeric numpy array or torch tensor, got dtype <U1"):
        xs.explain(model, np.array([["a", "b"]]))


def test_unfitted_explainer_and_model(ts):
    model, X, _, x = ts
    e = xs.create_explainer("integrated_gradients", model, baseline="nearest_unlike")
    assert e.requires_fit
    with pytest.raises(NotFittedError, match="call fit\\(X, y\\) before explain"):
        e.explain(x)
    with pytest.raises(ValueError, match="needs training labels"):
        e.fit(X)
    assert not xs.create_explainer("integrated_gradients", model).requires_fit
    from sklearn.exceptions import NotFittedError as SkNotFitted

    with pytest.raises(SkNotFitted, match="not fitted; call its fit"):
        xs.explain(LogisticRegression(), np.zeros((2, 3)), method="feature_ablation")


def test_model_kind_refused(ts):
    _, _, _, x = ts
    sk = LogisticRegression().fit(np.random.default_rng(0).normal(size=(20, 6)), [0, 1] * 10)
    with pytest.raises(TypeError, match="explains models of kind torch; got a sklearn model"):
        xs.explain(sk, np.zeros((2, 6), dtype=np.float32), method="saliency")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        xs.explain(42, x, method="feature_ablation")


def test_training_mode_warns_and_is_restored(ts):
    model, _, _, x = ts
    ref = xs.explain(model, x)
    model.train()
    try:
        with pytest.warns(UserWarning, match="training mode; explaining it in eval mode"):
            exp = xs.explain(model, x)
        assert model.training
    finally:
        model.eval()
    np.testing.assert_allclose(exp.attributions, ref.attributions, rtol=1e-6)


def test_bad_knobs(ts):
    model, _, _, x = ts
    with pytest.raises(ValueError, match="batch_size must be 'auto' or a positive int"):
        xs.explain(model, x, batch_size=0)
    with pytest.raises(ValueError, match="max_memory must be a number of bytes"):
        xs.explain(model, x, max_memory="lots")
    with pytest.raises(ValueError, match="CUDA is not available|device must be"):
        xs.explain(model, x, device="cuda" if not torch.cuda.is_available() else "tpu")
    with pytest.raises(ValueError, match="n_baseline_samples must be a positive int"):
        xs.explain(model, x, n_baseline_samples=0)


def test_feature_mask_checks():
    model, _, _, x = reference_problem("tabular")
    with pytest.raises(TypeError, match="takes no feature_mask"):
        xs.explain(model, x, method="saliency", feature_mask=np.zeros(6, dtype=int))
    with pytest.raises(ValueError, match=r"one instance's shape \(6,\)"):
        xs.explain(model, x, method="feature_ablation", feature_mask=np.zeros(5, dtype=int))
    with pytest.raises(TypeError, match="integer group labels"):
        xs.explain(model, x, method="feature_ablation", feature_mask=np.zeros(6))
    groups = np.array([0, 0, 1, 1, 2, 2])
    exp = xs.explain(model, x, method="feature_ablation", feature_mask=groups)
    a = exp.attributions
    np.testing.assert_array_equal(a[:, 0], a[:, 1])  # grouped features share one value


def test_no_warnings_on_the_happy_path(gunpoint, gunpoint_cnn):
    _, _, Xt, _ = gunpoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("integrated_gradients", "captum:deeplift", "captum:occlusion",
                     "captum:grad_cam", "captum:guided_backprop"):
            xs.explain(gunpoint_cnn, Xt[:3], method=name)


class _NanForLarge(torch.nn.Module):
    """A linear model whose outputs are NaN where the first feature exceeds 0.5."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        out = self.lin(x)
        return torch.where(x[:, :1] > 0.5, out * float("nan"), out)


def test_model_outputs_are_checked():
    """NaN outputs, several outputs and non-numeric outputs are refused by name, never turned
    into NaN attributions, an argmax of NaN or an AttributeError."""
    from xai_suite.modeling import NonFiniteOutputError

    x = np.array([[0.1, 0, 0], [0.9, 0, 0], [0.2, 0, 0], [0.7, 1, 1]], dtype=np.float32)
    for method in ("captum:saliency", "native:integrated_gradients", "captum:feature_ablation"):
        with pytest.raises(NonFiniteOutputError, match=r"for 2 of 4 rows \(rows 1, 3\)"):
            xs.explain(_NanForLarge().eval(), x, method=method)
    # NaN only where a perturbation goes: refused too, not NaN attributions
    safe = x[[0, 2]]
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite outputs"):
        xs.explain(_NanForLarge().eval(), safe, method="captum:feature_ablation", baseline=1.0)

    class TwoHeads(torch.nn.Module):
        def forward(self, x):
            return x[:, :2], x[:, 1:]

    with pytest.raises(TypeError, match="one tensor of outputs .*got a tuple"):
        xs.explain(TwoHeads(), x, method="captum:saliency")
    with pytest.raises(TypeError, match="one array of outputs .*got a tuple"):
        xs.explain(lambda a: (a, a), x, method="captum:feature_ablation")
    with pytest.raises(TypeError, match="numeric outputs"):
        xs.explain(lambda a: np.array([["yes", "no"]] * len(a)), x, method="captum:feature_ablation")


def test_all_zero_attributions_warn():
    """A model whose output ignores the changes (a stump on a feature the instances share)
    gives all-zero attributions, and a warning names the instances and the likely cause."""
    X = np.random.default_rng(0).random((60, 3)).astype(np.float32)
    from sklearn.tree import DecisionTreeClassifier

    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, (X[:, 0] > 0.5).astype(int))
    flat = X[:3].copy()
    flat[:, 0] = 0.1  # far below the split, and so is the zero baseline
    with pytest.warns(UserWarning, match=r"instance\(s\) \[0, 1, 2\] is exactly 0"):
        exp = xs.create_explainer("captum:feature_ablation", stump).explain(flat)
    assert (exp.attributions == 0).all()
