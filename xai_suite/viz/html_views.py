"""Interactive HTML views of attribution explanations (Plotly figures in one offline page).

:meth:`Explanation.to_html <xai_suite.explanation.Result.to_html>` fills its page with
:func:`explanation_html`, by modality: time series as each channel's line over a heat strip
of its attribution, with an instance picker; images as the attribution over the image, with
an opacity slider and an instance picker; tabular data as beeswarm, mean |attribution| bars
and a waterfall (categories by their labels). :func:`comparison_html` puts several methods'
explanations of the same series in one file with a method switcher, :func:`baseline_html`
one image's attributions with every baseline (their completeness errors and
``p(target | baseline)`` beside them).

Attribution colours are diverging and symmetric around zero (``[-m, m]``, ``m = max |a|``;
white, or transparent over images, at zero). Every control is Plotly's own (dropdowns,
buttons, sliders), so the page needs no script of its own; every user string (feature,
class and baseline names, titles) is escaped with :func:`~xai_suite.viz.html.escape`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .html import Page, escape, plotly
from .image import _baseline_label, _gray, _limit, _one_image, _probability
from .tabular import (
    _bar_means,
    _checked,
    _class_name,
    _names,
    _rows_for,
    _swarm,
    _swarm_features,
    _waterfall_steps,
)

if TYPE_CHECKING:
    from ..explanation import Explanation

#: Diverging attribution colours: blue negative, white zero, red positive.
DIVERGING = [[0.0, "rgb(5,48,97)"], [0.25, "rgb(103,169,207)"], [0.5, "rgb(255,255,255)"],
             [0.75, "rgb(239,138,98)"], [1.0, "rgb(103,0,31)"]]
#: The same over images, transparent at zero so the image shows through where |a| is small.
OVERLAY = [[0.0, "rgba(5,48,97,1)"], [0.25, "rgba(103,169,207,0.6)"], [0.5, "rgba(255,255,255,0)"],
           [0.75, "rgba(239,138,98,0.6)"], [1.0, "rgba(103,0,31,1)"]]
#: Feature-value colours of the beeswarm points (low blue, high red).
VALUE_COLORS = [[0.0, "rgb(59,76,192)"], [0.5, "rgb(221,221,221)"], [1.0, "rgb(180,4,38)"]]
#: The opacities the image views' slider offers, and the initial one.
OPACITIES, OPACITY = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), 0.8



def explanation_html(exp: Explanation, page: Page, *, class_names=None, max_instances: int = 20,
                     max_features: int = 10, target=None) -> None:
    """Fill ``page`` with the view of ``exp`` for its modality (several inputs: one section each).

    Parameters
    ----------
    exp : Explanation
    page : Page
    class_names : sequence of str, optional
        One name per model output, for the titles (default ``0``, ``1``, ...).
    max_instances : int
        Time series and images: the first ``max_instances`` instances are in the picker
        (the page says so when there are more).
    max_features : int
        Tabular: the features shown in each summary.
    target : int, optional
        Tabular: the class whose rows the beeswarm and bars summarise; required when the rows
        explain several classes (as :func:`~xai_suite.viz.plot_beeswarm`).
    """
    from .._validation import check_positive_int

    check_positive_int(max_instances=max_instances, max_features=max_features)
    page.paragraph(summary(exp))
    for k in range(exp.n_inputs):
        part = exp.part(k)
        if exp.n_inputs > 1:
            page.heading(f"input {k}: {part.modality} {part.inputs.shape[1:]}")
        view = _VIEWS.get(part.modality)
        if view is None:
            raise ValueError(f"no HTML view for {part.modality} inputs of shape {part.inputs.shape}; "
                             f"views exist for {', '.join(_VIEWS)}")
        view(part, page, class_names=class_names, max_instances=max_instances,
             max_features=max_features, target=target)


def summary(exp: Explanation) -> str:
    """One line: the method, its baseline, every parameter and the completeness error."""
    params = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in exp.params.items())
    d = exp.convergence_delta
    delta = ("no completeness error (the method has none)" if d is None else
             f"completeness error sum(a) - (f(x) - f(baseline)): max |delta| "
             f"{np.abs(d).max():.3g}, mean |delta| {np.abs(d).mean():.3g}")
    return (f"method {exp.method}; baseline {_baseline_label(exp)}; {len(exp)} instances; "
            f"parameters: {params or 'none'}; {delta}")


def _shown(exp: Explanation, page: Page, max_instances: int) -> int:
    """How many instances the picker offers; a note on the page when some are left out."""
    n = min(len(exp), max_instances)
    if n < len(exp):
        page.paragraph(f"Showing the first {n} of {len(exp)} instances (pass max_instances="
                       f"{len(exp)} to show all).", note=True)
    return n


def _title(exp: Explanation, index: int, class_names) -> str:
    from . import _class_title

    return escape(f"instance {index}: {_class_title(exp, index, class_names)}")


def _picker(labels: list[str], masks: list[list[bool]], layouts: list[dict]):
    """A dropdown that shows one group of traces (``masks[i]``) and applies ``layouts[i]``."""
    buttons = [{"label": lab, "method": "update", "args": [{"visible": m}, lay]}
               for lab, m, lay in zip(labels, masks, layouts, strict=True)]
    return {"buttons": buttons, "direction": "down", "x": 0.0, "xanchor": "left", "y": 1.02,
            "yanchor": "bottom", "showactive": True, "active": 0}


def _masks(n_groups: int, per_group: int) -> list[list[bool]]:
    return [[g == i for g in range(n_groups) for _ in range(per_group)] for i in range(n_groups)]


# -- time series ---------------------------------------------------------------------------------
def _series_figure(channels: int, length: int):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2 * channels, cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_heights=[3, 1] * channels)
    fig.update_layout(height=170 * channels + 160, margin={"t": 110, "l": 70, "r": 30, "b": 40},
                      hovermode="closest")
    for c in range(channels):
        fig.update_yaxes(title_text=f"channel {c}", row=2 * c + 1, col=1)
        fig.update_yaxes(showticklabels=False, row=2 * c + 2, col=1)
    fig.update_xaxes(title_text="time", row=2 * channels, col=1)
    return fig


def _add_series(fig, x: np.ndarray, a: np.ndarray, lim: float, visible: bool, name: str) -> None:
    """Each channel of ``x`` (C, T) as a line over a heat strip of ``a`` in ``[-lim, lim]``."""
    go = plotly()
    t = np.arange(x.shape[1])
    for c in range(x.shape[0]):
        fig.add_trace(go.Scatter(
            x=t, y=x[c], mode="lines", line={"color": "#1a1a1a", "width": 1.6}, customdata=a[c],
            name=name, visible=visible, showlegend=False,
            hovertemplate="time %{x}<br>value %{y:.4g}<br>attribution %{customdata:.4g}"
                          f"<extra>channel {c}</extra>"), row=2 * c + 1, col=1)
        fig.add_trace(go.Heatmap(
            z=a[c][None], x=t, customdata=x[c][None], zmin=-lim, zmax=lim, colorscale=DIVERGING,
            name=name, visible=visible, showscale=c == 0,
            colorbar={"title": {"text": "attribution"}, "len": 0.6},
            hovertemplate="time %{x}<br>value %{customdata:.4g}<br>attribution %{z:.4g}"
                          f"<extra>channel {c}</extra>"), row=2 * c + 2, col=1)


def _timeseries(exp: Explanation, page: Page, *, class_names, max_instances, **_) -> None:
    n = _shown(exp, page, max_instances)
    c, t = exp.inputs.shape[1:]
    fig = _series_figure(c, t)
    titles = [_title(exp, i, class_names) for i in range(n)]
    for i in range(n):
        _add_series(fig, exp.inputs[i], exp.attributions[i], _limit(exp.attributions[i]), i == 0,
                    f"instance {i}")
    fig.update_layout(title={"text": titles[0]}, updatemenus=[_picker(
        [f"instance {i}" for i in range(n)], _masks(n, 2 * c), [{"title.text": s} for s in titles])])
    page.figure(fig)


# -- images --------------------------------------------------------------------------------------
def _image_figure(height: int, width: int, overlays: list[int]):
    """A figure for (H, W) images, with a slider of the opacity of the traces ``overlays``."""
    go = plotly()
    fig = go.Figure()
    steps = [{"label": f"{v:.1f}", "method": "restyle", "args": [{"opacity": v}, overlays]}
             for v in OPACITIES]
    fig.update_layout(
        width=560, height=int(560 * height / width) + 120, margin={"t": 110, "l": 40, "r": 40, "b": 90},
        xaxis={"showgrid": False, "zeroline": False, "range": [-0.5, width - 0.5], "constrain": "domain"},
        yaxis={"showgrid": False, "zeroline": False, "range": [height - 0.5, -0.5], "scaleanchor": "x",
               "constrain": "domain"},
        sliders=[{"active": OPACITIES.index(OPACITY), "steps": steps, "y": -0.02,
                  "currentvalue": {"prefix": "attribution opacity: "}}])
    return fig


def _add_image(fig, img: np.ndarray, a: np.ndarray, visible: bool) -> None:
    """Image ``img`` (C, H, W) in gray under its attribution (summed over channels)."""
    go = plotly()
    gray, heat = _gray(img), a.sum(0)
    lim = _limit(heat)
    fig.add_trace(go.Heatmap(z=gray, colorscale="gray", zmin=0, zmax=1, showscale=False,
                             hoverinfo="skip", visible=visible))
    fig.add_trace(go.Heatmap(z=heat, customdata=gray, zmin=-lim, zmax=lim, colorscale=OVERLAY,
                             opacity=OPACITY, visible=visible, colorbar={"title": {"text": "attribution"}},
                             hovertemplate="row %{y}, col %{x}<br>pixel %{customdata:.3g}"
                                           "<br>attribution %{z:.4g}<extra></extra>"))


def _image(exp: Explanation, page: Page, *, class_names, max_instances, **_) -> None:
    n = _shown(exp, page, max_instances)
    fig = _image_figure(*exp.inputs.shape[2:], overlays=list(range(1, 2 * n, 2)))
    titles = [_title(exp, i, class_names) for i in range(n)]
    for i in range(n):
        _add_image(fig, exp.inputs[i], exp.attributions[i], i == 0)
    fig.update_layout(title={"text": titles[0]}, updatemenus=[_picker(
        [f"instance {i}" for i in range(n)], _masks(n, 2), [{"title.text": s} for s in titles])])
    page.figure(fig)


# -- tabular -------------------------------------------------------------------------------------
def _tabular(exp: Explanation, page: Page, *, class_names, max_instances, max_features, target) -> None:
    """Beeswarm and bars per explained class (rows of different classes are never pooled: with
    ``target=None`` and rows explaining several classes, one pair per class), then the waterfall."""
    (exp,) = _checked(exp, max_features, class_names)
    classes = [int(k) for k in np.unique(exp.target)] if target is None else [target]
    if len(classes) > 1:
        page.paragraph(f"The rows explain {len(classes)} classes (target=None explains each row's predicted "
                       "class), so each class gets its own summaries, of the rows explained for it; "
                       "explain(X, target=k) explains every row for one class.", note=True)
    for k in classes:
        _summaries(exp, page, k, class_names, max_features, several=len(classes) > 1)
    if exp.base_values is not None:
        page.heading("waterfall")
        page.figure(_waterfall(exp, min(len(exp), max_instances), max_features, class_names))
        if len(exp) > max_instances:
            page.paragraph(f"The waterfall's picker offers the first {max_instances} of {len(exp)} "
                           f"rows (pass max_instances={len(exp)} to offer all).", note=True)
    else:
        page.paragraph(f"No waterfall: {exp.method} has no base values (no completeness property).",
                       note=True)


def _summaries(exp: Explanation, page: Page, target, class_names, max_features: int, *,
               several: bool) -> None:
    """The beeswarm and the mean-|attribution| bars of the rows explained for class ``target``."""
    from ..explanation import decoded_frame

    go = plotly()
    k, attrs, inputs = _rows_for([exp], target)
    cls = escape(_class_name(k, class_names))
    suffix = f", {_class_name(k, class_names)}" if several else ""
    order, labels, colours = _swarm_features(exp, attrs, inputs, max_features)
    shown = decoded_frame(inputs, exp.feature_names, exp.categories).to_numpy(dtype=object)
    swarm = go.Figure()
    for pos, j in enumerate(order):
        text = [escape(f"{labels[pos]} = {v}") + f"<br>attribution {a:.4g}"
                for v, a in zip(shown[:, j], attrs[:, j], strict=True)]
        swarm.add_trace(go.Scatter(
            x=attrs[:, j], y=pos + _swarm(attrs[:, j]), mode="markers", text=text, showlegend=False,
            marker={"color": colours[pos], "colorscale": VALUE_COLORS, "cmin": 0, "cmax": 1, "size": 7,
                    "showscale": pos == 0, "colorbar": {"title": {"text": "feature value"},
                                                        "tickvals": [0, 1], "ticktext": ["low", "high"]}},
            hovertemplate="%{text}<extra></extra>"))
    swarm.update_layout(title={"text": escape(f"{exp.method}: {len(attrs)} rows")},
                        xaxis={"title": {"text": f"attribution (for {cls})"}, "zeroline": True},
                        yaxis={"tickmode": "array", "tickvals": list(range(len(order))),
                               "ticktext": [escape(s) for s in labels]},
                        height=40 * len(order) + 200)
    page.heading("beeswarm" + suffix)
    page.figure(swarm)

    _, means = _bar_means([exp], k)
    names = _names(exp)
    bar_order = np.argsort(-means.sum(0), kind="stable")[:max_features][::-1]
    bars = go.Figure(go.Bar(x=means[0, bar_order], y=list(range(len(bar_order))), orientation="h",
                            marker={"color": "#c0392b"}, text=[escape(names[j]) for j in bar_order],
                            hovertemplate="%{text}: %{x:.4g}<extra></extra>", textposition="none"))
    bars.update_layout(title={"text": escape(exp.method)}, height=30 * len(bar_order) + 200,
                       xaxis={"title": {"text": f"mean |attribution| (for {cls})"}},
                       yaxis={"tickmode": "array", "tickvals": list(range(len(bar_order))),
                              "ticktext": [escape(names[j]) for j in bar_order]})
    page.heading("mean |attribution|" + suffix)
    page.figure(bars)


def _waterfall(exp: Explanation, n: int, max_features: int, class_names):
    """One waterfall per instance (a picker over the first ``n``): ``E[f(X)]``, each step, ``f(x)``."""
    go = plotly()
    fig = go.Figure()
    layouts = []
    for i in range(n):
        t, base, steps, fx = _waterfall_steps(exp, i, max_features)
        y = list(range(len(steps) + 2))
        fig.add_trace(go.Waterfall(
            orientation="h", y=y, x=[base, *(v for _, v in steps), 0.0],
            measure=["absolute", *["relative"] * len(steps), "total"], visible=i == 0,
            increasing={"marker": {"color": "#c0392b"}}, decreasing={"marker": {"color": "#2e6da4"}},
            totals={"marker": {"color": "#555"}}, hovertemplate="%{x:.4g}<extra></extra>"))
        ticks = ["E[f(X)] = " + f"{base:.4g}", *(escape(s) for s, _ in steps), f"f(x) = {fx:.4g}"]
        layouts.append({"title.text": escape(f"{exp.method}: instance {i}, output for "
                                             f"{_class_name(t, class_names)}"),
                        "yaxis.tickvals": y, "yaxis.ticktext": ticks,
                        "height": 32 * len(y) + 220})
    fig.update_layout(xaxis={"title": {"text": "model output"}},
                      **{k.replace(".", "_"): v for k, v in layouts[0].items()},
                      updatemenus=[_picker([f"instance {i}" for i in range(n)], _masks(n, 1), layouts)])
    return fig


_VIEWS = {"timeseries": _timeseries, "image": _image, "tabular": _tabular}


# -- comparisons ---------------------------------------------------------------------------------
def comparison_html(explanations, path: str | os.PathLike, *, titles=None, class_names=None,
                    max_instances: int = 5, title: str | None = None) -> Path:
    """Several methods' explanations of the same time series in one file, with a method switcher.

    One figure per instance (the first ``max_instances``): each channel's line over the heat
    strip of the chosen method's attribution, every method on one colour scale
    (``[-m, m]``, ``m`` the largest ``|a|`` of the instance over all the methods), and one
    button per method.

    Parameters
    ----------
    explanations : sequence of Explanation
        Time-series explanations (N, C, T) of the same inputs.
    path : str or os.PathLike
        Where to write the page.
    titles : sequence of str, optional
        One button label per explanation (default: the method names).
    class_names : sequence of str, optional
        One name per model output, for the figure titles.
    max_instances : int
    title : str, optional
        The page's title.

    Returns
    -------
    pathlib.Path
    """
    from .._validation import check_positive_int
    from . import _class_names

    exps = list(explanations)
    if not exps:
        raise ValueError("comparison_html needs at least one explanation")
    if any(getattr(e, "modality", None) != "timeseries" for e in exps):
        raise ValueError("comparison_html compares time-series explanations (N, C, T); for images' "
                         "baselines use baseline_html")
    check_positive_int(max_instances=max_instances)
    x = exps[0].inputs
    for k, e in enumerate(exps[1:], 1):
        if e.inputs.shape != x.shape or not np.allclose(e.inputs, x):
            raise ValueError(f"comparison_html compares explanations of the same inputs: explanation {k} "
                             f"({e.method}) explains other inputs than explanation 0 ({exps[0].method})")
    titles = [e.method for e in exps] if titles is None else [str(s) for s in titles]
    if len(titles) != len(exps):
        raise ValueError(f"titles has {len(titles)} entries for {len(exps)} explanations")
    page = Page(title or "comparison: " + ", ".join(titles))
    for label, e in zip(titles, exps, strict=True):
        page.paragraph(f"{label}: {summary(e)}")
    n = _shown(exps[0], page, max_instances)
    c, t = x.shape[1:]
    names = _class_names(class_names, exps[0].predictions.shape[1])
    for i in range(n):
        lim = _limit(np.stack([e.attributions[i] for e in exps]))
        heads = [escape(f"instance {i}: class {names[int(e.target[i])]}") for e in exps]
        fig = _series_figure(c, t)
        for m, e in enumerate(exps):
            _add_series(fig, e.inputs[i], e.attributions[i], lim, m == 0, escape(titles[m]))
        menu = _picker([escape(s) for s in titles], _masks(len(exps), 2 * c),
                       [{"title.text": f"{escape(s)}: {h}"} for s, h in zip(titles, heads, strict=True)])
        fig.update_layout(title={"text": f"{escape(titles[0])}: {heads[0]}"},
                          updatemenus=[{**menu, "type": "buttons", "direction": "right"}])
        page.heading(f"instance {i}")
        page.figure(fig)
    return page.write(path)


def baseline_html(explanations, path: str | os.PathLike, *, model=None, index: int = 0,
                  title: str | None = None) -> Path:
    """One image's attributions with every baseline, a switcher over them (the baseline grid).

    Each baseline's button shows its attribution over the image (opacity slider as in the
    image view) and titles it with the completeness error ``sum(a) - (f_t(x) - f_t(b))``
    and, with ``model``, ``p(target | baseline)``; a table lists them all (as
    :func:`~xai_suite.viz.plot_baseline_grid`).

    Parameters
    ----------
    explanations : sequence of Explanation
        Explanations of the same images for the same targets, one per baseline.
    path : str or os.PathLike
    model : optional
        The explained model, called on the input and the recorded baselines for the
        probabilities (softmax of a torch model's outputs, else the outputs).
    index : int
        Which image.
    title : str, optional

    Returns
    -------
    pathlib.Path
    """
    import pandas as pd

    exps, img, t = _one_image(explanations, index, "baseline_html")
    prob = None if model is None else _probability(model)
    rows = []
    for e in exps:
        d = None if e.convergence_delta is None else float(e.convergence_delta[index])
        pb = None if prob is None or e.baselines is None else prob(e.baselines[:, index], t)
        rows.append({"baseline": _baseline_label(e),
                     "completeness error": "n/a" if d is None else f"{d:+.3g}",
                     "p(target | baseline)": "n/a" if pb is None else f"{pb:.3f}"})
    table = pd.DataFrame(rows)
    p_input = "" if prob is None else f", p(target | input) = {prob(img[None], t):.3f}"
    page = Page(title or f"{exps[0].method}: one image, every baseline")
    page.paragraph(f"Image {index}, target {t}{p_input}; method {exps[0].method}, one explanation per "
                   "baseline (the buttons; the table below).")
    fig = _image_figure(*img.shape[1:], overlays=list(range(1, 2 * len(exps), 2)))
    heads = [escape(f"baseline {r['baseline']}: completeness error {r['completeness error']}, "
                    f"p(target | baseline) {r['p(target | baseline)']}") for r in rows]
    for m, e in enumerate(exps):
        _add_image(fig, img, e.attributions[index], m == 0)
    menu = _picker([escape(r["baseline"]) for r in rows], _masks(len(exps), 2),
                   [{"title.text": h} for h in heads])
    fig.update_layout(title={"text": heads[0], "font": {"size": 13}},
                      updatemenus=[{**menu, "type": "buttons", "direction": "right"}])
    page.figure(fig)
    page.table(table, caption="completeness error sum(a) - (f(x) - f(baseline)) and p(target | baseline)")
    return page.write(path)
