"""Launcher of :mod:`xai_suite.bench.scripts.counterfactuals_ts` (the benchmark's code and documentation)."""

from xai_suite.bench.scripts.counterfactuals_ts import main

if __name__ == "__main__":
    raise SystemExit(main())
