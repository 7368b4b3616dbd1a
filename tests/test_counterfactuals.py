"""Native batched time-series counterfactuals: NativeGuide, COMTE, TSEvo."""

import itertools

import numpy as np
import pytest
import torch

import xai_suite as xs
from xai_suite.metrics.counterfactual import changed_points, dtw_distance
from xai_suite_timeseries import CNN1d, fit_classifier
from xai_suite_timeseries.counterfactuals import (
    _nondominated_rank,
    fft_bands,
    nearest_of_class,
)


class SoftmaxModel:
    """A black box: the softmax of a torch model, counting its invocations."""

    def __init__(self, net, decimals=None):
        self.net, self.decimals, self.calls = net, decimals, 0

    def __call__(self, a: np.ndarray) -> np.ndarray:
        self.calls += 1
        with torch.no_grad():
            p = torch.softmax(self.net(torch.from_numpy(a)), 1).numpy()
        return p if self.decimals is None else np.round(p, self.decimals)


@pytest.fixture(scope="module")
def motions():
    """BasicMotions (6 channels, 4 classes) and a CNN1d that fits it."""
    X, y = xs.datasets.load_ucr("BasicMotions", "train")
    Xt, _ = xs.datasets.load_ucr("BasicMotions", "test")
    torch.manual_seed(0)
    model = fit_classifier(CNN1d(6, 4), X, y, epochs=30, random_state=0)
    return model, X, y, Xt[::4]


def _span(mask: np.ndarray) -> tuple[int, int]:
    """[first, last + 1) of the True entries of a 1-D mask."""
    idx = np.flatnonzero(mask)
    return int(idx[0]), int(idx[-1]) + 1


# -- NativeGuide -------------------------------------------------------------------------------
@pytest.mark.parametrize("saliency", ["grad_cam", "gradient_x_input", "occlusion"])
def test_native_guide_copies_one_window_of_the_nun(gunpoint, gunpoint_cnn, saliency):
    X, y, Xt, _ = gunpoint
    xq = Xt[:20]
    e = xs.create_explainer("native:native_guide", gunpoint_cnn, saliency=saliency).fit(X, y)
    exp = e.explain(xq)
    assert exp.valid.all()  # valid by construction (the full window is the NUN itself)
    nun = e.X_train_[nearest_of_class(torch.from_numpy(xq), e.X_train_, e.train_class_,
                                      exp.target)[:, 0]].numpy()
    changed = changed_points(xq, exp.counterfactuals)
    for i in range(len(xq)):  # one window of the NUN, nothing else
        s, t = _span(changed[i, 0])
        np.testing.assert_array_equal(exp.counterfactuals[i, :, s:t], nun[i, :, s:t])
    nun_changed = changed_points(xq, nun).reshape(len(xq), -1).sum(1)
    assert exp.metrics["changed"].mean() < nun_changed.mean()
    assert exp.params["saliency_used"] == saliency


