"""Launcher of :mod:`xai_suite.bench.scripts.scaling` (the benchmark's code and documentation)."""

from xai_suite.bench.scripts.scaling import main

if __name__ == "__main__":
    raise SystemExit(main())
