"""The explorer's language-model page: a prompt's logit lens (layer x position); a clicked cell
selects a residual stream (hook, position), where the page injects a token's embedding or
patches in a second prompt's activation, and shows the new output distribution and lens."""

from __future__ import annotations

import numpy as np

from ..viz.html import escape


class LanguageExplorer:
    """The page for causal language models (``hf_causal_lm``).

    Parameters
    ----------
    source : xai_suite.explore.Source
        Its model is an ``xai_suite_llm.LanguageModel``; its first prompt (if any) is the
        page's first prompt.
    prompt : str, optional
        The first prompt shown (default: the source's first, else ``"The"``).
    top_k : int
        Tokens shown in the output distribution and kept by the lens.
    """

    def __init__(self, source, *, prompt: str | None = None, top_k: int = 5):
        from xai_suite_llm import LogitLens
        from xai_suite_llm.models import check_language_model, layer_hooks

        self.source = source
        self.lm = check_language_model(source.model, "xai-suite explore")
        self.lens = LogitLens(self.lm, top_k=top_k)
        # lens rows: "embed" is the stream entering layer 0, row "l" the stream leaving layer l
        self.layers, self.hooks = layer_hooks(self.lm, "resid_post", True)
        first = str(source.X[0]) if source.X is not None and len(source.X) else "The"
        self.prompt = prompt if prompt is not None else first

    # -- the computations the callbacks run ------------------------------------------------
    def interventions(self, specs: list[dict]):
        """``Intervention`` objects from the page's specs ``{"kind": "inject" | "patch", "layer",
        "position", "token" | "source"}``."""
        from xai_suite_llm.intervention import activation_intervention, embedding_intervention

        out = []
        for s in specs or []:
            hook = self.hook_of(s["layer"])
            if s["kind"] == "inject":
                out.append(embedding_intervention(self.lm, hook, int(s["position"]), s["token"]))
            elif s["kind"] == "patch":
                out.append(activation_intervention(self.lm, s["source"], hook, int(s["position"])))
            else:
                raise ValueError(f"intervention kind must be 'inject' or 'patch'; got {s['kind']!r}")
        return out

    def hook_of(self, layer: str) -> str:
        """The hook point a lens row reads (``"embed"`` -> ``blocks.0.hook_resid_pre``)."""
        if str(layer) not in self.layers:
            raise ValueError(f"layer must be one of {', '.join(self.layers)}; got {layer!r}")
        return self.hooks[self.layers.index(str(layer))]

    def run(self, prompt: str, specs: list[dict] | None = None):
        """The lens of ``prompt`` under the interventions ``specs``; the model's output is its
        last row's last position (the lens of the last layer is the model's own softmax)."""
        from xai_suite_llm.intervention import intervention_hooks

        return self.lens.explain(prompt, hooks=intervention_hooks(self.interventions(specs)))

    def update(self, prompt: str, specs: list[dict] | None, progress=None) -> tuple:
        """The callback's body: ``(lens figure, output figure, answer text, interventions
        text, error text)``; an error leaves the figures empty and says what went wrong."""
        try:
            if progress:
                progress(0, 2)
            res = self.run(prompt, specs)
            if progress:
                progress(1, 2)
            figs = self.lens_figure(res), self.output_figure(res)
            if progress:
                progress(2, 2)
        except Exception as exc:  # any failure (a user model, an explainer, bad input) is shown
            return self.empty(), self.empty(), "", "", f"{type(exc).__name__}: {exc}"
        answer = str(res.top_tokens[-1, -1, 0])
        applied = "; ".join(f"{s['kind']} at layer {s['layer']}, position {s['position']}: "
                            + (repr(s["token"]) if s["kind"] == "inject" else repr(s["source"]))
                            for s in specs or []) or "none"
        return (*figs, f"{answer} (p = {res.top_probs[-1, -1, 0]:.3f})", f"interventions: {applied}", "")

    @staticmethod
    def select(click: dict | None) -> tuple:
        """``(layer, position)`` of a clicked lens cell (``None``s without a click)."""
        if not click or not click.get("points"):
            return None, None
        point = click["points"][0]
        return str(point["y"]), int(point["x"])

    def add(self, specs: list[dict] | None, action: str, layer, position, token: str | None,
            source: str | None) -> list[dict]:
        """The interventions after a button: ``inject`` or ``patch`` appends one at the selected
        cell (checked: a bad token or prompt raises a ``ValueError``), ``clear`` removes them all."""
        if action == "clear":
            return []
        if layer in (None, "") or position in (None, ""):
            raise ValueError("select a cell of the lens (click it) first")
        value = token if action == "inject" else source
        if not isinstance(value, str) or not value.strip():
            what = "token to inject" if action == "inject" else "prompt to patch from"
            raise ValueError(f"type the {what}")
        spec = {"kind": action, "layer": str(layer), "position": int(position),
                ("token" if action == "inject" else "source"): value}
        self.interventions([spec])
        return [*(specs or []), spec]

    # -- figures ---------------------------------------------------------------------------
    @staticmethod
    def empty():
        from ..viz.html import plotly

        return plotly().Figure(layout={"height": 300})

    def lens_figure(self, res):
        """Heat map: top-1 probability per (layer, position), the top-1 token written in it."""
        from ..viz.html import plotly

        go = plotly()
        top = np.vectorize(escape, otypes=[object])(res.top_tokens[:, :, 0])
        ticks = [escape(f"{i}:{t}") for i, t in enumerate(res.tokens)]
        fig = go.Figure(go.Heatmap(
            z=res.top_probs[:, :, 0], x=list(range(len(res.tokens))), y=list(res.layers), text=top,
            texttemplate="%{text}", zmin=0, zmax=1, colorscale="Viridis", colorbar={"title": "top-1 p"},
            hovertemplate="layer %{y}, position %{x}<br>top-1 %{text}: %{z:.3f}<extra></extra>"))
        fig.update_xaxes(tickvals=list(range(len(ticks))), ticktext=ticks, title="position")
        fig.update_yaxes(type="category", title="layer (embed: entering layer 0)")
        fig.update_layout(title="logit lens (click a cell to select it)", height=320,
                          margin={"t": 40, "l": 60, "r": 20, "b": 80})
        return fig

    def output_figure(self, res):
        """Bars: the model's top-k next tokens and their probabilities."""
        from ..viz.html import plotly

        go = plotly()
        tokens = [escape(repr(str(t))) for t in res.top_tokens[-1, -1]]
        fig = go.Figure(go.Bar(x=tokens, y=res.top_probs[-1, -1]))
        fig.update_layout(title="output distribution (top-k)", height=260, yaxis={"range": [0, 1]},
                          margin={"t": 40, "l": 50, "r": 20, "b": 40})
        return fig

    # -- the page --------------------------------------------------------------------------
    def layout(self):
        from . import dash

        d = dash()
        html, dcc = d.html, d.dcc
        box = {"marginRight": "0.5em"}
        return html.Div([
            html.H2(f"xai-suite explore: {self.source.name} ({self.lm!r})"),
            html.Div([dcc.Input(id="prompt", value=self.prompt, debounce=True, style={"width": "70%"}),
                      html.Progress(id="progress", value="0", max="2", style={"marginLeft": "1em"}),
                      html.Span(id="status", style={"marginLeft": "1em"})]),
            html.Div(id="error", style={"color": "#b00020", "whiteSpace": "pre-wrap"}),
            html.Div(["answer: ", html.B(id="answer")]),
            dcc.Graph(id="lens", figure=self.empty()),
            html.Div(["selected: layer ", html.B(id="sel-layer"), ", position ", html.B(id="sel-position")]),
            html.Div([
                dcc.Input(id="token", placeholder="token to inject", style=box),
                html.Button("inject", id="inject", style=box),
                dcc.Input(id="source", placeholder="prompt to patch from", style={"width": "40%", **box}),
                html.Button("patch", id="patch", style=box),
                html.Button("clear", id="clear"),
            ]),
            html.Div(id="applied"),
            dcc.Graph(id="output", figure=self.empty()),
            dcc.Store(id="interventions", data=[]),
        ], style={"fontFamily": "sans-serif", "margin": "1em"})

    def register(self, app) -> None:
        """The page's callbacks: the lens run (a background one), the cell selection and the
        intervention buttons."""
        from . import dash

        d = dash()
        Input, Output, State = d.Input, d.Output, d.State

        @app.callback(
            Output("lens", "figure"), Output("output", "figure"), Output("answer", "children"),
            Output("applied", "children"), Output("error", "children", allow_duplicate=True),
            Input("prompt", "value"), Input("interventions", "data"),
            background=True, interval=250, prevent_initial_call="initial_duplicate",
            running=[(Output("status", "children"), "computing...", "")],
            progress=[Output("progress", "value"), Output("progress", "max")],
        )
        def _run(set_progress, prompt, specs):
            return self.update(prompt, specs, progress=lambda step, of: set_progress((str(step), str(of))))

        @app.callback(Output("sel-layer", "children"), Output("sel-position", "children"),
                      Input("lens", "clickData"))
        def _select(click):
            return self.select(click)

        @app.callback(
            Output("interventions", "data"), Output("error", "children", allow_duplicate=True),
            Input("inject", "n_clicks"), Input("patch", "n_clicks"), Input("clear", "n_clicks"),
            State("interventions", "data"), State("sel-layer", "children"),
            State("sel-position", "children"), State("token", "value"), State("source", "value"),
            prevent_initial_call=True,
        )
        def _intervene(_inject, _patch, _clear, specs, layer, position, token, source):
            try:
                return self.add(specs, d.ctx.triggered_id, layer, position, token, source), ""
            except (ValueError, TypeError) as exc:
                return d.no_update, f"{type(exc).__name__}: {exc}"
