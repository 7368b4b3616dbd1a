"""The ``xai-suite`` command: ``list``, ``info``, ``baselines``, ``demo``, ``bench``, ``report``,
``explore``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .catalog import MODALITIES

FORMATS = ("markdown", "csv", "table")

_SCRIPTS = "xai_suite.bench.scripts"  # the benchmark scripts' package

#: Suites gathered from the benchmark scripts: NAME -> scripts, each a module run with
#: ``python -m``, the arguments ``--quick`` becomes and whether it takes ``--out DIR`` for its CSVs.
SCRIPT_SUITES: dict[str, tuple[tuple[str, tuple[str, ...], bool], ...]] = {
    "counterfactuals": ((f"{_SCRIPTS}.counterfactuals_ts", ("--quick",), True),),
    "concepts": ((f"{_SCRIPTS}.concepts", ("--quick",), True),),
    # perf_gradients has no --quick: 20 instances and 3 interleaved repeats instead of 100 and 7
    "perf": ((f"{_SCRIPTS}.perf_gradients", ("--n", "20", "--repeats", "3"), False),
             (f"{_SCRIPTS}.perf_timeseries", ("--quick",), False),
             (f"{_SCRIPTS}.perf_tabular", ("--quick",), False),
             (f"{_SCRIPTS}.scaling", ("--quick",), False)),
    "memory": ((f"{_SCRIPTS}.memory", ("--quick",), False),),
}

BENCH_EPILOG = """\
NAME is a suite config: a .toml path, benchmarks/NAME.toml under the current directory, or
a suite that ships with xai-suite ({shipped}).
Its rows go to OUT/results.sqlite; rerun the same command to resume after an interruption,
then `xai-suite report OUT` writes the Markdown report.

