"""The counterfactual contract: target resolution, metrics, result type, conformance check."""

import numpy as np
import pytest
import torch

import xai_suite as xs
from xai_suite._validation import resolve_counterfactual_target
from xai_suite.base import CounterfactualExplainer
from xai_suite.metrics import changed_points, dtw_distance, plausibility, wilson_interval
from xai_suite.testing import check_explainer, reference_problem


@pytest.fixture
def nun_entry(registry_snapshot):
    """A minimal registered counterfactual method: the nearest unlike training instance."""

    @xs.register_explainer("nearest_unlike_test", library="testlib",
                           modalities=("tabular", "timeseries"), model_kinds=("torch",),
                           needs_fit=True)
    class NearestUnlike(CounterfactualExplainer):
        """Nearest training instance of the target class."""

        def __init__(self, model, *, batch_size="auto", device="auto"):
            self.model = model
            self.batch_size = batch_size
            self.device = device

        def _counterfactual(self, call):
            X = self.X_train_.to(call.x.device)
            d = torch.cdist(call.x.flatten(1), X.flatten(1))
            other = torch.as_tensor(self.train_class_, device=d.device)[None, :] != torch.as_tensor(
                call.target, device=d.device)[:, None]
            return X[d.masked_fill(other, float("inf")).argmin(1)], {"distance": "euclidean"}

    return "testlib:nearest_unlike_test"


def test_target_resolution():
    preds = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
    np.testing.assert_array_equal(resolve_counterfactual_target(None, preds), [2, 2])
    np.testing.assert_array_equal(resolve_counterfactual_target(0, preds[:1]), [0])
    with pytest.raises(ValueError, match="differ from the predicted class"):
        resolve_counterfactual_target(np.array([1, 2]), preds)
    with pytest.raises(ValueError, match="at least 2 output classes"):
        resolve_counterfactual_target(None, preds[:, :1])


def test_dtw_matches_aeon_and_warps(rng):
    from aeon.distances import dtw_distance as aeon_dtw

    a, b = rng.normal(size=(4, 2, 17)), rng.normal(size=(4, 2, 17))
    np.testing.assert_allclose(dtw_distance(a, b), [aeon_dtw(p, q) for p, q in zip(a, b, strict=True)],
                               rtol=1e-10)
    s = np.sin(np.linspace(0, 6, 40))[None, None]
    shifted = np.roll(s, 2, axis=-1)
    assert dtw_distance(s, shifted)[0] < 0.25 * ((s - shifted) ** 2).sum()
    with pytest.raises(ValueError, match=r"\(N, C, T\)"):
        dtw_distance(a, b[:, :1])


def test_plausibility_and_changed_points(rng):
    X = rng.normal(size=(200, 3)).astype(np.float32)
    typical = plausibility(X[:20] + 0.01, X)
    outlier = plausibility(X[:5] + 20, X)
    assert np.median(typical) < 1.0 and outlier.min() > 10
    x = np.zeros((2, 4), np.float32)
    cf = x.copy()
    cf[0, 1] = 0.5
    np.testing.assert_array_equal(changed_points(x, cf).sum(1), [1, 0])


def test_plausibility_in_blocks_equals_all_pairs(rng):
    """The blockwise k-NN distances equal those of the whole distance matrix (which the
    metric no longer builds), leave-one-out included; plausibility below 2,000 reference rows
    is the all-pairs definition exactly."""
    import torch

    from xai_suite.metrics.counterfactual import _knn_mean

    X = rng.normal(size=(150, 4))
    q = rng.normal(size=(7, 4))
    ref = torch.from_numpy(X)
    full = torch.cdist(ref, ref)
    full.fill_diagonal_(float("inf"))
    loo = full.topk(5, dim=1, largest=False).values.mean(1)
    blocks = _knn_mean(ref, ref, 5, leave_one_out=np.arange(150), budget=8 * 150 * 7)  # 7 rows a block
    np.testing.assert_allclose(blocks.numpy(), loo.numpy(), rtol=1e-12)
    direct = torch.cdist(torch.from_numpy(q), ref).topk(5, dim=1, largest=False).values.mean(1)
    np.testing.assert_allclose(plausibility(q, X), (direct / loo.median()).numpy(), rtol=1e-12)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27753, abs=1e-4)  # z = 1.96
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.78640, abs=1e-4) and hi == pytest.approx(0.95652, abs=1e-4)
    assert wilson_interval(np.array([True, False, True, True]), None) == wilson_interval(3, 4)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(11, 10)


