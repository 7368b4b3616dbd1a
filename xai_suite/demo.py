"""The main job behind ``make demo``: explain a GunPoint classifier (the zoo's ``cnn1d``) with
several methods and IG baselines, print a short table and write a comparison plot."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

#: (label, registry name, hyper-parameters)
RUNS = (
    ("IG, zeros", "native:integrated_gradients", {"baseline": "zeros"}),
    ("IG, training mean", "native:integrated_gradients", {"baseline": "training_mean"}),
    ("IG, blurred input", "native:integrated_gradients", {"baseline": "blur"}),
    ("IG, nearest unlike", "native:integrated_gradients", {"baseline": "nearest_unlike"}),
    ("Expected gradients", "native:integrated_gradients",
     {"baseline": "training_sample", "n_baseline_samples": 8}),
    ("Captum IG, zeros", "captum:integrated_gradients", {"baseline": "zeros"}),
    ("Saliency", "captum:saliency", {}),
    ("DeepLIFT, training mean", "captum:deeplift", {"baseline": "training_mean"}),
    ("Occlusion", "captum:occlusion", {"baseline": "training_mean"}),
    ("Grad-CAM", "captum:grad_cam", {}),
)

#: GunPoint's classes, labels 1 and 2 in the archive (0 and 1 from ``load_ucr``), as named in
#: the header of the ``GunPoint_TRAIN.ts`` that aeon ships.
GUNPOINT_CLASSES = ("Gun-Draw", "Point")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.argsort().argsort(), b.argsort().argsort())[0, 1])  # of the ranks


def run_demo(out_dir: str | Path = "demo_output", n_explain: int = 50, epochs: int = 60,
             random_state: int = 0) -> pd.DataFrame:
    """Train a small CNN on GunPoint and compare explainers; returns the table.

    Parameters
    ----------
    out_dir : path
        Where the plot and the table (CSV) are written.
    n_explain : int
        Test instances explained.
    epochs : int
        Training epochs of the CNN.
    random_state : int
        Seeds training and every random baseline.
    """
    import xai_suite as xs
    from xai_suite.bench.models import build_model
    from xai_suite.viz import plot_comparison

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, y = xs.datasets.load_ucr("GunPoint", "train")
    Xt, yt = xs.datasets.load_ucr("GunPoint", "test")
    t0 = time.perf_counter()
    model = build_model("cnn1d", X, y, random_state=random_state, epochs=epochs)  # the zoo's CNN
    with torch.no_grad():
        acc = float((model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean())
    print(f"GunPoint: a {sum(p.numel() for p in model.parameters())}-parameter CNN trained (or "
          f"reloaded from {model.cache_path_.parent}) in {time.perf_counter() - t0:.1f} s; "
          f"test accuracy {acc:.3f}")
    Xe = Xt[:n_explain]
    rows, exps = [], []
    for label, name, params in RUNS:
        if "random_state" in xs.explainer_info(name).params:
            params = {**params, "random_state": random_state}
        explainer = xs.create_explainer(name, model, **params).fit(X, y)
        explainer.explain(Xe[:2])  # untimed warm-up: one-off costs are not the method's speed
        t = time.perf_counter()
        exp = explainer.explain(Xe)
        ms = (time.perf_counter() - t) / len(Xe) * 1e3
        exps.append(exp)
        gap = None
        if exp.convergence_delta is not None:  # |delta| / |f(x) - f(b)|, f(x) - f(b) = sum - delta
            d = exp.convergence_delta
            total = exp.attributions.reshape(len(Xe), -1).sum(1)
            gap = float(np.median(np.abs(d) / (np.abs(total - d) + 1e-6)))
        rows.append({
            "method": label,
            "entry": name,
            "ms/instance": round(ms, 2),
            "completeness err (median, rel.)": "-" if gap is None else f"{gap:.1e}",
            "rank corr. vs IG zeros": round(
                float(np.median([_spearman(exp.attributions[i].ravel(),
                                           exps[0].attributions[i].ravel())
                                 for i in range(len(Xe))])), 3),
        })
    table = pd.DataFrame(rows)
    table.to_csv(out / "gunpoint_methods.csv", index=False)
    fig = plot_comparison(exps, index=0, path=out / "gunpoint_attributions.png",
                          titles=[r[0] for r in RUNS], class_names=GUNPOINT_CLASSES)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(table.to_string(index=False))
    print(f"wrote {out / 'gunpoint_attributions.png'} and {out / 'gunpoint_methods.csv'}")
    return table
