"""Benchmark suites: declarative configs, a resumable parallel runner, Markdown reports.

>>> from xai_suite.bench import run_suite, write_report
>>> store = run_suite(SUITES_DIR / "quick-demo.toml", "results/quick-demo", quick=True)  # doctest: +SKIP
>>> write_report(store, "results/quick-demo/report")                                   # doctest: +SKIP

The command line does the same: ``xai-suite bench quick-demo --quick`` then
``xai-suite report results/quick-demo``; ``xai-suite bench counterfactuals|concepts|perf``
runs the adapters' benchmark scripts instead (see ``xai-suite bench --help``).
"""

from .config import (
    SUITES_DIR,
    ConfigError,
    Suite,
    Unit,
    expand_units,
    load_suite,
    not_applicable,
    shipped_suites,
)
from .models import list_models, model_info, register_model
from .report import curve_summary, model_summary, summarise, write_report
from .runner import StoreLockedError, model_quality, package_versions, run_suite, run_unit
from .store import ResultsStore, StoreFullError

__all__ = [
    "SUITES_DIR",
    "ConfigError",
    "ResultsStore",
    "StoreFullError",
    "StoreLockedError",
    "Suite",
    "Unit",
    "curve_summary",
    "expand_units",
    "list_models",
    "load_suite",
    "model_info",
    "model_quality",
    "model_summary",
    "not_applicable",
    "package_versions",
    "register_model",
    "run_suite",
    "run_unit",
    "shipped_suites",
    "summarise",
    "write_report",
]
