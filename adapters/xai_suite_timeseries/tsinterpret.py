"""TSInterpret adapter (``tsinterpret:`` entries) and the import guard it is loaded under.

TSInterpret 0.4.7 is installed with ``--no-deps`` (its pins clash with aeon, SHAP and
scikit-learn). All its modules import TensorFlow and ``tf_explain`` at load time, its SETS
module an old sktime, although its PyTorch paths never call them.
:func:`tsinterpret_import_guard` satisfies those imports with stand-ins only while TSInterpret
loads, then removes them from ``sys.modules`` (a lasting fake ``tensorflow`` breaks
``torch._dynamo``); TSInterpret keeps its references, which raise a clear error if called.

What TSInterpret gets wrong, and what the entries do about it:

- Layouts: it reinterprets ``(N, T, F)`` as ``(N, F, T)`` by reshaping in places. Every entry
  pins one layout (TSR, NativeGuide, COMTE, TSEvo: ``mode="feat"``, our ``(N, C, T)``;
  LEFTIST: ``mode="time"`` with our own transposes), so its reshapes are no-ops; TSR's SVS
  and FO still group ``(T, C)`` wrongly on multivariate series and are refused there.
- TSR: an unseeded ``U[0, 1)`` baseline by default (ours: the same, seeded and recorded);
  with ``tsr=False`` we ask for raw, signed inner attributions (``normalize=False``), not
  its absolute, min-max-scaled maps.
- LEFTIST: it fails on multivariate series (refused); it sorts the surrogate's coefficients
  by value (``np.sort(coeff, axis=0)`` sorts both columns independently) and paints segment
  ``k`` into steps ``[10 k, 10 k + 10)`` whatever the segment length. We read the
  coefficients back in segment order and paint each onto its own segment; its SHAP learner
  calls ``np.int`` (removed in NumPy 1.24), aliased for the duration of the call.
- NativeGuide: it fails on multivariate series (refused); it strips every forward hook off
  its model and adds its own (it gets a copy); its ``"native_guide"`` method is spelled
  ``"NG"``; its nearest unlike neighbour comes from any other class, ours from the target.
- COMTE: its ``OptimizedSearch`` drops its ``num_distractors``, ``threads`` and ``silent``
  arguments (always 2 distractors, and a brute-force fallback forking a ``cpu_count()``
  process pool around the model); we set them on both searches (1 thread).
- TSEvo: a target class that is not a Python ``int`` silently makes it search towards the
  original class; we pass ``int``.

All draw from the global ``random``, NumPy and torch generators: each instance runs with all
three seeded from ``random_state`` (restored afterwards). TSInterpret calls ``.numpy()`` on
model outputs, so these entries run the model on the CPU.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.abc
import importlib.util
import io
import logging
import random
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import torch

from xai_suite.plugin import (
    Attribution,
    Baseline,
    BaselineSpec,
    Call,
    CounterfactualExplainer,
    GradientExplainer,
    Seeded,
    SurrogateExplainer,
    Uniform,
    check_choice,
    check_positive_int,
    progress,
    register_explainer,
    softmax,
)

#: Top-level modules TSInterpret imports at load time but its PyTorch paths never call.
STAND_IN_ROOTS = ("tensorflow", "tf_explain", "sktime")
#: Real libraries TSInterpret imports at load time: imported before the guard goes up, so none
#: of them ever sees a stand-in.
_REAL_DEPENDENCIES = (
    "captum.attr", "shap", "sklearn.linear_model", "sklearn.metrics", "sklearn.neighbors",
    "sklearn.preprocessing", "torchcam.methods", "tslearn.barycenters", "tslearn.neighbors",
    "deap.algorithms", "deap.base", "deap.benchmarks.tools", "deap.creator", "deap.tools",
    "pyts.utils", "pymop", "skopt", "seaborn", "matplotlib.pyplot", "pandas", "scipy.fft",
    "scipy.special",
)
#: Loading any TSInterpret module loads all of them, so every entry needs all of these.
REQUIRES = ("TSInterpret", "captum", "shap", "torchcam", "tslearn", "deap", "pyts", "pymop",
            "skopt", "seaborn")
_register = functools.partial(register_explainer, library="tsinterpret", modalities=("timeseries",),
                              requires=REQUIRES)
ANY_MODEL = ("torch", "sklearn", "aeon", "callable")


# -- import guard ---------------------------------------------------------------------------
class _StandInMeta(type):
    """Type of stand-in objects: attributes are more stand-ins, calling one raises."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in(f"{cls.__qualname__}.{name}")

    def __call__(cls, *args, **kwargs):
        root = cls.__qualname__.partition(".")[0]
        raise ModuleNotFoundError(
            f"{cls.__qualname__} is a stand-in loaded by xai-suite's TSInterpret import guard: "
            f"{root} is not installed, so this TSInterpret code path is unavailable"
        )


