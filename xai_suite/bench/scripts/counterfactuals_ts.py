"""Time-series counterfactuals, ours vs TSInterpret's, side by side on the zoo's FCN.

For each dataset (GunPoint: 1 channel x 150 steps, 2 classes; BasicMotions: 6 channels x
100 steps, 4 classes) an FCN is trained (``fit_cached``: once, then reloaded from the weight
cache), ``--n`` test instances are drawn (seeded), and each instance gets one target class:
its most probable class other than the predicted one (with 2 classes, the other class).
Then NativeGuide, COMTE and TSEvo explain the same instances towards the same targets, in our
batched versions (``native:native_guide``, ``native:comte``, ``native:tsevo``) and in
TSInterpret's (``tsinterpret:native_guide``, ``tsinterpret:comte``, ``tsinterpret:tsevo``).

Printed per dataset, one row per method and library:

- validity (the model predicts the target class for the counterfactual) with a Wilson 95%
  interval;
- over the valid counterfactuals: mean L1, L2 and DTW distance to the instance, the mean
  fraction of changed points, and plausibility (k-NN distance ratio to the target class's
  training series; about 1 is typical);
- seconds per instance: the explain call's wall time over all instances divided by their
  number (our methods run all instances in one batched call, so there is no per-instance
  time to take a median of);

then a "targets" line per dataset: ours/theirs validity (target >= 1), theirs/ours time for
COMTE and TSEvo (>= 10) and ours/theirs time for NativeGuide (<= 1). TSEvo's time ratio is taken
at equal search budgets: our TSEvo runs a second time with TSInterpret's budget (``--tsevo-epochs``
generations of 100 candidates), its own row in the table. The TSEvo part also gives that ratio in
the process's CPU time: with ``--threads 1`` it is close to the wall-time ratio on an idle
machine and moves much less than wall time when other processes share the cores (wall time then
includes the waits for a core, which fall unevenly on the two runs); with more threads, threads
that spin waiting for work count as CPU time too.

Settings. TSInterpret's entries run with its defaults (NativeGuide: ``NUN_CF``; COMTE:
``max_attempts = max_iter = 1000``) except TSEvo, whose default 500 epochs take minutes per
instance: it runs ``--tsevo-epochs`` (20) and the table says so; its time at 500 epochs is
extrapolated linearly (each epoch evaluates a population of 100, plus one for the initial
population) and its ratio printed both ways. Ours run with their defaults (our TSEvo: 100
generations of 50 candidates per instance, only the changed children evaluated). TSInterpret's
NativeGuide is univariate only: on BasicMotions its row reads "n/a (univariate only)".
TSInterpret calls the model one series at a time on the CPU; ours run on ``--device`` (CPU by
default, for a like-for-like comparison).

Timing: everything runs in one process. Every entry first explains one instance (warm-up:
imports, allocator, kernels; TSInterpret's COMTE and TSEvo and our TSEvo with a few
iterations). Per method, ours runs (for TSEvo: at its defaults, then at TSInterpret's budget),
then TSInterpret's, then ours again; each of our times is the mean of its two runs around
theirs (machines drift over minutes), and the two runs must give the same counterfactuals
(a warning says otherwise). TSInterpret's run is split into
calls of ``--chunk`` instances, with a progress line on stderr after each. Timings on a
shared 2-core machine vary by 20% or more; on a busy one set ``--threads 1`` (torch's
default thread count spins badly when other processes compete for the cores).

Run time of the defaults (50 GunPoint and all 40 BasicMotions test instances) is dominated
by TSInterpret's COMTE (about 6-9 s per instance) and TSEvo (about 3 s per instance at 20
epochs): about 16 minutes on a 2-core machine with ``--threads 1``. ``--quick`` runs 5
GunPoint instances with TSInterpret's TSEvo at 5 epochs (about a minute).

Run: ``python -m xai_suite.bench.scripts.counterfactuals_ts [--n 50] [--datasets GunPoint
BasicMotions] [--tsevo-epochs 20] [--quick] [--threads 1] [--out DIR]``. ``xai-suite bench
counterfactuals [--quick]`` runs it and saves its output to ``OUT/counterfactuals.txt``. In a
checkout, ``python benchmarks/counterfactuals_ts.py`` is the same.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: Method -> (our entry, TSInterpret's entry).
METHODS = {
    "NativeGuide": ("native:native_guide", "tsinterpret:native_guide"),
    "COMTE": ("native:comte", "tsinterpret:comte"),
    "TSEvo": ("native:tsevo", "tsinterpret:tsevo"),
}
DATASETS = ("GunPoint", "BasicMotions")
#: TSInterpret's TSEvo's default epochs (each evaluates a population of 100, one model call each).
TSEVO_DEFAULT_EPOCHS = 500
TSEVO_POPULATION = 100
#: Per-instance metrics averaged over the valid counterfactuals, and their column titles.
METRICS = {"l1": "L1", "l2": "L2", "dtw": "DTW", "changed_fraction": "changed", "plausibility": "plaus."}
#: Cheap settings for the warm-up call of the slow entries.
WARMUP = {
    "native:tsevo": {"generations": 2},
    "tsinterpret:comte": {"max_attempts": 2, "max_iter": 2},
    "tsinterpret:tsevo": {"epochs": 1},
}
QUICK = {"n": 5, "datasets": ["GunPoint"], "tsevo_epochs": 5}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- settings ---------------------------------------------------------------------------------
def entry_params(entry: str, args) -> dict:
    """Hyper-parameters of one entry in this run (everything else at its default)."""
    ours = entry.startswith("native:")
    params: dict = {"device": args.device} if ours else {}
    if not entry.endswith(":native_guide"):  # the stochastic ones
        params["random_state"] = args.seed
    if entry == "native:tsevo" and args.tsevo_generations is not None:
        params["generations"] = args.tsevo_generations
    if entry == "tsinterpret:tsevo":
        params["epochs"] = args.tsevo_epochs
    if entry == "tsinterpret:comte":
        params.update(max_attempts=args.comte_max_attempts, max_iter=args.comte_max_iter)
    return params


def row_label(entry: str, params: dict) -> str:
    """The table's library column: which implementation, and settings that differ from its defaults."""
    import xai_suite as xs

    defaults = xs.explainer_info(entry).params
    if entry.startswith("native:"):
        changed = {k: v for k, v in params.items() if k not in ("device", "random_state")
                   and v != defaults.get(k)}
        return "ours" + (f" ({_kv(changed)})" if changed else "")
    if entry == "tsinterpret:tsevo":
        epochs = params["epochs"]
        return f"TSInterpret ({epochs} of {TSEVO_DEFAULT_EPOCHS} epochs)" if epochs != defaults["epochs"] \
            else "TSInterpret"
    changed = {k: v for k, v in params.items() if k != "random_state" and v != defaults.get(k)}
    extra = ""
    if entry == "tsinterpret:native_guide":  # which of TSInterpret's NativeGuide methods
        extra = str(defaults.get("variant", defaults.get("method", "")))
    extra = ", ".join(s for s in (extra, _kv(changed)) if s)
    return "TSInterpret" + (f" ({extra})" if extra else "")


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


