"""Benchmark suites: a small declarative TOML file, validated and expanded into work units.

A suite names its datasets, models, explainers, baselines and metrics; the runner crosses
them (datasets x matching models x seeds x explainers x baselines) into units. Example::

    name = "quick-demo"
    description = "IG and saliency on a planted-signal task"
    seeds = [0, 1]
    n_instances = 8
    imports = []                     # modules or .py files registering your own entries
    baselines = ["zeros", "training_mean"]   # or "all": xs.list_baselines(modality)
    deletion_output = "probability"          # or "logit": what removal metrics follow

    [[datasets]]
    loader = "make_planted_timeseries"       # any xs.datasets function
    label = "planted-box"                    # optional; defaults to loader (and its name=)
    params = { n_samples = 200, n_channels = 3, length = 24 }
    test_size = 0.25                         # loaders without a `split` argument only
    quick_params = { n_samples = 80 }        # merged into params under --quick

    [[models]]
    name = "cnn1d"                           # a zoo model (xai_suite.bench.models)
    params = { epochs = 30 }
    datasets = ["planted-box"]               # optional: only these dataset labels

    [[explainers]]
    name = "captum:integrated_gradients"     # a registry name ...
    params = { n_steps = 16 }
    [[explainers]]
    name = "native:tsr"                      # the same name again, other params: give a label
    label = "tsr(saliency)"                  # (defaults to the name; the results' explainer column)
    params = { inner = "captum:saliency" }
    [[explainers]]
    select = { family = "gradient" }         # ... or filters of xs.list_explainers
    exclude = ["captum:guided_grad_cam"]     # (modality and model kind come from each unit)

    [[metrics]]
    name = "deletion_auc"
    params = { n_steps = 10 }
    label = "deletion_auc"                   # optional, as for explainers

    [quick]                                  # replaces top-level keys under --quick
    seeds = [0]
    n_instances = 4

Splits: a loader with a ``split`` argument (``load_ucr``, ``load_tabular``) is called for
``"train"`` and ``"test"``; any other is called once and split by ``train_test_split``
(``test_size``, stratified). A loader returning ``(X, y, mask)`` gives a localisation ground
truth; ``(X, C, y)`` (the concept sets) is read as data, concepts, labels. The unit's seed
fills a ``random_state`` the loader's ``params`` leave out, and seeds every other random
choice (split, weights, training order, explained instances, stochastic explainers, metrics).

Labels: ``label`` names a dataset, model, explainer or metric in the results (default: its
name), so one registry explainer or metric can appear twice with different ``params``.
Explainer entries sharing a label (by default, a name) merge, their params and baselines
pooled; a ``select`` entry takes no label. Explainers take ``quick_params`` as datasets and
models do. A model's ``datasets`` restricts it to those dataset labels. ``deletion_auc`` and
``insertion_auc`` also store their curves (see :mod:`xai_suite.bench.store`).

Model kinds: a named explainer joins only the models whose kind it explains (a gradient
method, ``torch``); the pairs it skips are no units, listed by :func:`not_applicable` (and
in the report) instead of failing. A metric is computed only where it means something
(:meth:`~xai_suite.metrics.registry.MetricInfo.not_applicable`: ``completeness_error`` for
explainers with a completeness property only).

Deletion space: ``deletion_output`` is one choice per suite for every removal metric (one
with a ``replacement``: deletion, insertion, comprehensiveness, sufficiency):
``"probability"`` (default; softmax of a torch model's logits, an estimator's
``predict_proba`` as it is) or ``"logit"`` (raw logits; every model of the suite must give
logits). A removal metric's ``params`` may not set ``softmax``. Text explanations follow
their scalariser either way; ``infidelity`` compares the output with the attributions, so it
follows the output they explain unless its ``softmax`` says otherwise.

Your own data and model: a module under ``imports`` registers a dataset function
(:func:`xai_suite.plugin.register_dataset`) returning a DataFrame, string or categorical
columns included, and a zoo model with ``frames=True`` (:mod:`xai_suite.bench.models`)
that fits your pipeline on it; name both in the suite like any other::

    imports = ["my_plugin.py"]
    baselines = ["training_sample"]          # coded columns need references drawn from data
    [[datasets]]
    loader = "my_data"
    [[models]]
    name = "my_pipeline"
    [[explainers]]
    select = { family = "perturbation" }     # the entries taking a callable model
"""

