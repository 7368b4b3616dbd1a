import numpy as np
import pytest

import xai_suite as xs
from xai_suite.explanation import Explanation
from xai_suite.testing import reference_problem


@pytest.fixture(scope="module", params=["tabular", "timeseries", "image"])
def explained(request):
    model, X, y, x = reference_problem(request.param)
    return xs.explain(model, x, baseline="training_mean", fit_data=(X, y))


def test_save_load_roundtrip(explained, tmp_path):
    path = explained.save(tmp_path / "sub" / "exp.npz")
    back = xs.load_explanation(path)
    for field in ("attributions", "inputs", "target", "predictions", "convergence_delta",
                  "baselines"):
        np.testing.assert_array_equal(getattr(back, field), getattr(explained, field))
    assert back.method == explained.method and back.params == explained.params
    assert not list(path.parent.glob("*.tmp"))


def test_save_is_atomic(explained, tmp_path, monkeypatch):
    path = explained.save(tmp_path / "exp.npz")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        explained.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["exp.npz"]


def test_load_refuses_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "something"}'))
    with pytest.raises(ValueError, match="not an xai-suite result file: its format is 'something'"):
        xs.load(tmp_path / "other.npz")


def test_to_frame(explained):
    df = explained.to_frame()
    axes = {"tabular": ["feature"], "timeseries": ["channel", "time"],
            "image": ["channel", "row", "col"]}[explained.modality]
    assert list(df.columns) == ["instance", *axes, "input", "attribution", "target"]
    assert len(df) == explained.inputs.size
    row = df.iloc[-1]
    idx = tuple(int(row[c]) for c in ["instance", *axes])
    assert row.attribution == pytest.approx(float(explained.attributions[idx]))
    assert row.input == pytest.approx(float(explained.inputs[idx]))


def test_plot(explained):
    import matplotlib.pyplot as plt

    ax = explained.plot(index=1)
    assert ax.get_title() or ax.figure.get_suptitle()
    plt.close("all")
    with pytest.raises(IndexError, match="out of range"):
        explained.plot(index=10)


def test_invalid_explanation_shapes():
    with pytest.raises(ValueError, match="differs from inputs shape"):
        Explanation(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros(2, int), np.zeros((2, 2)), "m")
    with pytest.raises(ValueError, match="expected target of shape"):
        Explanation(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3, int), np.zeros((2, 2)), "m")


def test_repr(explained):
    assert "native:integrated_gradients" in repr(explained) and "max |delta|" in repr(explained)
