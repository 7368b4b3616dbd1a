"""Result types returned by explainers, and the protocol they share (:class:`Result`).

A saved result is a ``.npz`` archive (no pickle): array fields (and dicts or tuples of
arrays) as arrays, every other field as JSON in its ``meta`` entry next to the class's
``format``, by which :func:`load` finds the class in ``FORMATS``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ._io import atomic_write, jsonable
from ._validation import NDIM_TO_MODALITY
from .catalog import Registry

_AXES = {
    "tabular": ("feature",),
    "timeseries": ("channel", "time"),
    "image": ("channel", "row", "col"),
}

#: Result classes by the ``format`` string their files carry.
FORMATS: Registry[type] = Registry("result format")


class Result:
    """The protocol of every result type: ``method``, ``params``, ``to_frame``, ``plot``, ``save``.

    Subclasses are dataclasses with fields ``method`` (qualified explainer name) and ``params``
    (JSON-ready) and a class attribute ``format`` (``"xai-suite-<kind>/<version>"``) that
    registers them for :func:`load`; ``__post_init__`` checks loaded and computed fields alike.
    """

    format: ClassVar[str]
    #: Array fields that hold text (every other array field must hold numbers).
    text_arrays: ClassVar[tuple[str, ...]] = ()
    method: str
    params: dict

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "format" in cls.__dict__:
            FORMATS.add(cls.format, cls)

    def to_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def plot(self, *args, **kwargs):
        raise NotImplementedError

    def to_html(self, path: str | os.PathLike, *, title: str | None = None, **kwargs) -> Path:
        """Write a self-contained HTML view to ``path`` (plotly.js inlined: it works offline,
        nothing is fetched when it is viewed); returns the path. See :mod:`xai_suite.viz.html`.

        Parameters
        ----------
        path : str or os.PathLike
        title : str, optional
            The page's title (default: the method and the result type).
        **kwargs
            Options of the result type's view.
        """
        from .viz.html import Page

        page = Page(title or f"{self.method}: {type(self).__name__}")
        self._html(page, **kwargs)
        return page.write(path)

    def _html(self, page, **kwargs) -> None:
        """Fill ``page`` (a :class:`~xai_suite.viz.html.Page`) with this result's view."""
        raise NotImplementedError(f"{type(self).__name__} has no HTML view")

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (``.npz``, no pickle) atomically: a crash leaves the old file."""
        meta: dict = {"format": self.format}
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and value and all(isinstance(v, np.ndarray) for v in value):
                value = {str(i): v for i, v in enumerate(value)}  # one array per model input
                meta.setdefault("array_tuples", []).append(f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray)
                                                           for v in value.values()):
                meta.setdefault("array_dicts", {})[f.name] = list(value)
                arrays.update({f"{f.name}/{k}": v for k, v in value.items()})
            else:
                meta[f.name] = jsonable(value)
        arrays["meta"] = np.array(json.dumps(meta))
        return atomic_write(Path(path), lambda fh: np.savez_compressed(fh, **arrays))

    @classmethod
    def _from_file(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Result:
        """A result from a file's JSON fields and arrays (dict fields already gathered), each
        of the kind its annotation says (``__post_init__`` then checks shapes)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        given = {k: v for k, v in {**meta, **arrays}.items() if k in fields}
        for name, f in fields.items():
            if name not in given:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ResultFileError(f"it has no {name!r}")
                continue
            _check_field(name, str(f.type), given[name], text=name in cls.text_arrays)
        return cls(**given)


class ResultFileError(ValueError):
    """A file that is not a valid xai-suite result (the one error :func:`load` raises for one)."""


#: What a field's annotation asks of a loaded value (the annotations' leading type).
_FIELD_KINDS = {"np.ndarray": np.ndarray, "str": str, "dict": dict, "float": float, "int": int,
                "list": list, "bool": bool}


def _check_field(name: str, annotation: str, value, *, text: bool = False) -> None:
    kind = _FIELD_KINDS.get(annotation.split("|")[0].split("[")[0].strip())
    if kind is None or (value is None and "None" in annotation):
        return
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return
    if isinstance(value, np.ndarray) and kind is np.ndarray:
        if value.dtype.kind not in ("US" if text else "biuf"):
            raise ResultFileError(f"{name!r} is an array of {value.dtype}; expected "
                                  f"{'text' if text else 'numbers'}")
        return
    if isinstance(value, dict | tuple) and kind is np.ndarray:  # one array per key or input
        for k, v in (value.items() if isinstance(value, dict) else enumerate(value)):
            _check_field(f"{name}/{k}", annotation, v, text=text)
        return
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise ResultFileError(f"{name!r} is a {type(value).__name__}; expected {annotation}")


