"""Batched native:kernel_shap vs shap.KernelExplainer on breast cancer, on CPU.

Both explain the predicted class's probability of a classifier on scikit-learn's breast
cancer data (30 standardised features; 369 training rows, 200 stratified test rows) with the
same background (B rows drawn from the training set by the ``training_sample``
baseline, :meth:`~xai_suite.baselines.Baseline.reference_set`; B = 10, 50 and 100 by default: shap suggests
at most 100, or ``shap.kmeans(X, 10)``) and the same coalitions: shap's default budget
``nsamples = 2 F + 2048 = 2108`` coalitions per instance, drawn by shap's algorithm. Ours
draws them with ``random_state=seed``; shap's global generator is seeded with the same seed
before each instance, so both use exactly the same coalitions and kernel weights (checked
against shap's ``maskMatrix``/``kernelWeights``). shap runs with ``l1_reg=False``: its
default ``"num_features(10)"`` keeps 10 of the 30 features (LARS) and zeroes the others,
which is not KernelSHAP's regression.

Printed per background size, seconds per explained instance (medians over ``--repeats``
interleaved calls, after a warm-up of each):

- ours: ``native:kernel_shap``, ``batch_size="auto"``, one call for all ``--n`` (200)
  instances: the rows of all their coalitions (200 x 2108 x B) go through ``predict_proba``
  in memory-bounded chunks, and one regression is solved for all instances;
- shap: ``shap.KernelExplainer.shap_values``, one instance at a time (its only mode: for
  each instance it rebuilds the coalitions and a ``2108 B x 30`` data matrix in Python), on
  the first ``--n-shap`` (100) instances, with its per-instance times; its time per instance
  does not depend on how many instances it explains;
- floor: the model alone (``predict_proba``) on the same rows, in the chunks ours uses (those
  of the first ``--n-floor`` instances; each chunk built outside the timer, then timed): what
  any implementation that evaluates these rows must pay. Ours calls scikit-learn models with
  ``assume_finite=True`` (its rows are mixtures of finite, validated inputs, so its NaN/inf
  re-check of every chunk, a full pass over the rows, is skipped; shap keeps it), and so does
  the floor: ours / floor is ours' own overhead;

and the ratios shap / ours (target >= 5) and ours / floor, the peak memory of each at the
largest B (a fresh worker process per method: peak RSS above what it held before the call),
and the agreement: max |ours - shap| over the instances both explained (target <= 1e-4).

The model is a ``LogisticRegression``: its evaluations are cheap, so the time measured is
the explainers' own work (coalitions, rows, regression), which is what batching changes. As
B grows, the model's share grows for both (shap / floor falls), and shap / floor bounds what
any implementation can gain: ours runs at about the floor from B = 50 on. With an expensive
model both converge to the same floor; ``--model mlp`` (a small PyTorch MLP, evaluated by
ours on tensors and by shap through a NumPy wrapper) shows that case.

Feature sweep (``--features``, default 10 50 100 200; ``--features`` with no value skips it):
the same three timings on a synthetic problem with F features (standard normal rows, 300
training and ``--sweep-n`` (50) explained; a ``LogisticRegression`` fitted to a random linear
rule), background ``--sweep-background`` (10) rows, shap on the first ``--sweep-n-shap`` (10),
shap's ``auto`` budget ``2 F + 2048`` coalitions: one line per F with shap / ours (target >= 8
at F = 200), ours / floor (target <= 1.3) and the agreement with shap (same coalitions and
weights, max |ours - shap|).

Threads: ``--threads 1`` (default) pins torch and the BLAS library to one thread each. On a
shared 2-core machine OpenBLAS's threads spin while they wait: measured here, a 29 x 2108 by
2108 x 29 product took 0.22 s with two threads under load and 0.2 ms with one, which would
hit shap (three such products per instance) far more than ours (one per call). ``--threads 0``
keeps the libraries' defaults.

Run: ``python -m xai_suite.bench.scripts.perf_tabular [--n 200] [--n-shap 100] [--background 10 50
100] [--repeats 3] [--model logreg|mlp] [--threads 1] [--no-memory] [--features 10 50 100 200]
[--sweep-n 50] [--sweep-n-shap 10] [--sweep-background 10] [--quick]`` (the default took 1
min 50 s on a quiet machine and about 3.5 minutes on a shared 2-core one; ``--quick``, one B = 10
pass on 20 instances without memory workers and a sweep at F = 10 and 40 on 6 instances,
about 15 s). ``xai-suite bench perf [--quick]`` runs it
(with the suite's other scripts) and saves its output to ``OUT/perf.txt``. In a checkout, ``python
benchmarks/perf_tabular.py`` is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from ._proc import reset_peak, rss_bytes

SEED = 0
AGREEMENT_TOL = 1e-4
TARGET_RATIO = 5.0
#: Feature sweep targets: shap / ours at the largest F, and ours / floor at every F.
SWEEP_TARGET_RATIO = 8.0
SWEEP_TARGET_FLOOR = 1.3


@dataclass
class Setup:
    model: object  # what ours explains: a fitted estimator or a torch module
    f: object  # the same model as a NumPy function, for shap
    X_train: np.ndarray  # (369, 30) float32
    X_test: np.ndarray  # (200, 30) float32
    accuracy: float
    name: str


def setup(model_name: str, threads: int) -> Setup:
    """Breast cancer, standardised; a LogisticRegression or a small torch MLP fitted on it."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=200, stratify=y, random_state=SEED)
    scaler = StandardScaler().fit(X_tr)
    X_tr = scaler.transform(X_tr).astype(np.float32)
    X_te = scaler.transform(X_te).astype(np.float32)
    if model_name == "logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=1000).fit(X_tr, y_tr)
        return Setup(clf, clf.predict_proba, X_tr, X_te, float(clf.score(X_te, y_te)),
                     "LogisticRegression")
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    net = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(X_tr), torch.from_numpy(y_tr)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()

    def f(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(np.asarray(a, np.float32))), 1).numpy()

    probs = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    with torch.no_grad():
        acc = float((net(torch.from_numpy(X_te)).argmax(1).numpy() == y_te).mean())
    return Setup(probs, f, X_tr, X_te, acc, "PyTorch MLP 30-64-64-2 (softmax)")


