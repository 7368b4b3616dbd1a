"""Launcher of :mod:`xai_suite.bench.scripts.perf_llm` (the benchmark's code and documentation)."""

from xai_suite.bench.scripts.perf_llm import main

if __name__ == "__main__":
    raise SystemExit(main())
