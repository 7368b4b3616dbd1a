"""Linear probes on hidden states, per layer, with a control task.

For each layer, the hidden state at one position of every prompt is the feature vector of a
standardised logistic regression; its stratified K-fold cross-validated accuracy comes with
a 95% Wilson interval over the pooled out-of-fold predictions. A probe can be accurate only
because it is expressive, so the same probe is also fitted to a *control task*: the labels
permuted at random, which carry no information about the prompts. Selectivity, the accuracy
minus the control accuracy, is what the hidden state itself tells about the labels.

References: Alain & Bengio (2016), Understanding intermediate layers using linear classifier
probes; Hewitt & Liang (2019), Designing and Interpreting Probes with Control Tasks;
Belinkov (2022), Probing Classifiers: Promises, Shortcomings, and Advances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import (
    Explainer,
    Result,
    Seeded,
    check_batch_size,
    check_choice,
    check_positive_number,
    check_random_state,
    jsonable,
    register_explainer,
    wilson_interval,
)

from .models import SITES, LanguageModel, check_language_model, layer_hooks

CONTROLS = ("permutation", None)


@dataclass
class ProbingResult(Result):
    """Cross-validated probe accuracy per layer, and the control task's.

    Attributes
    ----------
    layers : tuple of str, length L
        ``"embed"`` (for ``site="resid_post"``) then ``"0"``, ``"1"``, ...
    hook_names : tuple of str, length L
    accuracy, low, high : numpy.ndarray of float64, shape (L,)
        Out-of-fold accuracy and its Wilson interval.
    control_accuracy, control_low, control_high : numpy.ndarray of float64, shape (L,)
        The same for the permuted labels; ``None`` when ``control=None``.
    selectivity : numpy.ndarray of float64, shape (L,) or None
        ``accuracy - control_accuracy``.
    chance : float
        The majority class's share: what a probe that learned nothing reaches.
    n_samples : int
    method : str
    params : dict
    """

    format = "xai-suite-probing/1"
    layers: tuple[str, ...]
    hook_names: tuple[str, ...]
    accuracy: np.ndarray
    low: np.ndarray
    high: np.ndarray
    control_accuracy: np.ndarray | None
    control_low: np.ndarray | None
    control_high: np.ndarray | None
    selectivity: np.ndarray | None
    chance: float
    n_samples: int
    method: str = "native:linear_probe"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.layers, self.hook_names = tuple(self.layers), tuple(self.hook_names)
        for name in ("accuracy", "low", "high", "control_accuracy", "control_low", "control_high",
                     "selectivity"):
            v = getattr(self, name)
            if v is not None and np.shape(v) != (len(self.layers),):
                raise ValueError(f"{name} must have one value per layer, shape ({len(self.layers)},); "
                                 f"got {np.shape(v)}")

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: layer, hook, accuracy, low, high, control_accuracy, control_low,
        control_high, selectivity (the control columns are absent without a control task)."""
        data = {"layer": list(self.layers), "hook": list(self.hook_names), "accuracy": self.accuracy,
                "low": self.low, "high": self.high}
        if self.control_accuracy is not None:
            data.update(control_accuracy=self.control_accuracy, control_low=self.control_low,
                        control_high=self.control_high, selectivity=self.selectivity)
        return pd.DataFrame(data)

    def _html(self, page) -> None:
        from .html import probing_view

        probing_view(self, page)

    def plot(self, ax=None):
        """Accuracy and control accuracy per layer with their 95% intervals, and chance.

        Parameters
        ----------
        ax : matplotlib Axes, optional

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(self.layers) + 2), 3.2))
        x = np.arange(len(self.layers))
        series = [("probe", "o", self.accuracy, self.low, self.high)]
        if self.control_accuracy is not None:
            series.append(("control (permuted labels)", "s", self.control_accuracy, self.control_low,
                           self.control_high))
        for label, marker, a, lo, hi in series:
            ax.errorbar(x, a, yerr=[a - lo, hi - a], marker=marker, capsize=3, label=label)
        ax.axhline(self.chance, color="gray", linestyle=":", label="chance (majority)")
        ax.set_xticks(x, self.layers)
        ax.set(ylim=(0, 1.02), xlabel=f"layer ({self.params.get('site', '')})",
               ylabel="cross-validated accuracy",
               title=f"linear probe at position {self.params.get('position', '')}")
        ax.legend(loc="best", fontsize=8)
        return ax


@register_explainer(
    "linear_probe", library="native", family="mechanistic", modalities=("text",),
    model_kinds=("hf_causal_lm",), requires=("transformers",), stochastic=True,
    batch_invariant=True,
    summary="Linear probes on hidden states per layer: cross-validated accuracy with Wilson "
    "intervals and a permuted-label control task (selectivity)",
    reference="Alain & Bengio (2016), Understanding intermediate layers using linear classifier "
    "probes; Hewitt & Liang (2019), Designing and Interpreting Probes with Control Tasks",
    notes="Not an attribution: explain(prompts, labels) returns a ProbingResult; random_state "
    "seeds the folds and the control permutation.",
)
class LinearProbe(Explainer, Seeded):
    """Logistic-regression probes of a label from each layer's hidden state at one position.

    Parameters
    ----------
    model : xai_suite_llm.LanguageModel
    site : str
        Hook site read at every layer: ``resid_post`` (plus the embeddings as layer
        ``"embed"``), ``resid_pre``, ``attn_out`` or ``mlp_out``.
    position : int
        Token position read; ``-1`` is each prompt's last token (prompts may then differ in
        length); any other position needs prompts of one token length, and negative values
        count from the end.
    cv : int
        Folds of the stratified cross-validation (every class needs at least ``cv`` prompts).
    control : "permutation" or None
        The control task: the same probe on the labels permuted at random; ``None`` skips it.
    C : float
        Inverse L2 regularisation strength of the logistic regression (scikit-learn's ``C``).
    batch_size : "auto" or int
        Prompts per forward pass when extracting hidden states.
    """

    family = "mechanistic"

    site: str = "resid_post"
    position: int = -1
    cv: int = 5
    control: str | None = "permutation"
    C: float = 1.0
    batch_size: int | str = "auto"

    def _check_params(self) -> LanguageModel:
        lm = check_language_model(self.model, self.info.qualified_name)
        if self.site not in SITES:
            raise ValueError(f"site must be one of {', '.join(SITES)}; got {self.site!r}")
        if isinstance(self.position, bool) or not isinstance(self.position, int | np.integer):
            raise TypeError(f"position must be an int; got {self.position!r}")
        if isinstance(self.cv, bool) or not isinstance(self.cv, int | np.integer) or self.cv < 2:
            raise ValueError(f"cv must be an int >= 2 (folds); got {self.cv!r}")
        check_choice("control", self.control, CONTROLS)
        check_positive_number(C=self.C)
        check_batch_size(self.batch_size)
        check_random_state(self.random_state)
        return lm

    def hook_names(self, lm: LanguageModel) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(layer labels, hook points) probed for this ``site``."""
        return layer_hooks(lm, self.site, self.site == "resid_post")

    def features(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """Hidden states at ``position`` for each probed hook point.

        Parameters
        ----------
        prompts : sequence of str, length N

        Returns
        -------
        dict of str to numpy.ndarray of float32, shape (N, d_model)
            Keyed by hook name, in the order of :meth:`hook_names`.
        """
        lm = self._check_params()
        _, hooks = self.hook_names(lm)
        _check_prompts(prompts)
        encoded = [lm.encode(p).ids for p in prompts]
        lengths = np.array([e.shape[0] for e in encoded])
        if self.position != -1 and np.unique(lengths).size > 1:
            raise ValueError(f"position={self.position} needs prompts of one token length; got lengths "
                             f"{sorted(set(lengths.tolist()))} (position=-1 reads each prompt's last token)")
        if not -lengths.min() <= self.position < lengths.min():
            raise ValueError(f"position {self.position} is out of range for prompts of {lengths.min()} "
                             f"tokens (valid: {-lengths.min()}..{lengths.min() - 1})")
        out = {h: np.empty((len(prompts), lm.d_model), dtype=np.float32) for h in hooks}
        for length in np.unique(lengths):  # equal lengths batch without padding
            idx = np.flatnonzero(lengths == length)
            ids = torch.stack([encoded[i] for i in idx])
            rows = self._chunk_rows(lm.model, ids[:1].to(lm.device), lm.device)
            for start in range(0, idx.size, rows):
                _, cache = lm.run_with_cache(ids[start:start + rows], hooks)
                for h in hooks:
                    out[h][idx[start:start + rows]] = cache[h][:, self.position].float().cpu().numpy()
        return out

    def explain(self, prompts: Sequence[str], labels) -> ProbingResult:
        """Probe ``labels`` from every layer's hidden state at ``position``.

        Parameters
        ----------
        prompts : sequence of str, length N
        labels : array-like of int, shape (N,)
            Class labels (at least two classes, each with at least ``cv`` prompts).

        Returns
        -------
        ProbingResult
        """
        return self._explain(prompts, labels)

    @contextlib.contextmanager
    def _begin(self, prompts: Sequence[str], labels) -> Iterator[dict]:
        lm = self._check_params()
        y = _check_labels(labels, len(_check_prompts(prompts)), self.cv)
        yield {"lm": lm, "prompts": prompts, "y": y}

    def _compute(self, call: dict) -> tuple[list, list]:
        from sklearn.model_selection import StratifiedKFold

        y, feats = call["y"], list(self.features(call["prompts"]).values())  # per hook point, in order
        rng = np.random.default_rng(self.random_state)
        folds = StratifiedKFold(n_splits=int(self.cv), shuffle=True,
                                random_state=int(rng.integers(2**31 - 1)))
        y_control = rng.permutation(y) if self.control == "permutation" else None
        acc = [self._cv_correct(X, y, folds) for X in feats]
        return acc, [] if y_control is None else [self._cv_correct(X, y_control, folds) for X in feats]

    def _finish(self, call: dict, raw: tuple[list, list]) -> ProbingResult:
        (acc, ctl), y = raw, call["y"]
        layers, hooks = self.hook_names(call["lm"])

        def summary(correct):  # accuracy, low, high
            intervals = np.array([wilson_interval(c, None) for c in correct])
            return np.array([c.mean() for c in correct]), *intervals.T

        accuracy, low, high = summary(acc)
        c_acc, c_low, c_high = summary(ctl) if ctl else (None, None, None)
        return ProbingResult(
            layers=layers, hook_names=hooks, accuracy=accuracy, low=low, high=high,
            control_accuracy=c_acc, control_low=c_low, control_high=c_high,
            selectivity=None if c_acc is None else accuracy - c_acc,
            chance=float(np.bincount(y).max() / y.size), n_samples=int(y.size),
            method=self.info.qualified_name, params=jsonable(self.get_params()),
        )

    def _cv_correct(self, X: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
        """Boolean (N,): whether each prompt's out-of-fold prediction is right."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        probe = make_pipeline(StandardScaler(), LogisticRegression(C=float(self.C), max_iter=2000))
        pred = cross_val_predict(probe, X.astype(np.float64), y, cv=folds)
        return pred == y


def _check_prompts(prompts) -> Sequence[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise TypeError("prompts must be a non-empty sequence (list) of strings")
    return prompts


def _check_labels(labels, n: int, cv: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise TypeError(f"labels must be a 1-D array of int class labels; got dtype {y.dtype}, "
                        f"shape {y.shape}")
    if y.size != n:
        raise ValueError(f"labels must have one entry per prompt ({n}); got {y.size}")
    _, y = np.unique(y, return_inverse=True)
    counts = np.bincount(y)
    if counts.size < 2:
        raise ValueError("labels hold one class only: a probe needs at least two classes")
    if counts.min() < cv:
        raise ValueError(f"every class needs at least cv={cv} prompts for stratified {cv}-fold "
                         f"cross-validation; the smallest class has {counts.min()}")
    return y.astype(np.int64)
