"""The TSInterpret adapter: import guard, pinned axis order, signed TSR, LEFTIST painting,
NativeGuide / COMTE / TSEvo counterfactuals, clear errors.

The generic checks (shapes, batch sizes, seeded repeatability, metadata) run for every entry in
``test_conformance.py``; these tests pin what TSInterpret gets wrong and the adapter fixes.
"""

import importlib
import importlib.util
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

import xai_suite as xs
from xai_suite.testing import reference_problem
from xai_suite_timeseries import CNN1d, fit_classifier, make_planted_timeseries
from xai_suite_timeseries.tsinterpret import (
    COMTE_METHODS,
    LEFTIST_TRANSFORMS,
    NATIVE_GUIDE_DISTANCES,
    NATIVE_GUIDE_METHODS,
    STAND_IN_ROOTS,
    TSEVO_TRANSFORMERS,
    TSR_METHODS,
    is_stand_in,
    load_tsinterpret,
    paint_segments,
    tsinterpret_import_guard,
)

#: Planted data with C != T: the class signal sits in channel 1, steps 5..14 (layout "middle").
PLANTED = {"n_channels": 3, "length": 20, "layout": "middle", "noise": 0.5}
CHANNEL, WINDOW = 1, (5, 15)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """These models are tiny: one intra-op thread is several times faster on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted():
    """A small CNN trained on the planted task (test accuracy about 1), its data and masks."""
    X, y, mask = make_planted_timeseries(160, random_state=0, **PLANTED)
    Xt, yt, mask_t = make_planted_timeseries(8, random_state=1, **PLANTED)
    assert mask[0, CHANNEL, WINDOW[0] : WINDOW[1]].all() and mask[0].sum() == WINDOW[1] - WINDOW[0]
    torch.manual_seed(0)
    model = fit_classifier(CNN1d(3, 2, widths=(8, 8), kernels=(5, 3)), X, y, epochs=15,
                           random_state=0).eval()
    with torch.no_grad():
        assert (model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).all()
    return model, X, y, Xt, yt, mask_t


@pytest.fixture(scope="module")
def multivariate():
    """The 2-channel, 3-class reference problem: model, X_train, y_train, X_test."""
    return reference_problem("timeseries")


@pytest.fixture(scope="module")
def univariate():
    """The 1-channel, 3-class reference problem."""
    return reference_problem("timeseries", n_channels=1)


def _nearest(donors: np.ndarray, x: np.ndarray, k: int = 1) -> np.ndarray:
    """Indices of the ``k`` series in ``donors`` (M, C, T) nearest to ``x`` (C, T), Euclidean."""
    return np.argsort(((donors - x) ** 2).sum((1, 2)), kind="stable")[:k]


def _target_probability(model, a: np.ndarray, target: int) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(a)).double(), 1)[:, target].numpy()


# -- import guard ------------------------------------------------------------------------------
def _stand_ins_left() -> list[str]:
    return [k for k, m in sys.modules.items()
            if k.partition(".")[0] in STAND_IN_ROOTS or is_stand_in(m)]


def test_guard_gives_stand_ins_only_inside_the_block():
    missing = tuple(r for r in STAND_IN_ROOTS if importlib.util.find_spec(r) is None)
    assert "tensorflow" in missing  # the premise: TensorFlow is not installed
    filters, meta_path = list(warnings.filters), list(sys.meta_path)
    with tsinterpret_import_guard() as roots:
        assert roots == missing  # installed packages are never shadowed
        layers = importlib.import_module("tensorflow.keras.layers")
        assert is_stand_in(layers) and is_stand_in(layers.Dense) and is_stand_in(layers.Dense.foo)
        warnings.simplefilter("ignore")  # what TSInterpret's NativeGuide module does at import
    assert warnings.filters == filters
    assert sys.meta_path == meta_path
    assert not _stand_ins_left()
    assert importlib.util.find_spec("tensorflow") is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tensorflow")
    # an object created inside the block still raises a clear error when called
    with pytest.raises(ModuleNotFoundError, match="TSInterpret import guard"):
        layers.Dense(3)
    assert not isinstance(object(), layers.Dense)


def test_guard_cleans_up_after_an_error():
    with pytest.raises(RuntimeError, match="inside"), tsinterpret_import_guard():
        importlib.import_module("sktime.utils.validation")
        raise RuntimeError("inside")
    assert not _stand_ins_left()
    assert importlib.util.find_spec("sktime") is None


#: TSInterpret loads first, then torch._dynamo imports and traces a module.
DYNAMO_AFTER_LOAD = textwrap.dedent("""
    import importlib.util, sys, warnings
    import torch
    from xai_suite_timeseries.tsinterpret import STAND_IN_ROOTS, is_stand_in, load_tsinterpret

    assert "torch._dynamo" not in sys.modules
    filters = list(warnings.filters)
    load_tsinterpret()
    assert list(warnings.filters) == filters, "warning filters changed"
    left = [k for k, m in sys.modules.items()
            if k.partition(".")[0] in STAND_IN_ROOTS or is_stand_in(m)]
    assert not left, left
    assert importlib.util.find_spec("tensorflow") is None

    graphs = []
    def backend(gm, example_inputs):  # eager, counting the graphs dynamo captured
        graphs.append(gm)
        return gm.forward
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    x = torch.randn(3, 2, 8)
    out = torch.compile(net, backend=backend)(x)
    assert graphs, "dynamo captured no graph"
    assert torch.equal(out, net(x)), "compiled output differs"
    print("compiled", len(graphs))
