"""Concept Bottleneck Model vs Concept Embedding Model on XOR, Trigonometry and Dot.

For each dataset and seed s = 0 .. ``--seeds``-1: ``make_<dataset>(--n-samples, random_state=s)``,
split into train and test (``--test-size`` 0.33, seeded with s, as in the pytorch_explain
tutorial), then fit, with ``random_state=s``:

- CBM: ``ConceptBottleneckModel(training_scheme="joint", concept_activation="sigmoid")``;
- CEM: ``ConceptEmbeddingModel()`` (embedding size 8, RandInt probability 0.25);

both at the library defaults, which follow the CEM paper's reference tutorial (concept encoder
7-10-8-concepts for the CBM, 7-10 then concept embeddings for the CEM; a linear task head, as the
paper's ``linear_c2y``; AdamW, learning rate 0.01, 500 full-batch epochs, loss = task +
2 x concept). ``--task-hidden 16`` gives both an MLP task head instead (a linear head cannot
compute XOR from XOR's two concepts).

Measured on the test split: task accuracy, concept accuracy (all concepts of all instances,
thresholded at 0.5) and task accuracy after intervening on all concepts (every predicted concept
replaced by the true one). Each is printed as the mean over seeds with a 95% Student-t interval
over seeds (5 values: a bootstrap over so few is too narrow), clipped to [0, 1]. Then the published picture is
checked: on Trigonometry with 500 samples a sigmoid CBM reaches about 80% task accuracy
(mean within [0.70, 0.90]) and a CEM close to 100% (mean >= 0.95); and CEM at least matches CBM
on all three datasets (the 95% t-interval of the per-seed difference CEM - CBM in task accuracy
reaches 0 or above, i.e. CEM is not significantly worse).

Run time of the defaults: 30 fits of about a second each on one thread (a few minutes at most on
a busy 2-core machine). ``--quick`` runs 2 seeds of 200 samples for 100 epochs (seconds); its
numbers do not test the published picture.

Run: ``python -m xai_suite.bench.scripts.concepts [--seeds 5] [--n-samples 500] [--quick]
[--task-hidden 16] [--out DIR]``. ``xai-suite bench concepts [--quick]`` runs it and saves its output
to ``OUT/concepts.txt``. In a checkout, ``python benchmarks/concepts.py`` is the same.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

DATASETS = {"xor": "XOR", "trigonometry": "Trigonometry", "dot": "Dot"}
MODELS = ("CBM", "CEM")
METRICS = {
    "task_accuracy": "task accuracy",
    "concept_accuracy": "concept accuracy",
    "intervened_accuracy": "task acc., all concepts intervened",
}
#: The published picture (CEM paper; pytorch_explain's Trigonometry tutorial, 500 samples).
CBM_TRIG_RANGE = (0.70, 0.90)
CEM_TRIG_MIN = 0.95


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0 .. seeds-1); at least 2")
    p.add_argument("--n-samples", type=int, default=500)
    p.add_argument("--test-size", type=float, default=0.33)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the models' 500)")
    p.add_argument("--task-hidden", type=int, nargs="*", default=[],
                   help="hidden widths of both task heads (default: none, a linear head)")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--quick", action="store_true", help="2 seeds, 200 samples, 100 epochs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    p.add_argument("--out", type=Path, default=None, help="folder for concepts_runs.csv and "
                   "concepts_summary.csv")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.n_samples, args.epochs = 2, 200, 100
    if args.seeds < 2:
        p.error("--seeds must be at least 2 (an interval over seeds needs two)")
    return args


def run_one(dataset: str, model_name: str, seed: int, args) -> dict:
    """Fit one model on one seed's split and measure it on the test split."""
    from sklearn.model_selection import train_test_split

    import xai_suite as xs
    from xai_suite.concepts import ConceptBottleneckModel, ConceptEmbeddingModel, intervene

    X, C, y = getattr(xs.datasets, f"make_{dataset}")(args.n_samples, random_state=seed)
    Xtr, Xte, Ctr, Cte, ytr, yte = train_test_split(X, C, y, test_size=args.test_size, random_state=seed)
    kw = {"task_hidden_sizes": tuple(args.task_hidden), "random_state": seed}
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if model_name == "CBM":
        model = ConceptBottleneckModel(training_scheme="joint", concept_activation="sigmoid", **kw)
    else:
        model = ConceptEmbeddingModel(**kw)
    t0 = time.perf_counter()
    model.fit(Xtr, Ctr, ytr)
    fit_s = time.perf_counter() - t0
    return {
        "dataset": dataset,
        "model": model_name,
        "seed": seed,
        "n_train": len(ytr),
        "n_test": len(yte),
        "task_accuracy": float((model.predict(Xte) == yte).mean()),
        "concept_accuracy": float((model.predict_concepts(Xte) == Cte).mean()),
        "intervened_accuracy": float((intervene(model, Xte, Cte).argmax(1) == yte).mean()),
        "fit_seconds": fit_s,
    }


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds of every metric (clipped to [0, 1]), per dataset and model."""
    from xai_suite.metrics.statistics import t_interval

    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=False):
        row = {"dataset": dataset, "model": model, "seeds": len(g)}
        for m in METRICS:
            lo, hi = t_interval(g[m].to_numpy())
            lo, hi = max(lo, 0.0), min(hi, 1.0)  # accuracies: the interval stays in [0, 1]
            row.update({m: g[m].mean(), f"{m}_low": lo, f"{m}_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(runs: pd.DataFrame, dataset: str) -> tuple[float, float, float]:
    """Mean and 95% t-interval of CEM - CBM task accuracy over the seeds of ``dataset``."""
    from xai_suite.metrics.statistics import t_interval

    g = runs[runs.dataset == dataset].pivot(index="seed", columns="model", values="task_accuracy")
    d = (g["CEM"] - g["CBM"]).to_numpy()
    lo, hi = t_interval(d)
    return float(d.mean()), lo, hi


def _cell(row, m: str) -> str:
    return f"{row[m]:.3f} [{row[f'{m}_low']:.3f}, {row[f'{m}_high']:.3f}]"


def print_table(summary: pd.DataFrame, args) -> None:
    n_test = round(args.n_samples * args.test_size)
    head = "linear task head" if not args.task_hidden else f"task head hidden {tuple(args.task_hidden)}"
    print(f"Concept models: CBM (joint, sigmoid) vs CEM; {args.n_samples} samples "
          f"(about {args.n_samples - n_test} train / {n_test} test), {args.seeds} seeds, {head}")
    print("each cell: mean [95% t-interval over seeds]")
    widths = (14, 6, 24, 24, 24)
    titles = ("dataset", "model", *METRICS.values())
    print("  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip())
    for _, row in summary.iterrows():
        cells = (DATASETS[row.dataset], row.model, *(_cell(row, m) for m in METRICS))
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    print()


def check_picture(runs: pd.DataFrame, summary: pd.DataFrame, args) -> list[str]:
    """Lines saying whether each part of the published picture holds."""
    lines = []
    get = summary.set_index(["dataset", "model"])
    if "trigonometry" in set(summary.dataset):
        cbm = get.loc[("trigonometry", "CBM"), "task_accuracy"]
        cem = get.loc[("trigonometry", "CEM"), "task_accuracy"]
        ok = CBM_TRIG_RANGE[0] <= cbm <= CBM_TRIG_RANGE[1]
        lines.append(f"check: Trigonometry CBM task accuracy about 80% (mean in {list(CBM_TRIG_RANGE)}): "
                     f"{cbm:.3f} {'ok' if ok else 'MISSED'}")
        ok = cem >= CEM_TRIG_MIN
        lines.append(f"check: Trigonometry CEM task accuracy close to 100% (mean >= {CEM_TRIG_MIN}): "
                     f"{cem:.3f} {'ok' if ok else 'MISSED'}")
    for dataset in summary.dataset.unique():
        mean, lo, hi = paired_difference(runs, dataset)
        ok = hi >= 0
        lines.append(f"check: {DATASETS[dataset]} CEM at least matches CBM (CEM - CBM task accuracy "
                     f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}], upper bound >= 0): {'ok' if ok else 'MISSED'}")
    missed = sum("MISSED" in line for line in lines)
    verdict = "holds" if not missed else f"does not hold ({missed} check(s) missed)"
    note = " (quick settings: not the published setting)" if args.quick else ""
    lines.append(f"published picture: {verdict}{note}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runs = []
    for dataset in args.datasets:
        for seed in range(args.seeds):
            for model in MODELS:
                runs.append(run_one(dataset, model, seed, args))
                print(f"  {DATASETS[dataset]} seed {seed} {model}: task {runs[-1]['task_accuracy']:.3f} "
                      f"({runs[-1]['fit_seconds']:.1f} s)", file=sys.stderr)
    runs = pd.DataFrame(runs)
    summary = summarise(runs)
    print_table(summary, args)
    for line in check_picture(runs, summary, args):
        print(line)
    print(f"\ntotal time {time.perf_counter() - t0:.0f} s ({len(runs)} fits, mean fit "
          f"{runs.fit_seconds.mean():.2f} s, {args.threads} torch thread(s))")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        runs.to_csv(args.out / "concepts_runs.csv", index=False)
        summary.to_csv(args.out / "concepts_summary.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
