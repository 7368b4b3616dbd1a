"""The benchmark runner: expand a suite into units, run them in parallel, store every row.

``run_suite(config, out_dir)`` writes ``out_dir/results.sqlite`` (see
:mod:`xai_suite.bench.store`). Each unit trains (or reloads) its model, explains
``n_instances`` seeded test instances (timed, after an untimed one-instance warm-up the first
time an explainer runs in a process, so that imports are not counted), computes every
applicable metric and returns its rows; the parent process, the single writer SQLite wants
(cluster workers may not even share its file system), writes each unit in one transaction as
it arrives. A second call with the same config and ``out_dir`` resumes: recorded units are
skipped, so nothing is lost or counted twice after Ctrl-C or ``kill -9``.

Every unit also reports its trained model's accuracy on the whole test split (once per
process for each dataset, model and seed), which the report prints with a Wilson interval:
an attribution of a model that has not learned the task measures nothing. ``deletion_auc``
and ``insertion_auc`` are computed through :func:`~xai_suite.metrics.faithfulness.deletion_curve`
/ :func:`~xai_suite.metrics.faithfulness.insertion_curve`; the unit stores every instance's
curve and its trapezoid area, so the stored area is exactly that of the stored curve.

Where the units run (``backend``, ``n_jobs``, ``address``; see :mod:`xai_suite.bench.cluster`):
by default, the joblib configuration in effect, so a caller's ``with
joblib.parallel_config(backend="threading", n_jobs=2):`` is respected, and with none one unit
after the other in this process; ``backend="loky"`` with ``n_jobs`` worker processes on this
machine; or a cluster, with the extra ``pip install 'xai-suite[distributed]'``::

    run_suite("benchmarks/ig-baselines.toml", "results/ig", backend="dask")   # a LocalCluster, every core
    run_suite("benchmarks/ig-baselines.toml", "results/ig", backend="dask", address="tcp://scheduler:8786")
    run_suite("benchmarks/ig-baselines.toml", "results/ig", backend="ray", n_jobs=4)  # a local Ray, 4 CPUs
    run_suite("benchmarks/ig-baselines.toml", "results/ig", backend="ray", address="auto")

(``xai-suite bench NAME --backend dask|ray [--address ADDRESS]`` does the same.) A cluster the
runner starts is closed when the run ends; one it connects to stays up, and without an address
a Dask client or Ray connection already open in this process is used (and left open). Each unit runs torch
with one thread (restored afterwards), so results do not depend on where or how many units
run at once. Workers need xai-suite installed and, for the trained-model cache to be shared, a
common ``XAI_SUITE_CACHE`` directory (without it each worker trains its own copy, with the
same result). Modules or ``.py`` files listed under ``imports`` are imported in every worker
(a ``.py`` file by its path, so a remote worker needs it at the same path).

A dataset function may return DataFrames with string or categorical columns: they are never
cast to float32. Explainers and metrics work on their codes (numeric columns as they are,
categorical ones as integer codes of :class:`xai_suite_tabular.FrameEncoder`, fixed by the
training split); a zoo model registered with ``frames=True`` is fitted on the DataFrame and
explained through ``xai_suite_tabular.TabularModel``, given the test rows as DataFrames so
that explanations carry their columns' names and categories. A model taking arrays refuses
a dataset with categorical columns.

Removal metrics (deletion, insertion, comprehensiveness, sufficiency) follow the suite's
``deletion_output``: probabilities (softmax of the logits of a model whose zoo entry
says it gives logits) or logits; the store records it (``meta["plan"]``) with the pairs that
are no units and the metric cells that do not apply.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import platform
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._validation import check_positive_int
from ..baselines import ensure_baseline
from .cluster import check_backend, parallel_map
from .config import (
    DEFAULT_BASELINE,
    NO_BASELINE,
    OUTPUT_WORDS,
    Suite,
    Unit,
    expand_units,
    import_plugins,
    load_suite,
    not_applicable,
    removal_metric,
)
from .store import ResultsStore, UnitResult, store_path

#: Packages whose versions a store records.
PACKAGES = ("xai-suite", "torch", "numpy", "scipy", "pandas", "scikit-learn", "captum", "shap", "lime",
            "aeon", "joblib", "matplotlib")


def package_versions() -> dict:
    """Python, the platform and the installed versions of :data:`PACKAGES`."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_suite(config_or_path, out_dir, *, quick: bool = False, n_jobs: int | None = None,
              backend: str | None = None, address: str | None = None, progress: bool = True,
              max_units: int | None = None) -> Path:
    """Run (or resume) a benchmark suite.

    Parameters
    ----------
    config_or_path : str, os.PathLike, dict or Suite
        A ``.toml`` path, a parsed config table, or a loaded :class:`~xai_suite.bench.config.Suite`.
    out_dir : str or os.PathLike
        Run directory; ``out_dir/results.sqlite`` is created or resumed.
    quick : bool
        Apply the suite's ``[quick]`` overrides.
    n_jobs : int, optional
        Parallel workers (joblib's meaning: -1 is every core). ``None``: with loky or
        threading, the joblib configuration in effect (else 1); with dask or ray, every core
        of a local cluster the runner starts.
    backend : {"loky", "threading", "dask", "ray"}, optional
        ``None`` with ``n_jobs=None``: the joblib configuration in effect, so a caller's
        ``with joblib.parallel_config(backend="threading", n_jobs=2):`` runs the units with
        it; with none, one unit after the other in this process. ``"loky"``: worker processes
        on this machine; ``"threading"``: threads of this process; ``"dask"``, ``"ray"``: the
        cluster at ``address``, else a local one (see the module docstring).
    address : str, optional
        A running Dask scheduler (``"tcp://host:8786"``) or Ray cluster (``"host:6379"``,
        ``"ray://host:10001"``, ``"auto"``); only with ``backend="dask"`` or ``"ray"``.
    progress : bool
        Show a tqdm bar over units (on stderr).
    max_units : int, optional
        Stop once this many new units are stored (the rest stay for a later call): a run cut
        into pieces, or a deterministic stand-in for an interruption.

    Returns
    -------
    pathlib.Path
        The results store.
    """
    from tqdm.auto import tqdm

    check_backend(backend, n_jobs, address)
    suite = config_or_path if isinstance(config_or_path, Suite) else load_suite(config_or_path, quick=quick)
    units = expand_units(suite)
    path = store_path(Path(out_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path), ResultsStore(path, create=True) as store:
        store.init_run(suite.name, suite.config, suite.source, suite.quick, package_versions(),
                       _metrics_meta(suite), plan=_plan(suite))
        finished = store.finished_units()
        todo = [u for u in units if u.key not in finished]
        if max_units is not None:
            check_positive_int(max_units=max_units)
            todo = todo[:max_units]
        if not todo:  # nothing left: no workers or cluster to start
            return path
        task = functools.partial(run_unit, suite, parent=os.getpid())
        with (tqdm(total=len(units), initial=len(units) - len(todo), unit="unit", desc=suite.name,
                   disable=not progress) as bar,
              _one_thread(),  # units in threads of this process leave its torch threads as they were
              parallel_map(backend, n_jobs, address) as run, contextlib.closing(run(task, todo)) as results):
            for result in results:
                store.write_unit(suite.name, result)
                bar.update()
    return path


class StoreLockedError(FileExistsError):
    """Another runner is writing to the same results store (its lock is held)."""


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold ``<store>.lock`` for the run: a second runner on the store refuses, naming the first.

    An OS lock (``flock``): the kernel releases it when the holder exits, even on ``kill -9``,
    so a stale lock file never blocks a later run.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(path.with_suffix(".lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise StoreLockedError(f"another runner ({holder}) is writing to {str(path)!r}; wait for it "
                                   "to finish, or give this run another output directory") from None
        f.truncate(0)  # append mode: the write lands at the start of the now empty file
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _metrics_meta(suite: Suite) -> dict:
    """Registry metadata of every metric, keyed by its label (the results' metric column)."""
    from ..metrics.registry import metric_info

    out = {}
    for spec in suite.metrics:
        info = metric_info(spec.name)
        out[spec.label] = {"metric": spec.name, "kind": info.kind, "needs": ", ".join(info.needs),
                           "higher_is_better": info.higher_is_better, "summary": info.summary}
        if removal_metric(info.fn):  # removal metrics say towards what, and in which space
            out[spec.label]["removed towards"] = _reference_label(spec.params.get("replacement", "baseline"))
            out[spec.label]["output"] = OUTPUT_WORDS[suite.deletion_output]
    return out


def _plan(suite: Suite) -> dict:
    """What the store records of the suite's expansion: the deletion space, the (dataset,
    model, explainer) pairs that are no units, and the unit x metric cells that do not apply."""
    from ..metrics.registry import metric_info
    from ..registry import explainer_info

    cells = {}
    for u in expand_units(suite):
        kind = _model_spec(suite, u.model).kind
        for spec in suite.metrics:
            reason = metric_info(spec.name).not_applicable(explainer_info(u.explainer_name).tags, kind)
            if reason:
                cells[(u.dataset, u.model, u.explainer, u.baseline, spec.label)] = reason
    keys = ("dataset", "model", "explainer", "baseline", "metric")
    return {"deletion_output": suite.deletion_output, "not_applicable": not_applicable(suite),
            "metrics_not_applicable": [{**dict(zip(keys, k, strict=True)), "reason": r}
                                       for k, r in cells.items()]}


def _model_spec(suite: Suite, label: str):
    return next(m for m in suite.models if m.label == label)


def _reference_label(replacement) -> str:
    """What a removal metric replaces features with: each explanation's baseline or one spec."""
    if isinstance(replacement, str) and replacement == "baseline":
        return "each explanation's own baseline"
    return "shared: " + json.dumps(ensure_baseline(replacement).describe(), sort_keys=True)


#: Metrics whose per-instance curves the runner stores, and the function drawing each curve.
CURVE_METRICS = {"deletion_auc": "deletion_curve", "insertion_auc": "insertion_curve"}


# -- one unit ----------------------------------------------------------------------------------
_DATA: dict = {}
_MODELS: dict = {}
_QUALITY: dict = {}
_MEMO_SIZE = 4
_WARM: set[str] = set()


def _memo(cache: dict, key, make):
    if key not in cache:
        if len(cache) >= _MEMO_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _as_array(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=dtype)


def load_data(suite: Suite, label: str, seed: int) -> dict:
    """Train/test split of dataset ``label`` for ``seed``.

    Returns
    -------
    dict
        ``X_train``, ``y_train``, ``X_test``, ``y_test`` (float32 inputs, int64 labels; for
        text, object arrays of prompts and of the continuations explained), ``mask_test``
        (bool, the shape of ``X_test``) or ``None``, and ``frame_train``, ``frame_test``: the
        DataFrames a tabular loader returned (``X_*`` are then their codes) or ``None``;
        ``coded``: the categorical columns coded.
    """
    spec = next(d for d in suite.datasets if d.label == label)

    def make():
        from sklearn.model_selection import train_test_split

        from .. import datasets as xs_datasets

        fn = getattr(xs_datasets, spec.loader)
        params = dict(spec.params)
        takes = inspect.signature(fn).parameters
        if "random_state" in takes and "random_state" not in params:
            params["random_state"] = seed
        if "split" in takes:
            train, test = (_parse(fn(split=s, **params), s, spec.modality) for s in ("train", "test"))
        else:
            X, y, mask = _parse(fn(**params), "all", spec.modality)
            idx = train_test_split(np.arange(len(X)), test_size=spec.test_size, random_state=seed, stratify=y)
            train, test = ((_rows(X, i), y[i], None if mask is None else mask[i]) for i in idx)
        return _coded({"X_train": train[0], "y_train": train[1], "X_test": test[0], "y_test": test[1],
                       "mask_test": test[2]})

    return _memo(_DATA, (suite.config_json, label, seed), make)


def _rows(X, i: np.ndarray):
    return X.iloc[i].reset_index(drop=True) if isinstance(X, pd.DataFrame) else X[i]


def _coded(data: dict) -> dict:
    """DataFrames kept as ``frame_*``, ``X_*`` made their float32 codes (see :func:`load_data`)."""
    data.update(frame_train=None, frame_test=None, coded=[])
    if isinstance(data["X_train"], pd.DataFrame):
        from xai_suite_tabular import FrameEncoder

        encoder = FrameEncoder(data["X_train"])
        data.update(frame_train=data["X_train"], frame_test=data["X_test"], coded=list(encoder.categories_),
                    X_train=encoder.encode(data["X_train"]), X_test=encoder.encode(data["X_test"]))
    return data


def _parse(out, split: str, modality: str):
    """(X, y, mask or None) from a loader's output."""
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise ValueError(f"a dataset function must return (X, y), (X, y, mask) or (X, C, y); got "
                         f"{type(out).__name__} for split {split!r}")
    if modality == "text":  # prompts and the continuations to explain
        X, y = (np.array(list(a), dtype=object) for a in out[:2])
        if len(out) != 2 or len(X) != len(y) or not all(isinstance(t, str) for t in (*X, *y)):
            raise ValueError(f"a text dataset function must return (prompts, continuations), two lists of "
                             f"strings of one length; got {len(out)} items for split {split!r}")
        return X, y, None
    X = out[0].reset_index(drop=True) if isinstance(out[0], pd.DataFrame) else _as_array(out[0], np.float32)
    if len(out) == 2:
        return X, _as_array(out[1], np.int64), None
    if np.shape(out[2]) == X.shape:
        return X, _as_array(out[1], np.int64), _as_array(out[2], bool)
    return X, _as_array(out[2], np.int64), None  # (X, concepts, y)


def load_model(suite: Suite, dataset: str, model: str, seed: int):
    """The trained zoo model ``model`` for ``dataset`` and ``seed`` (memoised per process).

    A ``frames`` zoo model is fitted on the training DataFrame and returned as
    ``TabularModel(fitted, X_train)``.
    """
    from .models import build_model, model_info

    spec = _model_spec(suite, model)

    def make():
        data = load_data(suite, dataset, seed)
        if not model_info(spec.name).frames:
            if data["coded"]:
                raise ValueError(f"dataset {dataset!r} has categorical columns {data['coded']}; model "
                                 f"{model!r} takes numeric arrays: register a zoo model with frames=True "
                                 "(fitted on the DataFrame, explained through a TabularModel)")
            return build_model(spec.name, data["X_train"], data["y_train"], random_state=seed, **spec.params)
        if data["frame_train"] is None:
            raise ValueError(f"model {model!r} takes DataFrames (frames=True); dataset {dataset!r} gives "
                             "arrays: return a pandas DataFrame from its dataset function")
        fitted = build_model(spec.name, data["frame_train"], data["y_train"], random_state=seed,
                             **spec.params)
        if not hasattr(fitted, "predict_proba"):
            raise TypeError(f"model {model!r} (frames=True) must return a fitted estimator with "
                            f"predict_proba; got {type(fitted).__name__} (the runner wraps it in a "
                            "TabularModel itself)")
        from xai_suite_tabular import TabularModel

        return TabularModel(fitted, data["frame_train"])

    return _memo(_MODELS, (suite.config_json, dataset, model, seed), make)


def model_quality(suite: Suite, dataset: str, model: str, seed: int) -> dict:
    """Test accuracy of the trained model (memoised per process).

    A row is right when the model's top output is its label (or, for a zoo entry with its own
    ``correct``, when that says so: for text, the continuation is the greedy one).

    Returns
    -------
    dict
        ``n_test`` (test rows), ``n_correct``, ``accuracy``, ``n_classes`` (in the training
        labels) and ``majority`` (accuracy of always predicting the commonest test class).
    """
    from ..modeling import ModelWrapper
    from .models import model_info

    def make():
        data = load_data(suite, dataset, seed)
        trained = load_model(suite, dataset, model, seed)
        X, y = data["X_test"], data["y_test"]
        judge = model_info(next(m for m in suite.models if m.label == model).name).correct
        with _one_thread():
            if judge is not None:
                right = np.asarray(judge(trained, X, y), dtype=bool)
            else:
                wrapper = ModelWrapper(trained, device="cpu")
                with wrapper.prepared():
                    out = wrapper.predict(torch.from_numpy(X), 256)
                if out.ndim != 2 or out.shape[0] != len(y):
                    raise ValueError(f"model {model!r} returned outputs of shape {out.shape} for {len(y)} "
                                     "test rows; expected (N, K)")
                right = out.argmax(1) == y
        correct = int(right.sum())
        _, counts = np.unique(y, return_counts=True)
        return {"n_test": len(y), "n_correct": correct, "accuracy": correct / len(y),
                "n_classes": (int(max(data["y_train"].max(), y.max())) + 1 if y.dtype.kind in "iu"
                              else len(np.unique(np.concatenate([data["y_train"], y])))),
                "majority": float(counts.max() / len(y))}

    return _memo(_QUALITY, (suite.config_json, dataset, model, seed), make)


def instances(n_test: int, n_instances: int, seed: int) -> np.ndarray:
    """The test rows a unit explains: ``n_instances`` drawn without replacement, sorted."""
    return np.sort(np.random.default_rng(seed).choice(n_test, size=min(n_instances, n_test), replace=False))


@contextlib.contextmanager
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _takes(fn, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


_WATCHED: set[int] = set()


def _exit_with(parent: int) -> None:
    """In a worker process the runner ``parent`` started itself (loky's): exit as soon as the
    runner is gone (``kill -9`` gives it no chance to stop its workers, which would otherwise
    compute on, unseen, for minutes). Cluster workers, started by others, are left alone."""
    if os.getppid() != parent or parent in _WATCHED:
        return
    import threading

    ppid = os.getppid()

    def watch():
        while os.getppid() == ppid:  # else re-parented: the process that started this worker died
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
        os._exit(1)

    _WATCHED.add(parent)
    threading.Thread(target=watch, name="xai-suite-parent-watch", daemon=True).start()


def run_unit(suite: Suite, unit: Unit, parent: int | None = None) -> UnitResult:
    """Run one unit and return its rows; an error is caught and recorded in the result.

    ``parent``: the runner's process id; a worker process exits when it is gone.
    """
    if parent is not None:
        _exit_with(parent)
    import_plugins(suite.imports, suite.base_dir)
    result = UnitResult(unit.key, unit.dataset, unit.model, unit.seed, unit.explainer, unit.baseline)
    start = time.perf_counter()
    try:
        with _one_thread():
            _run(suite, unit, result)
    except Exception as exc:  # one failing unit must not stop the run
        result.status = "error"
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result.error = f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
        result.rows, result.curves = [], []
    result.seconds = time.perf_counter() - start
    return result


def _run(suite: Suite, unit: Unit, result: UnitResult) -> None:
    from ..explanation import CounterfactualExplanation
    from ..metrics.registry import compute_metric, metric_info
    from ..registry import create_explainer, explainer_info
    from .models import model_info as zoo_info

    data = load_data(suite, unit.dataset, unit.seed)
    model = load_model(suite, unit.dataset, unit.model, unit.seed)
    result.model_quality = model_quality(suite, unit.dataset, unit.model, unit.seed)
    name = unit.explainer_name
    info = explainer_info(name)
    params = dict(unit.explainer_params)
    if unit.baseline not in (NO_BASELINE, DEFAULT_BASELINE):
        params["baseline"] = unit.baseline
    if "random_state" in info.params:
        params["random_state"] = unit.seed
    explainer = create_explainer(name, model, **params)
    mspec = _model_spec(suite, unit.model)
    frames = zoo_info(mspec.name).frames  # explain DataFrames: names and categories come with them
    if explainer.requires_fit:
        explainer.fit(data["frame_train" if frames else "X_train"], data["y_train"])
    rows = instances(len(data["X_test"]), suite.n_instances, unit.seed)
    X = data["frame_test"].iloc[rows] if frames else data["X_test"][rows]
    if next(d for d in suite.datasets if d.label == unit.dataset).modality == "text":
        # one explanation per prompt, of its given continuation
        targets = data["y_test"][rows]

        def explain(n):
            return [explainer.explain(p, target=t) for p, t in zip(X[:n], targets[:n], strict=True)]
    else:
        def explain(n):
            return [explainer.explain(X.iloc[:n] if frames else X[:n])]
    if name not in _WARM:  # first use in this process: imports and set-up stay untimed
        explain(1)
        _WARM.add(name)
    t0 = time.perf_counter()
    exps = explain(len(rows))
    per_instance = (time.perf_counter() - t0) / len(rows)
    result.n_instances = len(rows)
    if isinstance(exps[0], CounterfactualExplanation):
        for key, values in exps[0].metrics.items():
            result.rows += [(f"counterfactual.{key}", r, v, per_instance)
                            for r, v in zip(rows, np.asarray(values, dtype=np.float64), strict=True)]
        if suite.metrics:
            result.logs.append(f"{unit.explainer} gives counterfactuals: attribution metrics skipped for it")
        return
    # each explanation with the test rows it explains (all of them, or one prompt each)
    parts = list(zip(exps, np.split(rows, len(exps)), strict=True))
    mask = None if data["mask_test"] is None else data["mask_test"][rows]
    given = {"model": model, "mask": mask, "explainer": explainer}
    for spec in suite.metrics:
        minfo = metric_info(spec.name)
        if minfo.not_applicable(info.tags, mspec.kind):  # the store's plan lists it
            continue
        missing = [n for n in minfo.needs if given[n] is None]
        if missing:
            result.logs.append(f"{spec.label} skipped on {unit.dataset}: it needs a {' and '.join(missing)} "
                               "the dataset does not give (a loader returning (X, y, mask) does)")
            continue
        mparams = dict(spec.params)
        if mparams.get("replacement", "baseline") != "baseline":  # one shared reference
            ref = ensure_baseline(mparams["replacement"])
            mparams["replacement"] = ref if ref.is_fitted else ref.fit(data["X_train"], data["y_train"])
        if "random_state" not in mparams and _takes(minfo.fn, "random_state"):
            mparams["random_state"] = unit.seed
        if removal_metric(minfo.fn) and mspec.outputs == "logits":
            mparams["softmax"] = suite.deletion_output == "probability"
        try:
            if spec.name in CURVE_METRICS:
                values = np.concatenate([_curve_metric(spec, exp, model, mparams, r, result)
                                         for exp, r in parts])
            else:
                values = np.concatenate([compute_metric(spec.name, exp, **{n: given[n] for n in minfo.needs},
                                                        **mparams) for exp, _ in parts])
        except Exception as exc:  # record and go on with the other metrics
            result.logs.append(f"{spec.label} failed for {unit.key}: {type(exc).__name__}: {exc}")
            continue
        result.rows += [(spec.label, r, v, per_instance) for r, v in zip(rows, values, strict=True)]


def _curve_metric(spec, exp, model, params: dict, rows: np.ndarray, result: UnitResult) -> np.ndarray:
    """Area of a deletion or insertion curve per instance; the curves go to ``result.curves``."""
    from ..metrics import faithfulness

    fractions, values = getattr(faithfulness, CURVE_METRICS[spec.name])(exp, model, **params)
    if values.shape != (len(rows), len(fractions)):
        raise RuntimeError(f"{spec.name}: curves of shape {values.shape}; expected ({len(rows)}, "
                           f"{len(fractions)})")
    result.curves += [(spec.label, int(r), step, float(f), float(v))
                      for r, curve in zip(rows, values, strict=True)
                      for step, (f, v) in enumerate(zip(fractions, curve, strict=True))]
    return np.trapezoid(values, fractions, axis=1)
