"""HTML views (Plotly) of counterfactuals, concept explanations and benchmark reports.

Each result's ``to_html`` calls a ``*_view`` function here to fill a
:class:`~xai_suite.viz.html.Page`; :func:`~xai_suite.bench.report.write_report` uses the
figure builders. Instances are picked with a Plotly dropdown (no page script); every user
string (method, feature, concept and class names) is escaped, in figures too.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import _CHANGE_STYLE, _CHANGED, _change_bars, _changed_runs, _counterfactual_status, _value_text
from .html import escape, plotly

if TYPE_CHECKING:
    from ..concepts.explanation import ConceptExplanation
    from ..explanation import CounterfactualExplanation
    from .html import Page



def _picker(fig, groups: list[list[int]], layouts: list[dict]) -> None:
    """Show the traces of one instance at a time: ``groups[i]`` are instance ``i``'s trace
    indices, ``layouts[i]`` its layout (title, shapes); a dropdown "instance i" switches."""
    if not groups:
        raise ValueError("nothing to show: the result holds no instance")
    n = len(fig.data)
    buttons = []
    for i, (group, layout) in enumerate(zip(groups, layouts, strict=True)):
        visible = np.zeros(n, dtype=bool)
        visible[group] = True
        buttons.append({"label": f"instance {i}", "method": "update",
                        "args": [{"visible": visible.tolist()}, layout]})
    for k, trace in enumerate(fig.data):
        trace.visible = k in groups[0]
    fig.update_layout(**layouts[0], margin={"t": 130}, updatemenus=[{
        "buttons": buttons, "active": 0, "direction": "down", "x": 0.0, "xanchor": "left", "y": 1.0,
        "yanchor": "bottom", "pad": {"b": 30}, "showactive": True}])


def _title(text: str) -> dict:
    """A figure title at the top left, above the instance picker."""
    return {"text": text, "font": {"size": 13}, "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top",
            "yref": "container"}


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as text, floats of 4 significant digits (labels and integers as they are)."""
    return frame.map(_value_text)


def counterfactual_view(exp: CounterfactualExplanation, page: Page, *, channel_names=None,
                        feature_names=None) -> None:
    """Fill ``page`` with counterfactuals, an instance picker and their metrics.

    Time series: per instance the input and the counterfactual overlaid per channel, the
    changed time steps shaded (the rule of :func:`~xai_suite.viz.plot_counterfactual`).
    Tabular: the ``old -> new`` table of every changed feature (labels decoded) and per
    instance a bar per changed feature, the change as a fraction of its training range.
    Both: validity, new class, proximity, sparsity and plausibility per instance.

    Parameters
    ----------
    exp : CounterfactualExplanation
    page : Page
    channel_names : list of str, optional
        Time series: one name per channel.
    feature_names : list of str, optional
        Tabular: display names, one per feature (default ``exp.feature_names``).
    """
    if exp.modality == "timeseries":
        _series_view(exp, page, channel_names)
    elif exp.modality == "tabular":
        _tabular_view(exp, page, feature_names)
    else:
        raise ValueError(f"no counterfactual HTML view for {exp.modality} inputs")
    page.heading("Metrics per instance")
    page.paragraph("valid: the model predicts the target class for the counterfactual; l1, l2"
                   + (", dtw" if "dtw" in exp.metrics else "") + ": distance to the input; changed: "
                   "elements changed; plausibility: k-NN distance ratio to the target class's training "
                   "instances (about 1 is typical).", note=True)
    page.table(_formatted(exp.to_frame()))


def _proximity(exp: CounterfactualExplanation, i: int) -> str:
    return ", ".join(f"{k} {_value_text(float(exp.metrics[k][i]))}" for k in ("l1", "l2", "dtw")
                     if k in exp.metrics)


