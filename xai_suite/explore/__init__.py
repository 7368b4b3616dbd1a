"""``xai-suite explore``: a local Dash app to recompute explanations by hand.

:func:`make_app` takes a *source*: a zoo model name (``logreg``, ``cnn1d``, ``key_gpt2``, ...,
trained on its modality's default data: see :data:`DEFAULT_DATA`), a Python path
``module:function`` returning ``(model, X, y)``, or a local Hugging Face folder (a causal LM,
loaded with ``local_files_only=True``). Arrays get the attribution page
(:mod:`.attribution`): pick an instance, an explainer and a baseline and see the attribution
recomputed with its time and completeness error. Language models get the lens page
(:mod:`.language`): a prompt's logit lens, a clicked cell's residual stream overwritten by a
token's embedding or by a second prompt's activation, and the new output and lens.

Computations run as Dash background callbacks (a ``DiskcacheManager`` in a temporary folder),
so the page stays responsive and shows their progress; errors are shown in the page.
Needs ``pip install 'xai-suite[explore]'`` (Dash, Plotly).
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Default data of a zoo model's modality: ``split -> (X, y)`` (train and test splits).
DEFAULT_DATA: dict[str, Callable[[str], tuple]] = {
    "tabular": lambda split: _datasets().load_tabular("breast_cancer", split, as_frame=False,
                                                      standardize=True),
    "timeseries": lambda split: _datasets().load_ucr("GunPoint", split),
    "image": lambda split: _datasets().load_digits_images(split),
    "text": lambda split: _datasets().make_key_prompts(2000 if split == "train" else 20,
                                                       random_state=0 if split == "train" else 1),
}


def _datasets():
    from .. import datasets

    return datasets


def dash():
    """The ``dash`` module, or an ``ImportError`` naming the ``[explore]`` extra."""
    try:
        import dash as dash_module
    except ImportError:
        raise ImportError("xai-suite explore needs Dash: pip install 'xai-suite[explore]'") from None
    return dash_module


@dataclass
class Source:
    """What the explorer explains.

    Attributes
    ----------
    name : str
        The source as given.
    model : object
        The model (a ``LanguageModel`` for language models).
    modality : str
        ``tabular``, ``timeseries``, ``image`` or ``text``.
    X, y : numpy.ndarray or None
        The instances to pick from, shape (N, ...), and their labels (N,) (``None``: unknown);
        for text, prompts and their answers.
    X_train, y_train : numpy.ndarray or None
        Data for explainers and baselines that learn from data (default: ``X``, ``y``).
    """

    name: str
    model: object
    modality: str
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    X_train: np.ndarray | None = None
    y_train: np.ndarray | None = None


def load_source(source: str, *, random_state: int = 0, device: str = "cpu") -> Source:
    """Build or load what ``source`` names (see the module docstring).

    Raises
    ------
    ValueError
        When ``source`` is none of a zoo model, ``module:function`` or a model folder, or the
        function does not return ``(model, X, y)``.
    """
    from .._validation import NDIM_TO_MODALITY
    from ..bench.models import ZOO, build_model, model_info

    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a zoo model name, module:function or a folder; got {source!r}")
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"folder {source!r} holds no config.json: expected a Hugging Face model "
                             "saved with save_pretrained (model and tokenizer)")
        from xai_suite_llm import LanguageModel

        return Source(source, LanguageModel.from_pretrained(source, device=device), "text")
    if ":" in source:
        module, _, attr = source.partition(":")
        fn = getattr(importlib.import_module(module), attr, None)
        if not callable(fn):
            raise ValueError(f"{source!r}: module {module!r} has no function {attr!r}")
        out = fn()
        if not isinstance(out, tuple) or len(out) != 3:
            raise ValueError(f"{source!r} must return (model, X, y); got {type(out).__name__}")
        model, X, y = out
        if getattr(type(model), "xai_suite_model_kind", None) == "hf_causal_lm":
            return Source(source, model, "text", None if X is None else np.asarray(X, dtype=object),
                          None if y is None else np.asarray(y, dtype=object))
        X = np.asarray(X, dtype=np.float32)
        if X.ndim not in NDIM_TO_MODALITY:
            raise ValueError(f"{source!r} returned X of shape {X.shape}; expected (N, F), (N, C, T) or "
                             "(N, C, H, W)")
        y = None if y is None else np.asarray(y)
        if y is not None and y.shape != (len(X),):
            raise ValueError(f"{source!r} returned y of shape {y.shape}; expected ({len(X)},) or None")
        return Source(source, model, NDIM_TO_MODALITY[X.ndim], X, y, X, y)
    if source not in ZOO:
        raise ValueError(f"{source!r} is neither a zoo model ({', '.join(sorted(ZOO.names()))}), a "
                         "module:function returning (model, X, y) nor a model folder")
    info = model_info(source)
    if info.frames:
        raise ValueError(f"zoo model {source!r} takes DataFrames: explore it through a module:function "
                         "returning (model, X, y)")
    load = DEFAULT_DATA[info.modality]
    X_train, y_train = load("train")
    X, y = load("test")
    model = build_model(source, X_train, y_train, random_state=random_state)
    if info.modality == "text":
        return Source(source, model, "text", np.asarray(X, dtype=object), np.asarray(y, dtype=object))
    return Source(source, model, info.modality, np.asarray(X, np.float32), np.asarray(y),
                  np.asarray(X_train, np.float32), np.asarray(y_train))


def make_app(source: str | Source, *, random_state: int = 0, cache_dir: str | None = None,
             **options):
    """The explorer for ``source`` as a ``dash.Dash`` app (run it with ``app.run(port=...)``).

    Parameters
    ----------
    source : str or Source
        A zoo model name, ``module:function`` returning ``(model, X, y)``, a local Hugging Face
        folder, or a :class:`Source` already loaded.
    random_state : int
        Seeds zoo training and stochastic explainers.
    cache_dir : str, optional
        The background callbacks' disk cache (default: a new temporary folder).
    **options
        The page's own: ``prompt`` (the lens page's first prompt), ``top_k``.

    Returns
    -------
    dash.Dash
        Its ``explorer`` attribute is the page object whose methods the callbacks call.
    """
    dash_module = dash()
    src = source if isinstance(source, Source) else load_source(source, random_state=random_state)
    import diskcache

    cache = diskcache.Cache(cache_dir or tempfile.mkdtemp(prefix="xai_suite_explore_"))
    manager = dash_module.DiskcacheManager(cache)
    app = dash_module.Dash(__name__, title=f"xai-suite explore: {src.name}",
                           background_callback_manager=manager)
    if src.modality == "text":
        from .language import LanguageExplorer

        page = LanguageExplorer(src, **options)
    else:
        from .attribution import AttributionExplorer

        page = AttributionExplorer(src, random_state=random_state, **options)
    app.layout = page.layout()
    page.register(app)
    app.explorer = page
    return app
