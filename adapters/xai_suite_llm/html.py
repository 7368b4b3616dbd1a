"""HTML views of the language-model results (see :mod:`xai_suite.viz.html`).

- :class:`~xai_suite_llm.TextExplanation`: the prompt with each unit shaded by its
  attribution (:func:`xai_suite.viz.text.render_text_html`: colour key, values shown), a
  heat map target token x unit when it holds ``token_attributions`` (``per_token=True``),
  and a sortable table of the units; :func:`text_levels_html` puts several levels (token,
  word, sentence) of one prompt on one page, one level shown at a time.
- :class:`~xai_suite_llm.LogitLensResult` (logit and tuned lens): a heat map layer x position
  of the target's probability, its rank, the entropy or the top-1 token's probability (picked
  from a dropdown); the hover gives the top-k tokens with their probabilities and the target's.
- :class:`~xai_suite_llm.PatchingResult`: one heat map per site (layer x position, layer x
  head, or (layer, head) x position for heads patched per position), picked from a dropdown;
  the hover gives the normalised effect and the patched logit difference.
- :class:`~xai_suite_llm.ProbingResult`: probe accuracy by layer with its 95% interval as a
  band, the control task's likewise, and chance.
- :class:`~xai_suite_llm.FeatureActivations`: a heat map token x the most active SAE features
  and each token's strongest features; :class:`~xai_suite_llm.TopContexts`: a bar per context
  (the token in brackets within its window) and the sortable table.

Every token, prompt and label goes through :func:`~xai_suite.viz.html.escape`, in the page
and inside the figures (Plotly renders a subset of HTML in labels and hover text).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xai_suite.viz.html import Page, escape, plotly
from xai_suite.viz.text import render_text_html


def _token(text: str) -> str:
    """A token for a figure, escaped; a blank one as its ``repr`` so it stays visible."""
    return escape(text if text.strip() else repr(text))


# -- text attributions ------------------------------------------------------------------------
def text_summary(exp) -> str:
    """One line on what a :class:`~xai_suite_llm.TextExplanation` explains (plain text)."""
    vs = "" if exp.contrast is None else f" vs {exp.contrast!r}"
    return (f"target: {exp.target!r}{vs}; {exp.params.get('scalariser', 'score')} = {exp.score:.6g}"
            f" ({exp.method}, {exp.level} level)")


def text_view(exp, page: Page) -> None:
    """Fill ``page`` with a text explanation: summary, the shaded prompt, the units' table."""
    page.paragraph(text_summary(exp))
    if exp.convergence_delta is not None:
        page.paragraph(f"completeness error (sum of attributions - score gap): "
                       f"{exp.convergence_delta:.3g}", note=True)
    page.markup(render_text_html(exp.prompt, exp.spans, exp.attributions))
    if exp.token_attributions is not None:
        page.figure(token_matrix_figure(exp))
    page.table(exp.to_frame()[["unit", "start", "end", "attribution"]], caption="units (click to sort)")