#: Largest decompressed size :func:`load` reads by default (bytes); ``max_bytes=None`` lifts it.
MAX_LOAD_BYTES = 2**30


def load(path: str | os.PathLike, *, max_bytes: int | None = MAX_LOAD_BYTES) -> Result:
    """Read a result written by its ``save``, whatever its type (no code is run, no pickle).

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int or None
        Refuse a file whose arrays would take more than this when decompressed (a small
        archive can expand to gigabytes); default 1 GiB.

    Raises
    ------
    ResultFileError
        (a ``ValueError``) for every file that is not a valid xai-suite result: not an
        archive, an unknown format, a field of the wrong type or shape, a target out of
        range, too large once decompressed. Its message names the file and what is wrong.
    """
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            size = sum(i.file_size for i in zf.infolist())
        if max_bytes is not None and size > max_bytes:
            raise ResultFileError(f"it expands to {size:,} bytes, above max_bytes={max_bytes:,} "
                                  "(pass a larger max_bytes to load it)")
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
            if not isinstance(meta, dict):
                raise ResultFileError(f"its meta entry is a {type(meta).__name__}, not an object")
            fmt = meta.pop("format", None)
            if not isinstance(fmt, str) or fmt not in FORMATS:
                raise ResultFileError(f"its format is {fmt!r}; known formats: {', '.join(FORMATS.names())}")
            arrays = {k: data[k] for k in data.files if k != "meta"}
        for name, keys in meta.pop("array_dicts", {}).items():
            arrays[name] = {k: arrays.pop(f"{name}/{k}") for k in keys}
        for name in meta.pop("array_tuples", []):
            arrays[name] = tuple(arrays[name].values())
        return FORMATS.get(fmt)._from_file(meta, arrays)
    except ResultFileError as exc:
        raise ResultFileError(f"{path} is not a valid xai-suite result file: {exc}") from None
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError,
            zipfile.BadZipFile, json.JSONDecodeError) as exc:  # malformed: say so, in one type
        what = "an array needs pickle, which is never used" if "allow_pickle" in str(exc) else exc
        raise ResultFileError(f"{path} is not a valid xai-suite result file: "
                              f"{type(exc).__name__}: {what}") from None


def _check_target(target: np.ndarray, n_outputs: int) -> None:
    """Integer targets in ``[0, n_outputs)``."""
    if not np.issubdtype(np.asarray(target).dtype, np.integer):
        raise ValueError(f"target must hold integer output indices; got dtype {np.asarray(target).dtype}")
    if len(target) and (target.min() < 0 or target.max() >= n_outputs):
        raise ValueError(f"target must lie in [0, {n_outputs}) (the outputs in predictions); got "
                         f"{target.min()}..{target.max()}")


#: The contract's name for :func:`load`.
load_explanation = load


