"""How time and peak memory grow with the size of the job: ours vs Captum/shap vs the floor.

Three methods, each against the sizes that drive its cost:

- **IG** (``native:integrated_gradients``, ``batch_size="auto"``, Gauss-Legendre steps, zero
  baseline) vs Captum's ``IntegratedGradients`` on the whole batch (its defaults:
  ``internal_batch_size=None``, Gauss-Legendre) vs the floor, plain torch forward+backward
  over the same ``N x steps`` path rows in the best of several chunk sizes (64, 256, 1024 rows
  and all rows in one call), against the instances ``N``, the series length ``T`` and the
  number of ``steps`` (the other two held at their base values);
- **occlusion** (``native:segment_occlusion``, its default windows: ``w = T // 10`` steps,
  stride ``w``, zero baseline) vs Captum's ``Occlusion`` with the same windows and baseline
  (``sliding_window_shapes=(1, w)``, ``strides=(1, w)``, its default
  ``perturbations_per_eval=1``) vs the forward-only floor: the model alone, without gradients,
  on the ``N`` inputs and their ``N x windows`` occluded copies (built outside the timer), in
  the best of the same chunk sizes; against ``T``;
- **KernelSHAP** (``native:kernel_shap``, B background rows of the ``training_sample``
  baseline) vs ``shap.KernelExplainer`` (``l1_reg=False``, one instance per call, its only
  mode) with the same background and the same coalitions and kernel weights (shap's default
  budget ``2 F + 2048``; ours draws with ``random_state``, shap's global generator is seeded
  before each instance: :mod:`xai_suite.bench.scripts.perf_tabular` shows the two are then
  identical) vs the forward-only floor, the model alone on the rows ours builds
  (:func:`xai_suite.bench.scripts.perf_tabular.time_floor`); against the features ``F``.

The models: for IG and occlusion a ``CNN1d`` (3 conv blocks, global pooling, 2 classes) with
seeded random weights on seeded standard-normal series ``(N, 1, T)`` (trained weights cost the
same time); for KernelSHAP a ``LogisticRegression`` on ``F`` seeded Gaussian features (cheap
evaluations: the time measured is the explainers' own work). KernelSHAP always runs on the
CPU (shap and scikit-learn do); ``--device`` moves IG and occlusion.

Threads: ``--threads 1`` (default) pins torch and the BLAS library to one thread in every
worker, as ``perf_tabular`` does: on a shared, loaded 2-core machine their spinning threads
made a 10-instance IG call 4x slower with two threads than with one (and the floor up to 16x),
and the ratios unstable. ``--threads 0`` keeps the libraries' defaults (use it on a quiet
machine with many cores, or with ``--device cuda``).

Timings: one fresh worker process per method runs its cases one after the other; in each case
every implementation (ours, the peer, each floor chunk size) is called in turn, call by call,
``--repeats`` times after a warm-up of each (the machine drifts, so only interleaved calls
compare fairly), and the tables give medians: seconds per call of all ``N`` instances for IG
and occlusion, seconds per instance for KernelSHAP (shap explains fewer instances than ours,
one call each). Peak memory: one fresh worker, which imports everything and then forks a
child per case and implementation; the child builds the case and runs it twice, and
reports its peak RSS (``VmHWM``, reset before the calls) above what it held before them (or
the peak CUDA memory). Agreement: ours vs the peer, ``max |ours - peer| / max |peer|`` over the
warm-up outputs, at most ``1e-4`` (float32 models).

Printed: one table per method and axis (size, ours / peer / floor seconds, ours / floor,
peer / ours, peak MiB of ours and the peer, agreement), the log-log slope of time against the
size (``np.polyfit`` on the logs) of each implementation, and at the end the worst ratio of
ours to the floor per method.

Run: ``python -m xai_suite.bench.scripts.scaling [--quick] [--repeats 5] [--device auto]
[--only ig|occlusion|kernel_shap] [--threads 1] [--no-memory]``; ``--quick`` (tiny sizes, one repeat) is the
smoke test's run. ``xai-suite bench perf [--quick]`` runs it (with the suite's other scripts)
and saves its output to ``OUT/perf.txt``. In a checkout, ``python benchmarks/scaling.py`` is the
same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._proc import reset_peak, rss_bytes
from .perf_gradients import gradient_floor

SEED = 0
AGREEMENT_TOL = 1e-4
FLOOR_CHUNKS = (64, 256, 1024)
METHODS = ("ig", "occlusion", "kernel_shap")
PEER = {"ig": "Captum IG", "occlusion": "Captum Occlusion", "kernel_shap": "shap Kernel"}


@dataclass(frozen=True)
class Grid:
    """Sizes of one run: the axes swept per method and the values held fixed meanwhile."""

    ig_n: tuple[int, ...]
    ig_t: tuple[int, ...]
    ig_steps: tuple[int, ...]
    ig_base: dict  # {"n", "t", "steps"} held fixed while another axis is swept
    occ_t: tuple[int, ...]
    occ_n: int
    ks_f: tuple[int, ...]
    ks_n: int  # instances ours explains (one call)
    ks_n_peer: int  # of which shap explains the first ... (one call each)
    ks_n_floor: int  # instances whose rows time the floor
    ks_background: int


FULL = Grid(ig_n=(1, 3, 10, 30, 100), ig_t=(100, 300, 1000, 3000), ig_steps=(4, 16, 64, 256),
            ig_base={"n": 10, "t": 150, "steps": 16}, occ_t=(100, 300, 1000, 3000), occ_n=10,
            ks_f=(10, 30, 100, 200), ks_n=20, ks_n_peer=5, ks_n_floor=5, ks_background=10)
QUICK = Grid(ig_n=(1, 4), ig_t=(40, 80), ig_steps=(4, 8), ig_base={"n": 2, "t": 40, "steps": 8},
             occ_t=(40, 80), occ_n=2, ks_f=(4, 8), ks_n=3, ks_n_peer=2, ks_n_floor=2,
             ks_background=5)


def cases(method: str, grid: Grid) -> list[tuple[str, int, dict]]:
    """``(axis, size, parameters)`` of every case of ``method``."""
    if method == "ig":
        out = []
        for axis, key, sizes in (("N", "n", grid.ig_n), ("T", "t", grid.ig_t),
                                 ("steps", "steps", grid.ig_steps)):
            out += [(axis, s, {**grid.ig_base, key: s}) for s in sizes]
        return out
    if method == "occlusion":
        return [("T", t, {"n": grid.occ_n, "t": t}) for t in grid.occ_t]
    return [("F", f, {"f": f, "n": grid.ks_n, "n_peer": grid.ks_n_peer, "n_floor": grid.ks_n_floor,
                      "background": grid.ks_background}) for f in grid.ks_f]


# -- building a case (worker side) ---------------------------------------------------------
@dataclass
class Case:
    """The zero-argument callables of one case and how to compare ours with the peer."""

    runs: dict[str, Callable[[], object]]  # "ours", "peer", "floor_<chunk>"
    agreement: Callable[[object, object], tuple[float, float]]  # (ours out, peer out) -> (diff, scale)
    per: int  # the medians are divided by this (1: seconds per call)
    device: str


def _series_model(params: dict, device: str):
    import torch

    from xai_suite.batching import resolve_device
    from xai_suite_timeseries import CNN1d

    dev = resolve_device(device)
    torch.manual_seed(SEED)
    model = CNN1d(1, 2).eval().to(dev)
    rng = np.random.default_rng(SEED)
    x = torch.from_numpy(rng.standard_normal((params["n"], 1, params["t"]), dtype=np.float32)).to(dev)
    with torch.no_grad():
        target = model(x).argmax(1)
    return dev, model, x, target


def _chunks(n_rows: int) -> list[int]:
    """Floor chunk sizes below ``n_rows``, and all rows in one call."""
    return sorted({c for c in FLOOR_CHUNKS if c < n_rows} | {n_rows})


def _relative(a, b) -> tuple[float, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.abs(b).max())
    return float(np.abs(a - b).max()) / (scale or 1.0), scale


def build_ig(params: dict, device: str) -> Case:
    import torch
    from captum.attr import IntegratedGradients

    import xai_suite as xs

    dev, model, x, target = _series_model(params, device)
    steps = params["steps"]
    ours = xs.create_explainer("native:integrated_gradients", model, n_steps=steps, device=device)
    ig = IntegratedGradients(model)
    target_np = target.cpu().numpy()
    # the floor's rows: the path points alpha_k x (zero baseline), each with its instance's target
    alphas = torch.from_numpy(np.polynomial.legendre.leggauss(steps)[0] / 2 + 0.5).float().to(dev)
    z_all = (x.unsqueeze(1) * alphas.view(1, -1, 1, 1)).reshape(-1, *x.shape[1:])
    t_all = target.repeat_interleave(steps)

    def floor(chunk: int):
        return gradient_floor(model, z_all, t_all, chunk)

    runs = {"ours": lambda: ours.explain(x, target=target_np).attributions,
            "peer": lambda: ig.attribute(x, target=target, n_steps=steps).detach().cpu().numpy(),
            **{f"floor_{c}": floor(c) for c in _chunks(len(z_all))}}
    return Case(runs, _relative, 1, str(dev))


def build_occlusion(params: dict, device: str) -> Case:
    import torch
    from captum.attr import Occlusion

    import xai_suite as xs
    from xai_suite_timeseries.perturbation import occlusion_windows

    dev, model, x, target = _series_model(params, device)
    t = params["t"]
    window = max(1, t // 10)  # ours' default window, and stride = window
    ours = xs.create_explainer("native:segment_occlusion", model, device=device)
    occ = Occlusion(model)
    target_np = target.cpu().numpy()
    spans = occlusion_windows(t, window, window)
    copies = x.unsqueeze(1).repeat(1, len(spans), 1, 1)  # (N, W, 1, T): window k zeroed in copy k
    for k, (lo, hi) in enumerate(spans):
        copies[:, k, :, lo:hi] = 0.0
    rows = torch.cat([x, copies.reshape(-1, *x.shape[1:])])  # f(x) and every occluded copy

    def floor(chunk: int):
        def run():
            with torch.no_grad():
                for s in range(0, len(rows), chunk):
                    model(rows[s : s + chunk])
        return run

    def peer():
        return occ.attribute(x, sliding_window_shapes=(1, window), strides=(1, window),
                             baselines=0.0, target=target).detach().cpu().numpy()

    runs = {"ours": lambda: ours.explain(x, target=target_np).attributions, "peer": peer,
            **{f"floor_{c}": floor(c) for c in _chunks(len(rows))}}
    return Case(runs, _relative, 1, str(dev))


def pin_threads(threads: int) -> None:
    """Pin torch and the BLAS library to ``threads`` threads (0: leave their defaults)."""
    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)


def build_kernel_shap(params: dict, device: str) -> Case:
    """``device`` is ignored: shap and scikit-learn run on the CPU."""
    import shap
    import torch
    from sklearn.linear_model import LogisticRegression

    import xai_suite as xs
    from xai_suite.modeling import ModelWrapper

    from .perf_tabular import background_of, run_shap, time_floor

    f, n = params["f"], params["n"]
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((300 + n, f)).astype(np.float32)
    w = rng.standard_normal(f) / np.sqrt(f)
    y = (X @ w + 0.5 * rng.standard_normal(len(X)) > 0).astype(int)
    X_train, x = X[:300], X[300:]
    clf = LogisticRegression(max_iter=1000).fit(X_train, y[:300])
    ours = xs.create_explainer("native:kernel_shap", clf, n_baseline_samples=params["background"],
                               random_state=SEED).fit(X_train)
    kernel = shap.KernelExplainer(clf.predict_proba, background_of(ours, x).astype(np.float64))
    target = clf.predict_proba(x).argmax(1)  # ours' default target (the agreement checks it)
    forward = ModelWrapper(clf, device="cpu").forward  # ours sends scikit-learn models float64 rows
    n_peer, n_floor = params["n_peer"], params["n_floor"]
    chunk: list[int] = []  # ours' chunk size, from its first call (not made before a memory run)

    # each run returns seconds per instance (shap's and the floor's own timers), and its values
    def run_ours():
        t0 = time.perf_counter()
        exp = ours.explain(x)
        seconds = (time.perf_counter() - t0) / n
        chunk[:] = [int(exp.params["batch_size_used"])]
        return seconds, exp.attributions

    def run_peer():
        values, seconds = run_shap(kernel, x[:n_peer], target)
        return float(np.sum(seconds)) / n_peer, values

    def run_floor():
        if not chunk:
            run_ours()
        return time_floor(forward, ours, x[:n_floor], chunk[0], torch.float64), chunk[0]

    def agreement(a, b):
        return _relative(a[1][:n_peer], b[1])

    # "floor_0": the chunk is ours' (known once it ran), reported from the floor's output
    return Case({"ours": run_ours, "peer": run_peer, "floor_0": run_floor}, agreement, 0, "cpu")


BUILD = {"ig": build_ig, "occlusion": build_occlusion, "kernel_shap": build_kernel_shap}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(case: Case, name: str) -> tuple[float, object]:
    """Seconds of one call of ``name`` (its own figure where it times itself) and its output."""
    t0 = time.perf_counter()
    out = case.runs[name]()
    _sync(case.device)
    seconds = time.perf_counter() - t0
    return (out[0], out) if case.per == 0 else (seconds, out)


def time_worker(method: str, grid: Grid, device: str, repeats: int) -> list[dict]:
    """Every case of ``method``: medians of interleaved calls, the floor's best chunk, agreement."""
    results = []
    for axis, size, params in cases(method, grid):
        print(f"  timing {method} {axis}={size} ...", file=sys.stderr, flush=True)
        case = BUILD[method](params, device)
        warm = {name: _timed(case, name)[1] for name in case.runs}  # warm-up and agreement
        diff, scale = case.agreement(warm["ours"], warm["peer"])
        seconds: dict[str, list[float]] = {name: [] for name in case.runs}
        for _ in range(repeats):
            for name in case.runs:
                seconds[name].append(_timed(case, name)[0])
        med = {name: float(np.median(v)) for name, v in seconds.items()}
        best = min((n for n in med if n.startswith("floor_")), key=med.get)
        chunk = int(best.removeprefix("floor_")) or int(warm[best][1])  # 0: ours' chunk
        results.append({"axis": axis, "size": size, "ours": med["ours"], "peer": med["peer"],
                        "floor": med[best], "chunk": chunk,
                        "diff": diff, "scale": scale, "device": case.device})
    return results