def token_matrix_figure(exp):
    """Heat map target token x unit of a :class:`~xai_suite_llm.TextExplanation`'s
    ``token_attributions`` on a symmetric scale (red positive); the hover gives the target
    token, its score, the unit and the attribution.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    go = plotly()
    m = exp.token_attributions
    tokens = [_token(t) for t in (exp.target_tokens or [str(int(i)) for i in exp.target_ids])]
    units = [_token(u) for u in exp.units]
    lim = float(np.abs(m).max()) or 1.0
    score = escape(str(exp.params.get("scalariser", "score")))
    hover = [[f"target token {j}: {tokens[j]} ({score} {exp.token_scores[j]:.4g})<br>unit {i}: {units[i]} "
              f"[{exp.spans[i][0]}:{exp.spans[i][1]}]<br>attribution: {m[j, i]:.4g}"
              for i in range(m.shape[1])] for j in range(m.shape[0])]
    fig = go.Figure(go.Heatmap(z=m, x=np.arange(m.shape[1]), y=np.arange(m.shape[0]), zmin=-lim, zmax=lim,
                               zmid=0.0, colorscale="RdBu", reversescale=True, hovertext=hover,
                               hoverinfo="text", colorbar={"title": {"text": "attribution"}}))
    fig.update_layout(
        title={"text": f"attribution of each target token's {score} to the prompt's units"},
        height=max(320, 32 * m.shape[0] + 220),
        xaxis={"title": {"text": "prompt unit"}, "tickvals": list(range(m.shape[1])), "ticktext": units},
        yaxis={"title": {"text": "target token"}, "tickvals": list(range(m.shape[0])), "ticktext": tokens,
               "autorange": "reversed"})
    return fig


def text_levels_html(explanations: Sequence, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """One page with several explanations of one prompt (say its token, word and sentence
    levels), one shown at a time: opening a level's section closes the others.

    Parameters
    ----------
    explanations : sequence of TextExplanation
        Explanations of the same prompt and target, in the order shown (the first is open).
    path : str or os.PathLike
        Where the page is written.
    title : str, optional
        The page's title (default: the prompt's first 60 characters).

    Returns
    -------
    pathlib.Path
        The page written (self-contained, works offline; no script needed to switch).
    """
    from .attribution import TextExplanation

    exps = list(explanations)
    if not exps or not all(isinstance(e, TextExplanation) for e in exps):
        raise TypeError("explanations must be a non-empty sequence of TextExplanation")
    first = exps[0]
    for e in exps[1:]:
        if (e.prompt, e.target) != (first.prompt, first.target):
            raise ValueError(f"every explanation must explain the same prompt and target; got "
                             f"{(first.prompt, first.target)!r} and {(e.prompt, e.target)!r}")
    page = Page(title or f"levels of {first.prompt[:60]!r}")
    page.paragraph("Open a level to show it (one at a time).", note=True)
    for i, e in enumerate(exps):
        body = render_text_html(e.prompt, e.spans, e.attributions, subtitle=text_summary(e))
        page.markup(f'<details class="xai-level" name="xai-levels"{" open" if i == 0 else ""}>'
                    f'<summary>{escape(f"{e.level}: {e.method}")}</summary>{body}</details>')
    return page.write(path)


# -- logit lens -------------------------------------------------------------------------------
def logit_lens_figure(result):
    """Heat maps layer x position of a :class:`~xai_suite_llm.LogitLensResult` (logit or tuned
    lens), one per view, picked from a dropdown: trace 0 the target's probability (shown),
    1 its rank (coloured by ``log10(1 + rank)``, 0 = top), 2 the entropy in nats, 3 the top-1
    token's probability. Each cell is labelled with its top-1 token; its hover lists the
    target's probability and rank, the entropy and the top-k tokens with their probabilities.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    go = plotly()
    n_layers, n_pos, k = result.top_probs.shape
    tokens, layers, target = [_token(t) for t in result.tokens], [escape(x) for x in result.layers], \
        _token(result.target)
    hover = [[f"layer {layers[i]}, position {t}: {tokens[t]}<br>P({target}) = "
              f"{result.target_probs[i, t]:.4g}, rank {result.target_ranks[i, t]}<br>entropy "
              f"{result.entropy[i, t]:.4g} nats<br>top-{k}:<br>"
              + "<br>".join(f"{j + 1}. {_token(result.top_tokens[i, t, j])}  {result.top_probs[i, t, j]:.4g}"
                            for j in range(k))
              for t in range(n_pos)] for i in range(n_layers)]
    top1 = [[_token(result.top_tokens[i, t, 0]) for t in range(n_pos)] for i in range(n_layers)]
    common = {"x": np.arange(n_pos), "y": np.arange(n_layers), "text": top1, "texttemplate": "%{text}",
              "hovertext": hover, "hoverinfo": "text"}
    rank_z = np.log10(1.0 + result.target_ranks)
    rank_max = max(1.0, float(rank_z.max()))
    ticks = [r for r in (0, 1, 10, 100, 1000, 10_000, 100_000) if np.log10(1.0 + r) <= rank_max]
    views = [  # (dropdown label, title, trace)
        ("target probability", f"P({target}) by layer and position",
         go.Heatmap(z=result.target_probs, zmin=0.0, zmax=1.0, colorscale="Viridis", name=f"P({target})",
                    colorbar={"title": {"text": "probability"}}, **common)),
        ("target rank", f"the rank of {target} (0 = most probable)",
         go.Heatmap(z=rank_z, zmin=0.0, zmax=rank_max, colorscale="Viridis", reversescale=True,
                    name=f"rank of {target}", **common,
                    colorbar={"title": {"text": "rank"}, "ticktext": [str(r) for r in ticks],
                              "tickvals": [float(np.log10(1.0 + r)) for r in ticks]})),
        ("entropy", "the entropy of the lens distribution (nats)",
         go.Heatmap(z=result.entropy, zmin=0.0, zmax=max(float(result.entropy.max()), 1e-6),
                    colorscale="Magma", name="entropy", colorbar={"title": {"text": "nats"}}, **common)),
        ("top-1 probability", "the top-1 token's probability",
         go.Heatmap(z=result.top_probs[:, :, 0], zmin=0.0, zmax=1.0, colorscale="Viridis", name="top-1",
                    colorbar={"title": {"text": "probability"}}, **common)),
    ]
    head = f"{result.lens} lens: "
    fig = go.Figure([trace for *_, trace in views])
    for i, trace in enumerate(fig.data):
        trace.visible = i == 0
    buttons = [{"label": label, "method": "update",
                "args": [{"visible": [j == i for j in range(len(views))]},
                         {"title.text": f"{head}{title} (cells: top-1 token)"}]}
               for i, (label, title, _) in enumerate(views)]
    fig.update_layout(
        title={"text": f"{head}{views[0][1]} (cells: top-1 token)", "x": 0.3},
        height=max(320, 40 * n_layers + 200),
        xaxis={"title": {"text": "position (input token)"}, "tickvals": list(range(n_pos)),
               "ticktext": tokens},
        yaxis={"title": {"text": "layer"}, "tickvals": list(range(n_layers)), "ticktext": layers},
        updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 0, "y": 1.12, "xanchor": "left",
                      "yanchor": "bottom", "showactive": True}],
        margin={"t": 110})
    return fig


