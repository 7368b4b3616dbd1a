"""``xs.datasets``: the one entry point to every dataset, whichever package implements it.

Modality adapters register their loaders and generators with :func:`register_dataset`;
``xs.datasets.load_ucr`` and the like are looked up (loading plugins) on first access.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

_DATASETS: dict[str, Callable] = {}


def register_dataset(fn: Callable) -> Callable:
    """Decorator making ``fn`` available as ``xs.datasets.<fn.__name__>``."""
    name = fn.__name__
    if name in _DATASETS and _DATASETS[name] is not fn:
        raise ValueError(f"a dataset function named {name!r} is already registered")
    _DATASETS[name] = fn
    return fn


def list_datasets() -> list[str]:
    """Names of the registered dataset functions."""
    from .registry import load_plugins

    load_plugins()
    return sorted(_DATASETS)


def __getattr__(name: str) -> Callable:
    if name.startswith("__"):
        raise AttributeError(name)
    from .registry import _FAILED_PLUGINS, load_plugins

    load_plugins()
    if name in _DATASETS:
        return _DATASETS[name]
    close = difflib.get_close_matches(name, list(_DATASETS), n=3)
    msg = f"xai_suite.datasets has no dataset function {name!r}"
    if close:
        msg += f"; did you mean {', '.join(map(repr, close))}?"
    if _FAILED_PLUGINS:
        msg += ". Plugins that failed to load: " + "; ".join(_FAILED_PLUGINS.values())
    raise AttributeError(msg)
