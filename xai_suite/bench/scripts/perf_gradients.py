"""Batched integrated gradients vs Captum vs the physical floor, on GunPoint with a 1-D CNN.

Prints, per explained instance (50 Gauss-Legendre steps, zero baseline):

- ours: ``native:integrated_gradients`` with ``batch_size="auto"``;
- Captum IG called one instance at a time;
- Captum IG on the whole batch with its default ``internal_batch_size=None``;
- Captum IG with a hand-tuned ``internal_batch_size=50`` (reference; Captum raises it to the
  number of instances);
- the floor: plain forward+backward passes over the same N x 50 rows, in the best of
  several chunk sizes, and all in one call;

each also with glibc's malloc tuned (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
``MALLOC_MMAP_THRESHOLD_``) to show what large CPU chunks cost without it.

and a "small calls" section (``--small`` runs only it; ``--no-small`` skips it): per-call time
of ours, a hand-written torch IG and Captum's IG for the few-instance calls where fixed
per-call costs show, at (N, T, steps) = (1, 150, 8), (10, 100, 16) and (10, 3000, 16) (GunPoint
series resampled to length T; ``--small-configs`` changes them). The hand-written IG is one
forward+backward over the N x steps rows in chunks of the best of several sizes (the floor);
the table gives ours' overhead above it in ms, each method's ratio to it, the model calls one
of our calls makes, and the largest difference between our attributions and the hand-written
ones (the agreement check: it fails the run when above 1e-4 of their scale).

Timings: one fresh worker process per allocator setting runs every method in turn, call by
call, ``--repeats`` times (this machine drifts by ~20% over tens of seconds, so only
interleaved calls compare fairly); the table gives medians. Peak memory: one fresh worker
per method, its peak RSS (or peak CUDA memory) over a warm-up and one call, above what it
held before.

Run: ``python -m xai_suite.bench.scripts.perf_gradients [--n 100] [--repeats 7] [--device auto]
[--small | --no-small]``.
``xai-suite bench perf [--quick]`` runs it (with the suite's other scripts) and saves its output to
``OUT/perf.txt``. In a checkout, ``python benchmarks/perf_gradients.py`` is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._proc import reset_peak, rss_bytes

STEPS = 50
MALLOC_ENV = {
    "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),
    "MALLOC_TOP_PAD_": str(2**30),
    "MALLOC_MMAP_THRESHOLD_": str(2**30),
}
FLOOR_CHUNKS = (64, 128, 256, 512, 1024)
METHODS = ("ours", "captum_one_at_a_time", "captum_whole_batch", "captum_ibs50",
           *(f"floor_{c}" for c in FLOOR_CHUNKS), "floor_one_call")
LABELS = {
    "ours": "ours (native IG, batch_size='auto')",
    "captum_one_at_a_time": "Captum IG, one instance at a time",
    "captum_whole_batch": "Captum IG, whole batch (internal_batch_size=None)",
    "captum_ibs50": "Captum IG, hand-tuned internal_batch_size=50",
    "floor": "floor: forward+backward, best chunk size",
    "floor_one_call": "forward+backward, all rows in one call",
}


# -- worker side ---------------------------------------------------------------------------
def gradient_floor(model, z_all, t_all, chunk: int) -> Callable[[], None]:
    """The floor's call: forward and backward passes of ``model`` over the rows ``z_all``
    (R, ...), ``chunk`` rows at a time, each row's output ``t_all`` (R,) differentiated."""
    import torch

    def run():
        for s in range(0, len(z_all), chunk):
            z = z_all[s : s + chunk].clone().requires_grad_(True)
            out = model(z).gather(1, t_all[s : s + chunk].unsqueeze(1)).sum()
            torch.autograd.grad(out, z)
    return run