def logit_lens_view(result, page: Page) -> None:
    """Fill ``page`` with a logit (or tuned) lens: the tracked token and the heat maps."""
    how = ("each layer's residual stream through its fitted affine translator, then the final norm and "
           "unembedding" if result.lens == "tuned" else
           f"{result.hook_names[-1].split('.hook_')[-1]} of each layer through the final norm "
           "and unembedding")
    page.paragraph(f"{result.lens.capitalize()} lens: {how}. Tracked token: {result.target!r} (id "
                   f"{result.target_id}); top-k = {result.top_probs.shape[-1]}. Pick P(target), its rank, "
                   "the entropy or the top-1 probability in the dropdown; hover a cell for its top-k tokens.")
    page.figure(logit_lens_figure(result))


# -- activation patching ----------------------------------------------------------------------
def patching_figure(result):
    """Heat maps of a :class:`~xai_suite_llm.PatchingResult`, one per site (trace ``i`` is
    ``result.sites[i]``, named ``hook_{site}`` for a layer site and ``{site}`` for a head site;
    a dropdown picks the site shown): layer x position, layer x head (a head site patched at
    every position) or (layer, head) x position (see ``PatchingResult.grid``), coloured by the
    normalised effect on a symmetric scale; the hover gives the hook point, the tokens, the
    effect and the patched logit difference.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from .patching import HEAD_SITES

    go = plotly()
    clean, corrupted = [_token(t) for t in result.tokens], [_token(t) for t in result.corrupted_tokens]
    n_pos = len(clean)
    labels = [c if c == k else f"{c}/{k}" for c, k in zip(clean, corrupted, strict=True)]
    lim = max(1.0, max(float(np.abs(e).max()) for e in result.effects.values()))
    traces, axes = [], []
    for i, site in enumerate(result.sites):
        effects, patched, rows, hooks, columns = result.grid(site)
        n_cols = effects.shape[1]
        if columns == "position":
            where = [f"position {t}<br>clean: {clean[t]}<br>corrupted: {corrupted[t]}" for t in range(n_pos)]
            xaxis = {"title.text": "position (clean/corrupted token)", "xaxis.ticktext": labels}
        else:
            where = [f"head {h}, every position" for h in range(n_cols)]
            xaxis = {"title.text": "head (patched at every position)",
                     "xaxis.ticktext": [str(h) for h in range(n_cols)]}
        prefix = [f"{escape(hook)}" + (f" head {row.split('H')[1]}" if "H" in row else "")
                  for row, hook in zip(rows, hooks, strict=True)]
        hover = [[f"{prefix[r]}, {where[c]}<br>effect: {effects[r, c]:.4g}<br>patched logit "
                  f"difference: {patched[r, c]:.4g}" for c in range(n_cols)] for r in range(len(rows))]
        name = escape(site if site in HEAD_SITES else f"hook_{site}")
        traces.append(go.Heatmap(z=effects, x=np.arange(n_cols), y=np.arange(len(rows)),
                                 zmin=-lim, zmax=lim, zmid=0.0, colorscale="RdBu", reversescale=True,
                                 hovertext=hover, hoverinfo="text", name=name,
                                 visible=i == 0, colorbar={"title": {"text": "normalised effect"}}))
        axes.append({"xaxis.title.text": xaxis["title.text"], "xaxis.tickvals": list(range(n_cols)),
                     "xaxis.ticktext": xaxis["xaxis.ticktext"],
                     "yaxis.title.text": "layer" if rows[0] == "0" else "layer, head",
                     "yaxis.tickvals": list(range(len(rows))), "yaxis.ticktext": rows})
    fig = go.Figure(traces)
    head = "normalised effect of patching"
    buttons = [{"label": trace.name, "method": "update",
                "args": [{"visible": [j == i for j in range(len(result.sites))]},
                         {"title.text": f"{head} {trace.name}", **axes[i]}]}
               for i, trace in enumerate(traces)]
    first = axes[0]
    fig.update_layout(
        title={"text": f"{head} {traces[0].name}", "x": 0.3},
        height=max(440, 40 * max(len(t.y) for t in traces) + 260),
        xaxis={"title": {"text": first["xaxis.title.text"]}, "tickvals": first["xaxis.tickvals"],
               "ticktext": first["xaxis.ticktext"]},
        yaxis={"title": {"text": first["yaxis.title.text"]}, "tickvals": first["yaxis.tickvals"],
               "ticktext": first["yaxis.ticktext"]},
        updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 0, "y": 1.12, "xanchor": "left",
                      "yanchor": "bottom", "showactive": True}],
        margin={"t": 110})
    return fig


def patching_view(result, page: Page) -> None:
    """Fill ``page`` with a patching result: the metric, the heat maps, the two prompts' tokens."""
    page.paragraph(f"Metric: logit({result.answer!r}) - logit({result.wrong!r}) at the last position: "
                   f"clean {result.clean_diff:.4g}, corrupted {result.corrupted_diff:.4g}. Effect = "
                   "(patched - corrupted) / (clean - corrupted): 1 restores the clean run, 0 changes "
                   "nothing. Pick the site in the dropdown.")
    page.figure(patching_figure(result))
    page.table(pd.DataFrame({"position": range(len(result.tokens)), "clean token": result.tokens,
                             "corrupted token": result.corrupted_tokens}), caption="the prompts' tokens")


