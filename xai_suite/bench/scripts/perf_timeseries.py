"""Batched TSR vs TSInterpret's TSR vs a step-by-step loop vs the floor, and segment occlusion vs
Captum's Occlusion vs the forward-only floor, on CPU or GPU.

Temporal saliency rescaling (Ismail et al. 2020) runs its inner saliency method once on each
instance and once on each masked copy: one copy per time step (all channels masked), and on
multivariate series one per channel at each relevant step (``d_time`` above its 0.55
quantile, about 0.45 T steps). Prints, per configuration, seconds per explained instance of:

- ours: ``native:tsr`` with ``batch_size="auto"``: all masked copies of all instances go
  through the inner integrated gradients in a few large, memory-bounded calls;
- TSInterpret: ``tsinterpret:tsr`` with ``inner="IG"``: one Captum IG call per instance and
  masked copy (2 + T + R C calls per instance: its ``explain`` computes the plain IG map once
  and throws it away when ``TSR=True``);
- ours, one masked copy at a time: our inner IG called once per copy, no batching across
  copies (the loop of ``reference_tsr`` in ``tests/test_tsr.py``; each call is one model call
  of ``n_steps`` rows, the same calls Captum makes for TSInterpret);
- plain IG over the same instances (``native:integrated_gradients``, ``batch_size="auto"``),
  and the floor for TSR: its number of inner calls (1 + T + R C) times that plain-IG time;

and the ratios TSInterpret / ours (target >= 10), ours / floor and loop / ours.

Both TSRs are configured identically: inner IG with 50 Gauss-Legendre steps (Captum's
default, which TSInterpret uses) and the same per-instance IG reference, seeded U[0, 1) noise
(TSInterpret's default distribution; given to ours through a baseline callable, to TSInterpret
and the loop as explicit arrays); masked points set to each instance's first value ``x[0, 0]``
(TSInterpret's default ``assignment``); threshold quantile 0.55 (TSInterpret's, hard-coded).

Agreement. The two outputs cannot be equal: ours returns the raw product
``d_time[t] * d_feat[c, t]`` with ``d_feat = 0`` on non-relevant steps, and on univariate series
``d_feat = d_time`` on relevant steps (Algorithm 1 masks step ``t`` of the only channel twice).
TSInterpret min-max scales ``d_time``; on univariate series it returns that alone (no
threshold, no feature step, not squared); on multivariate ones it min-max scales ``d_feat`` over
the channels at each relevant step (so the least-affected channel gets exactly 0) and gives
non-relevant steps a feature score of 0.1; then it min-max scales the whole map again. The
``d_time`` of non-relevant steps, which TSInterpret's scaling needs, is not in our output. So
the exact comparison goes through the loop, which computes the same raw scores with the same
inner explainer and keeps ``d_time`` and ``d_feat``:

- ours vs the loop: the same raw scores, batched or not (max relative difference);
- TSInterpret vs the loop's scores put through TSInterpret's post-processing (max absolute
  difference; both maps lie in [0, 1]) and the steps whose relevance differs;
- ours vs TSInterpret directly, where ours carries the information: on univariate series,
  TSInterpret's map on ours' relevant steps is affine in ``sqrt(ours)`` (``d_time`` min-max
  scaled; the minimum lies on a non-relevant step, so the offset is fitted); on multivariate
  ones, each relevant step's channel profile, min-max scaled, is the same in both; plus the
  Spearman rank correlation over the whole map and, on the planted set, the AUROC of each map
  (and of plain |IG|) against the planted mask;
- the numerical noise these are judged against: our plain IG vs Captum's on the same instances
  and references. Two float32 IGs of a ReLU network differ by up to ~2e-4 of the map's
  maximum (a rounding difference moves an interpolated point across a ReLU kink), and TSR's
  sums of map differences carry that over; the verdict line allows ``NOISE_TOL`` (1e-3).

Timings: the methods run in turn, call by call, ``--repeats`` times after a one-instance
warm-up each (this machine drifts by ~20% over tens of seconds, so only interleaved calls
compare fairly); the table gives medians. On the multivariate set the loop (as slow as
TSInterpret) runs in the first repeat only. Torch runs on ``--threads 1`` by default: on a
shared 2-core machine, two intra-op threads per process oversubscribe the cores and every
call waits for the slower thread (measured 3-7x slower per row under load); ``--threads 0``
keeps torch's default.

Device. ``--device cpu`` (the default) runs everything on the CPU. ``--device cuda`` (or
``auto``) puts the model on the GPU: ours, the loop and plain IG get ``device=``; TSInterpret's
TSR cannot be given a GPU model through ``tsinterpret:tsr`` (the adapter runs it on the CPU:
TSInterpret calls ``.numpy()`` on model outputs elsewhere) nor directly (its ``explain`` builds
the input with ``torch.from_numpy`` and never moves it to its ``device``, so Captum's first
forward pass mixes a CPU input with GPU weights). So it gets the GPU model behind
:func:`on_device`, a parameter-less module that moves each of Captum's 50-row batches to the
GPU and back through autograd: every Captum call then runs its forward and backward passes on
the GPU, the way TSInterpret would if it moved its inputs. CUDA is synchronised before and
after every timed call.

Occlusion section (``--section occlusion``, or ``all``, the default): ``native:segment_occlusion``
vs Captum's ``Occlusion`` with its default settings (``perturbations_per_eval=1``: one model
call of the N instances per window) vs the forward-only floor, on two seeded, untrained models
(``--occlusion-models``): ``cnn``, a ``CNN1d``, whose forward passes dominate any occlusion's
time, and ``linear``, one linear layer on the flattened series, cheap enough that the time is
the occlusion's own work (building rows, model calls, accumulating). Each explains
``--n-occlusion`` (16) standard normal univariate series of each length in
``--occlusion-lengths`` (300, 1000, 3000); both methods occlude windows of ``T // 10`` steps
with stride equal to the window (10 windows), zero baseline, the model's predicted class. The
floor is the model alone (``torch.no_grad``) on the same rows (the N x 10 occluded copies and
the N instances themselves, which both methods evaluate), built outside the timer, at two chunk
sizes: ours' (``batch_size_used``) and Captum's (N rows per call); the faster one is the floor.
Prints seconds per instance (medians of ``--repeats`` interleaved calls), Captum / ours (target
>= 1.5 at T >= 1000), ours / floor (target <= 1.2), and max |ours - Captum| (equal values up to
float32 rounding: at most ``OCCLUSION_TOL`` of max |Captum|).

Run: ``python -m xai_suite.bench.scripts.perf_timeseries [--n 20] [--n-multivariate 8] [--repeats 3]
[--threads 1] [--device cpu] [--section all|tsr|occlusion] [--n-occlusion 16]
[--occlusion-lengths 300 1000 3000] [--occlusion-models cnn linear] [--occlusion-batch-size auto]
[--quick]``
(defaults take about 15-25 minutes: TSInterpret alone needs
about 3 s per GunPoint instance on an idle core). Models are trained once and cached
(``$XAI_SUITE_CACHE`` or ``~/.cache/xai_suite``). ``xai-suite bench perf [--quick]`` runs it (with
the suite's other scripts) and saves its output to ``OUT/perf.txt``. In a checkout, ``python
benchmarks/perf_timeseries.py`` is the same.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.55  # TSInterpret's quantile, hard-coded in Saliency_PTY._getTwoStepRescaling
#: "The same saliency up to numerical noise": every max |diff| of the agreement block at most
#: this. Two correct float32 IGs of these ReLU CNNs differ by up to ~2e-4 of the map's maximum
#: (a rounding difference moves an interpolated point across a ReLU kink); the benchmark
#: prints that floor, measured on the same instances, next to the TSR differences.
NOISE_TOL = 1e-3
#: Occlusion: ours and Captum's occlude the same windows; their maps differ only by float32
#: rounding of the output drops (max |diff| at most this fraction of max |Captum|).
OCCLUSION_TOL = 1e-5
OCCLUSION_LABELS = {
    "ours": "ours (native:segment_occlusion, batch_size='auto')",
    "captum": "Captum Occlusion (defaults: perturbations_per_eval=1)",
    "floor_ours": "forward only, ours' chunk",
    "floor_captum": "forward only, N rows per call (Captum's)",
    "floor": "floor: the faster forward-only run",
}
METHODS = ("ours", "tsinterpret", "loop", "ig")
LABELS = {
    "ours": "ours (native:tsr, batch_size='auto')",
    "tsinterpret": "TSInterpret (tsinterpret:tsr, inner='IG')",
    "loop": "ours, one masked copy at a time (loop)",
    "ig": "plain IG (native, batch_size='auto')",
    "floor": "floor: TSR calls x plain IG time",
}


@dataclass
class Setup:
    """One configuration: the model, the explained instances and their references."""

    name: str
    model: object
    x: np.ndarray  # (N, C, T) float32
    target: np.ndarray  # (N,) the model's predictions
    accuracy: float
    mask: np.ndarray | None = None  # planted-signal mask (N, C, T), where there is one
    ig_baselines: np.ndarray | None = None  # (N, C, T) the inner IG's references (set by build)
    loop_once: bool = False  # time the loop in the first repeat only


def on_device(model, device):
    """``model`` (already on ``device``) behind a parameter-less ``torch.nn.Module`` that moves
    its inputs to ``device``: outputs stay there, gradients flow back to the inputs' device.

    Having no parameters, it is not moved off ``device`` by the ``tsinterpret:`` adapter
    (which puts models on the CPU for the call).
    """
    import torch

    class _OnDevice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.__dict__["_inner"] = model  # not a submodule: .to() and .parameters() skip it

        def forward(self, x):
            return self._inner(x.to(device))

    return _OnDevice().eval()


def _sync(device) -> None:
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


# -- data and models -----------------------------------------------------------------------
def gunpoint(n: int, epochs: int) -> Setup:
    import torch

    import xai_suite as xs
    from xai_suite_timeseries import CNN1d, fit_cached

    X, y = xs.datasets.load_ucr("GunPoint", "train")
    Xt, yt = xs.datasets.load_ucr("GunPoint", "test")
    torch.manual_seed(0)
    model = fit_cached(CNN1d(1, 2), X, y, epochs=epochs)
    return _setup("GunPoint", model, Xt, yt, n)


def planted(n: int, channels: int, length: int, n_train: int, epochs: int) -> Setup:
    import torch

    import xai_suite as xs
    from xai_suite_timeseries import CNN1d, fit_cached

    params = {"n_channels": channels, "length": length, "layout": "middle", "noise": 1.0}
    X, y, _ = xs.datasets.make_planted_timeseries(n_train, random_state=0, **params)
    Xt, yt, mask = xs.datasets.make_planted_timeseries(max(n, 50), random_state=1, **params)
    torch.manual_seed(0)
    model = fit_cached(CNN1d(channels, 2), X, y, epochs=epochs)
    setup = _setup(f"planted {channels} x {length} (middle box, noise 1)", model, Xt, yt, n)
    setup.mask = mask[:n]
    setup.loop_once = True
    return setup


def _setup(name, model, Xt, yt, n) -> Setup:
    import torch

    with torch.no_grad():
        pred = model(torch.from_numpy(Xt)).argmax(1).numpy()
    x = np.ascontiguousarray(Xt[:n])
    return Setup(name, model, x, pred[:n], float((pred == yt).mean()))


# -- the methods ---------------------------------------------------------------------------
def masking_values(x: np.ndarray) -> np.ndarray:
    """TSInterpret's default ``assignment``: each instance's first value, everywhere."""
    return np.ascontiguousarray(np.broadcast_to(x[:, :1, :1], x.shape))


def step_loop(inner, x, target, ig_baselines, mask_values, threshold=THRESHOLD):
    """TSR one instance and one masked copy at a time; the raw scores.

    Returns
    -------
    d_time : numpy.ndarray, shape (N, T)
    d_feat : numpy.ndarray, shape (N, C, T)
        0 on non-relevant steps; ``d_time`` on relevant ones of univariate series.
    """
    n, c, t = x.shape
    d_time, d_feat = np.zeros((n, t)), np.zeros((n, c, t))
    for i in range(n):
        def saliency(z, i=i):
            exp = inner.explain(z[None], target=target[i : i + 1], baselines=ig_baselines[i : i + 1])
            return exp.attributions[0].astype(np.float64)

        base = saliency(x[i])
        for s in range(t):
            z = x[i].copy()
            z[:, s] = mask_values[i, :, s]
            d_time[i, s] = np.abs(base - saliency(z)).sum()
        relevant = np.flatnonzero(d_time[i] > np.quantile(d_time[i], threshold))
        if c == 1:
            d_feat[i, 0, relevant] = d_time[i, relevant]
            continue
        for s in relevant:
            for ch in range(c):
                z = x[i].copy()
                z[ch, s] = mask_values[i, ch, s]
                d_feat[i, ch, s] = np.abs(base - saliency(z)).sum()
    return d_time, d_feat


def build(setup: Setup, n_steps: int, device=None) -> dict[str, Callable]:
    """Per method, ``run(idx)`` explaining the instances ``x[idx]`` (``idx`` a slice).

    ``device``: a ``torch.device`` the model already lies on (``None``: the CPU).
    """
    import torch

    import xai_suite as xs

    device = torch.device("cpu") if device is None else device
    dev = {"device": str(device)}

    model, x, target = setup.model, setup.x, setup.target
    ig_baselines = np.random.default_rng(0).random(x.shape, dtype=np.float32)  # U[0, 1)
    setup.ig_baselines = ig_baselines
    mask_values = masking_values(x)

    def fixed_reference(a: np.ndarray) -> np.ndarray:
        """Our inner IG's baseline: the shared U[0, 1) draw of the instances being explained."""
        for idx in (slice(None), slice(0, 1)):  # all instances, or the warm-up instance
            if a.shape == x[idx].shape and np.array_equal(a, x[idx]):
                return ig_baselines[idx]
        raise ValueError("the benchmark's IG reference is fixed per instance")

    inner_params = {"n_steps": n_steps, "baseline": fixed_reference}
    ours = xs.create_explainer("native:tsr", model, inner="integrated_gradients",
                               inner_params=inner_params, threshold=THRESHOLD, batch_size="auto",
                               **dev)
    # the adapter runs TSInterpret on the CPU; on a GPU it gets the model behind on_device
    their_model = model if device.type == "cpu" else on_device(model, device)
    theirs = xs.create_explainer("tsinterpret:tsr", their_model, inner="IG", tsr=True)
    ig = xs.create_explainer("native:integrated_gradients", model, n_steps=n_steps,
                             batch_size="auto", **dev)
    # one copy's whole path per model call: the n_steps-row calls Captum makes for TSInterpret
    inner = xs.create_explainer("native:integrated_gradients", model, n_steps=n_steps,
                                batch_size=n_steps, **dev)
    if n_steps != 50:
        _patch_captum_steps(n_steps)
    runs = {
        "ours": lambda i: ours.explain(x[i], target=target[i], baselines=mask_values[i]),
        "tsinterpret": lambda i: theirs.explain(x[i], target=target[i], baselines=ig_baselines[i]),
        "loop": lambda i: step_loop(inner, x[i], target[i], ig_baselines[i], mask_values[i]),
        "ig": lambda i: ig.explain(x[i], target=target[i], baselines=ig_baselines[i]),
    }
    return runs