def _series_view(exp: CounterfactualExplanation, page: Page, channel_names) -> None:
    from plotly.subplots import make_subplots

    go = plotly()
    n, c, _ = exp.inputs.shape
    names = list(channel_names or [f"channel {k}" for k in range(c)])
    if len(names) != c:
        raise ValueError(f"channel_names has {len(names)} names for {c} channels")
    fig = make_subplots(rows=c, cols=1, shared_xaxes=True, vertical_spacing=0.04)
    groups, layouts = [], []
    for i in range(n):
        group = []
        for k in range(c):
            for series, label, colour in ((exp.inputs[i, k], "input", "#595959"),
                                          (exp.counterfactuals[i, k], "counterfactual", "#c0392b")):
                fig.add_trace(go.Scatter(y=series, mode="lines", name=label, legendgroup=label,
                                         showlegend=k == 0, line={"color": colour, "width": 1.5}),
                              row=k + 1, col=1)
                group.append(len(fig.data) - 1)
        shapes = [{"type": "rect", "xref": f"x{k + 1 if k else ''}", "yref": f"y{k + 1 if k else ''} domain",
                   "x0": a, "x1": b, "y0": 0, "y1": 1, "fillcolor": _CHANGED, "opacity": 0.3,
                   "line": {"width": 0}, "layer": "below"}
                  for k, runs in enumerate(_changed_runs(exp.inputs[i], exp.counterfactuals[i]))
                  for a, b in runs]
        title = (f"{escape(exp.method)}: instance {i}, {_counterfactual_status(exp, i)}; "
                 f"{_proximity(exp, i)} (shaded: changed time steps)")
        groups.append(group)
        layouts.append({"title": _title(title), "shapes": shapes})
    for k, name in enumerate(names):
        fig.update_yaxes(title_text=escape(name), row=k + 1, col=1)
    fig.update_xaxes(title_text="time", row=c, col=1)
    fig.update_layout(height=190 + 180 * c)
    _picker(fig, groups, layouts)
    page.figure(fig)


def _tabular_view(exp: CounterfactualExplanation, page: Page, feature_names) -> None:
    go = plotly()
    groups, layouts, xlabel = [], [], ""
    fig = go.Figure()
    for i in range(len(exp)):
        table, names, delta, categorical, xlabel = _change_bars(exp, i, feature_names)
        labels = np.asarray([escape(f) for f in names], dtype=object)
        text = np.asarray([escape(f"{_value_text(o)} -> {_value_text(v)}")
                           for o, v in zip(table.old, table.new, strict=True)], dtype=object)
        num, cat = ~categorical, categorical
        colour = [_CHANGE_STYLE["increase" if d > 0 else "decrease"] for d in delta[num]]
        fig.add_trace(go.Bar(x=delta[num], y=labels[num], orientation="h", marker_color=colour,
                             text=text[num], textposition="outside", cliponaxis=False, showlegend=False,
                             hovertemplate="%{y}: %{text}<extra></extra>"))
        fig.add_trace(go.Scatter(x=np.zeros(int(cat.sum())), y=labels[cat], text=text[cat],
                                 mode="markers+text", textposition="middle right", showlegend=False,
                                 marker={"symbol": "diamond", "size": 11,
                                         "color": _CHANGE_STYLE["category changed"]},
                                 hovertemplate="%{y}: %{text}<extra></extra>"))
        groups.append([2 * i, 2 * i + 1])
        title = (f"{escape(exp.method)}: instance {i}, {_counterfactual_status(exp, i)}; {_proximity(exp, i)}"
                 + ("" if len(names) else "; no feature changed"))
        layouts.append({"title": _title(title)})
    all_names = list(feature_names or exp.feature_names or [f"x{j}" for j in range(exp.inputs.shape[1])])
    fig.update_yaxes(categoryorder="array", categoryarray=[escape(f) for f in all_names][::-1],
                     range=[-0.5, len(all_names) - 0.5])
    fig.update_xaxes(title_text=f"{xlabel} (red: increase, blue: decrease, diamond: category changed)",
                     zeroline=True, zerolinecolor="black")
    lim = max([0.05, *(abs(float(x)) for trace in fig.data[::2] for x in trace.x)])
    fig.update_xaxes(range=[-2.2 * lim, 2.2 * lim])  # one scale for every instance, room for the labels
    fig.update_layout(height=250 + 28 * len(all_names))
    _picker(fig, groups, layouts)
    page.heading("Changes")
    page.paragraph("Every changed feature of every counterfactual, in the units of the inputs "
                   "(categories by their labels).", note=True)
    page.table(_formatted(exp.changes()))
    page.heading("Changes per instance")
    page.figure(fig)