# -- probing ----------------------------------------------------------------------------------
def probing_figure(result):
    """Accuracy by layer of a :class:`~xai_suite_llm.ProbingResult`: for the probe and the
    control task, a band (its 95% interval, traces named ``... 95% interval``) and a line;
    chance as a dotted line. Click a legend entry to hide or show it.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    go = plotly()
    x = [escape(layer) for layer in result.layers]
    series = [("probe", result.accuracy, result.low, result.high, "31, 119, 180")]
    if result.control_accuracy is not None:
        series.append(("control (permuted labels)", result.control_accuracy, result.control_low,
                       result.control_high, "255, 127, 14"))
    traces = []
    for name, acc, low, high, rgb in series:
        traces.append(go.Scatter(x=x + x[::-1], y=np.concatenate([high, low[::-1]]), mode="lines",
                                 fill="toself", fillcolor=f"rgba({rgb}, 0.2)", line={"width": 0},
                                 hoverinfo="skip", name=f"{name} 95% interval", legendgroup=name))
        traces.append(go.Scatter(
            x=x, y=acc, mode="lines+markers", name=name, legendgroup=name, line={"color": f"rgb({rgb})"},
            hovertext=[f"layer {layer}: {name} accuracy {a:.3f} [{lo:.3f}, {hi:.3f}]"
                       for layer, a, lo, hi in zip(x, acc, low, high, strict=True)], hoverinfo="text"))
    traces.append(go.Scatter(x=x, y=[result.chance] * len(x), mode="lines", name="chance (majority)",
                             line={"color": "gray", "dash": "dot"}, hoverinfo="name"))
    fig = go.Figure(traces)
    site, position = result.params.get("site", ""), result.params.get("position", "")
    fig.update_layout(
        title={"text": escape(f"linear probe at position {position}: cross-validated accuracy "
                              f"({result.n_samples} prompts)")},
        xaxis={"title": {"text": escape(f"layer ({site})")}, "type": "category"},
        yaxis={"title": {"text": "accuracy"}, "range": [0, 1.02]}, height=420)
    return fig


def probing_view(result, page: Page) -> None:
    """Fill ``page`` with a probing result: the settings, the accuracy plot, a table by layer."""
    p = result.params
    page.paragraph(f"{result.n_samples} prompts; site {p.get('site')}, position {p.get('position')}, "
                   f"{p.get('cv')}-fold cross-validation; control task: {p.get('control')}; chance "
                   f"(majority class) {result.chance:.3f}.")
    page.figure(probing_figure(result))

    def cell(a, lo, hi):
        return [f"{v:.3f} [{u:.3f}, {w:.3f}]" for v, u, w in zip(a, lo, hi, strict=True)]

    frame = pd.DataFrame({"layer": result.layers, "hook": result.hook_names,
                          "accuracy [95% CI]": cell(result.accuracy, result.low, result.high)})
    if result.control_accuracy is not None:
        frame["control [95% CI]"] = cell(result.control_accuracy, result.control_low, result.control_high)
        frame["selectivity"] = [f"{s:.3f}" for s in result.selectivity]
    page.table(frame, caption="accuracy by layer (click a header to sort)")


# -- sparse autoencoders ----------------------------------------------------------------------
def sae_features_figure(result, n: int = 20):
    """Heat map token x the ``n`` most active features of a
    :class:`~xai_suite_llm.sae.FeatureActivations`; the hover gives the token and activation.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    go = plotly()
    feats = result.top_features(n)
    tokens = [_token(t) for t in result.tokens]
    z = result.activations[:, feats]
    hover = [[f"position {t}: {tokens[t]}<br>feature {f}: {z[t, j]:.4g}" for j, f in enumerate(feats)]
             for t in range(len(tokens))]
    fig = go.Figure(go.Heatmap(z=z, x=[str(f) for f in feats], y=np.arange(len(tokens)), colorscale="Viridis",
                               hovertext=hover, hoverinfo="text", colorbar={"title": {"text": "activation"}}))
    fig.update_layout(
        title={"text": escape(f"the {len(feats)} most active SAE features at {result.hook_name}")},
        xaxis={"title": {"text": "feature"}, "type": "category"},
        yaxis={"title": {"text": "token"}, "tickvals": list(range(len(tokens))), "ticktext": tokens,
               "autorange": "reversed"},
        height=max(360, 22 * len(tokens) + 160))
    return fig