def build(method: str, weights: str, n: int, device: str):
    """Model, inputs and a zero-argument callable running ``method`` once over ``n`` instances."""
    import torch

    import xai_suite as xs
    from xai_suite.batching import resolve_device
    from xai_suite_timeseries import CNN1d

    dev = resolve_device(device)
    Xt, _ = xs.datasets.load_ucr("GunPoint", "test")
    x = torch.from_numpy(Xt[:n]).to(dev)
    model = CNN1d(1, 2)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval().to(dev)
    with torch.no_grad():
        target = model(x).argmax(1)
    z_all = x.repeat_interleave(STEPS, 0)
    t_all = target.repeat_interleave(STEPS, 0)

    def floor(chunk):
        return gradient_floor(model, z_all, t_all, chunk)

    if method == "ours":
        explainer = xs.create_explainer("native:integrated_gradients", model, n_steps=STEPS,
                                        device=device)
        return dev, lambda: explainer.explain(x, target=target.cpu().numpy())
    if method.startswith("captum"):
        import warnings

        from captum.attr import IntegratedGradients

        warnings.filterwarnings("ignore", message="Internal batch size cannot be less")
        ig = IntegratedGradients(model)
        if method == "captum_one_at_a_time":
            def run():
                for i in range(n):
                    ig.attribute(x[i : i + 1], target=target[i : i + 1], n_steps=STEPS)
            return dev, run
        ibs = None if method == "captum_whole_batch" else 50
        return dev, lambda: ig.attribute(x, target=target, n_steps=STEPS, internal_batch_size=ibs)
    if method == "floor_one_call":
        return dev, floor(len(z_all))
    return dev, floor(int(method.removeprefix("floor_")))


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_worker(weights: str, n: int, device: str, repeats: int) -> dict:
    """Every method in turn, call by call, ``repeats`` times: seconds per call."""
    runs = {m: build(m, weights, n, device) for m in METHODS}
    for dev, run in runs.values():  # warm-up: allocator, oneDNN kernels, lazy imports
        run()
        _sync(dev)
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(repeats):
        for m, (dev, run) in runs.items():
            t0 = time.perf_counter()
            run()
            _sync(dev)
            seconds[m].append(time.perf_counter() - t0)
    dev = runs["ours"][0]
    return {"seconds": seconds, "device": str(dev)}


def memory_worker(method: str, weights: str, n: int, device: str) -> dict:
    """Peak memory of a warm-up and one call of ``method``, above what was held before."""
    import torch

    dev, run = build(method, weights, n, device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        before = rss_bytes("VmRSS")
        reset_peak()
    run()
    run()
    _sync(dev)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - before
    else:
        peak = rss_bytes("VmHWM") - before
    return {"peak_extra": peak}


# -- small calls ---------------------------------------------------------------------------
#: (instances, series length, steps) of the small-calls section.
SMALL_CONFIGS = ((1, 150, 8), (10, 100, 16), (10, 3000, 16))
#: Chunk sizes (rows) the hand-written IG is timed at; the best is the floor (0: all rows).
SMALL_CHUNKS = (16, 32, 64, 0)
SMALL_METHODS = ("ours", "captum", *(f"hand_{c}" for c in SMALL_CHUNKS))
AGREE_RTOL = 1e-4


def parse_configs(text: str) -> tuple[tuple[int, int, int], ...]:
    """``"1x150x8,10x100x16"`` -> ``((1, 150, 8), (10, 100, 16))``."""
    try:
        configs = tuple(tuple(int(v) for v in c.split("x")) for c in text.split(","))
    except ValueError:
        configs = ((),)
    if any(len(c) != 3 or min(c) < 1 for c in configs):
        raise argparse.ArgumentTypeError(f"--small-configs takes NxTxSTEPS[,NxTxSTEPS...]; got {text!r}")
    return configs


def small_build(weights: str, n: int, t: int, steps: int, device: str):
    """Zero-argument callables for each of :data:`SMALL_METHODS` explaining ``n`` GunPoint
    series resampled to length ``t`` with ``steps`` Gauss-Legendre steps (zero baseline), and
    each one's attributions."""
    import torch

    import xai_suite as xs
    from xai_suite.batching import resolve_device
    from xai_suite_timeseries import CNN1d

    dev = resolve_device(device)
    Xt, _ = xs.datasets.load_ucr("GunPoint", "test")
    src = np.linspace(0, 1, Xt.shape[-1])
    series = np.stack([np.interp(np.linspace(0, 1, t), src, Xt[i % len(Xt), 0]) for i in range(n)])
    x = torch.from_numpy(series[:, None, :].astype(np.float32)).to(dev)
    model = CNN1d(1, 2)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval().to(dev)
    with torch.no_grad():
        target = model(x).argmax(1)
    nodes, w = np.polynomial.legendre.leggauss(steps)  # constants of a hand-written IG
    alphas = torch.tensor((nodes + 1) / 2, dtype=x.dtype, device=dev).view(1, -1, 1, 1)
    weights_t = torch.tensor(w / 2, dtype=x.dtype, device=dev).view(1, -1, 1, 1)
    t_rows = target.repeat_interleave(steps)

    def hand(chunk):
        def run():
            z_all = (alphas * x.unsqueeze(1)).reshape(n * steps, *x.shape[1:])
            c = chunk or len(z_all)
            grads = []
            for s in range(0, len(z_all), c):
                z = z_all[s : s + c].requires_grad_(True)
                out = model(z).gather(1, t_rows[s : s + c].unsqueeze(1)).sum()
                grads.append(torch.autograd.grad(out, z)[0])
            g = torch.cat(grads).view(n, steps, *x.shape[1:])
            return x * (g * weights_t).sum(1)
        return run

    explainer = xs.create_explainer("native:integrated_gradients", model, n_steps=steps, device=device)
    x_np, target_np = x.cpu().numpy(), target.cpu().numpy()

    from captum.attr import IntegratedGradients

    captum = IntegratedGradients(model)
    runs = {"ours": lambda: explainer.explain(x_np, target=target_np).attributions,
            "captum": lambda: captum.attribute(x, target=target, n_steps=steps),
            **{f"hand_{c}": hand(c) for c in SMALL_CHUNKS}}
    return dev, model, runs


def small_worker(weights: str, device: str, repeats: int, configs) -> dict:
    """Per config: every method in turn, call by call, ``repeats`` times (seconds per call);
    model calls per call of ours; the agreement of ours with the hand-written IG."""
    import torch

    rows = []
    threads = torch.get_num_threads()
    for n, t, steps in configs:
        dev, model, runs = small_build(weights, n, t, steps, device)
        values = {}
        for m, run in runs.items():  # warm-up: allocator, oneDNN kernels, lazy imports
            out = run()
            values[m] = np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out)
            _sync(dev)
        ref = values["hand_0"]
        agree = {m: float(np.abs(values[m] - ref).max() / max(np.abs(ref).max(), 1e-30))
                 for m in ("ours", "captum")}
        calls: list[bool] = []
        handle = model.register_forward_hook(lambda *_, c=calls: c.append(torch.is_grad_enabled()))
        runs["ours"]()
        handle.remove()
        seconds: dict[str, list[float]] = {m: [] for m in runs}
        for _ in range(repeats):
            for m, run in runs.items():
                t0 = time.perf_counter()
                run()
                _sync(dev)
                seconds[m].append(time.perf_counter() - t0)
        rows.append({"config": [n, t, steps], "seconds": seconds, "agree": agree,
                     "calls_grad": sum(calls), "calls_nograd": len(calls) - sum(calls)})
    return {"rows": rows, "device": str(dev), "threads": threads}


