"""Time-series datasets: UCR/UEA classification data shipped inside aeon (no download) and
planted-signal tasks with a ground-truth mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xai_suite.plugin import check_choice, check_positive_int, close_matches, register_dataset

SPLITS = ("train", "test")
PADS = (None, "zero", "edge", "archive")


def _data_dir() -> Path:
    import aeon.datasets

    return Path(aeon.datasets.__file__).parent / "data"


def _has_class_labels(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return low.split()[1] == "true"
            if low.startswith("@data"):
                return False
    return False


@register_dataset("timeseries")
def ucr_datasets() -> list[str]:
    """Names of the classification datasets shipped inside the installed aeon."""
    root = _data_dir()
    names = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        train, test = d / f"{d.name}_TRAIN.ts", d / f"{d.name}_TEST.ts"
        if train.exists() and test.exists() and _has_class_labels(train):
            names.append(d.name)
    return names


def _sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


@register_dataset("timeseries")
def load_ucr(name: str, split: str = "train", *, pad: str | None = None,
             return_classes: bool = False):
    """Load a UCR/UEA classification dataset shipped with aeon.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``"GunPoint"``, ``"BasicMotions"`` (see ``ucr_datasets()``).
    split : {"train", "test"}
    pad : {None, "zero", "edge", "archive"}
        Unequal-length sets (JapaneseVowels, PickupGestureWiimoteZ) need it: ``"zero"`` /
        ``"edge"`` extend every series at its end to the longest of both splits (one length
        for train and test) with zeros or its last value; ``"archive"`` loads the archive's
        own equal-length version (``<name>_eq_*.ts``). Equal-length sets ignore ``pad``.
    return_classes : bool
        Also return the original class labels, ``classes[y]`` being each instance's label.

    Returns
    -------
    X : numpy.ndarray of float32, shape (N, C, T)
    y : numpy.ndarray of int64, shape (N,)
        Labels 0..K-1, numbered in the order of the sorted original labels (numeric order
        where they are numbers), the same for both splits.
    classes : numpy.ndarray of str, shape (K,)
        Only with ``return_classes=True``.
    """
    from aeon.datasets import load_classification

    known = ucr_datasets()
    if name not in known:
        raise ValueError(f"no shipped classification dataset {name!r}{close_matches(name, known)} "
                         f"Available offline: {', '.join(known)}")
    check_choice("split", split, SPLITS)
    check_choice("pad", pad, PADS)
    path = str(_data_dir())
    X_all, y_all = load_classification(name, extract_path=path)
    X, y = load_classification(name, split=split, extract_path=path)
    classes = np.array(sorted({str(v) for v in y_all}, key=_sort_key))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(v)] for v in y], dtype=np.int64)
    if isinstance(X, list):  # unequal lengths: a list of (C, T_i) arrays
        lengths = sorted({x.shape[-1] for x in X_all})
        archive = (_data_dir() / name / f"{name}_eq_TRAIN.ts").exists()
        if pad is None:
            raise ValueError(
                f"{name} holds series of unequal lengths ({lengths[0]}..{lengths[-1]}); pass "
                "pad='zero' or pad='edge' to extend them to the longest at their end"
                + (" or pad='archive' for the archive's equal-length version" if archive else "")
            )
        if pad == "archive":
            if not archive:
                raise ValueError(f"aeon ships no equal-length version of {name}; use pad='zero' or 'edge'")
            X, _ = load_classification(name, split=split, extract_path=path, load_equal_length=True)
        else:
            mode = "constant" if pad == "zero" else "edge"
            X = np.stack([np.pad(x, ((0, 0), (0, lengths[-1] - x.shape[-1])), mode=mode) for x in X])
    X = np.ascontiguousarray(X, dtype=np.float32)
    return (X, labels, classes) if return_classes else (X, labels)


SIGNALS = ("box", "harmonic", "autoregressive")
LAYOUTS = ("middle", "small_middle", "moving", "rare_time", "rare_feature")
#: Coefficient of the AR(1) background: x_t = AR_COEF * x_{t-1} + noise * e_t.
AR_COEF = 0.9


def _centred(size: int, dim: int) -> slice:
    start = (dim - size) // 2
    return slice(start, start + size)


def _box_sizes(layout: str, n_channels: int, length: int) -> tuple[int, int]:
    """Channels and time steps of the informative box for ``layout``."""
    half, quarter = (lambda d: max(1, d // 2)), (lambda d: max(1, d // 4))
    few, most = (lambda d: max(1, d // 10)), (lambda d: max(1, (4 * d) // 5))
    return {
        "middle": (half(n_channels), half(length)),
        "small_middle": (quarter(n_channels), quarter(length)),
        "moving": (half(n_channels), half(length)),
        "rare_time": (most(n_channels), few(length)),
        "rare_feature": (few(n_channels), most(length)),
    }[layout]


def _background(signal: str, shape: tuple[int, int, int], noise: float, rng) -> np.ndarray:
    n, c, t = shape
    eps = rng.standard_normal(shape)
    if signal == "box":
        return noise * eps
    if signal == "harmonic":
        cycles = rng.uniform(1.0, 5.0, size=(n, c, 1))  # whole periods over the series
        phase = rng.uniform(0.0, 2 * np.pi, size=(n, c, 1))
        return np.sin(2 * np.pi * cycles * np.arange(t) / t + phase) + noise * eps
    x = np.empty(shape)
    x[..., 0] = eps[..., 0] * noise / np.sqrt(1 - AR_COEF**2)  # stationary start
    for i in range(1, t):
        x[..., i] = AR_COEF * x[..., i - 1] + noise * eps[..., i]
    return x


@register_dataset("timeseries")
def make_planted_timeseries(
    n_samples: int = 400,
    *,
    n_channels: int = 10,
    length: int = 50,
    signal: str = "box",
    layout: str = "middle",
    n_classes: int = 2,
    amplitude: float = 1.0,
    noise: float = 1.0,
    random_state: int | None = 0,
):
    """Classification task with a planted, class-informative region (Ismail et al. 2020).

    Every channel carries a background ``signal``; inside one region (the ``layout``) the
    class-dependent ``shift[k]``, evenly spaced in ``[-amplitude, +amplitude]``, is added.
    Outside the region the class does not change the distribution.

    Parameters
    ----------
    n_samples : int
        Series; the classes are balanced (counts differ by at most one) and shuffled.
    n_channels, length : int
        ``C`` and ``T``.
    signal : {"box", "harmonic", "autoregressive"}
        Background per channel, ``e_t`` standard normal: ``"box"`` ``noise * e_t``;
        ``"harmonic"`` ``sin(2 pi f t / T + phi) + noise * e_t``, 1 to 5 periods ``f`` and
        phase ``phi`` uniform per series and channel; ``"autoregressive"`` the AR(1) process
        ``x_t = 0.9 x_{t-1} + noise * e_t`` started from its stationary law.
    layout : {"middle", "small_middle", "moving", "rare_time", "rare_feature"}
        Where the class signal lives (a box of channels x consecutive time steps):
        ``"middle"`` the central ``C // 2`` channels x ``T // 2`` steps; ``"small_middle"``
        the central ``C // 4`` x ``T // 4``; ``"moving"`` a ``C // 2`` x ``T // 2`` box at a
        uniformly random position per series; ``"rare_time"`` ``T // 10`` central steps
        over the central ``4C // 5`` channels; ``"rare_feature"`` ``C // 10`` central
        channels over the central ``4T // 5`` steps (every size at least 1).
    n_classes : int
        At least 2. With an odd number the middle class has shift 0.
    amplitude : float
        Largest shift, > 0.
    noise : float
        Scale of the Gaussian noise, >= 0.
    random_state : int or None
        Seed of ``numpy.random.default_rng``; the same seed gives the same data.

    Returns
    -------
    X : numpy.ndarray of float32, shape (N, C, T)
    y : numpy.ndarray of int64, shape (N,)
        Labels 0..K-1.
    mask : numpy.ndarray of bool, shape (N, C, T)
        True exactly at the elements to which the class shift was added, for every series
        whatever its class; ``X - shift[y] * mask`` is the pure background.
    """
    check_positive_int(n_samples=n_samples, n_channels=n_channels, length=length)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2; got {n_classes!r}")
    check_choice("signal", signal, SIGNALS)
    check_choice("layout", layout, LAYOUTS)
    if not (np.isfinite(amplitude) and amplitude > 0):
        raise ValueError(f"amplitude must be a finite number > 0; got {amplitude!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}")
    rng = np.random.default_rng(random_state)
    n, c, t = n_samples, n_channels, length
    y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    size_c, size_t = _box_sizes(layout, c, t)
    mask = np.zeros((n, c, t), dtype=bool)
    if layout == "moving":
        start_c = rng.integers(0, c - size_c + 1, size=n)
        start_t = rng.integers(0, t - size_t + 1, size=n)
        for i in range(n):
            mask[i, start_c[i] : start_c[i] + size_c, start_t[i] : start_t[i] + size_t] = True
    else:
        mask[:, _centred(size_c, c), _centred(size_t, t)] = True
    shift = np.linspace(-amplitude, amplitude, n_classes)
    X = _background(signal, (n, c, t), float(noise), rng) + shift[y][:, None, None] * mask
    return X.astype(np.float32), y, mask