from __future__ import annotations

import copy
import inspect
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import MODALITIES, close_matches
from . import models as zoo

#: The suites that ship inside the package: ``xai-suite bench NAME`` for ``suites/NAME.toml``.
SUITES_DIR = Path(__file__).with_name("suites")


def shipped_suites() -> list[str]:
    """The names of the suites that ship inside the package."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))

TOP_KEYS = ("name", "description", "seeds", "n_instances", "imports", "datasets", "models",
            "explainers", "baselines", "metrics", "deletion_output", "quick")
#: What removal metrics follow, one choice per suite (see the module docstring), in words.
OUTPUT_WORDS = {"probability": "probability of the explained class (softmax of a torch model's logits, "
                               "an estimator's predict_proba)",
                "logit": "logit of the explained class (the torch models' raw outputs)"}
DELETION_OUTPUTS = tuple(OUTPUT_WORDS)
DATASET_KEYS = ("loader", "label", "params", "test_size", "modality", "quick_params")
MODEL_KEYS = ("name", "label", "params", "quick_params", "datasets")
EXPLAINER_KEYS = ("name", "label", "select", "exclude", "params", "quick_params", "baselines")
SELECT_KEYS = ("family", "library", "modality", "model_kind")
METRIC_KEYS = ("name", "label", "params")
NO_BASELINE = "-"
DEFAULT_BASELINE = "default"


class ConfigError(ValueError):
    """A suite config that cannot be run; the message says what was expected."""


@dataclass(frozen=True)
class DatasetSpec:
    """A suite's dataset entry: its label, its registered loader with params, the test split."""

    label: str
    loader: str
    params: dict
    test_size: float
    modality: str


@dataclass(frozen=True)
class ModelSpec:
    """A suite's model entry: a zoo model with params, and the dataset labels it is for."""

    label: str
    name: str
    params: dict
    datasets: tuple[str, ...] | None = None  # dataset labels it is restricted to (None: all)

    @property
    def modality(self) -> str:
        return zoo.model_info(self.name).modality

    @property
    def kind(self) -> str:
        """The model kind explainers see (``callable`` for a ``frames`` model)."""
        return zoo.model_info(self.name).explained_kind

    @property
    def outputs(self) -> str:
        return zoo.model_info(self.name).outputs


@dataclass(frozen=True)
class MetricSpec:
    """A suite's metric entry: a registered metric, its params and its label in the report."""

    name: str
    params: dict
    label: str = ""

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True)
class Unit:
    """One work unit: a trained model explained by one explainer with one baseline.

    ``explainer`` is the entry's label; ``name`` the registry name (``None``: the label is the
    name); ``explainer_params`` the configured hyper-parameters (the runner adds ``baseline``
    and ``random_state``).
    """

    dataset: str
    model: str
    seed: int
    explainer: str
    baseline: str
    explainer_params: dict = field(default_factory=dict, compare=False)
    name: str | None = field(default=None, compare=False)

    @property
    def explainer_name(self) -> str:
        """The registry name of the explainer."""
        return self.name or self.explainer

    @property
    def key(self) -> str:
        return f"{self.dataset}|{self.model}|{self.seed}|{self.explainer}|{self.baseline}"


@dataclass(frozen=True)
class Suite:
    """A validated suite (``quick`` overrides already applied where asked).

    ``config`` is the effective configuration as a plain dict (JSON-ready); ``source`` is
    the TOML text it came from; ``base_dir`` resolves relative ``imports``.
    """

    name: str
    description: str
    seeds: tuple[int, ...]
    n_instances: int
    imports: tuple[str, ...]
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    explainers: tuple[dict, ...]
    baselines: object
    metrics: tuple[MetricSpec, ...]
    quick: bool
    config: dict
    source: str
    base_dir: str
    deletion_output: str = "probability"

    @property
    def config_json(self) -> str:
        return json.dumps(self.config, sort_keys=True)