def sae_features_view(result, page: Page, n: int = 20) -> None:
    """Fill ``page`` with SAE feature activations: the heat map and each token's top features."""
    p = result.params
    page.paragraph(f"Prompt: {result.prompt!r}. SAE at {result.hook_name}: d_sae = {p.get('d_sae')}, "
                   f"activation {p.get('activation')}; {int((result.activations > 0).sum(1).mean())} "
                   "features active per token on average.")
    if result.top_features(n).size == 0:
        page.paragraph("No feature is active on this prompt.", note=True)
        return
    page.figure(sae_features_figure(result, n))
    top = [", ".join(f"{j} ({a[j]:.3g})" for j in np.argsort(-a, kind="stable")[:5] if a[j] > 0)
           for a in result.activations]
    page.table(pd.DataFrame({"position": range(len(result.tokens)), "token": result.tokens,
                             "top features (activation)": top}),
               caption="each token's five strongest features")


def top_contexts_view(result, page: Page) -> None:
    """Fill ``page`` with a feature's top contexts: a bar per context and the table."""
    go = plotly()
    page.paragraph(f"Feature {result.feature} of the SAE at {result.hook_name}: its "
                   f"{len(result.activations)} largest activations over {result.n_prompts} prompts "
                   "(the token in brackets).")
    if len(result.activations) == 0:
        page.paragraph("The feature is active on none of these prompts.", note=True)
        return
    labels = [escape(s) for s in result.labels()]
    fig = go.Figure(go.Bar(x=result.activations, y=list(range(len(labels))), orientation="h",
                           hovertext=[f"prompt {i}, position {t}<br>{lab}<br>activation {a:.4g}"
                                      for i, t, lab, a in zip(result.prompt_index, result.position, labels,
                                                              result.activations, strict=True)],
                           hoverinfo="text"))
    fig.update_layout(title={"text": escape(f"feature {result.feature}: top contexts")},
                      xaxis={"title": {"text": "activation"}},
                      yaxis={"tickvals": list(range(len(labels))), "ticktext": labels,
                             "autorange": "reversed"},
                      height=max(320, 28 * len(labels) + 160), margin={"l": 320})
    page.figure(fig)
    page.table(result.to_frame(), caption="top contexts (click a header to sort)")