""")


def test_torch_compile_works_after_loading_tsinterpret():
    """In this process while TSInterpret and torch._dynamo are not loaded yet (the first test
    to load TSInterpret), else in a fresh interpreter (slower: it imports everything again)."""
    if "torch._dynamo" not in sys.modules and load_tsinterpret.cache_info().currsize == 0:
        exec(DYNAMO_AFTER_LOAD, {"__name__": "dynamo_after_load"})
        return
    run = subprocess.run([sys.executable, "-c", DYNAMO_AFTER_LOAD], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("compiled")


def test_loaded_tsinterpret_keeps_stand_ins_that_raise():
    tsi = load_tsinterpret()
    assert not _stand_ins_left()
    assert importlib.util.find_spec("tensorflow") is None
    tsr_module = sys.modules[tsi.TSR.__module__]
    tf = tsr_module.tensorflow  # TSInterpret's own reference, kept after the guard
    assert is_stand_in(tf)
    assert not isinstance(nn.Linear(2, 2), tf.keras.Model)  # its TF dispatch never matches
    with pytest.raises(ModuleNotFoundError, match="import guard: tensorflow is not installed"):
        tf.keras.Model()


# -- TSR -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tsr", [False, True])
def test_tsr_pins_the_channel_and_time_axes(planted, tsr):
    model, _, _, Xt, yt, mask = planted
    x, target, mask = Xt[:3], yt[:3], mask[:3]
    e = xs.create_explainer("tsinterpret:tsr", model, inner="IG", tsr=tsr, random_state=0)
    a = np.abs(e.explain(x, target=target).attributions)
    assert a.shape == x.shape == (3, 3, 20)
    np.testing.assert_array_equal(a.sum(2).argmax(1), CHANNEL)  # the planted channel
    top = a.sum(1).argmax(1)  # the step of most attribution
    assert ((top >= WINDOW[0]) & (top < WINDOW[1])).all(), top
    # the planted box is 1/6 of the elements; the CNN's receptive field also weights its edges
    mass = (a * mask).sum((1, 2)) / a.sum((1, 2))
    assert (mass > 0.4).all(), mass


def test_tsr_ig_is_captums_signed_ig_and_tsr_maps_are_scaled(multivariate):
    model, _, _, x = multivariate  # 2 channels, 24 steps, 3 classes
    target = np.array([0, 1, 2, 0])
    exp = xs.create_explainer("tsinterpret:tsr", model, inner="IG", tsr=False,
                              random_state=0).explain(x, target=target)
    assert exp.params["baseline"]["name"] == "uniform"
    assert exp.baselines.shape == (1, *x.shape)
    assert (exp.baselines >= 0).all() and (exp.baselines < 1).all()
    ig = IntegratedGradients(model)  # TSInterpret's call: Captum's defaults (50 Gauss-Legendre steps)
    for i in range(len(x)):
        ref = ig.attribute(torch.from_numpy(x[i : i + 1]), target=int(target[i]),
                           baselines=torch.from_numpy(exp.baselines[0, i : i + 1]))[0].numpy()
        np.testing.assert_allclose(exp.attributions[i], ref, rtol=0,
                                   atol=1e-4 * np.abs(ref).max())
        assert (exp.attributions[i] > 0).any() and (exp.attributions[i] < 0).any()
    # signed and unscaled: the sum is the output difference to the baseline (completeness)
    with torch.no_grad():
        gap = (model(torch.from_numpy(x)) - model(torch.from_numpy(exp.baselines[0])))
    gap = gap[np.arange(len(x)), target].numpy()
    np.testing.assert_allclose(exp.attributions.sum((1, 2)), gap, rtol=0.02,
                               atol=0.02 * np.abs(gap).max())

    rescaled = xs.create_explainer("tsinterpret:tsr", model, inner="IG", tsr=True,
                                   random_state=0).explain(x[:1], target=target[:1]).attributions
    assert rescaled.min() == 0 and np.isclose(rescaled.max(), 1)  # TSR: min-max scaled |.|


def test_tsr_refuses_grouped_methods_on_multivariate_series(multivariate):
    model, _, _, x = multivariate
    for method in ("SVS", "FO"):
        with pytest.raises(ValueError, match="univariate"):
            xs.create_explainer("tsinterpret:tsr", model, inner=method).explain(x[:1])


# -- LEFTIST -------------------------------------------------------------------------------------
def test_paint_segments():
    intervals = np.array([[0, 3], [3, 6], [6, 9]])  # LEFTIST's shared end points
    np.testing.assert_array_equal(paint_segments(np.array([1.0, -2.0, 3.0]), intervals, 10),
                                  [1, 1, 1, -2, -2, -2, 3, 3, 3, 3])
    from TSInterpret.InterpretabilityModels.leftist.timeseries.segmentator.uniform_segmentator import (
        UniformSegmentator,
    )

    load_tsinterpret()
    _, intervals = UniformSegmentator(10).segment(np.zeros((150, 1)))
    painted = paint_segments(np.arange(10.0), intervals, 150)
    np.testing.assert_array_equal(painted, np.repeat(np.arange(10.0), 15))  # 15 steps each


@pytest.mark.parametrize("name", ["tsinterpret:leftist_lime", "tsinterpret:leftist_shap"])
def test_leftist_refuses_multivariate_series(multivariate, name):
    model, X, y, _ = multivariate
    with pytest.raises(ValueError, match=r"univariate series of shape \(N, 1, T\)"):
        xs.create_explainer(name, model).fit(X, y)


@pytest.mark.parametrize("name", ["tsinterpret:leftist_lime", "tsinterpret:leftist_shap"])
def test_leftist_paints_one_weight_per_segment_over_the_whole_series(gunpoint, gunpoint_cnn, name):
    X, _, Xt, _ = gunpoint
    e = xs.create_explainer(name, gunpoint_cnn, n_neighbors=100, explanation_size=None,
                            random_state=0).fit(X)
    a = e.explain(Xt[:1]).attributions[0, 0]
    segments = a.reshape(10, 15)  # LEFTIST's 10 uniform segments of a length-150 series
    assert (np.ptp(segments, axis=1) == 0).all()  # one constant weight per segment
    w = segments[:, 0]
    assert np.count_nonzero(w) >= 8  # every segment was weighted (generically non-zero)
    assert np.abs(a[100:]).max() > 0  # TSInterpret's own painting leaves the last third zero
    assert not (np.diff(w) >= 0).all()  # in segment order, not sorted as TSInterpret's LIME returns


class SegmentReader(nn.Module):
    """Logits (0, 4 m), m the mean of steps 10..19: LEFTIST's segment 1 of 4 on 40 steps."""

    def forward(self, x):
        m = 4 * x[:, 0, 10:20].mean(1)
        return torch.stack([torch.zeros_like(m), m], 1)


