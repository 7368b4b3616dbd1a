"""Time-series adapter: UCR loading, planted-signal data, the model zoo and its weight cache,
aeon classifiers as black boxes, and the time-series baselines."""

import functools
import os
import shutil

import numpy as np
import pytest
import torch

import xai_suite as xs
import xai_suite.modeling as modeling
import xai_suite_timeseries.datasets as tsd
from xai_suite.baselines import ensure_baseline
from xai_suite_timeseries import (
    FCN,
    LSTMClassifier,
    ResNet1d,
    fit_cached,
    fit_classifier,
    make_planted_timeseries,
    model_cache_dir,
)
from xai_suite_timeseries.baselines import MovingAverage


def _raw(name, split, **kw):
    from aeon.datasets import load_classification

    return load_classification(name, split=split, extract_path=str(tsd._data_dir()), **kw)


# -- UCR / UEA data shipped with aeon ---------------------------------------------------------


def test_every_shipped_dataset_loads_with_labels_that_round_trip():
    names = xs.datasets.ucr_datasets()
    assert {"GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions", "JapaneseVowels",
            "OSULeaf"} <= set(names)
    for name in names:
        shapes = []
        for split in ("train", "test"):
            X, y, classes = xs.datasets.load_ucr(name, split, pad="zero", return_classes=True)
            _, raw_y = _raw(name, split)
            assert X.dtype == np.float32 and X.ndim == 3 and y.dtype == np.int64, name
            assert y.min() >= 0 and y.max() < len(classes), name
            np.testing.assert_array_equal(classes[y], raw_y.astype(str), err_msg=name)
            shapes.append(X.shape[1:])
        assert shapes[0] == shapes[1], name  # train and test share C and T, padded or not


def test_values_keep_aeon_channel_layout():
    X, _ = xs.datasets.load_ucr("BasicMotions", "train")
    raw, _ = _raw("BasicMotions", "train")
    assert X.shape == (40, 6, 100)
    np.testing.assert_array_equal(X, raw.astype(np.float32))  # (N, C, T): no transpose
    X, _y, classes = xs.datasets.load_ucr("PickupGestureWiimoteZ", pad="edge", return_classes=True)
    assert list(classes) == [str(i) for i in range(1, 11)]  # numeric order, not '1', '10', '2'


def test_unequal_lengths_refused_or_padded_at_the_end():
    with pytest.raises(ValueError, match="unequal lengths.*pad='zero'.*pad='archive'"):
        xs.datasets.load_ucr("JapaneseVowels", "test")
    raw, _ = _raw("JapaneseVowels", "test")
    Xz, _ = xs.datasets.load_ucr("JapaneseVowels", "test", pad="zero")
    Xe, _ = xs.datasets.load_ucr("JapaneseVowels", "test", pad="edge")
    Xtr, _ = xs.datasets.load_ucr("JapaneseVowels", "train", pad="zero")
    longest = max(r.shape[-1] for r in raw)
    assert Xz.shape == (370, 12, longest) and Xtr.shape[2] == longest  # one length for both splits
    for i in (0, 5, 200):
        n = raw[i].shape[-1]
        np.testing.assert_array_equal(Xz[i, :, :n], raw[i].astype(np.float32))
        assert (Xz[i, :, n:] == 0).all()
        np.testing.assert_array_equal(Xe[i, :, n:], np.repeat(Xe[i, :, n - 1 : n], longest - n, 1))
    Xa, ya = xs.datasets.load_ucr("JapaneseVowels", "train", pad="archive")
    raw_eq, raw_eq_y = _raw("JapaneseVowels", "train", load_equal_length=True)
    np.testing.assert_array_equal(Xa, raw_eq.astype(np.float32))
    _, y = xs.datasets.load_ucr("JapaneseVowels", "train", pad="zero")
    np.testing.assert_array_equal(ya, y)
    np.testing.assert_array_equal(raw_eq_y, _raw("JapaneseVowels", "train")[1])  # same rows
    # equal-length sets ignore pad
    np.testing.assert_array_equal(xs.datasets.load_ucr("GunPoint", pad="edge")[0],
                                  xs.datasets.load_ucr("GunPoint")[0])
    with pytest.raises(ValueError, match="pad must be one of None, 'zero', 'edge', 'archive'"):
        xs.datasets.load_ucr("GunPoint", pad="reflect")