def _patch_captum_steps(n_steps: int) -> None:
    """Make TSInterpret's Captum IG take ``n_steps`` (``--quick`` only: its code passes none,
    so Captum's 50 apply). Replaces ``TSR`` in the adapter's cached TSInterpret namespace for
    the rest of the process."""
    import functools

    from xai_suite_timeseries.tsinterpret import load_tsinterpret

    tsi = load_tsinterpret()
    original = getattr(tsi.TSR, "__wrapped__", tsi.TSR)

    @functools.wraps(original)
    def tsr(*args, **kwargs):
        saliency = original(*args, **kwargs)
        saliency.Grad.attribute = functools.partial(saliency.Grad.attribute, n_steps=n_steps)
        return saliency

    tsi.TSR = tsr


# -- timing --------------------------------------------------------------------------------
def time_interleaved(runs: dict[str, Callable], n: int, repeats: int, once: tuple[str, ...] = (),
                     warm_up: bool = True, device=None
                     ) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Each method in turn over all ``n`` instances, ``repeats`` times (``once``: first only).

    Returns the seconds per instance of every call and each method's first output. On a GPU
    ``device``, CUDA is synchronised before and after each timed call.
    """
    for run in runs.values() if warm_up else ():  # lazy imports, oneDNN kernels, the allocator
        run(slice(0, 1))
        _sync(device)
    seconds: dict[str, list[float]] = {m: [] for m in runs}
    outputs: dict[str, object] = {}
    for r in range(repeats):
        for m, run in runs.items():
            if r and m in once:
                continue
            _sync(device)
            t0 = time.perf_counter()
            out = run(slice(None))
            _sync(device)
            seconds[m].append((time.perf_counter() - t0) / n)
            outputs.setdefault(m, out)
            print(f"    repeat {r + 1}/{repeats} {m}: {seconds[m][-1]:.3f} s/instance",
                  file=sys.stderr, flush=True)
    return seconds, outputs


# -- agreement -----------------------------------------------------------------------------
def tsinterpret_postprocess(d_time: np.ndarray, d_feat: np.ndarray, threshold=THRESHOLD):
    """TSInterpret's TSR map from raw scores (``Saliency_PTY._getTwoStepRescaling`` and
    ``_givenAttGetRescaledSaliency``), one instance at a time.

    Returns the maps and, per instance, the relevant steps by TSInterpret's rule.
    """
    from sklearn.preprocessing import minmax_scale

    maps, relevant = [], []
    for dt, df in zip(d_time, d_feat, strict=True):
        tc = minmax_scale(dt[None], axis=1)[0]
        rel = tc > np.quantile(tc, threshold)
        if df.shape[0] == 1:
            m = tc[None]
        else:
            fc = np.full(df.shape, 0.1)
            if rel.any():
                fc[:, rel] = minmax_scale(df[:, rel], axis=0)
            m = tc[None] * fc
        maps.append(minmax_scale(np.abs(m).reshape(1, -1), axis=1).reshape(m.shape))
        relevant.append(rel)
    return np.stack(maps), np.stack(relevant)


def direct_agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Max |difference| on ours' relevant steps after matching TSInterpret's scaling.

    Univariate: TSInterpret's map there is ``(d_time - min) / (max - min)`` and ours is
    ``d_time**2``: fit ``theirs = a sqrt(ours) + b`` (the minimum lies on a non-relevant step,
    which ours maps to 0). Multivariate: min-max scaled channel profiles of each relevant step.
    """
    from sklearn.preprocessing import minmax_scale

    worst = 0.0
    for o, t in zip(ours.astype(np.float64), theirs.astype(np.float64), strict=True):
        rel = o.sum(0) > 0
        if not rel.any():
            continue
        if o.shape[0] == 1:
            d = np.sqrt(o[0, rel])
            design = np.stack([d, np.ones_like(d)], 1)
            coef, *_ = np.linalg.lstsq(design, t[0, rel], rcond=None)
            worst = max(worst, float(np.abs(design @ coef - t[0, rel]).max()))
        else:
            diff = minmax_scale(o[:, rel], axis=0) - minmax_scale(t[:, rel], axis=0)
            worst = max(worst, float(np.abs(diff).max()))
    return worst


