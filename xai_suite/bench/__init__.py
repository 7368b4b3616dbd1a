"""Benchmark suites: declarative configs, a resumable parallel runner, Markdown reports.

>>> from xai_suite.bench import run_suite, write_report
>>> store = run_suite("benchmarks/quick-demo.toml", "results/quick-demo", quick=True)  # doctest: +SKIP
>>> write_report(store, "results/quick-demo/report")                                   # doctest: +SKIP

The command line does the same: ``xai-suite bench quick-demo --quick`` then
``xai-suite report results/quick-demo``.
"""

from .config import ConfigError, Suite, Unit, expand_units, load_suite
from .models import list_models, model_info, register_model
from .report import write_report
from .runner import package_versions, run_suite, run_unit
from .store import ResultsStore

__all__ = [
    "ConfigError",
    "ResultsStore",
    "Suite",
    "Unit",
    "expand_units",
    "list_models",
    "load_suite",
    "model_info",
    "package_versions",
    "register_model",
    "run_suite",
    "run_unit",
    "write_report",
]