def _unknown(what: str, key: str, known) -> ConfigError:
    return ConfigError(f"unknown {what} {key!r}{close_matches(key, known)} Expected one of: "
                       f"{', '.join(known)}")


def _check_known(names, known, what: str) -> None:
    for key in names:
        if key not in known:
            raise _unknown(what, key, known)


def _lookup(info, name: str):
    """``info(name)``, its ``KeyError`` (which lists close matches) made a :class:`ConfigError`."""
    try:
        return info(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None


def _check_keys(table: dict, allowed, where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table; got {type(table).__name__}")
    _check_known(table, allowed, f"key in {where}:")


def _entry(value, section: str, i: int, keys) -> tuple[str, dict]:
    """Entry ``i`` of ``section`` as a checked table (a bare string is its name or loader)."""
    where = f"{section}[{i}]"
    if isinstance(value, str):
        value = {keys[0]: value}
    _check_keys(value, keys, where)
    return where, value


def _params(entry: dict, where: str, quick: bool) -> dict:
    """The entry's ``params``, with its ``quick_params`` merged in under ``quick``."""
    params = _table(entry.get("params"), f"{where}.params")
    quick_params = _table(entry.get("quick_params"), f"{where}.quick_params")
    if quick:
        params.update(quick_params)
    return params


def _table(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table (e.g. {{ a = 1 }}); got {value!r}")
    return dict(value)


def load_suite(config, *, quick: bool = False) -> Suite:
    """Read and validate a suite.

    Parameters
    ----------
    config : str, os.PathLike or dict
        A path to a ``.toml`` file, or the parsed table itself (relative ``.py`` imports are
        then resolved against the current directory).
    quick : bool
        Apply the ``[quick]`` overrides and every ``quick_params``.

    Returns
    -------
    Suite

    Raises
    ------
    ConfigError
        For a missing or unknown key, an unknown dataset function, zoo model, explainer,
        baseline or metric (naming close matches), or a parameter a loader, model or
        explainer does not take.
    """
    if isinstance(config, dict):
        raw, source, base_dir = copy.deepcopy(config), "", str(Path.cwd())
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"no suite config at {str(path)!r}")
        source = path.read_text(encoding="utf-8")
        try:
            raw = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        base_dir = str(path.resolve().parent)
    _check_keys(raw, TOP_KEYS, "the suite")
    quick_table = _table(raw.pop("quick", None), "[quick]")
    _check_keys(quick_table, [k for k in TOP_KEYS if k not in ("name", "quick")], "[quick]")
    if quick:
        raw.update(copy.deepcopy(quick_table))
    for key in ("name", "datasets", "models", "explainers"):
        if key not in raw:
            raise ConfigError(f"a suite needs {key!r}")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string; got {name!r}")
    seeds = raw.setdefault("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"seeds must be a non-empty list of distinct ints >= 0; got {seeds!r}")
    n_inst = raw.setdefault("n_instances", 16)
    if isinstance(n_inst, bool) or not isinstance(n_inst, int) or n_inst < 1:
        raise ConfigError(f"n_instances must be a positive int; got {n_inst!r}")
    imports = raw.setdefault("imports", [])
    if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
        raise ConfigError(f"imports must be a list of module names or .py paths; got {imports!r}")
    import_plugins(imports, base_dir)

    datasets = tuple(_dataset(d, i, quick) for i, d in enumerate(_list(raw, "datasets")))
    _unique([d.label for d in datasets], "dataset")
    models = tuple(_model(m, i, quick) for i, m in enumerate(_list(raw, "models")))
    _unique([m.label for m in models], "model")
    labels = [d.label for d in datasets]
    for m in models:
        _check_known(m.datasets or (), labels, f"dataset label in model {m.label!r} datasets:")
        if not any(d.modality == m.modality and (m.datasets is None or d.label in m.datasets)
                   for d in datasets):
            among = f" among its datasets {list(m.datasets)}" if m.datasets else ""
            raise ConfigError(f"model {m.label!r} takes {m.modality} data but no dataset{among} is "
                              f"{m.modality}")
    baselines = raw.setdefault("baselines", [])
    _check_baselines(baselines, "baselines")
    explainers = tuple(_explainer(e, i, quick) for i, e in enumerate(_list(raw, "explainers")))
    metrics = tuple(_metric(m, i) for i, m in enumerate(raw.setdefault("metrics", [])))
    _unique([m.label for m in metrics], "metric")
    output = raw.setdefault("deletion_output", DELETION_OUTPUTS[0])
    if output not in DELETION_OUTPUTS:
        raise ConfigError(f"deletion_output must be one of {', '.join(map(repr, DELETION_OUTPUTS))}; "
                          f"got {output!r}")
    if output == "logit":
        probs = [m.label for m in models if m.outputs == "probabilities"]
        if probs:
            raise ConfigError(f"deletion_output = \"logit\" needs models that give logits; {probs} give "
                              "probabilities: say deletion_output = \"probability\" (one space per report)")
    suite = Suite(name=name, description=str(raw.get("description", "")), seeds=tuple(seeds),
                  n_instances=n_inst, imports=tuple(imports), datasets=datasets, models=models,
                  explainers=explainers, baselines=baselines, metrics=metrics, quick=quick,
                  config=raw, source=source, base_dir=base_dir, deletion_output=output)
    if not expand_units(suite):
        raise ConfigError(f"suite {name!r} expands to no work unit: no explainer fits its datasets and "
                          "models")
    return suite


def _list(raw: dict, key: str) -> list:
    items = raw[key]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{key} must be a non-empty list (an array of tables [[{key}]]); got {items!r}")
    return items


def _unique(labels, what: str) -> None:
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise ConfigError(f"two {what}s are labelled {label!r}; give one a distinct label")


def _check_params(fn, params: dict, where: str, skip=()) -> None:
    sig = inspect.signature(fn)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    _check_known(params, [p for p in sig.parameters if p not in skip], f"parameter of {where}:")


def _dataset(d, i: int, quick: bool) -> DatasetSpec:
    where, d = _entry(d, "datasets", i, DATASET_KEYS)
    if "loader" not in d:
        raise ConfigError(f"{where} needs a loader (a function of xs.datasets, e.g. 'load_ucr')")
    from .. import datasets as xs_datasets

    loader = d["loader"]
    _check_known([loader], xs_datasets.list_datasets(), "dataset function")
    params = _params(d, where, quick)
    _check_params(getattr(xs_datasets, loader), params, f"{loader} ({where})", skip=("split",))
    modality = d.get("modality", xs_datasets.dataset_modality(loader))
    if modality not in MODALITIES:
        raise ConfigError(f"{where}: say modality = {' or '.join(map(repr, MODALITIES))} for loader "
                          f"{loader!r}"
                          + (f"; got {modality!r}" if modality else ""))
    test_size = d.get("test_size", 0.25)
    if not isinstance(test_size, float) or not 0 < test_size < 1:
        raise ConfigError(f"{where}.test_size must be a float in (0, 1); got {test_size!r}")
    label = d.get("label") or (f"{loader}:{params['name']}" if "name" in params else loader)
    return DatasetSpec(str(label), loader, params, test_size, modality)


def _model(m, i: int, quick: bool) -> ModelSpec:
    where, m = _entry(m, "models", i, MODEL_KEYS)
    if "name" not in m:
        raise ConfigError(f"{where} needs a name, one of the zoo's: {', '.join(zoo.list_models())}")
    _lookup(zoo.model_info, m["name"])
    params = _params(m, where, quick)
    try:
        zoo.check_model_params(m["name"], params)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    only = m.get("datasets")
    if only is not None and (not isinstance(only, list) or not only
                             or not all(isinstance(d, str) for d in only)):
        raise ConfigError(f"{where}.datasets must be a non-empty list of dataset labels; got {only!r}")
    return ModelSpec(_label(m.get("label", m["name"]), where), m["name"], params,
                     None if only is None else tuple(only))


def _label(label, where: str) -> str:
    if not isinstance(label, str) or not label.strip() or "|" in label:
        raise ConfigError(f"{where}.label must be a non-empty string without '|'; got {label!r}")
    return label


def _check_baselines(spec, where: str) -> None:
    from ..baselines import list_baselines

    if spec == "all":
        return
    if not isinstance(spec, list) or not all(isinstance(b, str) for b in spec):
        raise ConfigError(f"{where} must be \"all\" or a list of baseline names; got {spec!r}")
    _check_known(spec, list_baselines(), "baseline")


def _explainer(e, i: int, quick: bool = False) -> dict:
    from ..registry import explainer_info

    where, e = _entry(e, "explainers", i, EXPLAINER_KEYS)
    if ("name" in e) == ("select" in e):
        raise ConfigError(f"{where} needs exactly one of name (a registry name) or select (filters)")
    e = dict(e)
    e["params"] = _params(e, where, quick)
    e.pop("quick_params", None)
    if "label" in e:
        if "select" in e:
            raise ConfigError(f"{where}: a select entry takes no label (its explainers keep their names); "
                              "name one explainer to label it")
        e["label"] = _label(e["label"], where)
    for reserved in ("baseline", "random_state"):
        if reserved in e["params"]:
            raise ConfigError(f"{where}.params sets {reserved!r}; the runner sets it (baselines go "
                              "to the baselines list, random_state comes from the seed)")
    if "baselines" in e:
        _check_baselines(e["baselines"], f"{where}.baselines")
    if "name" in e:
        info = _lookup(explainer_info, e["name"])
        e["name"] = info.qualified_name
        _check_known(e["params"], list(info.params), f"parameter of {info.qualified_name} ({where}):")
    else:
        e["select"] = _table(e["select"], f"{where}.select")
        _check_keys(e["select"], SELECT_KEYS, f"{where}.select")
        exclude = e.setdefault("exclude", [])
        if not isinstance(exclude, list):
            raise ConfigError(f"{where}.exclude must be a list of explainer names; got {exclude!r}")
        e["exclude"] = [_lookup(explainer_info, x).qualified_name for x in exclude]
    return e


def _metric(m, i: int) -> MetricSpec:
    from ..metrics.registry import metric_info

    where, m = _entry(m, "metrics", i, METRIC_KEYS)
    if "name" not in m:
        raise ConfigError(f"{where} needs a name (see xai_suite.metrics.registry.list_metrics())")
    info = _lookup(metric_info, m["name"])
    params = _table(m.get("params"), f"{where}.params")
    _check_params(info.fn, params, f"metric {m['name']} ({where})",
                  skip=("exp", "model", "mask", "explainer"))
    if "softmax" in params and removal_metric(info.fn):
        raise ConfigError(f"{where}.params sets 'softmax'; the suite's deletion_output (\"probability\" or "
                          "\"logit\") sets it, one choice for every metric of the report")
    return MetricSpec(m["name"], params, _label(m.get("label", m["name"]), where))


def removal_metric(fn) -> bool:
    """Whether metric function ``fn`` removes features towards a ``replacement`` (and so
    follows the suite's ``deletion_output``)."""
    params = inspect.signature(fn).parameters
    return "replacement" in params and "softmax" in params


def _resolve_baselines(spec, modality: str) -> list[str]:
    """The baselines of ``modality`` that ``spec`` names; none: the explainer's default."""
    from ..baselines import baseline_info, list_baselines

    if spec == "all":
        return list_baselines(modality) or [DEFAULT_BASELINE]
    return [b for b in spec if modality in baseline_info(b).modalities] or [DEFAULT_BASELINE]


def expand_units(suite: Suite) -> list[Unit]:
    """Every work unit of ``suite``, in a fixed order.

    Datasets x models of their modality (and of the model's ``datasets``) x seeds x explainers
    x baselines. A named explainer joins the datasets of the modalities it explains and the
    models of the kinds it explains (the pairs it skips: :func:`not_applicable`); a
    ``select`` entry takes the registry's explainers for the dataset's modality and the
    model's kind; entries sharing a label merge. An explainer that needs a baseline gets one
    unit per baseline of the dataset's modality (the entry's list, else the suite's; none:
    ``"default"``, its own); others get one unit with baseline ``"-"``.
    """
    return _expand(suite)[0]


def not_applicable(suite: Suite) -> list[dict]:
    """The (dataset, model, explainer) pairs of ``suite`` that are no units: the named
    explainer does not explain the model's kind.

    Returns
    -------
    list of dict
        ``dataset``, ``model``, ``explainer`` (label) and ``reason``, in expansion order.
    """
    return _expand(suite)[1]


def _expand(suite: Suite) -> tuple[list[Unit], list[dict]]:
    from ..registry import explainer_info, list_explainers

    units: list[Unit] = []
    skipped: list[dict] = []
    for d in suite.datasets:
        for m in suite.models:
            if m.modality != d.modality or (m.datasets is not None and d.label not in m.datasets):
                continue
            chosen: dict[str, dict] = {}
            for e in suite.explainers:
                if "name" in e:
                    tags, label = explainer_info(e["name"]).tags, e.get("label", e["name"])
                    fits = d.modality in tags.modalities
                    if fits and m.kind not in tags.model_kinds:
                        fits = False
                        skipped.append({"dataset": d.label, "model": m.label, "explainer": label,
                                        "reason": f"{e['name']} explains {' or '.join(tags.model_kinds)} "
                                                  f"models; {m.label} is {m.kind}"})
                    names = [(label, e["name"])] if fits else []
                else:
                    sel = {"modality": d.modality, "model_kind": m.kind, **e["select"]}
                    names = [(n, n) for n in list_explainers(**sel).qualified_name if n not in e["exclude"]]
                for label, n in names:
                    info = explainer_info(n)
                    bases = [NO_BASELINE]
                    if info.tags.needs_baseline:
                        bases = _resolve_baselines(e.get("baselines", suite.baselines), d.modality)
                    entry = chosen.setdefault(label, {"name": n, "params": {}, "baselines": []})
                    if entry["name"] != n:
                        raise ConfigError(f"the label {label!r} names two explainers, {entry['name']} and "
                                          f"{n}; give one a distinct label")
                    entry["params"].update({k: v for k, v in e["params"].items() if k in info.params})
                    entry["baselines"] += [b for b in bases if b not in entry["baselines"]]
            for seed in suite.seeds:
                for label, entry in chosen.items():
                    for b in entry["baselines"]:
                        units.append(Unit(d.label, m.label, seed, label, b, dict(entry["params"]),
                                          name=None if label == entry["name"] else entry["name"]))
    for e in suite.explainers:  # a select entry's params must reach some explainer
        if "select" in e and e["params"]:
            used = {k for u in units for k in u.explainer_params}
            missing = [k for k in e["params"] if k not in used]
            if missing:
                raise ConfigError(f"explainer params {missing} (select {e['select']}) are taken by none of "
                                  "the explainers selected")
    return units, skipped


_IMPORTED: dict[str, object] = {}


def import_plugins(imports, base_dir: str) -> None:
    """Import modules (dotted names) or ``.py`` files (relative to ``base_dir``) once per process.

    They register the suite's own entries; the runner imports them in every worker too.
    """
    import importlib
    import importlib.util
    import sys

    for item in imports:
        if item.endswith(".py"):
            path = (Path(base_dir) / item).resolve()
            key = str(path)
            if key in _IMPORTED:
                continue
            if not path.is_file():
                raise ConfigError(f"imports: no file {str(path)!r}")
            mod_name = f"_xai_suite_bench_plugin_{len(_IMPORTED)}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
            _IMPORTED[key] = module
        elif item not in _IMPORTED:
            try:
                _IMPORTED[item] = importlib.import_module(item)
            except ImportError as exc:
                raise ConfigError(f"imports: cannot import {item!r}: {exc}") from None
