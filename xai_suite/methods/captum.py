"""Captum backend: ``captum:`` entries for every Captum attribution method fit for a classifier.

Captum is imported when a method is first used. Our single ``batch_size`` knob (rows per
model call) maps to Captum's own chunking argument (``internal_batch_size``,
``nt_samples_batch_size``, ``perturbations_per_eval``), with instances chunked around it.
Defaults are explicit: where ours differ from Captum's, the parameter's docstring says so.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import warnings
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .._validation import check_positive_int
from ..base import (
    Attribution,
    Batched,
    Call,
    GradientExplainer,
    PerturbationExplainer,
    PropagationExplainer,
    Seeded,
    SurrogateExplainer,
)
from ..baselines import BaselineSpec
from ..batching import chunks, progress
from ..modeling import _as_2d_output
from ..registry import register_explainer

ALL = ("tabular", "timeseries", "image")
TORCH = ("torch",)
ANY_MODEL = ("torch", "sklearn", "aeon", "callable")
_register = functools.partial(register_explainer, library="captum", requires=("captum",), modalities=ALL)
CAPTUM = "Kokhlikyan et al. (2020), Captum: A unified and generic model interpretability library"


def _attr():
    import captum.attr

    return captum.attr


class _Outputs2D(nn.Module):
    """Wraps a module so that ``(N,)`` outputs become ``(N, 1)``, as for every other path."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return _as_2d_output(self.module(x), x.shape[0])


