"""Faithfulness: does the model's output follow what the attributions say matters?

Deletion and insertion curves and their areas, comprehensiveness and sufficiency (ERASER),
infidelity and sensitivity-max (Yeh et al. 2019, as Captum computes them).

The output followed is the model's output for the explained class ``exp.target`` as the
model returns it (``predict_proba`` probabilities, a torch module's logits); ``softmax=True``
turns (N, K) outputs into probabilities first. Model calls are batched over instances and
steps (``batch_size`` rows each); a model whose outputs on ``exp.inputs`` differ from
``exp.predictions`` (not the explained one) raises.

Removing a feature means replacing it by a reference input (``replacement``):

- ``"baseline"`` (default): each explanation's own baseline (the mean of ``exp.baselines``
  over its draws), or zeros when it has none. Coded categorical columns (an explanation of
  a ``TabularModel``, whose ``exp.categories`` names them) take the commonest code over the
  draws instead of their mean, a category the data holds, never a fractional code; such an
  explanation without baselines raises rather than set every column, ``age`` and
  ``income`` included, to 0 (pass a shared reference drawn from data, e.g. a fitted
  ``training_sample``);
- any baseline (:mod:`xai_suite.baselines`: a name such as ``"blur"``, a number, a callable,
  a spec such as ``{"name": "blur", "sigma": 2.0}`` or a :class:`~xai_suite.baselines.Baseline`,
  fitted where it learns from data), shared by every explanation compared. Random baselines
  are drawn once per instance, seeded by ``random_state`` and the instance, whatever the batch.

Features are the input's elements, removed in decreasing order of attribution (signed by
default: the most positive evidence first; ``absolute=True`` orders by ``|attribution|``);
ties keep the elements' memory order. Text explanations' features are their units (tokens,
words or sentences, whatever level they attribute), replaced by the explanation's baseline
token (or a text baseline given as ``replacement``): the output followed is the explained
scalariser of the continuation.

Every removal metric (the curves and their areas, comprehensiveness, sufficiency and
infidelity's ``"removal"`` perturbations) works through one removal view of the explanation
(see :class:`_ArrayView`): the elements' attributions, and the output with some elements
replaced. Array explanations get :class:`_ArrayView`; results of other modalities bring their
own from ``exp.faithfulness_view(model, replacement=, softmax=, batch_size=)`` (a text
explanation's units: :class:`xai_suite_llm.attribution.TextExplanation`). ``sensitivity_max``
perturbs input values and so takes array explanations only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .._validation import check_choice, check_positive_int, check_positive_number
from ..baselines import ensure_baseline
from ..batching import chunks
from ..batching import softmax as _softmax
from ..modeling import MODEL_KINDS, ModelWrapper
from .registry import register_metric
from .statistics import instance_generators

#: ERASER's bins: the top 1, 5, 10, 20 and 50% of the features.
ERASER_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)


# -- shared pieces ---------------------------------------------------------------------------
@contextlib.contextmanager
def target_outputs(model, *, batch_size: int = 256, device="auto", softmax: bool = False
                   ) -> Iterator[Callable[[torch.Tensor, np.ndarray], np.ndarray]]:
    """``f(x (M, ...), target (M,)) -> (M,)``: the model's float64 output for ``target``.

    The model is in eval mode on ``device`` while the context is open; calls take
    ``batch_size`` rows; ``softmax=True`` gives probabilities.
    """
    check_positive_int(batch_size=batch_size)
    wrapper = ModelWrapper(model, device=device)
    with wrapper.prepared():
        def f(x: torch.Tensor, target: np.ndarray) -> np.ndarray:
            out = wrapper.predict(x.to(wrapper.device), int(batch_size)).astype(np.float64)
            out = _softmax(out) if softmax else out
            return out[np.arange(len(out)), target]

        f.wrapper = wrapper  # type: ignore[attr-defined]
        yield f


def _check_model(exp, wrapper: ModelWrapper, batch_size: int) -> None:
    out = wrapper.predict(torch.from_numpy(np.ascontiguousarray(exp.inputs)).to(wrapper.device),
                          int(batch_size))
    pred = np.asarray(exp.predictions)
    scale = max(1.0, float(np.abs(pred).max()))
    if out.shape != pred.shape or not np.allclose(out, pred, rtol=1e-3, atol=1e-4 * scale):
        diff = "shape " + str(out.shape) if out.shape != pred.shape else \
            f"max difference {float(np.abs(out - pred).max()):.3g}"
        raise ValueError(f"the model's outputs on exp.inputs differ from exp.predictions ({diff}); "
                         "pass the model that was explained")


def replacement_values(exp, replacement="baseline", *, random_state: int | None = 0) -> np.ndarray:
    """What a removed element is replaced with, for every element of every instance.

    Parameters
    ----------
    exp : Explanation
    replacement : "baseline" or a baseline spec
        See the module docstring.
    random_state : int or None
        Seeds random baselines (per instance).

    Returns
    -------
    numpy.ndarray, shape (N, ...)
        The inputs' shape and dtype.
    """
    x = np.asarray(exp.inputs)
    if isinstance(replacement, str) and replacement == "baseline":
        coded = _coded_columns(exp)
        if exp.baselines is None:
            if coded.size:
                raise ValueError(
                    f"{exp.method} recorded no baselines, and zeros are no reference for coded "
                    f"categorical columns ({', '.join(exp.categories)}) nor for the numeric ones: "
                    "pass replacement= a reference drawn from data, e.g. "
                    "TrainingSample().fit(X_train) (X_train coded as the explanation's inputs)")
            return np.zeros_like(x)
        b = np.asarray(exp.baselines, dtype=x.dtype)
        if b.ndim != x.ndim + 1 or b.shape[1:] != x.shape:
            raise ValueError(f"exp.baselines must have shape (S, *inputs.shape) = (S, {x.shape}); "
                             f"got {b.shape}")
        ref = b.mean(0)
        if coded.size:  # the commonest code of the draws (ties: the lowest), never a fractional one
            codes = np.rint(b[:, :, coded]).astype(np.int64)  # (S, N, C)
            counts = (codes[..., None] == np.arange(codes.max() + 1)).sum(0)  # (N, C, K)
            ref[:, coded] = counts.argmax(-1)
        return ref
    try:
        ref = ensure_baseline(replacement)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"replacement must be 'baseline' (each explanation's own) or a baseline "
                         f"name, number, callable, spec or Baseline: {exc.args[0]}") from None
    if not ref.is_fitted:
        raise ValueError(f"replacement {ref.name!r} learns from training data: pass it fitted, "
                         f"e.g. {type(ref).__name__}().fit(X_train)")
    xt, target = torch.from_numpy(np.ascontiguousarray(x)), np.asarray(exp.target)
    if not ref.stochastic:
        return ref.sample(xt, target, 1, np.random.default_rng(0))[0].numpy()
    return np.concatenate([ref.sample(xt[i : i + 1], target[i : i + 1], 1, g)[0].numpy()
                           for i, g in enumerate(instance_generators(x, random_state))])


def _coded_columns(exp) -> np.ndarray:
    """Indices of the coded categorical columns of a tabular explanation (``exp.categories``).

    Returns
    -------
    numpy.ndarray of int64, shape (C,)
        Empty where the explanation codes no column.
    """
    categories = getattr(exp, "categories", None)
    if not categories:
        return np.zeros(0, dtype=np.int64)
    names = list(exp.feature_names)
    return np.array([names.index(c) for c in categories], dtype=np.int64)


def removal_ranks(attributions, absolute: bool = False) -> np.ndarray:
    """Position of every element in the removal order (0: removed first), per instance.

    Parameters
    ----------
    attributions : array-like, shape (N, ...)
    absolute : bool
        Order by ``|attributions|`` instead of the signed values.

    Returns
    -------
    numpy.ndarray of int64, shape (N, D)
    """
    a = np.asarray(attributions, dtype=np.float64)
    a = a.reshape(a.shape[0], -1)
    if not np.isfinite(a).all():
        raise ValueError("attributions contain NaN or infinite values")
    if absolute:
        a = np.abs(a)
    return np.argsort(np.argsort(-a, axis=1, kind="stable"), axis=1)  # the order's inverse permutation


class _ArrayView:
    """Array explanations for the removal metrics: elements, and outputs with some replaced.

    The removal view every metric of this module works through (results of other
    modalities bring their own from ``exp.faithfulness_view``, e.g. a text explanation's
    units): ``n`` instances; ``attributions`` (N, D) float64, one per element removed;
    ``fx`` (N,) the output followed on the inputs; ``outputs(inst (M,), present (M, D) bool)
    -> (M,)`` the output of instance ``inst[m]`` with its absent elements replaced; and
    ``generators(random_state)``, one random generator per instance (seeded by it).
    """

    def __init__(self, exp, f, replacement, random_state):
        x = np.ascontiguousarray(exp.inputs)
        self.n, self.shape = x.shape[0], x.shape[1:]
        self.attributions = np.asarray(exp.attributions, dtype=np.float64).reshape(self.n, -1)
        self.x = torch.from_numpy(x).reshape(self.n, -1)
        self.ref = torch.from_numpy(replacement_values(exp, replacement, random_state=random_state)
                                    ).reshape(self.n, -1)
        self.target, self.f = np.asarray(exp.target), f
        self.fx = f(torch.from_numpy(x), self.target)

    def outputs(self, inst: torch.Tensor, present: torch.Tensor) -> np.ndarray:
        rows = torch.where(present, self.x[inst], self.ref[inst]).reshape(-1, *self.shape)
        return self.f(rows, self.target[inst.numpy()])

    def generators(self, random_state) -> list[np.random.Generator]:
        return instance_generators(self.x.numpy(), random_state)


def _has_own_view(exp) -> bool:
    """Whether ``exp`` brings its own removal view (a result of another modality, e.g. text)."""
    return getattr(exp, "faithfulness_view", None) is not None


@contextlib.contextmanager
def _view(exp, model, *, replacement, softmax, random_state, batch_size, device):
    """The explanation's removal view (see :class:`_ArrayView`)."""
    if _has_own_view(exp):
        yield exp.faithfulness_view(model, replacement=replacement, softmax=softmax, batch_size=batch_size)
        return
    if getattr(exp, "n_inputs", 1) > 1:
        raise ValueError("the removal metrics take explanations of one model input; a model of "
                         "several inputs has no single removal order across them")
    with target_outputs(model, batch_size=batch_size, device=device, softmax=softmax) as f:
        _check_model(exp, f.wrapper, batch_size)
        yield _ArrayView(exp, f, replacement, random_state)