# -- direct logit attribution and attention ----------------------------------------------------
def dla_figures(result) -> list:
    """Figures of a :class:`~xai_suite_llm.DirectLogitAttribution`: bars per component (red
    positive), and with heads a heat map layer x head on a symmetric scale; hovers give the
    label and the direct effect.

    Returns
    -------
    list of plotly.graph_objects.Figure
    """
    go = plotly()
    labels, a = [escape(x) for x in result.labels], result.attributions
    metric = escape(result.metric)
    bars = go.Figure(go.Bar(x=labels, y=a, marker={"color": ["#d62728" if v >= 0 else "#1f77b4" for v in a]},
                            hovertext=[f"{lab}: {v:.4g}" for lab, v in zip(labels, a, strict=True)],
                            hoverinfo="text"))
    title = f"direct effect on {metric} per component (sum {result.logit_diff:.4g})"
    bars.update_layout(title={"text": title},
                       xaxis={"title": {"text": "component"}, "type": "category"},
                       yaxis={"title": {"text": "direct effect"}}, height=420)
    figures = [bars]
    if result.head_attributions is not None:
        h = result.head_attributions
        lim = float(np.abs(h).max()) or 1.0
        hover = [[f"layer {layer}, head {head}: {h[layer, head]:.4g}" for head in range(h.shape[1])]
                 for layer in range(h.shape[0])]
        heat = go.Figure(go.Heatmap(z=h, x=np.arange(h.shape[1]), y=np.arange(h.shape[0]), zmin=-lim,
                                    zmax=lim, zmid=0.0, colorscale="RdBu", reversescale=True, hovertext=hover,
                                    hoverinfo="text", colorbar={"title": {"text": "direct effect"}}))
        heat.update_layout(title={"text": f"direct effect on {metric} per head"},
                           xaxis={"title": {"text": "head"}, "tickvals": list(range(h.shape[1]))},
                           yaxis={"title": {"text": "layer"}, "tickvals": list(range(h.shape[0]))},
                           height=max(320, 40 * h.shape[0] + 200))
        figures.append(heat)
    return figures