def print_small(result: dict, repeats: int) -> bool:
    """The small-calls table; returns whether every agreement check passed."""
    print(f"[small calls] device {result['device']}, {result['threads']} torch thread(s); zero baseline, "
          f"Gauss-Legendre; medians of {repeats} interleaved calls per method; floor = hand-written "
          f"torch IG at the best chunk of {', '.join(str(c or 'all') for c in SMALL_CHUNKS)} rows")
    print(f"{'N':>3s} {'T':>5s} {'steps':>5s} {'ours ms':>9s} {'floor ms':>9s} {'captum ms':>9s} "
          f"{'overhead ms':>11s} {'ours x floor':>12s} {'captum x floor':>14s} {'model calls':>11s} "
          f"{'agree (ours, captum)':>21s}")
    ok = True
    for row in result["rows"]:
        med = {m: float(np.median(v)) for m, v in row["seconds"].items()}
        best = min(SMALL_CHUNKS, key=lambda c: med[f"hand_{c}"])
        floor = med[f"hand_{best}"]
        n, t, steps = row["config"]
        calls = f"{row['calls_grad']}+{row['calls_nograd']}"
        agree = f"{row['agree']['ours']:.1e}, {row['agree']['captum']:.1e}"
        ok &= row["agree"]["ours"] <= AGREE_RTOL
        print(f"{n:3d} {t:5d} {steps:5d} {med['ours'] * 1e3:9.3f} {floor * 1e3:9.3f} "
              f"{med['captum'] * 1e3:9.3f} {(med['ours'] - floor) * 1e3:11.3f} {med['ours'] / floor:12.2f} "
              f"{med['captum'] / floor:14.2f} {calls:>11s} {agree:>21s}")
    print("model calls: ours' forwards with gradients + without (the batch-size probe); agree: max |ours "
          f"- hand-written| / max |hand-written| (ours must be <= {AGREE_RTOL:g})")
    print("targets (small calls): 1-instance overhead <= 0.5 ms above the hand-written IG; ours x floor "
          "<= 1.2 at N=10, T=100 and T=3000\n")
    return ok