def _chunked(call: Call, rows_per_instance: int, fn: Callable[[slice, int], torch.Tensor]):
    """Run ``fn(instances, inner_rows)`` over chunks of instances and concatenate.

    A chunk holds as many instances as fit in ``call.rows`` rows at ``rows_per_instance``
    rows each (at least one); ``inner_rows`` is the row budget left per instance.
    """
    n = call.x.shape[0]
    per = max(1, call.rows // max(1, rows_per_instance))
    inner = max(1, call.rows // per)
    return torch.cat([fn(sl, inner) for sl in chunks(n, per)])


@contextlib.contextmanager
def _seeded(call: Call):
    """Seed torch and numpy's global generators from ``random_state``; restore them after.

    Captum draws from both global generators (GradientSHAP from ``np.random``).
    """
    seed = int(call.rng.integers(2**31 - 1))
    np_state = np.random.get_state()  # noqa: NPY002
    devices = [call.x.device] if call.x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        try:
            yield
        finally:
            np.random.set_state(np_state)  # noqa: NPY002


@contextlib.contextmanager
def _quiet():
    """Silence Captum's notices about temporarily attached hooks."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Hh]ooks.*")
        warnings.filterwarnings("ignore", message=".*non-linear.*")
        warnings.filterwarnings("ignore", message=".*requires_grad.*")
        yield


def _grad_input(x: torch.Tensor) -> torch.Tensor:
    return x.clone().requires_grad_(True)


def _row_by_row(call: Call, algo, **kwargs) -> torch.Tensor:
    """``algo.attribute`` over chunks of ``call.rows`` instances (inputs requiring grad), quietly."""
    tgt = call.target_t
    with _quiet():
        return _chunked(call, 1, lambda sl, _: algo.attribute(_grad_input(call.x[sl]), target=tgt[sl],
                                                              **kwargs))


def _per_instance(call: Call, desc: str, fn: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``fn(i)`` for every instance ``i``, each after seeding both generators with the instance's
    own seed: the same draws alone or in a batch."""
    parts = []
    with _seeded(call):
        for i in progress(len(call.x), desc, min_steps=20):
            s = int(call.instance_rngs()[i].integers(2**31 - 1))
            torch.manual_seed(s)
            np.random.seed(s)  # noqa: NPY002
            parts.append(fn(i))
    return torch.cat(parts)


# -- gradient methods ----------------------------------------------------------------------
class _SimpleGradient(GradientExplainer, Batched):
    """One gradient call per instance: saliency, input x gradient, guided backprop, deconvolution."""

    _captum_class: ClassVar[str]
    _needs_module = False

    def _kwargs(self) -> dict:
        return {}

    def _attribute(self, call, *, baselines, feature_mask):
        fwd = _Outputs2D(call.model.model) if self._needs_module else call.model.forward
        return Attribution(_row_by_row(call, getattr(_attr(), self._captum_class)(fwd), **self._kwargs()))


@_register(
    "saliency", multi_input=True, model_kinds=TORCH,
    summary="Gradient of the target output with respect to the input (signed by default)",
    reference="Simonyan, Vedaldi & Zisserman (2014), Deep Inside Convolutional Networks",
)
class Saliency(_SimpleGradient):
    """Saliency: the input gradient.

    Parameters
    ----------
    abs : bool
        Take absolute values. Default ``False`` keeps the sign (Captum's default is ``True``).
    """

    _captum_class = "Saliency"

    abs: bool = False

    def _kwargs(self):
        return {"abs": bool(self.abs)}


@_register(
    "input_x_gradient", multi_input=True, model_kinds=TORCH,
    summary="Input times its gradient", reference="Shrikumar et al. (2016), Not Just a Black Box",
)
class InputXGradient(_SimpleGradient):
    """Input x gradient."""

    _captum_class = "InputXGradient"


@_register(
    "guided_backprop", model_kinds=TORCH,
    summary="Gradient with negative gradients zeroed at every ReLU module",
    reference="Springenberg et al. (2015), Striving for Simplicity",
    notes="Only ReLUs that are nn.ReLU modules are overridden; functional relu calls are not.",
)
class GuidedBackprop(_SimpleGradient):
    """Guided backpropagation (overrides ``nn.ReLU`` modules' gradients)."""

    _captum_class = "GuidedBackprop"
    _needs_module = True


@_register(
    "deconvolution", model_kinds=TORCH,
    summary="Deconvnet: gradient passed through ReLU modules by the sign of the gradient",
    reference="Zeiler & Fergus (2014), Visualizing and Understanding Convolutional Networks",
    notes="Only ReLUs that are nn.ReLU modules are overridden; functional relu calls are not.",
)
class Deconvolution(_SimpleGradient):
    """Deconvolution (Zeiler & Fergus)."""

    _captum_class = "Deconvolution"
    _needs_module = True


@_register(
    "integrated_gradients", multi_input=True, model_kinds=TORCH, needs_baseline=True,
    has_convergence_delta=True,
    summary="Captum's integrated gradients (one baseline draw per instance)",
    reference="Sundararajan, Taly & Yan (2017), Axiomatic Attribution for Deep Networks",
)
class CaptumIntegratedGradients(GradientExplainer, Batched, Seeded):
    """Captum's ``IntegratedGradients``; ``batch_size`` maps to ``internal_batch_size``.

    Parameters
    ----------
    baseline : str, float, callable or Baseline
        ``"zeros"`` as in Captum.
    n_steps : int
        50, as in Captum.
    quadrature : str
        Captum's ``method``: ``"gausslegendre"``, as in Captum. Its ``riemann_trapezoid``
        weights sum to ``1 - 1/n_steps`` (see ``native:integrated_gradients``).
    """

    baseline: BaselineSpec = "zeros"
    n_steps: int = 50
    quadrature: str = "gausslegendre"

    def _attribute(self, call, *, baselines, feature_mask):
        check_positive_int(n_steps=self.n_steps)
        b = self._baselines(call, baselines)
        algo = _attr().IntegratedGradients(call.model.forward)
        tgt = call.target_t

        def run(sl, _):
            # Captum integrates all instances of a chunk together, internal_batch_size rows
            # (at least one step of every instance) per call.
            return algo.attribute(
                call.x[sl], baselines=b[0, sl], target=tgt[sl], n_steps=self.n_steps,
                method=self.quadrature, internal_batch_size=max(call.rows, sl.stop - sl.start),
            )

        return Attribution(_chunked(call, self.n_steps, run), b)


class _NoiseTunnel(GradientExplainer, Batched, Seeded):
    _nt_type: ClassVar[str]

    nt_samples: int = 25
    stdevs: float = 0.15

    def _attribute(self, call, *, baselines, feature_mask):
        check_positive_int(nt_samples=self.nt_samples)
        a = _attr()
        algo = a.NoiseTunnel(a.Saliency(call.model.forward))
        tgt = call.target_t

        def run(sl, inner):
            return algo.attribute(
                call.x[sl], nt_type=self._nt_type, nt_samples=self.nt_samples,
                nt_samples_batch_size=min(self.nt_samples, inner), stdevs=float(self.stdevs),
                target=tgt[sl], abs=False,
            )

        with _seeded(call):
            return Attribution(_chunked(call, self.nt_samples, run))


_NT_DOC = """

    Parameters
    ----------
    nt_samples : int
        Noisy copies per instance (Captum's default is 5).
    stdevs : float
        Standard deviation of the Gaussian noise, in input units (Captum's default is 1.0).
    random_state : int, optional
        Seeds the noise.
    """


@_register(
    "smoothgrad", model_kinds=TORCH, stochastic=True,
    summary="Mean saliency over noisy copies of the input (Captum NoiseTunnel)",
    reference="Smilkov et al. (2017), SmoothGrad: removing noise by adding noise",
    notes="Captum draws the noise per chunk, so results depend on batch_size; fix it to compare runs.",
)
class SmoothGrad(_NoiseTunnel):
    __doc__ = "SmoothGrad over signed saliency." + _NT_DOC
    _nt_type = "smoothgrad"


@_register(
    "vargrad", model_kinds=TORCH, stochastic=True,
    summary="Variance of saliency over noisy copies of the input (non-negative by definition)",
    reference="Adebayo et al. (2018), Local explanation methods for deep neural networks lack "
    "sensitivity to parameter values",
    notes="A variance: non-negative up to rounding (Captum computes E[g^2] - E[g]^2, which "
    "can come out a few ulps below zero). Captum draws the noise per chunk, so results depend "
    "on batch_size; fix it to compare runs.",
)
class VarGrad(_NoiseTunnel):
    __doc__ = "VarGrad: variance of saliency under input noise." + _NT_DOC
    _nt_type = "vargrad"


@_register(
    "deeplift", model_kinds=TORCH, needs_baseline=True, has_convergence_delta=True,
    summary="DeepLIFT (rescale rule): contributions relative to a baseline; complete on ReLU nets",
    reference="Shrikumar, Greenside & Kundaje (2017), Learning Important Features Through "
    "Propagating Activation Differences",
    notes="Non-linearities must be modules (nn.ReLU, ...) for the rescale rule to apply. "
    "Captum's max-pooling rule is not complete with non-zero baselines (captum#1276 and "
    "beyond): the reported delta shows it.",
)
class DeepLift(GradientExplainer, Batched, Seeded):
    """DeepLIFT with the rescale rule.

    Parameters
    ----------
    baseline : str, float, callable or Baseline
        ``"zeros"`` as in Captum.
    """

    baseline: BaselineSpec = "zeros"

    def _attribute(self, call, *, baselines, feature_mask):
        b = self._baselines(call, baselines)
        return Attribution(_deeplift_pairs(call, b), b)


def _deeplift_pairs(call: Call, b: torch.Tensor) -> torch.Tensor:
    """Mean DeepLIFT attribution over the ``S`` baseline draws of every instance.

    Each (draw, instance) pair is one DeepLIFT row, as inside Captum's ``DeepLiftShap``,
    but with a baseline of its own per instance.
    """
    s, n = b.shape[:2]
    algo = _attr().DeepLift(_Outputs2D(call.model.model))
    x_rep = call.x.unsqueeze(0).expand_as(b).reshape(s * n, *call.x.shape[1:])
    b_flat = b.reshape(s * n, *call.x.shape[1:])
    tgt = call.target_t.repeat(s)
    rows = max(1, call.rows // 2)  # DeepLIFT runs inputs and baselines together
    with _quiet():
        parts = [
            algo.attribute(_grad_input(x_rep[i : i + rows]), baselines=b_flat[i : i + rows],
                           target=tgt[i : i + rows])
            for i in range(0, s * n, rows)
        ]
    return torch.cat(parts).reshape(s, n, *call.x.shape[1:]).mean(0)


@_register(
    "deeplift_shap", model_kinds=TORCH, needs_baseline=True, has_convergence_delta=True, stochastic=True,
    batch_invariant=True,
    summary="DeepLIFT averaged over a distribution of baselines (SHAP approximation)",
    reference="Lundberg & Lee (2017), A Unified Approach to Interpreting Model Predictions",
    notes="Captum's max-pooling rule is not complete with non-zero baselines (captum#1276 and "
    "beyond): the reported delta shows it.",
)
class DeepLiftShap(GradientExplainer, Batched, Seeded):
    """DeepLiftShap: DeepLIFT averaged over ``n_baseline_samples`` baselines per instance.

    Computed with Captum's ``DeepLift`` on (instance, baseline) pairs, which is what Captum's
    ``DeepLiftShap`` does inside; unlike it, every instance may have baselines of its own.

    Parameters
    ----------
    baseline : str, float, callable or Baseline
        Default ``"training_sample"``: a background drawn from the data given to ``fit``.
    n_baseline_samples : int
        Baselines per instance.
    """

    baseline: BaselineSpec = "training_sample"
    n_baseline_samples: int = 10

    def _attribute(self, call, *, baselines, feature_mask):
        check_positive_int(n_baseline_samples=self.n_baseline_samples)
        b = self._baselines(call, baselines, self.n_baseline_samples)
        return Attribution(_deeplift_pairs(call, b), b)


@_register(
    "gradient_shap", model_kinds=TORCH, needs_baseline=True, stochastic=True, batch_invariant=True,
    summary="Expected gradients x (input - baseline) at random points between baselines and input",
    reference="Lundberg & Lee (2017), A Unified Approach to Interpreting Model Predictions",
    notes="Complete only in expectation over its random draws, so no per-instance delta.",
)
class GradientShap(GradientExplainer, Batched, Seeded):
    """GradientSHAP, one Captum call per instance with that instance's baselines.

    Parameters
    ----------
    baseline : str, float, callable or Baseline
        Default ``"training_sample"`` (a background from the data given to ``fit``).
    n_baseline_samples : int
        Baselines drawn per instance (the distribution GradientSHAP samples from).
    n_samples : int
        Random points per instance (Captum's default is 5).
    stdevs : float
        Noise added to the input at each point (0, as in Captum).
    """

    baseline: BaselineSpec = "training_sample"
    n_baseline_samples: int = 10
    n_samples: int = 20
    stdevs: float = 0.0

    def _attribute(self, call, *, baselines, feature_mask):
        check_positive_int(n_baseline_samples=self.n_baseline_samples, n_samples=self.n_samples)
        b = self._baselines(call, baselines, self.n_baseline_samples)
        algo = _attr().GradientShap(call.model.forward)
        tgt = call.target_t
        values = _per_instance(call, "gradient shap", lambda i: algo.attribute(
            call.x[i : i + 1], baselines=b[:, i], n_samples=self.n_samples, stdevs=float(self.stdevs),
            target=tgt[i : i + 1],
        ))
        return Attribution(values, b)


# -- class activation maps -----------------------------------------------------------------
def _resolve_layer(model: nn.Module, layer, sample: torch.Tensor) -> tuple[str, nn.Module]:
    """A layer by dotted name or module; by default the last leaf module, in execution order,
    whose output keeps the input's layout (N, C', T') or (N, C', H', W') with more than one
    position, as torchcam does: typically the activation after the last convolution."""
    named = dict(model.named_modules())
    if layer is None:
        seen: list[str] = []
        names = {m: n for n, m in named.items()}

        def hook(mod, _inp, out):
            if isinstance(out, torch.Tensor) and out.ndim == sample.ndim and out.shape[2:].numel() > 1:
                seen.append(names[mod])

        handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
        try:
            with torch.no_grad():
                model(sample)
        finally:
            for h in handles:
                h.remove()
        if not seen:
            raise ValueError(
                f"{type(model).__name__} has no layer with a {sample.ndim - 2}-D spatial output to "
                "default to; pass layer='<module name>' (see model.named_modules())"
            )
        return seen[-1], named[seen[-1]]
    if isinstance(layer, nn.Module):
        for n, m in named.items():
            if m is layer:
                return n, m
        raise ValueError("layer is not a submodule of the model")
    if layer not in named:
        import difflib

        close = difflib.get_close_matches(str(layer), list(named), n=3)
        raise ValueError(f"model has no submodule {layer!r}; close names: {close or list(named)[:8]}")
    return layer, named[layer]


class _CamBase(GradientExplainer, Batched):
    layer: str | None = None


@_register(
    "grad_cam", modalities=("timeseries", "image"), model_kinds=TORCH,
    summary="Grad-CAM: gradient-weighted class activation map of a conv layer, upsampled",
    reference="Selvaraju et al. (2017), Grad-CAM",
    notes="Grad-CAM has no channel resolution: its map, upsampled to the input's length or size, is "
    "repeated across input channels.",
)
class GradCam(_CamBase):
    """Grad-CAM on a convolutional layer, upsampled to the input (linear/bilinear).

    Parameters
    ----------
    layer : str, optional
        Dotted module name; default the last module whose output keeps the input's layout
        (typically the activation after the last convolution).
    relu_attributions : bool
        Keep only positive evidence, as in the paper (Captum's default is ``False``).
    """

    relu_attributions: bool = True

    def _attribute(self, call, *, baselines, feature_mask):
        a = _attr()
        name, layer = _resolve_layer(call.model.model, self.layer, call.x[:1])
        algo = a.LayerGradCam(_Outputs2D(call.model.model), layer)
        tgt = call.target_t
        size = tuple(call.x.shape[2:])
        mode = "linear" if len(size) == 1 else "bilinear"

        def run(sl, _):
            cam = algo.attribute(call.x[sl], target=tgt[sl],
                                 relu_attributions=bool(self.relu_attributions))
            if cam.ndim != call.x.ndim:
                raise ValueError(
                    f"layer {name!r} outputs shape {tuple(cam.shape)}; Grad-CAM needs a layer "
                    f"with the input's layout {call.modality}"
                )
            up = a.LayerAttribution.interpolate(cam, size, interpolate_mode=mode)
            return up.expand(-1, call.x.shape[1], *size)

        with _quiet():
            values = _chunked(call, 1, run)
        return Attribution(values, params={"layer": name})


@_register(
    "guided_grad_cam", modalities=("timeseries", "image"), model_kinds=TORCH,
    summary="Guided backprop multiplied by the upsampled Grad-CAM map",
    reference="Selvaraju et al. (2017), Grad-CAM",
)
class GuidedGradCam(_CamBase):
    """Guided Grad-CAM on a convolutional layer.

    Parameters
    ----------
    layer : str, optional
        Dotted module name; default the last module whose output keeps the input's layout
        (typically the activation after the last convolution).
    """

    def _attribute(self, call, *, baselines, feature_mask):
        name, layer = _resolve_layer(call.model.model, self.layer, call.x[:1])
        values = _row_by_row(call, _attr().GuidedGradCam(_Outputs2D(call.model.model), layer))
        return Attribution(values, params={"layer": name})


# -- perturbation methods ------------------------------------------------------------------
#: Baselines that put one value in every column, whatever the data: no reference for coded columns.
_DATA_FREE = ("zeros", "constant")


class _DataBaseline:
    """On a model with coded categorical columns (a ``TabularModel``) a constant baseline
    (``zeros``, Captum's default) raises instead of setting every perturbed column, ``age`` and
    ``income`` included, to 0: pass ``baseline="training_sample"`` (a training row per
    instance; ``fit(X_train)`` first) or explicit ``baselines``."""

    def _baselines(self, call, explicit, n_samples: int = 1):
        coded = getattr(self.model, "feature_categories_", None)
        name = self._baseline().name
        if coded and explicit is None and name in _DATA_FREE:
            raise ValueError(
                f"{self.info.qualified_name} on a model with coded categorical columns "
                f"({', '.join(coded)}) would set every perturbed column to the {name} baseline (0 for "
                "numeric columns such as age or income, an arbitrary category for the coded ones); "
                "pass baseline='training_sample' (a training row per instance; fit(X_train) first) "
                "or explicit baselines= drawn from data")
        return super()._baselines(call, explicit, n_samples)


class _Perturbation(_DataBaseline, PerturbationExplainer, Batched, Seeded):
    """Captum's ablation entries (constant baselines refused on coded columns: see
    :class:`_DataBaseline`)."""

    baseline: BaselineSpec = "zeros"


def _mask_for(mask: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    if mask is None:
        return None
    return mask if mask.shape[0] == 1 else mask[sl]


def _by_feature(call: Call, algo, b: torch.Tensor, feature_mask: torch.Tensor | None, **kwargs
                ) -> torch.Tensor:
    """``algo.attribute`` (an ablation of features or ``feature_mask`` groups) over chunks of
    instances, ``perturbations_per_eval`` at most the row budget and the number of features."""
    n_features = int(feature_mask.max()) + 1 if feature_mask is not None else call.x[0].numel()
    tgt = call.target_t

    def run(sl, inner):
        return algo.attribute(
            call.x[sl], baselines=b[0, sl], target=tgt[sl], feature_mask=_mask_for(feature_mask, sl),
            perturbations_per_eval=max(1, min(inner, n_features)), **kwargs,
        )

    with torch.no_grad():
        return _chunked(call, max(1, min(call.rows, n_features)), run)


@_register(
    "feature_ablation", multi_input=True, model_kinds=ANY_MODEL, needs_baseline=True, uses_feature_mask=True,
    summary="Output drop when each feature (or feature_mask group) is set to the baseline",
    reference=CAPTUM,
)
class FeatureAblation(_Perturbation):
    """Feature ablation; ``batch_size`` maps to ``perturbations_per_eval``.

    Parameters
    ----------
    baseline : str, float, callable or Baseline
        Replacement values; ``"zeros"`` as in Captum.
        A model with coded categorical columns (``TabularModel``) refuses constant ones: give
        one drawn from data (``training_sample``).
    """

    def _attribute(self, call, *, baselines, feature_mask):
        b = self._baselines(call, baselines)
        return Attribution(_by_feature(call, _attr().FeatureAblation(call.model.forward), b, feature_mask), b)


@_register(
    "feature_permutation", model_kinds=ANY_MODEL, uses_feature_mask=True, stochastic=True,
    summary="Output drop when a feature is shuffled across the explained batch",
    reference="Breiman (2001), Random Forests; " + CAPTUM,
    notes="A batch-level method: each instance's attribution depends on the other "
    "instances explained with it (never on batch_size); needs at least 2 instances.",
    batch_invariant=False,
)
class FeaturePermutation(PerturbationExplainer, Batched, Seeded):
    """Permutation importance over the explained instances.

    Parameters
    ----------
    model : torch.nn.Module, fitted estimator or callable
    """

    def _attribute(self, call, *, baselines, feature_mask):
        n = call.x.shape[0]
        if n < 2:
            raise ValueError("captum:feature_permutation shuffles features across instances; "
                             "explain at least 2 instances at once")
        if feature_mask is not None and feature_mask.shape[0] != 1:
            raise ValueError("captum:feature_permutation needs one feature_mask shared by all "
                             "instances, of one instance's shape")
        algo = _attr().FeaturePermutation(call.model.forward)
        ppe = max(1, call.rows // n)
        with _seeded(call), torch.no_grad():
            values = algo.attribute(call.x, target=call.target_t, feature_mask=feature_mask,
                                    perturbations_per_eval=ppe)
        return Attribution(values)


@_register(
    "occlusion", multi_input=True, model_kinds=ANY_MODEL, needs_baseline=True,
    summary="Output drop when a sliding window of the input is set to the baseline",
    reference="Zeiler & Fergus (2014), Visualizing and Understanding Convolutional Networks",
)
class Occlusion(_Perturbation):
    """Occlusion with a sliding window; ``batch_size`` maps to ``perturbations_per_eval``.

    Parameters
    ----------
    window : tuple of int, optional
        Window shape over one instance's axes. Default: 1 per feature (tabular),
        ``(1, max(1, T // 10))`` for series, ``(C, max(1, H // 8), max(1, W // 8))`` for images.
    stride : tuple of int, optional
        Default: the window (no overlap).
    baseline : str, float, callable or Baseline
        Replacement values; ``"zeros"`` as in Captum.
        A model with coded categorical columns (``TabularModel``) refuses constant ones: give
        one drawn from data (``training_sample``).
    """

    window: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None

    @staticmethod
    def default_window(shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 1:
            return (1,)
        if len(shape) == 2:
            return (1, max(1, shape[1] // 10))
        return (shape[0], max(1, shape[1] // 8), max(1, shape[2] // 8))

    def _attribute(self, call, *, baselines, feature_mask):
        shape = tuple(call.x.shape[1:])
        window = tuple(self.window) if self.window is not None else self.default_window(shape)
        stride = tuple(self.stride) if self.stride is not None else window
        for what, v in (("window", window), ("stride", stride)):
            if len(v) != len(shape) or not all(int(w) >= 1 and w <= s for w, s in zip(v, shape, strict=True)):
                raise ValueError(
                    f"{what} must be {len(shape)} positive ints no larger than one instance's "
                    f"shape {shape}; got {v}"
                )
        b = self._baselines(call, baselines)
        algo = _attr().Occlusion(call.model.forward)
        tgt = call.target_t
        n_windows = int(math.prod((s - w) // st + 1 for s, w, st in zip(shape, window, stride, strict=True)))

        def run(sl, inner):
            return algo.attribute(
                call.x[sl], sliding_window_shapes=window, strides=stride, baselines=b[0, sl],
                target=tgt[sl], perturbations_per_eval=max(1, min(inner, n_windows)),
            )

        with torch.no_grad():
            values = _chunked(call, max(1, min(call.rows, n_windows)), run)
        return Attribution(values, b, {"window": window, "stride": stride})


@_register(
    "shapley_value_sampling", model_kinds=ANY_MODEL, needs_baseline=True, uses_feature_mask=True,
    stochastic=True,
    summary="Shapley values estimated from random feature permutations",
    reference="Castro, Gomez & Tejada (2009), Polynomial calculation of the Shapley value based on sampling",
    notes="Captum shares permutations within a chunk of instances, so results depend on "
    "batch_size; fix it to compare runs.",
)
class ShapleyValueSampling(_Perturbation):
    """Shapley value sampling.

    Parameters
    ----------
    n_samples : int
        Random permutations (25, as in Captum).
    baseline : str, float, callable or Baseline
        Values of absent features; ``"zeros"`` as in Captum.
        A model with coded categorical columns (``TabularModel``) refuses constant ones: give
        one drawn from data (``training_sample``).
    """

    n_samples: int = 25

    def _attribute(self, call, *, baselines, feature_mask):
        check_positive_int(n_samples=self.n_samples)
        b = self._baselines(call, baselines)
        algo = _attr().ShapleyValueSampling(call.model.forward)
        with _seeded(call):
            values = _by_feature(call, algo, b, feature_mask, n_samples=self.n_samples)
        return Attribution(values, b)


# -- surrogates ----------------------------------------------------------------------------
class _Surrogate(_DataBaseline, SurrogateExplainer, Batched, Seeded):
    """Captum's surrogates (constant baselines refused on coded columns: see :class:`_DataBaseline`)."""

    n_samples: int = 200
    baseline: BaselineSpec = "zeros"

    def _make(self, a, forward):
        raise NotImplementedError

    def _attribute(self, call, *, baselines, feature_mask):
        check_positive_int(n_samples=self.n_samples)
        b = self._baselines(call, baselines)
        algo = self._make(_attr(), call.model.forward)
        tgt = call.target_t
        ppe = max(1, min(call.rows, self.n_samples))

        def one(i):  # one surrogate per instance
            sl = slice(i, i + 1)
            return algo.attribute(call.x[sl], baselines=b[0, sl], target=tgt[sl], n_samples=self.n_samples,
                                  feature_mask=_mask_for(feature_mask, sl), perturbations_per_eval=ppe)

        with torch.no_grad():
            return Attribution(_per_instance(call, self.info.name, one), b)


@_register(
    "kernel_shap", model_kinds=ANY_MODEL, needs_baseline=True, uses_feature_mask=True, stochastic=True,
    batch_invariant=True,
    summary="Kernel SHAP: Shapley-kernel weighted linear surrogate on sampled coalitions",
    reference="Lundberg & Lee (2017), A Unified Approach to Interpreting Model Predictions",
)
class KernelShap(_Surrogate):
    """Captum's KernelShap, one surrogate per instance.

    Parameters
    ----------
    n_samples : int
        Sampled coalitions per instance (Captum's default is 25).
    baseline : str, float, callable or Baseline
        Values of absent features; ``"zeros"`` as in Captum. A model with coded categorical
        columns (``TabularModel``) refuses constant ones: give one drawn from data
        (``training_sample``).
    """

    def _make(self, a, forward):
        return a.KernelShap(forward)


@_register(
    "lime", model_kinds=ANY_MODEL, needs_baseline=True, uses_feature_mask=True, stochastic=True,
    batch_invariant=True,
    summary="LIME: locally weighted linear surrogate on sampled feature subsets",
    reference="Ribeiro, Singh & Guestrin (2016), Why Should I Trust You?",
)
class Lime(_Surrogate):
    """Captum's Lime with an exponential cosine-distance kernel.

    Parameters
    ----------
    n_samples : int
        Sampled perturbations per instance (Captum's default is 50).
    surrogate : {"ridge", "lasso"}
        The local linear model. Default ridge, as in the ``lime`` package: Captum's default,
        ``Lasso(alpha=0.01)``, zeroes every coefficient when single features have small
        effects, as on time series and images (measured in ``tests/test_captum_methods.py``).
    alpha : float
        Its regularisation strength (1.0, as ``lime``'s ridge).
    kernel_width : float
        Width of the exponential kernel on cosine distance (1.0, as in Captum).
    baseline : str, float, callable or Baseline
        Values of absent features; ``"zeros"`` as in Captum. A model with coded categorical
        columns (``TabularModel``) refuses constant ones: give one drawn from data
        (``training_sample``).
    """

    surrogate: str = "ridge"
    alpha: float = 1.0
    kernel_width: float = 1.0

    def _make(self, a, forward):
        from captum._utils.models.linear_model import SkLearnLasso, SkLearnRidge
        from captum.attr._core.lime import get_exp_kernel_similarity_function

        models = {"ridge": SkLearnRidge, "lasso": SkLearnLasso}
        if self.surrogate not in models:
            raise ValueError(f"surrogate must be 'ridge' or 'lasso'; got {self.surrogate!r}")
        sim = get_exp_kernel_similarity_function("cosine", float(self.kernel_width))
        return a.Lime(forward, interpretable_model=models[self.surrogate](alpha=float(self.alpha)),
                      similarity_func=sim)


# -- propagation ---------------------------------------------------------------------------
def _lrp_rule(explainer: LRP):
    from captum.attr._utils import lrp_rules

    rules = {
        "epsilon": lambda: lrp_rules.EpsilonRule(epsilon=float(explainer.epsilon)),
        "gamma": lambda: lrp_rules.GammaRule(gamma=float(explainer.gamma)),
        "alpha1_beta0": lrp_rules.Alpha1_Beta0_Rule,
        "z_plus": lrp_rules.Alpha1_Beta0_Rule,
        "identity": lrp_rules.IdentityRule,
    }
    if explainer.rule not in rules:
        raise ValueError(f"rule must be one of {', '.join(rules)}; got {explainer.rule!r}")
    return rules[explainer.rule]


#: Tensor operations that combine two branches; outside any module, Captum's LRP hooks never
#: see them and propagates relevance through them as a gradient would.
_BRANCH_OPS = {"add", "__add__", "__radd__", "__iadd__", "sub", "__sub__", "__rsub__", "__isub__",
               "mul", "__mul__", "__rmul__", "__imul__"}


def _refuse_functional_sums(model: nn.Module, x: torch.Tensor) -> None:
    """Raise a ``TypeError`` where ``forward`` combines two computed tensors outside any module
    (a residual ``a + b``): Captum's LRP then gives wrong relevance (its own skip-connection
    test expects [10, 18] where a plain ``+`` gives [11.2, 100.8]); ``native:lrp`` has rules
    for these operations."""
    from torch.overrides import TorchFunctionMode

    depth, found = [0], []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            computed = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad
                        and not isinstance(a, nn.Parameter)]
            if depth[0] == 0 and name in _BRANCH_OPS and len(computed) >= 2:
                found.append(name.strip("_").removeprefix("i").removeprefix("r") or name)
            return func(*args, **(kwargs or {}))

    def enter(*_):
        depth[0] += 1

    def leave(*_):
        depth[0] -= 1

    handles = [h for m in model.modules() if m is not model
               for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.enable_grad(), Watch():
            model(x.detach().clone().requires_grad_(True))
    finally:
        for h in handles:
            h.remove()
    if found:
        raise TypeError(
            f"Captum's LRP mis-propagates this model: its forward combines two computed tensors "
            f"outside any module ({', '.join(sorted(set(found)))}, a residual connection, say), which "
            "its rules never see; use native:lrp, which has rules for residual sums and products"
        )


@_register(
    "lrp", modalities=("tabular", "image"), model_kinds=TORCH, has_convergence_delta=True,
    summary="Layer-wise relevance propagation with one rule for every layer (Captum)",
    reference="Bach et al. (2015), On Pixel-Wise Explanations by Layer-Wise Relevance Propagation",
    notes="Captum has no rule for Conv1d, BatchNorm1d, AdaptiveAvgPool1d or Flatten modules: "
    "1-D CNNs are refused with the list of unsupported layers. Relevance is conserved only "
    "without biases, so the delta measures what biases absorb.",
)
class LRP(PropagationExplainer, Batched):
    """Captum's LRP on a private copy of the model (Captum attaches rules to layers).

    Parameters
    ----------
    rule : str
        Rule for every Linear/Conv2d/pooling/BatchNorm2d layer: ``epsilon``, ``gamma``,
        ``alpha1_beta0`` (= ``z_plus``) or ``identity``.
    epsilon : float
        Stabiliser of the epsilon rule (1e-9, as in Captum).
    gamma : float
        Weight of positive parts in the gamma rule (0.25, as in Captum).
    """

    rule: str = "epsilon"
    epsilon: float = 1e-09
    gamma: float = 0.25

    def _attribute(self, call, *, baselines, feature_mask):
        make_rule = _lrp_rule(self)
        from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS

        supported = set(SUPPORTED_LAYERS_WITH_RULES) | set(SUPPORTED_NON_LINEAR_LAYERS)
        model = copy.deepcopy(call.model.model)
        leaves = [m for m in model.modules() if not list(m.children())]
        bad = sorted({type(m).__name__ for m in leaves if type(m) not in supported})
        if bad:
            raise TypeError(
                f"Captum's LRP has no rule for layer type(s) {', '.join(bad)} in this model; it "
                "supports " + ", ".join(sorted(t.__name__ for t in supported))
            )
        _refuse_functional_sums(model, call.x[:1])
        algo = _attr().LRP(_Outputs2D(model))
        tgt = call.target_t

        def run(sl, _):
            for m in leaves:  # Captum removes the rules after every call
                if type(m) in SUPPORTED_LAYERS_WITH_RULES:
                    m.rule = make_rule()
            return algo.attribute(_grad_input(call.x[sl]), target=tgt[sl])

        return Attribution(_chunked(call, 1, run))
