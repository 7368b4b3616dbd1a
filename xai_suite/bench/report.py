"""Markdown reports of a results store: tables with intervals, PNG plots, config, versions.

Every mean in a report carries a 95% interval over the explained instances (seeds pooled):
a percentile bootstrap (:func:`~xai_suite.metrics.statistics.bootstrap_interval`, 10,000
resamples, seed 0) for metrics with continuous values, a Wilson score interval
(:func:`~xai_suite.metrics.statistics.wilson_interval`) for metrics whose values are all 0 or 1
(counterfactual validity, attack success). Plots: per dataset and model, an explainer x
metric heat map and, where an explainer ran with several baselines, bars per baseline with
the intervals as error bars. The store keeps per-instance scalars, not curves, so the report
draws no deletion curves. Matplotlib is imported when plotting, with the Agg backend.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.statistics import bootstrap_interval, wilson_interval
from .store import ResultsStore

RUNTIME = "seconds per instance"
GROUP = ["dataset", "model", "explainer", "baseline"]


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float, str]:
    if values.size < 2:
        return np.nan, np.nan, "none (n < 2)"
    if np.isin(values, (0.0, 1.0)).all():
        return (*wilson_interval(int(values.sum()), values.size, confidence), "wilson")
    return (*bootstrap_interval(values, confidence, random_state=0), "bootstrap")


def summarise(results: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean and interval of every (dataset, model, explainer, baseline, metric).

    Parameters
    ----------
    results : pandas.DataFrame
        The store's ``results`` table.
    confidence : float

    Returns
    -------
    pandas.DataFrame
        Columns dataset, model, explainer, baseline, metric, n (finite values), missing
        (NaN values left out), mean, low, high, interval (``bootstrap``, ``wilson`` or
        ``none (n < 2)``). The metric :data:`RUNTIME` is the explain time per instance.
    """
    rows = []
    runtime = results.drop_duplicates([*GROUP, "seed", "instance"]).assign(metric=RUNTIME,
                                                                              value=lambda d: d.seconds)
    for keys, grp in pd.concat([results, runtime]).groupby([*GROUP, "metric"], sort=True):
        vals = grp.value.to_numpy(dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        low, high, how = _interval(finite, confidence)
        rows.append({**dict(zip([*GROUP, "metric"], keys, strict=True)), "n": finite.size,
                     "missing": vals.size - finite.size,
                     "mean": float(finite.mean()) if finite.size else np.nan,
                     "low": low, "high": high, "interval": how})
    return pd.DataFrame(rows, columns=[*GROUP, "metric", "n", "missing", "mean", "low", "high", "interval"])


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "nan"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _cell(r) -> str:
    if r.n == 0:
        return f"no value ({r.missing} NaN)"
    if not np.isfinite(r.low):
        return f"{_fmt(r.mean)} (n={r.n}, no interval)"
    mark = "ᵂ" if r.interval == "wilson" else ""
    miss = f", {r.missing} NaN" if r.missing else ""
    return f"{_fmt(r.mean)} [{_fmt(r.low)}, {_fmt(r.high)}]{mark} (n={r.n}{miss})"


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)).strip("_")


def _md_table(df: pd.DataFrame) -> str:
    from ..registry import to_markdown

    return to_markdown(df)


def _direction(metrics_meta: dict, metric: str) -> str:
    hib = metrics_meta.get(metric, {}).get("higher_is_better")
    return " ↑" if hib is True else (" ↓" if hib is False else "")


