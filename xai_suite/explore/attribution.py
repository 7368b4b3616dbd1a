"""The explorer's attribution page: instance, explainer and baseline pickers, the attribution
recomputed on every change, with its time and completeness error."""

from __future__ import annotations

import contextlib
import importlib
import time

import numpy as np

from ..viz.html import escape

#: Families whose explainers return attributions (the page's choices).
ATTRIBUTION_FAMILIES = ("gradient", "perturbation", "surrogate", "propagation")
#: The first of these the model takes is selected first (else the first listed).
DEFAULT_EXPLAINERS = ("captum:integrated_gradients", "native:integrated_gradients", "native:kernel_shap",
                      "captum:feature_ablation")
#: Shown in the baseline picker for explainers that take none.
NO_BASELINE = "(default)"


class AttributionExplorer:
    """The page for array models (tabular, time series, images).

    Parameters
    ----------
    source : xai_suite.explore.Source
    random_state : int
        Given to stochastic explainers.
    """

    def __init__(self, source, *, random_state: int = 0):
        from ..modeling import model_kind
        from ..registry import explainer_info, list_explainers

        self.source, self.random_state = source, random_state
        self.kind = model_kind(source.model)
        df = list_explainers(modality=source.modality, model_kind=self.kind)
        self.explainers = [q for q, fam in zip(df.qualified_name, df.family, strict=True)
                           if fam in ATTRIBUTION_FAMILIES]
        if not self.explainers:
            raise ValueError(f"no attribution explainer is available for {source.modality} models of "
                             f"kind {self.kind}")
        self.default = next((q for q in DEFAULT_EXPLAINERS if q in self.explainers), self.explainers[0])
        # the first explainer's backend imported here, once, not in every worker (and timed)
        with contextlib.suppress(ImportError):  # a broken backend says so when it is chosen
            for module in explainer_info(self.default).requires:
                importlib.import_module(module)
        from ..baselines import list_baselines

        self.baselines = [NO_BASELINE, *list_baselines(source.modality)]
        self._fitted: dict = {}  # (explainer, baseline) -> fitted explainer

    # -- the computation the callback runs -------------------------------------------------
    def explain(self, index: int, explainer: str, baseline: str = NO_BASELINE, progress=None):
        """One instance's explanation and the seconds it took (fitting excluded).

        ``progress(step, of)`` is called as fitting, explaining and drawing start. The time is
        the wall time of the ``explain`` call (in the app, in a background worker process: an
        explainer's first use there includes importing its backend, unless it is the first
        explainer's).
        """
        from ..registry import create_explainer, explainer_info

        X = self.source.X
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < len(X):
            raise ValueError(f"instance must be an index in 0..{len(X) - 1}; got {index!r}")
        info = explainer_info(explainer)
        key = (info.qualified_name, baseline)
        progress = progress or (lambda step, of: None)
        if key not in self._fitted:
            progress(0, 3)
            params = {}
            if baseline != NO_BASELINE:
                if not info.tags.needs_baseline:
                    raise ValueError(f"{info.qualified_name} takes no baseline; choose {NO_BASELINE!r}")
                params["baseline"] = baseline
            if "random_state" in info.params:
                params["random_state"] = self.random_state
            ex = create_explainer(info.qualified_name, self.source.model, **params)
            if ex.requires_fit:
                ex.fit(self.source.X_train, self.source.y_train)
            self._fitted[key] = ex
        progress(1, 3)
        t0 = time.perf_counter()
        exp = self._fitted[key].explain(X[index:index + 1])
        return exp, time.perf_counter() - t0

    def update(self, index, explainer, baseline, progress=None) -> tuple:
        """The callback's body: ``(figure, summary text, error text)``; an error leaves the
        figure empty and says what went wrong."""
        try:
            exp, seconds = self.explain(int(index), explainer, baseline or NO_BASELINE, progress)
            if progress:
                progress(2, 3)
            fig = self.figure(exp, int(index))
            if progress:
                progress(3, 3)
        except Exception as exc:  # any failure (a user model, an explainer, bad input) is shown
            return self.empty_figure(), "", f"{type(exc).__name__}: {exc}"
        delta = exp.convergence_delta
        completeness = ("n/a (the method has no completeness property)" if delta is None
                        else f"{float(np.abs(delta).max()):.3g}")
        target = int(np.asarray(exp.target).reshape(-1)[0])
        label = "" if self.source.y is None else f"; label {self.source.y[int(index)]}"
        text = f"{exp.method}: {seconds:.3f} s; completeness error {completeness}; target {target}{label}"
        return fig, text, ""

    # -- figures ---------------------------------------------------------------------------
    @staticmethod
    def empty_figure():
        from ..viz.html import plotly

        return plotly().Figure(layout={"height": 420})

    def figure(self, exp, index: int):
        """The attribution of one instance: bars per feature (tabular), input and attribution
        per channel (time series), or the attribution summed over channels (images)."""
        from ..viz.html import plotly

        go = plotly()
        attr = np.asarray(exp.attributions)[0]
        title = escape(f"{exp.method}, instance {index}, target {int(np.asarray(exp.target).reshape(-1)[0])}")
        if self.source.modality == "tabular":
            fig = go.Figure(go.Bar(x=[f"f{j}" for j in range(attr.size)], y=attr, name="attribution"))
            fig.update_layout(xaxis_title="feature", yaxis_title="attribution")
        elif self.source.modality == "timeseries":
            from plotly.subplots import make_subplots

            fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("input", "attribution"))
            x = self.source.X[index]
            for c in range(attr.shape[0]):
                fig.add_trace(go.Scatter(y=x[c], name=f"input ch{c}", mode="lines"), row=1, col=1)
                fig.add_trace(go.Scatter(y=attr[c], name=f"attribution ch{c}", mode="lines"), row=2, col=1)
            fig.update_xaxes(title_text="time step", row=2, col=1)
        else:
            z = attr.sum(0)
            lim = float(np.abs(z).max()) or 1.0
            fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
                                       colorbar={"title": "attribution"}))
            fig.update_yaxes(autorange="reversed", scaleanchor="x")
        fig.update_layout(title=title, height=420, margin={"t": 60, "l": 50, "r": 20, "b": 40})
        return fig

    # -- the page --------------------------------------------------------------------------
    def layout(self):
        from . import dash

        d = dash()
        html, dcc = d.html, d.dcc
        n = len(self.source.X)

        def picker(label, id_, options, value):
            return html.Label([label, dcc.Dropdown(id=id_, options=options, value=value, clearable=False)],
                              style={"display": "inline-block", "width": "30%", "marginRight": "2%"})

        return html.Div([
            html.H2(f"xai-suite explore: {self.source.name} ({self.source.modality}, {self.kind})"),
            html.Div([
                picker("instance", "instance", [{"label": str(i), "value": i} for i in range(n)], 0),
                picker("explainer", "explainer", self.explainers, self.default),
                picker("baseline", "baseline", self.baselines, NO_BASELINE),
            ]),
            html.Div([html.Progress(id="progress", value="0", max="3"),
                      html.Span(id="status", style={"marginLeft": "1em"})]),
            html.Div(id="error", style={"color": "#b00020", "whiteSpace": "pre-wrap"}),
            html.Div(id="summary"),
            dcc.Graph(id="attribution", figure=self.empty_figure()),
        ], style={"fontFamily": "sans-serif", "margin": "1em"})

    def register(self, app) -> None:
        """Add the page's callback (a background one: the page stays responsive)."""
        from . import dash

        d = dash()
        Input, Output = d.Input, d.Output

        @app.callback(
            Output("attribution", "figure"), Output("summary", "children"), Output("error", "children"),
            Input("instance", "value"), Input("explainer", "value"), Input("baseline", "value"),
            background=True, interval=250,
            running=[(Output("status", "children"), "computing...", "")],
            progress=[Output("progress", "value"), Output("progress", "max")],
        )
        def _update(set_progress, index, explainer, baseline):
            return self.update(index, explainer, baseline,
                               progress=lambda step, of: set_progress((str(step), str(of))))
