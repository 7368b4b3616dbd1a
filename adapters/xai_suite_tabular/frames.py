"""DataFrames with categorical columns, as the numeric arrays explainers work on.

Two ways to explain a model with categorical columns, per original column:

- :class:`TabularModel` wraps a model that takes DataFrames (a scikit-learn pipeline with a
  one-hot encoder, say) as a numeric black box: categorical columns become integer codes,
  so every perturbation explainer perturbs a whole original column at once.
- :func:`column_groups` and :func:`group_attributions` explain the preprocessed features
  (one column per category) and sum the attributions per original column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xai_suite.plugin import Explanation


def _check_frame(frame, name: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame; got {type(frame).__name__}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one row and one column; got shape {frame.shape}")
    return frame


class FrameEncoder:
    """Numeric columns as they are, categorical columns as integer codes 0..k-1.

    Parameters
    ----------
    reference : pandas.DataFrame, shape (M, F)
        Data that holds every category (the training data). Fixes the columns, their order
        and each categorical column's categories (a pandas categorical's own order, else the
        sorted distinct values).
    categorical : sequence of str, optional
        Columns to code. Default: every non-numeric or boolean column.

    Attributes
    ----------
    columns : tuple of str
    categories_ : dict of str to pandas.Index
        The categories of each coded column; code ``i`` stands for ``categories_[col][i]``.
    """

    def __init__(self, reference: pd.DataFrame, *, categorical=None):
        reference = _check_frame(reference, "reference")
        self.columns = tuple(str(c) for c in reference.columns)
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"reference has duplicate column names: {list(self.columns)}")
        if categorical is None:
            categorical = [str(c) for c, d in reference.dtypes.items()
                           if not pd.api.types.is_numeric_dtype(d) or pd.api.types.is_bool_dtype(d)]
        unknown = [c for c in categorical if c not in self.columns]
        if unknown:
            raise ValueError(f"categorical column(s) {unknown} are not in the reference's columns "
                             f"{list(self.columns)}")
        self.categories_: dict[str, pd.Index] = {}
        for col in categorical:
            values = reference[col]
            if values.isna().any():
                raise ValueError(f"categorical column {col!r} holds missing values; fill them first")
            self.categories_[col] = (values.cat.categories if isinstance(values.dtype, pd.CategoricalDtype)
                                     else pd.Index(sorted(values.unique().tolist())))
        numeric = [c for c in self.columns if c not in self.categories_]
        bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(reference[c].dtype)]
        if bad:
            raise TypeError(f"column(s) {bad} are neither numeric nor declared categorical")
        self._dtypes = reference.dtypes

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Codes for ``frame``.

        Parameters
        ----------
        frame : pandas.DataFrame, shape (N, F)
            The reference's columns, in order.

        Returns
        -------
        numpy.ndarray of float32, shape (N, F)
        """
        frame = _check_frame(frame, "frame")
        got = tuple(str(c) for c in frame.columns)
        if got != self.columns:
            raise ValueError(f"frame must have the columns {list(self.columns)}, in order; got {list(got)}")
        out = np.empty(frame.shape, dtype=np.float32)
        for j, col in enumerate(self.columns):
            values = frame.iloc[:, j]
            if col in self.categories_:
                codes = self.categories_[col].get_indexer(values)
                if (codes < 0).any():
                    unseen = sorted(set(values[codes < 0].astype(str)))
                    raise ValueError(f"column {col!r} holds categories {unseen[:10]} not seen in the "
                                     f"reference (known: {list(self.categories_[col])})")
                out[:, j] = codes
            else:
                out[:, j] = values.to_numpy(dtype=np.float32)
        return out

    def decode(self, codes) -> pd.DataFrame:
        """The DataFrame that ``codes`` stand for.

        Parameters
        ----------
        codes : array-like, shape (N, F)

        Returns
        -------
        pandas.DataFrame, shape (N, F)
            Categorical columns with the reference's dtype, numeric ones as float64.
        """
        arr = np.asarray(codes, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self.columns):
            raise ValueError(f"codes must have shape (N, {len(self.columns)}); got {arr.shape}")
        data = {}
        for j, col in enumerate(self.columns):
            if col not in self.categories_:
                data[col] = arr[:, j]
                continue
            cats, c = self.categories_[col], arr[:, j]
            bad = (c != np.round(c)) | (c < 0) | (c >= len(cats))
            if bad.any():
                raise ValueError(
                    f"categorical column {col!r} got code {c[bad][0]:.4g}, but it takes integer codes "
                    f"0..{len(cats) - 1} ({', '.join(map(str, cats[:6]))}"
                    f"{', ...' if len(cats) > 6 else ''}); use baselines or a background drawn from "
                    "data (training_sample, a SHAP background), not ones that average or add noise"
                )
            values = cats.take(c.astype(np.int64))
            dtype = self._dtypes[col]
            data[col] = (pd.Categorical(values, categories=dtype.categories)
                         if isinstance(dtype, pd.CategoricalDtype) else values.to_numpy())
        return pd.DataFrame(data)


