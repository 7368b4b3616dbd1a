"""The benchmark scripts: one module each, run as ``python -m xai_suite.bench.scripts.NAME``
(``benchmarks/NAME.py`` in a checkout launches the same), and as the script suites of
``xai-suite bench`` (:data:`xai_suite.cli.SCRIPT_SUITES`).

Not public API: each module's ``main(argv=None) -> int`` is its command line. Nothing here is
imported by ``import xai_suite`` or ``import xai_suite.bench``.
"""