def write_report(results, out_dir=None, *, confidence: float = 0.95) -> Path:
    """Write ``report.md`` and its PNG plots for a results store.

    Parameters
    ----------
    results : str or os.PathLike
        The store (``results.sqlite``) or the run directory holding it.
    out_dir : str or os.PathLike, optional
        Where to write; defaults to ``report/`` next to the store.
    confidence : float

    Returns
    -------
    pathlib.Path
        The Markdown file.
    """
    with ResultsStore(results) as store:
        meta, df, units, log = store.meta(), store.results(), store.units(), store.log()
        path = store.path
    if not meta:
        raise ValueError(f"{path} holds no run (no config recorded)")
    out = Path(out_dir) if out_dir is not None else path.parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    metrics_meta = meta.get("metrics", {})
    summary = summarise(df, confidence)
    summary.to_csv(out / "summary.csv", index=False)
    n_err = int((units.status == "error").sum()) if len(units) else 0
    pct = f"{confidence:.0%}"
    lines = [
        f"# Benchmark report: {meta['suite']}", "",
        *([desc, ""] if (desc := (meta.get("config") or {}).get("description", "")) else []),
        f"- store: `{path}`" + (" (quick run)" if meta.get("quick") else ""),
        f"- units: {len(units) - n_err} done, {n_err} failed; {len(df)} instance-level rows",
        f"- every cell: mean [{pct} interval] (n instances, seeds pooled). Intervals: percentile "
        "bootstrap over instances (10,000 resamples, seed 0); ᵂ marks a Wilson score interval "
        "(metrics whose values are all 0 or 1). ↑ / ↓: higher / lower is better.",
        "- seconds per instance: each unit's explain time divided by its instances (imports excluded).",
        "- deletion curves: not drawn (the store keeps per-instance areas, not curves).",
        "- all numbers: `summary.csv` next to this file.", "",
    ]
    for (dataset, model), grp in summary.groupby(["dataset", "model"], sort=True):
        metrics = [m for m in dict.fromkeys(grp.metric) if m != RUNTIME] + [RUNTIME]
        table = grp.assign(cell=[_cell(r) for r in grp.itertuples()]).pivot_table(
            index=["explainer", "baseline"], columns="metric", values="cell", aggfunc="first")
        table = table.reindex(columns=metrics).fillna("not computed")
        table.columns = [m + _direction(metrics_meta, m) for m in metrics]
        lines += [f"## {dataset} / {model}", "", _md_table(table.reset_index()), ""]
        for fig in _plots(grp, metrics[:-1], metrics_meta, out, dataset, model, confidence):
            lines += [f"![{fig.stem}]({fig.name})", ""]
    if n_err:
        errs = units[units.status == "error"][["dataset", "model", "seed", "explainer", "baseline", "error"]]
        lines += ["## Failed units", "", _md_table(errs), ""]
    if len(log):
        lines += ["## Skipped and failed metrics", ""] + [f"- {m}" for m in log.message] + [""]
    if metrics_meta:
        mt = pd.DataFrame([{"metric": k, **v} for k, v in metrics_meta.items()])
        lines += ["## Metrics", "", _md_table(mt), ""]
    lines += ["## Config", ""]
    if meta.get("config_toml"):
        lines += ["```toml", meta["config_toml"].rstrip(), "```", ""]
    lines += ["Effective config (after `--quick` overrides):" if meta.get("quick") else "Parsed config:", "",
              "```json", json.dumps(meta.get("config"), indent=2, sort_keys=True), "```", ""]
    versions = meta.get("versions", {})
    lines += ["## Package versions", "", _md_table(pd.DataFrame(
        {"package": list(versions), "version": list(versions.values())})), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _plots(grp: pd.DataFrame, metrics: list[str], metrics_meta: dict, out: Path, dataset: str,
           model: str, confidence: float) -> list[Path]:
    """Heat map and per-baseline bars for one dataset and model; returns the files written."""
    if not metrics:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    g = grp[grp.metric.isin(metrics)].assign(method=lambda d: d.explainer + " | " + d.baseline)
    means = g.pivot_table(index="method", columns="metric", values="mean").reindex(columns=metrics)
    # colour: each column scaled to [0, 1] so that 1 is the best method on that metric
    span = (means.max() - means.min()).replace(0, 1.0)
    score = (means - means.min()) / span
    for m in metrics:
        if metrics_meta.get(m, {}).get("higher_is_better") is False:
            score[m] = 1 - score[m]
    label_w = 0.075 * max(len(str(i)) for i in means.index)
    fig, ax = plt.subplots(figsize=(1.0 + label_w + 1.2 * len(metrics), 1.4 + 0.4 * len(means)),
                           layout="constrained")
    ax.imshow(score.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(metrics)), [m + _direction(metrics_meta, m) for m in metrics],
                  rotation=30, ha="right")
    ax.set_yticks(range(len(means)), means.index)
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            v = means.iat[i, j]
            ax.text(j, i, _fmt(v), ha="center", va="center", fontsize=7,
                    color="white" if score.iat[i, j] < 0.5 else "black")
    ax.set_title(f"{dataset} / {model}\nmean; colour per metric, best = yellow", fontsize=9)
    files.append(out / f"heatmap_{_slug(dataset, model)}.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    multi = g.groupby("explainer").baseline.nunique()
    multi = multi[multi > 1].index.tolist()
    if multi:
        b = g[g.explainer.isin(multi)]
        fig, axes = plt.subplots(1, len(metrics), figsize=(1.5 + 3.2 * len(metrics), 4.0), squeeze=False,
                                 layout="constrained")
        for ax, m in zip(axes[0], metrics, strict=True):
            sub = b[b.metric == m].sort_values(["explainer", "baseline"])
            x = np.arange(len(sub))
            err = np.vstack([sub["mean"] - sub.low, sub.high - sub["mean"]]).clip(min=0)
            err = np.where(np.isfinite(err), err, 0)
            ax.bar(x, sub["mean"], yerr=err, capsize=3,
                   color=[f"C{multi.index(e) % 10}" for e in sub.explainer])
            ax.set_xticks(x, sub.baseline, rotation=45, ha="right", fontsize=7)
            ax.set_title(m + _direction(metrics_meta, m), fontsize=9)
        handles = [plt.Rectangle((0, 0), 1, 1, color=f"C{i % 10}") for i in range(len(multi))]
        fig.legend(handles, multi, loc="outside lower center", ncols=min(3, len(multi)), fontsize=7)
        fig.suptitle(f"{dataset} / {model}: baselines ({confidence:.0%} intervals)", fontsize=9)
        files.append(out / f"baselines_{_slug(dataset, model)}.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files