@dataclass
class Explanation(Result):
    """Attributions of a batch of instances, with everything needed to read them.

    Attributes
    ----------
    attributions : numpy.ndarray, shape (N, ...)
        Signed, unnormalised attributions, the same shape as ``inputs``.
    inputs : numpy.ndarray, shape (N, ...)
        The explained inputs, as the model saw them (float32).
    target : numpy.ndarray of int, shape (N,)
        The output index explained for each instance.
    predictions : numpy.ndarray, shape (N, K)
        The model's outputs for ``inputs``.
    method : str
        Qualified explainer name, e.g. ``"native:integrated_gradients"``.
    params : dict
        Every hyper-parameter in effect (JSON-ready), including the baseline used.
    convergence_delta : numpy.ndarray, shape (N,), or None
        Completeness error ``sum(attributions) - (f(x) - f(baseline))`` per instance,
        where the method has one (``f(baseline)`` averaged over baseline draws).
    baselines : numpy.ndarray, shape (S, N, ...), or None
        The reference inputs actually used (``S`` draws per instance).
    feature_names : tuple of str, or None
        Tabular data: the column names (from a DataFrame or the model's
        ``feature_names_in_``), one per feature.
    categories : dict of str to tuple of str, or None
        Tabular data with coded categorical columns (a :class:`TabularModel`'s
        ``feature_categories_``): column name -> the label of each code ``0..k-1``.
        :func:`decoded_frame` shows inputs with these labels.
    base_values : numpy.ndarray, shape (N,), or None
        The model output the attributions start from, for each instance's target: the
        mean ``f(baseline)`` over the baseline draws (SHAP's expected value over its
        background; ``f(baseline)`` for integrated gradients; 0 for LRP), so that
        ``attributions.sum() + base_values = f(x)[target] + convergence_delta``. Where the
        method has ``convergence_delta``; else None.

    A model of several inputs gets tuples: ``inputs``, ``attributions`` and ``baselines``
    hold one array per input (``convergence_delta`` sums over all of them); :meth:`part`
    gives one input's explanation, which ``plot`` and ``to_frame`` use.
    """

    format = "xai-suite-explanation/1"
    attributions: np.ndarray
    inputs: np.ndarray
    target: np.ndarray
    predictions: np.ndarray
    method: str
    params: dict = field(default_factory=dict)
    convergence_delta: np.ndarray | None = None
    baselines: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    categories: dict[str, tuple[str, ...]] | None = None
    base_values: np.ndarray | None = None

    def __post_init__(self):
        multi = isinstance(self.inputs, tuple | list)
        if multi:
            self.inputs, self.attributions = tuple(self.inputs), tuple(self.attributions)
            if self.baselines is not None:
                self.baselines = tuple(self.baselines)
        ins, attrs = (self.inputs, self.attributions) if multi else ((self.inputs,), (self.attributions,))
        if len(attrs) != len(ins) or any(a.shape != x.shape for a, x in zip(attrs, ins, strict=False)):
            got, want = ([a.shape for a in attrs], [x.shape for x in ins]) if multi else (
                self.attributions.shape, self.inputs.shape)
            raise ValueError(f"attributions shape {got} differs from inputs shape {want}")
        n = ins[0].shape[0]
        if self.target.shape != (n,) or self.predictions.ndim != 2 or len(self.predictions) != n \
                or any(x.shape[0] != n for x in ins):
            raise ValueError(f"expected target of shape ({n},) and predictions of shape ({n}, K); got "
                             f"{self.target.shape} and {self.predictions.shape}")
        _check_target(self.target, self.predictions.shape[1])
        for key in ("convergence_delta", "base_values"):
            if getattr(self, key) is not None and np.shape(getattr(self, key)) != (n,):
                raise ValueError(f"{key} must have shape ({n},); got {np.shape(getattr(self, key))}")
        self.feature_names = None if multi else _check_names(self.feature_names, self.inputs)
        self.categories = _check_categories(self.categories, self.feature_names)

    @property
    def n_inputs(self) -> int:
        """The number of model inputs explained (1 unless ``inputs`` is a tuple)."""
        return len(self.inputs) if isinstance(self.inputs, tuple) else 1

    def part(self, k: int) -> Explanation:
        """The explanation of model input ``k`` alone (its own inputs, attributions and
        baselines; the completeness delta and base values, which concern every input
        together, are left out)."""
        if self.n_inputs == 1:
            if k != 0:
                raise ValueError(f"this explanation has one input; got input {k}")
            return self
        if not 0 <= k < self.n_inputs:
            raise ValueError(f"input must lie in 0..{self.n_inputs - 1}; got {k}")
        return Explanation(self.attributions[k], self.inputs[k], self.target, self.predictions,
                           self.method, {**self.params, "input": k}, None,
                           None if self.baselines is None else self.baselines[k])

    def __len__(self) -> int:
        return len(self.target)

    @property
    def modality(self) -> str:
        """``tabular``, ``timeseries`` or ``image``, from the inputs' layout (several inputs:
        ``"multi-input"``)."""
        if self.n_inputs > 1:
            return "multi-input"
        return NDIM_TO_MODALITY.get(self.inputs.ndim, f"{self.inputs.ndim}-D")

    def __repr__(self) -> str:
        d = self.convergence_delta
        delta = "" if d is None else f", max |delta|={np.abs(d).max():.3g}"
        shapes = [x.shape[1:] for x in self.inputs] if self.n_inputs > 1 else self.inputs.shape[1:]
        return (f"Explanation(method={self.method!r}, n={len(self)}, shape={shapes}, "
                f"modality={self.modality!r}{delta})")

    def to_frame(self, wide: bool = False) -> pd.DataFrame:
        """The attributions as a table.

        Parameters
        ----------
        wide : bool
            Tabular data only: one row per instance and one column per feature, named as
            the input's columns (``feature_names``, else ``x0, x1, ...``).

        Returns
        -------
        pandas.DataFrame
            Long (default): one row per instance and input element, with columns
            ``instance``, the element's position (``feature``, holding the column names
            where known; ``channel, time``; or ``channel, row, col``), ``input``,
            ``attribution`` and ``target``; with coded categorical columns (``categories``)
            also ``value``, each input as the user knows it (a category's label, else the
            number). Wide: shape (N, F). Several inputs: each input's
            long table (by :meth:`part`) after a column ``model_input``, concatenated.
        """
        if self.n_inputs > 1:
            if wide:
                raise ValueError("wide=True needs one tabular input; use part(k).to_frame(wide=True)")
            frames = [self.part(k).to_frame() for k in range(self.n_inputs)]
            for k, f in enumerate(frames):
                f.insert(0, "model_input", k)
            return pd.concat(frames, ignore_index=True)
        names = self.feature_names or tuple(f"x{i}" for i in range(self.inputs.shape[-1]))
        if wide:
            if self.modality != "tabular":
                raise ValueError(f"wide=True needs tabular (N, F) data; these are {self.modality}")
            return pd.DataFrame(self.attributions, columns=list(names))
        axes = _AXES.get(self.modality, tuple(f"axis{i}" for i in range(1, self.inputs.ndim)))
        idx = np.indices(self.inputs.shape).reshape(self.inputs.ndim, -1)
        data = {"instance": idx[0], **{name: idx[i + 1] for i, name in enumerate(axes)}}
        if self.feature_names is not None:
            data["feature"] = np.asarray(self.feature_names, dtype=object)[idx[1]]
        data["input"] = self.inputs.ravel()
        if self.categories is not None:
            data["value"] = decoded_frame(self.inputs, self.feature_names, self.categories
                                          ).to_numpy(dtype=object).ravel()
        data["attribution"] = self.attributions.ravel()
        data["target"] = self.target[idx[0]]
        return pd.DataFrame(data)

    def plot(self, index: int = 0, ax=None, *, model_input: int = 0, **kwargs):
        """Plot the attributions of instance ``index``; returns the matplotlib Axes.

        Tabular: a signed bar chart; time series: the series coloured by attribution;
        images: the input next to its attribution map. See :mod:`xai_suite.viz`. Several
        inputs: the input ``model_input``'s.
        """
        from .viz import plot_explanation

        return plot_explanation(self.part(model_input), index=index, ax=ax, **kwargs)

    def _html(self, page, **kwargs) -> None:
        """The view of :func:`xai_suite.viz.html_views.explanation_html` (its options as
        ``to_html``'s keywords: ``class_names``, ``max_instances``, ``max_features``, ``target``)."""
        from .viz.html_views import explanation_html

        explanation_html(self, page, **kwargs)

    def to_shap(self):
        """This tabular explanation as a ``shap.Explanation``, for shap's own plots.

        Returns
        -------
        shap.Explanation
            ``values`` (N, F) = ``attributions``, ``base_values`` (N,), ``data`` (N, F) =
            ``inputs`` (categorical codes as numbers), ``display_data`` (N, F) the inputs by
            their labels (:func:`decoded_frame`), ``feature_names``. ``values.sum(1) +
            base_values`` is the explained output (up to ``convergence_delta``).

        Raises
        ------
        ValueError
            For non-tabular explanations and for methods without base values.
        """
        if self.modality != "tabular":
            raise ValueError(f"to_shap needs a tabular (N, F) explanation; this one is {self.modality}")
        if self.base_values is None:
            raise ValueError(f"{self.method} has no base values (no completeness property), so its "
                             "attributions do not add up to an output; to_shap needs one that does "
                             "(shap:*, native:kernel_shap, integrated_gradients, ...)")
        import shap

        names = self.feature_names or tuple(f"x{j}" for j in range(self.inputs.shape[1]))
        shown = decoded_frame(self.inputs, names, self.categories).to_numpy(dtype=object)
        return shap.Explanation(values=np.asarray(self.attributions, np.float64),
                                base_values=np.asarray(self.base_values, np.float64),
                                data=np.asarray(self.inputs, np.float64), display_data=shown,
                                feature_names=list(names))