def test_explanation_metrics_are_consistent(nun_entry, tmp_path):
    model, X, y, inputs = reference_problem("timeseries")
    exp = xs.create_explainer(nun_entry, model).fit(X, y).explain(inputs)
    assert isinstance(exp, xs.CounterfactualExplanation)
    x, cf = exp.inputs, exp.counterfactuals
    assert exp.valid.all()  # a training instance the model puts in the target class
    np.testing.assert_allclose(exp.metrics["l1"], np.abs(cf - x).reshape(len(x), -1).sum(1), rtol=1e-5)
    np.testing.assert_allclose(exp.metrics["l2"], np.sqrt(((cf - x) ** 2).reshape(len(x), -1).sum(1)),
                               rtol=1e-5)
    np.testing.assert_allclose(exp.metrics["dtw"], dtw_distance(x, cf))
    assert np.isfinite(exp.metrics["plausibility"]).all()
    frame = exp.to_frame()
    assert list(frame.columns[:3]) == ["instance", "original_class", "target"]
    summary = exp.summary()
    assert summary["validity"] == 1.0 and summary["validity_low"] < 1.0 == summary["validity_high"]
    back = xs.load_explanation(exp.save(tmp_path / "cf.npz"))
    assert isinstance(back, xs.CounterfactualExplanation)
    np.testing.assert_array_equal(back.metrics["dtw"], exp.metrics["dtw"])
    ax = exp.plot(0)
    assert ax.get_legend() is not None
    ax.figure.savefig(tmp_path / "cf.png")


def test_check_explainer_runs_counterfactual_checks(nun_entry):
    passed = check_explainer(nun_entry, modality="timeseries")
    assert {"result_and_metadata", "repeatable", "batch_invariance", "bad_input", "training_mode",
            "save_load"} <= set(passed)


def test_fit_needs_two_classes_and_target_class_present(nun_entry):
    model, X, _y, inputs = reference_problem("tabular")
    e = xs.create_explainer(nun_entry, model)
    with pytest.raises(ValueError, match="at least 2 classes"):
        e.fit(X[:1], None)
    preds = model(torch.from_numpy(X)).argmax(1).numpy()
    keep = preds != 2
    e.fit(X[keep])
    target = np.full(len(inputs), 2)
    target[model(torch.from_numpy(inputs)).argmax(1).numpy() == 2] = 0
    with pytest.raises(ValueError, match=r"no instance of target class\(es\) \[2\]"):
        e.explain(inputs, target=target)


def test_changes_decode_categories_and_feature_ranges_round_trip(tmp_path):
    x = np.array([[30.0, 0.0, 1.5], [50.0, 2.0, 0.0]], np.float32)
    cf = np.array([[35.0, 2.0, 1.5], [50.0, 2.0, 0.0]], np.float32)  # instance 1 unchanged
    p = np.array([[0.8, 0.2], [0.7, 0.3]])
    ranges = np.array([[18.0, 0.0, -1.0], [90.0, 2.0, 2.0]])
    exp = xs.CounterfactualExplanation(
        inputs=x, counterfactuals=cf, target=np.array([1, 1]), predictions=p, cf_predictions=p[:, ::-1],
        method="test", metrics={"valid": np.array([True, False]), "new_class": np.array([1, 0])},
        feature_names=("age", "color", "noise"), categories={"color": ("blue", "green", "red")},
        feature_ranges=ranges)
    table = exp.changes()
    assert table.to_dict("list") == {"instance": [0, 0], "feature": ["age", "color"], "old": [30.0, "blue"],
                                     "new": [35.0, "red"]}
    assert exp.changes(1).empty and list(exp.changes(-2)["feature"]) == ["age", "color"]
    with pytest.raises(IndexError, match="out of range for 2"):
        exp.changes(2)
    back = xs.load_explanation(exp.save(tmp_path / "cf.npz"))
    np.testing.assert_array_equal(back.feature_ranges, ranges)
    assert back.changes().equals(table)
    with pytest.raises(ValueError, match=r"feature_ranges must have shape \(2, F\)"):
        xs.CounterfactualExplanation(inputs=x, counterfactuals=cf, target=np.array([1, 1]), predictions=p,
                                     cf_predictions=p, method="t", feature_ranges=ranges[:, :2])


def test_changes_is_for_tabular_counterfactuals(nun_entry):
    model, X, y, inputs = reference_problem("timeseries")
    exp = xs.create_explainer(nun_entry, model).fit(X, y).explain(inputs)
    assert exp.feature_ranges is None
    with pytest.raises(ValueError, match=r"tabular \(N, F\) counterfactuals; these are timeseries"):
        exp.changes()
    tab_model, Xt, yt, xt = reference_problem("tabular")
    tab = xs.create_explainer(nun_entry, tab_model).fit(Xt, yt).explain(xt)
    np.testing.assert_array_equal(tab.feature_ranges, np.stack([Xt.min(0), Xt.max(0)]))
