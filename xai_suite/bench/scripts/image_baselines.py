"""Which Integrated Gradients baseline should I trust on images?

For each dataset and seed ``s`` (``--seeds``, default 0 1 2), data and model are drawn anew:

- ``planted``: ``make_planted_patch_images`` (16x16, one channel; class 1 = a 4x4 checkerboard
  patch at a random place, mask known; every image also has a flat grey distractor square of
  the same mean brightness). Training set 600 images (``random_state=s``), test set
  ``random_state=10_000 + s``; the first ``--n`` class-1 test images are explained for class 1.
- ``digits``: ``load_digits_images`` split with ``random_state=s`` (1,347 train / 450 test,
  8x8 in [0, 1], 0 = background); ``--n`` test images drawn with seed ``s`` are explained for
  their true digit.

A ``CNN2d`` (widths 16, 32) is trained on one thread with ``torch.manual_seed(s)`` and
``fit_classifier(epochs=15 | 20, lr=1e-2, batch_size=32, random_state=s)`` (about 3 s each);
its test accuracy is printed with a Wilson interval. Then ``native:integrated_gradients``
(``--steps`` Gauss-Legendre points, 50) runs with every image baseline of
``xs.list_baselines("image")``, less exact duplicates (``zeros`` and ``constant``, whose
default value is 0, give the same image as ``black`` on every input; the script checks this
and drops only baselines whose images equal an earlier one's). Fitted baselines
(``training_mean``, ``training_median``, ``training_sample``, ``nearest_unlike``) get
``fit(X_train, y_train)``; random ones (``uniform``, ``gaussian``, ``training_sample`` =
expected gradients) are averaged over ``--samples`` draws per image (the explainer's
``n_baseline_samples``), seeded with ``random_state=s``. The control row is
``native:random`` (i.i.d. normal attributions, seeded).

Measured per image (``xai_suite.metrics``):

- ``del. (blur)`` / ``ins. (blur)``: deletion and insertion AUC of the target's softmax
  probability over ``--curve-steps`` (64) equal steps of the pixels (1 px a step on digits,
  4 px on planted), pixels ranked by signed attribution; a removed pixel is replaced by the
  image blurred with a Gaussian of 2 px (``replacement={"name": "blur", "sigma": 2}``). The
  replacement is the same for every baseline, so no baseline is judged against its own
  image; blurring keeps each image's local brightness but wipes out fine structure (the
  checkerboard's texture, the digits' strokes), which is what the models read. Caveat:
  it is related to the ``blur`` baseline (sigma 5 px), which it may favour.
- ``del. (0)``: deletion AUC with replacement 0 (= the ``black`` baseline's image), printed to
  show how much the replacement decides: a baseline is favoured by a replacement equal to it.
- ``AUROC``: localisation of ``|attribution|`` against the planted mask (planted set only).
- ``compl. err``: completeness error ``|sum(a) - (f(x) - f(b))| / |f(x) - f(b)|`` on the
  target's logit, ``f(b)`` averaged over baseline draws (not defined for the control).
- ``p(b)``: the target's softmax probability at the baseline, averaged over draws; not
  ranked, but a baseline the model reads as the explained class explains little.

Every cell is ``mean [95% percentile bootstrap interval]`` (10,000 resamples) over the
``n x seeds`` (image, seed) pairs; images and models are redrawn per seed, so the pairs are
independent draws. The best baseline of each metric is compared with the runner-up by
:func:`xai_suite.metrics.paired_test` on the same pairs (bootstrap interval of the mean
difference, Wilcoxon p). The headline metric is AUROC where a ground-truth mask exists
(planted), else insertion (blur) (digits). Figures: ``grid_planted.png`` and
``grid_digits.png`` ("one image, every baseline", :func:`xai_suite.viz.image.plot_baseline_grid`,
the first seed's model) in ``--out``, with ``runs.csv`` (per image) and ``summary.csv``.

Run: ``python -m xai_suite.bench.scripts.image_baselines [--seeds 0 1 2] [--n 64] [--steps 50]
[--samples 8] [--curve-steps 64] [--datasets planted digits] [--baselines ...] [--quick] [--out
bench_results/image_baselines]``. ``--quick``: seed 0, 12 images, 16 steps, 4 draws (about 20 s with
the two trainings). In a checkout, ``python benchmarks/image_baselines.py`` is the same.

Measured with the defaults (``python -m xai_suite.bench.scripts.image_baselines``: 3 seeds x 64 images = 192
(image, seed) pairs per cell; 113 s on the shared 2-core machine, one torch thread). Model test
accuracy: planted 1.000 [0.992, 1.000], digits 0.987 [0.979, 0.992] (Wilson, over the seeds).
Means [95% bootstrap interval]; relative completeness error < 2% for every IG row.

planted (target class 1; the headline is AUROC)::

    baseline         AUROC                  del. (blur)  ins. (blur)  del. (0)  p(b)
    nearest_unlike   0.956 [0.951, 0.962]   0.019        0.982        0.016     0.001
    black            0.946 [0.942, 0.951]   0.018        0.979        0.041     0.000
    blur             0.941 [0.936, 0.946]   0.018        0.983        0.018     0.000
    training_median  0.941 [0.936, 0.946]   0.018        0.983        0.020     0.000
    training_mean    0.940 [0.935, 0.945]   0.018        0.983        0.018     0.000
    gray             0.928 [0.918, 0.939]   0.019        0.981        0.019     0.958
    training_sample  0.873 [0.866, 0.881]   0.018        0.983        0.018     0.501
    gaussian         0.835 [0.823, 0.847]   0.534        0.561        0.473     1.000
    uniform          0.725 [0.708, 0.742]   0.019        0.981        0.016     1.000
    white            0.667 [0.652, 0.683]   0.630        0.417        0.764     1.000
    native:random    0.501 [0.490, 0.511]   0.513        0.517        0.483     n/a

    headline: nearest_unlike - black = +0.010 [+0.005, +0.016] AUROC, Wilcoxon p = 1.2e-4

digits (target = the true digit; the headline is insertion (blur))::

    baseline         ins. (blur)            del. (blur)            del. (0)  p(b)
    blur             0.944 [0.938, 0.949]   0.133 [0.120, 0.146]   0.061     0.104
    uniform          0.935 [0.926, 0.943]   0.161 [0.146, 0.178]   0.176     0.102
    training_sample  0.934 [0.927, 0.941]   0.170 [0.152, 0.190]   0.143     0.104
    training_mean    0.931 [0.919, 0.941]   0.144 [0.130, 0.160]   0.137     0.079
    gray             0.926 [0.914, 0.937]   0.162 [0.147, 0.179]   0.175     0.101
    training_median  0.917 [0.904, 0.928]   0.189 [0.169, 0.211]   0.160     0.079
    black            0.908 [0.895, 0.920]   0.280 [0.250, 0.309]   0.058     0.086
    nearest_unlike   0.810 [0.784, 0.835]   0.400 [0.365, 0.435]   0.255     0.046
    white            0.743 [0.714, 0.771]   0.598 [0.569, 0.626]   0.649     0.132
    gaussian         0.698 [0.666, 0.729]   0.622 [0.583, 0.659]   0.360     0.857
    native:random    0.631 [0.600, 0.662]   0.638 [0.607, 0.669]   0.418     n/a

    headline: blur - uniform = +0.009 [+0.003, +0.016] insertion AUC, Wilcoxon p = 0.0044;
    deletion (blur): blur - training_mean = -0.011 [-0.019, -0.004], p = 0.016

What they say:

- Avoid ``white`` and ``gaussian`` on both sets: their deletion curves are no better than the
  random control's (planted: 0.63 and 0.53 vs 0.51; digits 0.60 and 0.62 vs 0.64). A Gaussian
  baseline is a noisy copy of the image (p(b) = 1.00 on planted, 0.86 on digits), so the path
  never leaves the explained class; white lies at the top of the pixel range, so ``x - b`` is
  near 0 on the checkerboard's bright cells and they get almost nothing.
- planted: the "absent" baselines (black, blur, training mean / median, nearest unlike) all
  localise the patch at AUROC 0.94-0.96, best ``nearest_unlike`` (significantly, but by 0.01).
  Deletion and insertion saturate there: the mean target probability falls from 1 to about
  0.7 after the top 4 pixels and below 0.01 after the top 8 of the 16 patch pixels (seed 0,
  black and training_mean), so every baseline except white and gaussian ties at 0.018 /
  0.98, and their paired tests (differences of 1e-5) say nothing; AUROC is the metric that
  tells them apart. ``uniform`` noise ranks the top pixels right (deletion 0.019) but spreads
  |attribution| over the background (AUROC 0.73). Gray, uniform and white images are
  themselves read as class 1 by these models (p(b) 0.96-1.00), a reason to look at p(b).
- digits: ``blur`` wins insertion and deletion with the blur replacement, and is second
  (0.061 vs black's 0.058, not significant, p = 0.68) with replacement 0. Caveat: the
  replacement decides much of the ranking. Replacement 0 is black's own image, and black
  wins there although it is seventh of ten with the blur replacement (0.280). The blur
  replacement resembles the blur baseline and may favour it in the same way. Blur is the one
  baseline near the top under both replacements, so it is the safer choice here, with
  ``training_mean`` next.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

DATASETS = ("planted", "digits")
#: Column key -> (title, higher is better (None: descriptive, not ranked), number format).
METRICS = {
    "deletion": ("del. (blur)", False, "{:.3f}"),
    "insertion": ("ins. (blur)", True, "{:.3f}"),
    "deletion_0": ("del. (0)", False, "{:.3f}"),
    "auroc": ("AUROC", True, "{:.3f}"),
    "completeness": ("compl. err", False, "{:.1e}"),
    "p_baseline": ("p(b)", None, "{:.3f}"),
}
HEADLINE = {"planted": "auroc", "digits": "insertion"}
CONTROL = "native:random"
IG = "native:integrated_gradients"
BLUR_SIGMA = 2.0
N_RESAMPLES = 10_000


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds; each draws its own data split and trains its own model")
    p.add_argument("--n", type=int, default=64, help="test images explained per dataset and seed")
    p.add_argument("--steps", type=int, default=50, help="IG integration points (Gauss-Legendre)")
    p.add_argument("--samples", type=int, default=8, help="draws per image of random baselines")
    p.add_argument("--curve-steps", type=int, default=64,
                   help="points of the deletion/insertion curves (64: 1 px on digits, 4 px on planted)")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--baselines", nargs="+", default=None,
                   help="baseline names (default: every image baseline less exact duplicates)")
    p.add_argument("--quick", action="store_true", help="seed 0, 12 images, 16 steps, 4 draws")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny CNNs: 1 is fastest)")
    p.add_argument("--out", type=Path, default=Path("bench_results/image_baselines"),
                   help="folder for the grid PNGs, runs.csv and summary.csv")
    p.add_argument("--no-figures", action="store_true", help="skip the baseline-grid PNGs")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.n, args.steps, args.samples = [0], 12, 16, 4
    for name in ("n", "steps", "samples", "curve_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive int")
    if args.n < 2:
        p.error("--n must be at least 2 (an interval needs two values)")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        p.error("--seeds must be distinct non-negative ints")
    return args


@dataclass
class Setup:
    """One dataset at one seed: training data, the trained model and the images to explain."""

    dataset: str
    seed: int
    model: torch.nn.Module
    X_train: np.ndarray  # (M, 1, H, W) float32
    y_train: np.ndarray  # (M,) int64
    x: np.ndarray  # (n, 1, H, W): the explained images
    target: np.ndarray  # (n,) int64: class explained
    mask: np.ndarray | None  # (n, 1, H, W) bool, planted only
    accuracy: tuple[int, int]  # (correct, total) on the whole test split


def _train(X, y, n_classes: int, epochs: int, seed: int) -> torch.nn.Module:
    from xai_suite.modeling import fit_classifier
    from xai_suite_image import CNN2d

    torch.manual_seed(seed)
    return fit_classifier(CNN2d(1, n_classes), X, y, epochs=epochs, lr=1e-2, batch_size=32,
                          random_state=seed)


def _accuracy(model, X, y) -> tuple[int, int]:
    with torch.no_grad():
        pred = model(torch.from_numpy(X)).argmax(1).numpy()
    return int((pred == y).sum()), len(y)


def make_setup(dataset: str, seed: int, n: int) -> Setup:
    """Draw the data of ``seed``, train the model, pick the ``n`` images to explain."""
    import xai_suite as xs
    import xai_suite_image  # noqa: F401 (registers the image datasets and baselines)

    if dataset == "planted":
        Xtr, ytr, _ = xs.datasets.make_planted_patch_images(600, random_state=seed)
        Xte, yte, mte = xs.datasets.make_planted_patch_images(2 * n + 40, random_state=10_000 + seed)
        model = _train(Xtr, ytr, 2, 15, seed)
        rows = np.flatnonzero(yte == 1)[:n]
        if len(rows) < n:
            raise RuntimeError(f"planted test set has only {len(rows)} class-1 images; need {n}")
        return Setup(dataset, seed, model, Xtr, ytr, Xte[rows], np.ones(n, dtype=np.int64), mte[rows],
                     _accuracy(model, Xte, yte))
    Xtr, ytr = xs.datasets.load_digits_images("train", random_state=seed)
    Xte, yte = xs.datasets.load_digits_images("test", random_state=seed)
    model = _train(Xtr, ytr, 10, 20, seed)
    rows = np.sort(np.random.default_rng(seed).choice(len(Xte), size=min(n, len(Xte)), replace=False))
    return Setup(dataset, seed, model, Xtr, ytr, Xte[rows], yte[rows], None, _accuracy(model, Xte, yte))


def choose_baselines(x: np.ndarray, target: np.ndarray, names=None) -> tuple[list[str], dict[str, str]]:
    """Image baselines to compare, and the left-out duplicates (name -> the one it equals).

    A deterministic, unfitted baseline is a duplicate when its images equal an earlier
    (alphabetical) baseline's on ``x``; e.g. ``zeros`` and ``constant`` (value 0) equal ``black``.
    """
    import xai_suite as xs
    from xai_suite.baselines import ensure_baseline

    if names is not None:
        unknown = sorted(set(names) - set(xs.list_baselines("image")))
        if unknown:
            raise ValueError(f"unknown image baselines {unknown}; known: {xs.list_baselines('image')}")
        return list(names), {}
    kept, dropped, seen = [], {}, {}
    xt = torch.from_numpy(x)
    for name in xs.list_baselines("image"):
        b = ensure_baseline(name)
        if not (b.stochastic or b.needs_fit):
            img = b.sample(xt, target, 1, np.random.default_rng(0))[0]
            same = next((k for k, v in seen.items() if torch.equal(v, img)), None)
            if same is not None:
                dropped[name] = same
                continue
            seen[name] = img
        kept.append(name)
    return kept, dropped


def _explain(setup: Setup, method: str, args, baseline: str | None = None):
    import xai_suite as xs

    params = {"random_state": setup.seed}
    if method == IG:
        params.update(baseline=baseline, n_steps=args.steps, n_baseline_samples=args.samples)
    explainer = xs.create_explainer(method, setup.model, **params)
    if explainer.requires_fit:
        explainer.fit(setup.X_train, setup.y_train)
    return explainer.explain(setup.x, setup.target)


def measure(setup: Setup, exp, curve_steps: int) -> dict[str, np.ndarray]:
    """Every metric of one explanation, one value per image."""
    from xai_suite.metrics import auroc, completeness_error, deletion_auc, insertion_auc
    from xai_suite.metrics.faithfulness import target_outputs

    kw = {"model": setup.model, "n_steps": curve_steps, "softmax": True}
    n = len(exp)
    out = {
        "deletion": deletion_auc(exp, replacement={"name": "blur", "sigma": BLUR_SIGMA}, **kw),
        "insertion": insertion_auc(exp, replacement={"name": "blur", "sigma": BLUR_SIGMA}, **kw),
        "deletion_0": deletion_auc(exp, replacement=0.0, **kw),
        "auroc": auroc(exp, mask=setup.mask) if setup.mask is not None else np.full(n, np.nan),
        "completeness": np.full(n, np.nan),
        "p_baseline": np.full(n, np.nan),
    }
    if exp.baselines is not None:
        out["completeness"] = completeness_error(exp, model=setup.model, relative=True)
        b = np.asarray(exp.baselines, dtype=np.float32)  # (S, n, C, H, W)
        with target_outputs(setup.model, softmax=True) as f:
            p = f(torch.from_numpy(b.reshape(-1, *b.shape[2:])), np.tile(exp.target, len(b)))
        out["p_baseline"] = p.reshape(len(b), n).mean(0)
    return out


def run_setup(setup: Setup, baselines: list[str], args) -> pd.DataFrame:
    """Per-image metric values of IG under every baseline and of the control."""
    frames = []
    for row, method, baseline in [*((b, IG, b) for b in baselines), (CONTROL, CONTROL, None)]:
        values = measure(setup, _explain(setup, method, args, baseline), args.curve_steps)
        frames.append(pd.DataFrame({"dataset": setup.dataset, "seed": setup.seed, "row": row,
                                    "image": np.arange(len(setup.x)), **values}))
    return pd.concat(frames, ignore_index=True)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% bootstrap interval over the (image, seed) pairs, per dataset, row and metric."""
    from xai_suite.metrics.statistics import bootstrap_interval

    rows = []
    for (dataset, row), g in runs.groupby(["dataset", "row"], sort=False):
        out = {"dataset": dataset, "row": row, "pairs": len(g)}
        for m in METRICS:
            v = g[m].to_numpy()
            if np.isnan(v).all():
                continue
            lo, hi = bootstrap_interval(v, n_resamples=N_RESAMPLES, random_state=0)
            out.update({m: float(v.mean()), f"{m}_low": lo, f"{m}_high": hi})
        rows.append(out)
    return pd.DataFrame(rows)