# -- data and model ---------------------------------------------------------------------------
@dataclass
class Task:
    """One dataset: its model, the explained instances and their targets."""

    name: str
    model: object
    X: np.ndarray
    y: np.ndarray
    x: np.ndarray  # (n, C, T): the explained test instances
    index: np.ndarray  # their positions in the test split
    target: np.ndarray  # (n,): the class each counterfactual should get
    n_classes: int
    accuracy: float
    n_test: int


def load_task(name: str, args) -> Task:
    import torch

    import xai_suite as xs
    from xai_suite_timeseries import FCN, fit_cached

    X, y = xs.datasets.load_ucr(name, "train")
    Xt, yt = xs.datasets.load_ucr(name, "test")
    k = int(max(y.max(), yt.max())) + 1
    log(f"[{name}] FCN: training or loading cached weights ({args.model_epochs} epochs) ...")
    torch.manual_seed(args.seed)
    model = fit_cached(FCN(X.shape[1], k), X, y, epochs=args.model_epochs, random_state=args.seed)
    with torch.no_grad():
        out = model(torch.from_numpy(Xt))
    accuracy = float((out.argmax(1).numpy() == yt).mean())
    rng = np.random.default_rng(args.seed)
    index = np.sort(rng.choice(len(Xt), size=min(args.n, len(Xt)), replace=False))
    probs = torch.softmax(out[torch.from_numpy(index)].double(), 1).numpy()
    probs[np.arange(len(index)), probs.argmax(1)] = -np.inf
    target = probs.argmax(1).astype(np.int64)  # the most probable other class, for both sides
    return Task(name, model, X, y, Xt[index], index, target, k, accuracy, len(Xt))


