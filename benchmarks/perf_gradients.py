"""Batched integrated gradients vs Captum vs the physical floor, on GunPoint with a 1-D CNN.

Prints, per explained instance (50 Gauss-Legendre steps, zero baseline):

- ours: ``native:integrated_gradients`` with ``batch_size="auto"``;
- Captum IG called one instance at a time;
- Captum IG on the whole batch with its default ``internal_batch_size=None``;
- Captum IG with a hand-tuned ``internal_batch_size=50`` (reference);
- the floor: plain forward+backward passes over the same N x 50 rows, in the best of
  several chunk sizes, and in one call;

each also with glibc's malloc tuned (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
``MALLOC_MMAP_THRESHOLD_``) to show what large CPU chunks cost without it. Every measurement
runs in a fresh worker process (peak memory = its peak RSS, or peak CUDA memory, above what
it held before the call); rounds alternate the methods, and the table gives medians.

Run: ``python benchmarks/perf_gradients.py [--n 100] [--rounds 3] [--device auto]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = 50
MALLOC_ENV = {
    "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),
    "MALLOC_TOP_PAD_": str(2**30),
    "MALLOC_MMAP_THRESHOLD_": str(2**30),
}
METHODS = ("ours", "captum_one_at_a_time", "captum_whole_batch", "captum_ibs50", "floor",
           "floor_one_call")
LABELS = {
    "ours": "ours (native IG, batch_size='auto')",
    "captum_one_at_a_time": "Captum IG, one instance at a time",
    "captum_whole_batch": "Captum IG, whole batch (internal_batch_size=None)",
    "captum_ibs50": "Captum IG, hand-tuned internal_batch_size=50",
    "floor": "floor: forward+backward, best chunk size",
    "floor_one_call": "forward+backward, all rows in one call",
}
FLOOR_CHUNKS = (64, 128, 256, 512, 1024)


# -- worker side ---------------------------------------------------------------------------
def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def worker(method: str, weights: str, n: int, device: str, repeats: int) -> dict:
    import torch
    from xai_suite_timeseries import CNN1d

    import xai_suite as xs
    from xai_suite.batching import resolve_device

    dev = resolve_device(device)
    Xt, _ = xs.datasets.load_ucr("GunPoint", "test")
    x = torch.from_numpy(Xt[:n]).to(dev)
    model = CNN1d(1, 2)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval().to(dev)
    with torch.no_grad():
        target = model(x).argmax(1)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def fwd_bwd(z, t):
        z = z.clone().requires_grad_(True)
        out = model(z).gather(1, t.unsqueeze(1)).sum()
        torch.autograd.grad(out, z)

    rows_total = n * STEPS
    z_all = x.repeat_interleave(STEPS, 0)
    t_all = target.repeat_interleave(STEPS, 0)

    def floor_chunked(chunk):
        def run():
            for s in range(0, rows_total, chunk):
                fwd_bwd(z_all[s : s + chunk], t_all[s : s + chunk])
        return run

    extra = {}
    if method == "ours":
        explainer = xs.create_explainer("native:integrated_gradients", model, n_steps=STEPS,
                                        device=device)

        def run():
            exp = explainer.explain(x, target=target.cpu().numpy())
            extra["batch_size_used"] = exp.params["batch_size_used"]
    elif method.startswith("captum"):
        from captum.attr import IntegratedGradients

        ig = IntegratedGradients(model)
        if method == "captum_one_at_a_time":

            def run():
                for i in range(n):
                    ig.attribute(x[i : i + 1], target=target[i : i + 1], n_steps=STEPS)
        else:
            ibs = None if method == "captum_whole_batch" else 50

            def run():
                ig.attribute(x, target=target, n_steps=STEPS, internal_batch_size=ibs)
    elif method == "floor":
        times = {}  # the chunk search runs before the peak-memory window opens
        for chunk in FLOOR_CHUNKS:  # pick the best chunk size, then measure it below
            f = floor_chunked(chunk)
            f()
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[chunk] = time.perf_counter() - t0
        best = min(times, key=times.get)
        extra["chunk"] = best
        run = floor_chunked(best)
    elif method == "floor_one_call":
        run = floor_chunked(rows_total)
    else:
        raise ValueError(method)

    # Peak memory counts from before the warm-up call, so that memory an allocator keeps
    # after the first call is counted too.
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        before = _rss_bytes("VmRSS")
        _reset_peak()
    run()  # warm-up: allocator, oneDNN kernels, lazy imports
    sync()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        sync()
        seconds.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - before
    else:
        peak = _rss_bytes("VmHWM") - before
    return {"method": method, "seconds": seconds, "peak_extra": peak, "device": str(dev),
            **extra}


# -- parent side ---------------------------------------------------------------------------
def train(weights: Path, seed: int) -> float:
    import torch
    from xai_suite_timeseries import CNN1d, fit_classifier

    import xai_suite as xs

    X, y = xs.datasets.load_ucr("GunPoint", "train")
    Xt, yt = xs.datasets.load_ucr("GunPoint", "test")
    torch.manual_seed(seed)
    model = fit_classifier(CNN1d(1, 2), X, y, epochs=60, random_state=seed)
    torch.save(model.state_dict(), weights)
    with torch.no_grad():
        return float((model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean())


def spawn(method: str, weights: Path, args, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, __file__, "--worker", method, "--weights", str(weights),
           "--n", str(args.n), "--device", args.device, "--repeats", str(args.repeats)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="test instances (GunPoint has 150)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of all methods")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per worker")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-malloc-variant", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.weights, args.n, args.device, args.repeats)))
        return 0

    variants = {"default malloc": {}}
    if not args.no_malloc_variant:
        variants["tuned malloc"] = MALLOC_ENV
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "cnn.pt"
        acc = train(weights, args.seed)
        print(f"GunPoint CNN1d, test accuracy {acc:.3f}; explaining {args.n} test instances, "
              f"{STEPS} steps; {args.rounds} rounds x {args.repeats} calls per method\n")
        results: dict[tuple[str, str], list[dict]] = {}
        for r in range(args.rounds):
            for vname, env in variants.items():
                for m in METHODS:
                    if vname != "default malloc" and m.startswith("captum_one"):
                        continue  # small calls: the allocator setting does not matter
                    out = spawn(m, weights, args, env)
                    results.setdefault((vname, m), []).append(out)
                    print(f"  round {r + 1} {vname:14s} {m:22s} "
                          f"{np.median(out['seconds']) / args.n * 1e3:7.2f} ms/instance",
                          file=sys.stderr, flush=True)

    def med(v, m):
        return float(np.median([s for o in results[(v, m)] for s in o["seconds"]])) / args.n

    device = results[("default malloc", "ours")][0]["device"]
    print(f"device: {device}")
    for vname in variants:
        floor = med(vname, "floor")
        print(f"\n[{vname}]  floor chunk sizes picked: "
              f"{sorted({o['chunk'] for o in results[(vname, 'floor')]})}; ours used "
              f"batch_size={results[(vname, 'ours')][0]['batch_size_used']}")
        print(f"{'method':52s} {'ms/instance':>11s} {'x floor':>8s} {'peak extra MiB':>15s}")
        for m in METHODS:
            if (vname, m) not in results:
                continue
            t = med(vname, m)
            peak = max(o["peak_extra"] for o in results[(vname, m)]) / 2**20
            print(f"{LABELS[m]:52s} {t * 1e3:11.2f} {t / floor:8.2f} {peak:15.0f}")
    ours, floor = med("default malloc", "ours"), med("default malloc", "floor")
    c1, cb = med("default malloc", "captum_one_at_a_time"), med("default malloc", "captum_whole_batch")
    peak = max(o["peak_extra"] for o in results[("default malloc", "ours")]) / 2**20
    print(f"\ntargets (default malloc): ours/floor = {ours / floor:.2f} (<= 1.15), "
          f"ours vs Captum one-at-a-time = {c1 / ours:.2f}x faster, vs Captum whole batch = "
          f"{cb / ours:.2f}x faster, ours peak extra memory = {peak:.0f} MiB (< 300)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
