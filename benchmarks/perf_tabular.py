"""Launcher of :mod:`xai_suite.bench.scripts.perf_tabular` (the benchmark's code and documentation)."""

from xai_suite.bench.scripts.perf_tabular import main

if __name__ == "__main__":
    raise SystemExit(main())