def ranking(summary: pd.DataFrame, dataset: str, metric: str) -> list[str]:
    """Baselines (not the control) from best to worst on ``metric``."""
    g = summary[(summary.dataset == dataset) & (summary.row != CONTROL)]
    return g.sort_values(metric, ascending=not METRICS[metric][1], kind="stable").row.tolist()


def best_vs_runner_up(runs: pd.DataFrame, summary: pd.DataFrame, dataset: str, metric: str):
    """Paired test of the best baseline against the runner-up on the same (image, seed) pairs."""
    from xai_suite.metrics import paired_test

    best, second = ranking(summary, dataset, metric)[:2]
    g = runs[runs.dataset == dataset]

    def values(row):
        return g[g.row == row].sort_values(["seed", "image"])[metric].to_numpy()

    return best, second, paired_test(values(best), values(second), n_resamples=N_RESAMPLES, random_state=0)


def _cell(row, m: str) -> str:
    if m not in row or pd.isna(row.get(m)):
        return "n/a"
    f = METRICS[m][2]
    return f"{f.format(row[m])} [{f.format(row[f'{m}_low'])}, {f.format(row[f'{m}_high'])}]"


def print_dataset(dataset: str, runs: pd.DataFrame, summary: pd.DataFrame, accuracies, dropped,
                  args) -> None:
    from xai_suite.metrics import wilson_interval

    g = summary[summary.dataset == dataset]
    metrics = [m for m in METRICS if m in g and g[m].notna().any()]
    correct = sum(c for c, _ in accuracies)
    total = sum(t for _, t in accuracies)
    lo, hi = wilson_interval(correct, total)
    print(f"== {dataset}: IG ({args.steps} steps, {args.samples} draws of random baselines), "
          f"{args.n} images x {len(args.seeds)} seed(s) = {int(g.pairs.iloc[0])} pairs per cell")
    print(f"model test accuracy {correct / total:.3f} [{lo:.3f}, {hi:.3f}] (Wilson, {total} test images "
          f"over the seeds)")
    if dropped:
        print("left out as duplicates: " + ", ".join(f"{k} (= {v})" for k, v in dropped.items()))
    print("each cell: mean [95% bootstrap interval over (image, seed) pairs]; "
          + ", ".join(f"{METRICS[m][0]} {'higher' if METRICS[m][1] else 'lower'} is better"
                      for m in metrics if METRICS[m][1] is not None)
          + "; p(b): the target's probability at the baseline (mean over draws)")
    widths = [16] + [26] * len(metrics)
    print("  ".join(t.ljust(w) for t, w in zip(["baseline", *(METRICS[m][0] for m in metrics)], widths,
                                                strict=True)).rstrip())
    for _, row in g.iterrows():
        cells = [row.row, *(_cell(row, m) for m in metrics)]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    headline = HEADLINE[dataset]
    for m in [headline, *(m for m in metrics if m != headline and METRICS[m][1] is not None)]:
        best, second, t = best_vs_runner_up(runs, summary, dataset, m)
        tag = "headline " if m == headline else ""
        print(f"{tag}paired test {METRICS[m][0]}: best {best} vs runner-up {second}: difference "
              f"{t.mean_difference:+.3g} [{t.low:+.3g}, {t.high:+.3g}], Wilcoxon p = {t.p_value:.2g}")
    print()


