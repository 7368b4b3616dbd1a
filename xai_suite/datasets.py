"""``xs.datasets``: the one entry point to every dataset, whichever package implements it.

Modality adapters register their loaders and generators with :func:`register_dataset`;
``xs.datasets.load_ucr`` and the like are looked up (loading plugins) on first access.
"""

from __future__ import annotations

from collections.abc import Callable

from .catalog import Registry

DATASETS: Registry[Callable] = Registry("dataset function")


def register_dataset(fn: Callable) -> Callable:
    """Decorator making ``fn`` available as ``xs.datasets.<fn.__name__>``."""
    return DATASETS.add(fn.__name__, fn)


def list_datasets() -> list[str]:
    """Names of the registered dataset functions."""
    return sorted(DATASETS.names())


def __getattr__(name: str) -> Callable:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return DATASETS.get(name)
    except KeyError as exc:
        raise AttributeError(f"xai_suite.datasets has no {exc.args[0].removeprefix('unknown ')}") from None