def test_archive_padding_refused_where_aeon_ships_no_equal_length_version(tmp_path, monkeypatch):
    src = tsd._data_dir() / "JapaneseVowels"
    (tmp_path / "JapaneseVowels").mkdir()
    for split in ("TRAIN", "TEST"):
        shutil.copy(src / f"JapaneseVowels_{split}.ts", tmp_path / "JapaneseVowels")
    monkeypatch.setattr(tsd, "_data_dir", lambda: tmp_path)
    assert tsd.ucr_datasets() == ["JapaneseVowels"]
    with pytest.raises(ValueError, match="unequal lengths") as err:
        tsd.load_ucr("JapaneseVowels")
    assert "archive" not in str(err.value)
    with pytest.raises(ValueError, match="ships no equal-length version"):
        tsd.load_ucr("JapaneseVowels", pad="archive")


# -- planted-signal data ----------------------------------------------------------------------

SIGNALS, LAYOUTS = tsd.SIGNALS, tsd.LAYOUTS


def test_planted_is_registered_seeded_and_typed():
    assert xs.datasets.make_planted_timeseries is make_planted_timeseries
    X, y, mask = make_planted_timeseries(signal="harmonic", layout="moving")
    assert X.shape == mask.shape == (400, 10, 50) and y.shape == (400,)
    assert X.dtype == np.float32 and y.dtype == np.int64 and mask.dtype == bool
    assert np.bincount(y).tolist() == [200, 200]
    for a, b in zip((X, y, mask), make_planted_timeseries(signal="harmonic", layout="moving"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    X2, _, mask2 = make_planted_timeseries(signal="harmonic", layout="moving", random_state=1)
    assert not np.array_equal(X, X2) and not np.array_equal(mask, mask2)


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_mask_marks_exactly_the_class_shift(signal, layout):
    # same seed, other amplitude: the data differ by shift[y] exactly where the mask is set
    X1, y, mask = make_planted_timeseries(120, signal=signal, layout=layout, n_classes=3)
    X2, y2, mask2 = make_planted_timeseries(120, signal=signal, layout=layout, n_classes=3,
                                            amplitude=3.0)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(mask, mask2)
    shift = np.array([-2.0, 0.0, 2.0])[y][:, None, None] * mask  # (3 - 1) * linspace(-1, 1, 3)
    np.testing.assert_allclose(X2 - X1, shift, atol=1e-5)


@pytest.mark.parametrize("signal", SIGNALS)
def test_class_means_differ_inside_the_mask_only(signal):
    X, y, mask = make_planted_timeseries(400, signal=signal, layout="middle", random_state=3)
    a, b = X[y == 1], X[y == 0]
    t = (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    inside = mask[0]
    assert (t[inside] > 5).all()  # +amplitude vs -amplitude
    assert (np.abs(t[~inside]) < 4.5).all()  # 375 cells of null differences


def _box(m):
    """(channels, steps) of the bounding box of a 2-D mask, checking that it fills it."""
    cs, ts = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
    assert m[cs[0] : cs[-1] + 1, ts[0] : ts[-1] + 1].all() and m.sum() == cs.size * ts.size
    return (cs[0], cs.size), (ts[0], ts.size)


@pytest.mark.parametrize(
    ("layout", "channels", "steps"),
    [("middle", (2, 5), (12, 25)), ("small_middle", (4, 2), (19, 12)),
     ("rare_time", (1, 8), (22, 5)), ("rare_feature", (4, 1), (5, 40))],
)
def test_fixed_layout_geometry(layout, channels, steps):
    _, _, mask = make_planted_timeseries(20, layout=layout)
    assert (mask == mask[:1]).all()  # the same box for every series
    assert _box(mask[0]) == (channels, steps)


def test_moving_layout_geometry():
    _, _, mask = make_planted_timeseries(200, layout="moving")
    boxes = [_box(m) for m in mask]
    assert {(c[1], t[1]) for c, t in boxes} == {(5, 25)}  # the middle's size
    starts = np.array([(c[0], t[0]) for c, t in boxes])
    assert set(starts[:, 0]) == set(range(6)) and starts[:, 1].min() == 0 and starts[:, 1].max() == 25


def test_tiny_shapes_keep_at_least_one_element():
    for layout in LAYOUTS:
        _, _, mask = make_planted_timeseries(3, n_channels=1, length=3, layout=layout)
        assert mask.sum(axis=(1, 2)).min() >= 1


def test_planted_bad_arguments():
    with pytest.raises(ValueError, match="signal must be one of 'box', 'harmonic', 'autoregressive'"):
        make_planted_timeseries(signal="ar")
    with pytest.raises(ValueError, match="layout must be one of 'middle', 'small_middle', 'moving'"):
        make_planted_timeseries(layout="center")
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        make_planted_timeseries(0)
    with pytest.raises(ValueError, match="length must be a positive int"):
        make_planted_timeseries(length=2.5)
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        make_planted_timeseries(n_classes=1)
    with pytest.raises(ValueError, match="amplitude must be a finite number > 0"):
        make_planted_timeseries(amplitude=0)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        make_planted_timeseries(noise=float("nan"))


# -- model zoo --------------------------------------------------------------------------------

ZOO = [(FCN, {"widths": (8, 16, 8)}), (ResNet1d, {"widths": (8, 8)}),
       (LSTMClassifier, {"hidden_size": 16})]


@pytest.fixture(scope="module")
def planted():
    X, y, _ = make_planted_timeseries(300, random_state=0)
    Xt, yt, _ = make_planted_timeseries(200, random_state=1)
    return X, y, Xt, yt


@pytest.mark.parametrize(("cls", "kw"), ZOO, ids=lambda v: getattr(v, "__name__", ""))
def test_model_output_shapes(cls, kw):
    torch.manual_seed(0)
    model = cls(3, 4, **kw).eval()
    for t in (1, 17, 64):
        assert model(torch.randn(5, 3, t)).shape == (5, 4)
    with pytest.raises(RuntimeError):
        model(torch.randn(5, 2, 17))  # wrong number of channels


def test_default_models_and_bad_sizes():
    for cls in (FCN, ResNet1d, LSTMClassifier):
        assert cls(6, 4)(torch.randn(2, 6, 30)).shape == (2, 4)
    resnet = ResNet1d(1, 2, widths=(4, 4, 8))
    assert isinstance(resnet.blocks[0].shortcut, torch.nn.Sequential)  # 1 -> 4 channels: 1x1 conv
    assert isinstance(resnet.blocks[1].shortcut, torch.nn.Identity)  # 4 -> 4
    with pytest.raises(ValueError, match="widths must be a non-empty tuple"):
        FCN(1, 2, widths=())
    with pytest.raises(ValueError, match="equal lengths"):
        FCN(1, 2, widths=(4, 4), kernels=(3,))
    with pytest.raises(ValueError, match=r"kernels\[1\] must be a positive int"):
        ResNet1d(1, 2, kernels=(3, 0))
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        LSTMClassifier(1, 2, hidden_size=0)
    with pytest.raises(ValueError, match=r"expects \(N, C, T\) inputs"):
        LSTMClassifier(2, 2)(torch.randn(4, 2))


@pytest.mark.parametrize(("cls", "kw"), ZOO, ids=lambda v: getattr(v, "__name__", ""))
def test_models_learn_a_planted_task(cls, kw, planted):
    X, y, Xt, yt = planted
    torch.manual_seed(0)
    model = fit_classifier(cls(10, 2, **kw), X, y, epochs=10, lr=1e-2, batch_size=32)
    assert not model.training
    with torch.no_grad():
        acc = (model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean()
    assert acc >= 0.9, acc


def test_lstm_reads_channels_as_features_of_each_time_step():
    torch.manual_seed(0)
    model = LSTMClassifier(3, 2, hidden_size=4).eval()
    x = torch.randn(2, 3, 7)
    steps = x.permute(0, 2, 1)  # (N, T, C): a transpose, never a reshape
    h = torch.zeros(1, 2, 4)
    c = torch.zeros(1, 2, 4)
    for t in range(7):  # one step at a time: the last hidden state
        _, (h, c) = model.lstm(steps[:, t : t + 1], (h, c))
    torch.testing.assert_close(model(x), model.head(h[-1]))


# -- weight cache -----------------------------------------------------------------------------


@pytest.fixture
def count_fits(monkeypatch):
    calls = []

    @functools.wraps(fit_classifier)  # fit_cached reads fit_classifier's signature
    def counting(model, X, y, **kw):
        calls.append(kw)
        return fit_classifier(model, X, y, **kw)

    monkeypatch.setattr(modeling, "fit_classifier", counting)  # where fit_cached looks it up
    return calls


def _tiny(seed=0, widths=(4, 4, 4)):
    torch.manual_seed(seed)
    return FCN(10, 2, widths=widths)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_hit_returns_identical_weights_without_training(tmp_path, planted, count_fits):
    X, y, _, _ = planted
    first = fit_cached(_tiny(), X, y, epochs=2, cache_dir=tmp_path)
    assert len(count_fits) == 1 and first.cache_path_.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path_.name]  # no temp file left
    again = fit_cached(_tiny(), X, y, epochs=2, lr=3e-3, cache_dir=tmp_path)  # lr: the default
    assert len(count_fits) == 1 and not again.training
    assert _same_weights(first, again) and again.cache_path_ == first.cache_path_
    # anything that changes the trained weights is a miss
    fit_cached(_tiny(), X, y, epochs=3, cache_dir=tmp_path)  # hyper-parameter
    fit_cached(_tiny(seed=1), X, y, epochs=2, cache_dir=tmp_path)  # initial weights
    fit_cached(_tiny(widths=(4, 4, 2)), X, y, epochs=2, cache_dir=tmp_path)  # architecture
    fit_cached(_tiny(), X, 1 - y, epochs=2, cache_dir=tmp_path)  # data
    assert len(count_fits) == 5 and len(list(tmp_path.iterdir())) == 5
    with pytest.raises(TypeError, match="fit_cached takes fit_classifier's settings epochs, lr"):
        fit_cached(_tiny(), X, y, epoch=2, cache_dir=tmp_path)


def test_cache_directory_from_argument_env_or_home(tmp_path, monkeypatch, planted, count_fits):
    monkeypatch.setenv("XAI_SUITE_CACHE", str(tmp_path / "root"))
    assert model_cache_dir() == tmp_path / "root" / "models"
    assert model_cache_dir(tmp_path / "mine") == tmp_path / "mine"
    X, y, _, _ = planted
    model = fit_cached(_tiny(), X[:40], y[:40], epochs=1)
    assert model.cache_path_.parent == tmp_path / "root" / "models"
    monkeypatch.delenv("XAI_SUITE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_cache_dir() == tmp_path / "home" / ".cache" / "xai_suite" / "models"


def test_corrupt_or_incompatible_cache_file_is_retrained(tmp_path, planted, count_fits):
    X, y, _, _ = planted
    X, y = X[:40], y[:40]
    good = fit_cached(_tiny(), X, y, epochs=1, cache_dir=tmp_path)
    path = good.cache_path_
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a crash without os.replace
    with pytest.warns(UserWarning, match="could not be loaded into FCN.*retraining"):
        again = fit_cached(_tiny(), X, y, epochs=1, cache_dir=tmp_path)
    assert len(count_fits) == 2 and _same_weights(good, again)
    torch.save(_tiny(widths=(4, 4, 2)).state_dict(), path)  # a foreign state dict
    with pytest.warns(UserWarning, match="size mismatch"):
        again = fit_cached(_tiny(), X, y, epochs=1, cache_dir=tmp_path)
    assert len(count_fits) == 3 and _same_weights(good, again)
    assert _same_weights(good, fit_cached(_tiny(), X, y, epochs=1, cache_dir=tmp_path))
    assert len(count_fits) == 3  # the overwritten file is valid again


def test_interrupted_write_leaves_no_file(tmp_path, planted, monkeypatch):
    X, y, _, _ = planted

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modeling.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        fit_cached(_tiny(), X[:40], y[:40], epochs=1, cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


# -- aeon classifiers as black boxes ----------------------------------------------------------


def test_aeon_classifier_explained_as_a_black_box():
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    from xai_suite.modeling import model_kind

    # a weak signal and held-out instances, so that the 7 neighbours' vote is not unanimous
    X, y, mask = make_planted_timeseries(212, n_channels=4, length=40, amplitude=0.5, random_state=0)
    knn = KNeighborsTimeSeriesClassifier(n_neighbors=7, distance="euclidean").fit(X[:200], y[:200])
    assert model_kind(knn) == "aeon"
    x, t, mask = X[200:], y[200:], mask[200:]
    n = len(x)
    # channel x (steps 0-9, 10-29, 30-39): the planted box is two of these groups
    groups = np.arange(4)[:, None] * 3 + np.digitize(np.arange(40), [10, 30])[None, :]
    exp = xs.explain(knn, x, method="captum:feature_ablation", baseline="channel_mean",
                     feature_mask=groups, target=t)
    assert exp.params["baseline"] == {"name": "channel_mean"}
    # reference: output drop when each group is set to its channel's mean, via predict_proba
    ref = np.zeros_like(x)
    p = knn.predict_proba(x)[np.arange(n), t]
    for g in range(groups.max() + 1):
        xg = np.where(groups == g, x.mean(-1, keepdims=True), x)
        ref += (p - knn.predict_proba(xg)[np.arange(n), t])[:, None, None] * (groups == g)
    np.testing.assert_allclose(exp.attributions, ref, atol=1e-6)
    # the class signal lives in the mask: ablating there costs the true class most
    assert exp.attributions[mask].mean() > exp.attributions[~mask].mean() + 0.02


# -- time-series baselines --------------------------------------------------------------------


def _draw(name, x, **params):
    b = ensure_baseline(name) if not params else MovingAverage(**params)
    return b.sample(torch.as_tensor(x), np.zeros(len(x), np.int64), 1, np.random.default_rng(0))[0].numpy()


SERIES = np.array([[[1.0, 2.0, 6.0, 3.0, 8.0], [0.0, 0.0, 0.0, 0.0, 10.0]],
                   [[4.0, 4.0, 4.0, 4.0, 4.0], [-1.0, 1.0, -1.0, 1.0, -1.0]]], dtype=np.float32)


def test_ts_baselines_registered_for_time_series_only():
    assert {"channel_mean", "linear", "moving_average"} <= set(xs.list_baselines("timeseries"))
    assert not {"channel_mean", "linear", "moving_average"} & set(xs.list_baselines("tabular"))
    for name in ("channel_mean", "linear", "moving_average"):
        with pytest.raises(ValueError, match="applies to timeseries inputs; got tabular"):
            _draw(name, SERIES[:, 0])
        with pytest.raises(ValueError, match="applies to timeseries inputs; got image"):
            _draw(name, SERIES[:, :, None])
    assert MovingAverage(window=3).describe() == {"name": "moving_average", "window": 3}


def test_channel_mean_and_linear_exact_values():
    np.testing.assert_allclose(_draw("channel_mean", SERIES),
                               np.repeat([[[4.0], [2.0]], [[4.0], [-0.2]]], 5, axis=2), rtol=1e-6)
    np.testing.assert_allclose(_draw("linear", SERIES),
                               [[[1.0, 2.75, 4.5, 6.25, 8.0], [0.0, 2.5, 5.0, 7.5, 10.0]],
                                [[4.0] * 5, [-1.0] * 5]], rtol=1e-6)
    np.testing.assert_array_equal(_draw("linear", SERIES[:, :, :1]), SERIES[:, :, :1])  # T = 1


def test_moving_average_exact_values_and_edges():
    out = _draw("moving_average", SERIES, window=3)
    # edges average the steps that exist: (1 + 2) / 2 at t = 0, (3 + 8) / 2 at t = 4
    np.testing.assert_allclose(out[0, 0], [1.5, 3.0, 11 / 3, 17 / 3, 5.5], rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], [0.0, 0.0, 0.0, 10 / 3, 5.0], atol=1e-6)
    np.testing.assert_allclose(out[1, 0], 4.0)  # a constant stays constant, edges included
    np.testing.assert_allclose(out[1, 1], [0.0, -1 / 3, 1 / 3, -1 / 3, 0.0], atol=1e-6)
    np.testing.assert_array_equal(_draw("moving_average", SERIES, window=1), SERIES)
    np.testing.assert_allclose(_draw("moving_average", SERIES, window=9), _draw("channel_mean", SERIES),
                               rtol=1e-6)  # window >= 2T - 1: the channel mean
    assert _draw("moving_average", SERIES).shape == SERIES.shape  # default window 5
    with pytest.raises(ValueError, match="window must be odd"):
        _draw("moving_average", SERIES, window=4)
    with pytest.raises(ValueError, match="window must be a positive int"):
        _draw("moving_average", SERIES, window=0)


@pytest.mark.parametrize("baseline", ["channel_mean", "linear", "moving_average"])
def test_integrated_gradients_complete_against_ts_baselines(baseline, planted):
    X, y, Xt, _ = planted
    torch.manual_seed(0)
    model = fit_classifier(FCN(10, 2, widths=(8, 8, 8)), X, y, epochs=2, batch_size=32)
    x = Xt[:4]
    exp = xs.explain(model, x, method="native:integrated_gradients", baseline=baseline)
    np.testing.assert_allclose(exp.baselines[0], _draw(baseline, x), rtol=1e-6, atol=1e-6)
    scale = np.abs(exp.attributions).sum(axis=(1, 2)).max()
    assert np.abs(exp.convergence_delta).max() <= 0.02 * scale