def concept_view(exp: ConceptExplanation, page: Page) -> None:
    """Fill ``page`` with each instance's concept activations and attributions (a bar per
    concept) and its task prediction, an instance picker, and a table of the predictions.

    Parameters
    ----------
    exp : ConceptExplanation
    page : Page
    """
    from plotly.subplots import make_subplots

    go = plotly()
    names = [escape(c) for c in exp.concept_names]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("concept activation",
                                                        "attribution to the explained task output"))
    predicted = exp.predictions.argmax(1)
    groups, layouts = [], []
    for i in range(len(exp)):
        fig.add_trace(go.Bar(x=names, y=exp.concepts[i], marker_color="#7f8c8d", showlegend=False,
                             hovertemplate="%{x}: %{y:.3g}<extra>activation</extra>"), row=1, col=1)
        a = exp.attributions[i]
        fig.add_trace(go.Bar(x=names, y=a, showlegend=False,
                             marker_color=[_CHANGE_STYLE["increase" if v > 0 else "decrease"] for v in a],
                             hovertemplate="%{x}: %{y:.3g}<extra>attribution</extra>"), row=1, col=2)
        groups.append([2 * i, 2 * i + 1])
        title = (f"{escape(exp.method)}: instance {i}, task prediction class {predicted[i]} "
                 f"(output {_value_text(float(exp.predictions[i, predicted[i]]))}); explained class "
                 f"{int(exp.target[i])} (output {_value_text(float(exp.predictions[i, exp.target[i]]))})")
        layouts.append({"title": _title(title)})
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_layout(height=480)
    _picker(fig, groups, layouts)
    page.figure(fig)
    page.heading("Task predictions")
    frame = pd.DataFrame({"instance": np.arange(len(exp)), "predicted class": predicted,
                          "explained class": exp.target,
                          **{f"output {k}": exp.predictions[:, k] for k in range(exp.predictions.shape[1])},
                          "top concept": [exp.top_concepts(i, 1)[0] for i in range(len(exp))]})
    if exp.convergence_delta is not None:
        frame["convergence delta"] = exp.convergence_delta
    page.table(_formatted(frame))


def heatmap_figure(means: pd.DataFrame, score: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame,
                   labels: list[str], *, title: str):
    """Method x metric heat map of a benchmark section, each interval on hover.

    Parameters
    ----------
    means, score, low, high : pandas.DataFrame, shape (methods, metrics)
        Means, colour scores in [0, 1] (1 the best method on that metric), interval bounds.
    labels : list of str
        Column labels (metric names with their direction).
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from ..bench.report import _fmt

    go = plotly()
    cells = [[escape(f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]") for m, lo, hi in zip(*rows, strict=True)]
             for rows in zip(means.to_numpy(float), low.to_numpy(float), high.to_numpy(float), strict=True)]
    text = [[_fmt(m) for m in row] for row in means.to_numpy(float)]
    fig = go.Figure(go.Heatmap(
        z=score.to_numpy(float), x=[escape(m) for m in labels], y=[escape(i) for i in means.index],
        zmin=0, zmax=1, colorscale="Viridis", text=text, texttemplate="%{text}", customdata=cells,
        colorbar={"title": {"text": "best = 1"}},
        hovertemplate="%{y}<br>%{x}: %{customdata}<extra></extra>"))
    fig.update_layout(title={"text": f"{escape(title)}: mean [interval]; colour per metric, best = yellow",
                             "font": {"size": 13}},
                      height=200 + 40 * len(means), yaxis={"autorange": "reversed"})
    return fig


def curves_figure(curves: pd.DataFrame, *, title: str, xlabel: str, ylabel: str, confidence: float):
    """Mean deletion / insertion curve of every method with its pointwise band.

    Parameters
    ----------
    curves : pandas.DataFrame
        One metric's rows of :func:`~xai_suite.bench.report.curve_summary` with a ``method``
        column (explainer | baseline).
    title, xlabel, ylabel : str
    confidence : float

    Returns
    -------
    plotly.graph_objects.Figure
        Per method a filled band and its mean line in one legend group (click the legend to
        hide or isolate a method).
    """
    go = plotly()
    fig = go.Figure()
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    for k, method in enumerate(sorted(curves.method.unique())):
        c = curves[curves.method == method].sort_values("step")
        colour, name = colours[k % len(colours)], escape(method)
        x = c.fraction.to_numpy(float)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([c.high.to_numpy(float), c.low.to_numpy(float)[::-1]]),
                                 fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0},
                                 legendgroup=name, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=c["mean"], mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": colour}, customdata=np.stack([c.low, c.high], 1),
                                 hovertemplate="%{fullData.name}<br>%{x:.2f}: %{y:.3g} "
                                               "[%{customdata[0]:.3g}, %{customdata[1]:.3g}]<extra></extra>"))
    fig.update_layout(title={"text": f"{escape(title)}: mean curve and {confidence:.0%} bootstrap band",
                             "font": {"size": 13}},
                      xaxis_title=escape(xlabel), height=420,
                      yaxis_title={"text": "<br>".join(escape(t) for t in textwrap.wrap(ylabel, 50)),
                                   "font": {"size": 11}})
    return fig
