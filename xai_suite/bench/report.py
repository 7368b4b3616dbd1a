"""Markdown reports of a results store: tables with intervals, PNG plots, config, versions.

Every mean carries a 95% interval over the explained instances (seeds pooled): a percentile
bootstrap (:func:`~xai_suite.metrics.statistics.bootstrap_interval`, 10,000 resamples, seed
0), or a Wilson score interval (:func:`~xai_suite.metrics.statistics.wilson_interval`) for
metrics whose values are all 0 or 1 (counterfactual validity, attack success). Each dataset /
model section opens with the trained model's test accuracy and its Wilson interval, flagged
below ``min_accuracy``, and ranks the methods per metric: a range ``a-b`` marks a method whose
interval overlaps those of the methods ranked ``a`` to ``b`` (:func:`rank_ranges`). The header
states the space removal metrics follow (``deletion_output``); cells of a metric that does
not apply to the explainer read ``n/a``, and a "Not applicable" section lists them with the
explainer x model pairs that were no units.

Plots, per dataset and model: an explainer x metric heat map; bars per baseline (intervals
as error bars) for explainers run with several; the mean deletion / insertion curve of every
explainer and baseline with a 95% pointwise bootstrap band (2,000 resamples, seed 0).
Matplotlib is imported when plotting, with the Agg backend.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.statistics import bootstrap_interval, wilson_interval
from ..registry import to_markdown
from .config import OUTPUT_WORDS
from .store import ResultsStore

RUNTIME = "seconds per instance"
GROUP = ["dataset", "model", "explainer", "baseline"]
#: Resamples of the pointwise bootstrap bands around mean curves.
BAND_RESAMPLES = 2_000


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


def model_summary(models: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Test accuracy of every (dataset, model), seeds pooled, with a Wilson interval.

    Parameters
    ----------
    models : pandas.DataFrame
        The store's ``models`` table (one row per dataset, model and seed).
    confidence : float

    Returns
    -------
    pandas.DataFrame
        Columns dataset, model, seeds, n_test (test rows per seed, comma-separated where
        they differ), n (predictions pooled over seeds), accuracy, low, high, per_seed
        (each seed's accuracy), majority (mean share of the commonest test class) and
        n_classes.
    """
    rows = []
    for (dataset, model), g in models.groupby(["dataset", "model"], sort=True):
        n, k = int(g.n_test.sum()), int(g.n_correct.sum())
        low, high = wilson_interval(k, n, confidence)
        rows.append({"dataset": dataset, "model": model, "seeds": len(g),
                     "n_test": ", ".join(str(v) for v in dict.fromkeys(g.n_test)), "n": n,
                     "accuracy": k / n, "low": low, "high": high,
                     "per_seed": ", ".join(f"{a:.3f}" for a in g.accuracy),
                     "majority": float(g.majority.mean()), "n_classes": int(g.n_classes.max())})
    return pd.DataFrame(rows, columns=["dataset", "model", "seeds", "n_test", "n", "accuracy", "low", "high",
                                       "per_seed", "majority", "n_classes"])


def _model_lines(q, min_accuracy: float, pct: str, bold: str = "**") -> list[str]:
    """The accuracy line of a section, and a warning below ``min_accuracy``."""
    seeds = f"{q.n_test} test rows x {q.seeds} seeds" if q.seeds > 1 else f"{q.n_test} test rows"
    lines = [f"Model test accuracy: {bold}{q.accuracy:.3f} [{q.low:.3f}, {q.high:.3f}]ᵂ{bold} ({pct} Wilson "
             f"interval; n={q.n}: {seeds}; per seed {q.per_seed}; commonest class "
             f"{q.majority:.3f}, {q.n_classes} classes)"]
    if q.accuracy < min_accuracy:
        lines.append(f"{bold}Weak model{bold}: test accuracy {q.accuracy:.3f} is below {min_accuracy:g}; the "
                     "attribution numbers below describe a model that has not learned the task well.")
    return lines


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


