"""The ``xai-suite`` command: ``list``, ``info``, ``baselines``, ``demo``, ``bench``, ``report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("markdown", "csv", "table")


def _render(df, fmt: str) -> str:
    from .registry import to_markdown

    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "markdown":
        return to_markdown(df)
    return df.to_string(index=False)


def _suite_path(name: str) -> Path:
    """A .toml path as given, else ``benchmarks/NAME.toml`` under the current directory."""
    path = Path(name)
    if path.suffix == ".toml" or path.is_file():
        return path
    candidate = Path("benchmarks") / f"{name}.toml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in Path("benchmarks").glob("*.toml"))
    raise FileNotFoundError(f"no suite {name!r}: neither a file nor {candidate}"
                            + (f"; suites here: {', '.join(known)}" if known else ""))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xai-suite`` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="xai-suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="the navigation table: which library offers which "
                            "method for which data type")
    p_list.add_argument("--modality", choices=("tabular", "timeseries", "image", "text"))
    p_list.add_argument("--library")
    p_list.add_argument("--family")
    p_list.add_argument("--model-kind", dest="model_kind")
    p_list.add_argument("--format", choices=FORMATS, default="markdown")
    p_list.add_argument("--entries", action="store_true",
                        help="one row per registry entry instead of the method x library table")
    p_list.add_argument("--all", action="store_true",
                        help="include entries whose optional dependency is missing")

    p_info = sub.add_parser("info", help="an entry's tags, parameters and defaults")
    p_info.add_argument("name")

    p_base = sub.add_parser("baselines", help="registered baselines")
    p_base.add_argument("--modality", choices=("tabular", "timeseries", "image", "text"))

    p_demo = sub.add_parser("demo", help="explain a GunPoint CNN with several methods and "
                            "baselines; print a table, write a plot")
    p_demo.add_argument("--out", default="demo_output")
    p_demo.add_argument("--n", type=int, default=50, help="test instances to explain")
    p_demo.add_argument("--seed", type=int, default=0)

    p_bench = sub.add_parser("bench", help="run (or resume) a benchmark suite; rows go to "
                             "OUT/results.sqlite")
    p_bench.add_argument("name", help="a suite config (.toml path), or NAME for benchmarks/NAME.toml")
    p_bench.add_argument("--quick", action="store_true", help="apply the suite's [quick] overrides")
    p_bench.add_argument("--out", help="run directory (default: bench_results/NAME, "
                         "bench_results/NAME-quick with --quick); rerun to resume")
    p_bench.add_argument("--n-jobs", dest="n_jobs", type=int, default=1,
                         help="parallel workers (-1: every core)")
    p_bench.add_argument("--backend", default="loky",
                         help="joblib backend: loky (default), threading, or a registered ray/dask")

    p_report = sub.add_parser("report", help="Markdown report with intervals and plots of a results store")
    p_report.add_argument("results", help="a run directory or its results.sqlite")
    p_report.add_argument("--out", help="where to write report.md (default: RESULTS/report)")

    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            from .registry import list_explainers, navigation_table

            filters = {"modality": args.modality, "library": args.library,
                       "family": args.family, "model_kind": args.model_kind,
                       "available_only": not args.all}
            df = list_explainers(**filters) if args.entries else navigation_table(**filters)
            if df.empty:
                print("no explainer matches these filters", file=sys.stderr)
                return 1
            if not args.entries and args.format != "csv":
                print("Cells: modalities each library's implementation explains "
                      "(tab, ts, img, text); * marks the recommended one.\n")
            print(_render(df, args.format))
        elif args.command == "info":
            from .registry import explainer_info

            print(explainer_info(args.name))
        elif args.command == "baselines":
            from .baselines import baseline_info, list_baselines

            for name in list_baselines(args.modality):
                info = baseline_info(name)
                print(f"{name:18s} {', '.join(info.modalities):28s} {info.summary}")
        elif args.command == "demo":
            from .demo import run_demo

            run_demo(args.out, n_explain=args.n, random_state=args.seed)
        elif args.command == "bench":
            from .bench import load_suite, run_suite

            suite = load_suite(_suite_path(args.name), quick=args.quick)
            out = args.out or str(Path("bench_results") / (suite.name + ("-quick" if args.quick else "")))
            store = run_suite(suite, out, n_jobs=args.n_jobs, backend=args.backend)
            print(f"results: {store}\nreport: xai-suite report {store.parent}")
        elif args.command == "report":
            from .bench import write_report

            print(write_report(args.results, args.out))
    except (KeyError, ValueError, TypeError, ImportError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"xai-suite: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