def synthetic(n_features: int) -> Setup:
    """Standard normal rows with ``n_features`` features (300 training, 200 test rows) and a
    ``LogisticRegression`` fitted to a random linear rule with noise (threads: as set by
    :func:`setup`)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((500, n_features)).astype(np.float32)
    w = rng.standard_normal(n_features) / np.sqrt(n_features)
    y = (X @ w + 0.3 * rng.standard_normal(500) > 0).astype(int)
    clf = LogisticRegression(max_iter=1000).fit(X[:300], y[:300])
    return Setup(clf, clf.predict_proba, X[:300], X[300:], float(clf.score(X[300:], y[300:])),
                 f"LogisticRegression on {n_features} synthetic features")


def make_ours(s: Setup, n_baseline_samples: int):
    import xai_suite as xs

    return xs.create_explainer("native:kernel_shap", s.model, n_baseline_samples=n_baseline_samples,
                               random_state=SEED).fit(s.X_train)


def background_of(explainer, x: np.ndarray) -> np.ndarray:
    """The background ours draws, (B, F): its baselines (the same rows for every instance)."""
    return np.asarray(explainer.explain(x[:1]).baselines[:, 0])


def run_ours(explainer, x: np.ndarray) -> tuple[np.ndarray, dict]:
    exp = explainer.explain(x)
    return exp.attributions, {"target": exp.target, **exp.params}


def run_shap(kernel, x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """shap, one instance at a time, its global generator seeded before each; per-instance times."""
    values, seconds = [], []
    for i in range(len(x)):
        np.random.seed(SEED)  # noqa: NPY002  (shap draws from the global generator)
        t0 = time.perf_counter()
        sv = kernel.shap_values(x[i : i + 1].astype(np.float64), l1_reg=False, silent=True)
        seconds.append(time.perf_counter() - t0)
        values.append(sv[0, :, target[i]])
    return np.array(values), seconds


def time_floor(forward, explainer, x: np.ndarray, chunk: int, dtype) -> float:
    """Seconds per instance of the model alone on the rows ours sends it for ``x``.

    The rows are built chunk by chunk as ours builds them (whole instance x coalition
    blocks of B background rows, at most ``chunk`` rows), outside the timer; only the model
    calls are timed, each on freshly built (cache-warm) rows. A scikit-learn model is called
    as ours calls it: with ``assume_finite=True`` (ours skips scikit-learn's NaN/inf re-check of
    rows mixed from finite, validated inputs; shap does not).
    """
    import contextlib

    import torch

    from xai_suite.methods.native.kernel_shap import kernel_coalitions

    bg = torch.from_numpy(background_of(explainer, x)).to(dtype)
    z = torch.from_numpy(kernel_coalitions(x.shape[1], "auto", SEED).masks > 0.5)
    xt = torch.from_numpy(x).to(dtype)
    n_pairs, per = len(x) * len(z), max(1, chunk // len(bg))
    total = 0.0
    trusted = contextlib.nullcontext()
    if dtype == torch.float64:  # the scikit-learn models
        import sklearn

        trusted = sklearn.config_context(assume_finite=True)
    with torch.no_grad(), trusted:
        for p0 in range(0, n_pairs, per):
            pairs = torch.arange(p0, min(p0 + per, n_pairs))
            rows = torch.where(z[pairs % len(z)].unsqueeze(1), xt[pairs // len(z)].unsqueeze(1),
                               bg.unsqueeze(0)).reshape(-1, x.shape[1])
            t0 = time.perf_counter()
            forward(rows)
            total += time.perf_counter() - t0
    return total / len(x)


# -- memory worker -------------------------------------------------------------------------
def memory_worker(method: str, model_name: str, n: int, n_baseline_samples: int, threads: int) -> dict:
    """Peak RSS above what was held before one call of ``method`` on ``n`` instances."""
    import shap

    s = setup(model_name, threads)
    ours = make_ours(s, n_baseline_samples)
    x = s.X_test[:n]
    run_ours(ours, x[:1])  # warm-up: lazy imports, the allocator
    kernel = shap.KernelExplainer(s.f, background_of(ours, x).astype(np.float64))
    pred = s.f(x).argmax(1)
    run_shap(kernel, x[:1], pred)
    before = rss_bytes("VmRSS")
    reset_peak()
    if method == "ours":
        run_ours(ours, x)
    else:
        run_shap(kernel, x, pred)
    return {"peak_extra": rss_bytes("VmHWM") - before}


def spawn_memory(method: str, n_baseline_samples: int, args) -> float | None:
    # by module name, not file path: the same command from a checkout or an installed wheel
    cmd = [sys.executable, "-m", "xai_suite.bench.scripts.perf_tabular", "--worker", method,
           "--model", args.model, "--n", str(args.n if method == "ours" else 3),
           "--background", str(n_baseline_samples), "--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=dict(os.environ))
    if res.returncode != 0:
        print(f"memory worker {method} failed: {res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_extra"]


# -- main ----------------------------------------------------------------------------------
LABELS = {
    "ours": "ours (native:kernel_shap, batch_size='auto')",
    "shap": "shap.KernelExplainer (l1_reg=False), 1 instance/call",
    "floor": "floor: the model alone on the same rows",
}


def compare(s: Setup, n_baseline_samples: int, args) -> dict:
    """Interleaved timings, agreement and coalition check for one background size."""
    import shap
    import torch

    from xai_suite.methods.native.kernel_shap import kernel_coalitions
    from xai_suite.modeling import ModelWrapper

    ours = make_ours(s, n_baseline_samples)
    bg = background_of(ours, s.X_test)
    kernel = shap.KernelExplainer(s.f, bg.astype(np.float64))
    x = s.X_test[: args.n]
    attr0, info = run_ours(ours, x)  # warm-up; fixes the targets and the chunk size
    target, chunk = info["target"], int(info["batch_size_used"])
    # ours sends scikit-learn models float64 rows, torch models float32 ones
    dtype = torch.float64 if hasattr(s.model, "predict_proba") else torch.float32
    forward = ModelWrapper(s.model, device="cpu").forward
    run_shap(kernel, x[:1], target)
    time_floor(forward, ours, x[:1], chunk, dtype)

    seconds: dict[str, list[float]] = {"ours": [], "shap": [], "floor": []}
    shap_each: list[float] = []
    shap_vals = None
    for r in range(args.repeats):
        t0 = time.perf_counter()
        attr, _ = run_ours(ours, x)
        seconds["ours"].append((time.perf_counter() - t0) / len(x))
        vals, each = run_shap(kernel, x[: args.n_shap], target)
        seconds["shap"].append(float(np.sum(each)) / args.n_shap)
        shap_each.extend(each)
        shap_vals = vals if shap_vals is None else shap_vals
        seconds["floor"].append(time_floor(forward, ours, x[: args.n_floor], chunk, dtype))
        print(f"    B={n_baseline_samples} repeat {r + 1}/{args.repeats}: ours {seconds['ours'][-1]:.4f}, "
              f"shap {seconds['shap'][-1]:.4f}, floor {seconds['floor'][-1]:.4f} s/instance",
              file=sys.stderr, flush=True)
        np.testing.assert_array_equal(attr, attr0)  # repeatable

    # shap drew the same coalitions and weights as ours (checked on its last instance)
    c = kernel_coalitions(x.shape[1], "auto", SEED)
    k = kernel.nsamplesAdded
    same_coalitions = bool(k == len(c.weights) and np.array_equal(kernel.maskMatrix[:k], c.masks)
                           and np.allclose(kernel.kernelWeights[:k], c.weights, rtol=1e-13, atol=0))
    return {
        "B": len(bg),
        "med": {m: float(np.median(v)) for m, v in seconds.items()},
        "shap_each": np.percentile(shap_each, [0, 50, 100]),
        "n_shap_calls": len(shap_each),
        "chunk": chunk,
        "coalitions": len(c.weights),
        "diff": float(np.abs(attr0[: args.n_shap] - shap_vals).max()),
        "scale": float(np.abs(shap_vals).max()),
        "same_coalitions": same_coalitions,
    }


def sweep(args) -> list[dict]:
    """The three timings and the agreement at each F of ``args.features`` (synthetic data)."""
    import copy

    sub = copy.copy(args)
    sub.n, sub.n_shap = args.sweep_n, min(args.sweep_n_shap, args.sweep_n)
    sub.n_floor = min(args.n_floor, args.sweep_n)
    results = []
    for f in args.features:
        print(f"  sweep F = {f} ...", file=sys.stderr, flush=True)
        res = compare(synthetic(f), args.sweep_background, sub)
        res["F"] = f
        results.append(res)
    print(f"feature sweep: synthetic LogisticRegression, {sub.n} instances (shap on the first "
          f"{sub.n_shap}), background B = {args.sweep_background}, shap's 'auto' budget, "
          f"seconds per instance (medians of {args.repeats} interleaved calls)")
    print(f"  {'F':>4s} {'coalitions':>10s} {'chunk':>6s} {'ours':>8s} {'shap':>8s} {'floor':>8s} "
          f"{'shap/ours':>9s} {'ours/floor':>10s} {'max|ours-shap|':>14s} {'same coal.':>10s}")
    for r in results:
        med = r["med"]
        print(f"  {r['F']:4d} {r['coalitions']:10d} {r['chunk']:6d} {med['ours']:8.4f} "
              f"{med['shap']:8.4f} {med['floor']:8.4f} {med['shap'] / med['ours']:9.2f} "
              f"{med['ours'] / med['floor']:10.2f} {r['diff']:14.1e} "
              f"{'yes' if r['same_coalitions'] else 'NO':>10s}")
    last = results[-1]["med"]
    worst_floor = max(r["med"]["ours"] / r["med"]["floor"] for r in results)
    ok = (last["shap"] / last["ours"] >= SWEEP_TARGET_RATIO and worst_floor <= SWEEP_TARGET_FLOOR)
    print(f"  sweep targets: shap / ours at F = {results[-1]['F']} = "
          f"{last['shap'] / last['ours']:.2f} (>= {SWEEP_TARGET_RATIO:g}); worst ours / floor = "
          f"{worst_floor:.2f} (<= {SWEEP_TARGET_FLOOR:g}): {'met' if ok else 'NOT met'}\n")
    return results


def report(res: dict, args) -> None:
    med = res["med"]
    print(f"background B = {res['B']}: {res['coalitions']} coalitions x {res['B']} rows = "
          f"{res['coalitions'] * res['B']} model rows per instance; ours' chunk {res['chunk']} rows")
    print(f"  {'method':54s} {'s/instance':>10s} {'x ours':>7s} {'x floor':>8s}")
    for m in ("ours", "shap", "floor"):
        print(f"  {LABELS[m]:54s} {med[m]:10.4f} {med[m] / med['ours']:7.2f} "
              f"{med[m] / med['floor']:8.2f}")
    q = res["shap_each"]
    ratio = med["shap"] / med["ours"]
    print(f"  shap per instance ({res['n_shap_calls']} calls): min {q[0]:.4f}, median {q[1]:.4f}, "
          f"max {q[2]:.4f} s")
    print(f"  ratios: shap / ours = {ratio:.2f} (target >= {TARGET_RATIO:g}: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}); ours / floor = "
          f"{med['ours'] / med['floor']:.2f}; shap / floor = {med['shap'] / med['floor']:.2f}")
    print(f"  agreement over {args.n_shap} instances: max |ours - shap| = {res['diff']:.1e} "
          f"(max |shap| = {res['scale']:.3f}); coalitions and weights identical to shap's: "
          f"{'yes' if res['same_coalitions'] else 'NO'}\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="test instances for ours (200 exist)")
    p.add_argument("--n-shap", type=int, default=100,
                   help="shap explains the first ... of them (one call each)")
    p.add_argument("--n-floor", type=int, default=20, help="instances whose rows time the floor")
    p.add_argument("--background", type=int, nargs="+", default=[10, 50, 100],
                   help="background sizes B (both explainers)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved calls per method")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (0: default)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory workers")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: B = 10, 20 instances (shap on 3), 1 repeat, no memory workers")
    p.add_argument("--features", type=int, nargs="*", default=[10, 50, 100, 200],
                   help="feature counts F of the synthetic sweep (none: no sweep)")
    p.add_argument("--sweep-n", type=int, default=50, help="instances ours explains per F")
    p.add_argument("--sweep-n-shap", type=int, default=10, help="instances shap explains per F")
    p.add_argument("--sweep-background", type=int, default=10, help="background rows of the sweep")
    p.add_argument("--worker", choices=("ours", "shap"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(memory_worker(args.worker, args.model, args.n, args.background[0],
                                       args.threads)))
        return 0
    if args.quick:
        args.n, args.n_shap, args.n_floor, args.repeats = 20, 3, 2, 1
        args.background, args.no_memory = [10], True
        args.features, args.sweep_n, args.sweep_n_shap = [10, 40], 6, 2
    args.n_shap = min(args.n_shap, args.n)

    import torch

    s = setup(args.model, args.threads)
    blas = {0: "default", 1: "1"}.get(args.threads, str(args.threads))
    print(f"KernelSHAP timings on CPU, {torch.get_num_threads()} torch thread(s), BLAS threads "
          f"{blas}")
    print(f"breast cancer: {s.name}, test accuracy {s.accuracy:.3f}; {args.n} test instances "
          f"(shap on the first {args.n_shap}) x 30 features; backgrounds drawn from the "
          f"training rows; shap's 'auto' budget of coalitions, seed {SEED}; medians of "
          f"{args.repeats} interleaved calls\n")
    results = []
    for b in args.background:
        print(f"  B = {b} ...", file=sys.stderr, flush=True)
        results.append(compare(s, b, args))
        report(results[-1], args)

    if not args.no_memory:
        b = max(args.background)
        peaks = {}
        for m in ("ours", "shap"):
            print(f"  memory worker {m} ...", file=sys.stderr, flush=True)
            peaks[m] = spawn_memory(m, b, args)
        if None not in peaks.values():
            print(f"peak memory above the start of the call (B = {b}, fresh worker): ours "
                  f"{peaks['ours'] / 2**20:.0f} MiB for all {args.n} instances; shap "
                  f"{peaks['shap'] / 2**20:.0f} MiB for 3 instances (one at a time)")

    swept = sweep(args) if args.features else []
    ratios = ", ".join(f"B={r['B']}: {r['med']['shap'] / r['med']['ours']:.2f}" for r in results)
    print(f"targets: shap / ours >= {TARGET_RATIO:g}: {ratios}")
    worst = max(r["diff"] for r in results + swept)
    same = worst <= AGREEMENT_TOL and all(r["same_coalitions"] for r in results + swept)
    print(f"same values (every max |ours - shap| <= {AGREEMENT_TOL:.0e}, same coalitions): "
          f"{'yes' if same else 'NO'} (worst {worst:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
