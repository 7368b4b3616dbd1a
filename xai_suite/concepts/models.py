"""Concept Bottleneck Models and Concept Embedding Models with a scikit-learn-like interface.

Both are ``torch.nn.Module`` s whose ``forward(x)`` maps features ``(N, F)`` to task logits
``(N, K)``, so every ``torch`` explainer of the registry explains them from the input
features, and both have ``fit(X, C, y)``, ``predict``, ``predict_proba``, ``predict_concepts``
and ``predict_concept_proba``. The constructor only stores keyword-only hyper-parameters
(``get_params``/``set_params`` follow by introspection); ``fit`` builds and trains the layers.

The concept layer ("bottleneck") holds one activation per concept in [0, 1]: the predicted
concept probability (CBM with ``concept_activation="sigmoid"``, and CEM, where it mixes each
concept's two embeddings), or the thresholded probability (CBM with ``"hard"``). A test-time
intervention replaces the activations of chosen concepts by the true concept values
(:meth:`ConceptModel.bottleneck` with ``concepts=`` and ``mask=``); see
:mod:`xai_suite.concepts.interventions`.

References
----------
Koh et al. (2020), Concept Bottleneck Models, ICML.
Espinosa Zarlenga et al. (2022), Concept Embedding Models: Beyond the Accuracy-Explainability
Trade-Off, NeurIPS.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .._validation import as_float_tensor, check_choice, check_positive_int
from ..baselines import NotFittedError

TRAINING_SCHEMES = ("independent", "sequential", "joint")
CONCEPT_ACTIVATIONS = ("sigmoid", "hard")


def _mlp(sizes: Sequence[int], last_activation: bool) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with LeakyReLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


def _check_sizes(name: str, sizes) -> tuple[int, ...]:
    try:
        out = tuple(sizes)
    except TypeError:
        out = None
    if out is None or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0
                              for s in out):
        raise ValueError(f"{name} must be a sequence of positive ints (layer widths); got {sizes!r}")
    return tuple(int(s) for s in out)


def check_concepts(C, n: int, n_concepts: int | None = None, name: str = "C") -> torch.Tensor:
    """Concept values ``(n, n_concepts)`` in [0, 1] as a float32 tensor; anything else raises."""
    c = as_float_tensor(C, name)
    if c.ndim != 2 or c.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, n_concepts), one row per instance; got "
                         f"{tuple(c.shape)}")
    if n_concepts is not None and c.shape[1] != n_concepts:
        raise ValueError(f"{name} must have {n_concepts} columns (the model's concepts); got "
                         f"{c.shape[1]}")
    if c.shape[1] == 0 or ((c < 0) | (c > 1)).any():
        raise ValueError(f"{name} must hold at least one concept, with values in [0, 1] (0/1 labels "
                         "or probabilities)")
    return c


def _check_labels(y, n: int) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per instance; got {arr.shape}")
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"y must hold integer class labels 0..K-1; got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() < 1:
        raise ValueError("y must hold class labels 0..K-1 with at least 2 classes (K >= 2)")
    return torch.from_numpy(arr)


class ConceptModel(nn.Module):
    """Base class of concept models: a bottleneck of concept activations, then a task head.

    Subclasses build their layers in ``_build`` and train them in ``_train``; they implement
    :meth:`concept_logits`, :meth:`bottleneck` and :meth:`task_from_bottleneck`. Explainers of
    the ``concept`` family accept any subclass.

    Fitted attributes
    -----------------
    n_features_in_, n_concepts_, n_classes_ : int
    concept_names_ : list of str
    """

    n_features_in_: int
    n_concepts_: int
    n_classes_: int
    concept_names_: list[str]

    def __init__(self):
        super().__init__()

    # -- parameters (scikit-learn style) ------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def _store(self, arguments: dict) -> None:
        """Store the constructor's arguments (its ``locals()``) under their own names."""
        for p in self._param_names():
            setattr(self, p, arguments[p])

    def get_params(self, deep: bool = True) -> dict:
        """The hyper-parameters passed to the constructor, by name."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params) -> ConceptModel:
        """Set hyper-parameters (takes effect at the next ``fit``); unknown names raise."""
        unknown = sorted(set(params) - set(self._param_names()))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameter(s) {unknown}; it takes "
                            f"{', '.join(self._param_names())}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())

    # -- fitting ----------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_concepts_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit(X, C, y) first")

    def _check_hyper_parameters(self) -> None:
        check_positive_int(epochs=self.epochs)
        if self.batch_size is not None:
            check_positive_int(batch_size=self.batch_size)
        if self.n_threads is not None:
            check_positive_int(n_threads=self.n_threads)
        _check_sizes("hidden_sizes", self.hidden_sizes)
        _check_sizes("task_hidden_sizes", self.task_hidden_sizes)
        for name in ("learning_rate", "concept_loss_weight", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number >= 0; got {v!r}")

    def fit(self, X, C, y, *, concept_names: Sequence[str] | None = None) -> ConceptModel:
        """Build the layers and train them.

        Parameters
        ----------
        X : array-like, shape (N, F)
            Features.
        C : array-like, shape (N, n_concepts)
            Concept labels in [0, 1] (0/1, or probabilities).
        y : array-like of int, shape (N,)
            Task labels 0..K-1, K >= 2.
        concept_names : sequence of str, optional
            One name per concept; default ``c0, c1, ...``.

        Returns
        -------
        self
        """
        self._check_hyper_parameters()
        x = self._check_X(X, fitted=False)
        c = check_concepts(C, x.shape[0])
        t = _check_labels(y, x.shape[0])
        names = [f"c{i}" for i in range(c.shape[1])] if concept_names is None else list(concept_names)
        if len(names) != c.shape[1]:
            raise ValueError(f"concept_names must name the {c.shape[1]} concepts; got {len(names)}")
        seed = self.random_state
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        elif isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"random_state must be an int or None; got {seed!r}")
        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for name in list(self._modules):  # a second fit starts afresh
                delattr(self, name)
            self._build(x.shape[1], c.shape[1], int(t.max()) + 1)
        threads = torch.get_num_threads()
        self.train()
        try:
            if self.n_threads is not None:
                torch.set_num_threads(int(self.n_threads))
            self._train(x, c, t, gen)
        finally:
            torch.set_num_threads(threads)
            self.eval()
        self.n_features_in_, self.n_concepts_ = x.shape[1], c.shape[1]
        self.n_classes_ = int(t.max()) + 1
        self.concept_names_ = names
        return self

    def _build(self, n_features: int, n_concepts: int, n_classes: int) -> None:
        raise NotImplementedError

    def _train(self, x: torch.Tensor, c: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _optimise(self, params: Iterable[nn.Parameter], loss: Callable[[torch.Tensor], torch.Tensor],
                  n: int, gen: torch.Generator) -> None:
        """``epochs`` passes of AdamW over ``n`` rows; ``loss(idx)`` is the loss of rows ``idx``."""
        opt = torch.optim.AdamW(list(params), lr=self.learning_rate, weight_decay=self.weight_decay)
        bs = n if self.batch_size is None else min(int(self.batch_size), n)
        for _ in range(int(self.epochs)):
            order = torch.randperm(n, generator=gen) if bs < n else torch.arange(n)
            for start in range(0, n, bs):
                opt.zero_grad()
                loss(order[start : start + bs]).backward()
                opt.step()

    # -- torch interface ----------------------------------------------------------------------
    def _check_X(self, X, fitted: bool = True) -> torch.Tensor:
        x = as_float_tensor(X, "X")
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"X must have shape (N, F) with N >= 1; got {tuple(x.shape)}")
        if fitted:
            self._check_fitted()
            if x.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {x.shape[1]} features but {type(self).__name__} was fitted "
                                 f"on {self.n_features_in_}; expected shape (N, {self.n_features_in_})")
        return x

    def _check_tensor(self, x: torch.Tensor) -> None:
        self._check_fitted()
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"{type(self).__name__} takes inputs of shape (N, {self.n_features_in_}); "
                             f"got {tuple(x.shape)}")

    def concept_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted concept logits ``(N, n_concepts)`` (before any intervention)."""
        raise NotImplementedError

    def bottleneck(self, x: torch.Tensor, concepts: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
        """Concept activations ``(N, n_concepts)`` in [0, 1] fed to the task head.

        Parameters
        ----------
        x : torch.Tensor, shape (N, F)
        concepts : torch.Tensor, shape (N, n_concepts), optional
            True concept values for an intervention.
        mask : torch.Tensor of bool, shape (N, n_concepts) or (n_concepts,), optional
            Where to replace the predicted activation by ``concepts`` (default: everywhere
            when ``concepts`` is given).
        """
        a = self._activation(self.concept_logits(x))
        return _intervened(a, concepts, mask)

    def _activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def task_from_bottleneck(self, x: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        """Task logits ``(N, K)`` for given concept activations ``(N, n_concepts)``.

        ``x`` is needed by models whose task head sees more than the activations (CEM).
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Task logits ``(N, K)`` for features ``x`` ``(N, F)``."""
        return self.task_from_bottleneck(x, self.bottleneck(x))

    # -- numpy interface ----------------------------------------------------------------------
    def _numpy(self, fn: Callable[..., torch.Tensor], X, *extra: torch.Tensor) -> np.ndarray:
        """``fn`` on chunks of 8192 rows of ``X`` and of the ``extra`` tensors, on the model's
        device, without gradients."""
        x = self._check_X(X)
        device = next(self.parameters()).device
        with torch.no_grad():
            out = [fn(*(t[s : s + 8192].to(device) for t in (x, *extra))).float().cpu()
                   for s in range(0, x.shape[0], 8192)]
        return torch.cat(out).numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Task class probabilities, shape (N, K), float32."""
        return self._numpy(lambda x: torch.softmax(self(x), 1), X)

    def predict(self, X) -> np.ndarray:
        """Task labels, shape (N,), int64."""
        return self.predict_proba(X).argmax(1).astype(np.int64)

    def predict_concept_proba(self, X) -> np.ndarray:
        """Predicted concept probabilities, shape (N, n_concepts), float32."""
        return self._numpy(lambda x: torch.sigmoid(self.concept_logits(x)), X)

    def predict_concepts(self, X) -> np.ndarray:
        """Predicted concepts as 0/1, shape (N, n_concepts), float32 (probability > 0.5)."""
        return (self.predict_concept_proba(X) > 0.5).astype(np.float32)


def _intervened(a: torch.Tensor, concepts: torch.Tensor | None, mask: torch.Tensor | None
                ) -> torch.Tensor:
    if concepts is None:
        if mask is not None:
            raise ValueError("an intervention mask needs the true concepts (concepts=)")
        return a
    if concepts.shape != a.shape:
        raise ValueError(f"concepts must have shape {tuple(a.shape)}; got {tuple(concepts.shape)}")
    concepts = concepts.to(a.device, a.dtype)
    if mask is None:
        return concepts
    mask = mask.to(a.device, torch.bool)
    if mask.shape not in (a.shape, a.shape[1:]):
        raise ValueError(f"mask must have shape {tuple(a.shape)} or {tuple(a.shape[1:])}; got "
                         f"{tuple(mask.shape)}")
    return torch.where(mask, concepts, a)


class ConceptBottleneckModel(ConceptModel):
    """Concept Bottleneck Model: features -> concepts -> task.

    Parameters
    ----------
    training_scheme : {"joint", "sequential", "independent"}
        How the concept encoder g and the task head f are trained (Koh et al. 2020):
        ``independent`` trains g on the concepts and f on the *true* concepts; ``sequential``
        trains g, then f on g's (frozen) predictions; ``joint`` trains both at once on
        ``task loss + concept_loss_weight x concept loss``. (Not called ``training``: that name
        is ``nn.Module``'s train/eval flag.)
    concept_activation : {"sigmoid", "hard"}
        What the task head sees: concept probabilities, or probabilities thresholded at 0.5
        (joint training then passes gradients straight through the threshold).
    hidden_sizes : sequence of int
        Hidden widths of the concept encoder (LeakyReLU MLP ending in ``n_concepts`` logits).
    task_hidden_sizes : sequence of int
        Hidden widths of the task head; ``()`` makes it linear.
    concept_loss_weight : float
        Weight of the concept loss (binary cross-entropy) against the task loss
        (cross-entropy) in joint training; the default 2 is the CEM paper's tutorial
        (``concept + 0.5 x task``) up to scale.
    epochs : int
        Passes over the training data (per stage for ``independent`` and ``sequential``).
    learning_rate, weight_decay : float
        AdamW settings.
    batch_size : int or None
        Rows per step; ``None`` trains on the full batch.
    n_threads : int or None
        Torch intra-op threads while fitting (the setting is restored after): small models
        train fastest on one, and several threads slow down badly on a busy machine.
        ``None`` keeps torch's setting.
    random_state : int or None
        Seeds initialisation and shuffling; the same seed gives the same model.
    """

    def __init__(self, *, training_scheme: str = "joint", concept_activation: str = "sigmoid",
                 hidden_sizes: Sequence[int] = (10, 8), task_hidden_sizes: Sequence[int] = (),
                 concept_loss_weight: float = 2.0, epochs: int = 500, learning_rate: float = 0.01,
                 weight_decay: float = 0.01, batch_size: int | None = None,
                 n_threads: int | None = 1, random_state: int | None = None):
        super().__init__()
        self._store(locals())

    def _check_hyper_parameters(self) -> None:
        check_choice("training_scheme", self.training_scheme, TRAINING_SCHEMES)
        check_choice("concept_activation", self.concept_activation, CONCEPT_ACTIVATIONS)
        super()._check_hyper_parameters()

    def _build(self, n_features, n_concepts, n_classes):
        hidden = _check_sizes("hidden_sizes", self.hidden_sizes)
        task_hidden = _check_sizes("task_hidden_sizes", self.task_hidden_sizes)
        self.concept_encoder = _mlp((n_features, *hidden, n_concepts), last_activation=False)
        self.task_head = _mlp((n_concepts, *task_hidden, n_classes), last_activation=False)

    def _activation(self, logits, straight_through: bool = False):
        """Concept activations; in joint training (``straight_through``) hard ones pass
        gradients straight through the threshold."""
        p = torch.sigmoid(logits)
        if self.concept_activation != "hard":
            return p
        hard = (p > 0.5).to(p.dtype)
        return hard + p - p.detach() if straight_through else hard

    def _train(self, x, c, y, gen):
        bce, ce = nn.functional.binary_cross_entropy_with_logits, nn.functional.cross_entropy
        enc, head = self.concept_encoder, self.task_head
        if self.training_scheme == "joint":
            w = float(self.concept_loss_weight)

            def joint(i):
                logits = enc(x[i])
                task = ce(head(self._activation(logits, straight_through=True)), y[i])
                return task + w * bce(logits, c[i])

            self._optimise(self.parameters(), joint, len(x), gen)
            return
        self._optimise(enc.parameters(), lambda i: bce(enc(x[i]), c[i]), len(x), gen)
        if self.training_scheme == "independent":
            inputs = c if self.concept_activation == "sigmoid" else (c > 0.5).to(c.dtype)
        else:
            with torch.no_grad():
                inputs = self._activation(enc(x))
        self._optimise(head.parameters(), lambda i: ce(head(inputs[i]), y[i]), len(x), gen)

    def concept_logits(self, x):
        self._check_tensor(x)
        return self.concept_encoder(x)

    def task_from_bottleneck(self, x, activations):
        return self.task_head(activations)


class ConceptEmbeddingModel(ConceptModel):
    """Concept Embedding Model: each concept is a pair of embeddings mixed by its probability.

    For concept i, a context generator maps the encoder's features to a positive and a negative
    embedding (``embedding_size`` each); a scoring layer shared by all concepts gives the
    concept probability p_i from them, and the task head sees ``p_i * positive_i + (1 - p_i) *
    negative_i`` for every concept (Espinosa Zarlenga et al. 2022). Training is joint, on
    ``task loss + concept_loss_weight x concept loss``, with RandInt: each training row's
    concept probability is replaced by the true concept with probability
    ``intervention_prob``, so that test-time interventions work.

    Parameters
    ----------
    embedding_size : int
        Width of each concept embedding.
    intervention_prob : float
        RandInt probability in [0, 1]; 0 disables training-time interventions.
    hidden_sizes : sequence of int
        Hidden widths of the shared feature encoder (LeakyReLU MLP) before the context
        generators; ``()`` feeds the features to them directly.
    task_hidden_sizes : sequence of int
        Hidden widths of the task head; ``()`` makes it linear in the embeddings.
    concept_loss_weight, epochs, learning_rate, weight_decay, batch_size, n_threads, random_state
        As for :class:`ConceptBottleneckModel`.
    """

    def __init__(self, *, embedding_size: int = 8, intervention_prob: float = 0.25,
                 hidden_sizes: Sequence[int] = (10,), task_hidden_sizes: Sequence[int] = (),
                 concept_loss_weight: float = 2.0, epochs: int = 500, learning_rate: float = 0.01,
                 weight_decay: float = 0.01, batch_size: int | None = None,
                 n_threads: int | None = 1, random_state: int | None = None):
        super().__init__()
        self._store(locals())

    def _check_hyper_parameters(self) -> None:
        check_positive_int(embedding_size=self.embedding_size)
        p = self.intervention_prob
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ValueError(f"intervention_prob must be a probability in [0, 1]; got {p!r}")
        super()._check_hyper_parameters()

    def _build(self, n_features, n_concepts, n_classes):
        hidden = _check_sizes("hidden_sizes", self.hidden_sizes)
        task_hidden = _check_sizes("task_hidden_sizes", self.task_hidden_sizes)
        m = int(self.embedding_size)
        self.encoder = _mlp((n_features, *hidden), last_activation=True)
        # one (positive, negative) context generator per concept, stacked in one layer
        width = hidden[-1] if hidden else n_features
        self.context = nn.Sequential(nn.Linear(width, n_concepts * 2 * m), nn.LeakyReLU())
        self.scorer = nn.Linear(2 * m, 1)
        self.task_head = _mlp((n_concepts * m, *task_hidden, n_classes), last_activation=False)

    def _contexts(self, x: torch.Tensor) -> torch.Tensor:
        """Per-concept contexts ``(N, n_concepts, 2 * embedding_size)``."""
        self._check_tensor(x)
        h = self.context(self.encoder(x))
        return h.reshape(x.shape[0], -1, 2 * int(self.embedding_size))

    def concept_logits(self, x):
        return self.scorer(self._contexts(x)).squeeze(-1)

    def _embed(self, ctx: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        m = int(self.embedding_size)
        a = activations.unsqueeze(-1)
        return (a * ctx[..., :m] + (1 - a) * ctx[..., m:]).flatten(1)

    def task_from_bottleneck(self, x, activations):
        return self.task_head(self._embed(self._contexts(x), activations))

    def forward(self, x):
        ctx = self._contexts(x)
        return self.task_head(self._embed(ctx, torch.sigmoid(self.scorer(ctx).squeeze(-1))))

    def _train(self, x, c, y, gen):
        bce, ce = nn.functional.binary_cross_entropy_with_logits, nn.functional.cross_entropy
        w, p_int = float(self.concept_loss_weight), float(self.intervention_prob)

        def joint(i):
            ctx = self.encoder(x[i])
            ctx = self.context(ctx).reshape(len(i), -1, 2 * int(self.embedding_size))
            logits = self.scorer(ctx).squeeze(-1)
            a = torch.sigmoid(logits)
            if p_int > 0:  # RandInt
                mask = torch.rand(a.shape, generator=gen) < p_int
                a = torch.where(mask, c[i], a)
            return ce(self.task_head(self._embed(ctx, a)), y[i]) + w * bce(logits, c[i])

        self._optimise(self.parameters(), joint, len(x), gen)
