"""UCR/UEA classification data that ships inside aeon (no download)."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from xai_suite.datasets import register_dataset

SPLITS = ("train", "test")


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


@register_dataset
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


@register_dataset
def load_ucr(name: str, split: str = "train", *, pad: str | None = None,
             return_classes: bool = False):
    """Load a UCR/UEA classification dataset shipped with aeon.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``"GunPoint"``, ``"BasicMotions"`` (see ``ucr_datasets()``).
    split : {"train", "test"}
    pad : {None, "zero", "edge"}
        Unequal-length sets (JapaneseVowels, ...) are refused unless ``pad`` says how to
        extend every series at its end to the longest length: with zeros or by repeating
        the last value.
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
        close = difflib.get_close_matches(name, known, n=3)
        raise ValueError(
            f"no shipped classification dataset {name!r}"
            + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
            + f" Available offline: {', '.join(known)}"
        )
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if pad not in (None, "zero", "edge"):
        raise ValueError(f"pad must be None, 'zero' or 'edge'; got {pad!r}")
    X, y = load_classification(name, split=split, extract_path=str(_data_dir()))
    _, y_all = load_classification(name, extract_path=str(_data_dir()))
    classes = np.array(sorted({str(v) for v in y_all}, key=_sort_key))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(v)] for v in y], dtype=np.int64)
    if isinstance(X, list):  # unequal lengths: a list of (C, T_i) arrays
        lengths = sorted({x.shape[-1] for x in X})
        if pad is None:
            raise ValueError(
                f"{name} holds series of unequal lengths ({lengths[0]}..{lengths[-1]}); pass "
                "pad='zero' or pad='edge' to extend them to the longest at their end"
            )
        mode = "constant" if pad == "zero" else "edge"
        X = np.stack([np.pad(x, ((0, 0), (0, lengths[-1] - x.shape[-1])), mode=mode) for x in X])
    X = np.ascontiguousarray(X, dtype=np.float32)
    return (X, labels, classes) if return_classes else (X, labels)