def rank_ranges(mean, low, high, higher_is_better: bool) -> list[str]:
    """Rank of each method on one metric, as a range where intervals overlap.

    Method ``i`` ranks no better than ``1 +`` the number of methods whose interval lies
    wholly above its own (for ``higher_is_better``) and no worse than ``n -`` the number
    wholly below: ``"1"`` where it is told apart from every other method, ``"1-2"`` where it
    cannot be told apart from the second. A method without an interval counts as its mean.

    Parameters
    ----------
    mean, low, high : array-like of float, shape (M,)
        Each method's mean and interval (NaN: no value / no interval).
    higher_is_better : bool

    Returns
    -------
    list of str, length M
        ``"-"`` for a method without a value.
    """
    sign = 1.0 if higher_is_better else -1.0
    m = sign * np.asarray(mean, dtype=np.float64)
    lo, hi = (sign * np.where(np.isfinite(v), v, mean) for v in (np.asarray(low, float),
                                                                  np.asarray(high, float)))
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    ok = np.isfinite(m)
    out = []
    for i in range(len(m)):
        if not ok[i]:
            out.append("-")
            continue
        best = 1 + int((lo[ok] > hi[i]).sum())
        worst = int(ok.sum()) - int((hi[ok] < lo[i]).sum())
        out.append(str(best) if best == worst else f"{best}-{worst}")
    return out


def _rank_table(grp: pd.DataFrame, metrics: list[str], metrics_meta: dict) -> pd.DataFrame:
    """Methods x metrics of ranks (:func:`rank_ranges`), for metrics with a direction."""
    table = pd.DataFrame(index=pd.MultiIndex.from_frame(grp[["explainer", "baseline"]].drop_duplicates()))
    for m in metrics:
        hib = metrics_meta.get(m, {}).get("higher_is_better")
        sub = grp[grp.metric == m]
        if hib is None or sub.empty:
            continue
        ranks = rank_ranges(sub["mean"], sub.low, sub.high, bool(hib))
        table[m + _direction(metrics_meta, m)] = pd.Series(
            ranks, index=pd.MultiIndex.from_frame(sub[["explainer", "baseline"]]))
    return table.fillna("n/a")


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)).strip("_")


def _direction(metrics_meta: dict, metric: str) -> str:
    hib = metrics_meta.get(metric, {}).get("higher_is_better")
    return " ↑" if hib is True else (" ↓" if hib is False else "")