def _stand_in(qualname: str) -> type:
    """A class that stands in for ``qualname``; it can be subclassed, not instantiated."""
    return _StandInMeta(qualname.rpartition(".")[2], (), {"__qualname__": qualname})


class _StandInModule(types.ModuleType):
    """A stand-in module: any public attribute is a stand-in object."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _stand_in(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and creates stand-in modules for everything under ``roots``."""

    def __init__(self, roots: tuple[str, ...]):
        self.roots = frozenset(roots)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.roots:
            return None
        # a package without an origin: submodules resolve here, torch._dynamo skips it
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec):
        return _StandInModule(spec.name)

    def exec_module(self, module):
        pass


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: in sys.modules without a spec
        return True


def is_stand_in(obj) -> bool:
    """Whether ``obj`` is a module or object created by :func:`tsinterpret_import_guard`."""
    return isinstance(obj, _StandInModule | _StandInMeta)


@contextlib.contextmanager
def tsinterpret_import_guard() -> Iterator[tuple[str, ...]]:
    """Let TSInterpret's modules load without TensorFlow, ``tf_explain`` or an old sktime.

    Inside the block, imports of those packages (where not installed) get stand-in modules
    and the warning filters are restored afterwards (TSInterpret's NativeGuide turns every
    warning off when it loads). On exit the stand-ins leave ``sys.modules`` and the import
    system (``find_spec("tensorflow")`` is ``None`` again); modules imported inside keep their
    references, and calling a stand-in raises ``ModuleNotFoundError``.

    Yields
    ------
    tuple of str
        The top-level names that got stand-ins.
    """
    roots = tuple(r for r in STAND_IN_ROOTS if not _installed(r))
    finder = _StandInFinder(roots)
    sys.meta_path.insert(0, finder)
    try:
        with warnings.catch_warnings():
            yield roots
    finally:
        sys.meta_path.remove(finder)
        for name, module in list(sys.modules.items()):
            if isinstance(module, _StandInModule):
                del sys.modules[name]