def ig_noise(setup: Setup, ours_ig: np.ndarray, n_steps: int) -> float:
    """Max |ours - Captum| / max |Captum| of plain IG: Captum called one instance at a time
    (as TSInterpret calls it), with the same references and steps."""
    import torch
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(setup.model)
    dev = next(setup.model.parameters()).device
    worst = 0.0
    for i in range(len(setup.x)):
        ref = ig.attribute(torch.from_numpy(setup.x[i : i + 1]).to(dev),
                           baselines=torch.from_numpy(setup.ig_baselines[i : i + 1]).to(dev),
                           target=int(setup.target[i]), n_steps=n_steps).detach().cpu().numpy()[0]
        worst = max(worst, float(np.abs(ours_ig[i] - ref).max() / np.abs(ref).max()))
    return worst


def agreement(setup: Setup, outputs: dict, n_steps: int) -> dict:
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    ours = outputs["ours"].attributions.astype(np.float64)
    theirs = outputs["tsinterpret"].attributions.astype(np.float64)
    d_time, d_feat = outputs["loop"]
    loop = d_time[:, None] * d_feat
    post, rel_theirs_rule = tsinterpret_postprocess(d_time, d_feat)
    rel_loop = d_time > np.quantile(d_time, THRESHOLD, axis=1, keepdims=True)
    res = {
        "ours_vs_loop": float(np.abs(ours - loop).max() / np.abs(loop).max()),
        "theirs_vs_post": float(np.abs(theirs - post).max()),
        "relevance_flips": int((rel_theirs_rule != rel_loop).sum()),
        "n_steps_total": int(rel_loop.size),
        "direct": direct_agreement(ours, theirs),
        "spearman": float(np.median([spearmanr(o.ravel(), t.ravel())[0]
                                     for o, t in zip(ours, theirs, strict=True)])),
        "relevant_steps": float(np.mean(outputs["ours"].params["n_relevant_steps"])),
        "ig_noise": ig_noise(setup, outputs["ig"].attributions, n_steps),
    }
    if setup.mask is not None:
        ig = np.abs(outputs["ig"].attributions)
        res["auroc"] = {
            name: float(np.mean([roc_auc_score(m.ravel(), a.ravel())
                                 for a, m in zip(maps, setup.mask, strict=True)]))
            for name, maps in (("ours", ours), ("TSInterpret", theirs), ("|plain IG|", ig))
        }
    return res