class TabularModel:
    """A model that takes DataFrames, callable on the numeric codes of :class:`FrameEncoder`.

    ``xs.explain(TabularModel(pipeline, X_train), X_test, ...)`` explains a pipeline with
    categorical columns per original column: explainers see an (N, F) array of codes, and
    DataFrames given to ``fit``/``explain`` are encoded through :meth:`encode`. Perturbation
    explainers must replace a categorical column by values drawn from data (a SHAP or
    KernelSHAP background, the ``training_sample`` baseline): a fractional code raises.

    Parameters
    ----------
    model : fitted estimator or callable
        Takes a DataFrame with ``reference``'s columns. Called through ``predict_proba``
        when it has one, else ``predict``, else called directly.
    reference : pandas.DataFrame
        Training data (see :class:`FrameEncoder`).
    categorical : sequence of str, optional
        Columns to code (default: non-numeric and boolean ones).

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray of str
    feature_categories_ : dict of str to tuple of str
        Each coded column's labels, code ``i`` first at position ``i``; explanations carry
        it as ``categories`` to show labels instead of codes.
    encoder : FrameEncoder
    """

    def __init__(self, model, reference: pd.DataFrame, *, categorical=None):
        fn = getattr(model, "predict_proba", None) or getattr(model, "predict", None) or model
        if not callable(fn):
            raise TypeError(f"model must be a fitted estimator or a callable; got {type(model).__name__}")
        if hasattr(model, "fit"):
            from sklearn.utils.validation import check_is_fitted

            check_is_fitted(model)
        self.model = model
        self.encoder = FrameEncoder(reference, categorical=categorical)
        self.feature_names_in_ = np.asarray(self.encoder.columns, dtype=object)
        self.feature_categories_ = {col: tuple(str(v) for v in cats)
                                    for col, cats in self.encoder.categories_.items()}
        self._fn = fn

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Codes (N, F) float32 for a DataFrame with the reference's columns."""
        return self.encoder.encode(frame)

    def decode(self, codes) -> pd.DataFrame:
        """The DataFrame (N, F) that an array of codes stands for."""
        return self.encoder.decode(codes)

    def __call__(self, codes) -> np.ndarray:
        """The model's outputs, (N, K) or (N,), for an (N, F) array of codes."""
        return np.asarray(self._fn(self.decode(codes)))

    def __repr__(self) -> str:
        return (f"TabularModel({type(self.model).__name__}, columns={list(self.encoder.columns)}, "
                f"categorical={list(self.encoder.categories_)})")


