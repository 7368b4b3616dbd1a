"""Launcher of :mod:`xai_suite.bench.scripts.image_baselines` (the benchmark's code and documentation)."""

from xai_suite.bench.scripts.image_baselines import main

if __name__ == "__main__":
    raise SystemExit(main())
