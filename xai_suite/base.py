"""Explainer base classes and their tags.

A constructor only stores the model and keyword-only hyper-parameters (so ``get_params``,
``set_params`` and :func:`clone` work by introspection); ``explain`` is a template method
around the subclass's ``_attribute`` that computes the completeness error for every method.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ._io import jsonable
from ._validation import (
    as_float_tensor,
    broadcast_baseline,
    check_instance_shape,
    check_positive_int,
    check_random_state,
    infer_modality,
    parse_bytes,
    resolve_counterfactual_target,
    resolve_target,
    split_frame,
)
from .baselines import Baseline, NotFittedError, ensure_baseline
from .batching import ActivationProbe, auto_rows, check_batch_size, pick_rows
from .explanation import CounterfactualExplanation, Explanation
from .metrics.counterfactual import counterfactual_metrics
from .metrics.statistics import instance_generators
from .modeling import ModelWrapper, NonFiniteOutputError
from .packing import Layout, PackedModel

if TYPE_CHECKING:
    from .registry import ExplainerInfo

FAMILIES = (
    "gradient",
    "perturbation",
    "surrogate",
    "propagation",
    "counterfactual",
    "concept",
    "mechanistic",
    "control",
)


@dataclass(frozen=True)
class Tags:
    """What an explainer can do; decides which conformance checks apply.

    Attributes
    ----------
    family : str
        One of :data:`FAMILIES`.
    modalities : tuple of str
        Input layouts it explains: ``tabular`` (N, F), ``timeseries`` (N, C, T),
        ``image`` (N, C, H, W), ``text``.
    model_kinds : tuple of str
        Model kinds it accepts (see :mod:`xai_suite.modeling`).
    needs_baseline : bool
        Takes a ``baseline`` (and explicit ``baselines=`` arrays in ``explain``).
    uses_feature_mask : bool
        Takes ``feature_mask=`` in ``explain`` (features perturbed together).
    needs_fit : bool
        Always needs ``fit(X, y)`` before ``explain`` (baselines that learn from data make
        any baseline-taking explainer need it too).
    stochastic : bool
        Results are random; ``random_state`` makes them repeatable.
    has_convergence_delta : bool
        Completeness holds: attributions sum to ``f(x) - f(baseline)``.
    batch_invariant : bool
        Results depend neither on ``batch_size`` nor on the other instances of the batch
        (random draws are seeded per instance, :meth:`Call.instance_rngs`).
    multi_input : bool
        Explains torch models of several inputs, given as a tuple of arrays (through the
        packed view of :mod:`xai_suite.packing`); attributions come back as a tuple.
    notes : str
        Why a conformance point does not apply, where one does not.
    """

    family: str
    modalities: tuple[str, ...]
    model_kinds: tuple[str, ...]
    needs_baseline: bool = False
    uses_feature_mask: bool = False
    needs_fit: bool = False
    stochastic: bool = False
    has_convergence_delta: bool = False
    batch_invariant: bool = True
    multi_input: bool = False
    notes: str = ""


@dataclass
class Call:
    """State of one ``explain`` call, handed to ``_attribute``.

    Attributes
    ----------
    x : torch.Tensor, shape (N, ...)
        Inputs on the compute device.
    target : numpy.ndarray of int, shape (N,), or None
        The class explained (attribution) or wanted (counterfactual) per instance; ``None``
        while predictions are deferred (see :meth:`Explainer._defers_predictions`).
    predictions : numpy.ndarray, shape (N, K), or None
        ``None`` until :meth:`supply_predictions` where the method computes them in its own
        forward passes.
    model : ModelWrapper
    rows : int
        Most rows per model call (the resolved ``batch_size``).
    modality : str
    rng : numpy.random.Generator
    feature_names : tuple of str, or None
        Tabular column names (from a DataFrame, the model or ``fit``).
    layout : Layout, or None
        Several model inputs: how ``x`` (N, D) packs them (the model is their packed view).
    data : dict
        What else the family's ``explain`` was given, validated (explicit baselines, a
        feature mask, ...).
    """

    x: torch.Tensor
    target: np.ndarray
    predictions: np.ndarray
    model: ModelWrapper
    rows: int
    modality: str
    rng: np.random.Generator
    feature_names: tuple[str, ...] | None = None
    layout: Layout | None = None
    data: dict = field(default_factory=dict)
    #: The ``target`` argument as given and the function turning it into :attr:`target` with
    #: the predictions: kept for :meth:`supply_predictions` while predictions are deferred.
    requested_target: Any = None
    resolve: Callable[[object, np.ndarray], np.ndarray] | None = None

    @property
    def deferred(self) -> bool:
        """Whether the predictions (and so a ``None`` target's classes) are still to come."""
        return self.predictions is None

    def supply_predictions(self, predictions: np.ndarray) -> None:
        """Set the predictions (N, K) computed by the method's own forward passes, and resolve
        the requested target with them (raises as :func:`resolve_target` does)."""
        if not self.deferred:
            raise RuntimeError("the predictions of this call are already known")
        self.target = self.resolve(self.requested_target, predictions)
        self.predictions = predictions

    def ensure_predictions(self) -> None:
        """Compute deferred predictions with a separate forward pass (no-op otherwise)."""
        if self.deferred:
            self.supply_predictions(_predict(self.model, self.x, self.rows))

    @property
    def target_t(self) -> torch.Tensor:
        if self.target is None:
            raise RuntimeError("the target is resolved once the predictions are supplied")
        return torch.as_tensor(self.target, device=self.x.device)

    def instance_rngs(self) -> list[np.random.Generator]:
        """One generator per instance, seeded from ``random_state``, the instance's values and
        its target: an instance gets the same draws alone or in any batch, at any position.
        Built once per call; every consumer (baselines, then the method) draws on from them."""
        if "instance_rngs" not in self.data:
            self.ensure_predictions()  # the draws are seeded by the target
            seed, x = int(self.rng.integers(2**32)), self.x.detach().cpu().numpy()
            self.data["instance_rngs"] = [instance_generators(x[i : i + 1], seed, int(t))[0]
                                          for i, t in enumerate(self.target)]
        return self.data["instance_rngs"]


@dataclass
class Attribution:
    """What ``_attribute`` returns.

    Attributes
    ----------
    values : torch.Tensor, shape (N, ...)
    baselines : torch.Tensor, shape (S, N, ...), or None
        The reference inputs used (``None``: the method's reference output is 0).
    params : dict
        Settings resolved during the call (a default layer, a window size, ...).
    """

    values: torch.Tensor
    baselines: torch.Tensor | None = None
    params: dict = field(default_factory=dict)


#: The hyper-parameters many explainers share, and what they mean for one that lacks one.
SHARED_PARAMS = {"batch_size": "auto", "max_memory": None, "device": "auto", "random_state": None}


@dataclass(kw_only=True, eq=False, repr=False)
class Batched:
    """Mixin declaring the hyper-parameters of explainers that call the model in batches.

    Parameters
    ----------
    batch_size : "auto" or int
        Rows per model call (``"auto"``: sized from a probe of the model, within ``max_memory``).
    max_memory : int or str, optional
        Memory budget of ``batch_size="auto"`` (bytes, or ``"2GB"``, ...).
    device : str
        ``"auto"`` (the model's device), ``"cpu"`` or ``"cuda"``.
    """

    _mixin_params: ClassVar[bool] = True  # its parameters' docs join its subclasses'

    batch_size: int | str = "auto"
    max_memory: int | str | None = None
    device: str = "auto"


@dataclass(kw_only=True, eq=False, repr=False)
class Seeded:
    """Mixin declaring the ``random_state`` of explainers that draw random numbers.

    Parameters
    ----------
    random_state : int, optional
        Seeds every random draw of the method: the same seed gives the same result.
    """

    _mixin_params: ClassVar[bool] = True

    random_state: int | None = None


#: The header of a numpydoc section after another ("Returns", "See Also", ...).
_NEXT_SECTION = re.compile(r"\n\n[A-Z][a-z]+( [A-Z][a-z]+)?\n-{3,}\n")


def _param_entries(doc: str) -> list[tuple[str, str]]:
    """``(name, entry)`` for each parameter of a numpydoc docstring's Parameters section."""
    section = inspect.cleandoc(doc).split("Parameters\n----------\n", 1)[-1]
    entries = re.split(r"\n(?=\S)", _NEXT_SECTION.split(section)[0].strip("\n"))
    return [(re.split(r"[ ,:]", e, maxsplit=1)[0], e) for e in entries]


def _with_mixin_params(cls) -> str | None:
    """``cls``'s docstring with the parameters its mixins declare (:class:`Batched`, ...)
    added at the end of its Parameters section, where it does not document them itself."""
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return doc
    doc = inspect.cleandoc(doc)
    if "Parameters\n" not in doc:
        doc += "\n\nParameters\n----------\n"
    own = {name for name, _ in _param_entries(doc)}
    extra: dict[str, str] = {}  # the nearest base's entry of each parameter
    for base in cls.__mro__[1:]:
        if base.__dict__.get("_mixin_params"):
            for name, entry in _param_entries(base.__doc__):
                if name not in own:
                    extra.setdefault(name, entry)
    if not extra:
        return doc.removesuffix("\n\nParameters\n----------\n")
    start = doc.index("Parameters\n") + 21
    header = _NEXT_SECTION.search(doc, start)
    end = len(doc) if header is None else header.start()
    return doc[:end].rstrip("\n") + "\n" + "\n".join(extra.values()) + doc[end:]


@dataclass(eq=False, repr=False)
class Explainer:
    """Root of all explainers: parameters, fitting, and registry metadata.

    Hyper-parameters are declared once, as class fields (``n_steps: int = 50``); every
    subclass is a keyword-only dataclass, so its constructor is ``(model, *, <fields>)``, and a
    subclass inherits its bases' fields (redeclaring one changes its default). A subclass
    that writes its own ``__init__`` keeps it (its subclasses too).
    """

    model: Any
    family: ClassVar[str] = ""
    info: ClassVar[ExplainerInfo]  # set by ``register_explainer``

    _fit_shape: ClassVar[tuple[int, ...] | None] = None
    _fit_names: ClassVar[tuple[str, ...] | None] = None
    _fit_layout: ClassVar[Layout | None] = None

    _hand_written_init: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        parent = next(c for c in cls.__mro__[1:] if "__init__" in c.__dict__)
        cls._hand_written_init = "__init__" in cls.__dict__ or getattr(parent, "_hand_written_init", False)
        if not cls._hand_written_init:
            dataclass(kw_only=True, eq=False, repr=False)(cls)
        cls.__doc__ = _with_mixin_params(cls)

    # -- parameters (scikit-learn style) -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's hyper-parameters, the shared ones (:data:`SHARED_PARAMS`) last.

        Read from the signature once per class (``inspect.signature`` costs ~0.1 ms, and every
        ``explain`` asks several times); a class's constructor does not change after creation.
        """
        cached = cls.__dict__.get("_param_names_cache")
        if cached is None:
            names = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "model")]
            cached = ([p for p in names if p not in SHARED_PARAMS]
                      + [p for p in SHARED_PARAMS if p in names])
            cls._param_names_cache = tuple(cached)  # in cls.__dict__: subclasses get their own
        return list(cached)

    def get_params(self) -> dict:
        """The hyper-parameters passed to the constructor, by name."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params) -> Explainer:
        """Set hyper-parameters; unknown names raise with close matches."""
        check_param_names(type(self), params)
        for k, v in params.items():
            setattr(self, k, v)
        self._fit_shape = None  # a new baseline may need fitting again
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _shared(self, name: str):
        """A shared hyper-parameter (:data:`SHARED_PARAMS`): this explainer's, else the default."""
        return getattr(self, name) if name in self._param_names() else SHARED_PARAMS[name]

    def _chunk_rows(self, forward, sample, device: torch.device, key=None) -> int:
        """Rows per model call: ``batch_size``, or for ``"auto"`` timed on ``forward`` with the
        rows of ``sample``, within ``max_memory`` (:func:`xai_suite.batching.pick_rows`; cached
        per ``forward``, or per ``key`` for a wrapper built afresh on every call)."""
        batch_size = self._shared("batch_size")
        check_batch_size(batch_size)
        if batch_size != "auto":
            return int(batch_size)
        return pick_rows(forward, sample, device, parse_bytes(self._shared("max_memory")),
                         backward=self.info.tags.family in ("gradient", "propagation"), key=key)

    def _recorded_params(self, rows: int, resolved: dict) -> dict:
        """Hyper-parameters, the baseline used and settings resolved in the call (JSON-ready)."""
        params = {k: jsonable(v) for k, v in self.get_params().items()}
        if self.info.tags.needs_baseline:
            params["baseline"] = self._baseline().describe()
        params.update(jsonable(resolved))
        params["batch_size_used"] = int(rows)
        return params

    # -- fitting ---------------------------------------------------------------------------
    @property
    def requires_fit(self) -> bool:
        """Whether ``fit`` must be called before ``explain`` with the current parameters."""
        tags = self.info.tags
        return tags.needs_fit or (tags.needs_baseline and self._baseline().needs_fit)

    def _baseline(self) -> Baseline:
        """The ``baseline`` parameter as a :class:`Baseline` (cached while it is unchanged)."""
        spec = self.baseline
        cached = getattr(self, "_baseline_cache", None)
        if cached is None or cached[0] is not spec:
            self._baseline_cache = (spec, ensure_baseline(spec))
        return self._baseline_cache[1]

    def fit(self, X, y=None) -> Explainer:
        """Learn what the explainer needs from training data.

        Parameters
        ----------
        X : array-like or pandas.DataFrame, shape (N, ...), or tuple of arrays
            Training inputs in the layout later given to ``explain`` (a tuple for a model of
            several inputs).
        y : array-like of int, shape (N,), optional
            Training labels (needed by e.g. the ``nearest_unlike`` baseline).

        Returns
        -------
        self
        """
        X, layout, names = self._input_tensor(X, "X")
        if layout is None:
            infer_modality(X, self.info.tags.modalities, self.info.qualified_name)
        y = None if y is None else np.asarray(y)
        if self.info.tags.needs_baseline:
            self._baseline().fit(X, y)
        self._fit(X, y)
        self._fit_shape, self._fit_names, self._fit_layout = tuple(X.shape[1:]), names, layout
        return self

    def _input_tensor(self, data, name: str) -> tuple[torch.Tensor, Layout | None, tuple | None]:
        """``data`` as one float tensor, the layout of a multi-input tuple, and column names."""
        if not isinstance(data, tuple):
            data, names = split_frame(data, self.model, name)
            return as_float_tensor(data, name), None, names
        qname = self.info.qualified_name
        if not self.info.tags.multi_input:
            raise TypeError(f"{qname} explains models of one input array; got a tuple of {len(data)} "
                            "(entries tagged multi_input explain several: see xs.explainer_info)")
        if not isinstance(self.model, torch.nn.Module):
            raise TypeError(f"several inputs (a tuple of arrays) are explained for torch models; got "
                            f"a {type(self.model).__name__}")
        parts = [as_float_tensor(a, f"{name}[{i}]") for i, a in enumerate(data)]
        dtype = torch.float64 if all(p.dtype == torch.float64 for p in parts) else torch.float32
        parts = [p.to(dtype) for p in parts]
        layout = Layout.of(parts, name)
        return layout.pack(parts), layout, None

    def _fit(self, X: torch.Tensor, y) -> None:
        """Subclass hook: learn state beyond the baseline."""

    def _check_fitted(self) -> None:
        if self.requires_fit and self._fit_shape is None:
            raise NotFittedError(f"{self.info.qualified_name} with these parameters learns from data: call "
                                 f"fit(X, y) before explain (or pass fit_data=(X, y) to xs.explain)")

    # -- the one explain template: validate -> per-call state -> compute -> result ----------
    def _explain(self, *args, **kwargs):
        """What every family's ``explain`` runs: :meth:`_begin` validates the arguments and
        yields the call's state with the model ready, :meth:`_compute` computes on it and
        :meth:`_finish` builds the result."""
        with self._begin(*args, **kwargs) as call:
            raw = self._compute(call)
        return self._finish(call, raw)

    def _begin(self, *args, **kwargs):
        """The family's input adapter (a context manager yielding the call's state)."""
        raise NotImplementedError

    def _compute(self, call):
        """The family's computation on the call's state."""
        raise NotImplementedError

    def _finish(self, call, raw):
        """The family's result, from the call's state and :meth:`_compute`'s output."""
        raise NotImplementedError

    # -- one array explain call: validation, model preparation, targets ---------------------
    def _wrapper(self, layout: Layout | None = None) -> ModelWrapper:
        """The model (its packed view for several inputs) wrapped for calling; raises if the
        entry does not take its kind."""
        model = self.model if layout is None else PackedModel(self.model, layout)
        wrapper = ModelWrapper(model, device=self._shared("device"))
        kinds = self.info.tags.model_kinds
        if wrapper.kind not in kinds:
            raise TypeError(f"{self.info.qualified_name} explains models of kind {', '.join(kinds)}; got a "
                            f"{wrapper.kind} model ({type(self.model).__name__})")
        return wrapper

    @contextlib.contextmanager
    def _calling(self, inputs, target, resolve: Callable[[object, np.ndarray], np.ndarray],
                 defer: bool = False) -> Iterator[Call]:
        """Validate ``inputs``, prepare the model, predict and resolve ``target``.

        Yields the :class:`Call` while the model is in eval mode on the compute device. With
        ``defer`` (a torch model), the predictions and the target are left for the method to
        supply from its own forward passes (:meth:`Call.supply_predictions`), saving one
        forward over the inputs.
        """
        tags, name = self.info.tags, self.info.qualified_name
        check_batch_size(self._shared("batch_size"))
        check_random_state(self._shared("random_state"))
        x, layout, names = self._input_tensor(inputs, "inputs")
        if layout is None:
            modality = infer_modality(x, tags.modalities, name)
            names = self._feature_names(names, x, modality)
        else:  # several inputs: their packed view is a tabular (N, D) problem
            modality = "tabular"
            if self._fit_shape is not None and layout != self._fit_layout:
                raise ValueError(f"inputs have per-instance shapes {list(layout.shapes)} but "
                                 f"{name}.fit saw {self._fit_layout or self._fit_shape}")
        check_instance_shape(x, self._fit_shape, f"{name}.fit")
        self._check_fitted()
        wrapper = self._wrapper(layout)
        with wrapper.prepared():
            x = x.to(wrapper.device, wrapper.dtype(x))
            rows = self._rows(wrapper, x)
            defer = defer and wrapper.kind == "torch"
            preds = None if defer else _predict(wrapper, x, rows)
            yield Call(
                x=x,
                target=None if defer else resolve(target, preds),
                predictions=preds,
                model=wrapper,
                rows=rows,
                modality=modality,
                rng=np.random.default_rng(self._shared("random_state")),
                feature_names=names,
                layout=layout,
                requested_target=target,
                resolve=resolve,
            )

    def _feature_names(self, names, x: torch.Tensor, modality: str) -> tuple[str, ...] | None:
        """Column names of tabular inputs: the frame's, else the model's, else ``fit``'s."""
        if names is not None and self._fit_names is not None and names != self._fit_names:
            raise ValueError(f"inputs have columns {list(names)} but {self.info.qualified_name}.fit saw "
                             f"{list(self._fit_names)}; give the columns in the same order")
        if modality != "tabular":
            return None
        model_names = getattr(self.model, "feature_names_in_", None)
        if names is None and model_names is not None and len(model_names) == x.shape[1]:
            names = tuple(str(c) for c in model_names)
        return names or self._fit_names

    def _categories(self, call: Call) -> dict | None:
        """The model's coded categorical columns (``feature_categories_``) where it has them."""
        categories = getattr(self.model, "feature_categories_", None)
        return categories if categories and call.feature_names is not None else None

    def _rows(self, wrapper: ModelWrapper, x: torch.Tensor) -> int:
        if wrapper.kind != "torch" and self._shared("batch_size") == "auto":
            # black boxes: their own copies are invisible (scikit-learn converts to float64 and
            # validates), so count 4 copies of the input as the largest tensor; chunks of ~4 MiB
            # of input stay in cache (KernelSHAP on breast cancer: 25% faster than 16 MiB)
            row = 4 * x[0].numel() * x.element_size()
            return auto_rows(ActivationProbe(total=row, largest=row), wrapper.device,
                             parse_bytes(self._shared("max_memory")))
        with _model_errors(x):
            return self._chunk_rows(wrapper.model, x, wrapper.device)


class AttributionExplainer(Explainer):
    """Explainers that return one signed attribution per input element."""

    def explain(self, inputs, target=None, *, baselines=None, feature_mask=None) -> Explanation:
        """Explain ``inputs`` for class ``target``.

        Parameters
        ----------
        inputs : numpy.ndarray or torch.Tensor, shape (N, F), (N, C, T) or (N, C, H, W)
            Or a tuple of such arrays, one per input of a model of several inputs (entries
            tagged ``multi_input``).
        target : None, int or array-like of int, shape (N,)
            Output index to explain; ``None`` explains each instance's predicted class.
        baselines : array-like, shape (N, ...) or (...), optional
            Explicit reference inputs; overrides the ``baseline`` hyper-parameter (a tuple
            of them for several inputs).
        feature_mask : array-like of int, shape (...) or (N, ...), optional
            Group labels: elements with the same label are perturbed together (a tuple for
            several inputs; a label shared by two inputs is one group, as in Captum).

        Returns
        -------
        Explanation
            With several inputs, its ``inputs``, ``attributions`` and ``baselines`` are tuples.
        """
        return self._explain(inputs, target, baselines=baselines, feature_mask=feature_mask)

    @contextlib.contextmanager
    def _begin(self, inputs, target, *, baselines, feature_mask) -> Iterator[Call]:
        tags, name = self.info.tags, self.info.qualified_name
        if baselines is not None and not tags.needs_baseline:
            raise TypeError(f"{name} takes no baselines")
        if feature_mask is not None and not tags.uses_feature_mask:
            raise TypeError(f"{name} takes no feature_mask")
        defer = self._defers_predictions(explicit_baselines=baselines is not None)
        with self._calling(inputs, target, resolve_target, defer=defer) as call:
            call.data["baselines"] = None if baselines is None else self._explicit_baselines(baselines, call)
            call.data["feature_mask"] = None if feature_mask is None else self._mask(feature_mask, call)
            yield call
            call.ensure_predictions()  # a method that deferred them and then did not supply them

    def _defers_predictions(self, *, explicit_baselines: bool) -> bool:
        """Whether ``_attribute`` computes the predictions in its own forward passes (then
        ``call.predictions`` and ``call.target`` are ``None`` until it calls
        :meth:`Call.supply_predictions`). No by default."""
        return False

    def _compute(self, call: Call) -> tuple[Attribution, tuple[np.ndarray, np.ndarray] | None]:
        result = self._attribute(call, baselines=call.data["baselines"],
                                 feature_mask=call.data["feature_mask"])
        completeness = self._completeness(call, result) if self.info.tags.has_convergence_delta else None
        return result, completeness

    def _finish(self, call: Call, raw: tuple[Attribution, tuple[np.ndarray, np.ndarray] | None]
                ) -> Explanation:
        (result, completeness), x, name = raw, call.x, self.info.qualified_name
        delta, base = (None, None) if completeness is None else completeness
        values = result.values.detach().to("cpu", x.dtype)
        if values.shape != x.shape:
            raise RuntimeError(f"{name} produced attributions of shape {tuple(values.shape)}")
        zero = np.flatnonzero((values.reshape(len(values), -1) == 0).all(1).numpy())
        if len(zero):
            warnings.warn(f"{name}: every attribution of instance(s) {zero[:8].tolist()} is exactly 0: "
                          "the explained output did not respond to the method's changes (a saturated or "
                          "one-hot output, such as predict_proba of a hard classifier, or a baseline "
                          "equal to the input)", stacklevel=4)
        params = self._recorded_params(call.rows, result.params)
        if "baseline" in params and call.data["baselines"] is not None:
            params["baseline"] = {"name": "explicit"}
        unpack = _unpacker(call.layout)
        return Explanation(
            attributions=unpack(values),
            inputs=unpack(x.cpu()),
            target=call.target,
            predictions=call.predictions,
            method=name,
            params=params,
            convergence_delta=delta,
            baselines=None if result.baselines is None else unpack(result.baselines.cpu()),
            feature_names=call.feature_names,
            categories=self._categories(call),
            base_values=base,
        )

    def _explicit_baselines(self, baselines, call: Call) -> torch.Tensor:
        """Explicit baselines (N, ...) of ``call.x``: one array, or a tuple for several inputs."""
        x, layout = call.x.cpu(), call.layout
        if layout is None:
            return broadcast_baseline(as_float_tensor(baselines, "baselines").to(x.dtype), x)
        if not isinstance(baselines, tuple) or len(baselines) != len(layout.shapes):
            raise TypeError(f"baselines of a model of {len(layout.shapes)} inputs must be a tuple of "
                            f"{len(layout.shapes)} arrays, one per input")
        parts = [broadcast_baseline(as_float_tensor(b, f"baselines[{i}]").to(x.dtype), xi,
                                    f"baselines[{i}]")
                 for i, (b, xi) in enumerate(zip(baselines, layout.unpack(x), strict=True))]
        return layout.pack(parts)

    def _mask(self, feature_mask, call: Call) -> torch.Tensor:
        """A feature mask (1 or N, ...) of ``call.x``: one array, or a tuple for several inputs."""
        x, layout = call.x, call.layout
        if layout is None:
            return self._check_mask(feature_mask, x)
        if not isinstance(feature_mask, tuple) or len(feature_mask) != len(layout.shapes):
            raise TypeError(f"feature_mask of a model of {len(layout.shapes)} inputs must be a tuple "
                            f"of {len(layout.shapes)} arrays, one per input")
        parts = [self._check_mask(m, xi) for m, xi in zip(feature_mask, layout.unpack(x), strict=True)]
        n = max(p.shape[0] for p in parts)
        return layout.pack([p.expand(n, *p.shape[1:]) for p in parts])

    def explain_all_classes(self, inputs, *, baselines=None, feature_mask=None) -> list[Explanation]:
        """Explain every output of the model: one :class:`Explanation` per class.

        Parameters
        ----------
        inputs, baselines, feature_mask
            As for :meth:`explain`.

        Returns
        -------
        list of Explanation
            Item ``k`` explains output ``k`` for every instance (its ``target`` is all ``k``).
        """
        first = self.explain(inputs, 0, baselines=baselines, feature_mask=feature_mask)
        return [first, *(self.explain(inputs, k, baselines=baselines, feature_mask=feature_mask)
                         for k in range(1, first.predictions.shape[1]))]

    # -- hooks and helpers for subclasses --------------------------------------------------
    def _attribute(self, call: Call, *, baselines, feature_mask) -> Attribution:
        raise NotImplementedError

    def _baselines(self, call: Call, explicit: torch.Tensor | None, n_samples: int = 1):
        """Reference inputs, shape (S, N, ...): explicit ones or drawn from ``baseline``."""
        if explicit is not None:
            return explicit.unsqueeze(0).to(call.x.device)
        baseline, x = self._baseline(), call.x.cpu()
        if not baseline.stochastic:
            return baseline.sample(x, call.target, n_samples, call.rng).to(call.x.device)
        draws = [baseline.sample(x[i : i + 1], call.target[i : i + 1], n_samples, g)  # per instance
                 for i, g in enumerate(call.instance_rngs())]
        return torch.cat(draws, dim=1).to(call.x.device)

    def _reference_set(self, call: Call, explicit: torch.Tensor | None) -> torch.Tensor:
        """A background's references, shape (S, N, ...): explicit ones, or ``n_baseline_samples``
        from :meth:`Baseline.reference_set`, drawn with ``random_state`` (0 when it is None, so
        that a deterministic method stays deterministic)."""
        check_positive_int(n_baseline_samples=self.n_baseline_samples)
        check_random_state(self.random_state)
        if explicit is not None:
            return explicit.unsqueeze(0).cpu()
        rng = np.random.default_rng(0 if self.random_state is None else self.random_state)
        return self._baseline().reference_set(call.x.cpu(), call.target,
                                              int(self.n_baseline_samples), rng)

    @staticmethod
    def _check_mask(mask, x: torch.Tensor) -> torch.Tensor:
        m = mask.detach().cpu() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
        if m.dtype.is_floating_point or m.dtype == torch.bool:
            raise TypeError(f"feature_mask must hold integer group labels; got {m.dtype}")
        if tuple(m.shape) == tuple(x.shape[1:]):
            m = m.unsqueeze(0)
        elif tuple(m.shape) != tuple(x.shape):
            raise ValueError(f"feature_mask must have one instance's shape {tuple(x.shape[1:])} or the "
                             f"inputs' shape {tuple(x.shape)}; got {tuple(m.shape)}")
        return m.long().to(x.device)

    def _completeness(self, call: Call, result: Attribution) -> tuple[np.ndarray, np.ndarray]:
        """The convergence delta ``sum(attr) - (f(x)[t] - mean_s f(b_s)[t])`` and the base
        value ``mean_s f(b_s)[t]`` (0 where the method's reference output is 0) per instance."""
        n, b = call.x.shape[0], result.baselines
        idx = np.arange(n)
        fx = call.predictions[idx, call.target].astype(np.float64)
        fb = np.zeros(n)
        if b is not None:
            given = call.data.get("reference_outputs")  # (S * N, K), from the method's own passes
            out = (given[1] if given is not None and given[0] is b
                   else _predict(call.model, b.reshape((-1, *b.shape[2:])), call.rows))
            fb = out.reshape(b.shape[0], n, -1)[:, idx, call.target].mean(0)
        total = result.values.detach().double().reshape(n, -1).sum(1).cpu().numpy()
        delta = (total - (fx - fb)).astype(np.float64 if call.x.dtype == torch.float64 else np.float32)
        return delta, fb.astype(call.predictions.dtype)


def _unpacker(layout: Layout | None):
    """Numpy arrays (or, for several inputs, a tuple of them) from packed tensors."""
    if layout is None:
        return lambda t: t.numpy()
    return lambda t: tuple(p.numpy() for p in layout.unpack(t))


@contextlib.contextmanager
def _model_errors(x: torch.Tensor) -> Iterator[None]:
    """Re-raise the model's own failures on ``x`` as a ``ValueError`` naming its shape (non-finite
    outputs pass through as they are)."""
    try:
        yield
    except NonFiniteOutputError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"the model failed on inputs of shape {tuple(x.shape)}; check the number of "
                         f"channels/features and the layout the model expects: {exc}") from exc