# -- runs -------------------------------------------------------------------------------------
@dataclass
class Result:
    """One entry's run on one dataset."""

    method: str
    entry: str
    label: str
    params: dict = field(default_factory=dict)
    frame: pd.DataFrame | None = None  # one row per instance (CounterfactualExplanation.to_frame)
    seconds: list[float] = field(default_factory=list)  # wall time of each full run
    cpu_seconds: list[float] = field(default_factory=list)  # the process's CPU time of each
    status: str = "ok"  # or why there is no result

    @property
    def per_instance(self) -> float:
        return float(np.mean(self.seconds)) / len(self.frame) if self.seconds else math.nan

    @property
    def cpu_per_instance(self) -> float:
        return float(np.mean(self.cpu_seconds)) / len(self.frame) if self.cpu_seconds else math.nan

    def summary(self) -> dict:
        """Validity with its Wilson 95% interval, means over the valid counterfactuals."""
        from xai_suite.metrics.statistics import wilson_interval

        valid = self.frame["valid"].to_numpy(bool)
        lo, hi = wilson_interval(valid, None, 0.95)
        out = {"validity": valid.mean(), "validity_low": lo, "validity_high": hi}
        for key in METRICS:
            vals = self.frame.loc[valid, key].to_numpy(np.float64)
            out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
        out["seconds_per_instance"] = self.per_instance
        return out


def make_explainer(entry: str, task: Task, params: dict):
    import xai_suite as xs

    return xs.create_explainer(entry, task.model, **params).fit(task.X, task.y)


def explain(explainer, x: np.ndarray, target: np.ndarray, chunk: int | None, what: str
            ) -> tuple[pd.DataFrame, float, float]:
    """Per-instance metrics, wall seconds and the process's CPU seconds; in calls of ``chunk``
    instances if given."""
    n = len(x)
    step = n if chunk is None else chunk
    frames, t0, c0 = [], time.perf_counter(), time.process_time()
    for start in range(0, n, step):
        stop = min(start + step, n)
        frames.append(explainer.explain(x[start:stop], target=target[start:stop]).to_frame())
        if chunk is not None and stop < n:
            el = time.perf_counter() - t0
            log(f"    {what}: {stop}/{n} instances, {el:.0f} s ({el / stop:.2f} s/instance), "
                f"about {el / stop * (n - stop) / 60:.1f} min left")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    frame = pd.concat(frames, ignore_index=True)
    frame["instance"] = np.arange(n)
    return frame, seconds, cpu


def run_method(method: str, task: Task, args) -> list[Result]:
    """Ours, then TSInterpret's, then ours again (timing only), after a warm-up of each; for
    TSEvo, ours also at TSInterpret's search budget, before and after theirs like ours."""
    runs = [(entry, entry_params(entry, args)) for entry in METHODS[method]]
    if method == "TSEvo":
        runs.append(("native:tsevo", {**runs[0][1], "generations": args.tsevo_epochs,
                                      "population": TSEVO_POPULATION}))
    results, explainers = [], []
    for entry, params in runs:
        res = Result(method, entry, row_label(entry, params), params)
        results.append(res)
        try:
            explainers.append(make_explainer(entry, task, params))
            warm = make_explainer(entry, task, {**params, **WARMUP.get(entry, {})})
            warm.explain(task.x[:1], target=task.target[:1])
        except ValueError as exc:
            explainers.append(None)
            if "univariate" in str(exc):
                res.status = "n/a (univariate only)"
                log(f"  {entry}: {res.status}")
                continue
            res.status = _failed(entry, exc)
        except Exception as exc:  # a long benchmark reports a failed entry and goes on
            explainers.append(None)
            res.status = _failed(entry, exc)
    # ours (and our TSEvo at TSInterpret's budget) before and after theirs: the machine's drift
    # over theirs' minutes falls on both sides of each ratio alike
    around = [(results[0], explainers[0], None)]
    around += [(r, e, None) for r, e in zip(results[2:], explainers[2:], strict=True)]
    schedule = [*around, (results[1], explainers[1], args.chunk), *around]
    for res, explainer, chunk in schedule:
        if explainer is None or res.status != "ok":
            continue
        log(f"  {res.entry} [{res.label}] on {len(task.x)} instances ...")
        try:
            frame, seconds, cpu = explain(explainer, task.x, task.target, chunk, res.entry)
        except Exception as exc:
            res.status = _failed(res.entry, exc)
            continue
        if res.frame is None:
            res.frame = frame
        elif not frame[list(METRICS)].equals(res.frame[list(METRICS)]):
            log(f"  warning: {res.entry} gave other counterfactuals on its second (timing) run")
        res.seconds.append(seconds)
        res.cpu_seconds.append(cpu)
        log(f"  {res.entry}: {seconds:.1f} s ({seconds / len(task.x):.3f} s/instance), "
            f"{int(frame['valid'].sum())}/{len(frame)} valid")
    return results