def write_report(results, out_dir=None, *, confidence: float = 0.95, min_accuracy: float = 0.8,
                 html: bool = False) -> Path:
    """Write ``report.md`` and its PNG plots for a results store (and ``report.html``).

    Parameters
    ----------
    results : str or os.PathLike
        The store (``results.sqlite``) or the run directory holding it.
    out_dir : str or os.PathLike, optional
        Where to write; defaults to ``report/`` next to the store.
    confidence : float
    min_accuracy : float
        Sections of models whose pooled test accuracy is lower get a "weak model" warning.
    html : bool
        Also write ``report.html`` next to ``report.md``: the same sections in one
        self-contained page that works offline (sortable tables, a Plotly heat map with the
        intervals on hover, deletion / insertion curves with bands); needs
        ``pip install 'xai-suite[explore]'``.

    Returns
    -------
    pathlib.Path
        The Markdown file.
    """
    data = _report_data(results, confidence, min_accuracy)
    out = Path(out_dir) if out_dir is not None else data["path"].parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    data["summary"].to_csv(out / "summary.csv", index=False)
    data["quality"].to_csv(out / "models.csv", index=False)
    lines: list[str] = []
    for block in _blocks(data, md=True):
        kind, value = block[0], block[1]
        if kind == "list":
            lines += [f"- {item}" for item in value] + [""]
        elif kind == "table":
            lines += [to_markdown(value), ""]
        elif kind == "code":
            lines += [f"```{block[2]}", value.rstrip(), "```", ""]
        elif kind == "plots":
            figs = _plots(value, data["metrics_meta"], out, confidence)
            figs += _curve_plots(value, data["metrics_meta"], out, confidence)
            for fig in figs:
                lines += [f"![{fig.stem}]({fig.name})", ""]
        else:
            lines += [{"h1": "# ", "h2": "## ", "quote": "> ", "p": ""}[kind] + value, ""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    if html:
        _write_html(data, out / "report.html")
    return report


def _report_data(results, confidence: float, min_accuracy: float) -> dict:
    """Everything a report shows, computed once for the Markdown and the HTML writer."""
    with ResultsStore(results) as store:
        meta, df, units, log = store.meta(), store.results(), store.units(), store.log()
        curves, models = store.curves(), store.models()
        path = store.path
    if not meta:
        raise ValueError(f"{path} holds no run (no config recorded)")
    metrics_meta = meta.get("metrics", {})
    summary = summarise(df, confidence)
    quality = model_summary(models, confidence)
    plan = meta.get("plan") or {}
    na_cells = plan.get("metrics_not_applicable", [])
    na = {(c["dataset"], c["model"], c["explainer"], c["baseline"], c["metric"]) for c in na_cells}
    sections = []
    for (dataset, model), grp in summary.groupby(["dataset", "model"], sort=True):
        metrics = [m for m in dict.fromkeys(grp.metric) if m != RUNTIME] + [RUNTIME]
        table = grp.assign(cell=[_cell(r) for r in grp.itertuples()]).pivot_table(
            index=["explainer", "baseline"], columns="metric", values="cell", aggfunc="first")
        table = table.reindex(columns=metrics)
        for (explainer, baseline), m in [(i, m) for i in table.index for m in metrics]:
            if (dataset, model, explainer, baseline, m) in na:
                table.loc[(explainer, baseline), m] = "n/a"
        table = table.fillna("not computed")
        table.columns = [m + _direction(metrics_meta, m) for m in metrics]
        q = quality[(quality.dataset == dataset) & (quality.model == model)]
        sel = curves[(curves.dataset == dataset) & (curves.model == model)]
        sections.append({"dataset": dataset, "model": model, "grp": grp, "metrics": metrics[:-1],
                         "table": table.reset_index(), "quality": q.iloc[0] if len(q) else None,
                         "ranks": _rank_table(grp, metrics[:-1], metrics_meta),
                         "heat": _heat(grp, metrics[:-1], metrics_meta),
                         "curves": curve_summary(sel, confidence).assign(
                             method=lambda d: d.explainer + " | " + d.baseline)})
    return {"meta": meta, "path": path, "results": df, "units": units, "log": log, "summary": summary,
            "quality": quality, "metrics_meta": metrics_meta, "plan": plan, "sections": sections,
            "confidence": confidence, "min_accuracy": min_accuracy}


def _blocks(data: dict, md: bool) -> list[tuple]:
    """The report as blocks ``(kind, value, ...)``: h1, h2, p, quote, list, table, code
    (value, language) and plots (a section); ``md``: Markdown marks in the text."""
    meta, units, df, quality = data["meta"], data["units"], data["results"], data["quality"]
    confidence, min_accuracy, plan = data["confidence"], data["min_accuracy"], data["plan"]
    bold, code = ("**", "`") if md else ("", "")
    n_err = int((units.status == "error").sum()) if len(units) else 0
    pct = f"{confidence:.0%}"
    skipped, na_cells = plan.get("not_applicable", []), plan.get("metrics_not_applicable", [])
    blocks: list[tuple] = [("h1", f"Benchmark report: {meta['suite']}")]
    if desc := (meta.get("config") or {}).get("description", ""):
        blocks.append(("p", desc))
    blocks.append(("list", [
        f"store: {code}{data['path']}{code}" + (" (quick run)" if meta.get("quick") else ""),
        f"units: {len(units) - n_err} done, {n_err} failed; {len(df)} instance-level rows"
        + (f"; {len(skipped)} explainer x model pairs not applicable (no units, listed below)" if skipped
           else ""),
        *([f"deletion space: removal metrics (deletion, insertion, comprehensiveness, sufficiency) "
           f"follow the {OUTPUT_WORDS[plan['deletion_output']]}, for every model of this report"]
          if plan.get("deletion_output") else []),
        f"every cell: mean [{pct} interval] (n instances, seeds pooled). Intervals: percentile "
        "bootstrap over instances (10,000 resamples, seed 0); ᵂ marks a Wilson score interval "
        "(metrics whose values are all 0 or 1). ↑ / ↓: higher / lower is better.",
        "seconds per instance: each unit's explain time divided by its instances (imports excluded); "
        "every instance of a unit gets that value, so its interval reflects differences between "
        "units (seeds) only, and collapses to a point with one seed.",
        f"model test accuracy: on the whole test split, seeds pooled, with a {pct} Wilson interval; "
        f"below {min_accuracy:g} a section is flagged as a weak model.",
        "curves: mean deletion / insertion curve per explainer and baseline, with a pointwise "
        f"{pct} bootstrap band over instances ({BAND_RESAMPLES:,} resamples).",
        f"ranks: 1 = best; a range a-b marks a method whose {pct} interval overlaps those of the "
        "methods ranked a to b (it cannot be told apart from them); n/a: the metric does not apply.",
        f"all numbers: {code}summary.csv{code} and {code}models.csv{code} next to this file."]))
    if len(quality):
        qt = quality.assign(accuracy=[f"{q.accuracy:.3f} [{q.low:.3f}, {q.high:.3f}]ᵂ"
                                      for q in quality.itertuples()],
                            majority=quality.majority.map("{:.3f}".format))
        qt = qt[["dataset", "model", "accuracy", "n", "n_test", "seeds", "per_seed", "majority"]]
        blocks += [("h2", "Models"), ("p", f"Test accuracy ({pct} Wilson interval over n predictions: test "
                                           "rows x seeds); majority: accuracy of always predicting the "
                                           "commonest test class."), ("table", qt)]
    for sec in data["sections"]:
        blocks.append(("h2", f"{sec['dataset']} / {sec['model']}"))
        if sec["quality"] is None:
            blocks.append(("p", "Model test accuracy: not recorded (no unit of this model got as far as "
                                "training it)."))
        else:
            line, *warning = _model_lines(sec["quality"], min_accuracy, pct, bold)
            blocks += [("p", line), *[("quote", w) for w in warning]]
        blocks.append(("table", sec["table"]))
        if sec["ranks"].shape[1]:
            blocks += [("p", f"Ranks (1 = best; a-b: the {pct} interval overlaps those of the methods ranked "
                             "a to b):"),
                       ("table", sec["ranks"].reset_index().rename(columns={"explainer": "method"}))]
        blocks.append(("plots", sec))
    if n_err:
        errs = units[units.status == "error"][["dataset", "model", "seed", "explainer", "baseline", "error"]]
        blocks += [("h2", "Failed units"), ("table", errs)]
    if skipped or na_cells:
        blocks += [("h2", "Not applicable"), ("p", "No units and no failures: explainers that do not explain "
                                                   "a model's kind, and metrics that mean nothing for an "
                                                   "explainer.")]
        if skipped:
            blocks.append(("table", pd.DataFrame(skipped)))
        if na_cells:
            cells = pd.DataFrame(na_cells).drop_duplicates(["explainer", "metric", "reason"])
            blocks.append(("table", cells[["explainer", "metric", "reason"]]))
    if len(data["log"]):
        blocks += [("h2", "Skipped and failed metrics"), ("list", list(data["log"].message))]
    if data["metrics_meta"]:
        mt = pd.DataFrame([{"metric": k, **v} for k, v in data["metrics_meta"].items()]).fillna("-")
        blocks += [("h2", "Metrics"), ("table", mt)]
    blocks.append(("h2", "Config"))
    if meta.get("config_toml"):
        blocks.append(("code", meta["config_toml"], "toml"))
    blocks += [("p", f"Effective config (after {code}--quick{code} overrides):" if meta.get("quick")
                else "Parsed config:"),
               ("code", json.dumps(meta.get("config"), indent=2, sort_keys=True), "json")]
    versions = meta.get("versions", {})
    blocks += [("h2", "Package versions"),
               ("table", pd.DataFrame({"package": list(versions), "version": list(versions.values())}))]
    return blocks


def _write_html(data: dict, path: Path) -> Path:
    """``report.html``: the blocks of :func:`_blocks` in a :class:`~xai_suite.viz.html.Page`."""
    from ..viz.html import Page, escape
    from ..viz.html_results import curves_figure, heatmap_figure

    blocks = _blocks(data, md=False)
    page = Page(blocks[0][1])
    for block in blocks[1:]:
        kind, value = block[0], block[1]
        if kind == "h2":
            page.heading(value)
        elif kind == "p":
            page.paragraph(value, note=value.startswith("Ranks"))
        elif kind == "quote":
            page.markup(f"<blockquote><strong>{escape(value)}</strong></blockquote>")
        elif kind == "list":
            page.markup("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in value) + "</ul>")
        elif kind == "table":
            page.table(value)
        elif kind == "code":
            page.markup(f"<pre>{escape(value.rstrip())}</pre>")
        elif kind == "plots":
            title = f"{value['dataset']} / {value['model']}"
            if value["metrics"]:
                page.figure(heatmap_figure(*value["heat"], title=title))
            for metric in dict.fromkeys(value["curves"].metric):
                info = data["metrics_meta"].get(metric, {})
                page.figure(curves_figure(value["curves"][value["curves"].metric == metric],
                                          title=f"{title}: {metric}", xlabel=_curve_xlabel(info, metric),
                                          ylabel=_curve_ylabel(info), confidence=data["confidence"]))
    return page.write(path)


def _heat(grp: pd.DataFrame, metrics: list[str], metrics_meta: dict):
    """The heat map of one section: means, colour scores (each column scaled to [0, 1], 1 the
    best method on that metric), lows and highs, each methods x metrics; and the column labels."""
    g = grp[grp.metric.isin(metrics)].assign(method=lambda d: d.explainer + " | " + d.baseline)
    means = g.pivot_table(index="method", columns="metric", values="mean").reindex(columns=metrics)
    low, high = (g.pivot_table(index="method", columns="metric", values=v).reindex(
        index=means.index, columns=metrics) for v in ("low", "high"))
    span = (means.max() - means.min()).replace(0, 1.0)
    score = (means - means.min()) / span
    for m in metrics:
        if metrics_meta.get(m, {}).get("higher_is_better") is False:
            score[m] = 1 - score[m]
    return means, score, low, high, [m + _direction(metrics_meta, m) for m in metrics]


def _curve_xlabel(info: dict, metric: str) -> str:
    what = "inserted" if info.get("metric", metric).startswith("insertion") else "removed"
    return f"fraction of elements {what}"


def _curve_ylabel(info: dict) -> str:
    return info.get("output", "model output for the explained class")


def _plots(sec: dict, metrics_meta: dict, out: Path, confidence: float) -> list[Path]:
    """Heat map and per-baseline bars for one section (dataset and model); returns the files written."""
    metrics, dataset, model = sec["metrics"], sec["dataset"], sec["model"]
    if not metrics:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    g = sec["grp"][sec["grp"].metric.isin(metrics)].assign(method=lambda d: d.explainer + " | " + d.baseline)
    means, score, _, _, labels = sec["heat"]
    label_w = 0.075 * max(len(str(i)) for i in means.index)
    fig, ax = plt.subplots(figsize=(1.0 + label_w + 1.2 * len(metrics), 1.4 + 0.4 * len(means)),
                           layout="constrained")
    ax.imshow(score.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(metrics)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(means)), means.index)
    for i, j in np.ndindex(means.shape):
        ax.text(j, i, _fmt(means.iat[i, j]), ha="center", va="center", fontsize=7,
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


def curve_summary(curves: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean curve and pointwise bootstrap band of every (dataset, model, explainer, baseline, metric).

    Parameters
    ----------
    curves : pandas.DataFrame
        The store's ``curves`` table.
    confidence : float

    Returns
    -------
    pandas.DataFrame
        One row per group and step: the group columns, metric, step, fraction, n (finite
        values), mean, low, high (percentile bootstrap over instances, seeds pooled,
        :data:`BAND_RESAMPLES` resamples, seed 0; NaN where n < 2).
    """
    rows = []
    for keys, grp in curves.groupby([*GROUP, "metric", "step"], sort=True):
        vals = grp.value.to_numpy(dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        low, high = (bootstrap_interval(vals, confidence, n_resamples=BAND_RESAMPLES, random_state=0)
                     if vals.size >= 2 else (np.nan, np.nan))
        rows.append({**dict(zip([*GROUP, "metric", "step"], keys, strict=True)),
                     "fraction": float(grp.fraction.iloc[0]), "n": vals.size,
                     "mean": float(vals.mean()) if vals.size else np.nan, "low": low, "high": high})
    return pd.DataFrame(rows, columns=[*GROUP, "metric", "step", "fraction", "n", "mean", "low", "high"])


def _curve_plots(sec: dict, metrics_meta: dict, out: Path, confidence: float) -> list[Path]:
    """Mean curves with bands for one section: a PNG per curve metric, a panel per method.

    Each panel draws one explainer | baseline (mean and band) over the other methods' means
    in grey, so that the bands stay readable however many baselines ran.
    """
    cs, dataset, model = sec["curves"], sec["dataset"], sec["model"]
    if cs.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for metric in dict.fromkeys(cs.metric):
        cm = cs[cs.metric == metric]
        methods = sorted(cm.method.unique())
        ncols = min(4, len(methods))
        nrows = -(-len(methods) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(0.5 + 3.0 * ncols, 0.8 + 2.4 * nrows), squeeze=False,
                                 sharex=True, sharey=True, layout="constrained")
        for ax, method in zip(axes.flat, methods, strict=False):
            for other in methods:
                c = cm[cm.method == other].sort_values("step")
                ax.plot(c.fraction, c["mean"], color="0.8", lw=0.7, zorder=1)
            c = cm[cm.method == method].sort_values("step")
            ax.fill_between(c.fraction, c.low, c.high, color="C0", alpha=0.25, lw=0, zorder=2)
            ax.plot(c.fraction, c["mean"], color="C0", lw=1.5, zorder=3)
            ax.set_title(method, fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        for ax in axes.flat[len(methods):]:
            ax.set_visible(False)
        fig.supxlabel(_curve_xlabel(metrics_meta.get(metric, {}), metric), fontsize=8)
        fig.supylabel(_curve_ylabel(metrics_meta.get(metric, {})), fontsize=8)
        fig.suptitle(f"{dataset} / {model}: {metric}, mean curve and {confidence:.0%} bootstrap band "
                     "(grey: the other methods' means)", fontsize=9)
        files.append(out / f"curves_{_slug(metric, dataset, model)}.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    return files