def _predict(wrapper: ModelWrapper, x: torch.Tensor, rows: int) -> np.ndarray:
    with _model_errors(x):
        return wrapper.predict(x, rows)


class GradientExplainer(AttributionExplainer):
    """Gradients of the target output with respect to the inputs."""

    family = "gradient"


class PerturbationExplainer(AttributionExplainer):
    """Output changes when parts of the input are replaced."""

    family = "perturbation"


class SurrogateExplainer(AttributionExplainer):
    """A local interpretable model fitted to perturbed outputs."""

    family = "surrogate"


class PropagationExplainer(AttributionExplainer):
    """Relevance propagated backwards layer by layer (LRP)."""

    family = "propagation"


class CounterfactualExplainer(Explainer):
    """Inputs changed so that the model predicts another class.

    ``fit(X, y=None)`` gives the training data the search draws from; a training instance's
    class is the model's prediction for it (labels ``y`` only for methods that say so).
    Subclasses implement ``_counterfactual(call) -> (counterfactuals, params)``; validity,
    proximity, sparsity and plausibility are measured here, once for every method.
    """

    family = "counterfactual"
    requires_fit = True  # the search draws from training data
    # fitted state (not hyper-parameters)
    X_train_: torch.Tensor = field(init=False, repr=False)  # (M, ...) on the CPU
    train_class_: np.ndarray = field(init=False, repr=False)  # (M,) int64: the model's classes

    def _fit(self, X: torch.Tensor, y) -> None:
        wrapper = self._wrapper()
        with wrapper.prepared():
            x = X.to(wrapper.device, wrapper.dtype(X))
            pred = _predict(wrapper, x, self._rows(wrapper, x)).argmax(1)
        if np.unique(pred).size < 2:
            raise ValueError(f"{self.info.qualified_name} needs training data that the model assigns to at "
                             "least 2 classes")
        self.X_train_ = X
        self.train_class_ = pred.astype(np.int64)

    def explain(self, inputs, target=None) -> CounterfactualExplanation:
        """Find a counterfactual for each instance.

        Parameters
        ----------
        inputs : numpy.ndarray or torch.Tensor, shape (N, ...)
        target : None, int or array-like of int, shape (N,)
            The class each counterfactual should get; ``None`` takes each instance's most
            probable class other than the predicted one.

        Returns
        -------
        CounterfactualExplanation
        """
        return self._explain(inputs, target)

    @contextlib.contextmanager
    def _begin(self, inputs, target) -> Iterator[Call]:
        with self._calling(inputs, target, resolve_counterfactual_target) as call:
            missing = sorted(set(call.target.tolist()) - set(self.train_class_.tolist()))
            if missing:
                raise ValueError(f"{self.info.qualified_name}: the fitted training data holds no instance of "
                                 f"target class(es) {missing}; fit it on data the model assigns to those "
                                 "classes")
            yield call

    def _compute(self, call: Call) -> tuple[torch.Tensor, np.ndarray, dict]:
        cf, resolved = self._counterfactual(call)
        cf = cf.detach()
        if cf.shape != call.x.shape:
            raise RuntimeError(f"{self.info.qualified_name} produced counterfactuals of shape "
                               f"{tuple(cf.shape)}")
        return cf, _predict(call.model, cf.to(call.x.device), call.rows), resolved

    def _finish(self, call: Call, raw: tuple[torch.Tensor, np.ndarray, dict]) -> CounterfactualExplanation:
        cf, cf_pred, resolved = raw
        x, cf = call.x.cpu().numpy(), cf.to("cpu", call.x.dtype).numpy()
        train = self.X_train_.numpy()
        return CounterfactualExplanation(
            inputs=x,
            counterfactuals=cf,
            target=call.target,
            predictions=call.predictions,
            cf_predictions=cf_pred,
            method=self.info.qualified_name,
            params=self._recorded_params(call.rows, resolved),
            metrics=counterfactual_metrics(x, cf, cf_pred, call.target, train, self.train_class_),
            feature_names=call.feature_names,
            categories=self._categories(call),
            feature_ranges=(np.stack([train.min(0), train.max(0)]) if call.modality == "tabular" else None),
        )

    def _counterfactual(self, call: Call) -> tuple[torch.Tensor, dict]:
        """Counterfactuals (N, ...) for ``call.x`` and the settings resolved on the way."""
        raise NotImplementedError


#: Parameters renamed so that one idea has one name across entries: old name -> new name.
RENAMED = {"n_background": "n_baseline_samples", "n_coalitions": "n_samples", "reference": "baseline",
           "baseline_token": "baseline", "feature_range": "permitted_range"}


def check_param_names(cls: type[Explainer], params: dict) -> None:
    """Raise a ``TypeError`` listing close matches for parameters ``cls`` does not take."""
    known = cls._param_names()
    unknown = [p for p in params if p not in known]
    if unknown:
        msgs = []
        for p in unknown:
            close = [RENAMED[p]] if RENAMED.get(p) in known else difflib.get_close_matches(p, known, n=3)
            msgs.append(f"{p!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
        raise TypeError(f"{cls.info.qualified_name} got unknown parameter(s) {', '.join(msgs)}; it takes "
                        f"{', '.join(known)}")


def clone(explainer: Explainer, model=None) -> Explainer:
    """A new, unfitted explainer with the same hyper-parameters (and optionally another model)."""
    params = {k: v.clone() if isinstance(v, Baseline) else copy.deepcopy(v)
              for k, v in explainer.get_params().items()}
    return type(explainer)(explainer.model if model is None else model, **params)