def _failed(entry: str, exc: Exception) -> str:
    log(f"  {entry} FAILED:\n" + "".join(traceback.format_exception(exc))[-2000:])
    return f"failed ({type(exc).__name__}: {str(exc)[:60]})"


# -- report -----------------------------------------------------------------------------------
def ratio(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)):
        return math.nan
    return a / b if b else (math.inf if a else math.nan)


def fmt_ratio(r: float, goal: str) -> str:
    """``r`` and whether it meets ``goal`` (">= x" or "<= x")."""
    if not np.isfinite(r) and not r == math.inf:
        return "n/a"
    op, bound = goal.split()
    ok = r >= float(bound) if op == ">=" else r <= float(bound)
    return f"{r:.2f} ({goal}: {'ok' if ok else 'MISSED'})"


def print_table(task: Task, results: list[Result], args) -> None:
    k = task.n_classes
    c, t = task.x.shape[1:]
    tgt = "the other class" if k == 2 else "each instance's most probable other class"
    print(f"{task.name} ({c} channel{'s' if c > 1 else ''} x {t} steps, {k} classes): FCN, "
          f"{args.model_epochs} epochs, test accuracy {task.accuracy:.3f}; {len(task.x)} of "
          f"{task.n_test} test instances (seed {args.seed}); target: {tgt}")
    w = max(len("library"), *(len(r.label) for r in results))
    head = (f"{'method':12s} {'library':{w}s} {'validity [95% CI]':>20s} "
            + " ".join(f"{v:>8s}" for v in METRICS.values()) + f" {'s/instance':>11s}")
    print(head)
    print("-" * len(head))
    for res in results:
        if res.status != "ok" or res.frame is None:
            print(f"{res.method:12s} {res.label:{w}s} {res.status}")
            continue
        s = res.summary()
        val = f"{s['validity']:.2f} [{s['validity_low']:.2f}, {s['validity_high']:.2f}]"
        cells = " ".join(f"{s[m]:8.3f}" if m == "changed_fraction" else f"{s[m]:8.2f}" for m in METRICS)
        print(f"{res.method:12s} {res.label:{w}s} {val:>20s} {cells} {s['seconds_per_instance']:11.3f}")
    for res in results:
        if res.entry == "tsinterpret:tsevo" and res.status == "ok" and res.frame is not None:
            print(f"TSInterpret's TSEvo ran {args.tsevo_epochs} of its default {TSEVO_DEFAULT_EPOCHS} "
                  f"epochs; at {TSEVO_DEFAULT_EPOCHS} it would take about "
                  f"{tsevo_at_default(res.per_instance, args.tsevo_epochs):.1f} s/instance "
                  f"(linear in 1 + epochs population evaluations).")
    print("L1, L2, DTW (distance to the instance), changed (fraction of points) and plaus. are "
          "means over the valid counterfactuals; s/instance = wall time of the whole run / n.")
    print()


def tsevo_at_default(seconds: float, epochs: int) -> float:
    """TSInterpret's TSEvo time at its default epochs, from a run of ``epochs``."""
    return seconds * (1 + TSEVO_DEFAULT_EPOCHS) / (1 + epochs)