def _peak_child(method: str, params: dict, device: str, impl: str) -> dict:
    """In a forked child: peak memory of two calls of ``impl`` above what was held before."""
    import torch

    case = BUILD[method](params, device)
    cuda = case.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_bytes("VmRSS")
        reset_peak()
    case.runs[impl]()
    case.runs[impl]()
    _sync(case.device)
    peak = torch.cuda.max_memory_allocated() if cuda else rss_bytes("VmHWM")
    return {"peak_extra": peak - before}


def _forked(fn: Callable[..., dict], *args) -> dict:
    """``fn(*args)`` in a forked child process (a copy of this one, imports done); its result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            text = json.dumps(fn(*args))
        except BaseException as exc:  # reported to the parent, which raises
            text = json.dumps({"error": repr(exc)})
        with os.fdopen(w, "w") as fh:
            fh.write(text)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    out = json.loads(text) if text else {"error": "the child wrote nothing"}
    if "error" in out:
        raise RuntimeError(f"memory child {args[:1]} failed: {out['error']}")
    return out


def memory_worker(methods: list[str], grid: Grid, device: str) -> dict[str, list[dict]]:
    """Peak memory of ours and the peer in every case of ``methods``, a forked child each.

    This process only imports (no torch computation before the forks, so no thread pool or
    CUDA context is inherited); each child builds its case from scratch.
    """
    import captum.attr  # noqa: F401  (imported once, before the forks)
    import shap  # noqa: F401
    import torch  # noqa: F401

    import xai_suite  # noqa: F401
    import xai_suite_timeseries  # noqa: F401

    out: dict[str, list[dict]] = {}
    for method in methods:
        for axis, size, params in cases(method, grid):
            print(f"  memory {method} {axis}={size} ...", file=sys.stderr, flush=True)
            out.setdefault(method, []).append(
                {impl: _forked(_peak_child, method, params, device, impl)["peak_extra"]
                 for impl in ("ours", "peer")})
    return out


# -- parent side ---------------------------------------------------------------------------
def spawn(args_list: list[str]) -> list[dict]:
    # by module name, not file path: the same command from a checkout or an installed wheel
    # the worker's progress and errors go straight to this process's stderr
    res = subprocess.run([sys.executable, "-m", "xai_suite.bench.scripts.scaling", *args_list],
                         stdout=subprocess.PIPE, text=True, check=False, env=dict(os.environ))
    if res.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args_list)} failed with status {res.returncode} "
                           "(its error is on stderr above)")
    return json.loads(res.stdout.strip().splitlines()[-1])


def slope(sizes, seconds) -> float:
    """Log-log slope of time against size: ``np.polyfit(log(size), log(time), 1)[0]``."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def report(method: str, axis: str, rows: list[dict], peaks: list[dict] | None, fixed: str) -> dict:
    """Print one method's table for one axis and its slopes; the slopes and the worst ratio."""
    unit = "s/instance" if method == "kernel_shap" else "s/call"
    peer = PEER[method]
    print(f"{method} vs {axis} ({fixed}; device {rows[0]['device']}; {unit})")
    head = (f"  {axis:>6s} {'ours':>10s} {peer:>17s} {'floor':>10s} {'chunk':>6s} "
            f"{'ours/floor':>10s} {'peer/ours':>9s} {'MiB ours':>9s} {'MiB peer':>9s} {'rel diff':>9s}")
    print(head)
    for i, r in enumerate(rows):
        mib = ((f"{peaks[i]['ours'] / 2**20:9.1f} {peaks[i]['peer'] / 2**20:9.1f}") if peaks
               else f"{'-':>9s} {'-':>9s}")
        print(f"  {r['size']:6d} {r['ours']:10.5f} {r['peer']:17.5f} {r['floor']:10.5f} "
              f"{r['chunk']:6d} {r['ours'] / r['floor']:10.2f} {r['peer'] / r['ours']:9.2f} "
              f"{mib} {r['diff']:9.1e}")
    sizes = [r["size"] for r in rows]
    slopes = {k: slope(sizes, [r[k] for r in rows]) for k in ("ours", "peer", "floor")}
    print(f"  log-log slope of time vs {axis}: ours {slopes['ours']:.2f}, {peer} "
          f"{slopes['peer']:.2f}, floor {slopes['floor']:.2f}")
    worst = max(rows, key=lambda r: r["ours"] / r["floor"])
    agree = max(r["diff"] for r in rows)
    print(f"  agreement: max |ours - peer| / max |peer| = {agree:.1e} (<= {AGREEMENT_TOL:.0e}: "
          f"{'yes' if agree <= AGREEMENT_TOL else 'NO'})\n")
    return {"slopes": slopes, "worst": (worst["ours"] / worst["floor"], f"{axis}={worst['size']}"),
            "agree": agree}