Script suites: where benchmarks/NAME.toml does not exist, these names run benchmark scripts
that ship with xai-suite, the modules listed below of xai_suite.bench.scripts (each as
`python -m xai_suite.bench.scripts.MODULE`, one after the other, with this Python, from any
directory), print their output and also write it to OUT/NAME.txt (CSVs of the scripts that
write them go to OUT too); --quick is passed through (perf_gradients, which has no --quick,
gets --n 20 --repeats 3). --n-jobs and --backend do not apply to them.
""" + "\n".join(f"  {name:16s} " + ", ".join(m.removeprefix(f"{_SCRIPTS}.") for m, _, _ in scripts)
                for name, scripts in SCRIPT_SUITES.items())


def _render(df, fmt: str) -> str:
    from .registry import to_markdown

    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "markdown":
        return to_markdown(df)
    return df.to_string(index=False)


def _suite_path(name: str) -> Path | None:
    """A .toml path as given, else ``benchmarks/NAME.toml`` under the current directory, else
    the suite NAME that ships inside the package.

    Returns ``None`` for a script suite (a name of :data:`SCRIPT_SUITES` without a config).
    """
    from .bench import SUITES_DIR, shipped_suites

    path = Path(name)
    if path.suffix == ".toml" or path.is_file():
        return path
    for candidate in (Path("benchmarks") / f"{name}.toml", SUITES_DIR / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    if name in SCRIPT_SUITES:
        return None
    local = sorted(p.stem for p in Path("benchmarks").glob("*.toml"))
    raise FileNotFoundError(f"no suite {name!r}: neither a file nor benchmarks/{name}.toml nor a suite "
                            f"that ships with xai-suite ({', '.join(shipped_suites())}) nor a script "
                            f"suite ({', '.join(SCRIPT_SUITES)})"
                            + (f"; suites in ./benchmarks: {', '.join(local)}" if local else ""))


def run_script_suite(name: str, out_dir, *, quick: bool = False, stream=None) -> int:
    """Run the benchmark scripts of script suite ``name`` (``python -m MODULE``, from any working
    directory); tee their output to ``OUT/NAME.txt``, its first line per script the command run.

    Parameters
    ----------
    name : str
        A key of :data:`SCRIPT_SUITES`.
    out_dir : str or os.PathLike
        Created if missing; receives ``NAME.txt`` and the CSVs of scripts taking ``--out``.
    quick : bool
        Pass each script's quick arguments.
    stream : file-like, optional
        Where the output is echoed (default: ``sys.stdout``).

    Returns
    -------
    int
        0 if every script succeeded, else 1 (the others still run).
    """
    if name not in SCRIPT_SUITES:
        raise KeyError(f"unknown script suite {name!r}; expected one of {', '.join(SCRIPT_SUITES)}")
    stream = sys.stdout if stream is None else stream
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    with open(out / f"{name}.txt", "w", encoding="utf-8") as log:
        def emit(text: str) -> None:
            for f in (stream, log):
                f.write(text)
                f.flush()

        for module, quick_args, takes_out in SCRIPT_SUITES[name]:
            cmd = [sys.executable, "-u", "-m", module, *(quick_args if quick else ()),
                   *(("--out", str(out)) if takes_out else ())]
            emit(f"$ {' '.join(['python', *cmd[2:]])}\n")
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  bufsize=1) as proc:
                for line in proc.stdout:
                    emit(line)
            if proc.returncode != 0:
                failed.append(module)
                emit(f"[{module} exited with status {proc.returncode}]\n")
            emit("\n")
        if failed:
            emit(f"failed: {', '.join(failed)}\n")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xai-suite`` command; returns the exit status."""
    from . import __version__
    from .bench import shipped_suites
    from .bench.cluster import BACKENDS

    parser = argparse.ArgumentParser(prog="xai-suite", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="the navigation table: which library offers which "
                            "method for which data type")
    p_list.add_argument("--modality", choices=MODALITIES)
    p_list.add_argument("--library")
    p_list.add_argument("--family")
    p_list.add_argument("--model-kind", dest="model_kind")
    p_list.add_argument("--format", choices=FORMATS, default="markdown")
    p_list.add_argument("--entries", action="store_true",
                        help="one row per registry entry instead of the method x library table")
    p_list.add_argument("--all", action="store_true",
                        help="include entries whose optional dependency is missing")

    sub.add_parser("info", help="an entry's tags, parameters and defaults").add_argument("name")
    sub.add_parser("baselines", help="registered baselines").add_argument("--modality", choices=MODALITIES)

    p_demo = sub.add_parser("demo", help="explain a GunPoint CNN with several methods and "
                            "baselines; print a table, write a plot")
    p_demo.add_argument("--out", default="demo_output")
    p_demo.add_argument("--n", type=int, default=50, help="test instances to explain")
    p_demo.add_argument("--seed", type=int, default=0)

    p_bench = sub.add_parser("bench", help="run (or resume) a benchmark suite; rows go to "
                             "OUT/results.sqlite",
                             epilog=BENCH_EPILOG.format(shipped=", ".join(shipped_suites())),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    p_bench.add_argument("name", help="a suite config (.toml path), NAME for benchmarks/NAME.toml or "
                         "for a suite that ships with xai-suite, or a "
                         f"script suite ({', '.join(SCRIPT_SUITES)}; see below)")
    p_bench.add_argument("--quick", action="store_true", help="apply the suite's [quick] overrides "
                         "(script suites: the scripts' quick settings)")
    p_bench.add_argument("--out", help="run directory (default: bench_results/NAME, "
                         "bench_results/NAME-quick with --quick); rerun to resume")
    p_bench.add_argument("--n-jobs", dest="n_jobs", type=int,
                         help="parallel workers, -1 every core (default: 1 with loky or threading; "
                         "with dask or ray, every core of the local cluster)")
    p_bench.add_argument("--backend", default="loky", choices=BACKENDS,
                         help="where units run: loky (default: processes on this machine), threading, "
                         "dask or ray (a cluster: the one at --address, else a local one; needs "
                         "pip install 'xai-suite[distributed]')")
    p_bench.add_argument("--address", help="a running cluster for --backend dask (tcp://HOST:8786) "
                         "or ray (HOST:6379, ray://HOST:10001, auto)")

    p_report = sub.add_parser("report", help="Markdown report with intervals and plots of a results store")
    p_report.add_argument("results", help="a run directory or its results.sqlite")
    p_report.add_argument("--out", help="where to write report.md (default: RESULTS/report)")
    p_report.add_argument("--html", action="store_true", help="also write report.html: one self-contained "
                          "page (sortable tables, heat map, curves with bands) that works offline; needs "
                          "pip install 'xai-suite[explore]'")

    p_explore = sub.add_parser("explore", help="a local Dash app: recompute explanations of a model by "
                               "hand (needs pip install 'xai-suite[explore]')")
    p_explore.add_argument("source", help="a zoo model name (trained on its modality's default data), "
                           "module:function returning (model, X, y), or a local Hugging Face model folder")
    p_explore.add_argument("--port", type=int, default=8050)
    p_explore.add_argument("--host", default="127.0.0.1")
    p_explore.add_argument("--seed", type=int, default=0, help="seeds zoo training and stochastic explainers")

    p_course = sub.add_parser("course", help="self-grading assignments: list, init a starter "
                              "file, check a solution")
    course = p_course.add_subparsers(dest="course_command", required=True)
    course.add_parser("list", help="the assignments and the function each asks for")
    p_init = course.add_parser("init", help="write an assignment's starter file into DIR")
    p_init.add_argument("name")
    p_init.add_argument("dir", nargs="?", default=".")
    p_check = course.add_parser("check", help="grade the function in FILE; exit status 0 on full marks")
    p_check.add_argument("name")
    p_check.add_argument("file")
    p_check.add_argument("--seed", type=int, help="seed of the random inputs (default: a new one, "
                         "printed)")

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
            from .bench import ResultsStore, load_suite, run_suite

            config = _suite_path(args.name)
            if config is None:
                out = args.out or str(Path("bench_results") / (args.name + ("-quick" if args.quick else "")))
                status = run_script_suite(args.name, out, quick=args.quick)
                print(f"output: {Path(out) / (args.name + '.txt')}")
                return status
            suite = load_suite(config, quick=args.quick)
            out = args.out or str(Path("bench_results") / (suite.name + ("-quick" if args.quick else "")))
            store = run_suite(suite, out, n_jobs=args.n_jobs, backend=args.backend, address=args.address)
            print(f"results: {store}\nreport: xai-suite report {store.parent}")
            with ResultsStore(store) as results:
                units = results.units()
            failed = units[units.status != "done"]
            if len(failed):
                print(f"xai-suite: {len(failed)} of {len(units)} units failed:", file=sys.stderr)
                for unit, error in zip(failed.unit, failed.error, strict=True):
                    print(f"  {unit}: {error}", file=sys.stderr)
                return 1
        elif args.command == "report":
            from .bench import write_report

            report = write_report(args.results, args.out, html=args.html)
            print(report)
            if args.html:
                print(report.with_suffix(".html"))
        elif args.command == "explore":
            from .explore import make_app

            app = make_app(args.source, random_state=args.seed)
            print(f"xai-suite explore: http://{args.host}:{args.port} (Ctrl-C stops it)")
            app.run(host=args.host, port=args.port, debug=False)
        elif args.command == "course":
            return _course(args)
    except (KeyError, ValueError, TypeError, ImportError, OSError, AttributeError,
            SyntaxError) as exc:  # OSError: a missing file, a locked or full results store, ...
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"xai-suite: error: {msg}", file=sys.stderr)
        return 2
    return 0


def _course(args) -> int:
    from .course import check_file, init_assignment, list_assignments

    if args.course_command == "list":
        for a in list_assignments():
            print(f"{a.name:16s} {a.function + '()':34s} {a.title} ({a.max_score} points)")
    elif args.course_command == "init":
        path = init_assignment(args.name, args.dir)
        print(f"wrote {path}; when it is done: xai-suite course check {args.name} {path}")
    else:
        report = check_file(args.name, args.file, seed=args.seed)
        print(report)
        return 0 if report.passed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