def _replaced_outputs(exp, model, counts: Callable[[int], np.ndarray], *, keep_top: bool,
                      absolute: bool, batch_size, **view_opts) -> tuple[np.ndarray, np.ndarray]:
    """Outputs with the top ``counts(D)[s]`` of the ``D`` elements replaced (or, ``keep_top``,
    all but them).

    Returns ``f(x)`` (N,) and the outputs (N, S), each row of instances x counts batched.
    """
    with _view(exp, model, batch_size=batch_size, **view_opts) as view:
        ranks = torch.from_numpy(removal_ranks(view.attributions, absolute))
        c = torch.as_tensor(np.asarray(counts(ranks.shape[1]), dtype=np.int64))
        s = len(c)

        def rows(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            i = p // s
            top = ranks[i] < c[p % s].unsqueeze(1)
            return i, top if keep_top else ~top

        values = _view_outputs(view, s, rows, batch_size, "removal curves")
        return np.asarray(view.fx, dtype=np.float64), values


def _view_outputs(view, s: int, rows: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                  batch_size: int, desc: str) -> np.ndarray:
    """``s`` outputs per instance of ``view``, ``batch_size`` rows per call, shape (N, s).

    ``rows(p (r,)) -> (instances (r,), present (r, D))`` builds rows ``p`` (instance-major).
    """
    values = np.empty(view.n * s)
    for sl in chunks(view.n * s, batch_size, desc):
        values[sl] = view.outputs(*rows(torch.arange(sl.start, sl.stop)))
    return values.reshape(view.n, s)


def _curve(exp, model, *, insertion: bool, n_steps, **opts) -> tuple[np.ndarray, np.ndarray]:
    check_positive_int(n_steps=n_steps)
    fractions = np.arange(n_steps + 1) / n_steps

    def counts(d: int) -> np.ndarray:
        return np.floor(fractions * d + 0.5).astype(np.int64)  # rounded half up

    return fractions, _replaced_outputs(exp, model, counts, keep_top=insertion, **opts)[1]


# -- deletion and insertion ----------------------------------------------------------------
def deletion_curve(exp, model, *, n_steps: int = 20, replacement="baseline", absolute: bool = False,
                   softmax: bool = False, random_state: int | None = 0, batch_size: int = 256,
                   device="auto") -> tuple[np.ndarray, np.ndarray]:
    """The output as the top ``round(f D)`` of the ``D`` elements are replaced, per fraction ``f``.

    See the module docstring. A faithful attribution makes the output drop fast.

    Parameters
    ----------
    exp : Explanation
    model : the explained model (torch module, estimator or callable)
    n_steps : int
        Fractions ``0, 1/n_steps, ..., 1``.
    replacement : "baseline" or a baseline spec
        Each explanation's own baseline, or one shared reference (see the module docstring).
    absolute : bool
        Rank by ``|attributions|``.
    softmax : bool
        Follow softmax probabilities instead of the raw outputs.
    random_state : int or None
        Seeds random replacements.
    batch_size : int
        Rows per model call.
    device : str
        Torch models: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    fractions : numpy.ndarray, shape (S,)
        ``S = n_steps + 1`` fractions from 0 to 1.
    values : numpy.ndarray of float64, shape (N, S)
        Output for the target class at each fraction.
    """
    return _curve(exp, model, insertion=False, n_steps=n_steps, replacement=replacement, absolute=absolute,
                  softmax=softmax, random_state=random_state, batch_size=batch_size, device=device)


def insertion_curve(exp, model, *, n_steps: int = 20, replacement="baseline", absolute: bool = False,
                    softmax: bool = False, random_state: int | None = 0, batch_size: int = 256,
                    device="auto") -> tuple[np.ndarray, np.ndarray]:
    """The output as only the top ``round(f D)`` elements keep their values, per fraction ``f``.

    A faithful attribution makes the output rise fast. Parameters and returns as
    :func:`deletion_curve`.
    """
    return _curve(exp, model, insertion=True, n_steps=n_steps, replacement=replacement, absolute=absolute,
                  softmax=softmax, random_state=random_state, batch_size=batch_size, device=device)


@register_metric("deletion_auc", kind="faithfulness", needs=("model",), higher_is_better=False,
                 summary="Area under the deletion curve (output as top features are removed)")
def deletion_auc(exp, *, model, n_steps: int = 20, replacement="baseline", absolute: bool = False,
                 softmax: bool = False, random_state: int | None = 0, batch_size: int = 256,
                 device="auto") -> np.ndarray:
    """Area under :func:`deletion_curve` over fractions in [0, 1] (trapezoid rule).

    Lower is better. Parameters as :func:`deletion_curve`.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    fractions, values = deletion_curve(
        exp, model, n_steps=n_steps, replacement=replacement, absolute=absolute, softmax=softmax,
        random_state=random_state, batch_size=batch_size, device=device)
    return np.trapezoid(values, fractions, axis=1)


@register_metric("insertion_auc", kind="faithfulness", needs=("model",), higher_is_better=True,
                 summary="Area under the insertion curve (output as top features are restored)")
def insertion_auc(exp, *, model, n_steps: int = 20, replacement="baseline", absolute: bool = False,
                  softmax: bool = False, random_state: int | None = 0, batch_size: int = 256,
                  device="auto") -> np.ndarray:
    """Area under :func:`insertion_curve` over fractions in [0, 1] (trapezoid rule).

    Higher is better. Parameters as :func:`insertion_curve`.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    fractions, values = insertion_curve(
        exp, model, n_steps=n_steps, replacement=replacement, absolute=absolute, softmax=softmax,
        random_state=random_state, batch_size=batch_size, device=device)
    return np.trapezoid(values, fractions, axis=1)


# -- comprehensiveness and sufficiency (ERASER) ------------------------------------------------
def _eraser(exp, model, *, keep_top: bool, fractions, **opts) -> np.ndarray:
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or not ((fr > 0) & (fr <= 1)).all():
        raise ValueError(f"fractions must be a 1-D sequence of values in (0, 1]; got {fractions!r}")

    def counts(d: int) -> np.ndarray:
        return np.maximum(1, np.ceil(fr * d - 1e-9)).astype(np.int64)

    fx, values = _replaced_outputs(exp, model, counts, keep_top=keep_top, **opts)
    return (fx[:, None] - values).mean(1)


@register_metric("comprehensiveness", kind="faithfulness", needs=("model",), higher_is_better=True,
                 summary="Output drop when the top-k% features are removed, averaged over k (ERASER)")
def comprehensiveness(exp, *, model, fractions=ERASER_FRACTIONS, replacement="baseline",
                      absolute: bool = False, softmax: bool = False, random_state: int | None = 0,
                      batch_size: int = 256, device="auto") -> np.ndarray:
    """ERASER comprehensiveness (DeYoung et al. 2020): ``f(x) - f(x without its top k%)``.

    Averaged over ``k`` in ``fractions`` (the top ``ceil(k D)`` elements, at least one).
    Higher is better.

    Parameters
    ----------
    exp : Explanation
    model : the explained model
    fractions : sequence of float in (0, 1]
        ERASER's 1, 5, 10, 20 and 50% by default.
    replacement, absolute, softmax, random_state, batch_size, device
        As for :func:`deletion_curve`.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    return _eraser(exp, model, keep_top=False, fractions=fractions, replacement=replacement,
                   absolute=absolute, softmax=softmax, random_state=random_state,
                   batch_size=batch_size, device=device)


@register_metric("sufficiency", kind="faithfulness", needs=("model",), higher_is_better=False,
                 summary="Output drop when only the top-k% features are kept, averaged over k (ERASER)")
def sufficiency(exp, *, model, fractions=ERASER_FRACTIONS, replacement="baseline", absolute: bool = False,
                softmax: bool = False, random_state: int | None = 0, batch_size: int = 256,
                device="auto") -> np.ndarray:
    """ERASER sufficiency (DeYoung et al. 2020): ``f(x) - f(only the top k% of x)``.

    Averaged over ``k`` in ``fractions``. Lower is better. Parameters as
    :func:`comprehensiveness`.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    return _eraser(exp, model, keep_top=True, fractions=fractions, replacement=replacement,
                   absolute=absolute, softmax=softmax, random_state=random_state,
                   batch_size=batch_size, device=device)


# -- infidelity and sensitivity-max (Yeh et al. 2019) -----------------------------------------
def _expanded(exp, n_perturb_samples: int) -> torch.Tensor:
    check_positive_int(n_perturb_samples=n_perturb_samples)
    x = torch.from_numpy(np.ascontiguousarray(exp.inputs, dtype=np.float32))
    return torch.repeat_interleave(x, int(n_perturb_samples), dim=0)


def _seeded_draws(exp, n_perturb_samples: int, random_state, draw) -> torch.Tensor:
    """Per-instance draws ``draw(gen, (S, *shape))`` laid out as ``repeat_interleave``."""
    shape = (int(n_perturb_samples), *exp.inputs.shape[1:])
    gens = instance_generators(exp.inputs, random_state)
    return torch.from_numpy(np.concatenate([draw(g, shape) for g in gens]).astype(np.float32))


@register_metric("infidelity", kind="faithfulness", needs=("model",), higher_is_better=False,
                 summary="Expected squared error between attribution x perturbation and the output change")
def infidelity(exp, *, model, n_perturb_samples: int = 10, perturbation: str | None = None,
               noise_std: float = 0.1, perturb_fn: Callable | None = None, normalize: bool = False,
               softmax: bool = False, random_state: int | None = 0, batch_size: int = 256,
               device="auto") -> np.ndarray:
    """Infidelity (Yeh et al. 2019): ``E_I[(I . attr - (f(x) - f(x - I)))^2]``, per instance.

    Two kinds of perturbations ``I``:

    - ``"noise"``: ``captum.metrics.infidelity``'s numbers for the same perturbations, batched
      (Gaussian noise, or ``perturb_fn``'s);
    - ``"removal"``: each element (a text explanation's unit) is removed, independently with
      probability 1/2, towards the explanation's own baseline (as :func:`deletion_curve`'s
      ``replacement="baseline"``), and ``I`` is the removal indicator: ``I . attr`` is the
      removed elements' attribution total, compared with the output's drop. This is Captum's
      infidelity on the elements' presence (1 kept, 0 the baseline) with
      ``multiply_by_inputs``: attributions complete and additive relative to the baseline
      (exact Shapley values of an additive model) score 0.

    Parameters
    ----------
    exp : Explanation
    model : the explained model
    n_perturb_samples : int
        Perturbations ``I`` per instance.
    perturbation : {"noise", "removal"} or None
        ``None``: ``"removal"`` for explanations of units (text, whose tokens take no noise),
        ``"noise"`` for the others.
    noise_std : float
        ``"noise"`` perturbations: ``I ~ N(0, noise_std^2)`` i.i.d. per element, seeded per instance.
    perturb_fn : callable, optional
        ``"noise"`` only, Captum's convention, called once: ``perturb_fn(x) -> (I, x - I)``,
        torch tensors, for ``x`` the inputs repeated ``n_perturb_samples`` times each
        (``repeat_interleave``, (N S, ...)).
    normalize : bool
        Scale the attributions by the least-squares ``beta`` first (Captum's ``normalize``).
    softmax : bool
        Follow softmax probabilities instead of the raw outputs.
    random_state : int or None
        Seeds the perturbations (per instance).
    batch_size : int
        Rows per model call.
    device : str

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    check_positive_int(n_perturb_samples=n_perturb_samples)
    s = int(n_perturb_samples)
    kind = perturbation if perturbation is not None else ("removal" if _has_own_view(exp) else "noise")
    check_choice("perturbation", kind, ("noise", "removal"))
    if kind == "removal":
        if perturb_fn is not None:
            raise ValueError("perturb_fn gives 'noise' perturbations; perturbation='removal' draws its own")
        a_dot_i, diff = _removal_perturbations(exp, model, s, softmax=softmax, random_state=random_state,
                                               batch_size=batch_size, device=device)
    else:
        if _has_own_view(exp):
            raise ValueError(f"{type(exp).__name__} attributes units that take no noise: use "
                             "perturbation='removal' (the default for it)")
        a_dot_i, diff = _noise_perturbations(exp, model, s, noise_std, perturb_fn, softmax=softmax,
                                             random_state=random_state, batch_size=batch_size, device=device)
    if normalize:
        num, den = (a_dot_i * diff).sum(1), (a_dot_i**2).sum(1)
        beta = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
        a_dot_i = beta[:, None] * a_dot_i
    return ((a_dot_i - diff) ** 2).mean(1)


def _removal_perturbations(exp, model, s: int, **view_opts) -> tuple[np.ndarray, np.ndarray]:
    """``I . attr`` and ``f(x) - f(x - I)``, both (N, s), for random removals (see :func:`infidelity`)."""
    with _view(exp, model, replacement="baseline", **view_opts) as view:
        d = view.attributions.shape[1]
        removed = np.stack([g.random((s, d)) < 0.5 for g in view.generators(view_opts["random_state"])])
        flat = torch.from_numpy(removed.reshape(-1, d))  # (N s, D), instance-major
        values = _view_outputs(view, s, lambda p: (p // s, ~flat[p]), view_opts["batch_size"], "infidelity")
        a_dot_i = (view.attributions[:, None, :] * removed).sum(2)
        return a_dot_i, np.asarray(view.fx, dtype=np.float64)[:, None] - values


def _noise_perturbations(exp, model, s: int, noise_std, perturb_fn, *, softmax, random_state, batch_size,
                         device) -> tuple[np.ndarray, np.ndarray]:
    """``I . attr`` and ``f(x) - f(x - I)``, both (N, s), for noise or ``perturb_fn``'s perturbations."""
    x_rep = _expanded(exp, s)
    if perturb_fn is None:
        check_positive_number(noise_std=noise_std)
        pert = _seeded_draws(exp, s, random_state, lambda g, sh: g.normal(0.0, noise_std, sh))
        x_pert = x_rep - pert
    else:
        pert, x_pert = (torch.as_tensor(v).float().cpu() for v in perturb_fn(x_rep))
        if pert.shape != x_rep.shape or x_pert.shape != x_rep.shape:
            raise ValueError(f"perturb_fn must return (perturbations, perturbed inputs) of shape "
                             f"{tuple(x_rep.shape)}; got {tuple(pert.shape)} and {tuple(x_pert.shape)}")
        if not (torch.isfinite(pert).all() and torch.isfinite(x_pert).all()):
            raise ValueError("perturb_fn returned NaN or infinite values")
    n = len(exp)
    target = np.asarray(exp.target)
    with target_outputs(model, batch_size=batch_size, device=device, softmax=softmax) as f:
        _check_model(exp, f.wrapper, batch_size)
        fx = f(torch.from_numpy(np.ascontiguousarray(exp.inputs, dtype=np.float32)), target)
        f_pert = np.concatenate([
            f(x_pert[p0 : p0 + batch_size], np.repeat(target, s)[p0 : p0 + batch_size])
            for p0 in range(0, n * s, batch_size)
        ])
    a = np.asarray(exp.attributions, dtype=np.float64).reshape(n, 1, -1)
    a_dot_i = (a * pert.double().numpy().reshape(n, s, -1)).sum(2)  # (N, S)
    return a_dot_i, fx[:, None] - f_pert.reshape(n, s)


def _norm(v: torch.Tensor, norm_ord) -> torch.Tensor:
    return torch.linalg.vector_norm(v, ord=2 if norm_ord == "fro" else norm_ord, dim=1)


def _re_explain(explainer, inputs: torch.Tensor, target: np.ndarray, exp, repeats: int):
    """Explain ``inputs`` again with ``explainer``, passing the explicit baselines ``exp`` used."""
    kwargs = {}
    if isinstance(exp.params.get("baseline"), dict) and exp.params["baseline"].get("name") == "explicit":
        b = torch.from_numpy(np.asarray(exp.baselines, dtype=np.float32).mean(0))
        kwargs["baselines"] = torch.repeat_interleave(b, repeats, dim=0)
    out = explainer.explain(inputs, target=target, **kwargs)
    if out.attributions.shape != tuple(inputs.shape):
        raise ValueError(f"the explainer returned attributions of shape {out.attributions.shape} for "
                         f"inputs of shape {tuple(inputs.shape)}")
    return out


@register_metric("sensitivity_max", kind="robustness", needs=("explainer",), higher_is_better=False,
                 model_kinds=tuple(k for k in MODEL_KINDS if k != "hf_causal_lm"),
                 summary="Largest relative change of the attributions under small input perturbations")
def sensitivity_max(exp, *, explainer, n_perturb_samples: int = 10, perturb_radius: float = 0.02,
                    perturb_fn: Callable | None = None, norm_ord="fro", random_state: int | None = 0
                    ) -> np.ndarray:
    """Sensitivity-max (Yeh et al. 2019): ``max_I ||attr(x + I) - attr(x)|| / ||attr(x)||``.

    Captum's ``sensitivity_max`` for the same perturbations, with ``attr(x)`` from ``exp`` (a
    zero norm counts as 1); array explanations only (a prompt's tokens take no small
    perturbations: it does not apply to ``hf_causal_lm`` models). The explainer explains all
    ``N x n_perturb_samples`` perturbed inputs in one call, with ``exp``'s targets and explicit
    baselines; a stochastic explainer adds its own sampling noise (fix its ``random_state``).

    Parameters
    ----------
    exp : Explanation
    explainer : AttributionExplainer
        The fitted explainer that made ``exp``.
    n_perturb_samples : int
    perturb_radius : float
        Default perturbations: uniform in ``[-r, r]`` per element (Captum's default
        perturbation), seeded per instance.
    perturb_fn : callable, optional
        Captum's convention: ``perturb_fn(x) -> x + I`` for ``x`` the inputs repeated
        ``n_perturb_samples`` times each (``repeat_interleave``), a torch tensor.
    norm_ord : "fro", int, float or inf
        Norm of the flattened attributions (``"fro"``: Euclidean).
    random_state : int or None
        Seeds the default perturbations.

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    if _has_own_view(exp):
        raise ValueError(f"sensitivity_max perturbs input values; {type(exp).__name__} attributes units "
                         "(a prompt's tokens) that take no small perturbations")
    s = int(n_perturb_samples)
    x_rep = _expanded(exp, s)
    if perturb_fn is None:
        check_positive_number(perturb_radius=perturb_radius)
        r = float(perturb_radius)
        x_pert = x_rep + _seeded_draws(exp, s, random_state, lambda g, sh: g.uniform(-r, r, sh))
    else:
        x_pert = torch.as_tensor(perturb_fn(x_rep)).float().cpu()
        if x_pert.shape != x_rep.shape:
            raise ValueError(f"perturb_fn must return perturbed inputs of shape {tuple(x_rep.shape)}; "
                             f"got {tuple(x_pert.shape)}")
        if not torch.isfinite(x_pert).all():
            raise ValueError("perturb_fn returned NaN or infinite values")
    n = len(exp)
    again = _re_explain(explainer, x_pert, np.repeat(exp.target, s), exp, s).attributions
    a = torch.from_numpy(np.asarray(exp.attributions, dtype=np.float32)).reshape(n, -1)
    diff = torch.from_numpy(again).reshape(n, s, -1) - a[:, None, :]
    base = _norm(a, norm_ord)
    base = torch.where(base == 0, torch.ones_like(base), base)
    sens = _norm(diff.reshape(n * s, -1), norm_ord).reshape(n, s) / base[:, None]
    return sens.max(1).values.double().numpy()