def test_native_guide_batched_calls_and_nun_fallback(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    xq = Xt[:15]
    box = SoftmaxModel(gunpoint_cnn)
    e = xs.create_explainer("native:native_guide", box, batch_size=10_000).fit(X, y)
    box.calls = 0
    exp = e.explain(xq)
    # coarse lengths and refinement: two model calls for all instances
    assert exp.params["saliency_used"] == "occlusion" and exp.params["model_calls"] == 2
    # plus native:segment_occlusion's two (the NUNs and all their windows), and predicting the
    # inputs and the counterfactuals
    assert box.calls == 2 + 2 + 2
    assert exp.valid.all()
    # window_step=1: the coarse round tries only the NUN itself (valid by construction) and
    # the refinement every shorter length: the shortest valid window, never longer than the
    # default search's
    default = xs.create_explainer("native:native_guide", gunpoint_cnn).fit(X, y).explain(xq)
    whole = xs.create_explainer("native:native_guide", gunpoint_cnn, window_step=1.0).fit(X, y)
    out = whole.explain(xq)
    assert out.valid.all()
    nun = whole.X_train_[nearest_of_class(torch.from_numpy(xq), whole.X_train_,
                                          whole.train_class_, out.target)[:, 0]].numpy()
    changed = changed_points(xq, out.counterfactuals)[:, 0]
    for i in range(len(xq)):
        s, t = _span(changed[i])
        np.testing.assert_array_equal(out.counterfactuals[i, 0, s:t], nun[i, 0, s:t])
    assert (out.metrics["changed"] <= default.metrics["changed"]).all()


def test_native_guide_dtw_neighbour(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    xq = torch.from_numpy(Xt[:3])
    cls = np.array([0, 1] * 25)
    target = np.array([0, 1, 1])
    got = nearest_of_class(xq, torch.from_numpy(X), cls, target, k=2, distance="dtw")
    for i in range(3):
        cand = np.flatnonzero(cls == target[i])
        d = dtw_distance(np.repeat(xq[i : i + 1].numpy(), len(cand), 0), X[cand])
        np.testing.assert_array_equal(got[i], cand[np.argsort(d, kind="stable")[:2]])
    exp = xs.create_explainer("native:native_guide", gunpoint_cnn, distance="dtw").fit(X, y).explain(xq)
    assert exp.valid.all()


def test_native_guide_multivariate_channels(motions):
    model, X, y, xq = motions
    for channels, allowed in (("all", {6}), ("each", {1, 6})):
        e = xs.create_explainer("native:native_guide", model, channels=channels).fit(X, y)
        exp = e.explain(xq)
        assert exp.valid.all()
        nun = e.X_train_[nearest_of_class(torch.from_numpy(xq), e.X_train_, e.train_class_,
                                          exp.target)[:, 0]].numpy()
        cf, x = exp.counterfactuals, exp.inputs
        changed = changed_points(x, cf)
        assert set(changed.any(-1).sum(1).tolist()) <= allowed
        for i in range(len(xq)):  # one window of the NUN, in one channel or all
            s, t = _span(changed[i].any(0))
            rows = changed[i].any(1)
            np.testing.assert_array_equal(cf[i][rows, s:t], nun[i][rows, s:t])
            np.testing.assert_array_equal(cf[i][~rows], x[i][~rows])
            np.testing.assert_array_equal(np.delete(cf[i], np.s_[s:t], axis=1),
                                          np.delete(x[i], np.s_[s:t], axis=1))


# -- COMTE -------------------------------------------------------------------------------------
def test_comte_substitutes_whole_channels_minimally(motions):
    model, X, y, xq = motions
    e = xs.create_explainer("native:comte", model, random_state=0).fit(X, y)
    exp = e.explain(xq)
    assert exp.valid.mean() >= 0.8
    assert exp.params["n_segments_used"] == 1
    near = nearest_of_class(torch.from_numpy(xq), e.X_train_, e.train_class_, exp.target, 2)
    dist = e.X_train_[near].numpy()  # (N, D, C, T)
    cf, x = exp.counterfactuals, exp.inputs
    for i in range(len(xq)):
        for ch in range(x.shape[1]):
            sources = [x[i, ch], *dist[i, :, ch]]
            assert any(np.array_equal(cf[i, ch], s) for s in sources), "a channel was mixed"
    changed = (cf != x).any(-1)  # (N, C): whole channels
    assert changed.sum(1).mean() < x.shape[1]
    # 1-minimal: giving any substituted channel back to the query loses validity
    reverted = [np.where(np.arange(x.shape[1])[:, None] == ch, x[i], cf[i])
                for i in range(len(xq)) if exp.valid[i] for ch in np.flatnonzero(changed[i])]
    targets = [exp.target[i] for i in range(len(xq)) if exp.valid[i] for _ in np.flatnonzero(changed[i])]
    with torch.no_grad():
        pred = model(torch.from_numpy(np.stack(reverted))).argmax(1).numpy()
    assert (pred != np.array(targets)).all()


def test_comte_univariate_segments(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    xq = Xt[:20]
    e = xs.create_explainer("native:comte", gunpoint_cnn, random_state=0, batch_size=10_000).fit(X, y)
    exp = e.explain(xq)
    assert exp.valid.mean() >= 0.8
    assert exp.params["n_segments_used"] == 10
    assert exp.metrics["changed_fraction"][exp.valid].mean() < 0.6
    # model calls per step cover all instances: the count does not grow with N
    assert exp.params["model_calls"] <= 2 * 10 + e.max_iter + 10
    near = nearest_of_class(torch.from_numpy(xq), e.X_train_, e.train_class_, exp.target, 2)
    dist = e.X_train_[near].numpy()[:, :, 0]
    bounds = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(150), 10)])
    for i in range(len(xq)):
        for s, t in itertools.pairwise(bounds):
            seg = exp.counterfactuals[i, 0, s:t]
            assert any(np.array_equal(seg, src[s:t]) for src in [xq[i, 0], *dist[i]])