# -- report --------------------------------------------------------------------------------
def report(setup: Setup, seconds: dict, agree: dict, n_steps: int, repeats: int) -> dict:
    n, c, t = setup.x.shape
    extra = agree["relevant_steps"] * c if c > 1 else 0.0
    calls = {"ours": 1 + t + extra, "tsinterpret": 2 + t + extra, "loop": 1 + t + extra, "ig": 1}
    med = {m: float(np.median(v)) for m, v in seconds.items()}
    med["floor"] = med["ig"] * calls["ours"]
    calls["floor"] = calls["ours"]
    print(f"{setup.name}: CNN1d, test accuracy {setup.accuracy:.3f}; {n} instances of {c} x {t}; "
          f"inner IG {n_steps} Gauss-Legendre steps, U[0, 1) reference; masking value x[0, 0]; "
          f"threshold quantile {THRESHOLD}; median of {repeats} interleaved calls"
          + (" (loop: 1 call)" if setup.loop_once else ""))
    print(f"{'method':46s} {'s/instance':>10s} {'IG calls/inst':>13s} {'x ours':>7s} {'x floor':>8s}")
    for m in (*METHODS, "floor"):
        print(f"{LABELS[m]:46s} {med[m]:10.4f} {calls[m]:13.1f} {med[m] / med['ours']:7.2f} "
              f"{med[m] / med['floor']:8.2f}")
    ratio = med["tsinterpret"] / med["ours"]
    print(f"ratios: TSInterpret / ours = {ratio:.2f} (target >= 10: "
          f"{'met' if ratio >= 10 else 'NOT met'}); ours / floor = {med['ours'] / med['floor']:.2f}; "
          f"TSInterpret / floor = {med['tsinterpret'] / med['floor']:.2f} (the most any batching "
          f"of these IG calls can gain); loop / ours = {med['loop'] / med['ours']:.2f}")
    print("agreement:")
    print(f"  ours vs loop (same raw scores, batched or not): max |diff| / max |loop| = "
          f"{agree['ours_vs_loop']:.1e}")
    print(f"  TSInterpret vs loop + TSInterpret's post-processing: max |diff| = "
          f"{agree['theirs_vs_post']:.1e} (maps in [0, 1]); relevance differs at "
          f"{agree['relevance_flips']} of {agree['n_steps_total']} steps")
    how = ("affine fit of TSInterpret on sqrt(ours)" if c == 1
           else "min-max scaled channel profiles")
    print(f"  ours vs TSInterpret on ours' relevant steps ({how}): max |diff| = "
          f"{agree['direct']:.1e}; Spearman over the whole map (median) = {agree['spearman']:.3f}")
    print(f"  numerical noise of IG itself: ours vs Captum's IG (one instance at a time, same "
          f"references): max |diff| / max |Captum| = {agree['ig_noise']:.1e}")
    if "auroc" in agree:
        print("  AUROC vs planted mask (mean over instances): "
              + ", ".join(f"{k} {v:.3f}" for k, v in agree["auroc"].items()))
    print()
    return {"ratio": ratio, "ours_floor": med["ours"] / med["floor"],
            "theirs_floor": med["tsinterpret"] / med["floor"], "loop_ratio": med["loop"] / med["ours"],
            "exact": max(agree["ours_vs_loop"], agree["theirs_vs_post"], agree["direct"])}