def _fixed(method: str, axis: str, grid: Grid) -> str:
    if method == "ig":
        names = {"N": "n", "T": "t", "steps": "steps"}
        return ", ".join(f"{a}={grid.ig_base[k]}" for a, k in names.items() if a != axis)
    if method == "occlusion":
        return f"N={grid.occ_n}, 1 channel, window T//10, stride = window, zero baseline"
    return (f"B={grid.ks_background} background rows, 2F+2048 coalitions, ours on {grid.ks_n} "
            f"instances in one call, shap on {grid.ks_n_peer} one at a time, floor on the rows of "
            f"{grid.ks_n_floor}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (smoke test)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved calls per implementation (default 5; 1 with --quick)")
    p.add_argument("--device", default="auto", help="IG and occlusion: auto, cpu or cuda")
    p.add_argument("--only", choices=METHODS, action="append",
                   help="run only this method (repeatable)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads in the workers (0: the libraries' defaults)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory workers")
    p.add_argument("--worker", choices=("time", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--method", choices=METHODS, action="append", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    grid = QUICK if args.quick else FULL
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    if repeats < 1:
        p.error("--repeats must be at least 1")
    if args.threads < 0:
        p.error("--threads must be 0 (defaults) or more")
    if args.worker:
        pin_threads(args.threads)
    if args.worker == "time":
        print(json.dumps(time_worker(args.method[0], grid, args.device, repeats)))
        return 0
    if args.worker == "memory":
        print(json.dumps(memory_worker(args.method, grid, args.device)))
        return 0

    methods = tuple(m for m in METHODS if m in (args.only or METHODS))
    common = ["--device", args.device, "--repeats", str(repeats), "--threads", str(args.threads),
              *(["--quick"] if args.quick else [])]
    print(f"scaling: {'quick sizes' if args.quick else 'full sizes'}; medians of {repeats} "
          f"interleaved call(s) per implementation after a warm-up; torch/BLAS threads "
          f"{args.threads or 'default'}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start\n")
    worst: dict[str, tuple[float, str]] = {}
    agree_all = True
    timings = {m: spawn(["--worker", "time", "--method", m, *common]) for m in methods}
    all_peaks = None if args.no_memory else spawn(
        ["--worker", "memory", *(a for m in methods for a in ("--method", m)), *common])
    for method, timing in timings.items():
        peaks = None if all_peaks is None else all_peaks[method]
        for axis in dict.fromkeys(r["axis"] for r in timing):
            idx = [i for i, r in enumerate(timing) if r["axis"] == axis]
            out = report(method, axis, [timing[i] for i in idx],
                         None if peaks is None else [peaks[i] for i in idx], _fixed(method, axis, grid))
            agree_all &= out["agree"] <= AGREEMENT_TOL
            if method not in worst or out["worst"][0] > worst[method][0]:
                worst[method] = out["worst"]
    print("worst ratio of ours to the floor per method:")
    for method, (ratio, where) in worst.items():
        print(f"  {method:12s} {ratio:6.2f} (at {where})")
    print(f"same values as the peers (every relative difference <= {AGREEMENT_TOL:.0e}): "
          f"{'yes' if agree_all else 'NO'}")
    return 0 if agree_all else 1


if __name__ == "__main__":
    sys.exit(main())