def test_comte_single_unit_is_the_nearest_distractor(gunpoint, gunpoint_cnn):
    """With one unit per series and one distractor, COMTE returns the nearest training series
    of the target class (TSInterpret's univariate behaviour): NativeGuide's NUN."""
    X, y, Xt, _ = gunpoint
    xq = Xt[:10]
    e = xs.create_explainer("native:comte", gunpoint_cnn, n_segments=1, n_distractors=1,
                            random_state=0).fit(X, y)
    comte = e.explain(xq)
    nun = e.X_train_[nearest_of_class(torch.from_numpy(xq), e.X_train_, e.train_class_,
                                      comte.target)[:, 0]].numpy()
    np.testing.assert_array_equal(comte.counterfactuals, nun)


@pytest.mark.parametrize("name", ["native:native_guide", "native:comte"])
def test_batch_size_invariance(gunpoint, gunpoint_cnn, name):
    X, y, Xt, _ = gunpoint
    xq = Xt[:5]
    assert xs.explainer_info(name).tags.batch_invariant
    runs = [xs.create_explainer(name, gunpoint_cnn, batch_size=bs, **(
        {"random_state": 0} if name == "native:comte" else {})).fit(X, y).explain(xq)
        for bs in (1, "auto")]
    np.testing.assert_array_equal(runs[0].counterfactuals, runs[1].counterfactuals)


def test_probabilities_and_logits_give_the_same_search(gunpoint, gunpoint_cnn):
    """A model returning probabilities is scored as is, one returning logits softmaxed."""
    X, y, Xt, _ = gunpoint
    xq = Xt[:6]
    a = xs.create_explainer("native:comte", gunpoint_cnn, random_state=0).fit(X, y).explain(xq)
    b = xs.create_explainer("native:comte", SoftmaxModel(gunpoint_cnn), random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.counterfactuals, b.explain(xq).counterfactuals)


# -- TSEvo -------------------------------------------------------------------------------------
FAST_EVO = {"population": 16, "generations": 12}


