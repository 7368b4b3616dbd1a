"""The ``xai-suite`` command: ``list``, ``info``, ``baselines``, ``demo``."""

from __future__ import annotations

import argparse
import sys

FORMATS = ("markdown", "csv", "table")


def _render(df, fmt: str) -> str:
    from .registry import to_markdown

    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "markdown":
        return to_markdown(df)
    return df.to_string(index=False)


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
    except (KeyError, ValueError, TypeError, ImportError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"xai-suite: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
