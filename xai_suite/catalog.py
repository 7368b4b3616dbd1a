"""Registries and plugin loading: one :class:`Registry` type for every kind of named entry
(explainers, baselines, datasets, metrics, zoo models, assignments, result formats).

A registry fills on its first lookup: its built-in modules, then (:func:`load_plugins`, once
per process) the core's methods and the plugins of the :data:`ENTRY_POINT_GROUPS`. This
module imports nothing else of xai-suite, so any module may use it without a cycle.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import warnings
from collections.abc import Iterable, Iterator
from functools import cache
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

ENTRY_POINT_GROUPS = ("xai_suite.adapters", "xai_suite.explainers")
#: Core modules that register explainers, imported before any plugin (so that a plugin's
#: entries never change which core entry a bare name aliases).
CORE_MODULES = (
    "xai_suite.methods.captum",
    "xai_suite.methods.shap",
    "xai_suite.methods.lime",
    "xai_suite.methods.native",
    "xai_suite.concepts",
)
#: The TSInterpret release the adapter is written against (installed with ``--no-deps``).
TSINTERPRET_PIN = "TSInterpret==0.4.7"
#: Optional modules and the extra that installs them.
EXTRA_FOR_MODULE = {
    "transformers": "llm",
    "skimage": "image",
    **dict.fromkeys(("TSInterpret", "tslearn", "deap", "skopt", "pyts", "pymop", "torchcam"), "tsinterpret"),
    **dict.fromkeys(("dask", "distributed", "ray"), "distributed"),
}


#: The modalities of inputs: what explainers, datasets, baselines and zoo models are for.
MODALITIES = ("tabular", "timeseries", "image", "text")


class PluginLoadWarning(UserWarning):
    """A plugin announced through an entry point could not be imported."""


_FAILED_PLUGINS: dict[str, str] = {}
_LOADED = False


def load_plugins() -> None:
    """Import the core's explainer modules and every entry-point plugin (once per process)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in CORE_MODULES:
        importlib.import_module(module)
    for group in ENTRY_POINT_GROUPS:
        for ep in entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:  # a broken plugin must not break the registry
                missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
                hint = f"; install it with {extra_hint(missing)}" if missing else ""
                msg = f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}{hint}"
                _FAILED_PLUGINS[ep.name] = msg
                warnings.warn(f"xai-suite {msg}", PluginLoadWarning, stacklevel=3)


def reload_plugins() -> None:
    """Look for entry points again (after installing a plugin in a running session)."""
    global _LOADED
    _LOADED = False
    importable.cache_clear()
    importlib.invalidate_caches()
    load_plugins()


def failed_plugins_note() -> str:
    """``". Plugins that failed to load: ..."``, or ``""`` when every plugin loaded."""
    return ". Plugins that failed to load: " + "; ".join(_FAILED_PLUGINS.values()) if _FAILED_PLUGINS else ""


@cache
def importable(module: str) -> bool:
    """Whether ``module`` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def extra_hint(module: str) -> str:
    """How to install ``module``: the xai-suite extra that brings it, else its pip name.

    TSInterpret itself is no dependency of any extra (its pins clash with aeon, SHAP and
    scikit-learn): the extra brings what it uses, then TSInterpret goes in with ``--no-deps``.
    """
    top = module.split(".")[0]
    extra = EXTRA_FOR_MODULE.get(top)
    hint = f"pip install 'xai-suite[{extra}]'" if extra else f"pip install {top}"
    return hint + f" && pip install --no-deps {TSINTERPRET_PIN}" if top == "TSInterpret" else hint


def close_matches(name: str, known: Iterable[str], n: int = 4) -> str:
    """``" (did you mean 'a', 'b'?)"`` for the names in ``known`` close to ``name``, else ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=n, cutoff=0.5)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


class Registry(Generic[T]):
    """Named entries of one kind, filled by decorators in modules imported on first use.

    Parameters
    ----------
    what : str
        What an entry is, for messages (``"baseline"``, ``"zoo model"``).
    builtins : tuple of str
        Modules that register the built-in entries, imported on first lookup.
    plugins : bool
        Also load entry-point plugins (:func:`load_plugins`) on first lookup.
    listing : str, optional
        Where to see the entries, for messages; default: the names themselves.
    """

    def __init__(self, what: str, *, builtins: tuple[str, ...] = (), plugins: bool = True,
                 listing: str | None = None):
        self.what = what
        self.builtins = builtins
        self.plugins = plugins
        self.listing = listing
        self._entries: dict[str, T] = {}
        self._loaded = False

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a taken name raises ``ValueError``."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"a {self.what} named {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def load(self) -> Registry[T]:
        """Import the built-in modules and plugins (once); returns the registry."""
        if not self._loaded:
            self._loaded = True
            for module in self.builtins:
                importlib.import_module(module)
        if self.plugins:
            load_plugins()
        return self

    def unknown(self, name: str, known: Iterable[str] | None = None) -> KeyError:
        """The ``KeyError`` for a name that is not registered (``known``: the names to suggest)."""
        known = sorted(self._entries if known is None else known)
        msg = f"unknown {self.what} {name!r}" + close_matches(name, known)
        msg += f"; {self.listing}" if self.listing else f"; known: {', '.join(known)}"
        return KeyError(msg + (failed_plugins_note() if self.plugins else ""))

    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name raises a ``KeyError`` listing close matches."""
        self.load()
        if name not in self._entries:
            raise self.unknown(name)
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self.load()._entries)

    def values(self) -> list[T]:
        """The entries, in registration order."""
        return list(self.load()._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self.load()._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.load()._entries)