def targets_line(task: Task, results: list[Result], args) -> str:
    by: dict[str, Result] = {}
    for r in results:  # our TSEvo at TSInterpret's budget: "native:tsevo@budget"
        by[r.entry if r.entry not in by else f"{r.entry}@budget"] = r

    def get(entry: str, key: str) -> float:
        r = by.get(entry)
        return r.summary()[key] if r is not None and r.status == "ok" and r.frame is not None \
            else math.nan

    def sec(entry: str) -> float:
        return get(entry, "seconds_per_instance")

    def cpu(entry: str) -> float:
        r = by.get(entry)
        return r.cpu_per_instance if r is not None and r.status == "ok" and r.frame is not None \
            else math.nan

    methods = list(args.methods)
    parts = []
    if methods:
        vals = [f"{m} {fmt_ratio(ratio(*(get(e, 'validity') for e in METHODS[m])), '>= 1')}"
                for m in methods]
        parts.append("validity ours/theirs: " + ", ".join(vals))
    times = []
    if "COMTE" in methods:
        times.append(f"COMTE {fmt_ratio(ratio(sec('tsinterpret:comte'), sec('native:comte')), '>= 10')}")
    if "TSEvo" in methods:
        theirs = sec("tsinterpret:tsevo")
        at_default = tsevo_at_default(theirs, args.tsevo_epochs)
        times.append(
            f"TSEvo {fmt_ratio(ratio(theirs, sec('native:tsevo@budget')), '>= 10')} at equal budgets "
            f"({args.tsevo_epochs} generations x {TSEVO_POPULATION}); ours at its defaults vs theirs "
            f"at {args.tsevo_epochs} epochs {ratio(theirs, sec('native:tsevo')):.2f}, at its default "
            f"{TSEVO_DEFAULT_EPOCHS} {ratio(at_default, sec('native:tsevo')):.2f} (extrapolated); "
            f"CPU time at equal budgets {ratio(cpu('tsinterpret:tsevo'), cpu('native:tsevo@budget')):.2f}")
    if times:
        parts.append("time theirs/ours: " + ", ".join(times))
    if "NativeGuide" in methods:
        r = ratio(sec("native:native_guide"), sec("tsinterpret:native_guide"))
        parts.append(f"time ours/theirs: NativeGuide {fmt_ratio(r, '<= 1')}")
    return f"targets ({task.name}): " + "; ".join(parts)


def write_csv(out: Path, tasks_results: list[tuple[Task, list[Result]]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows, summ = [], []
    for task, results in tasks_results:
        for res in results:
            base = {"dataset": task.name, "method": res.method, "entry": res.entry,
                    "library": res.label, "status": res.status}
            if res.frame is None:
                summ.append(base)
                continue
            summ.append({**base, "n": len(res.frame), **res.summary()})
            f = res.frame.copy()
            f.insert(0, "test_index", task.index)
            for i, (k, v) in enumerate(base.items()):
                f.insert(i, k, v)
            f["seconds_per_instance"] = res.per_instance
            rows.append(f)
    if rows:
        pd.concat(rows, ignore_index=True).to_csv(out / "counterfactuals_ts_instances.csv", index=False)
    pd.DataFrame(summ).to_csv(out / "counterfactuals_ts_summary.csv", index=False)
    log(f"wrote {out / 'counterfactuals_ts_instances.csv'} and {out / 'counterfactuals_ts_summary.csv'}")


# -- main -------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, help="test instances per dataset (default 50; BasicMotions has 40)")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, help="default: both")
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS))
    p.add_argument("--tsevo-epochs", type=int,
                   help=f"TSInterpret's TSEvo epochs (default 20; its own default is {TSEVO_DEFAULT_EPOCHS})")
    p.add_argument("--tsevo-generations", type=int, help="our TSEvo's generations (default: its own, 100)")
    p.add_argument("--comte-max-attempts", type=int, default=1000,
                   help="TSInterpret's COMTE hill-climbing attempts (default: its own, 1000)")
    p.add_argument("--comte-max-iter", type=int, default=1000,
                   help="TSInterpret's COMTE hill-climbing iterations (default: its own, 1000)")
    p.add_argument("--chunk", type=int, default=10, help="instances per TSInterpret call (progress)")
    p.add_argument("--model-epochs", type=int, default=60, help="FCN training epochs")
    p.add_argument("--device", default="cpu", help="device of our entries (TSInterpret: CPU)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="model, instance sample and searches")
    p.add_argument("--quick", action="store_true",
                   help="5 GunPoint instances, TSInterpret's TSEvo at 5 epochs (explicit options win)")
    p.add_argument("--out", type=Path, help="write per-instance and summary CSVs here")
    args = p.parse_args(argv)
    defaults = {"n": 50, "datasets": list(DATASETS), "tsevo_epochs": 20}
    for key, value in (QUICK if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("n", "tsevo_epochs", "comte_max_attempts", "comte_max_iter", "chunk", "model_epochs"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    print(f"Counterfactuals, ours vs TSInterpret's; torch threads {torch.get_num_threads()}, "
          f"our device {args.device}, seed {args.seed}\n")
    done = []
    for name in args.datasets:
        task = load_task(name, args)
        results = []
        for method in args.methods:
            log(f"[{name}] {method}")
            results.extend(run_method(method, task, args))
        print_table(task, results, args)
        done.append((task, results))
    for task, results in done:
        print(targets_line(task, results, args))
    if args.out is not None:
        write_csv(args.out, done)
    log(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