def column_groups(preprocessor, reference: pd.DataFrame, random_state: int | None = 0) -> np.ndarray:
    """Which original column each output feature of a fitted ``preprocessor`` comes from.

    Found by probing, so any transformer works (a ``ColumnTransformer`` with one-hot
    encoders and scalers, ...): each original column in turn is shuffled across the
    reference rows (the others kept), and the output features that change are its.

    Parameters
    ----------
    preprocessor : fitted transformer
        ``transform(DataFrame) -> (N, F_out)``, e.g. ``pipeline[:-1]``.
    reference : pandas.DataFrame, shape (M, F)
        Rows in which every column varies (the training data).
    random_state : int or None
        Seeds the shuffles.

    Returns
    -------
    numpy.ndarray of int64, shape (F_out,)
        The index of the original column behind each output feature.

    Raises
    ------
    ValueError
        If an output feature depends on two columns (an interaction) or on none that
        varies in ``reference``.
    """
    reference = _check_frame(reference, "reference").reset_index(drop=True)
    base = _dense(preprocessor.transform(reference))
    rng = np.random.default_rng(random_state)
    owner = np.full(base.shape[1], -1, dtype=np.int64)
    for j, col in enumerate(reference.columns):
        moved = reference.copy()
        moved[col] = reference[col].to_numpy()[rng.permutation(len(reference))]
        changed = np.flatnonzero((_dense(preprocessor.transform(moved)) != base).any(0))
        clash = changed[owner[changed] >= 0]
        if clash.size:
            raise ValueError(
                f"output feature {int(clash[0])} depends on both {reference.columns[owner[clash[0]]]!r} "
                f"and {col!r}; its attribution cannot be assigned to one column"
            )
        owner[changed] = j
    if (owner < 0).any():
        raise ValueError(
            f"output feature(s) {np.flatnonzero(owner < 0)[:10].tolist()} did not change with any "
            "column; give a reference in which every column varies"
        )
    return owner


def _dense(z) -> np.ndarray:
    return np.asarray(z.toarray() if hasattr(z, "toarray") else z)


def group_attributions(exp: Explanation, groups, inputs, names=None) -> Explanation:
    """Sum tabular attributions over groups of features (e.g. one-hot columns per original column).

    Parameters
    ----------
    exp : Explanation
        Attributions of shape (N, F).
    groups : array-like of int, shape (F,)
        Group label 0..G-1 of each feature (:func:`column_groups`); every label occurs.
    inputs : array-like or pandas.DataFrame, shape (N, G)
        The instances' values per group: the original rows (a DataFrame, which also gives
        the names, is coded by a :class:`FrameEncoder` built on it, so a categorical column
        is coded by its pandas categories, else by the sorted values present) or their codes
        (e.g. ``TabularModel.encode``).
    names : sequence of str, optional
        One name per group.

    Returns
    -------
    Explanation
        Attributions (N, G): group ``g`` holds the sum over its features. Totals, and so
        the convergence delta and base values, are unchanged; ``params["grouped"]`` lists the groups.
    """
    if exp.modality != "tabular":
        raise ValueError(f"group_attributions needs tabular (N, F) attributions; got {exp.modality}")
    groups = np.asarray(groups)
    n, f = exp.attributions.shape
    if groups.shape != (f,) or groups.dtype.kind not in "iu":
        raise ValueError(f"groups must hold one integer label per feature, shape ({f},); got "
                         f"{groups.dtype} of shape {groups.shape}")
    n_groups = int(groups.max()) + 1
    if groups.min() < 0 or np.unique(groups).size != n_groups:
        raise ValueError(f"groups must use every label 0..{n_groups - 1}; got {np.unique(groups).tolist()}")
    if isinstance(inputs, pd.DataFrame):
        names = list(inputs.columns) if names is None else names
        inputs = FrameEncoder(inputs).encode(inputs)
    values = np.asarray(inputs, dtype=np.float32)
    if values.shape != (n, n_groups):
        raise ValueError(f"inputs must have shape ({n}, {n_groups}), one value per group; "
                         f"got {values.shape}")
    summed = np.zeros((n, n_groups), dtype=np.float64)
    np.add.at(summed.T, groups, exp.attributions.T.astype(np.float64))
    members = [np.flatnonzero(groups == g).tolist() for g in range(n_groups)]
    return Explanation(
        attributions=summed.astype(np.float32),
        inputs=values,
        target=exp.target,
        predictions=exp.predictions,
        method=exp.method,
        params={**exp.params, "grouped": members},
        convergence_delta=exp.convergence_delta,
        feature_names=names,
        base_values=exp.base_values,
    )
