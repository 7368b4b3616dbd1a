"""Launcher of :mod:`xai_suite.bench.scripts.hmm_reference` (the benchmark's code and documentation)."""

from xai_suite.bench.scripts.hmm_reference import main

if __name__ == "__main__":
    raise SystemExit(main())
