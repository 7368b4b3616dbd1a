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
    assert explained.base_values is not None  # integrated gradients: f(baseline)
    for field in ("attributions", "inputs", "target", "predictions", "convergence_delta",
                  "baselines", "base_values"):
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
    with pytest.raises(ValueError, match="not a valid xai-suite result file: its format is 'something'"):
        xs.load(tmp_path / "other.npz")


def _tampered(path, out, **changes):
    """A copy of the result file ``path`` with meta fields or arrays replaced."""
    import json

    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    for k, v in changes.items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        else:
            meta[k] = v
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)
    return out


def test_hostile_files_get_one_clear_error(explained, tmp_path):
    """Every malformed file raises ResultFileError (a ValueError) naming the file and what is
    wrong: never KeyError, RecursionError, BadZipFile or advice to unpickle."""
    import zipfile

    from xai_suite.explanation import ResultFileError

    good = explained.save(tmp_path / "good.npz")
    n, k = explained.predictions.shape
    bad = {
        "params as a list": ({"params": [1, 2]}, r"'params' is a list; expected dict"),
        "a float target": ({"target": explained.target.astype(np.float64)}, "integer output indices"),
        "a target out of range": ({"target": np.full(n, k)}, rf"target must lie in \[0, {k}\)"),
        "string attributions": ({"attributions": np.full(explained.inputs.shape, "x")},
                                "attributions shape|expected"),
        "a delta of the wrong shape": ({"convergence_delta": np.zeros(n + 1)}, "convergence_delta"),
        "no method": ({"method": None}, r"'method' is a NoneType; expected str"),
        "an object array": ({"inputs": np.array([None] * n, dtype=object)}, "pickle"),
    }
    for what, (change, match) in bad.items():
        out = tmp_path / f"{what}.npz"
        try:
            _tampered(good, out, **change)
        except ValueError:  # numpy itself refuses to write it without pickle: build by hand
            continue
        with pytest.raises(ResultFileError, match=match):
            xs.load(out)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ResultFileError, match="junk.npz is not a valid xai-suite result file"):
        xs.load(tmp_path / "junk.npz")
    deep = tmp_path / "deep.npz"  # JSON nested past the recursion limit
    np.savez(deep, meta=np.array("[" * 100_000 + "]" * 100_000))
    with pytest.raises(ResultFileError):
        xs.load(deep)
    bomb = tmp_path / "bomb.npz"  # 1 MiB of zeros compresses to about a kilobyte
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.npy", b"\0" * 2**20)
    assert bomb.stat().st_size < 20_000
    with pytest.raises(ResultFileError, match="expands to 1,048,576 bytes, above max_bytes=65,536"):
        xs.load(bomb, max_bytes=2**16)
    assert isinstance(xs.load(good, max_bytes=None), Explanation)


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