@pytest.mark.parametrize("name", ["tsinterpret:leftist_lime", "tsinterpret:leftist_shap"])
def test_leftist_weights_the_planted_segment_and_is_seeded(name):
    rng = np.random.default_rng(0)
    background = rng.normal(size=(30, 1, 40)).astype(np.float32)
    x = rng.normal(size=(1, 1, 40)).astype(np.float32)
    x[:, :, 10:20] += 1.5
    model = SegmentReader().eval()

    def weights(random_state, **params):
        e = xs.create_explainer(name, model, n_segments=4, n_neighbors=200,
                                random_state=random_state, **params).fit(background)
        return e.explain(x, target=1).attributions[0, 0, ::10]  # one value per segment

    w = weights(0, explanation_size=None)
    assert w.argmax() == 1 and w[1] > 0.2, w  # not on the last segment, where sorting puts it
    np.testing.assert_array_equal(weights(0, explanation_size=None), w)
    other = weights(1, explanation_size=None)
    assert not np.array_equal(other, w) and other.argmax() == 1
    assert np.flatnonzero(weights(0)).tolist() == [1]  # explanation_size=1: only that segment
    if name.endswith("shap"):  # Shapley values add up to f(x) - E[f(background)]
        gap = _target_probability(model, x, 1)[0] - _target_probability(model, background, 1).mean()
        np.testing.assert_allclose(w.sum(), gap, rtol=1e-5)
        assert load_tsinterpret().shap_neighbors_module.np is np  # np.int alias undone