@functools.cache
def load_tsinterpret() -> types.SimpleNamespace:
    """Import the TSInterpret classes the entries use (once), under the import guard."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="h5py not installed")  # tslearn's notice
        for name in _REAL_DEPENDENCIES:
            importlib.import_module(name)
    with tsinterpret_import_guard():
        from TSInterpret.InterpretabilityModels.counterfactual.COMTE.Optimization import (
            BruteForceSearch,
            OptimizedSearch,
        )
        from TSInterpret.InterpretabilityModels.counterfactual.NativeGuideCF import NativeGuideCF
        from TSInterpret.InterpretabilityModels.counterfactual.TSEvoCF import TSEvo
        from TSInterpret.InterpretabilityModels.leftist.learning_process.neighbors_generator import (
            SHAP_neighbors_generator,
        )
        from TSInterpret.InterpretabilityModels.leftist.leftist import LEFTIST
        from TSInterpret.InterpretabilityModels.Saliency.TSR import TSR
    return types.SimpleNamespace(
        TSR=TSR, LEFTIST=LEFTIST, shap_neighbors_module=SHAP_neighbors_generator,
        NativeGuideCF=NativeGuideCF, OptimizedSearch=OptimizedSearch,
        BruteForceSearch=BruteForceSearch, TSEvo=TSEvo,
    )


# -- shared helpers -------------------------------------------------------------------------
class _OnCPU:
    """TSInterpret calls ``.numpy()`` on model outputs: the model runs on the CPU."""

    device: ClassVar[str] = "cpu"


def _instances(call: Call, name: str) -> Iterator[tuple[int, int]]:
    """Each instance's index and seed (from ``random_state`` and its position), with progress."""
    base = int(call.rng.integers(2**31 - 1))
    for i in progress(range(call.x.shape[0]), name, min_steps=0):
        yield i, int(np.random.SeedSequence([base, i]).generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed Python's, NumPy's and torch's global generators; restore them afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


@contextlib.contextmanager
def _quiet():
    """Keep TSInterpret's prints, its deprecation/overwrite warnings and torchcam's logged
    notices (the CAM layer it picked) out of the output."""
    cam_log = logging.getLogger("torchcam")
    level = cam_log.level
    cam_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        cam_log.setLevel(level)


def _probabilities(call: Call) -> Callable[[np.ndarray], np.ndarray]:
    """The model as TSInterpret's wrappers call it: ``(n, C, T)`` array -> probabilities, in
    chunks of ``call.rows`` (torch outputs softmaxed, as TSInterpret's ``PyTorchModel``)."""

    def predict(a: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        out = call.model.predict(x, call.rows)
        if call.model.kind == "torch":
            out = softmax(out)
        return out.astype(np.float64)

    return predict


def _check_univariate(n_channels: int, name: str, why: str) -> None:
    if n_channels != 1:
        raise ValueError(
            f"{name} explains univariate series of shape (N, 1, T) only; got {n_channels} "
            f"channels: {why}"
        )


# -- TSR ------------------------------------------------------------------------------------
#: TSInterpret's inner-method codes -> the reference inputs it gives them.
TSR_METHODS = {
    "GRAD": None,  # Captum Saliency with its default abs=True: unsigned
    "IG": "single",
    "GS": "multiple",
    "DL": "single",
    "DLS": "multiple",
    "SG": None,  # NoiseTunnel(Saliency): noise of std 1, 5 samples
    "SVS": "single",
    "FA": None,  # Captum's default zero baseline
    "FO": "single",
}
#: References TSInterpret draws per instance for GS and DLS.
TSR_MULTIPLE = 5
_DEFAULT_TSR_BASELINE = Uniform(low=0.0, high=1.0)


@_register(
    "tsr", model_kinds=("torch",), needs_baseline=True,
    summary="TSInterpret's temporal saliency rescaling (TSR) over a Captum method, one instance "
    "and one masked time step at a time",
    reference="Ismail et al. (2020), Benchmarking Deep Learning Interpretability in Time Series "
    "Predictions; Höllig et al. (2023), TSInterpret",
    notes="tsr=True returns TSInterpret's TSR map: non-negative and min-max scaled to [0, 1] per "
    "instance by construction (not undoable); tsr=False returns the inner Captum method's raw "
    "attributions (signed where the method is; GRAD is Captum's abs=True saliency). The baseline "
    "defaults to TSInterpret's U[0, 1) noise, seeded; it is unused (recorded as 'none') by GRAD, SG "
    "and FA. Random (random_state-seeded) with GS, SG or a random baseline. TSR runs the inner "
    "method 2 + T times per instance (+ about 0.45 T C more on multivariate series). SVS and FO "
    "are refused on multivariate series (TSInterpret reshapes their (T, C) masks/windows). CPU only.",
)
class TSInterpretTSR(_OnCPU, GradientExplainer, Seeded):
    """TSInterpret's ``TSR`` (``Saliency_PTY``) for PyTorch models, in the ``(N, C, T)`` layout.

    Parameters
    ----------
    inner : str
        TSInterpret's ``method`` (``method`` is the registry name in ``xs.explain``): ``"GRAD"``
        (its default; absolute gradients), ``"IG"``, ``"GS"`` (GradientSHAP), ``"DL"``, ``"DLS"``
        (DeepLIFT SHAP), ``"SG"`` (SmoothGrad), ``"SVS"`` (Shapley value sampling), ``"FA"``
        (feature ablation), ``"FO"`` (occlusion).
    tsr : bool
        Apply temporal saliency rescaling (as TSInterpret), or return the raw inner attributions.
    assignment : float, optional
        Value a masked time step is set to; ``None`` takes each instance's first value
        (``x[0, 0]``), TSInterpret's default.
    baseline : str, float, callable or Baseline, optional
        References of IG, DL, SVS, FO (one per instance) and GS, DLS (5); ``None``: TSInterpret's
        uniform noise in [0, 1), seeded by ``random_state``.
    """

    inner: str = "GRAD"
    tsr: bool = True
    assignment: float | None = None
    baseline: BaselineSpec = None

    def _baseline(self) -> Baseline:
        return _DEFAULT_TSR_BASELINE if self.baseline is None else super()._baseline()

    def _attribute(self, call, *, baselines, feature_mask):
        name = self.info.qualified_name
        check_choice("inner", self.inner, tuple(TSR_METHODS))
        kind = TSR_METHODS[self.inner]
        c, t = call.x.shape[1:]
        if c > 1 and self.inner in ("SVS", "FO"):
            raise ValueError(
                f"{name} with inner={self.inner!r} explains univariate series only: TSInterpret "
                "reshapes its (T, C) feature mask / occlusion window instead of transposing it, so "
                "on multivariate series the groups mix channels and time steps"
            )
        if kind is None and baselines is not None:
            raise TypeError(f"{name} with inner={self.inner!r} takes no baselines")
        draws = TSR_MULTIPLE if kind == "multiple" else 1
        ref = None if kind is None else self._baselines(call, baselines, draws).cpu()
        tsi = load_tsinterpret()
        with _quiet():
            saliency = tsi.TSR(call.model.model, t, c, method=self.inner, mode="feat",
                               device="cpu", normalize=False, tsr=bool(self.tsr))
        x = call.x.cpu().numpy()
        out = np.empty(x.shape, dtype=np.float32)
        kwargs = {} if self.assignment is None else {"assignment": float(self.assignment)}
        for i, seed in _instances(call, name):
            if kind == "single":
                kwargs["baseline_single"] = ref[0, i : i + 1].float()
            elif kind == "multiple":
                kwargs["baseline_multiple"] = ref[:, i].float()
            with _seeded(seed), _quiet():
                a = saliency.explain(x[i : i + 1], labels=int(call.target[i]), TSR=bool(self.tsr),
                                     **kwargs)
            a = np.asarray(a, dtype=np.float32)
            if a.shape != (c, t):
                raise RuntimeError(f"TSInterpret's TSR returned a map of shape {a.shape}, not {(c, t)}")
            out[i] = a
        resolved = {"baseline": {"name": "none", "reason": f"{self.inner} takes no reference"}}
        return Attribution(torch.from_numpy(out), baselines=ref, params=resolved if kind is None else {})


# -- LEFTIST --------------------------------------------------------------------------------
#: Our names for LEFTIST's perturbations -> TSInterpret's ``transform_name``.
LEFTIST_TRANSFORMS = {
    "rand_background": "straight",  # its default name falls through to RandBackgroundTransform
    "mean": "mean",
    "straight_line": "straight_line",
}


class _NumpyWithInt(types.ModuleType):
    """NumPy plus the ``np.int`` alias (removed in NumPy 1.24) TSInterpret's SHAP code calls."""

    int = int

    def __getattr__(self, name: str):
        return getattr(np, name)


@contextlib.contextmanager
def _numpy_int_alias(module: types.ModuleType):
    """Give ``module`` a NumPy with ``np.int`` for the duration of the block."""
    saved = module.np
    module.np = _NumpyWithInt("numpy")
    try:
        yield
    finally:
        module.np = saved


def paint_segments(weights: np.ndarray, intervals: np.ndarray, length: int) -> np.ndarray:
    """Spread one weight per segment over the time steps of that segment.

    LEFTIST's uniform segments ``[start_k, end_k]`` share their end points
    (``end_k == start_{k+1}``); a shared point goes to the later segment, so segment ``k`` covers
    ``[start_k, start_{k+1})`` and the last one runs to ``length``.

    Returns
    -------
    numpy.ndarray, shape (length,)
    """
    starts = np.append(np.asarray(intervals)[:, 0].astype(np.int64), length)
    return np.repeat(np.asarray(weights, dtype=np.float64), np.diff(starts))


class _Leftist(_OnCPU, SurrogateExplainer, Seeded):
    """TSInterpret's LEFTIST with one learner (``_learner``)."""

    _learner: ClassVar[str]

    n_segments: int = 10
    n_neighbors: int = 1000
    explanation_size: int | None = 1
    transform: str = "rand_background"
    batch_size: int | str = "auto"

    _WHY = "TSInterpret's LEFTIST reshapes the (C, T) series into (T, C) and fails on C > 1"

    def _fit(self, X, y) -> None:
        _check_univariate(X.shape[1], self.info.qualified_name, self._WHY)
        self.background_ = X.numpy().copy()

    def _check_params(self, length: int) -> None:
        check_positive_int(n_segments=self.n_segments, n_neighbors=self.n_neighbors)
        if self.explanation_size is not None:
            check_positive_int(explanation_size=self.explanation_size)
        check_choice("transform", self.transform, tuple(LEFTIST_TRANSFORMS))
        if self.n_segments >= length:
            raise ValueError(
                f"n_segments must be smaller than the series length {length} (LEFTIST's uniform "
                f"segments would be empty); got {self.n_segments}"
            )

    def _attribute(self, call, *, baselines, feature_mask):
        name = self.info.qualified_name
        c, t = call.x.shape[1:]
        _check_univariate(c, name, self._WHY)
        self._check_params(t)
        tsi = load_tsinterpret()
        predict = _probabilities(call)

        def predict_time_major(a: np.ndarray) -> np.ndarray:  # LEFTIST hands (n, T, 1) series
            return predict(np.swapaxes(np.asarray(a, dtype=np.float32), 1, 2))

        with _quiet():
            leftist = tsi.LEFTIST(
                predict_time_major, data=(np.swapaxes(self.background_, 1, 2), None), mode="time",
                backend="F", transform_name=LEFTIST_TRANSFORMS[self.transform],
                learning_process_name=self._learner, nb_interpretable_feature=int(self.n_segments),
                nb_neighbors=int(self.n_neighbors), explanation_size=self.explanation_size,
            )
        leftist._shape_explanations = lambda explanations, series: explanations  # raw weights
        x = call.x.cpu().numpy()
        out = np.empty(x.shape, dtype=np.float32)
        for i, seed in _instances(call, name):
            label = int(call.target[i])
            alias = (_numpy_int_alias(tsi.shap_neighbors_module) if self._learner == "SHAP"
                     else contextlib.nullcontext())
            with _seeded(seed), _quiet(), alias:
                raw = leftist.explain(x[i].T[None], idx_label=label, random_state=seed)
            weights = self._segment_weights(leftist, raw[0], label)
            out[i, 0] = paint_segments(weights, leftist.transform.segments_interval, t)
        return Attribution(torch.from_numpy(out))

    def _segment_weights(self, leftist, raw: tuple, label: int) -> np.ndarray:
        """The surrogate's weights in segment order."""
        return np.asarray(raw[0], dtype=np.float64)


@_register(
    "leftist_lime", model_kinds=ANY_MODEL, needs_fit=True, stochastic=True,
    summary="TSInterpret's LEFTIST with a LIME learner: a weighted ridge surrogate on uniform segments",
    reference="Guillemé et al. (2019), Agnostic Local Explanation for Time Series Classification",
    notes="Univariate series only (TSInterpret's LEFTIST fails on multivariate ones); fit(X) gives "
    "the background series. Explains the target class's probability (softmax of torch outputs). "
    "Weights are read back in segment order and painted onto each segment's own time steps "
    "(TSInterpret sorts them by value and paints 10-step slots). With explanation_size=1 "
    "(TSInterpret's default) one segment gets a non-zero weight. Random neighbours, seeded.",
)
class LeftistLime(_Leftist):
    """TSInterpret's LEFTIST with the LIME learning process, univariate series.

    Parameters
    ----------
    n_segments : int
        Uniform segments (interpretable features); 10, TSInterpret's default.
    n_neighbors : int
        Perturbed series drawn around each instance; 1000.
    explanation_size : int or None
        Segments the surrogate may use (forward selection up to 6, highest weights beyond);
        1, TSInterpret's default; ``None``: all.
    transform : str
        A switched-off segment becomes a random background series from ``fit``
        (``"rand_background"``, TSInterpret's default), the series mean (``"mean"``) or a line
        between its end points (``"straight_line"``).
    batch_size : "auto" or int
        Rows per model call.
    random_state : int, optional
        Seeds the neighbours and the background draws.
    """

    _learner = "Lime"

    def _segment_weights(self, leftist, raw, label):
        """TSInterpret returns the ridge coefficients sorted by value: read them in segment order.

        The feature selection, deterministic given the neighbours, is run again for the segments
        the ridge used; its coefficients sorted must equal what TSInterpret returned.
        """
        lp, nb = leftist.learning_process, leftist.neighbors
        n_features = nb.masks.shape[1]
        size = n_features if self.explanation_size is None else int(self.explanation_size)
        used = lp._feature_selection(nb, nb.proba_labels[:, label], min(size, n_features))
        used = np.arange(n_features) if used is None else np.asarray(used, dtype=int)
        weights = np.zeros(n_features)
        weights[used] = lp.model_regressor.coef_
        if not np.allclose(np.sort(weights), np.asarray(raw[0], dtype=np.float64)):
            raise RuntimeError(
                "could not recover LEFTIST's LIME weights in segment order (has TSInterpret's "
                "LIMELearningProcess.solve changed?)"
            )
        return weights


@_register(
    "leftist_shap", model_kinds=ANY_MODEL, needs_fit=True, stochastic=True,
    summary="TSInterpret's LEFTIST with a SHAP learner: Kernel-SHAP weights of uniform segments",
    reference="Guillemé et al. (2019), Agnostic Local Explanation for Time Series Classification",
    notes="Univariate series only (TSInterpret's LEFTIST fails on multivariate ones); fit(X) gives "
    "the background series (and the mean prediction the weights add up from). Explains the "
    "target class's probability (softmax of torch outputs). Weights are painted onto each "
    "segment's own time steps (TSInterpret paints 10-step slots). With explanation_size=1 "
    "(TSInterpret's default) one segment carries the whole difference. Random coalitions, seeded.",
)
class LeftistShap(_Leftist):
    """TSInterpret's LEFTIST with the SHAP learning process, univariate series.

    Parameters are those of :class:`LeftistLime`; ``explanation_size`` caps the segments LARS
    selects before the Kernel-SHAP regression (``None``: all).
    """

    _learner = "SHAP"


# -- counterfactuals ------------------------------------------------------------------------
class _TSInterpretCF(_OnCPU, CounterfactualExplainer):
    """Shared per-instance loop of the TSInterpret counterfactual entries."""

    def _train_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_train_.numpy().astype(np.float64), self.train_class_.copy()

    def _per_instance(self, call: Call, explain) -> tuple[torch.Tensor, np.ndarray]:
        """Counterfactuals ``explain(i, x_i)`` (``x_i`` float64, (1, C, T)), each run seeded and
        quiet; where it returns ``None`` the instance itself. Also returns which were found."""
        x = call.x.cpu().numpy()
        out, found = x.copy(), np.zeros(len(x), dtype=bool)
        for i, seed in _instances(call, self.info.qualified_name):
            with _seeded(seed), _quiet():
                cf = explain(i, x[i : i + 1].astype(np.float64))
            if cf is not None:
                found[i] = True
                out[i] = np.asarray(cf, dtype=np.float32).reshape(x.shape[1:])
        return torch.from_numpy(out), found


#: Our method names -> NativeGuideCF's.
NATIVE_GUIDE_METHODS = {"NUN_CF": "NUN_CF", "dtw_bary_center": "dtw_bary_center", "native_guide": "NG"}
NATIVE_GUIDE_DISTANCES = ("dtw", "softdtw", "euclidean", "sqeuclidean", "cityblock")


@_register(
    "native_guide", model_kinds=("torch",), needs_fit=True,
    summary="TSInterpret's Native Guide: the nearest unlike neighbour, CAM-guided subsequence swaps "
    "or a DTW barycentre",
    reference="Delaney, Greene & Keane (2021), Instance-Based Counterfactual Explanations for Time "
    "Series Classification",
    notes="Univariate series only (TSInterpret's NativeGuide fails on multivariate ones). The "
    "nearest unlike neighbour is drawn from the target class. NUN_CF stops once the original "
    "class's probability drops to 0.5 and dtw_bary_center aims at the second most probable "
    "class (other targets refused): with 3+ classes the result may miss the target. NUN_CF needs "
    "a CNN whose last conv layer keeps the series length (CAM). Where TSInterpret finds none, "
    "the instance itself is returned (invalid); params['found'] says which. Deterministic. CPU only.",
)
class TSInterpretNativeGuide(_TSInterpretCF):
    """TSInterpret's ``NativeGuideCF`` for PyTorch CNNs, univariate series.

    Parameters
    ----------
    variant : str
        TSInterpret's ``method``: ``"NUN_CF"`` (its default: swap in the nearest unlike
        neighbour's subsequence of highest class activation, growing it until the original
        class's probability falls to 0.5), ``"dtw_bary_center"`` (move a DTW barycentre of the
        instance and the neighbour towards the neighbour) or ``"native_guide"`` (the neighbour).
    distance : str
        tslearn metric of the neighbour search for ``dtw_bary_center`` and ``native_guide``;
        ``"dtw"``, TSInterpret's default (``NUN_CF`` always uses ``"euclidean"``).
    max_iter : int
        Most growth / barycentre steps; 500.
    """

    variant: str = "NUN_CF"
    distance: str = "dtw"
    max_iter: int = 500

    _WHY = "TSInterpret's NativeGuide reshapes (M, C, T) training series into M C univariate ones"

    def _fit(self, X, y) -> None:
        _check_univariate(X.shape[1], self.info.qualified_name, self._WHY)
        super()._fit(X, y)

    def _counterfactual(self, call):
        name = self.info.qualified_name
        check_choice("variant", self.variant, tuple(NATIVE_GUIDE_METHODS))
        check_choice("distance", self.distance, NATIVE_GUIDE_DISTANCES)
        check_positive_int(max_iter=self.max_iter)
        _check_univariate(call.x.shape[1], name, self._WHY)
        predicted = call.predictions.argmax(1)
        if self.variant == "dtw_bary_center":
            runner_up = np.argsort(call.predictions, axis=1)[:, -2]
            if (call.target != runner_up).any():
                raise ValueError(
                    f"{name} with variant='dtw_bary_center' can only aim at each instance's second "
                    "most probable class (TSInterpret's code picks that class itself); pass "
                    "target=None"
                )
        X_tr, y_tr = self._train_numpy()
        tsi = load_tsinterpret()
        model = copy.deepcopy(call.model.model)  # it strips and adds forward hooks
        with _quiet():
            guide = tsi.NativeGuideCF(model, (X_tr, y_tr), backend="PYT", mode="feat",
                                      method=NATIVE_GUIDE_METHODS[self.variant],
                                      distance_measure=self.distance, max_iter=int(self.max_iter))

        def explain(i, xi):
            keep = y_tr == call.target[i]
            guide.data = (X_tr[keep], y_tr[keep])  # the unlike neighbour: from the target class
            return guide.explain(xi, int(predicted[i]))[0]

        try:
            cf, found = self._per_instance(call, explain)
        finally:
            guide.cam_extractor.remove_hooks()
        return cf, {"found": found.tolist()}


COMTE_METHODS = ("opt", "brute")


@_register(
    "comte", model_kinds=ANY_MODEL, needs_fit=True, stochastic=True,
    summary="TSInterpret's CoMTE: swap whole channels in from the nearest target-class training series",
    reference="Ates et al. (2021), Counterfactual Explanations for Multivariate Time Series",
    notes="Swaps whole channels, so on a univariate series the counterfactual is a target-class "
    "training series (a distractor) or the instance. Searches on class probabilities (softmax "
    "of torch outputs). Needs at least number_distractors training series the model assigns to "
    "the target class, and the fitted classes 0..target all present (TSInterpret maps the "
    "target through the sorted fitted classes). Random hill climbing, seeded. CPU only.",
)
class TSInterpretCOMTE(_TSInterpretCF, Seeded):
    """TSInterpret's CoMTE (``OptimizedSearch`` / ``BruteForceSearch``), any model kind.

    Runs TSInterpret's searches as ``COMTECF.explain`` does, reusing the per-class KD-trees
    across instances, with ``number_distractors`` and 1 thread set on both searches.

    Parameters
    ----------
    search : str
        TSInterpret's ``method``: ``"opt"`` (random hill climbing over channel swaps, brute
        force as fallback; TSInterpret's default) or ``"brute"`` (greedy channel swaps).
    number_distractors : int
        Nearest target-class training series tried as donors; 2.
    max_attempts : int
        Hill-climbing attempts without improvement before a restart ends; 1000.
    max_iter : int
        Most hill-climbing iterations per restart; 1000.
    """

    search: str = "opt"
    number_distractors: int = 2
    max_attempts: int = 1000
    max_iter: int = 1000

    def _check_targets(self, targets: np.ndarray) -> None:
        classes, counts = np.unique(self.train_class_, return_counts=True)
        for target in np.unique(targets):
            if target >= len(classes) or classes[target] != target:
                raise ValueError(
                    f"{self.info.qualified_name} needs the model to assign fitted training series to "
                    f"every class 0..{target} (TSInterpret looks the target up by position among the "
                    f"fitted classes {classes.tolist()})"
                )
            if counts[target] < self.number_distractors:
                raise ValueError(
                    f"{self.info.qualified_name} needs at least number_distractors="
                    f"{self.number_distractors} fitted series of target class {target}; got "
                    f"{counts[target]}"
                )

    def _counterfactual(self, call):
        check_choice("search", self.search, COMTE_METHODS)
        check_positive_int(number_distractors=self.number_distractors,
                           max_attempts=self.max_attempts, max_iter=self.max_iter)
        self._check_targets(call.target)
        X_tr, y_tr = self._train_numpy()
        tsi = load_tsinterpret()
        predict = _probabilities(call)
        with _quiet():
            if self.search == "opt":
                search = tsi.OptimizedSearch(
                    predict, X_tr, y_tr, silent=True, threads=1,
                    num_distractors=int(self.number_distractors),
                    max_attempts=int(self.max_attempts), maxiter=int(self.max_iter),
                )
                # it passes none of these three on (2 distractors, cpu_count() threads)
                for s in (search, search.backup):
                    s.silent, s.threads, s.num_distractors = True, 1, int(self.number_distractors)
            else:
                search = tsi.BruteForceSearch(predict, X_tr, y_tr, silent=True, threads=1,
                                              num_distractors=int(self.number_distractors))
        cf, _ = self._per_instance(call, lambda i, xi: search.explain(xi, to_maximize=int(call.target[i]))[0])
        return cf, {}


#: TSEvo's mutations (TSInterpret's names).
TSEVO_TRANSFORMERS = ("authentic_opposing_information", "mutate_both", "mutate_mean",
                      "frequency_band_mapping")


@_register(
    "tsevo", model_kinds=("torch",), needs_fit=True, stochastic=True,
    summary="TSInterpret's TSEvo: NSGA-II over validity, proximity and sparsity with "
    "time-series mutations",
    reference="Höllig, Kulbach & Thoma (2022), TSEvo: Evolutionary Counterfactual Explanations "
    "for Time Series Classification",
    notes="Returns the best individual found (valid or not). The model is called on one "
    "individual at a time, about 2 x 100 calls per epoch: 500 epochs (TSInterpret's default) take "
    "minutes per instance. Random (evolution), seeded. CPU only.",
)
class TSInterpretTSEvo(_TSInterpretCF, Seeded):
    """TSInterpret's ``TSEvo`` for PyTorch models, uni- and multivariate.

    Parameters
    ----------
    transformer : str
        Mutation: ``"authentic_opposing_information"`` (TSInterpret's default: copy a window from
        a target-class training series), ``"frequency_band_mapping"`` (a Fourier band from one),
        ``"mutate_mean"`` (Gaussian noise around the target class's mean) or ``"mutate_both"``
        (each individual keeps the kind it was given).
    epochs : int
        Generations of a population of 100; 500, TSInterpret's default.
    """

    transformer: str = "authentic_opposing_information"
    epochs: int = 500

    def _counterfactual(self, call):
        name = self.info.qualified_name
        check_choice("transformer", self.transformer, TSEVO_TRANSFORMERS)
        check_positive_int(epochs=self.epochs)
        X_tr, y_tr = self._train_numpy()
        tsi = load_tsinterpret()
        t = call.x.shape[2]
        if t < 4:
            raise ValueError(f"{name} needs series of at least 4 steps (its mutation windows); got {t}")
        predicted = call.predictions.argmax(1)

        def explain(i, xi):
            evo = tsi.TSEvo(call.model.model, (X_tr, y_tr), transformer=self.transformer,
                            epochs=int(self.epochs), mode="feat", backend="PYT", verbose=0)
            return evo.explain(xi, int(predicted[i]), target_y=int(call.target[i]))[0]

        return self._per_instance(call, explain)[0], {}
