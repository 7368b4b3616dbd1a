import numpy as np
import pytest

import xai_suite as xs


def test_gunpoint_layout_and_labels():
    X, y, classes = xs.datasets.load_ucr("GunPoint", "train", return_classes=True)
    Xt, yt = xs.datasets.load_ucr("GunPoint", "test")
    assert X.shape == (50, 1, 150) and Xt.shape == (150, 1, 150) and X.dtype == np.float32
    assert y.dtype == np.int64 and set(y) == set(yt) == {0, 1}
    assert list(classes) == ["1", "2"]


def test_multivariate_and_shipped_list():
    names = xs.datasets.ucr_datasets()
    assert {"GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions", "JapaneseVowels",
            "OSULeaf"} <= set(names)
    X, y, classes = xs.datasets.load_ucr("BasicMotions", "test", return_classes=True)
    assert X.shape[1:] == (6, 100) and len(classes) == 4 and set(y) == {0, 1, 2, 3}
    assert classes[0] == "badminton"  # alphabetical for non-numeric labels


def test_unequal_length_refused_or_padded():
    with pytest.raises(ValueError, match="unequal lengths.*pad='zero'"):
        xs.datasets.load_ucr("JapaneseVowels")
    X, _ = xs.datasets.load_ucr("JapaneseVowels", pad="zero")
    assert X.shape[1] == 12 and (X[:, :, -1] == 0).any()


def test_errors():
    with pytest.raises(ValueError, match="did you mean 'GunPoint'"):
        xs.datasets.load_ucr("Gunpoint")
    with pytest.raises(ValueError, match="split must be"):
        xs.datasets.load_ucr("GunPoint", "validation")
    with pytest.raises(AttributeError, match="did you mean 'load_ucr'"):
        xs.datasets.load_ucrr  # noqa: B018