def _check_names(names, inputs: np.ndarray) -> tuple[str, ...] | None:
    """``names`` as a tuple of str, one per feature of tabular ``inputs`` (N, F)."""
    if names is None:
        return None
    names = tuple(str(n) for n in names)
    if inputs.ndim != 2 or len(names) != inputs.shape[1]:
        raise ValueError(f"feature_names must name each of the {inputs.shape[-1]} features of tabular (N, F) "
                         f"inputs; got {len(names)} names for inputs of shape {inputs.shape}")
    return names


def _check_categories(categories, names) -> dict[str, tuple[str, ...]] | None:
    """``categories`` as column name -> tuple of labels, each name one of ``names``."""
    if not categories:
        return None
    if not isinstance(categories, dict):
        raise TypeError(f"categories must be a dict of column name -> labels; got "
                        f"{type(categories).__name__}")
    unknown = sorted(set(categories) - set(names or ()))
    if unknown:
        raise ValueError(f"categories name columns {unknown} that are not among feature_names "
                         f"{list(names) if names else None}")
    return {str(k): tuple(str(v) for v in labels) for k, labels in categories.items()}


def decoded_frame(values, feature_names, categories=None) -> pd.DataFrame:
    """Tabular values as the user knows them: coded categorical columns shown by their labels.

    Parameters
    ----------
    values : array-like, shape (N, F)
        Inputs (or counterfactuals) as the model saw them.
    feature_names : sequence of str, or None
        Column names (``x0, x1, ...`` where None).
    categories : dict of str to sequence of str, optional
        Column name -> the label of each code (``Explanation.categories``).

    Returns
    -------
    pandas.DataFrame, shape (N, F)
        Numeric columns as float, categorical ones as their labels (object dtype).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"values must be tabular (N, F); got shape {arr.shape}")
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(arr.shape[1])]
    frame = pd.DataFrame(arr, columns=names)
    for col, labels in (categories or {}).items():
        codes = frame[col].to_numpy()
        ok = (codes == np.round(codes)) & (codes >= 0) & (codes < len(labels))
        if not ok.all():
            raise ValueError(f"column {col!r} holds code {codes[~ok][0]:.4g}, but its categories are codes "
                             f"0..{len(labels) - 1}")
        frame[col] = np.asarray(labels, dtype=object)[codes.astype(np.int64)]
    return frame


@dataclass
class CounterfactualExplanation(Result):
    """Counterfactuals of a batch of instances and how good they are.

    Attributes
    ----------
    inputs : numpy.ndarray, shape (N, ...)
        The explained inputs (float32).
    counterfactuals : numpy.ndarray, shape (N, ...)
        One counterfactual per input: the method's best attempt, valid or not.
    target : numpy.ndarray of int, shape (N,)
        The class each counterfactual should get.
    predictions, cf_predictions : numpy.ndarray, shape (N, K)
        The model's outputs for the inputs and for the counterfactuals.
    method : str
        Qualified explainer name, e.g. ``"native:native_guide"``.
    params : dict
        Every hyper-parameter in effect (JSON-ready).
    metrics : dict of numpy.ndarray, each of shape (N,)
        ``valid``, ``new_class``, proximity ``l1``, ``l2`` (and ``dtw`` for time series),
        sparsity ``changed`` and ``changed_fraction``, and ``plausibility`` (k-NN distance
        ratio to the target class's training instances: about 1 is typical; NaN with fewer
        than 2 of them). See :mod:`xai_suite.metrics.counterfactual`.
    feature_names : tuple of str, or None
        Tabular data: the column names, one per feature.
    categories : dict of str to tuple of str, or None
        Coded categorical columns: name -> the label of each code (as for
        :class:`Explanation`).
    feature_ranges : numpy.ndarray, shape (2, F), or None
        Tabular data: the training data's minimum (row 0) and maximum (row 1) per feature,
        the scale of the plot's changes.
    """

    format = "xai-suite-counterfactual/2"
    inputs: np.ndarray
    counterfactuals: np.ndarray
    target: np.ndarray
    predictions: np.ndarray
    cf_predictions: np.ndarray
    method: str
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None
    categories: dict[str, tuple[str, ...]] | None = None
    feature_ranges: np.ndarray | None = None

    def __post_init__(self):
        if self.counterfactuals.shape != self.inputs.shape:
            raise ValueError(f"counterfactuals shape {self.counterfactuals.shape} differs from inputs shape "
                             f"{self.inputs.shape}")
        n = self.inputs.shape[0]
        for key, arr in {"target": self.target, **self.metrics}.items():
            if np.shape(arr) != (n,):
                raise ValueError(f"{key} must have shape ({n},); got {np.shape(arr)}")
        _check_target(self.target, self.predictions.shape[1])
        self.feature_names = _check_names(self.feature_names, self.inputs)
        self.categories = _check_categories(self.categories, self.feature_names)
        if self.feature_ranges is not None and (self.inputs.ndim != 2 or np.shape(self.feature_ranges)
                                                != (2, self.inputs.shape[1])):
            raise ValueError(f"feature_ranges must have shape (2, F) for tabular (N, F) inputs of shape "
                             f"{self.inputs.shape}; got {np.shape(self.feature_ranges)}")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def modality(self) -> str:
        return NDIM_TO_MODALITY.get(self.inputs.ndim, f"{self.inputs.ndim}-D")

    @property
    def valid(self) -> np.ndarray:
        """Boolean (N,): the model predicts the target class for the counterfactual."""
        return self.metrics["valid"]

    def __repr__(self) -> str:
        return (f"CounterfactualExplanation(method={self.method!r}, n={len(self)}, "
                f"valid={int(self.valid.sum())}/{len(self)})")

    def to_frame(self) -> pd.DataFrame:
        """One row per instance: original and target class, then every metric."""
        return pd.DataFrame({"instance": np.arange(len(self)), "original_class": self.predictions.argmax(1),
                             "target": self.target, **self.metrics})

    def changes(self, index: int | None = None) -> pd.DataFrame:
        """What each counterfactual changed, in the units of the inputs (tabular data).

        Parameters
        ----------
        index : int, optional
            One instance; default all.

        Returns
        -------
        pandas.DataFrame
            One row per instance and changed feature: ``instance``, ``feature``, ``old`` and
            ``new`` (categorical columns by their labels, see :attr:`categories`).
        """
        from .metrics.counterfactual import changed_points

        if self.modality != "tabular":
            raise ValueError(f"changes lists tabular (N, F) counterfactuals; these are {self.modality}")
        n = len(self)
        if index is not None and not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} counterfactuals")
        rows = np.arange(n) if index is None else np.arange(n)[[index]]
        old = decoded_frame(self.inputs[rows], self.feature_names, self.categories)
        new = decoded_frame(self.counterfactuals[rows], self.feature_names, self.categories)
        r, j = np.nonzero(changed_points(self.inputs[rows], self.counterfactuals[rows]))
        return pd.DataFrame({"instance": rows[r], "feature": old.columns[j].to_numpy(),
                             "old": old.to_numpy(dtype=object)[r, j],
                             "new": new.to_numpy(dtype=object)[r, j]})

    def summary(self, confidence: float = 0.95) -> pd.Series:
        """Validity with a Wilson interval and the mean of every other metric.

        Proximity, sparsity and plausibility are averaged over the valid counterfactuals
        (``nan`` if none is valid).
        """
        from .metrics.statistics import wilson_interval

        valid = self.valid.astype(bool)
        lo, hi = wilson_interval(valid, None, confidence)
        out = {"n": len(self), "validity": valid.mean(), "validity_low": lo, "validity_high": hi}
        out.update({key: float(np.nanmean(arr[valid])) if valid.any() else float("nan")
                    for key, arr in self.metrics.items() if key not in ("valid", "new_class")})
        return pd.Series(out, name=self.method)

    def plot(self, index: int = 0, ax=None, **kwargs):
        """Draw counterfactual ``index`` over its input, changed regions shaded (time series),
        or each changed feature's ``old -> new`` as a bar (tabular); returns the Axes. See
        :func:`xai_suite.viz.plot_counterfactual`."""
        from .viz import plot_counterfactual

        return plot_counterfactual(self, index=index, ax=ax, **kwargs)

    def _html(self, page, **kwargs) -> None:
        """Options: ``channel_names`` (time series), ``feature_names`` (tabular). See
        :func:`xai_suite.viz.html_results.counterfactual_view`."""
        from .viz.html_results import counterfactual_view

        counterfactual_view(self, page, **kwargs)

    @classmethod
    def _from_file(cls, meta, arrays):
        if not isinstance(arrays.get("metrics"), dict):  # files of format 1: metric_<name> arrays
            arrays = {**arrays, "metrics": {k.removeprefix("metric_"): arrays[k]
                                            for k in arrays if k.startswith("metric_")}}
        return super()._from_file(meta, arrays)


FORMATS.add("xai-suite-counterfactual/1", CounterfactualExplanation)  # files of earlier versions
