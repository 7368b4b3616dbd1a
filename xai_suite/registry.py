"""The explainer registry: register, list, describe, create; the navigation table.

Every entry has a qualified name ``library:method``; the bare ``method`` is an alias for
the recommended implementation. Plugins register theirs on import (:mod:`xai_suite.catalog`).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import pandas as pd

from ._validation import check_choice
from .base import FAMILIES, Explainer, Tags, check_param_names
from .catalog import MODALITIES, Registry, extra_hint, importable
from .explanation import Explanation
from .modeling import MODEL_KINDS

#: Arguments of :func:`explain` itself: a hyper-parameter of the same name could not be passed.
RESERVED_PARAMS = ("inputs", "method", "target", "fit_data", "baselines", "feature_mask")


@dataclass(frozen=True)
class ExplainerInfo:
    """Registry entry: what an explainer is, what it needs, and how to build it."""

    name: str
    library: str
    cls: type[Explainer]
    tags: Tags
    summary: str
    reference: str
    requires: tuple[str, ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.library}:{self.name}"

    @property
    def params(self) -> dict:
        """Hyper-parameters and their defaults (the shared ones last)."""
        return dict(_defaults(self.cls))

    @property
    def available(self) -> bool:
        """Whether every module the entry needs is importable."""
        return all(importable(m) for m in self.requires)

    def __str__(self) -> str:
        t = self.tags
        lines = [
            f"{self.qualified_name}: {self.summary}",
            f"  family: {t.family}; modalities: {', '.join(t.modalities)}; "
            f"models: {', '.join(t.model_kinds)}",
            f"  needs baseline: {t.needs_baseline}; stochastic: {t.stochastic}; "
            f"completeness delta: {t.has_convergence_delta}; batch invariant: {t.batch_invariant}; "
            f"several inputs: {t.multi_input}",
            "  parameters: " + ", ".join(f"{k}={v!r}" for k, v in self.params.items()),
        ]
        extra = (("reference", self.reference), ("notes", t.notes),
                 ("unavailable", "" if self.available else _missing_message(self)))
        return "\n".join(lines + [f"  {k}: {v}" for k, v in extra if v])


@functools.cache
def _defaults(cls: type[Explainer]) -> tuple[tuple[str, object], ...]:
    """``(name, default)`` of ``cls``'s hyper-parameters, read from its signature once."""
    sig = inspect.signature(cls.__init__).parameters
    return tuple((p, sig[p].default) for p in cls._param_names())


#: Every explainer by qualified name ``library:method``.
EXPLAINERS: Registry[ExplainerInfo] = Registry("explainer",
                                              listing="see xs.list_explainers() or `xai-suite list`")
#: Bare method names -> the qualified name they stand for.
_ALIASES: dict[str, str] = {}
_RECOMMENDED: set[str] = set()


def _missing_message(info: ExplainerInfo) -> str:
    missing = [m for m in info.requires if not importable(m)]
    return f"needs {', '.join(missing)}; install with {extra_hint(missing[0])}"


def register_explainer(
    name: str,
    *,
    library: str,
    modalities,
    model_kinds,
    family: str | None = None,
    needs_baseline: bool = False,
    uses_feature_mask: bool = False,
    needs_fit: bool = False,
    stochastic: bool = False,
    has_convergence_delta: bool = False,
    batch_invariant: bool | None = None,
    multi_input: bool = False,
    summary: str | None = None,
    reference: str = "",
    requires=(),
    recommended: bool = False,
    notes: str = "",
):
    """Class decorator adding an :class:`~xai_suite.base.Explainer` to the registry.

    Parameters
    ----------
    name : str
        The method's name (``integrated_gradients``); the entry is ``library:name``.
    library : str
        Who computes it: ``captum``, ``shap``, ``native``, your package's name, ...
    modalities, model_kinds : sequence of str
    needs_baseline, uses_feature_mask, needs_fit, stochastic, has_convergence_delta, multi_input : bool
    notes : str
        The entry's :class:`~xai_suite.base.Tags` (see there).
    family : str, optional
        Defaults to the base class's family (``GradientExplainer`` -> ``gradient``).
    batch_invariant : bool, optional
        Defaults to ``not stochastic``.
    summary : str, optional
        One line; defaults to the first line of the class docstring.
    requires : sequence of str
        Modules that must be importable (the entry is unavailable otherwise).
    recommended : bool
        Make the bare ``name`` an alias of this entry.
    """
    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    model_kinds = (model_kinds,) if isinstance(model_kinds, str) else tuple(model_kinds)

    def decorator(cls):
        if not (inspect.isclass(cls) and issubclass(cls, Explainer)):
            raise TypeError("register_explainer decorates subclasses of xai_suite.base.Explainer")
        fam = family or cls.family
        check_choice("family", fam, FAMILIES)
        for m in modalities:
            check_choice("modality", m, MODALITIES)
        for k in model_kinds:
            check_choice("model kind", k, MODEL_KINDS)
        if ":" in name or ":" in library:
            raise ValueError("name and library must not contain ':'")
        qname = f"{library}:{name}"
        clash = [p for p in cls._param_names() if p in RESERVED_PARAMS]
        if clash:
            raise ValueError(f"{qname}: hyper-parameter(s) {', '.join(map(repr, clash))} clash with the "
                             f"arguments of xs.explain ({', '.join(RESERVED_PARAMS)}); rename them")
        if recommended and name in _RECOMMENDED:
            raise ValueError(f"{_ALIASES[name]!r} is already the recommended {name!r}")
        tags = Tags(
            family=fam,
            modalities=modalities,
            model_kinds=model_kinds,
            needs_baseline=needs_baseline,
            uses_feature_mask=uses_feature_mask,
            needs_fit=needs_fit,
            stochastic=stochastic,
            has_convergence_delta=has_convergence_delta,
            batch_invariant=(not stochastic) if batch_invariant is None else batch_invariant,
            multi_input=multi_input,
            notes=notes,
        )
        doc = summary or (inspect.getdoc(cls) or name).splitlines()[0]
        info = ExplainerInfo(name, library, cls, tags, doc, reference, tuple(requires))
        EXPLAINERS.add(qname, info)
        cls.info = info
        if recommended:
            _RECOMMENDED.add(name)
            _ALIASES[name] = qname
        else:
            _ALIASES.setdefault(name, qname)
        return cls

    return decorator