# -- NativeGuide ---------------------------------------------------------------------------------
def test_native_guide_refuses_multivariate_series(multivariate):
    model, X, y, _ = multivariate
    with pytest.raises(ValueError, match="univariate"):
        xs.create_explainer("tsinterpret:native_guide", model).fit(X, y)


def test_native_guide_counterfactuals_on_gunpoint(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    x = Xt[:8]
    # "native_guide" (TSInterpret's "NG"): the nearest unlike neighbour of the target class itself
    ng = xs.create_explainer("tsinterpret:native_guide", gunpoint_cnn, variant="native_guide",
                             distance="euclidean").fit(X, y)
    exp = ng.explain(x)
    nun = np.stack([X[ng.train_class_ == t][_nearest(X[ng.train_class_ == t], xi)[0]]
                    for xi, t in zip(x, exp.target, strict=True)])
    assert all(exp.params["found"]) and exp.valid.all()
    np.testing.assert_array_equal(exp.counterfactuals, nun)

    # "NUN_CF": one window of that neighbour swapped in, grown until the class flips
    exp = xs.create_explainer("tsinterpret:native_guide", gunpoint_cnn).fit(X, y).explain(x)
    found = np.array(exp.params["found"])
    assert found.sum() >= 6
    np.testing.assert_array_equal(exp.valid[found], True)  # 2 classes: a flip reaches the target
    np.testing.assert_array_equal(exp.counterfactuals[~found], x[~found])  # returned unchanged
    for i in np.flatnonzero(found):
        changed = np.flatnonzero(exp.counterfactuals[i, 0] != x[i, 0])
        s, t = changed[0], changed[-1] + 1
        np.testing.assert_array_equal(exp.counterfactuals[i, 0, s:t], nun[i, 0, s:t])
        assert t - s < x.shape[-1]
    # ours, searching every window length (window_step=1/T) with the same Grad-CAM map, finds
    # exactly TSInterpret's counterfactuals (with 2 classes "shortest valid window" and "grow
    # until p(original) < 0.5" coincide)
    ours = xs.create_explainer("native:native_guide", gunpoint_cnn, saliency="grad_cam",
                               window_step=1 / x.shape[-1]).fit(X, y).explain(x[found])
    np.testing.assert_array_equal(ours.counterfactuals, exp.counterfactuals[found])


def test_native_guide_targets_on_three_classes(univariate):
    model, X, y, x = univariate  # 3 classes
    with torch.no_grad():
        last = model(torch.from_numpy(x)).argmin(1).numpy()  # neither predicted nor runner-up
    # the neighbour comes from the target class (TSInterpret's from any other class)
    ng = xs.create_explainer("tsinterpret:native_guide", model, variant="native_guide",
                             distance="euclidean").fit(X, y)
    exp = ng.explain(x, target=last)
    assert exp.valid.all()
    for i in range(len(x)):
        donors = X[ng.train_class_ == last[i]]
        np.testing.assert_array_equal(exp.counterfactuals[i], donors[_nearest(donors, x[i])[0]])
    bary = xs.create_explainer("tsinterpret:native_guide", model, variant="dtw_bary_center").fit(X, y)
    with pytest.raises(ValueError, match="second most probable class"):
        bary.explain(x, target=last)


# -- COMTE and TSEvo -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", COMTE_METHODS)
def test_comte_swaps_whole_channels_of_a_near_target_series(planted, method):
    model, X, _, Xt, _, _ = planted
    e = xs.create_explainer("tsinterpret:comte", model, search=method, max_attempts=10,
                            max_iter=10, random_state=0).fit(X[:40])
    x = Xt[:4]
    exp = e.explain(x)
    assert exp.valid.all()
    X_tr = e.X_train_.numpy()
    for i in range(len(x)):
        cf = exp.counterfactuals[i]
        swapped = (cf != x[i]).any(1)  # channels that changed
        assert swapped[CHANNEL]  # the channel that carries the class
        donors = X_tr[e.train_class_ == exp.target[i]]
        nearest = _nearest(donors, x[i], k=2)  # number_distractors=2
        assert any(np.array_equal(cf[swapped], donors[j][swapped]) for j in nearest)
    again = e.explain(x).counterfactuals  # seeded hill climbing
    np.testing.assert_array_equal(again, exp.counterfactuals)


def test_comte_honours_number_distractors():
    """TSInterpret's OptimizedSearch drops num_distractors: 2 donors from a class of 1 fails."""

    def two_channel_sum(a: np.ndarray) -> np.ndarray:  # class 1 needs both channels high
        p = 1 / (1 + np.exp(-4 * (a.mean(2).sum(1) - 3)))
        return np.stack([1 - p, p], 1)

    rng = np.random.default_rng(0)
    X = rng.normal(0, 0.1, size=(8, 2, 10)).astype(np.float32)
    X[0] += 2  # the only series of class 1
    x = rng.normal(0, 0.1, size=(2, 2, 10)).astype(np.float32)
    # one hill-climbing step cannot swap both channels: the brute-force fallback runs too
    e = xs.create_explainer("tsinterpret:comte", two_channel_sum, number_distractors=1,
                            max_attempts=1, max_iter=1, random_state=0).fit(X)
    exp = e.explain(x)
    assert exp.valid.all()
    np.testing.assert_array_equal(exp.counterfactuals, np.repeat(X[:1], 2, 0))


def test_tsevo_counterfactuals_match_the_model(planted):
    model, X, _, Xt, _, _ = planted
    x = Xt[:2]
    exp = xs.create_explainer("tsinterpret:tsevo", model, epochs=2, random_state=0).fit(X[:40]).explain(x)
    cf = exp.counterfactuals
    assert cf.shape == x.shape and cf.dtype == np.float32 and np.isfinite(cf).all()
    with torch.no_grad():
        predicted = model(torch.from_numpy(cf)).argmax(1).numpy()
    np.testing.assert_array_equal(exp.metrics["new_class"], predicted)
    np.testing.assert_array_equal(exp.valid, predicted == exp.target)
    assert exp.valid.all()  # an easy task: two generations suffice
    np.testing.assert_array_equal(exp.metrics["changed"], (cf != x).sum((1, 2)))
    np.testing.assert_allclose(exp.metrics["l1"], np.abs(cf - x).sum((1, 2)), rtol=1e-5)


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params", "allowed"),
    [
        ("tsinterpret:tsr", {"inner": "LRP"}, tuple(TSR_METHODS)),
        ("tsinterpret:leftist_lime", {"transform": "zeros"}, tuple(LEFTIST_TRANSFORMS)),
        ("tsinterpret:leftist_shap", {"transform": "straight"}, tuple(LEFTIST_TRANSFORMS)),
        ("tsinterpret:native_guide", {"variant": "NG"}, tuple(NATIVE_GUIDE_METHODS)),
        ("tsinterpret:native_guide", {"distance": "manhattan"}, NATIVE_GUIDE_DISTANCES),
        ("tsinterpret:comte", {"search": "greedy"}, COMTE_METHODS),
        ("tsinterpret:tsevo", {"transformer": "mutate"}, TSEVO_TRANSFORMERS),
    ],
)
def test_bad_choices_name_the_allowed_values(univariate, name, params, allowed):
    model, X, y, x = univariate
    e = xs.create_explainer(name, model, **params)
    if xs.explainer_info(name).tags.needs_fit:
        e.fit(X, y)
    with pytest.raises(ValueError, match=f"{next(iter(params))} must be one of") as err:
        e.explain(x[:1])
    assert all(repr(a) in str(err.value) for a in allowed), str(err.value)


@pytest.mark.parametrize(("name", "params"), [("tsinterpret:tsr", {"inner": "IG"}),
                                              ("tsinterpret:leftist_lime", {"n_neighbors": 20})])
def test_per_instance_loops_report_progress(record_progress, univariate, name, params):
    """Every entry explains one instance at a time (``_instances``); a bar follows them, even
    for a single instance (one can take tens of seconds)."""
    from xai_suite_timeseries import tsinterpret

    seen = record_progress(tsinterpret)
    model, X, y, x = univariate
    e = xs.create_explainer(name, model, random_state=0, **params).fit(X, y)
    assert np.isfinite(e.explain(x[:2]).attributions).all()
    assert seen == [(name, 2)]