# -- occlusion -----------------------------------------------------------------------------
def occlusion_rows(x, window: int, stride: int):
    """The rows any occlusion of ``x`` (N, 1, T) evaluates: each instance with each window set
    to 0 (instance-major), then the instances themselves; shape (N (W + 1), 1, T)."""
    import torch

    from xai_suite_timeseries.perturbation import occlusion_windows

    spans = occlusion_windows(x.shape[-1], window, stride)
    rows = x.repeat_interleave(len(spans), 0).clone()
    for k, (lo, hi) in enumerate(spans):
        rows[k :: len(spans), :, lo:hi] = 0.0
    return torch.cat([rows, x])


def occlusion_model(kind: str, length: int):
    """A seeded, untrained model of (N, 1, T) series: ``cnn`` (:class:`CNN1d`, whose forward
    dominates any occlusion's time) or ``linear`` (one linear layer on the flattened series,
    whose forward is cheap, so the time is the occlusion's own work)."""
    import torch

    from xai_suite_timeseries import CNN1d

    torch.manual_seed(0)
    if kind == "cnn":
        return CNN1d(1, 2).eval()
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(length, 2)).eval()


def occlusion_compare(kind: str, length: int, n: int, repeats: int, device,
                      batch_size="auto") -> dict:
    """Ours vs Captum's default Occlusion vs the forward-only floor at one series length."""
    import torch
    from captum.attr import Occlusion

    import xai_suite as xs
    model = occlusion_model(kind, length).to(device)
    x_np = np.random.default_rng(0).standard_normal((n, 1, length)).astype(np.float32)
    x = torch.from_numpy(x_np).to(device)
    with torch.no_grad():
        target = model(x).argmax(1)
    window = max(1, length // 10)
    ours = xs.create_explainer("native:segment_occlusion", model, window=window, stride=window,
                               baseline="zeros", device=str(device), batch_size=batch_size)
    target_np = target.cpu().numpy()
    first = ours.explain(x_np, target=target_np)
    chunk = int(first.params["batch_size_used"])
    occ = Occlusion(model)
    rows = occlusion_rows(x, window, window)

    def forward_only(size: int) -> None:
        with torch.no_grad():
            for i in range(0, rows.shape[0], size):
                model(rows[i : i + size])

    def captum(_idx):
        return occ.attribute(x, sliding_window_shapes=(1, window), strides=(1, window),
                             baselines=0.0, target=target)

    runs = {
        "ours": lambda _idx: ours.explain(x_np, target=target_np),
        "captum": captum,
        "floor_ours": lambda _idx: forward_only(chunk),
        "floor_captum": lambda _idx: forward_only(n),
    }
    print(f"  occlusion {kind} T = {length} ...", file=sys.stderr, flush=True)
    seconds, outputs = time_interleaved(runs, n, repeats, device=device)
    theirs = outputs["captum"].detach().cpu().numpy().astype(np.float64)
    diff = float(np.abs(outputs["ours"].attributions.astype(np.float64) - theirs).max())
    med = {m: float(np.median(v)) for m, v in seconds.items()}
    med["floor"] = min(med["floor_ours"], med["floor_captum"])
    return {"model": kind, "batch_size": batch_size, "T": length, "n": n, "window": window,
            "windows": rows.shape[0] // n - 1, "chunk": chunk, "med": med, "diff": diff,
            "scale": float(np.abs(theirs).max())}


def occlusion_report(res: dict, repeats: int) -> None:
    med = res["med"]
    name = {"cnn": "CNN1d", "linear": "linear layer on the flat series"}[res["model"]]
    print(f"occlusion {res['model']} T = {res['T']}: {name} (untrained, seeded), {res['n']} "
          f"instances of 1 x "
          f"{res['T']}; {res['windows']} windows of {res['window']} steps, stride "
          f"{res['window']}, zero baseline; {res['n'] * (res['windows'] + 1)} model rows; ours' "
          f"chunk {res['chunk']} rows; median of {repeats} interleaved calls")
    print(f"  {'method':54s} {'s/instance':>10s} {'x ours':>7s} {'x floor':>8s}")
    labels = dict(OCCLUSION_LABELS)
    if res["batch_size"] != "auto":
        labels["ours"] = f"ours (native:segment_occlusion, batch_size={res['batch_size']})"
    for m in ("ours", "captum", "floor_ours", "floor_captum", "floor"):
        print(f"  {labels[m]:54s} {med[m]:10.5f} {med[m] / med['ours']:7.2f} "
              f"{med[m] / med['floor']:8.2f}")
    ratio = med["captum"] / med["ours"]
    print(f"  ratios: Captum / ours = {ratio:.2f}; ours / floor = {med['ours'] / med['floor']:.2f}; "
          f"Captum / floor = {med['captum'] / med['floor']:.2f}")
    print(f"  agreement: max |ours - Captum| = {res['diff']:.1e} (max |Captum| = "
          f"{res['scale']:.3f})\n")


def occlusion_section(models, lengths, n: int, repeats: int, device, batch_size="auto") -> None:
    import torch

    where = "CPU" if device.type == "cpu" else f"GPU ({torch.cuda.get_device_name(device)})"
    print(f"Occlusion timings on {where}, {torch.get_num_threads()} torch thread(s); ours with "
          f"batch_size={batch_size!r}\n")
    results = []
    for kind in models:
        for length in lengths:
            results.append(occlusion_compare(kind, length, n, repeats, device, batch_size))
            occlusion_report(results[-1], repeats)

    def verdict(r):
        ok_floor = r["med"]["ours"] / r["med"]["floor"] <= 1.2
        ok_captum = r["T"] < 1000 or r["med"]["captum"] / r["med"]["ours"] >= 1.5
        return "met" if ok_floor and ok_captum else "NOT met"

    print("occlusion targets (ours / floor <= 1.2; Captum / ours >= 1.5 at T >= 1000): " + "; ".join(
        f"{r['model']} T={r['T']}: Captum / ours = {r['med']['captum'] / r['med']['ours']:.2f}, "
        f"ours / floor = {r['med']['ours'] / r['med']['floor']:.2f} ({verdict(r)})" for r in results))
    worst = max(r["diff"] / max(r["scale"], 1e-12) for r in results)
    print(f"occlusion values equal to Captum's (every max |diff| <= {OCCLUSION_TOL:.0e} of max "
          f"|Captum|): {'yes' if worst <= OCCLUSION_TOL else 'NO'} (worst {worst:.1e})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20, help="GunPoint test instances (150 exist)")
    p.add_argument("--n-multivariate", type=int, default=8, help="planted multivariate instances")
    p.add_argument("--repeats", type=int, default=3, help="interleaved calls per method")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: default)")
    p.add_argument("--device", default="cpu",
                   help="'cpu' (default), 'cuda', 'cuda:N' or 'auto': where the model runs")
    p.add_argument("--section", choices=("all", "tsr", "occlusion"), default="all",
                   help="which comparisons to run (default: both)")
    p.add_argument("--n-occlusion", type=int, default=16, help="series per occlusion length")
    p.add_argument("--occlusion-lengths", type=int, nargs="+", default=[300, 1000, 3000],
                   help="series lengths T of the occlusion section")
    p.add_argument("--occlusion-models", nargs="+", choices=("cnn", "linear"),
                   default=["cnn", "linear"], help="models of the occlusion section")
    p.add_argument("--occlusion-batch-size", default="auto",
                   help="ours' batch_size in the occlusion section ('auto' or rows per call)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 8 IG steps (TSInterpret's Captum IG patched to match), a small "
                   "planted set, short training, no warm-up; occlusion at T = 100 on 2 series")
    args = p.parse_args(argv)
    if args.quick:
        args.n_occlusion, args.occlusion_lengths = min(args.n_occlusion, 2), [100]

    import torch

    from xai_suite.batching import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.section != "occlusion":
        tsr_section(args, device)
    if args.section != "tsr":
        if args.section == "all":
            print()
        bs = args.occlusion_batch_size
        occlusion_section(args.occlusion_models, args.occlusion_lengths, args.n_occlusion,
                          args.repeats, device, bs if bs == "auto" else int(bs))
    return 0


def tsr_section(args, device) -> None:
    import torch

    n_steps = 8 if args.quick else 50
    where = "CPU" if device.type == "cpu" else f"GPU ({torch.cuda.get_device_name(device)})"
    print(f"TSR timings on {where}, {torch.get_num_threads()} torch thread(s)"
          + ("" if device.type == "cpu" else "; TSInterpret's model behind on_device") + "\n")
    configs = [
        lambda: gunpoint(args.n, epochs=10 if args.quick else 60),
        lambda: planted(min(args.n, args.n_multivariate), *((3, 40, 100, 5) if args.quick
                                                             else (6, 100, 400, 20))),
    ]
    summary = []
    for make in configs:
        setup = make()
        setup.model.to(device)
        print(f"  {setup.name} ...", file=sys.stderr, flush=True)
        runs = build(setup, n_steps, device)
        once = ("loop",) if setup.loop_once else ()
        seconds, outputs = time_interleaved(runs, len(setup.x), args.repeats, once,
                                            warm_up=not args.quick, device=device)
        agree = agreement(setup, outputs, n_steps)
        summary.append((setup.name, report(setup, seconds, agree, n_steps, args.repeats)))
    print("targets: " + "; ".join(
        f"{name.split(' (')[0]}: TSInterpret / ours = {s['ratio']:.2f} (>= 10), ours / floor = "
        f"{s['ours_floor']:.2f}, TSInterpret / floor = {s['theirs_floor']:.2f}, loop / ours = "
        f"{s['loop_ratio']:.2f}" for name, s in summary))
    worst = max(s["exact"] for _, s in summary)
    print(f"same saliency up to numerical noise (every TSR max |diff| above <= {NOISE_TOL:.0e}): "
          f"{'yes' if worst <= NOISE_TOL else 'NO'} (worst {worst:.1e})")


if __name__ == "__main__":
    sys.exit(main())