def dla_view(result, page: Page) -> None:
    """Fill ``page`` with a direct logit attribution: the metric, the figures, the terms' table."""
    page.paragraph(f"Direct logit attribution of {result.metric} = {result.logit_diff:.6g} at position "
                   f"{result.position} ({result.tokens[result.position]!r}): each component through the "
                   f"final norm with its scale frozen at the real stream's ({result.scale:.4g}) and the "
                   "unembedding; the terms sum to the logit difference.")
    for fig in dla_figures(result):
        page.figure(fig)
    page.table(result.to_frame(), caption="every term (click a header to sort)")


def attention_figure(result):
    """The head view of an :class:`~xai_suite_llm.AttentionResult`: one heat map query x key
    per layer and head (trace ``l * H + h``), picked from a dropdown listing every
    ``layer l, head h``; tokens on both axes, the hover gives the two tokens and the weight.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    go = plotly()
    n_layers, n_heads, n, _ = result.pattern.shape
    tokens = [_token(t) for t in result.tokens]
    traces, buttons = [], []
    for layer in range(n_layers):
        for head in range(n_heads):
            p = result.pattern[layer, head]
            hover = [[f"layer {layer}, head {head}<br>query {q}: {tokens[q]}<br>key {k}: {tokens[k]}<br>"
                      f"weight {p[q, k]:.4g}" for k in range(n)] for q in range(n)]
            traces.append(go.Heatmap(z=p, x=np.arange(n), y=np.arange(n), zmin=0.0, zmax=1.0,
                                     colorscale="Blues", hovertext=hover, hoverinfo="text",
                                     name=f"L{layer}H{head}", visible=not traces,
                                     colorbar={"title": {"text": "weight"}}))
    for i, trace in enumerate(traces):
        layer, head = divmod(i, n_heads)
        buttons.append({"label": f"layer {layer}, head {head}", "method": "update",
                        "args": [{"visible": [j == i for j in range(len(traces))]},
                                 {"title.text": f"attention of layer {layer}, head {head}"}]})
        trace.name = escape(trace.name)
    fig = go.Figure(traces)
    axis = {"tickvals": list(range(n)), "ticktext": tokens}
    fig.update_layout(
        title={"text": "attention of layer 0, head 0", "x": 0.35},
        height=max(420, 24 * n + 240), width=max(520, 24 * n + 300),
        xaxis={"title": {"text": "key (attended to)"}, **axis},
        yaxis={"title": {"text": "query"}, "autorange": "reversed", **axis},
        updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 0, "y": 1.12, "xanchor": "left",
                      "yanchor": "bottom", "showactive": True}],
        margin={"t": 110})
    return fig


def attention_view(result, page: Page) -> None:
    """Fill ``page`` with attention patterns: the head view and each head's strongest edge."""
    n_layers, n_heads, n, _ = result.pattern.shape
    page.paragraph(f"{n_layers} layers x {n_heads} heads on {n} tokens. Pick a layer and head in the "
                   "dropdown; row q is where the query at position q attends (each row sums to 1).")
    page.figure(attention_figure(result))
    last = result.pattern[:, :, -1]  # (L, H, T): where the last position attends
    top = last.argmax(-1)
    page.table(pd.DataFrame({"layer": np.repeat(np.arange(n_layers), n_heads),
                             "head": np.tile(np.arange(n_heads), n_layers),
                             "last position attends most to": [f"{k}: {result.tokens[k]}"
                                                               for k in top.reshape(-1)],
                             "weight": [f"{w:.4g}" for w in last.max(-1).reshape(-1)]}),
               caption="where each head's last position attends most")