def test_tsevo_valid_repeatable_and_seeded(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    xq = Xt[:12]
    make = lambda seed: xs.create_explainer(  # noqa: E731
        "native:tsevo", gunpoint_cnn, random_state=seed, **FAST_EVO).fit(X, y)
    a, b, c = make(0).explain(xq), make(0).explain(xq), make(1).explain(xq)
    assert a.valid.mean() >= 0.8
    np.testing.assert_array_equal(a.counterfactuals, b.counterfactuals)
    assert not np.array_equal(a.counterfactuals, c.counterfactuals)
    assert a.metrics["changed_fraction"][a.valid].mean() < 0.6


def test_tsevo_one_model_call_per_generation(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    box = SoftmaxModel(gunpoint_cnn)
    for gens in (3, 8):
        e = xs.create_explainer("native:tsevo", box, population=10, generations=gens,
                                batch_size=10_000, random_state=0).fit(X, y)
        box.calls = 0
        exp = e.explain(Xt[:10])  # 10 instances x 10 candidates per generation
        assert exp.params["model_calls"] == gens
        assert box.calls == gens + 2  # plus predicting the inputs and the counterfactuals


def test_tsevo_draws_do_not_depend_on_batch_size(gunpoint, gunpoint_cnn):
    """With outputs free of float noise (rounded), batch sizes give the same search."""
    X, y, Xt, _ = gunpoint
    box = SoftmaxModel(gunpoint_cnn, decimals=4)
    runs = [xs.create_explainer("native:tsevo", box, population=8, generations=6, batch_size=bs,
                                random_state=0).fit(X, y).explain(Xt[:3]) for bs in (1, 7, "auto")]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.counterfactuals, runs[0].counterfactuals)


def test_tsevo_authentic_values_come_from_the_target_class(motions):
    """Authentic mutation and crossover only move values along time-aligned positions."""
    model, X, y, xq = motions
    e = xs.create_explainer("native:tsevo", model, transformer="authentic", random_state=0,
                            **FAST_EVO).fit(X, y)
    exp = e.explain(xq)
    assert exp.valid.mean() >= 0.8
    ref, cls = e.X_train_.numpy(), e.train_class_
    for i in range(len(xq)):
        pool = np.concatenate([xq[i : i + 1], ref[cls == exp.target[i]]])  # (R, C, T)
        assert (exp.counterfactuals[i][None] == pool).any(0).all()


@pytest.mark.parametrize("transformer", ["frequency", "gaussian", "mixed"])
def test_tsevo_transformers(gunpoint, gunpoint_cnn, transformer):
    X, y, Xt, _ = gunpoint
    exp = xs.create_explainer("native:tsevo", gunpoint_cnn, transformer=transformer,
                              random_state=0, **FAST_EVO).fit(X, y).explain(Xt[:8])
    assert exp.valid.mean() >= 0.8
    if transformer == "frequency":  # a band change moves the whole channel
        assert exp.metrics["changed_fraction"][exp.valid].mean() > 0.5


def test_fft_bands_and_nondominated_rank(rng):
    b = fft_bands(76)
    assert b[0].tolist() == [0, 1] and b[-1, 1] == 76
    assert (b[1:, 0] == b[:-1, 1]).all()
    np.testing.assert_array_equal(np.diff(b, axis=1)[1:-1, 0], np.arange(1, len(b) - 1) ** 2)

    obj = np.round(rng.random((5, 30, 3)), 1)  # coarse values: ties and duplicates
    valid = rng.random((5, 30)) < 0.6
    rank = _nondominated_rank(obj, valid, need=30)

    def dominates(n, a, b):
        if valid[n, a] != valid[n, b]:
            return valid[n, a]
        if not valid[n, a]:
            return obj[n, a, 0] < obj[n, b, 0]
        return (obj[n, a] <= obj[n, b]).all() and (obj[n, a] < obj[n, b]).any()

    for n in range(5):
        left, r = set(range(30)), 0
        while left:
            front = {b for b in left if not any(dominates(n, a, b) for a in left)}
            assert {int(i) for i in np.flatnonzero(rank[n] == r)} == front
            left -= front
            r += 1

    for need in (1, 4, 12):  # fronts peeled only until `need` per instance are ranked
        part = _nondominated_rank(obj, valid, need)
        stop = part[valid].max()  # every valid candidate not yet ranked shares this rank
        np.testing.assert_array_equal(part[valid], np.minimum(rank, stop)[valid])
        for n in range(5):
            # ranked short of `need` only where no front was left unpeeled
            assert ((part[n] < stop) & valid[n]).sum() >= need or rank[n, valid[n]].max() <= stop
            inv = ~valid[n]
            if inv.any() and valid[n].any():  # invalid ones after every valid one, same order
                assert (part[n, inv] > part[n, valid[n]].max()).all()
                np.testing.assert_array_equal(part[n, inv] - part[n, inv].min(),
                                              rank[n, inv] - rank[n, inv].min())

# -- all three ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "params"), [
    ("native:native_guide", {}),
    ("native:comte", {"random_state": 0}),
    ("native:tsevo", {"random_state": 0, **FAST_EVO}),
])
def test_explicit_target_on_a_four_class_problem(motions, name, params):
    model, X, y, xq = motions
    with torch.no_grad():
        pred = model(torch.from_numpy(xq)).argmax(1).numpy()
    target = (pred + 2) % 4
    exp = xs.create_explainer(name, model, **params).fit(X, y).explain(xq, target=target)
    np.testing.assert_array_equal(exp.target, target)
    assert exp.valid.mean() >= (1.0 if name == "native:native_guide" else 0.8)
    np.testing.assert_array_equal(exp.cf_predictions.argmax(1)[exp.valid], target[exp.valid])


@pytest.mark.parametrize(("name", "params", "match"), [
    ("native:native_guide", {"window_step": 0}, "window_step"),
    ("native:native_guide", {"saliency": "cam"}, "saliency"),
    ("native:native_guide", {"distance": "manhattan"}, "distance"),
    ("native:comte", {"n_segments": 151}, "n_segments"),
    ("native:comte", {"n_restarts": -1}, "n_restarts"),
    ("native:tsevo", {"transformer": "authentic_opposing_information"}, "transformer"),
    ("native:tsevo", {"population": 1}, "population"),
])
def test_bad_parameters(gunpoint, gunpoint_cnn, name, params, match):
    X, y, Xt, _ = gunpoint
    e = xs.create_explainer(name, gunpoint_cnn, **params).fit(X, y)
    with pytest.raises(ValueError, match=match):
        e.explain(Xt[:2])


def test_gradient_saliency_needs_a_torch_model(gunpoint, gunpoint_cnn):
    X, y, Xt, _ = gunpoint
    e = xs.create_explainer("native:native_guide", SoftmaxModel(gunpoint_cnn), saliency="grad_cam")
    with pytest.raises(ValueError, match="torch model"):
        e.fit(X, y).explain(Xt[:2])