def write_grid(setup: Setup, baselines: list[str], args, path: Path) -> None:
    """"One image, every baseline" for the first explained image of ``setup``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xai_suite.viz.image import plot_baseline_grid

    first = replace(setup, x=setup.x[:1], target=setup.target[:1])
    fig = plot_baseline_grid([_explain(first, IG, args, b) for b in baselines], model=setup.model,
                             path=path)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.baselines is not None:  # fail on an unknown name before training anything
        choose_baselines(np.zeros((1, 1, 8, 8), np.float32), np.zeros(1, np.int64), args.baselines)
    all_runs, accuracies, dropped = [], {}, {}
    for dataset in args.datasets:
        accuracies[dataset] = []
        for seed in args.seeds:
            setup = make_setup(dataset, seed, args.n)
            baselines, dropped[dataset] = choose_baselines(setup.x, setup.target, args.baselines)
            accuracies[dataset].append(setup.accuracy)
            t1 = time.perf_counter()
            all_runs.append(run_setup(setup, baselines, args))
            print(f"  {dataset} seed {seed}: accuracy {setup.accuracy[0] / setup.accuracy[1]:.3f}, "
                  f"{len(baselines)} baselines in {time.perf_counter() - t1:.1f} s", file=sys.stderr)
            if seed == args.seeds[0] and not args.no_figures:
                args.out.mkdir(parents=True, exist_ok=True)
                write_grid(setup, baselines, args, args.out / f"grid_{dataset}.png")
    runs = pd.concat(all_runs, ignore_index=True)
    summary = summarise(runs)
    for dataset in args.datasets:
        print_dataset(dataset, runs, summary, accuracies[dataset], dropped[dataset], args)
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "runs.csv", index=False)
    summary.to_csv(args.out / "summary.csv", index=False)
    print(f"total time {time.perf_counter() - t0:.0f} s ({args.threads} torch thread(s)); results in "
          f"{args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