# -- parent side ---------------------------------------------------------------------------
def train(weights: Path, seed: int) -> float:
    import torch

    import xai_suite as xs
    from xai_suite_timeseries import CNN1d, fit_classifier

    X, y = xs.datasets.load_ucr("GunPoint", "train")
    Xt, yt = xs.datasets.load_ucr("GunPoint", "test")
    torch.manual_seed(seed)
    model = fit_classifier(CNN1d(1, 2), X, y, epochs=60, random_state=seed)
    torch.save(model.state_dict(), weights)
    with torch.no_grad():
        return float((model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean())


def spawn(args_list: list[str], env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    # by module name, not file path: the same command from a checkout or an installed wheel
    res = subprocess.run([sys.executable, "-m", "xai_suite.bench.scripts.perf_gradients", *args_list],
                         env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {args_list[:2]} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="test instances (GunPoint has 150)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved calls per method")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-malloc-variant", action="store_true")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--small", action="store_true", help="only the small-calls section")
    group.add_argument("--no-small", action="store_true", help="skip the small-calls section")
    p.add_argument("--small-configs", type=parse_configs, default=SMALL_CONFIGS,
                   help="NxTxSTEPS,... of the small-calls section (default 1x150x8,10x100x16,10x3000x16)")
    p.add_argument("--small-repeats", type=int, default=15,
                   help="interleaved calls per method in the small-calls section")
    p.add_argument("--small-threads", type=int, default=None,
                   help="torch threads of the small-calls worker (default: torch's own); 1 keeps "
                   "a loaded machine's OpenMP threads from spinning against other processes")
    p.add_argument("--worker", choices=("time", "memory", "small"), help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "time":
        print(json.dumps(time_worker(args.weights, args.n, args.device, args.repeats)))
        return 0
    if args.worker == "memory":
        print(json.dumps(memory_worker(args.method, args.weights, args.n, args.device)))
        return 0
    if args.worker == "small":
        if args.small_threads is not None:
            import torch

            torch.set_num_threads(args.small_threads)
        print(json.dumps(small_worker(args.weights, args.device, args.small_repeats,
                                      args.small_configs)))
        return 0
    configs = ",".join("x".join(map(str, c)) for c in args.small_configs)
    small_args = ["--worker", "small", "--small-repeats", str(args.small_repeats), "--small-configs",
                  configs, "--device", args.device,
                  *([] if args.small_threads is None else ["--small-threads", str(args.small_threads)])]
    if args.small:
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "cnn.pt"
            acc = train(weights, args.seed)
            print(f"GunPoint CNN1d, test accuracy {acc:.3f}\n")
            print("  small calls ...", file=sys.stderr, flush=True)
            small = spawn([*small_args, "--weights", str(weights)], {})
        return 0 if print_small(small, args.small_repeats) else 1

    variants = {"default malloc": {}}
    if not args.no_malloc_variant:
        variants["tuned malloc"] = MALLOC_ENV
    common = ["--n", str(args.n), "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "cnn.pt"
        acc = train(weights, args.seed)
        print(f"GunPoint CNN1d, test accuracy {acc:.3f}; explaining {args.n} test instances, "
              f"{STEPS} steps; {args.repeats} interleaved calls per method\n")
        results = {}
        for vname, env in variants.items():
            print(f"  timing ({vname}) ...", file=sys.stderr, flush=True)
            timing = spawn(["--worker", "time", "--weights", str(weights), "--repeats",
                            str(args.repeats), *common], env)
            peaks = {}
            for m in METHODS:
                print(f"  memory ({vname}) {m} ...", file=sys.stderr, flush=True)
                peaks[m] = spawn(["--worker", "memory", "--method", m, "--weights",
                                  str(weights), *common], env)["peak_extra"]
            results[vname] = (timing, peaks)
        if not args.no_small:
            print("  small calls ...", file=sys.stderr, flush=True)
            small = spawn([*small_args, "--weights", str(weights)], {})

    summary = {}
    for vname, (timing, peaks) in results.items():
        med = {m: float(np.median(v)) / args.n for m, v in timing["seconds"].items()}
        best = min(FLOOR_CHUNKS, key=lambda c: med[f"floor_{c}"])
        med["floor"], peaks["floor"] = med[f"floor_{best}"], peaks[f"floor_{best}"]
        summary[vname] = (med, peaks)
        print(f"[{vname}] device {timing['device']}; floor: best chunk {best} rows of "
              f"{', '.join(map(str, FLOOR_CHUNKS))}")
        print(f"{'method':52s} {'ms/instance':>11s} {'x floor':>8s} {'peak extra MiB':>15s}")
        for m in ("ours", "captum_one_at_a_time", "captum_whole_batch", "captum_ibs50", "floor",
                  "floor_one_call"):
            print(f"{LABELS[m]:52s} {med[m] * 1e3:11.2f} {med[m] / med['floor']:8.2f} "
                  f"{peaks[m] / 2**20:15.0f}")
        print()
    med, peaks = summary["default malloc"]
    print(f"targets (default malloc): ours/floor = {med['ours'] / med['floor']:.2f} (<= 1.15); "
          f"Captum one at a time / ours = {med['captum_one_at_a_time'] / med['ours']:.2f}, "
          f"Captum whole batch / ours = {med['captum_whole_batch'] / med['ours']:.2f} (> 1); "
          f"ours peak extra memory = {peaks['ours'] / 2**20:.0f} MiB (< 300)")
    if not args.no_small:
        print()
        return 0 if print_small(small, args.small_repeats) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
