"""``xs.datasets``: the one entry point to every dataset, whichever package implements it.

Modality adapters register their loaders and generators with :func:`register_dataset`;
``xs.datasets.load_ucr`` and the like are looked up (loading plugins) on first access.
"""

from __future__ import annotations

from collections.abc import Callable

from .catalog import MODALITIES, Registry

DATASETS: Registry[Callable] = Registry("dataset function")
#: The modality of each registered dataset function's inputs.
MODALITY: dict[str, str] = {}


def register_dataset(modality: str):
    """Decorator making ``fn`` available as ``xs.datasets.<fn.__name__>``.

    ``modality`` (``tabular``, ``timeseries``, ``image``, ``text``) tells the benchmark runner
    what the inputs are.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r} (decorate "
                         "with @register_dataset(\"tabular\"), not a bare @register_dataset)")

    def decorator(fn: Callable) -> Callable:
        MODALITY[fn.__name__] = modality
        return DATASETS.add(fn.__name__, fn)

    return decorator


def dataset_modality(name: str) -> str:
    """The modality of dataset function ``name`` (``KeyError`` for an unknown name)."""
    DATASETS.get(name)
    return MODALITY[name]


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