def explainer_info(name: str) -> ExplainerInfo:
    """The registry entry for ``name`` (qualified ``library:method`` or a bare alias)."""
    EXPLAINERS.load()
    qname = _ALIASES.get(name, name)
    if qname in EXPLAINERS:
        return EXPLAINERS.get(qname)
    raise EXPLAINERS.unknown(name, known=set(EXPLAINERS.names()) | set(_ALIASES))


def list_explainers(
    modality: str | None = None,
    family: str | None = None,
    library: str | None = None,
    model_kind: str | None = None,
    available_only: bool = True,
) -> pd.DataFrame:
    """One row per registered explainer, filtered.

    Returns
    -------
    pandas.DataFrame
        Columns: name, qualified_name, library, family, modalities, model_kinds,
        needs_baseline, stochastic, recommended, available, summary, reference.
    """
    for what, value, allowed in (("modality", modality, MODALITIES), ("family", family, FAMILIES),
                                 ("model kind", model_kind, MODEL_KINDS)):
        if value is not None:
            check_choice(what, value, allowed)
    rows = []
    for info in EXPLAINERS.values():
        t = info.tags
        if (
            (modality and modality not in t.modalities)
            or (family and family != t.family)
            or (library and library != info.library)
            or (model_kind and model_kind not in t.model_kinds)
            or (available_only and not info.available)
        ):
            continue
        rows.append((info.name, info.qualified_name, info.library, t.family, ", ".join(t.modalities),
                     ", ".join(t.model_kinds), t.needs_baseline, t.stochastic,
                     _ALIASES.get(info.name) == info.qualified_name, info.available, info.summary,
                     info.reference))
    cols = ["name", "qualified_name", "library", "family", "modalities", "model_kinds",
            "needs_baseline", "stochastic", "recommended", "available", "summary", "reference"]
    return pd.DataFrame(rows, columns=cols).sort_values(["family", "name", "library"], ignore_index=True)


_SHORT = {"tabular": "tab", "timeseries": "ts", "image": "img", "text": "text"}


def navigation_table(**filters) -> pd.DataFrame:
    """Which library offers which method for which data type.

    One row per method (family, name), one column per library; a cell lists the
    modalities that library's implementation explains (``tab``, ``ts``, ``img``,
    ``text``), a ``*`` marks the recommended one. Takes the filters of :func:`list_explainers`.
    """
    df = list_explainers(**filters)
    if df.empty:
        return pd.DataFrame()
    df["cell"] = [", ".join(_SHORT[m] for m in mods.split(", ")) + ("*" if rec else "")
                  for mods, rec in zip(df.modalities, df.recommended, strict=True)]
    table = df.pivot_table(index=["family", "name"], columns="library", values="cell",
                           aggfunc="first").fillna("")
    table.columns.name = None
    return table.reset_index()


def to_markdown(df: pd.DataFrame) -> str:
    """Render a DataFrame as a GitHub Markdown table."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def create_explainer(name: str, model, **params) -> Explainer:
    """Build the explainer ``name`` for ``model`` with keyword hyper-parameters ``params``.

    Unknown names and parameters raise errors listing close matches; an entry whose
    optional dependency is missing raises an ``ImportError`` naming the extra to install.
    """
    info = explainer_info(name)
    if not info.available:
        raise ImportError(f"{info.qualified_name} {_missing_message(info)}")
    check_param_names(info.cls, params)
    return info.cls(model, **params)


def explain(
    model,
    inputs,
    method: str = "integrated_gradients",
    target=None,
    *,
    fit_data=None,
    baselines=None,
    feature_mask=None,
    **params,
) -> Explanation:
    """Explain ``inputs`` with one call: create, fit if data is given, explain.

    Parameters
    ----------
    model : torch.nn.Module, estimator or callable
    inputs : array-like, shape (N, ...)
    method : str
        Registry name, e.g. ``"integrated_gradients"`` or ``"captum:occlusion"``.
    target : None, int or array-like of int, shape (N,)
    fit_data : array-like or tuple (X, y), optional
        Training data for explainers and baselines that learn from data.
    baselines, feature_mask : array-like, optional
        Passed to ``explain`` (see :meth:`AttributionExplainer.explain`).
    **params
        Hyper-parameters of the explainer.
    """
    explainer = create_explainer(method, model, **params)
    if fit_data is not None:
        X, y = fit_data if isinstance(fit_data, tuple) else (fit_data, None)
        explainer.fit(X, y)
    data = {k: v for k, v in (("baselines", baselines), ("feature_mask", feature_mask)) if v is not None}
    return explainer.explain(inputs, target, **data)
